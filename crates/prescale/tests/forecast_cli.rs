//! The `prescale forecast` and `backtest` command-line contract.

use std::path::Path;
use std::process::{Command, Output};

fn prescale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(args)
        .output()
        .expect("prescale runs")
}

/// A 5-minute series with a daily cycle and deterministic noise.
/// `prescale forecast --input FILE --horizon H` and more arguments.
fn forecast(input: &Path, horizon: usize, extra: &[&str]) -> Output {
    let h = horizon.to_string();
    let mut args = vec![
        "forecast",
        "--input",
        input.to_str().unwrap(),
        "--horizon",
        &h,
    ];
    args.extend_from_slice(extra);
    prescale(&args)
}

fn write_series(path: &Path, n: usize, shuffle_and_dup: bool) {
    let mut rows: Vec<String> = (0..n)
        .map(|i| {
            let day = ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin();
            let noise = ((i * 7919) % 97) as f64 / 97.0 - 0.5;
            format!(
                "{},{}",
                1_700_000_100 + i as i64 * 300,
                50.0 + 20.0 * day + 3.0 * noise
            )
        })
        .collect();
    if shuffle_and_dup {
        rows.swap(10, 20);
        let dup = rows[30].clone();
        rows.insert(31, dup);
    }
    std::fs::write(path, format!("timestamp,value\n{}\n", rows.join("\n"))).unwrap();
}

#[test]
fn csv_contract_columns_named_as_given_and_never_crossing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.csv");
    write_series(&input, 288 * 4, false);
    let out = forecast(&input, 24, &["--quantiles", "0.05,0.50,0.95,0.1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap(), "timestamp,q0.05,q0.1,q0.50,q0.95");
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse::<f64>().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 24);
    let last_input = 1_700_000_100 + (288 * 4 - 1) as i64 * 300;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0] as i64, last_input + 300 * (i as i64 + 1));
        assert!(
            r[1..].windows(2).all(|w| w[0] <= w[1]),
            "crossing at row {i}: {r:?}"
        );
        assert!(r[1..].iter().all(|v| v.is_finite()));
    }
    // The daily cycle continues: the median follows the sine within the noise.
    for (i, r) in rows.iter().enumerate() {
        let k = 288 * 4 + i;
        let truth = 50.0 + 20.0 * ((k % 288) as f64 / 288.0 * std::f64::consts::TAU).sin();
        assert!(
            (r[3] - truth).abs() < 4.0,
            "step {i}: median {} vs {truth}",
            r[3]
        );
    }
}

#[test]
fn json_says_which_model_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.csv");
    write_series(&input, 288 * 3, true);
    let out = forecast(&input, 12, &["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sorted"), "warns about unsorted rows: {err}");
    assert!(
        err.contains("repeated timestamp"),
        "warns about duplicates: {err}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["model"].as_str().unwrap().ends_with("+conformal"),
        "{}",
        v["model"]
    );
    assert!(v["selection"]["reason"]
        .as_str()
        .unwrap()
        .contains("lowest"));
    assert!(v["selection"]["ranking"].as_array().unwrap().len() >= 5);
    assert_eq!(v["forecast"].as_array().unwrap().len(), 12);
    assert!(v["forecast"][0]["q0.5"].is_number());
}

/// `--report` draws the forecast it prints: a band per pair of levels, the model and
/// why, a row per candidate; an unwritable path is a usage error.
#[test]
fn report_draws_the_forecast_and_lists_the_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.csv");
    write_series(&input, 288 * 3, false);
    let page = dir.path().join("fan.html");
    let levels = ["--quantiles", "0.05,0.25,0.5,0.75,0.95", "--format", "json"];
    let mut args = levels.to_vec();
    args.extend(["--report", page.to_str().unwrap()]);
    let out = forecast(&input, 36, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    let escaped = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let model = v["model"].as_str().unwrap();
    assert!(
        html.contains(&format!("Model: <b>{}</b>", escaped(model))),
        "{model}"
    );
    assert!(html.contains(&escaped(v["selection"]["reason"].as_str().unwrap())));
    assert_eq!(html.matches("<path class=\"band\"").count(), 2);
    assert!(html.contains("data-levels=\"0.05 0.95\""));
    assert!(html.contains("data-levels=\"0.25 0.75\""));
    assert_eq!(html.matches("<path class=\"median\"").count(), 1);
    // The history drawn: 3 horizons of it, one point each.
    let history = html.split("class=\"history\" d=\"").nth(1).unwrap();
    let history = &history[..history.find('"').unwrap()];
    assert_eq!(history.matches(['M', 'L']).count(), 108);
    // The median is the forecast's own: 36 steps after the last observation.
    let median = html.split("class=\"median\" d=\"").nth(1).unwrap();
    let median = &median[..median.find('"').unwrap()];
    assert_eq!(median.matches(['M', 'L']).count(), 37);
    let ranking = v["selection"]["ranking"].as_array().unwrap();
    assert!(ranking.len() >= 5);
    for r in ranking {
        let name = escaped(r["model"].as_str().unwrap());
        assert!(html.contains(&format!("<td>{name}</td>")), "{name}");
    }
    assert_eq!(html.matches("class=\"winner\"").count(), 1, "{model}");
    assert!(html.contains("864 points every 5 min"));
    // Without a median level there is no median line, and the band still opens.
    let out = forecast(
        &input,
        6,
        &["--quantiles", "0.1,0.9", "--report", page.to_str().unwrap()],
    );
    assert!(out.status.success());
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<path class=\"band\"").count(), 1);
    assert!(!html.contains("class=\"median\""));
    let out = forecast(
        &input,
        6,
        &[
            "--report",
            dir.path().join("no/such/dir/x.html").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot write the report"), "{err}");
}

#[test]
fn each_model_runs_and_bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.csv");
    write_series(&input, 288 * 3, false);
    for m in [
        "naive", "snaive", "ets", "mstl", "arima", "theta", "ensemble",
    ] {
        let out = forecast(&input, 6, &["--model", m]);
        assert!(
            out.status.success(),
            "{m}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).lines().count(),
            7,
            "{m}"
        );
    }
    let bad = dir.path().join("bad.csv");
    let cases = [
        ("1,2\n3,4\n", "header"),
        ("timestamp,value\n0,1\n300,x\n", "not a number"),
        ("timestamp,value\n0,1\n300,2\n600,3\n", "too few"),
    ];
    // Values whose squares overflow: the error says to scale them down.
    let huge: String = (0..300)
        .map(|i| format!("{},{}e200\n", i * 300, 1 + i % 5))
        .collect();
    let huge = format!("timestamp,value\n{huge}");
    let cases = cases.into_iter().chain([(
        huge.as_str(),
        "the series reaches 5e200, too large for the models' arithmetic: scale it down",
    )]);
    for (text, expect) in cases {
        std::fs::write(&bad, text).unwrap();
        let out = forecast(&bad, 12, &[]);
        assert_eq!(out.status.code(), Some(2), "{text:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{text:?}: {err}");
    }
    let out = forecast(&input, 6, &["--model", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let out = forecast(&input, 6, &["--quantiles", "0.5,2"]);
    assert_eq!(out.status.code(), Some(2));
    // A season of one step, a negative or NaN time budget: refused, saying why.
    for (args, expect) in [
        (["--season", "1"], "a season is at least 2 steps"),
        (["--time-budget", "-1"], "zero (no limit) or more"),
        (["--time-budget", "nan"], "zero (no limit) or more"),
    ] {
        let out = forecast(&input, 6, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn backtest_prints_a_row_per_series_and_model() {
    let dir = tempfile::tempdir().unwrap();
    write_series(&dir.path().join("a.csv"), 288 * 3, false);
    write_series(&dir.path().join("b.csv"), 288 * 3, false);
    let out = prescale(&[
        "backtest",
        "--input",
        dir.path().to_str().unwrap(),
        "--models",
        "naive,snaive",
        "--horizon",
        "12",
        "--folds",
        "2",
        "--format",
        "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{text}");
    // On a daily cycle, seasonal naive beats naive on MASE.
    let mase = |series: &str, model: &str| -> f64 {
        let r = rows
            .iter()
            .find(|r| r.starts_with(&format!("{series},{model},")))
            .unwrap();
        r.split(',').nth(4).unwrap().parse().unwrap()
    };
    assert!(mase("a", "snaive") < mase("a", "naive"), "{text}");
}

#[test]
fn shared_series_backtest_when_available() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/series/nab__realAWSCloudwatch-ec2_cpu_utilization_24ae8d.csv");
    if !path.exists() {
        eprintln!("skipping: {} is absent", path.display());
        return;
    }
    let out = prescale(&[
        "backtest",
        "--input",
        path.to_str().unwrap(),
        "--models",
        "snaive,auto",
        "--horizon",
        "12",
        "--folds",
        "2",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for row in v.as_array().unwrap() {
        let s = &row["scores"];
        assert!(s["mase"].as_f64().unwrap().is_finite(), "{row}");
        assert!((0.0..=1.0).contains(&s["coverage80"].as_f64().unwrap()));
    }
}

/// `--model lstm` in a build with the `lstm` feature: a calibrated forecast from the
/// network, near the daily cycle it was trained on.
#[cfg(feature = "lstm")]
#[test]
fn lstm_model_forecasts_the_daily_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("s.csv");
    let n = 288 * 4;
    write_series(&input, n, false);
    let out = forecast(
        &input,
        36,
        &[
            "--model",
            "lstm",
            "--quantiles",
            "0.1,0.5,0.9",
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["model"].as_str().unwrap().starts_with("lstm("),
        "{}",
        v["model"]
    );
    let rows = v["forecast"].as_array().unwrap();
    assert_eq!(rows.len(), 36);
    let mut abs_err = 0.0;
    for (k, r) in rows.iter().enumerate() {
        let (lo, mid, hi) = (
            r["q0.1"].as_f64().unwrap(),
            r["q0.5"].as_f64().unwrap(),
            r["q0.9"].as_f64().unwrap(),
        );
        assert!(lo <= mid && mid <= hi, "row {k} crosses: {lo} {mid} {hi}");
        let i = n + k;
        let day = ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin();
        abs_err += (mid - (50.0 + 20.0 * day)).abs();
    }
    // The cycle's amplitude is 20 and the noise +-1.5: a network that learnt the cycle
    // is within a few units on average.
    assert!(abs_err / 36.0 < 4.0, "mean abs error {}", abs_err / 36.0);
}
