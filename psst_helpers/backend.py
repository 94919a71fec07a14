"""A tiny array-operations shim so each kernel is written once for NumPy and TensorFlow.

Kernels use ``+ - * /`` directly and take the few other operations they need from
``ops_for(x)``, chosen by the type of their input. That keeps one canonical implementation of each
equation (tested NumPy-vs-TensorFlow) instead of two drifting copies.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ops_for", "NumpyOps", "TFOps", "INDEX_TOLERANCE"]

#: ``index_of_time`` takes ``floor((t - t0)/dt)``: the step that contains t
#: (the book's model reference, section "The input rule", book/models.md).
#: A time that float rounding puts a hair below a grid point, (t - t0)/dt = k - 1e-12, still
#: belongs to step k: the floor is taken of (t - t0)/dt + INDEX_TOLERANCE.
INDEX_TOLERANCE = 1e-9


class NumpyOps:
    name = "numpy"
    exp = staticmethod(np.exp)
    expm1 = staticmethod(np.expm1)
    abs = staticmethod(np.abs)
    where = staticmethod(np.where)
    concat = staticmethod(np.concatenate)

    @staticmethod
    def const(x: Any, like: Any) -> np.ndarray:
        """``x`` as an array in the dtype of ``like``."""
        return np.asarray(x, dtype=np.asarray(like).dtype)

    @staticmethod
    def cast(x: Any, like: Any) -> np.ndarray:
        return np.asarray(x).astype(np.asarray(like).dtype)

    @staticmethod
    def gather(x: np.ndarray, idx: np.ndarray, axis: int = 0) -> np.ndarray:
        return np.take(x, idx, axis=axis)

    @staticmethod
    def segment_sum(data: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=data.dtype)
        np.add.at(out, ids, data)
        return out

    @staticmethod
    def matvec(M: np.ndarray, x: np.ndarray) -> np.ndarray:
        return M @ x

    @staticmethod
    def recent_columns_sum(u: np.ndarray, t_fire: np.ndarray, t: Any, delay: float, duration: float,
                           targets: np.ndarray, col: np.ndarray, post: np.ndarray, n: int, capacity: int) -> np.ndarray:
        """``sum_j C[i, j] u_j`` for a ``u`` that is zero except while ``t_fire_j + delay < t < t_fire_j + delay + duration``.

        ``targets[j]`` lists the rows of column j (padded with ``n``); ``col``/``post`` are the same
        entries as (column, row) pairs. Here only the nonzero columns of ``u`` are visited; ``t_fire``
        (ms), ``t``, ``delay``, ``duration`` and ``capacity`` matter to the TensorFlow version only.
        """
        out = np.zeros(n + 1, dtype=u.dtype)
        active = np.flatnonzero(u)
        np.add.at(out, targets[active].ravel(), np.repeat(u[active], targets.shape[1]))
        return out[:n]

    @staticmethod
    def index_of_time(t: Any, t0: float, dt: float, n: int) -> Any:
        return int(min(max(np.floor((float(t) - t0) / dt + INDEX_TOLERANCE), 0), n - 1))


class TFOps:
    name = "tensorflow"

    def __init__(self) -> None:
        import tensorflow as tf

        self.tf = tf
        self.exp = tf.exp
        self.expm1 = tf.math.expm1
        self.abs = tf.abs
        self.where = tf.where
        self.concat = lambda xs, axis=0: tf.concat(list(xs), axis=axis)

    def const(self, x: Any, like: Any):
        return self.tf.constant(np.asarray(x), dtype=like.dtype)

    def cast(self, x: Any, like: Any):
        return self.tf.cast(x, like.dtype)

    def gather(self, x, idx, axis: int = 0):
        return self.tf.gather(x, idx, axis=axis)

    def segment_sum(self, data, ids, n: int):
        return self.tf.math.unsorted_segment_sum(data, ids, n)

    def matvec(self, M, x):
        return self.tf.linalg.matvec(M, x)

    def recent_columns_sum(self, u, t_fire, t, delay: float, duration: float, targets, col, post, n: int,
                           capacity: int):
        """See :meth:`NumpyOps.recent_columns_sum`.

        Inside a compiled loop shapes are fixed, so the candidate columns — those that fired within
        ``horizon = delay + duration`` ms of the latest firing — are compacted into ``capacity`` slots (a running count and
        one scatter). The candidates depend on ``t_fire`` alone, which is held during a step: the
        compaction is the same in every RK stage, and XLA computes it once per step. The sum visits
        the candidates only when that is exact: when they number at most ``capacity`` and no firing
        lies in the future of ``t`` (every other column then fired more than ``horizon`` before
        ``t``), or when nothing fired within ``horizon`` before ``t`` at all; otherwise every entry.
        """
        tf = self.tf
        n_cols = int(targets.shape[0]) - 1          # the last row of ``targets`` is the empty padding column
        latest = tf.reduce_max(t_fire)
        horizon = delay + duration
        # a hair wider than ``horizon``, so rounding of the comparisons cannot leave out an active column
        eps = 16.0 * float(np.finfo(t_fire.dtype.as_numpy_dtype).eps)
        candidate = t_fire > latest - (horizon + eps * (tf.abs(latest) + horizon))
        slot = tf.cumsum(tf.cast(candidate, tf.int32)) - 1
        count = slot[-1] + 1
        slot = tf.where(candidate & (slot < capacity), slot, capacity)      # slot ``capacity``: discarded
        cols = tf.math.unsorted_segment_max(tf.range(n_cols, dtype=tf.int32), slot, capacity + 1)[:capacity]
        cols = tf.where(tf.range(capacity) < count, cols, n_cols)           # unused slots: the padding column
        rows = tf.gather(tf.constant(targets), cols)                        # (capacity, max entries per column)
        t = tf.cast(t, t_fire.dtype)
        # the transmitter's own arithmetic, (t_fire + delay) + duration <= t, so that "nothing is released"
        # holds exactly: it then holds for every t_fire <= latest (float addition is monotone)
        exact = ((count <= capacity) & (latest <= t)) | ((latest + delay) + duration <= t)
        # (the compaction is an operand of the branch test, so that XLA keeps it outside the branches:
        # computed once per step, not once per RK stage)
        exact = exact & (cols[0] >= 0)

        def few():
            weights = tf.gather(tf.concat([u, tf.zeros([1], u.dtype)], 0), cols)
            spread = tf.broadcast_to(weights[:, None], tf.shape(rows))
            return tf.math.unsorted_segment_sum(spread, rows, n + 1)[:n]

        def many():
            return tf.math.unsorted_segment_sum(tf.gather(u, col), post, n)

        return tf.cond(exact, few, many)

    def index_of_time(self, t, t0: float, dt: float, n: int):
        tf = self.tf
        i = tf.cast(tf.floor((tf.cast(t, tf.float64) - t0) / dt + INDEX_TOLERANCE), tf.int32)
        return tf.clip_by_value(i, 0, n - 1)


_TF_OPS = None


def ops_for(x: Any):
    """NumPy operations for NumPy input (arrays, scalars), TensorFlow operations for tensors."""
    global _TF_OPS
    if isinstance(x, (np.ndarray, np.generic, float, int)):
        return NumpyOps
    if _TF_OPS is None:
        _TF_OPS = TFOps()
    return _TF_OPS
