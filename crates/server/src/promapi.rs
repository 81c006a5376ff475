//! How Prometheus' HTTP API takes its parameters, and the metadata part of it: the
//! series, label names and label values that `match[]` selectors pick among the series
//! with samples between `start` and `end`.
//!
//! Grafana's Prometheus data source sends its queries as POSTs with a form body by
//! default (its "HTTP method" setting), and its metric and label browsers ask
//! `series`, `labels` and `label/NAME/values` with `match[]`, `start` and `end`.
//! [`ApiParams`] reads the query string and such a body alike, as Prometheus does (the
//! body's values first), so every endpoint here answers GET and POST the same.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prescale_core::{parse_ts, SeriesKey, SeriesMatch, TimestampMs};
use serde_json::json;

use crate::promql::{bad, PromParams};
use crate::AppState;

/// A Prometheus API call's parameters, in order: a POST's form body's, then the query
/// string's. A name may repeat (`match[]`); [`ApiParams::get`] gives its first value.
#[derive(Debug, Default)]
pub struct ApiParams(Vec<(String, String)>);

impl ApiParams {
    /// Reads `application/x-www-form-urlencoded` pairs.
    pub fn parse(form: &[u8]) -> Self {
        Self(form_urlencoded::parse(form).into_owned().collect())
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The parameters a query takes.
    pub fn query(&self) -> PromParams {
        let own = |k: &str| self.get(k).map(str::to_string);
        PromParams {
            query: own("query"),
            time: own("time"),
            start: own("start"),
            end: own("end"),
            step: own("step"),
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for ApiParams {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let from_uri = req
            .uri()
            .query()
            .map(|q| Self::parse(q.as_bytes()))
            .unwrap_or_default();
        if req.method() != Method::POST {
            return Ok(from_uri);
        }
        let form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if body.is_empty() {
            return Ok(from_uri);
        }
        if !form {
            return Err(bad(
                "a POST's parameters go in an application/x-www-form-urlencoded body, as Prometheus' API takes them (e.g. query=up&time=1700000000)",
            ));
        }
        let mut all = Self::parse(&body);
        all.0.extend(from_uri.0);
        Ok(all)
    }
}

/// Why [`Matching`] has no answer: the request's fault (400) or the store's (500).
enum Unmatched {
    Bad(String),
    Store(String),
}

impl IntoResponse for Unmatched {
    fn into_response(self) -> Response {
        match self {
            Self::Bad(m) => bad(m),
            Self::Store(m) => crate::error(StatusCode::INTERNAL_SERVER_ERROR, m),
        }
    }
}

/// The time parameter `name` (unix seconds or RFC 3339), `default` without it, or what
/// is wrong with it.
pub(crate) fn time_param(
    p: &ApiParams,
    name: &str,
    default: TimestampMs,
) -> Result<TimestampMs, String> {
    match p.get(name) {
        None => Ok(default),
        Some(s) => parse_ts(s).ok_or_else(|| {
            format!(
                "`{name}` must be unix seconds or RFC 3339, e.g. 2026-01-05T00:00:00Z, within {} of 1970, not {s:?}",
                prescale_core::MAX_TS_SPAN
            )
        }),
    }
}

/// Adds `s` to `set` unless it is there, copying it only then: names and values are
/// collected from keys borrowed from the index, most of them already in the set.
fn insert_new(set: &mut BTreeSet<String>, s: &str) {
    if !set.contains(s) {
        set.insert(s.to_string());
    }
}

/// What `match[]`, `start` and `end` ask for: the series any selector picks (every
/// series without one) that have a sample between `start` and `end` (all time without).
struct Matching {
    selectors: Vec<SeriesMatch>,
    start: TimestampMs,
    end: TimestampMs,
}

impl Matching {
    fn parse(p: &ApiParams) -> Result<Self, Unmatched> {
        let selectors = p
            .all("match[]")
            .into_iter()
            .map(|m| SeriesMatch::parse(m, "match[]="))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Unmatched::Bad)?;
        let time = |name, default| time_param(p, name, default).map_err(Unmatched::Bad);
        let (start, end) = (time("start", i64::MIN)?, time("end", i64::MAX)?);
        if end < start {
            return Err(Unmatched::Bad("`end` is before `start`".into()));
        }
        Ok(Self {
            selectors,
            start,
            end,
        })
    }

    fn picks(&self, key: &SeriesKey) -> bool {
        self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(key))
    }

    fn all_time(&self) -> bool {
        self.start == i64::MIN && self.end == i64::MAX
    }

    /// The series asked for, sorted.
    fn series(&self, st: &AppState) -> Result<Vec<SeriesKey>, Unmatched> {
        let mut out = st.store.series_where(|key| self.picks(key));
        if !self.all_time() {
            let mut kept = Vec::with_capacity(out.len());
            for key in out {
                let within = st
                    .store
                    .has_samples(&key, self.start, self.end)
                    .map_err(|e| Unmatched::Store(e.to_string()))?;
                if within {
                    kept.push(key);
                }
            }
            out = kept;
        }
        Ok(out)
    }

    /// Calls `f` with each series asked for, in no particular order; for all time,
    /// without copying any.
    fn visit(&self, st: &AppState, mut f: impl FnMut(&SeriesKey)) -> Result<(), Unmatched> {
        if self.all_time() {
            st.store.visit_series(|key| {
                if self.picks(key) {
                    f(key);
                }
            });
        } else {
            self.series(st)?.iter().for_each(f);
        }
        Ok(())
    }
}

/// A series' labels with its name as `__name__`, as Prometheus lists it.
fn label_set(key: SeriesKey) -> prescale_core::Labels {
    let mut labels = key.labels;
    labels.insert("__name__".into(), key.name);
    labels
}

/// `GET|POST /api/v1/series`: with `match[]`, Prometheus' answer, each matching
/// series' labels (with `start` and `end`, those with samples between them); without,
/// prescale's own list of every stored series as strings, as it always answered.
pub async fn series(State(st): State<AppState>, p: ApiParams) -> Response {
    if p.all("match[]").is_empty() {
        if p.get("start").is_some() || p.get("end").is_some() {
            return bad(
                "`start` and `end` need a `match[]` selector, e.g. match[]=prescale_demand",
            );
        }
        let v: Vec<String> = st
            .store
            .with_series_sorted(|keys| keys.iter().map(|k| k.to_string()).collect());
        return Json(json!({"status": "success", "data": v})).into_response();
    }
    match Matching::parse(&p).and_then(|m| m.series(&st)) {
        Ok(keys) => {
            let data: Vec<_> = keys.into_iter().map(label_set).collect();
            Json(json!({"status": "success", "data": data})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET|POST /api/v1/labels`: every label name (and `__name__`) of the series that
/// `match[]`, `start` and `end` pick.
pub async fn labels(State(st): State<AppState>, p: ApiParams) -> Response {
    let mut names: BTreeSet<String> = BTreeSet::new();
    let visited = Matching::parse(&p).and_then(|m| {
        m.visit(&st, |k| {
            for n in std::iter::once("__name__").chain(k.labels.keys().map(String::as_str)) {
                insert_new(&mut names, n);
            }
        })
    });
    match visited {
        Ok(()) => Json(json!({"status": "success", "data": names})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/label/{name}/values`: every value of one label (metric names for
/// `__name__`) among the series that `match[]`, `start` and `end` pick.
pub async fn label_values(
    State(st): State<AppState>,
    Path(name): Path<String>,
    p: ApiParams,
) -> Response {
    let mut values: BTreeSet<String> = BTreeSet::new();
    let visited = Matching::parse(&p).and_then(|m| {
        m.visit(&st, |k| {
            let value = if name == "__name__" {
                Some(&k.name)
            } else {
                k.labels.get(&name)
            };
            if let Some(v) = value {
                insert_new(&mut values, v);
            }
        })
    });
    match visited {
        Ok(()) => Json(json!({"status": "success", "data": values})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The families prescale stores itself, described as `/metrics` describes its own.
const OWN_METADATA: [(&str, &str); 18] = [
    (
        "prescale_anomaly_score",
        "An anomaly's likelihood (0..1; 0.5: a surprise the series' own tail expects less than once in ten days) in the series series_name with these labels.",
    ),
    (
        "prescale_anomaly_value",
        "What an anomaly's likelihood judged: the value of the series series_name, or its per-second rate for a counter.",
    ),
    (
        "prescale_demand",
        "A workload's demand in vCPU, resampled to its step.",
    ),
    (
        "prescale_demand_memory",
        "A workload's memory demand in GiB, resampled to its step.",
    ),
    (
        "prescale_demand_disk_iops",
        "A workload's disk demand in operations per second, resampled to its step.",
    ),
    (
        "prescale_demand_network_mbps",
        "A workload's network demand in Mbit/s, resampled to its step.",
    ),
    (
        "prescale_forecast_median",
        "The median forecast of each step, made before the step.",
    ),
    (
        "prescale_forecast_median_ahead",
        "The median forecast of each step, made `lead` steps before it.",
    ),
    (
        "prescale_forecast_sla",
        "The workload's SLA quantile of the forecast each plan read, made before the step.",
    ),
    (
        "prescale_forecast_error",
        "Demand less the median of the forecast in force before it was brought up to date.",
    ),
    (
        "prescale_capacity_vcpu",
        "Ready capacity per tier, in vCPU.",
    ),
    (
        "prescale_instances",
        "Instances held per tier once each pass has acted, ready and pending.",
    ),
    (
        "prescale_compare_cost",
        "What the workload cost over its last `days` under each policy (prescale, HPA, HPA matched to prescale's shortfall, the oracle, and what it actually had), in USD.",
    ),
    (
        "prescale_compare_short_minutes",
        "Minutes the workload's capacity fell short over its last `days` under each policy.",
    ),
    (
        "prescale_compare_vs_hpa",
        "prescale's cost over HPA's over the last `days`, less one (-0.2: 20% cheaper).",
    ),
    (
        "prescale_compare_vs_matched_hpa",
        "prescale's cost over that of HPA short no longer than prescale, less one.",
    ),
    (
        "prescale_compare_vs_as_run",
        "prescale's cost over that of what the workload actually had (its `actual` query), less one.",
    ),
    (
        "prescale_cost_per_hour",
        "What the instances held per tier cost an hour at list price, in USD.",
    ),
];

/// `GET /api/v1/metadata`: each metric family's type, help and unit, as Prometheus
/// lists them (`{"name": [{"type", "help", "unit"}]}`): those scrapes and remote write
/// senders described and those prescale stores itself, while it has series of them;
/// `metric=NAME` for one, `limit=N` for at most N families, `limit_per_metric=N` for at
/// most N descriptions of each.
pub async fn metadata(State(st): State<AppState>, p: ApiParams) -> Response {
    let limit = |key: &str| match p.get(key).map(str::parse::<i64>) {
        None => Ok(usize::MAX),
        Some(Ok(n)) if n > 0 => Ok(n as usize),
        // As Prometheus: 0 or less is no limit.
        Some(Ok(_)) => Ok(usize::MAX),
        Some(Err(_)) => Err(format!("`{key}` must be a whole number")),
    };
    let (limit, per_metric) = match (limit("limit"), limit("limit_per_metric")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let mut all = st.metadata.all();
    let mut stored: BTreeSet<String> = BTreeSet::new();
    st.store.visit_series(|k| insert_new(&mut stored, &k.name));
    for (name, help) in OWN_METADATA {
        if stored.contains(name) {
            all.entry(name.to_string()).or_insert_with(|| {
                vec![prescale_collect::scrape::MetricMeta {
                    kind: "gauge".into(),
                    help: help.into(),
                    unit: String::new(),
                }]
            });
        }
    }
    // Only families with series stored, as Prometheus lists its present targets' (a
    // family's series are named after it, or it with a suffix of its type's): what
    // retention removed, or a sender said but never sent, is not listed.
    let has_series = |family: &str| {
        [
            "", "_total", "_bucket", "_sum", "_count", "_created", "_info", "_gcount", "_gsum",
        ]
        .iter()
        .any(|suffix| stored.contains(&format!("{family}{suffix}")))
    };
    let wanted = p.get("metric");
    let data: serde_json::Map<String, serde_json::Value> = all
        .into_iter()
        .filter(|(name, _)| wanted.is_none_or(|w| w == name) && has_series(name))
        .take(limit)
        .map(|(name, m)| (name, json!(m[..m.len().min(per_metric)])))
        .collect();
    Json(json!({"status": "success", "data": data})).into_response()
}

/// `GET /api/v1/rules`, `/api/v1/alerts` and `/api/v1/query_exemplars`: prescale
/// evaluates no recording or alerting rules and keeps no exemplars, and says so in
/// Prometheus' form, so Grafana's alerting pages and Explore list nothing from it
/// rather than an error (alert on prescale's series from the Prometheus that scrapes
/// its `/metrics`, or with Grafana's own rules on this data source).
pub async fn nothing_kept(uri: axum::http::Uri) -> Response {
    let data = match uri.path() {
        "/api/v1/rules" => json!({"groups": []}),
        "/api/v1/alerts" => json!({"alerts": []}),
        _ => json!([]),
    };
    Json(json!({"status": "success", "data": data})).into_response()
}
