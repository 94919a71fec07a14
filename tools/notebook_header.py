"""The two cells every chapter notebook starts with, generated from one template.

    python tools/notebook_header.py --write   # rewrite the badge and install cells of every chapter
                                              # and the badge table and install command of README.md
    python tools/notebook_header.py --check   # exit 1 if any of them differs from the template
    python tools/notebook_header.py --check --tag v0.2.0   # ... or if v0.2.0 is not this version's tag
    python tools/notebook_header.py --show branch          # print a setting: url, slug, branch, version, tag

The repository and branch come from ``_config.yml`` (``repository.url`` / ``repository.branch``),
so a fork only changes them there; the workflows read them through ``--show`` (the ``book`` workflow
publishes from that branch, the ``release`` workflow checks a tag with ``--check --tag``). The install
cell and the README's install command pin the release tag ``v<psst_helpers.__version__>`` (e.g.
``v0.2.0``), read from ``psst_helpers/__init__.py``. The badge cell is the notebook's second cell (after
the title); the install cell is its first code cell. The install cell carries the tag ``remove-cell`` too:
it stays in the notebook for Colab and Kaggle, and the site (jupyter-book) leaves it out. Kaggle installs
with pip only when the notebook's Internet setting is on, so the badge cell and the README say so beside
the Kaggle badge. ``--show`` needs only the standard library.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BADGE_TAG = "psst-badges"
INSTALL_TAG = "psst-install"
# The install cell's tags: ours, and jupyter-book's "remove-cell" (not on the site; the notebook keeps it).
INSTALL_TAGS = [INSTALL_TAG, "remove-cell"]
# Kaggle runs pip only with Internet on (a setting of the notebook that needs a phone-verified account).
KAGGLE_NOTE = ("On Kaggle, first switch **Internet** on in the notebook's settings (Kaggle asks for a "
               "phone-verified account): the first cell installs the book's package with pip.")


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
            f"[![Open In Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]({kaggle})\n"
            f"{KAGGLE_NOTE}")


def package_version() -> str:
    """``psst_helpers.__version__``, read from the source (the tool must not need the package installed)."""
    text = (ROOT / "psst_helpers" / "__init__.py").read_text()
    return re.search(r'^__version__ = "(\d+\.\d+\.\d+)"', text, re.M).group(1)


def release_tag() -> str:
    """The repository tag of this version's release: "v" + version (documented next to ``__version__``)."""
    return f"v{package_version()}"


def pip_requirement() -> str:
    """What pip installs in Colab and Kaggle: the pinned release from the repository in ``_config.yml``."""
    slug, _ = repository()
    return f"psst_helpers @ git+https://github.com/{slug}@{release_tag()}"


def install_source() -> str:
    version = package_version()
    wanted = tuple(int(x) for x in version.split("."))
    return (
        f"# Colab / Kaggle: install psst_helpers {version}, the release these chapters were written for, when it is\n"
        "# missing or older; where it is installed already (as on your own machine), this cell does nothing.\n"
        "import importlib.metadata, re, subprocess, sys\n"
        "try:\n"
        "    installed = importlib.metadata.version('psst_helpers')\n"
        "except importlib.metadata.PackageNotFoundError:\n"
        "    installed = None\n"
        f"if installed is None or tuple(map(int, re.findall(r'\\d+', installed)[:3])) < {wanted}:\n"
        "    # an older copy is replaced alone: the notebook's own TensorFlow and NumPy stay as they are\n"
        "    replace = [] if installed is None else ['--force-reinstall', '--no-deps']\n"
        "    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet', *replace,\n"
        f"                    '{pip_requirement()}'], check=True)"
    )


def chapters() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("*.ipynb"))


def header_problems(path: Path, write: bool = False) -> list[str]:
    import nbformat

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
    if install is not None:
        tags = list(install.metadata.get("tags", []))
        # "remove-output" was the tag before "remove-cell", which removes the output with the cell
        want_tags = INSTALL_TAGS + [t for t in tags if t not in INSTALL_TAGS and t != "remove-output"]
        if tags != want_tags:
            if write:
                install.metadata["tags"] = want_tags
            else:
                problems.append(f"{rel}: the install cell's tags are {tags}, not {want_tags} (it is hidden on the "
                                f"site with 'remove-cell')")
    if write:
        nbformat.write(nb, path)
    return problems


README_START = "<!-- chapter-badges:start (generated by tools/notebook_header.py --write) -->"
README_END = "<!-- chapter-badges:end -->"


def readme_table() -> str:
    import nbformat

    rows = ["| chapter | Colab | Kaggle |", "|---|---|---|"]
    for path in chapters():
        nb = nbformat.read(path, as_version=4)
        title = nb.cells[0].source.lstrip("# ").strip()
        rel = path.relative_to(ROOT).as_posix()
        colab, kaggle = re.findall(r"\]\((https://[^)]+)\)(?!\])", badge_source(rel))[-2:]
        rows.append(f"| [{title}]({rel}) | [open in Colab]({colab}) | [open in Kaggle]({kaggle})\\* |")
    return "\n".join(rows) + f"\n\n\\* {KAGGLE_NOTE}"


INSTALL_START = "<!-- install-command:start (generated by tools/notebook_header.py --write) -->"
INSTALL_END = "<!-- install-command:end -->"


def readme_install() -> str:
    return f'```bash\npip install "{pip_requirement()}"   # where TensorFlow is installed\n```'


def readme_problems(write: bool = False) -> list[str]:
    """The README's generated blocks (badge table, install command) against the template."""
    path = ROOT / "README.md"
    text = path.read_text()
    problems = []
    for start, end, content, what in ((README_START, README_END, readme_table(), "chapter badge table"),
                                      (INSTALL_START, INSTALL_END, readme_install(), "install command")):
        if start not in text or end not in text:
            problems.append(f"README.md: no {what} markers ({start} ... {end})")
            continue
        head, rest = text.split(start, 1)
        old, tail = rest.split(end, 1)
        want = f"\n{content}\n"
        if old != want:
            if write:
                text = head + start + want + end + tail
            else:
                problems.append(f"README.md: the {what} differs from the template")
    if write and text != path.read_text():
        path.write_text(text)
    return problems


def settings() -> dict[str, str]:
    """What the workflows read: the repository's address and owner/name, the branch, the version and its tag."""
    slug, branch = repository()
    return {"url": f"https://github.com/{slug}", "slug": slug, "branch": branch, "version": package_version(),
            "tag": release_tag()}


def tag_problems(tag: str) -> list[str]:
    """A release tag must be "v" + psst_helpers.__version__: the tag the install cells pin."""
    if tag != release_tag():
        return [f"the tag {tag} is not this version's release tag {release_tag()} (psst_helpers/__init__.py says "
                f"__version__ = \"{package_version()}\"): bump the version, run --write, commit, then tag"]
    return []


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    g.add_argument("--show", choices=sorted(settings()), help="print one setting and exit")
    p.add_argument("--tag", help="with --check: also check that this is the release tag of this version")
    a = p.parse_args()
    if a.tag is not None and not a.check:
        p.error("--tag goes with --check")
    if a.show:
        print(settings()[a.show])
        return 0
    problems = tag_problems(a.tag) if a.tag is not None else []
    problems += [msg for nb in chapters() for msg in header_problems(nb, write=a.write)]
    problems += readme_problems(write=a.write)
    for msg in problems:
        print(msg)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
