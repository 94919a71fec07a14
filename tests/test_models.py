"""Neuron, synapse and network kernels: independent references, NumPy vs TensorFlow, physics checks."""
import numpy as np
import pytest
import tensorflow as tf  # a requirement: without it this file fails, it does not skip

import psst_helpers as psst
from psst_helpers import networks as nw
from psst_helpers import neurons as nrn
from psst_helpers.stimuli import Constant
from psst_helpers.synapses import SynapseGroup

from hh_reference import spike_times as reference_spike_times

T200 = psst.time_grid(200.0, 0.01)


@pytest.fixture(scope="module")
def single_runs():
    m = nw.single_neuron(5.0)
    rec = ("V", "t_fire", "spikes")
    return (nw.simulate(m, T200, backend="numpy", record=rec), nw.simulate(m, T200, backend="tensorflow", record=rec))


def test_single_neuron_numpy_and_tensorflow_agree(single_runs):
    a, b = single_runs
    # Same kernel, same scheme, same float64 arithmetic up to operation order: 1e-9 mV over 20,000 steps.
    assert np.max(np.abs(a["V"] - b["V"])) < 1e-9
    assert a["spikes"][-1, 0] == b["spikes"][-1, 0] == 12


def test_single_neuron_spike_times_match_scipy_reference(single_runs):
    V = single_runs[1]["V"][:, 0]
    ours = psst.spike_times(V, T200)[0]
    ref = reference_spike_times([5.0])[0]
    assert len(ours) == len(ref) == 12
    # our spike time is the start of the step in which V crosses 0 mV: never after the exact
    # crossing, and at most one step (0.01 ms) before it, plus 1e-4 ms for the RK4 error of V.
    lag = ref - ours
    assert np.all(lag >= -1e-4) and np.all(lag <= 0.01 + 1e-4), lag


def test_spike_tracker_follows_the_rule(single_runs):
    out = single_runs[1]
    times = psst.spike_times(out["V"][:, 0], T200)[0]
    # t_fire after the last recorded step is the start time of the step of the last crossing
    assert out["t_fire"][-1, 0] == pytest.approx(times[-1], abs=1e-12)
    assert out["spikes"][-1, 0] == len(times)
    assert out["t_fire"][0, 0] == nw.NEVER_FIRED


def test_f_i_curve_counts_equal_scipy_reference():
    I = np.linspace(0.0, 10.0, 20)
    out = nw.simulate(nw.hh_population(I), T200, record=("spikes",), every=len(T200) - 1)
    ours = out["spikes"][-1].astype(int)
    ref = np.array([len(s) for s in reference_spike_times(I)])
    np.testing.assert_array_equal(ours, ref)
    assert ours[0] == 0 and ours[-1] > 10  # silent at I = 0, regular firing at I = 10


def test_rates_are_finite_at_removable_singularities_in_float32():
    # u = c exactly: V = -35 (alpha_n), -37 (alpha_m), -10 (beta_m) mV
    V = np.array([-35.0, -37.0, -10.0], dtype=np.float32)
    for r in (nrn.hh_rates(V), {k: v.numpy() for k, v in nrn.hh_rates(tf.constant(V)).items()}):
        for k, v in r.items():
            assert np.all(np.isfinite(v)), k
    r = nrn.hh_rates(V.astype(np.float64))
    assert r["alpha_n"][0] == pytest.approx(0.02 * 5.0)
    assert r["alpha_m"][1] == pytest.approx(0.32 * 4.0)
    assert r["beta_m"][2] == pytest.approx(0.28 * 5.0)
    # continuity across the singular point: the value just beside it agrees with the limit
    near = nrn.hh_rates(np.array([-35.0 + 1e-7, -35.0 + 1e-3]))["alpha_n"]
    assert np.allclose(near, 0.1, rtol=1e-3)


def test_float32_network_started_on_the_singular_points_stays_finite():
    # V = -35, -37 and -10 mV exactly are 0/0 points of alpha_n, alpha_m and beta_m: the naive rate
    # formula gives NaN there in the very first evaluation; the package's kernel must not.
    V0 = np.array([-35.0, -37.0, -10.0], dtype=np.float32)
    with np.errstate(invalid="ignore"):
        naive = 0.02 * (15.0 - (V0 + 50.0)) / (np.exp((15.0 - (V0 + 50.0)) / 5.0) - 1.0)
    assert np.isnan(naive[0])  # the hazard is real in float32
    model = nw.hh_network(3, Constant(np.zeros(3)), V0=V0)
    out = nw.simulate(model, psst.time_grid(1.0, 0.01), dtype=np.float32, record=("V", "m", "n"))
    assert out["V"].dtype == np.float32
    for k, v in out.items():
        assert np.all(np.isfinite(v)), k


def _exprel_inv_exact(x):
    """x / expm1(x), exact to well under an ulp of x's dtype: in long double where it has a 64-bit
    mantissa (x86), else with mpmath; float32 needs only float64 (29 spare bits)."""
    if x.dtype == np.float32:
        xe = x.astype(np.float64)
    elif np.finfo(np.longdouble).nmant >= 63:
        xe = x.astype(np.longdouble)
    else:
        mpmath = pytest.importorskip("mpmath", reason="no extended precision for a float64 reference")
        mpmath.mp.prec = 113
        return np.array([1.0 if v == 0 else mpmath.mpf(float(v)) / mpmath.expm1(float(v)) for v in x], np.longdouble)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(xe == 0, 1.0, xe / np.expm1(xe))


def _ulp_grid(dtype):
    """Every float within 2,000 ulp of each side of +-0.5 and +-_EXPREL_SWITCH, a 1e-5 grid over [-3, 3],
    and a wide range from -1e4 to just below exp's overflow, plus 0 and +-1e-30."""
    top = 88.0 if dtype == np.float32 else 709.0
    x = [np.linspace(-3.0, 3.0, 600_001), np.linspace(-60.0, 60.0, 120_001), np.linspace(-1e4, top, 100_001),
         [0.0, 1e-30, -1e-30]]
    for c in {0.5, nrn._EXPREL_SWITCH}:
        for s in (c, -c):
            for direction in (np.inf, -np.inf):
                v = dtype(s)
                near = [v]
                for _ in range(2000):
                    v = np.nextafter(v, dtype(direction))
                    near.append(v)
                x.append(near)
    return np.concatenate([np.asarray(p, dtype=dtype) for p in x])


# Measured max error on this grid: float64 2.2 (NumPy) / 2.4 (TF) ulp, float32 3.7 (NumPy) / 2.9 (TF) ulp;
# with the switch at 0.5 (before) float32 NumPy reached 4.8 ulp at x = 0.50112, so the bound of 4 can fail.
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exprel_inv_is_within_4_ulp_across_its_switch_points(dtype):
    x = _ulp_grid(dtype)
    ref = _exprel_inv_exact(x)
    ulp = np.spacing(np.abs(ref).astype(dtype)).astype(ref.dtype)
    for backend, got in (("numpy", nrn.exprel_inv(x)), ("tensorflow", nrn.exprel_inv(tf.constant(x)).numpy())):
        assert got.dtype == dtype
        err = np.abs(got.astype(ref.dtype) - ref) / ulp
        i = int(np.argmax(err))
        assert err[i] <= 4.0, (backend, float(err[i]), float(x[i]))


# --- synapses and the three-neuron network ---------------------------------------------------------------

def test_synapse_group_from_matrix_and_from_indices_agree():
    C = np.zeros((4, 4), int)
    C[1, 0] = C[2, 1] = C[3, 1] = 1
    V = np.array([-10.0, 0.0, -60.0, -70.0])
    for storage in ("pre", "synapse"):
        a = SynapseGroup.from_matrix("gaba", C, storage=storage)
        b = SynapseGroup("gaba", pre=[0, 1, 1], post=[1, 2, 3], n_neurons=4, storage=storage)
        assert a.size == b.size == 3
        np.testing.assert_array_equal(a.matrix(), C)
        O = np.array([0.1, 0.3]) if storage == "pre" else np.array([0.1, 0.3, 0.3])
        np.testing.assert_allclose(a.current(O, V), b.current(O, V))
        # current into neuron 3 = g (V3 - E) * O of the synapse 1 -> 3
        assert b.current(O, V)[3] == pytest.approx(0.8 * (-70.0 + 70.0) * 0.3)
        assert b.current(O, V)[2] == pytest.approx(0.8 * (-60.0 + 70.0) * 0.3)
    with pytest.raises(ValueError, match="indices must lie"):
        SynapseGroup("ach", pre=[5], post=[0], n_neurons=4)
    with pytest.raises(ValueError, match="2-D"):
        SynapseGroup.from_matrix("ach", np.zeros(3))


def test_synapse_state_grows_with_sources_or_synapses_not_n_squared():
    n = 2000
    rng = np.random.default_rng(0)
    pre, post = rng.integers(0, n, 20_000), rng.integers(0, n, 20_000)
    per_syn = nw.hh_network(n, Constant(np.zeros(n)),
                            [SynapseGroup("gaba", pre=pre, post=post, n_neurons=n, storage="synapse")])
    per_pre = nw.hh_network(n, Constant(np.zeros(n)), [SynapseGroup("gaba", pre=pre, post=post, n_neurons=n)])
    assert per_syn.initial_state["syn"]["gaba"].shape == (20_000,)
    assert per_pre.initial_state["syn"]["gaba"].shape == (np.unique(pre).size,)


@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
@pytest.mark.parametrize("storage,product", [("synapse", "auto"), ("pre", "dense"), ("pre", "sparse")])
def test_synapse_group_matches_a_direct_computation(backend, storage, product):
    rng = np.random.default_rng(1)
    n, S, t = 60, 1200, 10.0
    pre, post = rng.integers(0, n, S), rng.integers(0, n, S)
    V = rng.uniform(-80, 40, n)
    # spike times before the 0.3 ms window, inside it, and after t: the ACh transmitter is both on and off
    t_fire = rng.uniform(9.0, 10.2, n)
    for kind in ("ach", "gaba"):
        group = SynapseGroup(kind, pre=pre, post=post, n_neurons=n, g=rng.uniform(0.1, 1.0, n),
                             storage=storage, product=product)
        assert group.dense == (product == "dense")
        p = group.params
        src = pre if storage == "synapse" else group.sources
        O = rng.random(src.size)
        if kind == "ach":
            T = np.where((t > t_fire[src]) & (t < t_fire[src] + p["t_max"]), p["A"], 0.0)
            assert 0 < np.count_nonzero(T) < T.size
        else:
            T = 1.0 / (1.0 + np.exp(-(V[src] - p["V0"]) / p["sigma"]))
        want_dO = p["alpha"] * (1 - O) * T - p["beta"] * O
        O_syn = O if storage == "synapse" else O[np.searchsorted(group.sources, pre)]
        want_I = group.g * (V - group.E) * np.bincount(post, weights=O_syn, minlength=n)
        args = (O, V, t_fire, np.float64(t))
        if backend == "tensorflow":
            args = tuple(tf.constant(a, tf.float64) for a in args)
        np.testing.assert_allclose(np.asarray(group.derivative(*args)), want_dO, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(np.asarray(group.current(args[0], args[1])), want_I, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def three():
    t = psst.time_grid(700.0, 0.01)
    model = nw.three_neuron_network()
    tf_out = nw.simulate(model, t, record=("V", "syn", "I_ext"))
    return t, tf_out


def test_three_neuron_network_x2_follows_x1(three):
    t, out = three
    st = psst.spike_times(out["V"], t)
    assert len(st[0]) > 10, "X1 must fire during the current pulses"
    for s in st[0]:
        later = st[1][(st[1] > s) & (st[1] <= s + 5.0)]
        assert later.size >= 1, f"X1 spike at {s} ms not followed by an X2 spike within 5 ms"
    assert len(st[2]) == 0  # X3 gets only inhibition


def test_three_neuron_network_inhibition_tracks_x2(three):
    t, out = three
    V2, V3 = out["V"][:, 1], out["V"][:, 2]
    O = out["syn"]["gaba"][:, 0]
    depolarised = V2 > -20.0  # GABA transmitter 1/(1+exp(-(V+20)/1.5)) > 1/2
    dO = np.diff(O)
    opening = depolarised[:-1] & (O[:-1] < 0.9)  # above 0.9 it is near its steady state alpha T/(alpha T + beta)
    assert opening.sum() > 100
    assert np.all(dO[opening] > 0), "the GABA_A synapse must open whenever X2 is depolarised"
    # 50 ms (8 closing time constants 1/beta) after X2 was last above -45 mV (transmitter < 1e-7)
    # the synapse is shut
    last = -np.inf
    quiet = np.zeros_like(depolarised)
    for i, v in enumerate(V2):
        last = t[i] if v > -45.0 else last
        quiet[i] = t[i] - last > 50.0
    assert np.max(O[quiet]) < 1e-3
    assert np.max(O) > 0.5
    # X3 is hyperpolarised below its resting potential while the synapse is open
    rest = V3[(t > 50) & (t < 100)].mean()
    assert V3[O > 0.5].min() < rest - 1.0


def test_three_neuron_network_backends_agree_and_input_is_step_held(three):
    t, out = three
    t_short = psst.time_grid(120.0, 0.01)
    a = nw.simulate(nw.three_neuron_network(), t_short, backend="numpy", record=("V", "I_ext"))
    np.testing.assert_allclose(a["V"], out["V"][: len(t_short)], atol=1e-9)
    # the input switches on exactly at 100 ms (t = 100 is the first step that sees it)
    i100 = int(round(100.0 / 0.01))
    assert a["I_ext"][i100 - 1, 0] == 0.0 and a["I_ext"][i100, 0] == 2.5


# --- the locust antennal lobe -----------------------------------------------------------------------------

def test_locust_same_seed_same_model_and_trajectory():
    a, b, c = nw.locust_antennal_lobe(7), nw.locust_antennal_lobe(7), nw.locust_antennal_lobe(8)
    for k in ("C_ach", "C_gaba", "stimulated"):
        np.testing.assert_array_equal(a.arrays[k], b.arrays[k])
    assert not np.array_equal(a.arrays["C_gaba"], c.arrays["C_gaba"])
    tf.nest.assert_same_structure(a.initial_state, b.initial_state)
    for x, y in zip(tf.nest.flatten(a.initial_state), tf.nest.flatten(b.initial_state)):
        np.testing.assert_array_equal(x, y)
    # the trajectory: the compiled run of one against the NumPy solver's run of the other (float64, only
    # the order of operations differs: 1e-9 mV over 300 steps)
    t = psst.time_grid(3.0, 0.01)
    ra, rb = nw.simulate(a, t, every=10), nw.simulate(b, t, every=10, backend="numpy")
    assert np.max(np.abs(ra["V"] - rb["V"])) < 1e-9


def test_locust_connectivity_statistics():
    m = nw.locust_antennal_lobe(3)
    C_ach, C_gaba = m.arrays["C_ach"], m.arrays["C_gaba"]
    assert C_ach[:, :90][:90].sum() == 0 and C_ach[:, 90:].sum() == 0  # PN -> LN only
    assert C_gaba[:, :90].sum() == 0 and np.trace(C_gaba) == 0  # from LNs, no self-connection
    assert abs(C_ach.sum() / (90 * 30) - 0.5) < 0.05
    assert abs(C_gaba.sum() / (30 * 119) - 0.5) < 0.05
    assert len(m.arrays["stimulated"]) == 39
    # one open fraction per presynaptic neuron: the PNs with at least one ACh synapse
    assert m.initial_state["syn"]["ach"].shape == (np.count_nonzero(C_ach.any(axis=0)),)
    assert m.initial_state["syn"]["gaba"].shape == (np.count_nonzero(C_gaba.any(axis=0)),)


def test_locust_explicit_inputs_are_honoured():
    base = nw.locust_antennal_lobe(1)
    C_ach = np.zeros((120, 120), int)
    C_ach[95, 3] = 1
    y0 = base.state()
    y0["V"] = np.full(120, -65.0)
    y0["syn"]["ach"] = np.zeros(1)
    m = nw.locust_antennal_lobe(1, C_ach=C_ach, stimulated=[0, 1, 2], initial_state=y0)
    np.testing.assert_array_equal(m.arrays["C_ach"], C_ach)
    np.testing.assert_array_equal(m.arrays["stimulated"], [0, 1, 2])
    np.testing.assert_array_equal(m.initial_state["V"], -65.0)
    with pytest.raises(ValueError, match="shape"):
        nw.locust_antennal_lobe(1, C_gaba=np.zeros((10, 10)))


def test_locust_backends_agree():
    m = nw.locust_antennal_lobe(2)
    t = psst.time_grid(2.0, 0.01)
    a = nw.simulate(m, t, backend="numpy", record=None)
    b = nw.simulate(m, t, record=None)
    np.testing.assert_allclose(a["V"], b["V"], atol=1e-9)
    np.testing.assert_allclose(a["ln"]["Ca"], b["ln"]["Ca"], rtol=1e-9)


def test_locust_parameter_jitter_is_opt_in_and_reproducible():
    plain, again = nw.locust_antennal_lobe(4), nw.locust_antennal_lobe(4, g_KL_jitter=0.0)
    np.testing.assert_array_equal(plain.arrays["g_KL"], again.arrays["g_KL"])
    assert set(np.unique(plain.arrays["g_KL"])) == {0.05, 0.02}
    a, b = nw.locust_antennal_lobe(4, g_KL_jitter=0.2), nw.locust_antennal_lobe(4, g_KL_jitter=0.2)
    np.testing.assert_array_equal(a.arrays["g_KL"], b.arrays["g_KL"])
    assert np.all(a.arrays["g_KL"] >= 0) and np.std(a.arrays["g_KL"][:90]) > 0
    # the draws before the jitter are unchanged, so connectivity and start state stay the same
    np.testing.assert_array_equal(a.arrays["C_gaba"], plain.arrays["C_gaba"])
    np.testing.assert_array_equal(a.initial_state["V"], plain.initial_state["V"])


def _lns_onto_pns(m: nw.Model) -> np.ndarray:
    C = np.zeros((120, 120), np.int8)
    C[:90, 90:] = m.arrays["C_gaba"][:90, 90:]
    return C


def test_locust_added_synapse_group_adds_its_current_and_nothing_else():
    base = nw.locust_antennal_lobe(5)
    C_b = _lns_onto_pns(base)
    gabab = SynapseGroup.from_matrix("gabab", C_b, g=0.4)
    m = nw.locust_antennal_lobe(5, synapses=[gabab])
    np.testing.assert_array_equal(m.arrays["C_gabab"], C_b)
    assert set(m.initial_state["syn"]) == {"ach", "gaba", "gabab"}
    # a state with open second messengers: the derivative differs from the plain model's only by the GABA_B
    # current g (V - E) sum_j C[i, j] s_j^4 / (s_j^4 + Kd), written out here (E = -95 mV, Kd = 100)
    rng = np.random.default_rng(0)
    y = m.state()
    y["V"] = rng.uniform(-80.0, -40.0, 120)
    y["syn"]["gabab"] = {"r": rng.uniform(0, 0.5, 30), "s": rng.uniform(0, 6.0, 30)}
    y_plain = dict(y, syn={k: v for k, v in y["syn"].items() if k != "gabab"},
                   par={**y["par"], "syn": {k: v for k, v in y["par"]["syn"].items() if k != "gabab"}})
    d, d_plain = m.derivatives(y, 0.0), base.derivatives(y_plain, 0.0)
    s4 = y["syn"]["gabab"]["s"] ** 4
    I_b = 0.4 * (y["V"] + 95.0) * (C_b[:, 90:] @ (s4 / (s4 + 100.0)))
    np.testing.assert_allclose(d_plain["V"] - d["V"], I_b, rtol=1e-12, atol=1e-12)
    assert np.all(I_b[90:] == 0) and np.all(I_b[:90] > 0)
    # r and s follow Destexhe et al.'s equations without transmitter (no LN has fired): K1 T = 0
    np.testing.assert_allclose(d["syn"]["gabab"]["r"], -0.0012 * y["syn"]["gabab"]["r"], rtol=1e-14)
    np.testing.assert_allclose(d["syn"]["gabab"]["s"], 0.18 * y["syn"]["gabab"]["r"] - 0.034 * y["syn"]["gabab"]["s"],
                               rtol=1e-14)


def test_locust_added_group_with_zero_conductance_changes_nothing():
    base = nw.locust_antennal_lobe(6)
    m = nw.locust_antennal_lobe(6, synapses=[SynapseGroup.from_matrix("gabab", _lns_onto_pns(base), g=0.0)])
    t = psst.time_grid(150.0, 0.01)
    a, b = nw.simulate(base, t, every=10), nw.simulate(m, t, every=10)
    assert np.max(np.abs(a["V"] - b["V"])) <= 1e-12
    # the compiled loop with the added group against the NumPy solver (same model, operation order only)
    m2 = nw.locust_antennal_lobe(6, synapses=[SynapseGroup.from_matrix("gabab", _lns_onto_pns(base), g=0.5)])
    t2 = psst.time_grid(3.0, 0.01)
    np.testing.assert_allclose(nw.simulate(m2, t2, every=10)["V"], nw.simulate(m2, t2, every=10, backend="numpy")["V"],
                               atol=1e-9)


def test_locust_added_groups_are_checked():
    from psst_helpers.errors import ConnectivityError, ParameterError
    C = _lns_onto_pns(nw.locust_antennal_lobe(0))
    with pytest.raises(ParameterError, match="one SynapseGroup per kind"):
        nw.locust_antennal_lobe(0, synapses=[SynapseGroup.from_matrix("gaba", C)])
    with pytest.raises(ConnectivityError, match="60"):
        nw.locust_antennal_lobe(0, synapses=[SynapseGroup.from_matrix("gabab", np.zeros((60, 60)))])
    with pytest.raises(ParameterError, match="SynapseGroup"):
        nw.locust_antennal_lobe(0, synapses=[C])
