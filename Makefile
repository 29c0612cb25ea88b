# Two entry points for a fresh machine: `make demo` and `make test`.
# torch is pinned to the CPU wheel *before* the package is installed, so resolving
# `torch>=2.4` from pyproject.toml pulls no CUDA packages. The core library needs torch,
# safetensors and numpy only; `make demo` adds the `experiments` extra, `make test` the `test` extra and
# type-checks src/tying (mypy) before running the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: install demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH)

$(VENV)/.experiments: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[experiments]"
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[test]"
	touch $@

install: $(VENV)/.test

# The two runs train side by side on 2+ cores (docs/demo/tying-demo.md has the measured times);
# run again, it trains nothing and shows the finished runs in runs/demo/ again.
demo: $(VENV)/.experiments
	$(BIN)/tying demo

test: $(VENV)/.test
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
