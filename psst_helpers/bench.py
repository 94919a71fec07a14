"""Benchmarks: ``python -m psst_helpers.bench {core,matmul,brian2,appendix} [--quick] [--out DIR]``.

``matmul`` times n x n matrix products, NumPy against TensorFlow on every device it sees, float32
and float64. ``brian2`` compares the HH population with Brian2 (:func:`bench_brian2`).
``appendix`` runs ``matmul`` and ``core`` with, in (a), also a loop of eager TensorFlow operations.
``core`` measures, side by side in one run on one machine:

(a) RK4 on dx/dt = sin(x t), 500 steps (t from 0 to 5, dt 0.01), float64, N equations from
    y0 = linspace(0, 1, N): a NumPy loop, the original tutorial's design (a graph-mode ``tf.scan``
    that stores every step), and psst's compiled loop without and with XLA;
(b) Hodgkin-Huxley population throughput in neuron-steps per second (dt 0.01 ms, V recorded
    every 10 steps), float32 and float64, the original design against psst.

Compile (first-call) time is reported apart from run time; run times are medians of ``--repeats``
runs. Results go to a CSV whose header lines (``# ...``) describe the machine and library versions.
Timings are never asserted in tests; ``--quick`` only checks that every variant computes the same
numbers.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np


def machine_description() -> Dict[str, str]:
    """CPU model, core count and library versions, for the CSV header."""
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
    except Exception:  # noqa: BLE001 - informational only
        blas = "unknown"
    gpus = tf.config.list_physical_devices("GPU")
    return {
        "cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
        "numpy": np.__version__, "blas": blas, "tensorflow": tf.__version__,
        "device": ", ".join(g.name for g in gpus) if gpus else "CPU only",
    }


def _timed(fn: Callable[[], object], repeats: int):
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


# --- (a) RK4 on dx/dt = sin(x t) -------------------------------------------------------------------

def original_scan_rk4(func, t):
    """The original tutorial's integrator design in TF2 graph mode: ``tf.scan`` keeping every step."""
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


def original_design_run(model, t, dtype=np.float64):
    """A model run the way the original tutorial ran it: one graph-mode ``tf.scan`` over the time
    grid (no XLA) that returns the *whole* state at every step. The baseline for chapter 6.

    Returns the stacked state (a dict of arrays ``[len(t) - 1, ...]``) after the first step.
    """
    import tensorflow as tf

    from ._tree import flatten, unflatten
    from .solvers.schemes import rk4_step

    y0 = model.state(dtype)
    leaves0, treedef = flatten(y0)
    tt = tf.constant(np.asarray(t, dtype))
    dts = tf.constant(np.diff(np.asarray(t, np.float64)).astype(dtype))

    def f(lv, tm):
        return flatten(model.derivatives(unflatten(treedef, lv), tm))[0]

    @tf.function
    def run(leaves):
        def step(lv, inp):
            t0, t1, h = inp
            new = rk4_step(f, list(lv), t0, h)
            if model.post_step is not None:
                new = flatten(model.post_step(t0, unflatten(treedef, list(lv)), t1, unflatten(treedef, new)))[0]
            return [tf.cast(x, tt.dtype) for x in new]

        return tf.scan(step, (tt[:-1], tt[1:], dts), initializer=list(leaves))

    out = run([tf.constant(x) for x in leaves0])
    return unflatten(treedef, [x.numpy() for x in out])


def eager_rk4(func, y0: np.ndarray, t: np.ndarray) -> np.ndarray:
    """RK4 as a Python loop of eager TensorFlow operations (chapter 2's first attempt): every
    operation of every step is dispatched from Python. Returns the final state."""
    import tensorflow as tf

    from .solvers.schemes import rk4_step

    y = [tf.constant(y0)]
    f = lambda lv, tm: [func(lv[0], tm)]  # noqa: E731 - the scheme works on lists of leaves
    for i in range(len(t) - 1):
        y = rk4_step(f, y, tf.constant(t[i]), tf.constant(t[i + 1] - t[i]))
    return y[0].numpy()


def bench_sin(sizes: List[int], repeats: int, eager: bool = True) -> List[Dict[str, object]]:
    import tensorflow as tf

    from .solvers import odeint_np
    from .solvers.tf_solver import Integrator

    t = 0.01 * np.arange(501)
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
        ref = None
        for name, fn in variants.items():
            out, med, compile_s, spread = _timed(fn, repeats)
            ref = out if ref is None else ref
            rows.append({"bench": "rk4_sin", "variant": name, "size": n, "dtype": "float64",
                         "run_s": med, "compile_s": compile_s, "min_s": spread[0], "max_s": spread[1],
                         "max_abs_diff": float(np.max(np.abs(np.asarray(out) - ref)))})
    return rows


# --- matrix products ----------------------------------------------------------------------------------

def bench_matmul(sizes: List[int], repeats: int, dtypes=("float32", "float64")) -> List[Dict[str, object]]:
    """n x n matrix products: NumPy (its BLAS) against TensorFlow on every device it sees.

    Inputs are made once per size on each device; a TensorFlow product is timed until its result
    is back in host memory as a NumPy array (on a GPU that includes the copy), like NumPy's.
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
                out, med, compile_s, spread = _timed(fn, repeats)
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


# --- (b) HH population throughput --------------------------------------------------------------------

def original_hh_population(I_inj: np.ndarray, dtype):
    """The original tutorial's HH population: flat [V..., m..., h..., n...] state, naive rate formulas."""
    import tensorflow as tf

    n = I_inj.size
    I = tf.constant(I_inj, dtype=dtype)
    phi = 3.0 ** ((22.0 - 36.0) / 10.0)

    def f(X, t):
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

    return f


def bench_hh(sizes: List[int], duration_ms: float, repeats: int, dtypes=("float64", "float32")):
    import tensorflow as tf

    from .networks import hh_population
    from .solvers.tf_solver import Integrator

    dt = 0.01
    t = dt * np.arange(int(round(duration_ms / dt)) + 1)
    steps = len(t) - 1
    mem = _total_memory_bytes()
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
                out, med, compile_s, spread = _timed(fn, repeats)
                nan_neurons = int(np.isnan(out).any(axis=0).sum())
                ref = out if ref is None else ref  # psst_xla runs first and is the reference
                diff = float(np.nanmax(np.abs(out - ref)))
                rows.append({"bench": "hh_population", "variant": name, "size": n, "dtype": dtype, "run_s": med,
                             "compile_s": compile_s, "min_s": spread[0], "max_s": spread[1],
                             "neuron_steps_per_s": n * steps / med, "nan_neurons": nan_neurons,
                             "max_abs_diff": diff, "note": ""})
    return rows


def bench_brian2(sizes: List[int], duration_ms: float, python: str, repeats: int) -> List[Dict[str, object]]:
    """psst against Brian2 on the same HH population (see :mod:`psst_helpers.bench_brian2`), float64.

    Brian2 runs in its own Python (``python``); both count spikes as upward crossings of 0 mV and
    the rows say whether every neuron's count agrees before any speed is compared.
    """
    import json
    import subprocess
    import tempfile

    from .networks import hh_population
    from .solvers.tf_solver import Integrator

    t = 0.01 * np.arange(int(round(duration_ms / 0.01)) + 1)
    steps = len(t) - 1
    # absolute, but not resolved: a virtual environment's python is a symlink to the base one,
    # and only the link's path makes Python find the environment's packages
    python = os.path.abspath(python)
    if not os.path.exists(python):
        raise FileNotFoundError(f"no Python at {python}; create the Brian2 environment with `make brian2-venv`")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "brian2.json"
        proc = subprocess.run([python, str(Path(__file__).with_name("bench_brian2.py")), "--sizes", *map(str, sizes),
                               "--duration-ms", str(duration_ms), "--out", str(out)],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"the Brian2 run failed ({python}):\n{proc.stderr[-3000:]}")
        brian = json.loads(out.read_text())
    rows = []
    for n in sizes:
        model = hh_population(np.linspace(0.0, 10.0, n))
        integ = Integrator(model.derivatives, post_step=model.post_step, record=("V",), every=10)
        y0 = model.state(np.float64)
        (rec, final), med, compile_s, spread = _timed(lambda: integ(y0, t, return_final=True), repeats)
        ours = final["spikes"].numpy().astype(int)
        rows.append({"bench": "hh_vs_brian2", "variant": "psst_xla", "size": n, "dtype": "float64", "run_s": med,
                     "compile_s": compile_s, "min_s": spread[0], "max_s": spread[1],
                     "neuron_steps_per_s": n * steps / med, "spikes": int(ours.sum()), "spike_mismatch": 0,
                     "max_abs_diff": 0.0, "note": ""})
        for b in (r for r in brian if r["size"] == n):
            counts = np.asarray(b["spike_counts"])
            rows.append({"bench": "hh_vs_brian2", "variant": f"brian2_{b['target']}", "size": n, "dtype": "float64",
                         "run_s": b["run_s"], "compile_s": float("nan"), "min_s": b["run_s"], "max_s": b["run_s"],
                         "neuron_steps_per_s": b["neuron_steps_per_s"], "spikes": int(counts.sum()),
                         "spike_mismatch": int(np.sum(counts != ours)), "max_abs_diff": float(np.max(np.abs(counts - ours))),
                         "note": f"Brian2 {b['brian2']}, {b['threads']} threads, one run (code generation excluded)"})
    return rows


def _total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 * 2**30


# --- command line ------------------------------------------------------------------------------------

def write_csv(path: Path, rows: List[Dict[str, object]], machine: Dict[str, str]) -> None:
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


def print_table(rows: List[Dict[str, object]]) -> None:
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
              f"compile {r['compile_s']:7.3f} s  max|diff| {r['max_abs_diff']:.2e}{extra}{note}")


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m psst_helpers.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("suite", choices=["core", "matmul", "brian2", "appendix"],
                   help="core: RK4 sin + HH; matmul: matrix products; brian2: HH against Brian2; "
                        "appendix: matmul + core with the eager loop (the appendix chapter's figures)")
    p.add_argument("--matmul-sizes", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
    p.add_argument("--brian2-python", default=".venv-brian2/bin/python",
                   help="a Python with Brian2 installed (make brian2-venv)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks, not timings")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median reported)")
    p.add_argument("--hh-duration-ms", type=float, default=100.0, help="simulated time of the HH benchmark")
    p.add_argument("--sin-sizes", type=int, nargs="*", default=[1, 10, 100, 1000, 10_000, 100_000])
    p.add_argument("--hh-sizes", type=int, nargs="*", default=[1000, 10_000, 100_000])
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for core.csv")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if a.quick:
        a.repeats, a.hh_duration_ms, a.sin_sizes, a.hh_sizes, a.matmul_sizes = 1, 2.0, [1, 100], [50], [8, 64]
    machine = machine_description()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()))
    rows: List[Dict[str, object]] = []
    if a.suite in ("matmul", "appendix"):
        rows += bench_matmul(a.matmul_sizes, a.repeats)
        print_table(rows)
    if a.suite in ("core", "appendix"):
        sin = bench_sin(a.sin_sizes, a.repeats, eager=a.suite == "appendix")
        print_table(sin)
        hh = bench_hh(a.hh_sizes, a.hh_duration_ms, a.repeats)
        print_table(hh)
        rows += sin + hh
    if a.suite == "brian2":
        rows += bench_brian2(a.hh_sizes, a.hh_duration_ms, a.brian2_python, a.repeats)
        print_table(rows)
    out = a.out / f"{a.suite}.csv"
    write_csv(out, rows, machine)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
