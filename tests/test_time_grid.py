"""time_grid and the long-run runner refuse impossible grids with the actual reason (no TensorFlow needed)."""
import math

import numpy as np
import pytest

import psst_helpers as psst
from psst_helpers.analysis import count_steps
from psst_helpers.recording import run

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("duration, dt, reason", [
    (0.0, 0.01, "duration = 0: a grid needs at least one step"),
    (-5.0, 0.01, "duration = -5: durations count forward"),
    (NAN, 0.01, "duration is NaN"),
    (INF, 0.01, "duration = inf: a grid must end"),
    (-INF, 0.01, "duration = -inf: a grid must end"),
    (1.0, 0.0, "dt = 0: a step of zero never advances time"),
    (1.0, -0.01, "dt = -0.01: the step must be positive"),
    (1.0, NAN, "dt is NaN"),
    (1.0, INF, "dt = inf: the step must be a finite number"),
    (0.004, 0.01, "duration = 0.004 ms is shorter than one step (dt = 0.01 ms)"),
    (1.005, 0.01, "is not a whole number of steps of dt = 0.01 ms (1.005 / 0.01 = 100.5)"),
    (1e300, 1e-300, "more than a float64 can count exactly"),
], ids=lambda v: repr(v) if not isinstance(v, str) else None)
def test_time_grid_says_why(duration, dt, reason):
    with pytest.raises(psst.TimeGridError) as err:
        psst.time_grid(duration, dt)
    assert reason in str(err.value)
    assert isinstance(err.value, ValueError)  # callers catching ValueError keep working


def test_time_grid_counts_integer_steps():
    t = psst.time_grid(1.0, 0.1, t0=2.0)
    assert len(t) == 11 and t[0] == 2.0
    np.testing.assert_array_equal(t, 2.0 + 0.1 * np.arange(11))
    assert len(psst.time_grid(1000.0, 0.01)) == 100_001  # where arange(0, T, dt) length depends on rounding
    assert count_steps(0.3, 0.1) == 3  # 0.3 / 0.1 = 2.9999999999999996
    with pytest.raises(psst.TimeGridError, match="t0 = nan"):
        psst.time_grid(1.0, 0.1, t0=math.nan)


@pytest.mark.parametrize("kwargs, reason", [
    ({"duration_ms": 0.0}, "duration_ms = 0: a grid needs at least one step"),
    ({"duration_ms": INF}, "duration_ms = inf: a grid must end"),
    ({"dt": 0.0}, "dt = 0: a step of zero never advances time"),
    ({"chunk_ms": 0.0}, "chunk_ms = 0: each chunk must advance the simulation"),
    ({"chunk_ms": -10.0}, "chunk_ms = -10: each chunk must advance the simulation"),
    ({"chunk_ms": NAN}, "chunk_ms = nan: a chunk must end"),
    ({"every": 0}, "every must be a positive integer"),
    ({"max_chunks": 0}, "max_chunks = 0: give a positive number of chunks"),
    ({"dtype": np.float16}, "dtype = float16: runs are float32 or float64"),
])
def test_run_refuses_impossible_arguments_before_touching_the_model_or_the_disk(tmp_path, kwargs, reason):
    args = {"duration_ms": 10.0, "dt": 0.01, "chunk_ms": 5.0, **kwargs}
    with pytest.raises(ValueError) as err:
        run(None, args.pop("duration_ms"), tmp_path / "r", **args)  # no model: it is never reached
    assert reason in str(err.value)
    assert not (tmp_path / "r").exists()
