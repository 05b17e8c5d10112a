# The commands a person types. `make demo` and `make test` work on a fresh machine (Python 3.11+,
# no Docker, no database server): they create .venv and install the pinned dependencies first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Everything the platform writes (lake, embedded PostgreSQL, Dagster instance) stays in the checkout.
export TAXI_HOME    ?= $(CURDIR)/.taxi_home
export DAGSTER_HOME ?= $(TAXI_HOME)/dagster

DEMO_ARGS ?=
BENCH_ARGS ?=

.PHONY: install dbt-prepare dagster-home demo demo-full lint test test-fast bench bench-parquet bench-run-start dev db-start db-stop db-psql clean

# The dbt manifest is prepared here (dbt parse), not when the definitions are imported.
DBT_MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES  := $(shell find dbt_project -path dbt_project/target -prune -o -type f \( -name '*.sql' -o -name '*.yml' -o -name '*.csv' \) -print)

install: $(VENV)/.installed $(DBT_MANIFEST)

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# dagster-dbt's standard preparation of the DbtProject in taxi_platform/dbt_project.py (dbt deps
# when the project has packages, then dbt parse); it runs a bare `dbt`: the venv's comes first on PATH.
DBT_PREPARE := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dagster-dbt project prepare-and-package --file taxi_platform/dbt_project.py

$(DBT_MANIFEST): $(VENV)/.installed $(DBT_SOURCES)
	$(DBT_PREPARE)

dbt-prepare: $(VENV)/.installed
	$(DBT_PREPARE)

## Generate the 3 latest months of the 4 datasets (TLC layout, served on 127.0.0.1), load them into the
## embedded PostgreSQL, build the dbt models, print a table per month (TAXI_SOURCE=course: the CSV backup).
demo: install
	$(BIN)/taxi-platform demo $(DEMO_ARGS)

## The same with full-size months (real sizes: fhvhv ~20 M rows a month).
demo-full: install
	$(BIN)/taxi-platform demo --full $(DEMO_ARGS)

## The static checks CI runs before the tests: ruff (lint and format; `$(BIN)/ruff format .` formats)
## and mypy, configured in pyproject.toml; sqlfluff on the dbt models (.sqlfluff); `dg check defs`
## (the code location loads, as `dagster dev` would load it).
# The local instance's configuration in $(DAGSTER_HOME), copied from the template once (then yours).
dagster-home:
	mkdir -p $(DAGSTER_HOME)
	test -s $(DAGSTER_HOME)/dagster.yaml || cp taxi_platform/instance/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

lint: install dagster-home
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/sqlfluff lint dbt_project/models
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/dg check defs

## The lint, then the test suite (starts and stops its own embedded PostgreSQL).
test: install lint
	sh scripts/install-system-deps.sh
	$(BIN)/pytest

## The quick lane while working: the unit tests and the embedded-PostgreSQL integration tests, in two
## pytest-xdist workers, each with its own embedded PostgreSQL (483 tests in 1 min 51 s on 2 cores,
## 2026-12-03, idle machine; 4 min 07 s in one process). Not the GCP emulators' tests (marked
## bigquery), the end-to-end stack's, the ones marked slow, nor the files whose tests each run dbt,
## the demo or the benchmark (10-90 s a test). `make test` stays one process: its end-to-end tests
## time a real daemon and browser.
FAST_SELECTION := -m "not slow and not bigquery" --ignore=tests/e2e --ignore=tests/gcp \
	--ignore=tests/test_dbt.py --ignore=tests/test_dbt_tlc.py --ignore=tests/test_dbt_hardening.py \
	--ignore=tests/test_dbt_parse.py --ignore=tests/test_partition_range.py --ignore=tests/test_demo.py \
	--ignore=tests/test_bench_smoke.py
test-fast: install
	$(BIN)/pytest -q -n 2 $(FAST_SELECTION)

## Month-load benchmark: ours vs the COPY floor, the reference SQL and pandas, on one PostgreSQL it
## starts itself (~10 min; results in bench/results/latest.json and bench/RESULTS.md).
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## Parquet months (yellow 3.5 M rows, fhvhv 20 M) against DuckDB's plain load: target <= 1.2x.
bench-parquet: install
	$(BIN)/python -m bench.parquet $(BENCH_ARGS)

## Run start under `make dev`: dequeue -> first step of runs launched as the UI does (target <= 5 s),
## against a fresh import of the code location (~4 min; bench/results/run_start.json).
bench-run-start: install
	$(BIN)/python -m bench.run_start $(BENCH_ARGS)

## The Dagster UI on http://127.0.0.1:3000 with the daemon (schedules, sensors, backfills).
dev: install dagster-home
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

db-start: install
	$(BIN)/taxi-platform db start
db-stop: install
	$(BIN)/taxi-platform db stop
db-psql: install
	$(BIN)/taxi-platform db psql

# `db remove` (when the venv is there to run it) stops the server and deletes its data, including the
# data directory that, as root, may live outside TAXI_HOME (docs/operations.md); then TAXI_HOME is
# deleted (not when `db remove` failed: make stops at its error, which says why).
clean:
	if [ -x $(BIN)/taxi-platform ]; then $(BIN)/taxi-platform db remove; fi
	rm -rf $(TAXI_HOME)
