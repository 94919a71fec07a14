"""Execute chapter notebooks top to bottom in a fresh kernel and store their outputs (full-size runs).

    python tools/execute_notebooks.py notebooks/ch01_numerical_integration.ipynb [...]

TensorFlow's C++ log lines are silenced so that they never end up stored in the notebooks.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 1800) -> float:
    os.environ.update({"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    os.environ.pop("PSST_FAST", None)  # stored outputs are the full run
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg}: executed in {execute(Path(arg)):.1f} s", flush=True)
