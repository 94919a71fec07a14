"""Suite ``brian2``: the HH population in psst against Brian2, run in Brian2's own Python.

Brian2 2.9 does not import with NumPy >= 2.4, so it lives in its own environment (``make brian2-venv``
makes ``.venv-brian2``) and runs the script ``benchmarks/bench_brian2.py`` of the repository checkout
in a subprocess; this module starts it, reads its JSON and compares spike counts neuron by neuron.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from .cli import register
from .core import HH_QUICK, hh_arguments
from .harness import Row, timed

#: Where the Brian2 script is in a checkout of the repository (it is not part of the installed package).
BRIAN2_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_brian2.py"


def bench_brian2(sizes: List[int], duration_ms: float, python: str, repeats: int,
                 script: Optional[Path] = None) -> List[Row]:
    """psst against Brian2 on the same HH population, float64.

    Both count spikes as upward crossings of 0 mV, and the rows say whether every neuron's count
    agrees (``spike_mismatch``) before any speed is compared.

    Parameters
    ----------
    sizes : list of int
        Population sizes N.
    duration_ms : float
        Simulated time, ms (dt 0.01 ms).
    python : str
        A Python with Brian2 installed, e.g. ``.venv-brian2/bin/python``.
    repeats : int
        Timed runs of psst (Brian2 runs once per size and target).
    script : pathlib.Path, optional
        The Brian2 script; by default ``benchmarks/bench_brian2.py`` of this checkout.

    Returns
    -------
    list of dict
        Per size, one ``psst_xla`` row and one ``brian2_<target>`` row per Brian2 code-generation target.
    """
    from ..networks import hh_population
    from ..solvers.tf_solver import Integrator

    script = Path(script) if script is not None else BRIAN2_SCRIPT
    if not script.is_file():
        raise FileNotFoundError(
            f"the Brian2 script {script} is missing: it is part of the repository, not of the installed "
            "package; run this from a clone of the repository or pass the script's path (--brian2-script)")
    t = 0.01 * np.arange(int(round(duration_ms / 0.01)) + 1)
    steps = len(t) - 1
    # absolute, but not resolved: a virtual environment's python is a symlink to the base one,
    # and only the link's path makes Python find the environment's packages
    python = os.path.abspath(python)
    if not os.path.exists(python):
        raise FileNotFoundError(f"no Python at {python}; create the Brian2 environment with `make brian2-venv`")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "brian2.json"
        proc = subprocess.run([python, str(script), "--sizes", *map(str, sizes),
                               "--duration-ms", str(duration_ms), "--out", str(out)],
                              capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"the Brian2 run failed ({python}):\n{proc.stderr[-3000:]}")
        brian = json.loads(out.read_text())
    rows = []
    for n in sizes:
        model = hh_population(np.linspace(0.0, 10.0, n))
        integ = Integrator(model.derivatives, post_step=model.post_step, record=("V",), every=10)
        y0 = model.state(np.float64)
        (rec, final), med, compile_s, spread = timed(lambda: integ(y0, t, return_final=True), repeats)
        ours = final["spikes"].numpy().astype(int)
        rows.append({"bench": "hh_vs_brian2", "variant": "psst_xla", "size": n, "dtype": "float64", "run_s": med,
                     "compile_s": compile_s, "min_s": spread[0], "max_s": spread[1],
                     "neuron_steps_per_s": n * steps / med, "spikes": int(ours.sum()), "spike_mismatch": 0,
                     "max_abs_diff": 0.0, "note": ""})
        for b in (r for r in brian if r["size"] == n):
            counts = np.asarray(b["spike_counts"])
            rows.append({"bench": "hh_vs_brian2", "variant": f"brian2_{b['target']}", "size": n, "dtype": "float64",
                         "run_s": b["run_s"], "compile_s": float("nan"), "min_s": b["run_s"], "max_s": b["run_s"],
                         "neuron_steps_per_s": b["neuron_steps_per_s"], "spikes": int(counts.sum()),
                         "spike_mismatch": int(np.sum(counts != ours)), "max_abs_diff": float(np.max(np.abs(counts - ours))),
                         "note": f"Brian2 {b['brian2']}, {b['threads']} threads, one run (code generation excluded)"})
    return rows


def _arguments(p: argparse.ArgumentParser) -> None:
    hh_arguments(p)
    p.add_argument("--brian2-python", default=".venv-brian2/bin/python",
                   help="a Python with Brian2 installed (make brian2-venv)")
    p.add_argument("--brian2-script", type=Path, default=BRIAN2_SCRIPT, help="the Brian2 side of the comparison")


@register("brian2", help="the HH population against Brian2 (spike counts checked, then speed)",
          arguments=_arguments, quick=HH_QUICK)
def run_brian2(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``brian2``."""
    yield bench_brian2(args.hh_sizes, args.hh_duration_ms, args.brian2_python, args.repeats, args.brian2_script)
