"""Exceptions raised by psst_helpers: one class per mistake, the same class wherever it is made.

Every error the package raises on purpose is a :class:`PSSTError`, so ``except psst.PSSTError``
catches them all. Each class also derives from the built-in exception a Python programmer would
expect (``TypeError`` for a wrong dtype, ``ValueError`` for a wrong value, ``OSError`` for a disk
that refused a write), so code written against the built-ins keeps working.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

__all__ = [
    "PSSTError", "InputDtypeError", "TimeGridError", "StateShapeError", "UnknownEntryError", "NonFiniteInputError",
    "NonFiniteStateError",
    "ParameterError", "ConnectivityError", "CheckpointError", "OutputExistsError", "DamagedRunError",
    "RunLockedError", "RunWriteError", "ClusterError", "WorkerDiedError",
]


class PSSTError(Exception):
    """Base class of every error psst_helpers raises on purpose."""


# --- input to a solver ------------------------------------------------------------------------------

class InputDtypeError(PSSTError, TypeError):
    """A state, time grid or requested ``dtype`` is not float32/float64 (integers, float16, mixed dtypes)."""


class TimeGridError(PSSTError, ValueError):
    """The time grid is not a 1-D, finite, strictly increasing array of at least two points."""


class StateShapeError(PSSTError, ValueError):
    """A state or derivative has a structure, shape or dtype that does not match the model's state."""


class UnknownEntryError(PSSTError, KeyError):
    """A name (``record=``, a parameter of a differentiable run) that the state or the model does not have;
    the message lists the names it has."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


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


# --- building a model -------------------------------------------------------------------------------

class ParameterError(PSSTError, ValueError):
    """A model part (neuron, channel, synapse kind or group, stimulus, network builder, solver option)
    got a parameter it cannot use: an unknown name or option, a non-finite value, a wrong shape, or a
    value outside its range (a negative count, a probability above 1)."""


class ConnectivityError(PSSTError, ValueError):
    """Connectivity or neuron indices that do not describe a network of this size: matrix entries other
    than 0 and 1, a neuron connected to itself, an index outside ``[0, n)``, ``pre``/``post`` of different
    lengths, or a synapse group built for another number of neurons."""


# --- long runs on disk (psst_helpers.recording) --------------------------------------------------------

class CheckpointError(PSSTError, ValueError):
    """A checkpoint is corrupt, or belongs to a different run than the one asked for."""


class OutputExistsError(PSSTError, FileExistsError):
    """The output folder holds another run (a different model, grid or recording); the message names
    what differs. Pass ``overwrite=True`` (``--overwrite``) to replace it."""


class DamagedRunError(PSSTError, ValueError):
    """A file of a run does not hold what its checkpoint says it holds (truncated, deleted, changed).

    Attributes
    ----------
    file : pathlib.Path
        The first damaged file.
    chunk : int
        The first chunk whose data is damaged (0-based); :func:`psst_helpers.recording.run`
        recomputes from there.
    """

    def __init__(self, message: str, *, file: Path, chunk: int):
        super().__init__(message)
        self.file = file
        self.chunk = chunk


class RunLockedError(PSSTError, RuntimeError):
    """Another process is writing the same output folder."""


class RunWriteError(PSSTError, OSError):
    """The disk refused a write (full, read-only, no permission); what was written before stays resumable.

    Attributes
    ----------
    errno : int or None
        The operating system's error number (e.g. ``errno.ENOSPC``).
    filename : str or None
        The file or folder that could not be written.
    """

    def __init__(self, message: str, *, errno: Optional[int] = None, filename: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.errno, self.filename = errno, filename

    def __str__(self) -> str:
        return self.message


# --- clusters (psst_helpers.distributed) ---------------------------------------------------------------

class ClusterError(PSSTError, RuntimeError):
    """The cluster could not be started, connected or used (ports, worker start-up, a stopped cluster)."""


class WorkerDiedError(ClusterError):
    """A worker stopped while the client needed it.

    Attributes
    ----------
    task : int
        Index of the worker task (``/job:worker/task:<task>``).
    address : str
        Its ``host:port``.
    partial : dict
        What was computed before the failure (see the raising function's documentation).
    """

    def __init__(self, message: str, *, task: int, address: str, partial: Optional[Dict[Any, Any]] = None):
        super().__init__(message)
        self.task = task
        self.address = address
        self.partial = {} if partial is None else partial
