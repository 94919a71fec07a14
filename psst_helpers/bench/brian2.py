"""Suite ``brian2``: the HH population in psst against Brian2, run in Brian2's own Python.

Brian2 2.9 does not import with NumPy >= 2.4, so it lives in its own environment (``make brian2-venv``
makes ``.venv-brian2``) and runs the script ``benchmarks/bench_brian2.py`` of the repository checkout
in a subprocess; this module starts it, reads its JSON and compares spike counts neuron by neuron.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .cli import register
from .core import HH_QUICK, hh_arguments
from .harness import Row, timed

#: Where the Brian2 script is in a checkout of the repository (it is not part of the installed package).
BRIAN2_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_brian2.py"


def bench_brian2(sizes: List[int], duration_ms: float, python: str, repeats: int,
                 script: Optional[Path] = None) -> List[Row]:
    """psst against Brian2 on the same HH population, float64.

    Both count spikes as upward crossings of 0 mV, and the rows say whether every neuron's count
    agrees (``spike_mismatch``) before any speed is compared.

    Parameters
    ----------
    sizes : list of int
        Population sizes N.
    duration_ms : float
        Simulated time, ms (dt 0.01 ms).
    python : str
        A Python with Brian2 installed, e.g. ``.venv-brian2/bin/python``.
    repeats : int
        Timed runs of psst (Brian2 runs once per size and target).
    script : pathlib.Path, optional
        The Brian2 script; by default ``benchmarks/bench_brian2.py`` of this checkout.

    Returns
    -------
    list of dict
        Per size, one ``psst_xla`` row and one ``brian2_<target>`` row per Brian2 code-generation target.
    """
    from ..networks import hh_population
    from ..solvers.tf_solver import Integrator

    script = Path(script) if script is not None else BRIAN2_SCRIPT
    if not script.is_file():
        raise FileNotFoundError(
            f"the Brian2 script {script} is missing: it is part of the repository, not of the installed "
            "package; run this from a clone of the repository or pass the script's path (--brian2-script)")
    t = 0.01 * np.arange(int(round(duration_ms / 0.01)) + 1)
    steps = len(t) - 1
    # absolute, but not resolved: a virtual environment's python is a symlink to the base one,
    # and only the link's path makes Python find the environment's packages
    python = os.path.abspath(python)
    if not os.path.exists(python):
        raise FileNotFoundError(f"no Python at {python}; create the Brian2 environment with `make brian2-venv`")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "brian2.json"
        proc = subprocess.run([python, str(script), "--sizes", *map(str, sizes),
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
        (rec, final), med, compile_s, spread = timed(lambda: integ(y0, t, return_final=True), repeats)
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


def _arguments(p: argparse.ArgumentParser) -> None:
    hh_arguments(p)
    p.add_argument("--brian2-python", default=".venv-brian2/bin/python",
                   help="a Python with Brian2 installed (make brian2-venv)")
    p.add_argument("--brian2-script", type=Path, default=BRIAN2_SCRIPT, help="the Brian2 side of the comparison")


@register("brian2", help="the HH population against Brian2 (spike counts checked, then speed)",
          arguments=_arguments, quick=HH_QUICK)
def run_brian2(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``brian2``."""
    yield bench_brian2(args.hh_sizes, args.hh_duration_ms, args.brian2_python, args.repeats, args.brian2_script)


# --- the book's networks in Brian2: chapter 4's E/I network and chapter 6's locust antennal lobe --------------------

#: The Brian2 side of the network comparison, in a checkout of the repository.
BRIAN2_NETWORKS_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "brian2_networks.py"
#: (Brian2 target, OpenMP threads) compared with psst; the C++ standalone target at 1 and 2 threads, and Cython.
BRIAN2_TARGETS = (("cpp_standalone", 1), ("cpp_standalone", 2), ("cython", 1))


def ei_network(n: int = 1000, seed: int = 2026, ach_params: Optional[Dict[str, float]] = None):
    """Chapter 4's random E/I network (section 6 there): ``n`` HH neurons, 80 % excitatory, 2 % random
    connectivity (ACh from excitatory, GABA_A from inhibitory neurons), a constant current of 5 to 10
    uA/cm^2 and a start voltage of -75 to -55 mV per neuron, drawn from ``default_rng(seed)`` as there."""
    from ..networks import hh_network
    from ..stimuli import Constant
    from ..synapses import SynapseGroup

    rng = np.random.default_rng(seed)
    n_exc = int(0.8 * n)
    p_connect = 0.02
    C = (rng.random((n, n)) < p_connect) & ~np.eye(n, dtype=bool)  # C[post, pre]
    exc = np.arange(n) < n_exc
    C_ach, C_gaba = C & exc[None, :], C & ~exc[None, :]
    g_ach = 0.35 * 10 / (p_connect * n_exc)
    g_gaba = 0.8 * 5 / (p_connect * (n - n_exc))
    I_ei = rng.uniform(5.0, 10.0, n)
    V0 = rng.uniform(-75.0, -55.0, n)
    groups = [SynapseGroup.from_matrix("ach", C_ach, g=g_ach, params=ach_params),
              SynapseGroup.from_matrix("gaba", C_gaba, g=g_gaba)]
    return hh_network(n, Constant(I_ei), groups, V0=V0, name="random_ei")


def export_network(model, duration_ms: float, path: Path, record_every: int = 10, dt: float = 0.01) -> None:
    """Write what Brian2 needs to run ``model`` (the E/I network or the locust antennal lobe) to ``path`` (.npz):
    the start state, every neuron's drive, the connectivity as (pre, post) pairs, per-postsynaptic g and E, and
    the parameters (membrane, gates' temperature factors, synaptic kinetics) as JSON in ``meta``."""
    from .. import neurons as nrn
    from ..analysis import time_grid

    y = model.state(np.float64)
    par = y["par"]
    from .. import synapses as syn

    meta = {"duration_ms": duration_ms, "dt_ms": dt, "record_every": record_every, "phi": nrn.PHI_HH,
            "pulse_edge_tolerance_ms": float(getattr(syn, "PULSE_EDGE_TOLERANCE_MS", 0.0)),
            "kinetics": {s.kind: {k: float(v) for k, v in s.params.items()} for s in model.parts["synapses"]}}
    data = {"V0": np.asarray(y["V"], float), "I_ext": np.asarray(y["I_ext"], float)}
    for s in model.parts["synapses"]:
        data.update({f"{s.kind}_pre": s.pre, f"{s.kind}_post": s.post,
                     f"{s.kind}_g": np.asarray(par["syn"][s.kind]["g"], float),
                     f"{s.kind}_E": np.asarray(par["syn"][s.kind]["E"], float)})
    builder = model.parts["builder"]
    if builder == "hh_network":
        meta.update(model="ei", n=int(y["V"].size),
                    membrane={k: float(v) for k, v in par["membrane"].items()})
    elif builder == "locust_antennal_lobe":
        stim = model.parts["stimulus"]
        t = time_grid(duration_ms, dt)
        meta.update(model="locust", n_pn=model.parts["n_pn"], n_ln=model.parts["n_ln"],
                    PN={k: float(v) for k, v in par["membrane"]["PN"].items()},
                    LN={k: float(v) for k, v in par["membrane"]["LN"].items()},
                    phi_A=nrn.PHI_A, phi_KCa=nrn.PHI_KCA,
                    calcium={k: float(v) for k, v in nrn.CALCIUM.items()})
        data.update(g_KL=np.asarray(par["g_KL"], float), Ca0=np.asarray(y["ln"]["Ca"], float),
                    amplitude=np.asarray(par["stim"]["amplitude"], float),
                    envelope=np.asarray(stim.envelope(t, t), float))
    else:
        raise ValueError(f"no Brian2 export for a {builder!r} model")
    np.savez(path, meta=json.dumps(meta), **data)


def without_coupling(model):
    """The start state of ``model`` with every synaptic conductance 0: the neurons alone, same everything else."""
    y = model.state(np.float64)
    for kind in y["par"]["syn"]:
        y["par"]["syn"][kind]["g"] = np.zeros_like(y["par"]["syn"][kind]["g"])
    return y


def held_coupling(model):
    """``model`` with each synapse kind's summed open fraction ``sum_j C[i, j] O_j`` taken at the start of a
    step and held through its four RK stages (as Brian2's summed variables are), instead of recomputed
    at every stage. Returns ``(derivatives, post_step, y0)``; only for checking psst against Brian2 spike
    for spike, as the package's own model recomputes the coupling at each stage (exact RK4)."""
    import tensorflow as tf

    from ..networks import _synaptic

    syns = model.parts["synapses"]
    base, base_post = model.derivatives, model.post_step

    def summed(O, s):
        O_src = O[:s.sources.size]  # an event-driven group's state is [O of each source, s of each target]
        return tf.math.unsorted_segment_sum(tf.gather(O_src, s._col), s.post, s.n_post)

    def derivatives(y, t):
        inner = {k: v for k, v in y.items() if k != "held"}
        d = base(inner, t)
        I_now, _ = _synaptic(inner, syns, t)
        V, gE = y["V"], y["par"]["syn"]
        I_held = sum(gE[s.kind]["g"] * (V - gE[s.kind]["E"]) * y["held"][s.kind] for s in syns)
        C_m = y["par"]["membrane"]["C_m"] if "C_m" in y["par"].get("membrane", {}) else 1.0
        d["V"] = d["V"] + (I_now - I_held) / C_m
        d["held"] = {s.kind: None for s in syns}
        return d

    def post_step(t0, y0, t1, y1):
        out = base_post(t0, {k: v for k, v in y0.items() if k != "held"}, t1,
                        {k: v for k, v in y1.items() if k != "held"})
        out["held"] = {s.kind: summed(out["syn"][s.kind], s) for s in syns}
        return out

    y0 = model.state(np.float64)
    y0["held"] = {s.kind: np.zeros(s.n_post) for s in syns}
    return derivatives, post_step, y0


def spike_steps(t_fire_rec: np.ndarray, spikes_total: int, dt: float) -> np.ndarray:
    """Every spike as (neuron, step) from ``t_fire`` recorded every few steps (a spike is where it changed).

    Needs at most one spike per neuron between two records (true for records every 0.1 ms: a spike
    takes longer); checked against the spike counter ``spikes_total``."""
    tf_ = np.asarray(t_fire_rec)
    r, i = np.nonzero(tf_[1:] != tf_[:-1])
    steps = np.rint(tf_[1:][r, i] / dt).astype(int)
    if len(steps) != spikes_total:
        raise RuntimeError(f"{spikes_total} spikes counted but {len(steps)} seen in the records of t_fire: "
                           "record more often")
    order = np.lexsort((i, steps))
    return np.stack([i[order], steps[order]], 1)


def _compare(ours: np.ndarray, theirs: np.ndarray) -> Dict[str, object]:
    """How two spike lists (rows (neuron, step)) agree: common spikes and the first spike where they differ."""
    a = {tuple(x) for x in ours.tolist()}
    b = {tuple(x) for x in theirs.tolist()}
    diff = sorted(a ^ b, key=lambda x: x[1])
    return {"spikes": len(b), "spikes_psst": len(a), "spikes_in_common": len(a & b),
            "spike_mismatch": len(a ^ b), "first_difference_ms": diff[0][1] * 0.01 if diff else float("nan")}


def bench_brian2_networks(networks_: Sequence[str], duration_ms: float, python: str, repeats: int,
                          script: Optional[Path] = None, ei_size: int = 1000,
                          targets: Sequence[Tuple[str, int]] = BRIAN2_TARGETS) -> List[Row]:
    """psst against Brian2 on the book's networks: equality first, then speed.

    For each network (``"ei"``: chapter 4's E/I network of ``ei_size`` neurons; ``"locust"``: chapter 6's
    antennal lobe), exported from the package and run for ``duration_ms`` at dt 0.01 ms, RK4, float64,
    V recorded every 0.1 ms:

    1. *neurons alone* (synaptic conductances 0): psst and Brian2 (C++ standalone) must put every spike on
       the same step (row ``equal_neurons_alone``);
    2. *held coupling*: psst with the summed synaptic open fractions held through a step's RK stages, as
       Brian2 does, against each Brian2 target's run with synapses (rows ``equal_held_<target>``);
    3. *speed*: the package's own model (coupling recomputed at every stage) and each Brian2 target, first
       call (code generation or tracing, compilation and one run) and the median of ``repeats`` warm runs.

    Returns
    -------
    list of dict
        Rows with ``network``, ``variant``, ``first_s``, ``run_s`` (warm median), ``min_s``, ``max_s``,
        ``spikes`` and, for equality rows, ``spikes_in_common``, ``spike_mismatch``, ``first_difference_ms``.
    """
    from ..analysis import time_grid
    from ..networks import locust_antennal_lobe
    from ..solvers.tf_solver import Integrator

    script = Path(script) if script is not None else BRIAN2_NETWORKS_SCRIPT
    if not script.is_file():
        raise FileNotFoundError(f"the Brian2 script {script} is missing: it is part of the repository, not of the "
                                "installed package; run this from a clone of the repository")
    python = os.path.abspath(python)
    if not os.path.exists(python):
        raise FileNotFoundError(f"no Python at {python}; create the Brian2 environment with `make brian2-venv`")
    dt, every = 0.01, 10
    t = time_grid(duration_ms, dt)
    rows: List[Row] = []
    for name in networks_:
        model = ei_network(ei_size) if name == "ei" else locust_antennal_lobe(seed=0)
        n = int(model.state(np.float64)["V"].size)
        base = {"bench": "brian2_networks", "network": name, "size": n, "dtype": "float64",
                "duration_ms": duration_ms, "max_abs_diff": float("nan")}
        with tempfile.TemporaryDirectory() as tmp:
            exported = Path(tmp) / f"{name}.npz"
            export_network(model, duration_ms, exported, every, dt)

            def brian(target: str, threads: int, synapses: bool, reps: int) -> dict:
                out = Path(tmp) / f"{target}-{threads}-{synapses}.json"
                cmd = [python, str(script), str(exported), "--target", target, "--threads", str(threads),
                       "--repeats", str(reps), "--out", str(out)] + ([] if synapses else ["--no-synapses"])
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
                if proc.returncode != 0:
                    raise RuntimeError(f"the Brian2 run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
                res = json.loads(out.read_text())
                res["spike_list"] = np.stack([res["spike_neuron"], res["spike_step"]], 1).reshape(-1, 2)
                return res

            def psst_spikes(derivatives, post_step, y0) -> np.ndarray:
                integ = Integrator(derivatives, post_step=post_step, record=("V", "t_fire"), every=every)
                rec, final = integ(y0, t, return_final=True)
                return spike_steps(rec["t_fire"].numpy(), int(final["spikes"].numpy().sum()), dt)

            # 1. the neurons alone: same steps
            alone = psst_spikes(model.derivatives, model.post_step, without_coupling(model))
            b_alone = brian("cpp_standalone", 1, False, 1)
            rows.append({**base, "variant": "equal_neurons_alone", "first_s": float("nan"), "run_s": float("nan"),
                         "compile_s": float("nan"), "min_s": float("nan"), "max_s": float("nan"),
                         **_compare(alone, b_alone["spike_list"]),
                         "note": f"psst and Brian2 {b_alone['brian2']} C++ standalone, synaptic conductances 0"})
            # 2. held coupling against every target's run with synapses (which 3. times)
            held = psst_spikes(*held_coupling(model))
            # 3. the package's own model
            integ = Integrator(model.derivatives, post_step=model.post_step, record=("V",), every=every)
            y0 = model.state(np.float64)
            (rec, final), med, compile_s, spread = timed(lambda: integ(y0, t, return_final=True), repeats)
            own_spikes = int(final["spikes"].numpy().sum())
            rows.append({**base, "variant": "psst_xla", "first_s": med + compile_s, "run_s": med,
                         "compile_s": compile_s, "min_s": spread[0], "max_s": spread[1], "spikes": own_spikes,
                         "note": f"median of {repeats} warm runs; coupling recomputed at every RK stage"})
            for target, threads in targets:
                b = brian(target, threads, True, repeats)
                variant = f"brian2_{target}" + (f"_{threads}thread{'s' if threads > 1 else ''}"
                                                if target == "cpp_standalone" else "")
                warm = b["warm_s"]
                rows.append({**base, "variant": variant, "first_s": b["first_s"], "run_s": float(np.median(warm)),
                             "compile_s": b["first_s"] - float(np.median(warm)), "min_s": min(warm),
                             "max_s": max(warm), "spikes": len(b["spike_list"]),
                             "note": f"Brian2 {b['brian2']}; median of {len(warm)} warm runs"
                                     + ("; run time measured by the compiled program" if target == "cpp_standalone" else "")})
                rows.append({**base, "variant": f"equal_held_{variant[len('brian2_'):]}", "first_s": float("nan"),
                             "run_s": float("nan"), "compile_s": float("nan"), "min_s": float("nan"),
                             "max_s": float("nan"), **_compare(held, b["spike_list"]),
                             "note": "psst with the coupling held through each step's RK stages against this run"})
    return rows


def _network_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--networks", nargs="+", choices=["ei", "locust"], default=["ei", "locust"])
    p.add_argument("--duration-ms", type=float, default=500.0, help="simulated time of every run, ms")
    p.add_argument("--ei-size", type=int, default=1000, help="neurons of the E/I network (chapter 4: 1000)")
    p.add_argument("--brian2-python", default=".venv-brian2/bin/python",
                   help="a Python with Brian2 installed (make brian2-venv)")
    p.add_argument("--brian2-script", type=Path, default=BRIAN2_NETWORKS_SCRIPT)


@register("brian2-networks", help="chapter 4's E/I network and the locust model against Brian2 "
                                  "(equal spikes checked, then first call and warm time)",
          arguments=_network_arguments, quick={"duration_ms": 200.0, "ei_size": 200})
def run_brian2_networks(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``brian2-networks``."""
    yield bench_brian2_networks(args.networks, args.duration_ms, args.brian2_python, args.repeats,
                                args.brian2_script, args.ei_size)
