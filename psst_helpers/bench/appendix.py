"""Suite ``appendix``: what the benchmark appendix chapter plots, ``matmul`` then ``core`` with the eager loop."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np

from .cli import register
from .core import HH_QUICK, SIN_QUICK, bench_hh, bench_sin, hh_arguments, sin_arguments
from .harness import Row, timed_in_turn, timed_runs
from .matmul import MATMUL_QUICK, bench_matmul, matmul_arguments


def _arguments(p: argparse.ArgumentParser) -> None:
    matmul_arguments(p)
    sin_arguments(p)
    hh_arguments(p)


@register("appendix", help="matmul + core with the eager loop (the appendix chapter's figures)",
          arguments=_arguments, quick={**MATMUL_QUICK, **SIN_QUICK, **HH_QUICK})
def run_appendix(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``appendix``."""
    yield bench_matmul(args.matmul_sizes, args.repeats)
    yield bench_sin(args.sin_sizes, args.repeats, eager=True)
    yield bench_hh(args.hh_sizes, args.hh_duration_ms, args.repeats)


# --- the appendix's explanations, measured ---------------------------------------------------------------------------

def matmul_onednn(sizes: List[int], repeats: int, dtypes=("float32", "float64")) -> List[Row]:
    """The matrix products of :func:`~psst_helpers.bench.matmul.bench_matmul` with TensorFlow's oneDNN
    optimisations off and on (``TF_ENABLE_ONEDNN_OPTS`` = 0 / 1): TensorFlow reads the switch when it is
    imported, so each setting runs in a fresh Python process. Rows as ``bench_matmul``'s with an
    ``onednn`` column (NumPy's rows come from both processes)."""
    import json
    import os
    import subprocess
    import sys

    code = ("import json, sys; from psst_helpers.bench.matmul import bench_matmul; "
            "print(json.dumps(bench_matmul(json.loads(sys.argv[1]), int(sys.argv[2]), tuple(json.loads(sys.argv[3])))))")
    rows: List[Row] = []
    for onednn in (0, 1):
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": str(onednn), "TF_CPP_MIN_LOG_LEVEL": "3"}
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(list(sizes)), str(repeats), json.dumps(list(dtypes))],
                              capture_output=True, text=True, env=env, check=True)
        rows += [{**r, "onednn": onednn} for r in json.loads(proc.stdout.strip().splitlines()[-1])]
    return rows


#: Elementwise arithmetic that XLA's optimised HLO keeps, counted as one operation each per element.
ARITHMETIC_OPS = ("add", "subtract", "multiply", "divide", "exponential", "power", "negate", "abs", "select",
                  "compare", "maximum", "minimum", "exponential-minus-one", "log", "sqrt", "rsqrt", "sine", "cosine")


def rk4_step_operations(rates: str = "package", n: int = 1000, dtype: str = "float64") -> Dict[str, float]:
    """Operations per neuron of one RK4 step of the HH population (:func:`bare_hh_population`'s step with
    ``rates`` "naive" or "package"), counted in the HLO that XLA compiles after its own simplifications:
    each elementwise instruction counts its number of elements, divided by ``n``. ``exp``, ``pow`` and a
    division count one each, although each costs several multiply-adds (a polynomial after range reduction).

    Returns
    -------
    dict
        Operation name -> count per neuron-step, plus ``"total"``.
    """
    import re

    import tensorflow as tf

    from .baselines import original_hh_population, package_rates_hh_population

    tf_dt = tf.as_dtype(dtype)
    f = (original_hh_population if rates == "naive" else package_rates_hh_population)(np.linspace(0, 10, n), tf_dt)
    h = tf.constant(0.01, tf_dt)

    @tf.function(jit_compile=True)
    def step(X):
        k1 = f(X, 0.0)
        k2 = f(X + 0.5 * h * k1, 0.0)
        k3 = f(X + 0.5 * h * k2, 0.0)
        k4 = f(X + h * k3, 0.0)
        return X + h / 6.0 * (k1 + 2.0 * (k2 + k3) + k4)

    hlo = step.experimental_get_compiler_ir(tf.zeros(4 * n, tf_dt))(stage="optimized_hlo")
    short = {"float64": "f64", "float32": "f32"}[dtype]
    counts: Dict[str, float] = {}
    for line in hlo.splitlines():
        m = re.search(r"= (?:%s|pred)\[([\d,]*)\]\S* ([\w-]+)\(" % short, line)
        if m and m.group(2) in ARITHMETIC_OPS:
            size = int(np.prod([int(x) for x in m.group(1).split(",") if x])) if m.group(1) else 1
            counts[m.group(2)] = counts.get(m.group(2), 0.0) + size / n
    counts["total"] = sum(counts.values())
    return counts


def bench_rates(n: int, duration_ms: float, repeats: int, dtypes=("float64", "float32")) -> List[Row]:
    """The bare XLA kernel with the original's naive rate formulas and with the package's, beside the
    package's own loop (:func:`~psst_helpers.bench.core.bench_hh`'s ``psst_xla``), on ``n`` HH neurons, V
    every 10 steps: what the rate formulas alone cost. The three are timed in turn, ``repeats`` rounds."""
    import statistics

    from ..analysis import time_grid
    from ..networks import hh_population
    from ..solvers.tf_solver import Integrator
    from .baselines import bare_hh_population

    t = time_grid(duration_ms, 0.01)
    steps = len(t) - 1
    I_inj = np.linspace(0.0, 10.0, n)
    rows: List[Row] = []
    for dtype in dtypes:
        np_dt = np.dtype(dtype)
        model = hh_population(I_inj)
        integ = Integrator(model.derivatives, post_step=model.post_step, record=("V",), every=10)
        y0 = model.state(np_dt)
        variants = {"bare_xla naive rates": bare_hh_population(I_inj, t, np_dt, rates="naive"),
                    "bare_xla package rates": bare_hh_population(I_inj, t, np_dt, rates="package"),
                    "psst_xla": lambda: integ(y0, t)}
        _, first, runs = timed_in_turn(variants, repeats)
        for name in variants:
            med = statistics.median(runs[name])
            rows.append({"bench": "hh_rates", "variant": name, "size": n, "dtype": dtype, "run_s": med,
                         "compile_s": max(first[name] - med, 0.0), "min_s": min(runs[name]), "max_s": max(runs[name]),
                         "neuron_steps_per_s": n * steps / med, "max_abs_diff": float("nan"), "note": ""})
    return rows


# --- chapter 8's gradient against jaxley ----------------------------------------------------------------------------

#: The jaxley side of the gradient comparison, in a checkout of the repository.
JAXLEY_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_jaxley.py"
#: jaxley's time steps tried, as fractions of the recordings' 0.025 ms sampling interval.
JAXLEY_DIVISORS = (1, 2, 4, 8, 16)


def bench_jaxley(python: str, repeats: int, divisors=JAXLEY_DIVISORS, T: float = 20.0, sample_dt: float = 0.025,
                 script: Optional[Path] = None, solvers=("bwd_euler", "crank_nicolson")) -> List[Row]:
    """Chapter 8's check problem in psst and in jaxley: three HH recordings (1, 3, 10 uA/cm^2) from rest,
    ``T`` ms sampled every ``sample_dt``, the mean squared difference from the noise-free recording at the
    true conductances, and its gradient with respect to (g_Na, g_K, g_L) at 1.2, 0.8, 1.3 times the truth.

    psst runs RK4 at ``sample_dt`` (:class:`psst_helpers.gradients.GradientIntegrator`'s
    ``value_and_gradient``); jaxley, in its own Python ``python``, each of its voltage ``solvers`` (implicit
    Euler and Crank-Nicolson; the gates by exponential Euler) at ``sample_dt / d`` for each ``d`` of ``divisors``. Every run's accuracy is its RMS difference in V (mV) from RK4 at
    ``sample_dt / 64`` with the same conductances; equal accuracy is the first jaxley dt whose error is
    at most psst's. Rows: first call (tracing and compilation) and the median of ``repeats`` warm calls.
    """
    import json
    import statistics
    import subprocess
    import tempfile

    import tensorflow as tf

    from .. import gradients as G

    script = Path(script) if script is not None else JAXLEY_SCRIPT
    python = os.path.abspath(python)
    if not os.path.exists(python):
        raise FileNotFoundError(f"no Python at {python}; make the jaxley environment first "
                                "(python -m venv .venv-jaxley && .venv-jaxley/bin/pip install jaxley)")
    names = ["g_Na", "g_K", "g_L"]
    currents = np.array([1.0, 3.0, 10.0])
    true = np.array([100.0, 10.0, 0.15])
    g_test = true * np.array([1.2, 0.8, 1.3])
    n = int(round(T / sample_dt))
    y0 = G.hh_rest_state(-70.0, [3])

    def fine(g, k=64):
        sim = G.GradientIntegrator(G.hh_rhs, n_steps=n * k, dt=sample_dt / k, every=k)
        return sim(y0, G.hh_params([3], I_ext=currents, **dict(zip(names, g)))).numpy()

    target = fine(true)
    reference = fine(g_test)
    sim = G.GradientIntegrator(G.hh_rhs, n_steps=n, dt=sample_dt)
    target_tf = tf.constant(target)
    params = G.hh_params([3], I_ext=currents, **dict(zip(names, g_test)))

    def loss(V):
        return G.mse(V, target_tf)

    def call():  # one loss function for every call: a new one would be traced again
        value, grads = sim.value_and_gradient(loss, y0, params, names)
        return float(value), [float(np.sum(grads[k].numpy())) for k in names]

    (value, grad), timing = timed_runs(call, repeats)
    first, warm = timing.first_s, timing.runs_s
    V = sim(y0, params).numpy()
    err = float(np.sqrt(np.mean((V - reference) ** 2)))
    rows: List[Row] = [{"bench": "gradient_vs_jaxley", "variant": "psst RK4", "size": 3, "dtype": "float64",
                        "dt_ms": sample_dt, "steps": n, "first_s": first, "run_s": statistics.median(warm),
                        "compile_s": first - statistics.median(warm), "min_s": min(warm), "max_s": max(warm),
                        "rms_error_mV": err, "loss": value, "dL_dg_Na": grad[0], "dL_dg_K": grad[1],
                        "dL_dg_L": grad[2], "max_abs_diff": float("nan"), "note": ""}]
    with tempfile.TemporaryDirectory() as tmp:
        problem, out = Path(tmp) / "problem.npz", Path(tmp) / "jaxley.json"
        np.savez(problem, T=T, sample_dt=sample_dt, currents=currents, g=g_test, target=target, V0=-70.0,
                 **{f"{k}0": float(np.asarray(v).ravel()[0]) for k, v in zip("mhn", y0[1:])})
        dts = [sample_dt / d for d in divisors]
        runs = []
        for solver in solvers:
            proc = subprocess.run([python, str(script), str(problem), "--dts", *map(str, dts), "--repeats",
                                   str(repeats), "--solver", solver, "--out", str(out)],
                                  capture_output=True, text=True, cwd=tmp)
            if proc.returncode != 0:
                raise RuntimeError(f"the jaxley run failed ({python}):\n{proc.stderr[-3000:]}")
            res = json.loads(out.read_text())
            runs += [(res, r) for r in res["results"]]
    for res, r in runs:
        Vj = np.asarray(r["V"])
        med = statistics.median(r["warm_s"])
        rows.append({"bench": "gradient_vs_jaxley", "variant": f"jaxley {res['solver']}", "size": 3,
                     "dtype": "float64", "dt_ms": r["dt"], "steps": r["steps"], "first_s": r["first_s"],
                     "run_s": med, "compile_s": r["first_s"] - med, "min_s": min(r["warm_s"]),
                     "max_s": max(r["warm_s"]), "rms_error_mV": float(np.sqrt(np.mean((Vj - reference) ** 2))),
                     "loss": r["loss"], "dL_dg_Na": r["grad"][0], "dL_dg_K": r["grad"][1], "dL_dg_L": r["grad"][2],
                     "max_abs_diff": float("nan"), "note": f"jaxley {res['jaxley']}, JAX {res['jax']}"})
    return rows


#: Chapter 8's memory problem (section 7): neurons, steps of ``MEMORY_DT`` ms, psst's checkpoint chunk.
MEMORY_NEURONS, MEMORY_STEPS, MEMORY_DT, MEMORY_CHUNK = 15, 10_000, 0.01, 100


def _memory_problem(n_neurons: int):
    """Chapter 8's section 7: ``n_neurons`` HH neurons from rest at -70 mV at 1, 3, 10, 1, 3, ... uA/cm^2,
    the book's conductances, the loss the mean squared difference of V at every step from -65 mV."""
    from .. import gradients as G

    currents = np.resize([1.0, 3.0, 10.0], n_neurons)
    return currents, G.hh_rest_state(-70.0, [n_neurons]), np.array([100.0, 10.0, 0.15])


def psst_gradient_memory(n_neurons: int, steps: int, dt: float, repeats: int,
                         checkpoint_every: Optional[int] = None) -> Row:
    """Chapter 8's memory measurement of the package's gradient, in this process (start a fresh one for each:
    memory an earlier run freed would hide part of a later one's): the first call (tracing, compilation, a
    run), then :func:`psst_helpers.memory.peak_memory` of the next call (extra MB above the level just before
    it), then ``repeats`` timed calls. Called by :func:`gradient_memory_vs_jaxley` in a subprocess."""
    import statistics
    import time

    import tensorflow as tf

    from .. import gradients as G
    from ..memory import peak_memory, peak_rss_bytes

    names = ["g_Na", "g_K", "g_L"]
    currents, y0, g = _memory_problem(n_neurons)
    p = G.hh_params([n_neurons], I_ext=currents, **dict(zip(names, g)))
    target = tf.constant(np.full((steps, n_neurons), -65.0))
    sim = G.GradientIntegrator(G.hh_rhs, n_steps=steps, dt=dt, checkpoint_every=checkpoint_every)

    def loss(V):
        return G.mse(V, target)

    def call():
        value, grads = sim.value_and_gradient(loss, y0, p, names)
        return float(value), [float(np.sum(grads[k].numpy())) for k in names]

    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    extra_mb, _ = peak_memory(call)
    (value, grad), timing = timed_runs(call, repeats)
    warm = timing.runs_s
    chunks = "state per step" if checkpoint_every is None else f"chunks of {checkpoint_every}"
    return {"bench": "gradient_memory", "variant": f"psst RK4, {chunks}", "size": n_neurons, "dtype": "float64",
            "dt_ms": dt, "steps": steps, "first_s": first, "run_s": statistics.median(warm),
            "compile_s": first - statistics.median(warm), "min_s": min(warm), "max_s": max(warm),
            "loss": value, "dL_dg_Na": grad[0], "dL_dg_K": grad[1], "dL_dg_L": grad[2],
            "max_abs_diff": float("nan"), "extra_MB": extra_mb, "process_peak_MB": peak_rss_bytes() / 1e6, "note": ""}


def gradient_memory_vs_jaxley(python: str, repeats: int, n_neurons: int = MEMORY_NEURONS,
                              steps: int = MEMORY_STEPS, dt: float = MEMORY_DT, chunk: int = MEMORY_CHUNK,
                              script: Optional[Path] = None) -> List[Row]:
    """The peak memory of one loss and gradient, chapter 8's section 7 problem (``n_neurons`` HH neurons,
    ``steps`` steps of ``dt`` ms, loss over V at every step, gradient with respect to g_Na, g_K, g_L), each
    variant in a fresh process measured the same way (:func:`psst_helpers.memory.peak_memory` of the call
    after the first, above the process's level just before it, imports and compilation done): psst RK4 with
    a state per step and with chunks of ``chunk`` steps; jaxley at the same dt with its default solver
    (backward Euler for the voltage, exponential Euler for the gates), without checkpointing and with
    ``checkpoint_lengths`` of about ``chunk`` steps per level. Rows ``bench = "gradient_memory"`` with
    ``extra_MB`` and ``process_peak_MB`` (whole process, TensorFlow or JAX included)."""
    import json
    import math
    import statistics
    import subprocess
    import sys
    import tempfile

    script = Path(script) if script is not None else JAXLEY_SCRIPT
    python = os.path.abspath(python)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    rows: List[Row] = []
    code = ("import json, sys; from psst_helpers.bench.appendix import psst_gradient_memory as m; "
            "print(json.dumps(m(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), "
            "None if sys.argv[5] == 'None' else int(sys.argv[5]))))")
    for every in (None, chunk):
        proc = subprocess.run([sys.executable, "-c", code, str(n_neurons), str(steps), str(dt), str(repeats),
                               str(every)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"the psst memory run failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    currents, y0, g = _memory_problem(n_neurons)
    outer = math.ceil(steps / chunk)
    with tempfile.TemporaryDirectory() as tmp:
        problem, out = Path(tmp) / "problem.npz", Path(tmp) / "jaxley.json"
        np.savez(problem, T=steps * dt, sample_dt=dt, currents=currents, g=g,
                 target=np.full((steps, n_neurons), -65.0), V0=-70.0,
                 **{f"{k}0": float(np.asarray(v).ravel()[0]) for k, v in zip("mhn", y0[1:])})
        for lengths in (None, [outer, chunk]):
            cmd = [python, str(script), str(problem), "--dts", str(dt), "--repeats", str(repeats), "--memory",
                   "--out", str(out)] + ([] if lengths is None else ["--checkpoint-lengths", *map(str, lengths)])
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
            if proc.returncode != 0:
                raise RuntimeError(f"the jaxley memory run failed ({python}):\n{proc.stderr[-3000:]}")
            res = json.loads(out.read_text())
            r = res["results"][0]
            med = statistics.median(r["warm_s"])
            ck = "" if lengths is None else f", checkpoint_lengths {lengths[0]}x{lengths[1]}"
            rows.append({"bench": "gradient_memory", "variant": f"jaxley {res['solver']}{ck}", "size": n_neurons,
                         "dtype": "float64", "dt_ms": dt, "steps": r["steps"], "first_s": r["first_s"],
                         "run_s": med, "compile_s": r["first_s"] - med, "min_s": min(r["warm_s"]),
                         "max_s": max(r["warm_s"]), "loss": r["loss"], "dL_dg_Na": r["grad"][0],
                         "dL_dg_K": r["grad"][1], "dL_dg_L": r["grad"][2], "max_abs_diff": float("nan"),
                         "extra_MB": r["extra_MB"],
                         "process_peak_MB": r["process_peak_MB"],
                         "note": f"jaxley {res['jaxley']}, JAX {res['jax']}"})
    return rows


def _jaxley_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jaxley-python", default=".venv-jaxley/bin/python", help="a Python with jaxley installed")
    p.add_argument("--jaxley-divisors", type=int, nargs="+", default=list(JAXLEY_DIVISORS),
                   help="jaxley's dt = 0.025 ms / d for each d")
    p.add_argument("--memory-steps", type=int, default=MEMORY_STEPS,
                   help=f"steps of {MEMORY_DT} ms in the peak-memory comparison ({MEMORY_NEURONS} neurons; 0: skip it)")


@register("jaxley", help="chapter 8's loss and gradient, psst against jaxley (equal dt and equal accuracy; "
          "peak memory of chapter 8's 15 neurons x 10,000 steps)",
          arguments=_jaxley_arguments, quick={"jaxley_divisors": [1, 2], "memory_steps": 1_000})
def run_jaxley(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``jaxley``."""
    yield bench_jaxley(args.jaxley_python, args.repeats, args.jaxley_divisors)
    if args.memory_steps > 0:
        yield gradient_memory_vs_jaxley(args.jaxley_python, args.repeats, steps=args.memory_steps)
