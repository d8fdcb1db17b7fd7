# week04: run `make demo` and `make test`; each sets up .venv by itself when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NBVAL  := --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
# The package's tests once more, against the lowest versions pyproject.toml declares
# (requirements-lowest.txt): the core files, none of which skips or needs the notebook stack.
LOWEST       := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed
LOWEST_TESTS := tests/test_transport.py tests/test_wire.py tests/test_retry.py tests/test_client.py \
                tests/test_cost.py tests/test_logs.py tests/test_install.py tests/test_stream.py

.PHONY: help setup test test-lowest demo lab lint execute bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the requirements and the package (editable)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

$(LOWEST_STAMP): requirements-lowest.txt pyproject.toml
	@test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	@echo '*' > $(LOWEST)/.gitignore
	$(LOWEST)/bin/python -m pip install -q --upgrade pip
	$(LOWEST)/bin/python -m pip install -q -r requirements-lowest.txt
	$(LOWEST)/bin/python -m pip install -q --no-deps -e .
	@touch $(LOWEST_STAMP)

# Three workers on two cores: the tests mostly wait (on deadlines, servers, subprocesses):
# with two, the cores sat idle more than half the time; four made timing checks flaky.
WORKERS := -n 3 --dist loadfile

test: $(STAMP) $(LOWEST_STAMP)  ## unit and integration tests, every notebook under nbval, then test-lowest
	$(BIN)/python -m pytest -q -p no:cacheprovider $(WORKERS) tests notebooks $(NBVAL)
	@$(MAKE) --no-print-directory test-lowest

test-lowest: $(LOWEST_STAMP)  ## the core tests against the lowest declared versions (.venv-lowest)
	$(LOWEST)/bin/python -m pytest -q -p no:cacheprovider $(WORKERS) --junitxml=$(LOWEST)/junit.xml $(LOWEST_TESTS)
	@grep -q 'skipped="0"' $(LOWEST)/junit.xml || { echo "test-lowest: tests were skipped; it must run them all"; exit 1; }

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
	rm -rf $(VENV) $(LOWEST) .pytest_cache .hypothesis .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
