# The README's commands. Every target installs into .venv first when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install train test test-slow lint plot sweep docs clean gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

train: install  ## one AL experiment with the default config; pass overrides as ARGS="method=margin"
	$(PY) -m al.train $(ARGS)

# Every method × seeds 0-2: one multirun per method, two at a time (one per core) from a queue
# that starts with the slowest — the VAE-based selectors, which reverse name order puts first.
# SEMI=fixmatch|flexmatch: the same under semi-supervised training, for the methods whose task
# learner is the standard classifier (the others train their own regime).
SEMI ?= none
ALL_METHODS := $(sort $(basename $(notdir $(wildcard conf/method/*.yaml))))
OWN_REGIME_METHODS := $(basename $(notdir $(shell grep -l -E \
	"task_module@module: m2|al\.methods\.(ads|bgadl|qbc)\.[A-Za-z]*Module" conf/method/*.yaml)))
METHODS := $(if $(filter none,$(SEMI)),$(ALL_METHODS),$(filter-out $(OWN_REGIME_METHODS),$(ALL_METHODS)))
SWEEP := multirun/sweep-$(shell date +%Y-%m-%d_%H-%M-%S)
SWEEP_ONE := OMP_NUM_THREADS=1 $(PY) -m al.train -m +experiment=sweep_digits seed=0,1,2 \
	semi=$(SEMI) hydra.sweep.dir=$(SWEEP) method=

sweep: install  ## every method × seeds 0,1,2 on digits, both cores, then the comparison (SEMI=fixmatch)
	mkdir -p $(SWEEP)
	printf '%s\n' $(METHODS) | sort -r | xargs -P 2 -I METHOD \
		sh -c '$(SWEEP_ONE)METHOD > $(SWEEP)/METHOD.log 2>&1 || { echo "METHOD failed: see $(SWEEP)/METHOD.log"; exit 255; }'
	$(PY) -m al.reports.plot $(SWEEP)

plot: install  ## compare every run under RUNS (default multirun/): make plot RUNS=outputs
	$(PY) -m al.reports.plot $(or $(RUNS),multirun)

gpu-check: install  ## the GPU figures in one command (<= 8 min; a dry run on a machine without CUDA)
	$(PY) -m al.gpu_check --out $(or $(OUT),gpu_check.json)

lint: install
	$(VENV)/bin/ruff check al tests
	$(VENV)/bin/ruff format --check al tests

# The fast suite in TEST_WORKERS processes (pytest-xdist), one thread each.
TEST_WORKERS ?= 2

test: lint  ## ruff, then the fast suite
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow" -n $(TEST_WORKERS) $(ARGS)

test-slow: install  ## the minutes-long end-to-end runs
	$(PY) -m pytest -m slow $(ARGS)

DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)  ## the documentation site (docs/, mkdocs.yml), built --strict into site/
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf outputs multirun/* .pytest_cache .ruff_cache
