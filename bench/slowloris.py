"""Connections that hold a server's sockets, and pings while they do (bench/slowloris.sh).

Opens IDLE connections that send nothing, SLOW connections that send a request's headers a
line every 5 s (slowloris), and BODY connections that send their headers and then a byte of a
1 MB body every 5 s; meanwhile a new connection pings every 100 ms. Prints, per kind, how many
the server still holds at the end and when it closed the others, then the pings answered and
their latency.

Usage: python3 bench/slowloris.py URL PING_PATH SECONDS [IDLE SLOW BODY]
"""

import asyncio
import resource
import statistics
import sys
import time
from urllib.parse import urlsplit

URL, PING_PATH, SECONDS = sys.argv[1], sys.argv[2], float(sys.argv[3])
IDLE, SLOW, BODY = (int(x) for x in (sys.argv[4:7] or (700, 200, 200)))
HOST, PORT = urlsplit(URL).hostname, urlsplit(URL).port

# Our side needs a socket per connection too.
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def hold(kind, started, closed):
    """Opens a connection of `kind`; records when the server closes it (None: never)."""
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
    except OSError:
        closed[kind].append("refused")
        return
    head = f"POST {PING_PATH} HTTP/1.1\r\nHost: {HOST}\r\n"
    try:
        if kind == "slow":
            writer.write(head.encode())
        elif kind == "body":
            writer.write(f"{head}Content-Length: 1000000\r\n\r\n".encode())
        await writer.drain()
        while time.monotonic() - started < SECONDS:
            # A read ending (or failing) means the server closed the connection.
            try:
                data = await asyncio.wait_for(reader.read(4096), 5)
                if not data or b"HTTP/1.1" in data:
                    break
            except asyncio.TimeoutError:
                pass
            if kind == "slow":
                writer.write(b"X-Slow: 1\r\n")
            elif kind == "body":
                writer.write(b"x")
            await writer.drain()
        else:
            closed[kind].append(None)
            return
    except OSError:
        pass
    closed[kind].append(time.monotonic() - started)
    writer.close()


async def pings(started, results):
    """A ping on a new connection every 100 ms, 5 s to answer."""
    request = f"GET {PING_PATH} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()

    async def one():
        t = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), 5)
            writer.write(request)
            line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            results.append((line.startswith(b"HTTP/1.1 200"), time.monotonic() - t))
        except (OSError, asyncio.TimeoutError):
            results.append((False, time.monotonic() - t))

    tasks = []
    while time.monotonic() - started < SECONDS:
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)


async def main():
    started = time.monotonic()
    closed = {"idle": [], "slow": [], "body": []}
    holders = [hold(k, started, closed) for k, n in (("idle", IDLE), ("slow", SLOW), ("body", BODY)) for _ in range(n)]
    results = []
    await asyncio.gather(*holders, pings(started, results))
    for kind, outcomes in closed.items():
        times = sorted(t for t in outcomes if isinstance(t, float))
        held = sum(1 for t in outcomes if t is None)
        refused = sum(1 for t in outcomes if t == "refused")
        median = f"{statistics.median(times):.1f} s" if times else "-"
        print(f"{kind:5s}: {len(outcomes)} opened, {refused} refused, {held} still held after {SECONDS:.0f} s, "
              f"{len(times)} closed by the server (median at {median})")
    answered = sorted(t for ok, t in results if ok)
    print(f"pings: {len(answered)} answered 200, {len(results) - len(answered)} not", end="")
    if answered:
        q = lambda p: answered[min(len(answered) - 1, int(p * len(answered)))] * 1000
        print(f"; latency p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, max {answered[-1] * 1000:.0f} ms")
    else:
        print()


asyncio.run(main())
