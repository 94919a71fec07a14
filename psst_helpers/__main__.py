"""Command line: ``python -m psst_helpers run MODEL --duration-ms T --out DIR [options]``.

Runs one of the book's built-in models with :func:`psst_helpers.recording.run`: in chunks, streamed
to ``DIR``, resuming from ``DIR``'s checkpoint when the same command is run again. Each call is a
fresh Python process, so all memory TensorFlow keeps is returned to the system when it ends — the
way to run long batches one process at a time (chapter 5).

Examples::

    python -m psst_helpers run locust --duration-ms 2000 --out runs/locust
    python -m psst_helpers run three_neuron --duration-ms 10000 --out runs/three --record V syn
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

MODELS = ("locust", "three_neuron", "single_neuron", "hh_population")


def build_model(name: str, a: argparse.Namespace):
    import numpy as np

    from . import networks

    if name == "locust":
        return networks.locust_antennal_lobe(seed=a.seed)
    if name == "three_neuron":
        return networks.three_neuron_network()
    if name == "single_neuron":
        return networks.single_neuron(a.current)
    return networks.hh_population(np.linspace(0.0, a.current, a.n))


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m psst_helpers", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a built-in model into a folder (resumes from its checkpoint)")
    r.add_argument("model", choices=MODELS)
    r.add_argument("--duration-ms", type=float, required=True, help="simulated time (ms)")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--dt", type=float, default=0.01, help="integration step (ms), default 0.01")
    r.add_argument("--every", type=int, default=10, help="record every k-th step, default 10")
    r.add_argument("--record", nargs="+", default=["V"], help="state entries to record, default V")
    r.add_argument("--chunk-ms", type=float, default=100.0, help="simulated ms per compiled chunk, default 100")
    r.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    r.add_argument("--seed", type=int, default=0, help="seed of the locust model, default 0")
    r.add_argument("--current", type=float, default=5.0, help="injected current (single_neuron; max for hh_population)")
    r.add_argument("--n", type=int, default=20, help="neurons of hh_population, default 20")
    r.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    r.add_argument("--max-chunks", type=int, default=None, help="stop after this many chunks (resume later)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    a = p.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from .errors import PSSTError
    from .recording import run

    try:
        rec = run(build_model(a.model, a), a.duration_ms, a.out, dt=a.dt, record=a.record, every=a.every,
                  chunk_ms=a.chunk_ms, dtype=a.dtype, overwrite=a.overwrite, progress=a.progress,
                  seed=a.seed if a.model == "locust" else None, max_chunks=a.max_chunks)
    except (PSSTError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = "complete" if rec.complete else f"stopped at {rec.steps_done * a.dt:g} ms (run again to resume)"
    print(f"{a.out}: {state}; recorded {', '.join(rec.variables)} at {len(rec.t)} times")
    return 0


if __name__ == "__main__":
    sys.exit(main())
