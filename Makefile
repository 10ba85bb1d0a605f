# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
# Tests marked slow repeat paths that faster tests already cover; `make test-all` runs them too.
PYTEST_ARGS ?= -m "not slow"
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-smoke test test-all lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/geodistill demo $(ARGS)

demo-smoke: $(STAMP)
	$(BIN)/geodistill demo --smoke-test

test: $(STAMP)
	$(BIN)/python -c "import uuid, platform; platform.system()"
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(MAKE) test PYTEST_ARGS=

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# Every benchmark in one run -> benchmarks/results.json, then RESULTS.md's generated tables from it.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py; rc=$$?; $(BIN)/python benchmarks/render_results.py; exit $$rc

clean:
	rm -rf $(VENV) runs demo_out .pytest_cache
