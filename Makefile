# Everything a fresh machine needs goes through these targets.
#   make demo       build the environment if needed, then train and evaluate a small Hiera
#                   Mask R-CNN on built-in synthetic data (DEMO_ARGS="--framework mmdet" ...)
#   make test       build the pinned environment in .venv (first time only), lint, run the tests
#                   (tests/unit and tests/e2e)
#   make test-unit  only tests/unit: fast, no training
#   make test-e2e   only tests/e2e: training runs and evaluations on the synthetic data sets
#   make test-slow  also the large-model / large-input parity tests
#   make env        only build the environment
#   make test-extras  install each extra alone (.[mmdet], .[mmaction], .[detectron2]) into a fresh
#                   venv as docs/install.md says, import its adapter, run one of our configs
#                   (EXTRAS="mmdet" for one)
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=
EXTRAS ?=

.PHONY: env demo test test-unit test-e2e test-slow test-extras lint clean

env:
	@bash requirements/install.sh $(VENV)

demo: env
	$(PY) tools/demo.py $(DEMO_ARGS)

lint: env
	$(PY) -m ruff check .

test: env lint
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

test-unit: env
	$(PY) -m pytest -q -ra tests/unit $(PYTEST_ARGS)

test-e2e: env
	$(PY) -m pytest -q -ra tests/e2e $(PYTEST_ARGS)

test-slow: env
	$(PY) -m pytest -q -ra -m "slow or not slow" $(PYTEST_ARGS)

# After env: pip's cache then holds the mmcv wheel env built, so no fresh venv compiles it.
test-extras: env
	bash requirements/check_extras.sh $(EXTRAS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
