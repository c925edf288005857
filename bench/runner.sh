#!/usr/bin/env bash
# The runner's own cost: added wall time of `keepwatch run <check> -- true` over `true`
# against a local server (median of 50 runs, hyperfine), and peak memory while passing
# 1 GB of output through.
#
# Usage: bench/runner.sh            needs: hyperfine (apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p keepwatch
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
target/release/keepwatch serve --listen 127.0.0.1:9141 --data-dir "$WORK/data" >"$WORK/kw.log" 2>"$WORK/kw.err" &
for _ in $(seq 50); do grep -q "API key" "$WORK/kw.log" 2>/dev/null && break; sleep 0.2; done
KEY=$(grep "API key" "$WORK/kw.log" | awk '{print $NF}')
UUID=$(curl -s -X POST http://127.0.0.1:9141/api/v3/checks/ -H "X-Api-Key: $KEY" -d '{"name":"bench"}' |
  python3 -c "import sys, json; print(json.load(sys.stdin)['uuid'])")
RUN="target/release/keepwatch run $UUID --server http://127.0.0.1:9141 --"
hyperfine -N --warmup 5 --runs 50 --export-json "$WORK/h.json" "true" "$RUN true" >/dev/null
python3 - "$WORK/h.json" <<'PY'
import json, sys
bare, run = json.load(open(sys.argv[1]))["results"]
print(f"median: true {bare['median']*1000:.2f} ms, keepwatch run -- true {run['median']*1000:.2f} ms, "
      f"added {(run['median'] - bare['median'])*1000:.2f} ms")
PY
/usr/bin/time -v $RUN sh -c 'head -c 1000000000 /dev/zero' 2>"$WORK/time.txt" >/dev/null
echo "1 GB of output passed through: $(grep -E 'Maximum resident' "$WORK/time.txt" | awk '{print $NF}') KiB peak RSS"
