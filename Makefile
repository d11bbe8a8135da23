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

## world steps per second on the town map (30 vehicles, 20 pedestrians)
bench: $(VENV)/.runtime
	$(PY) -m launch bench sim

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
