"""Long runs: chunked equals single, resume after kill -9 is bit-for-bit, checkpoints, refusals, metadata."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import psst_helpers as psst
from psst_helpers import networks
from psst_helpers.recording import CheckpointError, OutputExistsError, load_run, run

pytest.importorskip("tensorflow")

CLI = [sys.executable, "-m", "psst_helpers", "run", "three_neuron", "--duration-ms", "400", "--chunk-ms", "20",
       "--record", "V", "syn", "--no-progress"]


def _cli(out, *extra, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(CLI + ["--out", str(out), *extra], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    proc = _cli(out)
    assert proc.returncode == 0, proc.stderr
    return load_run(out)


def test_chunked_run_equals_one_compiled_run(tmp_path):
    model = networks.three_neuron_network()
    rec = run(model, 150.0, tmp_path / "r", record=("V", "syn"), every=10, chunk_ms=20.0, progress=False)
    single = networks.simulate(model, psst.time_grid(150.0, 0.01), record=("V", "syn"), every=10)
    assert rec.complete and rec.variables == ["V", "syn.ach", "syn.gaba"]
    np.testing.assert_array_equal(rec["V"], single["V"])  # same arithmetic, chunk boundaries invisible
    np.testing.assert_array_equal(rec["syn.gaba"], single["syn"]["gaba"][:, :])
    np.testing.assert_array_equal(rec.t, psst.time_grid(150.0, 0.01)[::10])


def test_recorded_sizes_follow_every_not_the_state_history(tmp_path):
    model = networks.three_neuron_network()
    rec = run(model, 100.0, tmp_path / "r", record=("V",), every=25, chunk_ms=10.0, progress=False)
    assert rec["V"].shape == (100.0 / 0.01 / 25 + 1, 3)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "V.npy", "arrays.npz", "checkpoint.npz", "meta.json", "t.npy"]
    assert (tmp_path / "r" / "V.npy").stat().st_size < 401 * 3 * 8 + 200  # nothing but the recorded rows


def test_resume_after_kill_9_is_bit_for_bit(tmp_path, reference_run):
    out = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen(CLI + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ck = out / "checkpoint.npz"
    deadline = time.time() + 300
    try:
        # wait until some chunks are on disk but the run is not finished, then kill -9
        while time.time() < deadline:
            if ck.exists():
                try:
                    done = load_run(out).steps_done
                except Exception:  # noqa: BLE001 - files appear while we look
                    done = 0
                if done >= 4000:
                    break
            if child.poll() is not None:
                pytest.fail("the run finished before it could be killed: " + child.stderr.read().decode()[-500:])
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    killed_at = load_run(out).steps_done
    assert 0 < killed_at < 40000
    proc = _cli(out)  # the same command again resumes
    assert proc.returncode == 0, proc.stderr
    resumed = load_run(out)
    assert resumed.complete
    for name in reference_run.variables:
        a, b = np.asarray(resumed[name]), np.asarray(reference_run[name])
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert (out / "V.npy").read_bytes() == (Path(reference_run.path) / "V.npy").read_bytes()


def test_truncated_checkpoint_is_refused(tmp_path):
    model = networks.three_neuron_network()
    out = tmp_path / "r"
    run(model, 40.0, out, chunk_ms=10.0, max_chunks=2, progress=False)
    ck = out / "checkpoint.npz"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        run(model, 40.0, out, chunk_ms=10.0, progress=False)
    rec = run(model, 40.0, out, chunk_ms=10.0, overwrite=True, progress=False)  # explicit overwrite starts anew
    assert rec.complete


def test_checkpoint_of_another_run_is_refused(tmp_path):
    model = networks.three_neuron_network()
    a, b = tmp_path / "a", tmp_path / "b"
    run(model, 40.0, a, chunk_ms=10.0, max_chunks=1, progress=False)
    run(model, 40.0, b, dt=0.005, chunk_ms=10.0, max_chunks=1, progress=False)
    (a / "checkpoint.npz").write_bytes((b / "checkpoint.npz").read_bytes())
    with pytest.raises(CheckpointError, match="different run"):
        run(model, 40.0, a, chunk_ms=10.0, progress=False)


def test_existing_output_is_never_silently_overwritten(tmp_path):
    model = networks.three_neuron_network()
    out = tmp_path / "r"
    run(model, 20.0, out, chunk_ms=10.0, progress=False)
    with pytest.raises(OutputExistsError, match="differs in dt"):
        run(model, 20.0, out, dt=0.005, chunk_ms=10.0, progress=False)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a psst run folder"):
        run(model, 20.0, tmp_path / "other", progress=False)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    rec = run(model, 20.0, out, dt=0.005, chunk_ms=10.0, overwrite=True, progress=False)
    assert rec.meta["dt"] == 0.005 and rec.complete
    proc = _cli(out)  # the command line refuses too, with a readable message and exit code 2
    assert proc.returncode == 2 and "overwrite" in proc.stderr


def test_metadata_round_trip(tmp_path):
    model = networks.locust_antennal_lobe(seed=5)
    rec = run(model, 5.0, tmp_path / "loc", record=("V", "ln"), every=5, chunk_ms=2.5, progress=False)
    meta = json.loads((tmp_path / "loc" / "meta.json").read_text())
    assert meta["model"] == "locust_antennal_lobe" and meta["seed"] == 5 and meta["dt"] == 0.01
    assert meta["record"] == ["V", "ln"] and meta["every"] == 5 and meta["dtype"] == "float64"
    assert meta["versions"]["psst_helpers"] == psst.__version__
    assert set(rec.variables) == {"V", "ln.Ca", "ln.hCa", "ln.mCa", "ln.mKCa", "ln.n"}
    arrays = rec.arrays()
    np.testing.assert_array_equal(arrays["C_gaba"], model.arrays["C_gaba"])
    np.testing.assert_array_equal(arrays["stimulated"], model.arrays["stimulated"])
    assert rec["ln.Ca"].shape == (101, 30)
