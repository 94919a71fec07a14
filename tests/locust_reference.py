"""An independent reference for one locust PN and one LN: models.md section 4 written out again with
NumPy scalars and integrated by ``scipy.integrate.solve_ivp`` at rtol 1e-10 (no psst_helpers code)."""
import numpy as np
from scipy.integrate import solve_ivp

PHI_HH = 3.0 ** ((22.0 - 36.0) / 10.0)
PHI_A = 3.0 ** ((36.0 - 23.5) / 10.0)
PHI_KCA = 2.3 ** ((26.0 - 23.0) / 10.0)


def _vtrap(a, x, k):
    """a x / (exp(x/k) - 1), with its limit a k at x = 0."""
    return a * k if abs(x) < 1e-9 else a * x / np.expm1(x / k)


def _hh_rates(V):
    u = V + 50.0
    return {
        "an": _vtrap(0.02, 15.0 - u, 5.0), "bn": 0.5 * np.exp((10.0 - u) / 40.0),
        "am": _vtrap(0.32, 13.0 - u, 4.0), "bm": _vtrap(0.28, u - 40.0, 5.0),
        "ah": 0.128 * np.exp((17.0 - u) / 18.0), "bh": 4.0 / (np.exp((40.0 - u) / 5.0) + 1.0),
    }


def pn_rhs(t, y, I_of_t):
    V, m, h, n, mA, hA = y
    r = _hh_rates(V)
    I = (100.0 * m ** 3 * h * (V - 50.0) + 10.0 * n ** 4 * (V + 95.0) + 0.15 * (V + 55.0)
         + 10.0 * mA ** 4 * hA * (V + 95.0) + 0.05 * (V + 95.0))
    mA_inf = 1.0 / (1.0 + np.exp(-(V + 60.0) / 8.5))
    hA_inf = 1.0 / (1.0 + np.exp((V + 78.0) / 6.0))
    tau_mA = 1.0 / (np.exp((V + 35.82) / 19.69) + np.exp(-(V + 79.69) / 12.7) + 0.37) / PHI_A
    tau_hA = (1.0 / (np.exp((V + 46.05) / 5.0) + np.exp(-(V + 238.4) / 37.45)) / PHI_A) if V < -63.0 else 19.0 / PHI_A
    return [I_of_t(t) - I,
            PHI_HH * (r["am"] * (1 - m) - r["bm"] * m), PHI_HH * (r["ah"] * (1 - h) - r["bh"] * h),
            PHI_HH * (r["an"] * (1 - n) - r["bn"] * n),
            (mA_inf - mA) / tau_mA, (hA_inf - hA) / tau_hA]


def ln_rhs(t, y, I_of_t):
    V, n, mCa, hCa, mKCa, Ca = y
    r = _hh_rates(V)
    I_Ca = 3.0 * mCa ** 2 * hCa * (V - 140.0)
    I = I_Ca + 10.0 * n ** 4 * (V + 95.0) + 0.3 * mKCa * (V + 90.0) + 0.15 * (V + 50.0) + 0.02 * (V + 95.0)
    m_inf = 1.0 / (1.0 + np.exp(-(V + 20.0) / 6.5))
    h_inf = 1.0 / (1.0 + np.exp((V + 25.0) / 12.0))
    tau_h = 0.3 * np.exp((V - 40.0) / 13.0) + 0.002 * np.exp((60.0 - V) / 29.0)
    a = 0.01 * Ca
    return [I_of_t(t) - I,
            PHI_HH * (r["an"] * (1 - n) - r["bn"] * n),
            (m_inf - mCa) / 1.5, (h_inf - hCa) / tau_h,
            PHI_KCA * (a * (1 - mKCa) - 0.02 * mKCa),
            -2e-4 * I_Ca - (Ca - 2.4e-4) / 150.0]


def spike_times(rhs, y0, pulse, t_end):
    """Upward 0 mV crossings (ms) of a cell driven by ``pulse = (start, stop, amplitude)``.

    Integrated piecewise between the pulse's edges so the solver never steps over a discontinuity.
    """
    start, stop, amp = pulse
    edges = [0.0, start, stop, t_end]
    y = np.asarray(y0, float)
    out = []

    def crossing(t, y, *_):
        return y[0]

    crossing.direction = 1.0
    for a, b in zip(edges[:-1], edges[1:]):
        level = amp if a >= start and b <= stop else 0.0
        sol = solve_ivp(rhs, (a, b), y, args=(lambda t, level=level: level,), method="DOP853",
                        rtol=1e-10, atol=1e-12, events=crossing)
        out.extend(sol.t_events[0])
        y = sol.y[:, -1]
    return np.array(out)
