#!/usr/bin/env bash
# make demo: the stack, the worker, the traffic simulator and the live KPI view.
set -euo pipefail
echo "make demo: the KPI pipeline (worker, simulator, top) is not built yet; 'make up' starts Kafka and Redis." >&2
exit 1
