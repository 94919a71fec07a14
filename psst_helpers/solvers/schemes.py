"""One step function per fixed-step scheme, shared by the NumPy and TensorFlow solvers.

Each step works on a *list of leaves* (see :mod:`psst_helpers._tree`) using only ``+`` and ``*``,
so the same code runs on NumPy arrays and on TensorFlow tensors inside a compiled loop.  A leaf
whose derivative is ``None`` is carried through unchanged (it is not integrated).

Introduced in chapter 1 (Euler, RK2 midpoint, RK4).
"""
from __future__ import annotations

from typing import Any, Callable, List

import numpy as np

Leaves = List[Any]
# f(leaves, t) -> derivative leaves (same length, ``None`` where an entry is not integrated)
LeafFunc = Callable[[Leaves, Any], Leaves]

__all__ = ["euler_step", "rk2_step", "rk4_step", "SCHEMES", "ORDER"]


def _like(h: Any, y: Any) -> Any:
    """The step ``h`` in the dtype of the state entry ``y``.

    Time (and so the step) may be float64 while an entry is float32 (see
    :func:`psst_helpers.solvers.checks.time_dtype`); the product must stay in the entry's dtype.
    """
    dtype = getattr(y, "dtype", None)
    if dtype is None or getattr(h, "dtype", None) == dtype:
        return h
    if isinstance(y, (np.ndarray, np.generic)):
        return y.dtype.type(h)
    import tensorflow as tf  # only reached with tensors, so TensorFlow is already loaded

    return tf.cast(h, dtype)


def _axpy(y: Leaves, h: Any, k: Leaves) -> Leaves:
    """y + h*k leaf by leaf, skipping entries with no derivative."""
    return [yi if ki is None else yi + _like(h, yi) * ki for yi, ki in zip(y, k)]


def euler_step(f: LeafFunc, y: Leaves, t: Any, dt: Any) -> Leaves:
    """Forward Euler: ``y + dt f(y, t)``; global error O(dt)."""
    return _axpy(y, dt, f(y, t))


def rk2_step(f: LeafFunc, y: Leaves, t: Any, dt: Any) -> Leaves:
    """Explicit midpoint rule: slope at the midpoint reached by half an Euler step; O(dt^2)."""
    k1 = f(y, t)
    k2 = f(_axpy(y, 0.5 * dt, k1), t + 0.5 * dt)
    return _axpy(y, dt, k2)


def rk4_step(f: LeafFunc, y: Leaves, t: Any, dt: Any) -> Leaves:
    """Classical fourth-order Runge-Kutta; O(dt^4)."""
    half = 0.5 * dt
    k1 = f(y, t)
    k2 = f(_axpy(y, half, k1), t + half)
    k3 = f(_axpy(y, half, k2), t + half)
    k4 = f(_axpy(y, dt, k3), t + dt)
    sixth = dt / 6.0
    out = []
    for yi, a, b, c, d in zip(y, k1, k2, k3, k4):
        out.append(yi if a is None else yi + _like(sixth, yi) * (a + 2.0 * (b + c) + d))
    return out


SCHEMES = {"euler": euler_step, "rk2": rk2_step, "midpoint": rk2_step, "rk4": rk4_step}
ORDER = {"euler": 1, "rk2": 2, "midpoint": 2, "rk4": 4}


def get_scheme(method: str) -> Callable[..., Leaves]:
    """Look up a step function by name, with a helpful error for unknown names."""
    try:
        return SCHEMES[method.lower()]
    except (KeyError, AttributeError):
        from ..errors import ParameterError

        raise ParameterError(f"unknown method {method!r}; choose one of {sorted(set(SCHEMES))}") from None
