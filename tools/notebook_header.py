"""The two cells every chapter notebook starts with, generated from one template.

    python tools/notebook_header.py --write   # rewrite the badge and install cells of every chapter
    python tools/notebook_header.py --check   # exit 1 if a notebook's header differs from the template

The repository and branch come from ``_config.yml`` (``repository.url`` / ``repository.branch``),
so a fork only changes them there. The badge cell is the notebook's second cell (after the title);
the install cell is its first code cell.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BADGE_TAG = "psst-badges"
INSTALL_TAG = "psst-install"


def repository() -> tuple[str, str]:
    text = (ROOT / "_config.yml").read_text()
    url = re.search(r"^\s*url:\s*(\S+)", text, re.M).group(1).rstrip("/")
    branch = re.search(r"^\s*branch:\s*(\S+)", text, re.M).group(1)
    slug = url.split("github.com/", 1)[1]
    return slug, branch


def badge_source(notebook_path: str) -> str:
    slug, branch = repository()
    colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/{notebook_path}"
    kaggle = f"https://kaggle.com/kernels/welcome?src=https://github.com/{slug}/blob/{branch}/{notebook_path}"
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab}) "
            f"[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]({kaggle})")


def install_source() -> str:
    slug, branch = repository()
    return (
        "# Colab / Kaggle: install psst_helpers when it is missing; locally this cell does nothing.\n"
        "import importlib.util, subprocess, sys\n"
        "if importlib.util.find_spec('psst_helpers') is None:\n"
        f"    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',\n"
        f"                    'psst_helpers @ git+https://github.com/{slug}@{branch}'], check=True)"
    )


def chapters() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def header_problems(path: Path, write: bool = False) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    rel = path.relative_to(ROOT).as_posix()
    problems = []
    badge = next((c for c in nb.cells if BADGE_TAG in c.metadata.get("tags", [])), None)
    install = next((c for c in nb.cells if INSTALL_TAG in c.metadata.get("tags", [])), None)
    for cell, want, name in ((badge, badge_source(rel), "badge"), (install, install_source(), "install")):
        if cell is None:
            problems.append(f"{rel}: no {name} cell (tag it '{BADGE_TAG if name == 'badge' else INSTALL_TAG}')")
        elif cell.source != want:
            if write:
                cell.source = want
            else:
                problems.append(f"{rel}: the {name} cell differs from the template")
    if write:
        nbformat.write(nb, path)
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    a = p.parse_args()
    problems = [msg for nb in chapters() for msg in header_problems(nb, write=a.write)]
    for msg in problems:
        print(msg)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
