"""The command line ``python -m psst_helpers.bench SUITE [options]`` and the registry of its suites.

A suite is added by one module in this package that calls :func:`register`; the command line imports
every module of the package, so a new file is all it takes (no list to edit)::

    # psst_helpers/bench/mysuite.py
    from .cli import register

    def _arguments(p):                       # the suite's own options (optional)
        p.add_argument("--sizes", type=int, nargs="*", default=[100, 1000])

    @register("mysuite", help="what it measures", arguments=_arguments, quick={"sizes": [10]})
    def run(args):                           # args: the parsed options, common ones included
        yield bench_something(args.sizes, args.repeats)   # each yielded list of rows is printed at once

Every suite gets ``--quick`` (one repeat plus the suite's ``quick`` overrides: checks, not timings),
``--repeats``, ``--out`` and ``--threads`` (CPU threads per TensorFlow operation, see
:mod:`psst_helpers.threads`); the rows of all yielded lists go to ``OUT/SUITE.csv`` under a header
naming the machine (:func:`psst_helpers.bench.harness.write_csv`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from .harness import MIN_REPEATS, Row, machine_description, print_table, write_csv


@dataclass
class Suite:
    """One subcommand: its name, help line, option builder, ``--quick`` overrides and run function."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], Iterable[List[Row]]]
    arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None
    quick: Dict[str, Any] = field(default_factory=dict)


SUITES: Dict[str, Suite] = {}


def register(name: str, help: str, arguments: Optional[Callable[[argparse.ArgumentParser], None]] = None,
             quick: Optional[Dict[str, Any]] = None) -> Callable:
    """Decorator: make ``run(args)`` the subcommand ``name`` of ``python -m psst_helpers.bench``.

    Parameters
    ----------
    name : str
        Subcommand name; also the CSV's file name (``OUT/name.csv``).
    help : str
        One line shown by ``--help``.
    arguments : callable, optional
        ``arguments(parser)`` adds the suite's own options to its argparse parser.
    quick : dict, optional
        Option values that ``--quick`` sets (``repeats`` is always 1 there).

    Returns
    -------
    callable
        The decorator; it returns ``run`` unchanged.
    """
    def decorate(run: Callable[[argparse.Namespace], Iterable[List[Row]]]):
        if name in SUITES and SUITES[name].run is not run:
            raise ValueError(f"two benchmark suites are registered as {name!r}: "
                             f"{SUITES[name].run.__module__} and {run.__module__}")
        SUITES[name] = Suite(name, help, run, arguments, dict(quick or {}))
        return run

    return decorate


def load_suites() -> Dict[str, Suite]:
    """Import every module of :mod:`psst_helpers.bench` so that each registers its suites."""
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_") and info.name != "cli":
            importlib.import_module(f"{__package__}.{info.name}")
    return SUITES


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser with one subcommand per registered suite."""
    suites = load_suites()
    parser = argparse.ArgumentParser(
        prog="python -m psst_helpers.bench",
        description="Benchmarks of psst_helpers: timings side by side in one run, written to a CSV "
                    "whose header names the machine and library versions.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks, not timings")
    common.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help=f"timed warm runs per variant: the median is reported with its spread (default {MIN_REPEATS})")
    common.add_argument("--out", type=Path, default=Path("bench-results"), help="folder for SUITE.csv")
    common.add_argument("--threads", type=int, default=None,
                        help="CPU threads per TensorFlow operation (psst.set_cpu_threads); default: TensorFlow's")
    sub = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name in sorted(suites):
        suite = suites[name]
        p = sub.add_parser(name, parents=[common], help=suite.help, description=suite.help)
        if suite.arguments is not None:
            suite.arguments(p)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run one suite, print its rows as they come, write ``OUT/SUITE.csv``; returns the exit status."""
    args = build_parser().parse_args(argv)
    suite = SUITES[args.suite]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as in the chapters: no reordered sums (chapter 2)
    if args.threads is not None:  # before anything starts TensorFlow: it sizes its thread pool then
        from ..threads import set_cpu_threads

        set_cpu_threads(args.threads)
    if args.quick:
        args.repeats = 1
        for key, value in suite.quick.items():
            setattr(args, key, value)
    machine = machine_description()
    machine["threads per operation"] = str(args.threads) if args.threads is not None else "TensorFlow's default"
    print("machine: " + "; ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    rows: List[Row] = []
    for part in suite.run(args):
        print_table(part)
        rows += part
    out = args.out / f"{suite.name}.csv"
    write_csv(out, rows, machine)
    print(f"wrote {out}")
    return 0
