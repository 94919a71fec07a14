"""How many CPU threads TensorFlow gives each operation (chapters 4 and 6, the benchmarks).

XLA's CPU runtime runs the kernels of a compiled step concurrently on TensorFlow's intra-op thread
pool whenever their arrays are larger than 512 bytes (64 float64 numbers). For the networks of this
book, up to a few thousand neurons, each kernel then takes a few microseconds or less, and handing
kernels between threads costs about as much as it saves. With one thread per operation the same
loop runs one kernel after the other on one core. Measured with ``python -m psst_helpers.bench
threads`` on an idle 2-core Intel Xeon (TF 2.21, float64, 50 ms, each setting in its own process,
median of 3), microseconds per RK4 step:

==================================  ===========  ========
network                             default (2)  1 thread
==================================  ===========  ========
120 independent HH neurons          25.4         15.8
locust antennal lobe (120 neurons)  45.5         38.8
1,000 independent HH neurons        95.4         78.1
100,000 independent HH neurons      5,126        8,686
==================================  ===========  ========

So one thread is the better setting for networks of up to some thousands of neurons on a small
CPU, and the worse one for large networks, whose kernels are long enough to share; on a GPU it
changes nothing (the kernels run there). TensorFlow sizes its thread pool when it runs its first
operation, so the setting must come first in a process or notebook.
"""
from __future__ import annotations

__all__ = ["set_cpu_threads"]


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
