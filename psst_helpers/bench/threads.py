"""Suite ``threads``: the same runs with TensorFlow's default CPU threads per operation, with one and with two.

The thread pool is sized when TensorFlow starts, so each setting runs in a fresh Python process
(:func:`psst_helpers.threads.set_cpu_threads` first), one after the other, never at the same time.
Networks: independent HH neurons (chapter 3) in several sizes and the locust antennal lobe
(chapter 6), dt 0.01 ms, V recorded every 10 steps. Each row is one setting: the median of at least
five warm runs (:data:`psst_helpers.bench.harness.MIN_REPEATS`) with its spread (min-max and the
quartiles), the CPU time this process used per run and the CPU time other processes used on the machine
meanwhile (:func:`psst_helpers.bench.harness.timed_runs`), compilation apart.

Which setting is faster depends on the machine: on a 2-core Intel Xeon one thread per operation was
faster for the networks of this book, on a 2-core AMD EPYC slower (:mod:`psst_helpers.threads`). So the
chapters leave the choice to TensorFlow, and this suite measures it on the reader's machine.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Iterator, List, Optional, Sequence

import numpy as np

from .cli import register
from .harness import Row, timed_runs

#: The settings compared: TensorFlow's default (one thread per core), one and two threads per operation.
SETTINGS = (None, 1, 2)


def _model(case: str):
    from ..networks import hh_population, locust_antennal_lobe

    if case == "locust":
        return locust_antennal_lobe(0)
    n = int(case.split("_")[1])
    return hh_population(np.linspace(0.0, 10.0, n))


def _measure(case: str, duration_ms: float, dtype: str, repeats: int, threads: Optional[int]) -> Row:
    """One case in this process: (optionally) set the threads, then time ``simulate``."""
    if threads is not None:
        from ..threads import set_cpu_threads

        set_cpu_threads(threads)
    import tensorflow as tf

    from ..analysis import time_grid
    from ..networks import simulate

    t = time_grid(duration_ms, 0.01)
    model = _model(case)
    out, timing = timed_runs(
        lambda: simulate(model, t, dtype=np.dtype(dtype), record=("V",), every=10)["V"], repeats)
    steps = t.size - 1
    cols = timing.columns()
    return {"bench": "threads", "variant": f"threads_{threads or 'default'}", "case": case,
            "size": int(model.initial_state["V"].size), "dtype": dtype, **cols,
            "us_per_step": cols["run_s"] / steps * 1e6,
            "threads_used": tf.config.threading.get_intra_op_parallelism_threads() or "default",
            "summary": timing.summary(), "checksum": float(np.sum(out[-1])), "max_abs_diff": float("nan")}


def _in_fresh_process(*args) -> Row:
    ctx = mp.get_context("spawn")  # a new interpreter: TensorFlow not yet started there
    with ctx.Pool(1) as pool:
        return pool.apply(_measure, args)


def bench_threads(cases: List[str], duration_ms: float, dtype: str, repeats: int,
                  settings: Sequence[Optional[int]] = SETTINGS) -> List[Row]:
    """Each case with every setting of ``settings`` (None: TensorFlow's default), each in its own process.

    Parameters
    ----------
    cases : list of str
        ``"hh_N"`` (N independent HH neurons) or ``"locust"``.
    duration_ms : float
        Simulated time per run, ms.
    dtype : {"float32", "float64"}
    repeats : int
        Warm runs per setting (the median and spread are reported).
    settings : sequence of int or None
        Threads per operation; the first is the reference of ``speedup`` and ``max_abs_diff``.

    Returns
    -------
    list of dict
        One row per (case, setting): ``us_per_step`` (warm median), ``run_s``, ``min_s``, ``q1_s``,
        ``q3_s``, ``max_s``, ``n_runs``, ``cpu_s``, ``others_cpu_s``, ``compile_s``; ``max_abs_diff`` is the
        last recorded V's sum against the first setting's, and ``speedup`` the first setting's median
        over the row's.
    """
    rows: List[Row] = []
    for case in cases:
        group = [_in_fresh_process(case, duration_ms, dtype, repeats, threads) for threads in settings]
        for r in group:
            r["max_abs_diff"] = abs(r["checksum"] - group[0]["checksum"])
            r["speedup"] = group[0]["run_s"] / r["run_s"]
            r["note"] = (f"{case}: {r['us_per_step']:.1f} us/step, {r['speedup']:.2f}x the default; "
                         f"{r.pop('summary')}")
        rows += group
    return rows


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", nargs="*", default=["hh_120", "locust", "hh_1000", "hh_100000"],
                   help="hh_N (N independent HH neurons) or locust")
    p.add_argument("--duration-ms", type=float, default=50.0, help="simulated time per run (ms)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--settings", nargs="*", default=["default", "1", "2"],
                   help="threads per operation to compare, 'default' for TensorFlow's (one per core)")


def _settings(values: Sequence[str]) -> List[Optional[int]]:
    return [None if v == "default" else int(v) for v in values]


@register("threads", help="run time (median and spread) with TensorFlow's default CPU threads per operation, "
          "with one and with two (psst.set_cpu_threads), each in a fresh process", arguments=_arguments,
          quick={"cases": ["hh_10"], "duration_ms": 2.0})
def run(args: argparse.Namespace) -> Iterator[List[Row]]:
    start = time.perf_counter()
    yield bench_threads(args.cases, args.duration_ms, args.dtype, args.repeats, _settings(args.settings))
    print(f"threads: {time.perf_counter() - start:.0f} s in all", flush=True)
