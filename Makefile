# week04: run `make demo` and `make test`; each sets up .venv by itself when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NBVAL  := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: help setup test demo lab lint execute bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the requirements and the package (editable)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

test: $(STAMP)  ## unit and integration tests, and every notebook under nbval
	$(BIN)/python -m pytest -q -p no:cacheprovider tests notebooks $(NBVAL)

demo: $(STAMP)  ## the forced-failure checklist against the embedded fake server
	$(BIN)/python -m week04_lib.checklist

lab: $(STAMP)  ## open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check week04_lib tests bench data

execute: $(STAMP)  ## run every notebook in place, refreshing the committed outputs
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb

bench: $(STAMP)  ## side-by-side measurements, written to bench/RESULTS.md
	$(BIN)/python bench/run.py

clean:  ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
