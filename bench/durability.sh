#!/usr/bin/env bash
# Durability: the integration test that loads the real binary with 16 concurrent pingers and
# kills it with SIGKILL mid-run, run longer than in CI and on a release build. It prints how
# many pings were answered 200 and how many of them are missing after the kill (must be 0).
#
# Usage: bench/durability.sh [milliseconds of load before the kill=10000]
set -euo pipefail
cd "$(dirname "$0")/.."
KEEPWATCH_DURABILITY_MS=${1:-10000} cargo test --release -q -p keepwatch --test api durability -- --nocapture 2>&1 |
  grep -E "durability:|test result|error|panicked"
