"""Tracing, XLA compilation, warm run and gradient memory of the one integrator (issue 26).

Each case runs in this process, once per invocation (run one case per process so that nothing is
compiled before it):

* ``ei`` / ``locust``: chapter 4's random E/I network (1,000 neurons) and the locust antennal lobe,
  ``simulate(..., record=("V",), every=10)`` over ``--ms`` ms of 0.01 ms steps;
* ``grad``: chapter 8's gradient check, ``value_and_gradient`` of a mean squared voltage error,
  3 HH neurons x 800 steps of 0.025 ms;
* ``mem``: peak extra memory of one gradient, 15 HH neurons x 10,000 steps of 0.01 ms (chapter 8,
  section 7), without checkpointing;
* ``cache``: the first call of a locust run (``--ms``) in three fresh processes: without the
  persistent XLA cache, with an empty cache (it is written), and with the filled one (it is read);
* ``records``: writes the records of HH / E/I / locust runs to ``--out`` (an ``.npz``), to
  compare two versions of the integrator with ``--compare``.

What is measured, in seconds: ``trace`` (``get_concrete_function``: Python tracing to a TensorFlow
graph), ``first`` (the first call after tracing: XLA compilation plus one run), ``warm`` (median
of ``--repeats`` later calls, with min and max), ``compile = first - warm``; ``ops`` is the number of
TensorFlow operations in the traced graph and every function it calls, ``hlo`` the number of
instructions in XLA's optimised HLO module. Run under the machine's heavy-job lock::

    flock /tmp/psst-heavy.lock .venv/bin/python benchmarks/compile_and_gradient.py locust --ms 1000
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from psst_helpers.bench.harness import timed_runs  # noqa: E402


def count_ops(graph) -> int:
    """Operations in ``graph`` and in every function of its library (each counted once)."""
    n = len(graph.get_operations())
    lib = graph.as_graph_def().library
    return n + sum(len(f.node_def) for f in lib.function)


def _fn_and_args(integ, key_args):
    """The compiled function the integrator made last, and the arguments it was called with."""
    return list(integ._compiled.values())[-1], key_args


def measure(make_call, get_fn, repeats: int) -> dict:
    """``make_call()`` returns a zero-argument call; ``get_fn()`` -> (tf.function, args) to trace."""
    fn, args = get_fn()
    start = time.perf_counter()
    conc = fn.get_concrete_function(*args)
    trace = time.perf_counter() - start
    ops = count_ops(conc.graph)
    _, timing = timed_runs(make_call(), repeats)
    first, warm, med = timing.first_s, timing.runs_s, timing.median_s
    return {"trace_s": round(trace, 3), "first_s": round(first, 3), "warm_s": round(med, 4),
            "warm_min_s": round(min(warm), 4), "warm_max_s": round(max(warm), 4),
            "compile_s": round(first - med, 3), "first_over_warm": round((trace + first) / med, 2), "ops": ops}


def network_case(name: str, ms: float, repeats: int) -> dict:
    from psst_helpers import networks
    from psst_helpers.analysis import time_grid
    from psst_helpers.solvers.tf_solver import Integrator

    model = _ei_model() if name == "ei" else networks.locust_antennal_lobe(0)
    t = time_grid(ms, 0.01)
    integ = networks.integrator_for(model, record=("V",), every=10)
    state = model.state(np.float64)

    def get_fn():
        t64, key, lv, tt, dts, pv = integ._prepare(state, t, None)
        return integ._forward(key), (lv, tt, dts, pv)

    out = measure(lambda: (lambda: networks.simulate(model, t, record=("V",), every=10)["V"]), get_fn, repeats)
    out.update(case=name, ms=ms, neurons=int(model.initial_state["V"].size), traces=integ.traces)
    assert isinstance(integ, Integrator)
    return out


def _ei_model(n: int = 1000):
    """Chapter 4's random E/I network (section 6), as the chapter builds it."""
    from psst_helpers import networks
    from psst_helpers.stimuli import Constant
    from psst_helpers.synapses import SynapseGroup

    rng = np.random.default_rng(2026)
    n_exc = int(0.8 * n)
    p = 0.02
    C = (rng.random((n, n)) < p) & ~np.eye(n, dtype=bool)
    exc = np.arange(n) < n_exc
    g_ach, g_gaba = 0.35 * 10 / (p * n_exc), 0.8 * 5 / (p * (n - n_exc))
    I_ei, V0 = rng.uniform(5.0, 10.0, n), rng.uniform(-75.0, -55.0, n)
    groups = [SynapseGroup.from_matrix("ach", C & exc[None, :], g=g_ach, storage="pre"),
              SynapseGroup.from_matrix("gaba", C & ~exc[None, :], g=g_gaba, storage="pre")]
    return networks.hh_network(n, Constant(I_ei), groups, V0=V0, name="random_ei")


def _grad_problem(batch: int, n_steps: int, dt: float):
    from psst_helpers import gradients as G

    sim = G.GradientIntegrator(G.hh_rhs, n_steps=n_steps, dt=dt)
    currents = np.tile([1.0, 3.0, 10.0], batch // 3)
    p = G.hh_params([batch], I_ext=currents, g_Na=120.0, g_K=8.0, g_L=0.195)
    y0 = G.hh_rest_state(-70.0, [batch])
    target = tf.constant(np.full((n_steps, batch), -65.0))

    def loss(V):
        return G.mse(V, target)
    return sim, loss, y0, p


def _old_value_and_grad(integ, loss_fn, wrt, key):
    from psst_helpers._tree import unflatten

    run = integ._loop(*key, grad=True)

    def value_and_grad(lv_, tt_, dts_, pv_):
        with tf.GradientTape() as tape:
            tape.watch(pv_)
            p = unflatten(key[2], pv_)
            stacks, _, fail_start = run(lv_, tt_, dts_, pv_)[:3]
            loss = loss_fn(unflatten(integ._record_def(key[0], lv_), stacks))
        grads = tape.gradient(loss, [p[k] for k in wrt], unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return loss, grads, fail_start
    return value_and_grad


def grad_case(repeats: int) -> dict:
    names = ["g_Na", "g_K", "g_L"]
    sim, loss, y0, p = _grad_problem(3, 800, 0.025)

    def call():
        value, grads = sim.value_and_gradient(loss, y0, p, names)
        return [g.numpy() for g in grads.values()]

    def get_fn():
        integ = sim.integrator
        wrapped = sim._losses.setdefault(loss, __import__("functools").partial(
            __import__("psst_helpers.gradients", fromlist=["x"])._after_start, loss))
        t64, key, lv, tt, dts, pv = integ._prepare(sim._state(y0, 0.0), sim._t, p)
        if hasattr(integ, "_value_and_grad_fn"):
            make = lambda: integ._value_and_grad_fn(wrapped, tuple(names), key)  # noqa: E731
        else:  # the integrator before issue 26: its value_and_gradient's inner function, copied
            make = lambda: _old_value_and_grad(integ, wrapped, tuple(names), key)  # noqa: E731
        fn = integ._function(("value_and_gradient", wrapped, tuple(names)), key, make)
        return fn, (lv, tt, dts, pv)

    try:
        out = measure(lambda: call, get_fn, repeats)
    except Exception as err:  # an integrator without the factory: time the first call whole
        print("trace apart not possible:", err, file=sys.stderr)
        _, timing = timed_runs(call, repeats)
        out = {"first_s": round(timing.first_s, 3), "warm_s": round(timing.median_s, 4)}
    out.update(case="grad", grad=[float(np.sum(x)) for x in call()])
    return out


def mem_case() -> dict:
    from psst_helpers import gradients as G

    names = ["g_Na", "g_K", "g_L"]
    sim, loss, y0, p = _grad_problem(15, 10_000, 0.01)

    def call():
        return sim.value_and_gradient(loss, y0, p, names)

    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    mbs, times = [], []
    for _ in range(3):
        s = time.perf_counter()
        mb, (_, g) = G.peak_memory(call)
        times.append(time.perf_counter() - s)
        mbs.append(mb)
    return {"case": "mem", "first_s": round(first, 2), "peak_MB": [round(m, 1) for m in mbs],
            "gradient_s": round(statistics.median(times), 3), "grad_g_Na": float(g["g_Na"].numpy().sum())}


def cache_case(ms: float) -> dict:
    """A fresh process's first call (trace + compile + run) without and with the persistent XLA cache."""
    import subprocess
    import tempfile

    code = ("import sys, json, time; sys.argv = ['x']\n"
            "from psst_helpers.solvers import enable_compile_cache\n"
            "d = sys.stdin.read().strip()\n"
            "if d: enable_compile_cache(d)\n"
            "from psst_helpers import networks\n"
            "from psst_helpers.analysis import time_grid\n"
            f"t = time_grid({ms}, 0.01); m = networks.locust_antennal_lobe(0)\n"
            "s = time.perf_counter(); networks.simulate(m, t, every=10)\n"
            "first = time.perf_counter() - s\n"
            "s = time.perf_counter(); networks.simulate(m, t, every=10)\n"
            "print(json.dumps({'first_s': round(first, 3), 'warm_s': round(time.perf_counter() - s, 3)}))\n")
    out = {"case": "cache", "ms": ms}
    with tempfile.TemporaryDirectory() as d:
        for name, arg in (("no_cache", ""), ("cache_written", d), ("cache_read", d)):
            res = subprocess.run([sys.executable, "-c", code], input=arg, capture_output=True, text=True, check=True)
            out[name] = json.loads(res.stdout.strip().splitlines()[-1])
        out["files"] = len(os.listdir(d))
    return out


def records(out_path: str) -> None:
    from psst_helpers import gradients as G
    from psst_helpers import networks
    from psst_helpers.analysis import time_grid

    res = {}
    t = time_grid(200.0, 0.01)
    res["hh"] = networks.simulate(networks.hh_population(np.linspace(0.0, 10.0, 20)), t)["V"]
    res["ei"] = networks.simulate(_ei_model(200), t, record=("V",), every=10)["V"]
    res["locust"] = networks.simulate(networks.locust_antennal_lobe(0), time_grid(200.0, 0.01), every=10)["V"]
    sim, loss, y0, p = _grad_problem(3, 800, 0.025)
    value, grads = sim.value_and_gradient(loss, y0, p, ["g_Na", "g_K", "g_L"])
    res["grad"] = np.array([grads[k].numpy() for k in ["g_Na", "g_K", "g_L"]])
    res["loss"] = np.array(float(value))
    np.savez(out_path, **res)


def compare(a: str, b: str) -> dict:
    x, y = np.load(a), np.load(b)
    out = {}
    for k in x.files:
        d = np.abs(x[k] - y[k])
        rel = d / np.maximum(np.abs(x[k]), 1e-300)
        out[k] = {"max_abs": float(d.max()), "max_rel": float(rel.max())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=["ei", "locust", "grad", "mem", "cache", "records", "compare"])
    ap.add_argument("--ms", type=float, default=1000.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="records.npz")
    ap.add_argument("--compare", nargs=2)
    a = ap.parse_args()
    if a.case in ("ei", "locust"):
        res = network_case(a.case, a.ms, a.repeats)
    elif a.case == "grad":
        res = grad_case(a.repeats)
    elif a.case == "mem":
        res = mem_case()
    elif a.case == "cache":
        res = cache_case(a.ms)
    elif a.case == "records":
        records(a.out)
        res = {"written": a.out}
    else:
        res = compare(*a.compare)
    res["tf"] = tf.__version__
    print(json.dumps(res))


if __name__ == "__main__":
    main()
