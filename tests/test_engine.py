"""The network engine: synapse storage and products, the locust kernels against an independent reference,
time kept in float64, compiled loops reused across calls and sweeps, and bad input refused at the door."""
import numpy as np
import pytest
import tensorflow as tf  # a requirement: without it this file fails, it does not skip

import psst_helpers as psst
from psst_helpers import networks as nw
from psst_helpers.errors import InputDtypeError, NonFiniteInputError
from psst_helpers.stimuli import Constant, LocustOdor, OnGrid, Pulses
from psst_helpers.synapses import SynapseGroup

from locust_reference import ln_rhs, pn_rhs, spike_times as reference_spike_times


# --- one open fraction per presynaptic neuron ---------------------------------------------------------------

def test_per_presynaptic_and_per_synapse_storage_agree_on_the_locust():
    # exact in exact arithmetic (synapses leaving one neuron share O(t)); in float64 only the order of the
    # sums differs: the bound of 1e-9 mV over 200 ms (20,000 steps) leaves room for that rounding alone
    t = psst.time_grid(200.0, 0.01)
    runs = {s: nw.simulate(nw.locust_antennal_lobe(0, storage=s), t, record=("V", "spikes"), every=10)
            for s in ("pre", "synapse")}
    assert runs["pre"]["spikes"][-1].sum() > 0  # the comparison covers spiking, coupled activity
    assert np.max(np.abs(runs["pre"]["V"] - runs["synapse"]["V"])) <= 1e-9
    model = nw.locust_antennal_lobe(0)
    C_ach = model.arrays["C_ach"]
    assert model.initial_state["syn"]["ach"].size == np.count_nonzero(C_ach.any(axis=0)) < C_ach.sum()


def test_dense_and_sparse_products_give_the_same_network():
    rng = np.random.default_rng(5)
    n = 40
    C = (rng.random((n, n)) < 0.2) & ~np.eye(n, dtype=bool)
    t = psst.time_grid(30.0, 0.01)
    out = {}
    for product in ("dense", "sparse"):
        exc = np.arange(n) < 20  # the first 20 neurons excite, the others inhibit
        groups = [SynapseGroup.from_matrix("ach", C & exc[None, :], product=product),
                  SynapseGroup.from_matrix("gaba", C & ~exc[None, :], product=product)]
        assert all(g.dense == (product == "dense") for g in groups)
        model = nw.hh_network(n, Constant(np.linspace(4.0, 12.0, n)), groups)
        out[product] = nw.simulate(model, t, record=("V", "syn"))
    assert np.max(np.abs(out["dense"]["V"] - out["sparse"]["V"])) < 1e-10
    assert np.max(out["dense"]["syn"]["ach"]) > 0.1


def _event_network(product, n=120, seed=11):
    rng = np.random.default_rng(seed)
    C = (rng.random((n, n)) < 0.1) & ~np.eye(n, dtype=bool)
    exc = np.arange(n) < int(0.8 * n)
    groups = [SynapseGroup.from_matrix("ach", C & exc[None, :], g=0.35 * 10 / (0.1 * exc.sum()), product=product),
              SynapseGroup.from_matrix("gaba", C & ~exc[None, :], g=0.8 * 5 / (0.1 * (~exc).sum()))]
    return nw.hh_network(n, Constant(rng.uniform(5.0, 10.0, n)), groups, V0=rng.uniform(-75.0, -55.0, n)), C & exc[None, :]


def test_event_product_carries_the_summed_open_fraction_and_gives_the_same_network(monkeypatch):
    # product="event" integrates s_i = sum_j C[i, j] O_j alongside O: the same equations, only the sums are
    # taken at other moments, so the voltages agree to rounding (bound: 1e-8 mV over 100 ms, 10,000 steps)
    t = psst.time_grid(100.0, 0.01)
    out = {}
    for product in ("sparse", "event"):
        model, C_ach = _event_network(product)
        ach = model.params["synapses"][0]
        assert ach["product"] == product
        out[product] = nw.simulate(model, t, record=("V", "syn", "spikes"), every=10)
    assert out["event"]["spikes"][-1].sum() > 100               # busy, coupled activity
    assert np.max(np.abs(out["event"]["V"] - out["sparse"]["V"])) <= 1e-8
    k = int(C_ach.any(axis=0).sum())                               # sources; then one sum per neuron
    O_src, s = out["event"]["syn"]["ach"][:, :k], out["event"]["syn"]["ach"][:, k:]
    C_src = C_ach[:, C_ach.any(axis=0)].astype(float)
    assert np.max(s) > 0.5 and np.max(np.abs(s - O_src @ C_src.T)) <= 1e-12
    # more releasing sources than the compiled capacity: that evaluation sums over every synapse instead
    # (the capacity is part of the group's structure: no clear_compiled() needed for a loop of its own)
    monkeypatch.setattr(psst.synapses, "EVENT_CAPACITY", 1)
    model = _event_network("event")[0]
    assert nw.integrator_for(model, record=("V",), every=10).traces == 0
    few = nw.simulate(model, t, record=("V",), every=10)["V"]
    assert np.max(np.abs(few - out["event"]["V"])) <= 1e-8


def test_event_product_numpy_and_tensorflow_agree_and_start_from_the_summed_start_values():
    group = SynapseGroup("ach", pre=[0, 0, 2, 2, 3], post=[1, 3, 0, 1, 1], n_neurons=4,
                         O0=[0.2, 0.2, 0.5, 0.5, 0.1], product="event")
    assert group.event and group.state_size == 3 + 4
    np.testing.assert_allclose(group.initial_state(), [0.2, 0.5, 0.1, 0.5, 0.8, 0.0, 0.2])
    V = np.array([-60.0, 10.0, -50.0, 20.0])
    t_fire = np.array([0.95, -1e9, 0.9, 0.5])                      # neurons 0 and 2 release at t = 1 ms
    y = group.initial_state()
    want = group.derivative(y, V, t_fire, 1.0)
    got = group.derivative(tf.constant(y), tf.constant(V), tf.constant(t_fire), tf.constant(1.0, tf.float64))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-14)
    a, b, A = 10.0, 0.2, 0.5
    dO = a * (1 - y[:3]) * np.array([A, A, 0.0]) - b * y[:3]
    np.testing.assert_allclose(want[:3], dO, rtol=1e-14)
    C = np.zeros((4, 3)); C[[1, 3, 0, 1, 1], [0, 0, 1, 1, 2]] = 1
    np.testing.assert_allclose(want[3:], C @ dO, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(group.current(y, V), group.g * (V - group.E) * y[3:])


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_event_sum_in_a_compiled_function_is_exact_in_every_case(monkeypatch, delay):
    # The compiled sum visits only the sources that fired within t_delay + t_max of the latest firing,
    # and falls back to every synapse when that would not be exact. Each case against NumPy's sum over
    # the releasing sources: a few releasing (visited), none releasing for a while (nothing to add), more
    # candidates than the capacity, and a firing time in the future of t (then older firings may still
    # release; a state can start like that).
    monkeypatch.setattr(psst.synapses, "EVENT_CAPACITY", 4)
    rng = np.random.default_rng(3)
    n = 40
    C = (rng.random((n, n)) < 0.3) & ~np.eye(n, dtype=bool)
    group = SynapseGroup.from_matrix("ach", C, product="event", params={"t_delay": delay})
    k = group.sources.size
    y = np.concatenate([rng.random(k), np.zeros(n)])
    y[k:] = C[:, group.sources].astype(float) @ y[:k]
    V = rng.uniform(-70.0, 20.0, n)
    f = tf.function(lambda y_, tf_, t_: group.derivative(y_, tf.constant(V), tf_, t_), jit_compile=True)
    t = 50.0
    old = np.full(n, -1e9)
    cases = {
        "a few releasing": np.where(np.arange(n) < 3, t - delay - 0.1, old),
        "nothing for a while": np.where(np.arange(n) < 10, t - delay - 5.0, old),
        "more than the capacity": np.where(np.arange(n) < 12, t - delay - 0.1 * rng.random(n), old),
        "a firing in the future": np.where(np.arange(n) < 2, t - delay - 0.1, np.where(np.arange(n) == 5, t + 3.0, old)),
        "the window's edges": np.array([t - delay, t - delay - 0.3, t - delay - 0.2999999] + [-1e9] * (n - 3)),
    }
    for name, t_fire in cases.items():
        want = group.derivative(y, V, t_fire, t)
        got = f(tf.constant(y), tf.constant(t_fire), tf.constant(t, tf.float64)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15, err_msg=name)
    assert np.any(cases["a few releasing"] > -1e8) and np.abs(want[k:]).max() > 0


def test_event_product_is_refused_where_the_transmitter_is_never_zero():
    with pytest.raises(ValueError, match="product='event'.*kind 'gaba'"):
        SynapseGroup("gaba", pre=[0], post=[1], n_neurons=2, product="event")
    with pytest.raises(ValueError, match="storage 'pre'"):
        SynapseGroup("ach", pre=[0], post=[1], n_neurons=2, product="event", storage="synapse")


def test_per_presynaptic_storage_refuses_start_values_that_differ_within_a_neuron():
    with pytest.raises(ValueError, match=r"neuron 1 .*0\.2 and 0\.3"):
        SynapseGroup("gaba", pre=[0, 1, 1], post=[1, 2, 3], n_neurons=4, O0=[0.1, 0.2, 0.3])
    same = SynapseGroup("gaba", pre=[0, 1, 1], post=[1, 2, 3], n_neurons=4, O0=[0.1, 0.3, 0.3])
    np.testing.assert_array_equal(same.initial_state(), [0.1, 0.3])
    per_syn = SynapseGroup("gaba", pre=[0, 1, 1], post=[1, 2, 3], n_neurons=4, O0=[0.1, 0.2, 0.3], storage="synapse")
    np.testing.assert_array_equal(per_syn.initial_state(), [0.1, 0.2, 0.3])


# --- the locust's two cell types against scipy.integrate.solve_ivp ------------------------------------------

@pytest.mark.parametrize("cell,amp,dt,y0", [
    # the PN's A-current switches its tau_h discontinuously at -63 mV, which costs RK4 its order: at
    # dt = 0.01 ms the fifth crossing is off by 0.016 ms, at 0.005 ms by 4e-4 ms; the PN is checked at 0.005
    ("PN", 10.0, 0.005, [-70.0, 0, 0, 0, 0, 0]),
    ("LN", 5.0, 0.01, [-70.0, 0, 0, 0, 0, 2.4e-4]),
])
def test_locust_cell_spike_times_match_scipy(cell, amp, dt, y0):
    pulse = (20.0, 120.0, amp)
    ref = reference_spike_times(pn_rhs if cell == "PN" else ln_rhs, y0, pulse, 150.0)
    sizes = {"n_pn": 1, "n_ln": 0} if cell == "PN" else {"n_pn": 0, "n_ln": 1}
    model = nw.locust_antennal_lobe(0, **sizes, C_ach=np.zeros((1, 1)), C_gaba=np.zeros((1, 1)), noise=0.0,
                                    stimulus=Pulses(1, [(0, *pulse)]))
    t = psst.time_grid(150.0, dt)
    ours = psst.spike_times(nw.simulate(model, t)["V"], t)[0]
    assert len(ref) >= 3 and len(ours) == len(ref)
    # our spike time is the start of the step of the crossing: never after it, at most 0.02 ms before
    lag = ref - ours
    assert np.all(lag >= 0.0) and np.all(lag <= 0.02), lag


# --- time in float64 ---------------------------------------------------------------------------------------

def _pulsed_pair(t0: float):
    """X1 -(ACh)-> X2 -(GABA_A)-> X3 with 5 ms pulses into X1 every 20 ms, starting at t0."""
    pulses = [(0, t0 + 5.0 + 20.0 * k, t0 + 10.0 + 20.0 * k, 15.0) for k in range(3)]
    groups = [SynapseGroup("ach", pre=[0], post=[1], n_neurons=3, g=[0.0, 2.0, 0.0]),
              SynapseGroup("gaba", pre=[1], post=[2], n_neurons=3)]
    model = nw.hh_network(3, Pulses(3, pulses + [(2, t0, t0 + 70.0, 8.0)]), groups)
    return model, t0 + 0.01 * np.arange(7001)


def test_float32_network_far_from_time_zero_keeps_exact_spike_times():
    # float32 spacing at 2e5 ms is 0.0156 ms: as coarse as the step and the 0.3 ms transmitter window.
    # Time and spike times are kept in float64, so a float32 run at t0 = 2e5 ms is the run at t0 = 0
    # shifted (to one step: the grid's own float64 rounding can move a pulse edge by one step).
    runs = {}
    for t0 in (0.0, 2e5):
        model, t = _pulsed_pair(t0)
        out = nw.simulate(model, t, dtype=np.float32, record=("V", "t_fire"))
        assert out["V"].dtype == np.float32 and out["t_fire"].dtype == np.float64
        fired = out["t_fire"][-1] > nw.NEVER_FIRED
        assert fired.all()
        # t_fire is the start time of a step: exactly a point of the grid
        assert np.all(np.isin(out["t_fire"][-1], t))
        runs[t0] = psst.spike_times(out["V"], t)
    a, b = runs[0.0], runs[2e5]
    assert [len(s) for s in a] == [len(s) for s in b] and len(a[1]) >= 3  # X2 follows X1 through ACh
    for x, y in zip(a, b):
        np.testing.assert_allclose(y - 2e5, x, atol=0.01 + 1e-6)
    # with the spike times in float32 (what the book did before), they fall off the grid by up to
    # half of float32's spacing there
    model, t = _pulsed_pair(2e5)
    y0 = model.state(np.float32)
    y0["t_fire"] = y0["t_fire"].astype(np.float32)
    out = psst.odeint(model.derivatives, y0, t, post_step=model.post_step, record=("t_fire",))
    coarse = out["t_fire"].numpy()[-1]
    assert coarse.dtype == np.float32
    coarse = coarse.astype(np.float64)
    off_grid = np.min(np.abs(coarse[:, None] - t[None, :]), axis=1)
    assert np.max(off_grid) > 1e-3


# --- compile once --------------------------------------------------------------------------------------------

def test_second_simulate_of_a_model_does_not_retrace():
    model = nw.three_neuron_network()
    t = psst.time_grid(20.0, 0.01)
    first = nw.simulate(model, t)
    integ = nw.integrator_for(model)
    assert integ.traces == 1
    model2 = nw.three_neuron_network()  # a new object with the same structure
    again = nw.simulate(model2, t)
    assert integ.traces == 1
    # the reused compiled loop computes this model's run: against the NumPy solver, not against itself
    reference = nw.simulate(model2, t, backend="numpy")["V"]
    assert np.max(np.abs(again["V"] - reference)) < 1e-9 and np.max(np.abs(first["V"] - reference)) < 1e-9


def test_a_sweep_of_currents_and_conductances_compiles_once():
    t = psst.time_grid(30.0, 0.01)
    currents = np.linspace(0.0, 10.0, 20)
    counts = []
    for I in currents:
        model = nw.hh_population(np.full(3, I))
        counts.append(nw.simulate(model, t, record=("spikes",))["spikes"][-1, 0])
    assert nw.integrator_for(nw.hh_population(np.zeros(3)), record=("spikes",)).traces == 1
    assert counts[0] == 0 and counts[-1] > counts[len(counts) // 2] > 0  # each run used its own current
    # conductances and stimulus amplitudes are inputs too: every value agrees with the NumPy solver
    for g in (0.0, 2.0):
        ach = SynapseGroup("ach", pre=[0], post=[1], n_neurons=2, g=g)
        model = nw.hh_network(2, Pulses(2, [(0, 2.0, 8.0, 10.0 + g)]), [ach])
        got = nw.simulate(model, t)["V"]
        np.testing.assert_allclose(got, nw.simulate(model, t, backend="numpy")["V"], atol=1e-9)
    assert nw.integrator_for(model).traces == 1


def test_on_grid_input_takes_the_step_that_contains_t():
    values = np.arange(10, dtype=float)[None, :]  # step k has value k
    stim = OnGrid(values, dt=0.1)
    assert stim(0.36, np.zeros(1))[0] == 3.0  # floor, not the nearest step (4)
    assert stim(0.3 - 1e-13, np.zeros(1))[0] == 3.0  # float rounding just below a grid point
    assert stim(0.3 - 1e-6, np.zeros(1))[0] == 2.0
    assert float(stim(tf.constant(0.36, tf.float64), tf.zeros(1, tf.float64))[0]) == 3.0


# --- bad input is refused before integrating ------------------------------------------------------------------

@pytest.mark.parametrize("bad", [2, -1, 0.5, 1.7, 256])
def test_connectivity_must_be_zero_or_one(bad):
    C = np.zeros((4, 4))
    C[2, 1] = bad
    with pytest.raises(ValueError, match=r"C\[2, 1\] = "):
        SynapseGroup.from_matrix("ach", C)
    C_big = np.zeros((120, 120))
    C_big[100, 3] = bad
    with pytest.raises(ValueError, match=r"C\[100, 3\]"):
        nw.locust_antennal_lobe(0, C_ach=C_big)


def test_self_connections_only_when_asked():
    C = np.zeros((3, 3), int)
    C[1, 1] = 1
    with pytest.raises(ValueError, match="neuron 1 to itself"):
        SynapseGroup.from_matrix("gaba", C)
    assert SynapseGroup.from_matrix("gaba", C, allow_self=True).size == 1


@pytest.mark.parametrize("targets,message", [([-1], "outside"), ([0.5], "whole"), ([3, 3], "listed 2 times"),
                                             ([120], "outside")])
def test_stimulated_neurons_are_checked(targets, message):
    with pytest.raises(ValueError, match=message):
        nw.locust_antennal_lobe(0, stimulated=targets)
    with pytest.raises(ValueError, match=message):
        LocustOdor(120, targets)


def test_synapse_group_rejects_unknown_parameters_and_wrong_lengths():
    with pytest.raises(ValueError, match="'tau'"):
        SynapseGroup("ach", pre=[0], post=[1], n_neurons=2, params={"tau": 1.0})
    with pytest.raises(ValueError, match=r"g must .*\(2\).*\(3,\)"):
        SynapseGroup("ach", pre=[0], post=[1], n_neurons=2, g=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="whole neuron indices"):
        SynapseGroup("ach", pre=[0.5], post=[1], n_neurons=2)


def test_non_finite_inputs_are_refused_naming_the_entry():
    model = nw.three_neuron_network()
    y0 = model.state()
    y0["V"][2] = np.nan
    with pytest.raises(NonFiniteInputError, match=r"\['V'\]\[2\]"):
        nw.simulate(model, psst.time_grid(1.0, 0.01), y0=y0)
    y0 = model.state()
    y0["par"]["syn"]["ach"]["g"][1] = np.inf
    with pytest.raises(NonFiniteInputError, match=r"\['par'\]\['syn'\]\['ach'\]\['g'\]\[1\]"):
        nw.simulate(model, psst.time_grid(1.0, 0.01), y0=y0, backend="numpy")
    with pytest.raises(ValueError, match="current.*nan.*1"):
        Constant([1.0, np.nan])
    with pytest.raises(ValueError, match="finite"):
        nw.hh_network(1, Constant([1.0]), params={"g_Na": np.nan})


def test_float16_is_refused():
    with pytest.raises(TypeError, match="float16"):
        nw.simulate(nw.single_neuron(), psst.time_grid(1.0, 0.01), dtype=np.float16)
    with pytest.raises(InputDtypeError, match="float16"):
        psst.odeint_np(lambda y, t: -y, np.ones(2, np.float16), psst.time_grid(1.0, 0.1))


# --- a progress bar for simulate() ------------------------------------------------------------------------

def test_simulate_with_a_progress_bar_gives_the_uninterrupted_run_to_the_bit(capsys):
    model = nw.three_neuron_network()
    t = psst.time_grid(60.0, 0.01)                                    # 6,000 steps: pieces of 300
    one = nw.simulate(model, t, record=("V", "spikes"), every=7, return_final=True)   # 7 does not divide 300
    pieces = nw.simulate(model, t, record=("V", "spikes"), every=7, return_final=True, progress=True)
    for a, b in zip(one, pieces):
        for key in ("V", "spikes"):
            np.testing.assert_array_equal(a[key], b[key])
    assert "simulated: 100%" in capsys.readouterr().err


def test_a_blow_up_in_a_later_piece_names_the_step_of_the_whole_grid():
    # 30 ms at 0.01 ms, then steps of 2 ms, far too large for RK4 on an HH neuron: it blows up there
    t = np.concatenate([psst.time_grid(30.0, 0.01), 30.0 + 2.0 * np.arange(1, 40)])
    errors = {}
    for progress in (False, True):
        with pytest.raises(psst.NonFiniteStateError) as err:
            nw.simulate(nw.single_neuron(10.0), t, progress=progress)
        errors[progress] = err.value
    assert errors[True].step == errors[False].step >= 3000
    assert f"during step {errors[False].step} " in str(errors[True])
    np.testing.assert_array_equal(errors[True].partial["V"], np.asarray(errors[False].partial["V"]))
