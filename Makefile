# GNU make. `make run` / `make run-kafka` / `make test` as in docs (domain contract, section 9).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV       ?= .venv
PY         := $(VENV)/bin/python
PYTHON     ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
# test-only packages not (yet) in pyproject's dev extra
EXTRA_DEV  :=
PYTEST_ARGS ?=

.PHONY: help install python-deps test lint run run-kafka kafka-libs clean-run bench bench-quick

help:
	@echo "make install    create $(VENV) (Python 3.11), install the project with its dev extra, fetch the Kafka jars"
	@echo "make test       the whole test suite (real Kafka and PostgreSQL included), then ruff and mypy"
	@echo "make lint       ruff and mypy"
	@echo "make run        the three services on 127.0.0.1:8001/8002/8003 with the embedded default (SQLite)"
	@echo "make run-kafka  the same over a local Kafka broker and PostgreSQL started under .run/"
	@echo "make bench      every benchmark at the issues' scale (1M events rebuilt; under 20 min on 2 cores)"
	@echo "                into bench-results/bench.json and bench.md; make bench-quick: a small smoke run"

$(PY):
	@test -n "$(PYTHON)" || { echo "python3.11 not found (Debian: apt-get install -y python3.11 python3.11-venv)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# reinstalls when pyproject.toml changes
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[dev]' $(EXTRA_DEV)
	@touch $@

python-deps: $(VENV)/.installed

kafka-libs:
	deploy/kafka/kafka.sh fetch

install: python-deps kafka-libs

test: install
	@rc=0; $(VENV)/bin/pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests (exit code 5)" >&2; fi; \
	exit $$rc
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services bench

lint: python-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy shared services bench

# the embedded default needs neither Java nor Maven
run: python-deps
	VENV_PYTHON=$(abspath $(PY)) deploy/run-local.sh sql

run-kafka: install
	VENV_PYTHON=$(abspath $(PY)) deploy/run-local.sh kafka

clean-run:
	-deploy/kafka/kafka.sh stop .run/kafka
	-deploy/postgres/pg.sh stop .run/postgres
	rm -rf .run

# one year of synthetic data for a few municipalities on the embedded default (deploy/demo.sh); like
# `run`, it needs neither Java nor Maven
.PHONY: demo
demo: python-deps
	VENV_PYTHON=$(abspath $(PY)) deploy/demo.sh

# every benchmark, both modes side by side, one results file (bench-results/bench.json + bench.md)
bench: install
	$(PY) -m bench --scale standard --out bench-results

bench-quick: install
	$(PY) -m bench --scale quick --out bench-results/quick
