#!/usr/bin/env python3
# A ~355 KB on-call file (150 people, 30 schedules of 4 layers, 78 overrides each) to stdout:
# the Python twin of large_file() in crates/keepwatch/tests/api/oncall_load.rs.
from datetime import datetime, timedelta, timezone
people = 150
out = []
for p in range(people):
    out.append(f'[[people]]\nid = "person-{p:03}"\ntz = "America/Denver"\n'
               f'contacts = {{ email = "person-{p:03}@example.com", webhook = "https://hooks.example.com/page/{p:03}" }}\n'
               f'rules = [{{ urgency = "high", contact = "email", after = 0 }}, {{ urgency = "high", contact = "webhook", after = 5 }}]\n')
start = datetime(2026, 11, 26, 12, tzinfo=timezone.utc)
for s in range(30):
    out.append(f'[[schedules]]\nname = "schedule-{s:02}"\ntz = "America/Denver"\n')
    for l, shift in enumerate(["1h", "2h", "4h", "1d"]):
        parts = ", ".join(f'"person-{(s*7 + l*31 + i) % people:03}"' for i in range(20))
        out.append(f'[[schedules.layers]]\nname = "layer-{l}"\nparticipants = [{parts}]\nshift = "{shift}"\nstart = "2026-11-02T09:00"\n')
        if l == 2:
            out.append('within = [{ days = ["mon", "tue", "wed", "thu", "fri"], start = "09:00", end = "17:00" }]\n')
    for o in range(78):
        f = start + timedelta(hours=6*o)
        out.append(f'[[schedules.overrides]]\nuser = "person-{(s + o*13) % people:03}"\nstart = "{f.isoformat()}"\nend = "{(f+timedelta(hours=3)).isoformat()}"\n')
out.append('[[policies]]\nname = "p"\nsteps = [{ targets = ["schedule:schedule-00"], delay = 10 }]\n[[services]]\nname = "billing"\npolicy = "p"\nurgency = "high"\n')
import sys
sys.stdout.write("".join(out))
