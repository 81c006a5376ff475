#!/usr/bin/env bash
# Runs the README's simulation table: every trace of bench/sim_traces.py under every
# policy (`--policy all`) with the example scenario, seed 1, and prints oracle,
# predictive and reactive (HPA at its 70% target), and HPA with its target lowered
# until it is short no longer than predictive ("HPA matched"), then times a
# predictive run alone.
# Usage: bench/sim_table.sh [TRACE_DIR] [PRESCALE] [SCENARIO]
# (defaults target/sim-traces, target/release/prescale, the example scenario).
set -euo pipefail
dir=${1:-target/sim-traces}
bin=${2:-target/release/prescale}
scen=${3:-}
if [ -z "$scen" ]; then
  scen=$(mktemp)
  trap 'rm -f "$scen"' EXIT
  "$bin" simulate --example-scenario >"$scen"
fi
printf '| trace | days | oracle | predictive | reactive | pred/oracle | pred vs reactive | short pred / reactive (min) | pred share | HPA matched: target, cost, short (min) | pred vs matched | pred s |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for t in "$dir"/*.csv; do
  name=$(basename "$t" .csv)
  steps=$(($(wc -l <"$t") - 1))
  all=$("$bin" simulate --trace "$t" --scenario "$scen" --policy all --format json --seed 1)
  start=$(date +%s.%N)
  "$bin" simulate --trace "$t" --scenario "$scen" --policy predictive --format json --seed 1 >/dev/null
  secs=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
  python3 - "$name" "$steps" "$secs" "$all" <<'PY'
import json, sys
n, steps, secs, runs = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
o, p, r, m = runs[0], runs[1], runs[3], runs[5]
assert [x["policy"] for x in (o, p, r, m)] == ["oracle", "predictive", "reactive", "reactive"]
c = lambda x: x["cost_total"]
short = lambda x: x["underprovisioned_minutes"]
matched = short(m) <= short(p) + 1e-9
mt = f"{m['reactive_target_utilization'] * 100:.0f}%, ${c(m):,.0f}, {short(m):,.0f}" + ("" if matched else " (never as few)")
print(f"| {n} | {steps * 300 / 86400:.1f} | ${c(o):,.0f} | ${c(p):,.0f} | ${c(r):,.0f} | {c(p) / c(o):.2f} "
      f"| {(c(p) / c(r) - 1) * 100:+.0f}% | {short(p):,.0f} / {short(r):,.0f} | {p['underprovisioned_share'] * 100:.2f}% "
      f"| {mt} | {(c(p) / c(m) - 1) * 100:+.0f}% | {secs} |")
PY
done
