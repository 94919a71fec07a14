"""Exceptions raised by psst_helpers, each specific enough to act on."""
from __future__ import annotations

from typing import Any, Optional

__all__ = ["PSSTError", "InputDtypeError", "TimeGridError", "StateShapeError", "NonFiniteInputError", "NonFiniteStateError"]


class PSSTError(Exception):
    """Base class of every error psst_helpers raises on purpose."""


class InputDtypeError(PSSTError, TypeError):
    """``y0`` or ``t`` is not floating point, or the state mixes dtypes."""


class TimeGridError(PSSTError, ValueError):
    """The time grid is not a 1-D, finite, strictly increasing array of at least two points."""


class StateShapeError(PSSTError, ValueError):
    """The derivative function returned a structure, shape or dtype that does not match the state."""


class NonFiniteInputError(PSSTError, ValueError):
    """A start value, an injected current or a parameter is NaN or infinite (refused before any step)."""


class NonFiniteStateError(PSSTError, FloatingPointError):
    """The state became NaN or infinite during integration.

    Attributes
    ----------
    step : int
        Index of the integration step that produced the first non-finite value; the step goes
        from ``t[step]`` to ``t[step + 1]``.
    t : float
        ``t[step]``, the start time of that step (same unit as the time grid, ms in this book).
    variable : str
        Path of the first state entry that became non-finite, e.g. ``"['V']"``.
    partial : Any
        The records made before the failure (same layout as a successful result, cut at the last
        finite record), so nothing already computed is lost.
    """

    def __init__(self, message: str, *, step: int, t: float, variable: str, partial: Optional[Any] = None):
        super().__init__(message)
        self.step = step
        self.t = t
        self.variable = variable
        self.partial = partial
