"""Notebook hygiene: what readers see on GitHub, nbviewer and Colab must come from a clean full run.

Executing the notebooks is nbval's job (``make test`` passes them to pytest with ``--nbval-lax``);
these checks read the stored files.
"""
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]


def test_there_are_chapters():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_a_clean_top_to_bottom_run(path):
    nb = nbformat.read(path, as_version=4)
    counts = []
    for cell in code_cells(nb):
        assert cell.execution_count is not None, f"unexecuted cell: {cell.source[:60]!r}"
        counts.append(cell.execution_count)
        for out in cell.outputs:
            assert out.output_type != "error", f"stored error in cell {cell.execution_count}: {out.get('ename')}"
            if out.output_type == "stream" and out.name == "stderr":
                pytest.fail(f"stored stderr in cell {cell.execution_count}: {out.text[:200]!r}")
    assert counts == list(range(1, len(counts) + 1)), f"execution counts out of order: {counts}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_downloads_code(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in code_cells(nb))
    assert "no-check-certificate" not in text and "wget " not in text and "curl " not in text
    assert "verify=False" not in text


def test_badges_and_install_cells_match_the_template():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "notebook_header.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_notebook_is_in_the_book():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    listed = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in NOTEBOOKS}
    assert on_disk <= listed, f"notebooks missing from _toc.yml: {sorted(on_disk - listed)}"
