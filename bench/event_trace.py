#!/usr/bin/env python3
"""A week of 5-minute CPU demand with a daily cycle and, on its sixth day, a launch
at three times the demand from 14:00 to 18:00 UTC: the event the example scenario
shows commented out (`prescale simulate --example-scenario`).

    python3 bench/event_trace.py > launch.csv
    prescale simulate --example-scenario > s.toml   # then uncomment its [[workload.events]]
    prescale simulate --trace launch.csv --scenario s.toml --policy all

With `--recurring`, two weeks of the same cycle where on every fourth day of the
month (the 1st, 5th, 9th and 13th) a settlement run doubles the demand from 14:00 to
17:00 UTC: no daily or weekly season foretells it, and the example scenario's
commented [[workload.recurring_events]] declares it.
"""
import math
import random
import sys

recurring = "--recurring" in sys.argv[1:]
random.seed(3)
T0 = 1767225600  # 2026-01-01T00:00:00Z
print("timestamp,cpu")
for i in range((14 if recurring else 7) * 288):
    day, hour = i // 288, (i % 288) / 12
    v = (40 + 25 * math.sin((hour - 9) / 24 * 2 * math.pi)) * (1 + random.gauss(0, 0.04))
    if recurring:
        if day % 4 == 0 and 14 <= hour < 17:
            v *= 2
    elif 5 * 288 + 14 * 12 <= i < 5 * 288 + 18 * 12:
        v *= 3
    print(f"{T0 + i * 300},{max(v, 1):.3f}")
