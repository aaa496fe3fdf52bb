#!/usr/bin/env bash
# The local single-node Kafka (KRaft) + Redis stack: up | down | status.
#
# Idempotent: `up` twice starts nothing twice; services found already running (or named by
# KAFKA_BOOTSTRAP_SERVERS / REDIS_URL) are used and never stopped; `down` stops only what
# `up` started, recorded in pid files under .stack/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${FUNNELPULSE_STACK_DIR:-$root/.stack}
py=${PYTHON:-$root/.venv/bin/python}
kafka_port=${FUNNELPULSE_KAFKA_PORT:-9092}
controller_port=${FUNNELPULSE_KAFKA_CONTROLLER_PORT:-9093}
redis_port=${FUNNELPULSE_REDIS_PORT:-6379}
mkdir -p "$state"

log() { echo "stack: $*" >&2; }
die() { echo "stack: error: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

adopt() {  # name port check target env-var: use a service found on our port, never stop it
  log "port $2 is taken: checking it is a $1 we can use (not ours: left alone)"
  "$py" -m funnelpulse.connectivity --wait 10 "$3" "$4" \
    || die "port $2 is taken by something that is not a working $1; free it or set $5"
}

wait_healthy() {  # what, check args...
  local what=$1; shift
  "$py" -m funnelpulse.connectivity --wait 90 "$@" || die "$what did not become healthy; see $state/*.log"
}

kafka_up() {
  if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    log "using existing Kafka at $KAFKA_BOOTSTRAP_SERVERS"
    wait_healthy Kafka --kafka "$KAFKA_BOOTSTRAP_SERVERS"; return
  fi
  local bootstrap="127.0.0.1:$kafka_port" pidf="$state/kafka.pid"
  if alive "$pidf"; then log "Kafka already running (pid $(cat "$pidf"))"
  elif port_open "$kafka_port"; then
    adopt "Kafka broker" "$kafka_port" --kafka "$bootstrap" KAFKA_BOOTSTRAP_SERVERS; return
  else
    port_open "$controller_port" && die "KRaft controller port $controller_port is taken; set FUNNELPULSE_KAFKA_CONTROLLER_PORT"
    command -v java >/dev/null || die "Java 17+ is needed for the local broker (apt-get install openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP_SERVERS"
    local libs; libs=$("$root/scripts/kafka/fetch.sh")
    local dir="$state/kafka"; mkdir -p "$dir/data"
    sed -e "s#@PORT@#$kafka_port#g" -e "s#@CONTROLLER_PORT@#$controller_port#g" \
        -e "s#@DATA_DIR@#$dir/data#g" "$root/scripts/kafka/server.properties.in" >"$dir/server.properties"
    local jvm=(java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true
               "-Dlog4j.configuration=file:$root/scripts/kafka/log4j.properties" -cp "$libs/*")
    if [ ! -f "$dir/data/meta.properties" ]; then
      "${jvm[@]}" kafka.tools.StorageTool format -t "$("${jvm[@]}" kafka.tools.StorageTool random-uuid)" \
        -c "$dir/server.properties" >"$state/kafka-format.log" 2>&1 || die "formatting Kafka storage failed; see $state/kafka-format.log"
    fi
    log "starting Kafka (KRaft) on $bootstrap"
    nohup "${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$state/kafka.log" 2>&1 &
    echo $! >"$pidf"
  fi
  wait_healthy Kafka --kafka "$bootstrap"
}

ensure_redis_server() {
  command -v redis-server >/dev/null && return
  [ "$(id -u)" = 0 ] || die "redis-server is not installed: apt-get install redis-server (as root), or set REDIS_URL"
  log "installing Debian's redis-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq redis-server >"$state/apt.log" 2>&1 \
    || { apt-get update -qq >>"$state/apt.log" 2>&1 && apt-get install -y -qq redis-server >>"$state/apt.log" 2>&1; } \
    || die "apt-get install redis-server failed; see $state/apt.log"
}

redis_up() {
  if [ -n "${REDIS_URL:-}" ]; then
    log "using existing Redis at $REDIS_URL"; wait_healthy Redis --redis "$REDIS_URL"; return
  fi
  local url="redis://127.0.0.1:$redis_port/0" pidf="$state/redis.pid"
  if alive "$pidf"; then log "Redis already running (pid $(cat "$pidf"))"
  elif port_open "$redis_port"; then
    adopt Redis "$redis_port" --redis "$url" REDIS_URL; return
  else
    ensure_redis_server
    mkdir -p "$state/redis"
    log "starting Redis on 127.0.0.1:$redis_port"
    nohup redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$state/redis" --save '' \
      --appendonly no --daemonize no >"$state/redis.log" 2>&1 &
    echo $! >"$pidf"
  fi
  wait_healthy Redis --redis "$url"
}

stop() {  # name
  local pidf="$state/$1.pid"
  [ -f "$pidf" ] || return 0
  local pid; pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $1 (pid $pid)"; kill "-${FUNNELPULSE_STOP_SIGNAL:-TERM}" "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { log "$1 did not stop in 30 s: killing"; kill -9 "$pid"; }
  fi
  rm -f "$pidf"
}

[ -x "$py" ] || die "no Python environment at $py: run 'make venv' first"
case "${1:-}" in
  up) kafka_up; redis_up; log "up: Kafka ${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$kafka_port}, Redis ${REDIS_URL:-redis://127.0.0.1:$redis_port/0}" ;;
  down) case "${FUNNELPULSE_ONLY:-}" in kafka) stop kafka ;; redis) stop redis ;; *) stop kafka; stop redis ;; esac ;;
  status) for s in kafka redis; do if alive "$state/$s.pid"; then echo "$s: running (pid $(cat "$state/$s.pid"))"; else echo "$s: not started by make up"; fi; done ;;
  *) die "usage: $0 up|down|status" ;;
esac
