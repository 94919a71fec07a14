"""The benchmark harness in --quick mode: every variant runs and computes the same numbers.

Timings are printed by the benchmark, never asserted here.
"""
import csv
import os
import subprocess
import sys

import numpy as np


def test_bench_core_quick(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "psst_helpers.bench", "core", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (tmp_path / "core.csv").read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("# ")]
    assert any(ln.startswith("# cpu:") for ln in header) and any(ln.startswith("# tensorflow:") for ln in header)
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("# ")))
    variants = {(r["bench"], r["variant"]) for r in rows}
    assert {("rk4_sin", v) for v in ("numpy_loop", "original_scan", "psst_graph", "psst_xla")} <= variants
    assert {("hh_population", v) for v in ("original_scan", "psst_graph", "psst_xla")} <= variants
    for r in rows:
        assert float(r["run_s"]) > 0 and float(r["compile_s"]) >= 0
        tol = 1e-12 if r["dtype"] == "float64" and r["bench"] == "rk4_sin" else (1e-9 if r["dtype"] == "float64" else 0.1)
        assert float(r["max_abs_diff"]) <= tol, r
        if r["bench"] == "hh_population" and r["variant"].startswith("psst"):
            assert int(r["nan_neurons"]) == 0
    print(proc.stdout)
    assert np.isfinite([float(r["run_s"]) for r in rows]).all()
