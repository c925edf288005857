#!/usr/bin/env bash
# Detection: with N active checks (default 100000, each with a deadline in the engine's heap),
# M more checks (default 300) stop pinging; the load generator's webhook receiver records
# when each `down` notification arrives and compares it with the deadline plus grace the
# notification names. Prints p50/p99/max of that delay.
#
# Usage: bench/detect.sh [active=100000] [victims=300]      (takes 2-4 minutes)
set -euo pipefail
# The scripts create their checks faster and in greater number than a project may by default.
export KEEPWATCH_CHECK_CREATE_RATE=100000 KEEPWATCH_CHECK_LIMIT=10000000
cd "$(dirname "$0")/.."
ACTIVE=${1:-100000}
VICTIMS=${2:-300}
cargo build --release -q -p keepwatch -p keepwatch-bench
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
target/release/keepwatch serve --allow-private-destinations --listen 127.0.0.1:9111 --data-dir "$WORK/data" >"$WORK/kw.log" 2>"$WORK/kw.err" &
for _ in $(seq 50); do grep -q "API key" "$WORK/kw.log" 2>/dev/null && break; sleep 0.2; done
KEY=$(grep "API key" "$WORK/kw.log" | awk '{print $NF}')
target/release/loadgen detect --url http://127.0.0.1:9111 --api-key "$KEY" --active "$ACTIVE" --victims "$VICTIMS"
