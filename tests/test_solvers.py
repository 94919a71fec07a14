"""Solvers: convergence orders against exact solutions, NumPy vs TensorFlow, layouts, bad input."""
import numpy as np
import pytest
import tensorflow as tf  # a requirement: without it this file fails, it does not skip

import psst_helpers as psst
from psst_helpers.solvers import odeint_np


def _exp_growth(y, t):
    return 5.0 * y


def _exp_growth_tf(y, t):
    return 5.0 * y


def _rotation(y, t):  # x' = -y, y' = x: exact (cos t, sin t) from (1, 0)
    return {"x": -y["y"], "y": y["x"]}


def fitted_order(solver, method, f, y0, exact, T=1.0, dts=(0.02, 0.01, 0.005, 0.0025)):
    errs = []
    for dt in dts:
        t = psst.time_grid(T, dt)
        y = solver(f, y0, t, method=method)
        last = {k: np.asarray(v)[-1] for k, v in y.items()} if isinstance(y, dict) else np.asarray(y)[-1]
        errs.append(np.max(np.abs(exact(last))))
    return np.polyfit(np.log(dts), np.log(errs), 1)[0]


ORDERS = {"euler": 1, "rk2": 2, "rk4": 4}


@pytest.mark.parametrize("method", ["euler", "rk2", "rk4"])
def test_convergence_order_numpy(method):
    slope = fitted_order(odeint_np, method, _exp_growth, np.array([1.0]), lambda y: y - np.exp(5.0))
    assert abs(slope - ORDERS[method]) < 0.2, slope
    slope = fitted_order(odeint_np, method, _rotation, {"x": np.array(1.0), "y": np.array(0.0)},
                         lambda y: np.array([y["x"] - np.cos(1.0), y["y"] - np.sin(1.0)]))
    assert abs(slope - ORDERS[method]) < 0.2, slope


@pytest.mark.parametrize("method", ["euler", "rk2", "rk4"])
def test_convergence_order_tensorflow(method):
    slope = fitted_order(psst.odeint, method, _exp_growth_tf, np.array([1.0]), lambda y: y - np.exp(5.0))
    assert abs(slope - ORDERS[method]) < 0.2, slope


def test_nonuniform_grid_rk4_matches_exact_and_backends_agree():
    rng = np.random.default_rng(3)
    t = np.concatenate([[0.0], np.sort(rng.uniform(0.0, 1.0, 199)), [1.0]])
    a = odeint_np(_exp_growth, np.array([1.0]), t)
    b = psst.odeint(_exp_growth_tf, np.array([1.0]), t).numpy()
    assert np.max(np.abs(a[:, 0] - np.exp(5.0 * t)) / np.exp(5.0 * t)) < 1e-4
    np.testing.assert_allclose(a, b, rtol=1e-12)


def test_record_every_and_selection_layout():
    t = psst.time_grid(1.0, 0.01)  # 101 points
    y0 = {"x": np.array([1.0, 2.0]), "y": np.array([0.0, 0.5])}
    full = odeint_np(_rotation, y0, t)
    assert full["x"].shape == (101, 2)
    for solver in (odeint_np, psst.odeint):
        part = solver(_rotation, y0, t, record=["x"], every=7)
        assert set(part) == {"x"}
        assert np.asarray(part["x"]).shape == (len(t[::7]), 2)
        np.testing.assert_allclose(np.asarray(part["x"]), full["x"][::7], rtol=0, atol=1e-13)
        one = solver(_rotation, y0, t, record="y", every=25, return_final=True)
        rec, final = one
        np.testing.assert_allclose(np.asarray(rec), full["y"][::25], atol=1e-13)
        np.testing.assert_allclose(np.asarray(final["x"]), full["x"][-1], atol=1e-13)


def test_float32_follows_y0_dtype():
    t = psst.time_grid(1.0, 0.01)
    y32 = psst.odeint(_exp_growth_tf, np.array([1.0], np.float32), t)
    assert y32.dtype == tf.float32
    assert odeint_np(_exp_growth, np.array([1.0], np.float32), t).dtype == np.float32
    assert abs(float(y32[-1, 0]) / np.exp(5.0) - 1.0) < 1e-5


def test_tuple_state_and_untracked_entries():
    # the second entry has no derivative (None): it is carried unchanged unless a hook changes it
    f = lambda y, t: (-y[0], None)  # noqa: E731
    hook = lambda t0, y0, t1, y1: (y1[0], y1[1] + 1.0)  # noqa: E731  counts steps
    t = psst.time_grid(1.0, 0.1)
    for solver in (odeint_np, psst.odeint):
        y = solver(f, (np.array([1.0]), np.array([0.0])), t, post_step=hook)
        assert np.asarray(y[1])[-1, 0] == 10.0
        assert abs(np.asarray(y[0])[-1, 0] - np.exp(-1.0)) < 1e-6


# --- bad input: one specific error each, from both solvers --------------------------------------------

SOLVERS = [odeint_np, psst.odeint]


@pytest.mark.parametrize("solver", SOLVERS)
def test_integer_state_is_refused(solver):
    with pytest.raises(psst.InputDtypeError, match="floating point"):
        solver(_exp_growth, np.array([1]), psst.time_grid(1.0, 0.1))


@pytest.mark.parametrize("solver", SOLVERS)
def test_integer_time_grid_is_refused(solver):
    with pytest.raises(psst.InputDtypeError, match="time grid t.*int"):
        solver(_exp_growth, np.array([1.0]), np.arange(10))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("t, match", [
    (np.array([0.0, 0.1, 0.1, 0.2]), "strictly increasing"),
    (np.array([0.0, 0.2, 0.1]), "strictly increasing"),
    (np.array([0.0]), "at least 2 points"),
    (np.zeros((2, 2)), "1-D"),
    (np.array([0.0, np.nan]), "NaN"),
])
def test_bad_time_grids(solver, t, match):
    with pytest.raises(psst.TimeGridError, match=match):
        solver(_exp_growth, np.array([1.0]), t)


@pytest.mark.parametrize("solver", SOLVERS)
def test_derivative_shape_mismatch(solver):
    f = (lambda y, t: np.concatenate([y, y])) if solver is odeint_np else (lambda y, t: tf.concat([y, y], 0))
    with pytest.raises(psst.StateShapeError, match=r"shape \(4,\).*shape \(2,\)"):
        solver(f, np.array([1.0, 2.0]), psst.time_grid(1.0, 0.1))


@pytest.mark.parametrize("solver", SOLVERS)
def test_derivative_structure_mismatch(solver):
    with pytest.raises(psst.StateShapeError, match="structure"):
        solver(lambda y, t: {"x": y["x"]}, {"x": np.array([1.0]), "v": np.array([0.0])}, psst.time_grid(1.0, 0.1))


def test_mixed_state_dtypes_refused():
    with pytest.raises(psst.InputDtypeError, match="share one dtype"):
        odeint_np(lambda y, t: y, {"a": np.zeros(1), "b": np.zeros(1, np.float32)}, psst.time_grid(1.0, 0.1))


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown method"):
        odeint_np(_exp_growth, np.array([1.0]), psst.time_grid(1.0, 0.1), method="rk45")


@pytest.mark.parametrize("solver", SOLVERS)
def test_blow_up_names_step_time_and_variable(solver):
    # Euler on y' = -50 y with dt = 0.1 multiplies y by -4 each step. In step 510 (t = 51.0 -> 51.1)
    # y = 4^510 = 2^1020 and the slope -50 y exceeds the float64 maximum (~2^1024): inf, then NaN.
    t = 0.1 * np.arange(2001, dtype=float)
    y0 = {"stable": np.array([1.0]), "y": np.array([1.0])}
    f = lambda y, t: {"stable": 0.0 * y["stable"], "y": -50.0 * y["y"]}  # noqa: E731
    with pytest.raises(psst.NonFiniteStateError, match=r"\['y'\].*step 510.*51 -> 51.1") as err:
        solver(f, y0, t, method="euler", every=100)
    assert err.value.step == 510 and err.value.variable == "['y']"
    assert "smaller" in str(err.value)
    partial = err.value.partial
    assert np.asarray(partial["y"]).shape[0] == 6  # t = 0, 10, ..., 50 were finite and are kept
    assert np.all(np.isfinite(np.asarray(partial["y"])))


@pytest.mark.parametrize("method", ["euler", "rk2", "rk4"])
def test_the_stage_loop_form_is_the_step_functions_to_the_bit(method):
    # the compiled solver runs each scheme as a loop over its stage nodes (schemes.STAGE_NODES):
    # the same operations in the same order as the step function, so the same bits
    from psst_helpers.solvers import schemes

    rng = np.random.default_rng(7)
    y = [rng.normal(size=5), rng.normal(size=3), np.arange(2.0)]

    def f(leaves, t):  # a non-linear, time-dependent slope; the last entry is not integrated
        a, b, _ = leaves
        return [np.sin(a) * b.sum() + t, np.exp(-b * b) - 0.3 * a[:3] * t, None]

    for t, dt in ((0.0, 0.01), (3.7, 0.025), (1e3, 0.1)):
        want = schemes.SCHEMES[method](f, y, t, dt)
        got = schemes.staged_step(f, y, t, dt, method)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("method", ["euler", "rk2", "rk4"])
def test_compiled_stage_loop_matches_the_numpy_steps(method):
    # the TensorFlow loop (stage loop, XLA) against NumPy's step functions on a spiking HH neuron:
    # equal to rounding (XLA may fuse differently, 1e-9 mV after 2,000 steps of a spiking neuron)
    hh = psst.networks.single_neuron(10.0)
    t = psst.time_grid(20.0, 0.01)
    ref = psst.networks.simulate(hh, t, backend="numpy", method=method)["V"]
    got = psst.networks.simulate(hh, t, method=method)["V"]
    assert np.max(ref) > 0.0  # it spiked
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("method,stages", [("euler", 1), ("rk2", 2), ("rk4", 4)])
def test_the_right_hand_side_is_traced_once_per_loop_not_once_per_stage(method, stages):
    # the compiled loop holds one copy of func whatever the number of stages: func runs (in Python)
    # once to find which entries are integrated and once in the stage loop, never once per stage
    calls = []

    def f(y, t):
        calls.append(1)
        return {"x": -y["x"] * t, "c": None}

    integ = psst.Integrator(f, method=method, record="x")
    out = integ({"x": np.ones(3), "c": np.zeros(2)}, psst.time_grid(1.0, 0.01))
    assert len(calls) == 2, (len(calls), stages)
    np.testing.assert_allclose(np.asarray(out)[-1], np.exp(-0.5), rtol=1e-4 if stages > 1 else 1e-2)
    integ({"x": 2.0 * np.ones(3), "c": np.zeros(2)}, psst.time_grid(1.0, 0.01))
    assert len(calls) == 2  # a new start state reuses the compiled loop
