#!/usr/bin/env bash
# Puts the Kafka broker's jars in a cache folder (idempotent) and prints that folder.
# Uses $KAFKA_HOME/libs when KAFKA_HOME is set; otherwise resolves them from Maven Central.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
if [ -n "${KAFKA_HOME:-}" ]; then
  [ -d "$KAFKA_HOME/libs" ] || { echo "KAFKA_HOME=$KAFKA_HOME has no libs/ folder" >&2; exit 1; }
  echo "$KAFKA_HOME/libs"; exit 0
fi
cache=${FUNNELPULSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/funnelpulse}/kafka-$version
if [ -f "$cache/.complete" ]; then echo "$cache/libs"; exit 0; fi
command -v java >/dev/null || { echo "Java 17+ is required to run the local Kafka broker (apt-get install openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP_SERVERS to an existing broker" >&2; exit 1; }
command -v mvn >/dev/null || { echo "Maven is required to fetch Kafka $version from Maven Central (apt-get install maven), or set KAFKA_HOME to an unpacked Kafka, or KAFKA_BOOTSTRAP_SERVERS to an existing broker" >&2; exit 1; }
echo "fetching Kafka $version from Maven Central into $cache ..." >&2
rm -rf "$cache" && mkdir -p "$cache"
mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$cache/libs" >&2
touch "$cache/.complete"
echo "$cache/libs"
