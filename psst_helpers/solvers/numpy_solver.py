"""The NumPy reference solver (chapter 1): a plain Python loop over the time grid.

It costs one Python iteration per step, so it is slow for long runs.  It is the yardstick the
compiled TensorFlow solver (:mod:`psst_helpers.solvers.tf_solver`) is tested against, and the
solver chapter 1 builds by hand before switching to this canonical version.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from .._tree import flatten, leaf_paths, unflatten
from ..errors import NonFiniteStateError, StateShapeError
from . import checks
from .schemes import get_scheme

PostStep = Callable[[Any, Any, Any, Any], Any]

__all__ = ["odeint_np", "nonfinite_message"]


def nonfinite_message(variable: str, step: int, t0: float, t1: float) -> str:
    dt = t1 - t0
    return (
        f"the state became NaN/inf in {variable} during step {step} (t = {t0:.6g} -> {t1:.6g}, "
        f"dt = {dt:.3g}). The step is probably too large for this system: try dt = {dt / 2:.3g} or "
        "smaller. If it persists, the exact solution may itself blow up there, or func divides by zero "
        "or overflows an exp()"
    )


def odeint_np(
    func: Callable[[Any, Any], Any],
    y0: Any,
    t: Any,
    *,
    method: str = "rk4",
    record: checks.Record = None,
    every: int = 1,
    post_step: Optional[PostStep] = None,
    return_final: bool = False,
) -> Any:
    """Integrate ``dy/dt = func(y, t)`` on the grid ``t`` with a fixed-step scheme, in NumPy.

    Parameters
    ----------
    func : callable
        ``func(y, t)`` returns dy/dt with the structure, shapes and dtype of ``y``; an entry may
        be ``None`` for a state variable that is not integrated (only ``post_step`` changes it).
    y0 : array or nested dict/list/tuple of arrays
        Start state, float32 or float64, finite. The integrated entries share one dtype, the
        solver's; entries that are not integrated may be float64 in a float32 state (spike times).
        ``func`` and ``post_step`` receive time in float64 when any entry is float64, else float32.
    t : 1-D float array
        Strictly increasing time grid (ms in this book); it may be non-uniform. ``y[0] = y0`` at
        ``t[0]``.
    method : {"euler", "rk2" (or "midpoint"), "rk4"}
        The scheme; see :mod:`psst_helpers.solvers.schemes`.
    record : None, str, list of str, or callable
        What to store at each recorded time: the whole state (None), one or several entries of a
        dict state, or ``record(y)``'s output.
    every : int
        Store every ``every``-th point, i.e. at ``t[::every]``.
    post_step : callable, optional
        ``post_step(t0, y0, t1, y1) -> y1`` runs after each step from ``t0`` to ``t1`` (the spike
        tracker and step-held inputs of chapter 4 are built on it).
    return_final : bool
        Also return the state at ``t[-1]`` (used to chain runs, chapter 5).

    Returns
    -------
    records : array or nested structure of arrays
        Time-major: each leaf has shape ``(len(t[::every]), *leaf_shape)``.
    y_final : same structure as y0
        Only when ``return_final`` is true.

    Raises
    ------
    InputDtypeError, TimeGridError, StateShapeError
        On bad input, before any step is taken.
    NonFiniteStateError
        When the state becomes NaN/inf, naming the step, time and variable; ``.partial`` holds
        the records made so far.
    """
    step_fn = get_scheme(method)
    every = checks.check_every(every)
    t64 = checks.check_time_grid(t)
    leaves, treedef, dtypes = checks.check_state(y0)
    paths = leaf_paths(treedef)
    leaves = [np.array(x, dtype=d, copy=True) for x, d in zip(leaves, dtypes)]
    tdt = checks.time_dtype(dtypes)
    tt = t64.astype(tdt)
    dts = np.diff(t64).astype(tdt)  # differences in float64 first: exact steps even in float32

    checked = [False]

    def f(lv, tm):
        out = func(unflatten(treedef, lv), tm)
        if not checked[0]:
            out_leaves = checks.check_derivative(out, treedef, lv, dtypes)
            checked[0] = True
            return out_leaves
        # every later evaluation: structure and shapes (a later wrong shape would broadcast silently)
        return checks.check_derivative_fast(out, treedef, lv)

    def apply_hook(i, old, new):
        res = post_step(tt[i], unflatten(treedef, old), tt[i + 1], unflatten(treedef, new))
        res_leaves, res_def = flatten(res)
        if res_def != treedef:
            raise StateShapeError("post_step must return a state with the same structure as y0")
        return [np.asarray(x, dtype=d) for x, d in zip(res_leaves, dtypes)]

    rec_leaves0, rec_def = flatten(checks.select(record, unflatten(treedef, leaves)))
    stored = [[np.array(x, copy=True)] for x in rec_leaves0]

    def stacked():
        return unflatten(rec_def, [np.stack(s) for s in stored])

    n_steps = len(t64) - 1
    # Overflow warnings are silenced because finiteness is checked (and reported) after every step.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in range(n_steps):
            new = step_fn(f, leaves, tt[i], dts[i])
            if post_step is not None:
                new = apply_hook(i, leaves, new)
            for path, x in zip(paths, new):
                if not np.all(np.isfinite(x)):
                    raise NonFiniteStateError(
                        nonfinite_message(path, i, float(t64[i]), float(t64[i + 1])),
                        step=i, t=float(t64[i]), variable=path, partial=stacked(),
                    )
            leaves = new
            if (i + 1) % every == 0:
                for s, x in zip(stored, flatten(checks.select(record, unflatten(treedef, leaves)))[0]):
                    s.append(np.array(x, copy=True))
    records = stacked()
    if return_final:
        return records, unflatten(treedef, leaves)
    return records
