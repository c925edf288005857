#!/usr/bin/env bash
# The runner's own cost: added wall time of `keepwatch run <check> -- true` over `true`
# against a local server (median of 50 runs, hyperfine), the same with two --watch patterns
# (one scan of /proc more), peak memory while passing 1 GB of output through, and the time
# from a hung run's deadline to the hung alert carrying the runner's snapshot (real clock).
#
# Usage: bench/runner.sh            needs: hyperfine (apt-get install hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p keepwatch
BIN="${CARGO_TARGET_DIR:-target}/release/keepwatch"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
$BIN serve --listen 127.0.0.1:9141 --data-dir "$WORK/data" >"$WORK/kw.log" 2>"$WORK/kw.err" &
for _ in $(seq 50); do grep -q "API key" "$WORK/kw.log" 2>/dev/null && break; sleep 0.2; done
KEY=$(grep "API key" "$WORK/kw.log" | awk '{print $NF}')
UUID=$(curl -s -X POST http://127.0.0.1:9141/api/v3/checks/ -H "X-Api-Key: $KEY" -d '{"name":"bench"}' |
  python3 -c "import sys, json; print(json.load(sys.stdin)['uuid'])")
RUN="$BIN run $UUID --server http://127.0.0.1:9141 --"
WATCH="$BIN run $UUID --server http://127.0.0.1:9141 --watch rogue-[0-9]+ --watch ^/usr/bin/rsync --"
hyperfine -N --warmup 5 --runs 50 --export-json "$WORK/h.json" "true" "$RUN true" "$WATCH true" >/dev/null
python3 - "$WORK/h.json" <<'PY'
import json, sys
bare, run, watch = json.load(open(sys.argv[1]))["results"]
print(f"median: true {bare['median']*1000:.2f} ms, keepwatch run -- true {run['median']*1000:.2f} ms, "
      f"added {(run['median'] - bare['median'])*1000:.2f} ms; "
      f"with two --watch {watch['median']*1000:.2f} ms, added {(watch['median'] - bare['median'])*1000:.2f} ms")
PY
# Hung: a check with a 3 s max runtime, a job that sleeps 10 s; the runner sends its
# snapshot 1 s before the deadline. Measured: the alert's appearance (polled every 20 ms)
# after the deadline (the start ping's time plus 3 s), over 5 runs.
for i in 1 2 3 4 5; do
  HUNG=$(curl -s -X POST http://127.0.0.1:9141/api/v3/checks/ -H "X-Api-Key: $KEY" \
    -d "{\"name\":\"hung$i\",\"max_runtime\":3,\"channels\":\"*\"}" |
    python3 -c "import sys, json; print(json.load(sys.stdin)['uuid'])")
  $BIN run "$HUNG" --server http://127.0.0.1:9141 --snapshot-before 1s -- sleep 10 &
  RUNNER=$!
  python3 - "$KEY" "$HUNG" <<'PY'
import json, sys, time, urllib.request
from datetime import datetime
key, uuid = sys.argv[1:]
def get(path):
    request = urllib.request.Request("http://127.0.0.1:9141" + path, headers={"X-Api-Key": key})
    return json.load(urllib.request.urlopen(request))
while True:
    pings = get(f"/api/v3/checks/{uuid}/pings/")["pings"]
    if pings:
        break
    time.sleep(0.02)
deadline = datetime.fromisoformat(pings[-1]["date"].replace("Z", "+00:00")).timestamp() + 3
while True:
    alerts = [a for a in get("/api/v1/alerts/?status=open")["alerts"]
              if a["dedup_key"] == f"check:{uuid}" and a["details"].get("snapshot")]
    if alerts:
        print(f"hung alert with snapshot {(time.time() - deadline)*1000:.0f} ms after the deadline")
        break
    time.sleep(0.02)
PY
  kill "$RUNNER" 2>/dev/null || true; wait "$RUNNER" 2>/dev/null || true
done
/usr/bin/time -v $RUN sh -c 'head -c 1000000000 /dev/zero' 2>"$WORK/time.txt" >/dev/null
echo "1 GB of output passed through: $(grep -E 'Maximum resident' "$WORK/time.txt" | awk '{print $NF}') KiB peak RSS"
