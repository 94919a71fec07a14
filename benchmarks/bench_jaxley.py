"""Chapter 8's loss and gradient in jaxley, for the benchmark appendix's comparison with psst.

Run by ``python -m psst_helpers.bench jaxley --jaxley-python PY`` (:mod:`psst_helpers.bench.appendix`), which
writes the problem (start state, currents, target, conductances) to an ``.npz`` file and starts this script
with a Python that has jaxley (its own environment: jaxley pins its own JAX and NumPy)::

    .venv-jaxley/bin/python benchmarks/bench_jaxley.py problem.npz --dts 0.025 0.0125 --out jaxley.json

The model is the book's HH neuron (book/models.md, section "Hodgkin-Huxley neuron"): the same rates, written
here with the same removable-singularity series as ``psst_helpers.neurons.exprel_inv``, the same temperature
factor, as a jaxley channel in one compartment per recording (three recordings, three currents). jaxley
integrates the voltage implicitly (``bwd_euler``) and the gates by exponential Euler: it has no RK4, so
the comparison is at equal dt and at equal accuracy (the caller measures each run's error against a fine
RK4 reference). For every dt: the loss (mean squared difference from the target, sampled every 0.025 ms)
and its gradient with respect to g_Na, g_K, g_L, compiled once (first call) and timed warm (median).

With ``--memory`` (one dt) the script also measures, right after the first call, the peak memory of one
more call above the process's level just before it, with :func:`psst_helpers.memory.peak_memory` (imported
from this checkout; it needs psutil in jaxley's environment), as chapter 8 measures the package's gradient.
Run it in a fresh process per measurement, as chapter 8 does: memory an earlier run freed would hide part of
a later one's. ``--checkpoint-lengths`` passes jaxley's own gradient checkpointing to ``jx.integrate``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

PHI = 3.0 ** ((22.0 - 36.0) / 10.0)
SERIES = (1.0 / 12.0, -1.0 / 720.0, 1.0 / 30240.0, -1.0 / 1209600.0, 1.0 / 47900160.0,
          -5.284190138687493e-10, 1.3382536530684679e-11, -3.3896802963225827e-13,
          8.586062056277845e-15, -2.174868698558062e-16, 5.5090028283602295e-18)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("problem")
    p.add_argument("--dts", type=float, nargs="+", required=True, help="time steps to run, ms")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--solver", default="bwd_euler")
    p.add_argument("--memory", action="store_true",
                   help="after the first call, measure one call's peak extra memory (one dt only)")
    p.add_argument("--checkpoint-lengths", type=int, nargs="+", default=None,
                   help="jaxley's checkpointing: time steps per level (their product >= the steps)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.memory:
        if len(a.dts) != 1:
            p.error("--memory measures one run: give one dt")
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # psst_helpers of this checkout
        try:
            from psst_helpers.memory import peak_memory, peak_rss_bytes
        except ImportError as err:
            sys.exit(f"--memory needs psst_helpers.memory and psutil in this Python ({sys.executable}): "
                     f"{err}; install psutil there (pip install psutil)")

    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platform_name", "cpu")
    import jax.numpy as jnp
    import jaxley as jx
    from jaxley.channels import Channel
    from jaxley.solver_gate import solve_gate_exponential

    def exprel_inv(x):
        small = jnp.abs(x) < 1.0
        safe = jnp.where(small, 1.0, x)
        xs = jnp.where(small, x, 0.0)
        x2 = xs * xs
        poly = SERIES[-1]
        for c in SERIES[-2::-1]:
            poly = c + x2 * poly
        return jnp.where(small, 1.0 - 0.5 * xs + x2 * poly, safe / (jnp.exp(safe) - 1.0))

    def rates(v):
        u = v + 50.0
        return {"m": (1.28 * exprel_inv((13.0 - u) / 4.0), 1.4 * exprel_inv((u - 40.0) / 5.0)),
                "h": (0.128 * jnp.exp((17.0 - u) / 18.0), 4.0 / (jnp.exp((40.0 - u) / 5.0) + 1.0)),
                "n": (0.1 * exprel_inv((15.0 - u) / 5.0), 0.5 * jnp.exp((10.0 - u) / 40.0))}

    class BookHH(Channel):
        """The book's HH currents; conductances in S/cm^2 (jaxley's unit), currents in mA/cm^2."""

        def __init__(self, name=None):
            self.current_is_in_mA_per_cm2 = True
            super().__init__(name)
            q = self._name
            self.channel_params = {f"{q}_gNa": 0.1, f"{q}_gK": 0.01, f"{q}_gLeak": 0.00015,
                                   f"{q}_eNa": 50.0, f"{q}_eK": -95.0, f"{q}_eLeak": -55.0}
            self.channel_states = {f"{q}_m": 0.0, f"{q}_h": 0.0, f"{q}_n": 0.0}
            self.current_name = "i_BookHH"

        def update_states(self, states, dt, v, params):
            q = self._name
            r = rates(v)
            return {f"{q}_{g}": solve_gate_exponential(states[f"{q}_{g}"], dt, PHI * r[g][0], PHI * r[g][1])
                    for g in ("m", "h", "n")}

        def compute_current(self, states, v, params):
            q = self._name
            m, h, n = states[f"{q}_m"], states[f"{q}_h"], states[f"{q}_n"]
            return (params[f"{q}_gNa"] * m * m * m * h * (v - params[f"{q}_eNa"])
                    + params[f"{q}_gK"] * (n * n) * (n * n) * (v - params[f"{q}_eK"])
                    + params[f"{q}_gLeak"] * (v - params[f"{q}_eLeak"]))

        def init_state(self, states, v, params, delta_t):
            return {}

    with np.load(a.problem) as f:
        prob = {k: f[k] for k in f.files}
    T, sample_dt = float(prob["T"]), float(prob["sample_dt"])
    currents, g = prob["currents"], prob["g"]  # uA/cm^2; (g_Na, g_K, g_L) in mS/cm^2
    target = jnp.asarray(prob["target"])  # (samples, 3) after t = 0

    results = []
    for dt in a.dts:
        k = int(round(sample_dt / dt))
        steps = int(round(T / dt))
        cells = []
        for i in range(len(currents)):
            cell = jx.Cell(jx.Branch(jx.Compartment(), ncomp=1), parents=[-1])
            cells.append(cell)
        net = jx.Network(cells)
        net.insert(BookHH())
        net.set("v", float(prob["V0"]))
        for gate in ("m", "h", "n"):
            net.set(f"BookHH_{gate}", float(prob[gate + "0"]))
        radius, length = float(net.nodes["radius"].iloc[0]), float(net.nodes["length"].iloc[0])
        area_cm2 = 2 * np.pi * radius * length * 1e-8
        net.delete_stimuli() if hasattr(net, "delete_stimuli") else None
        for i, I in enumerate(currents):
            # uA/cm^2 * cm^2 = uA; jaxley's stimulus is in nA
            net.cell(i).stimulate(jnp.full(steps + 1, I * area_cm2 * 1e3), verbose=False)
            net.cell(i).record("v", verbose=False)
        for name in ("gNa", "gK", "gLeak"):
            net.make_trainable(f"BookHH_{name}", verbose=False)
        params0 = net.get_parameters()
        values = {"BookHH_gNa": g[0] * 1e-3, "BookHH_gK": g[1] * 1e-3, "BookHH_gLeak": g[2] * 1e-3}
        params = [{key: jnp.full_like(v, values[key]) for key, v in d.items()} for d in params0]

        def loss(params):
            v = jx.integrate(net, params=params, delta_t=dt, t_max=T, solver=a.solver,
                             checkpoint_lengths=a.checkpoint_lengths)  # (cells, steps + 1 or more)
            sampled = v[:, k:steps + 1:k].T
            return jnp.mean((sampled - target) ** 2), sampled

        vg = jax.jit(jax.value_and_grad(loss, has_aux=True))

        def call():  # one loss and gradient, brought back as NumPy data
            (value, V), grads = vg(params)
            return float(value), [{key: np.asarray(x) for key, x in d.items()} for d in grads]

        t0 = time.perf_counter()
        (value, V), grads = vg(params)
        jax.block_until_ready(grads)
        first = time.perf_counter() - t0
        memory = {}
        if a.memory:  # the next call's peak, at once: later calls partly reuse memory earlier ones freed
            extra_mb, _ = peak_memory(call)
            memory = {"extra_MB": extra_mb, "process_peak_MB": peak_rss_bytes() / 1e6}
        warm = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            (value, V), grads = vg(params)
            jax.block_until_ready(grads)
            warm.append(time.perf_counter() - t0)
        # per mS/cm^2, as psst reports it (jaxley's parameters are in S/cm^2)
        grad = [float(np.sum(grads[i][key])) * 1e-3 for i, key in
                enumerate(["BookHH_gNa", "BookHH_gK", "BookHH_gLeak"])]
        results.append({"dt": dt, "steps": steps, "cells": len(currents), "first_s": first, "warm_s": warm,
                        "loss": float(value), "grad": grad, **memory,
                        "V": None if a.memory else np.asarray(V).tolist()})
        mem = f", peak extra memory {memory['extra_MB']:.1f} MB" if memory else ""
        print(f"jaxley {a.solver} dt {dt:g} ms: first {first:.2f} s, warm {1e3 * statistics.median(warm):.2f} ms, "
              f"loss {float(value):.6g}{mem}", flush=True)
    with open(a.out, "w") as fh:
        json.dump({"jaxley": jx.__version__ if hasattr(jx, "__version__") else "?", "jax": jax.__version__,
                   "solver": a.solver, "checkpoint_lengths": a.checkpoint_lengths, "results": results}, fh)


if __name__ == "__main__":
    main()
