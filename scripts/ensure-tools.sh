#!/usr/bin/env bash
# Installs, from Debian's packages, the tools the test suite runs for real and that a
# fresh machine lacks: redis-server, promtool (prometheus), amtool (prometheus-alertmanager),
# docker-compose (only to validate docker-compose.yml), and libjemalloc2, the allocator the
# worker runs on (funnelpulse/malloc.py). Idempotent; installs only what's missing.
set -euo pipefail
declare -A package_of=(
  [redis-server]=redis-server
  [promtool]=prometheus
  [amtool]=prometheus-alertmanager
  [docker-compose]=docker-compose
)
missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${package_of[$tool]}")
done
ldconfig -p 2>/dev/null | grep -q 'libjemalloc\.so\.2 ' || missing+=(libjemalloc2)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "ensure-tools: missing Debian packages: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "ensure-tools: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
mkdir -p .stack
apt-get update -qq >.stack/apt.log 2>&1
# Debian's service scripts may try to start the daemons; policy-rc.d keeps them off.
printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.funnelpulse
if [ ! -e /usr/sbin/policy-rc.d ]; then cp /usr/sbin/policy-rc.d.funnelpulse /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; trap 'rm -f /usr/sbin/policy-rc.d' EXIT; fi
rm -f /usr/sbin/policy-rc.d.funnelpulse
apt-get install -y -qq --no-install-recommends "${missing[@]}" >>.stack/apt.log 2>&1 \
  || { echo "ensure-tools: apt-get install failed; see .stack/apt.log" >&2; exit 1; }
