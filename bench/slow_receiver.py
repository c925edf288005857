"""One slow webhook receiver among healthy ones (bench/slow-receiver.sh).

Creates two webhook channels on the server: one to a receiver that accepts a connection only
every 5 s (listen backlog 1) and never answers, one to a fast receiver. Then CHECKS checks
notifying both fail at once (a `/fail` ping each, 32 at a time), and the fast receiver notes
when each notification arrives. Prints, for the fast receiver, the delay from each failure to
its notification: p50, p99 and the last, and how many arrived within WAIT seconds.

Usage: python3 bench/slow_receiver.py URL API_KEY CHECKS WAIT
"""

import concurrent.futures
import datetime
import http.server
import json
import socket
import statistics
import sys
import threading
import time
import urllib.request

URL, KEY, CHECKS, WAIT = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
arrivals = {}
lock = threading.Lock()


class Fast(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        now = datetime.datetime.now(datetime.timezone.utc)
        self.send_response(200)
        self.end_headers()
        if body.get("event") == "failed":
            at = datetime.datetime.fromisoformat(body["at"].replace("Z", "+00:00"))
            with lock:
                arrivals.setdefault(body["check"]["uuid"], (now - at).total_seconds())

    def log_message(self, *args):
        pass


def slow_receiver():
    """Accepts one connection every 5 s into a backlog of 1 and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    held = []

    def run():
        while True:
            time.sleep(5)
            held.append(server.accept()[0])

    threading.Thread(target=run, daemon=True).start()
    return server.getsockname()[1]


def api(method, path, body):
    request = urllib.request.Request(f"{URL}{path}", data=json.dumps(body).encode(), method=method,
                                     headers={"X-Api-Key": KEY})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


fast = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fast)
threading.Thread(target=fast.serve_forever, daemon=True).start()
slow_port = slow_receiver()
api("POST", "/api/v3/channels/", {"name": "slow", "kind": "webhook", "url": f"http://127.0.0.1:{slow_port}/hook"})
api("POST", "/api/v3/channels/", {"name": "fast", "kind": "webhook",
                                  "url": f"http://127.0.0.1:{fast.server_address[1]}/hook"})
with concurrent.futures.ThreadPoolExecutor(32) as pool:
    uuids = list(pool.map(lambda i: api("POST", "/api/v3/checks/", {"name": f"c{i}", "channels": "*"})["uuid"],
                          range(CHECKS)))
    started = time.monotonic()
    list(pool.map(lambda u: urllib.request.urlopen(f"{URL}/ping/{u}/fail", timeout=30).read(), uuids))
print(f"{CHECKS} checks failed in {time.monotonic() - started:.2f} s; waiting up to {WAIT:.0f} s for the fast receiver")
while time.monotonic() - started < WAIT:
    with lock:
        if len(arrivals) >= CHECKS:
            break
    time.sleep(0.2)
with lock:
    delays = sorted(arrivals.values())
if not delays:
    sys.exit("no notification reached the fast receiver")
q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]
print(f"fast receiver: {len(delays)}/{CHECKS} notified within {WAIT:.0f} s; failure -> notification "
      f"p50 {q(0.5):.2f} s, p99 {q(0.99):.2f} s, last {delays[-1]:.2f} s, mean {statistics.mean(delays):.2f} s")
