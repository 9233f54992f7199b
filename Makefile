# Two commands for a fresh machine: `make demo` and `make test`. Everything else is optional.
# Every install comes from uv.lock (`uv sync --frozen`): what CI tests is what a new machine gets.
PYTHON ?= python3
UV_VERSION := 0.13.8
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# uv: the interpreter on PATH, never a downloaded one; the project's venv is .venv.
export UV_PYTHON ?= $(PYTHON)
export UV_PYTHON_DOWNLOADS ?= never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
# Installed packages get their .pyc files at install time (13-17 s once on 2 cores). Without them, a
# machine with PYTHONDONTWRITEBYTECODE=1 (common in containers and CI images) compiles Dagster,
# pandas and the rest from source in every process: a run's start-up, each step's first imports,
# every code-server and test subprocess (docs/benchmarks.md, "(b)").
export UV_COMPILE_BYTECODE ?= 1
# Dagster 1.13 warns that partitioned asset checks are a preview feature every time one is built
# (about 100 times a `make ui` session). We rely on them on purpose: say it once, here, instead.
# And that a job over `topics` (single-run backfill policy) and the other assets runs one day per run.
export PYTHONWARNINGS ?= ignore:Specifying a partitions_def on an AssetCheckSpec:Warning
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(CURDIR)/.tools/bin/uv
endif
# --inexact: `make demo` after `make test` keeps the dev extras instead of uninstalling them.
SYNC := $(UV) sync --frozen --inexact

.PHONY: demo test test-fast test-faults test-ui ui lock check-deps bench bench-embed bench-cache \
	bench-cluster bench-topics bench-backfill bench-warehouse sql migrate lint clean

# uv itself, when the machine has none: a pinned release from PyPI into .tools/ (git-ignored).
$(CURDIR)/.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.base: uv.lock pyproject.toml | $(UV)
	$(SYNC)
	touch $@

$(VENV)/.dev: uv.lock pyproject.toml | $(UV)
	$(SYNC) --extra dev
	$(UV) pip check --python $(BIN)/python
	touch $@ $(VENV)/.base

# The instance config lives in the repo; DAGSTER_HOME is a git-ignored folder holding a copy.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(VENV)/.base $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m embed_dagster.dev.demo

# Everything but the browser test: unit, asset-level, servers, faults, backfills through dagster dev.
# Two workers: the long tests partly wait (daemon ticks, run monitoring, server deadlines), so two at
# once overlap those waits; each module stays on one worker (conftest.py). Fresh-clone `.ci/run` on 2
# cores: 8:45 to 10:28 for this target.
# `make test-faults` runs serially and prints the fault suite's figures at the end.
test: $(VENV)/.dev
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -m "not ui" embed_dagster_tests

# The inner loop (≤ 2 min on 2 cores): unit and asset-level tests only; no dagster dev, no server
# subprocesses, no PostgreSQL (see the markers in pyproject.toml).
test-fast: $(VENV)/.dev
	EMBED_DAGSTER_TEST_FAST=1 $(BIN)/python -m pytest -q -n 2 -m "not slow and not integration and not faults and not ui" embed_dagster_tests

test-faults: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m faults embed_dagster_tests

# Debian's Chromium and the playwright package driving it (no browser download).
test-ui: $(VENV)/.dev
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install Debian's chromium: the UI test will skip"
	$(SYNC) --extra dev --extra ui
	$(BIN)/python -m pytest -q -m ui embed_dagster_tests

# Move every dependency to its newest allowed release, re-lock, install, and run the fast tests
# against it (then `make test` before committing the new uv.lock).
lock: | $(UV)
	$(UV) lock --upgrade
	$(SYNC) --extra dev
	$(UV) pip check --python $(BIN)/python
	$(MAKE) test-fast

check-deps: $(VENV)/.dev
	$(UV) lock --check
	$(UV) pip check --python $(BIN)/python

ui: $(VENV)/.base $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h $(UI_HOST) -p $(UI_PORT)

bench: bench-embed bench-cache bench-cluster bench-backfill bench-warehouse

bench-embed: $(VENV)/.dev
	$(BIN)/python -m bench.bench_embed

bench-cache: $(VENV)/.dev
	$(BIN)/python -m bench.bench_cache

bench-cluster: $(VENV)/.dev
	$(BIN)/python -m bench.bench_cluster

# Topics across days on the shared labelled sets (BERTopic's recipe needs the numba extra).
bench-topics: $(VENV)/.dev
	$(SYNC) --extra dev --extra numba
	$(BIN)/python -m bench.bench_topics

# A 30,000-comment day through `dagster asset materialize`, against the design before the in-process
# embedder (a git worktree of that commit), and 1M comments through ingest + dedup.
bench-backfill: $(VENV)/.dev
	$(BIN)/python -m bench.bench_backfill

# The lake against the old single DuckDB file on the same work (docs/benchmarks.md).
bench-warehouse: $(VENV)/.dev
	$(BIN)/python -m bench.bench_warehouse

# An interactive read-only session on the lake (docs/warehouse.md); never blocks a run.
sql: $(VENV)/.base
	$(BIN)/embed-dagster shell

# Copy an old single-file warehouse into the lake: make migrate FROM=data/embed_dagster.duckdb
migrate: $(VENV)/.base
	$(BIN)/embed-dagster migrate --from $(FROM)

lint: $(VENV)/.dev
	$(BIN)/ruff check .

clean:
	rm -rf data .dagster_home
