"""Reads wrk --latency output on stdin; prints `req_per_sec p50_ms p99_ms errors`."""
import re
import sys

text = sys.stdin.read()
def ms(value):
    number, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
failed = int(bad.group(1)) if bad else 0
socket = sum(int(x) for x in errors.groups()) if errors else 0
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {failed} {socket}")
