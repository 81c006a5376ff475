use super::*;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use prescale_core::config::Config;
use prescale_core::Sample;
use prescale_orchestrate::{Engine, SimCloud};
use prescale_store::Durability;
use tower::ServiceExt;

/// A store and engine that have run 40 one-minute passes on a sawtooth demand.
fn fixture(dir: &std::path::Path) -> AppState {
    fixture_with(dir, Config::default())
}

/// [`fixture`] with configuration `c`.
fn fixture_with(dir: &std::path::Path, c: Config) -> AppState {
    let store = Store::open(dir, Durability::Buffered).unwrap();
    let key = SeriesKey::parse(r#"host_cpu_usage_cores{mode="busy"}"#).unwrap();
    let sim = SimCloud::new(&c.tiers, 1);
    let mut e = Engine::from_config(&c, 0, store.clone(), sim);
    e.set_inline_training();
    for m in 0..40i64 {
        let t = m * 60_000;
        store
            .append(
                &key,
                &[Sample {
                    ts: t,
                    value: 4.0 + (m % 10) as f64,
                }],
            )
            .unwrap();
        e.tick(t + 1).unwrap();
    }
    AppState::new(&c, store, e.status_handle()).unwrap()
}

/// Stores one sample of a series named `name` in `store`.
fn one_sample(store: &Store, name: &str) {
    let key = SeriesKey::metric(name).unwrap();
    store.append(&key, &[Sample { ts: 0, value: 1.0 }]).unwrap();
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let resp = app
        .clone()
        .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let code = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn health_dashboard_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let st = fixture(dir.path());
    // What the hourly pass does: every stored sample into chunks, counted.
    let mut moved = 0;
    for key in st.store.series() {
        moved += st.store.compress_before(&key, i64::MAX).unwrap();
    }
    assert!(moved > 40, "{moved}");
    let app = router(st);
    assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok\n".into()));
    let (code, html) = get(&app, "/").await;
    assert_eq!(code, StatusCode::OK);
    // The page whose script draws from the API (what it draws is checked in a browser:
    // crates/prescale/tests/dashboard.rs).
    assert_eq!(html, crate::DASHBOARD);
    for call in [
        "/api/v1/workloads",
        "/decisions?limit=12",
        "/compare?days=7",
    ] {
        assert!(html.contains(call), "the page asks for {call}");
    }
    let (code, text) = get(&app, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert!(text.contains("prescale_control_passes_total 40"), "{text}");
    assert!(
        text.contains(&format!("prescale_samples_compressed_total {moved}\n")),
        "{text}"
    );
    assert!(
        text.contains("prescale_series_forgotten_total 0\n"),
        "{text}"
    );
    // The process's own use, as Prometheus client libraries export it.
    if cfg!(target_os = "linux") {
        for name in ["process_resident_memory_bytes", "process_cpu_seconds_total"] {
            assert!(text.contains(&format!("\n# TYPE {name} ")), "{text}");
            assert!(text.contains(&format!("\n{name} ")), "{text}");
        }
    }
    assert!(text.contains("prescale_forecast_demand{workload=\"host\",quantile=\"0.95\"}"));
    assert!(text.contains(
        "prescale_allocation_instances{workload=\"host\",tier=\"spot\",state=\"ready\"}"
    ));
    // The plan's binding constraint, one series at 1, for alerts on a budget too small.
    assert_eq!(
        text.matches("prescale_plan_binding{workload=\"host\",binding=")
            .count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("prescale_plan_binding{workload=\"host\",binding=\"sla\"} 1\n"),
        "{text}"
    );
    // Every sample line is `name{labels} number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let v = line.rsplit(' ').next().unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad line {line}");
    }
}

#[tokio::test]
async fn series_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let st = fixture(dir.path());
    let app = router(st.clone());
    let (code, body) = get(&app, "/api/v1/series").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("host_cpu_usage_cores"), "{body}");
    assert!(body.contains("prescale_capacity_vcpu"), "{body}");
    // Every stored series, in the store's order (by name, then labels).
    let listed: Vec<String> = serde_json::from_value(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"].clone(),
    )
    .unwrap();
    let stored: Vec<String> = st.store.series().iter().map(|k| k.to_string()).collect();
    assert!(stored.len() > 2, "{stored:?}");
    assert_eq!(listed, stored);
    let sel = "host_cpu_usage_cores%7Bmode%3D%22busy%22%7D";
    let (code, body) = get(
        &app,
        &format!("/api/v1/query_range?series={sel}&start=0&end=599"),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let values = v["data"]["values"].as_array().unwrap();
    assert_eq!(values.len(), 10);
    assert_eq!(values[3][1].as_f64(), Some(7.0));
    // Thinned: the sawtooth 4..13 over the first ten minutes, in five slices, keeps its
    // peaks (the mean with reduce=mean).
    let thinned = |reduce: &str| {
        let app = app.clone();
        let uri = format!(
            "/api/v1/query_range?series={sel}&start=0&end=599&max_points=5&reduce={reduce}"
        );
        async move {
            let (code, body) = get(&app, &uri).await;
            assert_eq!(code, StatusCode::OK, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["data"]["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_f64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(thinned("max").await, vec![5.0, 7.0, 9.0, 11.0, 13.0]);
    assert_eq!(thinned("mean").await, vec![4.5, 6.5, 8.5, 10.5, 12.5]);
    let (code, body) = get(
        &app,
        &format!("/api/v1/query_range?series={sel}&max_points=5&reduce=median"),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("max or mean"), "{body}");
    let (code, body) = get(&app, "/api/v1/query_range?series=nope").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.contains("unknown series"));
    let (code, body) = get(&app, "/api/v1/query_range?series=bad%7B").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("cannot parse"), "{body}");
    let (code, _) = get(&app, "/api/v1/query_range").await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn comparisons_are_kept_as_series_for_charts_of_the_money_saved() {
    let dir = tempfile::tempdir().unwrap();
    let st = fixture(dir.path());
    let now = st.status.read().unwrap().last_tick.unwrap();
    let w = st.managed().workloads[0].clone();
    let c = compare::compare(
        &st.store,
        &st.managed().tiers,
        &w,
        compare::RECORDED_DAYS,
        now,
    )
    .unwrap();
    let skipped = compare::record_all(&st.store, &st.managed().tiers, &st.managed().workloads, now);
    assert!(skipped.is_empty(), "{skipped:?}");
    let last = |name: &str, policy: Option<&str>| {
        let mut k = SeriesKey::metric(name)
            .unwrap()
            .with_label("workload", "host".to_string())
            .with_label("days", "7".to_string());
        if let Some(p) = policy {
            k = k.with_label("policy", p.to_string());
        }
        st.store
            .latest(&k)
            .unwrap()
            .unwrap_or_else(|| panic!("{k}"))
    };
    let at = |s: Sample| {
        assert_eq!(s.ts, now);
        s.value
    };
    assert_eq!(
        at(last("prescale_compare_cost", Some("prescale"))),
        c.prescale.cost
    );
    assert_eq!(at(last("prescale_compare_cost", Some("hpa"))), c.hpa.cost);
    assert_eq!(
        at(last("prescale_compare_cost", Some("hpa_matched"))),
        c.hpa_matched.side.cost
    );
    assert_eq!(
        at(last("prescale_compare_cost", Some("oracle"))),
        c.oracle_cost
    );
    assert_eq!(
        at(last("prescale_compare_short_minutes", Some("prescale"))),
        c.prescale.underprovisioned_minutes
    );
    assert_eq!(at(last("prescale_compare_vs_hpa", None)), c.vs_hpa);
    assert_eq!(
        at(last("prescale_compare_vs_matched_hpa", None)),
        c.vs_matched_hpa
    );
    // A workload with no pass of prescale's in the window is named, not recorded.
    let mut other = w.clone();
    other.name = "idle".into();
    let skipped = compare::record_all(&st.store, &st.managed().tiers, &[other], now);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, "idle");
    // The latest, on /metrics, for a Prometheus that scrapes prescale.
    let (_, metrics) = get(&router(st), "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "prescale_compare_vs_matched_hpa{{workload=\"host\",days=\"7\"}} {}\n",
            c.vs_matched_hpa
        )),
        "{metrics}"
    );
}

/// The daemon's tuning: each workload's safeguards replayed on the demand it stored, as
/// the library replays a trace of the same values; the advice served, kept as series
/// and on /metrics, and logged once as a decision while it stands; a workload with less
/// than a day stored is tried again an hour later, not a day.
#[tokio::test]
async fn each_workload_is_tuned_on_its_stored_demand_and_the_advice_kept() {
    use prescale_orchestrate::simulate::{Scenario, Trace};
    use prescale_orchestrate::tune::{run_in_turn, safeguard_flips};
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    let mut web = c.workloads[0].clone();
    web.name = "web".into();
    web.step_s = 300;
    let mut young = web.clone();
    young.name = "young".into();
    c.workloads = vec![web, young];
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    // Two days of five-minute steps of a smooth daily cycle for web, 12 hours for young.
    let t0 = 1_700_000_000_000i64;
    let demand: Vec<f64> = (0..576)
        .map(|i| 60.0 - 40.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).cos())
        .collect();
    let put = |w: &str, values: &[f64]| {
        let key = prescale_orchestrate::engine::demand_key(w, prescale_core::Dim::Cpu);
        let samples: Vec<Sample> = values
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample {
                ts: t0 + i as i64 * 300_000,
                value,
            })
            .collect();
        store.append(&key, &samples).unwrap();
    };
    put("web", &demand);
    put("young", &demand[..144]);
    let now = t0 + 576 * 300_000;
    let st = AppState::new(&c, store, Default::default()).unwrap();
    let app = router(st.clone());
    let (code, body) = get(&app, "/api/v1/workloads/web/tune").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["error"].as_str().unwrap().starts_with("\"web\" is not tuned yet: the daemon tunes each workload on its stored demand every control.tune_every_s (86400 s; 0: never)"),
        "{body}"
    );
    let done = tune::tune_all(&st.store, &c, now).unwrap();
    assert_eq!(done.len(), 2);
    // What the library finds on a trace of the same values, with web's settings.
    let trace = Trace {
        ts: (0..576).map(|i| t0 + i * 300_000).collect(),
        cpu: demand.clone(),
        others: Vec::new(),
        actual: Vec::new(),
        step_ms: 300_000,
    };
    let scenario = Scenario::from_config(&c, Some("web")).unwrap();
    let flips = safeguard_flips(&scenario.workload);
    let want =
        prescale_orchestrate::tune::tune(&trace, &scenario, 1, &flips, &run_in_turn).unwrap();
    let (name, tuned) = &done[0];
    assert_eq!(name, "web");
    assert_eq!(tuned.tuning.as_ref(), Some(&want));
    assert_eq!(
        (tuned.at, tuned.days, tuned.error.as_deref()),
        (now, 7, None)
    );
    let advice = want
        .advice
        .as_ref()
        .expect("the window holds peaks for nothing");
    // Kept: served as made, and the latest on /metrics.
    let (code, body) = get(&app, "/api/v1/workloads/web/tune").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut want_served = serde_json::to_value(tuned).unwrap();
    // With when it is tuned next: a day after.
    want_served["next_at"] = serde_json::json!(now + 86_400_000);
    // Nothing applied: tune_apply is off.
    want_served["applied"] = serde_json::Value::Null;
    assert_eq!(served["data"], want_served);
    assert_eq!(
        served["data"]["tuning"]["advice"]["settings"],
        serde_json::json!({"scale_down_window_s": "0"})
    );
    let (_, metrics) = get(&app, "/metrics").await;
    for line in [
        format!(
            "prescale_tune_saving_dollars{{workload=\"web\"}} {}\n",
            advice.cost_less
        ),
        format!(
            "prescale_tune_minutes_less{{workload=\"web\"}} {}\n",
            advice.minutes_less
        ),
        format!(
            "prescale_tune_holds{{workload=\"web\"}} {}\n",
            u8::from(advice.holds_on_each_half)
        ),
        format!(
            "prescale_tune_own_cost_dollars{{workload=\"web\"}} {}\n",
            want.own.cost
        ),
    ] {
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    assert!(!metrics.contains("prescale_tune_saving_dollars{workload=\"young\"}"));
    // Logged once, as a config decision with the finding and the lines to set.
    let logged = |w: &str| {
        st.store
            .decisions(Some(w), 100)
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == DecisionKind::Config)
            .collect::<Vec<_>>()
    };
    let d = logged("web");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].reason,
        format!(
            "tune: {} To use it, set in the workload's [[workloads]] entry and reload: [[workloads]]; name = \"web\"; scale_down_window_s = 0",
            want.summary()
        )
    );
    // young: too little stored, saying so; tried again after an hour, not before.
    let (name, y) = &done[1];
    assert_eq!(name, "young");
    assert!(y.tuning.is_none() && logged("young").is_empty());
    let why = y.error.as_deref().unwrap();
    assert!(
        why.starts_with("12.0 h of \"young\"'s demand is stored (prescale_demand{workload=\"young\"}); a tuning needs at least 24 h"),
        "{why}"
    );
    assert_eq!(y.summary, format!("not tuned: {why}"));
    let hour = 3_600_000;
    // Served with why, and when it is tried again.
    let (code, body) = get(&app, "/api/v1/workloads/young/tune").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served["data"]["error"], why, "{body}");
    assert_eq!(served["data"]["next_at"], now + hour, "{body}");
    assert!(tune::tune_all(&st.store, &c, now + hour - 1)
        .unwrap()
        .is_empty());
    let again = tune::tune_all(&st.store, &c, now + hour).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].0, "young");
    // web a day later: the same advice is not logged again.
    let day = 86_400_000;
    let later = tune::tune_all(&st.store, &c, now + day).unwrap();
    assert!(later.iter().any(|(w, t)| w == "web" && t.tuning.is_some()));
    assert_eq!(logged("web").len(), 1);
    // The advice applied and reloaded: tuned again at once (not a day later), and the
    // advice before said to no longer stand.
    let mut applied = c.clone();
    applied.workloads[0].scale_down_window_s = 0;
    let after = tune::tune_all(&st.store, &applied, now + day + 1).unwrap();
    let (_, t) = after
        .iter()
        .find(|(w, _)| w == "web")
        .expect("web tuned again");
    let tuning = t.tuning.as_ref().unwrap();
    assert!(
        tuning
            .advice
            .as_ref()
            .is_none_or(|a| a.settings != advice.settings),
        "{tuning:?}"
    );
    assert_eq!(tuning.own.cost, want.runs[1].cost);
    // The advice changed, so it is logged: gone, or another setting's.
    let d = logged("web");
    assert_eq!(d.len(), 2, "{d:?}");
    let newest = d.iter().max_by_key(|d| d.at).unwrap();
    let said = match &tuning.advice {
        None => "tune: the advice before no longer stands. Replayed over its last 2.0 days of stored demand, no safeguard",
        Some(_) => "tune: Replayed over its last 2.0 days of stored demand, the workload's own settings are dominated: ",
    };
    assert!(newest.reason.starts_with(said), "{d:?}");
    assert!(tune::tune_all(&st.store, &applied, now + day + 2)
        .unwrap()
        .is_empty());
    // Off: never due, and served so.
    c.control.tune_every_s = 0;
    assert!(tune::tune_all(&st.store, &c, now + 10 * day)
        .unwrap()
        .is_empty());
    let kept = tune::latest(&st.store, "young").unwrap().unwrap();
    assert_eq!(tune::next_due(&c, "young", &kept), None);
    // A reload that changed young's entry: due at once.
    let mut changed = applied.clone();
    changed.workloads[1].horizon_s += 300;
    assert_eq!(tune::next_due(&changed, "young", &kept), Some(kept.at));
}

/// A workload whose `actual` query says what it had is also compared with that: priced
/// as instances of the one tier HPA scales, short where demand was above them.
#[tokio::test]
async fn what_the_workload_actually_had_is_compared_too() {
    let dir = tempfile::tempdir().unwrap();
    let st = fixture(dir.path());
    let now = st.status.read().unwrap().last_tick.unwrap();
    // Two pods' CPU requests: 8 vCPU in all, 16 from minute 20 (no sample from 25 to
    // 28: the last one holds, as in Prometheus).
    for m in (0..40i64).filter(|m| !(25..29).contains(m)) {
        for (pod, share) in [("a", 0.75), ("b", 0.25)] {
            let key = SeriesKey::parse(&format!(r#"requests_cpu{{pod="{pod}"}}"#)).unwrap();
            let total = if m < 20 { 8.0 } else { 16.0 };
            let s = Sample {
                ts: m * 60_000,
                value: total * share,
            };
            st.store.append(&key, &[s]).unwrap();
        }
    }
    let mut w = st.managed().workloads[0].clone();
    w.actual = Some("sum(requests_cpu)".into());
    let c = compare::compare(
        &st.store,
        &st.managed().tiers,
        &w,
        compare::RECORDED_DAYS,
        now,
    )
    .unwrap();
    // By hand: each step's demand against the instances (4 vCPU, $0.192 an hour) of
    // what it had at the step's start.
    let demand = st
        .store
        .range(
            &SeriesKey::parse(r#"prescale_demand{workload="host"}"#).unwrap(),
            c.from,
            c.to,
        )
        .unwrap()
        .unwrap();
    assert_eq!(demand.len(), c.steps);
    let step_h = w.step_s as f64 / 3600.0;
    let (mut cost, mut short) = (0.0, 0.0);
    for d in &demand {
        let had = if d.ts < 20 * 60_000 { 8.0 } else { 16.0 };
        cost += (had / 4.0f64).ceil() * 0.192 * step_h;
        if d.value > had {
            short += w.step_s as f64 / 60.0;
        }
    }
    let ran = c.as_run.clone().expect("compared with what it had");
    assert!((ran.cost - cost).abs() < 1e-9, "{} for {cost}", ran.cost);
    assert_eq!(ran.underprovisioned_minutes, short);
    assert!(short > 0.0, "the 8 vCPU fall short of demand up to 13");
    assert!((c.vs_as_run.unwrap() - (c.prescale.cost / cost - 1.0)).abs() < 1e-9);
    assert!(c.as_run_error.is_none());
    // Kept as series and on /metrics, as the comparisons with HPA are.
    let st2 = st.clone();
    let mut m = (*st2.managed()).clone();
    m.workloads[0] = w.clone();
    st2.set_managed(m);
    let m = st2.managed();
    assert!(compare::record_all(&st2.store, &m.tiers, &m.workloads, now).is_empty());
    let key = |name: &str| {
        SeriesKey::metric(name)
            .unwrap()
            .with_label("workload", "host".to_string())
            .with_label("days", "7".to_string())
    };
    let cost_key = key("prescale_compare_cost").with_label("policy", "as_run".to_string());
    assert_eq!(st.store.latest(&cost_key).unwrap().unwrap().value, ran.cost);
    let (_, metrics) = get(&router(st2), "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "prescale_compare_vs_as_run{{workload=\"host\",days=\"7\"}} {}\n",
            c.vs_as_run.unwrap()
        )),
        "{metrics}"
    );
    // A query giving a series per pod, or nothing, says so; HPA is compared still.
    for (q, says) in [
        ("requests_cpu", "aggregate them"),
        ("sum(no_such_series)", "has no value"),
    ] {
        w.actual = Some(q.into());
        let c = compare::compare(
            &st.store,
            &st.managed().tiers,
            &w,
            compare::RECORDED_DAYS,
            now,
        )
        .unwrap();
        assert!(c.as_run.is_none() && c.vs_as_run.is_none());
        let e = c.as_run_error.unwrap();
        assert!(e.contains(says), "{e}");
    }
    // A query prescale cannot answer is refused when the configuration is checked.
    assert!(crate::promql::check("sum(rate(").is_err());
    assert!(crate::promql::check("sum(requests_cpu)").is_ok());
}

#[tokio::test]
async fn workload_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let st = fixture(dir.path());
    // Demand from the hour before prescale's first pass (a history it was given): no
    // capacity of prescale's then, so no comparison over it.
    let before: Vec<Sample> = (1..=60)
        .map(|m| Sample {
            ts: -m * 60_000,
            value: 50.0,
        })
        .collect();
    let demand = SeriesKey::parse(r#"prescale_demand{workload="host"}"#).unwrap();
    st.store.append(&demand, &before).unwrap();
    let app = router(st);
    let (code, body) = get(&app, "/api/v1/workloads").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("\"host\""));
    let (code, body) = get(&app, "/api/v1/workloads/host/forecast").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["values"].as_array().unwrap().len(), 60);
    let (code, body) = get(&app, "/api/v1/workloads/host/plan").await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["data"]["reason"].as_str().unwrap().contains("q0.95"));
    let (code, body) = get(&app, "/api/v1/workloads/host/decisions?limit=5").await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let d = v["data"].as_array().unwrap();
    assert!(!d.is_empty() && d.len() <= 5);
    assert!(d.iter().any(|x| x["kind"] == "act"), "{body}");
    // The log between two times (unix seconds or RFC 3339), of some kinds.
    let log = |q: &str| {
        let app = app.clone();
        let uri = format!("/api/v1/workloads/host/decisions?limit=1000{q}");
        async move {
            let (code, body) = get(&app, &uri).await;
            assert_eq!(code, StatusCode::OK, "{uri}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        d["at"].as_i64().unwrap(),
                        d["kind"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let all = log("").await;
    assert!(all.len() >= 10, "{all:?}");
    let between: Vec<_> = all
        .iter()
        .filter(|d| (1_200_000..=1_800_001).contains(&d.0))
        .cloned()
        .collect();
    assert!(!between.is_empty() && between.len() < all.len());
    assert_eq!(log("&since=1200&until=1800.001").await, between);
    assert_eq!(
        log("&since=1970-01-01T00:20:00Z&until=1970-01-01T00:30:00.001Z").await,
        between
    );
    let acts: Vec<_> = all.iter().filter(|d| d.1 == "act").cloned().collect();
    assert!(!acts.is_empty());
    assert_eq!(log("&kind=act").await, acts);
    let some: Vec<_> = all
        .iter()
        .filter(|d| d.1 == "act" || d.1 == "hold")
        .cloned()
        .collect();
    assert_eq!(log("&kind=act,%20hold").await, some);
    for (q, why) in [
        ("since=yesterday", "RFC 3339"),
        ("until=1e400", "unix seconds"),
        ("kind=acted", "use act, hold, error, event or config"),
        // What the query string itself cannot say: refused as JSON too.
        ("limit=-5", "limit: invalid digit"),
        ("days=many", "days: invalid float"),
    ] {
        let (code, body) = get(&app, &format!("/api/v1/workloads/host/decisions?{q}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        assert!(v["error"].as_str().unwrap().contains(why), "{q}: {body}");
    }
    // Against HPA on the same stored demand.
    let (code, body) = get(&app, "/api/v1/workloads/host/compare?days=1").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    // Asked again within the minute: served again, not replayed; other days are.
    let runs = |n: u32| format!("prescale_compare_runs_total {n}\n");
    assert_eq!(
        get(&app, "/api/v1/workloads/host/compare?days=1").await.1,
        body
    );
    assert!(get(&app, "/metrics").await.1.contains(&runs(1)));
    let (code, _) = get(&app, "/api/v1/workloads/host/compare?days=2").await;
    assert_eq!(code, StatusCode::OK);
    assert!(get(&app, "/metrics").await.1.contains(&runs(2)));
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    let c = &c["data"];
    let (_, body) = get(
        &app,
        &format!(
            "/api/v1/query_range?series={}&start=0",
            enc(r#"prescale_demand{workload="host"}"#)
        ),
    )
    .await;
    let stored: serde_json::Value = serde_json::from_str(&body).unwrap();
    // From the first pass that recorded what prescale held on.
    let mut began = i64::MAX;
    for tier in ["spot", "standard", "high-performance"] {
        let sel = format!(r#"prescale_instances{{tier="{tier}",workload="host"}}"#);
        let (_, b) = get(&app, &format!("/api/v1/query_range?series={}", enc(&sel))).await;
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        let first = v["data"]["values"][0][0].as_f64().unwrap();
        began = began.min((first * 1000.0) as i64);
    }
    let since: Vec<i64> = stored["data"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_f64().unwrap() * 1000.0) as i64)
        .filter(|t| *t >= began)
        .collect();
    assert!(since.len() >= 30, "{body}");
    assert_eq!(c["steps"], since.len(), "only since the first pass: {c}");
    assert_eq!(c["from"], since[0], "{c}");
    let f = |k: &str| c[k].as_f64().unwrap_or_else(|| panic!("{k}: {c}"));
    let (ours, hpa) = (
        c["prescale"]["cost"].as_f64().unwrap(),
        c["hpa"]["cost"].as_f64().unwrap(),
    );
    assert!(ours > 0.0 && hpa > 0.0, "{c}");
    assert!(f("oracle_cost") <= hpa && f("oracle_cost") <= ours, "{c}");
    assert!((f("vs_hpa") - (ours / hpa - 1.0)).abs() < 1e-9, "{c}");
    assert_eq!(c["hpa_tier"], "standard");
    assert_eq!(f("hpa_target_utilization"), 0.7);
    // HPA tuned to prescale's shortfall: a target no higher, short no longer when found.
    let m = &c["hpa_matched"];
    let (target, short, cost) = (
        m["target_utilization"].as_f64().unwrap(),
        m["underprovisioned_minutes"].as_f64().unwrap(),
        m["cost"].as_f64().unwrap(),
    );
    assert!((0.05..=0.7).contains(&target), "{c}");
    let ours_short = c["prescale"]["underprovisioned_minutes"].as_f64().unwrap();
    assert_eq!(
        m["found"].as_bool().unwrap(),
        short <= ours_short + 1e-9,
        "{c}"
    );
    assert!(cost >= hpa - 1e-9, "a lower target holds more: {c}");
    assert!(
        (f("vs_matched_hpa") - (ours / cost - 1.0)).abs() < 1e-9,
        "{c}"
    );
    // prescale's cost from its instance series agrees with the month's spending the
    // engine adds up pass by pass (over nearly the same 40 minutes).
    let (_, body) = get(&app, "/api/v1/workloads/host/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let month = status["data"]["spend"]["spent"].as_f64().unwrap();
    assert!((ours / month - 1.0).abs() < 0.1, "{ours} against {month}");
    for (q, code, why) in [
        (
            "host/compare?days=0",
            StatusCode::BAD_REQUEST,
            "more than 0",
        ),
        (
            "host/compare?days=365",
            StatusCode::BAD_REQUEST,
            "at most 90",
        ),
        ("nope/compare", StatusCode::NOT_FOUND, "configured: host"),
    ] {
        let (got, body) = get(&app, &format!("/api/v1/workloads/{q}")).await;
        assert_eq!(got, code, "{q}: {body}");
        assert!(body.contains(why), "{q}: {body}");
    }
    let (code, body) = get(&app, "/api/v1/workloads/host/model").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // 40 one-minute steps are too few to cross-validate a 60-step horizon: the model is
    // chosen without it, says so, and is chosen again as the history doubles.
    assert!(v["data"]["version"].as_u64().unwrap() >= 2, "{body}");
    assert_eq!(v["data"]["choice"], "auto");
    assert!(
        v["data"]["reason"].as_str().unwrap().contains("too few"),
        "{body}"
    );
    let (code, body) = get(&app, "/api/v1/workloads/nope/plan").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(body.contains("configured: host"));
    let (code, _) = get(&app, "/api/v1/workloads/host/bogus").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = get(&app, "/nowhere").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

/// A state with no workload passes run, for the write endpoints.
fn writable(dir: &std::path::Path, cfg: Config) -> (Router, Store) {
    let store = Store::open(dir, Durability::Sync).unwrap();
    let e = Engine::from_config(&cfg, 0, store.clone(), SimCloud::new(&cfg.tiers, 1));
    let state = AppState::new(&cfg, store.clone(), e.status_handle()).unwrap();
    (router(state), store)
}

async fn post(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, String) {
    let (code, _, body) = post_with_headers(app, uri, headers, body).await;
    (code, body)
}

/// [`post`], with the answer's headers.
async fn post_with_headers(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    send_with(app, "POST", uri, headers, body).await
}

async fn send_with(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let code = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, headers, String::from_utf8(body.to_vec()).unwrap())
}

fn values(store: &Store, key: &str) -> Vec<(i64, f64)> {
    store
        .range(&SeriesKey::parse(key).unwrap(), i64::MIN, i64::MAX)
        .unwrap()
        .unwrap_or_default()
        .iter()
        .map(|s| (s.ts, s.value))
        .collect()
}

const SNAPPY: (&str, &str) = ("content-encoding", "snappy");

#[tokio::test]
async fn remote_write_stores_what_it_can_and_says_what_it_refused() {
    use prescale_collect::receive::encode_remote_write;
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    let key = SeriesKey::parse(r#"app_latency_seconds{job="api"}"#).unwrap();
    let batch = vec![(
        key.clone(),
        vec![
            Sample {
                ts: 1_000,
                value: 0.25,
            },
            Sample {
                ts: 2_000,
                value: 0.5,
            },
        ],
    )];
    let (code, body) = post(
        &app,
        "/api/v1/write",
        &[SNAPPY],
        encode_remote_write(&batch),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        values(&store, &key.to_string()),
        vec![(1_000, 0.25), (2_000, 0.5)]
    );
    // A resend after a lost answer is taken again without complaint.
    let (code, _) = post(
        &app,
        "/api/v1/write",
        &[SNAPPY],
        encode_remote_write(&batch),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);

    // A NaN and a reused timestamp are refused; the sample between them is stored.
    let bad = vec![(
        key.clone(),
        vec![
            Sample {
                ts: 2_000,
                value: 9.0,
            },
            Sample {
                ts: 3_000,
                value: 0.75,
            },
            Sample {
                ts: 4_000,
                value: f64::NAN,
            },
        ],
    )];
    let (code, body) = post(&app, "/api/v1/write", &[SNAPPY], encode_remote_write(&bad)).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("stored 1 samples"), "{body}");
    assert!(body.contains("at 2000 ms: duplicate timestamp"), "{body}");
    assert!(
        body.contains("at 4000 ms: value NaN is not finite"),
        "{body}"
    );
    assert_eq!(
        values(&store, &key.to_string()),
        vec![(1_000, 0.25), (2_000, 0.5), (3_000, 0.75)]
    );

    // Corrupt bodies and other protocols are refused whole, saying why.
    let (code, body) = post(&app, "/api/v1/write", &[SNAPPY], b"garbage".to_vec()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("not snappy-compressed"), "{body}");
    // Remote write 2.0: the same series interned, and what was written in the headers.
    let v2 = (
        "content-type",
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    );
    let more = vec![(
        key.clone(),
        vec![Sample {
            ts: 5_000,
            value: 1.0,
        }],
    )];
    let (code, headers, body) = post_with_headers(
        &app,
        "/api/v1/write",
        &[SNAPPY, v2],
        prescale_collect::receive::encode_remote_write_v2(&more),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(headers["x-prometheus-remote-write-samples-written"], "1");
    assert_eq!(headers["x-prometheus-remote-write-histograms-written"], "0");
    assert_eq!(values(&store, &key.to_string()).last(), Some(&(5_000, 1.0)));
    // A 1.0 body sent as 2.0 reads as an empty 2.0 request (the fields differ): nothing
    // written, and the header says so.
    let (_, headers, _) = post_with_headers(
        &app,
        "/api/v1/write",
        &[SNAPPY, v2],
        encode_remote_write(&batch),
    )
    .await;
    assert_eq!(headers["x-prometheus-remote-write-samples-written"], "0");
    let other = ("content-type", "application/x-protobuf;proto=other.Message");
    let (code, body) = post(
        &app,
        "/api/v1/write",
        &[SNAPPY, other],
        encode_remote_write(&batch),
    )
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        body.contains("io.prometheus.write.v2.Request (2.0)"),
        "{body}"
    );
    let (code, _) = post(
        &app,
        "/api/v1/write",
        &[("content-encoding", "gzip")],
        vec![1],
    )
    .await;
    assert_eq!(code, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let (_, metrics) = get(&app, "/metrics").await;
    for line in [
        r#"prescale_received_samples_total{receiver="remote_write",outcome="accepted"} 4"#,
        r#"prescale_received_samples_total{receiver="remote_write",outcome="duplicate"} 2"#,
        r#"prescale_received_samples_total{receiver="remote_write",outcome="rejected"} 2"#,
        r#"prescale_receive_unreadable_total{receiver="remote_write"} 3"#,
        r#"prescale_receive_requests_total{receiver="remote_write"} 8"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn line_protocol_is_stored_per_field_at_the_given_precision() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    let body = b"db,host=a query_ms=12.5,conns=3i 1700000000\ndb,host=a query_ms=13 1700000010\n";
    let (code, text) = post(
        &app,
        "/api/v2/write?org=o&bucket=b&precision=s",
        &[],
        body.to_vec(),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(
        values(&store, r#"db_query_ms{host="a"}"#),
        vec![(1_700_000_000_000, 12.5), (1_700_000_010_000, 13.0)]
    );
    assert_eq!(
        values(&store, r#"db_conns{host="a"}"#),
        vec![(1_700_000_000_000, 3.0)]
    );

    // InfluxDB 1's endpoint, gzipped as Telegraf sends it by default; a bad line is named
    // by its number and the good one is stored.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"db,host=b query_ms=7 1700000000000\ndb,host=b query_ms=oops 1700000001000\n")
        .unwrap();
    let (code, text) = post(
        &app,
        "/write?db=x&precision=ms",
        &[("content-encoding", "gzip")],
        gz.finish().unwrap(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        text.starts_with("stored 1 samples") && text.contains("line 2:"),
        "{text}"
    );
    assert_eq!(
        values(&store, r#"db_query_ms{host="b"}"#),
        vec![(1_700_000_000_000, 7.0)]
    );

    let (code, text) = post(
        &app,
        "/api/v2/write?precision=fortnights",
        &[],
        body.to_vec(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(text.contains("precision \"fortnights\""), "{text}");
}

/// The default configuration with `s3cret` in a token file in `dir`.
fn with_token(dir: &std::path::Path) -> Config {
    let token = dir.join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut cfg = Config::default();
    cfg.server.token_file = Some(token);
    cfg
}

/// The default configuration listening beyond loopback, without a token (and so with
/// the receivers off, as a start requires).
fn exposed() -> Config {
    let mut open = Config::default();
    open.server.listen = "0.0.0.0:9180".into();
    open.sources.remote_write.enabled = false;
    open.sources.influx.enabled = false;
    open
}

#[tokio::test]
async fn writes_need_the_token_once_one_is_set_and_disabled_receivers_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = with_token(dir.path());
    cfg.sources.influx.enabled = false;
    let (app, store) = writable(&dir.path().join("data"), cfg);
    let batch = vec![(
        SeriesKey::metric("m").unwrap(),
        vec![Sample { ts: 1, value: 1.0 }],
    )];
    let body = prescale_collect::receive::encode_remote_write(&batch);
    let (code, text) = post(&app, "/api/v1/write", &[SNAPPY], body.clone()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(text.contains("Authorization: Bearer"), "{text}");
    let wrong = ("authorization", "Bearer guess");
    let (code, text) = post(&app, "/api/v1/write", &[SNAPPY, wrong], body.clone()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(!text.contains("s3cret"), "the token is never echoed");
    assert!(
        values(&store, "m").is_empty(),
        "nothing stored without the token"
    );
    let right = ("authorization", "Token s3cret");
    let (code, _) = post(&app, "/api/v1/write", &[SNAPPY, right], body).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert_eq!(values(&store, "m"), vec![(1, 1.0)]);
    // Basic credentials with the token as the password (Prometheus' basic_auth).
    let basic = ("authorization", "Basic cHJvbTpzM2NyZXQ="); // prom:s3cret
    let batch2 = vec![(
        SeriesKey::metric("m").unwrap(),
        vec![Sample { ts: 2, value: 2.0 }],
    )];
    let body2 = prescale_collect::receive::encode_remote_write(&batch2);
    let (code, _) = post(&app, "/api/v1/write", &[SNAPPY, basic], body2.clone()).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let wrong_basic = ("authorization", "Basic cHJvbTpndWVzcw=="); // prom:guess
    let (code, _) = post(&app, "/api/v1/write", &[SNAPPY, wrong_basic], body2).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert_eq!(values(&store, "m"), vec![(1, 1.0), (2, 2.0)]);
    let bearer = ("authorization", "Bearer s3cret");
    let (code, text) = post(&app, "/api/v2/write", &[bearer], b"m v=1 1".to_vec()).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(text.contains("sources.influx.enabled = true"), "{text}");
}

/// A state whose reloads are answered by a stand-in for the daemon (`Ok` with how
/// many it answered).
fn reloadable(dir: &std::path::Path, cfg: &Config) -> Router {
    let store = Store::open(dir, Durability::Sync).unwrap();
    let e = Engine::from_config(cfg, 0, store.clone(), SimCloud::new(&cfg.tiers, 1));
    let mut state = AppState::new(cfg, store, e.status_handle()).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ReloadRequest>(1);
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(r) = rx.recv().await {
            n += 1;
            let _ = r
                .answer
                .send(Ok(json!({ "answered": n, "dry_run": r.dry_run })));
        }
    });
    state.reload = Some(tx);
    router(state)
}

#[tokio::test]
async fn reloading_over_http_takes_the_token_and_is_refused_beyond_loopback_without_one() {
    let dir = tempfile::tempdir().unwrap();
    // Where nothing reloads (prescale demo, tests), it says so.
    let app = router(fixture(&dir.path().join("fixture")));
    let (code, text) = post(&app, "/-/reload", &[], Vec::new()).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(text.contains("prescale run --config FILE"), "{text}");
    // On loopback without a token: as SIGHUP, anyone on the machine may.
    let app = reloadable(&dir.path().join("local"), &Config::default());
    let (code, text) = post(&app, "/-/reload", &[], Vec::new()).await;
    assert_eq!(
        (code, text.contains("\"answered\":1")),
        (StatusCode::OK, true),
        "{text}"
    );
    assert!(text.contains("\"dry_run\":false"), "{text}");
    let (code, text) = post(&app, "/-/reload?dry_run=true", &[], Vec::new()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    assert!(text.contains("\"dry_run\":true"), "{text}");
    let (code, text) = post(&app, "/-/reload?dry_run=maybe", &[], Vec::new()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{text}");
    // Beyond loopback without a token: refused, saying what to set.
    let mut open = exposed();
    let app = reloadable(&dir.path().join("open"), &open);
    let (code, text) = post(&app, "/-/reload", &[], Vec::new()).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(
        text.contains("server.token_file") && text.contains("SIGHUP"),
        "{text}"
    );
    // With a token: only with it.
    open.server.token_file = with_token(dir.path()).server.token_file;
    let app = reloadable(&dir.path().join("token-data"), &open);
    let (code, text) = post(&app, "/-/reload", &[], Vec::new()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(text.contains("reloading needs the token"), "{text}");
    let wrong = ("authorization", "Bearer guess");
    let (code, _) = post(&app, "/-/reload", &[wrong], Vec::new()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let right = ("authorization", "Bearer s3cret");
    let (code, text) = post(&app, "/-/reload", &[right], Vec::new()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    // Not a GET: a link or a crawler does not reload. Refused saying so, with the
    // methods it takes.
    let (code, text) = get(&app, "/-/reload").await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["error"], "/-/reload does not take GET; the Allow header names the methods it does",
        "{text}"
    );
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .method("DELETE")
                .uri("/-/reload")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "POST,PUT");
}

#[tokio::test]
async fn a_snapshot_is_a_store_of_its_own_and_takes_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (app, store) = writable(&data, with_token(dir.path()));
    one_sample(&store, "kept_metric");
    let (code, text) = post(&app, "/api/v1/admin/tsdb/snapshot", &[], Vec::new()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(text.contains("taking a snapshot needs the token"), "{text}");
    let right = ("authorization", "Bearer s3cret");
    let (code, text) = post(&app, "/api/v1/admin/tsdb/snapshot", &[right], Vec::new()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let name = v["data"]["name"].as_str().unwrap().to_string();
    assert!(
        name.len() == 16 && name.as_bytes()[8] == b'T' && name.ends_with('Z'),
        "YYYYMMDDTHHMMSSZ: {name}"
    );
    assert_eq!(v["data"]["copied"]["series"], 1);
    assert_eq!(v["data"]["samples"], "copied");
    // Two in the same second get names of their own.
    let (_, text2) = post(&app, "/api/v1/admin/tsdb/snapshot", &[right], Vec::new()).await;
    let v2: serde_json::Value = serde_json::from_str(&text2).unwrap();
    assert_ne!(v2["data"]["name"], v["data"]["name"]);
    drop(app);
    let copy = Store::open(&data.join("snapshots").join(&name), Durability::Buffered).unwrap();
    let key = SeriesKey::metric("kept_metric").unwrap();
    assert_eq!(copy.range(&key, 0, 10).unwrap().unwrap().len(), 1);
    // Beyond loopback without a token: refused, saying what to set.
    let (app, _) = writable(&dir.path().join("open"), exposed());
    let (code, text) = post(&app, "/api/v1/admin/tsdb/snapshot", &[], Vec::new()).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(text.contains("server.token_file"), "{text}");
}

#[tokio::test]
async fn with_token_for_reads_everything_but_healthz_takes_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = with_token(dir.path());
    cfg.server.token_for_reads = true;
    let (app, _) = writable(&dir.path().join("data"), cfg);
    let send = |uri: &str, auth: Option<&str>| {
        let mut req = Request::builder().uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let app = app.clone();
        let req = req.body(Body::empty()).unwrap();
        async move { app.oneshot(req).await.unwrap() }
    };
    for uri in [
        "/",
        "/api/v1/workloads",
        "/metrics",
        "/api/v1/query?query=up",
    ] {
        let r = send(uri, None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let asks = r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(asks.starts_with("Basic realm="), "{asks}");
        let r = send(uri, Some("Bearer guess")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{uri}");
        let r = send(uri, Some("Bearer s3cret")).await;
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
        // What a browser sends once asked: any user name, the token as the password.
        let r = send(uri, Some("Basic YW55b25lOnMzY3JldA==")).await; // anyone:s3cret
        assert_eq!(r.status(), StatusCode::OK, "{uri}");
    }
    assert_eq!(
        send("/healthz", None).await.status(),
        StatusCode::OK,
        "probes"
    );
}

#[tokio::test]
async fn targets_are_listed_unknown_until_scraped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.sources.scrape = vec![prescale_core::config::ScrapeConfig {
        job: "node".into(),
        targets: vec!["10.1.2.3:9100".into()],
        interval_s: 15,
        timeout_s: 10,
        path: "/metrics".into(),
        scheme: "https".into(),
        ca_file: None,
        cert_file: None,
        key_file: None,
        sample_limit: 0,
        kubernetes: None,
    }];
    let (app, _) = writable(dir.path(), cfg);
    let (code, body) = get(&app, "/api/v1/targets").await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"][0]["url"], "https://10.1.2.3:9100/metrics",
        "{body}"
    );
    assert_eq!(v["data"][0]["health"], "unknown", "{body}");
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
}

/// The query API tests' data: each gauge `(series, base)` sampled every 60 s from
/// t = 600 s for ten samples (base, base + 1, ...), and a counter `c_total{job="x"}`
/// rising 2 a second, sampled every 30 s.
fn gauges_and_a_counter(store: &Store, gauges: &[(&str, f64)]) {
    let k = |s: &str| SeriesKey::parse(s).unwrap();
    for (key, base) in gauges {
        let samples: Vec<Sample> = (0..10)
            .map(|i| Sample {
                ts: 600_000 + i * 60_000,
                value: base + i as f64,
            })
            .collect();
        store.append(&k(key), &samples).unwrap();
    }
    let counter: Vec<Sample> = (0..20)
        .map(|i| Sample {
            ts: 600_000 + i * 30_000,
            value: 2.0 * 30.0 * i as f64,
        })
        .collect();
    store.append(&k(r#"c_total{job="x"}"#), &counter).unwrap();
}

#[tokio::test]
async fn prometheus_query_api_answers_selectors_and_rates_as_grafana_asks() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    let k = |s: &str| SeriesKey::parse(s).unwrap();
    gauges_and_a_counter(&store, &[(r#"g{a="1"}"#, 10.0), (r#"g{a="2"}"#, 20.0)]);

    let q = |query: &str, rest: &str| {
        format!(
            "/api/v1/query_range?query={}&{rest}",
            crate::tests::enc(query)
        )
    };
    let (code, body) = get(&app, &q(r#"g{a=~"1|2"}"#, "start=660&end=900&step=120")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2, "{body}");
    assert_eq!(
        r[0]["metric"],
        serde_json::json!({"__name__": "g", "a": "1"})
    );
    // At 660, 780, 900 s: the newest sample at or before each.
    assert_eq!(
        r[0]["values"],
        serde_json::json!([[660.0, "11"], [780.0, "13"], [900.0, "15"]])
    );
    // Past the last sample (1140 s) by five minutes or more there is no value: the lookback
    // is (t - 5 min, t], as in Prometheus 3.
    let (_, body) = get(&app, &q(r#"g{a="1"}"#, "start=1140&end=1500&step=60")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let pts = v["data"]["result"][0]["values"].as_array().unwrap().len();
    assert_eq!(
        pts, 5,
        "1140..1380 s have a sample within five minutes: {body}"
    );

    // rate(): 2 a second over each step, without the metric name.
    let (code, body) = get(
        &app,
        &q(r#"rate(c_total{job="x"})"#, "start=720&end=1080&step=60"),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &v["data"]["result"][0];
    assert_eq!(r["metric"], serde_json::json!({"job": "x"}));
    for p in r["values"].as_array().unwrap() {
        assert_eq!(p[1], "2", "{body}");
    }
    assert_eq!(r["values"].as_array().unwrap().len(), 7);

    // Instant queries, labels and values, build info.
    let (_, body) = get(
        &app,
        &format!("/api/v1/query?query={}&time=700", crate::tests::enc("g")),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"][1]["value"],
        serde_json::json!([700.0, "21"])
    );
    let (_, body) = get(&app, "/api/v1/labels").await;
    assert!(
        body.contains("\"__name__\"") && body.contains("\"a\"") && body.contains("\"job\""),
        "{body}"
    );
    let (_, body) = get(&app, "/api/v1/label/__name__/values").await;
    assert!(
        body.contains("\"c_total\"") && body.contains("\"g\""),
        "{body}"
    );
    let (code, body) = get(&app, "/api/v1/status/buildinfo").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains("\"version\""), "{body}");

    // Aggregations, in either form, and rates over a range.
    let matrix = |body: &str| -> Vec<(serde_json::Value, Vec<String>)> {
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|r| {
                let vals = r["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p[1].as_str().unwrap().to_string())
                    .collect();
                (r["metric"].clone(), vals)
            })
            .collect()
    };
    let window = "start=660&end=900&step=120";
    let (code, body) = get(&app, &q("sum(g)", window)).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(
        matrix(&body),
        vec![(
            serde_json::json!({}),
            vec!["32".into(), "36".into(), "40".into()]
        )]
    );
    for query in ["max by (a) (g)", "max(g) by (a)", "max without () (g)"] {
        let (_, body) = get(&app, &q(query, window)).await;
        let m = matrix(&body);
        assert_eq!(m.len(), 2, "{query}: {body}");
        assert_eq!(m[1].0, serde_json::json!({"a": "2"}), "{query}: {body}");
        assert_eq!(m[1].1, ["21", "23", "25"], "{query}: {body}");
    }
    let (_, body) = get(&app, &q("count without (a) (g)", window)).await;
    assert_eq!(
        matrix(&body),
        vec![(
            serde_json::json!({}),
            vec!["2".into(), "2".into(), "2".into()]
        )]
    );
    let (_, body) = get(&app, &q("avg(g{a=~\"1|2\"})", window)).await;
    assert_eq!(matrix(&body)[0].1, ["16", "18", "20"], "{body}");
    // The counter rises 2 a second: so does its rate over any range, summed or not.
    let (code, body) = get(
        &app,
        &q(
            r#"sum by (job) (rate(c_total{job="x"}[2m]))"#,
            "start=780&end=1080&step=60",
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let m = matrix(&body);
    assert_eq!(m[0].0, serde_json::json!({"job": "x"}), "{body}");
    assert_eq!(m[0].1, vec!["2"; 6], "{body}");
    let (_, body) = get(
        &app,
        &format!(
            "/api/v1/query?query={}&time=1000",
            crate::tests::enc("rate(c_total[5m])")
        ),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{body}");
    assert_eq!(
        v["data"]["result"][0]["metric"],
        serde_json::json!({"job": "x"})
    );

    // Times or divided by a number, either side, in parentheses or not: the name goes,
    // as in Prometheus.
    for query in [
        "sum(g) * 2",
        "2 * sum(g)",
        "(sum(g) / 0.5)",
        "sum(g * 4) / 2",
    ] {
        let (code, body) = get(&app, &q(query, window)).await;
        assert_eq!(code, StatusCode::OK, "{query}: {body}");
        assert_eq!(
            matrix(&body),
            vec![(
                serde_json::json!({}),
                vec!["64".into(), "72".into(), "80".into()]
            )],
            "{query}"
        );
    }
    // Inside min or max a negative factor turns one into the other.
    let (_, body) = get(&app, &q("max(g * -1)", window)).await;
    assert_eq!(matrix(&body)[0].1, ["-11", "-13", "-15"], "{body}");
    let (_, body) = get(&app, &q("g{a=\"2\"} / 100", window)).await;
    assert_eq!(matrix(&body)[0].0, serde_json::json!({"a": "2"}), "{body}");
    assert_eq!(matrix(&body)[0].1, ["0.21", "0.23", "0.25"], "{body}");

    // Arithmetic between series, matched one to one on their labels (the name goes),
    // and with numbers on either side; * and / bind tighter than + and -.
    for (query, want) in [
        (
            "g * g",
            vec![("1", ["121", "169", "225"]), ("2", ["441", "529", "625"])],
        ),
        (
            "g - g / g",
            vec![("1", ["10", "12", "14"]), ("2", ["20", "22", "24"])],
        ),
        (
            "(g + 1) * 2",
            vec![("1", ["24", "28", "32"]), ("2", ["44", "48", "52"])],
        ),
        (
            "g - -1",
            vec![("1", ["12", "14", "16"]), ("2", ["22", "24", "26"])],
        ),
        ("2e-1 * g{a=\"1\"} * 5", vec![("1", ["11", "13", "15"])]),
        (
            "110 / g{a=\"1\"} - 10",
            vec![("1", ["0", "-1.5384615384615383", "-2.666666666666667"])],
        ),
        (
            "sum by (a) (g) / g",
            vec![("1", ["1", "1", "1"]), ("2", ["1", "1", "1"])],
        ),
        ("g{a=\"1\"} / 0", vec![("1", ["+Inf", "+Inf", "+Inf"])]),
        // Functions of each value, around any expression (commas inside it included).
        ("abs(g{a=\"1\"} - 20)", vec![("1", ["9", "7", "5"])]),
        (
            "clamp_max(sum by (a) (g), 22)",
            vec![("1", ["11", "13", "15"]), ("2", ["21", "22", "22"])],
        ),
        (
            "clamp_min(g{a=\"1\",a!=\"3\"}, 14)",
            vec![("1", ["14", "14", "15"])],
        ),
        (
            "clamp(g, 12, 22)",
            vec![("1", ["12", "13", "15"]), ("2", ["21", "22", "22"])],
        ),
        (
            "round(g / 4)",
            vec![("1", ["3", "3", "4"]), ("2", ["5", "6", "6"])],
        ),
        (
            "round(g, 5)",
            vec![("1", ["10", "15", "15"]), ("2", ["20", "25", "25"])],
        ),
        (
            "ceil(g / 4) - floor(g / 4)",
            vec![("1", ["1", "1", "1"]), ("2", ["1", "1", "1"])],
        ),
        ("clamp(g, 5, 1)", vec![]),
        ("ln(exp(g{a=\"1\"}))", vec![("1", ["11", "13", "15"])]),
        (
            "sqrt(g{a=\"1\"} * g{a=\"1\"})",
            vec![("1", ["11", "13", "15"])],
        ),
        ("sgn(g{a=\"1\"} - 13)", vec![("1", ["-1", "0", "1"])]),
        (
            "log2(g{a=\"1\"} * 0 + 8) + log10(g{a=\"1\"} * 0 + 100)",
            vec![("1", ["5", "5", "5"])],
        ),
    ] {
        let (code, body) = get(&app, &q(query, window)).await;
        assert_eq!(code, StatusCode::OK, "{query}: {body}");
        let want: Vec<(serde_json::Value, Vec<String>)> = want
            .into_iter()
            .map(|(a, v)| {
                (
                    serde_json::json!({ "a": a }),
                    v.iter().map(|x| x.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(matrix(&body), want, "{query}");
    }
    let (_, body) = get(&app, &q("sum(g) + 1", window)).await;
    assert_eq!(matrix(&body)[0].1, ["33", "37", "41"], "{body}");
    // on (...) keeps only its labels to match (and label) by; ignoring (...) drops its.
    let (_, body) = get(&app, &q("g / on (a) sum by (a) (g * 2)", window)).await;
    assert_eq!(
        matrix(&body)[1],
        (serde_json::json!({"a": "2"}), vec!["0.5".to_string(); 3]),
        "{body}"
    );
    let (_, body) = get(&app, &q("sum(g) - ignoring (a) g{a=\"2\"}", window)).await;
    assert_eq!(
        matrix(&body),
        vec![(
            serde_json::json!({}),
            vec!["11".into(), "13".into(), "15".into()]
        )],
        "{body}"
    );
    let strs = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // group_left: many series on the left share one partner, keep their own labels and
    // take the listed ones from it; group_right the other way round.
    let ab = |a1: [&str; 3], a2: [&str; 3], extra: serde_json::Value| {
        [a1, a2]
            .iter()
            .zip(["1", "2"])
            .map(|(v, a)| {
                let mut l = serde_json::json!({ "a": a });
                for (k, x) in extra.as_object().unwrap() {
                    l[k] = x.clone();
                }
                (l, strs(v))
            })
            .collect::<Vec<_>>()
    };
    for (query, want) in [
        (
            "g / ignoring (a) group_left sum(g)",
            ab(
                ["0.34375", "0.3611111111111111", "0.375"],
                ["0.65625", "0.6388888888888888", "0.625"],
                serde_json::json!({}),
            ),
        ),
        (
            "sum(g) - ignoring (a) group_right g",
            ab(
                ["21", "23", "25"],
                ["11", "13", "15"],
                serde_json::json!({}),
            ),
        ),
        (
            // At 660 s the counter's first sample (0, at 600 s) is the range's first:
            // extrapolated no further back than its zero, as Prometheus, 120 in 2 min.
            "g * on () group_left (job) sum by (job) (rate(c_total[2m]))",
            ab(
                ["11", "26", "30"],
                ["21", "46", "50"],
                serde_json::json!({"job": "x"}),
            ),
        ),
        // topk and bottomk choose at each time: |g - 17| is 6, 4, 2 for a=1 and 4, 6, 8 for
        // a=2, so a=1 is highest first and lowest after.
        (
            "topk(1, abs(g - 17))",
            vec![
                (serde_json::json!({"a": "1"}), strs(&["6"])),
                (serde_json::json!({"a": "2"}), strs(&["6", "8"])),
            ],
        ),
        (
            "bottomk(1, abs(g - 17))",
            vec![
                (serde_json::json!({"a": "1"}), strs(&["4", "2"])),
                (serde_json::json!({"a": "2"}), strs(&["4"])),
            ],
        ),
        // A series keeps its labels, its name too; by (a) makes each its own group.
        (
            "topk by (a) (1, g)",
            vec![
                (
                    serde_json::json!({"__name__": "g", "a": "1"}),
                    strs(&["11", "13", "15"]),
                ),
                (
                    serde_json::json!({"__name__": "g", "a": "2"}),
                    strs(&["21", "23", "25"]),
                ),
            ],
        ),
        (
            "topk(1, g) * 2",
            vec![(serde_json::json!({"a": "2"}), strs(&["42", "46", "50"]))],
        ),
    ] {
        let (code, body) = get(&app, &q(query, window)).await;
        assert_eq!(code, StatusCode::OK, "{query}: {body}");
        assert_eq!(matrix(&body), want, "{query}");
    }
    // histogram_quantile reads a classic histogram's buckets by their le label: two
    // histograms (jobs) whose buckets count 1, 3, 4 and 4 (and 2, 2, 4, 4) a second.
    for (job, rates) in [("api", [1.0, 3.0, 4.0, 4.0]), ("db", [2.0, 2.0, 4.0, 4.0])] {
        for (le, r) in ["0.1", "0.5", "1", "+Inf"].iter().zip(rates) {
            let samples: Vec<Sample> = (0..20)
                .map(|i| Sample {
                    ts: 600_000 + i * 30_000,
                    value: r * 30.0 * i as f64,
                })
                .collect();
            let key = format!("h_bucket{{job=\"{job}\",le=\"{le}\"}}");
            store.append(&k(&key), &samples).unwrap();
        }
    }
    for (query, api, db) in [
        // rank 3.6 of 4 falls in (0.5, 1], 0.6 of the way; the db's 3.6 likewise, 0.8.
        ("histogram_quantile(0.9, rate(h_bucket[2m]))", "0.8", "0.9"),
        ("histogram_quantile(0.5, rate(h_bucket[2m]))", "0.3", "0.1"),
        // Summed over jobs first: 3, 5, 8, 8 a second; rank 7.2 is 2.2 of the 3 in
        // (0.5, 1].
        (
            "histogram_quantile(0.9, sum by (le) (rate(h_bucket[2m])))",
            "0.8666666666666667",
            "",
        ),
        (
            "histogram_quantile(1.5, rate(h_bucket[2m]))",
            "+Inf",
            "+Inf",
        ),
    ] {
        let (code, body) = get(&app, &q(query, window)).await;
        assert_eq!(code, StatusCode::OK, "{query}: {body}");
        let got = matrix(&body);
        let want: Vec<(serde_json::Value, Vec<String>)> = if db.is_empty() {
            vec![(serde_json::json!({}), vec![api.to_string(); 3])]
        } else {
            vec![
                (serde_json::json!({"job": "api"}), vec![api.to_string(); 3]),
                (serde_json::json!({"job": "db"}), vec![db.to_string(); 3]),
            ]
        };
        let close = |a: &str, b: &str| {
            a == b || (a.parse::<f64>().unwrap() - b.parse::<f64>().unwrap()).abs() < 1e-9
        };
        assert_eq!(got.len(), want.len(), "{query}: {body}");
        for ((gl, gv), (wl, wv)) in got.iter().zip(&want) {
            assert_eq!(gl, wl, "{query}");
            assert!(
                gv.len() == wv.len() && gv.iter().zip(wv).all(|(a, b)| close(a, b)),
                "{query}: {gv:?} vs {wv:?}"
            );
        }
    }
    // Series without a partner are left out.
    let (_, body) = get(&app, &q("g{a=\"1\"} + g{a=\"2\"}", window)).await;
    assert!(matrix(&body).is_empty(), "{body}");
    // Numbers alone are a scalar; over a range, one series without labels.
    let (_, body) = get(
        &app,
        &format!(
            "/api/v1/query?query={}&time=700",
            crate::tests::enc("2 + 3 * 4")
        ),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "scalar", "{body}");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([700.0, "14"]),
        "{body}"
    );
    let (_, body) = get(&app, &q("(1 - 3) / 4", window)).await;
    assert_eq!(
        matrix(&body),
        vec![(serde_json::json!({}), vec!["-0.5".into(); 3])],
        "{body}"
    );

    // increase() is the rate over its range times the range; *_over_time combine each
    // gauge's samples in (t - range, t] (the name goes, as in Prometheus).
    let (_, body) = get(
        &app,
        &q(
            r#"sum(increase(c_total[2m]))"#,
            "start=780&end=900&step=120",
        ),
    )
    .await;
    assert_eq!(
        matrix(&body),
        vec![(serde_json::json!({}), vec!["240".into(); 2])],
        "{body}"
    );
    for (func, want) in [
        ("max_over_time", ["11", "13", "15"]),
        ("min_over_time", ["10", "11", "13"]),
        ("avg_over_time", ["10.5", "12", "14"]),
        ("sum_over_time", ["21", "36", "42"]),
        ("count_over_time", ["2", "3", "3"]),
        ("last_over_time", ["11", "13", "15"]),
        ("quantile_over_time(0.5, ", ["10.5", "12", "14"]),
        ("quantile_over_time(0.9,", ["10.9", "12.8", "14.8"]),
        ("quantile_over_time(1.5, ", ["+Inf", "+Inf", "+Inf"]),
        ("stdvar_over_time", ["0.25", "0.6667", "0.6667"]),
        ("stddev_over_time", ["0.5", "0.8165", "0.8165"]),
        // One a minute: a first sample two minutes from the range's start is extended
        // by half an interval, one within 1.1 intervals all the way (Prometheus' rule).
        ("delta", ["1.5", "3", "3"]),
        ("idelta", ["1", "1", "1"]),
        ("irate", ["0.016667", "0.016667", "0.016667"]),
        ("deriv", ["0.016667", "0.016667", "0.016667"]),
        // The line through them, ten minutes on: 10 more.
        ("predict_linear", ["21", "23", "25"]),
    ] {
        // quantile_over_time's name comes with its first argument, predict_linear's
        // seconds after the range.
        let call = if func == "predict_linear" {
            format!("{func}(g{{a=\"1\"}}[3m], 600)")
        } else if !func.ends_with(", ") && !func.ends_with(',') {
            format!("{func}(g{{a=\"1\"}}[3m])")
        } else {
            format!("{func}g{{a=\"1\"}}[3m])")
        };
        let (code, body) = get(&app, &q(&call, window)).await;
        assert_eq!(code, StatusCode::OK, "{func}: {body}");
        let got = matrix(&body);
        assert_eq!(got.len(), 1, "{func}: {body}");
        // As Prometheus, only last_over_time keeps the metric name.
        let labels = if func == "last_over_time" {
            serde_json::json!({"__name__": "g", "a": "1"})
        } else {
            serde_json::json!({"a": "1"})
        };
        assert_eq!(got[0].0, labels, "{func}");
        assert_eq!(got[0].1.len(), want.len(), "{func}: {body}");
        for (g, w) in got[0].1.iter().zip(want) {
            let (g, w): (f64, f64) = (g.parse().unwrap(), w.parse().unwrap());
            assert!(g == w || (g - w).abs() < 1e-4, "{func}: {g} vs {w}");
        }
    }

    // An aggregation of computed series groups and combines them as it does stored ones.
    for (query, want) in [
        (
            "sum(g + g)",
            vec![(serde_json::json!({}), ["64", "72", "80"])],
        ),
        // And of an aggregation.
        (
            "max(sum by (a) (g))",
            vec![(serde_json::json!({}), ["21", "23", "25"])],
        ),
        (
            "max by (a) (g - 10)",
            vec![
                (serde_json::json!({"a": "1"}), ["1", "3", "5"]),
                (serde_json::json!({"a": "2"}), ["11", "13", "15"]),
            ],
        ),
    ] {
        let (code, body) = get(&app, &q(query, window)).await;
        assert_eq!(code, StatusCode::OK, "{query}: {body}");
        let want: Vec<(serde_json::Value, Vec<String>)> = want
            .into_iter()
            .map(|(m, v)| (m, v.iter().map(|x| x.to_string()).collect()))
            .collect();
        assert_eq!(matrix(&body), want, "{query}: {body}");
    }

    // label_replace sets a label from another where the regex matches all of it,
    // removes it when the result is empty, and leaves other series alone.
    for (query, want) in [
        (
            r#"label_replace(g, "b", "x$1", "a", "(.*)")"#,
            vec![
                serde_json::json!({"__name__": "g", "a": "1", "b": "x1"}),
                serde_json::json!({"__name__": "g", "a": "2", "b": "x2"}),
            ],
        ),
        (
            r#"label_replace(g, "b", "two", "a", "2")"#,
            vec![
                serde_json::json!({"__name__": "g", "a": "1"}),
                serde_json::json!({"__name__": "g", "a": "2", "b": "two"}),
            ],
        ),
        (
            r#"label_replace(g{a="1"}, "a", "", "a", ".*")"#,
            vec![serde_json::json!({"__name__": "g"})],
        ),
        (
            r#"sum by (b) (label_replace(g, "b", "${x}", "a", "(?P<x>[12])"))"#,
            vec![serde_json::json!({"b": "1"}), serde_json::json!({"b": "2"})],
        ),
        (
            r#"label_replace(sum by (a) (g), "b", "${x}", "a", "(?P<x>[12])")"#,
            vec![
                serde_json::json!({"a": "1", "b": "1"}),
                serde_json::json!({"a": "2", "b": "2"}),
            ],
        ),
    ] {
        let (code, body) = get(&app, &q(query, window)).await;
        assert_eq!(code, StatusCode::OK, "{query}: {body}");
        let got: Vec<serde_json::Value> = matrix(&body).into_iter().map(|x| x.0).collect();
        assert_eq!(got, want, "{query}: {body}");
    }

    // What it cannot answer, it says.
    for (query, why) in [
        ("increase(c_total)", "needs a range"),
        (
            "max_over_time(rate(c_total)[5m])",
            "takes a series selector",
        ),
        ("g + ignoring (a) g", "two series on the left of +"),
        (
            "g * group_left sum(g)",
            "come after on (...) or ignoring (...)",
        ),
        (
            "histogram_quantile(0.9, g)",
            "has none: give it the _bucket series",
        ),
        (
            "histogram_quantile(rate(h_bucket[2m]))",
            "takes a quantile and the buckets",
        ),
        ("histogram_quantile(0.9, 2)", "needs bucket series"),
        ("clamp(g, 1)", "takes three arguments, not 2"),
        ("topk(g)", "takes a count and an expression"),
        ("topk(x, g)", "is not a count"),
        ("bottomk(1, 2)", "choose among series"),
        ("round(g, x)", "is not a number"),
        (
            "sum(g) + ignoring (a) group_left g",
            "two series on the right of +",
        ),
        (
            "g * on () group_left (a) g{a=\"1\"}",
            "two results of * have the labels",
        ),
        ("g * on (a) 2", "not with a number"),
        ("g @ soon", "after @ is not a time"),
        ("label_join(g)", "takes an expression, a label, a separator"),
        (r#"label_join(g, "1x", "-", "a")"#, "is not a label name"),
        (r#"label_join(g, "x", -, "a")"#, "double-quoted"),
        ("quantile(g)", "takes a quantile and an expression"),
        ("sort(3)", "order series, not a number"),
        ("count_values(g)", "takes a label and an expression"),
        (
            "hour(g, 1)",
            "takes one expression of unix seconds, or none",
        ),
        ("@ 100", "@ follows a selector"),
        ("quantile_over_time(g[5m])", "takes a quantile and a range"),
        ("quantile_over_time(high, g[5m])", "is not a number"),
        ("last_over_time(g)", "needs a range"),
        (
            r#"label_replace(g, "b")"#,
            "takes an expression and four strings",
        ),
        (
            r#"label_replace(g, "1b", "x", "a", ".*")"#,
            "is not a label name",
        ),
        (
            r#"label_replace(g, "b", "x", "a", "(")"#,
            "is not a regular expression",
        ),
        (r#"label_replace(g, b, "x", "a", ".*")"#, "double-quoted"),
        (
            r#"label_replace(g, "a", "z", "a", ".*")"#,
            "gave two series the labels",
        ),
        (
            r#"label_replace(2, "a", "z", "a", ".*")"#,
            "relabels series, not a number",
        ),
        ("predict_linear(g[5m])", "takes a range and seconds ahead"),
        ("predict_linear(g[5m], soon)", "is not a number"),
        ("deriv(g)", "needs a range"),
        ("g +", "empty expression"),
    ] {
        let (code, body) = get(&app, &q(query, window)).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}");
        assert!(body.contains(why), "{query}: {body}");
    }
    for query in [
        "holt_winters(g[5m], 0.5, 0.5)",
        "sum by (a-b) (g)",
        "rate(c_total[5x])",
        "g @ soon",
    ] {
        let (code, body) = get(&app, &q(query, "start=0&end=10&step=1")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}");
        assert!(body.contains("bad_data"), "{query}: {body}");
    }
    let (_, body) = get(
        &app,
        &q("holt_winters(g[5m], 0.5, 0.5)", "start=0&end=10&step=1"),
    )
    .await;
    assert!(body.contains("under sum, avg, min, max or count"), "{body}");
    // A function PromQL has and prescale does not, and one PromQL has not, each said
    // as such (not as a workload demand that may only be a selector or a rate).
    for (query, why) in [
        (
            "holt_winters(g[5m], 0.5, 0.5)",
            "holt_winters(...) is PromQL that prescale does not answer",
        ),
        ("limitk (1, g)", "limitk(...) is PromQL"),
        ("sum(sin(g))", "sin(...) is PromQL"),
        ("rates(c_total[5m])", r#"unknown function \"rates\""#),
        ("g offset 5m + foo(g)", r#"unknown function \"foo\""#),
    ] {
        let (code, body) = get(&app, &q(query, "start=0&end=10&step=1")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}");
        assert!(body.contains(why), "{query}: {body}");
        assert!(!body.contains("a demand is"), "{query}: {body}");
    }
    let (code, body) = get(&app, &q("g", "start=0&end=100000&step=1")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("11000 points"), "{body}");
    let (code, _) = get(&app, &q("g", "start=0&end=10&step=0")).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn grafana_posts_forms_and_browses_series_with_match() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    gauges_and_a_counter(&store, &[(r#"g{a="1"}"#, 10.0), (r#"g{a="2"}"#, 20.0)]);
    // A series whose samples end long before the others' start (600 s).
    let old: Vec<Sample> = (0..5)
        .map(|i| Sample::new(i * 10_000, 1.0).unwrap())
        .collect();
    store
        .append(&SeriesKey::parse(r#"h{b="x"}"#).unwrap(), &old)
        .unwrap();
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let json = |body: &str| -> serde_json::Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };

    // Grafana's default: queries as POSTs with a form body.
    let body = format!("query={}&time=700", enc(r#"g{a="1"}"#));
    let (code, got) = post(&app, "/api/v1/query", &form, body.into_bytes()).await;
    assert_eq!(code, StatusCode::OK, "{got}");
    assert_eq!(
        json(&got)["data"]["result"][0]["value"],
        serde_json::json!([700.0, "11"])
    );
    let range = format!("query={}&start=660&end=900&step=120", enc(r#"g{a="1"}"#));
    let (code, posted) = post(
        &app,
        "/api/v1/query_range",
        &form,
        range.clone().into_bytes(),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{posted}");
    let (_, asked) = get(&app, &format!("/api/v1/query_range?{range}")).await;
    assert_eq!(json(&posted), json(&asked), "a POST answers as a GET does");
    assert_eq!(
        json(&posted)["data"]["result"][0]["values"],
        serde_json::json!([[660.0, "11"], [780.0, "13"], [900.0, "15"]])
    );
    // The body's values come before the query string's, as in Prometheus.
    let (_, got) = post(
        &app,
        "/api/v1/query?time=900",
        &form,
        format!("query={}&time=700", enc(r#"g{a="2"}"#)).into_bytes(),
    )
    .await;
    assert_eq!(
        json(&got)["data"]["result"][0]["value"],
        serde_json::json!([700.0, "21"])
    );
    // RFC 3339 times, as Prometheus takes them too.
    let (code, got) = get(
        &app,
        &format!(
            "/api/v1/query?query={}&time=1970-01-01T00:11:40Z",
            enc(r#"g{a="1"}"#)
        ),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{got}");
    assert_eq!(
        json(&got)["data"]["result"][0]["value"],
        serde_json::json!([700.0, "11"])
    );
    // A body that is not a form says what to send.
    let (code, got) = post(
        &app,
        "/api/v1/query",
        &[("content-type", "application/json")],
        br#"{"query":"g"}"#.to_vec(),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(got.contains("x-www-form-urlencoded"), "{got}");

    // series with match[]: each series' labels, its name as __name__.
    let (code, got) = get(&app, "/api/v1/series?match[]=g").await;
    assert_eq!(code, StatusCode::OK, "{got}");
    assert_eq!(
        json(&got)["data"],
        serde_json::json!([{"__name__": "g", "a": "1"}, {"__name__": "g", "a": "2"}])
    );
    // Several selectors: the union; a name matcher; only series with samples in range.
    let uri = format!(
        "/api/v1/series?match[]={}&match[]={}",
        enc(r#"{__name__=~"g|h"}"#),
        enc(r#"c_total{job="x"}"#)
    );
    let (_, got) = get(&app, &uri).await;
    assert_eq!(json(&got)["data"].as_array().unwrap().len(), 4, "{got}");
    let (_, got) = get(&app, &format!("{uri}&start=600&end=1200")).await;
    let names: Vec<&str> = json(&got)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["__name__"].as_str().unwrap())
        .map(|n| if n == "h" { "h" } else { "other" })
        .collect();
    assert_eq!(names, ["other"; 3], "h has no sample after 40 s: {got}");
    let (_, got) = get(&app, &format!("{uri}&start=0&end=5")).await;
    assert_eq!(
        json(&got)["data"],
        serde_json::json!([{"__name__": "h", "b": "x"}])
    );
    // POSTed, as Grafana's browser does.
    let (code, got) = post(
        &app,
        "/api/v1/series",
        &form,
        format!("match[]={}", enc(r#"g{a!="2"}"#)).into_bytes(),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{got}");
    assert_eq!(
        json(&got)["data"],
        serde_json::json!([{"__name__": "g", "a": "1"}])
    );
    // Without match[], prescale's own list of stored series, as before.
    let (_, got) = get(&app, "/api/v1/series").await;
    assert!(got.contains(r#""g{a=\"1\"}""#), "{got}");
    // Selectors that would list everything, or do not parse, are refused, saying why.
    for bad in [r#"{}"#, r#"{a=~".*"}"#, r#"{a=""}"#] {
        let (code, got) = get(&app, &format!("/api/v1/series?match[]={}", enc(bad))).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {got}");
        assert!(got.contains("every series"), "{got}");
    }
    let (code, got) = get(&app, &format!("/api/v1/series?match[]={}", enc("g{a="))).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{got}");
    assert!(got.contains("match[]="), "{got}");
    let (code, got) = get(&app, "/api/v1/series?match[]=g&start=yesterday").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{got}");
    assert!(got.contains("RFC 3339"), "{got}");
    let (code, got) = get(&app, "/api/v1/series?match[]=g&start=10&end=5").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{got}");

    // Label names and values of the series picked.
    let (_, got) = get(&app, "/api/v1/labels?match[]=c_total").await;
    assert_eq!(json(&got)["data"], serde_json::json!(["__name__", "job"]));
    let (_, got) = post(
        &app,
        "/api/v1/labels",
        &form,
        b"match[]=h&match[]=c_total".to_vec(),
    )
    .await;
    assert_eq!(
        json(&got)["data"],
        serde_json::json!(["__name__", "b", "job"])
    );
    let (_, got) = get(&app, "/api/v1/labels").await;
    assert_eq!(
        json(&got)["data"],
        serde_json::json!(["__name__", "a", "b", "job"])
    );
    let (_, got) = get(
        &app,
        &format!("/api/v1/label/a/values?match[]={}", enc(r#"g{a!="2"}"#)),
    )
    .await;
    assert_eq!(json(&got)["data"], serde_json::json!(["1"]));
    let (_, got) = get(&app, "/api/v1/label/__name__/values?start=600&end=1200").await;
    assert_eq!(json(&got)["data"], serde_json::json!(["c_total", "g"]));
    let (_, got) = get(&app, "/api/v1/label/__name__/values").await;
    assert_eq!(json(&got)["data"], serde_json::json!(["c_total", "g", "h"]));
}

/// A range query's series, each as its labels (JSON) and its points.
async fn ask_range(app: Router, query: String, window: &str) -> Vec<(String, Vec<(f64, String)>)> {
    let uri = format!("/api/v1/query_range?query={}&{window}", enc(&query));
    let (code, body) = get(&app, &uri).await;
    assert_eq!(code, StatusCode::OK, "{query}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|r| {
            let vals: Vec<(f64, String)> = r["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            (r["metric"].to_string(), vals)
        })
        .collect()
}

/// Points as [`ask_range`] gives them.
fn points_at(pts: &[(f64, &str)]) -> Vec<(f64, String)> {
    pts.iter().map(|(t, v)| (*t, v.to_string())).collect()
}

#[tokio::test]
async fn subqueries_combine_any_expression_over_a_range() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    // g{a="1"} is 10 + i at 600 + 60 i s (i < 10), g{a="2"} 20 + i; c_total rises 2 a
    // second, sampled every 30 s from 600 s.
    gauges_and_a_counter(&store, &[(r#"g{a="1"}"#, 10.0), (r#"g{a="2"}"#, 20.0)]);
    let window = "start=660&end=900&step=120";
    let ask = |query: &str| ask_range(app.clone(), query.to_string(), window);
    let a1 = r#"{"a":"1"}"#.to_string();
    let a2 = r#"{"a":"2"}"#.to_string();

    // Over a selector, a subquery at the series' own resolution is the range itself.
    let by_range = ask(r#"max_over_time(g{a="1"}[2m])"#).await;
    let by_subquery = ask(r#"max_over_time(g{a="1"}[2m:1m])"#).await;
    assert_eq!(by_subquery, by_range);
    assert_eq!(
        by_subquery,
        vec![(
            a1.clone(),
            points_at(&[(660.0, "11"), (780.0, "13"), (900.0, "15")])
        )]
    );
    // Of an aggregation: at 900 s, sum(g) was 38 at 840 s and 40 at 900 s.
    assert_eq!(
        ask("avg_over_time(sum(g)[2m:1m])").await,
        vec![(
            "{}".to_string(),
            points_at(&[(660.0, "31"), (780.0, "35"), (900.0, "39")])
        )]
    );
    // Of a rate, each series on its own; the default resolution is a minute.
    let peak = ask("max_over_time(rate(c_total[1m])[5m:])").await;
    assert_eq!(peak.len(), 1, "{peak:?}");
    assert_eq!(peak[0].0, r#"{"job":"x"}"#);
    assert_eq!(peak[0].1.len(), 3, "{peak:?}");
    assert!(peak[0].1.iter().all(|(_, v)| v == "2"), "{peak:?}");
    // A counter's increase over a subquery: 2 a second for 4 minutes.
    let up = ask("increase(sum(c_total)[4m:30s])").await;
    assert_eq!(up[0].1.last().unwrap().1, "480", "{up:?}");
    // An offset moves the whole subquery back: at 900 s, (660, 780] s; at 660 s,
    // (420, 540] s, before the first sample.
    assert_eq!(
        ask("max_over_time(g[2m:1m] offset 2m) - 10").await,
        vec![
            (a1, points_at(&[(780.0, "1"), (900.0, "3")])),
            (a2, points_at(&[(780.0, "11"), (900.0, "13")])),
        ]
    );
    // Under comparisons and aggregations like any other expression.
    assert_eq!(
        ask("count(max_over_time(g[4m:1m]) > 14)").await,
        vec![(
            "{}".to_string(),
            points_at(&[(660.0, "1"), (780.0, "1"), (900.0, "2")])
        )]
    );

    // What cannot be a subquery says how to write one.
    for (q, says) in [
        ("max_over_time(g[5m:0])", "not a duration"),
        ("max_over_time(g[soon:1m])", "not a duration"),
        ("max_over_time(3[5m:1m])", "not a number"),
        ("max_over_time(g[1000d:1s])", "resolution"),
    ] {
        let uri = format!("/api/v1/query?query={}&time=900", enc(q));
        let (code, body) = get(&app, &uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body.contains(says), "{q}: {body}");
    }
}

#[tokio::test]
async fn metadata_lists_what_sources_said_and_prescales_own_families() {
    use prescale_collect::scrape::MetricMeta;
    let dir = tempfile::tempdir().unwrap();
    // The fixture's engine has stored prescale_demand and the rest of its own.
    let state = fixture(dir.path());
    let meta = |kind: &str, help: &str, unit: &str| MetricMeta {
        kind: kind.into(),
        help: help.into(),
        unit: unit.into(),
    };
    state
        .metadata
        .remember([
            ("a_total".to_string(), meta("counter", "As A says.", "")),
            ("b".to_string(), meta("gauge", "", "bytes")),
        ])
        .unwrap();
    // A second target's # TYPE without # HELP keeps the help known.
    state
        .metadata
        .remember([("a_total".to_string(), meta("counter", "", ""))])
        .unwrap();
    // A family is listed while it has series: a histogram's by their suffixes.
    state
        .metadata
        .remember([
            ("c_seconds".to_string(), meta("histogram", "C.", "")),
            ("gone".to_string(), meta("gauge", "No series.", "")),
        ])
        .unwrap();
    for name in ["a_total", "b", "c_seconds_bucket", "c_seconds_sum"] {
        one_sample(&state.store, name);
    }
    let app = router(state);
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();
    let (code, body) = get(&app, "/api/v1/metadata").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let data = &json(&body)["data"];
    assert_eq!(
        data["a_total"],
        serde_json::json!([{"type": "counter", "help": "As A says.", "unit": ""}])
    );
    assert_eq!(data["b"][0]["unit"], "bytes", "{body}");
    assert_eq!(data["c_seconds"][0]["type"], "histogram", "{body}");
    assert!(data.get("gone").is_none(), "no series, not listed: {body}");
    assert_eq!(data["prescale_demand"][0]["type"], "gauge", "{body}");
    assert!(
        data.get("prescale_demand_memory").is_none(),
        "only families prescale has stored: {body}"
    );
    let (_, body) = get(&app, "/api/v1/metadata?metric=b").await;
    assert_eq!(json(&body)["data"].as_object().unwrap().len(), 1, "{body}");
    let (_, body) = get(&app, "/api/v1/metadata?limit=2").await;
    assert_eq!(json(&body)["data"].as_object().unwrap().len(), 2, "{body}");
    let (code, body) = get(&app, "/api/v1/metadata?limit_per_metric=x").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("limit_per_metric"), "{body}");
    let (code, body) = get(&app, "/api/v1/metadata?limit=some").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    // No rules and no exemplars, said as Prometheus says it, not a 404.
    for (path, data) in [
        ("/api/v1/rules", serde_json::json!({"groups": []})),
        ("/api/v1/alerts", serde_json::json!({"alerts": []})),
        ("/api/v1/query_exemplars?query=up", serde_json::json!([])),
    ] {
        let (code, body) = get(&app, path).await;
        assert_eq!(code, StatusCode::OK, "{path}: {body}");
        assert_eq!(json(&body)["data"], data, "{path}");
    }
}

#[tokio::test]
async fn metadata_outlives_a_restart_and_a_corrupt_document_is_skipped() {
    use prescale_collect::scrape::MetricMeta;
    let dir = tempfile::tempdir().unwrap();
    let c = Config::default();
    let meta = |kind: &str, help: &str| MetricMeta {
        kind: kind.into(),
        help: help.into(),
        unit: String::new(),
    };
    {
        let store = Store::open(dir.path(), Durability::Sync).unwrap();
        let state = AppState::new(&c, store.clone(), Default::default()).unwrap();
        state
            .metadata
            .remember([
                ("node_load1".to_string(), meta("gauge", "1m load average.")),
                ("http_requests_total".to_string(), meta("counter", "")),
            ])
            .unwrap();
        // Said again by another target, with its help: the saved family takes it.
        let saved = state
            .metadata
            .remember([("http_requests_total".to_string(), meta("", "Requests."))])
            .unwrap();
        assert_eq!(saved, 1);
        store.put_state("metadata/broken", &"not a family").unwrap();
        for name in ["node_load1", "http_requests_total", "broken"] {
            one_sample(&store, name);
        }
        // Dropped without a flush, as a crash would.
    }
    let store = Store::open(dir.path(), Durability::Sync).unwrap();
    let state = AppState::new(&c, store, Default::default()).unwrap();
    let app = router(state);
    let (code, body) = get(&app, "/api/v1/metadata").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let data = &serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"];
    assert_eq!(
        data["node_load1"],
        serde_json::json!([{"type": "gauge", "help": "1m load average.", "unit": ""}])
    );
    assert_eq!(
        data["http_requests_total"],
        serde_json::json!([{"type": "counter", "help": "Requests.", "unit": ""}])
    );
    assert!(data.get("broken").is_none(), "{body}");
}

#[tokio::test]
async fn metadata_lists_each_wording_of_a_family_and_saves_only_changes() {
    use prescale_collect::scrape::MetricMeta;
    let dir = tempfile::tempdir().unwrap();
    let state = fixture(dir.path());
    let meta = |kind: &str, help: &str| MetricMeta {
        kind: kind.into(),
        help: help.into(),
        unit: String::new(),
    };
    let old = (
        "go_goroutines".to_string(),
        meta("gauge", "Number of goroutines."),
    );
    let new = (
        "go_goroutines".to_string(),
        meta("gauge", "Number of goroutines that currently exist."),
    );
    // Two exporters' versions word it differently; scraped in turn, both are listed
    // and, once known, neither is saved again.
    assert_eq!(state.metadata.remember([old.clone()]).unwrap(), 1);
    assert_eq!(state.metadata.remember([new.clone()]).unwrap(), 1);
    for _ in 0..3 {
        assert_eq!(
            state.metadata.remember([old.clone(), new.clone()]).unwrap(),
            0
        );
    }
    // A bare # TYPE, or nothing at all, adds nothing.
    let bare = [
        ("go_goroutines".to_string(), meta("gauge", "")),
        ("nothing".to_string(), meta("", "")),
    ];
    assert_eq!(state.metadata.remember(bare).unwrap(), 0);
    // Past the limit, the oldest wording goes.
    for i in 0..METADATA_VARIANTS {
        let m = meta("gauge", &format!("Wording {i}."));
        state
            .metadata
            .remember([("go_goroutines".to_string(), m)])
            .unwrap();
    }
    one_sample(&state.store, "go_goroutines");
    let app = router(state);
    let (code, body) = get(&app, "/api/v1/metadata?metric=go_goroutines").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let data = &serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"];
    let listed = data["go_goroutines"].as_array().unwrap();
    assert_eq!(listed.len(), METADATA_VARIANTS, "{body}");
    assert_eq!(listed[0]["help"], "Wording 0.", "{body}");
    assert!(data.get("nothing").is_none(), "{body}");
    let (_, body) = get(
        &app,
        "/api/v1/metadata?metric=go_goroutines&limit_per_metric=2",
    )
    .await;
    let data = &serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"];
    assert_eq!(data["go_goroutines"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn timestamp_gives_each_samples_time() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    // Samples every minute from 600 s; asked at 700 s, the newest is from 660 s.
    gauges_and_a_counter(&store, &[(r#"g{a="1"}"#, 10.0), (r#"g{a="2"}"#, 20.0)]);
    let ask = |q: &str| {
        let app = app.clone();
        let uri = format!("/api/v1/query?query={}&time=700", enc(q));
        async move {
            let (code, body) = get(&app, &uri).await;
            (
                code,
                serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            )
        }
    };
    let (code, v) = ask(r#"timestamp(g{a="1"})"#).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([{"metric": {"a": "1"}, "value": [700.0, "660"]}])
    );
    // How stale each series is, and with an offset the sample's own time.
    let (_, v) = ask("time() - timestamp(g)").await;
    let ages: Vec<&str> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"][1].as_str().unwrap())
        .collect();
    assert_eq!(ages, ["40", "40"], "{v}");
    let (_, v) = ask(r#"timestamp(g{a="2"} offset 1m)"#).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "600", "{v}");
    // Of a computed value: the evaluation time.
    let (_, v) = ask("timestamp(sum(g))").await;
    assert_eq!(v["data"]["result"][0]["value"][1], "700", "{v}");
    let (code, v) = ask("timestamp(3)").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not a number"), "{v}");
}

#[tokio::test]
async fn comparisons_set_operators_and_offsets_follow_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    // And a gauge whose name starts with "or".
    gauges_and_a_counter(
        &store,
        &[
            (r#"g{a="1"}"#, 10.0),
            (r#"g{a="2"}"#, 20.0),
            ("order_cnt", 5.0),
        ],
    );
    // At 660, 780 and 900 s g{a="1"} is 11, 13, 15 and g{a="2"} 21, 23, 25.
    let window = "start=660&end=900&step=120";
    let ask = |query: &str| ask_range(app.clone(), query.to_string(), window);
    let at = |pts: &[(f64, &str)]| -> Vec<(f64, String)> {
        pts.iter().map(|(t, v)| (*t, v.to_string())).collect()
    };
    let g1 = r#"{"__name__":"g","a":"1"}"#;
    let g2 = r#"{"__name__":"g","a":"2"}"#;
    let all2 = at(&[(660.0, "21"), (780.0, "23"), (900.0, "25")]);

    // A comparison filters, keeping each series whole (its name too) where it holds,
    // whichever side the number is on.
    for query in ["g > 12", "12 < g", "(g) >= 13"] {
        assert_eq!(
            ask(query).await,
            vec![
                (g1.to_string(), at(&[(780.0, "13"), (900.0, "15")])),
                (g2.to_string(), all2.clone())
            ],
            "{query}"
        );
    }
    // With bool it answers 1 or 0 at every time, without the name.
    assert_eq!(
        ask("g{a=\"1\"} > bool 12").await,
        vec![(
            r#"{"a":"1"}"#.to_string(),
            at(&[(660.0, "0"), (780.0, "1"), (900.0, "1")])
        )]
    );
    assert_eq!(
        ask("2 > bool 1").await,
        vec![(
            "{}".to_string(),
            at(&[(660.0, "1"), (780.0, "1"), (900.0, "1")])
        )]
    );
    // Arithmetic binds tighter than a comparison, which binds tighter than and.
    assert_eq!(
        ask("g{a=\"2\"} - ignoring (a) g{a=\"1\"} == 10").await,
        vec![(
            "{}".to_string(),
            at(&[(660.0, "10"), (780.0, "10"), (900.0, "10")])
        )]
    );
    assert_eq!(
        ask("g > 12 and g < 15").await,
        vec![(g1.to_string(), at(&[(780.0, "13")]))]
    );
    // Between series, the left one's value where it holds, with its name.
    assert_eq!(
        ask("g{a=\"2\"} > ignoring (a) g{a=\"1\"}").await,
        vec![(r#"{"__name__":"g"}"#.to_string(), all2.clone())]
    );
    assert!(ask("g{a=\"1\"} > ignoring (a) g{a=\"2\"}").await.is_empty());
    // Set operators match many to many on the labels, at each time.
    assert_eq!(
        ask("g and g{a=\"1\"}").await,
        vec![(
            g1.to_string(),
            at(&[(660.0, "11"), (780.0, "13"), (900.0, "15")])
        )]
    );
    assert_eq!(ask("g and on () g{a=\"1\"}").await.len(), 2);
    assert_eq!(
        ask("g unless g{a=\"1\"}").await,
        vec![(g2.to_string(), all2.clone())]
    );
    assert!(ask("g unless on () g{a=\"1\"}").await.is_empty());
    // or fills a series' gaps from the right where the left has nothing like it.
    assert_eq!(
        ask("g > 12 or g").await,
        vec![
            (
                g1.to_string(),
                at(&[(660.0, "11"), (780.0, "13"), (900.0, "15")])
            ),
            (g2.to_string(), all2.clone())
        ]
    );
    let with_orders = ask("order_cnt or g{a=\"1\"}").await;
    assert_eq!(with_orders.len(), 2, "{with_orders:?}");
    assert_eq!(with_orders[1].0, r#"{"__name__":"order_cnt"}"#);
    // vector(N) fills in where nothing else has a value, as dashboards write it.
    assert_eq!(
        ask("sum(g{a=\"9\"}) or vector(0)").await,
        vec![(
            "{}".to_string(),
            at(&[(660.0, "0"), (780.0, "0"), (900.0, "0")])
        )]
    );
    assert_eq!(
        ask("sum(g) or vector(0)").await,
        vec![(
            "{}".to_string(),
            at(&[(660.0, "32"), (780.0, "36"), (900.0, "40")])
        )]
    );
    // time() is each evaluation time; scalar(X) the value of X's only series.
    let times = |v: [&str; 3]| {
        vec![(
            "{}".to_string(),
            at(&[(660.0, v[0]), (780.0, v[1]), (900.0, v[2])]),
        )]
    };
    assert_eq!(ask("time()").await, times(["660", "780", "900"]));
    assert_eq!(
        ask("vector(time()) - 600").await,
        times(["60", "180", "300"])
    );
    assert_eq!(ask("scalar(g{a=\"1\"})").await, times(["11", "13", "15"]));
    assert_eq!(ask("scalar(g)").await, times(["NaN", "NaN", "NaN"]));
    assert_eq!(ask("time() > bool 700").await, times(["0", "1", "1"]));
    assert_eq!(
        ask("g{a=\"1\"} - time() / 60").await,
        vec![(
            r#"{"a":"1"}"#.to_string(),
            at(&[(660.0, "0"), (780.0, "0"), (900.0, "0")])
        )]
    );
    assert_eq!(
        ask("g >= scalar(g{a=\"1\"}) + 10").await,
        vec![(g2.to_string(), all2.clone())],
        "g2 is 10 above g1 at every time, g1 never is"
    );
    assert!(ask("g > scalar(g{a=\"1\"}) + 10").await.is_empty());
    let (_, body) = get(
        &app,
        &format!(
            "/api/v1/query?query={}&time=700",
            crate::tests::enc("time()")
        ),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "scalar", "{body}");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([700.0, "700"]),
        "{body}"
    );
    // absent: 1 where nothing has a value, labelled with what the selector asks to equal.
    assert_eq!(
        ask("absent(g{a=\"9\", job=\"x\", b=~\"y\"})").await,
        vec![(
            r#"{"a":"9","job":"x"}"#.to_string(),
            at(&[(660.0, "1"), (780.0, "1"), (900.0, "1")])
        )]
    );
    assert!(ask("absent(g)").await.is_empty());
    assert_eq!(
        ask("absent(g{a=\"1\"} > 12)").await,
        vec![("{}".to_string(), at(&[(660.0, "1")]))]
    );
    // % and ^, ^ grouping from the right and binding tighter than *.
    assert_eq!(
        ask("g{a=\"1\"} % 4").await,
        vec![(
            r#"{"a":"1"}"#.to_string(),
            at(&[(660.0, "3"), (780.0, "1"), (900.0, "3")])
        )]
    );
    for (query, want) in [
        ("2 ^ 3 ^ 2", "512"),
        ("2 * 3 ^ 2", "18"),
        ("-2 ^ 2", "-4"),
        ("(-2) ^ 2", "4"),
    ] {
        assert_eq!(ask(query).await[0].1[0].1, want, "{query}");
    }
    // offset: each time's value from that long before (after, when negative); none
    // before the first sample (600 s).
    assert_eq!(
        ask("g{a=\"1\"} offset 2m").await,
        vec![(g1.to_string(), at(&[(780.0, "11"), (900.0, "13")]))]
    );
    assert_eq!(
        ask("g{a=\"1\"} offset -2m").await[0].1,
        at(&[(660.0, "13"), (780.0, "15"), (900.0, "17")])
    );
    assert_eq!(
        ask("sum(g offset 2m)").await[0].1,
        at(&[(780.0, "32"), (900.0, "36")])
    );
    assert_eq!(
        ask("g - g offset 2m").await[0].1,
        at(&[(780.0, "2"), (900.0, "2")])
    );
    assert_eq!(
        ask("-g{a=\"1\"} ^ 2").await,
        vec![(
            r#"{"a":"1"}"#.to_string(),
            at(&[(660.0, "-121"), (780.0, "-169"), (900.0, "-225")])
        )]
    );
    let rate = ask("rate(c_total[2m] offset 1m)").await;
    assert!(rate[0].1.iter().all(|p| p.1 == "2"), "{rate:?}");
    assert_eq!(
        ask("max_over_time(g{a=\"1\"}[2m] offset 2m)").await[0].1,
        at(&[(780.0, "11"), (900.0, "13")])
    );

    // Refusals say what to write instead.
    for (query, why) in [
        ("2 > 1", "needs bool"),
        ("g and 1", "works between series"),
        ("g + bool g", "bool follows a comparison"),
        ("g and on (a) group_left g", "do not apply to and"),
        ("g offset 5q", "is not an offset"),
        ("vector(g)", "takes a number"),
        ("absent(1)", "not a number"),
        ("absent(time())", "not a number"),
        ("time() > 700", "needs bool"),
        ("g and time()", "works between series"),
        ("time(g)", "takes no argument"),
    ] {
        let (code, body) = get(
            &app,
            &format!(
                "/api/v1/query_range?query={}&{window}",
                crate::tests::enc(query)
            ),
        )
        .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body.contains(why), "{query}: {body}");
    }
}

pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn bucket_quantiles_are_estimated_as_prometheus_does() {
    use crate::promql::bucket_quantile as bq;
    let inf = f64::INFINITY;
    let h = vec![(0.1, 1.0), (0.5, 3.0), (1.0, 4.0), (inf, 4.0)];
    assert!((bq(0.9, h.clone()) - 0.8).abs() < 1e-12);
    // In the first bucket, from 0; in +Inf, the highest finite bound.
    assert!((bq(0.1, h.clone()) - 0.04).abs() < 1e-12);
    assert_eq!(bq(0.9, vec![(1.0, 1.0), (inf, 10.0)]), 1.0);
    // Unsorted input and counts that dip are put right first.
    let dip = vec![(inf, 4.0), (0.5, 3.0), (1.0, 2.9), (0.1, 1.0)];
    assert!(
        (bq(0.75, dip) - 0.5).abs() < 1e-12,
        "rank 3 ends the 0.5 bucket"
    );
    // No +Inf bucket, one bucket, no observations, NaN: NaN; outside [0, 1]: infinite.
    assert!(bq(0.5, vec![(0.1, 1.0), (1.0, 2.0)]).is_nan());
    assert!(bq(0.5, vec![(inf, 2.0)]).is_nan());
    assert!(bq(0.5, vec![(0.1, 0.0), (inf, 0.0)]).is_nan());
    assert!(bq(f64::NAN, h.clone()).is_nan());
    assert_eq!(bq(-0.1, h.clone()), f64::NEG_INFINITY);
    assert_eq!(bq(1.1, h), f64::INFINITY);
}

#[test]
fn range_functions_on_time_follow_prometheus() {
    use crate::promql::{over_range, AggOp};
    let s = |t: i64, v: f64| Sample {
        ts: t * 1000,
        value: v,
    };
    // A counter that reset between its last two samples: irate counts from zero.
    let reset = [s(0, 100.0), s(10, 150.0), s(20, 30.0)];
    assert_eq!(over_range(AggOp::Irate, &reset, -5_000, 20_000), Some(3.0));
    assert_eq!(
        over_range(AggOp::Idelta, &reset, -5_000, 20_000),
        Some(-120.0)
    );
    // Samples within 1.1 intervals of both edges: the change is extended to them (a
    // range from -2 s to 30 s, samples 9 s apart from 1 s to 28 s: 27 s of change
    // extended by 3 and 2 s).
    let rising = [s(1, 0.0), s(10, 9.0), s(19, 18.0), s(28, 27.0)];
    let d = over_range(AggOp::Delta, &rising, -2_000, 30_000).unwrap();
    assert!((d - 32.0).abs() < 1e-9, "{d}");
    // A first sample far from the start: extended by half an interval there only.
    let d = over_range(AggOp::Delta, &rising, -60_000, 30_000).unwrap();
    assert!((d - 27.0 * (27.0 + 4.5 + 2.0) / 27.0).abs() < 1e-9, "{d}");
    // A line through noise-free points: its slope, and its value ahead.
    assert_eq!(over_range(AggOp::Deriv, &rising, -2_000, 30_000), Some(1.0));
    let ahead = over_range(AggOp::PredictLinear(60.0), &rising, -2_000, 30_000).unwrap();
    assert!((ahead - 89.0).abs() < 1e-9, "{ahead}");
    // changes counts the steps where the value moved (NaN to NaN is no change), resets
    // those where it fell; one sample has neither.
    let flappy = [
        s(0, 1.0),
        s(10, 1.0),
        s(20, 2.0),
        s(30, 1.0),
        s(40, f64::NAN),
        s(50, f64::NAN),
        s(60, 5.0),
    ];
    assert_eq!(over_range(AggOp::Changes, &flappy, -1, 60_000), Some(4.0));
    assert_eq!(over_range(AggOp::Resets, &flappy, -1, 60_000), Some(1.0));
    assert_eq!(over_range(AggOp::Resets, &reset, -1, 20_000), Some(1.0));
    for op in [AggOp::Changes, AggOp::Resets] {
        assert_eq!(over_range(op, &flappy[..1], -1, 0), Some(0.0), "{op:?}");
        assert_eq!(over_range(op, &[], -1, 0), None, "{op:?}");
    }
    // One sample is too few for any of them; none, nothing.
    for op in [AggOp::Delta, AggOp::Idelta, AggOp::Irate, AggOp::Deriv] {
        assert_eq!(over_range(op, &rising[..1], 0, 30_000), None, "{op:?}");
        assert_eq!(over_range(op, &[], 0, 30_000), None, "{op:?}");
    }
}

#[test]
fn thinning_keeps_each_slices_peak_or_mean() {
    let s = |ts: i64, value: f64| Sample { ts, value };
    let ten: Vec<Sample> = (0..10).map(|i| s(i * 1000, i as f64)).collect();
    // Five slices of 1.8 s from 0 to 9 s: two samples each, at the first one's time.
    let at = |v: &[Sample]| v.iter().map(|x| (x.ts, x.value)).collect::<Vec<_>>();
    assert_eq!(
        at(&crate::thin(ten.clone(), 5, false)),
        vec![(0, 1.0), (2000, 3.0), (4000, 5.0), (6000, 7.0), (8000, 9.0)]
    );
    assert_eq!(
        at(&crate::thin(ten.clone(), 5, true)),
        vec![(0, 0.5), (2000, 2.5), (4000, 4.5), (6000, 6.5), (8000, 8.5)]
    );
    // No more than asked for: as they are; none asked for: one.
    assert_eq!(crate::thin(ten.clone(), 10, false), ten);
    assert_eq!(at(&crate::thin(ten.clone(), 0, false)), vec![(0, 9.0)]);
    assert!(crate::thin(Vec::new(), 3, true).is_empty());
}

/// Line protocol for `db,host=H query_ms=...,requests_total=...i` at unix second `t`.
fn db_line(host: &str, t: i64, query_ms: f64, requests: i64) -> String {
    format!("db,host={host} query_ms={query_ms},requests_total={requests}i {t}\n")
}

#[tokio::test]
async fn every_written_series_is_watched_and_its_anomalies_kept_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000i64;
    // Query time wobbles about 12 ms with slow queries at steps 350 and 580; requests
    // come at about 100 a second with a burst of 1,000 at step 400, and the process
    // restarts (its counter starts again) at step 300, which is no anomaly. prescale
    // restarts after step 500.
    let mut lines = Vec::new();
    let mut total = 0i64;
    for i in 0..590i64 {
        let wobble = ((i as f64 * 0.7).sin() + (i as f64 * 1.3).cos()) / 2.0;
        let query_ms = if i == 350 || i == 580 {
            480.0
        } else {
            12.0 + wobble
        };
        let rate = if i == 400 {
            1000
        } else {
            100 + (5.0 * wobble) as i64
        };
        total = if i == 300 {
            rate * 15
        } else {
            total + rate * 15
        };
        lines.push(db_line("a", t0 + i * 15, query_ms, total));
    }
    {
        let store = Store::open(dir.path(), Durability::Sync).unwrap();
        let state = AppState::new(&Config::default(), store.clone(), Default::default()).unwrap();
        let app = router(state);
        for chunk in lines[..500].chunks(50) {
            let body = chunk.concat().into_bytes();
            let (code, text) = post(&app, "/api/v2/write?precision=s", &[], body.clone()).await;
            assert_eq!(code, StatusCode::NO_CONTENT, "{text}");
            // A sender's retry stores nothing again and is not judged again.
            let (code, _) = post(&app, "/api/v2/write?precision=s", &[], body).await;
            assert_eq!(code, StatusCode::NO_CONTENT);
        }
        // Samples are judged off the write path; the list waits for what was written.
        let (code, _) = get(&app, "/api/v1/anomalies").await;
        assert_eq!(code, StatusCode::OK);
        let (_, metrics) = get(&app, "/metrics").await;
        assert!(
            metrics.contains("\nprescale_anomaly_watched_series 2\n"),
            "{metrics}"
        );
        // 500 query times and 499 rates (a counter's first sample is its base).
        assert!(metrics.contains("\nprescale_anomaly_scored_samples_total 999\n"));
        assert!(metrics.contains("\nprescale_series_anomalies_total 2\n"));
        // Kept as series that Prometheus' API answers, with the source's name as a label.
        let (code, body) = get(
            &app,
            "/api/v1/query?query=max_over_time(prescale_anomaly_value[2h])&time=1700007500",
        )
        .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert!(body.contains(r#""series_name":"db_query_ms""#), "{body}");
        assert!(
            body.contains(r#""series_name":"db_requests_total""#),
            "{body}"
        );
        // Dropped without a flush, as a crash would.
    }
    let store = Store::open(dir.path(), Durability::Sync).unwrap();
    let state = AppState::new(&Config::default(), store, Default::default()).unwrap();
    let app = router(state);
    let window = format!("start={}&end={}", t0, t0 + 500 * 15);
    let (code, body) = get(&app, &format!("/api/v1/anomalies?{window}")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed = v["data"]["anomalies"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{body}");
    // Newest first: the burst of requests, judged by its rate, then the slow query.
    assert_eq!(listed[0]["series"], r#"db_requests_total{host="a"}"#);
    assert_eq!(listed[0]["time"], (t0 + 400 * 15) as f64);
    assert_eq!(listed[0]["value"], 1000.0);
    assert_eq!(listed[0]["judged"], "per-second rate");
    assert_eq!(listed[1]["metric"], "db_query_ms");
    assert_eq!(listed[1]["labels"]["host"], "a");
    assert_eq!(listed[1]["time"], (t0 + 350 * 15) as f64);
    assert_eq!(listed[1]["value"], 480.0);
    assert!(listed[1]["score"].as_f64().unwrap() >= 0.5, "{body}");
    // Each is set against what its series did in the hour before: query times of 11 to
    // 13 ms (240 of them), and about 100 requests a second.
    let before = &listed[1]["before"];
    assert_eq!(before["samples"], 240, "{before}");
    let p = |b: &serde_json::Value, q: &str| b[q].as_f64().unwrap();
    assert!(
        p(before, "p5") >= 11.0 && p(before, "p95") <= 13.0,
        "{before}"
    );
    assert!((11.5..12.5).contains(&p(before, "p50")), "{before}");
    assert!(
        (95.0..105.0).contains(&p(&listed[0]["before"], "p50")),
        "{body}"
    );
    // A fresh watch after the restart: nothing scored yet.
    assert_eq!(v["data"]["watch"]["scored"], 0);
    // Each series learns from its stored history when it is next written, so the slow
    // query at step 580 is found where a watch without it would still be learning (its
    // first 270 samples), and the counter's rate runs on from its last stored sample.
    let (code, _) = post(
        &app,
        "/api/v2/write?precision=s",
        &[],
        lines[500..].concat().into_bytes(),
    )
    .await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    let (_, body) = get(&app, "/api/v1/anomalies?start=1700000000&limit=1").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["anomalies"][0]["time"],
        (t0 + 580 * 15) as f64,
        "{body}"
    );
    assert_eq!(v["data"]["anomalies"][0]["metric"], "db_query_ms");
    assert_eq!(v["data"]["watch"]["scored"], 2 * 90, "{body}");
    assert_eq!(v["data"]["watch"]["found"], 1, "{body}");

    let (_, body) = get(
        &app,
        &format!("/api/v1/anomalies?{window}&match[]=db_query_ms"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["anomalies"].as_array().unwrap().len(),
        1,
        "{body}"
    );
    let (_, body) = get(&app, &format!("/api/v1/anomalies?{window}&limit=1")).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["anomalies"][0]["metric"], "db_requests_total");
    assert_eq!(v["data"]["anomalies"].as_array().unwrap().len(), 1);
    // The default window is the day up to now, long after these.
    let (_, body) = get(&app, "/api/v1/anomalies").await;
    assert!(body.contains(r#""anomalies":[]"#), "{body}");
    for (bad, says) in [
        ("limit=0", "`limit`"),
        ("start=soon", "`start`"),
        ("start=20&end=10", "after `end`"),
        ("min_score=2", "`min_score`"),
        ("match[]={}", "every series"),
    ] {
        let (code, body) = get(&app, &format!("/api/v1/anomalies?{bad}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains(says), "{bad}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_answered_while_the_watch_is_busy() {
    // After a restart each series first learns from its stored history, which took
    // 9.7 s for 5,000 series; a write waited for it. Now it is answered once stored.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Sync).unwrap();
    let state = AppState::new(&Config::default(), store.clone(), Default::default()).unwrap();
    let anomalies = state.anomalies.clone();
    let app = router(state);
    let body: String = (0..300i64)
        .map(|i| db_line("a", 1_700_000_000 + i * 15, 12.0 + (i % 3) as f64, i))
        .collect();
    // The watch held by another thread until told to let go.
    let (held, let_go) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let holder = {
        let (anomalies, held) = (anomalies.clone(), held.0);
        let let_go = let_go.1;
        std::thread::spawn(move || {
            let _busy = anomalies.hold();
            held.send(()).unwrap();
            let_go.recv().ok();
        })
    };
    held.1.recv().unwrap();
    let (code, said) = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        post(&app, "/api/v2/write?precision=s", &[], body.into_bytes()),
    )
    .await
    .expect("the write was answered while the watch was busy");
    assert_eq!(code, StatusCode::NO_CONTENT, "{said}");
    let key = SeriesKey::parse(r#"db_query_ms{host="a"}"#).unwrap();
    assert_eq!(
        store
            .range(&key, i64::MIN, i64::MAX)
            .unwrap()
            .unwrap()
            .len(),
        300
    );
    assert_eq!(anomalies.pending(), 1, "queued to be judged");
    // /metrics answers meanwhile, with the counts of the last batch judged.
    let (code, metrics) =
        tokio::time::timeout(std::time::Duration::from_secs(60), get(&app, "/metrics"))
            .await
            .expect("/metrics was answered while the watch was busy");
    assert_eq!(code, StatusCode::OK);
    assert!(
        metrics.contains("\nprescale_anomaly_scored_samples_total 0\n"),
        "{metrics}"
    );
    let_go.0.send(()).unwrap();
    holder.join().unwrap();
    assert!(anomalies.flush(std::time::Duration::from_secs(60)));
    assert_eq!(anomalies.pending(), 0);
    // The query times and the counter's rates (its first sample is its base).
    assert_eq!(anomalies.stats().unwrap().scored, 300 + 299);
}

#[tokio::test]
async fn detection_can_be_kept_to_the_series_selectors_pick() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.detect.match_ = vec!["db_query_ms".into(), r#"{__name__=~"up|scrape_.*"}"#.into()];
    let (app, _store) = writable(dir.path(), cfg);
    let body: String = (0..300i64)
        .map(|i| db_line("a", 1_700_000_000 + i * 15, 12.0 + (i % 3) as f64, i))
        .collect();
    let (code, _) = post(&app, "/api/v2/write?precision=s", &[], body.into_bytes()).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    // Judged off the write path; the list waits for what was written.
    let (code, _) = get(&app, "/api/v1/anomalies").await;
    assert_eq!(code, StatusCode::OK);
    // The query times, not the request counter.
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(
        metrics.contains("\nprescale_anomaly_watched_series 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("\nprescale_anomaly_scored_samples_total 300\n"));
}

#[tokio::test]
async fn detection_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.detect.enabled = false;
    let (app, store) = writable(dir.path(), cfg);
    let body: String = (0..300i64)
        .map(|i| {
            db_line(
                "a",
                1_700_000_000 + i * 15,
                if i == 250 { 480.0 } else { 12.0 },
                i,
            )
        })
        .collect();
    let (code, _) = post(&app, "/api/v2/write?precision=s", &[], body.into_bytes()).await;
    assert_eq!(code, StatusCode::NO_CONTENT);
    assert!(store
        .series()
        .iter()
        .all(|k| !k.name.starts_with("prescale_anomaly")));
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(!metrics.contains("prescale_anomaly_watched_series"));
    let (code, body) = get(&app, "/api/v1/anomalies").await;
    assert_eq!(code, StatusCode::OK);
    assert!(body.contains(r#""watch":null"#), "{body}");
}

#[tokio::test]
async fn label_values_may_hold_parentheses_and_brackets() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    // As node exporter's `node_os_info{pretty_name="Debian GNU/Linux 12 (bookworm)"}`.
    gauges_and_a_counter(
        &store,
        &[
            (r#"os_info{pretty_name="Debian 12 (bookworm)"}"#, 1.0),
            (r#"os_info{pretty_name="v[2]"}"#, 2.0),
        ],
    );
    for (q, want) in [
        (r#"os_info{pretty_name="Debian 12 (bookworm)"}"#, "2"),
        (
            r#"sum(os_info{pretty_name="Debian 12 (bookworm)"}) * 3"#,
            "6",
        ),
        (r#"os_info{pretty_name="v[2]"} + 1"#, "4"),
        (
            r#"max_over_time(os_info{pretty_name=~".*[(]bookworm[)]"}[5m])"#,
            "2",
        ),
        (r#"count_over_time(os_info{pretty_name="v[2]"}[2m])"#, "2"),
    ] {
        let uri = format!("/api/v1/query?query={}&time=700", enc(q));
        let (code, body) = get(&app, &uri).await;
        assert_eq!(code, StatusCode::OK, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["result"][0]["value"][1], want, "{q}: {v}");
    }
    // A range vector of one: its raw samples (1 at 600 s, 2 at 660 s, ...), up to 700 s.
    let q = r#"os_info{pretty_name="Debian 12 (bookworm)"}[2m]"#;
    let (code, body) = get(&app, &format!("/api/v1/query?query={}&time=700", enc(q))).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    assert_eq!(
        v["data"]["result"][0]["values"],
        serde_json::json!([[600.0, "1"], [660.0, "2"]]),
        "{v}"
    );
}

#[tokio::test]
async fn selectors_without_a_metric_name_pick_by_labels_and_name_matchers() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    gauges_and_a_counter(
        &store,
        &[
            (r#"node_load1{job="node"}"#, 1.0),
            (r#"node_load5{job="node"}"#, 5.0),
            (r#"db_ms{job="db"}"#, 50.0),
        ],
    );
    // At 700 s each gauge is its base + 1, and the counter (job "x") rises 2 a second.
    for (q, want) in [
        (r#"{job="node"}"#, vec!["node_load1 2", "node_load5 6"]),
        (
            r#"{__name__=~"node_load.*"}"#,
            vec!["node_load1 2", "node_load5 6"],
        ),
        (
            r#"{__name__=~"node_load.*",__name__!="node_load5"}"#,
            vec!["node_load1 2"],
        ),
        (r#"{__name__="db_ms"}"#, vec!["db_ms 51"]),
        (r#"sum({job=~"node|db"})"#, vec!["- 59"]),
        (r#"count by (job) ({job!=""})"#, vec!["- 2", "- 1", "- 1"]),
        (r#"max_over_time({job="db"}[2m])"#, vec!["- 51"]),
        (r#"rate({__name__=~"c_.*"}[1m])"#, vec!["- 2"]),
    ] {
        let uri = format!("/api/v1/query?query={}&time=700", enc(q));
        let (code, body) = get(&app, &uri).await;
        assert_eq!(code, StatusCode::OK, "{q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut got: Vec<String> = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["metric"]["__name__"].as_str().unwrap_or("-"),
                    r["value"][1].as_str().unwrap()
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<String> = want.into_iter().map(String::from).collect();
        want.sort();
        assert_eq!(got, want, "{q}: {v}");
    }
    // Prometheus refuses a selector every series would pass, and so does prescale.
    for q in [r#"{job=~".*"}"#, r#"{}"#, r#"{job=""}"#] {
        let uri = format!("/api/v1/query?query={}&time=700", enc(q));
        let (code, body) = get(&app, &uri).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q}: {body}");
        assert!(body.contains("every series"), "{q}: {body}");
    }
}

#[tokio::test]
async fn anomalies_group_into_events_by_instance_and_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    // Findings as the watch stores them: the source's labels and its name.
    let found = [
        ("a:9100", "node_cpu", 1000, 0.6),
        ("a:9100", "node_disk", 1030, 0.9),
        ("a:9100", "node_net", 1080, 0.7),
        ("a:9100", "node_cpu", 1300, 0.55),
        ("b:9100", "node_cpu", 1010, 0.8),
        ("", "db_ms", 1020, 0.65),
    ];
    for (instance, name, t, score) in found {
        let labels = if instance.is_empty() {
            format!(r#"series_name="{name}""#)
        } else {
            format!(r#"instance="{instance}",series_name="{name}""#)
        };
        for (what, v) in [("score", score), ("value", 42.0)] {
            let key = SeriesKey::parse(&format!("prescale_anomaly_{what}{{{labels}}}")).unwrap();
            store
                .append(
                    &key,
                    &[Sample {
                        ts: t * 1000,
                        value: v,
                    }],
                )
                .unwrap();
        }
    }
    let events = |query: &str| {
        let app = app.clone();
        let query = query.to_string();
        async move {
            let (code, body) = get(
                &app,
                &format!("/api/v1/anomalies?start=900&end=1400&group=events{query}"),
            )
            .await;
            assert_eq!(code, StatusCode::OK, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"].clone()
        }
    };
    // Newest first. Host a's anomalies at 1000, 1030 and 1080 are one event (each within
    // a minute of the next); its 1300 is another; b's and the series without an
    // instance are their own.
    let d = events("").await;
    assert_eq!(d["found"], 6, "{d}");
    assert_eq!(d["events_total"], 4, "{d}");
    let summary = |d: &serde_json::Value| -> Vec<(String, f64, f64, u64, u64, String)> {
        d["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["instance"].as_str().unwrap().to_string(),
                    e["start"].as_f64().unwrap(),
                    e["end"].as_f64().unwrap(),
                    e["anomalies"].as_u64().unwrap(),
                    e["series"].as_u64().unwrap(),
                    e["peak"]["metric"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let s = |i: &str, a, b, n, k, peak: &str| (i.to_string(), a, b, n, k, peak.to_string());
    assert_eq!(
        summary(&d),
        [
            s("a:9100", 1300.0, 1300.0, 1, 1, "node_cpu"),
            s("a:9100", 1000.0, 1080.0, 3, 3, "node_disk"),
            s("", 1020.0, 1020.0, 1, 1, "db_ms"),
            s("b:9100", 1010.0, 1010.0, 1, 1, "node_cpu"),
        ],
        "{d}"
    );
    let members: Vec<f64> = d["events"][1]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["time"].as_f64().unwrap())
        .collect();
    assert_eq!(members, [1080.0, 1030.0, 1000.0]);
    assert_eq!(d["events"][1]["peak"]["score"], 0.9);
    // Nothing of the source series is stored here to set the peak against.
    assert!(d["events"][1]["peak"]["before"].is_null(), "{d}");
    // A five-minute gap joins host a's two; the limit keeps the newest events.
    let d = events("&gap=5m").await;
    assert_eq!(
        summary(&d)[0],
        s("a:9100", 1000.0, 1300.0, 4, 3, "node_disk"),
        "{d}"
    );
    // What moved in it, the metric with the most anomalies first, ties by name.
    assert_eq!(
        d["events"][0]["metrics"],
        serde_json::json!([
            {"metric": "node_cpu", "anomalies": 2, "series": 1},
            {"metric": "node_disk", "anomalies": 1, "series": 1},
            {"metric": "node_net", "anomalies": 1, "series": 1},
        ]),
        "{d}"
    );
    let d = events("&limit=1").await;
    assert_eq!(d["events"].as_array().unwrap().len(), 1);
    assert_eq!(d["events_total"], 4);
    // Picked by match[] before grouping.
    let d = events("&match[]=node_cpu").await;
    assert_eq!(d["found"], 3, "{d}");
    for (bad, says) in [
        ("group=incidents", "`group`"),
        ("group=events&gap=soon", "`gap`"),
    ] {
        let (code, body) = get(&app, &format!("/api/v1/anomalies?{bad}")).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body.contains(says), "{bad}: {body}");
    }
}

/// Queries nested hundreds of levels deep are answered, and deeper ones refused, saying
/// why: 3,000 nested `abs(` overflowed the stack of the thread parsing them and aborted
/// the daemon. (A test thread's stack is 2 MiB, as the daemon's threads' are, and a
/// debug build's levels take many times the stack a release build's do.)
#[tokio::test]
async fn deep_queries_are_answered_or_refused_and_never_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(fixture(dir.path()));
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let x = r#"host_cpu_usage_cores{mode="busy"}"#;
    let nested =
        |open: &str, close: &str, n: usize| format!("{}{x}{}", open.repeat(n), close.repeat(n));
    let subqueries =
        |n: usize| (0..n).fold(x.to_string(), |q, _| format!("max_over_time(({q})[2m:1m])"));
    let ask = |q: String, path: &'static str| {
        let app = app.clone();
        async move {
            let time = if path.ends_with("range") {
                "start=2280&end=2400&step=60"
            } else {
                "time=2400"
            };
            let body = format!("query={}&{time}", enc(&q));
            post(&app, path, &form, body.into_bytes()).await
        }
    };
    // The sample at 39 minutes, 13, is the value at 2400 s (and 101 of it, summed).
    for (q, want) in [
        (nested("abs(", ")", 200), "13"),
        (nested("(", ")", 250), "13"),
        (nested("sum(", ")", 200), "13"),
        (nested("-", "", 200), "13"),
        (format!("{x}{}", format!(" + {x}").repeat(100)), "1313"),
        (format!("{x}{}", " * 1".repeat(200)), "13"),
        (subqueries(60), "13"),
    ] {
        let (code, body) = ask(q.clone(), "/api/v1/query").await;
        assert_eq!(code, StatusCode::OK, "{}...: {body}", &q[..40]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["data"]["result"][0]["value"][1], want, "{}...", &q[..40]);
        let (code, body) = ask(q.clone(), "/api/v1/query_range").await;
        assert_eq!(code, StatusCode::OK, "{}...: {body}", &q[..40]);
    }
    for q in [
        nested("abs(", ")", 3000),
        nested("(", ")", 3000),
        nested("sum(", ")", 300),
        nested("-", "", 3000),
        format!("{x}{}", format!(" + {x}").repeat(3000)),
        subqueries(200),
    ] {
        for path in ["/api/v1/query", "/api/v1/query_range"] {
            let (code, body) = ask(q.clone(), path).await;
            assert_eq!(code, StatusCode::BAD_REQUEST, "{}...: {body}", &q[..40]);
            assert!(body.contains("nests more than 256 levels"), "{body}");
        }
    }
    // A long query nested a few levels (a dashboard's regex of every pod) is answered;
    // one nested a hundred levels around a megabyte, whose levels the parser would
    // rescan for seconds, is refused saying why.
    let modes: String = (0..20_000).map(|i| format!("i{i:05}|")).collect();
    let wide = format!(r#"host_cpu_usage_cores{{mode=~"{modes}busy"}}"#);
    let (code, body) = ask(format!("sum(abs({wide}))"), "/api/v1/query").await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "13");
    let huge = format!("{}{}", modes.repeat(8), "busy");
    let deep = format!(
        r#"{}host_cpu_usage_cores{{mode=~"{huge}"}}{}"#,
        "abs(".repeat(100),
        ")".repeat(100)
    );
    let (code, body) = ask(deep, "/api/v1/query").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("too long for how deep it nests"), "{body}");
    assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok\n".into()));
}

/// Thousands of corrupted queries (characters cut, repeated and inserted, numbers and
/// durations at their types' edges, queries wrapped in functions and joined by
/// operators): each is answered or refused with a 400 that says why, on both query
/// endpoints; none panics or fails as the server's fault.
#[tokio::test]
async fn corrupted_queries_are_answered_or_refused() {
    const QUERIES: &[&str] = &[
        r#"g{a=~"1|2"}"#,
        "sum by (a) (g) * 2 + 1",
        "2 ^ 3 ^ 0.5 * g",
        r#"g{a="1"} / on () group_left g{a="2"}"#,
        "g > bool 60 or vector(0) unless g",
        "quantile_over_time(0.9, g[10m]) - predict_linear(g[10m], 600)",
        "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m])))",
        "topk(1, rate(c_total[5m] offset 1m @ 900))",
        "max_over_time(rate(c_total[5m])[10m:1m])",
        r#"label_replace(g, "x", "id-$1", "a", "(.*)")"#,
        r#"label_join(g, "ab", "-", "a", "job")"#,
        r#"count_values without (a) ("v", round(g / 10, 5))"#,
        "clamp(g, 40, 90) % 7",
        "absent_over_time(g[3m]) or scalar(sum(g)) * time()",
        "day_of_week(timestamp(g)) and hour() >= 1",
        "sort_desc(quantile by (a) (0.5, irate(c_total[5m])))",
        "g[5m] @ end()",
    ];
    const SPECIALS: &[&str] = &[
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        ",",
        "\"",
        "`",
        "\\",
        "=~",
        "@",
        "offset",
        "-",
        "^",
        "bool",
        "on()",
        "group_left",
        "by ()",
        "0",
        "-1",
        "1e308",
        "NaN",
        "-Inf",
        "0x1f",
        "0s",
        "-5m",
        "99999999999999999d",
        ":",
        "[1m:0s]",
        "start()",
        "$1",
        "é",
        "or",
        "9223372036854775807",
    ];
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    gauges_and_a_counter(&store, &[(r#"g{a="1"}"#, 10.0), (r#"g{a="2"}"#, 20.0)]);
    for (le, per) in [("0.1", 3.0), ("+Inf", 10.0)] {
        let key = SeriesKey::parse(&format!(r#"lat_bucket{{le="{le}"}}"#)).unwrap();
        let samples: Vec<Sample> = (0..20)
            .map(|i| Sample::new(600_000 + i * 30_000, per * i as f64).unwrap())
            .collect();
        store.append(&key, &samples).unwrap();
    }
    let form = [("content-type", "application/x-www-form-urlencoded")];
    // xorshift: the same corruptions every run.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let (mut answered, mut refused) = (0, 0);
    for round in 0..1_500 {
        let mut q: Vec<char> = QUERIES[round % QUERIES.len()].chars().collect();
        for _ in 0..1 + next(4) {
            let at = next(q.len() + 1);
            match next(5) {
                0 if at < q.len() => drop(q.remove(at)),
                1 => {
                    let s = SPECIALS[next(SPECIALS.len())];
                    q.splice(at..at, s.chars());
                }
                2 => {
                    let to = at + next(q.len() - at + 1);
                    let piece: Vec<char> = q[at..to].to_vec();
                    let to = next(q.len() + 1);
                    q.splice(to..to, piece);
                }
                3 => {
                    let other = QUERIES[next(QUERIES.len())];
                    let f = ["abs", "sum", "rate", "vector", "scalar", "topk(2,", "sort"][next(7)];
                    q = format!("{f}({}) + {other}", q.iter().collect::<String>())
                        .chars()
                        .collect();
                }
                _ => {
                    let to = at + next(q.len() - at + 1);
                    q.drain(at..to);
                }
            }
        }
        let q: String = q.into_iter().collect();
        for path in ["/api/v1/query", "/api/v1/query_range"] {
            let body = format!("query={}&time=900&start=600&end=1200&step=60", enc(&q));
            let (code, out) = post(&app, path, &form, body.into_bytes()).await;
            let v: serde_json::Value =
                serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path} {q:?}: {e}: {out}"));
            match code {
                StatusCode::OK => answered += 1,
                StatusCode::BAD_REQUEST if v["error"].as_str().is_some_and(|e| !e.is_empty()) => {
                    refused += 1
                }
                _ => panic!("{path} {q:?}: {code} {out}"),
            }
        }
    }
    // Both kinds are exercised: about one in ten corruptions still parses (324 of 3,000).
    assert!(
        answered >= 100 && refused >= 1_000,
        "{answered} answered, {refused} refused"
    );
}

/// Times and durations as far out as they are read (2^53 ms either side of 1970)
/// combine without overflowing, and further ones are refused: `time=1e300` made
/// `x offset -1w` overflow (a panic in a debug build, a wrapped time in a release one).
#[tokio::test]
async fn times_and_durations_at_their_limits_never_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    gauges_and_a_counter(&store, &[(r#"g{a="1"}"#, 10.0)]);
    let longest = "14892855w"; // the most whole weeks within 2^53 ms
    let queries = [
        format!("g offset -{longest}"),
        format!("g offset {longest}"),
        format!("rate(c_total[{longest}] offset -{longest})"),
        format!("max_over_time((g offset -{longest})[{longest}:{longest}] offset -{longest})"),
        format!("predict_linear(g[{longest}], 1e300)"),
        "g @ 9007199254740 offset -1w".to_string(),
        "g @ -9007199254740 offset 1w".to_string(),
        "days_in_month(vector(1e300)) + year(vector(-1e300))".to_string(),
    ];
    for t in ["9007199254740", "-9007199254740", "900"] {
        for q in &queries {
            for (path, times) in [
                ("/api/v1/query", format!("time={t}")),
                ("/api/v1/query_range", format!("start={t}&end={t}&step=60")),
            ] {
                let (code, out) = get(&app, &format!("{path}?query={}&{times}", enc(q))).await;
                assert_eq!(code, StatusCode::OK, "{path} {q} at {t}: {out}");
            }
        }
    }
    // A negative @ is a time before 1970 (a sign, not a subtraction).
    let (code, out) = get(&app, &format!("/api/v1/query?query={}", enc("g @ -1"))).await;
    assert_eq!(code, StatusCode::OK, "{out}");
    for (q, time, says) in [
        ("g", "1e300", "`time` must be"),
        ("g", "-9007199254741", "`time` must be"),
        ("g @ 9007199254741", "900", "after @ is not a time"),
        ("g offset 14892856w", "900", "is not an offset"),
        ("rate(c_total[14892856w])", "900", "is not a range"),
    ] {
        let (code, out) = get(&app, &format!("/api/v1/query?query={}&time={time}", enc(q))).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{q} at {time}: {out}");
        assert!(out.contains(says), "{q} at {time}: {out}");
    }
    let (code, out) = get(&app, "/api/v1/series?match[]=g&start=-1e300").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{out}");
}

/// A sample stamped more than ten minutes ahead of the server's clock is refused,
/// saying so, by every receiver, and the rest of the write is stored: one stamped years
/// ahead would be the newest of all that long, and the anomaly watch would let go of
/// every other series as idle.
#[tokio::test]
async fn samples_from_the_future_are_refused_and_the_rest_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (app, store) = writable(dir.path(), Config::default());
    let now = prescale_core::now_ms();
    let year = 365 * 86_400_000;
    let key = SeriesKey::parse(r#"up{job="a"}"#).unwrap();
    let batch = vec![(
        key.clone(),
        [now - 1_000, now + 60_000, now + year]
            .into_iter()
            .map(|ts| Sample::new(ts, 1.0).unwrap())
            .collect::<Vec<_>>(),
    )];
    let (code, body) = post(
        &app,
        "/api/v1/write",
        &[SNAPPY],
        prescale_collect::receive::encode_remote_write(&batch),
    )
    .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("stored 2 samples"), "{body}");
    assert!(
        body.contains(&format!(
            r#"up{{job="a"}}: 1 samples from {} ms on are more than 10 minutes ahead of this server's clock"#,
            now + year
        )),
        "{body}"
    );
    // A minute ahead is within a sender's clock drift: stored.
    let stored: Vec<i64> = values(&store, r#"up{job="a"}"#)
        .iter()
        .map(|v| v.0)
        .collect();
    assert_eq!(stored, vec![now - 1_000, now + 60_000]);

    // Milliseconds read as seconds are tens of thousands of years ahead: refused.
    let line = format!("cpu,host=a busy=2 {now}\n");
    let (code, body) = post(&app, "/write?precision=s", &[], line.into_bytes()).await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("stored 0 samples"), "{body}");
    assert!(body.contains("ahead of this server's clock"), "{body}");
    assert!(values(&store, r#"cpu_busy{host="a"}"#).is_empty());

    let (_, metrics) = get(&app, "/metrics").await;
    for line in [
        r#"prescale_received_samples_total{receiver="remote_write",outcome="rejected"} 1"#,
        r#"prescale_receive_unreadable_total{receiver="remote_write"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

/// A daemon's state whose engine manages `host` and was left holding capacity for
/// `batch` by a reload, with the release and pauses wired as `prescale run` wires them
/// (the release on the engine's clock, at 41 minutes).
fn with_unmanaged(dir: &std::path::Path, cfg: &Config) -> AppState {
    let store = Store::open(dir, Durability::Buffered).unwrap();
    let key = SeriesKey::parse(r#"host_cpu_usage_cores{mode="busy"}"#).unwrap();
    for m in 0..40i64 {
        let s = Sample {
            ts: m * 60_000,
            value: 9.0,
        };
        store.append(&key, &[s]).unwrap();
    }
    let mut both = cfg.clone();
    let mut batch = both.workloads[0].clone();
    batch.name = "batch".into();
    both.workloads.push(batch);
    let mut e = Engine::from_config(&both, 0, store.clone(), SimCloud::new(&cfg.tiers, 1));
    e.tick(40 * 60_000).unwrap();
    let sim = SimCloud::new(&cfg.tiers, 1);
    e.reconfigure(
        cfg.tiers.clone(),
        cfg.workloads.clone(),
        60_000,
        sim,
        40 * 60_000 + 1,
    );
    let mut st = AppState::new(cfg, store, e.status_handle()).unwrap();
    let e = std::sync::Arc::new(std::sync::Mutex::new(e));
    st.release = Some({
        let e = e.clone();
        std::sync::Arc::new(move |name: &str| e.lock().unwrap().release(name, 41 * 60_000))
    });
    // Pauses are made at the request's time, by the wall clock (the engine's passes
    // above ran in 1970).
    let paused = e.clone();
    st.pause = Some(std::sync::Arc::new(move |name: &str, ask, now| {
        let mut e = paused.lock().unwrap();
        match ask {
            Some((scope, until, reason)) => e.pause(name, scope, until, &reason, now).map(Some),
            None => e.resume(name, now),
        }
    }));
    st.events = Some(std::sync::Arc::new(move |name: &str, ask, now| {
        let mut e = e.lock().unwrap();
        match ask {
            crate::EventAsk::Declare(ev) => e
                .declare_event(name, ev, now)
                .map(crate::EventDone::Declared),
            crate::EventAsk::Cancel(ev) => e
                .cancel_event(name, &ev, now)
                .map(crate::EventDone::Cancelled),
        }
    }));
    st
}

#[tokio::test]
async fn a_planned_event_is_declared_listed_and_cancelled_through_the_api_with_the_token_rule() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(with_unmanaged(
        &dir.path().join("local"),
        &Config::default(),
    ));
    let hour = 3_600_000;
    let now = prescale_core::now_ms() / 1000 * 1000;
    let ts = |t: i64| prescale_core::format_ts(t);
    let body = |name: &str, from: i64, to: i64, rest: &str| {
        format!(
            r#"{{"name": "{name}", "start": "{}", "end": "{}"{rest}}}"#,
            ts(from),
            ts(to)
        )
        .into_bytes()
    };
    let declare = "/api/v1/workloads/host/events";
    // Refusals say what to send instead.
    for (sent, code, says) in [
        (
            b"scale=2".to_vec(),
            400,
            "the body must be a planned event as JSON, e.g. {",
        ),
        (
            body("x", now + hour, now + 2 * hour, r#", "scal": 2"#),
            400,
            "unknown field `scal`",
        ),
        (
            body("x", now - 2 * hour, now - hour, r#", "scale": 2"#),
            400,
            "event `end`: ",
        ),
        (
            body("x", now + hour, now + 2 * hour, ""),
            400,
            "changes nothing: give a scale other than 1, a min_demand or min_dimensions",
        ),
        (
            body("x", now + 2 * hour, now + hour, r#", "scale": 2"#),
            400,
            "is not after start",
        ),
    ] {
        let (c, text) = post(&app, declare, &[], sent.clone()).await;
        assert_eq!(
            c.as_u16(),
            code,
            "{}: {text}",
            String::from_utf8_lossy(&sent)
        );
        assert!(
            text.contains(says),
            "{}: {text}",
            String::from_utf8_lossy(&sent)
        );
    }
    let test = body(
        "load test",
        now + hour,
        now + 3 * hour,
        r#", "scale": 2, "min_demand": 40"#,
    );
    let (c, text) = post(&app, "/api/v1/workloads/nobody/events", &[], test.clone()).await;
    assert_eq!(c, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("configured: host"), "{text}");
    // Declared: answered, listed with where it comes from, exported, logged.
    let (c, text) = post(&app, declare, &[], test.clone()).await;
    assert_eq!(c, StatusCode::OK, "{text}");
    assert!(text.contains(r#""replaced":null"#), "{text}");
    let (c, text) = get(&app, declare).await;
    assert_eq!(c, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let listed = &v["data"][0];
    assert_eq!(
        (
            &listed["name"],
            &listed["source"],
            &listed["state"],
            &listed["min_demand"]
        ),
        (
            &json!("load test"),
            &json!("api"),
            &json!("ahead"),
            &json!(40.0)
        ),
        "{text}"
    );
    assert_eq!(listed["start"], json!(ts(now + hour)), "{text}");
    assert!(listed.get("review").is_none(), "not begun: {text}");
    let (_, text) = get(&app, "/api/v1/workloads/host/status").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["declared"], json!(["load test"]), "{text}");
    let (_, metrics) = get(&app, "/metrics").await;
    let line = format!(
        "prescale_workload_event_start_seconds{{workload=\"host\",event=\"load test\"}} {}",
        (now + hour) / 1000
    );
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    let (_, text) = get(&app, "/api/v1/workloads/host/decisions?kind=config").await;
    assert!(
        text.contains("planned event \\\"load test\\\" declared, as asked (`POST /api/v1/workloads/host/events`)"),
        "{text}"
    );
    // Declared again under its name: changed, and the one replaced answered.
    let (c, text) = post(
        &app,
        declare,
        &[],
        body("load test", now + hour, now + 4 * hour, r#", "scale": 3"#),
    )
    .await;
    assert_eq!(c, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["replaced"]["min_demand"], json!(40.0), "{text}");
    // Cancelled: 404 for a name not declared, then gone from the list.
    let cancel = |name: &str| format!("/api/v1/workloads/host/events/{name}/cancel");
    let (c, text) = post(&app, &cancel("nope"), &[], Vec::new()).await;
    assert_eq!(c, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("declared: load test"), "{text}");
    let (c, text) = post(&app, &cancel("load%20test"), &[], Vec::new()).await;
    assert_eq!(c, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["cancelled"]["scale"], json!(3.0), "{text}");
    let (_, text) = get(&app, declare).await;
    assert_eq!(text, r#"{"data":[],"status":"success"}"#);
    let (c, text) = get(&app, "/api/v1/workloads/nobody/events").await;
    assert_eq!(c, StatusCode::NOT_FOUND, "{text}");

    // Beyond loopback without a token: refused; with one, only with it.
    let app = router(with_unmanaged(&dir.path().join("open"), &exposed()));
    let (c, text) = post(&app, declare, &[], test.clone()).await;
    assert_eq!(c, StatusCode::FORBIDDEN, "{text}");
    let mut open = exposed();
    open.server.token_file = with_token(dir.path()).server.token_file;
    let app = router(with_unmanaged(&dir.path().join("token-data"), &open));
    let (c, text) = post(&app, &cancel("x"), &[], Vec::new()).await;
    assert_eq!(c, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        text.contains("cancelling a planned event needs the token"),
        "{text}"
    );
    let right = ("authorization", "Bearer s3cret");
    let (c, text) = post(&app, declare, &[right], test.clone()).await;
    assert_eq!(c, StatusCode::OK, "{text}");
    // Where none is declared (prescale demo), it says so.
    let app = router(fixture(&dir.path().join("fixture")));
    let (c, text) = post(&app, declare, &[], test).await;
    assert_eq!(c, StatusCode::NOT_FOUND);
    assert!(text.contains("`prescale run` does"), "{text}");
}

#[test]
fn the_watch_leaves_declared_events_unjudged_as_configured_ones() {
    let cfg = Config::default();
    let mut status = prescale_orchestrate::Status::default();
    let launch = prescale_core::PlannedEvent {
        name: "launch".into(),
        start: prescale_core::EventTime(1_000),
        end: prescale_core::EventTime(2_000),
        scale: 2.0,
        min_demand: None,
        recurring: None,
        min_dimensions: Default::default(),
    };
    let mut w = WorkloadStatus {
        events: vec![launch.clone()],
        ..WorkloadStatus::default()
    };
    status.workloads.insert("host".into(), w.clone());
    // Configured (the status shows it, it is not declared): not added twice.
    let mut configured = cfg.workloads.clone();
    configured[0].events = vec![launch.clone()];
    assert_eq!(
        crate::with_declared(&configured, &status)[0].events,
        vec![launch.clone()]
    );
    // Declared: added to those configured.
    w.declared = vec!["launch".into()];
    status.workloads.insert("host".into(), w);
    assert_eq!(
        crate::with_declared(&cfg.workloads, &status)[0].events,
        vec![launch]
    );
}

#[tokio::test]
async fn a_workload_is_paused_and_resumed_through_the_api_with_the_token_rule() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(with_unmanaged(
        &dir.path().join("local"),
        &Config::default(),
    ));
    let pause = |q: &str| format!("/api/v1/workloads/host/pause?{q}");
    // Refusals say what to send instead.
    for (q, code, says) in [
        ("", 400, "a pause needs `scope`: all (capacity left as it is) or scale-down (none removed)"),
        ("scope=sometimes&for=1h", 400, "`scope` must be all (capacity left as it is) or scale-down (none removed), not \\\"sometimes\\\""),
        ("scope=all", 400, "a pause needs an end: `for` (a duration, e.g. 2h) or `until` (unix seconds or RFC 3339)"),
        ("scope=all&for=2x", 400, "`for` must be a positive duration with one unit (30m, 2h, 1d), not \\\"2x\\\""),
        ("scope=all&for=1h&until=3000", 400, "give `for` or `until`, not both"),
        ("scope=all&until=tomorrow", 400, "`until` must be unix seconds or RFC 3339"),
        ("scope=all&until=60", 400, "and within 366 days of it, not at 1970-01-01T00:01:00Z"),
        ("scope=all&until=1e12", 400, "within 366 days of it, not at 1000000000000000 ms"),
        ("scope=all&limit=3", 400, "unknown field `limit`"),
    ] {
        let (c, text) = post(&app, &pause(q), &[], Vec::new()).await;
        assert_eq!(c.as_u16(), code, "{q}: {text}");
        assert!(text.contains(says), "{q}: {text}");
    }
    let long = format!("scope=all&for=1h&reason={}", "x".repeat(501));
    let (c, text) = post(&app, &pause(&long), &[], Vec::new()).await;
    assert_eq!(c, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains("`reason` is longer than 500 characters"),
        "{text}"
    );
    let (c, text) = post(
        &app,
        "/api/v1/workloads/nobody/pause?scope=all&for=1h",
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(c, StatusCode::NOT_FOUND, "{text}");
    assert!(
        text.contains("no configured workload is named `nobody`; configured: host"),
        "{text}"
    );
    let (c, text) = post(&app, "/api/v1/workloads/host/stop", &[], Vec::new()).await;
    assert_eq!(c, StatusCode::NOT_FOUND, "{text}");
    assert!(
        text.contains("POST /api/v1/workloads/host/pause or /resume"),
        "{text}"
    );
    // Paused: answered with the pause, shown in the status, exported, logged.
    let (c, text) = post(
        &app,
        &pause("scope=scale-down&for=3h&reason=incident%2042"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(c, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = v["data"]["paused"].clone();
    let (since, until) = (p["since"].as_i64().unwrap(), p["until"].as_i64().unwrap());
    assert_eq!(until - since, 3 * 3_600_000, "{text}");
    assert!((since - prescale_core::now_ms()).abs() < 60_000, "{text}");
    assert_eq!(
        (p["scope"].as_str(), p["reason"].as_str()),
        (Some("scale-down"), Some("incident 42")),
        "{text}"
    );
    let (_, text) = get(&app, "/api/v1/workloads").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["workloads"][0]["paused"], p, "{text}");
    let (_, text) = get(&app, "/api/v1/workloads/host/status").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["paused"], p, "{text}");
    let (_, metrics) = get(&app, "/metrics").await;
    for line in [
        "prescale_workload_paused{workload=\"host\"} 1",
        &format!(
            "prescale_workload_paused_until_seconds{{workload=\"host\",scope=\"scale-down\"}} {}",
            until as f64 / 1000.0
        ),
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    let (_, text) = get(&app, "/api/v1/workloads/host/decisions?kind=config").await;
    assert!(
        text.contains(&format!(
            "paused (scale-down) until {} for \\\"incident 42\\\", as asked",
            prescale_core::format_ts(until)
        )),
        "{text}"
    );
    // Resumed: the pause lifted is answered, then nothing.
    let resume = "/api/v1/workloads/host/resume";
    let (c, text) = post(&app, resume, &[], Vec::new()).await;
    assert_eq!(c, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["lifted"], p, "{text}");
    let (_, text) = post(&app, resume, &[], Vec::new()).await;
    assert!(text.contains("\"lifted\":null"), "{text}");
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(
        metrics.contains("prescale_workload_paused{workload=\"host\"} 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("prescale_workload_paused_until_seconds{"),
        "{metrics}"
    );

    // Beyond loopback without a token: refused; with one, only with it.
    let app = router(with_unmanaged(&dir.path().join("open"), &exposed()));
    let (c, text) = post(&app, &pause("scope=all&for=1h"), &[], Vec::new()).await;
    assert_eq!(c, StatusCode::FORBIDDEN, "{text}");
    let mut open = exposed();
    open.server.token_file = with_token(dir.path()).server.token_file;
    let app = router(with_unmanaged(&dir.path().join("token-data"), &open));
    let (c, text) = post(&app, resume, &[], Vec::new()).await;
    assert_eq!(c, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        text.contains("pausing or resuming a workload needs the token"),
        "{text}"
    );
    let right = ("authorization", "Bearer s3cret");
    let (c, text) = post(&app, &pause("scope=all&for=1h"), &[right], Vec::new()).await;
    assert_eq!(c, StatusCode::OK, "{text}");
    // Where nothing pauses (prescale demo), it says so.
    let app = router(fixture(&dir.path().join("fixture")));
    let (c, text) = post(&app, &pause("scope=all&for=1h"), &[], Vec::new()).await;
    assert_eq!(c, StatusCode::NOT_FOUND);
    assert!(text.contains("`prescale run` does"), "{text}");
}

#[tokio::test]
async fn unmanaged_capacity_is_listed_and_released_with_the_token_rule() {
    let dir = tempfile::tempdir().unwrap();
    // Listed, priced and exported.
    let app = router(with_unmanaged(
        &dir.path().join("local"),
        &Config::default(),
    ));
    let (code, text) = get(&app, "/api/v1/unmanaged").await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let batch = &v["data"]["workloads"]["batch"];
    let held = batch["instances"].clone();
    assert!(held.as_object().is_some_and(|h| !h.is_empty()), "{text}");
    let cost = batch["cost_per_hour"].as_f64().unwrap();
    assert!(cost > 0.0 && v["data"]["cost_per_hour"] == cost, "{text}");
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(
        metrics.contains(&format!(
            "prescale_unmanaged_cost_per_hour{{workload=\"batch\"}} {cost}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("prescale_unmanaged_instances{workload=\"batch\",tier=\""));
    // Refusals, each with its code.
    let release = |name: &str| format!("/api/v1/unmanaged/{name}/release");
    let (code, text) = post(&app, &release("host"), &[], Vec::new()).await;
    assert_eq!(code, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("remove it from the configuration"), "{text}");
    let (code, text) = post(&app, &release("bacth"), &[], Vec::new()).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{text}");
    assert!(text.contains("unmanaged: batch"), "{text}");
    let (code, _) = get(&app, &release("batch")).await;
    assert_eq!(
        code,
        StatusCode::METHOD_NOT_ALLOWED,
        "a link releases nothing"
    );
    // On loopback without a token, as a reload.
    let (code, text) = post(&app, &release("batch"), &[], Vec::new()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["released"], held, "{text}");
    let (_, text) = get(&app, "/api/v1/unmanaged").await;
    assert!(text.contains("\"workloads\":{}"), "{text}");
    // The decision log of a workload no longer configured stays readable.
    let (code, text) = get(&app, "/api/v1/workloads/batch/decisions?kind=act").await;
    assert_eq!(code, StatusCode::OK, "{text}");
    assert!(text.contains("as asked"), "{text}");
    let (code, _) = get(&app, "/api/v1/workloads/nobody/decisions").await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Beyond loopback without a token: refused; with one, only with it.
    let app = router(with_unmanaged(&dir.path().join("open"), &exposed()));
    let (code, text) = post(&app, &release("batch"), &[], Vec::new()).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("server.token_file"), "{text}");
    let mut open = exposed();
    open.server.token_file = with_token(dir.path()).server.token_file;
    let app = router(with_unmanaged(&dir.path().join("token-data"), &open));
    let (code, text) = post(&app, &release("batch"), &[], Vec::new()).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{text}");
    assert!(
        text.contains("releasing capacity needs the token"),
        "{text}"
    );
    let right = ("authorization", "Bearer s3cret");
    let (code, text) = post(&app, &release("batch"), &[right], Vec::new()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    // Where nothing releases (prescale demo), it says so.
    let app = router(fixture(&dir.path().join("fixture")));
    let (code, text) = post(&app, &release("batch"), &[], Vec::new()).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(text.contains("`prescale run` does"), "{text}");
}

/// `st` taking part in leader election as `identity`, holding the lease or not.
fn elected(
    mut st: AppState,
    identity: &str,
    leading: bool,
    advertise_url: Option<&str>,
) -> (AppState, Arc<Leadership>) {
    let l = Arc::new(Leadership {
        lease: "shop/prescale".into(),
        identity: identity.into(),
        advertise_url: advertise_url.map(str::to_string),
        ..Default::default()
    });
    l.leading.store(leading, Ordering::Relaxed);
    st.leadership = Some(l.clone());
    (st, l)
}

#[tokio::test]
async fn a_standby_leaves_plans_out_of_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (st, lead) = elected(fixture(dir.path()), "prescale-0", true, None);
    let app = router(st);
    let plan = "prescale_plan_cost_per_hour{workload=\"host\"}";
    let (_, text) = get(&app, "/metrics").await;
    assert!(text.contains(plan), "{text}");
    assert!(text.contains("prescale_allocation_instances{workload=\"host\""));
    assert!(text.contains("prescale_tier_instances{tier=\"spot\"}"));
    assert!(text.contains("\nprescale_fleet_cost_per_hour "), "{text}");
    assert!(text.contains("prescale_leader_election_leading{lease=\"shop/prescale\"} 1"));
    // Lost the lease: what it planned last is no longer its to report.
    lead.leading.store(false, Ordering::Relaxed);
    let (_, text) = get(&app, "/metrics").await;
    assert!(!text.contains(plan), "{text}");
    assert!(!text.contains("prescale_allocation_instances{"), "{text}");
    assert!(!text.contains("prescale_forecast_demand{"), "{text}");
    assert!(!text.contains("prescale_tier_instances{"), "{text}");
    assert!(!text.contains("\nprescale_fleet_cost_per_hour "), "{text}");
    assert!(
        !text.contains("\nprescale_fleet_month_spend_dollars "),
        "{text}"
    );
    // Declared still, and the process's own counters kept.
    assert!(text.contains("# TYPE prescale_plan_cost_per_hour gauge"));
    assert!(text.contains("prescale_control_passes_total 40"), "{text}");
    assert!(text.contains("prescale_leader_election_leading{lease=\"shop/prescale\"} 0"));
}

#[tokio::test]
async fn a_standby_forwards_reads_to_the_holder_and_answers_itself_when_it_cannot() {
    use crate::forward::{FORWARDED, FORWARD_ERROR, SERVED_BY};
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The holder: 40 passes planned and a demand series stored.
    let (holder, _) = elected(fixture(d1.path()), "prescale-0_7", true, None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, holder, async {
        let _ = stopped.await;
    }));
    // The standby: the same configuration, nothing stored, nothing planned.
    let c = Config::default();
    let store = Store::open(d2.path(), Durability::Buffered).unwrap();
    let standby = AppState::new(&c, store, Arc::new(RwLock::new(Status::default()))).unwrap();
    let (standby, lead) = elected(standby, "prescale-1_9", false, Some("http://prescale:9180"));
    *lead.holder.write().unwrap() = "prescale-0_7".into();
    let app = router(standby);
    let ask = |uri: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let app = app.clone();
        async move { send_with(&app, "GET", uri, &headers, Vec::new()).await }
    };
    let plan = "/api/v1/workloads/host/plan";

    // The holder advertises no URL: the standby answers itself, and says why.
    let (code, h, _) = ask(plan, vec![]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let why = h[FORWARD_ERROR].to_str().unwrap();
    assert!(
        why.contains("(prescale-0_7) advertises no URL ([leader_election] advertise_url)"),
        "{why}"
    );

    // It advertises the URL this replica does (one in a shared configuration): reads
    // sent there could come back here.
    *lead.holder_url.write().unwrap() = "http://prescale:9180".into();
    let (code, h, _) = ask(plan, vec![]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let why = h[FORWARD_ERROR].to_str().unwrap();
    assert!(why.contains("advertises http://prescale:9180, as this one does: each replica needs its own advertise_url"), "{why}");

    // It does: reads are the holder's.
    *lead.holder_url.write().unwrap() = url.clone();
    let (code, h, body) = ask(plan, vec![]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(h[SERVED_BY], "prescale-0_7");
    assert!(!h.contains_key(FORWARD_ERROR));
    assert!(body.contains("cost_per_hour"), "{body}");
    let (code, h, body) = ask("/api/v1/workloads/host/decisions?limit=3", vec![]).await;
    assert_eq!(
        (code, h[SERVED_BY].to_str().unwrap()),
        (StatusCode::OK, "prescale-0_7")
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // A form-posted query (as Grafana asks) reaches the holder's store.
    let (code, h, body) = post_with_headers(
        &app,
        "/api/v1/query",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"query=count(prescale_demand)&time=2400".to_vec(),
    )
    .await;
    assert_eq!(
        (code, h[SERVED_BY].to_str().unwrap()),
        (StatusCode::OK, "prescale-0_7"),
        "{body}"
    );
    assert!(body.contains("\"1\""), "{body}");
    // What is the replica's own is answered here.
    let (code, h, body) = ask("/api/v1/sources", vec![]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(!h.contains_key(SERVED_BY));
    let src: serde_json::Value = serde_json::from_str(&body).unwrap();
    let le = &src["data"]["leader_election"];
    assert_eq!(le["identity"], "prescale-1_9");
    assert_eq!(le["holder_url"], url.as_str());
    assert!(le["not_forwarded"].is_null(), "{le}");
    let (_, h, _) = ask("/metrics", vec![]).await;
    assert!(!h.contains_key(SERVED_BY));
    // So is a request a replica forwarded: never passed on again.
    let (code, h, _) = ask(plan, vec![(FORWARDED, "1")]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert!(!h.contains_key(SERVED_BY));

    // The holder is gone: the standby answers itself, says why, and waits a little
    // before it tries again.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let (code, h, _) = ask(plan, vec![]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let why = h[FORWARD_ERROR].to_str().unwrap().to_string();
    assert!(
        why.starts_with(&format!("the replica holding the lease (prescale-0_7) could not be reached at {url}: GET {url}{plan}")),
        "{why}"
    );
    let (_, h, body) = ask("/api/v1/sources", vec![]).await;
    assert!(!h.contains_key(FORWARD_ERROR));
    let src: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        src["data"]["leader_election"]["not_forwarded"],
        why.as_str()
    );
    let (_, h, _) = ask("/api/v1/workloads", vec![]).await;
    assert_eq!(h[FORWARD_ERROR].to_str().unwrap(), why);
    // Holding the lease, it answers everything itself, with no note.
    lead.leading.store(true, Ordering::Relaxed);
    let (code, h, _) = ask("/api/v1/workloads", vec![]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(!h.contains_key(FORWARD_ERROR) && !h.contains_key(SERVED_BY));
}

#[tokio::test]
async fn a_standby_copies_the_holders_decision_log_once() {
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (holder, _) = elected(fixture(d1.path()), "h1", true, None);
    let logged = holder.store.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, holder, async {
        let _ = stopped.await;
    }));
    let all = |s: &Store| s.decisions(None, 100_000).unwrap();
    // More than two pages' worth.
    let hold = |at: i64, reason: &str| prescale_core::Decision {
        at,
        workload: "host".into(),
        kind: DecisionKind::Hold,
        action: None,
        reason: reason.into(),
        repeated: None,
    };
    for i in 0..2_100 {
        logged
            .log_decision(&hold(3_000_000 + i, &format!("h{i}")))
            .unwrap();
    }
    let made = all(&logged);
    assert!(made.len() > 2_100, "{}", made.len());
    let standby = |dir: &std::path::Path| {
        let store = Store::open(dir, Durability::Buffered).unwrap();
        let c = Config::default();
        let st = AppState::new(&c, store, Arc::new(RwLock::new(Status::default()))).unwrap();
        let (st, lead) = elected(st, "s", false, None);
        *lead.holder.write().unwrap() = "h1".into();
        *lead.holder_url.write().unwrap() = url.clone();
        st
    };
    let copy = |st: &AppState, c: &mut crate::forward::LogCopy| {
        let st = st.clone();
        let mut c = std::mem::take(c);
        async move {
            tokio::task::spawn_blocking(move || {
                let n = c.copy(&st);
                (n, c)
            })
            .await
            .unwrap()
        }
    };
    // A new standby copies the whole log, in pages.
    let s = standby(d2.path());
    let mut c = crate::forward::LogCopy::default();
    let (n, mut c) = copy(&s, &mut c).await;
    assert_eq!(n, Ok(made.len()));
    assert_eq!(all(&s.store), made);
    // Then what is logged after.
    for r in ["one", "two"] {
        logged.log_decision(&hold(9_000_000, r)).unwrap();
    }
    let (n, mut c) = copy(&s, &mut c).await;
    assert_eq!(n, Ok(2));
    let (n, _) = copy(&s, &mut c).await;
    assert_eq!(n, Ok(0));
    assert_eq!(all(&s.store), all(&logged));
    // A former holder that stands by has the start of the log as its own: it copies
    // from the newest time it has, leaving out what it has of that time.
    let s = standby(d3.path());
    let made = all(&logged);
    let cut = made.iter().position(|d| d.at == made[20].at).unwrap();
    let end = made.iter().rposition(|d| d.at == made[20].at).unwrap();
    assert!(end > cut, "a pass logs more than one decision");
    for d in &made[..=cut] {
        s.store.log_decision(d).unwrap();
    }
    let (n, _) = copy(&s, &mut crate::forward::LogCopy::default()).await;
    assert_eq!(n, Ok(made.len() - cut - 1));
    assert_eq!(all(&s.store), made);
    // A time the log cannot be read from is refused.
    let app = router(s.clone());
    let (code, body) = get(&app, "/api/v1/decisions?since=yesterday").await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("`since` must be unix seconds or RFC 3339"),
        "{body}"
    );
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // The holder gone: the copy fails, and the standby's sources say why.
    let (n, _) = copy(&s, &mut crate::forward::LogCopy::default()).await;
    let e = n.unwrap_err();
    assert!(
        e.starts_with(&format!("GET {url}/api/v1/decisions?")),
        "{e}"
    );
    let (_, body) = get(&router(s.clone()), "/api/v1/sources").await;
    let src: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(src["data"]["leader_election"]["copy_error"], e.as_str());
}

/// The API over a real engine that planned the host workload (`shape` applied, its
/// floors off and a naive model) a pass a minute for 100 minutes, its demand 60 vCPU
/// in the minutes `busy` says and 10 in the others.
fn host_ran_100_minutes(
    dir: &std::path::Path,
    shape: impl FnOnce(&mut prescale_core::Workload),
    busy: impl Fn(i64) -> bool,
) -> axum::Router {
    let store = Store::open(dir, Durability::Buffered).unwrap();
    let key = SeriesKey::parse(r#"host_cpu_usage_cores{mode="busy"}"#).unwrap();
    let mut c = Config::default();
    let m = |min: i64| min * 60_000;
    let w = &mut c.workloads[0];
    (
        w.max_spot_share,
        w.scale_down_delay_s,
        w.scale_down_window_s,
    ) = (0.0, 60, 0);
    (w.seasonal_floor, w.model) = (false, "naive".into());
    shape(w);
    let mut e = Engine::from_config(&c, 0, store.clone(), SimCloud::new(&c.tiers, 1));
    e.set_inline_training();
    for min in 0..100 {
        let value = if busy(min) { 60.0 } else { 10.0 };
        store.append(&key, &[Sample { ts: m(min), value }]).unwrap();
        e.tick(m(min + 1)).unwrap();
    }
    router(AppState::new(&c, store, e.status_handle()).unwrap())
}

#[tokio::test]
async fn a_recurring_events_occurrences_are_listed_with_their_schedule_and_reviewed() {
    let dir = tempfile::tempdir().unwrap();
    // Each hour at :30 for ten minutes, 60 vCPU where 10 is usual, and prescale told.
    let app = host_ran_100_minutes(
        dir.path(),
        |w| {
            w.recurring_events = vec![prescale_core::RecurringEvent {
                name: "sync".into(),
                every: "30 * * * *".into(),
                timezone: "UTC".into(),
                duration_s: 600,
                scale: 1.0,
                min_demand: Some(60.0),
                min_dimensions: Default::default(),
            }]
        },
        |min| min % 60 >= 30 && min % 60 < 40,
    );
    let (code, text) = get(&app, "/api/v1/workloads/host/events").await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = v["data"].as_array().unwrap();
    let listed: Vec<(&str, &str)> = data
        .iter()
        .map(|x| (x["name"].as_str().unwrap(), x["state"].as_str().unwrap()))
        .collect();
    // The two over, and those ahead within the horizon (an hour) and an hour.
    assert_eq!(
        listed,
        [
            ("sync at 1970-01-01T00:30:00Z", "over"),
            ("sync at 1970-01-01T01:30:00Z", "over"),
            ("sync at 1970-01-01T02:30:00Z", "ahead"),
            ("sync at 1970-01-01T03:30:00Z", "ahead"),
        ],
        "{text}"
    );
    for x in data {
        assert_eq!(
            (&x["source"], &x["recurring"], &x["every"], &x["timezone"]),
            (
                &json!("configuration"),
                &json!("sync"),
                &json!("30 * * * *"),
                &json!("UTC")
            ),
            "{text}"
        );
        assert!(
            x["schedule"].as_str().is_some_and(|s| s.contains("30")),
            "{text}"
        );
    }
    // Each one over is reviewed on its own: ready as it began, the second too.
    for x in &data[..2] {
        let r = &x["review"];
        assert_eq!(
            (&r["steps"], &r["peak_demand"]),
            (&json!(10), &json!(60.0)),
            "{text}"
        );
        assert_eq!(r["underprovisioned_minutes"], json!(0.0), "{text}");
    }
    assert!(data[2].get("review").is_none(), "{text}");
    // Exported as the configured ones are: those not over.
    let (_, metrics) = get(&app, "/metrics").await;
    assert!(
        metrics.contains("prescale_workload_event_start_seconds{workload=\"host\",event=\"sync at 1970-01-01T02:30:00Z\"} 9000"),
        "{metrics}"
    );
}

#[tokio::test]
async fn each_planned_event_begun_is_reviewed_from_what_prescale_stored() {
    let dir = tempfile::tempdir().unwrap();
    let m = |min: i64| min * 60_000;
    let event = |name: &str, from: i64, least: f64| prescale_core::PlannedEvent {
        name: name.into(),
        start: prescale_core::EventTime(m(from)),
        end: prescale_core::EventTime(m(from + 10)),
        scale: 1.0,
        min_demand: Some(least),
        recurring: None,
        min_dimensions: Default::default(),
    };
    // Both bring 60 vCPU for ten minutes, where 10 is usual: the first one whose least
    // demand says nothing of it, the second told of it (after the first, the forecast's
    // band is wide enough to cover it anyway, as its errors were that large).
    let app = host_ran_100_minutes(
        dir.path(),
        |w| w.events = vec![event("told", 80, 60.0), event("untold", 40, 0.5)],
        |min| (40..50).contains(&min) || (80..90).contains(&min),
    );
    let (code, text) = get(&app, "/api/v1/workloads/host/events").await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let review = |k: usize| v["data"][k]["review"].clone();
    for k in 0..2 {
        assert_eq!(v["data"][k]["state"], "over", "{text}");
        assert_eq!(review(k)["steps"], 10, "{text}");
        assert_eq!(review(k)["peak_demand"], 60.0, "{text}");
        assert_eq!(
            review(k)["to"].as_i64(),
            review(k)["from"].as_i64().map(|f| f + m(10))
        );
    }
    let short = |k: usize| review(k)["underprovisioned_minutes"].as_f64().unwrap();
    let cost = |k: usize| review(k)["cost"].as_f64().unwrap();
    // Told: ready as it began. Untold: short until the surge's capacity was ready.
    assert_eq!(short(0), 0.0, "{text}");
    assert!((1.0..10.0).contains(&short(1)), "{text}");
    // 60 vCPU at the 80% target on 4-vCPU standard instances ($0.192/h): 19 for ten
    // minutes at least.
    assert!(cost(0) >= 19.0 * 0.192 / 6.0, "{text}");
    assert!(cost(1) > 0.0, "{text}");
}

#[tokio::test]
async fn measured_lead_times_are_listed_and_exported_beside_the_configured_ones() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(fixture(dir.path()));
    let (code, text) = get(&app, "/api/v1/workloads").await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let leads = v["data"]["lead_times"].as_object().expect(&text).clone();
    assert!(!leads.is_empty(), "{text}");
    let c = Config::default();
    let (_, metrics) = get(&app, "/metrics").await;
    for (tier, m) in &leads {
        let t = c.tiers.iter().find(|t| &t.name == tier).unwrap();
        // The simulated cloud's instances serve after the tier's lead time: measured
        // to the minute's pass.
        let median = m["median_s"].as_f64().unwrap();
        let lead = t.lead_time_s as f64;
        assert!((lead..lead + 60.0).contains(&median), "{tier}: {m}");
        assert_eq!(m["late"], false, "{tier}: {m}");
        assert!(m["samples"].as_u64().unwrap() >= 1);
        for line in [
            format!("prescale_tier_lead_time_seconds{{tier=\"{tier}\",quantile=\"0.5\"}} {median}"),
            format!(
                "prescale_tier_lead_time_configured_seconds{{tier=\"{tier}\",quantile=\"0.9\"}} {}",
                t.lead_time_p90()
            ),
            format!("prescale_tier_lead_time_late{{tier=\"{tier}\"}} 0"),
        ] {
            assert!(metrics.contains(&line), "{line}\n{metrics}");
        }
    }
}

/// The fleet's cost and spending, and with a fleet budget each workload's share of it,
/// listed and exported.
#[tokio::test]
async fn the_fleets_budget_and_spending_are_listed_and_exported() {
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    // No fleet budget: what the fleet holds and spent, and no budget.
    let dir = tempfile::tempdir().unwrap();
    let app = router(fixture(dir.path()));
    let (_, text) = get(&app, "/api/v1/workloads").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let fleet = &v["data"]["fleet"];
    let cost = fleet["cost_per_hour"].as_f64().expect(&text);
    // What each workload holds (ready and pending) at its tier's price.
    let held: f64 = v["data"]["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| {
            Config::default().tiers.into_iter().map(move |t| {
                let c = &w["allocation"]["tiers"][&t.name];
                let n = c["ready"].as_u64().unwrap_or(0) + c["pending"].as_u64().unwrap_or(0);
                n as f64 * t.price_per_hour
            })
        })
        .sum();
    assert!(cost > 0.0 && (cost - held).abs() < 1e-9, "{text}");
    assert!(fleet["budget_per_hour"].is_null() && fleet["cap_per_hour"].is_null());
    let spent = fleet["spend"]["spent"].as_f64().expect(&text);
    let (_, metrics) = get(&app, "/metrics").await;
    assert_eq!(metric(&metrics, "prescale_fleet_cost_per_hour"), Some(cost));
    assert_eq!(
        metric(&metrics, "prescale_fleet_month_spend_dollars"),
        Some(spent)
    );
    assert_eq!(metric(&metrics, "prescale_fleet_budget_per_hour"), None);
    assert!(!metrics.contains("prescale_workload_fleet_share_per_hour{"));
    // A fleet budget below what the workload wants: its share, and its plan cut to it.
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.fleet.budget_per_hour = Some(0.25);
    let app = router(fixture_with(dir.path(), c.clone()));
    let (_, text) = get(&app, "/api/v1/workloads").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["fleet"]["cap_per_hour"], 0.25, "{text}");
    let w = &v["data"]["workloads"][0];
    let (want, share) = (
        w["fleet"]["want"].as_f64().expect(&text),
        w["fleet"]["share"].as_f64().expect(&text),
    );
    assert!(want > 0.25 && (share - 0.25).abs() < 1e-9, "{text}");
    assert!(
        w["cost_per_hour"].as_f64().unwrap() <= 0.25 + 1e-9,
        "{text}"
    );
    assert!(
        w["plan_reason"]
            .as_str()
            .unwrap()
            .contains("the fleet budget ($0.25/h this hour over every workload) gives it $0.25/h"),
        "{text}"
    );
    let (_, metrics) = get(&app, "/metrics").await;
    let name = &c.workloads[0].name;
    assert_eq!(
        metric(&metrics, "prescale_fleet_budget_per_hour"),
        Some(0.25)
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("prescale_workload_fleet_share_per_hour{{workload=\"{name}\"}}")
        ),
        Some(share)
    );
    assert_eq!(
        metric(
            &metrics,
            &format!("prescale_workload_fleet_want_per_hour{{workload=\"{name}\"}}")
        ),
        Some(want)
    );
}

/// Each tier as one pool shared by every workload: what they hold of it against its
/// max_instances, listed and exported.
#[tokio::test]
async fn each_tiers_pool_is_listed_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let app = router(fixture(dir.path()));
    let (code, text) = get(&app, "/api/v1/workloads").await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let pools = v["data"]["pools"].as_object().expect(&text).clone();
    let c = Config::default();
    assert_eq!(pools.len(), c.tiers.len(), "{text}");
    let (_, metrics) = get(&app, "/metrics").await;
    let mut held_somewhere = 0;
    for t in &c.tiers {
        let p = &pools[&t.name];
        // What the workloads hold of the tier, ready and pending.
        let held: u64 = v["data"]["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                let c = &w["allocation"]["tiers"][&t.name];
                c["ready"].as_u64().unwrap_or(0) + c["pending"].as_u64().unwrap_or(0)
            })
            .sum();
        held_somewhere += held;
        assert_eq!(p["held"], held, "{}: {p}", t.name);
        assert_eq!(p["max_instances"], t.max_instances, "{}: {p}", t.name);
        assert_eq!(p["full"], false, "{}: {p}", t.name);
        for line in [
            format!("prescale_tier_instances{{tier=\"{}\"}} {held}", t.name),
            format!(
                "prescale_tier_max_instances{{tier=\"{}\"}} {}",
                t.name, t.max_instances
            ),
        ] {
            assert!(metrics.contains(&line), "{line}\n{metrics}");
        }
    }
    assert!(held_somewhere > 0, "{text}");
    // Each workload's priority and claims on lower priorities' holdings: none here.
    let host = &v["data"]["workloads"][0];
    assert_eq!(
        (&host["priority"], &host["claims"]),
        (&json!(0), &json!({})),
        "{host}"
    );
}

/// Before its first plan a workload holds its minimum (asked for while it has no
/// forecast): the list says what that costs, not nothing.
#[tokio::test]
async fn a_workload_before_its_first_plan_costs_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::default();
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    let mut e = Engine::from_config(&c, 0, store.clone(), SimCloud::new(&c.tiers, 1));
    // No series matches its demand yet.
    e.tick(60_000).unwrap();
    let app = router(AppState::new(&c, store, e.status_handle()).unwrap());
    let (code, text) = get(&app, "/api/v1/workloads").await;
    assert_eq!(code, StatusCode::OK, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let host = &v["data"]["workloads"][0];
    assert_eq!(host["name"], "host", "{text}");
    assert!(host["plan_reason"].is_null(), "{text}");
    assert_eq!(
        host["allocation"]["tiers"]["standard"]["pending"], 1,
        "{text}"
    );
    let standard = c.tiers.iter().find(|t| t.name == "standard").unwrap();
    assert_eq!(
        host["cost_per_hour"].as_f64(),
        Some(standard.price_per_hour),
        "{text}"
    );
}

#[tokio::test]
async fn what_the_holder_is_asked_goes_on_the_lease_before_the_answer_or_the_answer_warns() {
    use std::sync::atomic::AtomicUsize;
    let dir = tempfile::tempdir().unwrap();
    let (mut st, _) = elected(
        with_unmanaged(&dir.path().join("local"), &Config::default()),
        "a",
        true,
        None,
    );
    let written = Arc::new(AtomicUsize::new(0));
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    st.hand_on = Some({
        let (written, refuse) = (written.clone(), refuse.clone());
        Arc::new(move || {
            if refuse.load(Ordering::SeqCst) {
                return Err("lease shop/prescale: HTTP 503: the API server is down".into());
            }
            written.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    });
    let app = router(st);
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let pause = "/api/v1/workloads/host/pause?scope=all&for=1h&reason=drill";
    // Written before the answer, which warns of nothing.
    let (code, text) = post(&app, pause, &[], Vec::new()).await;
    assert_eq!(code, StatusCode::OK, "{text}");
    assert!(json(&text).get("warnings").is_none(), "{text}");
    assert_eq!(written.load(Ordering::SeqCst), 1);
    // What is refused changes nothing, and writes nothing.
    for uri in [
        "/api/v1/workloads/host/pause?for=1h",
        "/api/v1/workloads/nobody/pause?scope=all&for=1h",
        "/api/v1/unmanaged/nobody/release",
        "/api/v1/workloads/host/events/nothing/cancel",
    ] {
        let (code, text) = post(&app, uri, &[], Vec::new()).await;
        assert!(code.is_client_error(), "{uri}: {text}");
    }
    assert_eq!(written.load(Ordering::SeqCst), 1);
    // The API server down: each change holds here, and its answer says it is not on
    // the Lease yet, and what that risks.
    refuse.store(true, Ordering::SeqCst);
    let now = prescale_core::now_ms() / 1000;
    let event = format!(
        r#"{{"name": "sale", "start": {}, "end": {}, "scale": 2}}"#,
        now + 3_600,
        now + 7_200
    );
    for (uri, body, what) in [
        (
            "/api/v1/workloads/host/resume".to_string(),
            Vec::new(),
            "the resume",
        ),
        (
            "/api/v1/workloads/host/events".to_string(),
            event.into_bytes(),
            "the event",
        ),
        (
            "/api/v1/workloads/host/events/sale/cancel".to_string(),
            Vec::new(),
            "the cancellation",
        ),
        (
            "/api/v1/unmanaged/batch/release".to_string(),
            Vec::new(),
            "the release",
        ),
    ] {
        let (code, text) = post(&app, &uri, &[], body).await;
        assert_eq!(code, StatusCode::OK, "{uri}: {text}");
        let v = json(&text);
        assert_eq!(v["status"], "success", "{text}");
        let warned = v["warnings"][0].as_str().unwrap_or_default();
        assert!(
            warned.starts_with(&format!(
                "{what} holds on this replica and is kept in its store, but is not on the Lease yet (lease shop/prescale: HTTP 503: the API server is down): it is written at the next renewal that succeeds"
            )),
            "{uri}: {text}"
        );
    }
    // And they held.
    let (_, text) = get(&app, "/api/v1/workloads/host/status").await;
    let v = json(&text);
    assert!(v["data"]["paused"].is_null(), "resumed: {text}");
    assert_eq!(v["data"]["declared"], serde_json::json!([]), "{text}");
    let (_, text) = get(&app, "/api/v1/unmanaged").await;
    assert!(text.contains("\"workloads\":{}"), "released: {text}");
    assert_eq!(written.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_provider_state_that_cannot_be_read_is_on_the_metrics_and_the_sources() {
    let dir = tempfile::tempdir().unwrap();
    let st = fixture(dir.path());
    let app = router(st.clone());
    // The simulated cloud's state is its own: the families are declared, with no series.
    let (_, text) = get(&app, "/metrics").await;
    assert!(
        text.contains("# TYPE prescale_provider_state_up gauge"),
        "{text}"
    );
    assert!(!text.contains("prescale_provider_state_up{"), "{text}");
    let (_, text) = get(&app, "/api/v1/sources").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["data"]["provider_state"].is_null(), "{text}");
    st.status.write().unwrap().provider_state = Some(prescale_orchestrate::provider::StateRead {
        read_at: Some(60_000),
        unread_since: Some(120_000),
        error: Some("GET /apis/apps/v1/namespaces/prod/deployments: HTTP 503".into()),
    });
    let (_, text) = get(&app, "/metrics").await;
    assert!(
        text.contains("prescale_provider_state_up{provider=\"sim\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("prescale_provider_state_last_read_timestamp_seconds{provider=\"sim\"} 60\n"),
        "{text}"
    );
    let (_, text) = get(&app, "/api/v1/sources").await;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["data"]["provider_state"],
        serde_json::json!({"read_at": 60_000, "unread_since": 120_000, "error": "GET /apis/apps/v1/namespaces/prod/deployments: HTTP 503"}),
        "{text}"
    );
    st.status.write().unwrap().provider_state = Some(prescale_orchestrate::provider::StateRead {
        read_at: Some(180_000),
        ..Default::default()
    });
    let (_, text) = get(&app, "/metrics").await;
    assert!(
        text.contains("prescale_provider_state_up{provider=\"sim\"} 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn the_sources_say_what_the_provider_acts_on_and_nothing_secret() {
    use prescale_core::config::{
        Config, ExecProviderConfig, KubeKind, KubernetesProviderConfig, ProviderKind,
        WebhookProviderConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let st = fixture(dir.path());
    let app = router(st.clone());
    let target = |cfg: &Config| {
        st.set_managed(Managed::of(cfg));
        let app = app.clone();
        async move {
            let (_, text) = get(&app, "/api/v1/sources").await;
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v["data"]["provider_target"].as_str().unwrap().to_string()
        }
    };
    let mut c = Config::default();
    assert_eq!(target(&c).await, "the simulated cloud, seed 42");
    c.providers.use_ = ProviderKind::Kubernetes;
    assert_eq!(
        target(&c).await,
        "Deployments named {workload}-{tier} in namespace of prescale's pod (else default)"
    );
    c.providers.kubernetes = Some(KubernetesProviderConfig {
        kind: KubeKind::Rollout,
        namespace: Some("shop".into()),
        ..KubernetesProviderConfig::default()
    });
    assert_eq!(
        target(&c).await,
        "Rollouts named {workload}-{tier} in namespace shop"
    );
    // A hook's arguments may carry a secret: only the program is said.
    c.providers.use_ = ProviderKind::Exec;
    c.providers.exec = Some(
        serde_json::from_value::<ExecProviderConfig>(
            serde_json::json!({"command": ["/usr/local/bin/scale", "--token=s3cret"]}),
        )
        .unwrap(),
    );
    assert_eq!(target(&c).await, "runs /usr/local/bin/scale");
    // A URL's user information and query may too.
    c.providers.use_ = ProviderKind::Webhook;
    c.providers.webhook = Some(
        serde_json::from_value::<WebhookProviderConfig>(serde_json::json!({
            "url": "https://ops:s3cret@hooks.example.com:8443/prescale?key=s3cret#x"
        }))
        .unwrap(),
    );
    assert_eq!(
        target(&c).await,
        "posts to https://hooks.example.com:8443/prescale"
    );
    let (_, text) = get(&app, "/api/v1/sources").await;
    assert!(!text.contains("s3cret"), "{text}");
    for (url, said) in [
        ("http://[::1]:8080/hook?t=x", "http://[::1]:8080/hook"),
        ("https://user@host", "https://host"),
        ("http://host/a@b", "http://host/a@b"),
    ] {
        assert_eq!(super::url_without_secrets(url), said);
    }
}
