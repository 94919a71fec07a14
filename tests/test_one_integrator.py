"""One integrator: the forward runs of chapters 2-7 and the gradients of chapter 8 are the same loop.

The same HH model through the forward path (a network model, or ``Integrator`` without parameters)
and through the differentiable path (``Integrator(..., params=...)``, ``GradientIntegrator``) agrees
to 1e-12 mV in float64; gradients match central differences; a sweep of parameter values traces once;
checkpointing changes nothing but memory; bad input raises the package's errors.
"""
import numpy as np
import pytest
import tensorflow as tf  # a requirement: without it this file fails, it does not skip

from psst_helpers import gradients as G
from psst_helpers import neurons
from psst_helpers.errors import (InputDtypeError, NonFiniteInputError, NonFiniteStateError, ParameterError,
                                 TimeGridError)
from psst_helpers.networks import hh_population, simulate
from psst_helpers.solvers.tf_solver import Integrator

I_INJ = np.array([3.0, 10.0])  # uA/cm^2: one neuron spikes rarely, one often
DT, N_STEPS = 0.025, 400       # 10 ms
T = DT * np.arange(N_STEPS + 1)
NAMES = ["g_Na", "g_K", "g_L"]


def hh_dict(y, t, p):
    """HH on a dict state {V, m, h, n} with its parameters as inputs: the shared right-hand side."""
    return dict(zip("Vmhn", G.hh_rhs([y[k] for k in "Vmhn"], t, p)))


def rest_state(V0=-70.0, n=2):
    return dict(zip("Vmhn", [x.numpy() for x in G.hh_rest_state(V0, [n])]))


def params(**over):
    return {**neurons.HH, **over, "I_ext": I_INJ}  # numbers, arrays or tensors: the Integrator converts them


@pytest.fixture(scope="module")
def sim():
    return Integrator(hh_dict, record="V")


def test_forward_and_differentiable_paths_agree(sim):
    y0 = rest_state()
    # the forward path as chapters 3-7 use it: a network model (spike bookkeeping, held input) via simulate
    model = hh_population(I_INJ)
    start = {**model.initial_state, **y0}
    V_net = simulate(model, T, y0=start)["V"]
    # the differentiable path: parameters as inputs of the same loop, and chapter 8's configuration
    V_par = sim(y0, T, params=params()).numpy()
    V_gi = G.GradientIntegrator(G.hh_rhs, n_steps=N_STEPS, dt=DT)(G.hh_rest_state(-70.0, [2]),
                                                                  G.hh_params([2], I_ext=I_INJ)).numpy()
    assert V_par.shape == (N_STEPS + 1, 2) and V_par[0].tolist() == [-70.0, -70.0]  # t0 recorded
    assert np.max(V_net) > 20.0  # spikes: the comparison covers the fast part of the orbit
    assert np.max(np.abs(V_par - V_net)) <= 1e-12
    assert np.max(np.abs(V_gi - V_net[1:])) <= 1e-12
    # and the plain forward loop with the parameters baked in
    p = params()
    V_plain = Integrator(lambda y, t: hh_dict(y, t, p), record="V")(y0, T).numpy()
    assert np.max(np.abs(V_par - V_plain)) <= 1e-12


def test_gradient_matches_central_differences_and_value_and_gradient(sim):
    y0 = rest_state()
    target = sim(y0, T, params=params()).numpy() + 1.0

    def loss_fn(V):
        return G.mse(V, target)

    g0 = {"g_Na": 120.0, "g_K": 8.0, "g_L": 0.2}
    p = {k: tf.constant(v, tf.float64) for k, v in g0.items()}
    with tf.GradientTape() as tape:
        tape.watch(list(p.values()))
        loss = loss_fn(sim(y0, T, params=params(**p)))
    taped = tape.gradient(loss, p)
    value, grads = sim.value_and_gradient(loss_fn, y0, T, params=params(**g0), wrt=NAMES)
    assert float(value) == pytest.approx(float(loss), rel=1e-12)
    for k in NAMES:
        h = 1e-4 * g0[k]
        fd = (float(loss_fn(sim(y0, T, params=params(**{**g0, k: g0[k] + h}))))
              - float(loss_fn(sim(y0, T, params=params(**{**g0, k: g0[k] - h}))))) / (2 * h)
        assert abs(float(taped[k]) - fd) / abs(fd) < 1e-5, (k, float(taped[k]), fd)
        assert float(grads[k]) == pytest.approx(float(taped[k]), rel=1e-9)


def test_a_sweep_of_parameter_values_traces_once():
    sim = Integrator(hh_dict, record="V")
    y0 = rest_state()
    for g_K in np.linspace(6.0, 14.0, 5):
        sim(y0, T, params=params(g_K=g_K))
    assert sim.traces == 1
    # with gradients: the backward function is traced once more, whatever the values
    for g_K in np.linspace(6.0, 14.0, 3):
        p = params(g_K=tf.constant(g_K, tf.float64))
        with tf.GradientTape() as tape:
            tape.watch(p["g_K"])
            V_end = sim(y0, T, params=p)[-1, 0]
        assert tape.gradient(V_end, p["g_K"]) is not None
    assert sim.traces == 2


@pytest.mark.slow  # about a minute here (three XLA compilations); test_gradients.py checks the same fast
def test_checkpointing_changes_memory_not_results(sim):
    y0 = rest_state()
    chk = Integrator(hh_dict, record="V", checkpoint_every=50)
    p = params(g_K=9.0)
    V = sim(y0, T, params=p).numpy()
    # value_and_gradient's records come from the loop that gradients flow through (chunked here)
    rec_plain, g_plain = sim.value_and_gradient(tf.identity, y0, T, params=p, wrt=NAMES)
    rec_chk, g_chk = chk.value_and_gradient(tf.identity, y0, T, params=p, wrt=NAMES)
    assert np.max(np.abs(rec_chk.numpy() - V)) <= 1e-12
    assert np.max(np.abs(rec_plain.numpy() - V)) <= 1e-12
    for k in NAMES:
        np.testing.assert_allclose(float(g_chk[k]), float(g_plain[k]), rtol=1e-9)
    # gradients with respect to the start state through the checkpointed backward pass
    grads = []
    for integ in (sim, chk):
        v0 = {k: tf.constant(x) for k, x in y0.items()}
        with tf.GradientTape() as tape:
            tape.watch(v0["V"])
            loss = tf.reduce_sum(integ(v0, T, params=p)[-1])
        grads.append(tape.gradient(loss, v0["V"]).numpy())
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-9)


@pytest.mark.slow  # about a minute here (three XLA compilations); test_gradients.py checks the same fast
def test_gradients_through_a_network_model_with_its_hooks():
    """A network model's own derivative and post-step functions, differentiated w.r.t. a conductance in its state."""
    model = hh_population(I_INJ)
    integ = Integrator(lambda y, t, p: model.derivatives(y, t), post_step=model.post_step, record=("V",), every=3)
    t = T[:201]  # 200 steps: the last 2 after the last record (every does not divide the steps)

    def loss(y0):
        V = integ(y0, t, params={})["V"]
        return tf.reduce_mean((V - 0.0) ** 2)

    y0 = tf.nest.map_structure(tf.constant, {**model.initial_state, **rest_state(-65.0)})
    g_K = y0["par"]["membrane"]["g_K"]
    with tf.GradientTape() as tape:
        tape.watch(g_K)
        value = loss(y0)
    grad = float(tape.gradient(value, g_K))

    def at(g):
        y = tf.nest.map_structure(lambda x: x, y0)
        y["par"]["membrane"]["g_K"] = tf.constant(g, tf.float64)
        return float(loss(y))

    h = 1e-4 * float(g_K)
    fd = (at(float(g_K) + h) - at(float(g_K) - h)) / (2 * h)
    assert abs(grad - fd) / abs(fd) < 1e-5, (grad, fd)


def test_bad_inputs_raise_the_package_errors(sim):
    y0 = rest_state()
    with pytest.raises(InputDtypeError):
        sim({k: np.array([1, 2]) for k in "Vmhn"}, T, params=params())
    with pytest.raises(TimeGridError):
        sim(y0, T[::-1], params=params())
    with pytest.raises(InputDtypeError):
        sim(y0, np.arange(10), params=params())
    with pytest.raises(ParameterError, match="g_K"):
        sim(y0, T, params={**params(), "g_K": "ten"})
    with pytest.raises(NonFiniteInputError, match="g_Na"):
        sim(y0, T, params=params(g_Na=np.nan))
    with pytest.raises(ParameterError, match="not in params"):
        sim.value_and_gradient(tf.reduce_sum, y0, T, params=params(), wrt=["g_Ca"])
    with pytest.raises(ParameterError, match="checkpoint_every=7 must divide"):
        Integrator(hh_dict, record="V", checkpoint_every=7)(y0, T, params=params())
    with pytest.raises(ParameterError, match="multiple of every=4"):
        Integrator(hh_dict, record="V", every=4, checkpoint_every=10)
    with pytest.raises(ParameterError, match="positive integer"):
        Integrator(hh_dict, checkpoint_every=0)


def test_a_blow_up_is_named_on_the_differentiable_path():
    def grows(y, t, p):
        return {"x": p["k"] * y["x"] * y["x"]}  # x' = k x^2 blows up at t = 1/(k x0)

    integ = Integrator(grows, xla=False)
    t = 0.01 * np.arange(301)
    with pytest.raises(NonFiniteStateError) as err:
        integ({"x": np.array([1.0])}, t, params={"k": 1.0})
    assert err.value.variable == "['x']" and 90 <= err.value.step < 300
    assert err.value.partial["x"].shape[0] == err.value.step + 1
    with pytest.raises(NonFiniteStateError):
        integ.value_and_gradient(lambda r: tf.reduce_sum(r["x"]), {"x": np.array([1.0])}, t, params={"k": 1.0})


@pytest.mark.slow
def test_the_gradient_keeps_one_state_per_step_not_every_stage(sim):
    # the backward loop stores the state at the start of each step: one gradient through 10,000 steps of
    # 15 neurons (state 5 x 15 float64 = 600 bytes) needs a few MB; TensorFlow's tape through the loop
    # needed about 35 kB per step (345 MB, chapter 8 section 7) for every stage's intermediates
    n, steps = 15, 10_000
    gi = G.GradientIntegrator(G.hh_rhs, n_steps=steps, dt=0.01)
    p, y0 = G.hh_params([n], I_ext=np.linspace(1.0, 10.0, n)), G.hh_rest_state(-70.0, [n])
    target = tf.constant(np.full((steps, n), -65.0))

    def loss(V):
        return G.mse(V, target)

    gi.value_and_gradient(loss, y0, p, NAMES)  # compile first
    mb, (_, grads) = G.peak_memory(lambda: gi.value_and_gradient(loss, y0, p, NAMES))
    assert all(np.all(np.isfinite(g.numpy())) for g in grads.values())
    assert mb < 60.0, f"{mb:.1f} MB: more than a state per step (6 MB) plus records and working memory"


def test_the_compile_cache_must_come_before_the_first_compilation(sim):
    from psst_helpers.solvers import enable_compile_cache

    sim(rest_state(), T[:3], params=params())  # something is compiled in this process
    with pytest.raises(ParameterError, match="before the first compiled run"):
        enable_compile_cache("/nonexistent/never/created")


@pytest.mark.slow
def test_a_second_process_reads_the_compiled_loop_from_the_cache(tmp_path):
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from psst_helpers.solvers import enable_compile_cache\n"
            "enable_compile_cache(sys.argv[1])\n"
            "from psst_helpers import gradients as G\n"
            "sim = G.GradientIntegrator(G.hh_rhs, n_steps=100, dt=0.025)\n"
            "V = sim(G.hh_rest_state(-70.0, [2]), G.hh_params([2], I_ext=[3.0, 10.0])).numpy()\n"
            "print(repr(float(V.sum())))\n")
    runs = [subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
            for _ in range(2)]
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].stat().st_size > 0  # one compiled loop, written by the first process
    assert runs[0].stdout.splitlines()[-1] == runs[1].stdout.splitlines()[-1]  # the loaded loop gives the same bits


@pytest.mark.parametrize("method", ["euler", "rk2", "midpoint", "rk4"])
def test_stage_weights_are_the_derivative_of_the_step(method):
    # the backward pass of a step uses STAGE_WEIGHTS, the forward pass COMBINE: they must describe one scheme
    from psst_helpers.solvers.schemes import COMBINE, STAGE_NODES, STAGE_WEIGHTS
    w = np.array(STAGE_WEIGHTS[method])
    assert len(w) == len(STAGE_NODES[method]) and np.isclose(w.sum(), 1.0)
    rng = np.random.default_rng(3)
    y, h, k = rng.standard_normal(4), 0.37, rng.standard_normal((len(w), 4))
    k_mid = k[1:-1].sum(axis=0) if len(w) > 2 else np.zeros(4)
    got = COMBINE[method](y, h, k[0], k_mid, k[-1])
    np.testing.assert_allclose(got, y + h * (w[:, None] * k).sum(axis=0), rtol=1e-14, atol=1e-15)
