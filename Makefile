# leansnn: `make demo` runs the main job, `make test` the test suite. Both set up .venv first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-slow lint bench-setup bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(VENV)/bin/leansnn demo

# `make test`: every test not marked slow, ruff and the import contract (a few minutes);
# `make test-slow`: the slow ones. CI (.ci/run) runs both.
test: setup
	$(PY) -m pytest -q -m "not slow"
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-cache

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-cache

# Peers for the benchmarks: installed with --no-deps (their declared dependencies would pull
# torchvision, torchaudio and a CUDA build of torch), plus the small packages they import.
bench-setup: setup
	$(PY) -m pip install -q --no-deps spikingjelly==2.0.0 snntorch==1.0.0
	EXTRAS=dev,nir,bench scripts/setup.sh

bench: bench-setup
	$(PY) benchmarks/neurons.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
