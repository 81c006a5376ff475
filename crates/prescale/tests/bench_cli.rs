//! `prescale bench ingest`: every sample sent is stored, and bad settings exit 2.

use std::process::{Command, Output};

/// What a run that must succeed printed; its stderr when it did not succeed.
fn stdout_of(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bench_ingest_sends_everything_and_the_store_takes_it() {
    for wire in ["remote-write", "remote-write-2", "influx"] {
        let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args([
                "bench",
                "ingest",
                "--series",
                "20",
                "--samples",
                "30",
                "--batch",
                "70",
            ])
            .args(["--senders", "2", "--wire", wire])
            .output()
            .unwrap();
        let text = stdout_of(out);
        // 600 samples in ceil(600 / 70) = 9 requests; the command checks the store took all.
        assert!(
            text.contains(
                "600 samples (20 series x 30) in 9 requests of up to 70 from 2 sender(s)"
            ),
            "{text}"
        );
        assert!(text.contains("samples/s; request latency p50"), "{text}");
        // And what they take on disk: as received, once the journal is written out into
        // tables, and once compressed into chunks (smaller than as rows).
        let per_sample: Vec<f64> = text
            .split(" bytes per sample")
            .filter_map(|part| part.rsplit(' ').next()?.parse().ok())
            .collect();
        assert_eq!(per_sample.len(), 3, "{text}");
        assert!(per_sample.iter().all(|b| *b > 0.0), "{text}");
        assert!(per_sample[2] < per_sample[1], "{text}");
        // And how long the store took to open again, as after a restart.
        assert!(
            text.contains("reopened (a restart: the journal replayed) in "),
            "{text}"
        );
        // And the process's peak memory, where Linux tells it.
        if cfg!(target_os = "linux") {
            let mb: f64 = text
                .split("memory: ")
                .nth(1)
                .and_then(|t| t.split(" MB at most resident").next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no peak memory in {text}"));
            assert!(mb > 1.0, "{text}");
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["bench", "ingest", "--batch", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_simulate_times_predictive_replays_of_a_synthetic_or_given_trace() {
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["bench", "simulate"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = bench(&["--days", "3", "--runs", "2"]);
    let text = stdout_of(out);
    assert!(
        text.contains("a synthetic 3-day service: 864 steps (3.0 days, 1 dimension(s)):"),
        "{text}"
    );
    assert!(text.contains("s median of 2 run(s) ("), "{text}");
    // The forecaster was selected and refitted: a replay without fits times nothing.
    let fits: usize = text
        .split(" forecaster fits")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(fits > 10, "{text}");
    // A given trace, as `prescale simulate` reads it.
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    let rows: String = (0..600)
        .map(|i| format!("{},{}\n", 1_700_000_000 + i * 300, 20 + i % 7))
        .collect();
    std::fs::write(&trace, format!("timestamp,cpu\n{rows}")).unwrap();
    let out = bench(&["--trace", trace.to_str().unwrap(), "--runs", "1"]);
    let text = stdout_of(out);
    assert!(text.contains("600 steps (2.1 days"), "{text}");
    for bad in [
        &["--runs", "0"][..],
        &["--days", "0"],
        &["--trace", "/nonexistent.csv"],
    ] {
        let out = bench(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn bench_tune_times_a_tuning_and_says_what_the_library_finds() {
    use prescale_orchestrate::simulate::{synthetic_service, Scenario, EXAMPLE_SCENARIO};
    use prescale_orchestrate::tune;
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["bench", "tune"])
            .args(args)
            .output()
            .unwrap()
    };
    let text = stdout_of(bench(&["--days", "3"]));
    assert!(
        text.contains("tuning on a synthetic 3-day service: 864 steps (3.0 days): "),
        "{text}"
    );
    assert!(text.contains("s median of 1 run(s) ("), "{text}");
    // What the daemon's tuning finds on the same trace and settings, replay for replay.
    let scenario = Scenario::parse(EXAMPLE_SCENARIO, "example").unwrap();
    let flips = tune::safeguard_flips(&scenario.workload);
    let found = tune::tune(
        &synthetic_service(3, 0.05, false),
        &scenario,
        1,
        &flips,
        &tune::run_in_turn,
    )
    .unwrap();
    let want = match &found.advice {
        Some(a) => format!(
            "each 5 replays of the whole trace and 4 of half of it; advice: {} (on each half too: {})",
            a.sentence(found.own.underprovisioned_minutes),
            if a.holds_on_each_half { "yes" } else { "no" }
        ),
        None => "each 5 replays of the whole trace and 0 of half of it; no run dominates the own settings"
            .to_string(),
    };
    assert!(text.contains(&want), "{text}\nwanted: {want}");
    // At one-minute steps, as the host's defaults have them (here 150 s): a day, too
    // short to halve.
    let text = stdout_of(bench(&["--days", "1", "--step-s", "150"]));
    assert!(
        text.contains("tuning on a synthetic 1-day service at 150-s steps: 576 steps (1.0 days): "),
        "{text}"
    );
    assert!(text.contains("and 0 of half of it; "), "{text}");
    for bad in [
        &["--runs", "0"][..],
        &["--days", "0"],
        &["--step-s", "7"],
        &["--step-s", "0"],
        &["--trace", "t.csv", "--step-s", "60"],
    ] {
        let out = bench(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

#[test]
fn bench_query_times_each_dashboard_query_on_a_filled_store() {
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["bench", "query", "--series", "3", "--days", "1.5"])
        .args(["--runs", "2"])
        .output()
        .unwrap();
    let text = stdout_of(out);
    // 1.5 days at 15 s: 8640 samples of each of 6 series; every query answered with
    // what it asked for (an empty answer fails the command).
    assert!(
        text.contains(
            "query API over 6 series (3 gauges and 3 counters) of 1.5 days at 15 s (51840 samples)"
        ),
        "{text}"
    );
    for what in [
        "one series, now: median",
        "the mean of all, a day every minute: median",
        "summed rate of all counters, a day every minute: median",
        "hourly peak of the mean (subquery), a day every 5 minutes: median",
        "series by match[]: median",
        "label values: median",
        "the dashboard's anomaly events, the whole range: median",
        "a day's anomalies, each with the hour before it: median",
    ] {
        assert!(text.contains(what), "{what} missing: {text}");
    }
    assert_eq!(text.matches(" ms (").count(), 11, "{text}");
}

#[test]
fn bench_control_times_passes_over_many_workloads_sharing_pools_and_a_budget() {
    let bench = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["bench", "control", "--hours", "3", "--passes", "8"])
            .args(args)
            .output()
            .unwrap()
    };
    let text = stdout_of(bench(&["--workloads", "6"]));
    assert!(
        text.starts_with("control pass over 6 workload(s) sharing 3 tier pool(s), 3 h of history each, 10000 other series stored: first pass "),
        "{text}"
    );
    assert!(
        text.contains(" ms slowest over 8 pass(es) 15 s apart ("),
        "{text}"
    );
    // The number in `text` between `after` and the first `before`.
    let figure = |text: &str, after: &str, before: &str| -> f64 {
        text.split(before)
            .next()
            .and_then(|t| t.rsplit(after).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure before {before:?} in {text}"))
    };
    // Every workload planned and acted on, none failing.
    assert!(figure(&text, "; ", " action(s)") >= 6.0, "{text}");
    assert!(
        text.trim_end().ends_with("; 0 workload(s) with an error"),
        "{text}"
    );
    let unbudgeted = figure(&text, "fleet $", "/h; ");
    // Under a fleet budget below what they want, the fleet keeps within it.
    let text = stdout_of(bench(&["--workloads", "6", "--fleet-budget", "1.5"]));
    assert!(text.contains(" under a $1.50/h fleet budget, "), "{text}");
    let held = figure(&text, "fleet $", "/h; ");
    assert!(
        unbudgeted > 1.5 && held <= 1.5,
        "{unbudgeted} then {held}: {text}"
    );
    for (bad, says) in [
        (&["--workloads", "0"][..], "must be at least 1"),
        (
            &["--fleet-budget=-1"],
            "--fleet-budget must be zero or positive",
        ),
        (
            &["--fleet-budget", "NaN"],
            "--fleet-budget must be zero or positive",
        ),
    ] {
        let out = bench(bad);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}
