#!/usr/bin/env bash
# A/B of ping throughput: two keepwatch binaries (say, a commit and the one before it) against
# the same bare axum server, in alternating rounds of one run, so machine drift hits both alike.
# Each round measures bare, A and B with `wrk -t2 -c64` keep-alive and prints A/bare and B/bare;
# the summary gives the medians and in how many rounds B was ahead of or equal to A.
#
# Usage: bench/ab.sh A_BINARY B_BINARY [duration=5s] [rounds=6]      needs: wrk
# Example (the previous commit against the working tree):
#   git worktree add /tmp/kw-prev HEAD~1 && (cd /tmp/kw-prev && cargo build --release)
#   cargo build --release && bench/ab.sh /tmp/kw-prev/target/release/keepwatch target/release/keepwatch
set -euo pipefail
# The scripts create their checks faster and in greater number than a project may by default.
export KEEPWATCH_CHECK_CREATE_RATE=100000 KEEPWATCH_CHECK_LIMIT=10000000
cd "$(dirname "$0")/.."
A=$(realpath "$1")
B=$(realpath "$2")
DURATION=${3:-5s}
ROUNDS=${4:-6}
cargo build --release -q -p keepwatch-bench
BIN=target/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

$BIN/bare-server 127.0.0.1:9201 >"$WORK/bare.log" &
"$A" serve --listen 127.0.0.1:9202 --data-dir "$WORK/a" >"$WORK/a.log" 2>"$WORK/a.err" &
"$B" serve --listen 127.0.0.1:9203 --data-dir "$WORK/b" >"$WORK/b.log" 2>"$WORK/b.err" &
for _ in $(seq 50); do
  grep -q "API key" "$WORK/a.log" 2>/dev/null && grep -q "API key" "$WORK/b.log" 2>/dev/null &&
    grep -q listening "$WORK/bare.log" && break
  sleep 0.2
done
grep -q listening "$WORK/bare.log" || { echo "bare server did not start (port in use?)" >&2; exit 1; }
for side in a b; do
  grep -q "API key" "$WORK/$side.log" || { echo "keepwatch $side did not start: $(tail -2 "$WORK/$side.err")" >&2; exit 1; }
  key=$(grep "API key" "$WORK/$side.log" | awk '{print $NF}')
  port=$([ "$side" = a ] && echo 9202 || echo 9203)
  $BIN/loadgen setup --url "http://127.0.0.1:$port" --api-key "$key" --checks 1000 --out "$WORK/$side.paths"
done

measure() { # paths url
  PATHS_FILE=$1 wrk -t2 -c64 -d"$DURATION" --latency -s bench/ping.lua "$2" | python3 bench/wrkstats.py
}

echo "round bare a b" >"$WORK/results"
for round in $(seq "$ROUNDS"); do
  # Alternate which side goes first, so neither always follows the bare server.
  if [ $((round % 2)) = 1 ]; then order="a b"; else order="b a"; fi
  bare=$(measure "$WORK/a.paths" http://127.0.0.1:9201 | awk '{print $1}')
  declare -A rps=()
  for side in $order; do
    port=$([ "$side" = a ] && echo 9202 || echo 9203)
    out=$(measure "$WORK/$side.paths" "http://127.0.0.1:$port")
    read -r r _ _ failed socket <<<"$out"
    [ "$failed" = 0 ] && [ "$socket" = 0 ] || { echo "round $round: $side had failed requests ($out)" >&2; exit 1; }
    rps[$side]=$r
  done
  echo "$round $bare ${rps[a]} ${rps[b]}" >>"$WORK/results"
done
column -t "$WORK/results"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [list(map(float, line.split())) for line in open(sys.argv[1]).read().splitlines()[1:]]
a = [row[2] / row[1] for row in rows]
b = [row[3] / row[1] for row in rows]
print(f"A/bare median {statistics.median(a):.2f} (rounds: {', '.join(f'{x:.2f}' for x in a)})")
print(f"B/bare median {statistics.median(b):.2f} (rounds: {', '.join(f'{x:.2f}' for x in b)})")
print(f"B ahead of or equal to A in {sum(y >= x for x, y in zip(a, b))} of {len(rows)} rounds")
PY
