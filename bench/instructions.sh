#!/usr/bin/env bash
# Instructions per ping, counted by callgrind (repeatable for the same binary and load, however
# busy the machine is): the bare server, the floor server and keepwatch, each under
# `wrk -t1 -c8` for 10 s. Prints the whole process's instructions per request and those of
# the HTTP threads (tokio's workers). At 8 connections batches are small, so the writer's
# per-batch costs weigh more than under bench/ping.sh's 64.
#
# Usage: bench/instructions.sh        needs: valgrind, wrk (apt-get install valgrind wrk)
set -euo pipefail
# The scripts create their checks faster and in greater number than a project may by default.
export KEEPWATCH_CHECK_CREATE_RATE=100000 KEEPWATCH_CHECK_LIMIT=10000000
cd "$(dirname "$0")/.."
cargo build --release -q -p keepwatch -p keepwatch-bench
BIN=$PWD/target/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
PORT=9121

count() { # name command… : starts it under callgrind, loads it, prints its counts
  local name=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.%p" "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 150); do
    grep -q -e listening -e "API key" "$WORK/$name.log" && break
    sleep 0.2
  done
  grep -q -e listening -e "API key" "$WORK/$name.log" || { echo "$name did not start" >&2; exit 1; }
  if [ "$name" = keepwatch ]; then
    local key
    key=$(grep "API key" "$WORK/$name.log" | awk '{print $NF}')
    $BIN/loadgen setup --url "http://127.0.0.1:$PORT" --api-key "$key" --checks 1000 --out "$WORK/paths.txt"
  fi
  callgrind_control -z $pid >/dev/null 2>&1
  local requests
  requests=$(PATHS_FILE="$WORK/paths.txt" wrk -t1 -c8 -d10s -s bench/ping.lua "http://127.0.0.1:$PORT" |
    awk '/requests in/ {print $1}')
  callgrind_control -d $pid >/dev/null 2>&1
  kill $pid
  wait $pid || true
  callgrind_annotate --inclusive=yes "$WORK/$name.$pid.1" 2>/dev/null |
    awk -v n="$requests" -v name="$name" '
      /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 / n }
      /multi_thread::worker::run / { gsub(",", "", $1); http = $1 / n }
      END { printf "%-10s %6d requests  %6.0f instructions per request, %6.0f on the HTTP threads\n", name, n, total, http }'
}

# The bare and floor servers answer any ping path: give them keepwatch's paths file later.
mkdir -p "$WORK/kw"
count keepwatch $BIN/keepwatch serve --listen 127.0.0.1:$PORT --data-dir "$WORK/kw"
count bare $BIN/bare-server 127.0.0.1:$PORT
count floor $BIN/floor-server 127.0.0.1:$PORT "$WORK/floor"
