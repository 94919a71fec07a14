"""The chapters' first cell, as Colab or Kaggle would run it, in a fresh virtual environment.

The environment starts with only TensorFlow, NumPy and Matplotlib (what Colab and Kaggle ship).
The install cell is the template of tools/notebook_header.py (the one every chapter carries, checked
by ``notebook_header.py --check``), unchanged except for where pip finds the package: the pinned
release on GitHub (``git+https://github.com/...@v<version>``) becomes this checkout (``file://...``),
the same kind of pip requirement without the network. Then:

- with no psst_helpers, the cell installs it, and a second run does nothing;
- with an older psst_helpers (the stale copy a notebook server keeps between sessions), the cell
  replaces it with this version and leaves the rest of the environment alone;
- the installed package works, from the fresh environment.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from notebook_header import install_source, package_version, release_tag  # noqa: E402

CHECK = """
import numpy as np
import psst_helpers as psst
from psst_helpers import networks
t = psst.time_grid(50.0, 0.01)
V = networks.simulate(networks.single_neuron(5.0), t)["V"]
print(len(psst.spike_times(V, t)[0]), psst.__version__, psst.__file__)
"""

NO_PIP = "import subprocess\nsubprocess.run = lambda *a, **k: (_ for _ in ()).throw(AssertionError('pip was called'))\n"
VERSION = "import importlib.metadata; print(importlib.metadata.version('psst_helpers'))"


def _older_copy(where: Path) -> Path:
    """This checkout's package, labelled one minor version older."""
    shutil.copytree(ROOT / "psst_helpers", where / "psst_helpers", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, where / name)
    major, minor, _ = map(int, package_version().split("."))
    older = f"{major}.{minor - 1}.0" if minor else f"{major - 1}.9.0"
    init = where / "psst_helpers" / "__init__.py"
    init.write_text(re.sub(r'^__version__ = "[^"]+"', f'__version__ = "{older}"', init.read_text(), flags=re.M))
    return where


def test_install_cell_in_a_fresh_environment(tmp_path):
    source = install_source()
    pinned = rf"git\+https://github\.com/[^@']+@{re.escape(release_tag())}"
    assert release_tag() == f"v{package_version()}" and re.search(pinned, source), source
    local = re.sub(pinned, ROOT.as_uri(), source)

    env_dir = tmp_path / "colab"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    # both TensorFlow lines: their markers leave the one for this machine
    tf_reqs = [ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.startswith("tensorflow")]
    base = subprocess.run([py, "-m", "pip", "install", "--quiet", *tf_reqs, "numpy", "matplotlib"],
                          capture_output=True, text=True, timeout=1200)
    assert base.returncode == 0, base.stderr[-3000:]
    missing = subprocess.run([py, "-c", "import psst_helpers"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode != 0, "the fresh environment already has psst_helpers"

    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(code: str, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)

    first = run(local)
    assert first.returncode == 0, first.stderr[-3000:]
    again = run(NO_PIP + local, timeout=300)
    assert again.returncode == 0, "the install cell ran pip although the package was installed:\n" + again.stderr[-2000:]

    # a stale copy: an older version installed earlier
    old = _older_copy(tmp_path / "old")
    stale = subprocess.run([py, "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(old)],
                           capture_output=True, text=True, timeout=600)
    assert stale.returncode == 0, stale.stderr[-3000:]
    assert run(VERSION).stdout.strip() != package_version()
    numpy_before = run("import numpy; print(numpy.__version__, numpy.__file__)").stdout
    replaced = run(local)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert run(VERSION).stdout.strip() == package_version(), "the install cell kept the older psst_helpers"
    assert run("import numpy; print(numpy.__version__, numpy.__file__)").stdout == numpy_before, \
        "replacing psst_helpers reinstalled NumPy"
    assert run(NO_PIP + local, timeout=300).returncode == 0

    check = run(CHECK, timeout=600)
    assert check.returncode == 0, check.stderr[-3000:]
    n_spikes, version, where = check.stdout.split()
    assert int(n_spikes) >= 2 and version == package_version()
    assert str(env_dir) in where, f"psst_helpers was imported from {where}, not from the fresh environment"
