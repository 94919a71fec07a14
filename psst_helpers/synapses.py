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
spike, so at any moment only a few sources release (in chapter 4's 1,000-neuron network, about 11
of 800). The group then carries, besides ``O_j``, the summed open fraction onto each postsynaptic
neuron, ``s_i = sum_j C[i, j] O_j``, integrated with the same RK stages from

    ds_i/dt = alpha sum_j C[i, j] (1 - O_j) T_j - beta s_i,

whose sum visits only the releasing sources' synapses instead of all S (exact: it is the sum of
the dO_j/dt). Its state is ``[O of each source, s of each postsynaptic neuron]``. In a compiled
loop shapes are fixed: the sources that fired within ``t_delay + t_max`` of the latest firing are
gathered into :data:`EVENT_CAPACITY` slots — from the spike times alone, which do not change during
a step, so once per step rather than once per RK stage — and each evaluation sums over their
synapses; when more are candidates at once, that evaluation sums over every synapse (exact either
way, :meth:`psst_helpers.backend.TFOps.recent_columns_sum`). In chapter 4's 1,000-neuron network
(44 Hz per neuron) 10.6 of the 800 excitatory neurons release on average, more than 32 during 0.19 %
of one simulated second. ``s`` and ``C O`` differ only by rounding, and a difference decays at the
rate beta. Measured on that network (1,000 neurons, 20,000 synapses, 50 ms, float64, idle 2-core
Intel Xeon, TF 2.21, median of 3, one run), time per step: the neurons without synapses 96 us;
with ACh event-driven 163 us (``"sparse"``: 282 us); with GABA_A (sparse) 122 us; with both 201 us.

**Per-synapse state** (``storage="synapse"``) keeps one O per synapse, gathers the transmitter per
synapse and sums per postsynaptic neuron. It is needed only when the synapses of one presynaptic
neuron differ: different start values (``O0``), per-synapse parameters, or plasticity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import hashlib

import numpy as np

from .backend import ops_for

__all__ = ["SynapseGroup", "ACH", "GABA_A", "DENSE_MAX_ENTRIES", "DENSE_PER_SYNAPSE", "EVENT_CAPACITY",
           "check_connectivity"]

#: Cholinergic (excitatory) synapse: rates (1/ms), reversal (mV), transmitter pulse A for t_max ms after
#: the presynaptic spike (delayed by t_delay ms). models.md section 2.
ACH: Dict[str, float] = {"alpha": 10.0, "beta": 0.2, "g": 0.35, "E": 0.0, "A": 0.5, "t_max": 0.3, "t_delay": 0.0}
#: Fast GABA_A (inhibitory) synapse: transmitter 1/(1 + exp(-(V_pre - V0)/sigma)).
GABA_A: Dict[str, float] = {"alpha": 10.0, "beta": 0.16, "g": 0.8, "E": -70.0, "V0": -20.0, "sigma": 1.5}

#: ``product="auto"`` uses the dense block up to ``DENSE_MAX_ENTRIES + DENSE_PER_SYNAPSE * S`` entries.
DENSE_MAX_ENTRIES = 16384
DENSE_PER_SYNAPSE = 4
#: ``product="event"`` visits at most this many recently fired sources per evaluation in a compiled loop
#: (more: the sum over every synapse is taken for that evaluation). Each slot costs a scatter of one
#: source's synapses per RK stage, so the capacity is a trade: 32 covers chapter 4's network 99.8 % of
#: the time.
EVENT_CAPACITY = 32


def _indices(name: str, idx: Any, size: int) -> np.ndarray:
    """Integer neuron indices in [0, size), refusing floats with a fractional part and negatives."""
    arr = np.asarray(idx)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            bad = arr.ravel()[0] if not np.issubdtype(arr.dtype, np.number) else \
                arr.ravel()[np.flatnonzero(~np.isfinite(arr.ravel()) | (arr.ravel() != np.round(arr.ravel())))[0]]
            raise ValueError(f"{name} must hold whole neuron indices, got {bad!r}")
    arr = arr.astype(np.int64).ravel()
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        bad = arr[(arr < 0) | (arr >= size)][0]
        raise ValueError(f"{name} indices must lie in [0, {size}), got {bad} (negative indices are not "
                         "counted from the end here)")
    return arr


def _per_post(name: str, value: Any, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size not in (1, n)):
        raise ValueError(f"{name} must be a number or an array with one value per postsynaptic neuron "
                         f"({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.ravel()[~np.isfinite(arr.ravel())][0]}")
    return np.broadcast_to(arr.ravel() if arr.ndim else arr, (n,)).astype(float)


@dataclass
class SynapseGroup:
    """One kind of synapse between the neurons of a network (chapter 4).

    Parameters
    ----------
    kind : {"ach", "gaba"}
        Cholinergic (transmitter ``A`` for ``t_max`` ms after a presynaptic spike) or fast GABA_A
        (transmitter a sigmoid of the presynaptic voltage).
    pre, post : int arrays of equal length S
        Presynaptic and postsynaptic neuron of each synapse.
    n_neurons : int
        Number of neurons in the network (the length of V).
    g, E : float or array of length n_post
        Maximal conductance (mS/cm^2) and reversal potential (mV) of this synapse kind *on each
        postsynaptic neuron*; defaults from ``params``.
    params : dict
        Kinetic constants, a subset of :data:`ACH` or :data:`GABA_A` (unknown names are refused).
    n_post : int, optional
        Number of postsynaptic neurons when they are not the same ``n_neurons`` neurons: a block of
        a partitioned network (:mod:`psst_helpers.partition`) receives synapses from all
        ``n_neurons`` neurons (``pre`` indexes those) onto its own ``n_post`` neurons (``post``
        indexes those). Defaults to ``n_neurons``.
    storage : {"pre", "synapse"}
        One open fraction per presynaptic neuron (exact, see the module text; the default) or per
        synapse (for synapses of one neuron that differ).
    product : {"auto", "dense", "sparse", "event"}
        How ``sum_j C[i, j] O_j`` is computed with ``storage="pre"`` (see the module text):
        ``"event"`` (ACh only) carries the sum in the state and updates it from the releasing
        sources alone; ``"auto"`` takes the dense block while it is small, else ``"event"`` for
        ACh and ``"sparse"`` for GABA_A.
    O0 : float or array of length S
        Start open fraction of each synapse (dimensionless, 0 to 1). With ``storage="pre"`` the
        synapses of one presynaptic neuron must start equal.
    """

    kind: str
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
        if self.kind not in ("ach", "gaba"):
            raise ValueError(f"unknown synapse kind {self.kind!r}; use 'ach' or 'gaba'")
        if self.storage not in ("pre", "synapse"):
            raise ValueError(f"storage must be 'pre' (one state per presynaptic neuron) or 'synapse', "
                             f"got {self.storage!r}")
        if self.product not in ("auto", "dense", "sparse", "event"):
            raise ValueError(f"product must be 'auto', 'dense', 'sparse' or 'event', got {self.product!r}")
        if self.product == "event" and (self.kind != "ach" or self.storage != "pre"):
            raise ValueError(
                "product='event' needs a transmitter that is exactly zero between presynaptic spikes "
                f"(kind 'ach') and one state per presynaptic neuron (storage 'pre'); got kind {self.kind!r}, "
                f"storage {self.storage!r}: use product='sparse' or 'dense'")
        defaults = ACH if self.kind == "ach" else GABA_A
        unknown = sorted(set(self.params or {}) - set(defaults))
        if unknown:
            raise ValueError(f"unknown {self.kind} synapse parameter(s) {unknown}; known: {sorted(defaults)}")
        self.params = {**defaults, **(self.params or {})}
        for k, v in self.params.items():
            if not np.isfinite(float(v)):
                raise ValueError(f"synapse parameter {k} must be finite, got {v}")
        if isinstance(self.n_neurons, bool) or int(self.n_neurons) != self.n_neurons or self.n_neurons < 1:
            raise ValueError(f"n_neurons must be a positive whole number, got {self.n_neurons!r}")
        self.n_neurons = int(self.n_neurons)
        self.n_post = self.n_neurons if self.n_post is None else int(self.n_post)
        self.pre = _indices("pre", self.pre, self.n_neurons).astype(np.int32)
        self.post = _indices("post", self.post, self.n_post).astype(np.int32)
        if self.pre.shape != self.post.shape:
            raise ValueError(f"pre and post must have the same length, got {self.pre.size} and {self.post.size}")
        n = self.n_post
        self.g = _per_post("g", self.params["g"] if self.g is None else self.g, n)
        self.E = _per_post("E", self.params["E"] if self.E is None else self.E, n)

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
            raise ValueError(f"O0 must be a number or one value per synapse ({self.size}), got shape {O0.shape}")
        O0 = np.broadcast_to(O0, (self.size,)).astype(float)
        if np.any(~np.isfinite(O0)) or np.any((O0 < 0) | (O0 > 1)):
            raise ValueError("O0 (start open fractions) must lie in [0, 1]")
        if self.storage == "pre":
            first = np.zeros(self.sources.size)
            first[self._col[::-1]] = O0[::-1]  # the value of each source's first synapse
            differ = np.flatnonzero(O0 != first[self._col])
            if differ.size:
                s = int(differ[0])
                raise ValueError(
                    f"synapses leaving neuron {int(self.pre[s])} start at different open fractions "
                    f"({first[self._col[s]]} and {O0[s]}); one state per presynaptic neuron cannot hold that: "
                    "use storage='synapse'")
            self._O0 = first
        else:
            self._O0 = O0
        entries = n * self.sources.size
        self.dense = self.storage == "pre" and (
            self.product == "dense"
            or (self.product == "auto" and entries <= DENSE_MAX_ENTRIES + DENSE_PER_SYNAPSE * self.size))
        #: ``product="event"``: the summed open fraction onto each postsynaptic neuron is part of the state
        self.event = self.storage == "pre" and not self.dense and (
            self.product == "event" or (self.product == "auto" and self.kind == "ach"))
        if self.dense:
            M = np.zeros((n, self.sources.size))
            np.add.at(M, (self.post, self._col), 1.0)  # a repeated (post, pre) pair counts twice
            self._matrix = M
        if self.event:
            # the postsynaptic neurons of each source, one row per source, padded with n (a discarded row)
            per_source = np.bincount(self._col, minlength=self.sources.size)
            order = np.argsort(self._col, kind="stable")
            first = np.concatenate([[0], np.cumsum(per_source)[:-1]]).astype(np.int64)
            targets = np.full((self.sources.size + 1, max(1, int(per_source.max(initial=0)))), n, np.int32)
            targets[self._col[order], np.arange(self.size) - first[self._col[order]]] = self.post[order]
            self._targets = targets
            self._O0 = np.concatenate([self._O0, np.bincount(self.post, weights=self._O0[self._col], minlength=n)])

    @classmethod
    def from_matrix(cls, kind: str, C: Any, *, allow_self: bool = False, **kwargs: Any) -> "SynapseGroup":
        """Build from a 0/1 connectivity matrix ``C[post, pre]`` (only its ones become synapses).

        Entries other than 0 and 1 are refused (a weight belongs in ``g``), and so are ones on the
        diagonal (a neuron synapsing onto itself) unless ``allow_self=True``.
        """
        C = check_connectivity(kind, C, allow_self=allow_self)
        post, pre = np.nonzero(C)
        return cls(kind, pre=pre, post=post, n_neurons=C.shape[1], n_post=C.shape[0], **kwargs)

    @property
    def size(self) -> int:
        """Number of synapses S."""
        return int(self.pre.size)

    @property
    def state_size(self) -> int:
        """Length of this group's state: one per source (``storage="pre"``) or per synapse; with
        ``product="event"`` followed by one summed open fraction per postsynaptic neuron."""
        if self.storage == "synapse":
            return int(self.size)
        return int(self.sources.size + (self.n_post if self.event else 0))

    def initial_state(self) -> np.ndarray:
        """The start open fractions, in this group's state layout (float64)."""
        return self._O0.copy()

    def matrix(self) -> np.ndarray:
        """The dense 0/1 connectivity matrix ``C[post, pre]`` (for plots)."""
        C = np.zeros((self.n_post, self.n_neurons), dtype=np.int8)
        C[self.post, self.pre] = 1
        return C

    def structure_key(self) -> Tuple[Any, ...]:
        """What a compiled loop bakes in: kind, layout, kinetics and connectivity (not g or E)."""
        digest = hashlib.sha1(self.pre.tobytes() + b"|" + self.post.tobytes()).hexdigest()
        kinetics = tuple(sorted((k, float(v)) for k, v in self.params.items() if k not in ("g", "E")))
        return (self.kind, self.storage, self.dense, self.event, self.n_neurons, self.n_post, digest, kinetics)

    # -- the equations -------------------------------------------------------------------------
    def _of_sources(self, x: Any) -> Any:
        if self._src_slice is not None:
            lo, hi = self._src_slice
            return x[lo:hi]  # a slice: no gather when the sources are contiguous (the locust's PNs, LNs)
        return ops_for(x).gather(x, self.sources)

    def transmitter(self, V: Any, t_fire: Any, t: Any) -> Any:
        """Transmitter T (dimensionless) released by each neuron of ``V`` / ``t_fire``, in V's dtype.

        ``t`` and ``t_fire`` (ms) are compared in their own dtype (float64 in the book's models,
        even when V is float32).
        """
        xp = ops_for(V)
        p = self.params
        if self.kind == "ach":
            start = t_fire + p["t_delay"]
            active = (t > start) & (t < start + p["t_max"])
            return xp.where(active, xp.const(p["A"], V), xp.const(0.0, V))
        return 1.0 / (1.0 + xp.exp(-(V - p["V0"]) / p["sigma"]))

    def derivative(self, O: Any, V: Any, t_fire: Any, t: Any) -> Any:
        """dO/dt = alpha (1 - O) T - beta O (1/ms), in this group's state layout.

        ``V`` and ``t_fire`` are the presynaptic side: all ``n_neurons`` neurons.
        """
        alpha, beta = self.params["alpha"], self.params["beta"]
        if self.storage == "synapse":
            T = ops_for(V).gather(self.transmitter(V, t_fire, t), self.pre)
            return alpha * (1.0 - O) * T - beta * O
        t_src = self._of_sources(t_fire)
        T = self.transmitter(self._of_sources(V), t_src, t)
        if not self.event:
            return alpha * (1.0 - O) * T - beta * O
        # O = [open fraction of each source, summed open fraction onto each postsynaptic neuron s_i].
        # d s_i/dt = sum_j C[i, j] dO_j/dt = alpha sum_j C[i, j] (1 - O_j) T_j - beta s_i, and the sum
        # visits only the sources that fired within the transmitter's window (a few per step) instead
        # of every synapse.
        xp = ops_for(O)
        k = self.sources.size
        O_src, s = O[:k], O[k:]
        release = (1.0 - O_src) * T
        onto = xp.recent_columns_sum(release, t_src, t, self.params["t_delay"], self.params["t_max"], self._targets,
                                     self._col, self.post, self.n_post, EVENT_CAPACITY)
        return xp.concat([alpha * release - beta * O_src, alpha * onto - beta * s])

    def total_open(self, O: Any) -> Any:
        """``sum_{synapses onto i} O`` for every postsynaptic neuron i (dimensionless)."""
        xp = ops_for(O)
        if self.storage == "synapse":
            return xp.segment_sum(O, self.post, self.n_post)
        if self.event:
            return O[self.sources.size:]
        if self.dense:
            return xp.matvec(xp.const(self._matrix, O), O)
        return xp.segment_sum(xp.gather(O, self._col), self.post, self.n_post)

    def current(self, O: Any, V: Any, g: Any = None, E: Any = None) -> Any:
        """Synaptic current into every postsynaptic neuron, ``g (V - E) sum O`` (uA/cm^2, outward +).

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
    """``C`` as an int8 0/1 matrix ``[post, pre]``, or a ValueError naming the first bad entry."""
    arr = np.asarray(C)
    if arr.ndim != 2:
        raise ValueError(f"the {kind} connectivity must be a 2-D [post, pre] matrix, got shape {arr.shape}")
    if arr.dtype != bool:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"the {kind} connectivity must be a 0/1 matrix, got dtype {arr.dtype}")
        bad = np.argwhere(~((arr == 0) | (arr == 1)))
        if bad.size:
            i, j = (int(x) for x in bad[0])
            raise ValueError(
                f"the {kind} connectivity must hold only 0 and 1, but C[{i}, {j}] = {arr[i, j]!r}; "
                "a synaptic weight belongs in the conductance g, not in the connectivity matrix")
    if not allow_self and arr.shape[0] == arr.shape[1]:
        diag = np.flatnonzero(np.diagonal(arr))
        if diag.size:
            i = int(diag[0])
            raise ValueError(f"the {kind} connectivity connects neuron {i} to itself (C[{i}, {i}] = 1); "
                             "pass allow_self=True if that is intended")
    return arr.astype(np.int8)
