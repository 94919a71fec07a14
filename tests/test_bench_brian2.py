"""The Brian2 network comparison of the benchmark appendix, at a small size: the equality evidence.

``python -m psst_helpers.bench brian2-networks --quick`` exports chapter 4's E/I network (200 neurons)
and chapter 6's locust antennal lobe from the package, runs them in Brian2 (C++ standalone with 1 and 2
OpenMP threads, Cython) and in psst for 200 ms, and writes the rows this test reads. Needs the Brian2
environment (``make brian2-venv``); skipped without it.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

BRIAN2 = Path(__file__).resolve().parents[1] / ".venv-brian2" / "bin" / "python"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BRIAN2.exists(), reason="no Brian2 environment: run `make brian2-venv`")]


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("brian2-networks")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}
    proc = subprocess.run([sys.executable, "-m", "psst_helpers.bench", "brian2-networks", "--quick",
                           "--brian2-python", str(BRIAN2), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (out / "brian2-networks.csv").read_text().splitlines()
    return list(csv.DictReader(ln for ln in lines if not ln.startswith("# ")))


def _row(rows, network, variant):
    found = [r for r in rows if r["network"] == network and r["variant"] == variant]
    assert len(found) == 1, (network, variant, [r["variant"] for r in rows if r["network"] == network])
    return found[0]


@pytest.mark.parametrize("network", ["ei", "locust"])
def test_neurons_alone_spike_on_the_same_steps(rows, network):
    r = _row(rows, network, "equal_neurons_alone")
    assert int(r["spikes"]) > 0                               # something to compare
    assert int(r["spikes_psst"]) == int(r["spikes"]) == int(r["spikes_in_common"])
    assert int(r["spike_mismatch"]) == 0


@pytest.mark.parametrize("network", ["ei", "locust"])
@pytest.mark.parametrize("target", ["cpp_standalone_1thread", "cpp_standalone_2threads", "cython"])
def test_held_coupling_gives_the_same_spikes_as_brian2(rows, network, target):
    r = _row(rows, network, f"equal_held_{target}")
    assert int(r["spikes"]) > 0
    assert int(r["spike_mismatch"]) == 0, r                 # every spike of every neuron on the same step


@pytest.mark.parametrize("network", ["ei", "locust"])
def test_every_simulator_is_timed_first_call_apart_from_warm(rows, network):
    for variant in ["psst_xla", "brian2_cpp_standalone_1thread", "brian2_cpp_standalone_2threads", "brian2_cython"]:
        r = _row(rows, network, variant)
        assert 0 < float(r["min_s"]) <= float(r["run_s"]) <= float(r["max_s"])
        assert float(r["first_s"]) > float(r["run_s"])     # the first call includes compilation
        assert int(r["spikes"]) > 0
