"""Builders for the book's reference systems (chapters 3, 4 and 6) and :func:`simulate`.

Every builder returns a :class:`Model`: a start state (a dict of NumPy arrays, no index
arithmetic), a derivative function and a post-step hook that work with both solvers, and the
parameters needed to describe (and reproduce) the run.

State entries shared by all network models: ``V`` (mV), ``I_ext`` (uA/cm^2, step-held input),
``t_fire`` (ms, last spike start time), ``spikes`` (spike count, float), and ``syn`` (one open
fraction per synapse and kind) when there are synapses.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from . import neurons as nrn
from ._tree import tree_map
from .backend import ops_for
from .events import network_hook
from .stimuli import Constant, LocustOdor, Pulses, Stimulus
from .synapses import ACH, GABA_A, SynapseGroup

__all__ = [
    "Model", "simulate", "hh_network", "hh_derivatives", "single_neuron", "hh_population", "three_neuron_network",
    "locust_antennal_lobe", "LOCUST", "NEVER_FIRED",
]

#: ``t_fire`` of a neuron that has not fired yet: far enough in the past that no synapse is active.
NEVER_FIRED = -1.0e9


@dataclass
class Model:
    """A ready-to-integrate system.

    Attributes
    ----------
    name : str
    initial_state : dict of NumPy arrays (float64)
    derivatives : callable ``f(y, t)``, NumPy or TensorFlow
    post_step : callable ``hook(t0, y0, t1, y1)`` or None
    params : dict, JSON-serialisable description (for run metadata)
    arrays : dict of NumPy arrays that define the model beyond ``params`` (connectivity, targets)
    """

    name: str
    initial_state: Dict[str, Any]
    derivatives: Callable[[Any, Any], Any]
    post_step: Optional[Callable[..., Any]] = None
    params: Dict[str, Any] = field(default_factory=dict)
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)

    def state(self, dtype: Any = np.float64) -> Dict[str, Any]:
        """A copy of the start state in ``dtype`` (float32 or float64)."""
        return tree_map(lambda x: np.array(x, dtype=dtype), self.initial_state)


def simulate(
    model: Model,
    t: Any,
    *,
    backend: str = "tensorflow",
    dtype: Any = np.float64,
    method: str = "rk4",
    record: Any = ("V",),
    every: int = 1,
    xla: bool = True,
    y0: Optional[Dict[str, Any]] = None,
    return_final: bool = False,
) -> Any:
    """Integrate ``model`` on the grid ``t`` (ms); by default record V at every step.

    ``backend="numpy"`` uses :func:`psst_helpers.odeint_np`, ``"tensorflow"`` the compiled
    :func:`psst_helpers.odeint`. Results are time-major (``[len(t[::every]), ...]``); the
    TensorFlow backend's are converted to NumPy arrays.
    """
    start = model.state(dtype) if y0 is None else tree_map(lambda x: np.asarray(x, dtype=dtype), y0)
    kwargs = dict(method=method, record=record, every=every, post_step=model.post_step, return_final=return_final)
    if backend == "numpy":
        from .solvers import odeint_np

        return odeint_np(model.derivatives, start, t, **kwargs)
    if backend not in ("tensorflow", "tf"):
        raise ValueError(f"backend must be 'numpy' or 'tensorflow', got {backend!r}")
    from .solvers.tf_solver import odeint

    out = odeint(model.derivatives, start, t, xla=xla, **kwargs)
    return tree_map(lambda x: x.numpy(), out)


# --- all-Hodgkin-Huxley networks (chapters 3 and 4) ------------------------------------------------

def _network_state(V0: np.ndarray, I0: np.ndarray, extra: Dict[str, Any], synapses: Sequence[SynapseGroup]):
    n = V0.size
    state = {"V": V0.astype(float), "I_ext": I0.astype(float), "t_fire": np.full(n, NEVER_FIRED),
             "spikes": np.zeros(n), **extra}
    if synapses:
        state["syn"] = {s.kind: np.zeros(s.size) for s in synapses}
    return state


def _check_groups(synapses: Sequence[SynapseGroup], n: int) -> None:
    kinds = [s.kind for s in synapses]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"give at most one SynapseGroup per kind, got {kinds}")
    for s in synapses:
        if s.n_neurons != n or s.n_post != n:
            raise ValueError(f"a {s.kind} SynapseGroup is built for {s.n_neurons} -> {s.n_post} neurons, "
                             f"the network has {n}")


def _synaptic(y: Dict[str, Any], synapses: Sequence[SynapseGroup], t: Any, t_fire: str = "t_fire"):
    """Total synaptic current into each neuron and the open-fraction derivatives.

    ``t_fire`` names the state entry holding the presynaptic neurons' last spike times (a block of
    a partitioned network keeps the whole network's in ``"t_fire_net"``).
    """
    V = y["V"]
    I_syn = 0.0
    dsyn = {}
    for s in synapses:
        O = y["syn"][s.kind]
        dsyn[s.kind] = s.derivative(O, V, y[t_fire], t)
        I_syn = I_syn + s.current(O, V)
    return I_syn, dsyn


def hh_derivatives(synapses: Sequence[SynapseGroup], params: Dict[str, float] = nrn.HH, *,
                   t_fire: str = "t_fire", held: Sequence[str] = ("I_ext", "t_fire", "spikes")) -> Callable:
    """The derivative function of an HH network state (``V, m, h, n, I_ext, ...`` and ``syn``).

    ``held`` names the entries that are not integrated (their derivative is None); ``t_fire`` the
    entry with the presynaptic spike times (see :func:`_synaptic`).
    """
    C_m = params["C_m"]

    def derivatives(y: Dict[str, Any], t: Any) -> Dict[str, Any]:
        V, m, h, ng = y["V"], y["m"], y["h"], y["n"]
        I_Na, I_K, I_L = nrn.hh_currents(V, m, h, ng, params)
        dm, dh, dn = nrn.hh_gate_derivatives(V, m, h, ng)
        I_syn, dsyn = _synaptic(y, synapses, t, t_fire)
        out = {"V": (y["I_ext"] - I_Na - I_K - I_L - I_syn) / C_m, "m": dm, "h": dh, "n": dn,
               **{k: None for k in held}}
        if synapses:
            out["syn"] = dsyn
        return out

    return derivatives


def hh_network(
    n: int,
    stimulus: Stimulus,
    synapses: Sequence[SynapseGroup] = (),
    *,
    V0: Any = -71.0,
    name: str = "hh_network",
    params: Dict[str, float] = nrn.HH,
) -> Model:
    """n Hodgkin-Huxley neurons (models.md section 1), optionally coupled by synapse groups.

    Parameters
    ----------
    n : int
        Number of neurons.
    stimulus : Stimulus
        Injected current (uA/cm^2), see :mod:`psst_helpers.stimuli`.
    synapses : sequence of SynapseGroup
        At most one group per kind ("ach", "gaba").
    V0 : float or array
        Start voltage (mV); gates start at 0.
    """
    if stimulus.n != n:
        raise ValueError(f"the stimulus drives {stimulus.n} neurons, the network has {n}")
    _check_groups(synapses, n)
    V0 = np.broadcast_to(np.asarray(V0, float), (n,)).copy()
    I0 = np.asarray(stimulus(0.0, V0), float)
    gates = {"m": np.zeros(n), "h": np.zeros(n), "n": np.zeros(n)}
    state = _network_state(V0, I0, gates, synapses)
    derivatives = hh_derivatives(synapses, params)

    desc = {"model": name, "n_neurons": n, "membrane": dict(params), "stimulus": stimulus.describe(),
            "synapses": [s.describe() for s in synapses]}
    arrays = {f"{s.kind}_pre": s.pre for s in synapses}
    arrays.update({f"{s.kind}_post": s.post for s in synapses})
    return Model(name, state, derivatives, network_hook(stimulus), desc, arrays)


def single_neuron(I_inj: float = 5.0) -> Model:
    """One HH neuron with a constant current ``I_inj`` (uA/cm^2), start [-71, 0, 0, 0] (chapter 3)."""
    return hh_network(1, Constant([I_inj]), name="single_neuron")


def hh_population(I_inj: Any) -> Model:
    """Independent HH neurons, neuron i driven by the constant ``I_inj[i]`` (chapter 3's f-I curve)."""
    I_inj = np.atleast_1d(np.asarray(I_inj, float))
    return hh_network(I_inj.size, Constant(I_inj), name="hh_population")


def three_neuron_network() -> Model:
    """X1 -(ACh)-> X2 -(GABA_A)-> X3 with pulses into X1 (models.md section 2, chapter 4)."""
    n = 3
    ach = SynapseGroup("ach", pre=[0], post=[1], n_neurons=n)
    gaba = SynapseGroup("gaba", pre=[1], post=[2], n_neurons=n)
    stim = Pulses(n, [(0, 100.0, 200.0, 2.5), (0, 300.0, 400.0, 5.0), (0, 500.0, 600.0, 7.5)])
    return hh_network(n, stim, [ach, gaba], name="three_neuron_network")


# --- the locust antennal lobe (chapter 6) -----------------------------------------------------------

#: Membrane parameters of projection neurons (PN) and local interneurons (LN), models.md section 4.
LOCUST: Dict[str, Dict[str, float]] = {
    "PN": {"g_K": 10.0, "E_K": -95.0, "g_L": 0.15, "E_L": -55.0, "g_KL": 0.05, "E_KL": -95.0,
           "g_Na": 100.0, "E_Na": 50.0, "g_A": 10.0, "E_A": -95.0},
    "LN": {"g_K": 10.0, "E_K": -95.0, "g_L": 0.15, "E_L": -50.0, "g_KL": 0.02, "E_KL": -95.0,
           "g_Ca": 3.0, "E_Ca": 140.0, "g_KCa": 0.3, "E_KCa": -90.0},
}


def locust_antennal_lobe(
    seed: int = 0,
    *,
    n_pn: int = 90,
    n_ln: int = 30,
    C_ach: Optional[np.ndarray] = None,
    C_gaba: Optional[np.ndarray] = None,
    stimulated: Optional[Sequence[int]] = None,
    initial_state: Optional[Dict[str, Any]] = None,
    stimulus: Optional[Stimulus] = None,
    p_connect: float = 0.5,
    noise: float = 0.01,
    g_KL_jitter: float = 0.0,
) -> Model:
    """The locust antennal lobe after Bazhenov et al. (2001): 90 PNs and 30 LNs (models.md section 4).

    Random parts are drawn from ``np.random.default_rng(seed)`` in this order: the ACh matrix
    (PN -> LN, probability ``p_connect``), the GABA_A matrix (LN -> every neuron, no self-connection),
    the stimulated third of the neurons (``int(0.33 n)``), the 1 % multiplicative start noise. Any
    of them can be given explicitly instead (``C_ach``, ``C_gaba`` as 0/1 ``[post, pre]`` matrices,
    ``stimulated`` indices, a complete ``initial_state``) and is then used exactly.

    ``g_KL_jitter`` > 0 gives every neuron its own potassium-leak conductance,
    ``g_KL (1 + g_KL_jitter z)`` with z standard normal (clipped at zero), drawn after everything
    above; the K leak sets how excitable a cell is, so this is the chapter 6 exercise's
    "variability in neuron parameters". With 0 (the default) nothing extra is drawn.

    State: ``V`` (all neurons, PNs first), ``pn`` = {m, h, n, mA, hA}, ``ln`` = {n, mCa, hCa, mKCa,
    Ca}, ``syn`` = {ach, gaba}, plus ``I_ext``, ``t_fire``, ``spikes``.
    """
    N = n_pn + n_ln
    explicit = {"C_ach": C_ach is not None, "C_gaba": C_gaba is not None, "stimulated": stimulated is not None,
                "initial_state": initial_state is not None}
    rng = np.random.default_rng(seed)
    draw_ach = rng.random((N, N)) < p_connect
    draw_gaba = rng.random((N, N)) < p_connect
    if C_ach is None:
        C_ach = np.zeros((N, N), dtype=np.int8)
        C_ach[n_pn:, :n_pn] = draw_ach[n_pn:, :n_pn]  # PN -> LN only
    if C_gaba is None:
        C_gaba = np.zeros((N, N), dtype=np.int8)
        C_gaba[:, n_pn:] = draw_gaba[:, n_pn:]  # LN -> every neuron
        np.fill_diagonal(C_gaba, 0)
    C_ach, C_gaba = np.asarray(C_ach, np.int8), np.asarray(C_gaba, np.int8)
    for name, C in (("C_ach", C_ach), ("C_gaba", C_gaba)):
        if C.shape != (N, N):
            raise ValueError(f"{name} must have shape ({N}, {N}) [post, pre], got {C.shape}")
    drawn_targets = np.sort(rng.choice(N, size=int(0.33 * N), replace=False))
    stimulated = drawn_targets if stimulated is None else np.sort(np.asarray(stimulated, dtype=np.int64))
    if stimulus is None:
        stimulus = LocustOdor(N, stimulated)

    g_ach = np.where(np.arange(N) < n_pn, 0.35, 0.3)  # 0.35 onto PNs is unused: no ACh synapse targets a PN
    ach = SynapseGroup.from_matrix("ach", C_ach, g=g_ach, E=ACH["E"])
    gaba = SynapseGroup.from_matrix("gaba", C_gaba, g=GABA_A["g"], E=GABA_A["E"])
    synapses = (ach, gaba)

    if initial_state is None:
        Ca0 = nrn.CALCIUM["Ca0"]
        V = np.full(N, -70.0)
        Ca = np.full(n_ln, Ca0)
        V = V * (1.0 + noise * rng.standard_normal(N))
        Ca = Ca * (1.0 + noise * rng.standard_normal(n_ln))
        z_pn, z_ln = np.zeros(n_pn), np.zeros(n_ln)
        extra = {"pn": {"m": z_pn, "h": z_pn.copy(), "n": z_pn.copy(), "mA": z_pn.copy(), "hA": z_pn.copy()},
                 "ln": {"n": z_ln, "mCa": z_ln.copy(), "hCa": z_ln.copy(), "mKCa": z_ln.copy(), "Ca": Ca}}
        state = _network_state(V, np.asarray(stimulus(0.0, V), float), extra, synapses)
    else:
        state = tree_map(lambda x: np.array(x, dtype=float), initial_state)

    P, L = LOCUST["PN"], LOCUST["LN"]
    g_KL = np.concatenate([np.full(n_pn, P["g_KL"]), np.full(n_ln, L["g_KL"])])
    if g_KL_jitter > 0:
        g_KL = np.clip(g_KL * (1.0 + g_KL_jitter * rng.standard_normal(N)), 0.0, None)
    g_KL_pn, g_KL_ln = g_KL[:n_pn], g_KL[n_pn:]

    def derivatives(y: Dict[str, Any], t: Any) -> Dict[str, Any]:
        xp = ops_for(y["V"])
        V = y["V"]
        Vp, Vl = V[:n_pn], V[n_pn:]
        pn, ln = y["pn"], y["ln"]
        # projection neurons: Na, K (HH kinetics), transient K (A), K leak, leak
        I_Na, I_K, I_L = nrn.hh_currents(Vp, pn["m"], pn["h"], pn["n"], P)
        mA2 = pn["mA"] * pn["mA"]
        I_A = P["g_A"] * mA2 * mA2 * pn["hA"] * (Vp - P["E_A"])
        I_pn = I_Na + I_K + I_L + I_A + xp.const(g_KL_pn, V) * (Vp - P["E_KL"])
        dm, dh, dn = nrn.hh_gate_derivatives(Vp, pn["m"], pn["h"], pn["n"])
        dmA, dhA = nrn.transient_k(Vp, pn["mA"], pn["hA"])
        # local interneurons: Ca, K (HH kinetics), Ca-dependent K, K leak, leak
        I_Ca = L["g_Ca"] * ln["mCa"] * ln["mCa"] * ln["hCa"] * (Vl - L["E_Ca"])
        n2 = ln["n"] * ln["n"]
        I_Kl = L["g_K"] * n2 * n2 * (Vl - L["E_K"])
        I_KCa = L["g_KCa"] * ln["mKCa"] * (Vl - L["E_KCa"])
        I_ln = I_Ca + I_Kl + I_KCa + L["g_L"] * (Vl - L["E_L"]) + xp.const(g_KL_ln, V) * (Vl - L["E_KL"])
        dnl = nrn.hh_n_derivative(Vl, ln["n"])
        dmCa, dhCa = nrn.calcium_gates(Vl, ln["mCa"], ln["hCa"])
        dmKCa = nrn.kca_gate(ln["Ca"], ln["mKCa"])
        dCa = nrn.calcium_derivative(ln["Ca"], I_Ca)
        I_syn, dsyn = _synaptic(y, synapses, t)
        dV = y["I_ext"] - xp.concat([I_pn, I_ln], 0) - I_syn  # C_m = 1
        return {"V": dV, "pn": {"m": dm, "h": dh, "n": dn, "mA": dmA, "hA": dhA},
                "ln": {"n": dnl, "mCa": dmCa, "hCa": dhCa, "mKCa": dmKCa, "Ca": dCa},
                "syn": dsyn, "I_ext": None, "t_fire": None, "spikes": None}

    desc = {"model": "locust_antennal_lobe", "seed": seed, "n_pn": n_pn, "n_ln": n_ln, "p_connect": p_connect,
            "noise": noise, "g_KL_jitter": g_KL_jitter, "membrane": LOCUST, "stimulus": stimulus.describe(),
            "synapses": [s.describe() for s in synapses], "explicit": explicit}
    arrays = {"C_ach": C_ach, "C_gaba": C_gaba, "stimulated": stimulated, "g_KL": g_KL}
    return Model("locust_antennal_lobe", state, derivatives, network_hook(stimulus), desc, arrays)
