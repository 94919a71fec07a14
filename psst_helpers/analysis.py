"""Small analysis helpers used across chapters: time grids, spike times, firing rates."""
from __future__ import annotations

import math
from typing import Any, List

import numpy as np

from .errors import TimeGridError
from .events import THRESHOLD_MV

__all__ = ["time_grid", "count_steps", "spike_times", "spike_counts", "firing_rate"]


def count_steps(duration: float, dt: float, *, duration_name: str = "duration", dt_name: str = "dt") -> int:
    """Number of steps of size ``dt`` in ``duration`` (both in ms), or an error that says what is wrong.

    Parameters
    ----------
    duration, dt : float
        Length of the grid and step (ms). ``duration`` must be a positive whole number of steps.
    duration_name, dt_name : str
        How the two values are named in error messages (e.g. ``"--duration-ms"`` on a command line).

    Returns
    -------
    int
        ``n`` with ``n * dt == duration`` to a relative 1e-9; at least 1.

    Raises
    ------
    TimeGridError
        For a step that is zero, negative, NaN or infinite; a duration that is zero, negative,
        NaN, infinite, shorter than one step, or not a whole number of steps; or one so long
        that the step count would not fit a float64 exactly.
    """
    try:
        duration, dt = float(duration), float(dt)
    except (TypeError, ValueError):
        raise TimeGridError(f"{duration_name} = {duration!r} and {dt_name} = {dt!r} must be numbers (ms)") from None
    if math.isnan(dt):
        raise TimeGridError(f"{dt_name} is NaN (not a number): give the integration step in ms, e.g. 0.01")
    if math.isinf(dt):
        raise TimeGridError(f"{dt_name} = {dt}: the step must be a finite number of ms, e.g. 0.01")
    if dt == 0:
        raise TimeGridError(f"{dt_name} = 0: a step of zero never advances time; give a positive step in ms, "
                            "e.g. 0.01")
    if dt < 0:
        raise TimeGridError(f"{dt_name} = {dt:g}: the step must be positive (grids run forward in time)")
    if math.isnan(duration):
        raise TimeGridError(f"{duration_name} is NaN (not a number); give the simulated time in ms, e.g. 100")
    if math.isinf(duration):
        raise TimeGridError(f"{duration_name} = {duration}: a grid must end; give a finite simulated time in ms")
    if duration == 0:
        raise TimeGridError(f"{duration_name} = 0: a grid needs at least one step, so the duration must be at "
                            f"least {dt_name} = {dt:g} ms")
    if duration < 0:
        raise TimeGridError(f"{duration_name} = {duration:g}: durations count forward from the start time and "
                            "must be positive (to cover [a, b], give the duration b - a with b > a)")
    ratio = duration / dt
    if ratio >= 2.0 ** 53:
        raise TimeGridError(f"{duration_name} = {duration:g} ms in steps of {dt_name} = {dt:g} ms is {ratio:.3g} "
                            "steps, more than a float64 can count exactly; use a larger step or a shorter duration")
    n = int(round(ratio))
    if n < 1:
        raise TimeGridError(f"{duration_name} = {duration:g} ms is shorter than one step ({dt_name} = {dt:g} ms); "
                            "a grid needs at least one step")
    if not math.isclose(n * dt, duration, rel_tol=1e-9, abs_tol=0.0):
        raise TimeGridError(f"{duration_name} = {duration:g} ms is not a whole number of steps of {dt_name} = "
                            f"{dt:g} ms ({duration:g} / {dt:g} = {ratio:.6g}); choose a duration that is a "
                            f"multiple of the step, e.g. {n * dt:g}")
    return n


def time_grid(duration: float, dt: float, t0: float = 0.0) -> np.ndarray:
    """``t0 + dt * arange(n + 1)`` with ``n = round(duration / dt)``: steps counted as integers.

    Never build a grid by adding floats repeatedly or with ``arange(0, T, dt)``, whose length
    depends on rounding.

    Parameters
    ----------
    duration, dt, t0 : float
        Length of the grid, step and start time (ms).

    Returns
    -------
    numpy.ndarray
        float64 grid of ``n + 1`` points from ``t0`` to ``t0 + duration``.

    Raises
    ------
    TimeGridError
        With the reason: see :func:`count_steps`; also for a NaN or infinite ``t0``.
    """
    n = count_steps(duration, dt)
    if not math.isfinite(float(t0)):
        raise TimeGridError(f"t0 = {t0}: the start time must be a finite number of ms")
    return t0 + dt * np.arange(n + 1, dtype=np.float64)


def spike_times(V: Any, t: Any, threshold: float = THRESHOLD_MV) -> List[np.ndarray]:
    """Spike times (ms) of each neuron from a voltage record ``V[time, neuron]``.

    A spike is an upward crossing of ``threshold`` between two consecutive samples; its time is
    the earlier sample's time (the rule of the book's
    model reference, section "Spikes and t_fire", book/models.md). With ``V`` recorded every
    step this reproduces the solvers' ``t_fire`` exactly.
    """
    V = np.asarray(V)
    t = np.asarray(t)
    if V.ndim == 1:
        V = V[:, None]
    up = (V[:-1] < threshold) & (V[1:] >= threshold)
    return [t[:-1][up[:, i]] for i in range(V.shape[1])]


def spike_counts(V: Any, threshold: float = THRESHOLD_MV) -> np.ndarray:
    """Number of upward threshold crossings per neuron in ``V[time, neuron]``."""
    V = np.asarray(V)
    if V.ndim == 1:
        V = V[:, None]
    return ((V[:-1] < threshold) & (V[1:] >= threshold)).sum(axis=0)


def firing_rate(V: Any, duration_ms: float, threshold: float = THRESHOLD_MV) -> np.ndarray:
    """Firing rate (Hz) per neuron: spike count divided by the duration in seconds."""
    return spike_counts(V, threshold) / (duration_ms / 1000.0)
