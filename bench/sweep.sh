#!/usr/bin/env bash
# The week sweep of `keepwatch drill`: a policy of 3 steps run 4 times (repeat = 3) with a last
# resort, two rotating schedules (one with a weekday restriction and overrides), support hours
# and urgency raising: wall time of `keepwatch drill --sweep week` for a start every hour (168
# drills) and every 5 minutes (2016), the process included (parse the file, print the table).
#
# Usage: bench/sweep.sh [runs=5] [keepwatch binary=$CARGO_TARGET_DIR/release/keepwatch]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
bin=${2:-${CARGO_TARGET_DIR:-target}/release/keepwatch}
[ -x "$bin" ] || cargo build --release -q --bin keepwatch
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/oncall.toml" <<'TOML'
[[people]]
id = "alice"
contacts = { email = "alice@example.com", ntfy = "https://ntfy.sh/alice" }
rules = [
  { urgency = "high", contact = "ntfy", after = 0 },
  { urgency = "high", contact = "email", after = 2 },
  { urgency = "high", contact = "ntfy", after = 5 },
  { urgency = "low", contact = "email", after = 0 },
]
[[people]]
id = "bob"
contacts = { email = "bob@example.com", ntfy = "https://ntfy.sh/bob" }
rules = [
  { urgency = "high", contact = "ntfy", after = 0 },
  { urgency = "high", contact = "ntfy", after = 5 },
  { urgency = "low", contact = "email", after = 0 },
]
[[people]]
id = "carol"
contacts = { email = "carol@example.com", ntfy = "https://ntfy.sh/carol" }
rules = [
  { urgency = "high", contact = "ntfy", after = 0 },
  { urgency = "low", contact = "email", after = 0 },
]
[[people]]
id = "lee"
contacts = { phone = "https://hooks.example.com/page-lee" }
rules = [{ urgency = "high", contact = "phone", after = 0 }, { urgency = "low", contact = "phone", after = 0 }]

[[schedules]]
name = "primary"
tz = "America/Denver"
[[schedules.layers]]
name = "weekly"
participants = ["alice", "bob", "carol"]
shift = "1w"
start = "2026-11-02T09:00"
[[schedules.layers]]
name = "office"
participants = ["carol", "alice"]
shift = "1d"
start = "2026-11-02T09:00"
within = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }]
[[schedules.overrides]]
user = "bob"
replaces = "alice"
start = "2026-12-05T18:00:00-07:00"
end = "2026-12-06T08:00:00-07:00"

[[schedules]]
name = "secondary"
tz = "America/Denver"
[[schedules.layers]]
name = "weekly"
participants = ["bob", "carol", "alice"]
shift = "1w"
start = "2026-11-02T09:00"

[[policies]]
name = "billing"
steps = [
  { targets = ["schedule:primary"], delay = 10 },
  { targets = ["schedule:secondary"], delay = 10 },
  { targets = ["user:lee"], delay = 10 },
]
repeat = 3
last_resort = "user:lee"

[[services]]
name = "billing"
policy = "billing"
urgency = "support-hours"
support_hours = { tz = "America/Denver", windows = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }], inside = "high", outside = "low" }
raise_after = 10
remind_after = "6h"
TOML
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for step in 1h 5m; do
  times=()
  for _ in $(seq "$runs"); do
    start=$(date +%s%N)
    "$bin" drill -f "$dir/oncall.toml" --service billing --sweep week --step "$step" \
      --at 2026-11-30T00:00:00-07:00 > "$dir/out.txt"
    end=$(date +%s%N)
    times+=($(( (end - start) / 1000000 )))
  done
  starts=$(grep -o 'of [0-9]* start times' "$dir/out.txt" | awk '{print $2}')
  echo "sweep week, step $step ($starts drills): median $(printf '%s\n' "${times[@]}" | median) ms of $runs runs (${times[*]} ms)"
done
tail -3 "$dir/out.txt"
