#!/usr/bin/env bash
# Runs the README's simulation table: every trace of bench/sim_traces.py under the
# oracle, predictive and reactive policies with the example scenario, seed 1.
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
field() { python3 -c "import json,sys; r=json.load(sys.stdin); print(r['$1'])"; }
printf '| trace | days | oracle | predictive | reactive | pred/oracle | pred vs reactive | short pred / reactive (min) | pred share | pred s |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for t in "$dir"/*.csv; do
  name=$(basename "$t" .csv)
  steps=$(($(wc -l <"$t") - 1))
  declare -A cost short
  for p in oracle predictive reactive; do
    start=$(date +%s.%N)
    out=$("$bin" simulate --trace "$t" --scenario "$scen" --policy "$p" --format json --seed 1)
    secs=$(python3 -c "print(f'{$(date +%s.%N) - $start:.1f}')")
    cost[$p]=$(field cost_total <<<"$out")
    short[$p]=$(field underprovisioned_minutes <<<"$out")
    [ "$p" = predictive ] && { share=$(field underprovisioned_share <<<"$out"); psecs=$secs; }
  done
  python3 - "$name" "$steps" "${cost[oracle]}" "${cost[predictive]}" "${cost[reactive]}" \
    "${short[predictive]}" "${short[reactive]}" "$share" "$psecs" <<'PY'
import sys
n, steps, o, p, r, sp, sr, share, secs = sys.argv[1:]
o, p, r = float(o), float(p), float(r)
print(f"| {n} | {int(steps) * 300 / 86400:.1f} | ${o:,.0f} | ${p:,.0f} | ${r:,.0f} | {p / o:.2f} "
      f"| {(p / r - 1) * 100:+.0f}% | {float(sp):,.0f} / {float(sr):,.0f} | {float(share) * 100:.2f}% | {secs} |")
PY
done
