"""The book's networks in Brian2, read from a file exported by the package (the benchmark appendix's table).

Run by ``python -m psst_helpers.bench brian2-networks`` (:mod:`psst_helpers.bench.brian2`), which exports
a network from the package (connectivity, drives, start state, every parameter) to an ``.npz`` file and
starts this script with a Python that has Brian2 (it needs only Brian2 and NumPy)::

    .venv-brian2/bin/python benchmarks/brian2_networks.py net.npz --target cpp_standalone --threads 2 --out b.json

Two networks (``meta["model"]``): chapter 4's random E/I network (HH neurons, constant currents, ACh and
GABA_A synapses) and chapter 6's locust antennal lobe (PNs with the A-current, LNs with calcium and the
Ca-dependent K current, the odour input). Same equations as the package (book/models.md), written
without units (voltages in mV, time in ms through ``/ms``), RK4 at dt 0.01 ms, V recorded every 0.1 ms.
Spikes are upward crossings of 0 mV; ``lastspike`` is the start of the step in which V crossed, the
package's ``t_fire``; the ACh pulse's edges are decided with the package's inward margin
(``PULSE_EDGE_TOLERANCE_MS``), so a stage on an edge sees no transmitter in both simulators. One open fraction per presynaptic neuron (exact, see chapter 4), summed onto each
postsynaptic neuron by a summed variable: Brian2 computes it once per step, before the state update, so
it is held through the four RK stages. The odour input is the package's envelope at every step's start
(a ``TimedArray``), set once per step, as in the package.

Prints and writes JSON: the first call (code generation, compilation and a run) and the warm runs'
times, and every spike as (neuron, step).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

HH_GATES = """
u = v + 50 : 1
alpha_n = 0.1/exprel((15 - u)/5) : 1
beta_n = 0.5*exp((10 - u)/40) : 1
dn/dt = phi*(alpha_n*(1 - n) - beta_n*n)/ms : 1
"""
NA_GATES = """
alpha_m = 1.28/exprel((13 - u)/4) : 1
beta_m = 1.4/exprel((u - 40)/5) : 1
alpha_h = 0.128*exp((17 - u)/18) : 1
beta_h = 4/(exp((40 - u)/5) + 1) : 1
dm/dt = phi*(alpha_m*(1 - m) - beta_m*m)/ms : 1
dh/dt = phi*(alpha_h*(1 - h) - beta_h*h)/ms : 1
"""
ACH_SOURCE = """
since_ach = (t - lastspike)/ms - td_ach : 1
T_ach = A_ach*int(since_ach > tol_ach)*int(since_ach < tmax_ach - tol_ach) : 1
dO_ach/dt = (alpha_ach*(1 - O_ach)*T_ach - beta_ach*O_ach)/ms : 1
"""
GABA_SOURCE = """
T_gaba = 1/(1 + exp(-(v - V0_gaba)/sigma_gaba)) : 1
dO_gaba/dt = (alpha_gaba*(1 - O_gaba)*T_gaba - beta_gaba*O_gaba)/ms : 1
"""


def _syn_current(kinds):
    terms = [f"g_{k}*(v - E_{k})*s_{k}" for k in kinds]
    decl = "".join(f"g_{k} : 1 (constant)\nE_{k} : 1 (constant)\ns_{k} : 1\n" for k in kinds)
    return (" + ".join(terms) if terms else "0"), decl


def ei_equations(kinds) -> str:
    I_syn, decl = _syn_current(list(kinds))
    eqs = f"""
dv/dt = (I_ext - g_Na*m**3*h*(v - E_Na) - g_K*n**4*(v - E_K) - g_L*(v - E_L) - I_syn)/C_m/ms : 1
I_syn = {I_syn} : 1
I_ext : 1 (constant)
""" + HH_GATES + NA_GATES + decl
    return eqs + ("".join({"ach": ACH_SOURCE, "gaba": GABA_SOURCE}[k] for k in kinds))


def pn_equations(synapses: bool) -> str:
    I_syn, decl = _syn_current(["gaba"] if synapses else [])
    eqs = f"""
dv/dt = (I_ext - I_Na - I_K - I_L - I_A - I_KL - I_syn)/ms : 1
I_Na = g_Na*m**3*h*(v - E_Na) : 1
I_K = g_K*n**4*(v - E_K) : 1
I_L = g_L*(v - E_L) : 1
I_A = g_A*m_A**4*h_A*(v - E_A) : 1
I_KL = g_KL*(v - E_KL) : 1
I_syn = {I_syn} : 1
m_A_inf = 1/(1 + exp(-(v + 60)/8.5)) : 1
h_A_inf = 1/(1 + exp((v + 78)/6)) : 1
tau_m_A = 1/(exp((v + 35.82)/19.69) + exp(-(v + 79.69)/12.7) + 0.37)/phi_A : 1
v_low = int(v < -63)*v + int(v >= -63)*(-63) : 1
tau_h_A = int(v < -63)/(exp((v_low + 46.05)/5) + exp(-(v_low + 238.4)/37.45))/phi_A + int(v >= -63)*19/phi_A : 1
dm_A/dt = (m_A_inf - m_A)/tau_m_A/ms : 1
dh_A/dt = (h_A_inf - h_A)/tau_h_A/ms : 1
g_KL : 1 (constant)
I_ext : 1
odour_amp : 1 (constant)
""" + HH_GATES + NA_GATES + decl
    return eqs + (ACH_SOURCE if synapses else "")


def ln_equations(synapses: bool) -> str:
    I_syn, decl = _syn_current(["ach", "gaba"] if synapses else [])
    eqs = f"""
dv/dt = (I_ext - I_Ca - I_K - I_KCa - I_L - I_KL - I_syn)/ms : 1
I_Ca = g_Ca*mCa**2*hCa*(v - E_Ca) : 1
I_K = g_K*n**4*(v - E_K) : 1
I_KCa = g_KCa*mKCa*(v - E_KCa) : 1
I_L = g_L*(v - E_L) : 1
I_KL = g_KL*(v - E_KL) : 1
I_syn = {I_syn} : 1
mCa_inf = 1/(1 + exp(-(v + 20)/6.5)) : 1
hCa_inf = 1/(1 + exp((v + 25)/12)) : 1
tau_hCa = 0.3*exp((v - 40)/13) + 0.002*exp((60 - v)/29) : 1
dmCa/dt = (mCa_inf - mCa)/1.5/ms : 1
dhCa/dt = (hCa_inf - hCa)/tau_hCa/ms : 1
dmKCa/dt = phi_KCa*(0.01*Ca*(1 - mKCa) - 0.02*mKCa)/ms : 1
dCa/dt = (-A_Ca*I_Ca - (Ca - Ca0)/tau_Ca)/ms : 1
g_KL : 1 (constant)
I_ext : 1
odour_amp : 1 (constant)
""" + HH_GATES + decl
    return eqs + (GABA_SOURCE if synapses else "")


def _kinetics_namespace(meta: dict) -> dict:
    ns = {}
    for kind, p in meta["kinetics"].items():
        ns.update({f"alpha_{kind}": p["alpha"], f"beta_{kind}": p["beta"]})
        if kind == "ach":
            ns.update({"A_ach": p["A"], "td_ach": p["t_delay"], "tmax_ach": p["t_max"],
                       "tol_ach": meta.get("pulse_edge_tolerance_ms", 0.0)})
        else:
            ns.update({"V0_gaba": p["V0"], "sigma_gaba": p["sigma"]})
    return ns


def build(b2, data: dict, meta: dict, synapses: bool):
    """The network's objects (a list), its spike monitors with each group's first neuron index, and the V monitors."""
    from brian2 import ms

    dt = meta["dt_ms"] * ms
    every = meta["record_every"]
    objects, spike_mons = [], []
    build.v_monitors = []
    if meta["model"] == "ei":
        ns = {**meta["membrane"], "phi": meta["phi"], **_kinetics_namespace(meta)}
        G = b2.NeuronGroup(meta["n"], ei_equations(list(meta["kinetics"]) if synapses else []), method="rk4", threshold="v > 0", refractory="v > 0",
                           namespace=ns, dt=dt, name="ei")
        G.v = data["V0"]
        G.I_ext = data["I_ext"]
        groups = {"all": (G, 0)}
        objects.append(G)
    else:
        n_pn = meta["n_pn"]
        envelope = b2.TimedArray(data["envelope"], dt=dt, name="envelope")
        P = b2.NeuronGroup(meta["n_pn"], pn_equations(synapses), method="rk4", threshold="v > 0",
                           refractory="v > 0", dt=dt, name="pn",
                           namespace={**{k: v for k, v in meta["PN"].items() if k != "g_KL"}, "phi": meta["phi"], "envelope": envelope, "phi_A": meta["phi_A"], **_kinetics_namespace(meta)})
        L = b2.NeuronGroup(meta["n_ln"], ln_equations(synapses), method="rk4", threshold="v > 0",
                           refractory="v > 0", dt=dt, name="ln",
                           namespace={**{k: v for k, v in meta["LN"].items() if k != "g_KL"}, "phi": meta["phi"], "envelope": envelope, "phi_KCa": meta["phi_KCa"],
                                      **meta["calcium"], **_kinetics_namespace(meta)})
        for grp, sl in ((P, slice(0, n_pn)), (L, slice(n_pn, None))):
            grp.v = data["V0"][sl]
            grp.g_KL = data["g_KL"][sl]
            grp.odour_amp = data["amplitude"][sl]
            grp.I_ext = data["I_ext"][sl]
            # the input of each step's start, held through the step's RK stages (the package's post-step rule)
            objects.append(grp.run_regularly("I_ext = odour_amp*envelope(t)", when="start", name=f"{grp.name}_odour"))
        L.Ca = data["Ca0"]
        groups = {"pn": (P, 0), "ln": (L, n_pn)}
        objects += [P, L]
    if synapses:
        for kind in meta["kinetics"]:
            pre, post = data[f"{kind}_pre"], data[f"{kind}_post"]
            for pname, (pg, p0) in groups.items():
                for qname, (qg, q0) in groups.items():
                    sel = (pre >= p0) & (pre < p0 + len(pg)) & (post >= q0) & (post < q0 + len(qg))
                    if not sel.any():
                        continue
                    S = b2.Synapses(pg, qg, f"s_{kind}_post = O_{kind}_pre : 1 (summed)", dt=dt,
                                    name=f"{kind}_{pname}_{qname}")
                    S.connect(i=(pre[sel] - p0).astype(int), j=(post[sel] - q0).astype(int))
                    objects.append(S)
            g, E = data[f"{kind}_g"], data[f"{kind}_E"]
            for gname, (grp, g0) in groups.items():
                if f"g_{kind}" in grp.variables:
                    setattr(grp, f"g_{kind}", g[g0:g0 + len(grp)])
                    setattr(grp, f"E_{kind}", E[g0:g0 + len(grp)])
    for gname, (grp, g0) in groups.items():
        sm = b2.SpikeMonitor(grp, name=f"spikes_{gname}")
        vm = b2.StateMonitor(grp, "v", record=True, dt=every * dt, name=f"v_{gname}")
        objects += [sm, vm]
        spike_mons.append((sm, g0))
        build.v_monitors.append(vm)
    return objects, spike_mons


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("network", help="the .npz file exported by psst_helpers.bench.brian2.export_network")
    p.add_argument("--target", choices=["cpp_standalone", "cython"], required=True)
    p.add_argument("--threads", type=int, default=1, help="OpenMP threads of the C++ standalone target")
    p.add_argument("--repeats", type=int, default=3, help="warm runs after the first")
    p.add_argument("--no-synapses", action="store_true", help="the neurons alone")
    p.add_argument("--save-v", action="store_true", help="also write the recorded V (small networks)")
    p.add_argument("--out", required=True)
    a = p.parse_args()

    with np.load(a.network) as f:
        data = {k: f[k] for k in f.files}
    meta = json.loads(str(data.pop("meta")))
    import brian2 as b2
    from brian2 import ms

    b2.BrianLogger.suppress_name("unused_brian_object")
    b2.BrianLogger.suppress_name("openmp")  # "OpenMP code is not yet well tested": its spikes are checked here
    b2.prefs.codegen.loop_invariant_optimisations = True
    duration = meta["duration_ms"] * ms
    work = tempfile.mkdtemp(prefix="brian2-")
    warm = []
    if a.target == "cpp_standalone":
        b2.set_device("cpp_standalone", build_on_run=False, directory=os.path.join(work, "standalone"))
        b2.prefs.devices.cpp_standalone.openmp_threads = a.threads
        start = time.perf_counter()
        objects, mons = build(b2, data, meta, not a.no_synapses)
        net = b2.Network(objects)
        net.run(duration)
        b2.device.build(run=True, compile=True, with_output=False)
        first_s = time.perf_counter() - start
        warm.append(float(b2.device._last_run_time))
        spikes = [(np.asarray(sm.i) + g0, np.asarray(sm.t / (meta["dt_ms"] * ms))) for sm, g0 in mons]
        for _ in range(a.repeats - 1):
            b2.device.run(with_output=False)
            warm.append(float(b2.device._last_run_time))
    else:
        # a fresh cache: the first call includes Cython's compilation, as it would on a reader's first run
        b2.prefs.codegen.target = "cython"
        b2.prefs.codegen.runtime.cython.cache_dir = os.path.join(work, "cython")
        start = time.perf_counter()
        objects, mons = build(b2, data, meta, not a.no_synapses)
        net = b2.Network(objects)
        net.store("start")
        net.run(duration)
        first_s = time.perf_counter() - start
        spikes = [(np.asarray(sm.i) + g0, np.asarray(sm.t / (meta["dt_ms"] * ms))) for sm, g0 in mons]
        for _ in range(a.repeats):
            net.restore("start")
            t0 = time.perf_counter()
            net.run(duration)
            warm.append(time.perf_counter() - t0)
    neuron = np.concatenate([s[0] for s in spikes]).astype(int)
    step = np.rint(np.concatenate([s[1] for s in spikes])).astype(int)
    order = np.lexsort((neuron, step))
    out = {"target": a.target, "threads": a.threads if a.target == "cpp_standalone" else 1,
           "synapses": not a.no_synapses, "first_s": first_s, "warm_s": warm, "brian2": b2.__version__,
           "spike_neuron": neuron[order].tolist(), "spike_step": step[order].tolist()}
    if a.save_v:
        out["v"] = np.concatenate([np.asarray(vm.v) for vm in build.v_monitors], 0).tolist()
    with open(a.out, "w") as fh:
        json.dump(out, fh)
    print(f"brian2 {a.target} threads={out['threads']} synapses={out['synapses']}: first {first_s:.2f} s, "
          f"warm {np.median(warm):.3f} s, {len(neuron)} spikes", flush=True)


if __name__ == "__main__":
    main()
