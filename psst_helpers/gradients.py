"""Differentiable simulation: gradients of a loss through the compiled solver (chapter 8).

Chapter 8 fits the conductances of a Hodgkin-Huxley neuron by gradient descent *through* the
RK4 loop. What that needs beyond plain TensorFlow lives here:

* :class:`GradientIntegrator`: the package's one compiled loop (:class:`psst_helpers.Integrator`,
  whose ``params`` option makes the **model parameters inputs**, so ``tf.GradientTape`` sees them
  and a new parameter value reuses the compiled code) configured the way the chapter writes its
  problems: ``n_steps`` steps of ``dt``, a list state, the records after the start.
  Its backward pass runs the steps in reverse, each re-run from the state stored at its start
  and differentiated on its own, so a gradient keeps one state per step; with
  ``checkpoint_every`` only one state per chunk, and each chunk's states are recomputed on the
  way back.
* :func:`hh_rhs`, :func:`hh_params`, :func:`hh_rest_state`: one HH neuron (or a batch of
  independent ones) with its parameters as tensors; :func:`hh_rhs` is the network models'
  derivative function (:func:`psst_helpers.networks.hh_derivatives`) on a list state.
* :func:`gates_from_voltage` and :func:`teacher_forced_windows`: the short-window ("teacher
  forcing", or multiple shooting) fitting problem, whose loss landscape stays smooth when a full
  trace's does not; :func:`mse` is the loss.
* :func:`peak_memory`: the extra memory a call needs at its peak (what backpropagation stores).

Units: voltage mV, time ms, conductance mS/cm^2, current uA/cm^2, capacitance uF/cm^2.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from . import networks, neurons
from .errors import InputDtypeError, ParameterError, StateShapeError
from .solvers.checks import positive_number
from .solvers.tf_solver import Integrator, as_tensor, check_chunk

__all__ = [
    "GradientIntegrator", "hh_rhs", "hh_params", "hh_rest_state", "gates_from_voltage",
    "teacher_forced_windows", "smooth", "mse", "peak_memory",
]

Leaves = List[tf.Tensor]
Params = Mapping[str, Any]
#: ``func(y, t, params) -> dy/dt``: ``y`` a list of state tensors, ``params`` a dict of tensors.
ParamFunc = Callable[[Leaves, tf.Tensor, Dict[str, tf.Tensor]], Leaves]


class GradientIntegrator:
    """Chapter 8's configuration of :class:`~psst_helpers.Integrator`: a fixed step, a list state, records after t0.

    Introduced in chapter 8. It is the one compiled loop of :class:`psst_helpers.Integrator`
    called with ``params`` (so ``tf.GradientTape`` sees them, and a new parameter value reuses the
    compiled code), set up the way the chapter writes its problems:

    * ``n_steps`` steps of ``dt`` ms: the grid ``t = t0 + dt * arange(n_steps + 1)``;
    * the state is a list of tensors (``[V, m, h, n]``) and ``func(y, t, params)`` returns a list;
    * the records are those *after* the start, ``observe(y)`` at ``t[every], t[2 every], ...``
      (:meth:`Integrator.__call__` also returns the one at ``t[0]``; here it is dropped);
    * ``t0`` may be a tensor that broadcasts against the state (windows that start at different
      times run as one batch); it rides along in the state as an entry that is not integrated.

    Wrap the call (or a loss computed from it) in ``tf.GradientTape`` to get derivatives with
    respect to ``params`` (and ``y0``, ``t0``), or use :meth:`value_and_gradient`.

    Parameters
    ----------
    func : callable
        ``func(y, t, params) -> list`` of derivatives, one per entry of the state list ``y``;
        ``t`` in ms and every value of ``params`` are tensors. Use TensorFlow operations (the
        kernels of :mod:`psst_helpers.neurons` work; :func:`hh_rhs` is the HH neuron).
    n_steps : int
        Number of steps.
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
        Gradient checkpointing (see :class:`~psst_helpers.Integrator`): the backward pass stores
        the state once per chunk of this many steps instead of at every step, and recomputes
        each chunk's states on the way back. Must divide ``n_steps`` and be a multiple of ``every``.
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
            raise ParameterError(f"every={every} must divide n_steps={n_steps}: records fall on whole steps")
        check_chunk(checkpoint_every, every, n_steps)
        dt = positive_number("dt", dt, what="the step, ms")
        if isinstance(observe, bool) or not (callable(observe) or isinstance(observe, int)):
            raise ParameterError(f"observe must be a state index (int) or a callable y -> tensor, got {observe!r}")
        self.func, self.n_steps, self.dt, self.method = func, n_steps, float(dt), method
        self.observe, self.every, self.checkpoint_every, self.xla = observe, every, checkpoint_every, bool(xla)
        # the state is [*y, t0]: the start time is an entry that is not integrated
        record = (lambda y: observe(y[:-1])) if callable(observe) else (lambda y: y[:-1][observe])
        self.integrator = Integrator(functools.partial(_with_start_time, func), method=method, record=record,
                                     every=every, checkpoint_every=checkpoint_every, xla=xla)
        self._t = self.dt * np.arange(n_steps + 1)  # relative to t0; steps counted as integers
        self._losses: Dict[Any, Callable] = {}

    @property
    def traces(self) -> int:
        """How many times the loop has been traced (compiled); a new parameter value adds none."""
        return self.integrator.traces

    @property
    def n_records(self) -> int:
        """Number of recorded time points, ``n_steps // every``."""
        return self.n_steps // self.every

    def times(self, t0: float = 0.0) -> np.ndarray:
        """Times (ms) of the records: ``t0 + dt * every * (1, 2, ..., n_records)``."""
        return t0 + self.dt * self.every * np.arange(1, self.n_records + 1)

    def __call__(self, y0: Sequence[Any], params: Params, t0: Any = 0.0) -> tf.Tensor:
        """Integrate and return the records, shape ``(n_records, *observe(y0).shape)``.

        Parameters
        ----------
        y0 : sequence of tensors
            Start state (a list of leaves, e.g. ``[V, m, h, n]``); its first entry's dtype sets
            the precision.
        params : dict
            Model parameters; values are converted to tensors of the state's dtype. To
            differentiate with respect to one, pass a ``tf.Variable`` or ``tape.watch`` it.
        t0 : float or tensor
            Time of the start state (ms); a tensor broadcasts against the state.

        Raises
        ------
        StateShapeError, InputDtypeError, ParameterError, NonFiniteStateError
            As :meth:`psst_helpers.Integrator.__call__`.
        """
        return self.integrator(self._state(y0, t0), self._t, params=params)[1:]

    def value_and_gradient(
        self, loss_fn: Callable[[tf.Tensor], tf.Tensor], y0: Sequence[Any], params: Params, wrt: Sequence[str],
        t0: Any = 0.0,
    ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
        """``loss_fn(records)`` and its gradient with respect to the parameters named in ``wrt``.

        :meth:`psst_helpers.Integrator.value_and_gradient` on this configuration: loss and backward
        pass in one compiled call, for fits. ``loss_fn`` receives the records of :meth:`__call__`
        and must be the same Python function on every call to reuse the compiled code.

        Returns
        -------
        loss : tensor
        grads : dict
            ``{name: d loss / d params[name]}``, each of the parameter's shape.
        """
        if loss_fn not in self._losses:  # one wrapper per loss: the compiled code is found by its identity
            self._losses[loss_fn] = functools.partial(_after_start, loss_fn)
        return self.integrator.value_and_gradient(self._losses[loss_fn], self._state(y0, t0), self._t,
                                                  params=params, wrt=wrt)

    @staticmethod
    def _state(y0: Sequence[Any], t0: Any) -> List[Any]:
        if isinstance(y0, (tf.Tensor, np.ndarray)) or not isinstance(y0, (list, tuple)) or not y0:
            raise StateShapeError("y0 must be a list of state tensors, e.g. [V, m, h, n] (see hh_rest_state)")
        first = as_tensor(y0[0])
        if not first.dtype.is_floating:
            raise InputDtypeError(f"the state must be floating point (float64 for gradient checks), "
                                  f"got {first.dtype.name}")
        return [as_tensor(x, first.dtype) for x in y0] + [as_tensor(t0, first.dtype)]


def _with_start_time(func: ParamFunc, y: Leaves, t: Any, p: Dict[str, tf.Tensor]) -> Leaves:
    """``func`` on the state ``[*y, t0]``: time measured from t0, and no derivative for t0."""
    return [*func(y[:-1], y[-1] + t, p), None]


def _after_start(loss_fn: Callable[[tf.Tensor], tf.Tensor], records: tf.Tensor) -> tf.Tensor:
    return loss_fn(records[1:])


# -- one Hodgkin-Huxley neuron with parameters as inputs ----------------------------------------
def hh_rhs(y: Leaves, t: Any, p: Dict[str, Any]) -> Leaves:
    """dV/dt (mV/ms) and the gates' derivatives (1/ms) of HH neurons with parameters ``p``.

    ``y = [V, m, h, n]``; ``p`` has the keys of :data:`psst_helpers.neurons.HH` plus ``I_ext``
    (injected current, uA/cm^2). Every entry may be a tensor of the batch shape, so one call
    simulates many neurons with different parameters (chapter 8). A thin call of
    :func:`psst_helpers.networks.hh_derivatives`, the function the network models integrate, so
    the forward and the differentiable runs share one right-hand side (``tests/test_one_integrator.py``).
    """
    V, m, h, n = y
    d = _HH_CELL({"V": V, "m": m, "h": h, "n": n, "I_ext": p["I_ext"], "par": {"membrane": p}}, t)
    return [d["V"], d["m"], d["h"], d["n"]]


#: The HH networks' derivative function (no synapses, the input current held): one right-hand side
#: for the forward runs of chapters 3-7 and the gradients of chapter 8.
_HH_CELL = networks.hh_derivatives((), held=("I_ext",))


def hh_params(shape: Sequence[int] = (), dtype: tf.DType = tf.float64, **values: Any) -> Dict[str, tf.Tensor]:
    """HH parameters (:data:`psst_helpers.neurons.HH`, plus ``I_ext = 0``) as tensors of ``shape``.

    Keyword arguments override entries; each value is broadcast to ``shape``. Example:
    ``hh_params([3], I_ext=[2.0, 5.0, 10.0])``.
    """
    unknown = set(values) - set(neurons.HH) - {"I_ext"}
    if unknown:
        raise ParameterError(f"unknown HH parameters {sorted(unknown)}; known: {sorted(neurons.HH) + ['I_ext']}")
    base = {**neurons.HH, "I_ext": 0.0, **values}
    return {k: tf.broadcast_to(as_tensor(v, dtype), shape) for k, v in base.items()}


def hh_rest_state(V0: Any, shape: Sequence[int] = (), dtype: tf.DType = tf.float64) -> Leaves:
    """``[V, m, h, n]`` with every gate at its steady state at ``V0`` (mV), broadcast to ``shape``."""
    V = tf.broadcast_to(as_tensor(V0, dtype), shape)
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
        raise ParameterError(f"V must be a trace of at least 2 samples along axis 0, got shape {V.shape}")
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
        raise ParameterError(f"a trace of {n} samples is shorter than the smoothing window ({2 * half_width + 1})")
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
        raise ParameterError(f"V must have shape (n_samples, n_traces), got {V.shape}")
    n = V.shape[0] - 1
    if window < 1 or n % window:
        raise ParameterError(f"window={window} must divide the number of steps in the recording ({n})")
    Vs = smooth(V, smooth_half_width) if smooth_half_width > 0 else V
    gates = gates_from_voltage(Vs, dt)
    starts = np.arange(0, n, window)
    y0 = [Vs[starts]] + [gates[starts, i] for i in range(3)]
    idx = starts[None, :] + np.arange(1, window + 1)[:, None]  # (window, n_windows)
    return y0, V[idx], (dt * starts)[:, None]


def mse(model: tf.Tensor, data: Any, weights: Any = None) -> tf.Tensor:
    """Mean squared difference (mV^2 for voltages); ``weights`` (broadcastable) weight each term."""
    d = tf.square(model - as_tensor(data, model.dtype))
    if weights is None:
        return tf.reduce_mean(d)
    w = tf.broadcast_to(as_tensor(weights, model.dtype), tf.shape(d))
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

