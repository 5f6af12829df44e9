# The README's commands. Every target installs into .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-slow lint plot clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

train: install  ## one AL experiment with the default config; pass overrides as ARGS="method=margin"
	$(PY) -m al.train $(ARGS)

plot: install  ## compare every run under RUNS (default multirun/): make plot RUNS=outputs
	$(PY) -m al.plot $(or $(RUNS),multirun)

lint: install
	$(VENV)/bin/ruff check al tests
	$(VENV)/bin/ruff format --check al tests

test: lint  ## ruff, then the fast suite
	$(PY) -m pytest -m "not slow" $(ARGS)

test-slow: install  ## the minutes-long end-to-end runs
	$(PY) -m pytest -m slow $(ARGS)

clean:
	rm -rf outputs multirun/* .pytest_cache .ruff_cache
