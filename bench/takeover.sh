#!/usr/bin/env bash
# Takeover after SIGKILL: two `keepwatch serve` on one PostgreSQL database; the instance that
# holds the leases is killed with SIGKILL, and the seconds until the other holds every loop
# (its /api/v3/status/ with Accept: application/json, polled every 50 ms) are printed; the
# killed one is started again and the roles swap for the next round. Idle instances: this
# measures the lease, not takeover under load.
#
# Usage: bench/takeover.sh [rounds=5]   env: LEASE (seconds, default 10), BIN (a keepwatch
# binary; default: a release build), PG (admin URL, default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p keepwatch
  BIN=$PWD/target/release/keepwatch
fi
LEASE=${LEASE:-10}
PG=${PG:-postgres://postgres@127.0.0.1:5432/postgres}
DB=kw_takeover_$$
psql "$PG" -qc "CREATE DATABASE $DB"
URL=${PG%/*}/$DB
WORK=$(mktemp -d)
declare -A PID PORT=([a]=9181 [b]=9182)
start() {
  "$BIN" serve --listen 127.0.0.1:${PORT[$1]} --data-dir "$WORK/$1" --database-url "$URL" \
    --instance-id "kw-$1" --lease-secs "$LEASE" > /dev/null 2> "$WORK/$1.log" &
  PID[$1]=$!
  for _ in $(seq 200); do
    curl -sf -o /dev/null http://127.0.0.1:${PORT[$1]}/api/v3/status/ && return; sleep 0.05
  done
  echo "kw-$1 did not start" >&2; exit 1
}
held() { curl -s -H 'Accept: application/json' http://127.0.0.1:${PORT[$1]}/api/v3/status/ | grep -o '"mine":true' | wc -l; }
trap 'kill ${PID[a]:-} ${PID[b]:-} 2>/dev/null; sleep 0.5; psql "$PG" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -rf $WORK' EXIT
start a; start b
holder=a; other=b
for round in $(seq "${1:-5}"); do
  until [ "$(held $holder)" = 7 ]; do sleep 0.05; done
  sleep 1
  kill -9 "${PID[$holder]}"; wait "${PID[$holder]}" 2>/dev/null || true
  t0=$(date +%s.%N)
  until [ "$(held $other)" = 7 ]; do sleep 0.05; done
  t1=$(date +%s.%N)
  printf 'round %d: kw-%s killed, kw-%s holds every loop after %.2f s (lease %s s)\n' \
    "$round" "$holder" "$other" "$(echo "$t1 - $t0" | bc)" "$LEASE"
  start "$holder"
  tmp=$holder; holder=$other; other=$tmp
done
