"""Benchmarks: ``python -m psst_helpers.bench {appendix,brian2,brian2-networks,core,jaxley,locust,matmul,threads} [--quick] [--out DIR]``.

One file per thing:

- :mod:`~psst_helpers.bench.baselines`: the original tutorial's designs that chapters compare against
  (:func:`original_design`, :func:`original_design_run`, :func:`original_scan_rk4`, :func:`eager_rk4`, :func:`original_hh_population`);
- :mod:`~psst_helpers.bench.harness`: timing, machine description, CSV and table;
- :mod:`~psst_helpers.bench.core`, :mod:`~psst_helpers.bench.locust`, :mod:`~psst_helpers.bench.matmul`,
  :mod:`~psst_helpers.bench.brian2`, :mod:`~psst_helpers.bench.threads`,
  :mod:`~psst_helpers.bench.appendix`: the suites (``brian2`` runs ``benchmarks/bench_brian2.py`` and
  ``brian2-networks`` ``benchmarks/brian2_networks.py`` of the repository under Brian2's own Python, ``jaxley``
  ``benchmarks/bench_jaxley.py`` under jaxley's);
- :mod:`~psst_helpers.bench.results`: measured results shipped with the package (:func:`stored_results`);
- :mod:`~psst_helpers.bench.cli`: the command line and its registry; a new suite is one new module
  that calls :func:`~psst_helpers.bench.cli.register`.

Compile (first-call) time is reported apart from run time; run times are medians of ``--repeats``
runs. Results go to a CSV whose header lines (``# ...``) describe the machine and library versions.
``--quick`` uses tiny sizes and one repeat: it checks that every variant computes the same numbers.
``--threads N`` sets the CPU threads per TensorFlow operation first (:mod:`psst_helpers.threads`).
TensorFlow is imported only when a benchmark runs.
"""
from .baselines import (bare_hh_population, eager_rk4, original_design, original_design_run, original_hh_population,
                        original_scan_rk4)
from .brian2 import bench_brian2
from .cli import main, register
from .core import bench_hh, bench_sin
from .locust import bench_locust
from .threads import bench_threads
from .harness import machine_description, print_table, timed, write_csv
from .matmul import bench_matmul
from .results import stored_result_names, stored_results

__all__ = [
    "original_design", "original_design_run", "original_scan_rk4", "eager_rk4", "original_hh_population", "bare_hh_population",
    "bench_sin", "bench_hh", "bench_locust", "bench_matmul", "bench_brian2", "bench_threads",
    "machine_description", "timed", "write_csv", "print_table",
    "stored_results", "stored_result_names", "main", "register",
]
