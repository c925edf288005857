#!/usr/bin/env bash
# Several instances on one PostgreSQL database.
#
# 1. Ping throughput with 1, 2 and 3 `keepwatch serve` (keep-alive, 64 connections in all,
#    split evenly over the instances, one wrk per instance), as a ratio to the bare axum
#    server measured in the same run. On a 2-core machine more instances only share the same
#    cores (and the instances that do not own the checks hand each ping to the owner through
#    the database): the point is correctness and no loss on one instance, not scaling.
# 2. Detection latency after a takeover: ACTIVE checks with deadlines, 300 more stop pinging;
#    the lease holder is killed with SIGKILL shortly before the first of their deadlines, so
#    those pass while no instance holds the lease. Prints p50/p99/max of deadline+grace ->
#    webhook delivered (bench/detect.sh, with the kill).
#
# Usage: bench/instances.sh [duration=10s] [active=100000]   (takes 15-20 minutes)
# env: PG (admin URL, default postgres://postgres@127.0.0.1:5432/postgres), LEASE (s, 10),
#      PARTS ("throughput detect" by default; either alone), KEEPWATCH_BIN (another keepwatch
#      binary to measure, e.g. an older release build for a before/after on one instance)
# needs: PostgreSQL, psql, wrk
set -euo pipefail
export KEEPWATCH_CHECK_CREATE_RATE=100000 KEEPWATCH_CHECK_LIMIT=10000000
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
ACTIVE=${2:-100000}
LEASE=${LEASE:-10}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
cargo build --release -q -p keepwatch -p keepwatch-bench
BIN=target/release
KW=${KEEPWATCH_BIN:-$BIN/keepwatch}
WORK=$(mktemp -d)
DBS=()
declare -A PID
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  sleep 0.5
  for db in "${DBS[@]}"; do psql "$PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"; done
  rm -rf "$WORK"
}
trap cleanup EXIT
fresh_db() {
  local db=kw_instances_$$_$1
  psql "$PG" -qc "CREATE DATABASE $db"
  DBS+=("$db")
  URL=${PG%/*}/$db
}
start() { # name port
  "$KW" serve --listen "127.0.0.1:$2" --data-dir "$WORK/$1" --database-url "$URL" \
    --instance-id "kw-$1" --lease-secs "$LEASE" --allow-private-destinations \
    >"$WORK/$1.log" 2>"$WORK/$1.err" &
  PID[$1]=$!
  for _ in $(seq 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$2/api/v3/status/" && return
    sleep 0.1
  done
  echo "kw-$1 did not start: $(tail -2 "$WORK/$1.err")" >&2
  exit 1
}
api_key() { # the key printed by the first instance on an empty database
  for _ in $(seq 50); do
    grep -q "API key" "$WORK/a.log" && break
    sleep 0.1
  done
  grep "API key" "$WORK/a.log" | awk '{print $NF}'
}
wrk_on() { # connections url…: one wrk per URL in parallel; prints the summed req/s and errors
  local conns=$1 i=0 pids=()
  shift
  for url in "$@"; do
    wrk -t1 -c"$conns" -d"$DURATION" --latency -s bench/ping.lua "$url" |
      python3 bench/wrkstats.py >"$WORK/wrk.$i" &
    pids+=($!)
    i=$((i + 1))
  done
  wait "${pids[@]}"
  cat "$WORK"/wrk.* | awk '{rps += $1; bad += $4 + $5} END {printf "%.0f %d\n", rps, bad}'
  rm -f "$WORK"/wrk.*
}

PARTS=${PARTS:-throughput detect}
if [[ $PARTS == *throughput* ]]; then
echo "== ping throughput, 1-3 instances on PostgreSQL, vs the bare server (keep-alive, $DURATION)"
fresh_db throughput
$BIN/bare-server 127.0.0.1:9201 >"$WORK/bare.log" &
start a 9202
KEY=$(api_key)
$BIN/loadgen setup --url http://127.0.0.1:9202 --api-key "$KEY" --checks 1000 --out "$WORK/paths.txt"
export PATHS_FILE="$WORK/paths.txt"
read -r bare bare_bad < <(wrk_on 32 http://127.0.0.1:9201 http://127.0.0.1:9201)
read -r one one_bad < <(wrk_on 32 http://127.0.0.1:9202 http://127.0.0.1:9202)
start b 9203
read -r two two_bad < <(wrk_on 32 http://127.0.0.1:9202 http://127.0.0.1:9203)
start c 9204
read -r three three_bad < <(wrk_on 21 http://127.0.0.1:9202 http://127.0.0.1:9203 http://127.0.0.1:9204)
python3 - "$bare" "$one" "$two" "$three" "$one_bad" "$two_bad" "$three_bad" <<'PY'
import sys
bare, *rest = [float(x) for x in sys.argv[1:5]]
bad = sys.argv[5:]
print(f"bare server: {bare:.0f} req/s")
for n, (rps, failed) in enumerate(zip(rest, bad), 1):
    print(f"{n} instance(s): {rps:.0f} req/s = {rps / bare:.2f} of bare; failed requests: {failed}")
PY
kill "${PID[a]}" "${PID[b]}" "${PID[c]}"
wait "${PID[a]}" "${PID[b]}" "${PID[c]}" 2>/dev/null || true
fi
[[ $PARTS == *detect* ]] || exit 0

echo "== detection latency after a takeover, $ACTIVE active checks"
fresh_db detect
rm -rf "$WORK"/a "$WORK"/b "$WORK"/a.log
start a 9212
KEY=$(api_key)
start b 9213
# Victims: timeout 60 s + grace 60 s, pinged over 30 s from t=0, so their deadlines fall
# from t=120 s to t=150 s. The holder renews every 2 s and is killed at t=115 s: its lease
# runs out between t=123 s and t=125 s, so the first deadlines pass with no holder.
holder=$(curl -s -H 'Accept: application/json' http://127.0.0.1:9212/api/v3/status/ |
  python3 -c 'import json,sys; print(next(l["holder"] for l in json.load(sys.stdin)["leases"] if l["work"] == "deadlines"))')
victim_pid=${PID[${holder#kw-}]}
survivor=$([ "$holder" = kw-a ] && echo 9213 || echo 9212)
echo "deadlines held by $holder (pid $victim_pid); the load goes to 127.0.0.1:$survivor"
$BIN/loadgen detect --url "http://127.0.0.1:$survivor" --api-key "$KEY" --active "$ACTIVE" \
  --victims 300 --after 115 --then "kill -9 $victim_pid"
grep -h "took the deadlines over" "$WORK"/a.err "$WORK"/b.err | tail -1
