"""Benchmark results measured once and shipped with the package, for chapters that plot them.

They are package data (``psst_helpers/bench/results/*.csv``), so a chapter finds them wherever the
package is installed, in Colab and Kaggle too, not only in a checkout of the repository.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

RESULTS_DIR = Path(__file__).resolve().with_name("results")


def stored_result_names() -> List[str]:
    """File names of the stored results, e.g. ``["brian2_2cpu_epyc.csv", ...]``."""
    return sorted(p.name for p in RESULTS_DIR.glob("*.csv"))


def stored_results(name: str) -> Path:
    """Path of a stored benchmark CSV (header lines ``# key: value`` name the machine, then the rows).

    Parameters
    ----------
    name : str
        File name, e.g. ``"brian2_2cpu_epyc.csv"`` (see :func:`stored_result_names`).

    Returns
    -------
    pathlib.Path
        An existing file, readable with ``pandas.read_csv(path, comment="#")`` or ``path.read_text()``.

    Raises
    ------
    FileNotFoundError
        If no stored result has that name; the message lists the ones there are.
    """
    path = RESULTS_DIR / name
    if "/" in name or "\\" in name or not path.is_file():
        raise FileNotFoundError(f"no stored benchmark result {name!r}; there are: {', '.join(stored_result_names())}")
    return path
