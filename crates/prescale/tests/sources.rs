//! End-to-end tests of the sources beyond the host: a real Prometheus remote-writing into
//! `prescale run`, prescale scraping a real node exporter (each skipped, saying so, where
//! its binary is absent; `.ci/run` installs both from Debian), line protocol over HTTP,
//! and the token rule beyond loopback.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    bin, default_config, find, free_addr, get, http, samples as series, start_daemon, wait_for,
    write_lines, Daemon, Killed,
};

/// The default configuration with the host collector off and one workload, `app`,
/// whose demand is `demand`, on one-second steps.
fn config(dir: &Path, demand: &str, extra_server: &str) -> std::path::PathBuf {
    let text = default_config()
        .replacen("enabled = true", "enabled = false", 1)
        .replace("interval_s = 15", "interval_s = 1")
        .replace("step_s = 60", "step_s = 1")
        .replace("horizon_s = 3600", "horizon_s = 600")
        .replace("name = \"host\"", "name = \"app\"")
        .replace(
            "demand = 'host_cpu_usage_cores{mode=\"busy\"}'",
            &format!("demand = '{demand}'"),
        )
        .replace("[server]\n", &format!("[server]\n{extra_server}\n"));
    let path = dir.join("prescale.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The workload `app`'s current demand, once it has one.
fn app_demand(addr: SocketAddr) -> Option<f64> {
    let (code, body) = get(addr, "/api/v1/workloads/app/status")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    (code == 200)
        .then(|| v["data"]["demand"].as_f64())
        .flatten()
}

/// `prescale run` on [`config`], once it answers `/healthz`.
fn healthy(dir: &Path, demand: &str, extra_server: &str) -> Daemon {
    let text = std::fs::read_to_string(config(dir, demand, extra_server)).unwrap();
    let d = Daemon::start(dir, &text);
    wait_for(
        || get(d.addr, "/healthz").is_some_and(|r| r.0 == 200),
        "healthz",
        &|| d.logs(),
    );
    d
}

#[test]
fn prometheus_remote_writes_into_prescale_and_a_workload_plans_on_it() {
    let Some(prom) = find("prometheus") else {
        eprintln!("skipping: no `prometheus` binary (apt-get install prometheus; .ci/run does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ps = free_addr();
    let pm = free_addr();
    // Prometheus scrapes itself every second and remote-writes everything to prescale; the
    // workload's demand is the number of series in Prometheus' head block, a gauge that
    // is there from the first scrape.
    let cfg = config(dir.path(), "prometheus_tsdb_head_series{job=\"self\"}", "");
    let plog = dir.path().join("prescale.log");
    let _prescale = start_daemon(&cfg, &dir.path().join("data"), &ps.to_string(), Some(&plog));
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['{pm}']\nremote_write:\n  - url: http://{ps}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n      max_backoff: 1s\n    metadata_config:\n      send_interval: 1s\n"
        ),
    )
    .unwrap();
    let mlog = dir.path().join("prometheus.log");
    let _prometheus = Killed(
        Command::new(&prom)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={pm}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&mlog).unwrap())
            .spawn()
            .unwrap(),
    );
    let logs = || {
        format!(
            "prescale:\n{}\nprometheus:\n{}",
            std::fs::read_to_string(&plog).unwrap_or_default(),
            std::fs::read_to_string(&mlog).unwrap_or_default()
        )
    };
    // Prometheus' own `up` arrives with its target labels, a sample a second.
    let up = format!("up{{instance=\"{pm}\",job=\"self\"}}");
    wait_for(
        || series(ps, &up).len() >= 5,
        "remote-written `up` samples",
        &logs,
    );
    let got = series(ps, &up);
    assert!(got.iter().all(|&(_, v)| v == 1.0), "{got:?}");
    assert!(
        got.windows(2).all(|w| w[1].0 > w[0].0),
        "one sample per scrape, in time order: {got:?}"
    );
    // The workload runs on the pushed series: its demand is Prometheus' series count.
    wait_for(
        || app_demand(ps).is_some_and(|d| d > 10.0),
        "the workload's demand from remote-written samples",
        &logs,
    );
    wait_for(
        || get(ps, "/api/v1/workloads/app/plan").is_some_and(|r| r.0 == 200),
        "a plan for the workload",
        &logs,
    );
    let (_, metrics) = get(ps, "/metrics").unwrap();
    let accepted = metrics
        .lines()
        .find(|l| {
            l.starts_with(
                "prescale_received_samples_total{receiver=\"remote_write\",outcome=\"accepted\"}",
            )
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert!(accepted >= 5.0, "{metrics}");
    assert!(
        metrics.contains("prescale_receive_unreadable_total{receiver=\"remote_write\"} 0"),
        "{metrics}"
    );
    // What Prometheus sends of its families' types and help, as Grafana asks for it.
    let meta = || metadata(ps, "prometheus_tsdb_head_series");
    wait_for(|| meta().is_some(), "remote-written metadata", &logs);
    let m = meta().unwrap();
    assert_eq!(m["type"], "gauge", "{m}");
    assert!(m["help"].as_str().unwrap().contains("series"), "{m}");
}

/// `/api/v1/metadata`'s entry for one metric family, if it has one.
fn metadata(addr: SocketAddr, name: &str) -> Option<serde_json::Value> {
    let (code, body) = get(addr, &format!("/api/v1/metadata?metric={name}"))?;
    assert_eq!(code, 200, "{body}");
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"][name].get_mut(0).map(serde_json::Value::take)
}

#[test]
fn listening_beyond_loopback_without_a_token_is_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "m", "");
    let out = bin()
        .args(["run", "--config", cfg.to_str().unwrap()])
        .args(["--data-dir", dir.path().join("d").to_str().unwrap()])
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a token: set server.token_file"),
        "{err}"
    );
}

#[test]
fn line_protocol_writes_carry_the_token_and_land_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken-for-test\n").unwrap();
    let d = healthy(
        dir.path(),
        "db_query_seconds",
        &format!("token_file = {:?}", token.display().to_string()),
    );
    let (addr, logs) = (d.addr, || d.logs());
    let body = b"db,host=a query_seconds=0.25 1700000000\ndb,host=a query_seconds=0.5 1700000001\n";
    let path = "/api/v2/write?org=o&bucket=b&precision=s";
    let (code, text) = http(addr, "POST", path, &[], body).unwrap();
    assert_eq!(code, 401, "{text}");
    let auth = "Authorization: Token t0ken-for-test";
    let (code, text) = http(addr, "POST", path, &[auth], body).unwrap();
    assert_eq!(code, 204, "{text}");
    let (code, text) = get(
        addr,
        "/api/v1/query_range?series=db_query_seconds%7Bhost%3D%22a%22%7D",
    )
    .unwrap();
    assert_eq!(code, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["data"]["values"],
        serde_json::json!([[1700000000.0, 0.25], [1700000001.0, 0.5]])
    );
    assert!(
        !logs().contains("t0ken-for-test"),
        "the token is never logged"
    );
}

#[test]
fn past_storage_max_series_new_series_are_refused_saying_so() {
    // A sender whose label takes a new value on every line, against a store that holds
    // at most 50 series (prescale's own among them); and a scrape of prescale's own
    // /metrics, whose series find the store full.
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), "db_query_seconds", "");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("max_series = 1_000_000"), "the default limit");
    let addr = free_addr();
    let text = text
        .replace("max_series = 1_000_000", "max_series = 50")
        .replace(
            "[control]",
            &format!(
                "[[sources.scrape]]\njob = \"self\"\ntargets = [\"{addr}\"]\ninterval_s = 1\ntimeout_s = 1\n\n[control]"
            ),
        );
    let d = Daemon::start_at(dir.path(), &text, addr);
    wait_for(
        || get(d.addr, "/healthz").is_some_and(|r| r.0 == 200),
        "healthz",
        &|| d.logs(),
    );
    let body: String = (0..100)
        .map(|i| format!("req,request_id=r{i} ms=1 1700000000\n"))
        .collect();
    let (code, said) = write_lines(d.addr, &body);
    assert_eq!(code, 400, "{said}");
    assert!(
        said.contains("series limit reached: the store holds 50 series (storage.max_series)"),
        "{said}"
    );
    let (_, metrics) = get(d.addr, "/metrics").unwrap();
    let held: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("prescale_series "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no prescale_series in {metrics}"));
    assert_eq!(held, 50.0, "{metrics}");
    // The scrape target is up, and says beside it what was not kept, and why.
    let refused = || {
        get(d.addr, "/api/v1/targets").is_some_and(|(_, body)| {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["data"].as_array().unwrap().iter().any(|t| {
                t["health"] == "up"
                    && t["last_error"].as_str().is_some_and(|e| {
                        e.contains("samples not stored, e.g. series limit reached")
                    })
            })
        })
    };
    wait_for(refused, "the scrape's refusal beside its target", &|| {
        d.logs()
    });
}

#[test]
fn prescale_scrapes_a_node_exporter_and_plans_on_its_cpu_counters() {
    let Some(ne) = find("prometheus-node-exporter").or_else(|| find("node_exporter")) else {
        eprintln!(
            "skipping: no node exporter (apt-get install prometheus-node-exporter; .ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = free_addr();
    let dead = free_addr();
    let ps = free_addr();
    let nlog = dir.path().join("node.log");
    let _node = Killed(
        Command::new(&ne)
            .arg(format!("--web.listen-address={node}"))
            .args(["--collector.disable-defaults", "--collector.cpu"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&nlog).unwrap())
            .spawn()
            .unwrap(),
    );
    // The workload's demand is this machine's busy CPU, from the exporter's counters.
    let cfg = config(
        dir.path(),
        "rate(node_cpu_seconds_total{job=\"node\",mode!~\"idle|iowait\"})",
        "",
    );
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[control]",
        &format!(
            "[[sources.scrape]]\njob = \"node\"\ntargets = [\"{node}\", \"{dead}\"]\ninterval_s = 1\ntimeout_s = 1\n\n[control]"
        ),
    );
    std::fs::write(&cfg, text.replace("step_s = 1", "step_s = 2")).unwrap();
    let plog = dir.path().join("prescale.log");
    let _prescale = start_daemon(&cfg, &dir.path().join("data"), &ps.to_string(), Some(&plog));
    let logs = || {
        format!(
            "prescale:\n{}\nnode exporter:\n{}",
            std::fs::read_to_string(&plog).unwrap_or_default(),
            std::fs::read_to_string(&nlog).unwrap_or_default()
        )
    };
    let up = |addr: SocketAddr| series(ps, &format!("up{{instance=\"{addr}\",job=\"node\"}}"));
    wait_for(
        || up(node).len() >= 3 && up(dead).len() >= 3,
        "`up` of both targets",
        &logs,
    );
    assert!(up(node).iter().all(|&(_, v)| v == 1.0), "{:?}", up(node));
    assert!(up(dead).iter().all(|&(_, v)| v == 0.0), "{:?}", up(dead));
    let (_, body) = get(ps, "/api/v1/targets").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let t = v["data"].as_array().unwrap();
    let by = |addr: SocketAddr| {
        t.iter()
            .find(|x| x["instance"] == addr.to_string())
            .unwrap_or_else(|| panic!("{addr} in {body}"))
    };
    assert_eq!(by(node)["health"], "up", "{body}");
    assert!(by(node)["last_samples"].as_u64().unwrap() > 0, "{body}");
    // The exposition's # TYPE and # HELP, kept for /api/v1/metadata.
    let m = metadata(ps, "node_cpu_seconds_total").expect("the cpu counter's metadata");
    assert_eq!(m["type"], "counter", "{m}");
    assert!(m["help"].as_str().unwrap().contains("CPUs"), "{m}");
    assert_eq!(by(dead)["health"], "down", "{body}");
    assert!(
        by(dead)["last_error"]
            .as_str()
            .unwrap()
            .contains(&dead.to_string()),
        "{body}"
    );
    // Busy CPU seconds per second: at least 0 and at most this machine's cores.
    let cores = std::thread::available_parallelism().unwrap().get() as f64;
    wait_for(
        || app_demand(ps).is_some(),
        "the workload's demand from scraped counters",
        &logs,
    );
    let d = app_demand(ps).unwrap();
    assert!(
        (0.0..=cores * 1.05).contains(&d),
        "demand {d} with {cores} cores"
    );
    wait_for(
        || get(ps, "/api/v1/workloads/app/plan").is_some_and(|r| r.0 == 200),
        "a plan for the workload",
        &logs,
    );
}

/// A workload's demand written as KEDA's Prometheus scaler is given it: requests per
/// second over a range, summed, over the requests one vCPU serves.
#[test]
fn a_request_rate_demand_in_promql_becomes_vcpu() {
    let dir = tempfile::tempdir().unwrap();
    let d = healthy(
        dir.path(),
        r#"sum(rate(http_requests_total{job="web"}[4s])) / 50"#,
        "",
    );
    let (addr, logs) = (d.addr, || d.logs());
    // Two web pods at 200 and 300 requests a second (500/s: 10 vCPU at 50 each), and a
    // batch job at 5000/s the selector leaves out, as counters every quarter second.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let start = std::time::SystemTime::now();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = std::time::SystemTime::now();
                let ms = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis();
                let s = now.duration_since(start).unwrap().as_secs_f64();
                let body = format!(
                    "http,job=web,pod=a requests_total={} {ms}\nhttp,job=web,pod=b requests_total={} {ms}\nhttp,job=batch requests_total={} {ms}\n",
                    1e6 + 200.0 * s,
                    300.0 * s,
                    5000.0 * s,
                );
                let path = "/api/v2/write?org=o&bucket=b&precision=ms";
                let (code, text) = http(addr, "POST", path, &[], body.as_bytes()).unwrap();
                assert_eq!(code, 204, "{text}");
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        })
    };
    wait_for(
        || app_demand(addr).is_some_and(|d| (d - 10.0).abs() < 0.5),
        "a demand of 10 vCPU (500 requests/s at 50 each)",
        &|| format!("demand {:?}\n{}", app_demand(addr), logs()),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    pusher.join().unwrap();
}
