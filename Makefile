# The two commands of the README's quick start:
#   make book   - create .venv, install what the book needs, build the site into _build/html
#   make test   - create .venv if needed, run every test (package tests and notebooks)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: book test bench brian2-venv clean

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 MPLBACKEND=Agg \
	  $(VENV)/bin/jupyter-book build . --warningiserror --keep-going
	@echo "open _build/html/index.html"

test: $(STAMP)
	PSST_FAST=1 MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=3 TF_ENABLE_ONEDNN_OPTS=0 \
	  $(PY) -m pytest tests $(wildcard notebooks/*.ipynb) --nbval-lax --nbval-cell-timeout=600

bench: $(STAMP)
	$(PY) -m psst_helpers.bench appendix

# Brian2 (for `python -m psst_helpers.bench brian2`) in its own environment: Brian2 2.9 needs NumPy < 2.4.
brian2-venv: .venv-brian2/.installed
.venv-brian2/.installed:
	python3 -m venv .venv-brian2
	.venv-brian2/bin/python -m pip install --quiet "brian2>=2.7" "numpy<2.4" cython setuptools
	touch $@

clean:
	rm -rf _build .pytest_cache bench-results
