"""The locust's two cell types as configurations of channels (psst_helpers.channels.CellType): the state
layout of chapter 6 unchanged, the currents against the model reference written apart, and a reader's own
channel given to the LNs or the PNs without editing the package, checked against SciPy."""
import numpy as np
import pytest

import psst_helpers as psst
from psst_helpers import networks as nw
from psst_helpers.backend import ops_for
from psst_helpers.channels import CalciumActivatedK, CalciumPool, CellType, Channel, HHPotassium, Leak, TransientK
from psst_helpers.errors import ParameterError
from psst_helpers.stimuli import Constant, Pulses

from locust_reference import ln_rhs, pn_rhs, spike_times as reference_spike_times


class SlowK(Channel):
    """A reader's slow (M-type) potassium current, I = g w (V - E), with tau_w up to tau_max ms.

    tau_max is a plain attribute: structure, so a new value compiles a loop of its own."""

    name = "M"
    gates = ("w",)

    def __init__(self, g=0.02, E=-95.0, tau_max=400.0):
        self.g, self.E, self.tau_max = g, E, tau_max

    @staticmethod
    def w_inf(V, xp):
        return 1.0 / (1.0 + xp.exp(-(V + 35.0) / 10.0))

    def start(self, V):
        return {"w": self.w_inf(np.asarray(V, float), np)}  # open as at rest, not closed

    def gate_derivatives(self, V, gates):
        xp = ops_for(V)
        tau = self.tau_max / (3.3 * xp.exp((V + 35.0) / 20.0) + xp.exp(-(V + 35.0) / 20.0))
        return {"w": (self.w_inf(V, xp) - gates["w"]) / tau}

    def current(self, V, gates, g, E):
        return g * gates["w"] * (V - E)


def _slow_k_reference(rhs, g, E=-95.0, tau_max=400.0):
    """``rhs`` (tests/locust_reference.py) with the slow K current and its gate appended, plain NumPy."""
    def with_m(t, y, I_of_t):
        V, w = y[0], y[-1]
        out = list(rhs(t, y[:-1], I_of_t))
        out[0] -= g * w * (V - E)
        w_inf = 1.0 / (1.0 + np.exp(-(V + 35.0) / 10.0))
        tau = tau_max / (3.3 * np.exp((V + 35.0) / 20.0) + np.exp(-(V + 35.0) / 20.0))
        return out + [(w_inf - w) / tau]
    return with_m


def _one_cell(cell, stimulus, **kw):
    sizes = {"n_pn": 1, "n_ln": 0} if cell == "PN" else {"n_pn": 0, "n_ln": 1}
    return nw.locust_antennal_lobe(0, **sizes, C_ach=np.zeros((1, 1)), C_gaba=np.zeros((1, 1)), noise=0.0,
                                   stimulus=stimulus, **kw)


# --- the layout chapter 6 reads, and the two cell types as channels ----------------------------------------

def test_the_cell_types_keep_the_state_and_parameter_names():
    m = nw.locust_antennal_lobe(0)
    y = m.initial_state
    assert set(y["pn"]) == {"m", "h", "n", "mA", "hA"} and set(y["ln"]) == {"n", "mCa", "hCa", "mKCa", "Ca"}
    for cell in ("PN", "LN"):
        assert {k: float(v) for k, v in y["par"]["membrane"][cell].items()} == nw.LOCUST[cell]
    np.testing.assert_array_equal(y["par"]["g_KL"], np.r_[np.full(90, 0.05), np.full(30, 0.02)])
    pn, ln = m.parts["cell_types"]
    assert [c.name for c in pn.channels] == ["Na", "K", "L", "A", "KL"]  # the order the currents are summed in
    assert [c.name for c in ln.channels] == ["Ca", "K", "KCa", "L", "KL", "pool"]
    assert pn.variables() == ["m", "h", "n", "mA", "hA"] and ln.variables() == ["mCa", "hCa", "n", "mKCa", "Ca"]


def test_the_cell_types_give_the_model_reference_currents_and_derivatives():
    # every neuron at a random state, no synapses: the derivative equals tests/locust_reference.py's (NumPy)
    k = 6
    none = np.zeros((2 * k, 2 * k))
    m = nw.locust_antennal_lobe(0, n_pn=k, n_ln=k, C_ach=none, C_gaba=none, stimulus=Constant(np.linspace(0, 5, 2 * k)))
    rng = np.random.default_rng(3)
    y = m.state()
    y["V"] = rng.uniform(-90.0, 30.0, 2 * k)
    for key in ("pn", "ln"):
        for name in y[key]:
            y[key][name] = rng.uniform(0.0, 1.0, k)
    d = m.derivatives(y, 0.0)
    for i in range(k):
        ref = pn_rhs(0.0, [y["V"][i]] + [y["pn"][g][i] for g in ("m", "h", "n", "mA", "hA")], lambda t: y["I_ext"][i])
        ours = [d["V"][i]] + [d["pn"][g][i] for g in ("m", "h", "n", "mA", "hA")]
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)
        j = k + i
        ref = ln_rhs(0.0, [y["V"][j]] + [y["ln"][g][i] for g in ("n", "mCa", "hCa", "mKCa", "Ca")],
                     lambda t: y["I_ext"][j])
        ours = [d["V"][j]] + [d["ln"][g][i] for g in ("n", "mCa", "hCa", "mKCa", "Ca")]
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12)


# --- a reader's own channel -------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,amp,dt,y0", [
    # dt as in test_engine.py's check of the plain cells: the PN's A-current needs 0.005 ms
    ("LN", 5.0, 0.01, [-70.0, 0, 0, 0, 0, 2.4e-4]),
    ("PN", 10.0, 0.005, [-70.0, 0, 0, 0, 0, 0]),
])
def test_a_readers_slow_k_channel_matches_scipy(cell, amp, dt, y0):
    g = 0.02 if cell == "LN" else 0.1
    pulse, t_end = (20.0, 220.0, amp), 250.0
    w0 = 1.0 / (1.0 + np.exp(-(-70.0 + 35.0) / 10.0))
    ref = reference_spike_times(_slow_k_reference(pn_rhs if cell == "PN" else ln_rhs, g), [*y0, w0], pulse, t_end)
    added = {"pn_channels" if cell == "PN" else "ln_channels": [SlowK(g=g)]}
    model = _one_cell(cell, Pulses(1, [(0, *pulse)]), **added)
    key = cell.lower()
    assert model.initial_state[key]["wM"] == pytest.approx(w0, rel=1e-15)
    assert float(model.initial_state["par"]["membrane"][cell]["g_M"]) == g
    t = psst.time_grid(t_end, dt)
    out = nw.simulate(model, t, record=("V", key))
    ours = psst.spike_times(out["V"], t)[0]
    assert len(ref) >= 2 and len(ours) == len(ref), (ours, ref)
    # our spike time is the start of the step of the crossing: never after it, at most 0.02 ms before
    lag = ref - ours
    assert np.all(lag >= 0.0) and np.all(lag <= 0.02), lag
    # the channel adapts the cell: without it the same cell fires more often
    plain = psst.spike_times(nw.simulate(_one_cell(cell, Pulses(1, [(0, *pulse)])), t)["V"], t)[0]
    assert len(plain) > len(ours)
    assert out[key]["wM"].max() > 2 * w0


def test_a_readers_channel_with_zero_conductance_changes_nothing():
    t = psst.time_grid(150.0, 0.01)
    base = nw.simulate(nw.locust_antennal_lobe(2), t, every=10)
    m = nw.locust_antennal_lobe(2, pn_channels=[SlowK(g=0.0)])
    assert set(m.initial_state["pn"]) == {"m", "h", "n", "mA", "hA", "wM"} and "wM" not in m.initial_state["ln"]
    assert set(m.initial_state["par"]["membrane"]["PN"]) - set(nw.LOCUST["PN"]) == {"g_M", "E_M"}
    np.testing.assert_array_equal(nw.simulate(m, t, every=10)["V"], base["V"])
    # the compiled loop with the reader's channel against the NumPy solver (operation order only)
    m2 = nw.locust_antennal_lobe(2, ln_channels=[SlowK(g=0.5)])
    t2 = psst.time_grid(3.0, 0.01)
    np.testing.assert_allclose(nw.simulate(m2, t2, every=10)["V"], nw.simulate(m2, t2, every=10, backend="numpy")["V"],
                               atol=1e-9)


def test_a_readers_channel_is_swept_as_an_input_and_its_attributes_are_structure():
    t = psst.time_grid(2.0, 0.01)
    integ, runs = None, []
    for g in (0.0, 0.5, 2.0):
        model = nw.locust_antennal_lobe(1, ln_channels=[SlowK(g=g)])
        this = nw.integrator_for(model)
        assert integ is None or this is integ
        integ = this
        runs.append(nw.simulate(model, t, record=("V",))["V"])
    assert integ.traces == 1 and not np.array_equal(runs[0], runs[2])
    # tau_max is structure: another value gets its own loop, whose run is the NumPy solver's
    slow, fast = (nw.locust_antennal_lobe(1, ln_channels=[SlowK(g=2.0, tau_max=x)]) for x in (400.0, 4.0))
    assert slow.key != fast.key and nw.integrator_for(fast) is not integ
    np.testing.assert_allclose(nw.simulate(fast, t)["V"], nw.simulate(fast, t, backend="numpy")["V"], atol=1e-9)
    assert not np.allclose(nw.simulate(fast, t)["V"], runs[2])


# --- what is refused -------------------------------------------------------------------------------------

class Clash(SlowK):
    name = "N2"

    def state_names(self):
        return {"w": "n"}  # the HH potassium gate's name


def test_cell_types_refuse_channels_that_do_not_fit():
    with pytest.raises(ParameterError, match="own name"):
        nw.locust_antennal_lobe(0, ln_channels=[HHPotassium()])
    with pytest.raises(ParameterError, match="state name 'n'"):
        nw.locust_antennal_lobe(0, pn_channels=[Clash()])
    with pytest.raises(ParameterError, match="Channel"):
        nw.locust_antennal_lobe(0, ln_channels=[object()])
    with pytest.raises(ParameterError, match="reads"):
        CellType("X", [Leak("L"), CalciumActivatedK()])  # no calcium pool to read [Ca] from
    with pytest.raises(ParameterError, match="reads"):
        CellType("X", [Leak("L"), CalciumPool("Ca")])  # no calcium current
    # an HH network gives a channel only its own gates
    with pytest.raises(ParameterError, match="cell type"):
        nw.hh_network(1, Constant([1.0]), channels=[CalciumActivatedK()])
    # a start state without the added channel's gates
    with pytest.raises(ParameterError, match="wM"):
        nw.locust_antennal_lobe(0, ln_channels=[SlowK()], initial_state=nw.locust_antennal_lobe(0).state())


def test_the_built_in_transient_k_is_one_class_in_both_builders():
    pn, _ = nw.locust_cell_types()
    assert type(pn.channels[3]) is TransientK and pn.channels[3].state_names() == {"m": "mA", "h": "hA"}
