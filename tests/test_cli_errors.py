"""The command line turns every expected failure into one line naming the value or path, a non-zero exit
status and no traceback: bad arguments, an output path that is a file, a read-only folder, a full disk.

The read-only folder and the full disk are real: a read-only bind mount and a small tmpfs, made in a
private mount namespace (``unshare``), so nothing outside the test sees them.
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
RUN = [sys.executable, "-m", "psst_helpers", "run"]


def _cli(*args, timeout=300):
    return subprocess.run([*RUN, *map(str, args), "--no-progress"], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def _one_line_error(proc, code=2):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("args, names, why", [
    (["--dt", "0"], "--dt: 0", "never advances time"),
    (["--dt", "-0.01"], "--dt: -0.01", "never advances time"),
    (["--duration-ms", "inf"], "--duration-ms: inf", "must be finite"),
    (["--duration-ms", "nan"], "--duration-ms: nan", "is not a number"),
    (["--duration-ms", "0"], "--duration-ms: 0", "a run needs at least one step"),
    (["--duration-ms", "-5"], "--duration-ms: -5", "a run needs at least one step"),
    (["--chunk-ms", "0"], "--chunk-ms: 0", "each chunk must advance the simulation"),
    (["--chunk-ms", "-20"], "--chunk-ms: -20", "each chunk must advance the simulation"),
    (["--every", "0"], "--every: 0", "k must be at least 1"),
    (["--max-chunks", "0"], "--max-chunks: 0", "at least 1"),
    (["--seed", "-1"], "--seed: -1", "non-negative"),
    (["--threads", "0"], "--threads: 0", "a thread count is at least 1"),
    (["--dt", "0.03"], "--dt = 0.03", "not a whole number of steps"),
    (["--duration-ms", "10.005"], "--duration-ms = 10.005", "not a whole number of steps"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_numbers_are_refused_with_the_reason(tmp_path, args, names, why):
    proc = _cli("three_neuron", "--duration-ms", "10", "--out", tmp_path / "r", *args)
    line = _one_line_error(proc)
    assert names in line and why in line, line
    assert not (tmp_path / "r").exists()  # refused before anything is written


@pytest.mark.parametrize("n", ["0", "-3"])
def test_neuron_counts_below_one_are_refused(tmp_path, n):
    line = _one_line_error(_cli("hh_population", "--duration-ms", "10", "--n", n, "--out", tmp_path / "r"))
    assert f"--n: {n}" in line and "at least one neuron" in line


def test_a_run_with_one_thread_per_operation_completes(tmp_path):
    proc = _cli("hh_population", "--duration-ms", "2", "--n", "3", "--threads", "1", "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert "complete" in proc.stdout and (tmp_path / "r" / "V.npy").exists()


def test_an_output_path_that_is_a_file_or_under_one_is_named(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    line = _one_line_error(_cli("three_neuron", "--duration-ms", "10", "--out", f))
    assert str(f) in line and "is a file" in line
    line = _one_line_error(_cli("three_neuron", "--duration-ms", "10", "--out", f / "run"))
    assert f"{f / 'run'} lies under {f}, which is a file" in line
    assert f.read_text() == "mine"


def _namespace_script(script: str, timeout=600):
    """Run a bash script as root of a private user and mount namespace (its mounts vanish with it)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to make a private read-only mount or a small tmpfs")
    probe = subprocess.run(["unshare", "-r", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"user namespaces are not available here: {probe.stderr.decode().strip()}")
    return subprocess.run(["unshare", "-r", "-m", "bash", "-c", script], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def test_read_only_folder(tmp_path):
    """A finished run is read again (no write needed); an unfinished one and a new one get one line."""
    runs = tmp_path / "ro"
    base = ["three_neuron", "--duration-ms", "30", "--chunk-ms", "10"]
    assert _cli(*base, "--out", runs / "done").returncode == 0
    half = _cli(*base, "--out", runs / "half", "--max-chunks", "1")
    assert half.returncode == 0
    # what is on disk so far, not the size of the whole run: 10 of 30 ms, every 10th step recorded
    assert "stopped at 10 ms (run again to resume); V recorded at 101 of 301 times so far" in half.stdout
    meta_mtime = (runs / "done" / "meta.json").stat().st_mtime_ns
    cmd = " ".join([sys.executable, "-m", "psst_helpers", "run", *base, "--no-progress"])
    proc = _namespace_script(textwrap.dedent(f"""
        mount --bind {runs} {runs} && mount -o remount,bind,ro {runs} || exit 99
        touch {runs}/probe 2>/dev/null && exit 98
        {cmd} --out {runs}/done > {tmp_path}/done.out 2> {tmp_path}/done.err; echo $? > {tmp_path}/done.rc
        {cmd} --out {runs}/half > {tmp_path}/half.out 2> {tmp_path}/half.err; echo $? > {tmp_path}/half.rc
        {cmd} --out {runs}/new > {tmp_path}/new.out 2> {tmp_path}/new.err; echo $? > {tmp_path}/new.rc
        """))
    if proc.returncode in (98, 99):
        pytest.skip(f"could not make a read-only bind mount here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr

    def result(name):
        return (int((tmp_path / f"{name}.rc").read_text()), (tmp_path / f"{name}.out").read_text(),
                (tmp_path / f"{name}.err").read_text())

    rc, out, err = result("done")
    assert rc == 0 and "complete" in out and err == "", err
    assert (runs / "done" / "meta.json").stat().st_mtime_ns == meta_mtime
    for name, path in (("half", runs / "half" / "run.lock"), ("new", runs / "new")):
        rc, out, err = result(name)
        lines = err.strip().splitlines()
        assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
        assert f"cannot write {path}: Read-only file system" in lines[0] and "make the folder writable" in lines[0]
    assert (runs / "half" / "checkpoint.npz").exists()  # the unfinished run is untouched, resumable
    assert _cli(*base, "--out", runs / "half").returncode == 0


def test_full_disk_keeps_what_was_written_resumable(tmp_path):
    """A 4 MiB tmpfs, 2.6 MiB of it taken: the run stops with one line, and resumes once space is freed."""
    base = ["three_neuron", "--duration-ms", "400", "--chunk-ms", "20", "--every", "1", "--record", "V", "syn"]
    assert _cli(*base, "--out", tmp_path / "reference").returncode == 0  # 3 files of 0.96 MB each
    disk = tmp_path / "disk"
    disk.mkdir()
    cmd = " ".join([sys.executable, "-m", "psst_helpers", "run", *base, "--no-progress", "--out", f"{disk}/run"])
    keep = tmp_path / "kept"
    proc = _namespace_script(textwrap.dedent(f"""
        mount -t tmpfs -o size=4m tmpfs {disk} || exit 99
        dd if=/dev/zero of={disk}/filler bs=1k count=2600 status=none
        {cmd} > {tmp_path}/full.out 2> {tmp_path}/full.err; echo $? > {tmp_path}/full.rc
        {sys.executable} -c "from psst_helpers.recording import load_run; print(load_run('{disk}/run').steps_done)" \
            > {tmp_path}/steps 2>&1
        rm {disk}/filler
        {cmd} > {tmp_path}/resumed.out 2> {tmp_path}/resumed.err; echo $? > {tmp_path}/resumed.rc
        cp -r {disk}/run {keep}
        """))
    if proc.returncode == 99:
        pytest.skip(f"could not mount a tmpfs here: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr
    err = (tmp_path / "full.err").read_text()
    lines = err.strip().splitlines()
    assert int((tmp_path / "full.rc").read_text()) == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert f"cannot write {disk}/run/" in lines[0] and "No space left on device" in lines[0]
    assert "free some disk space" in lines[0] and "intact up to" in lines[0]
    steps = int((tmp_path / "steps").read_text())  # the part written is verified (load_run checks it)
    assert 0 < steps < 40000
    assert int((tmp_path / "resumed.rc").read_text()) == 0, (tmp_path / "resumed.err").read_text()
    assert "complete" in (tmp_path / "resumed.out").read_text()
    for name in ("V.npy", "syn.ach.npy", "syn.gaba.npy", "t.npy"):
        assert (keep / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
