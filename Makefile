# funnelpulse — the front door. `make help` lists the targets.
SHELL := /bin/bash
BOOT_PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
export PYTHON := $(abspath $(PY))

.PHONY: help venv up down status demo test test-unit test-integration test-faults lint fmt typecheck bench bench-memory profile compose-check clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(BOOT_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)  ## create .venv with the package and the dev tools (idempotent)

up: venv  ## start local Kafka (KRaft, 127.0.0.1:9092) and Redis (127.0.0.1:6379); idempotent
	@scripts/stack.sh up

down:  ## stop what `make up` started (and nothing else)
	@if [ -x $(PY) ]; then scripts/stack.sh down; else echo "stack: nothing to stop"; fi

status:  ## what `make up` started and is still running
	@scripts/stack.sh status

demo: venv  ## stack + worker + traffic simulator + live KPI view; Ctrl-C stops what it started
	@scripts/demo.sh

# Three test processes on two cores: most integration tests wait on workers, brokers and
# Redis (a 2-process run keeps ~1.1 cores busy). Files go out longest first (their
# `seconds` mark, tests/conftest.py), not by number of tests: the minute-long fault tests
# no longer start last while the other processes idle.
TEST_PROCESSES ?= 3
test: venv  ## the whole suite: lint, types, unit, deploy files, integration (real Kafka + Redis)
	@scripts/ensure-tools.sh
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder tests

test-unit: venv  ## fast pure tests only
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-integration: venv  ## integration tests against the real broker and Redis
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

# The fault tests stop and restart the broker and Redis they use: by default they start
# their own stack at these ports (.stack/tests-19092), never touching `make up`'s.
FAULTS_KAFKA ?= 127.0.0.1:19092
FAULTS_REDIS ?= redis://127.0.0.1:16379/0
test-faults: venv  ## fault tests at full size: kill -9 x20 over 200k events, broker and Redis outages, two workers, SIGTERM
	@scripts/ensure-tools.sh
	KAFKA_BOOTSTRAP_SERVERS=$${KAFKA_BOOTSTRAP_SERVERS:-$(FAULTS_KAFKA)} \
	REDIS_URL=$${REDIS_URL:-$(FAULTS_REDIS)} FUNNELPULSE_FAULTS=full \
	$(PY) -m pytest -q -p no:cacheprovider -p no:xdist -m faults tests/faults

lint: venv  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: venv  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: up  ## the issue-5 benchmark (~25 min): side-by-side drains, 2 workers, latency, memory; rewrites docs/BENCHMARKS.md
	$(PY) -m bench.run $(BENCH_ARGS)  # BENCH_ARGS="--help" lists the knobs

bench-memory: up  ## the memory phase alone at full size (10,000 campaigns drained to the end, ~8 min); rewrites docs/BENCHMARKS-memory.md
	$(PY) -m bench.run --systems funnelpulse --inputs batch --reps 0 --phases memory --memory-budget 1200 --output docs/BENCHMARKS-memory.md $(BENCH_ARGS)

profile: up  ## funnelpulse and the bare Faust agent drained under py-spy (~3 min); rewrites docs/PROFILES.md (where the time goes)
	$(PY) -m bench.run --systems faust-bare,funnelpulse --reps 1 --phases "" --profile build/profiles --output docs/PROFILES.md $(BENCH_ARGS)

clean: down  ## stop the stack and remove local state (.stack/), keeping the Kafka jar cache
	rm -rf .stack
