"""Post-step hooks (chapter 4): the spike tracker and step-held inputs.

A hook has the signature ``hook(t0, y0, t1, y1) -> y1`` and runs after every integration step
from ``t0`` to ``t1`` (both solvers support it through ``post_step=``).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from .backend import ops_for
from .stimuli import Stimulus

__all__ = ["crossed_upward", "network_hook", "THRESHOLD_MV"]

#: Spike threshold F_b (mV): a spike is an upward crossing of 0 mV across one step.
THRESHOLD_MV = 0.0


def crossed_upward(V0: Any, V1: Any, threshold: float = THRESHOLD_MV) -> Any:
    """True where V was below ``threshold`` at the start of the step and is at or above it at the end."""
    return (V0 < threshold) & (V1 >= threshold)


def network_hook(stimulus: Optional[Stimulus], threshold: float = THRESHOLD_MV) -> Callable:
    """The post-step hook of the book's network models.

    After each step it (1) records spikes: where V crossed ``threshold`` upward, ``t_fire`` is set
    to the step's *start* time ``t0`` (float64 in the book's models, see
    :data:`psst_helpers.networks.TIME_ENTRIES`) and ``spikes`` (a per-neuron counter) grows by one —
    the rule of the book's model reference, section "Spikes and t_fire" (book/models.md); (2) sets ``I_ext`` to the stimulus at ``t1``, the next step's start, so
    that every RK stage of a step sees the input of the step's start.
    """

    def hook(t0: Any, y0: Dict[str, Any], t1: Any, y1: Dict[str, Any]) -> Dict[str, Any]:
        xp = ops_for(y1["V"])
        out = dict(y1)
        fired = crossed_upward(y0["V"], y1["V"], threshold)
        out["t_fire"] = xp.where(fired, t0 + 0.0 * y1["t_fire"], y1["t_fire"])
        out["spikes"] = y1["spikes"] + xp.cast(fired, y1["spikes"])
        if stimulus is not None and stimulus.time_varying:
            # the stimulus's amplitudes come from the state (inputs of the compiled loop) when it has them
            inputs = y1["par"].get("stim") if "par" in y1 else None
            out["I_ext"] = stimulus(t1, y1["V"], inputs)
        return out

    return hook
