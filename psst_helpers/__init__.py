"""psst_helpers: the tested companion package of *PSST: Parallelised Scalable Simulations in TensorFlow*.

The few names a reader uses are re-exported here::

    import psst_helpers as psst
    y = psst.odeint_np(f, y0, t)          # chapter 1, NumPy
    y = psst.odeint(f, y0, t)             # chapter 2 on, one compiled TensorFlow loop

TensorFlow is imported only when a TensorFlow name is first used, so the NumPy chapters start fast.
"""
from __future__ import annotations

import importlib
import sys

from .errors import (CheckpointError, ClusterError, ConnectivityError, DamagedRunError, InputDtypeError,
                     NonFiniteInputError, NonFiniteStateError, OutputExistsError, ParameterError, PSSTError,
                     RunLockedError, RunWriteError, StateShapeError, TimeGridError, UnknownEntryError, WorkerDiedError)
from .solvers import odeint_np

# The one place the version is written (pyproject.toml reads it from here). Each release is tagged
# "v" + __version__ (e.g. v0.2.0) on the repository, and the chapters' install cell installs exactly that
# tag, so a notebook always gets the package it was written for. Bump this, commit, then
# `git tag v<version> && git push --tags`; tools/notebook_header.py --write puts the tag into the cells.
__version__ = "0.2.0"

_LAZY = {
    "odeint": "psst_helpers.solvers.tf_solver",
    "Integrator": "psst_helpers.solvers.tf_solver",
    "enable_compile_cache": "psst_helpers.solvers.tf_solver",
    "neurons": "psst_helpers.neurons",
    "synapses": "psst_helpers.synapses",
    "networks": "psst_helpers.networks",
    "events": "psst_helpers.events",
    "analysis": "psst_helpers.analysis",
    "stimuli": "psst_helpers.stimuli",
    "recording": "psst_helpers.recording",
    "distributed": "psst_helpers.distributed",
    "partition": "psst_helpers.partition",
    "Model": "psst_helpers.networks",
    "simulate": "psst_helpers.networks",
    "spike_times": "psst_helpers.analysis",
    "time_grid": "psst_helpers.analysis",
    "set_cpu_threads": "psst_helpers.threads",
    "components": "psst_helpers.components",
    "channels": "psst_helpers.channels",
}

__all__ = [
    "odeint_np", "odeint", "Integrator", "enable_compile_cache", "Model", "simulate", "spike_times", "time_grid", "set_cpu_threads",
    "neurons", "synapses", "networks", "events", "analysis", "stimuli", "recording",
    "distributed", "partition", "components", "channels",
    "PSSTError", "InputDtypeError", "TimeGridError", "StateShapeError", "NonFiniteInputError", "NonFiniteStateError",
    "ParameterError", "ConnectivityError", "CheckpointError", "OutputExistsError", "DamagedRunError", "RunLockedError",
    "RunWriteError", "ClusterError", "WorkerDiedError", "UnknownEntryError",
    "__version__",
]


def __getattr__(name: str):
    if name in _LAZY:
        try:
            module = importlib.import_module(_LAZY[name])
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] != "tensorflow":
                raise
            # the NumPy half of the package works without TensorFlow; say how to get the rest
            raise ModuleNotFoundError(
                f"psst_helpers.{name} needs TensorFlow, which is not installed in this Python "
                f"({sys.executable}). Install it with:  pip install \"psst_helpers[cpu]\"  "
                f"(or \"psst_helpers[gpu]\" on a machine with an NVIDIA GPU)", name="tensorflow") from err
        return module if module.__name__.endswith("." + name) else getattr(module, name)
    raise AttributeError(f"module 'psst_helpers' has no attribute {name!r}")


def __dir__() -> list:
    # the lazily loaded names too, so that tab completion and dir() show them before first use
    return sorted(set(globals()) | set(_LAZY))
