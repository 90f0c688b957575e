# RoadLens: `make demo` runs the whole spine on a synthetic drive; `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export ROADLENS_HOME ?= $(CURDIR)/.roadlens
export DAGSTER_HOME ?= $(ROADLENS_HOME)/dagster
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR ?= $(ROADLENS_HOME)/ultralytics

.PHONY: setup demo test lint ui bench clean

$(BIN)/roadlens: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

setup: $(BIN)/roadlens

demo: setup
	$(BIN)/roadlens demo

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

ui: setup
	mkdir -p $(DAGSTER_HOME) && [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp roadlens_dagster/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

bench: setup
	$(BIN)/python bench/bench_headline.py
	$(BIN)/python bench/bench_tracking.py
	$(BIN)/python bench/bench_decode.py
	$(BIN)/python bench/bench_detect.py
	$(BIN)/python bench/bench_sink_postgres.py
	$(BIN)/python bench/bench_sink_kafka.py
	$(BIN)/python bench/bench_export_overhead.py

clean:
	rm -rf $(ROADLENS_HOME)
