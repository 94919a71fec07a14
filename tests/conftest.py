import os
from pathlib import Path

import pytest

# Quiet TensorFlow before any test imports it (see shared toolchain notes: both are needed).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

# Whole files outside the fast tier (`make test-fast`, i.e. `pytest -m "not slow"`): each starts subprocess
# clusters, builds the site or drives a browser, resolves packages with pip or builds fresh environments,
# reaches the network, executes notebooks or records long runs. Single slow tests elsewhere carry
# @pytest.mark.slow themselves.
SLOW_FILES = {
    "test_distributed.py",   # TensorFlow worker clusters in subprocesses
    "test_site.py",          # jupyter-book build, a headless browser
    "test_packaging.py",     # wheels, pip resolution, fresh virtual environments
    "test_install_cell.py",  # the chapters' install cell: pip into fresh environments
    "test_lab.py",           # a JupyterLab server
    "test_workflows.py",     # GitHub's workflow schema, actionlint
    "test_notebooks.py",     # executes the chapters
    "test_recording.py",     # long recordings, the CLI in subprocesses killed and resumed
}

# Single tests outside the fast tier, by file (measured with --durations: the longest runs in the suite,
# or a CLI recording in subprocesses). Tests in files another change owns are listed here rather than marked.
SLOW_TESTS = {
    "test_gradients.py": {"test_hh_gradient_matches_central_differences_and_the_tape",
                          "test_checkpointing_gives_the_same_records_and_gradient"},
    "test_one_integrator.py": {"test_gradient_matches_central_differences_and_value_and_gradient",
                               "test_checkpointing_changes_memory_not_results",
                               "test_gradients_through_a_network_model_with_its_hooks",
                               "test_a_sweep_of_parameter_values_traces_once"},
    "test_engine.py": {"test_per_presynaptic_and_per_synapse_storage_agree_on_the_locust"},
    "test_cli_errors.py": {"test_read_only_folder", "test_full_disk_keeps_what_was_written_resumable",
                           "test_a_run_with_one_thread_per_operation_completes"},
}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: outside the fast tier (make test-fast runs -m 'not slow'): subprocess clusters, site "
                   "build or browser, pip or fresh environments, network, notebooks, Brian2, long recordings")
    if os.environ.get("PSST_QUICK") == "1" and not config.pluginmanager.has_plugin(QuickSizes.NAME):
        config.pluginmanager.register(QuickSizes(), QuickSizes.NAME)


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = Path(str(item.fspath)).name
        # notebook cells (nbval items) have no originalname: a chapter is executed as a whole, never fast
        if (name in SLOW_FILES or name.endswith(".ipynb")
                or getattr(item, "originalname", None) in SLOW_TESTS.get(name, ())):
            item.add_marker(pytest.mark.slow)


# The chapters' size switch. A chapter with smaller sizes for quick runs shows its reader one line,
# `QUICK = False  # True: smaller sizes for a quick first run`, alone in a code cell tagged "parameters"
# (papermill's convention); the sizes are computed from QUICK in the cells after it. With PSST_QUICK=1
# in the environment (`make test` sets it), nbval runs `QUICK = True` in the notebook's kernel right
# after that cell, as papermill injects parameters: the notebook's text is never changed, and nothing in
# a chapter reads the environment. tools/execute_notebooks.py runs chapters without nbval: full sizes.
PARAMETERS_TAG = "parameters"
QUICK_OVERRIDE = "QUICK = True"


class QuickSizes:
    """A plugin: after each notebook cell tagged PARAMETERS_TAG, run QUICK_OVERRIDE in nbval's kernel.

    A plugin, not a hook of this conftest: pytest calls a conftest's run-time hooks only for items in
    the conftest's folder, and the notebooks are in notebooks/. pytest reads this conftest when tests/
    (or a file in it) is among its arguments, as in `make test`.
    """
    NAME = "psst-quick-sizes"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        result = yield          # the cell itself: if it fails, its error propagates and nothing runs after it
        if is_parameters_cell(item):
            run_in_kernel(item.parent.kernel, QUICK_OVERRIDE, timeout=item.config.option.nbval_cell_timeout)
        return result


def is_parameters_cell(item) -> bool:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:     # without nbval there are no notebook cells to run
        return False
    return isinstance(item, IPyNbCell) and PARAMETERS_TAG in item.cell.metadata.get("tags", [])


def run_in_kernel(kernel, code: str, timeout: float) -> None:
    """Execute ``code`` in nbval's running kernel and wait until it is done; raise if it failed.

    Its messages are all read here, so none of them is taken for the next cell's output."""
    msg_id = kernel.execute_cell_input(code, allow_stdin=False)
    kernel.await_reply(msg_id, timeout=timeout)
    while True:
        msg = kernel.get_message(stream="iopub", timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "error":
            raise RuntimeError(f"{code!r}, run after the cell tagged {PARAMETERS_TAG!r}, failed: "
                               f"{msg['content']['ename']}: {msg['content']['evalue']}")
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return
