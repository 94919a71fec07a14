"""Suite ``appendix``: what the benchmark appendix chapter plots, ``matmul`` then ``core`` with the eager loop."""
from __future__ import annotations

import argparse
from typing import Iterator, List

from .cli import register
from .core import HH_QUICK, SIN_QUICK, bench_hh, bench_sin, hh_arguments, sin_arguments
from .harness import Row
from .matmul import MATMUL_QUICK, bench_matmul, matmul_arguments


def _arguments(p: argparse.ArgumentParser) -> None:
    matmul_arguments(p)
    sin_arguments(p)
    hh_arguments(p)


@register("appendix", help="matmul + core with the eager loop (the appendix chapter's figures)",
          arguments=_arguments, quick={**MATMUL_QUICK, **SIN_QUICK, **HH_QUICK})
def run_appendix(args: argparse.Namespace) -> Iterator[List[Row]]:
    """Suite ``appendix``."""
    yield bench_matmul(args.matmul_sizes, args.repeats)
    yield bench_sin(args.sin_sizes, args.repeats, eager=True)
    yield bench_hh(args.hh_sizes, args.hh_duration_ms, args.repeats)
