"""Long runs: chunked equals single, resume after kill -9 is bit-for-bit, checkpoints, refusals, metadata,
damaged data found and recomputed, one writer per folder, crash-safe write order."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import psst_helpers as psst
from psst_helpers import networks
from psst_helpers import recording
from psst_helpers._tree import flatten
from psst_helpers.recording import (CheckpointError, DamagedRunError, OutputExistsError, RunLockedError, RunNotice,
                                    load_run, run)

import tensorflow  # noqa: F401,E402  a requirement: without it this file fails, it does not skip

CLI = [sys.executable, "-m", "psst_helpers", "run", "three_neuron", "--duration-ms", "400", "--chunk-ms", "20",
       "--record", "V", "syn", "--no-progress"]


def _cli(out, *extra, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(CLI + ["--out", str(out), *extra], capture_output=True, text=True, env=env, timeout=timeout)


def _same_files(a, b, names=("V.npy", "syn.ach.npy", "syn.gaba.npy", "t.npy")):
    return {n: (Path(a) / n).read_bytes() == (Path(b) / n).read_bytes() for n in names}


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
        "V.npy", "arrays.npz", "checkpoint.npz", "chunk_states.npy", "meta.json", "t.npy"]  # no lock, no temp file
    assert (tmp_path / "r" / "V.npy").stat().st_size < 401 * 3 * 8 + 200  # nothing but the recorded rows
    # one full state per chunk boundary (11 of them), whatever the dtypes of the state's entries
    state_bytes = sum(np.asarray(x).nbytes for x in flatten(model.state())[0])
    assert np.load(tmp_path / "r" / "chunk_states.npy").shape == (11, state_bytes)


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
                    done = load_run(out).steps_done  # verified against the checksums while the run writes
                except (OSError, ValueError):  # files appear while we look
                    done = 0
                if done >= 4000:
                    break
            if child.poll() is not None:
                pytest.fail("the run finished before it could be killed: " + child.stderr.read().decode()[-500:])
            time.sleep(0.05)
        # meanwhile a second writer of the same folder is refused, naming the one that writes
        with pytest.raises(RunLockedError, match=f"process {child.pid}"):
            run(networks.three_neuron_network(), 400.0, out, record=("V", "syn"), chunk_ms=20.0, progress=False)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    killed_at = load_run(out).steps_done
    assert 0 < killed_at < 40000
    assert (out / "run.lock").read_text().split()[0] == str(child.pid)  # left behind by the killed run
    proc = _cli(out)  # the same command again resumes, taking over the dead run's lock
    assert proc.returncode == 0, proc.stderr
    assert f"left by process {child.pid}" in proc.stderr and "no longer runs" in proc.stderr
    assert not (out / "run.lock").exists() and not list(out.glob(".*.tmp"))
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


# -- damaged data: found before it is trusted, recomputed from the last intact chunk ---------------

def _damaged_copy(reference_run, tmp_path, name):
    out = tmp_path / name
    shutil.copytree(reference_run.path, out)
    return out


def test_truncated_npy_is_refused_by_load_run_and_recomputed_by_the_same_command(tmp_path, reference_run):
    out = _damaged_copy(reference_run, tmp_path, "truncated")
    subprocess.run(["truncate", "-s", "50000", str(out / "V.npy")], check=True)  # V: 4001 rows of 24 bytes
    # rows 2001-2200 (chunk 10, 200-220 ms) are the first cut; before, a resume said "complete" with zero rows
    with pytest.raises(DamagedRunError, match=r"V\.npy is truncated.*chunk 10, 200-220 ms") as err:
        load_run(out)
    assert err.value.chunk == 10 and err.value.file == out / "V.npy"
    proc = _cli(out)
    assert proc.returncode == 0, proc.stderr
    assert "V.npy is truncated" in proc.stderr and "recomputing from 200 ms" in proc.stderr
    assert "complete" in proc.stdout
    assert all(_same_files(out, reference_run.path).values())
    load_run(out)  # verifies


def test_deleted_npy_in_a_complete_run_is_found_and_recomputed(tmp_path, reference_run):
    out = _damaged_copy(reference_run, tmp_path, "deleted")
    (out / "syn.gaba.npy").unlink()
    with pytest.raises(DamagedRunError, match=r"syn\.gaba\.npy is missing"):
        load_run(out)
    with pytest.warns(RunNotice, match=r"syn\.gaba\.npy is missing: recomputing from 0 ms"):
        rec = run(networks.three_neuron_network(), 400.0, out, record=("V", "syn"), chunk_ms=20.0, progress=False)
    assert rec.complete and all(_same_files(out, reference_run.path).values())


def test_a_changed_byte_and_a_damaged_chunk_state_restart_from_the_last_intact_boundary(tmp_path, reference_run):
    out = _damaged_copy(reference_run, tmp_path, "flipped")
    meta = json.loads((out / "meta.json").read_text())
    with open(out / "V.npy", "r+b") as fh:  # one bit of row 3105 (chunk 15, 300-320 ms), size unchanged
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_2_0(fh)
        fh.seek(fh.tell() + 3105 * 24)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(DamagedRunError, match=r"V\.npy has rows 3001-3200 that do not match their checksum \(chunk 15, 300-320 ms\)"):
        load_run(out)
    # the saved state at 300 ms is damaged too: the run goes back to the boundary before, 280 ms
    with open(out / "chunk_states.npy", "r+b") as fh:
        np.lib.format.read_magic(fh)
        np.lib.format.read_array_header_2_0(fh)
        fh.seek(fh.tell() + 15 * meta["state_bytes"] + 7)
        fh.write(b"\xff")
    with pytest.warns(RunNotice, match="recomputing from 280 ms"):
        run(networks.three_neuron_network(), 400.0, out, record=("V", "syn"), chunk_ms=20.0, progress=False)
    assert all(_same_files(out, reference_run.path).values())
    assert (out / "chunk_states.npy").read_bytes() == (Path(reference_run.path) / "chunk_states.npy").read_bytes()


def test_deleted_times_and_arrays_are_named_and_rewritten(tmp_path, reference_run):
    out = _damaged_copy(reference_run, tmp_path, "fixed")
    (out / "t.npy").unlink()
    (out / "arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(DamagedRunError, match=r"t\.npy is missing"):
        load_run(out)
    with pytest.warns(RunNotice, match="rewritten"):
        run(networks.three_neuron_network(), 400.0, out, record=("V", "syn"), chunk_ms=20.0, progress=False)
    assert all(_same_files(out, reference_run.path, ("t.npy", "arrays.npz")).values())
    load_run(out)


def test_temporary_files_of_a_killed_writer_are_removed_and_others_kept(tmp_path, reference_run):
    # kill -9 during a checkpoint's write leaves its temporary file; the run that resumes (holding the lock) removes it
    out = tmp_path / "temporaries"
    args = dict(record=("V", "syn"), chunk_ms=20.0, progress=False)
    assert not run(networks.three_neuron_network(), 400.0, out, max_chunks=5, **args).complete
    stale = [out / ".checkpoint.npz.a1b2c3.tmp", out / ".meta.json.x9y8z7.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    foreign = out / ".notes.txt.tmp"  # not a file a run writes: left alone
    foreign.write_bytes(b"mine")
    rec = run(networks.three_neuron_network(), 400.0, out, **args)
    assert rec.complete and not any(p.exists() for p in stale) and foreign.read_bytes() == b"mine"
    assert all(_same_files(out, reference_run.path).values())


def test_another_package_version_is_refused_and_other_libraries_are_stated(tmp_path, monkeypatch):
    model = networks.three_neuron_network()
    out = tmp_path / "r"
    run(model, 20.0, out, chunk_ms=10.0, max_chunks=1, progress=False)
    monkeypatch.setattr(recording.folder, "__version__", "99.0")
    with pytest.raises(OutputExistsError, match=rf"written by psst_helpers {psst.__version__} and this is 99\.0"):
        run(model, 20.0, out, chunk_ms=10.0, progress=False)
    monkeypatch.undo()
    real = recording.folder.versions()
    monkeypatch.setattr(recording.folder, "versions", lambda: {**real, "tensorflow": "0.0-other"})
    with pytest.warns(RunNotice, match=r"other software .*tensorflow .* -> 0\.0-other"):
        rec = run(model, 20.0, out, chunk_ms=10.0, progress=False)
    assert rec.complete and rec.meta["resumed_with"][0]["tensorflow"] == "0.0-other"
    assert rec.meta["resumed_with"][0]["step"] == 1000


def test_data_is_on_disk_before_the_checkpoint_that_covers_it(tmp_path, monkeypatch):
    """The order of fsync and rename calls of a real run (Linux: file names from /proc/self/fd)."""
    if not Path("/proc/self/fd").exists():
        pytest.skip("needs /proc/self/fd to name the files being flushed")
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        return real_fsync(fd)

    def replace(src, dst):
        calls.append(("replace", Path(src).name, Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "r"
    run(networks.three_neuron_network(), 30.0, out, record=("V", "syn"), chunk_ms=10.0, progress=False)
    monkeypatch.undo()
    renames = [i for i, c in enumerate(calls) if c[0] == "replace" and c[2] == "checkpoint.npz"]
    assert len(renames) == 3  # one checkpoint per chunk
    previous = 0
    for i in renames:
        flushed = {c[1] for c in calls[previous:i] if c[0] == "fsync"}
        # this chunk's rows of every file and its end state are flushed before the checkpoint replaces the old one
        assert {"V.npy", "syn.ach.npy", "syn.gaba.npy", "chunk_states.npy"} <= flushed, flushed
        assert calls[i + 1] == ("fsync", "r"), "the folder is not flushed after the rename"
        previous = i + 1
    temps = [c[1] for c in calls if c[0] == "replace"]
    assert len(set(temps)) == len(temps) and all(t.startswith(".") and t.endswith(".tmp") for t in temps)


def test_read_only_meta_is_not_rewritten_when_nothing_changed(tmp_path):
    model = networks.three_neuron_network()
    out = tmp_path / "r"
    run(model, 20.0, out, chunk_ms=10.0, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    time.sleep(0.05)
    rec = run(model, 20.0, out, chunk_ms=10.0, progress=False)  # finished: verified, nothing written
    assert rec.complete and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


# -- a run folder is bound to one model: its structure (a reader's own parts included) and its start ---------

from reader_parts import Sine  # noqa: E402


def test_a_run_is_not_resumed_with_another_model_of_a_readers_own_parts(tmp_path):
    # 2 chunks at 5 Hz on disk, then the same call at 80 Hz: refused, naming what differs (it used to finish the
    # run, half one model and half the other, "complete")
    args = dict(record=("V",), every=10, chunk_ms=10.0, progress=False)
    out = tmp_path / "sine"
    assert not run(networks.hh_network(2, Sine(2, 5.0)), 40.0, out, max_chunks=2, **args).complete
    with pytest.raises(OutputExistsError, match=r"stimulus\.frequency: 5\.0 -> 80\.0") as err:
        run(networks.hh_network(2, Sine(2, 80.0)), 40.0, out, **args)
    # another start state is another run too
    with pytest.raises(OutputExistsError, match="start state"):
        run(networks.hh_network(2, Sine(2, 5.0), V0=-60.0), 40.0, out, **args)
    assert load_run(out).steps_done == 2000  # nothing was written
    rec = run(networks.hh_network(2, Sine(2, 5.0)), 40.0, out, **args)  # the same model resumes
    whole = run(networks.hh_network(2, Sine(2, 5.0)), 40.0, tmp_path / "whole", **args)
    assert rec.complete and (out / "V.npy").read_bytes() == (whole.path / "V.npy").read_bytes()
    assert rec.meta["structure"]["stimulus"]["frequency"] == 5.0  # stored, readable


def test_a_model_without_parts_is_bound_to_its_start_state(tmp_path):
    model = networks.three_neuron_network()
    bare = networks.Model("bare", model.initial_state, model.derivatives, model.post_step, model.params, model.arrays)
    out = tmp_path / "bare"
    run(bare, 20.0, out, chunk_ms=10.0, max_chunks=1, progress=False)
    other = {**bare.initial_state, "V": bare.initial_state["V"] + 1.0}
    with pytest.raises(OutputExistsError, match="start state"):
        run(networks.Model("bare", other, bare.derivatives, bare.post_step, bare.params, bare.arrays), 20.0, out,
            chunk_ms=10.0, progress=False)
    assert run(bare, 20.0, out, chunk_ms=10.0, progress=False).complete


def test_runs_and_resumes_share_one_compiled_loop(tmp_path):
    # the runner uses simulate()'s compiled loop for the model: a resume or a second run in this process does not
    # trace it again (it used to build and compile an Integrator of its own on every call)
    networks.clear_compiled()
    args = dict(record=("V", "syn"), every=10, chunk_ms=10.0, progress=False)
    run(networks.three_neuron_network(), 30.0, tmp_path / "a", max_chunks=1, **args)
    integ = networks.integrator_for(networks.three_neuron_network(), method="rk4", record=("V", "syn"), every=10)
    assert integ.traces == 1
    run(networks.three_neuron_network(), 30.0, tmp_path / "a", **args)  # resumed
    run(networks.three_neuron_network(), 30.0, tmp_path / "b", **args)  # another folder, a new model object
    assert integ.traces == 1
