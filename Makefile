# Two commands set everything up on a fresh machine with Python 3.11+ and make:
#   make demo   - the whole flow against the built-in simulator, on SQLite
#   make test   - lint (ruff, import contracts), type checks and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck alerts unit integration e2e bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/share-scheduler demo --exit-when-done

# ruff, then the import contracts of pyproject.toml (layers, a pure core, SQL only in the
# ledger; docs/architecture.md).
lint: $(STAMP)
	$(BIN)/ruff check scheduler tests migrations bench deploy
	$(BIN)/ruff format --check scheduler tests migrations bench deploy
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy

# The alert rules and their unit tests (also run by pytest: tests/unit/test_alerts.py).
alerts:
	promtool check rules deploy/prometheus/alerts.yaml
	promtool test rules deploy/prometheus/alerts_test.yaml

test: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
