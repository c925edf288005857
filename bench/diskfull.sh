#!/usr/bin/env bash
# Recovery after a full disk, on a release build: SQLite on a 16 MiB tmpfs (needs root to
# mount it), a webhook receiver on loopback. The disk is filled until pings get 503, then the
# filler is removed; prints the seconds from its removal to /api/v3/status/ answering 200, to
# the first ping stored (200) and to the first notification received, and the answers while
# the disk was full.
#
# Usage: bench/diskfull.sh [rounds=3]
set -euo pipefail
# The notification receiver is on loopback.
export KEEPWATCH_ALLOW_PRIVATE_DESTINATIONS=true
cd "$(dirname "$0")/.."
cargo build --release -q -p keepwatch
BIN=$PWD/target/release/keepwatch
WORK=$(mktemp -d)
PORT=9171
RPORT=9172
KW=http://127.0.0.1:$PORT
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
cat > "$WORK/receiver.py" <<'PY'
import http.server, sys, time, json
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        print(f"RECEIVED {time.time():.3f} {json.loads(body).get('event')}", flush=True)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
PY
head -c 65536 /dev/urandom > "$WORK/body"
for round in $(seq "${1:-3}"); do
  DISK=$WORK/disk$round
  mkdir "$DISK"
  mount -t tmpfs -o size=16m keepwatch-bench "$DISK"
  python3 "$WORK/receiver.py" $RPORT > "$WORK/received.log" 2>&1 &
  RCV=$!
  "$BIN" serve --data-dir "$DISK/data" --listen 127.0.0.1:$PORT > "$WORK/serve.log" 2>&1 &
  SRV=$!
  trap 'kill $SRV $RCV 2>/dev/null; umount -l $DISK; rm -rf $WORK' EXIT
  for _ in $(seq 100); do [ "$(code $KW/api/v3/status/)" = 200 ] && break; sleep 0.1; done
  KEY=$(grep -o 'shown once): .*' "$WORK/serve.log" | awk '{print $3}')
  curl -fs -X POST $KW/api/v3/channels/ -H "X-Api-Key: $KEY" \
    -d "{\"name\":\"hook\",\"kind\":\"webhook\",\"url\":\"http://127.0.0.1:$RPORT/hook\"}" > /dev/null
  UUID=$(curl -fs -X POST $KW/api/v3/checks/ -H "X-Api-Key: $KEY" -d '{"name":"backup","channels":"*"}' |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["uuid"])')
  curl -fs $KW/ping/$UUID > /dev/null
  dd if=/dev/zero of="$DISK/filler" bs=64k 2> /dev/null || true
  dd if=/dev/zero of="$DISK/filler2" bs=4k 2> /dev/null || true
  # Small writes may still fit in WAL space already allocated; pings with bodies outgrow it.
  for _ in $(seq 200); do
    [ "$(code --data-binary @"$WORK/body" $KW/ping/$UUID/log)" = 503 ] && break
  done
  echo "round $round, disk full: ping $(code $KW/ping/$UUID/log), status $(code $KW/api/v3/status/)," \
    "API write $(code -X POST $KW/api/v3/checks/ -H "X-Api-Key: $KEY" -d '{"name":"during"}')"
  sleep 3 # the dispatcher and the pager run (and fail) a few times on the full disk
  rm -f "$DISK/filler" "$DISK/filler2"
  T0=$(date +%s.%N)
  for _ in $(seq 3000); do [ "$(code $KW/api/v3/status/)" = 200 ] && break; sleep 0.01; done
  T1=$(date +%s.%N)
  for _ in $(seq 3000); do [ "$(code $KW/ping/$UUID/fail)" = 200 ] && break; sleep 0.01; done
  T2=$(date +%s.%N)
  for _ in $(seq 3000); do grep -q "RECEIVED.*failed" "$WORK/received.log" && break; sleep 0.01; done
  T3=$(grep "RECEIVED.*failed" "$WORK/received.log" | head -1 | awk '{print $2}' || true)
  python3 -c "t0, t1, t2, t3 = $T0, $T1, $T2, ${T3:-0}
print(f'  after space came back: status 200 in {t1 - t0:.3f} s, first ping stored in {t2 - t0:.3f} s, '
      + (f'first notification received in {t3 - t0:.3f} s' if t3 else 'NO notification within 30 s'))"
  kill $SRV $RCV
  wait $SRV $RCV 2> /dev/null || true
  umount -l "$DISK"
  trap 'rm -rf $WORK' EXIT
done
