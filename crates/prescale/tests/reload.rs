//! Reloading the daemon's configuration (SIGHUP, `POST /-/reload`) while it runs.

mod common;

use common::{fast_config, get, http, wait_for, Daemon};
use serde_json::Value;

fn json(addr: std::net::SocketAddr, path: &str) -> Value {
    let (code, body) = get(addr, path).expect("the daemon answers");
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn workloads(addr: std::net::SocketAddr) -> Vec<(String, Option<f64>)> {
    json(addr, "/api/v1/workloads")["data"]["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["demand"].as_f64(),
            )
        })
        .collect()
}

fn metric(addr: std::net::SocketAddr, line_start: &str) -> f64 {
    let (_, text) = get(addr, "/metrics").unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics"))
}

const WEB: &str = r#"
[[workloads]]
name = "web"
demand = 'host_cpu_usage_cores{mode="busy"} * 2'
step_s = 1
horizon_s = 600
"#;

#[test]
fn a_reload_adds_changes_and_removes_workloads_and_a_bad_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let base = fast_config();
    let d = Daemon::start(dir.path(), &base);
    let logs = || d.logs();
    wait_for(
        || get(d.addr, "/api/v1/workloads/host/plan").is_some_and(|r| r.0 == 200),
        "the first plan",
        &logs,
    );
    let reload = || http(d.addr, "POST", "/-/reload", &[], b"").expect("answered");
    let reload_as = |token: &str| {
        let auth = format!("Authorization: Bearer {token}");
        http(d.addr, "POST", "/-/reload", &[auth.as_str()], b"").expect("answered")
    };
    // A workload added, one's planning changed, a fleet budget set, a setting only a
    // restart applies.
    let path = dir.path().join("p.toml");
    let edited = base
        .replace("max_spot_share = 0.5", "max_spot_share = 0.25")
        .replacen("[fleet]\n", "[fleet]\nbudget_per_hour = 40.0\n", 1)
        .replace("\nthreshold = 0.5", "\nthreshold = 0.6")
        .replace("max_series = 1_000_000", "max_series = 2_000_000")
        .replacen(
            "\nenabled = true\n# Score (0..1)",
            "\nenabled = false\n# Score (0..1)",
            1,
        )
        + WEB;
    std::fs::write(&path, &edited).unwrap();
    // A dry run first: what would change, and nothing does.
    let (code, body) = http(d.addr, "POST", "/-/reload?dry_run=true", &[], b"").unwrap();
    assert_eq!(code, 200, "{body}");
    let said: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(said["data"]["dry_run"], true, "{body}");
    assert_eq!(
        said["data"]["workloads_added"],
        serde_json::json!(["web"]),
        "{body}"
    );
    assert_eq!(workloads(d.addr).len(), 1, "a dry run changes nothing");
    assert!(!json(d.addr, "/api/v1/status/config")["data"]["toml"]
        .as_str()
        .unwrap()
        .contains("name = \"web\""));
    let (code, body) = reload();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let mut done = v["data"].clone();
    done["dry_run"] = true.into();
    assert_eq!(done, said["data"], "the reload did what its dry run said");
    let data = &v["data"];
    assert_eq!(
        data["workloads_added"],
        serde_json::json!(["web"]),
        "{body}"
    );
    assert_eq!(
        data["workloads_changed"],
        serde_json::json!(["host"]),
        "{body}"
    );
    assert_eq!(data["workloads_removed"], serde_json::json!([]), "{body}");
    assert_eq!(data["fleet_changed"], true, "{body}");
    // The anomaly watch takes its new threshold and the store its new limit;
    // stopping the watch waits for a restart.
    assert_eq!(
        data["pending_restart"],
        serde_json::json!(["detect.enabled"]),
        "{body}"
    );
    // The new workload is planned from the host's stored history, at twice its demand.
    wait_for(
        || {
            let w = workloads(d.addr);
            w.len() == 2 && w[1].0 == "web" && w[1].1.is_some()
        },
        "web's first demand",
        &logs,
    );
    // The fleet budget is in force from the next pass, and the host's decisions say so.
    wait_for(
        || json(d.addr, "/api/v1/workloads")["data"]["fleet"]["cap_per_hour"] == 40.0,
        "the fleet budget in force",
        &logs,
    );
    let said = json(d.addr, "/api/v1/workloads/host/decisions?kind=config");
    assert!(
        said.to_string().contains(
            "configuration reloaded: the fleet budget changed (budget_per_hour none -> $40), the next plans share it"
        ),
        "{said}"
    );
    // What runs, as Prometheus' status/config shows it: the new workload and
    // setting, the anomaly threshold taken, the store's limit as it was.
    let running = json(d.addr, "/api/v1/status/config");
    let toml = running["data"]["toml"].as_str().unwrap();
    assert!(toml.contains("name = \"web\"") && toml.contains("max_spot_share = 0.25"));
    assert!(toml.contains("threshold = 0.6"), "{toml}");
    assert!(toml.contains("max_series = 2000000"), "{toml}");
    assert!(
        toml.contains("[detect]\nenabled = true"),
        "the watch runs on: {toml}"
    );
    assert_eq!(
        running["data"]["pending_restart"],
        serde_json::json!(["detect.enabled"])
    );
    let limit = json(d.addr, "/api/v1/sources")["data"]["max_series"].clone();
    assert_eq!(limit, 2_000_000, "the store takes its new limit");
    let info = json(d.addr, "/api/v1/status/runtimeinfo");
    assert_eq!(info["data"]["reloadConfigSuccess"], true, "{info}");
    assert_eq!(info["data"]["storageRetention"], "30d", "{info}");
    let host_said = json(d.addr, "/api/v1/workloads/host/decisions?kind=config");
    let said = host_said["data"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.contains("(max_spot_share)"), "{host_said}");
    assert_eq!(
        metric(d.addr, "prescale_config_last_reload_successful "),
        1.0
    );
    assert_eq!(
        metric(
            d.addr,
            "prescale_config_reloads_total{outcome=\"applied\"} "
        ),
        1.0
    );

    // A typo: refused, saying what to fix; everything stays as it was.
    std::fs::write(
        &path,
        edited.replace("max_spot_share = 0.25", "max_spot_shar = 0.25"),
    )
    .unwrap();
    let (code, body) = reload();
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("max_spot_shar") && body.contains("did you mean"),
        "{body}"
    );
    assert!(body.contains("p.toml"), "names the file: {body}");
    assert_eq!(
        metric(d.addr, "prescale_config_last_reload_successful "),
        0.0
    );
    let sources = json(d.addr, "/api/v1/sources");
    let last = sources["data"]["config"]["last_error"]
        .as_str()
        .unwrap_or_default();
    assert!(last.contains("max_spot_shar"), "{sources}");
    assert_eq!(workloads(d.addr).len(), 2);
    assert!(
        d.logs().contains("configuration not reloaded"),
        "{}",
        d.logs()
    );

    // SIGHUP with web gone: it is no longer managed, and the daemon keeps running.
    let held_by = |name: &str| -> f64 {
        let (_, text) = get(d.addr, "/metrics").unwrap();
        let start = format!("prescale_allocation_instances{{workload=\"{name}\",");
        text.lines()
            .filter(|l| l.starts_with(&start) && !l.contains("state=\"ending\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    wait_for(|| held_by("web") > 0.0, "web's capacity", &logs);
    std::fs::write(&path, &base).unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-HUP", &d.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_for(
        || workloads(d.addr).iter().map(|w| w.0.as_str()).eq(["host"]),
        "web removed by SIGHUP",
        &logs,
    );
    assert_eq!(
        metric(d.addr, "prescale_config_last_reload_successful "),
        1.0
    );
    assert_eq!(
        metric(
            d.addr,
            "prescale_config_reloads_total{outcome=\"applied\"} "
        ),
        2.0
    );
    let sources = json(d.addr, "/api/v1/sources");
    assert_eq!(
        sources["data"]["config"]["pending_restart"],
        serde_json::json!([])
    );
    assert_eq!(get(d.addr, "/healthz").map(|r| r.0), Some(200));
    // What web holds is left as it is, listed and priced until it is released.
    let left = json(d.addr, "/api/v1/unmanaged")["data"].clone();
    let web = &left["workloads"]["web"];
    let n: u64 = web["instances"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(n > 0, "{left}");
    assert_eq!(web["why"], "removed by a configuration reload", "{left}");
    let cost = web["cost_per_hour"].as_f64().unwrap();
    assert!(cost > 0.0 && left["cost_per_hour"] == cost, "{left}");
    assert_eq!(
        metric(
            d.addr,
            "prescale_unmanaged_cost_per_hour{workload=\"web\"} "
        ),
        cost
    );
    let release = |name: &str| {
        let path = format!("/api/v1/unmanaged/{name}/release");
        http(d.addr, "POST", &path, &[], b"").expect("answered")
    };
    let (code, body) = release("host");
    assert_eq!(code, 409, "host is managed: {body}");
    let (code, body) = release("wbe");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("unmanaged: web"), "{body}");
    let (code, body) = release("web");
    assert_eq!(code, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["data"]["released"], web["instances"], "{body}");
    assert_eq!(held_by("web"), 0.0, "nothing left");
    let left = json(d.addr, "/api/v1/unmanaged")["data"].clone();
    assert_eq!(left["workloads"], serde_json::json!({}), "{left}");
    let acts = json(d.addr, "/api/v1/workloads/web/decisions?kind=act");
    let released = acts["data"].as_array().unwrap().iter().filter(|d| {
        d["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("release ") && r.contains("as asked"))
    });
    assert!(released.count() > 0, "{acts}");

    // A token set by a reload, then rotated in its file (as a Secret is) and read
    // again at the next: writes and reloads take the new one only.
    let token = dir.path().join("token");
    std::fs::write(&token, "f1rst-t0ken\n").unwrap();
    let with_token = base.replacen(
        "[server]\n",
        &format!("[server]\ntoken_file = {:?}\n", token.display().to_string()),
        1,
    );
    assert_ne!(with_token, base);
    std::fs::write(&path, &with_token).unwrap();
    let (code, body) = reload();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"token_required\":true"), "{body}");
    let write = |auth: &[&str]| {
        http(
            d.addr,
            "POST",
            "/api/v2/write?precision=s",
            auth,
            b"m v=1 1700000000",
        )
        .unwrap()
        .0
    };
    assert_eq!(write(&[]), 401);
    assert_eq!(write(&["Authorization: Bearer f1rst-t0ken"]), 204);
    let (code, _) = reload();
    assert_eq!(code, 401, "a reload now needs the token too");
    std::fs::write(&token, "s3cond-t0ken\n").unwrap();
    let (code, body) = reload_as("f1rst-t0ken");
    assert_eq!(code, 200, "{body}");
    assert_eq!(write(&["Authorization: Bearer f1rst-t0ken"]), 401);
    assert_eq!(write(&["Authorization: Bearer s3cond-t0ken"]), 204);
    assert!(!d.logs().contains("t0ken"), "a token is never logged");

    // Reads too, from the next reload on; probes still get through.
    std::fs::write(
        &path,
        with_token.replacen("[server]\n", "[server]\ntoken_for_reads = true\n", 1),
    )
    .unwrap();
    let (code, body) = reload_as("s3cond-t0ken");
    assert_eq!(code, 200, "{body}");
    let read = |auth: &[&str]| {
        http(d.addr, "GET", "/api/v1/workloads", auth, b"")
            .unwrap()
            .0
    };
    assert_eq!(read(&[]), 401);
    assert_eq!(read(&["Authorization: Bearer s3cond-t0ken"]), 200);
    assert_eq!(get(d.addr, "/healthz").map(|r| r.0), Some(200));

    // The line-protocol receiver turned off, and the host collector's pace changed.
    let influx_on = "Telegraf's Prometheus output names them.\nenabled = true";
    assert!(with_token.contains(influx_on));
    std::fs::write(
        &path,
        with_token
            .replace(
                influx_on,
                "Telegraf's Prometheus output names them.\nenabled = false",
            )
            .replacen("[server]\n", "[server]\ntoken_for_reads = true\n", 1)
            .replacen("\ninterval_s = 1\n", "\ninterval_s = 2\n", 1),
    )
    .unwrap();
    let (code, body) = reload_as("s3cond-t0ken");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"host_changed\":true"), "{body}");
    assert!(body.contains("\"pending_restart\":[]"), "{body}");
    let (code, body) = http(
        d.addr,
        "POST",
        "/api/v2/write?precision=s",
        &["Authorization: Bearer s3cond-t0ken"],
        b"m v=2 1700000001",
    )
    .unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("sources.influx.enabled = true"), "{body}");
    // The host collector runs on at its new pace.
    let busy = |addr| {
        let (_, text) = http(
            addr,
            "GET",
            "/api/v1/query?query=count_over_time(host_cpu_usage_cores%7Bmode%3D%22busy%22%7D%5B1h%5D)",
            &["Authorization: Bearer s3cond-t0ken"],
            b"",
        )
        .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|x| x.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = busy(d.addr);
    wait_for(
        || busy(d.addr) >= before + 2.0,
        "host samples after the reload",
        &logs,
    );
}
