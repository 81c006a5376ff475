//! The Grafana dashboards shipped in `examples/grafana/` (a workload's, and every
//! workload's) against a running demo: every panel's query, with Grafana's variables
//! filled in as Grafana fills them, must be answered with data by prescale's query API,
//! and the workload variable's lookup must list the demo's workloads. (No Grafana runs
//! here: the JSON's shape is checked for what Grafana needs to place and query each
//! panel.)

mod common;

use std::collections::BTreeSet;

use common::{enc, get, samples, Demo};
use serde_json::Value;

/// Each shipped dashboard, with its variables' names.
fn dashboards() -> Vec<(Value, Vec<String>)> {
    ["prescale.json", "prescale-fleet.json"]
        .into_iter()
        .map(|f| {
            let path = format!("{}/../../examples/grafana/{f}", env!("CARGO_MANIFEST_DIR"));
            let d: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            let vars = d["templating"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_string())
                .collect();
            (d, vars)
        })
        .collect()
}

#[test]
fn the_dashboards_are_laid_out_and_bound_to_their_variables() {
    let all = dashboards();
    let uids: Vec<&str> = all
        .iter()
        .map(|(d, _)| d["uid"].as_str().unwrap())
        .collect();
    assert_eq!(uids, ["prescale-workload", "prescale-fleet"]);
    assert_eq!(all[0].1, ["datasource", "workload"]);
    assert_eq!(all[1].1, ["datasource"]);
    for (d, vars) in &all {
        laid_out(d, vars);
    }
}

/// Panels with unique ids that do not overlap, each querying through the data source
/// variable with only the dashboard's own variables and Grafana's built-ins.
fn laid_out(d: &Value, vars: &[String]) {
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "unique ids: {p}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{p}");
        // No two panels overlap on Grafana's 24-column grid.
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{p}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "panel {} overlaps", p["title"]);
            }
        }
        for t in p["targets"].as_array().unwrap() {
            assert!(t["refId"].is_string() && t["expr"].is_string(), "{t}");
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices('$') {
                let name: String = expr[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    name.starts_with("__") || vars.contains(&name),
                    "${name} is no variable of {}: {expr}",
                    d["uid"]
                );
            }
        }
    }
}

#[test]
fn every_panel_of_the_grafana_dashboard_answers_on_a_demo() {
    let demo = Demo::run(1, 5);
    demo.tuned();
    let addr = demo.addr;
    // Grafana's "now": the demo's last pass (its clock stopped there).
    let (_, overview) = get(addr, "/api/v1/workloads").unwrap();
    let overview: Value = serde_json::from_str(&overview).unwrap();
    let end = overview["data"]["last_tick"].as_i64().unwrap() / 1000 + 1;
    let range_s = 6 * 3600;
    let start = end - range_s;

    // The workload variable, as Grafana looks up label_values(prescale_demand, workload).
    let (code, body) = get(
        addr,
        &format!("/api/v1/label/workload/values?match[]=prescale_demand&start={start}&end={end}"),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], serde_json::json!(["batch", "web"]));

    // What the compare endpoint says of each workload's week.
    let compared = |w: &str| {
        let (_, c) = get(addr, &format!("/api/v1/workloads/{w}/compare?days=7")).unwrap();
        serde_json::from_str::<Value>(&c).unwrap()["data"].take()
    };
    let (web, batch) = (compared("web"), compared("batch"));
    for (d, _) in dashboards() {
        let fleet = d["uid"] == "prescale-fleet";
        // The panels' queries, and the annotations' (capacity changes marked on the charts).
        let annotations = serde_json::json!([{
            "title": "annotations",
            "targets": d["annotations"]["list"].as_array().unwrap().clone(),
        }]);
        let panels = d["panels"].as_array().unwrap();
        assert!(fleet || !annotations[0]["targets"].as_array().unwrap().is_empty());
        for p in panels.iter().chain(annotations.as_array().unwrap()) {
            let title = p["title"].as_str().unwrap();
            // The memory panel on the workload that plans its memory (the demo's batch).
            let workload = if title.starts_with("Memory") {
                "batch"
            } else {
                "web"
            };
            for t in p["targets"].as_array().unwrap() {
                // Grafana's variables for a six-hour range on the workload.
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$workload", workload)
                    .replace("$__range_s", &range_s.to_string())
                    .replace("$__range", "6h");
                if title == "annotations" && expr.contains("prescale_planned_event") {
                    // The day's campaign, earlier than the six hours: marked from its
                    // start to its end (and the query's five-minute look back after).
                    let c = prescale_orchestrate::demo::campaign_event(1);
                    let (from, to) = (c.start.0 / 1000, c.end.0 / 1000);
                    let path = format!(
                        "/api/v1/query_range?query={}&start={}&end={end}&step=60",
                        enc(&expr),
                        end - 86_400
                    );
                    let (code, body) = get(addr, &path).unwrap();
                    assert_eq!(code, 200, "{title}: {expr}: {body}");
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let result = v["data"]["result"].as_array().unwrap();
                    assert_eq!(result.len(), 1, "{body}");
                    assert_eq!(result[0]["metric"]["event"], "campaign", "{body}");
                    let times: Vec<i64> = result[0]["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| p[0].as_f64().unwrap() as i64)
                        .collect();
                    assert!(times[0] >= from && times[0] < from + 60, "{body}");
                    assert!(times.iter().all(|&t| t < to + 300), "{body}");
                    assert!(times.len() >= 120, "{body}");
                    continue;
                }
                let path = if t["instant"] == true {
                    format!("/api/v1/query?query={}&time={end}", enc(&expr))
                } else {
                    format!(
                        "/api/v1/query_range?query={}&start={start}&end={end}&step=60",
                        enc(&expr)
                    )
                };
                let (code, body) = get(addr, &path).unwrap();
                assert_eq!(code, 200, "{title}: {expr}: {body}");
                let v: Value = serde_json::from_str(&body).unwrap();
                let result = v["data"]["result"].as_array().unwrap();
                // The anomalies the watch reported in the demo's metrics over the range.
                let listed = |from: i64| -> Vec<Value> {
                    let (_, b) = get(
                        addr,
                        &format!("/api/v1/anomalies?start={from}&end={end}&limit=10000"),
                    )
                    .unwrap();
                    serde_json::from_str::<Value>(&b).unwrap()["data"]["anomalies"]
                        .as_array()
                        .unwrap()
                        .clone()
                };
                if title == "Anomalies in stored series (likelihood)" {
                    // Points where there are anomalies (six hours may have none): a
                    // series for each series with one (a selector looks five minutes
                    // back from the range's start).
                    let names: BTreeSet<String> = listed(start - 300)
                        .iter()
                        .map(|a| a["metric"].as_str().unwrap().to_string())
                        .collect();
                    let charted: BTreeSet<String> = result
                        .iter()
                        .map(|r| r["metric"]["series_name"].as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(charted, names, "{body}");
                    continue;
                }
                assert!(!result.is_empty(), "{title}: {expr}: no data: {body}");
                if title == "Anomalies in stored series over the range" {
                    let shown: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
                    assert_eq!(shown as usize, listed(start + 1).len(), "{body}");
                }
                let shown = || -> f64 { result[0]["value"][1].as_str().unwrap().parse().unwrap() };
                let refid = t["refId"].as_str().unwrap_or_default();
                let cost = |c: &Value, k: &str| c[k]["cost"].as_f64().unwrap();
                if title == "Saved against HPA and what it had (last week)" {
                    // The comparisons the API gives for the same week.
                    let want = match refid {
                        "A" => -web["vs_matched_hpa"].as_f64().unwrap(),
                        _ => -web["vs_as_run"].as_f64().unwrap(),
                    };
                    assert!(
                        (shown() - want).abs() < 1e-9,
                        "{refid}: {} against {want}",
                        shown()
                    );
                }
                if title == "Saved against HPA and what they had (last week, all workloads)" {
                    let against = if refid == "A" {
                        "hpa_matched"
                    } else {
                        "as_run"
                    };
                    let want = 1.0
                        - (cost(&web, "prescale") + cost(&batch, "prescale"))
                            / (cost(&web, against) + cost(&batch, against));
                    assert!(
                        (shown() - want).abs() < 1e-9,
                        "{refid}: {} against {want}",
                        shown()
                    );
                }
                if title == "Safeguards: what another setting would have saved (last tuning)" {
                    // What the demo's tuning of its day found, as the API serves it.
                    let (_, b) = get(addr, "/api/v1/workloads/web/tune").unwrap();
                    let t: Value = serde_json::from_str(&b).unwrap();
                    let advice = &t["data"]["tuning"]["advice"];
                    let want = match refid {
                        "A" => advice["cost_less"].as_f64().unwrap_or(0.0),
                        _ => f64::from(u8::from(advice["holds_on_each_half"] == true)),
                    };
                    assert!(
                        (shown() - want).abs() < 1e-9,
                        "{refid}: {} against {want}: {b}",
                        shown()
                    );
                }
                if title == "Safeguards another setting beats (last tuning)" {
                    // Over the demo's two workloads, as their tunings say: what the advice
                    // saves, summed, and how many held on each half.
                    let (mut saved, mut held) = (0.0, 0.0);
                    for w in ["web", "batch"] {
                        let (_, b) = get(addr, &format!("/api/v1/workloads/{w}/tune")).unwrap();
                        let t: Value = serde_json::from_str(&b).unwrap();
                        let advice = &t["data"]["tuning"]["advice"];
                        assert!(t["data"]["tuning"].is_object(), "{w} not tuned: {b}");
                        saved += advice["cost_less"].as_f64().unwrap_or(0.0);
                        held += f64::from(u8::from(advice["holds_on_each_half"] == true));
                    }
                    let want = if refid == "A" { saved } else { held };
                    assert!(
                        (shown() - want).abs() < 1e-9,
                        "{refid}: {} against {want}",
                        shown()
                    );
                    if refid == "A" {
                        assert!(saved > 0.0, "the demo's tunings advise a saving");
                    }
                }
                if title == "Held for workloads no longer configured" {
                    // The demo removes no workload: nothing left, and it says 0.
                    assert_eq!(shown(), 0.0, "{body}");
                }
                if title == "Workloads paused now" {
                    // The demo pauses none, but every workload says whether it is.
                    assert_eq!(shown(), 0.0, "{body}");
                    let q = "count(last_over_time(prescale_paused[5m]) == 0)";
                    let (_, b) =
                        get(addr, &format!("/api/v1/query?query={}&time={end}", enc(q))).unwrap();
                    let v: Value = serde_json::from_str(&b).unwrap();
                    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{b}");
                }
                if title == "Planned events in force now" {
                    // None at the demo's end; one, its campaign, an hour into it.
                    assert_eq!(shown(), 0.0, "{body}");
                    let c = prescale_orchestrate::demo::campaign_event(1);
                    let during = c.start.0 / 1000 + 3600;
                    let q = t["expr"].as_str().unwrap();
                    let (_, b) = get(
                        addr,
                        &format!("/api/v1/query?query={}&time={during}", enc(q)),
                    )
                    .unwrap();
                    let v: Value = serde_json::from_str(&b).unwrap();
                    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{b}");
                }
                if title == "Saved by workload (last week)" {
                    assert_eq!(result.len(), 2, "a bar per workload: {body}");
                }
                if title == "Demand within the plan's band" {
                    // A share of steps, near the SLA quantile for a calibrated forecast.
                    let share: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
                    assert!((0.5..=1.0).contains(&share), "{share}");
                }
                if title == "Spend over the range" {
                    // The six hours' spend: each tier's mean rate over the range, times six,
                    // of web (or, on every workload's dashboard, of both).
                    let spent = shown();
                    let mut want = 0.0;
                    let workloads: &[&str] = if fleet { &["web", "batch"] } else { &["web"] };
                    for (w, tier) in workloads
                        .iter()
                        .flat_map(|w| ["spot", "standard", "high-performance"].map(|t| (w, t)))
                    {
                        let sel =
                            format!(r#"prescale_cost_per_hour{{tier="{tier}",workload="{w}"}}"#);
                        let s: Vec<(f64, f64)> = samples(addr, &sel)
                            .into_iter()
                            .filter(|(t, _)| *t > start as f64 && *t <= end as f64)
                            .collect();
                        want += s.iter().map(|x| x.1).sum::<f64>() / s.len() as f64 * 6.0;
                    }
                    assert!(
                        spent > 0.0 && (spent - want).abs() < 1e-6 * want,
                        "{spent} against {want}"
                    );
                }
            }
        }
    }
}
