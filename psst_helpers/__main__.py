"""Command line: ``python -m psst_helpers run MODEL --duration-ms T --out DIR [options]``.

Runs one of the book's built-in models with :func:`psst_helpers.recording.run`: in chunks, streamed
to ``DIR``, resuming from ``DIR``'s checkpoint when the same command is run again (after checking
the files already there, and recomputing any damaged part). Each call is a fresh Python process,
so all memory TensorFlow keeps is returned to the system when it ends -- the way to run long
batches one process at a time (chapter 5).

Examples::

    python -m psst_helpers run locust --duration-ms 2000 --out runs/locust
    python -m psst_helpers run three_neuron --duration-ms 10000 --out runs/three --record V syn

Every expected failure is one line on stderr naming the value or path at fault. Exit status: 0
done (or stopped by ``--max-chunks``), 2 refused (bad arguments, a folder holding something else,
a damaged checkpoint), 1 failed while running (disk full, folder read-only, another run writing
the folder; what was written stays resumable), 130 interrupted (Ctrl-C; resumable).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, List, NoReturn, Optional

MODELS = ("locust", "three_neuron", "single_neuron", "hh_population")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the value at fault), not the usage text and a line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: Callable[[str], Any], rule: Callable[[Any], Optional[str]]) -> Callable[[str], Any]:
    """An argparse type: parse with ``kind``, then ``rule`` returns why the value is refused (or None)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        why = rule(value)
        if why:
            raise argparse.ArgumentTypeError(f"{text}: {why}")
        return value

    return parse


def _finite_positive(why_positive: str, example: str) -> Callable[[float], Optional[str]]:
    def rule(x: float) -> Optional[str]:
        if math.isnan(x):
            return f"is not a number; give {example}"
        if math.isinf(x):
            return f"must be finite; give {example}"
        if x <= 0:
            return f"must be positive: {why_positive}"
        return None
    return rule


POSITIVE_DT = _number(float, _finite_positive("a step of zero or less never advances time", "the step in ms, e.g. 0.01"))
CHUNK = _number(float, _finite_positive("each chunk must advance the simulation before it is written to disk",
                                        "the simulated ms per chunk, e.g. 100"))
DURATION = _number(float, _finite_positive("a run needs at least one step", "the simulated time in ms, e.g. 1000"))
EVERY = _number(int, lambda k: None if k >= 1 else "records every k-th step, so k must be at least 1")
NEURONS = _number(int, lambda n: None if n >= 1 else "hh_population needs at least one neuron")
MAX_CHUNKS = _number(int, lambda n: None if n >= 1 else "must be at least 1 (omit it to run to the end)")
SEED = _number(int, lambda s: None if s >= 0 else "seeds are non-negative integers")
THREADS = _number(int, lambda n: None if n >= 1 else "a thread count is at least 1 (omit it for TensorFlow's default)")
CURRENT = _number(float, lambda x: None if math.isfinite(x) else "the injected current must be finite (µA/cm²)")


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


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m psst_helpers", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a built-in model into a folder (resumes from its checkpoint)")
    r.add_argument("model", choices=MODELS)
    r.add_argument("--duration-ms", type=DURATION, required=True, help="simulated time (ms)")
    r.add_argument("--out", required=True, help="output folder (created if needed)")
    r.add_argument("--dt", type=POSITIVE_DT, default=0.01, help="integration step (ms), default 0.01")
    r.add_argument("--every", type=EVERY, default=10, help="record every k-th step, default 10")
    r.add_argument("--record", nargs="+", default=["V"], help="state entries to record, default V")
    r.add_argument("--chunk-ms", type=CHUNK, default=100.0, help="simulated ms per compiled chunk, default 100")
    r.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    r.add_argument("--seed", type=SEED, default=0, help="seed of the locust model, default 0")
    r.add_argument("--current", type=CURRENT, default=5.0,
                   help="injected current (single_neuron; max for hh_population)")
    r.add_argument("--n", type=NEURONS, default=20, help="neurons of hh_population, default 20")
    r.add_argument("--threads", type=THREADS, default=None,
                   help="CPU threads per TensorFlow operation (1: faster for small networks on a small CPU); "
                        "default: TensorFlow's")
    r.add_argument("--overwrite", action="store_true", help="replace a different run in --out")
    r.add_argument("--max-chunks", type=MAX_CHUNKS, default=None, help="stop after this many chunks (resume later)")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    return p


def _message(exc: BaseException) -> str:
    """One line: a KeyError's text without its quotes, an OSError with its path."""
    if isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and not str(exc).startswith("cannot") and exc.filename:
        text = f"{exc.filename}: {exc.strerror or exc}"
    else:
        text = str(exc)
    return " ".join(text.split())


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # oneDNN's reordered arithmetic differs in the last bits and announces itself on stderr: off by
    # default, so a resumed run continues with the same arithmetic and errors stay one line
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from .analysis import count_steps
    from .errors import PSSTError
    from .recording import RunLockedError, RunWriteError, run
    from .recording.folder import check_out

    def note(message, category, filename, lineno, file=None, line=None):
        print(f"note: {' '.join(str(message).split())}", file=sys.stderr, flush=True)

    warnings.showwarning = note
    try:
        # the cheap checks first, before TensorFlow is imported to build the model
        count_steps(a.duration_ms, a.dt, duration_name="--duration-ms", dt_name="--dt")
        check_out(Path(a.out))
        if a.threads is not None:  # before TensorFlow runs anything: it sizes its thread pool then
            from .threads import set_cpu_threads

            set_cpu_threads(a.threads)
        rec = run(build_model(a.model, a), a.duration_ms, a.out, dt=a.dt, record=a.record, every=a.every,
                  chunk_ms=a.chunk_ms, dtype=a.dtype, overwrite=a.overwrite, progress=a.progress,
                  seed=a.seed if a.model == "locust" else None, max_chunks=a.max_chunks)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; the finished chunks are kept: run the same command again to resume",
              file=sys.stderr)
        return 130
    except (RunWriteError, RunLockedError) as exc:
        print(f"{parser.prog}: error: {_message(exc)}", file=sys.stderr)
        return 1
    except (PSSTError, ValueError, KeyError, OSError) as exc:
        print(f"{parser.prog}: error: {_message(exc)}", file=sys.stderr)
        return 2
    names = ", ".join(rec.variables)
    if rec.complete:
        print(f"{a.out}: complete; recorded {names} at {len(rec.t)} times")
    else:
        rows = min(rec.steps_done // rec.meta["every"] + 1, len(rec.t))
        print(f"{a.out}: stopped at {rec.steps_done * a.dt:g} ms (run again to resume); {names} recorded at "
              f"{rows} of {len(rec.t)} times so far")
    return 0


if __name__ == "__main__":
    sys.exit(main())
