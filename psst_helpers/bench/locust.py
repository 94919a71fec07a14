"""Suite ``locust``: the chapter 6 antennal lobe (1000 ms, dt 0.01 ms), this package against the original design.

In one process: the original design (a graph-mode ``tf.scan`` that keeps the whole state at every step,
:func:`~psst_helpers.bench.baselines.original_design`) for a shorter stretch, its warm run extrapolated to the
full duration and its graph's set-up counted once (its memory grows with the duration, and the row says it was
extrapolated); then this package's
:func:`~psst_helpers.networks.simulate` for the full duration in float64 and float32, with synapse state per
presynaptic neuron (the default) and per synapse. For each: the first call (tracing, compilation and a run)
apart from the warm median and its spread over at least five runs, and the process's peak resident memory after it
(:func:`psst_helpers.memory.peak_rss_bytes`, the system's record, on Linux, macOS and Windows; variants run in
increasing order of memory, so each figure is that variant's peak). The speed-up is the original design's
extrapolated time over the warm run.
"""
from __future__ import annotations

import argparse
import time
from typing import Iterator, List

import numpy as np

from ..memory import peak_rss_bytes
from .cli import register
from .harness import MIN_REPEATS, Row, timed_runs


def _peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (NaN where the system keeps no record)."""
    peak = peak_rss_bytes()
    return float("nan") if peak is None else peak / 2**20


def bench_locust(duration_ms: float = 1000.0, original_ms: float = 200.0, repeats: int = MIN_REPEATS,
                 seed: int = 0) -> List[Row]:
    """Time the locust antennal lobe; see the module text.

    Parameters
    ----------
    duration_ms : float
        Simulated time of this package's runs, ms.
    original_ms : float
        Simulated time of the original design's run, ms (extrapolated linearly to ``duration_ms``).
    repeats : int
        Warm runs per variant (the median is reported, with its spread: min-max, quartiles, and the CPU
        time of this process and of other processes per run, :class:`~psst_helpers.bench.harness.Timing`).
    seed : int
        Network seed (chapter 6 uses 0).

    Returns
    -------
    list of dict
        One row per variant: ``run_s`` (warm median, or the extrapolated time), ``compile_s`` (the first
        call's extra time), ``first_call_s``, ``peak_rss_mib``, ``speedup`` (original / this), ``spikes``.
    """
    from ..analysis import spike_times, time_grid
    from ..networks import locust_antennal_lobe, simulate
    from .baselines import original_design

    t = time_grid(duration_ms, 0.01)
    rows: List[Row] = []
    ref_V = None
    for storage in ("pre", "synapse"):
        for dtype in ("float64", "float32"):
            model = locust_antennal_lobe(seed, storage=storage)
            fn = (lambda m=model, d=np.dtype(dtype): simulate(m, t, dtype=d, record=("V",), every=10)["V"])
            start = time.perf_counter()
            out, timing = timed_runs(fn, repeats)
            spikes = sum(len(s) for s in spike_times(out, t[::10]))
            if ref_V is None:
                ref_V = out
            rows.append({"bench": "locust", "variant": f"psst_{storage}", "size": int(duration_ms), "dtype": dtype,
                         **timing.columns(), "first_call_s": timing.first_s, "peak_rss_mib": _peak_rss_mib(),
                         "spikes": spikes,
                         "max_abs_diff": float(np.max(np.abs(out - ref_V))) if dtype == "float64" else float("nan"),
                         "note": f"{timing.summary()}; {time.perf_counter() - start:.1f} s in all"})
    # the original design last: it needs the most memory
    t_orig = time_grid(original_ms, 0.01)
    model = locust_antennal_lobe(seed, storage="synapse")  # the original kept a state per synapse
    run_original = original_design(model)
    start = time.perf_counter()
    states = run_original(t_orig)  # builds the graph, then runs it
    first = time.perf_counter() - start
    start = time.perf_counter()
    states = run_original(t_orig)  # runs it: only this part grows with the simulated time
    warm = time.perf_counter() - start
    scale = duration_ms / original_ms
    setup = max(first - warm, 0.0)  # building the graph: once, whatever the duration
    V = np.asarray(states["V"])[9::10]
    n_cmp = min(len(V), len(ref_V) - 1)
    rows.append({"bench": "locust", "variant": "original_design", "size": int(duration_ms), "dtype": "float64",
                 "run_s": warm * scale, "compile_s": setup, "first_call_s": setup + warm * scale,
                 "min_s": float("nan"), "max_s": float("nan"), "peak_rss_mib": _peak_rss_mib(),
                 "spikes": -1, "max_abs_diff": float(np.max(np.abs(V[:n_cmp] - ref_V[1:n_cmp + 1]))),
                 "note": f"ran {original_ms:g} ms ({warm:.2f} s warm), extrapolated x{scale:g}"})
    orig = rows[-1]["run_s"]
    for r in rows:
        r["speedup"] = orig / r["run_s"]
        r["note"] = (f"{r['speedup']:.1f}x the original design; first call {r['first_call_s']:.2f} s; "
                     f"peak RSS {r['peak_rss_mib']:.0f} MiB; {r['note']}")
    return rows


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration-ms", type=float, default=1000.0, help="simulated time of psst's runs (ms)")
    p.add_argument("--original-ms", type=float, default=200.0,
                   help="simulated time of the original design's run, extrapolated to --duration-ms (ms)")


@register("locust", help="chapter 6's antennal lobe, 1000 ms: psst (float64/32, per-presynaptic and per-synapse "
          "state) against the original design, warm and first call, peak memory", arguments=_arguments,
          quick={"duration_ms": 20.0, "original_ms": 10.0})
def run(args: argparse.Namespace) -> Iterator[List[Row]]:
    yield bench_locust(args.duration_ms, args.original_ms, args.repeats)
