#!/usr/bin/env bash
# Collateral of bad pings on PostgreSQL, on a release build: 1 000 good pings on one check
# interleaved with 250 pings carrying a NUL (`?host=%00`) on another, 32 at a time. Prints
# the answers by kind; every good ping must get 200 (one NUL once failed whole group commits).
#
# Usage: bench/nul-collateral.sh   (PostgreSQL with trust auth on 127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p keepwatch
BIN=$PWD/target/release/keepwatch
DB=keepwatch_bench_nul_$$
PORT=9173
KW=http://127.0.0.1:$PORT
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $DB"
DATA=$(mktemp -d)
"$BIN" serve --data-dir "$DATA" --database-url "postgres://postgres@127.0.0.1:5432/$DB" \
  --listen 127.0.0.1:$PORT > "$DATA/serve.log" 2>&1 &
SRV=$!
trap 'kill $SRV; wait $SRV 2>/dev/null; psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $DB WITH (FORCE)"; rm -rf $DATA' EXIT
for _ in $(seq 100); do curl -fs $KW/api/v3/status/ > /dev/null 2>&1 && break; sleep 0.1; done
KEY=$(grep -o 'shown once): .*' "$DATA/serve.log" | awk '{print $3}')
uuid() {
  curl -fs -X POST $KW/api/v3/checks/ -H "X-Api-Key: $KEY" -d "{\"name\":\"$1\"}" |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["uuid"])'
}
python3 - $PORT "$(uuid good)" "$(uuid bad)" <<'PY'
import collections, concurrent.futures, http.client, sys
port, good, bad = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def one(i):
    nul = i % 5 == 4
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", f"/ping/{bad}?host=x%00y" if nul else f"/ping/{good}?host=web{i}")
    status = c.getresponse().status
    c.close()
    return ("nul" if nul else "good", status)
with concurrent.futures.ThreadPoolExecutor(32) as pool:
    counts = collections.Counter(pool.map(one, range(1250)))
print("answers:", dict(sorted(counts.items())))
failed = sum(n for (kind, status), n in counts.items() if kind == "good" and status != 200)
print(f"collateral: {failed} of 1000 good pings not answered 200")
PY
