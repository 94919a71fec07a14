"""Ion channels and cell types built from them (chapters 3 and 6; the book's model reference).

A :class:`Channel` is one class: the names of its gates, their start values, their derivatives and
the current it passes. A :class:`CellType` is a membrane given as a list of channels; the locust
antennal lobe's projection neurons and local interneurons are two of them
(:func:`psst_helpers.networks.locust_cell_types`). A reader writes a channel of their own without
editing the package::

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

and gives it to every cell of an HH network, or to one cell type of the locust antennal lobe::

    model = hh_network(20, stimulus, channels=[Adaptation(g=0.2)])
    model = locust_antennal_lobe(0, ln_channels=[Adaptation(g=0.2)])

The channel's ``g`` and ``E`` become inputs of the compiled loop, so a sweep over them compiles once;
every other attribute (``tau`` above) and the class's code are its structure
(:mod:`psst_helpers.components`): a new value gets a compiled loop of its own, never a stale one.
Where a network keeps them:

* :func:`~psst_helpers.networks.hh_network`: the gates under ``y["channels"][name]``, g and E (one
  value per neuron) under ``y["par"]["channels"][name]``.
* a cell type (:class:`CellType`, the locust's ``y["pn"]`` and ``y["ln"]``): the gates beside the
  others of the cell, under their *state names* (:meth:`Channel.state_names`, e.g. ``wM`` above);
  g and E among the cell's membrane parameters as ``g_<name>`` and ``E_<name>``
  (``y["par"]["membrane"]["LN"]["g_M"]``).

Units: mV, ms, mS/cm^2, uA/cm^2 (outward current positive).
"""
from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import neurons
from .backend import ops_for
from .components import Component
from .errors import ParameterError

__all__ = ["Channel", "HHSodium", "HHPotassium", "Leak", "TransientK", "CalciumCurrent", "CalciumActivatedK",
           "CalciumPool", "CellType", "ops_for"]


class Channel(Component):
    """Base class of an ionic current with its own gates.

    Attributes
    ----------
    name : str
        The channel's key in the state (``y["channels"][name]``) and in the inputs (``g_<name>``,
        ``E_<name>`` in a cell type).
    gates : tuple of str
        Names of its gating variables (dimensionless, 0 to 1), integrated with the neuron.
    g, E : float
        Default maximal conductance (mS/cm^2) and reversal potential (mV); inputs of the
        compiled loop (a network may give each neuron its own).
    reads : tuple of str
        Other values of a :class:`CellType` that the channel needs: the state name of another
        channel's gate or concentration (the Ca-activated K current reads ``"Ca"``), or
        ``"I_<name>"``, the current of the channel ``name`` (the calcium pool reads ``"I_Ca"``). They
        arrive in ``gates`` beside the channel's own gates; currents only in :meth:`gate_derivatives`.
    carries_current : bool
        False for a part with state but no current of its own (an ion pool).
    """

    name: ClassVar[str] = "channel"
    gates: ClassVar[Tuple[str, ...]] = ()
    reads: ClassVar[Tuple[str, ...]] = ()
    carries_current: ClassVar[bool] = True
    inputs = ("g", "E")
    g: float = 0.0
    E: float = 0.0

    def start(self, V: np.ndarray) -> Dict[str, np.ndarray]:
        """Start value of each gate for neurons at voltage ``V`` (mV); by default closed (0)."""
        return {gate: np.zeros_like(np.asarray(V, float)) for gate in self.gates}

    def state_names(self) -> Dict[str, str]:
        """The name of each gate in a cell type's state: by default the gate's name followed by the
        channel's (``mA``, ``hA`` for the gates m, h of channel A)."""
        return {gate: gate + self.name for gate in self.gates}

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:  # pragma: no cover - abstract
        """d/dt of each gate (1/ms) at voltage ``V`` (mV)."""
        raise NotImplementedError

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:  # pragma: no cover - abstract
        """The channel's current (uA/cm^2, outward positive) for conductance ``g`` and reversal ``E``."""
        raise NotImplementedError


# --- the book's channels (book/models.md, "Hodgkin-Huxley neuron", "A-current", "Locust antennal lobe") ---

class HHSodium(Channel):
    """The Hodgkin-Huxley sodium current ``I_Na = g m^3 h (V - E)`` with the Traub rates of
    :func:`psst_helpers.neurons.hh_na_derivatives`; its gates keep their names ``m``, ``h`` in a cell type."""

    name = "Na"
    gates = ("m", "h")

    def __init__(self, g: float = 100.0, E: float = 50.0) -> None:
        self.g, self.E = float(g), float(E)

    def state_names(self) -> Dict[str, str]:
        return {"m": "m", "h": "h"}

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:
        dm, dh = neurons.hh_na_derivatives(V, gates["m"], gates["h"])
        return {"m": dm, "h": dh}

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:
        return neurons.na_current(V, gates["m"], gates["h"], g, E)


class HHPotassium(Channel):
    """The Hodgkin-Huxley delayed-rectifier K current ``I_K = g n^4 (V - E)``, Traub rates
    (:func:`psst_helpers.neurons.hh_n_derivative`); its gate keeps its name ``n`` in a cell type."""

    name = "K"
    gates = ("n",)

    def __init__(self, g: float = 10.0, E: float = -95.0) -> None:
        self.g, self.E = float(g), float(E)

    def state_names(self) -> Dict[str, str]:
        return {"n": "n"}

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:
        return {"n": neurons.hh_n_derivative(V, gates["n"])}

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:
        return neurons.k_current(V, gates["n"], g, E)


class Leak(Channel):
    """A current without gates, ``g (V - E)``: the leak ``L`` and the K leak ``KL`` of the book's cells.

    Parameters
    ----------
    name : str
        Its name (``"L"``, ``"KL"``); the cell type's parameters ``g_<name>``, ``E_<name>``.
    g, E : float
        Conductance (mS/cm^2) and reversal potential (mV).
    """

    def __init__(self, name: str = "L", g: float = 0.15, E: float = -55.0) -> None:
        self.name, self.g, self.E = str(name), float(g), float(E)

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:
        return {}

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:
        return neurons.ohmic_current(V, g, E)


class TransientK(Channel):
    """The transient potassium (A) current of the locust's projection neurons (Bazhenov et al. 2001):
    ``I_A = g m^4 h (V - E)``, with the gate kinetics of :func:`psst_helpers.neurons.transient_k`
    (the book's model reference, section "A-current"). Gates start closed, as in the locust model;
    in a cell type they are ``mA``, ``hA``.

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


class CalciumCurrent(Channel):
    """The local interneurons' calcium current ``I_Ca = g m^2 h (V - E)``, gates of
    :func:`psst_helpers.neurons.calcium_gates` (``mCa``, ``hCa`` in a cell type)."""

    name = "Ca"
    gates = ("m", "h")

    def __init__(self, g: float = 3.0, E: float = 140.0) -> None:
        self.g, self.E = float(g), float(E)

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:
        dm, dh = neurons.calcium_gates(V, gates["m"], gates["h"])
        return {"m": dm, "h": dh}

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:
        return g * gates["m"] * gates["m"] * gates["h"] * (V - E)


class CalciumActivatedK(Channel):
    """The local interneurons' Ca-dependent K current ``I_KCa = g m (V - E)``; its gate (``mKCa``)
    opens with the intracellular calcium ``[Ca]`` (:func:`psst_helpers.neurons.kca_gate`), which it
    reads from the cell's :class:`CalciumPool`."""

    name = "KCa"
    gates = ("m",)
    reads = ("Ca",)

    def __init__(self, g: float = 0.3, E: float = -90.0) -> None:
        self.g, self.E = float(g), float(E)

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:
        return {"m": neurons.kca_gate(gates["Ca"], gates["m"])}

    def current(self, V: Any, gates: Dict[str, Any], g: Any, E: Any) -> Any:
        return g * gates["m"] * (V - E)


class CalciumPool(Channel):
    """The intracellular calcium concentration ``Ca`` (mM) of a cell: no current of its own; it rises
    with the inward current of the channel ``current`` and relaxes to ``Ca0``
    (:func:`psst_helpers.neurons.calcium_derivative`, constants :data:`psst_helpers.neurons.CALCIUM`)."""

    name = "pool"
    gates = ("Ca",)
    carries_current = False
    inputs = ()

    def __init__(self, current: str = "Ca", A_Ca: float = neurons.CALCIUM["A_Ca"],
                 Ca0: float = neurons.CALCIUM["Ca0"], tau_Ca: float = neurons.CALCIUM["tau_Ca"]) -> None:
        self.reads = ("I_" + str(current),)
        self.A_Ca, self.Ca0, self.tau_Ca = float(A_Ca), float(Ca0), float(tau_Ca)

    def start(self, V: np.ndarray) -> Dict[str, np.ndarray]:
        return {"Ca": np.full(np.shape(V), self.Ca0)}

    def state_names(self) -> Dict[str, str]:
        return {"Ca": "Ca"}

    def gate_derivatives(self, V: Any, gates: Dict[str, Any]) -> Dict[str, Any]:
        p = {"A_Ca": self.A_Ca, "Ca0": self.Ca0, "tau_Ca": self.tau_Ca}
        return {"Ca": neurons.calcium_derivative(gates["Ca"], gates[self.reads[0]], p)}


# --- cell types --------------------------------------------------------------------------------------

class CellType(Component):
    """A membrane given as its channels: the ionic current of a cell and the derivatives of its state.

    The cell's state is one dict, each gate under its state name (:meth:`Channel.state_names`); its
    parameters one dict with ``g_<name>`` and ``E_<name>`` of every channel that carries a current
    (:meth:`parameters`). The ionic current is the sum of the channels' currents in the order given.
    C_m = 1 uF/cm^2.

    Parameters
    ----------
    name : str
        The cell type's name (``"PN"``, ``"LN"``).
    channels : sequence of Channel
        Its channels, each name once; no two gates with one state name; every name a channel
        :attr:`~Channel.reads` must be a state name of the cell or ``"I_<name>"`` of one of its currents.
    """

    def __init__(self, name: str, channels: Sequence[Channel]) -> None:
        self.name = str(name)
        self.channels = list(channels)
        for c in self.channels:
            if not isinstance(c, Channel):
                raise ParameterError(f"the channels of cell type {self.name} must be Channel objects "
                                     f"(psst_helpers.channels), got {type(c).__name__}")
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise ParameterError(f"cell type {self.name}: give each channel its own name, got {names}")
        owner: Dict[str, str] = {}
        for c in self.channels:
            mapping = c.state_names()
            if set(mapping) != set(c.gates):
                raise ParameterError(f"channel {c.name!r}: state_names() must name each of its gates {c.gates}, "
                                     f"got {sorted(mapping)}")
            for gate, state in mapping.items():
                if state in owner:
                    raise ParameterError(f"cell type {self.name}: gate {gate!r} of channel {c.name!r} and a gate of "
                                         f"channel {owner[state]!r} both have the state name {state!r}; give "
                                         f"the new channel another name or override its state_names()")
                owner[state] = c.name
        currents = {"I_" + c.name for c in self.channels if c.carries_current}
        for c in self.channels:
            unknown = [r for r in c.reads if r not in owner and r not in currents]
            if unknown:
                raise ParameterError(f"cell type {self.name}: channel {c.name!r} reads {unknown}, which is neither "
                                     f"a state name {sorted(owner)} nor a current {sorted(currents)} of the cell")

    def variables(self) -> List[str]:
        """The state names of the cell, in the order of its channels."""
        return [s for c in self.channels for s in c.state_names().values()]

    def start(self, V: np.ndarray) -> Dict[str, np.ndarray]:
        """The cell's start state for neurons at voltage ``V`` (mV): each channel's :meth:`Channel.start`."""
        out: Dict[str, np.ndarray] = {}
        for c in self.channels:
            values = c.start(V)
            for gate, state in c.state_names().items():
                out[state] = np.asarray(values[gate], float).copy()
        return out

    def parameters(self) -> Dict[str, float]:
        """``g_<name>`` and ``E_<name>`` of every channel that carries a current (its defaults)."""
        out: Dict[str, float] = {}
        for c in self.channels:
            if c.carries_current:
                out["g_" + c.name], out["E_" + c.name] = float(c.g), float(c.E)
        return out

    def derivatives(self, V: Any, state: Dict[str, Any], p: Dict[str, Any],
                    currents: Optional[Dict[str, Any]] = None) -> Tuple[Any, Dict[str, Any]]:
        """The ionic current (uA/cm^2, outward +; the channels' currents summed in their order) and the
        derivative of each state variable, for voltage ``V``, the cell's ``state`` and parameters ``p``
        (``g_<name>``, ``E_<name>``: numbers or one value per neuron). NumPy or TensorFlow.

        ``currents``, when a dict, receives each channel's current as ``"I_<name>"``.
        """
        seen: Dict[str, Any] = {} if currents is None else currents
        total = None
        for c in self.channels:
            if not c.carries_current:
                continue
            I = c.current(V, self._inputs(c, state, None), p["g_" + c.name], p["E_" + c.name])
            seen["I_" + c.name] = I
            total = I if total is None else total + I
        d: Dict[str, Any] = {}
        for c in self.channels:
            mapping = c.state_names()
            if not mapping:
                continue
            rates = c.gate_derivatives(V, self._inputs(c, state, seen))
            for gate, name in mapping.items():
                d[name] = rates[gate]
        return (0.0 * V if total is None else total), d

    @staticmethod
    def _inputs(c: Channel, state: Dict[str, Any], currents: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """The channel's own gates by their names, and what it reads (currents only when given)."""
        out = {gate: state[name] for gate, name in c.state_names().items()}
        for r in c.reads:
            if r in state:
                out[r] = state[r]
            elif currents is not None:
                out[r] = currents[r]
        return out
