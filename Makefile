# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
# Two tiers: `make test` (fast, the README's test command) and `make test-e2e` (tests marked slow:
# end-to-end runs, the rehearsal cluster, paths the fast tier already covers). `.ci/run` runs both.
PYTEST_ARGS ?= -m "not slow"
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-smoke test test-e2e test-cluster test-all lint bench image clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m geodistill.train.prebuild
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/geodistill demo $(ARGS)

demo-smoke: $(STAMP)
	$(BIN)/geodistill demo --smoke-test

test: lint
	$(BIN)/python -c "import uuid, platform; platform.system()"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -m slow

# Only the rehearsal-cluster tests (head + 2 nodes on 127.0.0.1: spread, node loss, driver loss);
# test-e2e runs them too.
test-cluster: $(STAMP)
	$(BIN)/python -m pytest -m cluster

test-all: $(STAMP)
	$(MAKE) test PYTEST_ARGS=

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# Every benchmark in one run -> benchmarks/results.json, then RESULTS.md's generated tables from it.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py; rc=$$?; $(BIN)/python benchmarks/render_results.py; exit $$rc

# The cluster image (docker/Dockerfile): `make image`, or `make image VARIANT=cpu`; push it yourself.
VARIANT ?= gpu
IMAGE   ?= ghcr.io/your-org/geodistill:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-$(VARIANT)
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker daemon reachable (docker info failed); build where Docker runs" >&2; exit 1; }
	docker build -f docker/Dockerfile --build-arg VARIANT=$(VARIANT) -t $(IMAGE) .

clean:
	rm -rf $(VENV) runs demo_out .pytest_cache
