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


# -- the same schemes as a loop over stages ----------------------------------------------------
#: Every scheme above has a Butcher tableau whose only non-zero entries lie just below the
#: diagonal: stage ``s`` evaluates ``k_s = f(y + c_s h k_{s-1}, t + c_s h)``, with ``c_0 = 0``. So
#: one loop over the stage nodes ``c_s`` (tf_solver's stage loop) evaluates ``f`` at one place in
#: the program, whatever the number of stages; :data:`COMBINE` then forms the step from the first,
#: the sum of the interior and the last stage's slope, in the same operations as the functions
#: above (the results agree to the bit; ``tests/test_solvers.py``).
STAGE_NODES = {"euler": (0.0,), "rk2": (0.0, 0.5), "midpoint": (0.0, 0.5), "rk4": (0.0, 0.5, 0.5, 1.0)}


def _combine_last(y: Any, h: Any, k_first: Any, k_mid: Any, k_last: Any) -> Any:
    """Euler and the midpoint rule: ``y + h k_last`` (for Euler the last stage is the only one)."""
    return y + _like(h, y) * k_last


def _combine_rk4(y: Any, h: Any, k_first: Any, k_mid: Any, k_last: Any) -> Any:
    """RK4: ``y + h/6 (k1 + 2 (k2 + k3) + k4)``, with ``k_mid = k2 + k3``."""
    return y + _like(h / 6.0, y) * (k_first + 2.0 * k_mid + k_last)


#: The weight of each stage's slope in the step, ``y_new = y + h sum_s b_s k_s``: the derivative of
#: :data:`COMBINE` with respect to each slope, which the backward pass of a step needs
#: (:meth:`psst_helpers.solvers.tf_solver.Integrator`'s stage adjoint).
STAGE_WEIGHTS = {"euler": (1.0,), "rk2": (0.0, 1.0), "midpoint": (0.0, 1.0),
                 "rk4": (1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0)}

#: ``combine(y, h, k_first, k_mid, k_last)`` for one state entry; ``k_mid`` is the sum of the slopes
#: of the interior stages (zero for Euler and the midpoint rule).
COMBINE = {"euler": _combine_last, "rk2": _combine_last, "midpoint": _combine_last, "rk4": _combine_rk4}


def staged_step(f: LeafFunc, y: Leaves, t: Any, dt: Any, method: str) -> Leaves:
    """One step of ``method`` written as the stage loop (a Python loop here; a ``tf.while_loop`` in
    the compiled solver), to check that the loop form is the same arithmetic as the step functions."""
    key = method.lower()
    nodes, combine = STAGE_NODES[key], COMBINE[key]
    k_prev = k_first = k_mid = None
    for s, c in enumerate(nodes):
        ys = y if s == 0 else _axpy(y, c * dt, k_prev)
        k = f(ys, t + c * dt if s else t)
        if s == 0:
            k_first = k
        elif s < len(nodes) - 1:
            k_mid = k if k_mid is None else [None if a is None else a + b for a, b in zip(k_mid, k)]
        k_prev = k
    if k_mid is None:
        k_mid = [None] * len(y)
    return [yi if kl is None else combine(yi, dt, kf, km, kl) for yi, kf, km, kl in zip(y, k_first, k_mid, k_prev)]
