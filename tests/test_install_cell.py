"""The chapters' first cell, as Colab or Kaggle would run it, in a fresh virtual environment.

The environment starts with only TensorFlow, NumPy and Matplotlib (what Colab and Kaggle ship).
The install cell is taken from a chapter notebook unchanged except for where pip finds the package:
the repository URL (``git+https://github.com/...``) becomes this checkout (``file://...``), the same
kind of pip requirement without the network. Then the cell must have installed a working package,
and a second run must do nothing.
"""
from __future__ import annotations

import re
import subprocess
import sys
import venv
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from notebook_header import INSTALL_TAG  # noqa: E402

CHECK = """
import numpy as np
import psst_helpers as psst
from psst_helpers import networks
t = psst.time_grid(50.0, 0.01)
V = networks.simulate(networks.single_neuron(5.0), t)["V"]
print(len(psst.spike_times(V, t)[0]), psst.__file__)
"""

NO_PIP = "import subprocess\nsubprocess.run = lambda *a, **k: (_ for _ in ()).throw(AssertionError('pip was called'))\n"


def _install_cell() -> str:
    nb = nbformat.read(ROOT / "notebooks" / "ch03_cells_in_silicon.ipynb", as_version=4)
    cell = next(c for c in nb.cells if INSTALL_TAG in c.metadata.get("tags", []))
    return cell.source


def test_install_cell_in_a_fresh_environment(tmp_path):
    source = _install_cell()
    assert re.search(r"git\+https://github\.com/[^@']+@\w+", source), source
    local = re.sub(r"git\+https://github\.com/[^@']+@\w+", ROOT.as_uri(), source)

    env_dir = tmp_path / "colab"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    tf_req = next(ln for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.startswith("tensorflow"))
    base = subprocess.run([py, "-m", "pip", "install", "--quiet", tf_req, "numpy", "matplotlib"],
                          capture_output=True, text=True, timeout=1200)
    assert base.returncode == 0, base.stderr[-3000:]
    missing = subprocess.run([py, "-c", "import psst_helpers"], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode != 0, "the fresh environment already has psst_helpers"

    env = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    first = subprocess.run([py, "-c", local], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    again = subprocess.run([py, "-c", NO_PIP + local], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert again.returncode == 0, "the install cell ran pip although the package was installed:\n" + again.stderr[-2000:]

    run = subprocess.run([py, "-c", CHECK], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    n_spikes, where = run.stdout.split()
    assert int(n_spikes) >= 2
    assert str(env_dir) in where, f"psst_helpers was imported from {where}, not from the fresh environment"
