#!/usr/bin/env bash
# Idle, slowloris and slow-body connections against a server limited to 1 024 open files (a
# common default): how many the server still holds after SECONDS, when it closed the others,
# and whether pings made meanwhile on new connections were answered (bench/slowloris.py).
# Give another binary (an older build) as the second argument to compare.
#
# Usage: bench/slowloris.sh [seconds=40] [binary=target/release/keepwatch]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_=${1:-40}
BIN=${2:-target/release/keepwatch}
[ "$BIN" != target/release/keepwatch ] || cargo build --release -q -p keepwatch
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
prlimit --nofile=1024:1024 "$BIN" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" >"$WORK/serve.log" 2>"$WORK/serve.err" &
for _ in $(seq 100); do grep -q "API key" "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
KEY=$(grep "API key" "$WORK/serve.log" | awk '{print $NF}')
UUID=$(curl -fs -X POST "http://127.0.0.1:$PORT/api/v3/checks/" -H "X-Api-Key: $KEY" -d '{"name":"loris"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])')
python3 bench/slowloris.py "http://127.0.0.1:$PORT" "/ping/$UUID" "$SECONDS_"
echo "server errors for too many open files: $(grep -c 'Too many open files' "$WORK/serve.err" || true)"
