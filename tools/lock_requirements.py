"""Write requirements-lock.txt: the exact versions of the environment that executed the stored chapters.

    .venv/bin/python tools/lock_requirements.py            # print the lock for this environment
    .venv/bin/python tools/lock_requirements.py --write    # write requirements-lock.txt

Run it with the Python of the environment that ran ``tools/execute_notebooks.py``. It takes what
``requirements.txt`` names for this machine (the reader's list, not the test tools), follows their
dependencies through the installed packages' metadata, and pins each at its installed version (what
``pip freeze`` says for those packages). TensorFlow is pinned for every platform: the CPU-only build on
Linux x86_64, the full build (same version) elsewhere.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements-lock.txt"
TF_NAMES = {"tensorflow", "tensorflow-cpu"}
LINUX_X86 = 'sys_platform == "linux" and platform_machine == "x86_64"'
ELSEWHERE = 'sys_platform != "linux" or platform_machine != "x86_64"'  # PEP 508 markers have no "not"


def _reader_requirements() -> list[Requirement]:
    env = default_environment()
    out = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            r = Requirement(line)
            if r.marker is None or r.marker.evaluate(env):
                out.append(r)
    return out


def closure() -> dict[str, tuple[str, str]]:
    """canonical name -> (name as the package spells it, installed version), for the reader's list and its
    dependencies as installed here."""
    env = default_environment()
    found: dict[str, tuple[str, str]] = {}
    todo = [(r, set(r.extras)) for r in _reader_requirements()]
    while todo:
        req, extras = todo.pop()
        key = canonicalize_name(req.name)
        if key in found and not extras:
            continue
        dist = md.distribution(req.name)  # an uninstalled dependency is an error: the lock must be complete
        found[key] = (dist.metadata["Name"], dist.version)
        for line in dist.requires or []:
            dep = Requirement(line)
            wanted = [{**env, "extra": e} for e in extras] + [{**env, "extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(e) for e in wanted):
                if canonicalize_name(dep.name) not in found or dep.extras:
                    todo.append((dep, set(dep.extras)))
    return found


def oldest_python(names: list[str]) -> str:
    """The oldest Python of this minor version that every pinned package's Requires-Python allows."""
    specs = [SpecifierSet(md.distribution(n).metadata.get("Requires-Python") or "") for n in names]
    major, minor, micro = sys.version_info[:3]
    for m in range(micro + 1):
        if all(Version(f"{major}.{minor}.{m}") in s for s in specs):
            return f"{major}.{minor}.{m}"
    return platform.python_version()


def lock_text() -> str:
    pins = closure()
    oldest = oldest_python([name for name, _ in pins.values()])
    tf = [pins.pop(k) for k in sorted(TF_NAMES & set(pins))]
    major_minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = [
        "# The environment that executed the stored chapters (their outputs are this environment's numbers):",
        f"# Python {platform.python_version()} on {platform.system()} {platform.machine()}. Install it into a fresh "
        f"Python {major_minor} environment",
        f"# (Python {oldest} or a newer {major_minor}: the oldest these versions allow), in a clone:",
        "#     python -m pip install -r requirements-lock.txt -e .",
        "# Written by tools/lock_requirements.py (the reader's requirements.txt and everything they pull in, at the",
        "# installed versions); requirements.txt gives the ranges that work.",
    ]
    for _, version in tf:
        lines += [f"tensorflow-cpu=={version}; {LINUX_X86}", f"tensorflow=={version}; {ELSEWHERE}"]
    lines += [f"{name}=={version}" for _, (name, version) in sorted(pins.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"write {LOCK.name} instead of printing")
    a = p.parse_args()
    text = lock_text()
    if a.write:
        LOCK.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
