#!/usr/bin/env python3
"""How close to the oracle any policy can get on a trace: reference points for the
"predictive costs at most 1.25x the oracle, short at most 0.5% of the time" target.

The oracle covers each step's actual demand. A policy that decides before the step
(every policy but the oracle: capacity takes minutes to come up) covers a prediction
made from the past, times enough headroom to be short at most MISS of the steps. For
each trace's cpu column this prints the capacity such rules need, over the oracle's
(the same target utilization and lead times apply to both, so this is comparable with
the simulator's predictive / oracle cost):

- causal rules, their headroom tuned in hindsight on the whole trace (so better than
  they could be in practice): the last step times k, the last step plus c, an
  exponentially weighted mean (alpha 0.5) times k; the best of them is shown;
- a non-causal reference no policy can have: the mean of the step before, the step
  itself and the step after, times k or plus c (the better). Its noise around that mean is within-step
  burstiness: a trace that needs much more than 1.25x here cannot meet the target
  with any forecast that does not see the step coming.

Steps are counted whole (no lead times, no instance sizes), the first day is skipped
(every policy warms up on it).

Usage: bench/sim_reach.py [TRACE_DIR] [MISS] (defaults target/sim-traces, 0.005).
Standard library only.
"""
import csv
import os
import sys


def quantile(xs, q):
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def scaled(pred, y, miss):
    """Capacity over demand of pred x k, k the smallest keeping y above it on <= miss."""
    k = quantile([a / max(p, 1e-9) for a, p in zip(y, pred)], 1 - miss)
    return k * sum(pred) / sum(y)


def shifted(pred, y, miss):
    """Capacity over demand of pred + c, c the smallest keeping y above it on <= miss."""
    c = quantile([a - p for a, p in zip(y, pred)], 1 - miss)
    return (sum(pred) + c * len(pred)) / sum(y)


def reach(y, miss, skip=288):
    n = len(y)
    idx = range(max(skip, 1), n - 1)
    actual = [y[i] for i in idx]
    last = [y[i - 1] for i in idx]
    ewma, e = [], y[0]
    for i in range(1, n - 1):
        e = 0.5 * y[i - 1] + 0.5 * e
        if i >= max(skip, 1):
            ewma.append(e)
    rules = {
        "last x k": scaled(last, actual, miss),
        "last + c": shifted(last, actual, miss),
        "EWMA x k": scaled(ewma, actual, miss),
    }
    best = min(rules, key=rules.get)
    centred = [(y[i - 1] + y[i] + y[i + 1]) / 3 for i in idx]
    return best, rules[best], min(scaled(centred, actual, miss), shifted(centred, actual, miss))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "target/sim-traces"
    miss = float(sys.argv[2]) if len(sys.argv) > 2 else 0.005
    print(f"| trace | best causal rule (tuned in hindsight), short {miss:.1%} | "
          f"non-causal centred mean, short {miss:.1%} |")
    print("|---|---|---|")
    for name in sorted(f for f in os.listdir(d) if f.endswith(".csv")):
        with open(os.path.join(d, name)) as fh:
            y = [float(r["cpu"]) for r in csv.DictReader(fh)]
        best, b, c = reach(y, miss)
        print(f"| {name[:-4]} | {b:.2f} ({best}) | {c:.2f} |")


if __name__ == "__main__":
    main()
