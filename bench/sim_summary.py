#!/usr/bin/env python3
"""Summarises a `bench/sim_table.sh` table against the simulator's targets, with the
reach of `bench/sim_reach.py` beside each trace when given: how many traces meet each
target, and which do not.

Usage:
  bench/sim_table.sh target/sim-traces-wide > table.md
  bench/sim_reach.py target/sim-traces-wide > reach.md
  bench/sim_summary.py table.md [reach.md]

Prints a merged markdown table (trace, days, oracle, predictive, HPA at its 70% target,
predictive / oracle, reach, minutes short, HPA matched, predictive against it), then the
summary. Standard library only.
"""
import re
import statistics
import sys


def rows(path):
    """The data rows of a markdown table, as lists of stripped cells."""
    out = []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().split("|")[1:-1]]
            if len(cells) > 1 and cells[0] != "trace" and not cells[0].startswith("---"):
                out.append(cells)
    return out


def num(s):
    return float(s.replace(",", "").replace("$", "").rstrip("%"))


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    reach = {}
    if len(sys.argv) > 2:
        for c in rows(sys.argv[2]):
            reach[c[0]] = (c[1].split()[0], c[2])
    traces = []
    for c in rows(sys.argv[1]):
        # sim_table.sh: trace, days, oracle, predictive, reactive, pred/oracle,
        # pred vs reactive, short pred / reactive, pred share, HPA matched, vs matched, s
        pred_min, hpa_min = (num(x) for x in c[7].split("/"))
        m = re.match(r"(\d+)%, \$([\d,.]+), ([\d,.]+)( \(never as few\))?$", c[9])
        if not m:
            sys.exit(f"{sys.argv[1]}: cannot read the matched HPA cell {c[9]!r}")
        traces.append({
            "name": c[0], "days": c[1], "oracle": c[2], "pred": c[3], "hpa": c[4],
            "ratio": num(c[5]), "pred_min": pred_min, "hpa_min": hpa_min,
            "share": num(c[8]), "matched_target": m.group(1), "matched_cost": m.group(2),
            "matched_min": num(m.group(3)), "never": bool(m.group(4)),
            "vs_matched": num(c[10]),
        })
    print("| trace | days | oracle | predictive | HPA (70%) | predictive / oracle | reach: causal / non-causal "
          "| minutes short: predictive / HPA (share) | HPA short no longer: target, cost | vs that HPA |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in traces:
        r = reach.get(t["name"])
        matched = f"{t['matched_target']}%, ${t['matched_cost']}"
        if t["never"]:
            matched += f" (never as few: {t['matched_min']:,.0f} min)"
        print(f"| {t['name']} | {t['days']} | {t['oracle']} | {t['pred']} | {t['hpa']} | {t['ratio']:.2f} "
              f"| {f'{r[0]} / {r[1]}' if r else '-'} | {t['pred_min']:,.0f} / {t['hpa_min']:,.0f} ({t['share']:.2f}%) "
              f"| {matched} | {t['vs_matched']:+.0f}% |")
    n = len(traces)
    print()

    def others(pred, show):
        bad = [t for t in traces if not pred(t)]
        listed = "; ".join(f"{t['name']} {show(t)}" for t in bad)
        return f"{n - len(bad)} of {n}" + (f" (not: {listed})" if bad else "")

    print("- short on at most 0.5% of the trace:",
          others(lambda t: t["share"] <= 0.5, lambda t: f"{t['share']:.2f}%"))
    print("- short no longer than HPA at 70%:",
          others(lambda t: t["pred_min"] <= t["hpa_min"],
                 lambda t: f"{t['pred_min']:,.0f} vs {t['hpa_min']:,.0f} min"))
    print("- at most 1.25x the oracle:",
          others(lambda t: t["ratio"] <= 1.25, lambda t: f"{t['ratio']:.2f}x")
          + f"; median {statistics.median(t['ratio'] for t in traces):.2f}x")
    if reach:
        within = [t for t in traces if t["name"] in reach]
        worse = [t for t in within if t["ratio"] > num(reach[t["name"]][0])]
        print(f"- predictive / oracle at most the best hindsight-tuned causal rule's: "
              f"{len(within) - len(worse)} of {len(within)}"
              + ("" if not worse else " (not: " + "; ".join(
                  f"{t['name']} {t['ratio']:.2f} vs {reach[t['name']][0]}" for t in worse) + ")"))
    # 40% below HPA as short is out of every policy's reach where it is below the
    # oracle's cost, the floor no policy can beat under the same SLA, leads and billing.
    def unreachable(t):
        return 0.6 * num(t["matched_cost"]) < num(t["oracle"])

    print("- at least 40% below HPA matched to its shortfall:",
          others(lambda t: t["vs_matched"] <= -40, lambda t: f"{t['vs_matched']:+.0f}%"
                 + (" (no HPA target as short)" if t["never"] else "")
                 + (f" (below the oracle: 60% of ${t['matched_cost']} is under {t['oracle']})"
                    if unreachable(t) else ""))
          + f"; median {statistics.median(t['vs_matched'] for t in traces):+.1f}%")
    below = [t for t in traces if t["vs_matched"] > -40 and unreachable(t)]
    if below:
        print(f"- of those short of -40%, {len(below)} need a cost under the oracle's to get there, "
              "which no policy can: " + ", ".join(t["name"] for t in below))
    never = [t for t in traces if t["never"]]
    if never:
        times = [t["matched_min"] / t["pred_min"] for t in never if t["pred_min"] > 0]
        print(f"- no HPA target down to 5% is short as little as predictive on {len(never)} of {n}"
              + (f"; there HPA's fewest minutes are {min(times):.1f}-{max(times):.1f}x predictive's" if times else ""))


if __name__ == "__main__":
    main()
