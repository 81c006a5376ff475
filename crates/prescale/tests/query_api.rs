//! Prometheus' own client against prescale's query API: `promtool query` (the Go
//! client Grafana's and Prometheus' tools are built on, which POSTs its queries as
//! forms) asks a running demo for an instant vector, a range, series by `match[]` and
//! label values, and must read what prescale's API answers to a GET (skipped, saying
//! so, without promtool; `.ci/run` installs it with Prometheus).

mod common;

use std::net::SocketAddr;
use std::process::Command;

use common::{enc, find, get, samples, Demo};
use serde_json::Value;

/// `promtool query -o json SUB FLAGS... http://ADDR [EXPR]`, parsed (promtool takes
/// the server, then an instant or range query's expression, after its flags).
fn promtool(addr: SocketAddr, sub: &str, flags: &[String], expr: Option<&str>) -> Value {
    let out = Command::new("promtool")
        .args(["query", "-o", "json", sub])
        .args(flags)
        .arg(format!("http://{addr}"))
        .args(expr)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "promtool query {sub} {flags:?} {expr:?}: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// prescale's answer to a GET, its `data`.
fn data(addr: SocketAddr, path: &str) -> Value {
    let (code, body) = get(addr, path).unwrap_or_else(|| panic!("no answer to {path}"));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str::<Value>(&body).unwrap()["data"].take()
}

/// Times as numbers, whether written `1767628000` or `1767628000.0`.
fn numeric_times(mut v: Value) -> Value {
    match &mut v {
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = numeric_times(x.take());
            }
        }
        Value::Object(o) => {
            for x in o.values_mut() {
                *x = numeric_times(x.take());
            }
        }
        Value::Number(n) => return Value::from(n.as_f64().unwrap()),
        _ => {}
    }
    v
}

#[test]
fn promtool_reads_queries_series_and_labels_as_from_prometheus() {
    if find("promtool").is_none() {
        eprintln!("skipping: no promtool (apt-get install prometheus; .ci/run does)");
        return;
    }
    let demo = Demo::run(1, 3);
    let addr = demo.addr;
    // The demo's last demand step: every series prescale stores has a sample there.
    let last = samples(addr, r#"prescale_demand{workload="web"}"#)
        .last()
        .expect("the demo stored demand")
        .0 as i64;
    let (start, end) = (last - 3600, last);

    // An instant aggregation, as promtool POSTs it.
    let q = "sum by (tier) (prescale_capacity_vcpu)";
    let got = promtool(addr, "instant", &[format!("--time={last}")], Some(q));
    let want = data(addr, &format!("/api/v1/query?query={}&time={last}", enc(q)));
    assert_eq!(got.as_array().unwrap().len(), 3, "a series per tier: {got}");
    assert_eq!(numeric_times(got), numeric_times(want["result"].clone()));

    // A range of a selector.
    let q = r#"prescale_demand{workload="web"}"#;
    let flags = [
        format!("--start={start}"),
        format!("--end={end}"),
        "--step=300s".to_string(),
    ];
    let got = promtool(addr, "range", &flags, Some(q));
    let want = data(
        addr,
        &format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=300",
            enc(q)
        ),
    );
    assert_eq!(
        got[0]["values"].as_array().map(Vec::len),
        Some(13),
        "an hour every 5 minutes: {got}"
    );
    assert_eq!(numeric_times(got), numeric_times(want["result"].clone()));

    // Series by match[], in the time range and out of it.
    let web = format!("--match={}", r#"prescale_instances{workload="web"}"#);
    let got = promtool(
        addr,
        "series",
        &[
            web.clone(),
            format!("--start={start}"),
            format!("--end={end}"),
        ],
        None,
    );
    let tiers: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["__name__"], "prescale_instances", "{s}");
            assert_eq!(s["workload"], "web", "{s}");
            s["tier"].as_str().unwrap()
        })
        .collect();
    assert_eq!(tiers, ["high-performance", "spot", "standard"]);
    let later = [
        web,
        format!("--start={}", end + 86_400),
        format!("--end={}", end + 90_000),
    ];
    let got = promtool(addr, "series", &later, None);
    assert_eq!(
        got,
        serde_json::json!([]),
        "nothing stored a day after the demo"
    );
    let demo = r#"--match={__name__=~"demo_.*"}"#.to_string();
    let got = promtool(addr, "series", &[demo], None);
    assert_eq!(
        got.as_array().unwrap().len(),
        6,
        "a demand and what it requests per workload, and the batch job's memory: {got}"
    );

    // Label values.
    let got = promtool(addr, "labels", &[], Some("tier"));
    assert_eq!(
        got,
        serde_json::json!(["high-performance", "spot", "standard"])
    );
    let got = promtool(addr, "labels", &[], Some("__name__"));
    let names: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for n in [
        "prescale_demand",
        "prescale_instances",
        "demo_cpu_demand_cores",
        "demo_cpu_requests_cores",
        "demo_memory_demand_gib",
        "demo_memory_requests_gib",
        "prescale_demand_memory",
    ] {
        assert!(names.contains(&n), "{n} missing from {got}");
    }
}
