"""Suite ``core``: (a) RK4 on dx/dt = sin(x t) and (b) Hodgkin-Huxley population throughput.

(a) 500 steps (t from 0 to 5, dt 0.01), float64, N equations from y0 = linspace(0, 1, N): a NumPy
    loop, the original tutorial's design (a graph-mode ``tf.scan`` that stores every step), optionally
    a loop of eager TensorFlow operations, and psst's compiled loop without and with XLA;
(b) neuron-steps per second of an HH population (dt 0.01 ms, V recorded every 10 steps), float32 and
    float64: psst against the original design and against a bare XLA kernel of the same equations
    (no spike tracking, no singularity guard: the yardstick of what the kernel itself costs).
"""
from __future__ import annotations

import argparse
from typing import Iterator, List

import numpy as np

from .baselines import bare_hh_population, bare_xla_rk4, eager_rk4, original_hh_population, original_scan_rk4
from .cli import register
from .harness import Row, timed_in_turn, timed_runs, total_memory_bytes


def _sin_rhs(y, t):
    """dy/dt = sin(y t), on tensors: the right-hand side of the RK4 benchmark (one function object, so that
    the compiled loops built for it are shared)."""
    import tensorflow as tf

    return tf.sin(y * t)


def _product_rhs(y, t):
    """dy/dt = y t: the benchmark's right-hand side without the sine."""
    return y * t


def bench_sin(sizes: List[int], repeats: int, eager: bool = True) -> List[Row]:
    """RK4 on dx/dt = sin(x t) for each number of equations in ``sizes``, every variant side by side.

    Parameters
    ----------
    sizes : list of int
        Numbers of equations N.
    repeats : int
        Timed runs per variant (the median is reported).
    eager : bool
        Also time the loop of eager TensorFlow operations (slow: one Python dispatch per operation).

    Returns
    -------
    list of dict
        One row per (N, variant); ``max_abs_diff`` is against the NumPy loop.
    """
    import tensorflow as tf

    from ..solvers import odeint_np
    from ..solvers.tf_solver import Integrator

    t = 0.01 * np.arange(501)
    # one compiled loop for every size (it traces once; XLA compiles once per length)
    bare = bare_xla_rk4(_sin_rhs, t)
    rows = []
    for n in sizes:
        y0 = np.linspace(0.0, 1.0, n)
        f_np = lambda y, tt: np.sin(y * tt)  # noqa: E731
        f_tf = lambda y, tt: tf.sin(y * tt)  # noqa: E731
        variants = {
            "numpy_loop": lambda f_np=f_np, y0=y0: odeint_np(f_np, y0, t)[-1],
            "original_scan": (lambda run, y0=y0: lambda: run(tf.constant(y0))[-1].numpy())(original_scan_rk4(f_tf, t)),
        }
        if eager:
            variants["tf_eager_loop"] = lambda f_tf=f_tf, y0=y0: eager_rk4(f_tf, y0, t)
        for xla in (False, True):
            integ = Integrator(f_tf, record=None, every=len(t) - 1, xla=xla)
            variants["psst_xla" if xla else "psst_graph"] = (lambda i, y: lambda: i(y, t)[-1].numpy())(integ, y0)
        variants["bare_xla"] = lambda y0=y0: bare(y0)
        ref = None
        for name, fn in variants.items():
            out, timing = timed_runs(fn, repeats)
            ref = out if ref is None else ref
            rows.append({"bench": "rk4_sin", "variant": name, "size": n, "dtype": "float64", **timing.columns(),
                         "max_abs_diff": float(np.max(np.abs(np.asarray(out) - ref)))})
    return rows


def rk4_sin_step_operations() -> dict:
    """The TensorFlow operations of one step of the eager loop on dx/dt = sin(x t) (``tf_eager_loop``:
    :func:`~psst_helpers.bench.baselines.eager_rk4` with the package's RK4 step), counted in a trace of that
    step: in the eager loop each is one dispatch from Python. The step's time and its step size enter as
    tensors, as in the loop (which also makes the two from Python numbers before every step).

    Returns
    -------
    dict
        Operation type -> count, plus ``"total"``.
    """
    from collections import Counter

    import tensorflow as tf

    from ..solvers.schemes import rk4_step

    f = lambda lv, tm: [tf.sin(lv[0] * tm)]  # noqa: E731 - as eager_rk4 wraps func
    scalar = tf.TensorSpec([], tf.float64)
    graph = tf.function(lambda y, tm, h: rk4_step(f, [y], tm, h)).get_concrete_function(
        tf.TensorSpec([None], tf.float64), scalar, scalar).graph
    counts = Counter(op.type for op in graph.get_operations() if op.type not in ("Placeholder", "Const", "Identity", "NoOp"))
    return {**dict(counts.most_common()), "total": sum(counts.values())}


def sin_loop_costs(sizes: List[int], repeats: int) -> List[Row]:
    """Where the package's XLA loop spends its time on the RK4 problem of :func:`bench_sin` (500 steps, t from 0
    to 5, float64), against chapter 2's bare loop; the variants are timed in turn, ``repeats`` rounds:

    - ``bare_xla``: chapter 2's loop, the RK4 step written out (:func:`~psst_helpers.bench.baselines.bare_xla_rk4`);
    - ``bare_xla, stage loop``: the same with the step as a loop over RK4's four stages, as the package writes it;
    - ``psst_xla``: :class:`~psst_helpers.solvers.tf_solver.Integrator` (XLA), the end state only, as in
      :func:`bench_sin`;
    - ``bare_xla, sin replaced by a product``: chapter 2's loop on dx/dt = x t, everything but the sine;
    - ``bare_xla, t from 0 to 2``: chapter 2's loop, 500 steps of 0.004 (the sine's arguments 2.5 times smaller).

    Returns
    -------
    list of dict
        One row per (N, variant): ``run_s`` (median), ``min_s``, ``max_s``, ``compile_s`` (first call minus the
        median), ``us_per_step`` and ``ns_per_sine`` (the median over the 4 x 500 x N sine evaluations of the
        problem; for the product variant, the same count for comparison).
    """
    import statistics

    from ..solvers.tf_solver import Integrator

    t = 0.01 * np.arange(501)
    steps = len(t) - 1
    loops = {"bare_xla": bare_xla_rk4(_sin_rhs, t), "bare_xla, stage loop": bare_xla_rk4(_sin_rhs, t, stage_loop=True),
             "bare_xla, sin replaced by a product": bare_xla_rk4(_product_rhs, t),
             "bare_xla, t from 0 to 2": bare_xla_rk4(_sin_rhs, 0.004 * np.arange(501))}
    integ = Integrator(_sin_rhs, record=None, every=steps, xla=True)
    rows: List[Row] = []
    for n in sizes:
        y0 = np.linspace(0.0, 1.0, n)
        variants = {"bare_xla": lambda: loops["bare_xla"](y0),
                    "bare_xla, stage loop": lambda: loops["bare_xla, stage loop"](y0),
                    "psst_xla": lambda: integ(y0, t)[-1].numpy(),
                    "bare_xla, sin replaced by a product": lambda: loops["bare_xla, sin replaced by a product"](y0),
                    "bare_xla, t from 0 to 2": lambda: loops["bare_xla, t from 0 to 2"](y0)}
        out, first, runs = timed_in_turn(variants, repeats)
        for name in variants:
            med = statistics.median(runs[name])
            same = name in ("bare_xla", "bare_xla, stage loop", "psst_xla")  # the same problem: results comparable
            rows.append({"bench": "rk4_sin_costs", "variant": name, "size": n, "dtype": "float64", "run_s": med,
                         "compile_s": max(first[name] - med, 0.0), "min_s": min(runs[name]), "max_s": max(runs[name]),
                         "us_per_step": med / steps * 1e6, "ns_per_sine": med / (4 * steps * n) * 1e9,
                         "max_abs_diff": float(np.max(np.abs(out[name] - out["bare_xla"]))) if same else float("nan")})
    return rows


def bench_hh(sizes: List[int], duration_ms: float, repeats: int, dtypes=("float64", "float32")) -> List[Row]:
    """HH population throughput, psst (with and without XLA) against the original design.

    Parameters
    ----------
    sizes : list of int
        Population sizes N (driven by I = linspace(0, 10, N) uA/cm^2).
    duration_ms : float
        Simulated time, ms (dt is 0.01 ms).
    repeats : int
        Timed runs per variant.
    dtypes : tuple of str
        Floating-point types to measure.

    Returns
    -------
    list of dict
        One row per (N, dtype, variant) with ``neuron_steps_per_s`` and ``nan_neurons``; the original
        design is skipped (a row with a note) where its stored states would not fit in 40% of memory.
    """
    import tensorflow as tf

    from ..networks import hh_population
    from ..solvers.tf_solver import Integrator

    dt = 0.01
    t = dt * np.arange(int(round(duration_ms / dt)) + 1)
    steps = len(t) - 1
    mem = total_memory_bytes()
    rows = []
    for n in sizes:
        I_inj = np.linspace(0.0, 10.0, n)
        for dtype in dtypes:
            np_dt = np.dtype(dtype)
            results = {}
            model = hh_population(I_inj)
            for xla in (True, False):
                integ = Integrator(model.derivatives, post_step=model.post_step, record=("V",), every=10, xla=xla)
                y0 = model.state(np_dt)
                results["psst_xla" if xla else "psst_graph"] = (lambda i, y: lambda: i(y, t)["V"].numpy())(integ, y0)
            # the yardstick: the same equations with nothing else (no spike tracking, no singularity guard)
            results["bare_xla"] = bare_hh_population(I_inj, t, np_dt, every=10)
            # original design: stores the whole state at every step, twice over inside tf.scan
            need = 2 * (steps + 1) * 4 * n * np_dt.itemsize
            if need < 0.4 * mem:
                f = original_hh_population(I_inj, tf.as_dtype(np_dt))
                run = original_scan_rk4(f, t.astype(np_dt))
                X0 = tf.constant(np.concatenate([np.full(n, -71.0), np.zeros(3 * n)]).astype(np_dt))
                results["original_scan"] = lambda run=run, X0=X0, n=n: run(X0)[::10, :n].numpy()
            else:
                rows.append({"bench": "hh_population", "variant": "original_scan", "size": n, "dtype": dtype,
                             "run_s": float("nan"), "compile_s": float("nan"), "min_s": float("nan"),
                             "max_s": float("nan"), "neuron_steps_per_s": float("nan"), "nan_neurons": -1,
                             "max_abs_diff": float("nan"),
                             "note": f"skipped: needs ~{need / 2**30:.0f} GiB, machine has {mem / 2**30:.0f} GiB"})
            ref = None
            for name, fn in results.items():
                out, timing = timed_runs(fn, repeats)
                nan_neurons = int(np.isnan(out).any(axis=0).sum())
                ref = out if ref is None else ref  # psst_xla runs first and is the reference
                diff = float(np.nanmax(np.abs(out - ref)))
                rows.append({"bench": "hh_population", "variant": name, "size": n, "dtype": dtype,
                             **timing.columns(), "neuron_steps_per_s": n * steps / timing.median_s,
                             "nan_neurons": nan_neurons,
                             "max_abs_diff": diff, "note": ""})
            # psst against the bare kernel, measured side by side in this run
            mine = {r["variant"]: r for r in rows if r["size"] == n and r["dtype"] == dtype}
            if "bare_xla" in mine:
                for name in ("psst_xla", "psst_graph"):
                    mine[name]["note"] = f"{mine['bare_xla']['run_s'] / mine[name]['run_s']:.2f}x the bare kernel's speed"
    return rows


def sin_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the RK4 sin benchmark."""
    p.add_argument("--sin-sizes", type=int, nargs="*", default=[1, 10, 100, 1000, 10_000, 100_000],
                   help="numbers of equations")


def hh_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the HH population benchmarks (also used by ``brian2``)."""
    p.add_argument("--hh-sizes", type=int, nargs="*", default=[1000, 10_000, 100_000], help="population sizes")
    p.add_argument("--hh-duration-ms", type=float, default=100.0, help="simulated time, ms")


SIN_QUICK = {"sin_sizes": [1, 100]}
HH_QUICK = {"hh_sizes": [50], "hh_duration_ms": 2.0}


def _core_arguments(p: argparse.ArgumentParser) -> None:
    sin_arguments(p)
    hh_arguments(p)


@register("core", help="RK4 on dx/dt = sin(x t) and HH population throughput, psst against the original design",
          arguments=_core_arguments, quick={**SIN_QUICK, **HH_QUICK})
def run_core(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``core``: (a) then (b) of the module docstring, without the eager loop."""
    yield bench_sin(args.sin_sizes, args.repeats, eager=False)
    yield bench_hh(args.hh_sizes, args.hh_duration_ms, args.repeats)
