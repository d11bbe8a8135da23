# drivestack: `make run` then `make test` on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
SCENARIO ?= town_loop
SEED ?= 0

.PHONY: run test lint typecheck check maps bench clean

$(VENV)/.runtime: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## run the default scenario headless and print its driving score
run: $(VENV)/.runtime
	$(PY) -m launch run $(SCENARIO) --seed $(SEED)

## lint, type-check and run the test suite
test: $(VENV)/.dev lint typecheck
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

## regenerate the built-in OpenDRIVE maps in sim/maps/
maps: $(VENV)/.dev
	$(PY) scripts/make_maps.py

## every benchmark an issue sets a bar for (a few minutes; quote them from a quiet machine)
bench: $(VENV)/.dev
	$(PY) -m launch bench sim
	$(PY) -m launch bench camera
	$(PY) -m launch bench env --steps 5000
	$(PY) -m launch bench record --steps 1200 --repeats 10
	OMP_NUM_THREADS=1 $(PY) -m launch bench mpc

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
