"""The jaxley gradient comparison of the benchmark appendix, at a small size: the same model in both.

``python -m psst_helpers.bench jaxley --quick`` runs chapter 8's check (three HH recordings, 20 ms, loss and
gradient with respect to g_Na, g_K, g_L) in psst and in jaxley at dt 0.025 and 0.0125 ms, and the peak memory of chapter 8's section 7 gradient
(15 neurons) at 1,000 steps of 0.01 ms, each variant in a fresh process. Needs the jaxley environment
(``make jaxley-venv``: jaxley and psutil); skipped without it.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

JAXLEY = Path(__file__).resolve().parents[1] / ".venv-jaxley" / "bin" / "python"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not JAXLEY.exists(), reason="no jaxley environment (.venv-jaxley)")]


def test_jaxley_converges_to_the_package_model(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    proc = subprocess.run([sys.executable, "-m", "psst_helpers.bench", "jaxley", "--quick",
                           "--jaxley-python", str(JAXLEY), "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (tmp_path / "jaxley.csv").read_text().splitlines()
    every_row = list(csv.DictReader(ln for ln in lines if not ln.startswith("# ")))
    rows = [r for r in every_row if r["bench"] == "gradient_vs_jaxley"]
    ours = [r for r in rows if r["variant"] == "psst RK4"][0]
    assert float(ours["rms_error_mV"]) < 1e-2              # RK4 at 0.025 ms against RK4 at 0.025/64 ms
    grads = ["dL_dg_Na", "dL_dg_K", "dL_dg_L"]
    for solver in ("jaxley bwd_euler", "jaxley crank_nicolson"):
        runs = sorted((r for r in rows if r["variant"] == solver), key=lambda r: -float(r["dt_ms"]))
        assert [float(r["dt_ms"]) for r in runs] == [0.025, 0.0125]
        errors = [float(r["rms_error_mV"]) for r in runs]
        # the same model: a smaller step comes closer to the package's trajectory (first or second order)
        assert errors[1] < 0.6 * errors[0], errors
        for r in runs:
            assert float(r["run_s"]) > 0 and float(r["first_s"]) > float(r["run_s"])
    cn = [r for r in rows if r["variant"] == "jaxley crank_nicolson" and float(r["dt_ms"]) == 0.0125][0]
    # Crank-Nicolson at half the step: its gradient within 1 % of psst's (measured: 3e-4)
    rel = np.abs(np.array([float(cn[g]) for g in grads]) / np.array([float(ours[g]) for g in grads]) - 1)
    assert np.all(rel < 0.01), rel

    # peak memory of one loss and gradient, 15 neurons x 1,000 steps of 0.01 ms, each in a fresh process
    memory = {r["variant"]: r for r in every_row if r["bench"] == "gradient_memory"}
    assert sorted(memory) == ["jaxley bwd_euler", "jaxley bwd_euler, checkpoint_lengths 10x100",
                              "psst RK4, chunks of 100", "psst RK4, state per step"], sorted(memory)
    for r in memory.values():
        assert int(r["steps"]) == 1000 and int(r["size"]) == 15
        assert 0 < float(r["extra_MB"]) < float(r["process_peak_MB"])
    psst = memory["psst RK4, state per step"]
    for r in memory.values():
        # the same problem: backward Euler at 0.01 ms against RK4 (measured: 5e-4 relative at most)
        rel = np.abs(np.array([float(r[g]) for g in grads]) / np.array([float(psst[g]) for g in grads]) - 1)
        assert np.all(rel < 0.01), (r["variant"], rel)
    # jaxley without checkpointing keeps its whole forward pass: several times what its checkpointed run
    # needs (measured: 12.9 against 1.7 MB)
    assert float(memory["jaxley bwd_euler"]["extra_MB"]) > 3 * float(
        memory["jaxley bwd_euler, checkpoint_lengths 10x100"]["extra_MB"])
