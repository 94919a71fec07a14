"""The timing harness every benchmark suite shares: machine description, timed calls, CSV, table.

A row is a dict with at least ``bench``, ``variant``, ``size``, ``dtype``, ``run_s`` (median seconds of
the timed runs), ``compile_s`` (first call minus the median, seconds), ``min_s``/``max_s`` and
``max_abs_diff`` (against the suite's reference variant). A CSV starts with ``# key: value`` lines
that name the machine and library versions, then one line per row.

**Spread.** A warm run's time is a median over at least :data:`MIN_REPEATS` runs, with its spread
(``min_s``-``max_s`` and the quartiles ``q1_s``/``q3_s``) beside it. :func:`timed_runs` also records, for
each run, the CPU time of this process (``cpu_s``: user + system of all its threads) and the CPU time
that *other* processes took on the machine meanwhile (``others_cpu_s``, from ``/proc/stat`` on Linux):
a slow run during which other processes took CPU was slowed by them, not by the package.

What made the same warm locust run (1000 ms, V every 0.1 ms) vary about 2x, measured on a 2-core AMD
EPYC (KVM guest, TF 2.21) under the machine's job lock, 8-10 warm runs per process: with nothing else
running the runs agree to 1-8 % (3.61-3.92 s); the copy of the record back to NumPy takes 1-27 ms
and hypervisor steal at most 0.03 s per run. The outliers, at 7.4-9.6 s, came only while another
process kept the other core busy *and* TensorFlow's intra-op pool had two threads (its default here, or
2 set explicitly): 5 of 23 such runs, each using twice its usual CPU time (7.2-7.9 s for 3.6 s of work),
as when two threads of this process share one core and one of them waits actively. With one thread
per operation none of 8 runs slowed (3.64-3.74 s), the last 3 with another process busy for part or all of
the run. The threads suite shows the same in small networks: 120 HH neurons ran 19.9-29.7 us per step with
the default threads, 17.0-17.2 with one.
A package-free control (a fixed Python loop timed before each run) did not slow. So the spread comes
from the machine being shared, made worse by thread hand-over; the package's own work per run is the
same. Medians over :data:`MIN_REPEATS` runs with their range, and ``others_cpu_s`` beside them, say
which case a table is in; :mod:`psst_helpers.threads` says how to choose the threads.
"""
from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

Row = Dict[str, object]

#: The fewest warm runs behind a reported median (``--repeats`` below it is raised, ``--quick`` aside).
MIN_REPEATS = 5


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


def _machine_busy_s() -> Optional[float]:
    """CPU seconds all processes have used on this machine since boot (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds (user + system, all threads) this process has used."""
    t = os.times()
    return t.user + t.system


@dataclass
class Timing:
    """Warm runs of one call: wall time, this process's CPU time and other processes' CPU time, per run.

    Attributes
    ----------
    first_s : float
        The first call (tracing, compilation and a run), seconds.
    runs_s : list of float
        Wall time of each warm run, seconds.
    cpu_s : list of float
        CPU time of this process during each run (user + system, all threads), seconds.
    others_cpu_s : list of float
        CPU time other processes used on the machine during each run, seconds (NaN where the system
        does not say: only Linux's ``/proc/stat`` is read).
    """

    first_s: float
    runs_s: List[float] = field(default_factory=list)
    cpu_s: List[float] = field(default_factory=list)
    others_cpu_s: List[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        """Median warm run, seconds."""
        return float(statistics.median(self.runs_s))

    @property
    def compile_s(self) -> float:
        """The first call's extra time over the median warm run, seconds (never negative)."""
        return max(self.first_s - self.median_s, 0.0)

    def columns(self) -> Row:
        """The row entries: ``run_s`` (median), ``compile_s``, ``min_s``, ``q1_s``, ``q3_s``, ``max_s``,
        ``n_runs``, ``cpu_s`` and ``others_cpu_s`` (medians per run), all seconds."""
        q1, q3 = (float(x) for x in np.percentile(self.runs_s, [25, 75]))
        return {"run_s": self.median_s, "compile_s": self.compile_s, "min_s": min(self.runs_s), "q1_s": q1,
                "q3_s": q3, "max_s": max(self.runs_s), "n_runs": len(self.runs_s),
                "cpu_s": float(np.median(self.cpu_s)), "others_cpu_s": float(np.median(self.others_cpu_s))}

    def summary(self) -> str:
        """``median s [min-max, IQR q1-q3] over n runs``, for a table's note."""
        c = self.columns()
        return (f"{c['run_s']:.3f} s [min-max {c['min_s']:.3f}-{c['max_s']:.3f}, IQR {c['q1_s']:.3f}-{c['q3_s']:.3f}] "
                f"over {c['n_runs']} runs; CPU {c['cpu_s']:.2f} s ours, {c['others_cpu_s']:.2f} s others' per run")


def timed_runs(fn: Callable[[], object], repeats: int) -> Tuple[object, Timing]:
    """Call ``fn`` once to compile, then ``repeats`` times, recording each warm run's wall and CPU time.

    Parameters
    ----------
    fn : callable
        The call to time; it must return its result as NumPy data (so that the copy back from the
        device, if any, is part of the run).
    repeats : int
        Warm runs (at least 1).

    Returns
    -------
    (out, Timing)
        The last result, and the first call's and each warm run's times (see :class:`Timing`).
    """
    t0 = time.perf_counter()
    out = fn()
    timing = Timing(time.perf_counter() - t0)
    for _ in range(max(int(repeats), 1)):
        b0, c0 = _machine_busy_s(), _own_cpu_s()
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
        b1, c1 = _machine_busy_s(), _own_cpu_s()
        timing.runs_s.append(wall)
        timing.cpu_s.append(c1 - c0)
        timing.others_cpu_s.append(float("nan") if b0 is None or b1 is None else max(b1 - b0 - (c1 - c0), 0.0))
    return out, timing


def timed_in_turn(variants: Dict[str, Callable[[], object]], repeats: int
                  ) -> Tuple[Dict[str, object], Dict[str, float], Dict[str, List[float]]]:
    """Call each variant once (compiling it), then ``repeats`` rounds calling every variant in turn, so that a
    busy spell of a shared machine falls on all of them alike.

    Returns
    -------
    (outputs, first_s, runs_s)
        Each variant's first result, its first call's seconds, and its warm runs' seconds (wall time).
    """
    outputs, first, runs = {}, {}, {name: [] for name in variants}
    for name, fn in variants.items():
        t0 = time.perf_counter()
        outputs[name] = fn()
        first[name] = time.perf_counter() - t0
    for _ in range(max(int(repeats), 1)):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t0)
    return outputs, first, runs


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
        spread = ""
        lo, hi = r.get("min_s"), r.get("max_s")
        if isinstance(lo, float) and isinstance(hi, float) and np.isfinite(lo) and np.isfinite(hi):
            spread = f" [{lo:.4f}-{hi:.4f}" + (f", n={r['n_runs']}]" if "n_runs" in r else "]")
        print(f"{r['bench']:14s} {r['variant']:22s} N={r['size']:>7d} {r['dtype']:8s} run {r['run_s']:8.4f} s{spread}  "
              f"compile {r['compile_s']:7.3f} s  max|diff| {r['max_abs_diff']:.2e}{extra}{note}", flush=True)
