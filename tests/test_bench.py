"""The benchmark harness in --quick mode: every variant runs and computes the same numbers.

Timings are printed by the benchmark, never asserted here.
"""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def test_bench_appendix_quick(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "psst_helpers.bench", "appendix", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (tmp_path / "appendix.csv").read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("# ")]
    assert any(ln.startswith("# cpu:") for ln in header) and any(ln.startswith("# tensorflow:") for ln in header)
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("# ")))
    variants = {(r["bench"], r["variant"]) for r in rows}
    assert {("rk4_sin", v) for v in ("numpy_loop", "tf_eager_loop", "original_scan", "psst_graph", "psst_xla")} <= variants
    assert {("matmul", v) for v in ("numpy", "tf_cpu")} <= variants
    assert {("hh_population", v) for v in ("original_scan", "psst_graph", "psst_xla")} <= variants
    for r in rows:
        assert float(r["run_s"]) > 0 and float(r["compile_s"]) >= 0
        if r["bench"] == "matmul":  # relative to the largest entry
            tol = 1e-13 if r["dtype"] == "float64" else 1e-5
        else:
            tol = 1e-12 if r["dtype"] == "float64" and r["bench"] == "rk4_sin" else (1e-9 if r["dtype"] == "float64" else 0.1)
        assert float(r["max_abs_diff"]) <= tol, r
        if r["bench"] == "hh_population" and r["variant"].startswith("psst"):
            assert int(r["nan_neurons"]) == 0
    print(proc.stdout)
    assert np.isfinite([float(r["run_s"]) for r in rows]).all()


BRIAN2 = Path(__file__).resolve().parents[1] / ".venv-brian2" / "bin" / "python"


@pytest.mark.skipif(not BRIAN2.exists(), reason="no Brian2 environment: run `make brian2-venv` to include this check")
def test_brian2_counts_the_same_spikes(tmp_path):
    from psst_helpers.bench import bench_brian2

    rows = bench_brian2([30], 30.0, str(BRIAN2), repeats=1)
    by_variant = {r["variant"]: r for r in rows}
    assert {"psst_xla", "brian2_cpp_standalone", "brian2_cython"} <= set(by_variant)
    assert by_variant["psst_xla"]["spikes"] > 0
    for r in rows:
        assert r["spike_mismatch"] == 0, r
