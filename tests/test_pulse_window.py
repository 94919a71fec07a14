"""The transmitter pulse (ACh, GABA_B) lasts the same whole number of steps after every spike.

The pulse is ``A`` while ``0 < t - t_fire - t_delay < t_max``. ``t_fire`` is a step's start and RK
stages fall on a step's start, middle and end, so with ``t_max`` (and ``t_delay``) a multiple of the
step the pulse's edges fall on stage times. A plain float comparison there decided by rounding:
on ``0.01 * arange(100001)`` 10.9 % of spike times got the end stage (and the next step's start)
inside, h/3 more transmitter. These tests check the rule at every spike time of long grids, through
the transmitter itself, through both integrators (float32 and float64 states) and in a network.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import psst_helpers as psst
from psst_helpers import networks as nw
from psst_helpers.solvers.schemes import rk4_step
from psst_helpers.stimuli import Constant
from psst_helpers.synapses import GABAB, PULSE_EDGE_TOLERANCE_MS, Cholinergic, SynapseGroup

T_MAX = 0.3


def _stages(tt: np.ndarray, i: np.ndarray) -> list:
    """The three distinct stage times of step ``i`` as the solvers compute them: t0, t0 + h/2, t0 + h."""
    h = tt[i + 1] - tt[i]
    return [tt[i], tt[i] + 0.5 * h, tt[i] + h]


@pytest.mark.parametrize("dt", [0.01, 0.025, 0.005])
@pytest.mark.parametrize("delay_steps", [0, 7])
@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pulse_covers_the_same_stages_after_every_spike(dt, delay_steps, backend, dtype):
    # Spikes at every grid point of 1000 ms and of a stretch near 1e5 ms (27.8 hours): stage m (in half
    # steps after t_fire + t_delay) sees transmitter exactly when 0 < m < 2N, N = t_max/dt steps.
    n_steps = int(round(T_MAX / dt))
    kind = Cholinergic(t_delay=delay_steps * dt)
    for t0, duration in ((0.0, 1000.0), (1.0e5, 20.0)):
        tt = psst.time_grid(duration + 2.0, dt, t0=t0)
        spikes = np.arange(0, tt.size - n_steps - delay_steps - 3)
        t_fire = tt[spikes]
        V = np.zeros(spikes.size, dtype)
        for k in range(delay_steps - 1, delay_steps + n_steps + 1):
            for half, t in enumerate(_stages(tt, spikes + k)):
                m = 2 * (k - delay_steps) + half
                if backend == "numpy":
                    T = kind.transmitter(V, t_fire, t)
                else:
                    T = kind.transmitter(tf.constant(V), tf.constant(t_fire), tf.constant(t)).numpy()
                assert T.dtype == dtype
                want = kind.A if 0 < m < 2 * n_steps else 0.0
                wrong = np.flatnonzero(T != want)
                assert wrong.size == 0, (
                    f"{wrong.size} of {spikes.size} spikes (first at t_fire = {t_fire[wrong[0]]!r} ms) see "
                    f"T = {T[wrong[0]]} at {m} half steps after the release began, want {want}")


def _pulse_integral(backend: str, dtype, dt: float, t0: float, n_spikes: int, kind) -> tuple:
    """Integrate dX/dt = T(t) on a grid for ``n_spikes`` neurons that fired at consecutive grid points."""
    n_steps = int(round((kind.t_delay + kind.t_max) / dt))
    tt = psst.time_grid((n_spikes + n_steps + 3) * dt, dt, t0=t0)
    t_fire = tt[1:n_spikes + 1]
    y0 = {"X": np.zeros(n_spikes, dtype), "t_fire": t_fire}

    def f(y, t):
        return {"X": kind.transmitter(y["X"], y["t_fire"], t), "t_fire": None}

    if backend == "numpy":
        X = psst.odeint_np(f, y0, tt, record="X")[-1]
    else:
        X = psst.odeint(f, y0, tt, record="X")[-1].numpy()
    return np.asarray(X), t_fire


@pytest.mark.parametrize("backend", ["numpy", "tensorflow"])
@pytest.mark.parametrize("dtype,rtol", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("t0", [0.0, 731.0, 1.0e5])
def test_every_spike_releases_the_same_amount_through_the_integrators(backend, dtype, rtol, t0):
    # With t_fire held from the step it names (no detection step lost) the RK4 quadrature of the pulse is
    # (N - 1/3) h for every spike: the stages strictly inside, 5/6 of each end step. One stage more at the
    # end (the old coin toss) gives N h, 1/(3N) = 1.1 % more, far outside the float32 tolerance.
    dt = 0.01
    for kind in (Cholinergic(), Cholinergic(t_delay=0.05), GABAB(t_max=0.25)):
        X, t_fire = _pulse_integral(backend, dtype, dt, t0, 1500, kind)
        N = int(round(kind.t_max / dt))
        want = kind.A * (N - 1.0 / 3.0) * dt
        # the grid's steps h_i = t[i+1] - t[i] carry the rounding of t (a unit in the last place of t per step)
        tol = rtol + 4 * np.spacing(t0 + 100.0) / dt
        bad = np.flatnonzero(~np.isclose(X, want, rtol=tol, atol=0.0))
        assert bad.size == 0, (f"{type(kind).__name__}: {bad.size} of {X.size} spikes released a different "
                               f"amount, e.g. {X[bad[0]]} (want {want}) after t_fire = {t_fire[bad[0]]!r}")


def test_backends_agree_on_the_pulse_at_every_spike_time():
    # The NumPy and TensorFlow integrators give the same pulse after each spike (float64, to rounding).
    kind = Cholinergic()
    a, _ = _pulse_integral("numpy", np.float64, 0.01, 250.0, 800, kind)
    b, _ = _pulse_integral("tensorflow", np.float64, 0.01, 250.0, 800, kind)
    np.testing.assert_allclose(a, b, rtol=1e-14, atol=0.0)


def test_tolerance_is_far_from_both_the_rounding_and_the_half_step():
    # The margin must exceed the rounding of t - t_fire at the largest times a network reaches here
    # (1e7 ms: spacing 1.9e-9 ms) and stay below half of any step the book uses (0.0025 ms).
    assert 100 * np.spacing(1.0e7) < PULSE_EDGE_TOLERANCE_MS < 0.0025 / 100
    # just inside each edge (by more than the margin) the pulse is on; on the edge itself it is off
    kind = Cholinergic()
    t_fire = np.array([100.0])
    V = np.zeros(1)
    for since, on in ((0.0, False), (2e-6, True), (T_MAX - 2e-6, True), (T_MAX, False),
                      (np.nextafter(T_MAX, 0.0), False), (np.nextafter(T_MAX, 1.0), False)):
        assert (kind.transmitter(V, t_fire, 100.0 + since)[0] == kind.A) == on, since


@pytest.mark.slow
def test_a_networks_synapse_receives_the_same_pulse_after_every_spike():
    # A neuron driven at 10 uA/cm^2 fires ~70 times in 1000 ms onto a second through ACh with beta = 0 and a
    # small alpha: each spike raises O by alpha A (1 - O) L (1 - a L/2 ...), L the transmitter's duration.
    # The spike's own step is taken before t_fire is set, so L = (N - 7/6) h for every spike; the old coin
    # toss gave (N - 5/6) h to 10.9 % of spike times.
    dt, alpha = 0.01, 1e-3
    N = int(round(T_MAX / dt))
    group = SynapseGroup("ach", pre=[0], post=[1], n_neurons=2, g=1e-3, params={"alpha": alpha, "beta": 0.0})
    model = nw.hh_network(2, Constant([10.0, 0.0]), [group])
    t = psst.time_grid(1000.0, dt)
    out = nw.simulate(model, t, record=["syn", "spikes"])
    O = out["syn"]["ach"][:, 0]
    fired = np.flatnonzero(np.diff(out["spikes"][:, 0]) > 0)  # step j: the crossing happened in [t_j, t_j+1]
    assert fired.size > 50
    fired = fired[fired + N + 2 < t.size]
    before, after = O[fired + 1], O[fired + N + 2]
    L = (after - before) / (alpha * Cholinergic().A * (1.0 - before))
    a_L = alpha * Cholinergic().A * (N - 7 / 6) * dt
    np.testing.assert_allclose(L, (N - 7 / 6) * dt * (1 - a_L / 2), rtol=1e-6)
    # the NumPy integrator gives the same run (first 100 ms, float64)
    short = psst.time_grid(100.0, dt)
    ref = nw.simulate(model, short, backend="numpy", record=["syn"])
    np.testing.assert_allclose(ref["syn"]["ach"], out["syn"]["ach"][: short.size], rtol=1e-10, atol=1e-15)
