"""Small analysis helpers used across chapters: time grids, spike times, firing rates."""
from __future__ import annotations

from typing import Any, List

import numpy as np

from .events import THRESHOLD_MV

__all__ = ["time_grid", "spike_times", "spike_counts", "firing_rate"]


def time_grid(duration: float, dt: float, t0: float = 0.0) -> np.ndarray:
    """``t0 + dt * arange(n + 1)`` with ``n = round(duration / dt)``: steps counted as integers.

    Never build a grid by adding floats repeatedly or with ``arange(0, T, dt)``, whose length
    depends on rounding.
    """
    n = int(round(duration / dt))
    if n < 1 or not np.isclose(n * dt, duration, rtol=1e-9, atol=0.0):
        raise ValueError(f"duration {duration} is not a whole number of steps dt = {dt}")
    return t0 + dt * np.arange(n + 1, dtype=np.float64)


def spike_times(V: Any, t: Any, threshold: float = THRESHOLD_MV) -> List[np.ndarray]:
    """Spike times (ms) of each neuron from a voltage record ``V[time, neuron]``.

    A spike is an upward crossing of ``threshold`` between two consecutive samples; its time is
    the earlier sample's time (the book's rule, models.md section 2). With ``V`` recorded every
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
