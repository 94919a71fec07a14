"""Differentiable simulation (chapter 8): gradients against exact and finite-difference values,
no retracing for new parameter values, checkpointing that changes memory but not results."""
import numpy as np
import pytest
import tensorflow as tf  # a requirement: without it this file fails, it does not skip

from psst_helpers import gradients as G
from psst_helpers import neurons
from psst_helpers.errors import InputDtypeError, ParameterError, StateShapeError

NAMES = ["g_Na", "g_K", "g_L"]


def decay(y, t, p):
    return [-p["k"] * y[0]]


def test_one_variable_gradient_matches_the_analytic_sensitivity():
    # dx/dt = -k x, x(0) = 2: x(T) = 2 exp(-k T), dx(T)/dk = -T x(T)
    T, dt, k = 2.0, 0.01, 1.3
    sim = G.GradientIntegrator(decay, n_steps=200, dt=dt)
    kk = tf.constant(k, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(kk)
        x = sim([tf.constant(2.0, tf.float64)], {"k": kk})
        xT = x[-1]
    grad = float(tape.gradient(xT, kk))
    exact = -T * 2.0 * np.exp(-k * T)
    assert abs(float(xT) - 2.0 * np.exp(-k * T)) < 1e-8
    assert abs(grad - exact) / abs(exact) < 1e-7, (grad, exact)
    np.testing.assert_allclose(sim.times(), dt * np.arange(1, 201), rtol=1e-12)


@pytest.fixture(scope="module")
def hh_problem():
    """Three HH neurons (I = 2, 5, 10 uA/cm^2), 10 ms at dt 0.025 ms, a loss on V against a reference."""
    I = np.array([2.0, 5.0, 10.0])
    sim = G.GradientIntegrator(G.hh_rhs, n_steps=400, dt=0.025)
    y0 = G.hh_rest_state(-65.0, [3])
    target = sim(y0, G.hh_params([3], I_ext=I)).numpy()
    rng = np.random.default_rng(0)
    target = target + rng.normal(0.0, 1.0, target.shape)

    def loss_fn(V):
        return G.mse(V, target)

    def params(scale):
        return G.hh_params([3], I_ext=I, **{k: neurons.HH[k] * s for k, s in zip(NAMES, scale)})

    return sim, y0, loss_fn, params, target


def test_hh_gradient_matches_central_differences_and_the_tape(hh_problem):
    sim, y0, loss_fn, params, _ = hh_problem
    scale = np.array([1.2, 0.8, 1.3])  # away from the truth: a non-zero gradient
    loss, grads = sim.value_and_gradient(loss_fn, y0, params(scale), NAMES)
    assert np.isfinite(float(loss)) and float(loss) > 10.0  # the spikes are misplaced
    for i, name in enumerate(NAMES):
        h = 1e-4 * neurons.HH[name]  # central differences, relative step 1e-4
        up, down = scale.copy(), scale.copy()
        up[i] += 1e-4
        down[i] -= 1e-4
        fd = (float(loss_fn(sim(y0, params(up)))) - float(loss_fn(sim(y0, params(down))))) / (2 * h)
        g = float(tf.reduce_sum(grads[name]))  # the parameter is shared by the three neurons
        assert abs(g - fd) / abs(fd) < 1e-5, (name, g, fd)
    # the same gradient from a GradientTape around the plain call
    p = params(scale)
    with tf.GradientTape() as tape:
        tape.watch([p[k] for k in NAMES])
        taped = tape.gradient(loss_fn(sim(y0, p)), [p[k] for k in NAMES])
    for name, g in zip(NAMES, taped):
        np.testing.assert_allclose(g.numpy(), grads[name].numpy(), rtol=1e-9)


def test_new_parameter_values_do_not_retrace(hh_problem):
    sim, y0, loss_fn, params, _ = hh_problem
    sim(y0, params([1.0, 1.0, 1.0]))
    sim.value_and_gradient(loss_fn, y0, params([1.0, 1.0, 1.0]), NAMES)
    before = sim.traces
    for s in np.linspace(0.6, 1.4, 4):
        sim(y0, params([s, 1.0, 1.0]))
        sim.value_and_gradient(loss_fn, y0, params([1.0, s, 1.0]), NAMES)
    assert sim.traces == before


def test_checkpointing_gives_the_same_records_and_gradient(hh_problem):
    sim, y0, loss_fn, params, _ = hh_problem
    chk = G.GradientIntegrator(G.hh_rhs, n_steps=400, dt=0.025, checkpoint_every=50)
    p = params([1.1, 0.9, 1.2])
    np.testing.assert_allclose(chk(y0, p).numpy(), sim(y0, p).numpy(), rtol=1e-12, atol=1e-12)
    l1, g1 = sim.value_and_gradient(loss_fn, y0, p, NAMES)
    l2, g2 = chk.value_and_gradient(loss_fn, y0, p, NAMES)
    assert float(l1) == pytest.approx(float(l2), rel=1e-12)
    for k in NAMES:
        np.testing.assert_allclose(g2[k].numpy(), g1[k].numpy(), rtol=1e-9)


def test_records_every_and_times():
    sim = G.GradientIntegrator(decay, n_steps=100, dt=0.01, every=10)
    x = sim([tf.constant([1.0, 2.0], tf.float64)], {"k": tf.constant(1.0, tf.float64)}).numpy()
    assert x.shape == (10, 2)
    t = sim.times()
    np.testing.assert_allclose(x, np.exp(-t)[:, None] * [1.0, 2.0], rtol=1e-9)


def test_windows_start_from_the_recording_and_the_truth_fits_them():
    # a clean recording at the model's own step: every teacher-forced window is reproduced closely
    dt, n = 0.025, 800
    I = np.array([3.0, 10.0])
    sim = G.GradientIntegrator(G.hh_rhs, n_steps=n, dt=dt)
    y0 = G.hh_rest_state(-70.0, [2])
    V = np.concatenate([np.full((1, 2), -70.0), sim(y0, G.hh_params([2], I_ext=I)).numpy()])
    assert np.max(V) > 20.0  # the traces contain spikes
    wy0, targets, t0 = G.teacher_forced_windows(V, dt, 80)
    assert [x.shape for x in wy0] == [(10, 2)] * 4 and targets.shape == (80, 10, 2) and t0.shape == (10, 1)
    np.testing.assert_allclose(wy0[0], V[::80][:10])
    np.testing.assert_allclose(targets[:, 3, 1], V[241:321, 1])
    win = G.GradientIntegrator(G.hh_rhs, n_steps=80, dt=dt)
    err_true = float(G.mse(win(wy0, G.hh_params([1, 2], I_ext=I[None]), t0=t0), targets))
    err_off = float(G.mse(win(wy0, G.hh_params([1, 2], I_ext=I[None], g_K=12.0), t0=t0), targets))
    assert err_true < 1e-3 < 1.0 < err_off, (err_true, err_off)


def test_gates_from_voltage_match_the_simulated_gates():
    dt = 0.01
    sim = G.GradientIntegrator(G.hh_rhs, n_steps=1500, dt=dt, observe=lambda y: tf.stack(y))
    y = sim(G.hh_rest_state(-70.0, [1]), G.hh_params([1], I_ext=[10.0])).numpy()[:, :, 0]  # (n, 4)
    V = np.concatenate([[-70.0], y[:, 0]])
    gates = G.gates_from_voltage(V[:, None], dt)[1:, :, 0]
    assert np.max(np.abs(gates - y[:, 1:])) < 1e-3


def test_mse_weights():
    a = tf.constant([[1.0, 2.0], [3.0, 4.0]], tf.float64)
    assert float(G.mse(a, 0.0)) == pytest.approx(7.5)
    assert float(G.mse(a, 0.0, weights=[1.0, 0.0])) == pytest.approx(5.0)


def test_peak_memory_sees_a_large_allocation():
    pytest.importorskip("ctypes")
    if not __import__("sys").platform.startswith("linux"):
        pytest.skip("the CPU measurement reads /proc")
    mb, out = G.peak_memory(lambda: float(np.ones(200_000_000 // 8).sum()))
    assert out == 200_000_000 // 8
    assert 150.0 < mb < 400.0, mb


def test_clear_errors():
    # the package's own errors (one class per mistake), which are also the built-in kinds
    with pytest.raises(ParameterError, match="must divide n_steps"):
        G.GradientIntegrator(decay, n_steps=100, dt=0.01, every=7)
    with pytest.raises(ParameterError, match="checkpoint_every=30 must divide"):
        G.GradientIntegrator(decay, n_steps=100, dt=0.01, checkpoint_every=30)
    with pytest.raises(ValueError, match="positive integer"):
        G.GradientIntegrator(decay, n_steps=10.5, dt=0.01)
    with pytest.raises(ParameterError, match="dt"):
        G.GradientIntegrator(decay, n_steps=10, dt=-0.01)
    sim = G.GradientIntegrator(decay, n_steps=10, dt=0.01)
    with pytest.raises(StateShapeError, match="list of state tensors"):
        sim(tf.constant([1.0], tf.float64), {"k": 1.0})
    with pytest.raises(InputDtypeError, match="floating point"):
        sim([tf.constant([1, 2])], {"k": 1.0})
    with pytest.raises(ParameterError, match="not in params"):
        sim.value_and_gradient(tf.reduce_sum, [tf.constant(1.0, tf.float64)], {"k": 1.0}, ["g_K"])
    with pytest.raises(ParameterError, match="unknown HH parameters"):
        G.hh_params(g_Ca=1.0)
    with pytest.raises(ParameterError, match="must divide the number of steps"):
        G.teacher_forced_windows(np.zeros((101, 2)), 0.01, 30)
