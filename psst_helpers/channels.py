"""Ion channels a cell can be given on top of its membrane (chapter 3; the book's model reference).

A :class:`Channel` is one class: the names of its gates, their start values, their derivatives and
the current it passes. A reader adds a channel to the Hodgkin-Huxley cells of
:func:`psst_helpers.networks.hh_network` in their own code, without editing the package::

    class Adaptation(Channel):            # a slow K current, say
        name = "M"
        gates = ("w",)
        def __init__(self, g=0.1, E=-95.0, tau=100.0):
            self.g, self.E, self.tau = g, E, tau
        def gate_derivatives(self, V, gates):   # NumPy or TensorFlow: ops_for(V) picks exp
            w_inf = 1.0 / (1.0 + ops_for(V).exp(-(V + 35.0) / 10.0))
            return {"w": (w_inf - gates["w"]) / self.tau}
        def current(self, V, gates, g, E):
            return g * gates["w"] * (V - E)

    model = hh_network(20, stimulus, channels=[Adaptation(g=0.2)])

The channel's ``g`` and ``E`` become inputs of the compiled loop (one value per neuron in the state's
``par["channels"][name]``), so a sweep over them compiles once; every other attribute (``tau``
above) and the class's code are its structure (:mod:`psst_helpers.components`): a new value gets a
compiled loop of its own, never a stale one. Its gates live in the state under
``y["channels"][name]``. Units: mV, ms, mS/cm^2, uA/cm^2 (outward current positive).
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, Tuple

import numpy as np

from . import neurons
from .backend import ops_for
from .components import Component

__all__ = ["Channel", "TransientK", "ops_for"]


class Channel(Component):
    """Base class of an ionic current with its own gates.

    Attributes
    ----------
    name : str
        The channel's key in the state (``y["channels"][name]``) and in the inputs.
    gates : tuple of str
        Names of its gating variables (dimensionless, 0 to 1), integrated with the neuron.
    g, E : float
        Default maximal conductance (mS/cm^2) and reversal potential (mV); inputs of the
        compiled loop (a network may give each neuron its own).
    """

    name: ClassVar[str] = "channel"
    gates: ClassVar[Tuple[str, ...]] = ()
    inputs = ("g", "E")
    g: float = 0.0
    E: float = 0.0

    def start(self, V: np.ndarray) -> Dict[str, np.ndarray]:
        """Start value of each gate for neurons at voltage ``V`` (mV); by default closed (0)."""
        return {gate: np.zeros_like(np.asarray(V, float)) for gate in self.gates}

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:  # pragma: no cover - abstract
        """d/dt of each gate (1/ms) at voltage ``V`` (mV)."""
        raise NotImplementedError

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:  # pragma: no cover - abstract
        """The channel's current (uA/cm^2, outward positive) for conductance ``g`` and reversal ``E``."""
        raise NotImplementedError


class TransientK(Channel):
    """The transient potassium (A) current of the locust's projection neurons (Bazhenov et al. 2001):
    ``I_A = g m^4 h (V - E)``, with the gate kinetics of :func:`psst_helpers.neurons.transient_k`
    (the book's model reference, section "A-current"). Gates start closed, as in the locust model.

    Parameters
    ----------
    g : float
        Maximal conductance, mS/cm^2 (the PNs have 10).
    E : float
        Reversal potential, mV (-95).
    """

    name = "A"
    gates = ("m", "h")

    def __init__(self, g: float = 10.0, E: float = -95.0) -> None:
        self.g, self.E = float(g), float(E)

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:
        dm, dh = neurons.transient_k(V, gates["m"], gates["h"])
        return {"m": dm, "h": dh}

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:
        m2 = gates["m"] * gates["m"]
        return g * m2 * m2 * gates["h"] * (V - E)

