#!/usr/bin/env bash
# Ping ingestion: keepwatch on SQLite (synchronous=FULL, every 200 sent after its commit)
# against a bare axum server answering a constant 200, in the same run, with the same wrk
# settings (2 threads, 64 connections), first with keep-alive, then with a new TCP connection
# per ping (as curl from cron does). Prints the ratios. For context it also measures
# floor-server, the least a durable ping server can do (group commit of an append-only table,
# no checks, no state): the distance from the floor to bare is the disk's and SQLite's, the
# distance from keepwatch to the floor is keepwatch's own.
#
# Usage: bench/ping.sh [duration=10s] [rounds=3]        needs: wrk (apt-get install wrk)
set -euo pipefail
# The scripts create their checks faster and in greater number than a project may by default.
export KEEPWATCH_CHECK_CREATE_RATE=100000 KEEPWATCH_CHECK_LIMIT=10000000
cd "$(dirname "$0")/.."
DURATION=${1:-10s}
ROUNDS=${2:-3}
cargo build --release -q -p keepwatch -p keepwatch-bench
BIN=target/release
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

$BIN/bare-server 127.0.0.1:9101 >"$WORK/bare.log" &
$BIN/floor-server 127.0.0.1:9103 "$WORK/floor" >"$WORK/floor.log" 2>"$WORK/floor.err" &
${KEEPWATCH_ENV:-} $BIN/keepwatch serve --listen 127.0.0.1:9102 --data-dir "$WORK/data" >"$WORK/kw.log" 2>"$WORK/kw.err" &
for _ in $(seq 50); do
  grep -q "API key" "$WORK/kw.log" 2>/dev/null && grep -q listening "$WORK/bare.log" &&
    grep -q listening "$WORK/floor.log" && break
  sleep 0.2
done
# A port taken by a leftover server would be measured in its place: refuse to go on.
for log in bare floor; do
  grep -q listening "$WORK/$log.log" || { echo "$log server did not start (port in use?)" >&2; exit 1; }
done
grep -q "API key" "$WORK/kw.log" || { echo "keepwatch did not start: $(tail -2 "$WORK/kw.err")" >&2; exit 1; }
KEY=$(grep "API key" "$WORK/kw.log" | awk '{print $NF}')
$BIN/loadgen setup --url http://127.0.0.1:9102 --api-key "$KEY" --checks 1000 --out "$WORK/paths.txt"
export PATHS_FILE="$WORK/paths.txt"

measure() { # name url [wrk args…]
  local name=$1 url=$2; shift 2
  wrk -t2 -c64 -d"$DURATION" --latency -s bench/ping.lua "$@" "$url" | python3 bench/wrkstats.py | sed "s/^/$name /"
}

echo "round mode server req/s p50_ms p99_ms non2xx socket_errors" >"$WORK/results"
for round in $(seq "$ROUNDS"); do
  for mode in keepalive close; do
    extra=()
    [ "$mode" = close ] && extra=(-H "Connection: close")
    measure "$round $mode bare" http://127.0.0.1:9101 "${extra[@]}" >>"$WORK/results"
    measure "$round $mode keepwatch" http://127.0.0.1:9102 "${extra[@]}" >>"$WORK/results"
    measure "$round $mode floor" http://127.0.0.1:9103 "${extra[@]}" >>"$WORK/results"
  done
done
column -t "$WORK/results"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
# A ratio over failed requests would be meaningless (a 503 is fast): refuse to report one.
failed = [row for row in rows if int(row[6]) or int(row[7])]
if failed:
    sys.exit(f"requests failed (non-2xx or socket errors), no ratio reported: {failed}")
for mode in ("keepalive", "close"):
    for server in ("keepwatch", "floor"):
        ratios, p99s = [], []
        for r in sorted({row[0] for row in rows}):
            bare = next(x for x in rows if x[0] == r and x[1] == mode and x[2] == "bare")
            it = next(x for x in rows if x[0] == r and x[1] == mode and x[2] == server)
            ratios.append(float(it[3]) / float(bare[3]))
            p99s.append(float(it[5]) / float(bare[5]))
        print(f"{mode:9s}: {server}/bare req/s = {statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
              f"p99 {server}/bare = {statistics.median(p99s):.2f}")
PY
echo "keepwatch: $(grep -c . "$WORK/paths.txt") checks; server log tail:"; tail -2 "$WORK/kw.err"
echo "floor-server: $(tail -1 "$WORK/floor.err")"
