#!/usr/bin/env bash
# make demo: the local stack, the worker, the traffic simulator and the live KPI view.
# Ctrl-C stops what this script started (and the stack only if this script started it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=${FUNNELPULSE_STACK_DIR:-$root/.stack}
bin=$root/.venv/bin
mkdir -p "$state"
rate=${DEMO_RATE:-800}
export FUNNELPULSE_DATA_DIR=${FUNNELPULSE_DATA_DIR:-$state/demo-data}
port=${FUNNELPULSE_WEB_PORT:-6066}

had_kafka=0; had_redis=0
[ -f "$state/kafka.pid" ] && kill -0 "$(cat "$state/kafka.pid")" 2>/dev/null && had_kafka=1
[ -f "$state/redis.pid" ] && kill -0 "$(cat "$state/redis.pid")" 2>/dev/null && had_redis=1
scripts/stack.sh up
# the worker's allocator (funnelpulse/malloc.py); without it the worker runs on glibc's
if ! ldconfig -p 2>/dev/null | grep -q 'libjemalloc\.so\.2 ' && [ "$(id -u)" = 0 ]; then
  echo "demo: installing Debian's libjemalloc2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2 >>"$state/apt.log" 2>&1 \
    || echo "demo: libjemalloc2 not installed (see $state/apt.log); the worker runs on glibc" >&2
fi

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "demo: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ $had_kafka = 0 ]; then FUNNELPULSE_ONLY=kafka scripts/stack.sh down; fi
  if [ $had_redis = 0 ]; then FUNNELPULSE_ONLY=redis scripts/stack.sh down; fi
}
trap cleanup EXIT INT TERM

"$bin/funnelpulse" worker >"$state/demo-worker.log" 2>&1 &
pids+=($!)
echo "demo: worker starting (log: $state/demo-worker.log) ..."
for _ in $(seq 1 90); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: the worker exited; see $state/demo-worker.log" >&2; exit 1; }
  sleep 1
done
"$bin/funnelpulse" simulate --rate "$rate" --seed "${DEMO_SEED:-42}" --quiet >"$state/demo-simulator.log" 2>&1 &
pids+=($!)
echo "demo: simulator sending ~$rate events/s; KPIs also at http://127.0.0.1:$port/kpis?window=5m and /metrics"
sleep 3
if [ -t 1 ]; then
  "$bin/funnelpulse" top --window "${DEMO_WINDOW:-5m}"
else
  # No terminal (CI, a pipe): show a few frames, then stop.
  for _ in $(seq 1 "${DEMO_FRAMES:-5}"); do "$bin/funnelpulse" top --window "${DEMO_WINDOW:-5m}" --once; sleep 3; done
fi
