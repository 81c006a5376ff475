//! The part of Prometheus' query API that charting tools use, so Grafana can add prescale
//! as a Prometheus data source and chart demand, forecasts and capacity next to
//! everything else: `query` and `query_range` with a series selector (label matchers
//! `=`, `!=`, `=~`, `!~`) or `rate(SELECTOR)`, `labels`, `label/NAME/values` and
//! `status/buildinfo`. Other PromQL (functions, operators, aggregations) is refused with
//! a message saying what is supported.
//!
//! As in Prometheus, a selector's value at time `t` is its newest sample in the five
//! minutes up to `t`, and each series is returned on its own; `rate()` is each counter's
//! per-second increase over the step before `t` (over the five minutes before it for an
//! instant query).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prescale_core::{now_ms, DemandExpr, Sample, SeriesKey, TimestampMs};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{error, AppState};

/// How far back a selector looks for a sample, as Prometheus' default lookback delta.
const LOOKBACK_MS: i64 = 300_000;
/// The most points a range query may ask for per series, as in Prometheus.
const MAX_POINTS: i64 = 11_000;

/// A query's parameters, as Prometheus takes them.
#[derive(Deserialize)]
pub struct PromParams {
    query: Option<String>,
    time: Option<String>,
    start: Option<String>,
    end: Option<String>,
    step: Option<String>,
}

fn bad(msg: impl Into<String>) -> Response {
    let msg = msg.into();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errorType": "bad_data", "error": msg})),
    )
        .into_response()
}

/// Unix seconds (as Grafana sends them), in ms.
fn parse_time(s: &str) -> Option<TimestampMs> {
    let v = s.parse::<f64>().ok()?;
    v.is_finite().then(|| (v * 1000.0).round() as TimestampMs)
}

/// A step as seconds (`15`, `0.5`) or a duration (`15s`, `1m`, `1h`), in ms.
fn parse_step(s: &str) -> Option<i64> {
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num.parse().ok()?;
    let mult = match unit {
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3_600e3,
        "d" => 86_400e3,
        _ => return None,
    };
    let ms = (v * mult).round() as i64;
    (v.is_finite() && ms > 0).then_some(ms)
}

/// The query's expression, or what is wrong with it (for [`bad`]).
fn parse_query(p: &PromParams) -> Result<DemandExpr, String> {
    let Some(q) = p.query.as_deref() else {
        return Err("missing `query`, e.g. query=prescale_demand{workload=\"web\"}".into());
    };
    DemandExpr::parse(q).map_err(|e| {
        format!("{e}; prescale answers a series selector or rate(SELECTOR), not other PromQL")
    })
}

fn metric(key: &SeriesKey, keep_name: bool) -> Value {
    let mut m: BTreeMap<&str, &str> = key
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    if keep_name {
        m.insert("__name__", &key.name);
    }
    json!(m)
}

fn fmt_value(v: f64) -> String {
    // Prometheus writes values as strings, NaN and infinities by name.
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// The value of one series at each of `times` (ascending, `step` apart).
fn evaluate(
    expr: &DemandExpr,
    samples: &[Sample],
    times: &[TimestampMs],
    step: i64,
) -> Vec<Option<f64>> {
    match expr {
        DemandExpr::Sum(_) => {
            let mut out = Vec::with_capacity(times.len());
            let mut i = 0;
            let mut last: Option<Sample> = None;
            for &t in times {
                while i < samples.len() && samples[i].ts <= t {
                    last = Some(samples[i]);
                    i += 1;
                }
                out.push(last.filter(|s| s.ts > t - LOOKBACK_MS).map(|s| s.value));
            }
            out
        }
        DemandExpr::Rate(_) => {
            // Bucket b covers (t_b - step, t_b]: from one ms after the previous time.
            let from = times[0] - step + 1;
            prescale_orchestrate::engine::step_rates(samples, from, times.len(), step)
        }
    }
}

/// Each selected series with its value (if any) at each evaluation time.
type Evaluated = Vec<(SeriesKey, Vec<Option<f64>>)>;

/// Evaluates `expr` at `times` for every series it selects.
fn run(
    st: &AppState,
    expr: &DemandExpr,
    times: &[TimestampMs],
    step: i64,
) -> Result<Evaluated, String> {
    let (lo, hi) = (times[0], *times.last().expect("at least one time"));
    let back = match expr {
        DemandExpr::Sum(_) => LOOKBACK_MS,
        DemandExpr::Rate(_) => 2 * step,
    };
    let mut out = Vec::new();
    for key in st.store.select_matching(expr.selector()) {
        let samples = st
            .store
            .range(&key, lo - back, hi)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let values = evaluate(expr, &samples, times, step);
        if values.iter().any(Option::is_some) {
            out.push((key, values));
        }
    }
    Ok(out)
}

/// [`run`] off the async threads (it reads the store); gives the times back with the
/// series, and a `500` saying why when the store fails.
async fn run_blocking(
    st: AppState,
    expr: DemandExpr,
    times: Vec<TimestampMs>,
    step: i64,
) -> Result<(Evaluated, Vec<TimestampMs>), Response> {
    let res = tokio::task::spawn_blocking(move || {
        run(&st, &expr, &times, step).map(|series| (series, times))
    })
    .await;
    match res {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /api/v1/query`: an instant vector at `time` (default now).
pub async fn query(State(st): State<AppState>, Query(p): Query<PromParams>) -> Response {
    let expr = match parse_query(&p) {
        Ok(e) => e,
        Err(m) => return bad(m),
    };
    let t = match p.time.as_deref().map(parse_time) {
        None => now_ms(),
        Some(Some(t)) => t,
        Some(None) => return bad("`time` must be unix seconds"),
    };
    let keep_name = matches!(expr, DemandExpr::Sum(_));
    let (series, _) = match run_blocking(st, expr, vec![t], LOOKBACK_MS).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result: Vec<Value> = series
        .iter()
        .filter_map(|(k, v)| {
            v[0].map(|x| json!({"metric": metric(k, keep_name), "value": [t as f64 / 1000.0, fmt_value(x)]}))
        })
        .collect();
    Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
        .into_response()
}

/// `GET /api/v1/query_range` with `query`: a matrix from `start` to `end` every `step`.
pub async fn query_range(st: AppState, p: PromParams) -> Response {
    let expr = match parse_query(&p) {
        Ok(e) => e,
        Err(m) => return bad(m),
    };
    let (Some(start), Some(end)) = (
        p.start.as_deref().and_then(parse_time),
        p.end.as_deref().and_then(parse_time),
    ) else {
        return bad("`start` and `end` must be unix seconds");
    };
    let Some(step) = p.step.as_deref().and_then(parse_step) else {
        return bad("`step` must be a positive number of seconds or a duration such as 15s");
    };
    if end < start {
        return bad("`end` is before `start`");
    }
    if (end - start) / step + 1 > MAX_POINTS {
        return bad(format!(
            "more than {MAX_POINTS} points per series: widen `step` or narrow the range"
        ));
    }
    let times: Vec<TimestampMs> = (0..=(end - start) / step)
        .map(|i| start + i * step)
        .collect();
    let keep_name = matches!(expr, DemandExpr::Sum(_));
    let (series, times) = match run_blocking(st, expr, times, step).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result: Vec<Value> = series
        .iter()
        .map(|(k, vals)| {
            let values: Vec<Value> = times
                .iter()
                .zip(vals)
                .filter_map(|(t, v)| v.map(|x| json!([*t as f64 / 1000.0, fmt_value(x)])))
                .collect();
            json!({"metric": metric(k, keep_name), "values": values})
        })
        .collect();
    Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
        .into_response()
}

/// `GET /api/v1/labels`: every label name, `__name__` included.
pub async fn labels(State(st): State<AppState>) -> Response {
    let mut names: BTreeSet<String> = BTreeSet::from(["__name__".to_string()]);
    for k in st.store.series() {
        names.extend(k.labels.into_keys());
    }
    Json(json!({"status": "success", "data": names})).into_response()
}

/// `GET /api/v1/label/{name}/values`: every value of one label (metric names for
/// `__name__`).
pub async fn label_values(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let mut values: BTreeSet<String> = BTreeSet::new();
    for k in st.store.series() {
        if name == "__name__" {
            values.insert(k.name);
        } else if let Some(v) = k.labels.get(&name) {
            values.insert(v.clone());
        }
    }
    Json(json!({"status": "success", "data": values})).into_response()
}

/// `GET /api/v1/status/buildinfo`: what Grafana asks a data source first.
pub async fn buildinfo() -> Response {
    Json(json!({"status": "success", "data": {
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "application": "prescale",
    }}))
    .into_response()
}
