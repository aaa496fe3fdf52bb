# funnelpulse — the front door. `make help` lists the targets.
SHELL := /bin/bash
BOOT_PYTHON ?= python3
VENV := .venv
LOCK := requirements/lock.txt
# The venv is named by the lock's checksum: a changed lock builds a new venv from scratch,
# so nothing the old lock installed lingers (pip has no `sync`).
STAMP := $(VENV)/.installed-$(shell cat $(LOCK) pyproject.toml | cksum | cut -d' ' -f1)
PY := $(VENV)/bin/python
export PYTHON := $(abspath $(PY))

.PHONY: help venv lock test-latest up down status demo test test-unit test-integration test-faults lint fmt typecheck bench bench-memory bench-state profile tools compose-check clean

help:  ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	@if [ -d $(VENV) ] && [ ! -e $@ ]; then echo "venv: lock changed, rebuilding $(VENV)"; rm -rf $(VENV); fi
	$(BOOT_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $@

venv: $(STAMP)  ## create .venv from requirements/lock.txt: exact versions, hashes checked (idempotent)

# requirements/lock.txt pins the runtime, the dev tools and the build backend, with hashes,
# for Python 3.11-3.13 on any platform; requirements/runtime.txt (the container image's)
# is its runtime part, the same versions. pyproject.toml keeps the compatible ranges for
# people who install the package into their own environment. Refresh on purpose
# (`make test-latest` first shows what would change), then run `make test`.
lock: venv  ## re-resolve requirements/*.txt to the newest versions pyproject.toml allows
	$(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --extra dev --universal \
	  --python-version 3.11 --generate-hashes --upgrade --quiet -o $(LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml requirements/build.in --constraint $(LOCK) --universal \
	  --python-version 3.11 --generate-hashes --quiet -o requirements/runtime.txt

# Drift check: a second venv resolved without the lock (newest in range), then the unit
# tests and the Redis/Kafka integration tests. Run it before `make lock` and in a nightly job.
LATEST := .venv-latest
test-latest:  ## unit + integration tests on the newest versions in range, without the lock (.venv-latest)
	rm -rf $(LATEST) && $(BOOT_PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install -q --disable-pip-version-check --upgrade pip
	$(LATEST)/bin/pip install -q --disable-pip-version-check --upgrade -e '.[dev]'
	$(LATEST)/bin/pip freeze --exclude-editable >$(LATEST)/resolved.txt
	@echo "test-latest: resolved versions in $(LATEST)/resolved.txt"; diff <(grep -E '^[A-Za-z]' $(LOCK) | sed 's/ .*//' | tr A-Z a-z | sed 's/_/-/g' | sort) <(tr A-Z a-z <$(LATEST)/resolved.txt | sed 's/_/-/g' | sort) | grep -E '^[<>]' || true
	@scripts/ensure-tools.sh
	PYTHON=$(abspath $(LATEST))/bin/python $(LATEST)/bin/python -m pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder tests/unit tests/integration

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

# The Grafana dashboard is generated from the KPI registry (funnelpulse/dashboard.py), and the
# Kubernetes ConfigMap and PrometheusRules from it and deploy/prometheus/rules
# (funnelpulse/manifests.py); tests fail when the committed files differ. Other settings:
#   $(PY) -m funnelpulse.dashboard --currency EUR --windows 5m,1h,24h > my-dashboard.json
.PHONY: dashboard
dashboard: venv  ## regenerate the Grafana dashboard, its k8s ConfigMap and the PrometheusRules
	$(PY) -m funnelpulse.dashboard --output deploy/grafana/dashboards/funnelpulse.json
	$(PY) -m funnelpulse.manifests --output-dir deploy/k8s/monitoring

# The producer contract is generated from the code: the events' JSON Schema from the
# validator's declaration (streams/events.py, default settings; a worker serves its own at
# GET /schema), the OpenAPI document of the worker's HTTP API (GET /openapi.json) and the
# README's tables; tests fail when the committed files differ.
.PHONY: schema
schema: venv  ## regenerate docs/schema/*.json, docs/openapi.json and the README's generated tables
	$(PY) -m streams.schema --output-dir docs/schema
	$(PY) -m streams.openapi --output docs/openapi.json
	$(PY) -m funnelpulse.docs README.md

bench: up  ## every benchmark (hours at full size): side-by-side drains, both stores, 2 workers, latency, memory, restart, takeover; rewrites docs/BENCHMARKS.md
	@scripts/ensure-tools.sh  # libjemalloc2: the allocator the worker runs on
	$(PY) -m bench.run $(BENCH_ARGS)  # BENCH_ARGS="--help" lists the knobs

# Issue 16 alone: the batch drain with each table store, memory per store, restart after
# kill -9 at 1x/4x/16x history and the warm-standby takeover, both stores in the same run.
# Scale with BENCH_ARGS, e.g. "--restart-history 50000 --memory-campaigns 10000 --events 250000".
bench-state: up  ## issue 16's benchmarks only (state on disk vs memory); rewrites docs/BENCHMARKS.md
	@scripts/ensure-tools.sh  # libjemalloc2: the allocator the worker runs on
	$(PY) -m bench.run --systems funnelpulse-memory,funnelpulse-rocksdb --inputs batch --reps 3 --phases memory,restart,takeover $(BENCH_ARGS)

bench-memory: up  ## the memory phase alone at full size (10,000 campaigns drained to the end, each store); rewrites docs/BENCHMARKS-memory.md
	@scripts/ensure-tools.sh  # libjemalloc2: the allocator the worker runs on
	$(PY) -m bench.run --systems funnelpulse --inputs batch --reps 0 --phases memory --memory-campaigns 10000 --memory-budget 1200 --output docs/BENCHMARKS-memory.md $(BENCH_ARGS)

# Tools the benchmarks run beside the worker, not dependencies of it: their own venv, from
# their own hashed pins (requirements/tools.txt; refresh with uv pip compile, as above).
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-$(shell cat requirements/tools.txt | cksum | cut -d' ' -f1)

$(TOOLS_STAMP): requirements/tools.txt
	rm -rf $(TOOLS)
	$(BOOT_PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/tools.txt
	touch $@

tools: $(TOOLS_STAMP)  ## install the benchmarks' tools (py-spy) into .venv-tools (idempotent)

profile: up tools  ## funnelpulse and the bare Faust agent drained under py-spy (~3 min); rewrites docs/PROFILES.md (where the time goes)
	BENCH_PY_SPY=$(abspath $(TOOLS))/bin/py-spy $(PY) -m bench.run --systems faust-bare,funnelpulse --reps 1 --phases "" --profile build/profiles --output docs/PROFILES.md $(BENCH_ARGS)

clean: down  ## stop the stack and remove local state (.stack/), keeping the Kafka jar cache
	rm -rf .stack
