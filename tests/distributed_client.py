"""Client programs for tests/test_distributed.py, each run as its own process (one TF cluster per process).

Usage: python tests/distributed_client.py SCENARIO OUT_JSON
Each scenario writes its findings to OUT_JSON; the test makes the assertions.
"""
from __future__ import annotations

import _thread
import json
import os
import socket
import sys
import threading
import time

import numpy as np

import psst_helpers as psst
from psst_helpers.distributed import ClusterError, LocalCluster, RemoteCluster, WorkerDiedError
from psst_helpers.networks import hh_network, hh_population, integrator_for, simulate
from psst_helpers.partition import run_partitioned, split_network
from psst_helpers.stimuli import Constant
from psst_helpers.synapses import SynapseGroup

T_SWEEP = psst.time_grid(60.0, 0.01)
CURRENTS = np.linspace(0.0, 15.0, 4 * 10).reshape(4, 10)  # 4 jobs of 10 neurons


def fi_job(I):
    """Spike counts of HH neurons driven by the currents I over T_SWEEP (one sweep job)."""
    m = hh_population(I)
    # one compiled loop for all jobs (the model structure is the same): see Cluster.map
    integ = integrator_for(m, record="spikes", every=len(T_SWEEP) - 1)
    return integ(m.state(), T_SWEEP)[-1]


def ach_network(n=40, seed=1):
    rng = np.random.default_rng(seed)
    C = (rng.random((n, n)) < 0.1) & ~np.eye(n, dtype=bool)
    I = np.where(np.arange(n) < n // 4, 10.0, 0.0)  # only block 0 is driven: block 1 fires through synapses
    return I, SynapseGroup.from_matrix("ach", C)


def alive(pids):
    return [os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z" for p in pids]


def sweep_and_partition(out):
    local = [fi_job(I).numpy() for I in CURRENTS]
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    I, ach = ach_network()
    t = psst.time_grid(12.0, 0.01)  # the undriven neurons first fire at 6-12 ms
    single = simulate(hh_network(I.size, Constant(I), [ach]), t, record=["V", "spikes"])
    with LocalCluster(2, ports=[taken]) as cluster:
        res = {"addresses": cluster.addresses, "replaced": cluster.replaced_ports, "taken": taken,
               "pids": cluster.pids, "alive_inside": alive(cluster.pids)}
        gathered = cluster.map(fi_job, CURRENTS)
        res["sweep_equal"] = all(np.array_equal(a, b) for a, b in zip(local, gathered))
        res["sweep_spikes"] = float(np.sum(gathered))
        t0 = time.perf_counter()
        part = run_partitioned(split_network(I, [ach], 2), t, exchange_every=1, devices=cluster.devices,
                               record=["V", "spikes"])
        res["partition_s"] = time.perf_counter() - t0
        res["partition_max_dv"] = float(np.abs(part["V"] - single["V"]).max())
        res["spikes_block"] = [float(single["spikes"][-1][:20].sum()), float(single["spikes"][-1][20:].sum())]
    res["alive_after"] = alive(res["pids"])
    try:
        LocalCluster(1).start()
        res["second_cluster"] = "started"
    except ClusterError as exc:
        res["second_cluster"] = str(exc)
    json.dump(res, open(out, "w"))


def killed_worker(out):
    cluster = LocalCluster(2).start()
    res = {"pids": cluster.pids}
    killed = {}

    def kill():
        killed["t"] = time.monotonic()
        cluster.kill_worker(1)

    threading.Timer(4.0, kill).start()
    jobs = np.linspace(0.0, 15.0, 60 * 10).reshape(60, 10)  # far more work than 4 s on any machine
    try:
        cluster.map(fi_job, jobs)
        res["raised"] = None
    except WorkerDiedError as exc:
        res.update(raised=str(exc), seconds=time.monotonic() - killed["t"], task=exc.task,
                   partial=sorted(exc.partial), partial_ok=all(
                       np.array_equal(exc.partial[i], fi_job(jobs[i]).numpy()) for i in exc.partial))
    res["alive_after"] = alive(res["pids"])
    json.dump(res, open(out, "w"))


def hold(out):
    """Start a cluster, report its PIDs, then wait to be killed."""
    cluster = LocalCluster(2).start()
    json.dump({"pids": cluster.pids}, open(out, "w"))
    time.sleep(600)


def _start_in_a_thread(n=2):
    """Start a LocalCluster in a thread that then ends (a GUI callback, a job runner, a notebook widget)."""
    box = {}
    starter = threading.Thread(target=lambda: box.update(cluster=LocalCluster(n).start()), name="starter")
    starter.start()
    starter.join()
    return box["cluster"]


def hold_in_thread(out):
    """As hold, but the cluster was started by a thread that has ended."""
    cluster = _start_in_a_thread()
    json.dump({"pids": cluster.pids}, open(out, "w"))
    time.sleep(600)


class Counter:
    """Counts the jobs map starts (fn runs in the client: the count is exact)."""

    def __init__(self, fail_at=None, seconds=0.3):
        self.started, self.lock, self.fail_at, self.seconds = [], threading.Lock(), fail_at, seconds

    def __call__(self, i):
        import tensorflow as tf

        with self.lock:
            self.started.append(int(i))
        if i == self.fail_at:
            raise ValueError(f"job {i} fails on purpose")
        time.sleep(self.seconds)
        return tf.reduce_sum(tf.ones(8, tf.float64)) * float(i)  # placed on the worker by map


def _after(counter, seconds=3.0):
    """Jobs started when map raised, and `seconds` later (equal when map really stopped)."""
    at_raise = len(counter.started)
    time.sleep(seconds)
    return at_raise, len(counter.started)


def lifetime_and_stopping(out):
    cluster = _start_in_a_thread()
    res = {"pids": cluster.pids}
    time.sleep(3.0)  # a per-thread parent-death signal would have killed the workers by now
    res["alive_after_thread"] = alive(cluster.pids)
    try:
        res["map_after_thread"] = [float(x) for x in cluster.map(Counter(seconds=0.0), range(4))]
    except Exception as exc:  # noqa: BLE001 - reported to the test
        res["map_after_thread"] = f"{type(exc).__name__}: {exc}"[:300]
    if not all(res["alive_after_thread"]):
        cluster.close()
        json.dump(res, open(out, "w"))
        return

    n_jobs = 60
    # a job's error: the remaining jobs are not run
    counter = Counter(fail_at=3)
    try:
        cluster.map(counter, range(n_jobs))
        res["error_raised"] = None
    except ValueError as exc:
        res["error_raised"] = str(exc)
    res["error_started"] = _after(counter)

    # Ctrl-C while map waits
    counter = Counter(seconds=0.5)
    threading.Timer(2.0, _thread.interrupt_main).start()
    try:
        cluster.map(counter, range(n_jobs))
        res["interrupt_raised"] = False
    except KeyboardInterrupt:
        res["interrupt_raised"] = True
    res["interrupt_started"] = _after(counter)

    # a RemoteCluster (same workers, this process is already connected to them) whose worker dies
    remote = RemoteCluster(cluster.addresses)
    counter = Counter(seconds=0.5)
    threading.Timer(2.0, lambda: cluster.kill_worker(1)).start()
    try:
        remote.map(counter, range(n_jobs))
        res["remote_raised"] = None
    except WorkerDiedError as exc:
        res["remote_raised"] = str(exc)
    res["remote_started"] = _after(counter)
    res["n_jobs"] = n_jobs
    cluster.close()
    res["alive_after"] = alive(res["pids"])
    json.dump(res, open(out, "w"))


if __name__ == "__main__":
    {"sweep_and_partition": sweep_and_partition, "killed_worker": killed_worker, "hold": hold,
     "hold_in_thread": hold_in_thread, "lifetime_and_stopping": lifetime_and_stopping}[sys.argv[1]](sys.argv[2])
