//! `prescale tune` against a running daemon (the demo's, with two days stored): it
//! replays the demand the daemon stored for the workload, with each safeguard turned
//! the other way from the configuration in force, and writes its advice as the
//! configuration takes it.

mod common;

use common::{bin, get, samples, Demo};
use serde_json::Value;

/// `prescale tune ARGS` against `server`: (exit code, stdout, stderr).
fn tune(server: &str, args: &[&str]) -> (i32, String, String) {
    let out = bin()
        .arg("tune")
        .args(args)
        .env("PRESCALE_SERVER", server)
        .env_remove("PRESCALE_TOKEN_FILE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tune_replays_a_workloads_stored_demand_and_advises_in_its_configuration() {
    let demo = Demo::run(2, 11);
    let server = format!("http://{}", demo.addr);
    // The configuration in force, as the daemon gives it.
    let (_, body) = get(demo.addr, "/api/v1/status/config").unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let cfg: toml::Table = v["data"]["toml"].as_str().unwrap().parse().unwrap();
    let web = cfg["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"].as_str() == Some("web"))
        .unwrap()
        .clone();
    let int = |k: &str| web[k].as_integer().unwrap();
    let other = |now: i64, on: i64| if now > 0 { 0 } else { on };
    let surge = web["surge_extra"].as_float().unwrap();
    let expected = [
        (
            "seasonal_floor",
            (!web["seasonal_floor"].as_bool().unwrap()).to_string(),
        ),
        (
            "scale_down_window_s",
            other(int("scale_down_window_s"), 3600).to_string(),
        ),
        (
            "scale_down_delay_s",
            other(int("scale_down_delay_s"), 300).to_string(),
        ),
        (
            "surge_extra",
            if surge > 0.0 { "0" } else { "1" }.to_string(),
        ),
    ];

    let (code, out, err) = tune(&server, &["web", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    // Each safeguard turned the other way, alone.
    let runs = v["runs"].as_array().unwrap();
    let tried: Vec<(&str, String)> = runs
        .iter()
        .map(|r| {
            (
                r["setting"].as_str().unwrap(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        tried,
        expected
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect::<Vec<_>>()
    );
    assert!(runs.iter().all(|r| r["scenario_value"] == false), "{v}");
    // The replay is the demand the daemon stored, a value at each of the workload's
    // steps over the last week (the default) to the last complete step before its last
    // pass: the demo stores a week of history before its own days.
    let step_s = int("step_s") as f64;
    let (_, body) = get(demo.addr, "/api/v1/workloads").unwrap();
    let last = serde_json::from_str::<Value>(&body).unwrap()["data"]["last_tick"]
        .as_f64()
        .unwrap()
        / 1000.0;
    let end = (last / step_s).floor() * step_s - step_s;
    let stored = samples(demo.addr, r#"prescale_demand{workload="web"}"#);
    assert!(stored[0].0 <= end - 7.0 * 86_400.0, "{:?}", stored[0]);
    let week = 7 * 86_400 / step_s as u64 + 1;
    assert_eq!(v["oracle"]["steps"].as_u64(), Some(week), "{err}");
    assert!(
        err.contains(&format!("web: {week} steps of 300 s (168.1 h)")),
        "{err}"
    );
    // Whether a run dominates the workload's own, and if so the cheapest that does, with
    // the settings that make it as the workload's entry in the configuration.
    let point = |r: &Value| {
        (
            r["cost_total"].as_f64().unwrap(),
            r["underprovisioned_minutes"].as_f64().unwrap(),
        )
    };
    let own = point(&v["scenario"]);
    let better = runs
        .iter()
        .filter(|r| {
            let (c, m) = point(r);
            c <= own.0 && m <= own.1 && (c < own.0 || m < own.1)
        })
        .min_by(|a, b| point(a).0.total_cmp(&point(b).0));
    let advice = &v["scenario_dominated_by"];
    match better {
        Some(r) => {
            let (key, value) = (r["setting"].as_str().unwrap(), r["value"].as_str().unwrap());
            assert_eq!(advice["run"], format!("{key} = {value}"), "{v}");
            let toml = advice["toml"].as_str().unwrap();
            assert_eq!(
                toml,
                format!("[[workloads]]\nname = \"web\"\n{key} = {value}\n")
            );
            let t: toml::Table = toml.parse().unwrap();
            assert_eq!(t["workloads"][0]["name"].as_str(), Some("web"));
            assert!(t["workloads"][0].get(key).is_some());
            // Checked on each half of the week alone too.
            assert_eq!(advice["halves"].as_array().map(Vec::len), Some(2), "{v}");
        }
        None => assert!(advice.is_null(), "{v}"),
    }

    // --write: the advice into a team's copy of the configuration in force, where it
    // held on each half of the week (else refused, and with --force written anyway).
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("prescale.toml");
    let (_, body) = get(demo.addr, "/api/v1/status/config").unwrap();
    let in_force = serde_json::from_str::<Value>(&body).unwrap()["data"]["toml"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = format!("# our team's configuration\n{in_force}");
    std::fs::write(&file, &kept).unwrap();
    let written = file.to_str().unwrap();
    let (code, _, err) = tune(&server, &["web", "--write", written]);
    let holds = advice["halves"]
        .as_array()
        .is_some_and(|h| !h.is_empty() && h.iter().all(|x| x["holds"] == true));
    let read = || std::fs::read_to_string(&file).unwrap();
    match better {
        None => {
            assert_eq!(code, 0, "{err}");
            assert!(
                err.contains(&format!(
                    "nothing written to {written}: no run dominates web's own settings"
                )),
                "{err}"
            );
            assert_eq!(read(), kept);
        }
        Some(r) => {
            let (key, value) = (r["setting"].as_str().unwrap(), r["value"].as_str().unwrap());
            let err = if holds {
                assert_eq!(code, 0, "{err}");
                err
            } else {
                assert_eq!(code, 2, "{err}");
                assert!(err.contains("did not hold on each half"), "{err}");
                assert_eq!(read(), kept);
                let (code, _, err) = tune(&server, &["web", "--write", written, "--force"]);
                assert_eq!(code, 0, "{err}");
                err
            };
            assert!(
                err.contains(&format!(
                    "wrote to {written}:\n  [[workloads]] \"web\": {key} = {value} (was "
                )),
                "{err}"
            );
            assert!(err.contains("/-/reload"), "{err}");
            let now = read();
            assert!(now.starts_with("# our team's configuration\n"), "{now}");
            let cfg = prescale_core::config::Config::parse(&now, "written").unwrap();
            let scenario =
                prescale_orchestrate::simulate::Scenario::from_config(&cfg, Some("web")).unwrap();
            let advised = scenario.with_settings(&[(key, value)]).unwrap();
            assert_eq!(scenario.setting(key), advised.setting(key), "{now}");
        }
    }

    // The table says whose settings they are, and what to do.
    let page = tempfile::tempdir().unwrap();
    let html = page.path().join("tune.html");
    let (code, out, err) = tune(&server, &["web", "--report", html.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // And so does the page, with the same verdict.
    let html = std::fs::read_to_string(&html).unwrap();
    assert!(html.contains("* the workload's own value."), "{html}");
    assert!(
        html.contains(if better.is_some() {
            "<pre>[[workloads]]\nname = &quot;web&quot;\n"
        } else {
            "No run dominates the workload's own settings"
        }),
        "{html}"
    );
    assert!(out.contains("(* the workload's own)"), "{out}");
    assert!(out.contains("\npredictive (as configured) "), "{out}");
    if better.is_some() {
        assert!(
            out.contains("On this trace the workload's own settings are dominated: ")
                && (out.contains("It does on each half of the trace replayed alone too (")
                    || out.contains("But replayed on each half of the trace alone it does not ("))
                && out.contains(
                    "To use it, set in the configuration (in the workload's own [[workloads]] entry):\n  [[workloads]]\n  name = \"web\"\n"
                ),
            "{out}"
        );
    } else {
        assert!(
            out.contains("No run dominates the workload's own settings on this trace"),
            "{out}"
        );
    }

    // Other settings to try, as `simulate --sweep` takes them.
    let (code, out, err) = tune(
        &server,
        &[
            "web",
            "--sweep",
            "sla_quantile=0.9,0.99",
            "--format",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let values: Vec<&str> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["0.9", "0.99"]);
    // Over the last day only: a day of steps.
    let (code, _, err) = tune(
        &server,
        &["web", "--days", "1", "--sweep", "sla_quantile=0.9"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "web: {} steps of 300 s",
            86_400 / step_s as u64 + 1
        )),
        "{err}"
    );

    // A workload's other dimensions are replayed with its CPU, as the daemon stored
    // them: the demo's batch plans memory too, web only its CPU.
    let (code, out, err) = tune(&server, &["batch", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let batch: Value = serde_json::from_str(&out).unwrap();
    let dims = |v: &Value| -> Vec<String> {
        let mut d: Vec<String> = v["scenario"]["unserved"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        d.sort();
        d
    };
    assert_eq!(dims(&batch), ["cpu", "memory"]);
    assert_eq!(dims(&v), ["cpu"]);

    // A workload the daemon does not have, and a daemon that is not there.
    let (code, _, err) = tune(&server, &["nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no workload \"nope\" in the daemon's configuration; it has web, batch"),
        "{err}"
    );
    let (code, _, err) = tune("http://127.0.0.1:9", &["web"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot reach prescale at http://127.0.0.1:9"),
        "{err}"
    );

    // The daemon's own daily tuning (the demo's, once its summary is out), as
    // `prescale status --wide` says it: the finding and the lines to set.
    demo.tuned();
    let out = bin()
        .args(["status", "--wide"])
        .env("PRESCALE_SERVER", &server)
        .env_remove("PRESCALE_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    for w in ["web", "batch"] {
        let (_, body) = get(demo.addr, &format!("/api/v1/workloads/{w}/tune")).unwrap();
        let t: Value = serde_json::from_str(&body).unwrap();
        let t = &t["data"];
        let mut line = format!("\n{w}: tune: {}", t["summary"].as_str().unwrap());
        if let Some(toml) = t["tuning"]["advice"]["toml"].as_str() {
            let lines: Vec<&str> = toml.trim().lines().collect();
            assert_eq!(lines[..2], ["[[workloads]]", &format!("name = \"{w}\"")]);
            line += &format!(
                " To use it, set in its [[workloads]] entry: {}",
                lines[2..].join("; ")
            );
            // Where it held on each half, the command that writes it.
            if t["tuning"]["advice"]["holds_on_each_half"] == true {
                line += &format!(
                    " (`prescale tune {w} --write prescale.toml` writes it into the file)"
                );
            }
        }
        assert!(said.contains(&format!("{line}\n")), "{line}\n{said}");
    }
}

/// `[control] tune_apply`: the daemon writes an advice that held on each half into its
/// configuration file, comments kept, reloads it, and says so in the tuning it serves
/// and the decision log; the workload's settings in force are the advised ones.
#[test]
fn with_tune_apply_the_daemon_writes_an_advice_that_held_into_its_file_and_reloads() {
    use prescale_store::{Durability, Store};
    let dir = tempfile::tempdir().unwrap();
    // Two days of a smooth daily cycle at five-minute steps, up to now, stored as the
    // daemon stores the demand it planned for: the scale-down window holds each day's
    // peak for nothing there.
    let step = 300_000i64;
    let now = prescale_core::now_ms() / step * step;
    {
        let store = Store::open(&dir.path().join("data"), Durability::Sync).unwrap();
        let key = prescale_orchestrate::engine::demand_key("host", prescale_core::Dim::Cpu);
        let samples: Vec<prescale_core::Sample> = (0..576)
            .map(|i| prescale_core::Sample {
                ts: now - (576 - i) * step,
                value: 60.0 - 40.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).cos(),
            })
            .collect();
        store.append(&key, &samples).unwrap();
    }
    let config = common::default_config()
        .replace("step_s = 60", "step_s = 300")
        .replace("tune_apply = false", "tune_apply = true");
    assert!(config.contains("tune_apply = true"));
    let daemon = common::Daemon::start(dir.path(), &config);
    let addr = daemon.addr;
    let applied = || {
        get(addr, "/api/v1/workloads/host/tune").is_some_and(|(c, b)| {
            c == 200 && !serde_json::from_str::<Value>(&b).unwrap()["data"]["applied"].is_null()
        })
    };
    common::wait_for(applied, "the tuning applied", &|| daemon.logs());
    let (_, body) = get(addr, "/api/v1/workloads/host/tune").unwrap();
    let t: Value = serde_json::from_str(&body).unwrap();
    let a = &t["data"]["applied"];
    assert_eq!(a["refused"], Value::Null, "{body}\n{}", daemon.logs());
    assert_eq!(
        a["advice"]["settings"],
        serde_json::json!({"scale_down_window_s": "0"}),
        "{body}"
    );
    assert_eq!(a["advice"]["holds_on_each_half"], true, "{body}");
    let file = dir.path().join("p.toml");
    assert_eq!(a["file"], file.to_str().unwrap(), "{body}");
    assert_eq!(
        a["written"],
        serde_json::json!(["[[workloads]] \"host\": scale_down_window_s = 0 (was 7200)"]),
        "{body}"
    );
    // The file: the advised value, and nothing else changed (its comments kept).
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        written,
        config.replacen("scale_down_window_s = 7200", "scale_down_window_s = 0", 1)
    );
    // Reloaded: in force, said in the decision log.
    let (_, body) = get(addr, "/api/v1/status/config").unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let cfg: toml::Table = v["data"]["toml"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        cfg["workloads"][0]["scale_down_window_s"].as_integer(),
        Some(0),
        "{body}"
    );
    let (_, body) = get(
        addr,
        "/api/v1/workloads/host/decisions?kind=config&limit=100",
    )
    .unwrap();
    let reasons: Vec<String> = serde_json::from_str::<Value>(&body).unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["reason"].as_str().map(String::from))
        .collect();
    let said = format!(
        "tune applied (control.tune_apply): wrote [[workloads]] \"host\": scale_down_window_s = 0 (was 7200) into {} and reloaded. Replayed over its last",
        file.display()
    );
    assert!(
        reasons.iter().any(|r| r.starts_with(&said)),
        "{said}\n{reasons:#?}"
    );
    // Kept as a series, on /metrics: not refused.
    let (_, metrics) = get(addr, "/metrics").unwrap();
    assert!(
        metrics.contains("\nprescale_tune_apply_refused{workload=\"host\"} 0\n"),
        "{metrics}"
    );
    // `prescale status --wide` and the dashboard say it too.
    let wrote = format!(
        "(control.tune_apply): wrote [[workloads]] \"host\": scale_down_window_s = 0 (was 7200) into {} and reloaded",
        file.display()
    );
    let at = prescale_core::format_ts(a["at"].as_i64().unwrap());
    let out = bin()
        .args(["status", "--wide"])
        .env("PRESCALE_SERVER", format!("http://{addr}"))
        .env_remove("PRESCALE_TOKEN_FILE")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout);
    let line = format!("\nhost: tune: applied {at} {wrote}\n");
    assert!(status.contains(&line), "{line}\n{status}");
    if let Some(browser) = common::browser() {
        let html = common::rendered(&browser, &format!("http://{addr}/"));
        // As the page's fmtTime writes a time: to the minute, a space for the T.
        let minute = format!("{}Z", &at[..16]).replace('T', " ");
        let line = format!(
            "<div class=\"tune tune-applied\" title=\"GET /api/v1/workloads/host/tune (applied); the decision log has it too\">applied {minute} {wrote}</div>"
        );
        assert!(html.contains(&line), "{line}\n{html}");
    }
}
