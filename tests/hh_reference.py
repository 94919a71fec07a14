"""An independent Hodgkin-Huxley reference for the tests, written straight from models.md section 1.

It shares no code with psst_helpers: plain NumPy formulas (the 0/0 points handled by their limit),
integrated by scipy's adaptive DOP853 at rtol 1e-10, with exact threshold-crossing times from
scipy's event location.
"""
import numpy as np
from scipy.integrate import solve_ivp

PHI = 3.0 ** ((22.0 - 36.0) / 10.0)


def _lin(a, c_minus_u, k):
    """a (c-u) / (exp((c-u)/k) - 1), with its limit a k at c = u."""
    x = np.asarray(c_minus_u, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = a * x / (np.exp(x / k) - 1.0)
    return np.where(np.abs(x) < 1e-9, a * k, r)


def rhs(t, X, I):
    n_cells = len(I)
    V, m, h, n = X[:n_cells], X[n_cells:2 * n_cells], X[2 * n_cells:3 * n_cells], X[3 * n_cells:]
    u = V + 50.0
    a_n, b_n = _lin(0.02, 15.0 - u, 5.0), 0.5 * np.exp((10.0 - u) / 40.0)
    a_m, b_m = _lin(0.32, 13.0 - u, 4.0), _lin(0.28, u - 40.0, 5.0)
    a_h, b_h = 0.128 * np.exp((17.0 - u) / 18.0), 4.0 / (np.exp((40.0 - u) / 5.0) + 1.0)
    dV = I - 100.0 * m**3 * h * (V - 50.0) - 10.0 * n**4 * (V + 95.0) - 0.15 * (V + 55.0)
    gate = lambda x, a, b: -(x - a / (a + b)) * (a + b) * PHI  # noqa: E731
    return np.concatenate([dV, gate(m, a_m, b_m), gate(h, a_h, b_h), gate(n, a_n, b_n)])


def spike_times(I, duration=200.0):
    """Exact upward 0 mV crossing times (ms) of independent neurons, neuron i driven by constant I[i].

    All neurons are integrated as one system (so the rtol applies to each), with one scipy event
    function per neuron that fires on upward zero crossings of its voltage.
    """
    I = np.atleast_1d(np.asarray(I, float))
    k = I.size
    events = []
    for i in range(k):
        def crossing(t, X, I, i=i):
            return X[i]
        crossing.direction = 1.0
        events.append(crossing)
    X0 = np.concatenate([np.full(k, -71.0), np.zeros(3 * k)])
    sol = solve_ivp(rhs, (0.0, duration), X0, args=(I,), method="DOP853", rtol=1e-10, atol=1e-10, events=events)
    assert sol.success, sol.message
    return [np.asarray(te) for te in sol.t_events]
