# The two commands: `make run` and `make test`. Each does its own set-up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SERVICES := basket orders shipping payments customers
# The local packages: shared (the repository root) and the six services.
PACKAGES := . $(addprefix services/,gateway $(SERVICES))
# Two steps: the third-party packages exactly as locked (uv among them, which make lock needs),
# then the local packages on top, editable and with --no-deps.
LOCKED := $(VENV)/.locked
STAMP := $(VENV)/.installed
SOURCES := pyproject.toml $(wildcard services/*/pyproject.toml)
# requirements*.lock pin every third-party package with its hashes, for Python 3.11 and later
# on any platform; the local packages are left out of them.
LOCK := $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" \
	$(foreach p,shared gateway $(SERVICES),--no-emit-package commerce-$(p)) $(LOCK_ARGS)

.PHONY: help venv lock run migrate seed test test-fast lint format bench bench-smoke contracts clean token

help:
	@echo "make run      install, migrate, load demo data and start the six services (gateway on :8000)"
	@echo "make test     install and run the whole test suite against Postgres and RabbitMQ"
	@echo "make lint     ruff (check and format) and the dead-code check (tools/deadcode.py)"
	@echo "make lock     re-pin requirements*.lock after a dependency change in a pyproject.toml"
	@echo "              (make lock LOCK_ARGS=--upgrade moves every pin to the newest release)"
	@echo "make bench    the load benchmark (not part of make test)"
	@echo "make token    print an admin bearer token for local use"
	@echo "make contracts regenerate shared/schemas and docs/events.md from shared/contracts.py"

$(LOCKED): requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	@touch $(LOCKED)

# pip check fails on a dependency declared in a pyproject.toml but not locked: run make lock.
$(STAMP): $(LOCKED) $(SOURCES)
	@PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --no-deps $(foreach p,$(PACKAGES),-e $(p))
	@problems=$$($(BIN)/python -m pip check) || { echo "$$problems" >&2; exit 1; }
	@touch $(STAMP)

# Keeps the pins it can (only what changed is resolved again), unless LOCK_ARGS says otherwise.
lock: $(LOCKED)
	$(LOCK) requirements.in -o requirements.lock
	$(LOCK) requirements-dev.in -o requirements-dev.lock

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
	@$(BIN)/python tools/deadcode.py

format: $(STAMP)
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

bench: seed
	@$(BIN)/python -m bench $(BENCH_ARGS)

contracts: $(STAMP)
	@$(BIN)/python -m shared.contracts_schema write

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
