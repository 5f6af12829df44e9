# The README's commands. Every target installs into .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-slow lint plot sweep clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

train: install  ## one AL experiment with the default config; pass overrides as ARGS="method=margin"
	$(PY) -m al.train $(ARGS)

# Every method, alternately in two halves that run side by side (one per core), seeds 0-2.
METHODS := $(sort $(basename $(notdir $(wildcard conf/method/*.yaml))))
FIRST := $(shell printf '%s\n' $(METHODS) | awk 'NR % 2 == 1' | paste -sd, -)
SECOND := $(shell printf '%s\n' $(METHODS) | awk 'NR % 2 == 0' | paste -sd, -)
SWEEP := multirun/sweep-$(shell date +%Y-%m-%d_%H-%M-%S)

sweep: install  ## every method × seeds 0,1,2 on digits, both cores, then the comparison
	OMP_NUM_THREADS=1 $(PY) -m al.train -m +experiment=sweep_digits method=$(FIRST) seed=0,1,2 \
		hydra.sweep.dir=$(SWEEP) > $(SWEEP).first.log 2>&1 & first=$$!; \
	OMP_NUM_THREADS=1 $(PY) -m al.train -m +experiment=sweep_digits method=$(SECOND) seed=0,1,2 \
		hydra.sweep.dir=$(SWEEP) > $(SWEEP).second.log 2>&1 & second=$$!; \
	wait $$first; first_status=$$?; wait $$second; second_status=$$?; \
	[ $$first_status = 0 ] && [ $$second_status = 0 ] || { echo "see $(SWEEP).*.log"; exit 1; }
	$(PY) -m al.plot $(SWEEP)

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
