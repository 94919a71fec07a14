"""The benchmark harness in --quick mode: every variant runs and computes the same numbers.

Timings are printed by the benchmark, never asserted here.
"""
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_bench_appendix_quick(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "psst_helpers.bench", "appendix", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (tmp_path / "appendix.csv").read_text().splitlines()
    header = [ln for ln in lines if ln.startswith("# ")]
    assert any(ln.startswith("# cpu:") for ln in header) and any(ln.startswith("# tensorflow:") for ln in header)
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("# ")))
    variants = {(r["bench"], r["variant"]) for r in rows}
    assert {("rk4_sin", v) for v in ("numpy_loop", "tf_eager_loop", "original_scan", "psst_graph", "psst_xla")} <= variants
    assert {("matmul", v) for v in ("numpy", "tf_cpu")} <= variants
    assert {("hh_population", v) for v in ("original_scan", "psst_graph", "psst_xla")} <= variants
    for r in rows:
        assert float(r["run_s"]) > 0 and float(r["compile_s"]) >= 0
        if r["bench"] == "matmul":  # relative to the largest entry
            tol = 1e-13 if r["dtype"] == "float64" else 1e-5
        else:
            tol = 1e-12 if r["dtype"] == "float64" and r["bench"] == "rk4_sin" else (1e-9 if r["dtype"] == "float64" else 0.1)
        assert float(r["max_abs_diff"]) <= tol, r
        if r["bench"] == "hh_population" and r["variant"].startswith("psst"):
            assert int(r["nan_neurons"]) == 0
    print(proc.stdout)
    assert np.isfinite([float(r["run_s"]) for r in rows]).all()


def test_every_suite_parses_and_its_quick_options_exist():
    from psst_helpers.bench.cli import SUITES, build_parser

    parser = build_parser()
    assert {"core", "matmul", "appendix", "brian2"} <= set(SUITES)
    for name, suite in SUITES.items():
        args = parser.parse_args([name, "--quick"])
        unknown = set(suite.quick) - set(vars(args))
        assert not unknown, f"suite {name}: --quick sets options it does not have: {unknown}"


def test_a_registered_suite_runs_from_the_command_line(tmp_path, capsys):
    from psst_helpers.bench.cli import SUITES, main, register

    def arguments(p):
        p.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000])

    @register("extra", help="sizes as rows", arguments=arguments, quick={"sizes": [3]})
    def run(args):
        for n in args.sizes:
            yield [{"bench": "extra", "variant": "v", "size": n, "dtype": "float64", "run_s": float(args.repeats),
                    "compile_s": 0.0, "max_abs_diff": 0.0}]

    try:
        assert main(["extra", "--quick", "--out", str(tmp_path)]) == 0
        assert main(["extra", "--sizes", "5", "7", "--repeats", "2", "--out", str(tmp_path / "full")]) == 0
    finally:
        SUITES.pop("extra")
    quick = [r for r in csv.DictReader(ln for ln in (tmp_path / "extra.csv").read_text().splitlines()
                                       if not ln.startswith("# "))]
    assert [(r["size"], r["run_s"]) for r in quick] == [("3", "1.0")]
    full = (tmp_path / "full" / "extra.csv").read_text()
    assert [r["size"] for r in csv.DictReader(ln for ln in full.splitlines() if not ln.startswith("# "))] == ["5", "7"]
    assert "N=      7" in capsys.readouterr().out


def test_two_suites_cannot_share_a_name():
    from psst_helpers.bench.cli import register

    with pytest.raises(ValueError, match="'core'"):
        register("core", help="again")(lambda args: iter(()))


def test_stored_results_are_found_from_outside_the_checkout(tmp_path):
    """What the appendix chapter reads must come with the package (Colab has no checkout).

    Only where the files are found is checked, not what they hold: their numbers are measurements
    (the Brian2 spike counts are computed and compared in test_brian2_counts_the_same_spikes)."""
    code = ("import psst_helpers.bench as b\n"
            "print(b.stored_results('brian2_2cpu_epyc.csv')); print(' '.join(b.stored_result_names()))\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    where, names = proc.stdout.splitlines()
    shipped = root / "psst_helpers" / "bench" / "results"
    assert Path(where) == shipped / "brian2_2cpu_epyc.csv" and Path(where).is_file()
    assert names.split() == sorted(p.name for p in shipped.glob("*.csv"))
    from psst_helpers.bench import stored_results

    with pytest.raises(FileNotFoundError, match=r"README\.md") as err:  # the name asked for, and those there are
        stored_results("../../README.md")
    assert "brian2_2cpu_epyc.csv" in str(err.value)


BRIAN2 = Path(__file__).resolve().parents[1] / ".venv-brian2" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not BRIAN2.exists(), reason="no Brian2 environment: run `make brian2-venv` to include this check")
def test_brian2_counts_the_same_spikes(tmp_path):
    from psst_helpers.bench import bench_brian2

    rows = bench_brian2([30], 30.0, str(BRIAN2), repeats=1)
    by_variant = {r["variant"]: r for r in rows}
    assert {"psst_xla", "brian2_cpp_standalone", "brian2_cython"} <= set(by_variant)
    assert by_variant["psst_xla"]["spikes"] > 0
    for r in rows:
        assert r["spike_mismatch"] == 0, r


@pytest.mark.slow
def test_threads_suite_runs_each_setting_in_its_own_process(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "psst_helpers.bench", "threads", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = (tmp_path / "threads.csv").read_text().splitlines()
    assert "# threads per operation: TensorFlow's default" in lines
    rows = list(csv.DictReader(ln for ln in lines if not ln.startswith("# ")))
    assert [r["variant"] for r in rows] == ["threads_default", "threads_1", "threads_2"]
    assert [r["threads_used"] for r in rows] == ["default", "1", "2"]
    for r in rows[1:]:
        assert float(r["max_abs_diff"]) <= 1e-9             # the same run, only scheduled differently
    for r in rows:
        assert float(r["us_per_step"]) > 0 and int(r["n_runs"]) == 1
        assert float(r["min_s"]) <= float(r["q1_s"]) <= float(r["run_s"]) <= float(r["q3_s"]) <= float(r["max_s"])


def test_timed_runs_reports_each_run_and_its_spread():
    from psst_helpers.bench.harness import MIN_REPEATS, timed_runs

    waits = iter([0.0, 0.03, 0.01, 0.05, 0.02, 0.04])   # the first call, then five warm runs

    def fn():
        import time
        end = time.process_time() + next(waits)
        while time.process_time() < end:             # busy until this process has used the wait in CPU time
            pass                                      # (wall time is at least that, however loaded the machine)
        return 7

    out, timing = timed_runs(fn, MIN_REPEATS)
    assert out == 7 and len(timing.runs_s) == len(timing.cpu_s) == len(timing.others_cpu_s) == MIN_REPEATS
    c = timing.columns()
    assert c["n_runs"] == 5 and c["min_s"] == min(timing.runs_s) and c["max_s"] == max(timing.runs_s)
    assert 0.01 <= c["min_s"] <= c["q1_s"] <= c["run_s"] <= c["q3_s"] <= c["max_s"]
    # each run lasts at least its wait (longer on a busy machine), so the median is at least the waits' median
    assert c["run_s"] == sorted(timing.runs_s)[2] and c["run_s"] >= 0.03 and c["max_s"] >= 0.05
    assert c["compile_s"] == 0.0                      # the first call was the fastest: never negative
    assert "over 5 runs" in timing.summary()
    assert all(x >= 0 for x in timing.cpu_s) and sum(timing.cpu_s) > 0.1   # 0.15 s of CPU, read in 10 ms ticks


def test_the_table_prints_each_median_with_its_spread(capsys):
    from psst_helpers.bench.harness import print_table

    print_table([{"bench": "b", "variant": "v", "size": 3, "dtype": "float64", "run_s": 2.5, "min_s": 2.2,
                  "max_s": 4.7, "n_runs": 5, "compile_s": 1.0, "max_abs_diff": 0.0}])
    assert "run   2.5000 s [2.2000-4.7000, n=5]" in capsys.readouterr().out


def test_a_thread_setting_replaces_the_default_only_beyond_the_spread():
    from psst_helpers.threads import pick_cpu_threads

    def rows(*runs):
        return [{"variant": v, "run_s": med, "max_s": hi}
                for v, (med, hi) in zip(["threads_default", "threads_1", "threads_2"], runs)]

    assert pick_cpu_threads(rows((2.45, 2.6), (2.81, 3.0), (2.5, 2.7))) is None      # the AMD EPYC: default
    assert pick_cpu_threads(rows((45.5, 47.0), (38.8, 40.0), (46.0, 47.0))) == 1       # the Intel Xeon: one
    assert pick_cpu_threads(rows((2.45, 2.6), (2.30, 2.5), (2.0, 2.2))) == 2           # the fastest of several
    assert pick_cpu_threads(rows((2.45, 2.6), (2.40, 2.44), (2.5, 2.7))) is None      # 2 % faster: within the margin
    assert pick_cpu_threads(rows((2.45, 4.7), (2.20, 3.0), (2.5, 2.7))) is None      # faster, but its spread overlaps


_THREADS_SCRIPT = """
import sys
import psst_helpers as psst
import tensorflow as tf
if sys.argv[1] == "late":
    tf.constant(1.0) + 1.0                      # TensorFlow starts: its thread pool now exists
try:
    psst.set_cpu_threads(1)
except RuntimeError as err:
    print("ERROR", err)
else:
    tf.constant(1.0) + 1.0
    print("THREADS", tf.config.threading.get_intra_op_parallelism_threads())
"""


@pytest.mark.parametrize("when", ["first", "late"])
def test_set_cpu_threads_works_first_and_says_what_to_do_when_late(when):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, when], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    if when == "first":
        assert "THREADS 1" in proc.stdout
    else:
        assert "ERROR" in proc.stdout and "set_cpu_threads(1) before anything else runs TensorFlow" in proc.stdout
        assert "restart the kernel" in proc.stdout


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_set_cpu_threads_refuses_what_is_not_a_thread_count(bad):
    import psst_helpers as psst

    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        psst.set_cpu_threads(bad)


def test_original_design_builds_its_graph_once_and_follows_the_package():
    # chapter 6 and `bench locust` time a second call as the design's run: it must not build the graph again
    from psst_helpers import analysis, networks
    from psst_helpers.bench import original_design

    model = networks.three_neuron_network()
    run = original_design(model)
    short, long = analysis.time_grid(20.0, 0.01), analysis.time_grid(60.0, 0.01)
    a, b = run(short), run(long)
    assert run.tracing_count() == 1
    assert b["V"].shape == (len(long) - 1, 3) and np.array_equal(a["V"], b["V"][:len(short) - 1])
    ours = networks.simulate(model, long, record=("V",))["V"]
    np.testing.assert_allclose(b["V"], ours[1:], rtol=0, atol=1e-9)  # same kernels and RK4, another loop
    with pytest.raises(ValueError, match="at least two points"):
        run(np.array([0.0]))
    with pytest.raises(TypeError, match="float32 or float64"):
        original_design(model, np.int64)



def _bare_hh_population_per_call(I_inj, t, dtype, every, rates):
    """bare_hh_population as it was: a new tf.function, constants baked in, on every call (the reference)."""
    import tensorflow as tf

    from psst_helpers.bench.baselines import original_hh_population, package_rates_hh_population

    n, dt, n_rec, tf_dt = I_inj.size, float(t[1] - t[0]), (len(t) - 1) // every, tf.as_dtype(np.dtype(dtype))
    f = (original_hh_population if rates == "naive" else package_rates_hh_population)(I_inj, tf_dt)
    X0 = tf.constant(np.concatenate([np.full(n, -71.0), np.zeros(3 * n)]).astype(dtype))

    @tf.function(jit_compile=True)
    def run(X):
        h = tf.constant(dt, tf_dt)

        def step(X, tm):
            k1 = f(X, tm)
            k2 = f(X + 0.5 * h * k1, tm)
            k3 = f(X + 0.5 * h * k2, tm)
            k4 = f(X + h * k3, tm)
            return X + h / 6.0 * (k1 + 2.0 * (k2 + k3) + k4)

        def outer(r, X, ta):
            X = tf.while_loop(lambda i, X: i < every, lambda i, X: (i + 1, step(X, 0.0)), (0, X))[1]
            return r + 1, X, ta.write(r, X[:n])

        ta = tf.TensorArray(tf_dt, size=n_rec, element_shape=[n])
        _, X, ta = tf.while_loop(lambda r, *_: r < n_rec, outer, (0, X, ta))
        return tf.concat([X0[None, :n], ta.stack()], 0)

    return run(X0).numpy()


@pytest.mark.parametrize("rates", ["naive", "package"])
def test_bare_hh_population_traces_once_per_structure_and_keeps_its_values(rates):
    # the appendix builds this kernel for every size, dtype and rate formula: kernels of the same
    # structure must share one trace (a new tf.function per call retraced and TensorFlow warned)
    from psst_helpers.bench import bare_hh_population

    t = 0.01 * np.arange(301)                                     # 3 ms, V every 10 steps
    I = np.linspace(0.0, 10.0, 64)
    for dtype, tol in (("float64", 1e-10), ("float32", 1e-3)):   # mV; float32: a few ulps of ~50 mV
        first = bare_hh_population(I, t, np.dtype(dtype), rates=rates)
        before = first.tracing_count()
        a = first()
        traced = first.tracing_count()
        assert traced - before <= 1                               # at most one trace for this dtype and shape
        b = bare_hh_population(I + 1.0, t, np.dtype(dtype), rates=rates)()   # new currents, same shapes
        second = bare_hh_population(I, t, np.dtype(dtype), rates=rates)
        c = second()
        second()
        assert second.tracing_count() == traced, "a kernel of the same structure traced again"
        assert np.array_equal(a, c) and not np.array_equal(a, b)
        ref = _bare_hh_population_per_call(I, t, dtype, 10, rates)
        assert a.shape == ref.shape == (31, 64)
        np.testing.assert_allclose(a, ref, rtol=0, atol=tol)   # the same arithmetic, to rounding

_FASTEST_SCRIPT = """
import sys
from psst_helpers.threads import fastest_cpu_threads, set_cpu_threads
n = fastest_cpu_threads("hh_10", duration_ms=2.0, repeats=1)
assert "tensorflow" not in sys.modules, "measuring started TensorFlow in this process"
if n is not None:
    set_cpu_threads(n)                          # still possible: the measuring ran in other processes
import tensorflow as tf
tf.constant(1.0) + 1.0
print("CHOSEN", n, tf.config.threading.get_intra_op_parallelism_threads())
"""


@pytest.mark.slow
def test_fastest_cpu_threads_measures_in_other_processes_and_leaves_the_choice_open():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _FASTEST_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen, used = proc.stdout.split("CHOSEN", 1)[1].split()
    assert chosen in ("None", "1", "2")
    assert used == ("0" if chosen == "None" else chosen)   # 0: TensorFlow's default
