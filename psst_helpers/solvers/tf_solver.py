"""The compiled TensorFlow solver (chapter 2 onwards).

The whole time loop is one ``tf.function`` (optionally XLA-compiled, ``xla=True`` by default):
an outer ``tf.while_loop`` over the stored time points and an inner one over the ``every`` steps
between two of them.  Only what ``record`` selects is written, into ``tf.TensorArray``s, so
memory grows with ``len(t) / every`` times the recorded size, never with the whole state at every
step (the design that ran the original tutorial out of memory).

Nothing here names a device: the same code runs on a CPU or a GPU, wherever TensorFlow puts it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from .._tree import TreeDef, flatten, leaf_paths, unflatten
from ..errors import NonFiniteStateError, StateShapeError
from . import checks
from .numpy_solver import PostStep, nonfinite_message
from .schemes import get_scheme

__all__ = ["Integrator", "odeint"]


def _all_finite(leaves) -> tf.Tensor:
    ok = tf.constant(True)
    for x in leaves:
        ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(x)))
    return ok


class Integrator:
    """A reusable compiled integrator: trace once, call on many start states and time grids.

    Use it instead of :func:`odeint` when the same model is run repeatedly (chunks of a long run,
    a parameter sweep): the loop is traced and compiled once per grid length, not once per call.

    Parameters
    ----------
    func, method, record, every, post_step
        As in :func:`psst_helpers.odeint_np`; ``func`` and ``post_step`` must use TensorFlow
        operations (the kernels in :mod:`psst_helpers.neurons` and :mod:`psst_helpers.synapses`
        work with both NumPy and TensorFlow).
    xla : bool
        Compile the loop with XLA (``jit_compile=True``). Measured on a 2-core CPU it is 1.5-3x
        faster for neuron models (``python -m psst_helpers.bench core``); switch it off to debug.
    """

    def __init__(
        self,
        func: Callable[[Any, Any], Any],
        *,
        method: str = "rk4",
        record: checks.Record = None,
        every: int = 1,
        post_step: Optional[PostStep] = None,
        xla: bool = True,
    ) -> None:
        self.func = func
        self.method = method
        self.step_fn = get_scheme(method)
        self.record = record
        self.every = checks.check_every(every)
        self.post_step = post_step
        self.xla = bool(xla)
        self._compiled: Dict[Tuple[TreeDef, Tuple[str, ...]], Callable] = {}
        #: How many times the loop has been traced (once per state structure, dtypes and grid
        #: length); a parameter sweep through one Integrator should leave this at 1.
        self.traces = 0

    # -- the compiled loop -------------------------------------------------------------------
    def _build(self, treedef: TreeDef, dtypes: Tuple[np.dtype, ...]) -> Callable:
        func, hook, record, every, step_fn = self.func, self.post_step, self.record, self.every, self.step_fn
        tf_dtypes = [tf.as_dtype(d) for d in dtypes]

        def f(lv, tm):
            out = func(unflatten(treedef, lv), tm)
            return checks.check_derivative(out, treedef, lv, dtypes)  # static checks at trace time

        def run(lv, tt, dts):
            self.traces += 1  # a Python side effect: runs when TensorFlow traces, not when it executes
            def one_step(i, lv):
                t0, t1, h = tt[i], tt[i + 1], dts[i]
                new = step_fn(f, lv, t0, h)
                if hook is not None:
                    res, res_def = flatten(hook(t0, unflatten(treedef, lv), t1, unflatten(treedef, new)))
                    if res_def != treedef:
                        raise StateShapeError("post_step must return a state with the same structure as y0")
                    new = [tf.cast(x, d) for x, d in zip(res, tf_dtypes)]
                return new

            def advance(start, count, lv):
                def cond(i, *_):
                    return i < start + count

                def body(i, *xs):
                    return (i + 1, *one_step(i, list(xs)))

                return list(tf.while_loop(cond, body, (start, *lv))[1:])

            n_points = tt.shape[0]
            n_steps = n_points - 1
            n_rec = checks.n_records(n_points, every)
            rec0, rec_def = flatten(checks.select(record, unflatten(treedef, lv)))
            tas = [tf.TensorArray(x.dtype, size=n_rec, element_shape=x.shape) for x in rec0]
            tas = [ta.write(0, x) for ta, x in zip(tas, rec0)]

            def ocond(r, ok, cur, prev, tas_):
                return tf.logical_and(r < n_rec, ok)

            def obody(r, ok, cur, prev, tas_):
                new = advance((r - 1) * every, every, cur)
                fin = _all_finite(new)
                rec = flatten(checks.select(record, unflatten(treedef, new)))[0]
                tas_ = [ta.write(r, x) for ta, x in zip(tas_, rec)]
                return r + 1, fin, new, cur, tas_

            r, ok, cur, prev, tas = tf.while_loop(
                ocond, obody, (tf.constant(1), tf.constant(True), lv, lv, tas)
            )
            # steps after the last stored point (when every does not divide the number of steps)
            last_rec_step = (n_rec - 1) * every
            rem = n_steps - last_rec_step
            if rem > 0:
                final = advance(tf.constant(last_rec_step), tf.where(ok, rem, 0), cur)
                fin_rem = _all_finite(final)
            else:
                final, fin_rem = cur, tf.constant(True)
            fail_start = tf.where(
                ok, tf.where(fin_rem, -1, last_rec_step), (r - 2) * every
            )
            good = [tf.where(ok, c, p) for c, p in zip(cur, prev)]
            stacks = [ta.stack() for ta in tas]
            return stacks, final, fail_start, good, r

        # TensorFlow counts traces per Python code object to warn about "frequent retracing"; every
        # Integrator shares run's code, so each new model's (legitimate) first trace would count
        # against all the others. A partial object has no __code__, so each Integrator is counted
        # on its own and the warning keeps its meaning: one Integrator retracing on every call.
        compiled = tf.function(functools.partial(run), jit_compile=self.xla, autograph=False)
        if not self.xla:
            return compiled
        # An XLA function called directly on a remote TensorFlow worker fails ("KernelAndDeviceOp
        # does not support EagerFunctionParams", TF 2.21); called from a plain graph function it is
        # compiled and run there like anywhere else. The wrapper costs one function call per run.
        return tf.function(functools.partial(compiled), autograph=False)

    def _run_raw(self, y0: Any, t: Any):
        t64 = checks.check_time_grid(t)
        leaves, treedef, dtypes = checks.check_state(y0)
        lv = [tf.convert_to_tensor(x, dtype=tf.as_dtype(d)) for x, d in zip(leaves, dtypes)]
        key = (treedef, tuple(str(d) for d in dtypes))
        if key not in self._compiled:
            self._compiled[key] = self._build(treedef, tuple(dtypes))
        tdt = checks.time_dtype(dtypes)
        tt = tf.constant(t64.astype(tdt))
        dts = tf.constant(np.diff(t64).astype(tdt))  # float64 differences: exact steps in float32
        stacks, final, fail_start, good, r = self._compiled[key](lv, tt, dts)
        rec_def = flatten(checks.select(self.record, unflatten(treedef, lv)))[1]
        # one read of both flags: on a remote worker every read is a network round trip
        fail_start, r = (int(x) for x in tf.stack([fail_start, r]).numpy())
        return t64, treedef, rec_def, stacks, final, fail_start, good, r

    # -- public entry point ------------------------------------------------------------------
    def __call__(self, y0: Any, t: Any, *, return_final: bool = False) -> Any:
        """Integrate from ``y0`` over the grid ``t``; see :func:`odeint` for the result layout."""
        t64, treedef, rec_def, stacks, final, fail_start, good, r = self._run_raw(y0, t)
        if fail_start >= 0:
            self._raise_nonfinite(t64, treedef, rec_def, stacks, fail_start, good)
        records = unflatten(rec_def, stacks)
        if return_final:
            return records, unflatten(treedef, final)
        return records

    def _raise_nonfinite(self, t64, treedef, rec_def, stacks, fail_start, good):
        """Re-run the failing stretch one step at a time to name the exact step and variable."""
        end = min(fail_start + self.every, len(t64) - 1)
        probe = Integrator(self.func, method=self.method, record=None, every=1, post_step=self.post_step, xla=False)
        _, _, _, _, bad_state, local, _, _ = probe._run_raw(unflatten(treedef, good), t64[fail_start : end + 1])
        step = fail_start + max(local, 0)
        paths = leaf_paths(treedef)
        variable = next(
            (p for p, x in zip(paths, bad_state) if not bool(tf.reduce_all(tf.math.is_finite(x)))), paths[0]
        )
        n_good = fail_start // self.every + 1  # records at t[0], t[every], ... up to the failing stretch
        partial = unflatten(rec_def, [s[:n_good] for s in stacks])
        raise NonFiniteStateError(
            nonfinite_message(variable, step, float(t64[step]), float(t64[step + 1])),
            step=step, t=float(t64[step]), variable=variable, partial=partial,
        )


def odeint(
    func: Callable[[Any, Any], Any],
    y0: Any,
    t: Any,
    *,
    method: str = "rk4",
    record: checks.Record = None,
    every: int = 1,
    post_step: Optional[PostStep] = None,
    xla: bool = True,
    return_final: bool = False,
) -> Any:
    """Integrate ``dy/dt = func(y, t)`` on the grid ``t`` in one compiled TensorFlow loop.

    Same signature and result layout as :func:`psst_helpers.odeint_np` (chapter 1); introduced
    in chapter 2.  ``func`` must use TensorFlow operations.

    Parameters
    ----------
    func : callable
        ``func(y, t)`` returns dy/dt with the structure, shapes and dtype of ``y`` (``None`` for
        entries that are not integrated). ``t`` arrives as a scalar tensor, float64 when any state
        entry is float64 (a float32 network keeps its spike times in float64), else float32.
    y0 : array, tensor, or nested dict/list/tuple of them
        Start state, float32 or float64, finite; the integrated entries share one dtype, the
        computation's.
    t : 1-D float array
        Strictly increasing, possibly non-uniform, time grid (ms in this book).
    method : {"euler", "rk2" (or "midpoint"), "rk4"}
    record : None, str, list of str, or callable
        What to store: everything, some entries of a dict state, or ``record(y)``.
    every : int
        Store at ``t[::every]`` only.
    post_step : callable, optional
        ``post_step(t0, y0, t1, y1) -> y1`` after each step (TensorFlow operations).
    xla : bool
        Compile with XLA (default True).
    return_final : bool
        Also return the state at ``t[-1]``.

    Returns
    -------
    records : tf.Tensor or nested structure of tf.Tensor
        Each leaf has shape ``(len(t[::every]), *leaf_shape)``.
    y_final : same structure as y0 (only with ``return_final``)

    Raises
    ------
    InputDtypeError, TimeGridError, StateShapeError
        On bad input, before any step is taken.
    NonFiniteStateError
        When the state becomes NaN/inf; names the step, time and variable and keeps the records
        made before the failure in ``.partial``.
    """
    integ = Integrator(func, method=method, record=record, every=every, post_step=post_step, xla=xla)
    return integ(y0, t, return_final=return_final)
