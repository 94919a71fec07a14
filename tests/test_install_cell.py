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

And, without installing anything: the version, every install cell's pin, every badge's branch and the release
workflow agree (the tag the release workflow accepts is the one the cells install, from the branch the badges
open).
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
from notebook_header import INSTALL_TAG, BADGE_TAG, install_source, package_version, release_tag, repository  # noqa: E402

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


def _cells(tag: str) -> dict[str, str]:
    import nbformat

    out = {}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        found = [c.source for c in nb.cells if tag in c.metadata.get("tags", [])]
        assert len(found) == 1, f"{path.name}: {len(found)} cells tagged {tag}"
        out[path.name] = found[0]
    return out


def test_version_install_pins_badges_and_release_workflow_agree():
    import yaml

    import psst_helpers

    version = psst_helpers.__version__  # the imported package, not the tool's reading of the file
    assert package_version() == version and release_tag() == f"v{version}"
    slug, branch = repository()

    # every install cell pins exactly this version's tag, of the configured repository
    for name, source in _cells(INSTALL_TAG).items():
        pins = re.findall(r"git\+https://github\.com/([^@']+)@([^'\s]+)'", source)
        assert pins == [(slug, f"v{version}")], f"{name} installs {pins}, not {slug}@v{version}"
        assert f"< {tuple(int(x) for x in version.split('.'))}" in source, f"{name} compares with another version"
    readme = (ROOT / "README.md").read_text()
    assert re.findall(r"git\+https://github\.com/([^@\"]+)@([^\"\s]+)\"", readme) == [(slug, f"v{version}")]

    # every badge (chapters and README) opens the chapter from the configured branch
    for name, source in list(_cells(BADGE_TAG).items()) + [("README.md", readme)]:
        opened = re.findall(r"github(?:\.com)?/([\w.-]+/[\w.-]+)/blob/([^/]+)/notebooks/", source)
        assert opened and set(opened) == {(slug, branch)}, f"{name} opens {sorted(set(opened))}, not {slug} {branch}"

    # the release workflow runs on this version's tag and refuses any other
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    on = wf.get("on", wf.get(True))
    assert any(re.fullmatch(pattern.replace("*", ".*"), release_tag()) for pattern in on["push"]["tags"])
    tool = [sys.executable, str(ROOT / "tools" / "notebook_header.py"), "--check", "--tag"]
    ok = subprocess.run([*tool, release_tag()], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    major, minor, patch = map(int, version.split("."))
    wrong = subprocess.run([*tool, f"v{major}.{minor}.{patch + 1}"], capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 1 and f"is not this version's release tag v{version}" in wrong.stdout, wrong.stdout
    steps = [ln for job in wf["jobs"].values() for st in job.get("steps", []) for ln in st.get("run", "").splitlines()]
    assert 'python tools/notebook_header.py --check --tag "$GITHUB_REF_NAME"' in [ln.strip() for ln in steps]
    show = subprocess.run([sys.executable, str(ROOT / "tools" / "notebook_header.py"), "--show", "branch"],
                          capture_output=True, text=True, timeout=60)
    assert show.stdout.strip() == branch, "the workflows read another branch than the badges use"
