"""Suite ``threads``: time per RK4 step with TensorFlow's default threads per operation and with one.

The thread pool is sized when TensorFlow starts, so each setting runs in a fresh Python process
(:func:`psst_helpers.threads.set_cpu_threads` first), one after the other, never at the same time.
Networks: independent HH neurons (chapter 3) in several sizes and the locust antennal lobe
(chapter 6), dt 0.01 ms, V recorded every 10 steps, warm median (compilation reported apart).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Iterator, List, Optional

import numpy as np

from .cli import register
from .harness import Row, timed


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
    out, med, compile_s, spread = timed(
        lambda: simulate(model, t, dtype=np.dtype(dtype), record=("V",), every=10)["V"], repeats)
    steps = t.size - 1
    return {"bench": "threads", "variant": f"threads_{threads or 'default'}", "case": case,
            "size": int(model.initial_state["V"].size), "dtype": dtype, "run_s": med, "compile_s": compile_s,
            "min_s": spread[0], "max_s": spread[1], "us_per_step": med / steps * 1e6,
            "threads_used": tf.config.threading.get_intra_op_parallelism_threads() or "default",
            "checksum": float(np.sum(out[-1])), "max_abs_diff": float("nan")}


def _in_fresh_process(*args) -> Row:
    ctx = mp.get_context("spawn")  # a new interpreter: TensorFlow not yet started there
    with ctx.Pool(1) as pool:
        return pool.apply(_measure, args)


def bench_threads(cases: List[str], duration_ms: float, dtype: str, repeats: int) -> List[Row]:
    """Each case with the default threads and with one, each in its own process; see the module text.

    Returns
    -------
    list of dict
        One row per (case, setting): ``us_per_step`` (warm median), ``run_s``, ``compile_s``;
        ``max_abs_diff`` of the one-thread row is its last recorded V against the default's, and
        ``speedup`` the default's time over its own.
    """
    rows: List[Row] = []
    for case in cases:
        pair = [_in_fresh_process(case, duration_ms, dtype, repeats, threads) for threads in (None, 1)]
        pair[1]["max_abs_diff"] = abs(pair[1]["checksum"] - pair[0]["checksum"])
        for r in pair:
            r["speedup"] = pair[0]["run_s"] / r["run_s"]
            r["note"] = f"{r['us_per_step']:.1f} us/step, {r['speedup']:.2f}x the default setting"
        rows += pair
    return rows


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", nargs="*", default=["hh_120", "locust", "hh_1000", "hh_100000"],
                   help="hh_N (N independent HH neurons) or locust")
    p.add_argument("--duration-ms", type=float, default=50.0, help="simulated time per run (ms)")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])


@register("threads", help="time per step with TensorFlow's default CPU threads per operation and with one "
          "(psst.set_cpu_threads), each in a fresh process", arguments=_arguments,
          quick={"cases": ["hh_10"], "duration_ms": 2.0})
def run(args: argparse.Namespace) -> Iterator[List[Row]]:
    start = time.perf_counter()
    yield bench_threads(args.cases, args.duration_ms, args.dtype, args.repeats)
    print(f"threads: {time.perf_counter() - start:.0f} s in all", flush=True)
