"""A network split into blocks of neurons that are integrated apart and exchange spikes (chapter 7).

Each block owns a contiguous range of neurons and every synapse that ends on them. Neurons of
different blocks interact only through spike-driven synapses (a kind with a transmitter pulse after
each presynaptic spike: cholinergic, GABA_B, or a kind of your own with
:attr:`~psst_helpers.synapses.SynapseKind.pulse` set), whose transmitter depends on the
presynaptic neuron's last spike time ``t_fire`` (the book's model reference, section "Spikes and t_fire",
book/models.md) -- and ``t_fire`` changes only
*between* integration steps (the spike tracker runs after each step). So if the blocks swap their
``t_fire`` vectors after every step, each block sees exactly what the whole network would have
seen, and the partitioned run equals the single-process run (to rounding; the tests ask for
1e-9 mV in float64).

Swapping only every ``exchange_every`` steps is cheaper and approximate: a spike reaches the other
blocks up to ``exchange_every - 1`` steps late. With a synaptic delay ``t_delay`` it is exact again
as long as ``exchange_every * dt < t_delay`` -- the spike is delivered before any synapse can feel
it, the rule by which NEST and other cluster simulators exchange spikes once per minimal delay.

GABA_A synapses of this book are driven by the presynaptic *voltage* inside every RK stage, so no
step-boundary exchange can reproduce them; :func:`split_network` refuses them (and so chapter 6's
locust network, whose inhibition is GABA_A, cannot be split this way).
"""
from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from . import neurons as nrn
from .backend import ops_for
from .distributed import retry_on_cleanup_race
from .errors import ConnectivityError, ParameterError
from .events import network_hook
from .networks import NEVER_FIRED, Model, hh_derivatives, network_inputs
from .solvers.checks import positive_int
from .synapses import SynapseGroup

__all__ = ["Block", "split_network", "run_partitioned", "spike_timing_error"]


@dataclass
class Block:
    """One block of a partitioned network: neurons ``lo .. hi-1`` and the synapses onto them."""

    lo: int
    hi: int
    model: Model


def _block_model(n: int, lo: int, hi: int, I_ext: np.ndarray, synapses: Sequence[SynapseGroup],
                 params: Dict[str, float]) -> Model:
    nb = hi - lo
    state: Dict[str, Any] = {
        "V": np.full(nb, -71.0), "m": np.zeros(nb), "h": np.zeros(nb), "n": np.zeros(nb),
        "I_ext": I_ext[lo:hi].astype(float), "t_fire": np.full(nb, NEVER_FIRED), "spikes": np.zeros(nb),
        # the whole network's last spike times as of the last exchange; own entries kept current
        "t_fire_net": np.full(n, NEVER_FIRED),
    }
    groups = []
    for s in synapses:  # the synapses onto this block's neurons, from every neuron of the network
        mine = (s.post >= lo) & (s.post < hi)
        groups.append(SynapseGroup(s.kinetics, pre=s.pre[mine], post=s.post[mine] - lo, n_neurons=n, n_post=nb,
                                   g=s.g[lo:hi], E=s.E[lo:hi], storage=s.storage, product=s.product))
    if groups:
        state["syn"] = {g.kind: g.initial_state() for g in groups}
    state["par"] = network_inputs(groups, None, membrane=nrn.check_params(params, nrn.HH, "HH membrane"))
    # the network's own kernel; presynaptic spike times come from the exchanged t_fire_net
    derivatives = hh_derivatives(groups, params, t_fire="t_fire_net",
                                 held=("I_ext", "t_fire", "spikes", "t_fire_net"))

    spikes = network_hook(None)

    def post_step(t0: Any, y0: Dict[str, Any], t1: Any, y1: Dict[str, Any]) -> Dict[str, Any]:
        out = spikes(t0, y0, t1, y1)
        net = y1["t_fire_net"]
        out["t_fire_net"] = ops_for(net).concat([net[:lo], out["t_fire"], net[hi:]])
        return out

    desc = {"model": "hh_network_block", "n_neurons": n, "block": [lo, hi],
            "n_synapses": sum(g.size for g in groups)}
    parts = {"builder": "partition_block", "n": n, "block": (lo, hi), "synapses": groups}
    return Model(f"block_{lo}_{hi}", state, derivatives, post_step, desc, parts=parts)


def split_network(
    I_ext: Any,
    synapses: Sequence[SynapseGroup] = (),
    n_blocks: int = 2,
    *,
    params: Dict[str, float] = nrn.HH,
) -> List[Block]:
    """Split an HH network with constant input into ``n_blocks`` blocks of consecutive neurons.

    The blocks together are the network of :func:`psst_helpers.networks.hh_network` with
    ``Constant(I_ext)`` input and the same synapse groups (start V = -71 mV, gates 0).

    Parameters
    ----------
    I_ext : array of length n
        Constant injected current into each neuron (uA/cm^2).
    synapses : sequence of SynapseGroup
        Spike-driven groups (kinds with a transmitter pulse, e.g. "ach" and "gabab"; see the module
        docstring), at most one per kind.
    n_blocks : int
        Number of blocks; neurons are shared out as evenly as possible.
    """
    I_ext = np.atleast_1d(np.asarray(I_ext, float))
    n = I_ext.size
    if positive_int("n_blocks", n_blocks) > n:
        raise ParameterError(f"n_blocks must lie in [1, {n}] for {n} neurons, got {n_blocks}")
    for s in synapses:
        if s.kinetics.pulse is None:
            raise ParameterError(
                f"{s.kind!r} synapses are driven by the presynaptic voltage inside each RK stage, so blocks "
                "exchanging values between steps cannot reproduce them; only spike-driven kinds (a transmitter "
                "pulse after each presynaptic spike, e.g. 'ach', 'gabab') can be split across blocks")
        if s.n_neurons != n or s.n_post != n:
            raise ConnectivityError(f"the SynapseGroup is built for {s.n_neurons} neurons, the network has {n}")
    kinds = [s.kind for s in synapses]
    if len(set(kinds)) != len(kinds):
        raise ParameterError(f"give at most one SynapseGroup per kind, got {kinds}")
    edges = np.linspace(0, n, int(n_blocks) + 1).round().astype(int)
    return [Block(int(lo), int(hi), _block_model(n, int(lo), int(hi), I_ext, synapses, params))
            for lo, hi in zip(edges[:-1], edges[1:])]


def run_partitioned(
    blocks: Sequence[Block],
    t: Any,
    *,
    exchange_every: int = 1,
    devices: Optional[Sequence[str]] = None,
    record: Sequence[str] = ("V",),
    every: int = 1,
    dtype: Any = np.float64,
    xla: bool = True,
) -> Dict[str, np.ndarray]:
    """Integrate the blocks side by side, swapping spike times every ``exchange_every`` steps.

    Parameters
    ----------
    blocks : list of Block
        From :func:`split_network`.
    t : 1-D array
        Time grid (ms); ``len(t) - 1`` steps.
    exchange_every : int
        Steps between two exchanges; 1 reproduces the single-process run.
    devices : list of str, optional
        A TensorFlow device for each block, e.g. ``cluster.devices`` of a
        :class:`psst_helpers.distributed.LocalCluster`; the blocks then run concurrently, one
        Python thread each. Default: all blocks one after another on the local default device.
    record : names of per-neuron state entries to return (default V)
    every : int
        Record every ``every``-th step.

    Returns
    -------
    dict
        ``name -> array [len(t[::every]), n]`` with the blocks' neurons side by side.
    """
    import tensorflow as tf

    from .networks import integrator_for
    from .solvers.checks import check_every, check_time_grid

    t = check_time_grid(t)
    m, every = positive_int("exchange_every", exchange_every, what="steps between two exchanges"), check_every(every)
    # the blocks record every g steps, g dividing both intervals, so records line up across exchanges
    g = math.gcd(m, every)
    if devices is not None and len(devices) != len(blocks):
        raise ParameterError(f"give one device per block: {len(blocks)} blocks, {len(devices)} devices")
    devs = list(devices) if devices is not None else [None] * len(blocks)
    record = list(record)
    # the shared compiled loops of psst_helpers.networks: blocks of one structure (a repeated run) trace once
    integrators = [integrator_for(b.model, record=record, every=g, xla=xla) for b in blocks]
    states = [b.model.state(dtype) for b in blocks]
    chunks: List[List[Dict[str, np.ndarray]]] = [[] for _ in blocks]

    def advance(k: int, tc: np.ndarray) -> None:
        def stretch() -> Any:
            with tf.device(devs[k]) if devs[k] is not None else contextlib.nullcontext():
                return integrators[k](states[k], tc, return_final=True)

        # gRPC can deliver one request twice under load, and TensorFlow then aborts the call; with one client
        # thread per device it now and then fails to delete a helper function of its own. A stretch has no side
        # effects and its start state is kept until it succeeds, so running it again is exact.
        rec, final = retry_on_cleanup_race(stretch, aborted=True)
        states[k] = final
        chunks[k].append({name: rec[name] for name in record})  # read back at the end, not every exchange

    concurrent = devices is not None and len(set(devs)) > 1
    for start in range(0, len(t) - 1, m):
        tc = t[start : min(start + m, len(t) - 1) + 1]
        if concurrent:
            errors: List[BaseException] = []

            def target(k: int, tc: np.ndarray = tc, errors: List[BaseException] = errors) -> None:
                try:
                    advance(k, tc)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                    errors.append(exc)

            threads = [threading.Thread(target=target, args=(k,), daemon=True) for k in range(len(blocks))]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if errors:
                raise errors[0]
        else:
            for k in range(len(blocks)):
                advance(k, tc)
        # the exchange: every block learns every neuron's last spike time
        t_fire = np.concatenate([np.asarray(s["t_fire"]) for s in states])
        for s in states:
            s["t_fire_net"] = t_fire
    out = {}
    for name in record:
        per_block = [np.concatenate([c[name].numpy()[0 if i == 0 else 1:] for i, c in enumerate(ch)]) for ch in chunks]
        out[name] = np.concatenate(per_block, axis=1)[:: every // g]
    return out


def spike_timing_error(reference: Sequence[Any], other: Sequence[Any], *, window: float = 2.0) -> Dict[str, Any]:
    """How far the spikes of one run lie from those of a reference run, neuron by neuron.

    Comparing voltages (the largest ``|dV|``) says little once a spike has moved: a spike 0.1 ms late is a
    voltage difference of tens of mV during its upstroke. This pairs the spikes instead: within each
    neuron, a spike of ``other`` is paired with a spike of ``reference`` at most ``window`` ms away,
    closest pairs first, each spike in at most one pair. A spike left without a partner is missing
    (in ``reference`` only) or extra (in ``other`` only).

    Parameters
    ----------
    reference, other : sequences of 1-D arrays
        Spike times (ms) of each neuron, e.g. :func:`psst_helpers.spike_times` of two runs of the
        same network; the same number of neurons in both.
    window : float
        Largest shift (ms) still counted as the same spike moved; keep it below the shortest
        interspike interval so that a pair is one spike, not two neighbours.

    Returns
    -------
    dict
        ``n_reference``, ``n_other`` (spike counts), ``paired``, ``missing``, ``extra`` (counts);
        ``moved`` (pairs whose times differ), ``max_shift_ms`` and ``mean_shift_ms`` (of ``|shift|``
        over all pairs; 0 when there are none), ``neurons_differing`` (neurons with a moved, missing
        or extra spike) and ``first_difference_ms`` (the earliest time of a moved, missing or extra
        spike; ``None`` when the runs agree).
    """
    window = _non_negative("window", window)
    if len(reference) != len(other):
        raise ParameterError(f"the runs have {len(reference)} and {len(other)} neurons; compare the same network")
    shifts: List[float] = []
    missing = extra = differing = 0
    first: Optional[float] = None
    tol = 1e-9  # spike times are grid times: equal times agree to rounding

    def note(time: float) -> None:
        nonlocal first
        first = time if first is None else min(first, time)

    n_ref = n_other = 0
    for a, b in zip(reference, other):
        a, b = np.sort(np.asarray(a, float).ravel()), np.sort(np.asarray(b, float).ravel())
        n_ref, n_other = n_ref + a.size, n_other + b.size
        d = np.abs(a[:, None] - b[None, :])
        pairs = sorted(zip(*np.nonzero(d <= window)), key=lambda ij: (d[ij], ij))
        used_a, used_b = set(), set()
        changed = False
        for i, j in pairs:
            if i in used_a or j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            shifts.append(float(d[i, j]))
            if d[i, j] > tol:
                changed = True
                note(min(a[i], b[j]))
        for i in set(range(a.size)) - used_a:
            missing, changed = missing + 1, True
            note(a[i])
        for j in set(range(b.size)) - used_b:
            extra, changed = extra + 1, True
            note(b[j])
        differing += changed
    shift = np.asarray(shifts)
    return {
        "n_reference": n_ref, "n_other": n_other, "paired": shift.size, "missing": missing, "extra": extra,
        "moved": int((shift > tol).sum()),
        "max_shift_ms": float(shift.max()) if shift.size else 0.0,
        "mean_shift_ms": float(shift.mean()) if shift.size else 0.0,
        "neurons_differing": int(differing),
        "first_difference_ms": None if first is None else float(first),
    }


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise ParameterError(f"{name} must be a finite number >= 0 (ms), got {value!r}")
    return float(value)
