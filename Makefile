# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
# Tests marked slow repeat paths that faster tests already cover; `make test-all` runs them too.
PYTEST_ARGS ?= -m "not slow"
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-smoke test test-all lint bench image clean

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

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# The cluster image (docker/Dockerfile): `make image`, or `make image VARIANT=cpu`; push it yourself.
VARIANT ?= gpu
IMAGE   ?= ghcr.io/your-org/geodistill:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)-$(VARIANT)
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker daemon reachable (docker info failed); build where Docker runs" >&2; exit 1; }
	docker build -f docker/Dockerfile --build-arg VARIANT=$(VARIANT) -t $(IMAGE) .

clean:
	rm -rf $(VENV) runs demo_out .pytest_cache
