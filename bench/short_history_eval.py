#!/usr/bin/env python3
"""How prescale forecasts from a short history: a new workload's first selections.

`../shared/bench/forecast_eval.py` trains on at least two days; this cuts each shared
five-minute series (`metric_kind` not `other`) at three points 500 steps apart, hands
`prescale forecast` only the HISTORY steps before each cut, and scores its quantiles
15 minutes (3 steps) and an hour (12 steps) ahead: scaled CRPS (pinball loss over
seven quantiles, scaled by the training window's mean absolute step change) and MASE
of the median.

Usage: bench/short_history_eval.py [--history STEPS] [--data DIR] PRESCALE [PRESCALE2]

With two binaries it also prints, per horizon, the geometric mean of the second's
scaled CRPS over the first's, and on how many cuts it was better, worse or the same.
Needs numpy.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile

import numpy as np

QS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
HORIZONS = (3, 12)


def cuts(data, history):
    """(name, timestamps, values, cut) for each series and cut with enough history."""
    index = list(csv.DictReader(open(os.path.join(data, "INDEX.csv"))))
    for r in index:
        if r["interval_s"] != "300" or r["metric_kind"] == "other":
            continue
        rows = list(csv.DictReader(open(os.path.join(data, r["name"] + ".csv"))))
        ts = np.array([float(x["timestamp"]) for x in rows])
        y = np.array([float(x["value"]) for x in rows])
        for k in range(3):
            cut = len(y) - max(HORIZONS) - k * 500
            if cut - history >= 0:
                yield r["name"], ts, y, cut


def scores(exe, path, train, truth):
    """(scaled CRPS, MASE) of `exe`'s forecast of len(truth) steps, or None."""
    out = subprocess.run(
        [exe, "forecast", "--input", path, "--horizon", str(len(truth)),
         "--quantiles", ",".join(map(str, QS))],
        capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{exe} failed: {out.stderr.strip()[:200]}", file=sys.stderr)
        return None
    q = np.array([[float(x[f"q{l}"]) for l in QS]
                  for x in csv.DictReader(out.stdout.splitlines())])
    scale = np.mean(np.abs(np.diff(train))) or 1.0
    pin = [np.mean(np.maximum(l * (truth - q[:, i]), (l - 1) * (truth - q[:, i])))
           for i, l in enumerate(QS)]
    return 2 * np.mean(pin) / scale, np.mean(np.abs(truth - q[:, QS.index(0.5)])) / scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--history", type=int, default=800, help="steps of history")
    ap.add_argument("--data", default="../shared/data/series")
    ap.add_argument("prescale", nargs="+")
    a = ap.parse_args()
    if not os.path.isdir(a.data):
        sys.exit(f"{a.data} is absent: nothing to evaluate")
    res = {b: {h: [] for h in HORIZONS} for b in a.prescale}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "train.csv")
        for _, ts, y, cut in cuts(a.data, a.history):
            lo = cut - a.history
            with open(path, "w") as fh:
                fh.write("timestamp,value\n")
                for t, v in zip(ts[lo:cut], y[lo:cut]):
                    fh.write(f"{int(t)},{v!r}\n")
            for h in HORIZONS:
                got = [scores(b, path, y[lo:cut], y[cut:cut + h]) for b in a.prescale]
                if all(g is not None for g in got):
                    for b, g in zip(a.prescale, got):
                        res[b][h].append(g)
    print(f"{a.history} steps of history ({a.history / 288:.1f} days)")
    for b in a.prescale:
        for h in HORIZONS:
            s = np.array(res[b][h])
            print(f"{b} {h} steps: {len(s)} cuts, scaled CRPS mean {s[:, 0].mean():.4f} "
                  f"median {np.median(s[:, 0]):.4f}, MASE mean {s[:, 1].mean():.4f}")
    if len(a.prescale) == 2:
        first, second = a.prescale
        for h in HORIZONS:
            x = np.array(res[first][h])[:, 0]
            z = np.array(res[second][h])[:, 0]
            ratio = np.exp(np.mean(np.log(np.maximum(z, 1e-9) / np.maximum(x, 1e-9))))
            better, worse = np.sum(z < x - 1e-9), np.sum(z > x + 1e-9)
            print(f"{h} steps: second / first geometric mean {ratio:.4f}; better on "
                  f"{better}, worse on {worse}, the same on {len(x) - better - worse}")


if __name__ == "__main__":
    main()
