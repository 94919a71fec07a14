"""Differentiable simulation: gradients of a loss through the compiled solver (chapter 8).

Chapter 8 fits the conductances of a Hodgkin-Huxley neuron by gradient descent *through* the
RK4 loop. What that needs beyond plain TensorFlow lives here:

* :class:`GradientIntegrator`, a compiled (XLA) fixed-step loop whose **model parameters are
  inputs**, so ``tf.GradientTape`` sees them and a new parameter value reuses the compiled code
  (it retraces only for a new structure, shape or dtype; :attr:`GradientIntegrator.traces` counts).
  Its ``tf.while_loop`` has ``maximum_iterations`` set, which reverse-mode differentiation under
  XLA requires (the per-step values kept for the backward pass need a fixed-size buffer).
  With ``checkpoint_every`` the loop runs in chunks wrapped in ``tf.recompute_grad``: only the
  state at chunk boundaries is kept, and each chunk is recomputed during the backward pass.
* :func:`hh_rhs`, :func:`hh_params`, :func:`hh_rest_state`: one HH neuron (or a batch of
  independent ones) with its parameters as tensors, built from the kernels of
  :mod:`psst_helpers.neurons`.
* :func:`gates_from_voltage` and :func:`teacher_forced_windows`: the short-window ("teacher
  forcing", or multiple shooting) fitting problem, whose loss landscape stays smooth when a full
  trace's does not; :func:`mse` is the loss.
* :func:`peak_memory`: the extra memory a call needs at its peak (what backpropagation stores).

Units: voltage mV, time ms, conductance mS/cm^2, current uA/cm^2, capacitance uF/cm^2.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from . import neurons
from .solvers.schemes import get_scheme

__all__ = [
    "GradientIntegrator", "hh_rhs", "hh_params", "hh_rest_state", "gates_from_voltage",
    "teacher_forced_windows", "smooth", "mse", "peak_memory",
]

Leaves = List[tf.Tensor]
Params = Mapping[str, Any]
#: ``func(y, t, params) -> dy/dt``: ``y`` a list of state tensors, ``params`` a dict of tensors.
ParamFunc = Callable[[Leaves, tf.Tensor, Dict[str, tf.Tensor]], Leaves]


class GradientIntegrator:
    """A compiled fixed-step integrator that keeps the model's parameters as inputs.

    Introduced in chapter 8. Calling it integrates ``n_steps`` steps of length ``dt`` from
    ``y0`` and returns ``observe(y)`` after every ``every`` steps; wrap the call (or a loss
    computed from it) in ``tf.GradientTape`` to get derivatives with respect to ``params``
    (and ``y0``).

    Parameters
    ----------
    func : callable
        ``func(y, t, params) -> list`` of derivatives, one per entry of the state list ``y``;
        ``t`` in ms and every value of ``params`` are tensors. Use TensorFlow operations (the
        kernels of :mod:`psst_helpers.neurons` work).
    n_steps : int
        Number of steps; fixed because the compiled loop needs a fixed trip count to be
        differentiable under XLA.
    dt : float
        Step (ms).
    method : str
        ``"rk4"`` (default), ``"rk2"`` or ``"euler"``: the shared steps of
        :mod:`psst_helpers.solvers.schemes`.
    observe : int or callable
        What to record: the index of a state entry (default 0, the voltage of :func:`hh_rhs`),
        or ``observe(y) -> tensor``.
    every : int
        Record after every ``every`` steps; must divide ``n_steps``.
    checkpoint_every : int, optional
        Gradient checkpointing: split the loop into chunks of this many steps, each wrapped in
        ``tf.recompute_grad``. The backward pass then stores the state once per chunk plus the
        values of one chunk, instead of every step's, at the price of running each chunk
        forward twice. Must divide ``n_steps`` and be a multiple of ``every``.
    xla : bool
        Compile with XLA (``jit_compile=True``, default); off only to debug.

    Examples
    --------
    >>> sim = GradientIntegrator(hh_rhs, n_steps=1000, dt=0.01)        # doctest: +SKIP
    >>> p = hh_params(I_ext=[5.0]); y0 = hh_rest_state(-70.0, shape=[1])  # doctest: +SKIP
    >>> with tf.GradientTape() as tape:                                   # doctest: +SKIP
    ...     tape.watch(p["g_Na"]); V = sim(y0, p)                        # V: (1000, 1) mV
    ...     loss = tf.reduce_mean(V)
    >>> tape.gradient(loss, p["g_Na"])                                    # doctest: +SKIP
    """

    def __init__(
        self,
        func: ParamFunc,
        *,
        n_steps: int,
        dt: float,
        method: str = "rk4",
        observe: Any = 0,
        every: int = 1,
        checkpoint_every: Optional[int] = None,
        xla: bool = True,
    ) -> None:
        n_steps, every = _positive_int(n_steps, "n_steps"), _positive_int(every, "every")
        if n_steps % every:
            raise ValueError(f"every={every} must divide n_steps={n_steps}: records fall on whole steps")
        if checkpoint_every is not None:
            checkpoint_every = _positive_int(checkpoint_every, "checkpoint_every")
            if n_steps % checkpoint_every or checkpoint_every % every:
                raise ValueError(
                    f"checkpoint_every={checkpoint_every} must divide n_steps={n_steps} and be a multiple of "
                    f"every={every}, so that every chunk is the same compiled loop; for example "
                    f"checkpoint_every={_suggest_chunk(n_steps, every)}")
        if not (isinstance(dt, (int, float)) and dt > 0):
            raise ValueError(f"dt must be a positive number of ms, got {dt!r}")
        if not (callable(observe) or isinstance(observe, int)):
            raise TypeError(f"observe must be a state index (int) or a callable y -> tensor, got {observe!r}")
        self.func, self.n_steps, self.dt, self.method = func, n_steps, float(dt), method
        self.step_fn = get_scheme(method)
        self.observe, self.every, self.checkpoint_every, self.xla = observe, every, checkpoint_every, bool(xla)
        self._traces = 0
        # functools.partial: TensorFlow counts retracing per code object, and every integrator shares
        # _loop's; a partial has none, so each integrator's first traces do not count against the others
        self._run = tf.function(functools.partial(self._loop), jit_compile=self.xla, autograph=False,
                                reduce_retracing=True)
        self._value_and_grad = {}
        self._vjp = tf.function(functools.partial(self._vjp_fn), jit_compile=self.xla, autograph=False,
                                reduce_retracing=True)

    @property
    def traces(self) -> int:
        """How many times the loop has been traced (compiled); a new parameter value adds none."""
        return self._traces

    @property
    def n_records(self) -> int:
        """Number of recorded time points, ``n_steps // every``."""
        return self.n_steps // self.every

    def times(self, t0: float = 0.0) -> np.ndarray:
        """Times (ms) of the records: ``t0 + dt * every * (1, 2, ..., n_records)``."""
        return t0 + self.dt * self.every * np.arange(1, self.n_records + 1)

    # -- the loop ------------------------------------------------------------------------------
    def _observe(self, y: Leaves) -> tf.Tensor:
        return self.observe(y) if callable(self.observe) else y[self.observe]

    def _steps(self, y: Leaves, t0: tf.Tensor, p: Dict[str, tf.Tensor], count: int, first: tf.Tensor) -> Leaves:
        """``count`` steps from step number ``first``; times are ``t0 + dt * step`` (integers counted)."""
        dt = tf.constant(self.dt, y[0].dtype)

        def f(lv, t):
            return list(self.func(lv, t, p))

        def body(i, *lv):
            t = t0 + dt * tf.cast(first + i, lv[0].dtype)
            return (i + 1, *self.step_fn(f, list(lv), t, dt))

        # maximum_iterations makes the trip count static: XLA needs it to differentiate the loop
        out = tf.while_loop(lambda i, *_: i < count, body, (tf.constant(0), *y), maximum_iterations=count)
        return list(out[1:])

    def _records(self, y: Leaves, t0: tf.Tensor, p: Dict[str, tf.Tensor], n_rec: int, first: tf.Tensor):
        """``n_rec`` records, ``every`` steps apart, from step ``first``; returns (stack, final state)."""
        obs0 = self._observe(y)
        ta = tf.TensorArray(obs0.dtype, size=n_rec, element_shape=obs0.shape)

        def body(r, ta_, *lv):
            lv = self._steps(list(lv), t0, p, self.every, first + r * self.every)
            return (r + 1, ta_.write(r, self._observe(lv)), *lv)

        out = tf.while_loop(lambda r, *_: r < n_rec, body, (tf.constant(0), ta, *y), maximum_iterations=n_rec)
        return out[1].stack(), list(out[2:])

    def _loop(self, y0: Leaves, params: Dict[str, tf.Tensor], t0: tf.Tensor) -> tf.Tensor:
        self._traces += 1  # runs only while tracing
        if self.checkpoint_every is None:
            return self._records(list(y0), t0, params, self.n_records, tf.constant(0))[0]
        chunk = self.checkpoint_every
        n_chunks, rec_per_chunk = self.n_steps // chunk, chunk // self.every
        keys, n_y = sorted(params), len(y0)

        # tf.recompute_grad wants a function of tensors only: state, t0, chunk index, parameters
        def one_chunk(*args):
            lv, (t0_, j), pv = list(args[:n_y]), args[n_y:n_y + 2], args[n_y + 2:]
            first = tf.cast(j, tf.int32) * chunk  # j arrives as a float: recompute_grad watches every input
            stack, lv = self._records(lv, t0_, dict(zip(keys, pv)), rec_per_chunk, first)
            return (stack, *lv)

        chunk_fn = tf.recompute_grad(one_chunk)
        obs0 = self._observe(list(y0))
        ta = tf.TensorArray(obs0.dtype, size=n_chunks, element_shape=[rec_per_chunk, *obs0.shape])

        def body(j, ta_, *lv):
            out = chunk_fn(*lv, t0, tf.cast(j, t0.dtype), *[params[k] for k in keys])
            return (j + 1, ta_.write(j, out[0]), *out[1:])

        out = tf.while_loop(lambda j, *_: j < n_chunks, body, (tf.constant(0), ta, *y0), maximum_iterations=n_chunks)
        stacked = out[1].stack()  # (n_chunks, rec_per_chunk, ...)
        return tf.reshape(stacked, [self.n_records, *obs0.shape])

    # -- public entry points -------------------------------------------------------------------
    def __call__(self, y0: Sequence[Any], params: Params, t0: Any = 0.0) -> tf.Tensor:
        """Integrate and return the records, shape ``(n_records, *observe(y0).shape)``.

        Parameters
        ----------
        y0 : sequence of tensors
            Start state (a list of leaves, e.g. ``[V, m, h, n]``); its dtype sets the precision.
        params : dict
            Model parameters; values are converted to tensors of the state's dtype. To
            differentiate with respect to one, pass a ``tf.Variable`` or ``tape.watch`` it.
        t0 : float or tensor
            Time of the start state (ms); a tensor broadcasts against the state (windows that
            start at different times run as one batch).
        """
        y0, params, t0 = self._inputs(y0, params, t0)
        keys, n_y = sorted(params), len(y0)

        # An XLA function cannot hand the per-step values its loop stores over to a separate
        # backward call ("TensorList crossing the XLA/TF boundary"), so a tape outside sees
        # this custom gradient instead: one compiled function that re-runs the loop under its
        # own tape and returns the vector-Jacobian product. It costs one extra forward run.
        @tf.custom_gradient
        def run(*flat):
            # stop_gradient: the outer tape must not record the compiled call itself
            flat = [tf.stop_gradient(x) for x in flat]
            y0_, p_, t0_ = list(flat[:n_y]), dict(zip(keys, flat[n_y:-1])), flat[-1]
            out = self._run(y0_, p_, t0_)

            def grad(upstream):
                gy, gp, gt = self._vjp(y0_, p_, t0_, upstream)
                return (*gy, *[gp[k] for k in keys], gt)

            return out, grad

        return run(*y0, *[params[k] for k in keys], t0)

    def _vjp_fn(self, y0, params, t0, upstream):
        keys = sorted(params)
        with tf.GradientTape() as tape:
            tape.watch([y0, [params[k] for k in keys], t0])
            out = self._loop(y0, params, t0)
        gy, gp, gt = tape.gradient(out, [y0, [params[k] for k in keys], t0], output_gradients=upstream,
                                   unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return gy, dict(zip(keys, gp)), gt

    def value_and_gradient(
        self, loss_fn: Callable[[tf.Tensor], tf.Tensor], y0: Sequence[Any], params: Params, wrt: Sequence[str],
        t0: Any = 0.0,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """``loss_fn(records)`` and its gradient with respect to the parameters named in ``wrt``.

        Loss and backward pass run in one compiled call (faster than a ``GradientTape`` around
        :meth:`__call__` when called many times, as in a fit). ``loss_fn`` must be the same
        Python function on every call to reuse the compiled code. The result is not itself
        differentiable: apply the chain rule to ``grads`` yourself (e.g. for log-parameters).

        Returns
        -------
        loss : tensor
        grads : dict
            ``{name: d loss / d params[name]}``, each of the parameter's shape.
        """
        missing = [k for k in wrt if k not in params]
        if missing:
            raise KeyError(f"wrt names {missing}, which are not in params (have {sorted(params)})")
        y0, params, t0 = self._inputs(y0, params, t0)
        # The gradient is computed inside; an enclosing tape must not try to differentiate the
        # compiled call a second time (TensorFlow cannot pass its loop buffers out of XLA).
        y0, params, t0 = tf.nest.map_structure(tf.stop_gradient, (y0, params, t0))
        key = (loss_fn, tuple(wrt))
        if key not in self._value_and_grad:
            def vg(y0_, p_, t0_):
                with tf.GradientTape() as tape:
                    tape.watch([p_[k] for k in wrt])
                    loss = loss_fn(self._loop(y0_, p_, t0_))
                grads = tape.gradient(loss, [p_[k] for k in wrt], unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return loss, dict(zip(wrt, grads))

            self._value_and_grad[key] = tf.function(functools.partial(vg), jit_compile=self.xla, autograph=False,
                                                    reduce_retracing=True)
        return self._value_and_grad[key](y0, params, t0)

    def _inputs(self, y0, params, t0):
        if isinstance(y0, (tf.Tensor, np.ndarray)) or not isinstance(y0, (list, tuple)):
            raise TypeError("y0 must be a list of state tensors, e.g. [V, m, h, n] (see hh_rest_state)")
        y0 = [tf.convert_to_tensor(x) for x in y0]
        dtype = y0[0].dtype
        if not dtype.is_floating:
            raise TypeError(f"the state must be floating point (float64 for gradient checks), got {dtype.name}")
        y0 = [tf.cast(x, dtype) for x in y0]
        params = {k: tf.cast(tf.convert_to_tensor(v), dtype) for k, v in params.items()}
        return y0, params, tf.cast(t0, dtype)


# -- one Hodgkin-Huxley neuron with parameters as inputs ----------------------------------------
def hh_rhs(y: Leaves, t: Any, p: Dict[str, Any]) -> Leaves:
    """dV/dt (mV/ms) and the gates' derivatives (1/ms) of HH neurons with parameters ``p``.

    ``y = [V, m, h, n]``; ``p`` has the keys of :data:`psst_helpers.neurons.HH` plus ``I_ext``
    (injected current, uA/cm^2). Every entry may be a tensor of the batch shape, so one call
    simulates many neurons with different parameters (chapter 8).
    """
    V, m, h, n = y
    I_Na, I_K, I_L = neurons.hh_currents(V, m, h, n, p)
    dm, dh, dn = neurons.hh_gate_derivatives(V, m, h, n)
    return [(p["I_ext"] - I_Na - I_K - I_L) / p["C_m"], dm, dh, dn]


def hh_params(shape: Sequence[int] = (), dtype: tf.DType = tf.float64, **values: Any) -> Dict[str, tf.Tensor]:
    """HH parameters (:data:`psst_helpers.neurons.HH`, plus ``I_ext = 0``) as tensors of ``shape``.

    Keyword arguments override entries; each value is broadcast to ``shape``. Example:
    ``hh_params([3], I_ext=[2.0, 5.0, 10.0])``.
    """
    unknown = set(values) - set(neurons.HH) - {"I_ext"}
    if unknown:
        raise KeyError(f"unknown HH parameters {sorted(unknown)}; known: {sorted(neurons.HH) + ['I_ext']}")
    base = {**neurons.HH, "I_ext": 0.0, **values}
    return {k: tf.broadcast_to(tf.cast(v, dtype), shape) for k, v in base.items()}


def hh_rest_state(V0: Any, shape: Sequence[int] = (), dtype: tf.DType = tf.float64) -> Leaves:
    """``[V, m, h, n]`` with every gate at its steady state at ``V0`` (mV), broadcast to ``shape``."""
    V = tf.broadcast_to(tf.cast(V0, dtype), shape)
    ss = neurons.hh_steady_state(V)
    return [V] + [ss[g][0] for g in "mhn"]


def gates_from_voltage(V: np.ndarray, dt: float) -> np.ndarray:
    """The gates m, h, n a measured voltage trace implies, integrated with RK4 along the trace.

    The HH gate equations contain no conductance: given V(t), each gate is a linear ODE
    driven by the voltage, whatever g_Na, g_K and g_L are. This lets short simulation windows
    start from the recorded state (chapter 8). Values between samples are interpolated linearly.

    Parameters
    ----------
    V : array, shape (n_samples, ...)
        Voltage (mV) sampled every ``dt`` ms; the gates start at their steady state at ``V[0]``.
    dt : float
        Sampling interval (ms).

    Returns
    -------
    array, shape (n_samples, 3, ...)
        m, h, n at every sample.
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim < 1 or V.shape[0] < 2:
        raise ValueError(f"V must be a trace of at least 2 samples along axis 0, got shape {V.shape}")
    ss = neurons.hh_steady_state(V[0])
    x = np.stack([ss[g][0] for g in "mhn"])
    out = np.empty((V.shape[0], 3, *V.shape[1:]))
    out[0] = x

    def f(x, v):
        return np.stack(neurons.hh_gate_derivatives(v, x[0], x[1], x[2]))

    for k in range(V.shape[0] - 1):
        v0, v1 = V[k], V[k + 1]
        vm = 0.5 * (v0 + v1)
        k1 = f(x, v0)
        k2 = f(x + 0.5 * dt * k1, vm)
        k3 = f(x + 0.5 * dt * k2, vm)
        k4 = f(x + dt * k3, v1)
        x = x + dt / 6.0 * (k1 + 2.0 * (k2 + k3) + k4)
        out[k + 1] = x
    return out


def smooth(V: np.ndarray, half_width: int) -> np.ndarray:
    """Quadratic Savitzky-Golay smoothing along axis 0 over ``2 half_width + 1`` samples.

    A local least-squares parabola keeps slopes and slow curvature, so a smooth trace passes
    unchanged while white measurement noise shrinks by about ``sqrt(2.25 / (2 half_width + 1))``.
    The ends use the nearest full window's parabola.
    """
    V = np.asarray(V, dtype=np.float64)
    if half_width < 1:
        return V.copy()
    n = V.shape[0]
    if n < 2 * half_width + 1:
        raise ValueError(f"a trace of {n} samples is shorter than the smoothing window ({2 * half_width + 1})")
    x = np.arange(-half_width, half_width + 1, dtype=np.float64)
    fit = np.linalg.pinv(np.stack([np.ones_like(x), x, x * x], axis=1))  # (3, 2k+1): parabola coefficients
    # value of each window's parabola at its centre, for every centre that has a full window
    windows = np.lib.stride_tricks.sliding_window_view(V, 2 * half_width + 1, axis=0)  # (n-2k, ..., 2k+1)
    coef = np.einsum("cw,...w->c...", fit, windows)
    out = np.empty_like(V)
    out[half_width:n - half_width] = coef[0]
    for edge, centre, offsets in ((slice(0, half_width), 0, x[:half_width]),
                                  (slice(n - half_width, n), -1, x[half_width + 1:])):
        c = coef[:, centre]
        out[edge] = c[0] + np.multiply.outer(offsets, c[1]) + np.multiply.outer(offsets ** 2, c[2])
    return out


def teacher_forced_windows(
    V: np.ndarray, dt: float, window: int, smooth_half_width: int = 0
) -> Tuple[Leaves, np.ndarray, np.ndarray]:
    """Cut recorded traces into short windows that each restart from the recorded state.

    In each window the model starts from the measured voltage and the gates it implies
    (:func:`gates_from_voltage`) and runs freely for ``window`` samples. A wrong parameter can
    then shift a spike by at most a window's length, so the loss stays a smooth function of the
    parameters; all windows run as one batch.

    Parameters
    ----------
    V : array, shape (n_samples, n_traces)
        Recorded voltage (mV) every ``dt`` ms, ``n_samples - 1`` a multiple of ``window``.
    dt : float
        Sampling interval (ms).
    window : int
        Samples per window.
    smooth_half_width : int
        If positive, the start states come from the trace smoothed by :func:`smooth` (the
        targets stay the raw recording). Noise in a start state biases the fit: a model that
        relaxes faster (larger conductances) forgets a wrong start sooner, so it wins.

    Returns
    -------
    y0 : list of 4 arrays, each (n_windows, n_traces)
        Start states ``[V, m, h, n]``.
    targets : array, shape (window, n_windows, n_traces)
        The recorded voltage over each window (mV), to compare with the model's records.
    t0 : array, shape (n_windows, 1)
        Start time of each window (ms).
    """
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"V must have shape (n_samples, n_traces), got {V.shape}")
    n = V.shape[0] - 1
    if window < 1 or n % window:
        raise ValueError(f"window={window} must divide the number of steps in the recording ({n})")
    Vs = smooth(V, smooth_half_width) if smooth_half_width > 0 else V
    gates = gates_from_voltage(Vs, dt)
    starts = np.arange(0, n, window)
    y0 = [Vs[starts]] + [gates[starts, i] for i in range(3)]
    idx = starts[None, :] + np.arange(1, window + 1)[:, None]  # (window, n_windows)
    return y0, V[idx], (dt * starts)[:, None]


def mse(model: tf.Tensor, data: Any, weights: Any = None) -> tf.Tensor:
    """Mean squared difference (mV^2 for voltages); ``weights`` (broadcastable) weight each term."""
    d = tf.square(model - tf.cast(data, model.dtype))
    if weights is None:
        return tf.reduce_mean(d)
    w = tf.broadcast_to(tf.cast(weights, model.dtype), tf.shape(d))
    return tf.reduce_sum(w * d) / tf.reduce_sum(w)


# -- memory ---------------------------------------------------------------------------------
def _rss_bytes() -> int:
    """Resident set size of this process now, bytes (psutil: Linux, macOS and Windows)."""
    from . import memory

    return memory.rss_bytes()


def peak_memory(fn: Callable[[], Any], interval_s: float = 0.0005) -> Tuple[float, Any]:
    """Peak extra memory (MB, 10**6 bytes) while ``fn()`` runs, and its result.

    On a GPU this is TensorFlow's own peak-allocation counter. On a CPU it is the peak resident
    memory of the process above its level just before the call, on Linux, macOS and Windows alike
    (:func:`psst_helpers.memory.peak_memory`: the system's record of the peak where it has one,
    samples every ``interval_s`` s otherwise; freed memory is handed back to the system first on
    Linux). A tensor result is converted to NumPy inside the call, so its computation counts.
    Call ``fn`` once before to exclude compilation.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        tf.config.experimental.reset_memory_stats(gpus[0].name)
        before = tf.config.experimental.get_memory_info(gpus[0].name)["current"]
        result = fn()
        return (tf.config.experimental.get_memory_info(gpus[0].name)["peak"] - before) / 1e6, result
    from . import memory

    def finished():
        result = fn()
        if isinstance(result, (tf.Tensor, tuple, list, dict)):
            tf.nest.map_structure(lambda x: x.numpy() if isinstance(x, tf.Tensor) else x, result)
        return result

    return memory.peak_memory(finished, interval_s=interval_s)


def _positive_int(x: Any, name: str) -> int:
    from .solvers.checks import positive_int

    return positive_int(name, x)


def _suggest_chunk(n_steps: int, every: int) -> int:
    target = max(every, int(round(np.sqrt(n_steps))))  # sqrt(n) chunks balance the two stores
    cands = [c for c in range(every, n_steps + 1, every) if n_steps % c == 0]
    return min(cands, key=lambda c: abs(c - target))
