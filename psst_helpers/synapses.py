"""Kinetic synapses stored sparsely (chapter 4): only existing synapses carry state.

A :class:`SynapseGroup` holds one kind of synapse (cholinergic or fast GABA_A) as two index
arrays, ``pre`` and ``post``; its state is one open fraction ``O`` per synapse with

    dO/dt = alpha (1 - O) T - beta O,

and the current into neuron i is ``g_i (V_i - E_i) sum_{synapses onto i} O`` (g and E belong to the
post neuron). Cost and memory grow with the number of synapses S, not with n^2: the transmitter is
gathered from the presynaptic neurons (S values) and the open fractions are summed per
postsynaptic neuron with a segment sum.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

from .backend import ops_for

__all__ = ["SynapseGroup", "ACH", "GABA_A"]

#: Cholinergic (excitatory) synapse: rates (1/ms), reversal (mV), transmitter pulse A for t_max ms after
#: the presynaptic spike (delayed by t_delay ms). models.md section 2.
ACH: Dict[str, float] = {"alpha": 10.0, "beta": 0.2, "g": 0.35, "E": 0.0, "A": 0.5, "t_max": 0.3, "t_delay": 0.0}
#: Fast GABA_A (inhibitory) synapse: transmitter 1/(1 + exp(-(V_pre - V0)/sigma)).
GABA_A: Dict[str, float] = {"alpha": 10.0, "beta": 0.16, "g": 0.8, "E": -70.0, "V0": -20.0, "sigma": 1.5}


@dataclass
class SynapseGroup:
    """One kind of synapse between the neurons of a network, stored as pre/post index arrays.

    Parameters
    ----------
    kind : {"ach", "gaba"}
        Cholinergic (transmitter released for ``t_max`` ms after a presynaptic spike) or fast
        GABA_A (transmitter a sigmoid of the presynaptic voltage).
    pre, post : int arrays of equal length S
        Presynaptic and postsynaptic neuron of each synapse.
    n_neurons : int
        Number of neurons in the network (the length of V).
    g, E : arrays of length n_post, or floats
        Maximal conductance (mS/cm^2) and reversal potential (mV) of this synapse kind *on each
        postsynaptic neuron*.
    params : dict
        Kinetic constants; defaults :data:`ACH` or :data:`GABA_A`.
    n_post : int, optional
        Number of postsynaptic neurons, when they are not the same ``n_neurons`` neurons: a block
        of a partitioned network (:mod:`psst_helpers.partition`) receives synapses from all
        ``n_neurons`` neurons (``pre`` indexes those) onto its own ``n_post`` neurons (``post``
        indexes those). Defaults to ``n_neurons``.
    """

    kind: str
    pre: np.ndarray
    post: np.ndarray
    n_neurons: int
    g: Any = None
    E: Any = None
    params: Dict[str, float] = field(default_factory=dict)
    n_post: Optional[int] = None

    def __post_init__(self) -> None:
        if self.kind not in ("ach", "gaba"):
            raise ValueError(f"unknown synapse kind {self.kind!r}; use 'ach' or 'gaba'")
        defaults = ACH if self.kind == "ach" else GABA_A
        self.params = {**defaults, **(self.params or {})}
        self.pre = np.asarray(self.pre, dtype=np.int32).ravel()
        self.post = np.asarray(self.post, dtype=np.int32).ravel()
        if self.pre.shape != self.post.shape:
            raise ValueError(f"pre and post must have the same length, got {self.pre.size} and {self.post.size}")
        self.n_post = self.n_neurons if self.n_post is None else int(self.n_post)
        for name, idx, size in (("pre", self.pre, self.n_neurons), ("post", self.post, self.n_post)):
            if idx.size and (idx.min() < 0 or idx.max() >= size):
                raise ValueError(f"{name} indices must lie in [0, {size}), got {idx.min()}..{idx.max()}")
        n = self.n_post
        self.g = np.broadcast_to(np.asarray(self.params["g"] if self.g is None else self.g, float), (n,)).copy()
        self.E = np.broadcast_to(np.asarray(self.params["E"] if self.E is None else self.E, float), (n,)).copy()

    @classmethod
    def from_matrix(cls, kind: str, C: Any, **kwargs: Any) -> "SynapseGroup":
        """Build from a 0/1 connectivity matrix ``C[post, pre]`` (only its non-zeros are kept)."""
        C = np.asarray(C)
        if C.ndim != 2 or C.shape[0] != C.shape[1]:
            raise ValueError(f"C must be a square [post, pre] matrix, got shape {C.shape}")
        post, pre = np.nonzero(C)
        return cls(kind, pre=pre, post=post, n_neurons=C.shape[0], **kwargs)

    @property
    def size(self) -> int:
        """Number of synapses S (the length of this group's state)."""
        return int(self.pre.size)

    def matrix(self) -> np.ndarray:
        """The dense 0/1 connectivity matrix ``C[post, pre]`` (for plots; never used to integrate)."""
        C = np.zeros((self.n_post, self.n_neurons), dtype=np.int8)
        C[self.post, self.pre] = 1
        return C

    def transmitter(self, V: Any, t_fire: Any, t: Any) -> Any:
        """Transmitter concentration T released by each *neuron* (length n_neurons).

        Computed once per presynaptic neuron and then gathered per synapse: n exp() calls instead
        of S, and the same values either way.
        """
        xp = ops_for(V)
        p = self.params
        if self.kind == "ach":
            start = t_fire + p["t_delay"]
            active = (t > start) & (t < start + p["t_max"])
            return xp.where(active, xp.const(p["A"], V), xp.const(0.0, V))
        return 1.0 / (1.0 + xp.exp(-(V - p["V0"]) / p["sigma"]))

    def derivative(self, O: Any, V: Any, t_fire: Any, t: Any) -> Any:
        """dO/dt = alpha (1 - O) T - beta O for every synapse (1/ms)."""
        T = ops_for(V).gather(self.transmitter(V, t_fire, t), self.pre)
        return self.params["alpha"] * (1.0 - O) * T - self.params["beta"] * O

    def current(self, O: Any, V: Any) -> Any:
        """Synaptic current into every neuron, ``g (V - E) sum O`` (uA/cm^2, positive = outward)."""
        xp = ops_for(V)
        total = xp.segment_sum(O, self.post, self.n_post)
        return xp.const(self.g, V) * (V - xp.const(self.E, V)) * total

    def describe(self) -> Dict[str, Any]:
        """A JSON-friendly summary (for run metadata)."""
        return {"kind": self.kind, "n_synapses": self.size, **self.params}
