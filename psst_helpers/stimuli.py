"""Injected currents (uA/cm^2) as functions of time, for NumPy and TensorFlow alike.

The book's rule (the book's model reference, section "The input rule", book/models.md): inside one integration step, every RK stage uses the input
value at the step's *start*. The network models therefore keep the input in the state (``I_ext``)
and a post-step hook sets it to ``stimulus(t_next)`` after each step, so no stage ever evaluates
the input in the middle or at the end of a step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from .backend import ops_for
from .components import Component, describe
from .errors import ConnectivityError, ParameterError

__all__ = ["Stimulus", "Constant", "Pulses", "OnGrid", "LocustOdor", "check_targets"]


class Stimulus(Component):
    """Base class: ``stimulus(t, like)`` returns the current into each of ``n`` neurons at time t (ms).

    ``like`` is an array or tensor whose dtype the result takes (the state's V); ``t`` may be of
    another float dtype (the book's network models carry time in float64).

    A stimulus of your own is one subclass with an ``n`` attribute and ``__call__``; any attribute it
    holds (a frequency, a phase) is part of its structure, which a compiled loop bakes in, so a new
    value gets a loop of its own (:mod:`psst_helpers.components`). To sweep a value without
    recompiling, return it from :meth:`amplitudes` and read it from ``inputs`` in ``__call__``, and
    name the attributes it comes from in the class attribute ``inputs`` (as :class:`Pulses` does).
    """

    n: int
    time_varying: bool = True

    def __call__(self, t: Any, like: Any, inputs: Optional[Dict[str, Any]] = None) -> Any:  # pragma: no cover
        raise NotImplementedError

    def amplitudes(self) -> Dict[str, np.ndarray]:
        """The values the compiled loop takes as inputs (uA/cm^2), by name; ``{}`` when there are none.

        The network models keep them in their state (``par["stim"]``) and pass them to ``__call__``
        as ``inputs``, so one compiled loop serves every value.
        """
        return {}

    def describe(self) -> Dict[str, Any]:
        """Everything that defines this stimulus, structure and inputs (JSON-friendly, for run metadata)."""
        out = describe(self)
        out.update({f"input:{k}": describe(np.asarray(v)) for k, v in self.amplitudes().items()})
        return out


def _finite(name: str, values: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(values)):
        idx = np.argwhere(~np.isfinite(values))[0]
        raise ParameterError(f"{name} must be finite, got {values[tuple(idx)]} at index {tuple(int(i) for i in idx)}")
    return values


def _time(t: Any, like: Any) -> Any:
    """``t`` as an array/tensor in its own float dtype (Python floats become float64)."""
    xp = ops_for(like)
    if xp.name == "numpy":
        return np.asarray(t, dtype=np.float64 if isinstance(t, (float, int)) else np.asarray(t).dtype)
    tf = xp.tf
    return t if tf.is_tensor(t) else tf.constant(t, tf.float64)


@dataclass
class Constant(Stimulus):
    """A current that never changes: ``values[i]`` into neuron i."""

    values: Any
    inputs = ("values",)  # only the start state's I_ext holds them: the loop never calls a Constant

    def __post_init__(self) -> None:
        self.values = _finite("the injected current", np.atleast_1d(np.asarray(self.values, dtype=float)))
        if self.values.ndim != 1:
            raise ParameterError(f"a Constant current needs one value per neuron (1-D), got shape {self.values.shape}")
        self.n = self.values.size
        self.time_varying = False

    def __call__(self, t: Any, like: Any, inputs: Optional[Dict[str, Any]] = None) -> Any:
        return ops_for(like).const(self.values, like)



@dataclass
class Pulses(Stimulus):
    """Rectangular pulses: each ``(neuron, start_ms, stop_ms, amplitude)`` is on for start <= t < stop."""

    n: int
    pulses: Sequence[Tuple[int, float, float, float]]
    inputs = ("pulses", "_amp")  # the amplitudes; the neurons and times are structure

    def __post_init__(self) -> None:
        arr = _finite("a pulse (neuron, start_ms, stop_ms, amplitude)", np.asarray(self.pulses, dtype=float).reshape(-1, 4))
        if arr.size and np.any(arr[:, 0] != np.round(arr[:, 0])):
            raise ConnectivityError(f"a pulse's neuron must be a whole index, got {arr[arr[:, 0] != np.round(arr[:, 0]), 0][0]}")
        self._neuron = arr[:, 0].astype(np.int32)
        self._start, self._stop, self._amp = arr[:, 1], arr[:, 2], arr[:, 3]
        if arr.size and (self._neuron.min() < 0 or self._neuron.max() >= self.n):
            raise ConnectivityError(f"pulse neuron indices must lie in [0, {self.n})")

    def amplitudes(self) -> Dict[str, np.ndarray]:
        return {"amplitude": self._amp.copy()}

    def __call__(self, t: Any, like: Any, inputs: Optional[Dict[str, Any]] = None) -> Any:
        xp = ops_for(like)
        t = _time(t, like)
        amp = xp.const(self._amp, like) if inputs is None else inputs["amplitude"]
        on = (t >= xp.const(self._start, t)) & (t < xp.const(self._stop, t))  # compared in time's dtype
        amp = xp.where(on, amp, xp.const(0.0, like))
        return xp.segment_sum(amp, self._neuron, self.n)



@dataclass
class OnGrid(Stimulus):
    """A current given on a uniform time grid as an array ``I[neuron, step]`` with ``t = t0 + dt*step``.

    At time t the value of step ``floor((t - t0)/dt)`` applies (the step that contains t, with a
    tolerance of 1e-9 dt for float rounding; the book's model reference, section "The input rule", book/models.md); before ``t0`` the first column,
    after the grid's end the last one.
    """

    values: Any
    dt: float
    t0: float = 0.0

    def __post_init__(self) -> None:
        self.values = _finite("OnGrid values", np.asarray(self.values, dtype=float))
        if self.values.ndim != 2:
            raise ParameterError(f"OnGrid needs a [neuron, step] array, got shape {self.values.shape}")
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ParameterError(f"OnGrid dt must be a positive time step in ms, got {self.dt}")
        self.n = self.values.shape[0]


    def __call__(self, t: Any, like: Any, inputs: Optional[Dict[str, Any]] = None) -> Any:
        xp = ops_for(like)
        i = xp.index_of_time(t, self.t0, self.dt, self.values.shape[1])
        return xp.gather(xp.const(self.values, like), i, axis=1)



@dataclass
class LocustOdor(Stimulus):
    """The antennal-lobe odour input: ``amplitude * y(t)`` into selected neurons
    (the book's model reference, section "Locust antennal lobe", book/models.md).

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
    inputs = ("amplitude", "targets", "_mask")  # which neurons get how much: the state's par["stim"]

    def __post_init__(self) -> None:
        self.targets = check_targets(self.targets, self.n)
        for name in ("amplitude", "onset", "offset", "tau_rise", "tau_decay"):
            if not np.isfinite(getattr(self, name)):
                raise ParameterError(f"LocustOdor {name} must be finite, got {getattr(self, name)}")
        self._mask = np.zeros(self.n)
        self._mask[self.targets] = self.amplitude

    def amplitudes(self) -> Dict[str, np.ndarray]:
        return {"amplitude": self._mask.copy()}

    def envelope(self, t: Any, like: Any) -> Any:
        """y(t), dimensionless, between 0 and 1, in the dtype of ``like``.

        Computed in time's own dtype (float64 in the network models) and cast at the end, so the
        edges at ``onset`` and ``offset`` fall on the right step even at t = 2e5 ms in float32.
        """
        xp = ops_for(like)
        t = _time(t, like)
        zero = xp.const(0.0, t)
        rise = 1.0 - xp.exp(-(xp.where(t > self.onset, t, zero + self.onset) - self.onset) / self.tau_rise)
        decay = 0.9996 * xp.exp(-(xp.where(t > self.offset, t, zero + self.offset) - self.offset) / self.tau_decay)
        return xp.cast(xp.where(t < self.onset, zero, xp.where(t < self.offset, rise, decay)), like)

    def __call__(self, t: Any, like: Any, inputs: Optional[Dict[str, Any]] = None) -> Any:
        xp = ops_for(like)
        mask = xp.const(self._mask, like) if inputs is None else inputs["amplitude"]
        return mask * self.envelope(t, like)



def check_targets(targets: Any, n: int) -> np.ndarray:
    """Stimulated-neuron indices: whole numbers in [0, n), each at most once (sorted copy)."""
    arr = np.asarray(targets)
    if arr.ndim != 1:
        arr = arr.ravel()
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        frac = ~np.isfinite(arr.astype(float)) | (arr.astype(float) != np.round(arr.astype(float)))
        if np.any(frac):
            raise ConnectivityError(f"stimulated neurons must be whole indices, got {arr[frac][0]!r}")
    arr = arr.astype(np.int64)
    out = (arr < 0) | (arr >= n)
    if np.any(out):
        raise ConnectivityError(f"stimulated neuron {int(arr[out][0])} is outside [0, {n}) (negative indices are not "
                         "counted from the end here)")
    uniq, counts = np.unique(arr, return_counts=True)
    if np.any(counts > 1):
        raise ConnectivityError(f"stimulated neuron {int(uniq[counts > 1][0])} is listed {int(counts[counts > 1][0])} times")
    return np.sort(arr)
