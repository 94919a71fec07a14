"""How many CPU threads TensorFlow gives each operation: TensorFlow's default, or a measured choice.

XLA's CPU runtime may run the kernels of a compiled step concurrently on TensorFlow's intra-op thread
pool. For the networks of this book, up to a few thousand neurons, each kernel takes a few
microseconds or less, and handing kernels between threads may cost as much as it saves; with one
thread per operation the same loop runs one kernel after the other on one core. Which is faster
depends on the machine and on the network. Measured with ``python -m psst_helpers.bench threads``
(float64, dt 0.01 ms, V recorded every 10 steps, each setting in its own process), microseconds per
RK4 step, warm medians:

* 2-core Intel Xeon, TF 2.21, idle, median of 3 runs of 50 ms (the package before its one-stage-loop
  integrator): default (2 threads) against 1 thread, 120 independent HH neurons 25.4 / 15.8; the
  locust antennal lobe 45.5 / 38.8; 1,000 HH neurons 95.4 / 78.1; 100,000 HH neurons 5,126 / 8,686.
* 2-core AMD EPYC, TF 2.21, under the machine's job lock, median [min-max] of 5 runs:

  ====================================  ====================  ===================  ===================
  network (simulated time per run)      default               1 thread             2 threads
  ====================================  ====================  ===================  ===================
  120 independent HH neurons (200 ms)   22.8 [19.9-29.7]      17.1 [17.0-17.2]     24.0 [23.3-24.2]
  locust antennal lobe (1000 ms)        36.6 [36.3-36.6]      37.0 [36.8-37.1]     37.1 [37.0-37.6]
  1,000 HH neurons (200 ms)             124.4 [123.3-170.1]   102.4 [102.1-103.5]  209.5 [207.2-212.1]
  ====================================  ====================  ===================  ===================

  (Earlier on the same kind of machine, with the integrator that traced every RK stage, one thread
  made the locust run 15 % slower, 2.81 against 2.45 s, and chapter 4's E/I network 5 %.)

A setting that helps one network or machine hurts another, so **the chapters never set it**: they
leave TensorFlow's default (one thread per core). A reader who wants the faster setting for their own
machine and network measures it, either with the command above (it prints each setting's median with
its spread) or at run time with :func:`fastest_cpu_threads`, which runs the comparison in fresh
processes and returns the setting to pass to :func:`set_cpu_threads` (or None: keep the default). On
a GPU it changes nothing (the kernels run there). TensorFlow sizes its thread pool when it runs its
first operation, so the setting must come first in a process or notebook.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

__all__ = ["set_cpu_threads", "fastest_cpu_threads", "pick_cpu_threads", "MARGIN"]

#: :func:`fastest_cpu_threads` leaves TensorFlow's default unless another setting's median is faster by
#: more than this fraction and its slowest run is no slower than the default's median.
MARGIN = 0.05


def set_cpu_threads(n: int) -> None:
    """Let each TensorFlow operation use at most ``n`` CPU threads (``1``: one kernel at a time).

    Parameters
    ----------
    n : int
        Threads per operation, at least 1. TensorFlow's default is one per core.

    Raises
    ------
    ParameterError
        If ``n`` is not a positive whole number.
    RuntimeError
        If TensorFlow has already run an operation in this process with another setting: the
        thread pool exists by then. Call this first (restart the notebook's kernel, then run the
        cell that calls it before any other).
    """
    from .solvers.checks import positive_int

    n = positive_int("n", n, what="threads")
    import tensorflow as tf

    if tf.config.threading.get_intra_op_parallelism_threads() == n:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
    except RuntimeError as err:
        current = tf.config.threading.get_intra_op_parallelism_threads()
        raise RuntimeError(
            f"TensorFlow has already started in this process with {current or 'one per core'} thread(s) per "
            f"operation, and its thread pool cannot be resized: call psst.set_cpu_threads({n}) before anything "
            "else runs TensorFlow (in a notebook: restart the kernel and run that cell first)") from err


def pick_cpu_threads(rows: List[Dict[str, Any]], margin: float = MARGIN) -> Optional[int]:
    """The setting to use from rows of ``bench threads`` for one case (the first row: the default).

    Parameters
    ----------
    rows : list of dict
        Rows with ``variant`` (``"threads_default"`` or ``"threads_N"``), ``run_s`` (median, s) and
        ``max_s`` (slowest run, s); the first is TensorFlow's default.
    margin : float
        A setting replaces the default only when its median is below ``(1 - margin)`` times the default's
        and its slowest run below the default's median: a difference inside the runs' spread is no reason
        to leave the default.

    Returns
    -------
    int or None
        Threads per operation, or None to keep TensorFlow's default.
    """
    default = rows[0]
    best = None
    for r in rows[1:]:
        if r["run_s"] < (1.0 - margin) * default["run_s"] and r["max_s"] < default["run_s"]:
            if best is None or r["run_s"] < best["run_s"]:
                best = r
    return None if best is None else int(str(best["variant"]).rsplit("_", 1)[1])


def fastest_cpu_threads(case: str = "locust", duration_ms: float = 50.0, repeats: int = 5,
                        settings: Sequence[Optional[int]] = (None, 1, 2), margin: float = MARGIN) -> Optional[int]:
    """Measure, on this machine and now, which threads-per-operation setting runs ``case`` fastest.

    Each setting runs in a fresh Python process (:func:`psst_helpers.bench.threads.bench_threads`), so
    this process's TensorFlow is not started and :func:`set_cpu_threads` can still be called with the
    result. It takes a compilation and ``repeats`` runs per setting (about half a minute for the locust
    model at 50 ms on a 2-core CPU).

    Parameters
    ----------
    case : str
        ``"locust"`` (chapter 6's antennal lobe) or ``"hh_N"`` (N independent HH neurons).
    duration_ms : float
        Simulated time per run, ms.
    repeats : int
        Warm runs per setting (at least 5 for a median with a spread).
    settings : sequence of int or None
        Settings to compare; the first must be None (TensorFlow's default, the reference).
    margin : float
        See :func:`pick_cpu_threads`.

    Returns
    -------
    int or None
        The setting for :func:`set_cpu_threads`, or None: keep TensorFlow's default.
    """
    from .bench.threads import bench_threads
    from .errors import ParameterError

    if not settings or settings[0] is not None:
        raise ParameterError(f"settings must start with None (TensorFlow's default), got {list(settings)!r}")
    rows = bench_threads([case], duration_ms, "float64", repeats, settings)
    return pick_cpu_threads(rows, margin)
