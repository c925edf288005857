#!/usr/bin/env bash
# Scale: N checks (default 1000000), all up with a deadline, written straight into a fresh
# SQLite data directory; then `keepwatch serve` is started and we report the time until it
# answers pings (deadlines loaded) and its resident memory, idle and after pinging.
#
# Usage: bench/scale.sh [checks=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKS=${1:-1000000}
cargo build --release -q -p keepwatch -p keepwatch-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
target/release/loadgen populate --data-dir "$WORK/data" --checks "$CHECKS"
sync
start=$(date +%s.%N)
target/release/keepwatch serve --listen 127.0.0.1:9121 --data-dir "$WORK/data" >"$WORK/kw.log" 2>"$WORK/kw.err" &
PID=$!
until grep -q "listening" "$WORK/kw.log" 2>/dev/null; do sleep 0.02; done
ready=$(date +%s.%N)
# Ready means answering pings: time one against a check that exists.
UUID=$(sqlite3 "$WORK/data/keepwatch.db" "SELECT uuid FROM checks LIMIT 1" 2>/dev/null || true)
if [ -n "$UUID" ]; then curl -fsS "http://127.0.0.1:9121/ping/$UUID" >/dev/null; fi
answered=$(date +%s.%N)
rss() { awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$PID/status; }
echo "checks: $CHECKS"
echo "start-up to listening: $(echo "$ready - $start" | bc) s; to first ping answered: $(echo "$answered - $start" | bc) s"
echo "resident memory after start: $(rss)"
grep -o 'checks=[0-9]*' "$WORK/kw.err" | head -1
