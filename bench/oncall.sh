#!/usr/bin/env bash
# Expensive on-call reads against a large file (bench/oncall_file.py, ~355 KB): the server's
# CPU time for one GET /api/v1/oncall/ and for a year of one schedule's shifts, and how long a
# ping waits while four of either run.
#
# Usage: bench/oncall.sh [keepwatch binary=target/release/keepwatch]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/keepwatch}
[ -x "$bin" ] || cargo build --release -q --bin keepwatch
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
base=http://127.0.0.1:$port
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
python3 bench/oncall_file.py > "$dir/oncall.toml"
"$bin" project create bench --data-dir "$dir/data" > "$dir/ping_key"
key=$("$bin" api-key create --project bench --data-dir "$dir/data")
"$bin" serve --data-dir "$dir/data" --listen 127.0.0.1:$port > "$dir/serve.log" 2>&1 &
server=$!
until curl -sf "$base/api/v1/status/" > /dev/null 2>&1; do sleep 0.1; done
curl -sf -X PUT "$base/api/v1/oncall/config" -H "X-Api-Key: $key" --data-binary @"$dir/oncall.toml" > /dev/null
uuid=$(curl -sf -X POST "$base/api/v3/checks/" -H "X-Api-Key: $key" -d '{"name": "bench"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["ping_url"].rsplit("/",1)[1])')
cpu() { awk '{print $14 + $15}' "/proc/$server/stat"; }
tick=$(getconf CLK_TCK)
echo "file: $(wc -c < "$dir/oncall.toml") bytes, $(nproc) cores, $bin"
year="/api/v1/schedules/schedule-00?from=2026-11-26T12:00:00Z&to=2027-11-27T12:00:00Z"
for path in /api/v1/oncall/ "$year"; do
  for i in 1 2 3; do
    before=$(cpu)
    wall=$(curl -s -o /dev/null -w '%{time_total}' "$base$path" -H "X-Api-Key: $key")
    after=$(cpu)
    echo "GET ${path%%\?*} #$i: wall ${wall}s, server CPU $(( (after - before) * 1000 / tick )) ms"
  done
  before=$(cpu)
  reads=()
  for i in 1 2 3 4; do
    curl -s -o /dev/null "$base$path" -H "X-Api-Key: $key" &
    reads+=($!)
  done
  sleep 0.1
  ping=$(curl -s -o /dev/null -w '%{time_total}' "$base/ping/$uuid")
  wait "${reads[@]}"
  after=$(cpu)
  echo "ping while 4 GET ${path%%\?*} run: ${ping}s (the 4 reads took $(( (after - before) * 1000 / tick )) ms of server CPU)"
done
