"""psst_helpers.distributed with real TensorFlow worker processes on 127.0.0.1.

Each scenario runs in its own client process (tests/distributed_client.py): psst_helpers connects a
process to one cluster (reconnecting would invalidate the tensors held on the first), and a separate
client is also how a crash of the client is tested. After every scenario no worker process may remain (checked by PID).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import psst_helpers as psst

CLIENT = [sys.executable, str(Path(__file__).with_name("distributed_client.py"))]


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().split()[2] != "Z"
    except OSError:
        return False


def _run(scenario: str, tmp_path: Path, timeout: float = 240) -> dict:
    out = tmp_path / f"{scenario}.json"
    proc = subprocess.run(CLIENT + [scenario, str(out)], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_sweep_and_partitioned_network_equal_single_process(tmp_path):
    res = _run("sweep_and_partition", tmp_path)
    # a port already in use is replaced by a free one
    assert res["taken"] in res["replaced"]
    assert f"127.0.0.1:{res['taken']}" not in res["addresses"]
    assert all(res["alive_inside"])
    # the sweep gathered on two workers equals the same jobs run in one process, bit for bit
    assert res["sweep_equal"] and res["sweep_spikes"] > 0
    # per-step spike exchange reproduces the single-process network (float64)
    assert res["partition_max_dv"] < 1e-9
    assert res["spikes_block"][1] > 0, "block 1 must fire through synapses from block 0 for the test to mean anything"
    assert not any(res["alive_after"]), f"workers left running: {res['pids']}"
    assert "already connected" in res["second_cluster"]


def test_killed_worker_is_reported_within_30_s(tmp_path):
    res = _run("killed_worker", tmp_path)
    assert res["raised"] is not None, "killing a worker mid-sweep raised nothing"
    assert res["seconds"] < 30
    assert res["task"] == 1 and "worker task 1" in res["raised"] and "killed by signal 9" in res["raised"]
    assert res["partial_ok"]
    assert not any(res["alive_after"]), "the other worker was not stopped"


@pytest.mark.parametrize("scenario", ["hold", "hold_in_thread"])
def test_killed_client_leaves_no_worker_behind(tmp_path, scenario):
    """Also when the cluster was started by a thread that has ended: the workers watch a pipe from the
    client process, which the kernel closes when the client dies."""
    out = tmp_path / "hold.json"
    child = subprocess.Popen(CLIENT + [scenario, str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not out.exists() or not out.read_text():
            assert child.poll() is None, "the client died before its cluster started"
            assert time.monotonic() < deadline, "the cluster did not start in 120 s"
            time.sleep(0.2)
        time.sleep(0.2)
        pids = json.loads(out.read_text())["pids"]
        assert all(_alive(p) for p in pids)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in pids if _alive(p)]
        for p in left:  # clean up before failing
            os.kill(p, signal.SIGKILL)
        assert not left, f"workers {left} outlived their killed client"
    finally:
        if child.poll() is None:
            child.kill()


def test_cluster_outlives_its_starting_thread_and_map_stops_when_it_raises(tmp_path):
    res = _run("lifetime_and_stopping", tmp_path, timeout=400)
    # started in a thread that has ended, the workers still serve
    assert all(res["alive_after_thread"]), f"the workers died with the thread that started them: {res}"
    assert res["map_after_thread"] == [0.0, 8.0, 16.0, 24.0]
    n = res["n_jobs"]
    # whatever map raises, no job starts afterwards (counted 3 s later), and the sweep was not run out
    assert "job 3 fails on purpose" in res["error_raised"]
    at_raise, later = res["error_started"]
    assert later == at_raise and at_raise <= 3 + 2, res["error_started"]
    assert res["interrupt_raised"]
    at_raise, later = res["interrupt_started"]
    assert later == at_raise < n, res["interrupt_started"]
    assert "worker task 1" in res["remote_raised"]
    at_raise, later = res["remote_started"]
    assert later == at_raise < n, res["remote_started"]
    assert not any(res["alive_after"]), f"workers left running: {res['pids']}"


def test_worker_exits_when_its_stdin_closes(tmp_path):
    """The worker command's --exit-at-eof, without TensorFlow's server being involved in the timing."""
    port = __import__("psst_helpers.distributed", fromlist=["free_port"]).free_port()
    proc = subprocess.Popen([sys.executable, "-m", "psst_helpers.distributed", "worker", "--hosts",
                             f"127.0.0.1:{port}", "--task", "0", "--threads", "1", "--exit-at-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        assert proc.poll() is None
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_cli_rejects_a_missing_task():
    proc = subprocess.run([sys.executable, "-m", "psst_helpers.distributed", "worker", "--hosts", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TF_CONFIG": ""})
    assert proc.returncode == 2 and "--task" in proc.stderr


@pytest.mark.parametrize("n_blocks", [1, 3])
def test_partition_in_one_process_equals_the_network(n_blocks):
    """No cluster: the blocks run one after the other on the local device."""
    import numpy as np

    from psst_helpers.networks import hh_network, simulate
    from psst_helpers.partition import run_partitioned, split_network
    from psst_helpers.stimuli import Constant

    sys.path.insert(0, str(Path(__file__).parent))
    from distributed_client import ach_network

    I, ach = ach_network(n=30)
    t = psst.time_grid(12.0, 0.01)  # the undriven neurons first fire at 6-12 ms
    rec = ["V", "spikes", "t_fire"]
    single = simulate(hh_network(I.size, Constant(I), [ach]), t, record=rec, every=5)
    part = run_partitioned(split_network(I, [ach], n_blocks), t, exchange_every=5, every=5, record=rec)
    if n_blocks == 1:  # nothing to exchange: exact
        assert np.abs(part["V"] - single["V"]).max() < 1e-9
    else:
        # Exchanging every 5 steps without a synaptic delay is an approximation: a block sees the others'
        # voltages up to 5 steps (0.05 ms) late, per synaptic hop. Tolerance: the same number of spikes per
        # neuron, none earlier and none more than 0.5 ms later (measured: at most 0.32 ms later, 27 spikes).
        np.testing.assert_array_equal(part["spikes"][-1], single["spikes"][-1])
        late = (part["t_fire"][-1] - single["t_fire"][-1])[single["spikes"][-1] > 0]
        assert late.min() > -1e-9 and late.max() <= 0.5, late
        assert late.max() > 0  # were it 0, the blocks would have exchanged every step, not every 5
    per_step = run_partitioned(split_network(I, [ach], n_blocks), t, exchange_every=1, every=5, record=["V"])
    assert np.abs(per_step["V"] - single["V"]).max() < 1e-9
    assert single["spikes"][-1][I == 0].sum() > 0


def _small_partitioned_run():
    """A 12-neuron network in two blocks on this process: a function that runs it, and its undisturbed result."""
    from psst_helpers.partition import run_partitioned, split_network

    sys.path.insert(0, str(Path(__file__).parent))
    from distributed_client import ach_network

    I, ach = ach_network(n=12)
    t = psst.time_grid(3.0, 0.01)

    def run():
        return run_partitioned(split_network(I, [ach], 2), t, exchange_every=10, record=["V"])

    return run, run()


def test_a_stretch_aborted_by_tensorflow_is_run_again_exactly(monkeypatch):
    """gRPC can deliver a request twice under load; TensorFlow then aborts that call (AbortedError)."""
    import numpy as np
    import tensorflow as tf

    from psst_helpers import distributed
    from psst_helpers.solvers.tf_solver import Integrator

    run, clean = _small_partitioned_run()
    calls, real_call = [], Integrator.__call__

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) in (3, 4):                          # the second stretch of the first block, twice
            raise tf.errors.AbortedError(None, None, "The same RecvTensor (GrpcWorker) request was received twice")
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(Integrator, "__call__", flaky)
    again = run()
    np.testing.assert_array_equal(again["V"], clean["V"])
    calls.clear()
    monkeypatch.setattr(distributed, "RETRIES", 1)        # one retry is not enough for two aborts in a row
    with pytest.raises(tf.errors.AbortedError, match="received twice"):
        run()


def test_tensorflows_clean_up_race_is_run_again_and_other_invalid_arguments_are_not(monkeypatch):
    """TensorFlow 2.21 with one client thread per device now and then fails to delete a helper function."""
    import numpy as np
    import tensorflow as tf

    from psst_helpers.solvers.tf_solver import Integrator

    run, clean = _small_partitioned_run()
    calls, real_call = [], Integrator.__call__
    message = {"text": "Tried to remove non-existent function 'while_while_body_1744'."}

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise tf.errors.InvalidArgumentError(None, None, message["text"])
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(Integrator, "__call__", flaky)
    again = run()
    np.testing.assert_array_equal(again["V"], clean["V"])
    calls.clear()
    message["text"] = "a real invalid argument"
    with pytest.raises(tf.errors.InvalidArgumentError, match="a real invalid argument"):
        run()


def test_chunked_exchange_is_exact_within_the_synaptic_delay_and_not_beyond():
    import numpy as np

    from psst_helpers.networks import hh_network, simulate
    from psst_helpers.partition import run_partitioned, split_network
    from psst_helpers.stimuli import Constant
    from psst_helpers.synapses import SynapseGroup

    sys.path.insert(0, str(Path(__file__).parent))
    from distributed_client import ach_network

    I, ach = ach_network(n=30)
    delayed = SynapseGroup("ach", pre=ach.pre, post=ach.post, n_neurons=30, params={"t_delay": 0.5})
    t = psst.time_grid(15.0, 0.01)
    single = simulate(hh_network(I.size, Constant(I), [delayed]), t)
    within = run_partitioned(split_network(I, [delayed], 2), t, exchange_every=40)   # 0.4 ms < 0.5 ms delay
    beyond = run_partitioned(split_network(I, [delayed], 2), t, exchange_every=100)  # 1 ms > 0.5 ms
    assert np.abs(within["V"] - single["V"]).max() < 1e-9
    assert np.abs(beyond["V"] - single["V"]).max() > 1.0  # late spikes change the run: an approximation
    # the same verdicts in spike times
    from psst_helpers.partition import spike_timing_error

    ref = psst.spike_times(single["V"], t)
    same = spike_timing_error(ref, psst.spike_times(within["V"], t))
    assert same["n_reference"] > 20 and same["first_difference_ms"] is None and same["max_shift_ms"] == 0.0
    late = spike_timing_error(ref, psst.spike_times(beyond["V"], t))
    assert late["first_difference_ms"] is not None and late["moved"] + late["missing"] + late["extra"] > 0


def test_spike_timing_error_pairs_spikes_within_the_window_closest_first():
    import numpy as np

    from psst_helpers.partition import spike_timing_error

    ref = [np.array([1.0, 10.0, 20.0]), np.array([5.0]), np.array([])]
    other = [np.array([1.0, 10.5, 20.0, 25.0]), np.array([8.0]), np.array([3.0])]
    e = spike_timing_error(ref, other, window=2.0)
    # neuron 0: 10 -> 10.5 moved, 25 extra; neuron 1: 5 -> 8 is beyond the window: one missing, one extra
    assert (e["n_reference"], e["n_other"], e["paired"], e["moved"]) == (4, 6, 3, 1)
    assert (e["missing"], e["extra"], e["neurons_differing"]) == (1, 3, 3)
    assert e["max_shift_ms"] == pytest.approx(0.5) and e["mean_shift_ms"] == pytest.approx(0.5 / 3)
    assert e["first_difference_ms"] == 3.0
    # closest pairs first: 1.9 pairs with 2.0 (0.1 ms), not with 1.0 (0.9 ms), which is left missing
    e = spike_timing_error([np.array([1.0, 2.0])], [np.array([1.9])], window=1.0)
    assert e["paired"] == 1 and e["max_shift_ms"] == pytest.approx(0.1) and e["missing"] == 1
    assert e["first_difference_ms"] == 1.0
    same = spike_timing_error(ref, [r.copy() for r in ref])
    assert same["moved"] == same["missing"] == same["extra"] == 0 and same["first_difference_ms"] is None
    with pytest.raises(psst.ParameterError, match="neurons"):
        spike_timing_error(ref, other[:2])
    with pytest.raises(psst.ParameterError, match="window"):
        spike_timing_error(ref, other, window=-1.0)


def test_partition_refuses_what_it_cannot_split():
    import numpy as np

    from psst_helpers.partition import run_partitioned, split_network
    from psst_helpers.synapses import SynapseGroup

    gaba = SynapseGroup("gaba", pre=[0], post=[1], n_neurons=2)
    with pytest.raises(ValueError, match="presynaptic voltage"):
        split_network([1.0, 2.0], [gaba], 2)
    with pytest.raises(ValueError, match="n_blocks"):
        split_network([1.0, 2.0], [], 3)
    blocks = split_network([1.0, 2.0], [], 2)
    with pytest.raises(ValueError, match="2 blocks, 1 devices"):
        run_partitioned(blocks, psst.time_grid(1.0, 0.01), devices=["/cpu:0"])


# --- one retry helper, a restart after stop(), every error a PSSTError ---------------------------------

def test_retry_on_cleanup_race_runs_again_only_for_the_race_and_aborts_it_is_told_about(monkeypatch):
    import tensorflow as tf

    from psst_helpers import distributed
    from psst_helpers.distributed import retry_on_cleanup_race

    race = tf.errors.InvalidArgumentError(None, None, "Tried to remove non-existent function 'f_12'.")
    aborted = tf.errors.AbortedError(None, None, "The same RecvTensor request was received twice")

    def failing(*errors):
        calls = []

        def fn():
            calls.append(1)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
            return len(calls)

        return fn, calls

    fn, calls = failing(race, race)
    assert retry_on_cleanup_race(fn) == 3                        # RETRIES = 2: two races are absorbed
    fn, calls = failing(race, race)
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-existent function"):
        retry_on_cleanup_race(fn, attempts=2)
    assert len(calls) == 2
    monkeypatch.setattr(distributed, "RETRIES", 0)               # the default is read at each call
    fn, calls = failing(race)
    with pytest.raises(tf.errors.InvalidArgumentError):
        retry_on_cleanup_race(fn)
    fn, calls = failing(tf.errors.InvalidArgumentError(None, None, "a real invalid argument"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="real"):
        retry_on_cleanup_race(fn, attempts=5)
    assert len(calls) == 1
    fn, calls = failing(aborted)
    with pytest.raises(tf.errors.AbortedError):                  # aborts only when asked (run_partitioned)
        retry_on_cleanup_race(fn, attempts=3)
    fn, calls = failing(aborted)
    assert retry_on_cleanup_race(fn, attempts=3, aborted=True) == 2
    with pytest.raises(psst.ParameterError, match="attempts"):
        retry_on_cleanup_race(lambda: 1, attempts=0)


def test_cluster_and_partition_mistakes_are_psst_errors_with_their_builtin_bases():
    from psst_helpers.distributed import LocalCluster, RemoteCluster
    from psst_helpers.partition import run_partitioned, split_network
    from psst_helpers.synapses import SynapseGroup

    for bad in (0, -1, 1.5, True):
        with pytest.raises(psst.ParameterError, match="n_workers"):
            LocalCluster(bad)                                    # refused before any process starts
    with pytest.raises(psst.ParameterError, match="start_timeout"):
        LocalCluster(2, start_timeout=float("nan"))
    remote = RemoteCluster(["127.0.0.1:1", "127.0.0.1:2"])
    with pytest.raises(psst.ParameterError, match="task 2 does not exist"):
        remote.device(2)
    with pytest.raises(psst.ParameterError, match="poll_s"):
        remote.map(abs, [1], poll_s=0)
    with pytest.raises(psst.ClusterError, match="no worker hosts"):
        RemoteCluster([])
    with pytest.raises(psst.ClusterError, match="never started"):
        LocalCluster(1).kill_worker(0)
    for bad in (0, 3, 1.0):
        with pytest.raises(psst.ParameterError, match="n_blocks"):
            split_network([1.0, 2.0], [], bad)
    with pytest.raises(psst.ConnectivityError, match="built for 3 neurons"):
        split_network([1.0, 2.0], [SynapseGroup("ach", pre=[0], post=[1], n_neurons=3)], 1)
    blocks = split_network([1.0, 2.0], [], 2)
    with pytest.raises(psst.ParameterError, match="exchange_every must be a positive integer"):
        run_partitioned(blocks, psst.time_grid(1.0, 0.01), exchange_every=0)
    with pytest.raises(ValueError):                              # the built-in base still catches them
        run_partitioned(blocks, psst.time_grid(1.0, 0.01), devices=["/cpu:0"])
    assert issubclass(psst.ClusterError, (psst.PSSTError, RuntimeError))
    assert issubclass(psst.WorkerDiedError, psst.ClusterError)


RESTART_CLIENT = r"""
import json, os, sys, threading, time
import numpy as np
import tensorflow as tf
import psst_helpers as psst
from psst_helpers.distributed import LocalCluster
from psst_helpers.networks import hh_population, integrator_for

T = psst.time_grid(20.0, 0.01)
JOBS = np.linspace(0.0, 15.0, 6 * 10).reshape(6, 10)
raced, armed = set(), set()  # the race is injected only into map's jobs

def job(I):
    m = hh_population(I)
    out = integrator_for(m, record="spikes", every=len(T) - 1)(m.state(), T)[-1]
    if armed and float(I[0]) == float(JOBS[2][0]) and not raced:  # TensorFlow's clean-up race, once, after the work
        raced.add(1)
        raise tf.errors.InvalidArgumentError(None, None, "Tried to remove non-existent function 'f_1'.")
    return out

def alive(pids):
    return [os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z" for p in pids]

res = {}
local = [job(I).numpy() for I in JOBS]
armed.add(1)
cluster = LocalCluster(2).start()
res["pids1"], address = cluster.pids, list(cluster.addresses)
first = cluster.map(job, JOBS)
res["first_equal"] = all(np.array_equal(a, b) for a, b in zip(local, first)) and bool(raced)
try:
    cluster.start()
except psst.ClusterError as exc:
    res["start_twice"] = str(exc)
cluster.stop()
res["alive_after_stop"] = alive(res["pids1"])
cluster.start()
res["pids2"], res["same_addresses"] = cluster.pids, cluster.addresses == address
res["alive_after_restart"] = alive(res["pids2"])
raced.clear()
second = cluster.map(job, JOBS)
res["second_equal"] = all(np.array_equal(a, b) for a, b in zip(local, second)) and bool(raced)
# a worker killed after the restart is still reported, with the finished results
many = np.tile(JOBS, (20, 1))
threading.Timer(2.0, cluster.kill_worker, args=(1,)).start()
try:
    cluster.map(job, many)
    res["died"] = None
except psst.WorkerDiedError as exc:
    res["died"] = str(exc)
    res["died_task"], res["died_is_psst"] = exc.task, isinstance(exc, psst.PSSTError)
    res["partial_ok"] = all(np.array_equal(exc.partial[i], local[i % len(JOBS)]) for i in exc.partial)
cluster.close()
res["alive_after_close"] = alive(res["pids1"] + res["pids2"])
try:
    cluster.start()
except psst.ClusterError as exc:
    res["start_closed"] = str(exc)
json.dump(res, open(sys.argv[1], "w"))
"""


def test_local_cluster_starts_again_after_stop_on_the_same_ports(tmp_path):
    """stop() then start(): new worker processes on the same ports, this client still connected to them; map
    gives the same results (a job hit by TensorFlow's clean-up race is run again) and still reports a dead worker."""
    out = tmp_path / "restart.json"
    proc = subprocess.run([sys.executable, "-c", RESTART_CLIENT, str(out)], capture_output=True, text=True,
                          timeout=300)
    res = json.loads(out.read_text()) if out.exists() else {}
    for pid in res.get("pids1", []) + res.get("pids2", []):  # clean up by PID before any assertion
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert res["first_equal"] and res["second_equal"]
    assert "already started" in res["start_twice"]
    assert not any(res["alive_after_stop"]) and all(res["alive_after_restart"])
    assert res["same_addresses"] and set(res["pids1"]).isdisjoint(res["pids2"])
    assert res["died"] is not None and "worker task 1" in res["died"], res["died"]
    assert res["died_task"] == 1 and res["died_is_psst"] and res["partial_ok"]
    assert not any(res["alive_after_close"]), "workers left running"
    assert "closed" in res["start_closed"]
