"""The compiled TensorFlow solver (chapter 2 onwards; its gradient options in chapter 8).

The whole time loop is one ``tf.function`` (optionally XLA-compiled, ``xla=True`` by default):
an outer ``tf.while_loop`` over the stored time points and an inner one over the ``every`` steps
between two of them.  Only what ``record`` selects is written, into ``tf.TensorArray``s, so
memory grows with ``len(t) / every`` times the recorded size, never with the whole state at every
step (the design that ran the original tutorial out of memory).

The same loop is differentiable (chapter 8): pass the model's parameters as ``params`` and
``tf.GradientTape`` sees them (and the start state); :meth:`Integrator.value_and_gradient` runs a
loss and its gradient in one compiled call. Reverse mode under XLA needs every ``tf.while_loop``
to have ``maximum_iterations`` (the per-step values kept for the backward pass need a fixed-size
buffer); the loops that gradients flow through have it, the forward-only loop keeps the early exit
it always had. ``checkpoint_every`` trades memory for time in the backward pass.

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
from .schemes import get_scheme

__all__ = ["Integrator", "odeint", "as_tensor"]


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
        Gradient checkpointing (chapter 8): the backward pass runs the loop in chunks of this many
        steps, each wrapped in ``tf.recompute_grad``, so it stores the state once per chunk plus
        the values of one chunk instead of every step's, at the price of running each chunk
        forward twice. A multiple of ``every`` that divides the number of steps; results and
        gradients are unchanged (to rounding), and runs without a gradient never use it.

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
        self.traces = 0

    # -- the compiled loops ------------------------------------------------------------------
    def _loop(self, treedef: TreeDef, dtypes: Tuple[np.dtype, ...], pdef: Optional[TreeDef],
              grad: bool) -> Callable:
        """The Python function of the loop, ``run(lv, tt, dts, pv) -> (stacks, final, fail_start, good, r)``.

        ``pdef`` is the structure of ``params`` (None: ``func(y, t)``). ``grad`` builds the loop that
        gradients flow through: every ``tf.while_loop`` gets ``maximum_iterations``, and with
        ``checkpoint_every`` the steps run in chunks under ``tf.recompute_grad``.
        """
        func, hook, record, every, step_fn = self.func, self.post_step, self.record, self.every, self.step_fn
        chunk = self.checkpoint_every if grad else None
        tf_dtypes = [tf.as_dtype(d) for d in dtypes]

        def rhs(p):
            def f(lv, tm):
                y = unflatten(treedef, lv)
                out = func(y, tm) if pdef is None else func(y, tm, p)
                return checks.check_derivative(out, treedef, lv, dtypes)  # static checks at trace time
            return f

        def one_step(f, tt, dts, i, lv):
            t0, t1, h = tt[i], tt[i + 1], dts[i]
            new = step_fn(f, lv, t0, h)
            if hook is not None:
                res, res_def = flatten(hook(t0, unflatten(treedef, lv), t1, unflatten(treedef, new)))
                if res_def != treedef:
                    raise StateShapeError("post_step must return a state with the same structure as y0")
                new = [tf.cast(x, d) for x, d in zip(res, tf_dtypes)]
            return new

        def advance(f, tt, dts, start, count, lv, most):
            """``count`` (at most ``most``, a Python int) steps from step ``start``."""
            def body(i, *xs):
                return (i + 1, *one_step(f, tt, dts, i, list(xs)))

            out = tf.while_loop(lambda i, *_: i < start + count, body, (start, *lv),
                                maximum_iterations=most if grad else None)
            return list(out[1:])

        def records_of(lv):
            return flatten(checks.select(record, unflatten(treedef, lv)))[0]

        def run(lv, tt, dts, pv):
            self.traces += 1  # a Python side effect: runs when TensorFlow traces, not when it executes
            n_points = tt.shape[0]
            n_steps = n_points - 1
            n_rec = checks.n_records(n_points, every)
            rec0 = records_of(lv)
            if chunk is not None:
                return chunked(lv, tt, dts, pv, rec0, n_steps)
            f = rhs(None if pdef is None else unflatten(pdef, pv))
            tas = [tf.TensorArray(x.dtype, size=n_rec, element_shape=x.shape) for x in rec0]
            tas = [ta.write(0, x) for ta, x in zip(tas, rec0)]

            def ocond(r, ok, cur, prev, tas_):
                return tf.logical_and(r < n_rec, ok)

            def obody(r, ok, cur, prev, tas_):
                new = advance(f, tt, dts, (r - 1) * every, every, cur, every)
                tas_ = [ta.write(r, x) for ta, x in zip(tas_, records_of(new))]
                return r + 1, _all_finite(new), new, cur, tas_

            r, ok, cur, prev, tas = tf.while_loop(
                ocond, obody, (tf.constant(1), tf.constant(True), lv, lv, tas),
                maximum_iterations=n_rec - 1 if grad else None,
            )
            # steps after the last stored point (when every does not divide the number of steps)
            last_rec_step = (n_rec - 1) * every
            rem = n_steps - last_rec_step
            if rem > 0:
                final = advance(f, tt, dts, tf.constant(last_rec_step), tf.where(ok, rem, 0), cur, rem)
                fin_rem = _all_finite(final)
            else:
                final, fin_rem = cur, tf.constant(True)
            fail_start = tf.where(
                ok, tf.where(fin_rem, -1, last_rec_step), (r - 2) * every
            )
            good = [tf.where(ok, c, p) for c, p in zip(cur, prev)]
            stacks = [ta.stack() for ta in tas]
            return stacks, final, fail_start, good, r

        def chunked(lv, tt, dts, pv, rec0, n_steps):
            """The gradient loop in chunks of ``chunk`` steps, each recomputed in the backward pass."""
            n_chunks, per_chunk = n_steps // chunk, chunk // every
            n_y, n_p = len(lv), len(pv)

            # tf.recompute_grad wants a function of tensors only: state, parameters, the chunk's times
            def one_chunk(*args):
                cur, pv_c, tt_c, dts_c = list(args[:n_y]), args[n_y:n_y + n_p], args[-2], args[-1]
                f = rhs(None if pdef is None else unflatten(pdef, list(pv_c)))
                tas = [tf.TensorArray(x.dtype, size=per_chunk, element_shape=x.shape) for x in rec0]

                def body(r, tas_, *xs):
                    new = advance(f, tt_c, dts_c, r * every, every, list(xs), every)
                    return (r + 1, [ta.write(r, x) for ta, x in zip(tas_, records_of(new))], *new)

                out = tf.while_loop(lambda r, *_: r < per_chunk, body, (tf.constant(0), tas, *cur),
                                    maximum_iterations=per_chunk)
                return (*[ta.stack() for ta in out[1]], *out[2:])

            chunk_fn = tf.recompute_grad(one_chunk)
            tas = [tf.TensorArray(x.dtype, size=n_chunks, element_shape=[per_chunk, *x.shape]) for x in rec0]

            def body(j, ok, cur, prev, tas_):
                start = j * chunk
                out = chunk_fn(*cur, *pv, tf.slice(tt, [start], [chunk + 1]), tf.slice(dts, [start], [chunk]))
                new = list(out[len(rec0):])
                tas_ = [ta.write(j, x) for ta, x in zip(tas_, out[:len(rec0)])]
                return j + 1, _all_finite(new), new, cur, tas_

            j, ok, cur, prev, tas = tf.while_loop(
                lambda j, ok, *_: tf.logical_and(j < n_chunks, ok), body,
                (tf.constant(0), tf.constant(True), lv, lv, tas), maximum_iterations=n_chunks)
            stacks = [tf.concat([x[None], tf.reshape(ta.stack(), [n_chunks * per_chunk, *x.shape])], 0)
                      for x, ta in zip(rec0, tas)]
            fail_start = tf.where(ok, -1, (j - 1) * chunk)
            good = [tf.where(ok, c, p) for c, p in zip(cur, prev)]
            return stacks, cur, fail_start, good, j

        return run

    def _compile(self, fn: Callable) -> Callable:
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
        return self._function("forward", key, lambda: self._loop(*key, grad=False))

    def _vjp(self, key: Tuple) -> Callable:
        """``vjp(lv, tt, dts, pv, d_stacks, d_final) -> (d_lv, d_pv)``: the backward pass of a run."""
        def make():
            run = self._loop(*key, grad=True)

            def vjp(lv, tt, dts, pv, d_stacks, d_final):
                with tf.GradientTape() as tape:
                    tape.watch([lv, pv])
                    stacks, final = run(lv, tt, dts, pv)[:2]
                return tape.gradient([*stacks, *final], [lv, pv], output_gradients=[*d_stacks, *d_final],
                                     unconnected_gradients=tf.UnconnectedGradients.ZERO)
            return vjp
        return self._function("vjp", key, make)

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

        # An XLA function cannot hand the per-step values its loop stores over to a separate
        # backward call ("TensorList crossing the XLA/TF boundary"), so a tape outside sees this
        # custom gradient instead: the forward run compiled without a tape, and a backward function
        # that re-runs the loop under its own tape and returns the vector-Jacobian product (one
        # extra forward run, paid only when a gradient is asked for).
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
        pdef = key[2]

        def make():
            run = self._loop(*key, grad=True)

            def value_and_grad(lv_, tt_, dts_, pv_):
                with tf.GradientTape() as tape:
                    tape.watch(pv_)
                    p = unflatten(pdef, pv_)
                    stacks, _, fail_start = run(lv_, tt_, dts_, pv_)[:3]
                    loss = loss_fn(unflatten(self._record_def(key[0], lv_), stacks))
                grads = tape.gradient(loss, [p[k] for k in wrt], unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return loss, grads, fail_start
            return value_and_grad

        fn = self._function(("value_and_gradient", loss_fn, wrt), key, make)
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
