"""The original PSST tutorial's designs, kept as baselines that chapters and benchmarks compare against.

- :func:`original_scan_rk4`: its integrator, a graph-mode ``tf.scan`` that stores every step;
- :func:`original_design`: any :class:`psst_helpers.networks.Model` run that way (chapter 6), its graph built
  once; :func:`original_design_run` for a single run;
- :func:`original_hh_population`: its HH population with a flat state and naive rate formulas;
- :func:`eager_rk4`: RK4 as a Python loop of eager TensorFlow operations (chapter 2's first attempt);
- :func:`bare_xla_rk4`: chapter 2's compiled loop, the RK4 step written out in one XLA while loop.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def original_scan_rk4(func: Callable, t: np.ndarray) -> Callable:
    """The original tutorial's integrator design in TF2 graph mode: ``tf.scan`` keeping every step.

    Parameters
    ----------
    func : callable
        ``func(y, t) -> dy/dt`` on TensorFlow tensors.
    t : numpy.ndarray
        Time grid (same units as ``func`` expects, the book uses ms).

    Returns
    -------
    callable
        ``run(y0) -> tf.Tensor`` of shape ``[len(t), *y0.shape]`` (the state at every time).
    """
    import tensorflow as tf

    t = tf.constant(t)
    dt = t[1:] - t[:-1]

    @tf.function
    def run(y0):
        def step(y, inp):
            ti, h = inp
            k1 = func(y, ti)
            k2 = func(y + h * k1 / 2, ti + h / 2)
            k3 = func(y + h * k2 / 2, ti + h / 2)
            k4 = func(y + h * k3, ti + h)
            return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

        ys = tf.scan(step, (t[:-1], dt), initializer=y0)
        return tf.concat([y0[None], ys], axis=0)

    return run


def original_design(model, dtype=np.float64) -> Callable[[np.ndarray], dict]:
    """A model run the way the original tutorial ran it: one graph-mode ``tf.scan`` over the time
    grid (no XLA) that returns the *whole* state at every step. The baseline for chapter 6.

    The graph is built once, on the first call; later calls, on grids of any length, only run it. So a
    second call times the design's run alone, and the first call minus the second its set-up.

    Parameters
    ----------
    model : psst_helpers.networks.Model
        Anything with ``state(dtype)``, ``derivatives(state, t)`` and ``post_step`` (or ``None``).
    dtype : numpy dtype
        Floating-point type of the state and the grid.

    Returns
    -------
    callable
        ``run(t) -> dict``: for a time grid ``t`` in ms, the stacked state, arrays ``[len(t) - 1, ...]``,
        after the first step. ``run.tracing_count()`` says how many graphs were built (1 after any number
        of calls).
    """
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"dtype = {np.dtype(dtype)}: the original design ran in float32 or float64")
    import tensorflow as tf

    from .._tree import flatten, tree_map, unflatten
    from ..solvers.schemes import rk4_step

    # the original design had one dtype for everything, time and spike times included
    y0 = tree_map(lambda x: np.asarray(x, dtype), model.state(dtype))
    leaves0, treedef = flatten(y0)
    tf_dtype = tf.as_dtype(np.dtype(dtype))

    def f(lv, tm):
        return flatten(model.derivatives(unflatten(treedef, lv), tm))[0]

    # plain Python control flow only; AutoGraph would rewrite the kernels' methods
    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None], tf_dtype), tf.TensorSpec([None], tf_dtype)])
    def scan(tt, dts):
        def step(lv, inp):
            t0, t1, h = inp
            new = rk4_step(f, list(lv), t0, h)
            if model.post_step is not None:
                new = flatten(model.post_step(t0, unflatten(treedef, list(lv)), t1, unflatten(treedef, new)))[0]
            return [tf.cast(x, tf_dtype) for x in new]

        return tf.scan(step, (tt[:-1], tt[1:], dts), initializer=[tf.constant(x) for x in leaves0])

    def run(t: np.ndarray) -> dict:
        t = np.asarray(t, np.float64)
        if t.ndim != 1 or len(t) < 2:
            raise ValueError(f"t must be a time grid of at least two points, got shape {t.shape}")
        out = scan(tf.constant(t.astype(dtype)), tf.constant(np.diff(t).astype(dtype)))
        return unflatten(treedef, [x.numpy() for x in out])

    run.tracing_count = scan.experimental_get_tracing_count  # graphs built so far (1 after any number of runs)
    return run


def original_design_run(model, t: np.ndarray, dtype=np.float64) -> dict:
    """One run of :func:`original_design` on the time grid ``t`` (ms), its graph built for it.

    Returns
    -------
    dict
        The stacked state, arrays ``[len(t) - 1, ...]``, after the first step.
    """
    return original_design(model, dtype)(t)


def eager_rk4(func: Callable, y0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """RK4 as a Python loop of eager TensorFlow operations (chapter 2's first attempt): every
    operation of every step is dispatched from Python.

    Returns
    -------
    numpy.ndarray
        The state at ``t[-1]``, shaped like ``y0``.
    """
    import tensorflow as tf

    from ..solvers.schemes import rk4_step

    y = [tf.constant(y0)]
    f = lambda lv, tm: [func(lv[0], tm)]  # noqa: E731 - the scheme works on lists of leaves
    for i in range(len(t) - 1):
        y = rk4_step(f, y, tf.constant(t[i]), tf.constant(t[i + 1] - t[i]))
    return y[0].numpy()


def _naive_rhs(X, I):
    """The original's HH right-hand side on a flat state ``X = [V..., m..., h..., n...]``, ``I`` the
    injected currents (a tensor; its static length is the number of neurons)."""
    import tensorflow as tf

    n = I.shape[0]
    phi = 3.0 ** ((22.0 - 36.0) / 10.0)
    V, m, h, nn = X[:n], X[n:2 * n], X[2 * n:3 * n], X[3 * n:]
    u = V + 50.0
    a_n = 0.02 * (15.0 - u) / (tf.exp((15.0 - u) / 5.0) - 1.0)
    b_n = 0.5 * tf.exp((10.0 - u) / 40.0)
    a_m = 0.32 * (13.0 - u) / (tf.exp((13.0 - u) / 4.0) - 1.0)
    b_m = 0.28 * (u - 40.0) / (tf.exp((u - 40.0) / 5.0) - 1.0)
    a_h = 0.128 * tf.exp((17.0 - u) / 18.0)
    b_h = 4.0 / (tf.exp((40.0 - u) / 5.0) + 1.0)
    dV = I - 100.0 * m ** 3 * h * (V - 50.0) - 10.0 * nn ** 4 * (V + 95.0) - 0.15 * (V + 55.0)
    dm = -(m - a_m / (a_m + b_m)) * (a_m + b_m) * phi
    dh = -(h - a_h / (a_h + b_h)) * (a_h + b_h) * phi
    dn = -(nn - a_n / (a_n + b_n)) * (a_n + b_n) * phi
    return tf.concat([dV, dm, dh, dn], 0)


def _package_rhs(X, I):
    """:func:`_naive_rhs` with the package's gate equations and currents."""
    import tensorflow as tf

    from .. import neurons as nrn

    n = I.shape[0]
    V, m, h, nn = X[:n], X[n:2 * n], X[2 * n:3 * n], X[3 * n:]
    dm, dh, dn = nrn.hh_gate_derivatives(V, m, h, nn)
    I_Na, I_K, I_L = nrn.hh_currents(V, m, h, nn)
    return tf.concat([I - I_Na - I_K - I_L, dm, dh, dn], 0)


_RHS = {"naive": _naive_rhs, "package": _package_rhs}


def original_hh_population(I_inj: np.ndarray, dtype) -> Callable:  # noqa: D401
    """The original tutorial's HH population: flat ``[V..., m..., h..., n...]`` state, naive rate formulas.

    Parameters
    ----------
    I_inj : numpy.ndarray
        Injected current of each neuron, uA/cm^2.
    dtype : tf.DType
        Floating-point type of the state.

    Returns
    -------
    callable
        ``f(X, t) -> dX/dt`` with V in mV and t in ms.
    """
    import tensorflow as tf

    I = tf.constant(I_inj, dtype=dtype)
    return lambda X, t: _naive_rhs(X, I)


def package_rates_hh_population(I_inj: np.ndarray, dtype) -> Callable:
    """:func:`original_hh_population` with the package's gate equations instead of the naive ones:
    ``phi (alpha (1 - x) - beta x)`` (no division) with the rates of :func:`psst_helpers.neurons.hh_rates`
    (``exprel_inv`` at the removable singularities). Same flat state; for measuring what the rate
    formulas alone cost."""
    import tensorflow as tf

    I = tf.constant(I_inj, dtype=dtype)
    return lambda X, t: _package_rhs(X, I)


#: The bare kernels' compiled loops, one ``tf.function`` per (rates, every, records); each keeps one trace
#: per dtype and number of neurons, so a second kernel of the same structure reuses the first one's.
_BARE_RUNS: dict = {}


def _bare_run(rates: str, every: int, n_rec: int):
    """The compiled loop of :func:`bare_hh_population` for one structure: ``run(X0, I, h) -> V`` with the
    start state, the currents and the step as tensors (their values never cause a new trace)."""
    key = (rates, every, n_rec)
    if key in _BARE_RUNS:
        return _BARE_RUNS[key]
    import tensorflow as tf

    rhs = _RHS[rates]

    @tf.function(jit_compile=True)
    def run(X0, I, h):
        n = I.shape[0]

        def step(X):
            k1 = rhs(X, I)
            k2 = rhs(X + 0.5 * h * k1, I)
            k3 = rhs(X + 0.5 * h * k2, I)
            k4 = rhs(X + h * k3, I)
            return X + h / 6.0 * (k1 + 2.0 * (k2 + k3) + k4)

        def outer(r, X, ta):
            X = tf.while_loop(lambda i, X: i < every, lambda i, X: (i + 1, step(X)), (0, X))[1]
            return r + 1, X, ta.write(r, X[:n])

        ta = tf.TensorArray(X0.dtype, size=n_rec, element_shape=[n])
        _, X, ta = tf.while_loop(lambda r, *_: r < n_rec, outer, (0, X0, ta))
        return tf.concat([X0[None, :n], ta.stack()], 0)

    _BARE_RUNS[key] = run
    return run


def bare_hh_population(I_inj: np.ndarray, t: np.ndarray, dtype, every: int = 10,
                       rates: str = "naive") -> Callable[[], np.ndarray]:
    """The yardstick for the HH kernel's speed: the same equations as
    :func:`psst_helpers.networks.hh_population`, RK4, V stored every ``every`` steps, in one XLA while
    loop, with nothing else: no spike tracking, a uniform grid. With
    ``rates="naive"`` the original's rate formulas (:func:`original_hh_population`: no guard at the
    removable singularities, so a float32 run can leave neurons NaN, and two divisions per gate);
    with ``rates="package"`` the package's (:func:`package_rates_hh_population`).

    The compiled loop is built once per (``rates``, ``every``, number of records) and traced once per
    dtype and number of neurons: the currents, the start state and the step enter it as tensors, so
    kernels of the same structure share one trace and one XLA compilation (``run.tracing_count()``
    says how many traces that loop holds).

    Returns
    -------
    callable
        ``run() -> V`` of shape ``[len(t[::every]), n]`` (mV).
    """
    import tensorflow as tf

    if rates not in _RHS:
        raise ValueError(f"rates is 'naive' or 'package', got {rates!r}")
    n = np.asarray(I_inj).size
    n_rec = (len(t) - 1) // every
    tf_dt = tf.as_dtype(np.dtype(dtype))
    loop = _bare_run(rates, int(every), int(n_rec))
    X0 = tf.constant(np.concatenate([np.full(n, -71.0), np.zeros(3 * n)]).astype(dtype))
    I = tf.constant(np.asarray(I_inj).ravel(), tf_dt)
    h = tf.constant(float(t[1] - t[0]), tf_dt)

    def run() -> np.ndarray:
        return loop(X0, I, h).numpy()

    run.tracing_count = loop.experimental_get_tracing_count
    return run


#: Compiled loops of :func:`bare_xla_rk4`, one per (right-hand side, grid, form of the step): a second request
#: for the same loop gets the first one's, its trace and its XLA compilations.
_BARE_RK4: dict = {}


def bare_xla_rk4(func: Callable, t: np.ndarray, stage_loop: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """Chapter 2's compiled loop: one ``tf.while_loop`` over the steps of the grid ``t``, the RK4 step written
    out in full, the whole compiled by XLA, the end state returned (nothing recorded, nothing checked). XLA
    fuses the written-out step into one loop over the equations: the yardstick for :class:`Integrator`'s
    ``xla=True`` loop on the same problem.

    With ``stage_loop=True`` the step is written as the package's :class:`Integrator` writes it: a
    ``tf.while_loop`` over RK4's four stage nodes, ``func`` called at one place in it
    (:data:`psst_helpers.solvers.schemes.STAGE_NODES`), the first slope and the sum of the interior ones
    kept with ``tf.where``; the same arithmetic, so the difference in time is what the stage loop costs.

    The loop is built once per (``func``, ``t``, ``stage_loop``) and kept: pass the same function object
    (not a new lambda) to share it.

    Parameters
    ----------
    func : callable
        ``func(y, t) -> dy/dt`` on TensorFlow tensors.
    t : numpy.ndarray
        Time grid (float64).

    Returns
    -------
    callable
        ``run(y0) -> numpy.ndarray``, the state at ``t[-1]``; ``run.tracing_count()`` says how many traces
        the compiled loop holds (one, whatever the length of ``y0``; XLA compiles once per length).
    """
    import tensorflow as tf

    t = np.asarray(t, np.float64)
    key = (func, t.tobytes(), bool(stage_loop))
    if key in _BARE_RK4:
        return _BARE_RK4[key]
    tt = tf.constant(t)
    steps = len(t) - 1
    nodes = tf.constant([0.0, 0.5, 0.5, 1.0], tf.float64)
    vector = [tf.TensorSpec([None], tf.float64)]

    def written_out(y, ti, h):
        k1 = func(y, ti)
        k2 = func(y + h / 2 * k1, ti + h / 2)
        k3 = func(y + h / 2 * k2, ti + h / 2)
        k4 = func(y + h * k3, ti + h)
        return y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    def staged(y, ti, h):
        def body(s, k_prev, k_first, k_mid):
            ch = tf.gather(nodes, s) * h
            k = func(y + ch * k_prev, ti + ch)
            interior = tf.logical_and(s > 0, s < 3)
            return s + 1, k, tf.where(s == 0, k, k_first), tf.where(interior, k_mid + k, k_mid)

        zeros = tf.zeros_like(y)
        _, k_last, k_first, k_mid = tf.while_loop(lambda s, *_: s < 4, body, (tf.constant(0), zeros, zeros, zeros),
                                                  maximum_iterations=4)
        return y + h / 6.0 * (k_first + 2.0 * k_mid + k_last)

    # two Python functions, so that TensorFlow counts the traces of each form apart
    def loop_written_out(y0):
        body = lambda i, y: (i + 1, written_out(y, tt[i], tt[i + 1] - tt[i]))  # noqa: E731
        return tf.while_loop(lambda i, y: i < steps, body, (tf.constant(0), y0))[1]

    def loop_staged(y0):
        body = lambda i, y: (i + 1, staged(y, tt[i], tt[i + 1] - tt[i]))  # noqa: E731
        return tf.while_loop(lambda i, y: i < steps, body, (tf.constant(0), y0))[1]

    loop = tf.function(loop_staged if stage_loop else loop_written_out, jit_compile=True, input_signature=vector)

    def run(y0: np.ndarray) -> np.ndarray:
        return loop(tf.constant(np.asarray(y0, np.float64))).numpy()

    run.tracing_count = loop.experimental_get_tracing_count
    _BARE_RK4[key] = run
    return run
