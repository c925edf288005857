#!/usr/bin/env bash
# One slow receiver must not hold up the others: CHECKS checks (default 1 000) fail at once,
# each notifying a webhook receiver that accepts a connection only every 5 s and never answers,
# and a fast one. Prints the fast receiver's delays from each failure to its notification
# (bench/slow_receiver.py). Give another binary (an older build) as the third argument to compare.
#
# Usage: bench/slow-receiver.sh [checks=1000] [wait_seconds=420] [binary=target/release/keepwatch]
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKS=${1:-1000}
WAIT=${2:-420}
BIN=${3:-target/release/keepwatch}
[ "$BIN" != target/release/keepwatch ] || cargo build --release -q -p keepwatch
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
# The receivers are on loopback, and the checks are created faster than the default rate.
KEEPWATCH_ALLOW_PRIVATE_DESTINATIONS=true KEEPWATCH_CHECK_CREATE_RATE=100000 \
  "$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" >"$WORK/serve.log" 2>"$WORK/serve.err" &
for _ in $(seq 100); do grep -q "API key" "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep "API key" "$WORK/serve.log" | awk '{print $NF}')
python3 bench/slow_receiver.py "http://127.0.0.1:$PORT" "$KEY" "$CHECKS" "$WAIT"
