"""Injected currents (uA/cm^2) as functions of time, for NumPy and TensorFlow alike.

The book's rule (models.md section 2): inside one integration step, every RK stage uses the input
value at the step's *start*. The network models therefore keep the input in the state (``I_ext``)
and a post-step hook sets it to ``stimulus(t_next)`` after each step, so no stage ever evaluates
the input in the middle or at the end of a step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from .backend import ops_for

__all__ = ["Stimulus", "Constant", "Pulses", "OnGrid", "LocustOdor"]


class Stimulus:
    """Base class: ``stimulus(t)`` returns the current into each of ``n`` neurons at time t (ms)."""

    n: int
    time_varying: bool = True

    def __call__(self, t: Any, like: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        return {"type": type(self).__name__}


@dataclass
class Constant(Stimulus):
    """A current that never changes: ``values[i]`` into neuron i."""

    values: Any

    def __post_init__(self) -> None:
        self.values = np.atleast_1d(np.asarray(self.values, dtype=float))
        self.n = self.values.size
        self.time_varying = False

    def __call__(self, t: Any, like: Any) -> Any:
        return ops_for(like).const(self.values, like)

    def describe(self) -> Dict[str, Any]:
        return {"type": "Constant", "values": self.values.tolist()}


@dataclass
class Pulses(Stimulus):
    """Rectangular pulses: each ``(neuron, start_ms, stop_ms, amplitude)`` is on for start <= t < stop."""

    n: int
    pulses: Sequence[Tuple[int, float, float, float]]

    def __post_init__(self) -> None:
        arr = np.asarray(self.pulses, dtype=float).reshape(-1, 4)
        self._neuron = arr[:, 0].astype(np.int32)
        self._start, self._stop, self._amp = arr[:, 1], arr[:, 2], arr[:, 3]
        if arr.size and (self._neuron.min() < 0 or self._neuron.max() >= self.n):
            raise ValueError(f"pulse neuron indices must lie in [0, {self.n})")

    def __call__(self, t: Any, like: Any) -> Any:
        xp = ops_for(like)
        on = (t >= xp.const(self._start, like)) & (t < xp.const(self._stop, like))
        amp = xp.where(on, xp.const(self._amp, like), xp.const(0.0, like))
        return xp.segment_sum(amp, self._neuron, self.n)

    def describe(self) -> Dict[str, Any]:
        return {"type": "Pulses", "pulses": [list(map(float, p)) for p in np.asarray(self.pulses, float)]}


@dataclass
class OnGrid(Stimulus):
    """A current given on a uniform time grid as an array ``I[neuron, step]`` with ``t = t0 + dt*step``."""

    values: Any
    dt: float
    t0: float = 0.0

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)
        if self.values.ndim != 2:
            raise ValueError(f"OnGrid needs a [neuron, step] array, got shape {self.values.shape}")
        self.n = self.values.shape[0]

    def __call__(self, t: Any, like: Any) -> Any:
        xp = ops_for(like)
        i = xp.index_of_time(t, self.t0, self.dt, self.values.shape[1])
        return xp.gather(xp.const(self.values, like), i, axis=1)

    def describe(self) -> Dict[str, Any]:
        return {"type": "OnGrid", "shape": list(self.values.shape), "dt": self.dt, "t0": self.t0}


@dataclass
class LocustOdor(Stimulus):
    """The antennal-lobe odour input (models.md section 4): ``amplitude * y(t)`` into selected neurons.

    ``y = 0`` before ``onset``; ``1 - exp(-(t - onset)/tau_rise)`` until ``offset``;
    ``0.9996 exp(-(t - offset)/tau_decay)`` after.
    """

    n: int
    targets: Any
    amplitude: float = 10.0
    onset: float = 100.0
    offset: float = 600.0
    tau_rise: float = 75.0
    tau_decay: float = 150.0

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self._mask = np.zeros(self.n)
        self._mask[self.targets] = self.amplitude

    def envelope(self, t: Any, like: Any) -> Any:
        """y(t), dimensionless, between 0 and 1."""
        xp = ops_for(like)
        zero = xp.const(0.0, like)
        t = t + zero  # in the state's dtype
        rise = 1.0 - xp.exp(-(xp.where(t > self.onset, t, zero + self.onset) - self.onset) / self.tau_rise)
        decay = 0.9996 * xp.exp(-(xp.where(t > self.offset, t, zero + self.offset) - self.offset) / self.tau_decay)
        return xp.where(t < self.onset, zero, xp.where(t < self.offset, rise, decay))

    def __call__(self, t: Any, like: Any) -> Any:
        xp = ops_for(like)
        return xp.const(self._mask, like) * self.envelope(t, like)

    def describe(self) -> Dict[str, Any]:
        return {"type": "LocustOdor", "targets": self.targets.tolist(), "amplitude": self.amplitude,
                "onset": self.onset, "offset": self.offset, "tau_rise": self.tau_rise, "tau_decay": self.tau_decay}
