#!/usr/bin/env bash
# Notification throughput: the pager escalating 10,000 open alerts and delivering their pages
# to a webhook receiver on loopback (a real SQLite file), then the delay from an escalation
# step's due time to its delivery with those alerts open. See src/bin/pagerbench.rs.
#
# Usage: bench/pager.sh [alerts=10000] [steady=3000]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p keepwatch-bench --bin pagerbench
target/release/pagerbench --alerts "${1:-10000}" --steady "${2:-3000}"
