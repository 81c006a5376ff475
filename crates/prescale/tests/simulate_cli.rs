//! The `prescale simulate` command-line contract.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn prescale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(args)
        .output()
        .expect("prescale runs")
}

/// `prescale simulate --trace T --scenario S` and more arguments.
fn simulate(trace: &Path, scenario: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    prescale(&args)
}

/// `simulate` with `--format json` and more arguments: its report (or reports), the
/// run having succeeded.
fn report(trace: &Path, scenario: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    parsed(simulate(trace, scenario, &args))
}

/// The page `simulate ... --report` writes with more arguments, the run having
/// succeeded.
fn page(trace: &Path, scenario: &Path, extra: &[&str]) -> String {
    let path = scenario.with_file_name("page.html");
    let args = [extra, &["--report", path.to_str().unwrap()]].concat();
    let out = simulate(trace, scenario, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&path).unwrap()
}

/// A successful run's JSON report (or reports).
fn parsed(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Four days of 5-minute CPU demand with a daily cycle, flat memory, and a column that
/// is not a dimension.
fn write_trace(path: &Path) {
    let mut s = String::from("timestamp,cpu,memory,gpu\n");
    for i in 0..4 * 288 {
        let a = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
        let noise = ((i * 7919) % 101) as f64 / 101.0 - 0.5;
        s.push_str(&format!(
            "{},{:.3},64,1\n",
            1_700_000_000 + i * 300,
            30.0 - 20.0 * a.cos() + 3.0 * noise
        ));
    }
    std::fs::write(path, s).unwrap();
}

/// A temporary folder holding the example scenario and [`write_trace`]'s trace; the
/// folder lives as long as the first value.
fn example_and_trace() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &scenario,
        prescale(&["simulate", "--example-scenario"]).stdout,
    )
    .unwrap();
    write_trace(&trace);
    (dir, scenario, trace)
}

/// A swept run's name in the table: its settings, `*` marking the scenario's own.
fn run_name(r: &serde_json::Value) -> String {
    let set: Vec<String> = r["settings"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k} = {}", v.as_str().unwrap()))
        .collect();
    let own = if r["scenario_value"] == true {
        " *"
    } else {
        ""
    };
    format!("{}{own}", set.join(", "))
}

/// A sweep's `scenario_dominated_by` against its runs: null where nothing dominates the
/// scenario's own run `own`, else the run that does, by name, what it saves (each zero
/// or more, one of them more), and the TOML that sets its (workload) settings.
fn check_dominated_own(sweep: &serde_json::Value, own: &serde_json::Value) {
    let advice = &sweep["scenario_dominated_by"];
    let Some(by) = own["dominated_by"].as_str() else {
        assert!(advice.is_null(), "{sweep}");
        return;
    };
    assert_eq!(advice["run"], by, "{sweep}");
    let run = sweep["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| run_name(r) == by)
        .unwrap();
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let (cost, minutes) = (f(advice, "cost_less"), f(advice, "minutes_less"));
    assert!((cost - (f(own, "cost_total") - f(run, "cost_total"))).abs() < 1e-9);
    let short = |r: &serde_json::Value| f(r, "underprovisioned_minutes");
    assert!((minutes - (short(own) - short(run))).abs() < 1e-9);
    assert!(cost >= 0.0 && minutes >= 0.0 && (cost > 0.0 || minutes > 0.0));
    let mut toml = String::from("[workload]\n");
    for (k, v) in run["settings"].as_object().unwrap() {
        toml += &format!("{k} = {}\n", v.as_str().unwrap());
    }
    assert_eq!(advice["toml"], toml.as_str(), "{sweep}");
}

fn v_has_memory(stdout: &[u8]) -> bool {
    let v: serde_json::Value = serde_json::from_slice(stdout).unwrap();
    v["unserved"]["memory"].is_number()
}

#[test]
fn example_scenario_json_report_and_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    let trace = dir.path().join("t.csv");
    let timeline = dir.path().join("tl.csv");
    let out = prescale(&["simulate", "--example-scenario"]);
    assert!(out.status.success());
    std::fs::write(&scenario, &out.stdout).unwrap();
    write_trace(&trace);
    let mut reports = Vec::new();
    for policy in [
        "oracle",
        "reactive",
        "static",
        "spec-baseline",
        "predictive",
    ] {
        let out = simulate(
            &trace,
            &scenario,
            &[
                "--policy",
                policy,
                "--format",
                "json",
                "--timeline",
                timeline.to_str().unwrap(),
                "--seed",
                "5",
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{policy}: {err}");
        assert!(err.contains("\"gpu\" ignored"), "{err}");
        assert!(v_has_memory(&out.stdout), "memory is simulated");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for field in [
            "cost_total",
            "cost_per_tier",
            "underprovisioned_minutes",
            "underprovisioned_share",
            "unserved",
            "actions",
            "interruptions",
        ] {
            assert!(!v[field].is_null(), "{policy}: no {field} in {v}");
        }
        let share = v["underprovisioned_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share));
        let per_tier: f64 = v["cost_per_tier"]
            .as_object()
            .unwrap()
            .values()
            .map(|c| c.as_f64().unwrap())
            .sum();
        assert!((per_tier - v["cost_total"].as_f64().unwrap()).abs() < 1e-6);
        let tl = std::fs::read_to_string(&timeline).unwrap();
        let mut lines = tl.lines();
        let header = lines.next().unwrap();
        assert!(
            header.starts_with(
                "timestamp,demand_cpu,demand_memory,ready_cpu_spot,ready_cpu_standard"
            ),
            "{header}"
        );
        assert!(header.contains("ready_memory_high-performance"), "{header}");
        assert!(header.contains("instances_standard") && header.ends_with("cost_so_far,reason"));
        let rows: Vec<&str> = lines.collect();
        assert_eq!(rows.len(), 4 * 288, "one row per step");
        // Steps where the fleet changed say why, in words a person can check.
        let why: Vec<&&str> = rows.iter().filter(|r| r.ends_with('"')).collect();
        assert!(!why.is_empty() && why.len() <= v["actions"].as_u64().unwrap() as usize);
        let expect = match policy {
            "predictive" => "of forecast demand",
            "reactive" => "HPA",
            "oracle" => "actual demand",
            "static" => "peak",
            _ => "spec baseline",
        };
        assert!(
            why.iter().any(|r| r.contains(expect)),
            "{policy}: {}",
            why[why.len() - 1]
        );
        // Each step planned from a forecast names the model that made it; the others
        // leave the column empty.
        let at = header
            .split(',')
            .position(|c| c == "forecast_model")
            .expect("a forecast_model column");
        let models: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let cells = split_csv(r);
                let m = cells[at].clone();
                (!m.is_empty()).then_some(m)
            })
            .collect();
        if policy == "predictive" {
            // Two days of history before the first selection: the warm-up's naive, then
            // a selected model with its calibration.
            assert!(models.iter().any(|m| m == "naive"), "{models:?}");
            assert!(
                models.iter().any(|m| m.ends_with("+conformal")),
                "{models:?}"
            );
            assert!(models.len() > 3 * 288, "{}", models.len());
        } else if policy != "spec-baseline" {
            assert!(models.is_empty(), "{policy}: {models:?}");
        }
        reports.push((policy, v));
    }
    let cost = |p: &str| {
        reports.iter().find(|(q, _)| *q == p).unwrap().1["cost_total"]
            .as_f64()
            .unwrap()
    };
    assert!(cost("oracle") < cost("predictive"));
    // The HTML report draws demand, the forecast band and one area per tier.
    let report = dir.path().join("r.html");
    let out = simulate(&trace, &scenario, &["--report", report.to_str().unwrap()]);
    assert!(out.status.success());
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<h1>prescale simulate: policy predictive</h1>"));
    assert!(html.contains("<svg") && html.contains("ready capacity: spot"));
    assert!(html.contains("#f2c14e"), "the forecast band is drawn");
    assert_eq!(
        html.matches("fill-opacity=\"0.75\"").count(),
        6,
        "one area per tier, in a chart for cpu and one for memory"
    );
    assert!(html.contains("<h2>memory</h2>") && html.contains("<h2>cpu</h2>"));
    assert!(html.contains("Decisions: all") && html.contains("<th>why</th>"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cost total"));
    assert!(cost("predictive") < cost("reactive"));
    assert!(cost("reactive") < cost("static"));
}

#[test]
fn a_scenarios_planned_event_is_replayed_explained_and_drawn() {
    let (dir, scenario, trace) = example_and_trace();
    // The example's commented event, set on the trace's third day from 10:00 to 14:00.
    let text = std::fs::read_to_string(&scenario).unwrap();
    let (start, end) = (
        1_700_000_000 + 2 * 86_400 + 36_000,
        1_700_000_000 + 2 * 86_400 + 50_400,
    );
    let mut with = text.clone();
    for (from, to) in [
        (
            "# [[workload.events]]\n",
            "[[workload.events]]\n".to_string(),
        ),
        ("# name = \"launch\"\n", "name = \"launch\"\n".to_string()),
        (
            "# start = 2026-01-06T14:00:00Z\n",
            format!("start = {start}\n"),
        ),
        ("# end = 2026-01-06T18:00:00Z\n", format!("end = {end}\n")),
        ("# scale = 3.0\n", "scale = 3.0\n".to_string()),
    ] {
        assert!(with.contains(from), "the example shows {from:?}");
        with = with.replacen(from, &to, 1);
    }
    std::fs::write(&scenario, &with).unwrap();
    let report = dir.path().join("r.html");
    let timeline = dir.path().join("tl.csv");
    let out = simulate(
        &trace,
        &scenario,
        &[
            "--report",
            report.to_str().unwrap(),
            "--timeline",
            timeline.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<rect class=\"event\"")
            && html.contains("<title>planned event launch from 2023-11-17T08:13:20Z to 2023-11-17T12:13:20Z</title>"),
        "{}",
        &html[..html.len().min(2000)]
    );
    let rows = std::fs::read_to_string(&timeline).unwrap();
    assert!(
        rows.contains("planned event \"\"launch\"\" from 2023-11-17T08:13:20Z to 2023-11-17T12:13:20Z: demand expected at 3 times the forecast"),
        "the plans say why"
    );
    // Compared with all the policies, it says what telling prescale was worth: here
    // nothing happened, so the event cost money and saved no minute.
    let out = simulate(&trace, &scenario, &["--policy", "all"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("Without its 1 planned event(s), predictive would cost $")
            && shown.contains(" min: telling it saved $-"),
        "{shown}"
    );
    let out = simulate(&trace, &scenario, &["--policy", "all", "--format", "json"]);
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let left_out = all.last().unwrap();
    assert_eq!(left_out["planned_events_left_out"], 1, "{left_out}");
    assert_eq!(left_out["policy"], "predictive");
    // Three times the demand expected for four hours costs more than none.
    let evented = simulate(&trace, &scenario, &["--format", "json"]);
    std::fs::write(&scenario, &text).unwrap();
    let plain = simulate(&trace, &scenario, &["--format", "json"]);
    let cost = |o: &Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["cost_total"]
            .as_f64()
            .unwrap()
    };
    assert!(
        cost(&evented) > cost(&plain) + 10.0,
        "{} for {}",
        cost(&evented),
        cost(&plain)
    );
}

#[test]
fn bad_policy_trace_or_scenario_exit_2_saying_what_to_fix() {
    let (_dir, scenario, trace) = example_and_trace();
    let out = simulate(&trace, &scenario, &["--policy", "magic"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("oracle"));

    // An output over an input: refused, the input kept.
    let before = std::fs::read(&trace).unwrap();
    for flag in ["--timeline", "--report"] {
        let out = simulate(&trace, &scenario, &[flag, trace.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{flag} {} is the file --trace reads: it would be overwritten",
                trace.display()
            )),
            "{err}"
        );
        assert_eq!(std::fs::read(&trace).unwrap(), before);
    }
    let out = simulate(&trace, &scenario, &["--report", scenario.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the file --scenario reads"));

    std::fs::write(&trace, "timestamp,value\n1,2\n").unwrap();
    let out = simulate(&trace, &scenario, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`cpu`"));

    // An empty trace, a column named twice, a negative demand in a second dimension.
    for (text, says) in [
        ("", "empty file; expected a header `timestamp,cpu`"),
        (
            "timestamp,cpu,cpu\n0,1,1\n300,2,2\n",
            "column \"cpu\" appears twice",
        ),
        (
            "timestamp,cpu,memory\n0,1,1\n300,2,-5\n",
            "demand must not be negative (memory is -5 at 300)",
        ),
    ] {
        std::fs::write(&trace, text).unwrap();
        let out = simulate(&trace, &scenario, &[]);
        assert_eq!(out.status.code(), Some(2), "{text:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{text:?}: {err}");
        assert!(!err.contains("ignored"), "{text:?}: {err}");
    }

    std::fs::write(
        &scenario,
        "single_tier = \"standard\"\n[[tiers]]\nname = 3\n",
    )
    .unwrap();
    write_trace(&trace);
    let out = simulate(&trace, &scenario, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tiers") && err.contains("name"), "{err}");
}

#[test]
fn demand_far_beyond_the_tiers_warns_that_its_unit_may_be_wrong() {
    let (_dir, scenario, trace) = example_and_trace();
    // The trace as written: no warning.
    let out = simulate(&trace, &scenario, &["--policy", "static"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("peaks at"));
    // Memory in bytes (64 GiB as 68,719,476,736): replayed, with a warning that says
    // which dimension, by how much, and what to check.
    let text = std::fs::read_to_string(&trace)
        .unwrap()
        .replace(",64,1\n", ",68719476736,1\n");
    std::fs::write(&trace, text).unwrap();
    let out = simulate(&trace, &scenario, &["--policy", "static"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: memory demand peaks at 6.8719e10 GiB, 1.9e7 times what the tiers serving trace")
            && err.contains("(3600 GiB): every policy will be short of it; is the trace in GiB (a byte count needs dividing by 2^30)?"),
        "{err}"
    );
    assert!(!err.contains("cpu demand peaks"), "{err}");
}

#[test]
fn policy_all_compares_every_policy_on_the_same_trace_and_seed() {
    let (_dir, scenario, trace) = example_and_trace();
    let json = |extra: &[&str]| report(&trace, &scenario, &[&["--seed", "3"][..], extra].concat());
    let all = json(&["--policy", "all"]);
    let runs = all.as_array().expect("one report per policy");
    let names: Vec<&str> = runs.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "oracle",
            "predictive",
            "spec-baseline",
            "reactive",
            "static",
            "reactive"
        ]
    );
    assert_eq!(runs[3]["reactive_target_utilization"], 0.7);
    // The last: HPA with its target lowered until it is short no longer than predictive
    // (or as little as it gets), a run that scenario alone gives too.
    let matched = &runs[5];
    let target = matched["reactive_target_utilization"].as_f64().unwrap();
    assert!((0.05..=0.7).contains(&target), "{target}");
    let minutes = |r: &serde_json::Value| r["underprovisioned_minutes"].as_f64().unwrap();
    assert!(minutes(matched) <= minutes(&runs[3]));
    let lowered = std::fs::read_to_string(&scenario).unwrap().replace(
        "target_utilization = 0.7",
        &format!("target_utilization = {target}"),
    );
    let lowered_path = scenario.with_file_name("lowered.toml");
    std::fs::write(&lowered_path, lowered).unwrap();
    let out = simulate(
        &trace,
        &lowered_path,
        &["--policy", "reactive", "--format", "json", "--seed", "3"],
    );
    let alone: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(alone["cost_total"], matched["cost_total"]);
    // It says so: whether it got there, and every target tried, highest first, down to
    // its own (or to the lowest, when none got there).
    assert!(runs[..5]
        .iter()
        .all(|r| r.get("matched_to_predictive").is_none()));
    let how = &matched["matched_to_predictive"];
    let found = how["found"].as_bool().unwrap();
    assert_eq!(found, minutes(matched) <= minutes(&runs[1]), "{how}");
    let tried = how["tried"].as_array().unwrap();
    assert_eq!(tried[0]["target_utilization"], 0.7, "{how}");
    let last = tried.last().unwrap();
    if found {
        assert_eq!(last["target_utilization"].as_f64(), Some(target), "{how}");
        assert_eq!(last["cost_total"], matched["cost_total"], "{how}");
    }
    assert!(tried
        .windows(2)
        .all(|w| w[0]["target_utilization"].as_f64() > w[1]["target_utilization"].as_f64()));
    // Each is the run that policy alone gives.
    for (name, run) in names.iter().zip(runs).take(5) {
        let alone = json(&["--policy", name]);
        assert_eq!(run["cost_total"], alone["cost_total"], "{name}");
        assert_eq!(
            run["underprovisioned_minutes"], alone["underprovisioned_minutes"],
            "{name}"
        );
    }
    // The table: a row per policy, its cost against the oracle and against HPA.
    let out = simulate(&trace, &scenario, &["--policy", "all", "--seed", "3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("x oracle") && text.contains("vs HPA"),
        "{text}"
    );
    let row = |p: &str| text.lines().find(|l| l.starts_with(p)).unwrap().to_string();
    assert!(row("oracle").contains(" 1.00 "), "{text}");
    assert!(row("reactive ").contains("+0%"), "{text}");
    // The lowered HPA has a row of its own unless it is the reactive row.
    let pct = format!("reactive@{:.0}%", target * 100.0);
    assert_eq!(text.contains(&pct), target < 0.7, "{text}");
    // And what predictive saves against it, or that no target gets HPA there.
    let reached = minutes(matched) <= minutes(&runs[1]);
    let says = if reached {
        "HPA's highest target at which it is short no longer than predictive"
    } else {
        "HPA is short longer than predictive"
    };
    assert!(text.contains(says), "{text}");
    // The comparison page: every policy's figures, cost against minutes short with
    // HPA's line through the targets tried, and cost over time.
    let html = page(&trace, &scenario, &["--policy", "all", "--seed", "3"]);
    for p in names.iter().take(5) {
        assert!(html.contains(&format!(">{p}</td>")), "{p}");
    }
    assert!(html.contains(&format!("reactive at {:.0}%", target * 100.0)));
    assert!(html.contains("Cost against minutes short") && html.contains("Cost over time"));
    assert_eq!(html.matches("<svg").count(), 2);
    // One point per policy on the first chart, one line per policy on the second
    // (static too, unless it costs over three times the others).
    assert!(html.matches("r=\"6\"").count() == 5);
    assert!(html.contains("HPA 70%"));
    // And predictive at the other SLA quantiles, the example's q0.95 among them.
    assert!(
        html.contains(">q0.8</text>") && html.contains("q0.95"),
        "{html}"
    );
    assert!(html.contains("predictive at other SLA quantiles (q0.8, q0.9, q0.99)"));
    // No name or label on the first chart is written over another (at 0.6 of the
    // font size a letter, as the chart reckons).
    let chart = &html[html.find("<svg").unwrap()..html.find("</svg>").unwrap()];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let from = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[from..from + tag[from..].find('"')?].to_string())
    };
    let boxes: Vec<(f64, f64, f64, String)> = chart
        .split("<text ")
        .skip(1)
        .filter_map(|t| {
            let (tag, rest) = t.split_once('>')?;
            let tag = &format!(" {tag}");
            attr(tag, "fill")?;
            let text = rest.split('<').next()?.to_string();
            let num = |n: &str| attr(tag, n).and_then(|v| v.parse::<f64>().ok());
            let (x, y, size) = (num("x")?, num("y")?, num("font-size")?);
            let len = 0.6 * size * text.len() as f64;
            let x0 = if attr(tag, "text-anchor").as_deref() == Some("end") {
                x - len
            } else {
                x
            };
            Some((x0, x0 + len, y, text))
        })
        .collect();
    assert!(boxes.len() >= 7, "{boxes:?}");
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            let overlap = a.0 < b.1 && b.0 < a.1 && (a.2 - b.2).abs() < 10.0;
            assert!(!overlap, "{a:?} over {b:?}");
        }
    }
    assert!(html.contains(says));
    // A timeline belongs to one run.
    let out = simulate(
        &trace,
        &scenario,
        &["--policy", "all", "--timeline", "t.csv"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--policy"));
}

#[test]
fn a_sweep_replays_one_setting_at_each_value_beside_the_oracle_and_hpa() {
    let (_dir, scenario, trace) = example_and_trace();
    let json = |extra: &[&str]| report(&trace, &scenario, &[&["--seed", "3"][..], extra].concat());
    let swept = json(&["--sweep", "scale_down_window_s=0, 7200"]);
    assert_eq!(swept["sweep"], serde_json::json!(["scale_down_window_s"]));
    let runs = swept["runs"].as_array().unwrap();
    let values: Vec<&str> = runs.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(values, ["0", "7200"]);
    // The example scenario holds the highest demand of two hours: that run is marked,
    // and is the run the scenario alone gives.
    let own: Vec<bool> = runs
        .iter()
        .map(|r| r["scenario_value"].as_bool().unwrap())
        .collect();
    assert_eq!(own, [false, true]);
    let alone = json(&[]);
    assert_eq!(runs[1]["cost_total"], alone["cost_total"]);
    assert_eq!(
        runs[1]["underprovisioned_minutes"],
        alone["underprovisioned_minutes"]
    );
    // Without the window the plan follows the forecast down each evening: it is
    // another run, cheaper, and never below the oracle, which is the scenario's.
    let cost = |r: &serde_json::Value| r["cost_total"].as_f64().unwrap();
    assert!(cost(&runs[0]) < cost(&runs[1]), "{swept}");
    assert!(cost(&swept["oracle"]) <= cost(&runs[0]), "{swept}");
    assert_eq!(
        swept["oracle"]["cost_total"],
        json(&["--policy", "oracle"])["cost_total"]
    );
    assert_eq!(swept["reactive"]["policy"], "reactive");
    // Beside each run, HPA as short as it: the target `--policy all` lowers HPA's to
    // for the scenario's shortfall, and what the run costs against it.
    let all = report(&trace, &scenario, &["--seed", "3", "--policy", "all"]);
    let matched = all.as_array().unwrap().last().unwrap();
    assert!(matched["matched_to_predictive"]["found"] == true, "{all}");
    let short = |r: &serde_json::Value| r["underprovisioned_minutes"].as_f64().unwrap();
    let hpa = &runs[1]["hpa_short_no_longer"];
    assert_eq!(
        hpa["target_utilization"], matched["reactive_target_utilization"],
        "{swept}"
    );
    assert_eq!(hpa["cost_total"], matched["cost_total"], "{swept}");
    for r in runs {
        let hpa = &r["hpa_short_no_longer"];
        assert!(short(hpa) <= short(r), "{r}");
        let vs = r["vs_hpa_short_no_longer"].as_f64().unwrap();
        assert!((vs - (cost(r) / cost(hpa) - 1.0)).abs() < 1e-9, "{r}");
    }
    // A run another costs no more than and is short no longer than, better in one, is
    // dominated by it.
    let names = ["scale_down_window_s = 0", "scale_down_window_s = 7200 *"];
    for (i, r) in runs.iter().enumerate() {
        let o = &runs[1 - i];
        let better = cost(o) <= cost(r)
            && short(o) <= short(r)
            && (cost(o) < cost(r) || short(o) < short(r));
        let by = better.then_some(names[1 - i]);
        assert_eq!(r["dominated_by"], serde_json::json!(by), "{swept}");
    }
    // One of its values is the scenario's: no run of the scenario beside them.
    assert!(swept.get("scenario").is_none(), "{swept}");
    check_dominated_own(&swept, &runs[1]);
    // Several settings, each swept alone, the others as the scenario has them: what
    // each safeguard buys. None is at the scenario's value, so its run comes too.
    let each = json(&[
        "--sweep",
        "scale_down_window_s=0",
        "--sweep",
        "seasonal_floor=false",
    ]);
    assert_eq!(
        each["sweep"],
        serde_json::json!(["scale_down_window_s", "seasonal_floor"])
    );
    let runs2 = each["runs"].as_array().unwrap();
    let settings: Vec<&str> = runs2
        .iter()
        .map(|r| r["setting"].as_str().unwrap())
        .collect();
    assert_eq!(settings, ["scale_down_window_s", "seasonal_floor"]);
    assert_eq!(runs2[0]["cost_total"], runs[0]["cost_total"]);
    assert_eq!(each["scenario"]["cost_total"], alone["cost_total"]);
    assert!(runs2.iter().all(|r| r["scenario_value"] == false), "{each}");
    check_dominated_own(&each, &each["scenario"]);
    let out = simulate(
        &trace,
        &scenario,
        &["--seed", "3", "--sweep", "seasonal_floor=false"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text
        .lines()
        .find(|l| l.starts_with("predictive (scenario)"));
    let cost_shown = format!("${:.2}", cost(&alone));
    assert!(row.is_some_and(|r| r.contains(&cost_shown)), "{text}");
    // The table: the oracle, HPA, then a row per value, the scenario's marked.
    let out = simulate(
        &trace,
        &scenario,
        &["--seed", "3", "--sweep", "sla_quantile=0.9,0.95"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|h| h.starts_with("run ") && h.ends_with("HPA as short   vs it")),
        "{text}"
    );
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert!(rows[4].starts_with("HPA as short: HPA at its highest target (down to 5%)"));
    assert!(
        rows[0].starts_with("oracle") && rows[0].contains(" 1.00 "),
        "{text}"
    );
    assert!(
        rows[1].starts_with("reactive") && rows[1].contains("+0%"),
        "{text}"
    );
    assert!(rows[2].starts_with("sla_quantile = 0.9 "), "{text}");
    assert!(rows[3].starts_with("sla_quantile = 0.95 *"), "{text}");
    // HPA's target and cost as short as the run, and the run against it; only the
    // runs of the swept policy have them.
    let sla = report(
        &trace,
        &scenario,
        &["--seed", "3", "--sweep", "sla_quantile=0.9,0.95"],
    );
    for (row, run) in rows[2..4].iter().zip(sla["runs"].as_array().unwrap()) {
        let hpa = &run["hpa_short_no_longer"];
        let target = hpa["target_utilization"].as_f64().unwrap() * 100.0;
        let cell = format!("{target:.0}%, ${:.2}", cost(hpa));
        let vs = run["vs_hpa_short_no_longer"].as_f64().unwrap() * 100.0;
        assert!(row.contains(&cell), "{cell}: {text}");
        assert!(row.contains(&format!(" {vs:+.0}%")), "{vs}: {text}");
    }
    assert!(
        !rows[0].contains(", $") && !rows[1].contains(", $"),
        "{text}"
    );
    // Under the table, whether a run dominates the scenario's own and how to set it:
    // here the lower service level is as short (never) and cheaper.
    check_dominated_own(&sla, &sla["runs"][1]);
    let advice = &sla["scenario_dominated_by"];
    assert_eq!(advice["run"], "sla_quantile = 0.9", "{sla}");
    // And whether it does on each half of the trace replayed alone: what replaying each
    // half at both settings gives.
    let halves = advice["halves"].as_array().unwrap();
    assert_eq!(halves.len(), 2, "{sla}");
    let csv = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    let (head, rows_csv) = (lines[0], &lines[1..]);
    let mid = rows_csv.len() / 2;
    let lower = scenario.with_file_name("lower.toml");
    let own_toml = std::fs::read_to_string(&scenario).unwrap();
    assert!(own_toml.contains("\nsla_quantile = 0.95\n"));
    std::fs::write(
        &lower,
        own_toml.replace("\nsla_quantile = 0.95\n", "\nsla_quantile = 0.9\n"),
    )
    .unwrap();
    for (k, part) in [&rows_csv[..mid], &rows_csv[mid..]].into_iter().enumerate() {
        let half = scenario.with_file_name(format!("half{k}.csv"));
        std::fs::write(&half, format!("{head}\n{}\n", part.join("\n"))).unwrap();
        let own = report(&half, &scenario, &["--seed", "3"]);
        let other = report(&half, &lower, &["--seed", "3"]);
        let less = |key: &str| own[key].as_f64().unwrap() - other[key].as_f64().unwrap();
        let h = &halves[k];
        assert!(
            (h["cost_less"].as_f64().unwrap() - less("cost_total")).abs() < 1e-9,
            "{h}"
        );
        assert!(
            (h["minutes_less"].as_f64().unwrap() - less("underprovisioned_minutes")).abs() < 1e-9,
            "{h}"
        );
        let holds = less("cost_total") >= -0.005 && less("underprovisioned_minutes") >= -0.05;
        assert_eq!(h["holds"], holds, "{h}");
    }
    let held = halves.iter().all(|h| h["holds"] == true);
    let halves_said = if held {
        "It does on each half of the trace replayed alone too ("
    } else {
        "But replayed on each half of the trace alone it does not ("
    };
    assert!(
        rows[5].starts_with(&format!(
            "On this trace the scenario's own settings are dominated: sla_quantile = 0.9 costs ${:.2} less and is short no longer (0 minutes). {halves_said}",
            advice["cost_less"].as_f64().unwrap()
        )) && rows[5].ends_with(" To use it, set:"),
        "{text}"
    );
    assert_eq!(
        rows[6..],
        ["  [workload]", "  sla_quantile = 0.9"],
        "{text}"
    );
    // A higher service level costs more: nothing dominates the scenario's own.
    let dearer = report(
        &trace,
        &scenario,
        &["--seed", "3", "--sweep", "sla_quantile=0.99"],
    );
    assert!(dearer["scenario_dominated_by"].is_null(), "{dearer}");
    assert!(dearer["scenario"]["dominated_by"].is_null(), "{dearer}");
    let out = simulate(
        &trace,
        &scenario,
        &["--seed", "3", "--sweep", "sla_quantile=0.99"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().last(),
        Some("No run dominates the scenario's own settings on this trace: every run that costs less is short longer."),
        "{text}"
    );
    // The page: the same rows, and each value on the chart of cost against minutes
    // short beside HPA at every target tried.
    let html = page(
        &trace,
        &scenario,
        &["--seed", "3", "--sweep", "sla_quantile=0.9,0.95"],
    );
    for says in [
        "predictive at each value of sla_quantile",
        "sla_quantile = 0.95 *",
        "<svg",
        "HPA 70%",
        "<th>HPA as short</th><th>vs it</th>",
        "HPA as short: HPA at its highest target utilization (down to 5%)",
        "<p class=\"verdict\"><b>On this trace the scenario's own settings are dominated: sla_quantile = 0.9 costs $",
        "To use it, set:</p><pre>[workload]\nsla_quantile = 0.9\n</pre>",
    ] {
        assert!(html.contains(says), "{says}: {html}");
    }
    // Both values are drawn, labelled with their value, in the predictive colour.
    for label in [">0.9</text>", ">0.95 *</text>"] {
        assert!(html.contains(label), "{label}: {html}");
    }
    // What cannot be swept, or not to that value, is said (before anything runs, but
    // for what only a run finds), and nothing is printed.
    for (sweep, says) in [
        (
            "sla_quantile=0.9,1.5",
            "workload.sla_quantile must be between 0 and 1",
        ),
        ("windw=0,1", "unknown field `windw`"),
        ("class=batch", "its defaults fill other settings"),
        ("step_s=60", "the replay steps as the trace does"),
        ("scale_down_window_s", "give KEY=V1,V2,..."),
        // Found by the run itself, while others run beside it: its error, no table.
        ("forecast.history_s=300,86400", "use at least 600"),
    ] {
        let out = simulate(&trace, &scenario, &["--sweep", sweep]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{sweep}: {err}");
        assert!(err.contains(says), "{sweep}: {err}");
        assert!(out.stdout.is_empty(), "{sweep}");
    }
    let out = simulate(
        &trace,
        &scenario,
        &["--sweep", "sla_quantile=0.9", "--policy", "all"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sweep replays one policy"));
    // HPA's own settings, swept for HPA; not for a policy that never reads them.
    let hpa = json(&[
        "--policy",
        "reactive",
        "--sweep",
        "reactive.target_utilization=0.5,0.7",
    ]);
    let runs = hpa["runs"].as_array().unwrap();
    assert_eq!(
        runs[1]["cost_total"], hpa["reactive"]["cost_total"],
        "{hpa}"
    );
    assert!(cost(&runs[0]) > cost(&runs[1]), "{hpa}");
    assert_eq!(runs[0]["reactive_target_utilization"], 0.5, "{hpa}");
    // HPA as the scenario has it is the reactive row: no second run of it, where no
    // value swept is the scenario's.
    let args = [
        "--seed",
        "3",
        "--policy",
        "reactive",
        "--sweep",
        "reactive.target_utilization=0.5",
    ];
    assert!(report(&trace, &scenario, &args).get("scenario").is_none());
    let text = String::from_utf8_lossy(&simulate(&trace, &scenario, &args).stdout).to_string();
    assert!(!text.contains("reactive (scenario)"), "{text}");
    assert!(text.contains("\nreactive "), "{text}");
    let out = simulate(
        &trace,
        &scenario,
        &["--sweep", "reactive.target_utilization=0.5"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the predictive policy does not read [reactive]"),
        "{err}"
    );
}

#[test]
fn a_grid_sweep_replays_every_combination_of_the_settings_values() {
    let (_dir, scenario, trace) = example_and_trace();
    let json = |extra: &[&str]| report(&trace, &scenario, &[&["--seed", "3"][..], extra].concat());
    let both = [
        "--sweep",
        "scale_down_window_s=0,7200",
        "--sweep",
        "seasonal_floor=false,true",
    ];
    let grid = json(&[&both[..], &["--grid"]].concat());
    assert_eq!(grid["grid"], true, "{grid}");
    assert_eq!(
        grid["sweep"],
        serde_json::json!(["scale_down_window_s", "seasonal_floor"])
    );
    let runs = grid["runs"].as_array().unwrap();
    let settings: Vec<&serde_json::Value> = runs.iter().map(|r| &r["settings"]).collect();
    let set = |w: &str, f: &str| serde_json::json!({"scale_down_window_s": w, "seasonal_floor": f});
    assert_eq!(
        settings,
        [
            &set("0", "false"),
            &set("0", "true"),
            &set("7200", "false"),
            &set("7200", "true")
        ]
    );
    // A run of several settings has no single `setting`.
    assert!(runs.iter().all(|r| r.get("setting").is_none()), "{grid}");
    // Only the run at both of the scenario's values is marked, and it is the run the
    // scenario alone gives: no scenario run beside it.
    let own: Vec<bool> = runs
        .iter()
        .map(|r| r["scenario_value"].as_bool().unwrap())
        .collect();
    assert_eq!(own, [false, false, false, true]);
    let alone = json(&[]);
    assert_eq!(runs[3]["cost_total"], alone["cost_total"]);
    assert!(grid.get("scenario").is_none(), "{grid}");
    // A combination with one setting at the scenario's value is that setting swept
    // alone; the sweep without --grid gives the same runs for them, and not the run
    // with both off.
    let each = json(&both);
    assert_eq!(each["grid"], false);
    let alone_runs = each["runs"].as_array().unwrap();
    assert_eq!(alone_runs.len(), 4, "{each}");
    let cost = |r: &serde_json::Value| r["cost_total"].as_f64().unwrap();
    assert_eq!(cost(&alone_runs[0]), cost(&runs[1]), "window 0 alone");
    assert_eq!(
        cost(&alone_runs[2]),
        cost(&runs[2]),
        "seasonal floor off alone"
    );
    assert_eq!(
        alone_runs[0]["settings"],
        serde_json::json!({"scale_down_window_s": "0"})
    );
    assert_eq!(alone_runs[0]["setting"], "scale_down_window_s");
    // Each run's dominated_by is the cheapest other that costs no more and is short no
    // longer, better in one, by its name in the table.
    let short = |r: &serde_json::Value| r["underprovisioned_minutes"].as_f64().unwrap();
    for r in runs {
        let by = runs
            .iter()
            .filter(|o| {
                cost(o) <= cost(r)
                    && short(o) <= short(r)
                    && (cost(o) < cost(r) || short(o) < short(r))
            })
            .min_by(|a, b| cost(a).total_cmp(&cost(b)))
            .map(run_name);
        assert_eq!(r["dominated_by"], serde_json::json!(by), "{grid}");
        assert!(r["hpa_short_no_longer"].is_object(), "{grid}");
    }
    check_dominated_own(&grid, &runs[3]);
    // Both off is a run of its own: no more capacity held than with either alone.
    assert!(cost(&runs[0]) <= cost(&runs[1]), "{grid}");
    assert!(cost(&runs[0]) <= cost(&runs[2]), "{grid}");
    assert_ne!(cost(&runs[0]), cost(&runs[3]), "{grid}");
    // The table and the page name every combination, the scenario's marked.
    let args = [&["--seed", "3"][..], &both[..], &["--grid"]].concat();
    let out = simulate(&trace, &scenario, &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("predictive at every combination of the values of workload.scale_down_window_s, workload.seasonal_floor (* the scenario's own)"),
        "{text}"
    );
    let rows: Vec<&str> = text.lines().skip(2).collect();
    assert!(rows[6].starts_with("HPA as short: "), "{text}");
    // The run that dominates the scenario's own, and both its settings to set.
    if let Some(by) = grid["scenario_dominated_by"]["run"].as_str() {
        assert!(
            rows[7].contains(&format!("dominated: {by} costs")),
            "{text}"
        );
        assert_eq!(rows[8], "  [workload]", "{text}");
        assert_eq!(rows.len(), 11, "{text}");
    } else {
        assert_eq!(rows.len(), 8, "{text}");
    }
    assert!(
        rows[2].starts_with("scale_down_window_s = 0, seasonal_floor = false "),
        "{text}"
    );
    assert!(
        rows[5].starts_with("scale_down_window_s = 7200, seasonal_floor = true *"),
        "{text}"
    );
    let html = page(&trace, &scenario, &args);
    for says in [
        "predictive at every combination of the values of scale_down_window_s, seasonal_floor",
        "4. scale_down_window_s = 7200, seasonal_floor = true *",
        "a predictive line per combination of all but seasonal_floor",
    ] {
        assert!(html.contains(says), "{says}: {html}");
    }
    // A line per window, through the seasonal floor's two values.
    let lines = html
        .matches("stroke=\"#2e8b57\" stroke-width=\"1.5\"")
        .count();
    assert_eq!(lines, 2, "{html}");
    // Too many runs, a setting given twice, and --grid alone are refused before any run.
    let many: String = (0..11).map(|v| v.to_string()).collect::<Vec<_>>().join(",");
    let more: String = (1..=10)
        .map(|v| format!("0.{v:02}"))
        .collect::<Vec<_>>()
        .join(",");
    for (args, says) in [
        (
            vec![
                "--sweep".to_string(),
                format!("scale_down_delay_s={many}"),
                "--sweep".to_string(),
                format!("surge_extra={more}"),
                "--grid".to_string(),
            ],
            "--grid: 110 combinations of the settings' values; at most 100 runs",
        ),
        (
            [
                "--sweep",
                "surge_extra=0",
                "--sweep",
                "surge_extra=1",
                "--grid",
            ]
            .map(String::from)
            .to_vec(),
            "--sweep surge_extra is given twice",
        ),
        (vec!["--grid".to_string()], "--sweep"),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = simulate(&trace, &scenario, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn a_trace_without_demand_costs_nothing_and_says_so_without_nan() {
    let (dir, example, _) = example_and_trace();
    let trace = dir.path().join("zero.csv");
    let rows: String = (0..600)
        .map(|i| format!("{},0,0\n", 1_700_000_000 + i * 300))
        .collect();
    std::fs::write(&trace, format!("timestamp,cpu,actual_cpu\n{rows}")).unwrap();
    // The example's service keeps one instance however quiet (min_instances = 1): every
    // policy (HPA as its minReplicas) pays for one standard instance; what ran, nothing.
    let runs = report(&trace, &example, &["--policy", "all"]);
    for run in runs.as_array().unwrap() {
        let cost = run["cost_total"].as_f64().unwrap();
        match run["policy"].as_str().unwrap() {
            "as-run" => assert_eq!(cost, 0.0, "{run}"),
            _ => assert!((cost - 50.0 * 0.192).abs() < 1e-6, "{run}"),
        }
        assert_eq!(run["underprovisioned_minutes"], 0.0, "{run}");
    }
    // With no floor, nothing at all.
    let scenario = dir.path().join("no-floor.toml");
    let text = std::fs::read_to_string(&example).unwrap();
    assert!(text.contains("\nmin_instances = 1\n"));
    std::fs::write(
        &scenario,
        text.replace("\nmin_instances = 1\n", "\nmin_instances = 0\n"),
    )
    .unwrap();
    let out = simulate(&trace, &scenario, &["--policy", "all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.to_lowercase().contains("nan") && !text.contains("inf"),
        "{text}"
    );
    assert!(text.contains("predictive costs $0.00\n"), "{text}");
    assert!(
        text.contains("predictive costs $0.00, short 0 min"),
        "{text}"
    );
    let runs = report(&trace, &scenario, &["--policy", "all"]);
    for run in runs.as_array().unwrap() {
        assert_eq!(run["cost_total"], 0.0, "{run}");
        assert_eq!(run["underprovisioned_minutes"], 0.0, "{run}");
    }
}

#[test]
fn what_the_service_had_is_priced_beside_the_policies() {
    let (dir, scenario, _) = example_and_trace();
    // Demand with a daily cycle, and what the service had: 60 vCPU, 100 from noon to
    // two, 35 (short of the peaks) on the last day.
    let trace = dir.path().join("had.csv");
    let mut s = String::from("timestamp,cpu,actual_cpu\n");
    let mut had: Vec<(f64, f64)> = Vec::new();
    for i in 0..4 * 288 {
        let a = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
        let cpu = 30.0 - 20.0 * a.cos();
        let actual = match (i / 288, i % 288) {
            (3, _) => 35.0,
            (_, 144..=167) => 100.0,
            _ => 60.0,
        };
        had.push((cpu, actual));
        s.push_str(&format!("{},{cpu:.3},{actual}\n", 1_700_000_000 + i * 300));
    }
    std::fs::write(&trace, s).unwrap();
    let run = |extra: &[&str]| report(&trace, &scenario, extra);
    let all = run(&["--policy", "all"]);
    let runs = all.as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "oracle",
            "predictive",
            "spec-baseline",
            "reactive",
            "static",
            "as-run",
            "reactive"
        ]
    );
    // Priced as instances of the scenario's one tier (4 vCPU at $0.192 an hour, billed
    // by the second), short wherever demand was above what those served.
    let want: f64 = had
        .iter()
        .map(|(_, a)| (a / 4.0).ceil() * 0.192 * 5.0 / 60.0)
        .sum();
    // (35 vCPU is nine instances: 36.)
    let short = had
        .iter()
        .filter(|(c, a)| *c > (a / 4.0).ceil() * 4.0)
        .count() as f64
        * 5.0;
    let ran = &runs[5];
    assert!(
        (ran["cost_total"].as_f64().unwrap() - want).abs() < 1e-6,
        "{ran} for {want}"
    );
    assert_eq!(ran["underprovisioned_minutes"].as_f64().unwrap(), short);
    assert!(short > 0.0);
    assert_eq!(run(&["--policy", "as-run"]), *ran);
    // The table says what predictive would have done against it.
    let out = simulate(&trace, &scenario, &["--policy", "all"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Against what the service had"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(&format!("as-run, ${want:.2}, short {short:.0} min")),
        "{line}"
    );
    // So does the comparison page.
    let page = dir.path().join("compare.html");
    let out = simulate(
        &trace,
        &scenario,
        &["--policy", "all", "--report", page.to_str().unwrap()],
    );
    assert!(out.status.success());
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains(">as-run</td>"), "{html}");
    assert!(html.contains("Against what the service had"), "{html}");
    // Without the column there is nothing to price, and a negative capacity is refused.
    let (_d2, _, plain) = example_and_trace();
    let out = simulate(&plain, &scenario, &["--policy", "as-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("actual_cpu"));
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "timestamp,cpu,actual_cpu\n1700000000,1,2\n1700000300,1,-2\n",
    )
    .unwrap();
    let out = simulate(&bad, &scenario, &["--policy", "as-run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("capacity must not be negative (actual_cpu is -2 at 1700000300)"),
        "{err}"
    );
}

#[test]
fn what_the_service_had_of_memory_is_priced_too() {
    let (dir, scenario, _) = example_and_trace();
    // A memory-heavy service: 10 vCPU and 200 GiB of demand, with requests of 12 vCPU
    // and 240 GiB, 150 GiB on the second day. The one tier is 4 vCPU and 16 GiB.
    let trace = dir.path().join("had.csv");
    let mut s = String::from("timestamp,cpu,memory,actual_cpu,actual_memory\n");
    let mut want = 0.0;
    for i in 0..2 * 288 {
        let mem = if i < 288 { 240.0 } else { 150.0 };
        // Instances for whichever binds: 3 for the CPU, 15 or 10 for memory.
        let n = f64::max((12.0f64 / 4.0).ceil(), (mem / 16.0f64).ceil());
        want += n * 0.192 * 5.0 / 60.0;
        s.push_str(&format!("{},10,200,12,{mem}\n", 1_700_000_000 + i * 300));
    }
    std::fs::write(&trace, s).unwrap();
    let ran = report(&trace, &scenario, &["--policy", "as-run"]);
    assert!(
        (ran["cost_total"].as_f64().unwrap() - want).abs() < 1e-6,
        "{ran} for {want}"
    );
    // 10 instances hold 160 GiB of the 200 the second day asks for.
    assert_eq!(
        ran["underprovisioned_minutes"].as_f64().unwrap(),
        24.0 * 60.0
    );
    // Without what it had of memory, its CPU requests alone say 3 instances: short of
    // memory all along, which is why the column matters.
    let cpu_only = dir.path().join("cpu-only.csv");
    let text = std::fs::read_to_string(&trace).unwrap();
    let cut: String = text
        .lines()
        .map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n")
        .collect();
    std::fs::write(&cpu_only, cut).unwrap();
    let ran = report(&cpu_only, &scenario, &["--policy", "as-run"]);
    assert_eq!(
        ran["underprovisioned_minutes"].as_f64().unwrap(),
        48.0 * 60.0
    );
}

#[test]
fn the_daemons_own_configuration_stands_in_for_a_scenario() {
    let (dir, _, trace) = example_and_trace();
    // One tier of its own and two workloads: the simulation uses that tier.
    let config = dir.path().join("prescale.toml");
    std::fs::write(
        &config,
        "[[tiers]]\nname = \"general\"\nclass = \"standard\"\nvcpu = 2.0\nmemory_gib = 8.0\n\
         price_per_hour = 0.1\nperformance_factor = 1.0\nlead_time_s = 60\nmax_instances = 200\n\n\
         [[workloads]]\nname = \"web\"\ndemand = \"x\"\n\n\
         [[workloads]]\nname = \"db\"\ndemand = \"y\"\nclass = \"stateful\"\n\n\
         [fleet]\nbudget_per_hour = 50.0\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["simulate", "--trace", trace.to_str().unwrap()];
        args.extend(["--config", config.to_str().unwrap()]);
        args.extend_from_slice(extra);
        prescale(&args)
    };
    let out = run(&[
        "--workload",
        "db",
        "--policy",
        "reactive",
        "--format",
        "json",
    ]);
    // The daemon would plan db's tier as one pool with web's: the replay has db alone.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("note: db replayed alone in its tiers: the daemon shares general with the configuration's other workloads"),
        "{err}"
    );
    // Nor a fleet budget.
    assert!(
        err.contains(
            "note: db replayed under its own budgets only: the daemon also shares [fleet]'s budget"
        ),
        "{err}"
    );
    let r = parsed(out);
    let tiers: Vec<&String> = r["cost_per_tier"].as_object().unwrap().keys().collect();
    assert_eq!(tiers, ["general"], "{r}");
    assert!(r["cost_total"].as_f64().unwrap() > 0.0, "{r}");
    // Which workload must be said when there are several, and must be one of them.
    for (extra, says) in [
        (&[][..], "name one with --workload"),
        (&["--workload", "cache"][..], "no workload \"cache\""),
    ] {
        let out = run(extra);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says) && err.contains("web, db"), "{err}");
    }
}

#[test]
fn several_workloads_replay_together_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    // One tier of 20 instances for both, and a fleet budget that pays for 10.
    let config = dir.path().join("prescale.toml");
    std::fs::write(
        &config,
        "[[tiers]]\nname = \"general\"\nclass = \"standard\"\nvcpu = 4.0\n\
         price_per_hour = 0.1\nperformance_factor = 1.0\nlead_time_s = 60\nmax_instances = 20\n\n\
         [[workloads]]\nname = \"web\"\ndemand = \"x\"\nstep_s = 300\nmodel = \"baseline\"\n\n\
         [[workloads]]\nname = \"db\"\ndemand = \"y\"\nstep_s = 300\nmodel = \"baseline\"\npriority = 5\n\n\
         [fleet]\nbudget_per_hour = 1.0\n",
    )
    .unwrap();
    // A day each of a daily cycle from 10 to 30 vCPU.
    let trace = |name: &str| {
        let path = dir.path().join(format!("{name}.csv"));
        let mut s = String::from("timestamp,cpu\n");
        for i in 0..288 {
            let a = i as f64 / 288.0 * std::f64::consts::TAU;
            s.push_str(&format!(
                "{},{:.3}\n",
                1_767_571_200 + i * 300,
                20.0 - 10.0 * a.cos()
            ));
        }
        std::fs::write(&path, s).unwrap();
        format!("{name}={}", path.display())
    };
    let (web, db) = (trace("web"), trace("db"));
    let run = |extra: &[&str]| {
        let mut args = vec!["simulate", "--config", config.to_str().unwrap()];
        args.extend(["--pass-s", "120"]);
        args.extend_from_slice(extra);
        prescale(&args)
    };
    let out = run(&["--fleet-trace", &web, "--fleet-trace", &db]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("peaks at"));
    let table = String::from_utf8_lossy(&out.stdout);
    for says in [
        "2 workload(s) replayed together through the engine from 2026-01-05T00:00:00Z: 24.0 h, a pass every 120 s, seed 1",
        "fleet budget $1.00/h in force at the end: held above the cap in force ",
        "tiers at their max_instances: never",
        "alone, each workload has every tier to itself and no fleet budget",
    ] {
        assert!(table.contains(says), "{says}: {table}");
    }
    for row in ["web ", "db ", "all "] {
        assert!(table.lines().any(|l| l.starts_with(row)), "{row}: {table}");
    }
    let page = dir.path().join("fleet.html");
    let timeline = dir.path().join("fleet.csv");
    let out = run(&[
        "--fleet-trace",
        &web,
        "--fleet-trace",
        &db,
        "--format",
        "json",
        "--report",
        page.to_str().unwrap(),
        "--timeline",
        timeline.to_str().unwrap(),
    ]);
    let r = parsed(out);
    // The page: the table, each workload's demand and capacity, the fleet's cost by
    // workload against its budget (dashed), the pool against its maximum.
    let html = std::fs::read_to_string(&page).unwrap();
    for says in [
        "<h2>web: demand and ready capacity, vCPU</h2>",
        "<h2>db: demand and ready capacity, vCPU</h2>",
        "<h2>The fleet's cost by workload, $/h</h2>",
        "fleet budget in force",
        "stroke-dasharray",
        "<h2>general: the pool</h2>",
        "2 workload(s) replayed together through the engine",
    ] {
        assert!(html.contains(says), "{says}");
    }
    assert_eq!(html.matches("<svg").count(), 4);
    // The timeline: a row a pass and workload (720 passes of 120 s in the day), their
    // costs summing to the report's.
    let csv = std::fs::read_to_string(&timeline).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,workload,demand_cpu,ready_cpu_general,cost_per_hour,short_minutes,fleet_cap_per_hour,fleet_instances_general")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2 * 720);
    assert_eq!(rows[0][0], "1767571200");
    assert_eq!((rows[0][1], rows[1][1]), ("web", "db"));
    assert!(rows.iter().all(|r| r[6] == "1.0000"), "{:?}", rows[0]);
    for w in ["web", "db"] {
        let cost: f64 = rows
            .iter()
            .filter(|r| r[1] == w)
            .map(|r| r[4].parse::<f64>().unwrap() * 2.0 / 60.0)
            .sum();
        let want = r["replay"]["workloads"][w]["cost_total"].as_f64().unwrap();
        assert!((cost - want).abs() < 0.01, "{w}: {cost} against {want}");
        let short: f64 = rows
            .iter()
            .filter(|r| r[1] == w)
            .map(|r| r[5].parse::<f64>().unwrap())
            .sum();
        let want = r["replay"]["workloads"][w]["underprovisioned_minutes"]
            .as_f64()
            .unwrap();
        assert!((short - want).abs() < 1e-6, "{w}: {short} against {want}");
    }
    let replay = &r["replay"];
    // About 10 instances of $0.10/h each at the peaks would cost $2/h for both: the
    // budget binds and web, of lower priority, is cut the longer.
    let web_r = &replay["workloads"]["web"];
    let db_r = &replay["workloads"]["db"];
    assert!(
        web_r["fleet_cut_minutes"].as_f64().unwrap() > 60.0,
        "{replay}"
    );
    assert!(
        web_r["underprovisioned_minutes"].as_f64().unwrap()
            > db_r["underprovisioned_minutes"].as_f64().unwrap(),
        "{replay}"
    );
    assert!(
        web_r["fleet_cut_minutes"].as_f64().unwrap() > db_r["fleet_cut_minutes"].as_f64().unwrap(),
        "{replay}"
    );
    assert!(
        replay["fleet_peak_cost_per_hour"].as_f64().unwrap() <= 1.0 + 1e-9,
        "{replay}"
    );
    assert_eq!(replay["fleet_cap_per_hour"].as_f64(), Some(1.0));
    assert_eq!(
        replay["tier_full_minutes"]["general"].as_f64(),
        Some(0.0),
        "{replay}"
    );
    // Each alone over the same day, under HPA and under prescale: no fleet budget, so
    // web is short less than it is together.
    for w in ["web", "db"] {
        let alone = &r["alone"][w];
        assert_eq!(alone["hpa"]["hours"].as_f64(), Some(24.0), "{r}");
        assert!(alone["hpa"]["cost_total"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(alone["hpa_target"].as_f64(), Some(0.7), "{r}");
        assert!(
            alone["predictive"]["cost_total"].as_f64().unwrap() > 0.0,
            "{r}"
        );
    }
    assert!(
        r["alone"]["web"]["predictive"]["underprovisioned_minutes"]
            .as_f64()
            .unwrap()
            < web_r["underprovisioned_minutes"].as_f64().unwrap(),
        "{r}"
    );
    // A workload left out is said; bad arguments say what to fix.
    let out = run(&["--fleet-trace", &web]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("note: left out of the replay (no trace): db; what they would hold of the pools and the fleet budget is not counted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (extra, says) in [
        (
            vec!["--fleet-trace", "web"],
            "--fleet-trace web: give NAME=FILE",
        ),
        (
            vec!["--fleet-trace", web.as_str(), "--fleet-trace", web.as_str()],
            "workload web has two traces",
        ),
        (
            vec!["--fleet-trace", &web.replace("web=", "cache=")],
            "no workload cache in the configuration (it has web, db)",
        ),
        (
            vec!["--fleet-trace", web.as_str(), "--policy", "all"],
            "--policy all does not apply",
        ),
        (
            vec![
                "--workload",
                "web",
                "--trace",
                web.trim_start_matches("web="),
            ],
            "--pass-s paces the engine's passes in a fleet replay",
        ),
        (
            vec![
                "--fleet-trace",
                web.as_str(),
                "--timeline",
                web.trim_start_matches("web="),
            ],
            "is a file the replay reads: it would be overwritten",
        ),
    ] {
        let out = run(&extra);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{says}: {err}");
    }
    // A workload's demand in the wrong unit (a thousand times the day above) is
    // replayed, with a warning naming it.
    let file = db.trim_start_matches("db=");
    let text = std::fs::read_to_string(file).unwrap();
    let scaled: String = text
        .lines()
        .map(|l| match l.split_once(',') {
            Some((t, v)) if t != "timestamp" => {
                format!("{t},{}\n", v.parse::<f64>().unwrap() * 1000.0)
            }
            _ => format!("{l}\n"),
        })
        .collect();
    std::fs::write(file, scaled).unwrap();
    let out = run(&["--fleet-trace", &web, "--fleet-trace", &db]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: cpu demand peaks at 3.0000e4 vCPU, 375 times what the tiers serving db hold at their max_instances (80 vCPU)"),
        "{err}"
    );
    assert!(!err.contains("serving web"), "{err}");
}

/// The cells of one CSV line, quotes (and doubled quotes within them) taken off.
fn split_csv(line: &str) -> Vec<String> {
    let (mut cells, mut cell, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => cells.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    cells.push(cell);
    cells
}
