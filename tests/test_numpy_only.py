"""The NumPy chapters promise that ``psst_helpers`` and ``odeint_np`` work without TensorFlow.

The check runs in a fresh Python process in which ``import tensorflow`` fails (``sys.modules`` maps
the name to None, which is what Python does for a package that cannot be imported), so it holds on
this machine, where TensorFlow is installed, exactly as on one without it.
"""
import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["tensorflow"] = None  # from here on, `import tensorflow` raises ImportError
    try:
        import tensorflow  # noqa: F401
        blocked = False
    except ImportError:
        blocked = True

    import numpy as np
    import psst_helpers as psst

    res = {"blocked": blocked}
    # exponential decay, rk4, against the exact solution
    t = psst.time_grid(2.0, 0.01)
    y = psst.odeint_np(lambda y, t: -y, np.array([1.0, 2.0]), t)
    res["decay_err"] = float(np.abs(y[-1] - np.array([1.0, 2.0]) * np.exp(-2.0)).max())
    res["decay_shape"] = list(y.shape)
    # a dict state (harmonic oscillator), recording one entry every 10th step, and the final state
    osc = lambda s, t: {"x": s["v"], "v": -s["x"]}
    t = psst.time_grid(3.0, 0.001)
    rec, final = psst.odeint_np(osc, {"x": np.array(1.0), "v": np.array(0.0)}, t, record="x", every=10,
                                return_final=True)
    res["osc_len"] = len(rec)
    res["osc_err"] = float(abs(final["x"] - np.cos(3.0)))
    # float32 stays float32
    y32 = psst.odeint_np(lambda y, t: -y, np.ones(3, np.float32), psst.time_grid(1.0, 0.01))
    res["dtype32"] = str(y32.dtype)
    # the errors a reader meets in chapter 1 are raised, not hidden behind a missing TensorFlow
    try:
        psst.time_grid(0.0, 0.01)
    except psst.TimeGridError as exc:
        res["grid_error"] = str(exc)
    try:
        psst.odeint_np(lambda y, t: y * y, np.array([1.0]), psst.time_grid(2.0, 0.01))
    except psst.NonFiniteStateError as exc:
        res["blowup_t"] = exc.t
    res["tf_loaded"] = sys.modules.get("tensorflow") is not None
    res["tf_modules"] = sorted(m for m in sys.modules if m.startswith("psst_helpers.solvers.tf"))
    print(json.dumps(res))
""")


def test_odeint_np_runs_where_tensorflow_cannot_be_imported():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["blocked"], "the shim did not make TensorFlow unimportable"
    assert res["decay_shape"] == [201, 2] and res["decay_err"] < 1e-9
    assert res["osc_len"] == 301 and res["osc_err"] < 1e-9  # x = cos(t); 3000 steps stored every 10th
    assert res["dtype32"] == "float32"
    assert "duration = 0" in res["grid_error"]
    assert 0.9 < res["blowup_t"] < 1.1  # y' = y^2 from 1 blows up at t = 1 (rk4 lags a few steps)
    assert not res["tf_loaded"] and res["tf_modules"] == []
