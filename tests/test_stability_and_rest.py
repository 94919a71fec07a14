"""What chapters 1 and 3 rely on: the solvers' stability limits and blow-up report, and the HH resting state.

Chapter 1 teaches that one step of Euler multiplies y' = lambda y by 1 + z and one step of RK4 by
1 + z + z^2/2 + z^3/6 + z^4/24 (z = lambda dt), so that on the negative real axis Euler is stable for
-2 <= z <= 0 and RK4 for about -2.7853 <= z <= 0 (Hairer & Wanner, vol. II, section IV.2), and that a run
which blows up stops with a NonFiniteStateError naming the step and the time. Chapter 3 starts its neurons
at the resting state where the steady-state current vanishes.
"""
import math

import numpy as np
import pytest
from scipy.optimize import brentq

import psst_helpers as psst
from psst_helpers import networks, neurons

RK4_BOUNDARY = -2.785293563405282  # the real root of |1 + z + z^2/2 + z^3/6 + z^4/24| = 1 below -2


def test_rk4_boundary_constant_is_the_root_of_the_stability_polynomial():
    R = lambda z: 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    root = brentq(lambda z: R(z) - 1, -3.0, -2.0, xtol=1e-15)
    assert abs(root - RK4_BOUNDARY) < 1e-12


@pytest.mark.parametrize("method, z_stable, z_unstable", [("euler", -1.99, -2.01),
                                                           ("rk4", RK4_BOUNDARY + 0.01, RK4_BOUNDARY - 0.01)])
def test_decay_equation_is_stable_exactly_inside_the_interval(method, z_stable, z_unstable):
    lam, n = -10.0, 400
    for z, should_decay in ((z_stable, True), (z_unstable, False)):
        dt = z / lam
        t = dt * np.arange(n + 1)
        y = psst.odeint_np(lambda y, t: lam * y, np.array([1.0]), t, method=method)[:, 0]
        decays = abs(y[-1]) < 1.0
        assert decays == should_decay, f"{method} at z = {z}: |y| after {n} steps is {abs(y[-1]):.3g}"


def test_blow_up_is_reported_with_its_step_and_time():
    # Euler at z = -2.5 multiplies y by -1.5 per step, y_k = (-1.5)^k. The first value to overflow is the
    # derivative -10 y_k, at the first k with 10 * 1.5^k > the largest double: step k (steps count from 0).
    lam, dt = -10.0, 0.25
    k = math.floor((math.log(np.finfo(np.float64).max) - math.log(10.0)) / math.log(1.5)) + 1
    t = dt * np.arange(k + 50)
    with pytest.raises(psst.NonFiniteStateError) as info:
        psst.odeint_np(lambda y, t: lam * y, np.array([1.0]), t, method="euler")
    err = info.value
    assert err.step == k
    assert err.t == pytest.approx(t[k])
    assert f"during step {k} " in str(err) and "dt = 0.25" in str(err)
    # the records made before the blow-up: y_0 ... y_k, finite and equal to (-1.5)^j
    assert err.partial.shape == (k + 1, 1)
    assert np.allclose(err.partial[:, 0], (-1.5) ** np.arange(k + 1), rtol=1e-12)


def _steady_current(V):
    ss = neurons.hh_steady_state(V)
    I_Na, I_K, I_L = neurons.hh_currents(V, ss["m"][0], ss["h"][0], ss["n"][0])
    return I_Na + I_K + I_L


def test_hh_resting_state_is_a_fixed_point_of_the_package_model():
    V_rest = brentq(_steady_current, -90.0, -50.0, xtol=1e-12)
    ss = neurons.hh_steady_state(np.array(V_rest))
    model = networks.hh_population([0.0])
    state = model.state()
    state.update(V=np.array([V_rest]), **{g: np.array([float(ss[g][0])]) for g in "mhn"})
    d = model.derivatives(state, 0.0)
    assert max(abs(float(d[k][0])) for k in "Vmhn") < 1e-12
    # at rest the sodium and potassium conductances are tiny, so the leak sets V: within 0.05 mV of E_L
    assert abs(V_rest - neurons.HH["E_L"]) < 0.05


def test_euler_on_the_neuron_at_0_1_ms_blows_up_and_names_the_step():
    t = psst.time_grid(40.0, 0.1)
    with pytest.raises(psst.NonFiniteStateError) as info:
        networks.simulate(networks.single_neuron(5.0), t, backend="numpy", method="euler", record=("V",))
    err = info.value
    assert f"during step {err.step}" in str(err) and 0 < err.step < len(t) - 1
    assert np.all(np.isfinite(err.partial["V"]))
