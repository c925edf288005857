#!/usr/bin/env bash
# The night in shared/DESIGN.md, replayed end to end against the release binary, with a real
# SMTP conversation (a Python SMTP sink on loopback) and a webhook receiver on loopback, on the
# wall clock (about a minute). It prints every message as its recipient gets it, so a person
# can read them, and the alerts as `keepwatch alert show` prints them.
#
# The story: a nightly job (a shell script run by `keepwatch run`) has a rogue copy of itself
# still running from the night before; tonight's run starts beside it (overlap, naming the
# stray), hangs past its max runtime (hung, with the runner's snapshot), and the next run fails
# with exit status 3 and some output. Alice is paged by email, Bob by webhook.
#
# Usage: bench/story.sh [keepwatch binary]        needs: python3, curl
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ge 1 ]; then
  KW=$(realpath "$1")
else
  cargo build --release -q -p keepwatch
  KW=$PWD/target/release/keepwatch
fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; pkill -f "$WORK/jobs/" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/mail" "$WORK/hooks" "$WORK/jobs"
PORT=9310 SMTP_PORT=9325 HOOK_PORT=9311

# The SMTP sink: each message to a file, as received.
python3 -W ignore - "$SMTP_PORT" "$WORK/mail" <<'EOF' &
import asyncore, smtpd, sys, os
class Sink(smtpd.SMTPServer):
    n = 0
    def process_message(self, peer, mailfrom, rcpttos, data, **kw):
        Sink.n += 1
        with open(os.path.join(sys.argv[2], f"{Sink.n:03}.eml"), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
Sink(("127.0.0.1", int(sys.argv[1])), None, decode_data=False)
asyncore.loop()
EOF
# The webhook receiver: each body to a file.
python3 - "$HOOK_PORT" "$WORK/hooks" <<'EOF' &
import http.server, sys, os
n = 0
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        global n
        n += 1
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with open(os.path.join(sys.argv[2], f"{n:03}.json"), "wb") as f:
            f.write(body)
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Hook).serve_forever()
EOF

"$KW" serve --listen 127.0.0.1:$PORT --data-dir "$WORK/data" --allow-private-destinations \
  --smtp-host 127.0.0.1 --smtp-port $SMTP_PORT --smtp-security none \
  --smtp-from "keepwatch <keepwatch@example.com>" >"$WORK/serve.out" 2>"$WORK/serve.log" &
for _ in $(seq 50); do grep -q "API key" "$WORK/serve.out" 2>/dev/null && break; sleep 0.2; done
export KEEPWATCH_SERVER=http://127.0.0.1:$PORT
export KEEPWATCH_API_KEY=$(grep "API key" "$WORK/serve.out" | awk '{print $NF}')

CHECK=$(curl -s "$KEEPWATCH_SERVER/api/v3/checks/" -H "X-Api-Key: $KEEPWATCH_API_KEY" -d '{
  "name": "Nightly client events", "slug": "client-events", "schedule": "0 0 * * *",
  "tz": "America/Denver", "grace": 3600, "max_runtime": 4, "service": "billing"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["ping_url"].rsplit("/",1)[1])')
cat >"$WORK/oncall.toml" <<EOF
[[people]]
id = "alice"
contacts = { email = "alice@example.com" }
rules = [{ urgency = "high", contact = "email", after = 0 }, { urgency = "low", contact = "email", after = 0 }]
[[people]]
id = "bob"
contacts = { webhook = "http://127.0.0.1:$HOOK_PORT/bob" }
rules = [{ urgency = "high", contact = "webhook", after = 0 }, { urgency = "low", contact = "webhook", after = 0 }]
[[policies]]
name = "nightly"
steps = [{ targets = ["user:alice"], delay = 5 }, { targets = ["user:bob"], delay = 5 }]
[[services]]
name = "billing"
policy = "nightly"
urgency = "high"
EOF
"$KW" apply -f "$WORK/oncall.toml" --server "$KEEPWATCH_SERVER" >/dev/null

# The job: a shell script, as a crontab would run it.
cat >"$WORK/jobs/nightly.sh" <<'EOF'
#!/bin/bash
echo "fetched 12 events"
echo "waiting for lock /var/lock/nightly"
sleep "${SLEEP:-8}"
EOF
chmod +x "$WORK/jobs/nightly.sh"
# Last night's copy, still running (as /bin/bash .../nightly.sh in /proc).
SLEEP=60 "$WORK/jobs/nightly.sh" >/dev/null &
sleep 0.5
echo "== tonight's run (a rogue copy is running; the run hangs past its 4 s max runtime)"
"$KW" run "$CHECK" -- "$WORK/jobs/nightly.sh" || true
echo "== the next run fails"
cat >"$WORK/jobs/fail.sh" <<'EOF'
#!/bin/bash
echo "connecting to events-db"
echo "ERROR: events-db: too many connections" >&2
exit 3
EOF
chmod +x "$WORK/jobs/fail.sh"
"$KW" run "$CHECK" -- "$WORK/jobs/fail.sh" || true
sleep 2
echo "== alice acknowledges the hung alert with a note, then resolves it"
"$KW" alert note 2 "found it: a copy from last night holds the lock" --as alice
"$KW" alert ack 2 --as alice >/dev/null
"$KW" alert resolve 2 --as alice >/dev/null
sleep 3

echo
echo "######## emails to alice ($(ls "$WORK/mail" | wc -l))"
for f in $(ls "$WORK"/mail/*.eml 2>/dev/null); do
  echo "---------------- $(basename "$f")"
  python3 - "$f" <<'EOF'
import email, sys
from email import policy
msg = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=policy.default)
print("To:", msg["To"]); print("Subject:", msg["Subject"]); print()
print(msg.get_body(("plain",)).get_content())
parts = [p.get_content_type() for p in msg.walk()]
print("(parts:", ", ".join(parts) + ")")
EOF
done
echo
echo "######## webhooks to bob ($(ls "$WORK/hooks" | wc -l))"
for f in $(ls "$WORK"/hooks/*.json 2>/dev/null); do
  echo "---------------- $(basename "$f")"
  python3 -m json.tool "$f" | head -40
done
echo
echo "######## the alerts"
"$KW" alert list --status all
for id in $("$KW" alert list --status all | sed -n 's/^#\([0-9]*\) .*/\1/p'); do
  echo "----------------"
  "$KW" alert show "$id"
done
echo
echo "######## the server's log (INFO and above)"
cat "$WORK/serve.log"
