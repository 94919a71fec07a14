"""The timing harness every benchmark suite shares: machine description, timed calls, CSV, table.

A row is a dict with at least ``bench``, ``variant``, ``size``, ``dtype``, ``run_s`` (median seconds of
the timed runs), ``compile_s`` (first call minus the median, seconds), ``min_s``/``max_s`` and
``max_abs_diff`` (against the suite's reference variant). A CSV starts with ``# key: value`` lines
that name the machine and library versions, then one line per row.
"""
from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np

Row = Dict[str, object]


def machine_description() -> Dict[str, str]:
    """CPU model, core count and library versions, for the CSV header.

    Returns
    -------
    dict
        ``cpu``, ``cores``, ``python``, ``numpy``, ``blas``, ``tensorflow`` and ``device``
        (the GPUs TensorFlow sees, or ``"CPU only"``), all strings.
    """
    import tensorflow as tf

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 - informational only; older NumPy has no mode="dicts"
        blas = "unknown"
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
        "numpy": np.__version__, "blas": blas, "tensorflow": tf.__version__,
        "device": ", ".join(g.name for g in gpus) if gpus else "CPU only",
    }


def timed(fn: Callable[[], object], repeats: int) -> Tuple[object, float, float, Tuple[float, float]]:
    """Call ``fn`` once to compile, then ``repeats`` times to time it.

    Returns
    -------
    (out, median_s, compile_s, (min_s, max_s))
        The last result, the median run time in seconds, the first call's extra time over the median
        (tracing and compilation, seconds, never negative) and the fastest and slowest timed run.
    """
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
    med = statistics.median(runs)
    return out, med, max(first - med, 0.0), (min(runs), max(runs))


def total_memory_bytes() -> int:
    """Physical memory of this machine in bytes (8 GiB where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def write_csv(path: Path, rows: List[Row], machine: Dict[str, str]) -> None:
    """Write ``rows`` to ``path`` after ``# key: value`` lines describing ``machine``.

    The columns are the union of the rows' keys, in first-seen order.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: List[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with open(path, "w", newline="") as fh:
        for k, v in machine.items():
            fh.write(f"# {k}: {v}\n")
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def print_table(rows: List[Row]) -> None:
    """Print one line per row: run and compile time, agreement, and throughput where measured."""
    for r in rows:
        extra = ""
        if "neuron_steps_per_s" in r:
            extra = f"  {r['neuron_steps_per_s'] / 1e6:8.2f} M neuron-steps/s"
            if "nan_neurons" in r:
                extra += f"  NaN neurons {r['nan_neurons']}"
            if "spike_mismatch" in r:
                extra += f"  spikes {r['spikes']} (neurons differing from psst: {r['spike_mismatch']})"
        note = f"  {r.get('note', '')}" if r.get("note") else ""
        print(f"{r['bench']:14s} {r['variant']:22s} N={r['size']:>7d} {r['dtype']:8s} run {r['run_s']:8.4f} s  "
              f"compile {r['compile_s']:7.3f} s  max|diff| {r['max_abs_diff']:.2e}{extra}{note}", flush=True)
