"""Ion-channel kernels: Hodgkin-Huxley (chapter 3) and the locust PN/LN currents (chapter 6).

The channels and cell types built on them are in :mod:`psst_helpers.channels`. Every function works on NumPy arrays and on TensorFlow tensors alike (see :mod:`psst_helpers.backend`).
Units: voltage mV, time ms, conductance mS/cm^2, current uA/cm^2, capacitance uF/cm^2.
Equations and parameters are those of the book's model reference (book/models.md), sections
"Hodgkin-Huxley neuron", "A-current (transient K)" and "Locust antennal lobe".
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from .backend import ops_for
from .errors import ParameterError

__all__ = [
    "HH", "PHI_HH", "exprel_inv", "hh_rates", "hh_na_derivatives", "hh_n_derivative", "hh_gate_derivatives",
    "hh_steady_state", "hh_currents", "na_current", "k_current", "ohmic_current",
    "transient_k", "calcium_gates", "kca_gate", "calcium_derivative", "PHI_A", "PHI_KCA", "CALCIUM", "check_params",
]

#: Hodgkin-Huxley membrane parameters (the book's model reference, section "Hodgkin-Huxley neuron", book/models.md).
HH: Dict[str, float] = {"C_m": 1.0, "g_Na": 100.0, "E_Na": 50.0, "g_K": 10.0, "E_K": -95.0, "g_L": 0.15, "E_L": -55.0}
#: Temperature factor of the HH gates at T = 22 degC: 3^((22 - 36)/10).
PHI_HH: float = 3.0 ** ((22.0 - 36.0) / 10.0)
#: Temperature factor of the transient K current (PN): 3^((36 - 23.5)/10).
PHI_A: float = 3.0 ** ((36.0 - 23.5) / 10.0)
#: Temperature factor of the Ca-dependent K current (LN): 2.3^((26 - 23)/10).
PHI_KCA: float = 2.3 ** ((26.0 - 23.0) / 10.0)
#: Intracellular calcium dynamics of LNs: A_Ca, resting [Ca] Ca0, and its time constant tau_Ca (ms).
CALCIUM: Dict[str, float] = {"A_Ca": 2e-4, "Ca0": 2.4e-4, "tau_Ca": 150.0}

#: Coefficients B_2k / (2k)! of x^2k in x/(exp(x) - 1) = 1 - x/2 + sum_k B_2k x^2k / (2k)!, k = 1..11.
_EXPREL_SERIES = (1.0 / 12.0, -1.0 / 720.0, 1.0 / 30240.0, -1.0 / 1209600.0, 1.0 / 47900160.0,
                  -5.284190138687493e-10, 1.3382536530684679e-11, -3.3896802963225827e-13,
                  8.586062056277845e-15, -2.174868698558062e-16, 5.5090028283602295e-18)
#: |x| below which the series is used. Past it x/(exp(x) - 1) amplifies exp's rounding error by
#: e^x/|e^x - 1| <= 1.6 (at 0.5 it would be 2.5: 4.8 ulp in float32 with NumPy's exp at x = 0.501).
_EXPREL_SWITCH = 1.0


def exprel_inv(x: Any) -> Any:
    """``x / (exp(x) - 1)``, finite everywhere (its value at the removable singularity x = 0 is 1).

    The HH rates ``a (c - u) / (exp((c - u)/k) - 1)`` equal ``a k exprel_inv((c - u)/k)``. Written
    naively they are 0/0 at u = c; in float32 that happens for real neurons (V = -35, -37, -10 mV
    exactly) and leaves them NaN forever. For ``|x| < 1`` the Bernoulli series up to x^22 is used
    (the first omitted term is below 1.4e-19 there); elsewhere ``x / (exp(x) - 1)``. Measured against
    an exact reference on a dense grid through the switch points and over -1e4 <= x < exp's overflow
    (88 in float32, 709 in float64): at most 3.7 units in the last place in float32 with NumPy's
    exp (2.9 with TensorFlow's), 2.4 in float64; ``tests/test_models.py`` asserts 4. ``exp`` rather
    than ``expm1`` because XLA's CPU ``exp`` is faster.
    """
    xp = ops_for(x)
    small = xp.abs(x) < _EXPREL_SWITCH
    safe = xp.where(small, xp.const(1.0, x), x)
    xs = xp.where(small, x, xp.const(0.0, x))  # the series of a large x would overflow (inf * 0 gradients)
    x2 = xs * xs
    poly = _EXPREL_SERIES[-1]
    for c in _EXPREL_SERIES[-2::-1]:
        poly = c + x2 * poly
    series = 1.0 - 0.5 * xs + x2 * poly
    return xp.where(small, series, safe / (xp.exp(safe) - 1.0))


def _hh_n_rates(V: Any) -> Dict[str, Any]:
    xp = ops_for(V)
    u = V + 50.0
    return {
        "alpha_n": 0.1 * exprel_inv((15.0 - u) / 5.0),  # 0.02 (15-u) / (exp((15-u)/5) - 1)
        "beta_n": 0.5 * xp.exp((10.0 - u) / 40.0),
    }


def _hh_mh_rates(V: Any) -> Dict[str, Any]:
    xp = ops_for(V)
    u = V + 50.0
    return {
        "alpha_m": 1.28 * exprel_inv((13.0 - u) / 4.0),  # 0.32 (13-u) / (exp((13-u)/4) - 1)
        "beta_m": 1.4 * exprel_inv((u - 40.0) / 5.0),  # 0.28 (u-40) / (exp((u-40)/5) - 1)
        "alpha_h": 0.128 * xp.exp((17.0 - u) / 18.0),
        "beta_h": 4.0 / (xp.exp((40.0 - u) / 5.0) + 1.0),
    }


def hh_rates(V: Any) -> Dict[str, Any]:
    """Opening (alpha) and closing (beta) rates of the m, h and n gates, in 1/ms, at voltage V (mV).

    Traub-style rates on the shifted voltage u = V + 50 (the book's model reference, section
    "Hodgkin-Huxley neuron", book/models.md), before the
    temperature factor :data:`PHI_HH`.
    """
    return {**_hh_n_rates(V), **_hh_mh_rates(V)}


def hh_na_derivatives(V: Any, m: Any, h: Any) -> Tuple[Any, Any]:
    """dm/dt and dh/dt (1/ms) of the HH sodium gates: ``phi (alpha (1 - x) - beta x)``."""
    r = _hh_mh_rates(V)
    dm = PHI_HH * (r["alpha_m"] * (1.0 - m) - r["beta_m"] * m)
    dh = PHI_HH * (r["alpha_h"] * (1.0 - h) - r["beta_h"] * h)
    return dm, dh


def hh_n_derivative(V: Any, n: Any) -> Any:
    """dn/dt (1/ms) alone, for cells (the locust LNs) that have the HH potassium but not the sodium current."""
    r = _hh_n_rates(V)
    return PHI_HH * (r["alpha_n"] * (1.0 - n) - r["beta_n"] * n)


def hh_gate_derivatives(V: Any, m: Any, h: Any, n: Any) -> Tuple[Any, Any, Any]:
    """dm/dt, dh/dt, dn/dt (1/ms) of the HH gates: ``phi (alpha (1 - x) - beta x)``.

    This equals ``-(x - x_inf)/tau_x`` with ``tau_x = 1/((alpha + beta) phi)`` and
    ``x_inf = alpha/(alpha + beta)`` but needs no division.
    """
    dm, dh = hh_na_derivatives(V, m, h)
    return dm, dh, hh_n_derivative(V, n)


def hh_steady_state(V: Any) -> Dict[str, Tuple[Any, Any]]:
    """``{gate: (x_inf, tau_x)}`` for m, h, n at voltage V (mV); tau in ms. Used for chapter 3's plots."""
    r = hh_rates(V)
    out = {}
    for g in ("m", "h", "n"):
        a, b = r["alpha_" + g], r["beta_" + g]
        out[g] = (a / (a + b), 1.0 / ((a + b) * PHI_HH))
    return out


def na_current(V: Any, m: Any, h: Any, g: Any, E: Any) -> Any:
    """The HH sodium current ``g m^3 h (V - E)``, uA/cm^2 (outward +)."""
    return g * m * m * m * h * (V - E)


def k_current(V: Any, n: Any, g: Any, E: Any) -> Any:
    """The HH delayed-rectifier K current ``g n^4 (V - E)``, uA/cm^2 (outward +)."""
    n2 = n * n
    return g * n2 * n2 * (V - E)


def ohmic_current(V: Any, g: Any, E: Any) -> Any:
    """A leak current ``g (V - E)``, uA/cm^2 (outward +)."""
    return g * (V - E)


def hh_currents(V: Any, m: Any, h: Any, n: Any, p: Dict[str, float] = HH) -> Tuple[Any, Any, Any]:
    """Sodium, potassium and leak currents (uA/cm^2; positive = outward) of the HH membrane."""
    return (na_current(V, m, h, p["g_Na"], p["E_Na"]), k_current(V, n, p["g_K"], p["E_K"]),
            ohmic_current(V, p["g_L"], p["E_L"]))


def transient_k(V: Any, m: Any, h: Any) -> Tuple[Any, Any]:
    """d m_A/dt and d h_A/dt of the PN's transient K (A) current, 1/ms
    (the book's model reference, section "A-current (transient K)", book/models.md)."""
    xp = ops_for(V)
    m_inf = 1.0 / (1.0 + xp.exp(-(V + 60.0) / 8.5))
    h_inf = 1.0 / (1.0 + xp.exp((V + 78.0) / 6.0))
    tau_m = 1.0 / (xp.exp((V + 35.82) / 19.69) + xp.exp(-(V + 79.69) / 12.7) + 0.37) / PHI_A
    # tau_h is piecewise: the branch above -63 mV is a constant 19/phi. The exp() of the unused
    # branch is evaluated on a clipped voltage so it can never overflow into the where().
    V_low = xp.where(V < -63.0, V, xp.const(-63.0, V))
    tau_h_low = 1.0 / (xp.exp((V_low + 46.05) / 5.0) + xp.exp(-(V_low + 238.4) / 37.45)) / PHI_A
    tau_h = xp.where(V < -63.0, tau_h_low, xp.const(19.0 / PHI_A, V))
    return (m_inf - m) / tau_m, (h_inf - h) / tau_h


def calcium_gates(V: Any, m: Any, h: Any) -> Tuple[Any, Any]:
    """d m_Ca/dt and d h_Ca/dt of the LN's calcium current, 1/ms
    (the book's model reference, section "Locust antennal lobe", book/models.md)."""
    xp = ops_for(V)
    m_inf = 1.0 / (1.0 + xp.exp(-(V + 20.0) / 6.5))
    h_inf = 1.0 / (1.0 + xp.exp((V + 25.0) / 12.0))
    tau_m = 1.5
    tau_h = 0.3 * xp.exp((V - 40.0) / 13.0) + 0.002 * xp.exp((60.0 - V) / 29.0)
    return (m_inf - m) / tau_m, (h_inf - h) / tau_h


def kca_gate(Ca: Any, m: Any) -> Any:
    """d m_KCa/dt of the LN's calcium-dependent K current: alpha = 0.01 [Ca], beta = 0.02, 1/ms."""
    alpha = 0.01 * Ca
    beta = 0.02
    # -(m - m_inf)/tau with m_inf = alpha/(alpha+beta), tau = 1/((alpha+beta) phi)
    return PHI_KCA * (alpha * (1.0 - m) - beta * m)


def calcium_derivative(Ca: Any, I_Ca: Any, p: Dict[str, float] = CALCIUM) -> Any:
    """d[Ca]/dt = -A_Ca I_Ca - ([Ca] - Ca0)/tau_Ca (mM/ms); inward (negative) I_Ca raises [Ca]."""
    return -p["A_Ca"] * I_Ca - (Ca - p["Ca0"]) / p["tau_Ca"]


def check_params(params: Dict[str, Any], defaults: Dict[str, float], what: str) -> Dict[str, float]:
    """``params`` as a dict of finite floats with exactly the names of ``defaults`` (missing ones filled)."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ParameterError(f"unknown {what} parameter(s) {unknown}; known: {sorted(defaults)}")
    out = {**defaults, **params}
    for k, v in out.items():
        if not np.all(np.isfinite(np.asarray(v, dtype=float))):
            raise ParameterError(f"{what} parameter {k} must be finite, got {v}")
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}
