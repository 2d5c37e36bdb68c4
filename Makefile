# Everything a fresh machine needs goes through these targets.
#   make demo       build the environment if needed, then train and evaluate a small Hiera
#                   Mask R-CNN on built-in synthetic data (DEMO_ARGS="--framework mmdet" ...)
#   make test       build the pinned environment in .venv (first time only), lint, run the tests
#   make test-slow  also the large-model / large-input parity tests
#   make env        only build the environment
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: env demo test test-slow lint clean

env:
	@bash requirements/install.sh $(VENV)

demo: env
	$(PY) tools/demo.py $(DEMO_ARGS)

lint: env
	$(PY) -m ruff check .

test: env lint
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-slow: env
	$(PY) -m pytest -q -ra -m "slow or not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
