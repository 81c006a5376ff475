#!/usr/bin/env python3
"""Builds the what-if traces of the README's simulation table from ../shared/data/series.

Each trace is the 5-minute mean of a shared series, scaled so its peak is 200 vCPU (and
900 GiB for the memory column), one row per 5-minute step: series with gaps (NASA's
outage, Bitbrains' dropped bins) are laid end to end, so a trace's days are counted in
steps from its first timestamp. Usage: bench/sim_traces.py [DATA_DIR] [OUT_DIR] (defaults ../shared/data/series
and target/sim-traces). Standard library only.
"""
import csv
import os
import sys

STEP = 300
CPU_PEAK = 200.0
MEM_PEAK = 900.0

# name -> (cpu series, memory series or None)
TRACES = {
    "azure-cpu": ("azure_v2__vm_aggregate_5min-cpu_usage", None),
    "google-cpu": ("google2019__instance_usage_5min-avg_cpu", None),
    "alibaba-cpu": ("alibaba2018__machine_usage_30s-cpu_util_percent", None),
    "nasa-requests": ("nasa_http__requests_per_min", None),
    "twitter-aapl": ("nab__realTweets-Twitter_volume_AAPL", None),
    "twitter-stream": ("twitter_stream__events_per_min", None),
    "bitbrains-cpu": ("bitbrains_rnd__aggregate405vms-cpu_usage_mhz", None),
    "azure-cpu-mem": (
        "azure_v2__vm_aggregate_5min-cpu_usage",
        "azure_v2__vm_aggregate_5min-assigned_mem",
    ),
    "google-cpu-mem": (
        "google2019__instance_usage_5min-avg_cpu",
        "google2019__instance_usage_5min-avg_mem",
    ),
}


def bins(path):
    """5-minute means, keyed by bin start, in time order."""
    sums = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                t, v = int(float(row["timestamp"])), float(row["value"])
            except (KeyError, ValueError):
                continue
            if v != v:
                continue
            b = t - t % STEP
            s = sums.setdefault(b, [0.0, 0])
            s[0] += v
            s[1] += 1
    return {b: s[0] / s[1] for b, s in sorted(sums.items())}


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/series"
    out = sys.argv[2] if len(sys.argv) > 2 else "target/sim-traces"
    if not os.path.isdir(data):
        sys.exit(f"no shared data at {data}: pass its series/ folder as the first argument")
    os.makedirs(out, exist_ok=True)
    for name, (cpu_name, mem_name) in TRACES.items():
        cpu = bins(os.path.join(data, cpu_name + ".csv"))
        mem = bins(os.path.join(data, mem_name + ".csv")) if mem_name else None
        keys = [b for b in cpu if mem is None or b in mem]
        cmax = max(cpu[b] for b in keys)
        mmax = max(mem[b] for b in keys) if mem else None
        path = os.path.join(out, name + ".csv")
        with open(path, "w") as f:
            f.write("timestamp,cpu" + (",memory" if mem else "") + "\n")
            for i, b in enumerate(keys):
                line = f"{keys[0] + i * STEP},{cpu[b] / cmax * CPU_PEAK:.4f}"
                if mem:
                    line += f",{mem[b] / mmax * MEM_PEAK:.4f}"
                f.write(line + "\n")
        print(f"{path}: {len(keys)} steps, {len(keys) * STEP / 86400:.1f} days")


if __name__ == "__main__":
    main()
