"""Builders for the book's reference systems (chapters 3, 4 and 6) and :func:`simulate`.

Every builder returns a :class:`Model`: a start state (a dict of NumPy arrays, no index
arithmetic), a derivative function and a post-step hook that work with both solvers, and the
parameters needed to describe (and reproduce) the run.

State entries shared by all network models: ``V`` (mV), ``I_ext`` (uA/cm^2, step-held input),
``t_fire`` (ms, last spike start time), ``spikes`` (spike count, float), and ``syn`` (one open
fraction per synapse and kind) when there are synapses.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Hashable, Optional, Sequence, Tuple

import numpy as np

from . import neurons as nrn
from ._tree import flatten, tree_map, unflatten
from .backend import ops_for
from .channels import (CalciumActivatedK, CalciumCurrent, CalciumPool, CellType, Channel, HHPotassium, HHSodium,
                       Leak, TransientK)
from .components import _plain, describe, fingerprint
from .errors import ConnectivityError, InputDtypeError, ParameterError
from .events import network_hook
from .stimuli import Constant, LocustOdor, Pulses, Stimulus
from .synapses import ACH, GABA_A, SynapseGroup, check_connectivity

__all__ = [
    "Model", "simulate", "hh_network", "hh_derivatives", "single_neuron", "hh_population", "three_neuron_network",
    "locust_antennal_lobe", "locust_derivatives", "locust_cell_types", "network_inputs", "integrator_for", "cast_state", "clear_compiled", "LOCUST", "NEVER_FIRED", "TIME_ENTRIES",
]

#: ``t_fire`` of a neuron that has not fired yet: far enough in the past that no synapse is active.
NEVER_FIRED = -1.0e9
#: State entries that hold times (ms): kept in float64 whatever the state's dtype, because float32's
#: spacing (0.0156 ms at t = 2e5 ms) is as coarse as the step and the 0.3 ms transmitter pulse.
TIME_ENTRIES = ("t_fire", "t_fire_net")
_SUPPORTED = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class Model:
    """A ready-to-integrate system.

    Attributes
    ----------
    name : str
    initial_state : dict of NumPy arrays (float64)
        The start state. Besides the variables it holds the parameters that a sweep changes
        (``"par"``: conductances, reversal potentials, stimulus amplitudes) and the step-held input
        ``I_ext``: they are inputs of the compiled loop, so a model that differs only in them
        reuses the compiled code (see :func:`simulate`).
    derivatives : callable ``f(y, t)``, NumPy or TensorFlow
    post_step : callable ``hook(t0, y0, t1, y1)`` or None
    params : dict, JSON-serialisable description (for run metadata)
    arrays : dict of NumPy arrays that define the model beyond ``params`` (connectivity, targets)
    parts : dict or None
        What the model's functions bake in as constants, by name: its components (stimulus,
        synapse groups, channels) and sizes. The model's :attr:`key` is derived from them; ``None``:
        the model shares compiled loops with no other model object.
    """

    name: str
    initial_state: Dict[str, Any]
    derivatives: Callable[[Any, Any], Any]
    post_step: Optional[Callable[..., Any]] = None
    params: Dict[str, Any] = field(default_factory=dict)
    arrays: Dict[str, np.ndarray] = field(default_factory=dict)
    parts: Optional[Dict[str, Any]] = None

    @property
    def key(self) -> Optional[Hashable]:
        """The model's *structure* as a hashable key, derived from :attr:`parts` and the code of its
        derivative and post-step functions (:func:`psst_helpers.components.fingerprint`); computed
        anew on every call, so a part changed after the model was built is noticed. Two models with
        the same key differ only in their start state and inputs, so :func:`simulate` runs both with
        one compiled loop. ``None`` when the model has no :attr:`parts`."""
        if self.parts is None:
            return None
        code = [_code_of(self.derivatives), _code_of(self.post_step)]
        return fingerprint(self.parts, code)

    def structure(self) -> Dict[str, Any]:
        """The model's structure as a readable, JSON-friendly dict (its parts, described by
        :func:`psst_helpers.components.describe`); run folders store it and name what differs."""
        return {"model": self.name, **({} if self.parts is None else describe(self.parts))}

    def state(self, dtype: Any = np.float64) -> Dict[str, Any]:
        """A copy of the start state in ``dtype`` (float32 or float64); times stay float64."""
        return cast_state(self.initial_state, dtype)


def _code_of(fn: Any) -> Any:
    """The code of a model function without its closure's values (those are the model's parts)."""
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return None if code is None else _plain(code.co_code, set())


def cast_state(y: Dict[str, Any], dtype: Any) -> Dict[str, Any]:
    """``y`` with every entry in ``dtype`` except the time entries (:data:`TIME_ENTRIES`, float64)."""
    dtype = np.dtype(dtype)
    if dtype not in _SUPPORTED:
        raise InputDtypeError(f"dtype must be float32 or float64, got {dtype} (float16 cannot hold a membrane state "
                        "or a spike time: about 3 significant digits, largest value 65504)")
    out = tree_map(lambda x: np.array(x, dtype=dtype), y)
    if isinstance(out, dict):
        for k in TIME_ENTRIES:
            if k in out:
                out[k] = np.array(y[k], dtype=np.float64)
    return out


#: simulate()'s compiled integrators, by model structure and options (least recently used dropped).
_INTEGRATORS: "OrderedDict[Hashable, Any]" = OrderedDict()
_MAX_INTEGRATORS = 16
#: Bumped by :func:`clear_compiled`; part of every cache key, so per-model caches are dropped too.
_GENERATION = [0]


def clear_compiled() -> None:
    """Forget every compiled loop :func:`simulate` keeps.

    Called when this process connects to a cluster (:mod:`psst_helpers.distributed`): a function
    traced before the connection stays bound to the local devices, and the workers could not run it.
    """
    _INTEGRATORS.clear()
    _GENERATION[0] += 1


def integrator_for(model: Model, *, method: str = "rk4", record: Any = ("V",), every: int = 1, xla: bool = True):
    """The compiled :class:`~psst_helpers.Integrator` that :func:`simulate` uses for ``model`` and these options.

    It is shared by every model with the same :attr:`Model.key`; its ``traces`` attribute counts how
    often the loop was traced (once per state dtype and grid length), e.g. to check that a sweep
    compiled once.
    """
    from .solvers.tf_solver import Integrator

    rec = tuple(record) if isinstance(record, (list, tuple)) else record
    options = (method, rec, every, xla, _GENERATION[0])
    if model.key is None:  # no structure key: share only with calls on this very object
        cache = model.__dict__.setdefault("_integrators", {})
        if options not in cache:
            cache[options] = Integrator(model.derivatives, method=method, record=record, every=every,
                                        post_step=model.post_step, xla=xla)
        return cache[options]
    key = (model.key, options)
    if key in _INTEGRATORS:
        _INTEGRATORS.move_to_end(key)
        return _INTEGRATORS[key]
    integ = Integrator(model.derivatives, method=method, record=record, every=every,
                       post_step=model.post_step, xla=xla)
    _INTEGRATORS[key] = integ
    while len(_INTEGRATORS) > _MAX_INTEGRATORS:
        _INTEGRATORS.popitem(last=False)
    return integ


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
    progress: Optional[bool] = False,
) -> Any:
    """Integrate ``model`` on the grid ``t`` (ms); by default record V at every step.

    ``backend="numpy"`` uses :func:`psst_helpers.odeint_np`, ``"tensorflow"`` the compiled
    :func:`psst_helpers.odeint`. Results are time-major (``[len(t[::every]), ...]``); the
    TensorFlow backend's are converted to NumPy arrays.

    The TensorFlow backend compiles once per model structure (:attr:`Model.key`), dtype, grid
    length and options, and keeps the compiled loop for the next call: a second run of the same
    model, or of a model that differs only in its inputs (injected currents, conductances,
    stimulus amplitudes, start state), costs no compilation. ``y0`` replaces the model's start
    state (same structure; cast to ``dtype``, times kept in float64).

    ``progress=True`` shows a progress bar of simulated ms (``None``: only where a person is
    watching, a terminal or a notebook with widgets). The run is then made in about
    :data:`PROGRESS_PIECES` pieces of equal length, each continuing from the previous one's final
    state: the result is the same, to the bit, as one uninterrupted run, and the pieces share one
    compiled loop (plus one for a shorter last piece, when the steps do not divide evenly).
    """
    start = model.state(dtype) if y0 is None else cast_state(y0, dtype)
    if backend == "numpy":
        from .solvers import odeint_np

        return odeint_np(model.derivatives, start, t, method=method, record=record, every=every,
                         post_step=model.post_step, return_final=return_final)
    if backend not in ("tensorflow", "tf"):
        raise ParameterError(f"backend must be 'numpy' or 'tensorflow', got {backend!r}")
    integ = integrator_for(model, method=method, record=record, every=every, xla=xla)
    bar = None
    if progress is not False:
        from ._progress import progress_bar
        from .solvers.checks import check_time_grid

        t64 = check_time_grid(t)  # the whole grid, so that an error names its index in t, not in a piece
        if t64.size > 2:
            bar = progress_bar(progress, total=round(float(t64[-1] - t64[0]), 6), unit="ms", desc="simulated",
                               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} ms [{elapsed}<{remaining}]")
    if bar is None:
        out = integ(start, t, return_final=return_final)
        return tree_map(lambda x: x.numpy(), out)
    with bar:
        records, final = _in_pieces(integ, start, t64, every, bar)
    return (records, final) if return_final else records


#: ``simulate(..., progress=True)`` runs in about this many pieces (one bar update each).
PROGRESS_PIECES = 20


def _in_pieces(integ: Any, state: Any, t: np.ndarray, every: int, bar: Any):
    """Run ``integ`` over ``t`` in pieces whose lengths are multiples of ``every``; stitched records, final state."""
    from .errors import NonFiniteStateError
    from .solvers.numpy_solver import nonfinite_message

    n_steps = t.size - 1
    per_piece = max(every, int(round(n_steps / PROGRESS_PIECES / every)) * every)
    pieces = []
    for a in range(0, n_steps, per_piece):
        b = min(a + per_piece, n_steps)
        try:
            rec, state = integ(state, t[a:b + 1], return_final=True)
        except NonFiniteStateError as err:  # name the step of the whole grid, keep what was recorded before it
            partial = _stitch(pieces + [tree_map(lambda x: x[1:], err.partial)]) if pieces else err.partial
            raise NonFiniteStateError(nonfinite_message(err.variable, a + err.step, err.t, float(t[a + err.step + 1])),
                                      step=a + err.step, t=err.t, variable=err.variable, partial=partial) from None
        pieces.append(rec if not pieces else tree_map(lambda x: x[1:], rec))
        bar.update(round(float(t[b] - t[a]), 6))
    return _stitch(pieces), tree_map(lambda x: x.numpy(), state)


def _stitch(pieces: Sequence[Any]) -> Any:
    """Records of consecutive pieces (same structure) joined along time, as NumPy arrays."""
    leaves = [flatten(p)[0] for p in pieces]
    return unflatten(flatten(pieces[0])[1], [np.concatenate([np.asarray(ls[i]) for ls in leaves])
                                             for i in range(len(leaves[0]))])


# --- all-Hodgkin-Huxley networks (chapters 3 and 4) ------------------------------------------------

def network_inputs(synapses: Sequence[SynapseGroup], stimulus: Optional[Stimulus] = None,
                   channels: Sequence[Channel] = (), n: int = 0, **extra: Any) -> Dict[str, Any]:
    """The ``"par"`` entry of a network state: per-postsynaptic g and E of each synapse group, the
    stimulus amplitudes (``"stim"``), g and E of each added channel on each of the ``n`` neurons
    (``"channels"``), and any ``extra`` parameter arrays (e.g. ``membrane``)."""
    par: Dict[str, Any] = {k: tree_map(lambda x: np.asarray(x, float), v) for k, v in extra.items()}
    if synapses:
        par["syn"] = {s.kind: {"g": s.g.copy(), "E": s.E.copy()} for s in synapses}
    stim = stimulus.amplitudes() if stimulus is not None else {}
    if stim:
        par["stim"] = stim
    if channels:
        par["channels"] = {c.name: {"g": np.full(n, float(c.g)), "E": np.full(n, float(c.E))} for c in channels}
    return par


def _network_state(V0: np.ndarray, I0: np.ndarray, extra: Dict[str, Any], synapses: Sequence[SynapseGroup],
                   par: Dict[str, Any]):
    n = V0.size
    state = {"V": V0.astype(float), "I_ext": I0.astype(float), "t_fire": np.full(n, NEVER_FIRED),
             "spikes": np.zeros(n), **extra}
    if synapses:
        state["syn"] = {s.kind: s.initial_state() for s in synapses}
    state["par"] = par
    return state


def _check_groups(synapses: Sequence[SynapseGroup], n: int) -> None:
    for s in synapses:
        if not isinstance(s, SynapseGroup):
            raise ParameterError(f"synapses must be SynapseGroup objects, got {type(s).__name__}")
    kinds = [s.kind for s in synapses]
    if len(set(kinds)) != len(kinds):
        raise ParameterError(f"give at most one SynapseGroup per kind, got {kinds}")
    for s in synapses:
        if s.n_neurons != n or s.n_post != n:
            raise ConnectivityError(f"a {s.kind} SynapseGroup is built for {s.n_neurons} -> {s.n_post} neurons, "
                             f"the network has {n}")


def _nones(tree: Any) -> Any:
    """The structure of ``tree`` with every leaf None (the derivative of entries that are held)."""
    leaves, d = flatten(tree)
    return unflatten(d, [None] * len(leaves))


def _synaptic(y: Dict[str, Any], synapses: Sequence[SynapseGroup], t: Any, t_fire: str = "t_fire"):
    """Total synaptic current into each neuron and the open-fraction derivatives.

    ``t_fire`` names the state entry holding the presynaptic neurons' last spike times (a block of
    a partitioned network keeps the whole network's in ``"t_fire_net"``); g and E come from the
    state's ``par["syn"]``.
    """
    V = y["V"]
    I_syn = 0.0
    dsyn = {}
    for s in synapses:
        O = y["syn"][s.kind]
        dsyn[s.kind] = s.derivative(O, V, y[t_fire], t)
        gE = y["par"]["syn"][s.kind]
        I_syn = I_syn + s.current(O, V, gE["g"], gE["E"])
    return I_syn, dsyn


def hh_derivatives(synapses: Sequence[SynapseGroup], params: Dict[str, float] = nrn.HH, *,
                   t_fire: str = "t_fire", held: Sequence[str] = ("I_ext", "t_fire", "spikes"),
                   channels: Sequence[Channel] = ()) -> Callable:
    """The derivative function of an HH network state (``V, m, h, n, I_ext, ...``, ``syn``, ``par``).

    The membrane parameters are read from ``y["par"]["membrane"]`` when the state has them (the
    network builders put them there, so they are inputs of the compiled loop), else from
    ``params``. ``held`` names the entries that are not integrated (their derivative is None);
    ``t_fire`` the entry with the presynaptic spike times (see :func:`_synaptic`). ``channels``
    are added currents (:class:`psst_helpers.channels.Channel`) with gates in ``y["channels"]``
    and g, E in ``y["par"]["channels"]``.
    """

    def derivatives(y: Dict[str, Any], t: Any) -> Dict[str, Any]:
        p = y["par"].get("membrane", params) if "par" in y else params
        V, m, h, ng = y["V"], y["m"], y["h"], y["n"]
        I_Na, I_K, I_L = nrn.hh_currents(V, m, h, ng, p)
        dm, dh, dn = nrn.hh_gate_derivatives(V, m, h, ng)
        I_ion = I_Na + I_K + I_L
        out = {"m": dm, "h": dh, "n": dn, **{k: None for k in held}}
        if channels:
            out["channels"] = {}
            for c in channels:
                gates, gE = y["channels"][c.name], y["par"]["channels"][c.name]
                I_ion = I_ion + c.current(V, gates, gE["g"], gE["E"])
                out["channels"][c.name] = c.gate_derivatives(V, gates)
        if synapses:
            I_syn, dsyn = _synaptic(y, synapses, t, t_fire)
            I_ion = I_ion + I_syn
            out["syn"] = dsyn
        out["V"] = (y["I_ext"] - I_ion) / p["C_m"]
        if "par" in y:
            out["par"] = _nones(y["par"])
        return out

    return derivatives


def _check_count(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError(f"{name} must be a positive whole number of neurons, got {n!r}")
    return int(n)


def hh_network(
    n: int,
    stimulus: Stimulus,
    synapses: Sequence[SynapseGroup] = (),
    *,
    V0: Any = -71.0,
    name: str = "hh_network",
    params: Dict[str, float] = nrn.HH,
    channels: Sequence[Channel] = (),
) -> Model:
    """n Hodgkin-Huxley neurons, optionally coupled by synapse groups.

    Equations: the book's model reference, section "Hodgkin-Huxley neuron" (book/models.md).

    Parameters
    ----------
    n : int
        Number of neurons.
    stimulus : Stimulus
        Injected current (uA/cm^2), see :mod:`psst_helpers.stimuli`.
    synapses : sequence of SynapseGroup
        At most one group per kind (e.g. "ach", "gaba", "gabab", or kinds of your own).
    V0 : float or array
        Start voltage (mV); gates start at 0.
    params : dict
        Membrane parameters (:data:`psst_helpers.neurons.HH`); kept in the state's ``par`` so a
        sweep over them compiles once.
    channels : sequence of Channel
        Currents added to every neuron (:class:`psst_helpers.channels.Channel`, e.g.
        :class:`~psst_helpers.channels.TransientK` or a class of your own), at most one per name.
        Their gates start at :meth:`Channel.start` of ``V0``; their g and E are inputs of the
        compiled loop (``par["channels"]``).
    """
    n = _check_count("n", n)
    if not isinstance(stimulus, Stimulus):
        raise ParameterError(f"stimulus must be a Stimulus object (psst_helpers.stimuli), got {type(stimulus).__name__}")
    if stimulus.n != n:
        raise ParameterError(f"the stimulus drives {stimulus.n} neurons, the network has {n}")
    _check_groups(synapses, n)
    channels = _check_channels(channels)
    membrane = nrn.check_params(params, nrn.HH, "HH membrane")
    V0 = np.asarray(V0, float)
    if V0.ndim and V0.size != n:
        raise ParameterError(f"V0 must be a number or one value per neuron ({n}), got shape {V0.shape}")
    V0 = np.broadcast_to(V0, (n,)).copy()
    I0 = np.asarray(stimulus(0.0, V0), float)
    gates: Dict[str, Any] = {"m": np.zeros(n), "h": np.zeros(n), "n": np.zeros(n)}
    if channels:
        gates["channels"] = {c.name: {k: np.asarray(v, float).copy() for k, v in c.start(V0).items()} for c in channels}
    state = _network_state(V0, I0, gates, synapses,
                           network_inputs(synapses, stimulus, channels, n, membrane=membrane))
    derivatives = hh_derivatives(synapses, membrane, channels=channels)

    desc = {"model": name, "n_neurons": n, "membrane": dict(membrane), "stimulus": stimulus.describe(),
            "synapses": [s.describe() for s in synapses]}
    if channels:
        desc["channels"] = [describe(c) for c in channels]
    arrays = {f"{s.kind}_pre": s.pre for s in synapses}
    arrays.update({f"{s.kind}_post": s.post for s in synapses})
    parts = {"builder": "hh_network", "n": n, "stimulus": stimulus, "synapses": list(synapses),
             "channels": list(channels)}
    return Model(name, state, derivatives, network_hook(stimulus), desc, arrays, parts)


def _check_channels(channels: Sequence[Channel]) -> Tuple[Channel, ...]:
    channels = tuple(channels)
    for c in channels:
        if not isinstance(c, Channel):
            raise ParameterError(f"channels must be Channel objects (psst_helpers.channels), got {type(c).__name__}")
        if not c.gates:
            raise ParameterError(f"channel {c.name!r} has no gates: a gate-less current belongs in the membrane")
        if c.reads or not c.carries_current:
            raise ParameterError(f"channel {c.name!r} reads other values of its cell {list(c.reads)} or carries no "
                                 "current: it belongs in a cell type (psst_helpers.channels.CellType)")
    names = [c.name for c in channels]
    if len(set(names)) != len(names):
        raise ParameterError(f"give each added channel its own name, got {names}")
    return channels


def single_neuron(I_inj: float = 5.0) -> Model:
    """One HH neuron with a constant current ``I_inj`` (uA/cm^2), start [-71, 0, 0, 0] (chapter 3)."""
    return hh_network(1, Constant([I_inj]), name="single_neuron")


def hh_population(I_inj: Any) -> Model:
    """Independent HH neurons, neuron i driven by the constant ``I_inj[i]`` (chapter 3's f-I curve)."""
    I_inj = np.atleast_1d(np.asarray(I_inj, float))
    return hh_network(I_inj.size, Constant(I_inj), name="hh_population")


def three_neuron_network() -> Model:
    """X1 -(ACh)-> X2 -(GABA_A)-> X3 with pulses into X1 (chapter 4; the book's model reference,
    section "Synapses: ACh and GABA_A", book/models.md)."""
    n = 3
    ach = SynapseGroup("ach", pre=[0], post=[1], n_neurons=n)
    gaba = SynapseGroup("gaba", pre=[1], post=[2], n_neurons=n)
    stim = Pulses(n, [(0, 100.0, 200.0, 2.5), (0, 300.0, 400.0, 5.0), (0, 500.0, 600.0, 7.5)])
    return hh_network(n, stim, [ach, gaba], name="three_neuron_network")


# --- the locust antennal lobe (chapter 6) -----------------------------------------------------------

#: Membrane parameters of projection neurons (PN) and local interneurons (LN):
#: the book's model reference, section "Locust antennal lobe" (book/models.md).
LOCUST: Dict[str, Dict[str, float]] = {
    "PN": {"g_K": 10.0, "E_K": -95.0, "g_L": 0.15, "E_L": -55.0, "g_KL": 0.05, "E_KL": -95.0,
           "g_Na": 100.0, "E_Na": 50.0, "g_A": 10.0, "E_A": -95.0},
    "LN": {"g_K": 10.0, "E_K": -95.0, "g_L": 0.15, "E_L": -50.0, "g_KL": 0.02, "E_KL": -95.0,
           "g_Ca": 3.0, "E_Ca": 140.0, "g_KCa": 0.3, "E_KCa": -90.0},
}


def locust_cell_types(pn_channels: Sequence[Channel] = (), ln_channels: Sequence[Channel] = ()
                      ) -> Tuple[CellType, CellType]:
    """The antennal lobe's projection neurons and local interneurons as cell types (:data:`LOCUST`'s values).

    PN: HH sodium ``Na`` and potassium ``K``, leak ``L``, transient K ``A``, K leak ``KL``. LN:
    calcium ``Ca``, HH potassium ``K``, Ca-dependent K ``KCa``, leak ``L``, K leak ``KL`` and the calcium
    pool that couples I_Ca to K(Ca) (:mod:`psst_helpers.channels`). The currents are summed in this
    order. ``pn_channels`` and ``ln_channels`` are appended to the PN's and the LN's channels.
    """
    P, L = LOCUST["PN"], LOCUST["LN"]
    pn = CellType("PN", [HHSodium(P["g_Na"], P["E_Na"]), HHPotassium(P["g_K"], P["E_K"]), Leak("L", P["g_L"], P["E_L"]),
                         TransientK(P["g_A"], P["E_A"]), Leak("KL", P["g_KL"], P["E_KL"]), *pn_channels])
    ln = CellType("LN", [CalciumCurrent(L["g_Ca"], L["E_Ca"]), HHPotassium(L["g_K"], L["E_K"]),
                         CalciumActivatedK(L["g_KCa"], L["E_KCa"]), Leak("L", L["g_L"], L["E_L"]),
                         Leak("KL", L["g_KL"], L["E_KL"]), CalciumPool("Ca"), *ln_channels])
    return pn, ln


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
    storage: str = "pre",
    synapses: Sequence[SynapseGroup] = (),
    pn_channels: Sequence[Channel] = (),
    ln_channels: Sequence[Channel] = (),
) -> Model:
    """The locust antennal lobe after Bazhenov et al. (2001): 90 PNs and 30 LNs.

    Equations and parameters: the book's model reference, section "Locust antennal lobe" (book/models.md).

    Random parts are drawn from ``np.random.default_rng(seed)`` in this order: the ACh matrix
    (PN -> LN, probability ``p_connect``), the GABA_A matrix (LN -> every neuron, no self-connection),
    the stimulated third of the neurons (``int(0.33 n)``), the 1 % multiplicative start noise. Any
    of them can be given explicitly instead (``C_ach``, ``C_gaba`` as 0/1 ``[post, pre]`` matrices,
    ``stimulated`` indices, a complete ``initial_state``) and is then used exactly.

    ``g_KL_jitter`` > 0 gives every neuron its own potassium-leak conductance,
    ``g_KL (1 + g_KL_jitter z)`` with z standard normal (clipped at zero), drawn after everything
    above; the K leak sets how excitable a cell is, so this is the chapter 6 exercise's
    "variability in neuron parameters". With 0 (the default) nothing extra is drawn.

    ``storage`` chooses the synapses' state (:class:`psst_helpers.synapses.SynapseGroup`): one open
    fraction per presynaptic neuron (``"pre"``, exact and fastest) or per synapse (``"synapse"``).

    ``synapses`` adds synapse groups of other kinds to the built-in ACh and GABA_A ones, each a
    :class:`~psst_helpers.synapses.SynapseGroup` over all ``n_pn + n_ln`` neurons (e.g. slow GABA_B
    inhibition from the LNs onto the PNs, ``SynapseGroup.from_matrix("gabab", C)``, or a kind of
    your own); at most one group per kind, and none of kind ``"ach"`` or ``"gaba"``. Their g and E
    are inputs of the compiled loop like the built-in groups' (``par["syn"][kind]``). ``stimulus``
    may be any :class:`~psst_helpers.stimuli.Stimulus` driving ``n_pn + n_ln`` neurons.

    The two cell types are configurations of channels (:func:`locust_cell_types`).
    ``pn_channels`` and ``ln_channels`` give the PNs or the LNs further channels
    (:class:`psst_helpers.channels.Channel`, e.g. a class of your own), each name once per cell type.
    Their gates start at :meth:`Channel.start` of the start voltage and live beside the cell's
    others under their state names (:meth:`Channel.state_names`, e.g. ``y["ln"]["wM"]`` for gate ``w``
    of a channel ``M``); their g and E are inputs of the compiled loop, ``par["membrane"]["LN"]["g_M"]``
    and ``["E_M"]``.

    State: ``V`` (all neurons, PNs first), ``pn`` = {m, h, n, mA, hA}, ``ln`` = {n, mCa, hCa, mKCa,
    Ca}, ``syn`` = {ach, gaba, and the kind of each added group}, plus ``I_ext``, ``t_fire``,
    ``spikes`` and the inputs ``par`` (see :func:`locust_derivatives`). The derivative is
    :func:`locust_derivatives`.
    """
    n_pn, n_ln = int(n_pn), int(n_ln)
    if n_pn < 0 or n_ln < 0 or n_pn + n_ln < 1:
        raise ParameterError(f"n_pn and n_ln must be non-negative whole numbers with at least one neuron, got {n_pn}, {n_ln}")
    if not 0.0 <= p_connect <= 1.0:
        raise ParameterError(f"p_connect is a probability in [0, 1], got {p_connect}")
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
    C_ach, C_gaba = check_connectivity("ach", C_ach), check_connectivity("gaba", C_gaba)
    for name, C in (("C_ach", C_ach), ("C_gaba", C_gaba)):
        if C.shape != (N, N):
            raise ConnectivityError(f"{name} must have shape ({N}, {N}) [post, pre], got {C.shape}")
    drawn_targets = np.sort(rng.choice(N, size=int(0.33 * N), replace=False))
    if stimulus is None:
        stimulus = LocustOdor(N, drawn_targets if stimulated is None else stimulated)
        stimulated = stimulus.targets
    else:
        if stimulus.n != N:
            raise ParameterError(f"the stimulus drives {stimulus.n} neurons, the network has {N}")
        stimulated = drawn_targets if stimulated is None else np.sort(np.asarray(stimulated, dtype=np.int64))

    g_ach = np.where(np.arange(N) < n_pn, 0.35, 0.3)  # 0.35 onto PNs is unused: no ACh synapse targets a PN
    ach = SynapseGroup.from_matrix("ach", C_ach, g=g_ach, E=ACH["E"], storage=storage)
    gaba = SynapseGroup.from_matrix("gaba", C_gaba, g=GABA_A["g"], E=GABA_A["E"], storage=storage)
    synapses = (ach, gaba, *synapses)
    _check_groups(synapses, N)

    pn_type, ln_type = locust_cell_types(pn_channels, ln_channels)
    V = np.full(N, -70.0)
    if initial_state is None:
        V = V * (1.0 + noise * rng.standard_normal(N))
        # the LNs' calcium starts at Ca0 with the same 1 % noise, drawn right after the voltages
        ln_noise = 1.0 + noise * rng.standard_normal(n_ln)
    g_KL = np.concatenate([np.full(n_pn, pn_type.parameters()["g_KL"]), np.full(n_ln, ln_type.parameters()["g_KL"])])
    if g_KL_jitter > 0:
        g_KL = np.clip(g_KL * (1.0 + g_KL_jitter * rng.standard_normal(N)), 0.0, None)
    membrane = {c.name: nrn.check_params({}, c.parameters(), c.name) for c in (pn_type, ln_type)}
    par = network_inputs(synapses, stimulus, membrane=membrane, g_KL=g_KL)

    if initial_state is None:
        extra = {"pn": pn_type.start(V[:n_pn]), "ln": ln_type.start(V[n_pn:])}
        extra["ln"]["Ca"] = extra["ln"]["Ca"] * ln_noise
        state = _network_state(V, np.asarray(stimulus(0.0, V), float), extra, synapses, par)
    else:
        state = tree_map(lambda x: np.array(x, dtype=float), initial_state)
        state.setdefault("par", par)
        for s_ in synapses:
            held = state.get("syn", {}).get(s_.kind, ())
            shapes = {np.shape(v) for v in held.values()} if isinstance(held, dict) else {np.shape(held)}
            got = shapes.pop() if len(shapes) == 1 else tuple(sorted(shapes))
            if got != (s_.state_size,):
                raise ParameterError(
                    f"initial_state['syn'][{s_.kind!r}] has shape {got}, but this network's {s_.kind} synapses "
                    f"keep {s_.state_size} open fractions (storage={storage!r}); build the state with the same storage")
        for key, cell in (("pn", pn_type), ("ln", ln_type)):
            missing = sorted(set(cell.variables()) - set(state.get(key, {})))
            missing += sorted(f"par['membrane'][{cell.name!r}][{k!r}]" for k in cell.parameters()
                              if k not in state["par"].get("membrane", {}).get(cell.name, {}))
            if missing:
                raise ParameterError(f"initial_state lacks {missing} of the {cell.name}s' channels; build it from a "
                                     "model with the same channels")

    derivatives = locust_derivatives(synapses, n_pn=n_pn, n_ln=n_ln, cell_types=(pn_type, ln_type))
    desc = {"model": "locust_antennal_lobe", "seed": seed, "n_pn": n_pn, "n_ln": n_ln, "p_connect": p_connect,
            "noise": noise, "g_KL_jitter": g_KL_jitter, "membrane": LOCUST, "stimulus": stimulus.describe(),
            "synapses": [s_.describe() for s_ in synapses], "explicit": explicit}
    if pn_channels or ln_channels:
        desc["added_channels"] = {"PN": [describe(c) for c in pn_channels], "LN": [describe(c) for c in ln_channels]}
    arrays = {"C_ach": C_ach, "C_gaba": C_gaba, "stimulated": np.asarray(stimulated), "g_KL": g_KL}
    arrays.update({f"C_{s_.kind}": s_.matrix() for s_ in synapses[2:]})
    parts = {"builder": "locust_antennal_lobe", "n_pn": n_pn, "n_ln": n_ln, "stimulus": stimulus,
             "synapses": list(synapses), "cell_types": [pn_type, ln_type]}
    return Model("locust_antennal_lobe", state, derivatives, network_hook(stimulus), desc, arrays, parts)


def locust_derivatives(synapses: Sequence[SynapseGroup], *, n_pn: int, n_ln: int,
                       cell_types: Optional[Tuple[CellType, CellType]] = None) -> Callable:
    """The derivative function of the locust antennal lobe (chapter 6; the book's model reference,
    section "Locust antennal lobe", book/models.md).

    PNs are neurons ``0 .. n_pn-1``, LNs the ``n_ln`` after them; ``cell_types`` are their
    :class:`~psst_helpers.channels.CellType` (default :func:`locust_cell_types`), whose ionic currents
    and state derivatives it sums with the synaptic currents. The state holds ``V`` (all neurons),
    ``pn`` and ``ln`` (the state of each cell type's channels), ``syn`` (one open fraction per
    presynaptic neuron and kind, or per synapse), the held ``I_ext``, ``t_fire``, ``spikes``, and
    ``par`` with the membrane parameters of each cell type (``PN``, ``LN``: ``g_<channel>``,
    ``E_<channel>``), every neuron's K-leak conductance ``g_KL`` (used in place of the cell type's)
    and the synaptic g and E. C_m = 1 uF/cm^2.
    """
    cells = (("pn", 0, n_pn), ("ln", n_pn, n_pn + n_ln))
    types = locust_cell_types() if cell_types is None else tuple(cell_types)

    def derivatives(y: Dict[str, Any], t: Any) -> Dict[str, Any]:
        xp = ops_for(y["V"])
        V, par = y["V"], y["par"]
        g_KL = par["g_KL"]
        out: Dict[str, Any] = {}
        I_cells = []
        for (key, lo, hi), cell in zip(cells, types):
            p = {**par["membrane"][cell.name], "g_KL": g_KL[lo:hi]}
            I_ion, out[key] = cell.derivatives(V[lo:hi], y[key], p)
            I_cells.append(I_ion)
        I_syn, dsyn = _synaptic(y, synapses, t)
        dV = y["I_ext"] - xp.concat(I_cells, 0) - I_syn  # C_m = 1
        return {"V": dV, **out, "syn": dsyn, "I_ext": None, "t_fire": None, "spikes": None, "par": _nones(par)}

    return derivatives
