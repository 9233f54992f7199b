# Two commands for a fresh machine: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000

.PHONY: demo test test-faults test-ui ui bench bench-embed bench-cache bench-cluster lint clean

$(VENV)/.base: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The instance config lives in the repo; DAGSTER_HOME is a git-ignored folder holding a copy.
$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(VENV)/.base $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m embed_dagster.dev.demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m "not ui" embed_dagster_tests

test-faults: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m faults embed_dagster_tests

# Debian's Chromium and the playwright package driving it (no browser download).
test-ui: $(VENV)/.dev
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install Debian's chromium: the UI test will skip"
	$(BIN)/python -m pip install --quiet -e '.[ui]'
	$(BIN)/python -m pytest -q -m ui embed_dagster_tests

ui: $(VENV)/.base $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h $(UI_HOST) -p $(UI_PORT)

bench: bench-embed bench-cache bench-cluster

bench-embed: $(VENV)/.dev
	$(BIN)/python -m bench.bench_embed

bench-cache: $(VENV)/.dev
	$(BIN)/python -m bench.bench_cache

bench-cluster: $(VENV)/.dev
	$(BIN)/python -m bench.bench_cluster

lint: $(VENV)/.dev
	$(BIN)/ruff check .

clean:
	rm -rf data .dagster_home
