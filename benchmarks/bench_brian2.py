"""The book's HH population in Brian2, for the like-for-like comparison of the benchmark appendix.

Run by ``python -m psst_helpers.bench brian2 --brian2-python PY`` (:mod:`psst_helpers.bench.brian2`),
which starts this file with ``PY``, a Python that has Brian2 (Brian2 2.9 needs NumPy < 2.4, so it gets
its own environment; ``make brian2-venv`` makes one in ``.venv-brian2``). This file needs only Brian2
and NumPy, not psst_helpers, which is why it is a script of the repository and not part of the package::

    .venv-brian2/bin/python benchmarks/bench_brian2.py --sizes 1000 10000 100000 --out b2.json

Same model and protocol as ``python -m psst_helpers.bench core``'s HH benchmark (models.md section 1):
N neurons driven by I = linspace(0, 10, N) uA/cm^2, start V = -71 mV with gates 0, RK4 at dt
0.01 ms for 100 ms, V recorded every 10 steps, spikes = upward crossings of 0 mV. The removable
singularities of the rates use Brian2's ``exprel``. Prints and writes, per size and target, the
run time (excluding code generation and compilation) and the spike count of every neuron.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

EQUATIONS = """
dv/dt = (I - g_Na*m**3*h*(v - E_Na) - g_K*n**4*(v - E_K) - g_L*(v - E_L)) / C_m : volt
dm/dt = phi*(alpha_m*(1 - m) - beta_m*m) : 1
dh/dt = phi*(alpha_h*(1 - h) - beta_h*h) : 1
dn/dt = phi*(alpha_n*(1 - n) - beta_n*n) : 1
u = v/mV + 50 : 1
alpha_n = 0.1/exprel((15 - u)/5)/ms : Hz
beta_n = 0.5*exp((10 - u)/40)/ms : Hz
alpha_m = 1.28/exprel((13 - u)/4)/ms : Hz
beta_m = 1.4/exprel((u - 40)/5)/ms : Hz
alpha_h = 0.128*exp((17 - u)/18)/ms : Hz
beta_h = 4/(exp((40 - u)/5) + 1)/ms : Hz
I : amp/meter**2
"""


def run(n: int, duration_ms: float, target: str, threads: int) -> dict:
    import brian2 as b2
    from brian2 import cm, mV, ms, msiemens, uA, uF

    b2.BrianLogger.suppress_name("unused_brian_object")  # the compile warm-up group below
    b2.start_scope()
    b2.defaultclock.dt = 0.01 * ms
    namespace = {"C_m": 1 * uF / cm**2, "g_Na": 100 * msiemens / cm**2, "E_Na": 50 * mV,
                 "g_K": 10 * msiemens / cm**2, "E_K": -95 * mV, "g_L": 0.15 * msiemens / cm**2,
                 "E_L": -55 * mV, "phi": 3.0 ** ((22.0 - 36.0) / 10.0)}
    if target == "cpp_standalone":
        b2.set_device("cpp_standalone", build_on_run=False, directory=None)
        b2.prefs.devices.cpp_standalone.openmp_threads = threads
    else:
        b2.prefs.codegen.target = target

    def build(size: int):
        G = b2.NeuronGroup(size, EQUATIONS, method="rk4", threshold="v > 0*mV", refractory="v > 0*mV",
                           namespace=namespace)
        G.v = -71 * mV
        G.I = np.linspace(0.0, 10.0, size) * uA / cm**2
        return G, b2.SpikeMonitor(G), b2.StateMonitor(G, "v", record=True, dt=0.1 * ms)

    if target != "cpp_standalone":  # generate and compile the code once (Brian2 caches it on disk)
        build(1)
        b2.run(0.1 * ms)
        b2.start_scope()
        b2.defaultclock.dt = 0.01 * ms
    G, spikes, trace = build(n)
    if target == "cpp_standalone":
        b2.run(duration_ms * ms)
        b2.device.build(run=True, compile=True)
        run_s = float(b2.device._last_run_time)
        counts = np.bincount(np.asarray(spikes.i), minlength=n)
        b2.device.reinit()
        b2.device.activate()
        b2.set_device("runtime")
    else:
        start = time.perf_counter()
        b2.run(duration_ms * ms)
        run_s = time.perf_counter() - start
        counts = np.bincount(np.asarray(spikes.i), minlength=n)
    _ = trace
    steps = int(round(duration_ms / 0.01))
    return {"simulator": "brian2", "target": target, "threads": threads, "size": n, "run_s": run_s,
            "neuron_steps_per_s": n * steps / run_s, "spike_counts": counts.tolist(), "brian2": b2.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--duration-ms", type=float, default=100.0)
    p.add_argument("--targets", nargs="+", default=["cpp_standalone", "cython"])
    p.add_argument("--cython-max", type=int, default=1000, help="largest size run with the (slow) cython target")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rows = []
    for n in a.sizes:
        for target in a.targets:
            if target == "cython" and n > a.cython_max:
                continue
            row = run(n, a.duration_ms, target, a.threads)
            print(f"brian2 {target:15s} N={n:>7d} run {row['run_s']:8.3f} s  "
                  f"{row['neuron_steps_per_s'] / 1e6:7.2f} M neuron-steps/s  spikes {sum(row['spike_counts'])}", flush=True)
            rows.append(row)
    with open(a.out, "w") as fh:
        json.dump(rows, fh)


if __name__ == "__main__":
    main()
