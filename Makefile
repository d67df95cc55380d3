# The two quick-start commands: `make demo` and `make test`. Both create .venv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 2

.PHONY: install lint test demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## Whole suite on SQLite and PostgreSQL (PostgreSQL from INVENTORY_TEST_POSTGRES_URL,
## default postgres@127.0.0.1:5432; under CI=true its absence is a failure).
test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS) -p no:cacheprovider

clean:
	rm -rf $(VENV) .state
