# The two commands: `make run` and `make test`. Each does its own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVICES := basket orders shipping payments
STAMP := $(VENV)/.installed
SOURCES := pyproject.toml $(wildcard services/*/pyproject.toml)

.PHONY: help venv run migrate seed test test-fast lint format bench bench-smoke contracts clean token

help:
	@echo "make run      install, migrate, load demo data and start the five services (gateway on :8000)"
	@echo "make test     install and run the whole test suite against Postgres and RabbitMQ"
	@echo "make lint     ruff"
	@echo "make bench    the load benchmark (not part of make test)"
	@echo "make token    print an admin bearer token for local use"
	@echo "make contracts regenerate shared/schemas and docs/events.md from shared/contracts.py"

$(STAMP): $(SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet -e '.[dev]' $(foreach s,gateway $(SERVICES),-e services/$(s))
	@touch $(STAMP)

venv: $(STAMP)

migrate: $(STAMP)
	@$(BIN)/python -m shared.local check
	@for s in $(SERVICES); do $(BIN)/python -m $$s migrate || exit 1; done

seed: migrate
	@for s in $(SERVICES); do $(BIN)/python -m $$s seed || exit 1; done

run: seed
	@$(BIN)/python -m shared.local run

token: $(STAMP)
	@$(BIN)/python -m gateway token

test: $(STAMP)
	@$(BIN)/python -m shared.local check --for-tests
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .

format: $(STAMP)
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

bench: seed
	@$(BIN)/python -m bench $(BENCH_ARGS)

contracts: $(STAMP)
	@$(BIN)/python -m shared.contracts_schema write

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
