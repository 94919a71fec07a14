"""Execute chapter notebooks top to bottom in a fresh kernel and store their outputs (full-size runs).

    python tools/execute_notebooks.py notebooks/ch01_numerical_integration.ipynb [...]
    python tools/execute_notebooks.py --tidy notebooks/ch05_optimal_mind_control.ipynb   # streams only

The stored outputs are what readers see online, so they always come from the full run: the cells run as
written, ``QUICK = False`` included (only the test runner sets ``QUICK = True``, after the cell tagged
"parameters", when ``PSST_QUICK=1``: tests/conftest.py), and ``PSST_QUICK`` is removed from the environment
all the same. TensorFlow's C++ log lines are silenced so that they never end up stored in the notebooks,
and of each progress bar only its final state is kept (a terminal overwrites the earlier states with a carriage return; a stored
notebook would otherwise keep every one of them).
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

_OVERWRITTEN = re.compile(r"[^\n]*\r(?!\n)")   # text on a line before a carriage return: overwritten


def final_text(text: str) -> str:
    """What a terminal finally shows for ``text``: each line without the parts a carriage return overwrote."""
    return _OVERWRITTEN.sub("", text)


def execute(path: Path, timeout: int = 3600) -> float:
    """Run ``path`` in a fresh ``python3`` kernel from its own folder and write it back with outputs; seconds."""
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
                       "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    os.environ.pop("PSST_QUICK", None)   # stored outputs are the full run: nothing may ask for quick sizes
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    tidy_streams(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - start


def tidy_streams(nb) -> None:
    """Store streams as a reader's screen shows them: consecutive pieces of one stream joined into one
    output, text overwritten by a carriage return (a progress bar's earlier states) dropped, and a
    stream left empty by that removed."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            last = outputs[-1] if outputs else None
            if (out.output_type == "stream" and last is not None and last.output_type == "stream"
                    and last.name == out.name):
                last.text += out.text
            else:
                outputs.append(out)
        for out in outputs:
            if out.output_type == "stream":
                out.text = final_text(out.text)
        cell.outputs = [o for o in outputs if o.output_type != "stream" or o.text.strip()]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "--tidy":           # only tidy the stored streams of already executed notebooks
        for arg in sys.argv[2:]:
            book = nbformat.read(arg, as_version=4)
            tidy_streams(book)
            nbformat.write(book, arg)
        sys.exit(0)
    for arg in sys.argv[1:]:
        print(f"{arg}: executed in {execute(Path(arg)):.1f} s", flush=True)
