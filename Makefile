# Portcullis: `make demo` runs everything locally; `make test` runs every check CI runs.

SHELL := /bin/bash
VENV := .venv
VPY := $(VENV)/bin/python
# The first interpreter that is Python 3.12 or newer (pyenv users get 3.12 from .python-version).
PYTHON ?= $(shell for p in python3.13 python3.12 python3; do \
	if $$p -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then \
	command -v $$p; break; fi; done)
TEST_DATABASE_URL ?= postgres://postgres:postgres@127.0.0.1:5432/portcullis
PYTEST_WORKERS ?= 2
DEMO_PORT ?= 8000

.PHONY: demo test lint lock venv check-python clean

check-python:
	@if [ -z "$(PYTHON)" ]; then \
		echo "Portcullis needs Python 3.12 or newer (python3.13, python3.12 or python3 on PATH)."; \
		echo "Install it (e.g. 'pyenv install 3.12' or your system's python3.12 package) and retry."; \
		exit 1; fi

# Installs exactly what requirements/<extra>.txt locks, every file checked against its hash;
# then Portcullis itself, editable, with nothing more (a second call: --require-hashes would
# refuse the unhashed local project).
$(VENV)/.installed-%: requirements/%.txt pyproject.toml | check-python
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet --require-hashes -r requirements/$*.txt
	$(VPY) -m pip install --quiet --no-deps -e .
	@touch $@

# Resolves pyproject.toml into the lock files, keeping every pin that still fits;
# `make lock LOCK_UPGRADE=--upgrade` moves everything to the newest releases the ranges admit.
LOCK_UPGRADE ?=
LOCK_FLAGS := --universal --generate-hashes --python-version 3.12 --custom-compile-command 'make lock' --quiet $(LOCK_UPGRADE)
lock: | check-python
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@test -x $(VENV)/bin/uv || $(VPY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) --extra demo -o requirements/demo.txt
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) --extra test -o requirements/test.txt

venv: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	DEBUG=true $(VPY) manage.py migrate --no-input
	DEBUG=true $(VPY) manage.py demo --port $(DEMO_PORT)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(VENV)/.installed-test
	tests/bin/ensure-chromium
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) tests/bin/ensure-postgres
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DEBUG=true $(VENV)/bin/mypy
	DEBUG=true $(VPY) manage.py check
	DEBUG=true $(VPY) manage.py makemigrations --check --dry-run
	@echo "== pytest on SQLite =="
	DEBUG=true $(VENV)/bin/pytest -n $(PYTEST_WORKERS) -q
	@echo "== pytest on PostgreSQL =="
	DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) $(VENV)/bin/pytest -n $(PYTEST_WORKERS) -q

clean:
	rm -rf $(VENV) var/*.sqlite3*

# Sizes are options: make bench-sync BENCH_ARGS="--accounts 10 --ec2 10".
.PHONY: bench-sync bench-sync-postgres
bench-sync: $(VENV)/.installed-test
	DEBUG=true DATABASE_URL= $(VPY) bench/sync_bench.py $(BENCH_ARGS)

bench-sync-postgres: $(VENV)/.installed-test
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) tests/bin/ensure-postgres
	DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) $(VPY) bench/sync_bench.py $(BENCH_ARGS)

# The grants benchmark: make bench-grants BENCH_ARGS="--users 100 --groups 10 --q-workers 2".
.PHONY: bench-grants bench-grants-postgres
bench-grants: $(VENV)/.installed-test
	DEBUG=true DATABASE_URL= $(VPY) bench/grants_bench.py $(BENCH_ARGS)

bench-grants-postgres: $(VENV)/.installed-test
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) tests/bin/ensure-postgres
	DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) $(VPY) bench/grants_bench.py $(BENCH_ARGS)

# Two task clusters on PostgreSQL and Redis; the engine's lease holder is killed halfway.
.PHONY: bench-failover
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/14
bench-failover: $(VENV)/.installed-test
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) tests/bin/ensure-postgres
	DEBUG=true DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) \
		$(VPY) bench/failover_bench.py $(BENCH_ARGS)

# The requests benchmark, on SQLite and on PostgreSQL in one run:
# make bench-requests BENCH_ARGS="--cycles 200".
.PHONY: bench-requests
bench-requests: $(VENV)/.installed-test
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) tests/bin/ensure-postgres
	DEBUG=true TEST_DATABASE_URL=$(TEST_DATABASE_URL) $(VPY) bench/requests_bench.py $(BENCH_ARGS)

# The pages benchmark (catalogue, its search, the API's search, the grants admin) at
# 100,000 resources and 50,000 grants, on SQLite and on PostgreSQL in one run:
# make bench-pages BENCH_ARGS="--resources 20000 --grants 10000".
.PHONY: bench-pages
bench-pages: $(VENV)/.installed-test
	TEST_DATABASE_URL=$(TEST_DATABASE_URL) tests/bin/ensure-postgres
	DEBUG=true TEST_DATABASE_URL=$(TEST_DATABASE_URL) $(VPY) bench/pages_bench.py $(BENCH_ARGS)
