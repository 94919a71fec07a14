"""Input checks shared by both solvers, so both fail the same way on the same bad input."""
from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._tree import TreeDef, flatten, leaf_paths, unflatten
from ..errors import (InputDtypeError, NonFiniteInputError, ParameterError, StateShapeError, TimeGridError,
                      UnknownEntryError)

Record = Union[None, str, Sequence[str], Callable[[Any], Any]]


def _dtype_of(x: Any) -> np.dtype:
    dt = getattr(x, "dtype", None)
    if dt is None:
        return np.asarray(x).dtype
    # tf.DType has .as_numpy_dtype; NumPy dtypes pass through
    return np.dtype(getattr(dt, "as_numpy_dtype", dt))


def check_time_grid(t: Any) -> np.ndarray:
    """Return ``t`` as a float64 NumPy array after checking it is a usable time grid.

    Raises
    ------
    InputDtypeError
        ``t`` is not floating point (an integer grid usually means ``arange(0, 10)`` was meant
        as ``arange(0.0, 10.0, dt)``).
    TimeGridError
        ``t`` is not 1-D, has fewer than two points, contains NaN/inf, or is not strictly increasing.
    """
    dtype = _dtype_of(t)
    if not np.issubdtype(dtype, np.floating):
        raise InputDtypeError(
            f"the time grid t must be floating point, got dtype {dtype}; build it with a float step, "
            "e.g. t = dt * np.arange(n_steps + 1) with dt = 0.01"
        )
    arr = np.asarray(t.numpy() if hasattr(t, "numpy") else t, dtype=np.float64)
    if arr.ndim != 1:
        raise TimeGridError(f"the time grid t must be 1-D, got shape {arr.shape}")
    if arr.size < 2:
        raise TimeGridError(f"the time grid t needs at least 2 points (a start and an end), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise TimeGridError(f"the time grid t contains NaN/inf (first at index {bad})")
    steps = np.diff(arr)
    if np.any(steps <= 0):
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise TimeGridError(
            f"the time grid t must be strictly increasing, but t[{bad + 1}] = {float(arr[bad + 1])!r} "
            f"is not greater than t[{bad}] = {float(arr[bad])!r}"
        )
    return arr


SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_state(y0: Any) -> Tuple[List[Any], TreeDef, List[np.dtype]]:
    """Flatten ``y0`` and check every leaf: float32 or float64, finite where it is a NumPy array.

    Returns the leaves, the tree definition and each leaf's dtype. Leaves may mix float32 and
    float64 (a float32 network keeps its spike times in float64); :func:`check_derivative` then
    requires the *integrated* entries to share one dtype.

    Raises
    ------
    InputDtypeError
        A leaf is not float32/float64 (integers, float16: its 3.3 significant digits and 65504
        maximum cannot hold a membrane state or a spike time).
    StateShapeError
        The state is empty or has a missing value.
    NonFiniteInputError
        A start value is NaN or infinite (named by path and index).
    """
    leaves, treedef = flatten(y0)
    paths = leaf_paths(treedef)
    if not leaves:
        raise StateShapeError("the start state y0 is empty")
    dtypes = []
    for path, leaf in zip(paths, leaves):
        if leaf is None:
            raise StateShapeError(f"the start state has no value at {path}")
        dt = _dtype_of(leaf)
        if not np.issubdtype(dt, np.floating):
            raise InputDtypeError(
                f"the start state {path} has dtype {dt}; the state must be floating point "
                "(float32 or float64), e.g. np.array([-71.0, 0.0]) rather than np.array([-71, 0])"
            )
        if dt not in SUPPORTED_DTYPES:
            raise InputDtypeError(
                f"the start state {path} has dtype {dt}; only float32 and float64 are supported "
                "(float16 cannot hold a membrane state or a spike time: about 3 significant digits, "
                "largest value 65504); cast it with .astype(np.float32)"
            )
        if isinstance(leaf, (np.ndarray, np.generic, float)):
            arr = np.asarray(leaf)
            finite = np.isfinite(arr)
            if not np.all(finite):
                bad = np.argwhere(~finite)[0]
                where = f"{path}[{', '.join(map(str, bad))}]" if arr.ndim else path
                raise NonFiniteInputError(
                    f"the start state holds {arr[tuple(bad)]} at {where}; every start value must be finite"
                )
        dtypes.append(dt)
    return leaves, treedef, dtypes


def time_dtype(dtypes: Sequence[np.dtype]) -> np.dtype:
    """The dtype time is carried in: float64 when any state entry is float64, else float32.

    A float32 network keeps ``t`` and its spike times in float64: float32's spacing is 0.0156 ms
    at t = 2e5 ms, as coarse as the step and the 0.3 ms transmitter pulse.
    """
    return np.dtype(np.float64) if np.dtype(np.float64) in dtypes else np.dtype(np.float32)


def check_derivative(out: Any, treedef: TreeDef, state_leaves: Sequence[Any],
                     dtypes: Sequence[np.dtype]) -> List[Any]:
    """Check the structure, shapes and dtypes of ``func(y, t)`` against the state; return its leaves.

    Each derivative must have its state entry's shape and dtype, and the integrated entries
    (those whose derivative is not ``None``) must share one dtype.
    """
    leaves, out_def = flatten(out)
    if out_def != treedef:
        expected = unflatten(treedef, ["..."] * treedef.num_leaves)
        got = unflatten(out_def, ["..."] * out_def.num_leaves)
        raise StateShapeError(
            f"func(y, t) returned a structure that does not match the state: expected {expected}, got {got}"
        )
    paths = leaf_paths(treedef)
    integrated = {dt for d, dt in zip(leaves, dtypes) if d is not None}
    if len(integrated) > 1:
        detail = ", ".join(f"{p}: {dt}" for p, d, dt in zip(paths, leaves, dtypes) if d is not None)
        raise InputDtypeError(f"all integrated state entries must share one dtype, got {detail}; cast them to one")
    for path, d, y, dtype in zip(paths, leaves, state_leaves, dtypes):
        if d is None:
            continue
        dshape = tuple(getattr(d, "shape", np.shape(d)))
        yshape = tuple(y.shape)
        if dshape != yshape:
            raise StateShapeError(
                f"func(y, t) returned shape {dshape} for {path}, but that state entry has shape {yshape}"
            )
        ddt = _dtype_of(d)
        if ddt != dtype:
            raise StateShapeError(
                f"func(y, t) returned dtype {ddt} for {path}, but that state entry is {dtype}; "
                "make func compute in the state's dtype (cast constants, not the state)"
            )
    return leaves


def check_derivative_fast(out: Any, treedef: TreeDef, state_leaves: Sequence[Any]) -> List[Any]:
    """The cheap check :func:`psst_helpers.odeint_np` runs at every evaluation after the first.

    Structure and shapes only (a comparison of tuples per leaf): a derivative whose shape changes
    later in a run would otherwise be broadcast silently. Falls back to the full message on failure.
    """
    leaves, out_def = flatten(out)
    if out_def != treedef:
        check_derivative(out, treedef, state_leaves, [_dtype_of(y) for y in state_leaves])
    for path_i, (d, y) in enumerate(zip(leaves, state_leaves)):
        if d is not None and np.shape(d) != np.shape(y):
            path = leaf_paths(treedef)[path_i]
            raise StateShapeError(
                f"func(y, t) returned shape {np.shape(d)} for {path}, but that state entry has shape {np.shape(y)}"
            )
    return leaves


def select(record: Record, y: Any) -> Any:
    """What to store from a state ``y``: everything, some dict keys, or a callable's output."""
    if record is None:
        return y
    if callable(record):
        return record(y)
    if isinstance(record, str):
        if not isinstance(y, dict) or record not in y:
            raise UnknownEntryError(f"record={record!r}: the state has no such entry (keys: {_keys(y)})")
        return y[record]
    missing = [k for k in record if not isinstance(y, dict) or k not in y]
    if missing:
        raise UnknownEntryError(f"record={list(record)!r}: the state has no entries {missing} (keys: {_keys(y)})")
    return {k: y[k] for k in record}


def _keys(y: Any) -> Optional[list]:
    return sorted(y) if isinstance(y, dict) else None


def check_every(every: int) -> int:
    """``every`` (record every k-th step) as an int >= 1, else :class:`ParameterError`."""
    return positive_int("every", every, what="record every k-th step")


def n_records(n_points: int, every: int) -> int:
    """Number of stored time points: ``len(t[::every])``."""
    return (n_points - 1) // every + 1


def positive_int(name: str, x: Any, *, what: str = "") -> int:
    """``x`` as an ``int`` when it is a whole number >= 1 (``bool`` refused), else :class:`ParameterError`
    naming ``name`` and the value; ``what`` (e.g. ``"steps per chunk"``) is added in parentheses."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1:
        raise ParameterError(f"{name} must be a positive integer{f' ({what})' if what else ''}, got {x!r}")
    return int(x)


def positive_number(name: str, x: Any, *, what: str = "", why_finite: str = "it must be finite",
                    why_positive: str = "it must be positive") -> float:
    """``x`` as a ``float`` when it is a finite number > 0, else :class:`ParameterError` naming ``name``,
    the value and the reason (``why_finite``, ``why_positive``); ``what`` says what the number counts
    (e.g. ``"simulated ms per chunk, e.g. 100"``)."""
    hint = f" ({what})" if what else ""
    try:
        if isinstance(x, (bool, str, bytes)):
            raise TypeError
        value = float(x)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} = {x!r} must be a number{hint}") from None
    if math.isnan(value) or math.isinf(value):
        raise ParameterError(f"{name} = {value}: {why_finite}; give a finite number{hint}")
    if value <= 0:
        raise ParameterError(f"{name} = {value:g}: {why_positive}{hint}")
    return value
