#!/usr/bin/env python3
"""Builds the what-if traces of the README's simulation table from ../shared/data/series.

Each trace is the 5-minute mean of shared series, scaled so its peak is 200 vCPU (other
columns: see PEAK), one row per 5-minute step: series with gaps (NASA's outage,
Bitbrains' dropped bins) are laid end to end, so a trace's days are counted in steps
from its first timestamp.

Usage: bench/sim_traces.py [--holdout|--all|--wide] [DATA_DIR] [OUT_DIR] (defaults
../shared/data/series and target/sim-traces, or target/sim-traces-wide with --wide): the
README's table, the held-out set, both, or the wide held-out set. Standard library only.
"""
import csv
import os
import sys

STEP = 300
# Peak of each trace column: 200 vCPU, and for the other dimensions about as many
# 4-vCPU instances of the example scenario's shape (16 GiB, 3000 IOPS, 750 Mbit/s).
PEAK = {"cpu": 200.0, "memory": 900.0, "disk_iops": 150000.0, "network_mbps": 30000.0}

AZ, GO = "azure_v2__vm_aggregate_5min-", "google2019__instance_usage_5min-"
AL, BB = "alibaba2018__machine_usage_30s-", "bitbrains_rnd__aggregate405vms-"

# The README's table: the cluster demand series the issue names.
MAIN = {
    "azure-cpu": {"cpu": AZ + "cpu_usage"},
    "google-cpu": {"cpu": GO + "avg_cpu"},
    "alibaba-cpu": {"cpu": AL + "cpu_util_percent"},
    "nasa-requests": {"cpu": "nasa_http__requests_per_min"},
    "twitter-aapl": {"cpu": "nab__realTweets-Twitter_volume_AAPL"},
    "twitter-stream": {"cpu": "twitter_stream__events_per_min"},
    "bitbrains-cpu": {"cpu": BB + "cpu_usage_mhz"},
    "azure-cpu-mem": {"cpu": AZ + "cpu_usage", "memory": AZ + "assigned_mem"},
    "google-cpu-mem": {"cpu": GO + "avg_cpu", "memory": GO + "avg_mem"},
    # Held out until its hourly spikes shaped the floors' foreseen peaks (session 9).
    "nab-asg-cpu": {"cpu": "nab__realKnownCause-cpu_utilization_asg_misconfiguration"},
}

# Held out: never used to tune prescale, a stand-in for "traces not in the shared data".
HOLDOUT = {
    "nab-elb-requests": {"cpu": "nab__realAWSCloudwatch-elb_request_count_8c0756"},
    "nab-ec2-cpu": {"cpu": "nab__realAWSCloudwatch-ec2_cpu_utilization_24ae8d"},
    "nab-rds-cpu": {"cpu": "nab__realAWSCloudwatch-rds_cpu_utilization_cc0c53"},
    "bitbrains-vm270-cpu": {"cpu": "bitbrains_rnd__vm270-cpu_usage_mhz"},
    "alibaba-4dim": {
        "cpu": AL + "cpu_util_percent",
        "memory": AL + "mem_util_percent",
        "disk_iops": AL + "disk_io_percent",
        "network_mbps": AL + "net_in",
    },
    "bitbrains-4dim": {
        "cpu": BB + "cpu_usage_mhz",
        "memory": BB + "mem_usage_kb",
        "disk_iops": BB + "disk_rw_kbps",
        "network_mbps": BB + "net_rxtx_kbps",
    },
}

# The wide held-out set: every other shared series of the same kinds (single Bitbrains
# VMs, AWS CloudWatch metrics, Twitter volumes), one column each. Never used to tune
# prescale; the README reports it as a whole, to show how the policy generalises.
WIDE = {
    **{f"bitbrains-vm{v}-cpu": {"cpu": f"bitbrains_rnd__vm{v}-cpu_usage_mhz"}
       for v in (24, 61, 192, 231, 253, 269, 303, 304, 338, 488, 496)},
    **{f"nab-ec2-{h}-cpu": {"cpu": f"nab__realAWSCloudwatch-ec2_cpu_utilization_{h}"}
       for h in ("53ea38", "5f5533", "77c1ca", "825cc2", "ac20cd", "c6585a", "fe7f93")},
    "nab-rds-e47b3b-cpu": {"cpu": "nab__realAWSCloudwatch-rds_cpu_utilization_e47b3b"},
    **{f"nab-ec2-{h}-network": {"cpu": f"nab__realAWSCloudwatch-ec2_network_in_{h}"}
       for h in ("257a54", "5abac7")},
    **{f"nab-ec2-{h}-disk": {"cpu": f"nab__realAWSCloudwatch-ec2_disk_write_bytes_{h}"}
       for h in ("1ef3de", "c0d644")},
    **{f"twitter-{c.lower()}": {"cpu": f"nab__realTweets-Twitter_volume_{c}"}
       for c in ("AMZN", "CRM", "CVS", "FB", "GOOG", "IBM", "KO", "PFE", "UPS")},
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
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    which = {"--holdout": HOLDOUT, "--all": {**MAIN, **HOLDOUT}, "--wide": WIDE}
    traces = next((which[a] for a in sys.argv[1:] if a in which), MAIN)
    data = args[0] if args else "../shared/data/series"
    wide = traces is WIDE
    out = args[1] if len(args) > 1 else "target/sim-traces-wide" if wide else "target/sim-traces"
    if not os.path.isdir(data):
        sys.exit(f"no shared data at {data}: pass its series/ folder as the first argument")
    os.makedirs(out, exist_ok=True)
    for name, cols in traces.items():
        series = {c: bins(os.path.join(data, n + ".csv")) for c, n in cols.items()}
        keys = [b for b in series["cpu"] if all(b in s for s in series.values())]
        peak = {c: max(s[b] for b in keys) for c, s in series.items()}
        path = os.path.join(out, name + ".csv")
        with open(path, "w") as f:
            f.write("timestamp," + ",".join(cols) + "\n")
            for i, b in enumerate(keys):
                vals = (f"{s[b] / peak[c] * PEAK[c]:.4f}" for c, s in series.items())
                f.write(f"{keys[0] + i * STEP}," + ",".join(vals) + "\n")
        print(f"{path}: {len(keys)} steps, {len(keys) * STEP / 86400:.1f} days")


if __name__ == "__main__":
    main()
