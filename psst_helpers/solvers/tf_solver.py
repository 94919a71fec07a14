"""The compiled TensorFlow solver (chapter 2 onwards; its gradient options in chapter 8).

The whole time loop is one ``tf.function`` (optionally XLA-compiled, ``xla=True`` by default):
an outer ``tf.while_loop`` over the stored time points and an inner one over the ``every`` steps
between two of them.  Only what ``record`` selects is written, into ``tf.TensorArray``s, so
memory grows with ``len(t) / every`` times the recorded size, never with the whole state at every
step (the design that ran the original tutorial out of memory).

Each step is one loop over the scheme's stages (:data:`~psst_helpers.solvers.schemes.STAGE_NODES`):
the right-hand side appears once in the traced graph, not once per stage, which keeps tracing and
XLA compilation short (issue 26; ``benchmarks/compile_and_gradient.py`` measures them apart).

The same loop is differentiable (chapter 8): pass the model's parameters as ``params`` and
``tf.GradientTape`` sees them (and the start state); :meth:`Integrator.value_and_gradient` runs a
loss and its gradient in one compiled call. The backward pass is written out as a loop over the
steps in reverse (a discrete adjoint): the forward run stores the state at the start of each step,
and each step is re-run from it and differentiated on its own on the way back. It stores one state
per step instead of every stage's intermediate values, and its graph holds one step's gradient
instead of TensorFlow's gradient of nested loops. ``checkpoint_every`` stores the state once per
chunk and recomputes the chunk's states on the way back.

Nothing here names a device: the same code runs on a CPU or a GPU, wherever TensorFlow puts it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from .._tree import TreeDef, flatten, leaf_paths, unflatten
from ..errors import NonFiniteInputError, NonFiniteStateError, ParameterError, StateShapeError
from . import checks
from .numpy_solver import PostStep, nonfinite_message
from .schemes import COMBINE, STAGE_NODES, STAGE_WEIGHTS, _like, get_scheme

__all__ = ["Integrator", "odeint", "as_tensor", "enable_compile_cache"]

#: Set by the first compiled loop of this process: XLA reads its flags once, at the first compilation.
_COMPILED = [False]


def _all_finite(leaves) -> tf.Tensor:
    ok = tf.constant(True)
    for x in leaves:
        ok = tf.logical_and(ok, tf.reduce_all(tf.math.is_finite(x)))
    return ok


def as_tensor(x: Any, dtype: Any = None) -> tf.Tensor:
    """``x`` (a number, array, tensor or variable) as a tensor of ``dtype`` (None: its own, float64 for numbers).

    Numbers and lists are read by NumPy (float64) first: ``tf.cast(0.15, tf.float64)`` would read
    0.15 as float32 and give 0.15000000596.
    """
    if not isinstance(x, (tf.Tensor, tf.Variable)):
        x = np.asarray(x)
    x = tf.convert_to_tensor(x)
    return x if dtype is None else tf.cast(x, dtype)


def check_chunk(checkpoint_every: Any, every: int, n_steps: Optional[int] = None) -> Optional[int]:
    """``checkpoint_every`` as an int (or None), checked against ``every`` and, when known, the step count.

    Raises
    ------
    ParameterError
        Not a positive integer, not a multiple of ``every``, or not a divisor of ``n_steps``: every
        chunk must be the same compiled loop, and records must fall inside chunks.
    """
    if checkpoint_every is None:
        return None
    c = checks.positive_int("checkpoint_every", checkpoint_every, what="steps per chunk")
    if c % every or (n_steps is not None and n_steps % c):
        steps = f"n_steps={n_steps}" if n_steps is not None else "the number of steps"
        hint = f"; for example checkpoint_every={_suggest_chunk(n_steps, every)}" if n_steps is not None else ""
        raise ParameterError(
            f"checkpoint_every={c} must divide {steps} and be a multiple of every={every}, so that every "
            f"chunk is the same compiled loop{hint}")
    return c


def _suggest_chunk(n_steps: int, every: int) -> int:
    target = max(every, int(round(np.sqrt(n_steps))))  # sqrt(n) chunks balance the two stores
    cands = [c for c in range(every, n_steps + 1, every) if n_steps % c == 0] or [every]
    return min(cands, key=lambda c: abs(c - target))


class Integrator:
    """A reusable compiled integrator: trace once, call on many start states, parameters and time grids.

    Use it instead of :func:`odeint` when the same model is run repeatedly (chunks of a long run,
    a parameter sweep, the steps of a fit): the loop is traced and compiled once per state
    structure, dtype, shape and grid length, not once per call.

    Parameters
    ----------
    func, method, record, every, post_step
        As in :func:`psst_helpers.odeint_np`; ``func`` and ``post_step`` must use TensorFlow
        operations (the kernels in :mod:`psst_helpers.neurons` and :mod:`psst_helpers.synapses`
        work with both NumPy and TensorFlow). Called with ``params=`` (see :meth:`__call__`),
        ``func(y, t, params)`` receives the parameters as a third argument.
    xla : bool
        Compile the loop with XLA (``jit_compile=True``). Measured on a 2-core CPU it is 1.5-3x
        faster for neuron models (``python -m psst_helpers.bench core``); switch it off to debug.
    checkpoint_every : int, optional
        Gradient checkpointing (chapter 8). Without it the backward pass keeps the state at the
        start of every step (one state per step: the stages' intermediate values are recomputed
        step by step on the way back). With it, the state only at the start of every chunk of
        this many steps, and each chunk's states are recomputed when the backward pass reaches
        it: memory ``n_steps / checkpoint_every + checkpoint_every`` states instead of
        ``n_steps``, for one more forward run. A multiple of ``every`` that divides the number of
        steps; results and gradients are unchanged (to rounding), and runs without a gradient
        never use it.

    Attributes
    ----------
    traces : int
        How many times a loop has been traced: once per state structure, dtypes, shapes and grid
        length for the forward run, once more for each gradient function (the backward pass of
        :meth:`__call__`, each ``loss_fn`` of :meth:`value_and_gradient`). A sweep of start
        states or parameter values through one Integrator leaves it unchanged.

    Examples
    --------
    >>> sim = Integrator(lambda y, t, p: -p["k"] * y, record=None)   # doctest: +SKIP
    >>> k = tf.constant(1.3, tf.float64); t = 0.01 * np.arange(201)  # doctest: +SKIP
    >>> with tf.GradientTape() as tape:                               # doctest: +SKIP
    ...     tape.watch(k); x = sim(np.float64(2.0), t, params={"k": k})  # x: (201,), x[0] = 2
    >>> tape.gradient(x[-1], k)                                       # doctest: +SKIP
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        method: str = "rk4",
        record: checks.Record = None,
        every: int = 1,
        post_step: Optional[PostStep] = None,
        xla: bool = True,
        checkpoint_every: Optional[int] = None,
    ) -> None:
        self.func = func
        self.method = method
        self.step_fn = get_scheme(method)
        self.record = record
        self.every = checks.check_every(every)
        self.post_step = post_step
        self.xla = bool(xla)
        self.checkpoint_every = check_chunk(checkpoint_every, self.every)
        self._compiled: Dict[Hashable, Callable] = {}
        self._integrated: Dict[Hashable, List[int]] = {}  # per state structure: the entries with a derivative
        self.traces = 0

    # -- one step: the stage loop -------------------------------------------------------------
    def _stepper(self, treedef: TreeDef, dtypes: Tuple[np.dtype, ...], pdef: Optional[TreeDef],
                 lv: List[tf.Tensor], time_dtype: tf.DType, pv: List[tf.Tensor]) -> Callable:
        """``step(lv, t0, t1, h, pv) -> new leaves``: one step of the scheme, post-step hook included;
        ``step.vjp(lv, t0, t1, h, pv, a) -> (d_lv, d_pv)`` its vector-Jacobian product.

        Called while a loop is traced. Every stage calls ``func`` at one place, inside a
        ``tf.while_loop`` over the scheme's stage nodes
        (:data:`~psst_helpers.solvers.schemes.STAGE_NODES`): the forward graph holds one copy of
        ``func`` whatever the number of stages, in the same arithmetic as the step functions of
        :mod:`~psst_helpers.solvers.schemes` (``tests/test_solvers.py``). ``step.vjp`` is the
        step's backward pass, written out over the same stages (one more loop, taken in reverse).
        The parameters are arguments, so a backward stage can differentiate with respect to its
        own copy of them.
        """
        func, hook, method = self.func, self.post_step, self.method.lower()
        nodes, combine = STAGE_NODES[method], COMBINE[method]
        tf_dtypes = [tf.as_dtype(d) for d in dtypes]

        def rhs(lv_, tm, pv_):
            y = unflatten(treedef, list(lv_))
            out = func(y, tm) if pdef is None else func(y, tm, unflatten(pdef, list(pv_)))
            return checks.check_derivative(out, treedef, lv_, dtypes)  # static checks at trace time

        def spec(x):
            return tf.TensorSpec(x.shape, x.dtype)

        # Which entries are integrated (their derivative is not None) decides the stage loop's
        # variables, so it must be known before the loop is built: trace func once in a scratch
        # function for it (the graph is discarded), once per state structure (cached).
        struct_key = (treedef, dtypes, pdef)
        if struct_key not in self._integrated:
            probe = tf.function(functools.partial(rhs), autograph=False).get_concrete_function(
                [spec(x) for x in lv], tf.TensorSpec([], time_dtype), [spec(x) for x in pv])
            self._integrated[struct_key] = [i for i, d in enumerate(probe.structured_outputs) if d is not None]
        idx = self._integrated[struct_key]
        c = tf.constant(nodes, time_dtype)
        b = tf.constant(STAGE_WEIGHTS[method], time_dtype)
        n_stages = len(nodes)

        def slopes(ys, tm, pv_):
            out = rhs(list(ys), tm, list(pv_))
            return [out[i] for i in idx]

        def stage_loop(lv_, t0, h, pv_, count, keep=None):
            """Stages ``0 .. count-1``: ``(k_last, k_first, k_mid)``; every slope also written to ``keep``."""
            def body(s, k_prev, k_first, k_mid, keep_):
                ch = tf.gather(c, s) * h  # c_s h, exact: c_s is 0, 1/2 or 1
                ys = list(lv_)
                for j, i in enumerate(idx):  # stage 0: y + 0 = y
                    ys[i] = lv_[i] + _like(ch, lv_[i]) * k_prev[j]
                k = slopes(ys, t0 + ch, pv_)
                if keep is not None:
                    keep_ = [ta.write(s, x) for ta, x in zip(keep_, k)]
                interior = tf.logical_and(s > 0, s < n_stages - 1)
                return (s + 1, k, [tf.where(s == 0, a, b) for a, b in zip(k, k_first)],
                        [tf.where(interior, m + a, m) for a, m in zip(k, k_mid)], keep_)

            zeros = [tf.zeros_like(lv_[i]) for i in idx]
            out = tf.while_loop(lambda s, *_: s < count, body, (tf.constant(0), zeros, zeros, zeros, keep or []),
                                maximum_iterations=count)  # a fixed trip count: reverse mode under XLA needs it
            return out[1], out[2], out[3], out[4]

        def combined(lv_, h, k_first, k_mid, k_last):
            new = list(lv_)
            for j, i in enumerate(idx):
                new[i] = combine(lv_[i], h, k_first[j], k_mid[j], k_last[j])
            return new

        def apply_hook(lv_, t0, t1, new):
            res, res_def = flatten(hook(t0, unflatten(treedef, lv_), t1, unflatten(treedef, new)))
            if res_def != treedef:
                raise StateShapeError("post_step must return a state with the same structure as y0")
            return [tf.cast(x, d) for x, d in zip(res, tf_dtypes)]

        def step(lv_, t0, t1, h, pv_):
            if n_stages == 1:
                k_first = k_mid = k_last = slopes(lv_, t0, pv_)
            else:
                k_last, k_first, k_mid, _ = stage_loop(lv_, t0, h, pv_, n_stages)
            new = combined(lv_, h, k_first, k_mid, k_last)
            return new if hook is None else apply_hook(lv_, t0, t1, new)

        def step_vjp(lv_, t0, t1, h, pv_, a):
            """The step's vector-Jacobian product: ``(d_lv, d_pv)`` from ``a``, the step result's cotangent.

            Written out over the stages instead of differentiating the step as a whole: the
            stages' slopes are recomputed (a stage loop, no tape), then a second loop takes the
            stages in reverse, each stage's right-hand side under its own tape. With
            ``y_new = y + h sum_s b_s k_s`` and ``k_s = f(y + c_s h k_{s-1})``, the cotangent of
            ``k_s`` is ``b_s h a`` plus ``c_{s+1} h`` times what stage ``s + 1`` sends back to its
            input. The graph holds one right-hand side and one of its gradients whatever the
            number of stages (issue 26: the unrolled RK4 step's gradient held four of each and
            doubled the compilation of chapter 8's loss and gradient).
            """
            lv_ = list(lv_)
            keep = [tf.TensorArray(lv_[i].dtype, size=n_stages, element_shape=lv_[i].shape) for i in idx]
            if hook is None:
                a_raw, d_y = list(a), list(a)  # y_new = y + h sum_s b_s k_s: a passes through the identity
                if n_stages > 1:  # the last stage's slope is not needed to re-enter the stages
                    _, _, _, keep = stage_loop(lv_, t0, h, pv_, n_stages - 1, keep)
            else:
                k_last, k_first, k_mid, keep = stage_loop(lv_, t0, h, pv_, n_stages, keep)
                # fresh tensors: an entry the scheme carries unchanged must not be watched twice
                raw = [tf.identity(x) for x in combined(lv_, h, k_first, k_mid, k_last)]
                with tf.GradientTape() as tape:
                    tape.watch([lv_, raw])
                    out = apply_hook(lv_, t0, t1, raw)
                d_hook, a_raw = tape.gradient(out, [lv_, raw], output_gradients=list(a),
                                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
                d_y = [x + y for x, y in zip(d_hook, a_raw)]
            stacked = [ta.stack() for ta in keep] if n_stages > 1 else None

            def body(s, carry, d_y_, d_p_):
                ch = tf.gather(c, s) * h
                b_h = tf.gather(b, s) * h
                ys = list(lv_)
                for j, i in enumerate(idx):
                    if stacked is not None:
                        ys[i] = lv_[i] + _like(ch, lv_[i]) * stacked[j][tf.maximum(s - 1, 0)]
                with tf.GradientTape() as tape:
                    p_s = [tf.identity(x) for x in pv_]  # this stage's own copy, so the tape sees it
                    tape.watch([ys, p_s])
                    k = slopes(ys, t0 + ch, p_s)
                d_k = [_like(b_h, a_raw[i]) * a_raw[i] + cj for (j, i), cj in zip(enumerate(idx), carry)]
                d_ys, d_ps = tape.gradient(k, [ys, p_s], output_gradients=d_k,
                                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
                carry = [_like(ch, d_ys[i]) * d_ys[i] for i in idx]  # to stage s - 1's slope
                return s - 1, carry, [x + y for x, y in zip(d_y_, d_ys)], [x + y for x, y in zip(d_p_, d_ps)]

            zeros = [tf.zeros_like(lv_[i]) for i in idx]
            out = tf.while_loop(lambda s, *_: s >= 0, body,
                                (tf.constant(n_stages - 1), zeros, d_y, [tf.zeros_like(x) for x in pv_]),
                                maximum_iterations=n_stages)
            return out[2], out[3]

        step.vjp = step_vjp
        return step

    # -- the compiled loops ------------------------------------------------------------------
    def _records_of(self, treedef: TreeDef, lv: List[Any]) -> List[Any]:
        return flatten(checks.select(self.record, unflatten(treedef, lv)))[0]

    def _loop(self, treedef: TreeDef, dtypes: Tuple[np.dtype, ...], pdef: Optional[TreeDef]) -> Callable:
        """The Python function of the forward loop, ``run(lv, tt, dts, pv) -> (stacks, final, fail_start, good, r)``.

        ``pdef`` is the structure of ``params`` (None: ``func(y, t)``).
        """
        every = self.every

        def records_of(lv):
            return self._records_of(treedef, lv)

        def run(lv, tt, dts, pv):
            self.traces += 1  # a Python side effect: runs when TensorFlow traces, not when it executes
            step = self._stepper(treedef, dtypes, pdef, lv, tt.dtype, pv)
            n_points = tt.shape[0]
            n_steps = n_points - 1
            n_rec = checks.n_records(n_points, every)
            rec0 = records_of(lv)

            def advance(start, count, lv_):
                def body(i, *xs):
                    return (i + 1, *step(list(xs), tt[i], tt[i + 1], dts[i], pv))

                return list(tf.while_loop(lambda i, *_: i < start + count, body, (start, *lv_))[1:])

            tas = [tf.TensorArray(x.dtype, size=n_rec, element_shape=x.shape) for x in rec0]
            tas = [ta.write(0, x) for ta, x in zip(tas, rec0)]

            def ocond(r, ok, cur, prev, tas_):
                return tf.logical_and(r < n_rec, ok)

            def obody(r, ok, cur, prev, tas_):
                new = advance((r - 1) * every, every, cur)
                tas_ = [ta.write(r, x) for ta, x in zip(tas_, records_of(new))]
                return r + 1, _all_finite(new), new, cur, tas_

            r, ok, cur, prev, tas = tf.while_loop(
                ocond, obody, (tf.constant(1), tf.constant(True), lv, lv, tas))
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

        return run

    def _adjoint(self, treedef: TreeDef, dtypes: Tuple[np.dtype, ...], pdef: Optional[TreeDef]) -> Callable:
        """``grad_run(lv, tt, dts, pv, cotangents) -> (stacks, final, fail_start, d_lv, d_pv)``: the
        differentiable run, its vector-Jacobian product written out as a backward loop over steps.

        ``cotangents(stacks, final) -> (d_stacks, d_final)`` gives the gradient of the quantity to
        differentiate with respect to the records and the final state (a loss's, or those a tape
        hands to a custom gradient).

        The forward loop stores the state at the start of every step (with ``checkpoint_every``:
        of every chunk, and each chunk's states are recomputed from it on the way back). The
        backward loop then takes the steps in reverse, each under its own ``tf.GradientTape``:
        the step is re-run from its stored state, differentiated, and its intermediate values (the
        stages' rates, currents, gate powers) freed before the next. What the backward pass keeps
        is therefore the state per step, not every stage's intermediates, at the price of one more
        forward step per step. Reverse-mode differentiation of the whole loop by TensorFlow would
        keep every intermediate and build a graph several times the size (issue 26).
        """
        every, chunk = self.every, self.checkpoint_every

        def records_of(lv):
            return self._records_of(treedef, lv)

        def grad_run(lv, tt, dts, pv, cotangents):
            self.traces += 1
            step = self._stepper(treedef, dtypes, pdef, lv, tt.dtype, pv)
            n_points = tt.shape[0]
            n_steps = n_points - 1
            n_rec = checks.n_records(n_points, every)
            c = chunk or 1                       # states are stored every c steps
            n_store = n_steps // c
            rec0 = records_of(lv)

            def advance(start, count, lv_, tas=None, offset=0):
                """``count`` steps from ``start``; the state before step i goes to ``tas`` at ``i - offset``."""
                def body(i, xs, tas_):
                    if tas is not None:
                        tas_ = [ta.write(i - offset, x) for ta, x in zip(tas_, xs)]
                    return i + 1, step(list(xs), tt[i], tt[i + 1], dts[i], pv), tas_

                out = tf.while_loop(lambda i, *_: i < start + count, body, (start, list(lv_), tas or []),
                                    maximum_iterations=count)
                return out[1], out[2]

            # forward: records, and the states the backward pass starts its steps from
            rec_tas = [tf.TensorArray(x.dtype, size=n_rec, element_shape=x.shape).write(0, x) for x in rec0]
            st_tas = [tf.TensorArray(x.dtype, size=n_steps if chunk is None else n_store, element_shape=x.shape)
                      for x in lv]

            # blocks of one record (every steps), or of one chunk (c steps, c // every records)
            per = 1 if chunk is None else c // every
            n_blocks = (n_rec - 1) // per

            def fbody(b, ok, cur, rec_tas_, st_tas_):
                if chunk is not None:
                    st_tas_ = [ta.write(b, x) for ta, x in zip(st_tas_, cur)]

                def rbody(q, cur_, rec_tas__, st_tas__):
                    r = b * per + q
                    if chunk is None:
                        new, st_tas__ = advance(r * every, every, cur_, st_tas__)
                    else:
                        new, _ = advance(r * every, every, cur_)
                    rec_tas__ = [ta.write(r + 1, x) for ta, x in zip(rec_tas__, records_of(new))]
                    return q + 1, new, rec_tas__, st_tas__

                if per == 1:
                    _, new, rec_tas_, st_tas_ = rbody(0, cur, rec_tas_, st_tas_)
                else:
                    _, new, rec_tas_, st_tas_ = tf.while_loop(
                        lambda q, *_: q < per, rbody, (tf.constant(0), cur, rec_tas_, st_tas_),
                        maximum_iterations=per)
                return b + 1, tf.logical_and(ok, _all_finite(new)), new, rec_tas_, st_tas_

            _, ok, cur, rec_tas, st_tas = tf.while_loop(
                lambda b, *_: b < n_blocks, fbody, (tf.constant(0), tf.constant(True), list(lv), rec_tas, st_tas),
                maximum_iterations=n_blocks)
            last_rec_step = (n_rec - 1) * every
            rem = n_steps - last_rec_step      # 0 with checkpoint_every (it divides the steps)
            if rem > 0:
                final, st_tas = advance(tf.constant(last_rec_step), rem, cur, st_tas)
                ok = tf.logical_and(ok, _all_finite(final))
            else:
                final = cur
            stacks = [ta.stack() for ta in rec_tas]
            fail_start = tf.where(ok, -1, 0)
            d_stacks, d_final = cotangents(stacks, final)
            d_stacks = [tf.zeros_like(s) if d is None else tf.cast(d, s.dtype) for d, s in zip(d_stacks, stacks)]

            # backward: the adjoint of the state, from the end to the start, one step at a time
            def back_step(j, y_j, a, dp):
                """The adjoint before step j from the one after it; the record at t[j] added."""
                on_record = tf.equal(j % every, 0)
                d_rec = [tf.where(on_record, tf.gather(d, j // every), tf.zeros_like(d[0])) for d in d_stacks]
                da, dp_j = step.vjp(list(y_j), tt[j], tt[j + 1], dts[j], pv, a)
                y_r = [tf.identity(x) for x in y_j]
                with tf.GradientTape() as tape:
                    tape.watch(y_r)
                    rec = records_of(y_r)
                d_r = tape.gradient(rec, y_r, output_gradients=d_rec,
                                    unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return [x + y for x, y in zip(da, d_r)], [x + y for x, y in zip(dp, dp_j)]

            def reverse(base, count, state_at, a, dp):
                """Steps ``base + count - 1`` down to ``base``; ``state_at(k)``: the state before step base + k."""
                def body(k, a_, dp_):
                    return (k - 1, *back_step(base + k, state_at(k), a_, dp_))

                out = tf.while_loop(lambda k, *_: k >= 0, body, (count - 1, a, dp), maximum_iterations=count)
                return out[1], out[2]

            a = [tf.zeros_like(x) if d is None else tf.cast(d, x.dtype) for d, x in zip(d_final, final)]
            if rem == 0:  # the last record is the final state's
                with tf.GradientTape() as tape:
                    y_n = [tf.identity(x) for x in final]
                    tape.watch(y_n)
                    rec = records_of(y_n)
                extra = tape.gradient(rec, y_n, output_gradients=[d[-1] for d in d_stacks],
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                a = [x + y for x, y in zip(a, extra)]
            dp = [tf.zeros_like(x) for x in pv]
            states = [ta.stack() for ta in st_tas]
            if chunk is None:
                a, dp = reverse(0, n_steps, lambda k: [s[k] for s in states], a, dp)
            else:
                def cbody(j, a_, dp_):
                    seg = [tf.TensorArray(x.dtype, size=c, element_shape=x.shape) for x in lv]
                    _, seg = advance(j * c, c, [s[j] for s in states], seg, offset=j * c)
                    seg = [s.stack() for s in seg]
                    return (j - 1, *reverse(j * c, c, lambda k: [s[k] for s in seg], a_, dp_))

                a, dp = tf.while_loop(lambda j, *_: j >= 0, cbody, (tf.constant(n_store - 1), a, dp),
                                      maximum_iterations=n_store)[1:]
            return stacks, final, fail_start, a, dp

        return grad_run

    def _compile(self, fn: Callable) -> Callable:
        _COMPILED[0] = True
        # TensorFlow counts traces per Python code object to warn about "frequent retracing"; every
        # Integrator shares these functions' code, so each new model's (legitimate) first trace would
        # count against all the others. A partial object has no __code__, so each Integrator is
        # counted on its own and the warning keeps its meaning: one Integrator retracing on every call.
        compiled = tf.function(functools.partial(fn), jit_compile=self.xla, autograph=False)
        if not self.xla:
            return compiled
        # An XLA function called directly on a remote TensorFlow worker fails ("KernelAndDeviceOp
        # does not support EagerFunctionParams", TF 2.21); called from a plain graph function it is
        # compiled and run there like anywhere else. The wrapper costs one function call per run.
        return tf.function(functools.partial(compiled), autograph=False)

    def _function(self, kind: Hashable, key: Tuple, make: Callable[[], Callable]) -> Callable:
        full = (kind, *key)
        if full not in self._compiled:
            self._compiled[full] = self._compile(make())
        return self._compiled[full]

    def _forward(self, key: Tuple) -> Callable:
        return self._function("forward", key, lambda: self._loop(*key))

    def _vjp(self, key: Tuple) -> Callable:
        """``vjp(lv, tt, dts, pv, d_stacks, d_final) -> (d_lv, d_pv)``: the backward pass of a run."""
        def make():
            grad_run = self._adjoint(*key)

            def vjp(lv, tt, dts, pv, d_stacks, d_final):
                return grad_run(lv, tt, dts, pv, lambda stacks, final: (d_stacks, d_final))[3:]
            return vjp
        return self._function("vjp", key, make)

    def _value_and_grad_fn(self, loss_fn: Callable, wrt: Tuple, key: Tuple) -> Callable:
        """``value_and_grad(lv, tt, dts, pv) -> (loss, grads, fail_start)`` for :meth:`value_and_gradient`."""
        treedef, _, pdef = key
        grad_run = self._adjoint(*key)

        def value_and_grad(lv, tt, dts, pv):
            got = {}

            def cotangents(stacks, final):
                with tf.GradientTape() as tape:
                    tape.watch(stacks)
                    loss = loss_fn(unflatten(self._record_def(treedef, lv), stacks))
                got["loss"] = loss
                return tape.gradient(loss, stacks), [None] * len(final)

            _, _, fail_start, _, d_pv = grad_run(lv, tt, dts, pv, cotangents)
            grads = unflatten(pdef, d_pv)
            return got["loss"], [grads[k] for k in wrt], fail_start
        return value_and_grad

    # -- inputs ---------------------------------------------------------------------------------
    def _prepare(self, y0: Any, t: Any, params: Any):
        t64 = checks.check_time_grid(t)
        leaves, treedef, dtypes = checks.check_state(y0)
        lv = [tf.convert_to_tensor(x, dtype=tf.as_dtype(d)) for x, d in zip(leaves, dtypes)]
        pdef, pv = None, []
        if params is not None:
            pv, pdef = _check_params(params, dtypes)
        tdt = checks.time_dtype(dtypes)
        tt = tf.constant(t64.astype(tdt))
        dts = tf.constant(np.diff(t64).astype(tdt))  # float64 differences: exact steps in float32
        key = (treedef, tuple(dtypes), pdef)
        return t64, key, lv, tt, dts, pv

    def _run_raw(self, y0: Any, t: Any, params: Any = None):
        t64, key, lv, tt, dts, pv = self._prepare(y0, t, params)
        stacks, final, fail_start, good, r = self._forward(key)(lv, tt, dts, pv)
        fail_start, r = self._flags(fail_start, r)
        return t64, key[0], self._record_def(key[0], lv), stacks, final, fail_start, good, r

    @staticmethod
    def _flags(fail_start, r) -> Tuple[int, int]:
        # one read of both flags: on a remote worker every read is a network round trip
        return tuple(int(x) for x in tf.stack([fail_start, r]).numpy())

    def _record_def(self, treedef: TreeDef, lv: List[Any]) -> TreeDef:
        return flatten(checks.select(self.record, unflatten(treedef, lv)))[1]

    # -- public entry points ------------------------------------------------------------------
    def __call__(self, y0: Any, t: Any, *, params: Any = None, return_final: bool = False) -> Any:
        """Integrate from ``y0`` over the grid ``t``; see :func:`odeint` for the result layout.

        Parameters
        ----------
        y0, t, return_final
            As in :func:`odeint`.
        params : dict (or nested structure) of numbers, arrays or tensors, optional
            The model's parameters as inputs of the compiled loop: ``func(y, t, params)`` receives
            them as tensors (in the state's dtype; float32 where the state mixes float32 and
            float64), and a new value reuses the compiled code. The records (and the final state)
            are then differentiable: inside ``tf.GradientTape`` the tape sees ``params`` and
            ``y0`` (watch them, or pass ``tf.Variable``s). Pass ``params={}`` to differentiate
            with respect to the start state alone.

        Raises
        ------
        InputDtypeError, TimeGridError, StateShapeError, NonFiniteInputError
            On bad input, before any step is taken.
        ParameterError
            ``params`` holds something that is not a number (or ``checkpoint_every`` does not fit
            the grid).
        NonFiniteStateError
            As in :func:`odeint`.
        """
        if params is not None:
            return self._differentiable_call(y0, t, params, return_final)
        t64, treedef, rec_def, stacks, final, fail_start, good, r = self._run_raw(y0, t)
        if fail_start >= 0:
            self._raise_nonfinite(t64, treedef, rec_def, stacks, fail_start, good)
        records = unflatten(rec_def, stacks)
        if return_final:
            return records, unflatten(treedef, final)
        return records

    def _differentiable_call(self, y0: Any, t: Any, params: Any, return_final: bool) -> Any:
        t64, key, lv, tt, dts, pv = self._prepare(y0, t, params)
        self._check_chunks(len(t64) - 1)
        forward, vjp = self._forward(key), self._vjp(key)
        n_y, got = len(lv), {}

        # A tape outside sees this custom gradient: the forward run compiled without storing
        # anything for a backward pass, and a backward function (one compiled call) that runs the
        # loop again storing the state per step, then the steps in reverse. The extra forward run
        # is paid only when a gradient is asked for.
        @tf.custom_gradient
        def run(*flat):
            flat = [tf.stop_gradient(x) for x in flat]  # the outer tape must not record the compiled call
            lv_, pv_ = list(flat[:n_y]), list(flat[n_y:])
            stacks, final, fail_start, good, r = forward(lv_, tt, dts, pv_)
            got.update(fail_start=fail_start, r=r, good=good, stacks=stacks)
            outputs = [*stacks, *final]

            def grad(*upstream):
                up = [tf.zeros_like(o) if u is None else u for u, o in zip(upstream, outputs)]
                d_lv, d_pv = vjp(lv_, tt, dts, pv_, up[:len(stacks)], up[len(stacks):])
                return (*d_lv, *d_pv)

            return outputs, grad

        out = run(*lv, *pv)
        fail_start, _ = self._flags(got["fail_start"], got["r"])
        treedef, rec_def = key[0], self._record_def(key[0], lv)
        if fail_start >= 0:
            self._raise_nonfinite(t64, treedef, rec_def, got["stacks"], fail_start, got["good"], params)
        n_s = len(got["stacks"])
        records = unflatten(rec_def, out[:n_s])
        if return_final:
            return records, unflatten(treedef, out[n_s:])
        return records

    def value_and_gradient(
        self, loss_fn: Callable[[Any], tf.Tensor], y0: Any, t: Any, *, params: Any,
        wrt: Optional[Sequence[Hashable]] = None,
    ) -> Tuple[tf.Tensor, Dict[Hashable, Any]]:
        """``loss_fn(records)`` and its gradient with respect to the entries of ``params`` named in ``wrt``.

        Loss and backward pass run in one compiled call: faster than a ``GradientTape`` around
        :meth:`__call__` when called many times, as in a fit (chapter 8). ``loss_fn`` must use
        TensorFlow operations and be the same Python object on every call to reuse the compiled
        code. The records it receives are those of :meth:`__call__` (``t[0]`` included). The result
        is not itself differentiable: apply the chain rule to ``grads`` yourself (e.g. for
        log-parameters).

        Parameters
        ----------
        loss_fn : callable
            ``loss_fn(records) -> tensor`` (a non-scalar loss is summed).
        y0, t, params
            As in :meth:`__call__`; ``params`` must be a dict.
        wrt : sequence of keys, optional
            The entries of ``params`` to differentiate with respect to (default: all).

        Returns
        -------
        loss : tensor
        grads : dict
            ``{name: d loss / d params[name]}``, each of the parameter's structure and shape.

        Raises
        ------
        ParameterError
            ``wrt`` names an entry that ``params`` does not have; and as :meth:`__call__`.
        NonFiniteStateError
            The state became NaN/inf (the report names the step, as :meth:`__call__`'s).
        """
        if not isinstance(params, dict):
            raise ParameterError(f"value_and_gradient needs params as a dict (wrt names its entries), got "
                                 f"{type(params).__name__}")
        wrt = tuple(params) if wrt is None else tuple(wrt)
        missing = [k for k in wrt if k not in params]
        if missing:
            raise ParameterError(f"wrt names {missing}, which are not in params (have {sorted(params, key=str)})")
        t64, key, lv, tt, dts, pv = self._prepare(y0, t, params)
        self._check_chunks(len(t64) - 1)

        fn = self._function(("value_and_gradient", loss_fn, wrt), key,
                            lambda: self._value_and_grad_fn(loss_fn, wrt, key))
        # the gradient is computed inside; an enclosing tape must not differentiate the compiled call
        # a second time (TensorFlow cannot pass its loop buffers out of XLA)
        loss, grads, fail_start = fn([tf.stop_gradient(x) for x in lv], tt, dts, [tf.stop_gradient(x) for x in pv])
        if int(fail_start) >= 0:
            self(y0, t, params=params)  # raises NonFiniteStateError with the step, time and variable
        return loss, dict(zip(wrt, grads))

    def _check_chunks(self, n_steps: int) -> None:
        check_chunk(self.checkpoint_every, self.every, n_steps)

    def _raise_nonfinite(self, t64, treedef, rec_def, stacks, fail_start, good, params=None):
        """Re-run the failing stretch one step at a time to name the exact step and variable."""
        end = min(fail_start + self.every, len(t64) - 1)
        probe = Integrator(self.func, method=self.method, record=None, every=1, post_step=self.post_step, xla=False)
        _, _, _, _, bad_state, local, _, _ = probe._run_raw(unflatten(treedef, good), t64[fail_start : end + 1], params)
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


def enable_compile_cache(directory: Any) -> str:
    """Keep XLA's compiled loops on disk, so that later processes load them instead of compiling.

    TensorFlow's persistent XLA cache (``--tf_xla_persistent_cache_directory`` in ``TF_XLA_FLAGS``),
    which works on CPU as well as GPU: each compiled loop is written to ``directory`` as one file,
    named by a fingerprint of the computation and its input shapes, and a process that needs the
    same computation reads it back. Tracing (Python building the graph) is not cached; only XLA's
    compilation is. A changed model, grid length, dtype or TensorFlow version is a different
    fingerprint, so a stale file is never used for another computation (the files of old ones stay
    until you delete them). ``benchmarks/compile_and_gradient.py cache`` measures a second process's
    first call with and without it.

    Parameters
    ----------
    directory : str or path
        Where the compiled loops are kept (created if missing).

    Returns
    -------
    str
        The absolute path of the directory.

    Raises
    ------
    ParameterError
        A loop was compiled already in this process: XLA reads its flags once, at its first
        compilation, so call this first (e.g. at the top of a script or notebook).
    """
    import os

    if _COMPILED[0]:
        raise ParameterError("enable_compile_cache must be called before the first compiled run of this process: "
                             "XLA reads its flags once, when it first compiles")
    path = os.path.abspath(os.fspath(directory))
    os.makedirs(path, exist_ok=True)
    flags = [f for f in os.environ.get("TF_XLA_FLAGS", "").split()
             if not f.startswith("--tf_xla_persistent_cache_directory")]
    os.environ["TF_XLA_FLAGS"] = " ".join(flags + [f"--tf_xla_persistent_cache_directory={path}"])
    return path


def _check_params(params: Any, dtypes: Sequence[np.dtype]) -> Tuple[List[tf.Tensor], TreeDef]:
    """``params`` as tensor leaves in the computation's dtype, and its structure.

    The computation's dtype is the state's (float32 where the state mixes float32 and float64: a
    float32 network keeps only its times in float64).
    """
    dtype = tf.float32 if np.dtype(np.float32) in dtypes else tf.float64
    leaves, pdef = flatten(params)
    out = []
    for path, leaf in zip(leaf_paths(pdef), leaves):
        where = "params" + ("" if path == "y" else path)
        if isinstance(leaf, (tf.Tensor, tf.Variable)):
            ok = leaf.dtype.is_floating or leaf.dtype.is_integer
        else:
            try:
                arr = np.asarray(leaf)
            except Exception:  # noqa: BLE001 - anything NumPy cannot read is not a parameter value
                arr = np.asarray(None)
            ok = arr.dtype.kind in "fiu"
            if ok and not np.all(np.isfinite(arr)):
                raise NonFiniteInputError(f"{where} holds a NaN or infinite value; every parameter must be finite")
        if not ok:
            raise ParameterError(f"{where} must be a number, an array or a tensor of numbers, got {leaf!r}")
        out.append(as_tensor(leaf, dtype))
    return out, pdef


def odeint(
    func: Callable[..., Any],
    y0: Any,
    t: Any,
    *,
    method: str = "rk4",
    record: checks.Record = None,
    every: int = 1,
    post_step: Optional[PostStep] = None,
    xla: bool = True,
    params: Any = None,
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
        With ``params``: ``func(y, t, params)``.
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
    params : dict or nested structure, optional
        The model's parameters, as inputs that ``tf.GradientTape`` sees (chapter 8; see
        :meth:`Integrator.__call__`).
    return_final : bool
        Also return the state at ``t[-1]``.

    Returns
    -------
    records : tf.Tensor or nested structure of tf.Tensor
        Each leaf has shape ``(len(t[::every]), *leaf_shape)``; the first record is ``y0``'s.
    y_final : same structure as y0 (only with ``return_final``)

    Raises
    ------
    InputDtypeError, TimeGridError, StateShapeError, NonFiniteInputError, ParameterError
        On bad input, before any step is taken.
    NonFiniteStateError
        When the state becomes NaN/inf; names the step, time and variable and keeps the records
        made before the failure in ``.partial``.
    """
    integ = Integrator(func, method=method, record=record, every=every, post_step=post_step, xla=xla)
    return integ(y0, t, params=params, return_final=return_final)
