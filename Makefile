# The two quick-start commands: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install lint test demo bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench,celery]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Whole suite on SQLite and PostgreSQL (PostgreSQL from INVENTORY_TEST_POSTGRES_URL,
## default postgres@127.0.0.1:5432; under CI=true its absence is a failure).
test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider --durations=15

## Graph simulator + Dagster UI and daemon on SQLite under .state/demo/ (UI on
## http://127.0.0.1:3000, or DEMO_PORT); the sensor starts the first syncs; Ctrl-C stops all.
demo: $(STAMP)
	$(BIN)/python -m inventory_pipelines.demo

## Benchmarks (not part of `make test`; ~30 min on 2 cores, PostgreSQL at 127.0.0.1:5432 or
## INVENTORY_BENCH_POSTGRES_URL): writes bench/results.json and prints the Markdown report
## that docs/performance.md quotes; `--peer dlt` adds the dlt peer and Graph's floor (the
## `bench` extra, installed with the venv). CI runs the tiny `--smoke` size through pytest.
bench: $(STAMP)
	$(BIN)/python -m bench.run --sizes 20000,100000 --memory-sizes 10000,100000 \
		--naive-size 20000 --repeat 3 --peer dlt --peer-size 100000 \
		--latency-tenant-size 5000 --latency-ms 150 --identity-rps 1 \
		--ca-policies 150 --named-locations 40 --out bench/results.json

## Screenshots of a running `make demo` (another shell, after ~8 minutes) into docs/img/;
## needs Debian's chromium (apt-get install chromium). DEMO_URL defaults to the demo's.
screenshots: $(STAMP)
	$(BIN)/pip install --quiet -e '.[docs]'
	$(BIN)/python docs/screenshots.py $${DEMO_URL:-http://127.0.0.1:3000}

clean:
	rm -rf $(VENV) .state
