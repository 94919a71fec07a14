"""Models from components: a reader's own parts work without editing the package, and no compiled
loop is ever shared by models whose structure differs (psst_helpers.components)."""
import threading

import numpy as np
import pytest
import tensorflow as tf
from scipy.integrate import solve_ivp

import psst_helpers as psst
from psst_helpers import networks as nw
from psst_helpers.backend import ops_for
from psst_helpers.channels import Channel, TransientK
from psst_helpers.components import differences, fingerprint
from psst_helpers.errors import ConnectivityError, ParameterError
from psst_helpers.stimuli import Constant, Pulses
from psst_helpers.synapses import GABAB, SynapseGroup, SynapseKind

from hh_reference import PHI, _lin
from reader_parts import Sine


# --- a reader's own stimulus (reader_parts.Sine): the frequency is an attribute, nothing declared -------

def test_a_readers_stimulus_never_runs_in_a_loop_compiled_for_another_frequency():
    # The probe of the issue: 5 Hz, then 80 Hz, through hh_network + simulate(): each equals the NumPy backend.
    t = psst.time_grid(60.0, 0.01)
    for f in (5.0, 80.0, 5.0):
        model = nw.hh_network(2, Sine(2, f))
        tf_run = nw.simulate(model, t)
        np_run = nw.simulate(model, t, backend="numpy")
        assert np.max(np.abs(tf_run["V"] - np_run["V"])) < 1e-9, f
    assert nw.hh_network(2, Sine(2, 5.0)).key == nw.hh_network(2, Sine(2, 5.0)).key
    assert nw.hh_network(2, Sine(2, 5.0)).key != nw.hh_network(2, Sine(2, 80.0)).key
    # a part changed after the model was built is noticed too (the key is derived on every call)
    model = nw.hh_network(2, Sine(2, 5.0))
    before = model.key
    model.parts["stimulus"].frequency = 80.0
    assert model.key != before


def test_the_code_of_a_readers_class_is_part_of_the_structure():
    class Louder(Sine):
        def __call__(self, t, like, inputs=None):
            return 2.0 * super().__call__(t, like, inputs)

    assert fingerprint(Sine(1, 5.0)) != fingerprint(Louder(1, 5.0))


def test_a_part_that_cannot_be_read_never_shares_a_loop():
    class WithLock(Sine):
        def __init__(self, n, frequency):
            super().__init__(n, frequency)
            self.lock = threading.Lock()  # nothing the package can fingerprint

    a, b = WithLock(1, 5.0), WithLock(1, 5.0)
    assert fingerprint(a) == fingerprint(a)
    assert fingerprint(a) != fingerprint(b)


def test_sweeps_of_inputs_share_one_compiled_loop():
    # amplitudes, synaptic and channel conductances are inputs: a sweep over them compiles once
    t = psst.time_grid(5.0, 0.01)
    integ = None
    for amp, g_syn, g_A in [(2.0, 0.1, 1.0), (6.0, 0.5, 3.0), (9.0, 0.9, 0.0)]:
        syn = [SynapseGroup("ach", pre=[0], post=[1], n_neurons=2, g=g_syn),
               SynapseGroup("gabab", pre=[1], post=[0], n_neurons=2, g=g_syn)]
        model = nw.hh_network(2, Pulses(2, [(0, 1.0, 4.0, amp)]), syn, channels=[TransientK(g=g_A)])
        this = nw.integrator_for(model)
        assert integ is None or this is integ
        integ = this
        nw.simulate(model, t)
    assert integ.traces == 1


def test_event_capacity_is_structure_without_clearing_compiled_loops(monkeypatch):
    C = np.zeros((40, 40), dtype=np.int8)
    C[1:, 0] = 1
    a = SynapseGroup.from_matrix("ach", C, product="event")
    monkeypatch.setattr(psst.synapses, "EVENT_CAPACITY", 4)
    b = SynapseGroup.from_matrix("ach", C, product="event")
    assert (a.capacity, b.capacity) == (32, 4)
    assert a.key != b.key


def test_structures_name_what_differs():
    a = nw.hh_network(2, Sine(2, 5.0)).structure()
    b = nw.hh_network(2, Sine(2, 80.0)).structure()
    assert differences(a, b) == ["stimulus.frequency: 5.0 -> 80.0"]


# --- a reader's own channel: an A-current in an HH cell, against SciPy -----------------------------------

class ReadersACurrent(Channel):
    """The transient K current, written from the model reference (not from psst_helpers.neurons)."""

    name = "A"
    gates = ("m", "h")

    def __init__(self, g=10.0, E=-95.0):
        self.g, self.E = g, E

    def gate_derivatives(self, V, gates):
        xp = ops_for(V)
        phi = 3.0 ** ((36.0 - 23.5) / 10.0)
        m_inf = 1.0 / (1.0 + xp.exp(-(V + 60.0) / 8.5))
        h_inf = 1.0 / (1.0 + xp.exp((V + 78.0) / 6.0))
        tau_m = 1.0 / (xp.exp((V + 35.82) / 19.69) + xp.exp(-(V + 79.69) / 12.7) + 0.37) / phi
        Vl = xp.where(V < -63.0, V, 0.0 * V - 63.0)
        tau_h = xp.where(V < -63.0, 1.0 / (xp.exp((Vl + 46.05) / 5.0) + xp.exp(-(Vl + 238.4) / 37.45)) / phi,
                         0.0 * V + 19.0 / phi)
        return {"m": (m_inf - gates["m"]) / tau_m, "h": (h_inf - gates["h"]) / tau_h}

    def current(self, V, gates, g, E):
        return g * gates["m"] ** 4 * gates["h"] * (V - E)


def _hh_a_reference(I, g_A, duration):
    """HH + A-current, plain NumPy from the model reference, DOP853 at rtol 1e-10; exact 0 mV up-crossings."""
    k = len(I)
    phi_a = 3.0 ** ((36.0 - 23.5) / 10.0)

    def rhs(t, X):
        V, m, h, n, mA, hA = (X[i * k:(i + 1) * k] for i in range(6))
        u = V + 50.0
        a_n, b_n = _lin(0.02, 15.0 - u, 5.0), 0.5 * np.exp((10.0 - u) / 40.0)
        a_m, b_m = _lin(0.32, 13.0 - u, 4.0), _lin(0.28, u - 40.0, 5.0)
        a_h, b_h = 0.128 * np.exp((17.0 - u) / 18.0), 4.0 / (np.exp((40.0 - u) / 5.0) + 1.0)
        m_inf, h_inf = 1 / (1 + np.exp(-(V + 60) / 8.5)), 1 / (1 + np.exp((V + 78) / 6))
        tau_m = 1 / (np.exp((V + 35.82) / 19.69) + np.exp(-(V + 79.69) / 12.7) + 0.37) / phi_a
        with np.errstate(over="ignore"):
            tau_h = np.where(V < -63, 1 / (np.exp((V + 46.05) / 5) + np.exp(-(V + 238.4) / 37.45)) / phi_a, 19 / phi_a)
        dV = (I - 100 * m**3 * h * (V - 50) - 10 * n**4 * (V + 95) - 0.15 * (V + 55)
              - g_A * mA**4 * hA * (V + 95))
        gate = lambda x, a, b: (a * (1 - x) - b * x) * PHI  # noqa: E731
        return np.concatenate([dV, gate(m, a_m, b_m), gate(h, a_h, b_h), gate(n, a_n, b_n),
                               (m_inf - mA) / tau_m, (h_inf - hA) / tau_h])

    events = []
    for i in range(k):
        def crossing(t, X, i=i):
            return X[i]
        crossing.direction = 1.0
        events.append(crossing)
    X0 = np.concatenate([np.full(k, -71.0), np.zeros(5 * k)])
    sol = solve_ivp(rhs, (0.0, duration), X0, method="DOP853", rtol=1e-10, atol=1e-10, events=events)
    assert sol.success, sol.message
    return [np.asarray(te) for te in sol.t_events]


def test_an_hh_cell_with_a_readers_a_current_matches_scipy():
    # dt 0.005 ms: tau_h of the A-current jumps at -63 mV (19/phi above, 23.3/phi just below), where RK4
    # drops to first order; at 0.01 ms the spike times drift by up to 0.04 ms over 150 ms, at 0.005 they
    # stay within one step of the exact crossing.
    I, g_A, duration, dt = np.array([6.0, 12.0]), 8.0, 150.0, 0.005
    t = psst.time_grid(duration, dt)
    model = nw.hh_network(2, Constant(I), channels=[ReadersACurrent(g=g_A)])
    out = nw.simulate(model, t)
    ref = _hh_a_reference(I, g_A, duration)
    for i in range(2):
        ours = psst.spike_times(out["V"][:, i], t)[0]
        assert len(ours) == len(ref[i]) >= 3, (i, len(ours), len(ref[i]))
        # our spike time is the start of the step of the crossing: at most one step before it
        lag = ref[i] - ours
        assert np.all(lag >= -1e-4) and np.all(lag <= dt + 1e-4), lag
    # the A-current delays firing: the same cells without it fire earlier
    plain = nw.simulate(nw.hh_network(2, Constant(I)), t)
    assert psst.spike_times(plain["V"][:, 0], t)[0][0] < psst.spike_times(out["V"][:, 0], t)[0][0]
    # the package's TransientK is the same current
    builtin = nw.simulate(nw.hh_network(2, Constant(I), channels=[TransientK(g=g_A)]), t)
    assert np.max(np.abs(builtin["V"] - out["V"])) < 1e-9


def test_channels_are_checked():
    with pytest.raises(ParameterError, match="Channel"):
        nw.hh_network(1, Constant([1.0]), channels=[object()])
    with pytest.raises(ParameterError, match="A"):
        nw.hh_network(1, Constant([1.0]), channels=[TransientK(), ReadersACurrent()])


# --- GABA_B: the second messenger, against SciPy -------------------------------------------------------

class SmoothRelease(GABAB):
    """GABA_B kinetics with a smooth transmitter bump (mM) 5 ms after a presynaptic spike: no edge for RK4."""

    def transmitter(self, V, t_fire, t):
        xp = ops_for(V)
        return self.A * xp.exp(-(((t - t_fire - 5.0) / 0.5) ** 2)) + 0.0 * V


def _gabab_runs(kind, dt, T_end, transmitter_of_t, pieces):
    """The package's compiled RK4 for r, s of one presynaptic neuron (spike at 0 ms) and DOP853 (rtol 1e-11)."""
    group = SynapseGroup(kind, pre=[0], post=[1], n_neurons=2)
    V = tf.constant([-60.0, -60.0], tf.float64)
    t_fire = tf.constant([0.0, -1e9], tf.float64)
    t = dt * np.arange(int(round(T_end / dt)) + 1)
    out = psst.odeint(lambda y, tt: {"syn": group.derivative(y["syn"], V, t_fire, tt)},
                      {"syn": group.initial_state()}, t)
    ours = np.stack([out["syn"]["r"][:, 0].numpy(), out["syn"]["s"][:, 0].numpy()], 1)

    def rhs(tt, X):
        T = transmitter_of_t(tt)
        return [kind.K1 * T * (1 - X[0]) - kind.K2 * X[0], kind.K3 * X[0] - kind.K4 * X[1]]

    X, ref = [0.0, 0.0], np.zeros_like(ours)
    for a, b in pieces:
        on = (t >= a) & (t <= b)
        sol = solve_ivp(rhs, (a, b), X, method="DOP853", rtol=1e-11, atol=1e-14, t_eval=t[on])
        ref[on] = sol.y.T
        X = sol.y[:, -1]
    G = group.total_open({"r": out["syn"]["r"][-1], "s": out["syn"]["s"][-1]}).numpy()
    return ours, ref, G


def test_gabab_second_messenger_matches_scipy():
    # r and s of Destexhe et al. (1996), driven by a smooth release so that RK4 keeps its order:
    # the package's compiled loop against DOP853 at rtol 1e-11, to 1e-9 of their peaks.
    kind = SmoothRelease()
    ours, ref, G = _gabab_runs(kind, 0.01, 80.0, lambda tt: kind.A * np.exp(-(((tt - 5.0) / 0.5) ** 2)),
                               [(0.0, 80.0)])
    peak = ref.max(0)
    assert peak[0] > 0.01 and peak[1] > 0.01
    assert np.all(np.max(np.abs(ours - ref), 0) < 1e-9 * peak)
    # the conductance fraction is s^n / (s^n + Kd), of the presynaptic neuron's s
    s = ours[-1, 1]
    assert G[1] == pytest.approx(s ** 4 / (s ** 4 + kind.Kd), rel=1e-12)


def test_gabab_pulse_is_the_model_references_within_the_edge_error():
    # The built-in release is a pulse of A mM while 0 < t - t_fire < t_max (strict, as the model reference
    # says). With its edges on the grid (step 2^-6 ms, t_max 0.25 ms), RK4's stages at the two edges see
    # T = 0, so the pulse counts h/3 short: r after it is within (h/3)/t_max = 2.1 % of the exact value.
    kind, h = GABAB(t_max=0.25), 2.0 ** -6
    ours, ref, _ = _gabab_runs(kind, h, 40.0, lambda tt: kind.A if 0.0 < tt < 0.25 else 0.0,
                               [(0.0, 0.25), (0.25, 40.0)])
    after = slice(int(0.25 / h) + 1, None)
    rel = np.abs(ours[after] - ref[after]) / ref[after]
    assert np.all(rel <= (h / 3) / 0.25 * 1.05), rel.max()
    assert np.all(ours[after] < ref[after])  # short, never long


def test_gabab_inhibits_slowly_in_a_network_and_both_backends_agree():
    # X1 fires at 10 uA/cm^2 onto X2 (at rest) through GABA_B: the G-protein builds up over hundreds of ms
    # (K4 = 0.034/ms, and the conductance needs s^4 against Kd = 100), so X2 is hyperpolarised late, not at once.
    t = psst.time_grid(400.0, 0.01)
    stim = Constant([10.0, 0.0])
    with_b = nw.hh_network(2, stim, [SynapseGroup("gabab", pre=[0], post=[1], n_neurons=2, g=10.0)])
    a = nw.simulate(with_b, t, record=["V", "syn"], every=10)
    b = nw.simulate(nw.hh_network(2, stim), t, every=10)
    c = nw.simulate(with_b, psst.time_grid(20.0, 0.01), backend="numpy", record=["V", "syn"], every=10)
    assert np.max(np.abs(a["V"][: c["V"].shape[0]] - c["V"])) < 1e-9
    tt = t[::10]
    early, late = tt < 50.0, tt > 300.0
    assert abs(np.mean(a["V"][early, 1]) - np.mean(b["V"][early, 1])) < 1.0
    assert np.mean(a["V"][late, 1]) < np.mean(b["V"][late, 1]) - 10.0
    assert a["syn"]["gabab"]["s"][-1, 0] > 1.0


def test_a_readers_synapse_kind():
    class Graded(SynapseKind):
        """A first-order synapse with a linear-threshold transmitter, as a reader would write one."""
        name = "graded"
        variables = ("O",)
        g, E = 0.5, -80.0

        def __init__(self, alpha=2.0, beta=0.1):
            self.alpha, self.beta = alpha, beta

        def transmitter(self, V, t_fire, t):
            xp = ops_for(V)
            return xp.where(V > -40.0, (V + 40.0) / 60.0, 0.0 * V)

        def derivatives(self, x, T):
            return {"O": self.alpha * (1.0 - x["O"]) * T - self.beta * x["O"]}

    t = psst.time_grid(30.0, 0.01)
    model = nw.hh_network(2, Constant([10.0, 0.0]), [SynapseGroup(Graded(), pre=[0], post=[1], n_neurons=2)])
    a = nw.simulate(model, t, record=["V", "syn"])
    b = nw.simulate(model, t, backend="numpy", record=["V", "syn"])
    assert np.max(np.abs(a["V"] - b["V"])) < 1e-9
    assert a["syn"]["graded"].max() > 0.01
    other = nw.hh_network(2, Constant([10.0, 0.0]), [SynapseGroup(Graded(beta=0.2), pre=[0], post=[1], n_neurons=2)])
    assert other.key != model.key


def test_synapse_mistakes_raise_one_class_each():
    with pytest.raises(ParameterError, match="unknown synapse kind 'nmda'"):
        SynapseGroup("nmda", pre=[0], post=[1], n_neurons=2)
    with pytest.raises(ParameterError, match="tau"):
        SynapseGroup("ach", pre=[0], post=[1], n_neurons=2, params={"tau": 1.0})
    with pytest.raises(ConnectivityError, match="5"):
        SynapseGroup("gaba", pre=[5], post=[1], n_neurons=2)
    with pytest.raises(ParameterError, match="event"):
        SynapseGroup("gabab", pre=[0], post=[1], n_neurons=2, product="event")
    with pytest.raises(psst.InputDtypeError, match="float16"):
        nw.hh_network(1, Constant([1.0])).state(np.float16)


@pytest.mark.slow
def test_spike_driven_kinds_split_across_blocks_equal_the_whole_network():
    # any kind with a transmitter pulse (ACh, GABA_B) only needs the spike times exchanged between steps
    from psst_helpers.partition import run_partitioned, split_network

    I = np.array([10.0, 3.0, 0.0, 8.0, 0.0, 6.0])
    syn = [SynapseGroup("ach", pre=[0, 5], post=[3, 2], n_neurons=6),
           SynapseGroup("gabab", pre=[3, 0], post=[1, 4], n_neurons=6, g=10.0)]
    t = psst.time_grid(60.0, 0.01)
    whole = nw.simulate(nw.hh_network(6, Constant(I), syn), t)
    split = run_partitioned(split_network(I, syn, n_blocks=3), t)
    assert np.max(np.abs(split["V"] - whole["V"])) < 1e-9
    assert whole["V"][:, 3].max() > 0.0  # the ACh target fired, so GABA_B released across blocks
    with pytest.raises(ParameterError, match="'gaba'"):
        split_network(I, [SynapseGroup("gaba", pre=[0], post=[1], n_neurons=6)])
