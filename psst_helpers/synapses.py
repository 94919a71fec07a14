"""Kinetic synapses (chapter 4): one open fraction per presynaptic neuron, or per synapse.

A :class:`SynapseGroup` holds one kind of synapse (cholinergic or fast GABA_A) between the
neurons of a network, given as two index arrays ``pre`` and ``post`` (or a 0/1 matrix
``C[post, pre]``). Each synapse has an open fraction ``O`` with

    dO/dt = alpha (1 - O) T - beta O,

where the transmitter ``T`` comes from the presynaptic neuron (its voltage for GABA_A, its last
spike time for ACh), and the current into neuron i is ``g_i (V_i - E_i) sum_{synapses onto i} O``
(g and E belong to the postsynaptic neuron).

**Why one state per presynaptic neuron is exact** (``storage="pre"``, the default). dO/dt depends
on the synapse only through T, which is the presynaptic neuron's, and alpha and beta are shared by
every synapse of a kind. So all synapses leaving neuron j that start at the same O obey the same
equation from the same start: they have the same ``O_j(t)`` forever. One open fraction per
presynaptic neuron is then the whole state, and the current is a matrix-vector product,

    I_syn,i = g_i (V_i - E_i) sum_j C[i, j] O_j.

The group's state has one entry per *source* (a neuron with at least one outgoing synapse of this
kind), in increasing neuron order (:attr:`SynapseGroup.sources`).

**How the product is computed** (``product``). ``"dense"`` stores ``C`` restricted to the sources,
an ``[n_post, n_sources]`` block, and multiplies it with O: no index arithmetic, the fastest
choice while the block is small. ``"sparse"`` gathers O per synapse and sums per postsynaptic
neuron (cost and memory grow with the number of synapses S, not with n^2). Measured on a 2-core
CPU (Intel Xeon, TF 2.21), one product per iteration of an XLA while loop, float64, time per product,
random connectivity with probability p (one run on a shared machine):

============================  ==========  =========  =========
network                        synapses    dense      sparse
============================  ==========  =========  =========
120 neurons, p = 0.2           2,866       2.7 us     13.5 us
1,000 neurons, p = 0.02        20,010      703 us     44.5 us
100,000 neurons, 20 per cell   2,000,000   (80 GB)    4.4 ms
============================  ==========  =========  =========

``"auto"`` (the default) takes the dense block while it has at most ``16384 + 4 S`` entries: a
dense entry costs about a quarter of a sparse synapse (0.2-0.9 ns against 2-5 ns in the runs
above) and the sparse form has a fixed cost of some microseconds. So the locust's blocks (120 x 90
and 120 x 30) are dense, and a 1,000-neuron network with 2 % connectivity is not (sparse for GABA_A,
event-driven for ACh, below).

**Event-driven sum** (``product="event"``; ``"auto"`` picks it for cholinergic groups too large for
the dense block). The ACh transmitter is exactly zero except for ``t_max`` ms after each presynaptic
spike, so at any moment only a few sources release (in chapter 4's 1,000-neuron network with both
kinds of synapses, about 9 of 800). The group then carries, besides ``O_j``, the summed open
fraction onto each postsynaptic neuron, ``s_i = sum_j C[i, j] O_j``, integrated with the same RK stages from

    ds_i/dt = alpha sum_j C[i, j] (1 - O_j) T_j - beta s_i,

whose sum visits only the releasing sources' synapses instead of all S (exact: it is the sum of
the dO_j/dt). Its state is ``[O of each source, s of each postsynaptic neuron]``. In a compiled
loop shapes are fixed: the sources that fired within ``t_delay + t_max`` of the latest firing are
gathered into :data:`EVENT_CAPACITY` slots — from the spike times alone, which do not change during
a step, so once per step rather than once per RK stage — and each evaluation sums over their
synapses; when more are candidates at once, that evaluation sums over every synapse (exact either
way, :meth:`psst_helpers.backend.TFOps.recent_columns_sum`). In chapter 4's 1,000-neuron network
(about 37 Hz per neuron) 8.7 of the 800 excitatory neurons release on average; in its
excitation-only variant, whose neurons fire in synchronous volleys, far more than 32 release at once
during each volley. ``s`` and ``C O`` differ only by rounding, and a difference decays at the
rate beta. Measured on that network (1,000 neurons, 20,000 synapses, 50 ms, float64, idle 2-core
Intel Xeon, TF 2.21, median of 3, one run), time per step: the neurons without synapses 96 us;
with ACh event-driven 163 us (``"sparse"``: 282 us); with GABA_A (sparse) 122 us; with both 201 us.

**Per-synapse state** (``storage="synapse"``) keeps one O per synapse, gathers the transmitter per
synapse and sums per postsynaptic neuron. It is needed only when the synapses of one presynaptic
neuron differ: different start values (``O0``), per-synapse parameters, or plasticity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional, Tuple, Union

import numpy as np

from .backend import ops_for
from .components import Component
from .errors import ConnectivityError, ParameterError

__all__ = ["SynapseKind", "FirstOrderKind", "PulsedRelease", "Cholinergic", "GABAA", "GABAB", "SynapseGroup", "ACH", "GABA_A",
           "GABA_B", "KINDS", "PULSE_EDGE_TOLERANCE_MS", "DENSE_MAX_ENTRIES", "DENSE_PER_SYNAPSE", "EVENT_CAPACITY", "check_connectivity"]


# --- synapse kinds: what one synapse does ------------------------------------------------------------

class SynapseKind(Component):
    """What a synapse of one kind does: its transmitter, its kinetics and the conductance it opens.

    A kind is one class; a reader adds a new one (NMDA, a facilitating synapse) in their own code by
    subclassing this and defining the four methods below. Parameters are attributes (plain numbers);
    ``g`` and ``E`` are only the defaults of :class:`SynapseGroup`'s per-postsynaptic inputs.

    Attributes
    ----------
    name : str
        Short name, the group's key in the network state (``y["syn"][name]``).
    variables : tuple of str
        The state variables of one synapse (one per presynaptic neuron with ``storage="pre"``), e.g.
        ``("O",)``; a kind with several keeps them as a dict in the state.
    pulse : tuple (delay_ms, duration_ms) or None
        Set when the transmitter is exactly zero except ``delay < t - t_fire < delay + duration``
        after a presynaptic spike; :class:`SynapseGroup` can then sum over the releasing sources
        only (``product="event"``).
    """

    name: ClassVar[str] = "synapse"
    variables: ClassVar[Tuple[str, ...]] = ("O",)
    inputs = ("g", "E")
    g: float = 0.0
    E: float = 0.0

    @property
    def pulse(self) -> Optional[Tuple[float, float]]:
        return None

    def transmitter(self, V: Any, t_fire: Any, t: Any) -> Any:  # pragma: no cover - abstract
        """Transmitter released by each presynaptic neuron (``V`` mV, ``t_fire`` and ``t`` ms), in V's dtype."""
        raise NotImplementedError

    def derivatives(self, x: Dict[str, Any], T: Any) -> Dict[str, Any]:  # pragma: no cover - abstract
        """d/dt of each variable in ``x`` (a dict by :attr:`variables`) given the transmitter ``T`` (1/ms)."""
        raise NotImplementedError

    def conductance(self, x: Dict[str, Any]) -> Any:
        """The fraction of the maximal conductance one synapse opens (dimensionless); by default its
        first variable. It is summed over the synapses onto each postsynaptic neuron."""
        return x[self.variables[0]]

    def start(self, O0: Any) -> Dict[str, Any]:
        """Start values of the variables for given start open fractions (by default: all variables at ``O0``
        for the first, 0 for the others)."""
        O0 = np.asarray(O0, float)
        return {v: (O0.copy() if i == 0 else np.zeros_like(O0)) for i, v in enumerate(self.variables)}

    def parameters(self) -> Dict[str, float]:
        """The kind's parameters by name (its public attributes, ``g`` and ``E`` included)."""
        names = [k for k in dir(type(self)) if not k.startswith("_") and isinstance(getattr(type(self), k, None),
                                                                               (int, float))]
        names = sorted(set(names) | {k for k in vars(self) if not k.startswith("_")})
        return {k: float(getattr(self, k)) for k in names if isinstance(getattr(self, k), (int, float, np.number))}

    def replace(self, **changes: Any) -> "SynapseKind":
        """A copy with some parameters changed (unknown names are refused)."""
        known = self.parameters()
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise ParameterError(f"unknown {self.name} synapse parameter(s) {unknown}; known: {sorted(known)}")
        return type(self)(**{**{k: v for k, v in vars(self).items() if not k.startswith("_")}, **changes})

    def _check(self) -> None:
        for k, v in self.parameters().items():
            if not np.isfinite(v):
                raise ParameterError(f"{self.name} synapse parameter {k} must be finite, got {v}")


@dataclass
class FirstOrderKind(SynapseKind):
    """A synapse with one open fraction O: ``dO/dt = alpha (1 - O) T - beta O``
    (the book's model reference, section "Synapses: ACh and GABA_A", book/models.md).

    Subclasses define :meth:`transmitter`; ``alpha`` is in 1/(mM ms) with T in mM, ``beta`` in 1/ms.
    """

    alpha: float = 10.0
    beta: float = 0.2

    def derivatives(self, x: Dict[str, Any], T: Any) -> Dict[str, Any]:
        O = x["O"]
        return {"O": self.alpha * (1.0 - O) * T - self.beta * O}


class PulsedRelease:
    """A transmitter pulse: ``A`` mM while ``0 < t - t_fire - t_delay < t_max`` (ms), else exactly 0.

    Mixed into a kind that has the attributes ``A``, ``t_max`` and ``t_delay`` (cholinergic, GABA_B); its
    :attr:`SynapseKind.pulse` then lets :class:`SynapseGroup` sum over the releasing sources only and
    :mod:`psst_helpers.partition` split the network between steps.

    **The edges never depend on rounding.** ``t_fire`` is a step's start time and RK stages are
    evaluated at a step's start, middle and end, so with ``t_max`` and ``t_delay`` multiples of the
    step ``h`` the pulse's edges fall exactly on stage times — where a plain float comparison is a coin
    toss (``t_fire + 0.3`` may round above or below the stage time it should equal: on the grid
    ``0.01 * arange(100001)``, 10.9 % of spike times put the end stage inside). Both edges are
    therefore decided with a margin of :data:`PULSE_EDGE_TOLERANCE_MS` inwards: a stage that lies on an
    edge, up to rounding, sees no transmitter, at either edge and at every spike time. With edges on the
    grid a pulse of ``N = t_max / h`` steps then covers the stages strictly inside it: all of ``N - 2``
    steps, and 5/6 (RK4's weights) of the steps at its two ends: ``(N - 1/3) h`` of transmitter for
    every spike. With ``t_delay = 0`` the first of those steps is the one in which the spike is detected,
    already taken when ``t_fire`` is set, so a network's synapse receives ``(N - 7/6) h``.
    """

    A: float
    t_max: float
    t_delay: float

    @property
    def pulse(self) -> Optional[Tuple[float, float]]:
        return (self.t_delay, self.t_max)

    def transmitter(self, V: Any, t_fire: Any, t: Any) -> Any:
        """``A`` where ``PULSE_EDGE_TOLERANCE_MS < t - t_fire - t_delay < t_max - PULSE_EDGE_TOLERANCE_MS``
        (times in ms, float64 as the network models keep them), else 0; in V's dtype (mM)."""
        xp = ops_for(V)
        since = (t - t_fire) - self.t_delay  # ms since the release began (t - t_fire first: exact on the grid)
        tol = PULSE_EDGE_TOLERANCE_MS
        active = (since > tol) & (since < self.t_max - tol)
        return xp.where(active, xp.const(self.A, V), xp.const(0.0, V))


@dataclass
class Cholinergic(PulsedRelease, FirstOrderKind):
    """Cholinergic (excitatory) synapse: T = ``A`` mM while ``0 < t - t_fire - t_delay < t_max`` (ms), the
    edges decided with a margin so that they never depend on rounding (:class:`PulsedRelease`)."""

    name: ClassVar[str] = "ach"
    alpha: float = 10.0
    beta: float = 0.2
    g: float = 0.35
    E: float = 0.0
    A: float = 0.5
    t_max: float = 0.3
    t_delay: float = 0.0

    def __post_init__(self) -> None:
        self._check()


@dataclass
class GABAA(FirstOrderKind):
    """Fast GABA_A (inhibitory) synapse: T = ``1 / (1 + exp(-(V_pre - V0)/sigma))`` (graded by the presynaptic voltage)."""

    name: ClassVar[str] = "gaba"
    alpha: float = 10.0
    beta: float = 0.16
    g: float = 0.8
    E: float = -70.0
    V0: float = -20.0
    sigma: float = 1.5

    def __post_init__(self) -> None:
        self._check()

    def transmitter(self, V: Any, t_fire: Any, t: Any) -> Any:
        xp = ops_for(V)
        return 1.0 / (1.0 + xp.exp(-(V - self.V0) / self.sigma))


@dataclass
class GABAB(PulsedRelease, SynapseKind):
    """Slow GABA_B (inhibitory) synapse with a G-protein second messenger (Destexhe et al. 1996).

    Receptors r (fraction bound, dimensionless) and G-protein s (uM) of each presynaptic neuron::

        dr/dt = K1 T (1 - r) - K2 r,     ds/dt = K3 r - K4 s,
        I = g s^n / (s^n + Kd) (V - E),

    with T = ``A`` mM for ``t_max`` ms after a presynaptic spike (delayed by ``t_delay``). The
    conductance is a nonlinear function of s, but of the presynaptic neuron's s alone, so one
    state per presynaptic neuron stays exact.
    """

    name: ClassVar[str] = "gabab"
    variables: ClassVar[Tuple[str, ...]] = ("r", "s")
    K1: float = 0.09
    K2: float = 0.0012
    K3: float = 0.18
    K4: float = 0.034
    Kd: float = 100.0
    n: float = 4.0
    g: float = 0.2
    E: float = -95.0
    A: float = 0.5
    t_max: float = 0.3
    t_delay: float = 0.0

    def __post_init__(self) -> None:
        self._check()

    def derivatives(self, x: Dict[str, Any], T: Any) -> Dict[str, Any]:
        r, s = x["r"], x["s"]
        return {"r": self.K1 * T * (1.0 - r) - self.K2 * r, "s": self.K3 * r - self.K4 * s}

    def conductance(self, x: Dict[str, Any]) -> Any:
        sn = x["s"] ** self.n
        return sn / (sn + self.Kd)

    def start(self, O0: Any) -> Dict[str, Any]:
        O0 = np.asarray(O0, float)
        return {"r": O0.copy(), "s": np.zeros_like(O0)}


#: The built-in kinds by name (``SynapseGroup("ach", ...)``).
KINDS: Dict[str, type] = {"ach": Cholinergic, "gaba": GABAA, "gabab": GABAB}

#: Parameters of the built-in kinds, as dicts (the book's model reference, sections "Synapses: ACh and GABA_A"
#: and "GABA_B synapse (slow inhibition)", book/models.md): rates 1/ms or 1/(mM ms), reversal mV,
#: transmitter pulse A (mM) for t_max ms after the presynaptic spike, delayed by t_delay ms.
ACH: Dict[str, float] = Cholinergic().parameters()
GABA_A: Dict[str, float] = GABAA().parameters()
GABA_B: Dict[str, float] = GABAB().parameters()

#: Margin (ms) by which a transmitter pulse's edges are moved inwards (:class:`PulsedRelease`), so that
#: a stage time on an edge is outside whatever the rounding. It must exceed the rounding of
#: ``t - t_fire`` (float64 times: a few units in the last place of t, 1e-9 ms at t = 1e7 ms, 3 hours)
#: and stay below half a step (stage times lie h/2 apart), so it holds for steps longer than 2e-6 ms.
PULSE_EDGE_TOLERANCE_MS = 1e-6

#: ``product="auto"`` uses the dense block up to ``DENSE_MAX_ENTRIES + DENSE_PER_SYNAPSE * S`` entries.
DENSE_MAX_ENTRIES = 16384
DENSE_PER_SYNAPSE = 4
#: ``product="event"`` visits at most this many recently fired sources per evaluation in a compiled loop
#: (more: the sum over every synapse is taken for that evaluation). Each slot costs a scatter of one
#: source's synapses per RK stage, so the capacity is a trade: 32 is between three and four times the 8.7
#: sources releasing on average in chapter 4's E/I network. A group reads it when it is built (it is part of the group's structure).
EVENT_CAPACITY = 32


def kind_of(kind: Union[str, SynapseKind], params: Optional[Dict[str, float]] = None) -> SynapseKind:
    """The :class:`SynapseKind` for a built-in name or a kind object, with ``params`` overriding its parameters."""
    if isinstance(kind, str):
        if kind not in KINDS:
            raise ParameterError(f"unknown synapse kind {kind!r}; built in: {sorted(KINDS)}, or pass a SynapseKind "
                                 "object (a class of your own)")
        kind = KINDS[kind]()
    elif not isinstance(kind, SynapseKind):
        raise ParameterError(f"kind must be a name ({sorted(KINDS)}) or a SynapseKind object, got {type(kind).__name__}")
    return kind.replace(**params) if params else kind


def _indices(name: str, idx: Any, size: int) -> np.ndarray:
    """Integer neuron indices in [0, size), refusing floats with a fractional part and negatives."""
    arr = np.asarray(idx)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            bad = arr.ravel()[0] if not np.issubdtype(arr.dtype, np.number) else \
                arr.ravel()[np.flatnonzero(~np.isfinite(arr.ravel()) | (arr.ravel() != np.round(arr.ravel())))[0]]
            raise ConnectivityError(f"{name} must hold whole neuron indices, got {bad!r}")
    arr = arr.astype(np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)][0]
        raise ConnectivityError(f"{name} indices must lie in [0, {size}), got {bad} (negative indices are not "
                                "counted from the end here)")
    return arr


def _per_post(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size not in (1, n)):
        raise ParameterError(f"{name} must be a number or an array with one value per postsynaptic neuron "
                             f"({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite, got {arr.ravel()[~np.isfinite(arr.ravel())][0]}")
    return np.broadcast_to(arr.ravel() if arr.ndim else arr, (n,)).astype(float)


@dataclass
class SynapseGroup(Component):
    """The synapses of one kind between the neurons of a network (chapter 4).

    Parameters
    ----------
    kind : str or SynapseKind
        A built-in kind by name — ``"ach"`` (cholinergic: transmitter ``A`` for ``t_max`` ms after a
        presynaptic spike), ``"gaba"`` (fast GABA_A: transmitter a sigmoid of the presynaptic voltage),
        ``"gabab"`` (slow GABA_B with a second messenger) — or a :class:`SynapseKind` object, e.g.
        of a class of your own.
    pre, post : int arrays of equal length S
        Presynaptic and postsynaptic neuron of each synapse.
    n_neurons : int
        Number of neurons in the network (the length of V).
    g, E : float or array of length n_post
        Maximal conductance (mS/cm^2) and reversal potential (mV) of this synapse kind *on each
        postsynaptic neuron*; defaults from the kind. Inputs of the compiled loop.
    params : dict
        Parameters of the kind to change (e.g. ``{"t_delay": 1.0}``; unknown names are refused).
    n_post : int, optional
        Number of postsynaptic neurons when they are not the same ``n_neurons`` neurons: a block of
        a partitioned network (:mod:`psst_helpers.partition`) receives synapses from all
        ``n_neurons`` neurons (``pre`` indexes those) onto its own ``n_post`` neurons (``post``
        indexes those). Defaults to ``n_neurons``.
    storage : {"pre", "synapse"}
        One state per presynaptic neuron (exact, see the module text; the default) or per
        synapse (for synapses of one neuron that differ).
    product : {"auto", "dense", "sparse", "event"}
        How ``sum_j C[i, j] G_j`` is computed with ``storage="pre"`` (see the module text):
        ``"event"`` (first-order kinds with a pulsed transmitter, e.g. ACh) carries the sum in the
        state and updates it from the releasing sources alone; ``"auto"`` takes the dense block while
        it is small, else ``"event"`` where it applies and ``"sparse"`` otherwise.
    O0 : float or array of length S
        Start open fraction of each synapse (dimensionless, 0 to 1; for a kind with several
        variables, see :meth:`SynapseKind.start`). With ``storage="pre"`` the synapses of one
        presynaptic neuron must start equal.

    Attributes
    ----------
    kinetics : SynapseKind
        The kind object (transmitter, kinetics, conductance).
    kind : str
        Its name, the group's key in the network state (``y["syn"][kind]``).
    """

    inputs = ("g", "E", "O0", "params", "_O0")

    kind: Any
    pre: Any
    post: Any
    n_neurons: int
    g: Any = None
    E: Any = None
    params: Dict[str, float] = field(default_factory=dict)
    n_post: Optional[int] = None
    storage: str = "pre"
    product: str = "auto"
    O0: Any = 0.0

    def __post_init__(self) -> None:
        self.kinetics = kind_of(self.kind, self.params)
        self.kind = self.kinetics.name
        if self.storage not in ("pre", "synapse"):
            raise ParameterError(f"storage must be 'pre' (one state per presynaptic neuron) or 'synapse', "
                                 f"got {self.storage!r}")
        if self.product not in ("auto", "dense", "sparse", "event"):
            raise ParameterError(f"product must be 'auto', 'dense', 'sparse' or 'event', got {self.product!r}")
        eventable = (isinstance(self.kinetics, FirstOrderKind) and self.kinetics.pulse is not None
                     and self.storage == "pre")
        if self.product == "event" and not eventable:
            raise ParameterError(
                "product='event' needs a first-order kind whose transmitter is exactly zero between presynaptic "
                f"spikes (e.g. 'ach') and one state per presynaptic neuron (storage 'pre'); got kind {self.kind!r}, "
                f"storage {self.storage!r}: use product='sparse' or 'dense'")
        self.params = self.kinetics.parameters()
        if isinstance(self.n_neurons, bool) or int(self.n_neurons) != self.n_neurons or self.n_neurons < 1:
            raise ParameterError(f"n_neurons must be a positive whole number, got {self.n_neurons!r}")
        self.n_neurons = int(self.n_neurons)
        self.n_post = self.n_neurons if self.n_post is None else int(self.n_post)
        self.pre = _indices("pre", self.pre, self.n_neurons).astype(np.int32)
        self.post = _indices("post", self.post, self.n_post).astype(np.int32)
        if self.pre.shape != self.post.shape:
            raise ConnectivityError(f"pre and post must have the same length, got {self.pre.size} and {self.post.size}")
        n = self.n_post
        self.g = _per_post("g", self.kinetics.g if self.g is None else self.g, n)
        self.E = _per_post("E", self.kinetics.E if self.E is None else self.E, n)

        #: Presynaptic neurons with at least one synapse of this group, increasing.
        self.sources = np.unique(self.pre).astype(np.int32)
        self._col = np.searchsorted(self.sources, self.pre).astype(np.int32)  # source index of each synapse
        lo = int(self.sources[0]) if self.sources.size else 0
        self._src_slice: Optional[Tuple[int, int]] = (
            (lo, lo + self.sources.size)
            if self.sources.size and self.sources[-1] - lo + 1 == self.sources.size else None
        )
        O0 = np.asarray(self.O0, dtype=float)
        if O0.ndim and O0.size != self.size:
            raise ParameterError(f"O0 must be a number or one value per synapse ({self.size}), got shape {O0.shape}")
        O0 = np.broadcast_to(O0, (self.size,)).astype(float)
        if np.any(~np.isfinite(O0)) or np.any((O0 < 0) | (O0 > 1)):
            raise ParameterError("O0 (start open fractions) must lie in [0, 1]")
        if self.storage == "pre":
            first = np.zeros(self.sources.size)
            first[self._col[::-1]] = O0[::-1]  # the value of each source's first synapse
            differ = np.flatnonzero(O0 != first[self._col])
            if differ.size:
                s = int(differ[0])
                raise ParameterError(
                    f"synapses leaving neuron {int(self.pre[s])} start at different open fractions "
                    f"({first[self._col[s]]} and {O0[s]}); one state per presynaptic neuron cannot hold that: "
                    "use storage='synapse'")
            O0 = first
        entries = n * self.sources.size
        self.dense = self.storage == "pre" and (
            self.product == "dense"
            or (self.product == "auto" and entries <= DENSE_MAX_ENTRIES + DENSE_PER_SYNAPSE * self.size))
        #: ``product="event"``: the summed open fraction onto each postsynaptic neuron is part of the state
        self.event = eventable and not self.dense and self.product in ("event", "auto")
        #: slots of the event-driven sum (read from :data:`EVENT_CAPACITY` when the group is built)
        self.capacity = int(EVENT_CAPACITY) if self.event else 0
        if self.dense:
            M = np.zeros((n, self.sources.size))
            np.add.at(M, (self.post, self._col), 1.0)  # a repeated (post, pre) pair counts twice
            self._matrix = M
        start = self.kinetics.start(O0)
        if self.event:
            # the postsynaptic neurons of each source, one row per source, padded with n (a discarded row)
            per_source = np.bincount(self._col, minlength=self.sources.size)
            order = np.argsort(self._col, kind="stable")
            first = np.concatenate([[0], np.cumsum(per_source)[:-1]]).astype(np.int64)
            targets = np.full((self.sources.size + 1, max(1, int(per_source.max(initial=0)))), n, np.int32)
            targets[self._col[order], np.arange(self.size) - first[self._col[order]]] = self.post[order]
            self._targets = targets
            O_src = start["O"]
            start = {"O": np.concatenate([O_src, np.bincount(self.post, weights=O_src[self._col], minlength=n)])}
        self._O0 = start

    @classmethod
    def from_matrix(cls, kind: Any, C: Any, *, allow_self: bool = False, **kwargs: Any) -> "SynapseGroup":
        """Build from a 0/1 connectivity matrix ``C[post, pre]`` (only its ones become synapses).

        Entries other than 0 and 1 are refused (a weight belongs in ``g``), and so are ones on the
        diagonal (a neuron synapsing onto itself) unless ``allow_self=True``.
        """
        name = kind if isinstance(kind, str) else getattr(kind, "name", "synapse")
        C = check_connectivity(name, C, allow_self=allow_self)
        post, pre = np.nonzero(C)
        return cls(kind, pre=pre, post=post, n_neurons=C.shape[1], n_post=C.shape[0], **kwargs)

    @property
    def size(self) -> int:
        """Number of synapses S."""
        return int(self.pre.size)

    @property
    def state_size(self) -> int:
        """Length of each of this group's state variables: one per source (``storage="pre"``) or per
        synapse; with ``product="event"`` followed by one summed open fraction per postsynaptic neuron."""
        if self.storage == "synapse":
            return int(self.size)
        return int(self.sources.size + (self.n_post if self.event else 0))

    def initial_state(self) -> Any:
        """The start state in this group's layout (float64): an array for a kind with one variable,
        a dict of arrays (by :attr:`SynapseKind.variables`) for a kind with several."""
        if len(self.kinetics.variables) == 1:
            return next(iter(self._O0.values())).copy()
        return {k: v.copy() for k, v in self._O0.items()}

    def matrix(self) -> np.ndarray:
        """The dense 0/1 connectivity matrix ``C[post, pre]`` (for plots)."""
        C = np.zeros((self.n_post, self.n_neurons), dtype=np.int8)
        C[self.post, self.pre] = 1
        return C

    # -- the equations -------------------------------------------------------------------------
    def _of_sources(self, x: Any) -> Any:
        if self._src_slice is not None:
            lo, hi = self._src_slice
            return x[lo:hi]  # a slice: no gather when the sources are contiguous (the locust's PNs, LNs)
        return ops_for(x).gather(x, self.sources)

    def _variables(self, O: Any) -> Dict[str, Any]:
        return O if isinstance(O, dict) else {self.kinetics.variables[0]: O}

    def _state(self, d: Dict[str, Any]) -> Any:
        return d if len(self.kinetics.variables) > 1 else d[self.kinetics.variables[0]]

    def transmitter(self, V: Any, t_fire: Any, t: Any) -> Any:
        """Transmitter released by each neuron of ``V`` / ``t_fire``, in V's dtype (``t``, ``t_fire`` in ms)."""
        return self.kinetics.transmitter(V, t_fire, t)

    def derivative(self, O: Any, V: Any, t_fire: Any, t: Any) -> Any:
        """d/dt of this group's state (1/ms), in its layout.

        ``V`` and ``t_fire`` are the presynaptic side: all ``n_neurons`` neurons.
        """
        kin = self.kinetics
        if self.storage == "synapse":
            T = ops_for(V).gather(kin.transmitter(V, t_fire, t), self.pre)
            return self._state(kin.derivatives(self._variables(O), T))
        t_src = self._of_sources(t_fire)
        T = kin.transmitter(self._of_sources(V), t_src, t)
        if not self.event:
            return self._state(kin.derivatives(self._variables(O), T))
        # O = [open fraction of each source, summed open fraction onto each postsynaptic neuron s_i].
        # d s_i/dt = sum_j C[i, j] dO_j/dt = alpha sum_j C[i, j] (1 - O_j) T_j - beta s_i, and the sum
        # visits only the sources that fired within the transmitter's window (a few per step) instead
        # of every synapse.
        xp = ops_for(O)
        k = self.sources.size
        O_src, s = O[:k], O[k:]
        release = (1.0 - O_src) * T
        delay, duration = kin.pulse
        onto = xp.recent_columns_sum(release, t_src, t, delay, duration, self._targets,
                                     self._col, self.post, self.n_post, self.capacity)
        return xp.concat([kin.alpha * release - kin.beta * O_src, kin.alpha * onto - kin.beta * s])

    def total_open(self, O: Any) -> Any:
        """``sum_{synapses onto i} G`` for every postsynaptic neuron i, G the conductance fraction each
        synapse opens (its open fraction O for a first-order kind; dimensionless)."""
        if self.event:
            return O[self.sources.size:]
        G = self.kinetics.conductance(self._variables(O))
        xp = ops_for(G)
        if self.storage == "synapse":
            return xp.segment_sum(G, self.post, self.n_post)
        if self.dense:
            return xp.matvec(xp.const(self._matrix, G), G)
        return xp.segment_sum(xp.gather(G, self._col), self.post, self.n_post)

    def current(self, O: Any, V: Any, g: Any = None, E: Any = None) -> Any:
        """Synaptic current into every postsynaptic neuron, ``g (V - E) sum G`` (uA/cm^2, outward +).

        ``g`` and ``E`` default to the group's own; a network model passes them from its state so
        that a sweep over conductances reuses one compiled loop.
        """
        xp = ops_for(V)
        g = xp.const(self.g, V) if g is None else g
        E = xp.const(self.E, V) if E is None else E
        return g * (V - E) * self.total_open(O)

    def describe(self) -> Dict[str, Any]:
        """A JSON-friendly summary (for run metadata)."""
        return {"kind": self.kind, "n_synapses": self.size, "storage": self.storage,
                "product": "dense" if self.dense else "event" if self.event else "sparse", **self.params}


def check_connectivity(kind: str, C: Any, *, allow_self: bool = False) -> np.ndarray:
    """``C`` as an int8 0/1 matrix ``[post, pre]``, or a ConnectivityError naming the first bad entry."""
    arr = np.asarray(C)
    if arr.ndim != 2:
        raise ConnectivityError(f"the {kind} connectivity must be a 2-D [post, pre] matrix, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise ConnectivityError(f"the {kind} connectivity must be a 0/1 matrix, got dtype {arr.dtype}")
        bad = np.argwhere(~((arr == 0) | (arr == 1)))
        if bad.size:
            i, j = (int(x) for x in bad[0])
            raise ConnectivityError(
                f"the {kind} connectivity must hold only 0 and 1, but C[{i}, {j}] = {arr[i, j]!r}; "
                "a synaptic weight belongs in the conductance g, not in the connectivity matrix")
    if not allow_self and arr.shape[0] == arr.shape[1]:
        diag = np.flatnonzero(np.diagonal(arr))
        if diag.size:
            i = int(diag[0])
            raise ConnectivityError(f"the {kind} connectivity connects neuron {i} to itself (C[{i}, {i}] = 1); "
                             "pass allow_self=True if that is intended")
    return arr.astype(np.int8)
