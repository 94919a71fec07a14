"""Suite ``matmul``: n x n matrix products, NumPy (its BLAS) against TensorFlow on every device it sees."""
from __future__ import annotations

import argparse
from typing import Callable, Iterator, List

import numpy as np

from .cli import register
from .harness import Row, timed


def bench_matmul(sizes: List[int], repeats: int, dtypes=("float32", "float64")) -> List[Row]:
    """n x n matrix products: NumPy against TensorFlow on every device it sees.

    Inputs are made once per size on each device; a TensorFlow product is timed until its result
    is back in host memory as a NumPy array (on a GPU that includes the copy), like NumPy's.

    Parameters
    ----------
    sizes : list of int
        Matrix sizes n.
    repeats : int
        Timed runs per variant.
    dtypes : tuple of str
        Floating-point types to measure.

    Returns
    -------
    list of dict
        One row per (n, dtype, variant); ``max_abs_diff`` is relative to the largest entry of NumPy's product.
    """
    import tensorflow as tf

    devices = ["/CPU:0"] + [f"/GPU:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        for dtype in dtypes:
            a = rng.standard_normal((n, n)).astype(dtype)
            b = rng.standard_normal((n, n)).astype(dtype)
            variants = {"numpy": lambda a=a, b=b: a @ b}
            for dev in devices:
                with tf.device(dev):
                    ta, tb = tf.constant(a), tf.constant(b)
                variants[f"tf_{dev.strip('/').split(':')[0].lower()}{dev[-1] if 'GPU' in dev else ''}"] = (
                    lambda ta=ta, tb=tb, dev=dev: _on(dev, lambda: tf.linalg.matmul(ta, tb)).numpy())
            ref = None
            for name, fn in variants.items():
                out, med, compile_s, spread = timed(fn, repeats)
                ref = out if ref is None else ref
                # relative to the largest entry: float32 sums of n products differ in their last bits
                diff = float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-300))
                rows.append({"bench": "matmul", "variant": name, "size": n, "dtype": dtype, "run_s": med,
                             "compile_s": compile_s, "min_s": spread[0], "max_s": spread[1],
                             "max_abs_diff": diff, "note": "max_abs_diff relative to max |entry|"})
    return rows


def _on(device: str, fn: Callable[[], object]):
    import tensorflow as tf

    with tf.device(device):
        return fn()


def matmul_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the matrix-product benchmark."""
    p.add_argument("--matmul-sizes", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
                   help="matrix sizes n")


MATMUL_QUICK = {"matmul_sizes": [8, 64]}


@register("matmul", help="n x n matrix products, NumPy against TensorFlow on every device",
          arguments=matmul_arguments, quick=MATMUL_QUICK)
def run_matmul(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``matmul``."""
    yield bench_matmul(args.matmul_sizes, args.repeats)
