//! prescale's query API against Prometheus itself: the same samples go into a real
//! Prometheus (as blocks `promtool tsdb create-blocks-from openmetrics` builds) and into
//! prescale (as InfluxDB line protocol), and every query of the PromQL prescale answers
//! must give the same series with the same values at every step of a range (skipped,
//! saying so, without Prometheus; `.ci/run` installs it).
//!
//! Samples and subqueries' points sit off the evaluation grid, so none falls on a
//! window's edge and Prometheus 2's closed windows and Prometheus 3's half-open ones
//! (which prescale follows) agree.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use common::{default_config, enc, get, wait_for, write_lines, Daemon, Prometheus};
use serde_json::Value;

/// One series' samples: its metric name, labels and (unix seconds, value) pairs.
struct Series {
    name: &'static str,
    labels: Vec<(&'static str, &'static str)>,
    samples: Vec<(i64, f64)>,
}

/// Two and a half hours of 15 s samples from `base + 7`: three gauges (one with a
/// ten-minute gap), two counters (one reset) and a classic histogram's buckets.
fn corpus(base: i64) -> Vec<Series> {
    let ks = 0..600i64;
    let at = |k: i64| base + 7 + 15 * k;
    let gauge = |labels, f: &dyn Fn(i64) -> Option<f64>| Series {
        name: "g_v",
        labels,
        samples: ks.clone().filter_map(|k| Some((at(k), f(k)?))).collect(),
    };
    let counter = |name, labels, inc: &dyn Fn(i64) -> f64, reset: Option<i64>| {
        let mut total = 0.0;
        let samples = ks
            .clone()
            .map(|k| {
                total = if Some(k) == reset {
                    0.0
                } else {
                    total + inc(k)
                };
                (at(k), total)
            })
            .collect();
        Series {
            name,
            labels,
            samples,
        }
    };
    vec![
        gauge(vec![("a", "1")], &|k| {
            Some(50.0 + 30.0 * (k as f64 / 20.0).sin())
        }),
        gauge(vec![("a", "2")], &|k| {
            Some(100.0 - 0.1 * k as f64 + (k % 7) as f64)
        }),
        gauge(vec![("a", "3"), ("b", "x")], &|k| {
            (!(400..440).contains(&k)).then_some(if k < 300 { 10.0 } else { 40.0 })
        }),
        counter(
            "req_total",
            vec![("code", "200")],
            &|k| 75.0 + 45.0 * (k as f64 / 10.0).sin(),
            None,
        ),
        counter("req_total", vec![("code", "500")], &|_| 1.0, Some(350)),
        counter(
            "lat_bucket",
            vec![("le", "0.1")],
            &|k| 3.0 + (k % 3) as f64,
            None,
        ),
        counter(
            "lat_bucket",
            vec![("le", "0.5")],
            &|k| 8.0 + (k % 4) as f64,
            None,
        ),
        counter(
            "lat_bucket",
            vec![("le", "+Inf")],
            &|k| 10.0 + (k % 4) as f64 + (k % 5) as f64,
            None,
        ),
    ]
}

/// The corpus as OpenMetrics text, for promtool.
fn openmetrics(corpus: &[Series]) -> String {
    let mut out = String::new();
    for s in corpus {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        for (t, v) in &s.samples {
            writeln!(out, "{}{{{}}} {v} {t}", s.name, labels.join(",")).unwrap();
        }
    }
    out.push_str("# EOF\n");
    out
}

/// The corpus as line protocol: measurement and field split at the name's last `_`.
fn line_protocol(corpus: &[Series]) -> String {
    let mut out = String::new();
    for s in corpus {
        let (m, f) = s.name.rsplit_once('_').unwrap();
        let tags: String = s.labels.iter().map(|(k, v)| format!(",{k}={v}")).collect();
        for (t, v) in &s.samples {
            writeln!(out, "{m}{tags} {f}={v:?} {t}").unwrap();
        }
    }
    out
}

/// Each series of an answer, in its order: its labels (JSON) and (time, value) points.
type Answer = Vec<(String, Vec<(f64, f64)>)>;

/// The series of an answer to `path` (a range query's matrix, an instant query's vector
/// or scalar): labels to (time, value) points, values parsed (NaN too).
fn answer(addr: SocketAddr, path: &str) -> Result<Answer, String> {
    let (code, body) = get(addr, path).ok_or("no answer")?;
    if code != 200 {
        return Err(format!("{code}: {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let point = |p: &Value| {
        let x = match p[1].as_str().unwrap() {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            x => x.parse().unwrap(),
        };
        (p[0].as_f64().unwrap(), x)
    };
    let data = &v["data"];
    if data["resultType"] == "scalar" {
        return Ok(vec![("scalar".into(), vec![point(&data["result"])])]);
    }
    let mut out = Vec::new();
    for r in data["result"].as_array().ok_or(body.clone())? {
        let points = match r["values"].as_array() {
            Some(vs) => vs.iter().map(point).collect(),
            None => vec![point(&r["value"])],
        };
        out.push((r["metric"].to_string(), points));
    }
    Ok(out)
}

/// Where two answers differ as sets of series, or `None`.
fn differ(want: &Answer, got: &Answer) -> Option<String> {
    let want: BTreeMap<_, _> = want.iter().cloned().collect();
    let got: BTreeMap<_, _> = got.iter().cloned().collect();
    if want.keys().ne(got.keys()) {
        return Some(format!(
            "series: Prometheus {:?}, prescale {:?}",
            want.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>()
        ));
    }
    for (k, w) in &want {
        let g = &got[k.as_str()];
        let wt: Vec<f64> = w.iter().map(|p| p.0).collect();
        let gt: Vec<f64> = g.iter().map(|p| p.0).collect();
        if wt != gt {
            return Some(format!("{k}: times {wt:?} against {gt:?}"));
        }
        for ((t, a), (_, b)) in w.iter().zip(g) {
            let same = (a.is_nan() && b.is_nan())
                || a == b
                || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
            if !same {
                return Some(format!("{k} at {t}: Prometheus {a}, prescale {b}"));
            }
        }
    }
    None
}

/// Queries of every kind prescale answers, over the corpus.
const QUERIES: &[&str] = &[
    "g_v",
    r#"g_v{a=~"1|2"}"#,
    r#"g_v{a!="1"}"#,
    "sum(g_v)",
    "avg by (a) (g_v)",
    "max without (a) (g_v)",
    "min(g_v)",
    "count(g_v)",
    "g_v * 2 + 1",
    "-g_v",
    "g_v % 7",
    "g_v ^ 0.5",
    "2 ^ 3 ^ 0.5 * g_v",
    r#"g_v{a="1"} / on () g_v{a="2"}"#,
    r#"g_v{a="1"} - ignoring (a) g_v{a="2"}"#,
    "g_v / ignoring (a, b) group_left sum(g_v)",
    "g_v > 60",
    "60 < g_v",
    "g_v > bool 60",
    "g_v >= 40 <= 90",
    r#"g_v and g_v{a="1"}"#,
    r#"g_v{a="1"} or g_v{a="3"}"#,
    "sum(g_v{a=\"9\"}) or vector(0)",
    r#"g_v unless g_v{a="2"}"#,
    "avg_over_time(g_v[5m])",
    "min_over_time(g_v[5m])",
    "max_over_time(g_v[5m])",
    "sum_over_time(g_v[5m])",
    "count_over_time(g_v[5m])",
    "last_over_time(g_v[5m])",
    "stddev_over_time(g_v[10m])",
    "stdvar_over_time(g_v[10m])",
    "quantile_over_time(0.9, g_v[10m])",
    "delta(g_v[5m])",
    "idelta(g_v[5m])",
    "deriv(g_v[10m])",
    "predict_linear(g_v[10m], 600)",
    "changes(g_v[10m])",
    "resets(req_total[30m])",
    "rate(req_total[5m])",
    "irate(req_total[5m])",
    "increase(req_total[10m])",
    "sum by (code) (rate(req_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(lat_bucket[5m])))",
    "histogram_quantile(0.5, rate(lat_bucket[10m]))",
    "topk(1, g_v)",
    "bottomk(2, g_v)",
    "abs(g_v - 80)",
    "ceil(g_v)",
    "floor(g_v)",
    "round(g_v, 5)",
    "clamp(g_v, 40, 90)",
    "clamp_min(g_v, 45)",
    "clamp_max(g_v, 45)",
    "sqrt(g_v)",
    "exp(g_v / 100)",
    "ln(g_v)",
    "log2(g_v)",
    "log10(g_v)",
    "sgn(g_v - 80)",
    "g_v offset 10m",
    "rate(req_total[5m] offset 10m)",
    "sum by (code) (increase(req_total[10m])) * 60",
    r#"count_over_time(g_v{a="3"}[5m])"#,
    r#"g_v{a="3"} * on () group_left sum(g_v)"#,
    "sum(g_v) / count(g_v) - avg(g_v)",
    "time() - timestamp(g_v)",
    r#"absent(g_v{a="3"})"#,
    r#"absent(g_v{a="9"})"#,
    "scalar(sum(g_v)) * 0 + vector(1)",
    "vector(time())",
    "max_over_time(sum(g_v)[10m:1m])",
    "max_over_time(rate(req_total[5m])[10m:1m])",
    "avg_over_time(g_v[10m:30s] offset 5m)",
    r#"label_replace(g_v, "x", "id-$1", "a", "(.*)")"#,
    "g_v @ end()",
    "g_v / g_v @ start()",
    "rate(req_total[5m] @ start())",
    "max_over_time(g_v[10m:1m] @ end())",
    "topk(1, g_v @ end())",
    "g_v @ MID offset 10m",
    "g_v offset 10m @ MID",
    "sum(rate(req_total[5m] offset 1m @ MID))",
    "stddev(g_v)",
    "stdvar by (b) (g_v)",
    "group by (b) (g_v)",
    "quantile(0.75, g_v)",
    "quantile by (code) (0.5, rate(req_total[5m]))",
    "present_over_time(g_v[5m])",
    r#"absent_over_time(g_v{a="3"}[3m])"#,
    r#"absent_over_time(g_v{a="9"}[5m])"#,
    "hour()",
    "minute()",
    "day_of_week()",
    "day_of_month()",
    "day_of_year()",
    "days_in_month()",
    "month()",
    "year()",
    "minute(timestamp(g_v))",
    "days_in_month(g_v * 0 + 1709251200)",
    r#"label_join(g_v, "ab", "-", "a", "b")"#,
    "sort_desc(g_v)",
    "sort(rate(req_total[5m]))",
    r#"count_values("v", round(g_v / 10))"#,
    r#"count_values by (b) ("v", ceil(g_v / 50))"#,
    r#"count_values without (a) ("v", floor(g_v / 33))"#,
    r#"count_values without (a, v) ("v", floor(g_v / 33))"#,
    // Selectors without a metric name.
    r#"{a="1"}"#,
    r#"{__name__=~"g_.*",a!="1"}"#,
    r#"count({__name__=~".+_total"})"#,
    r#"sum by (code) (rate({__name__="req_total"}[5m]))"#,
    // (prescale keeps its anomaly findings with the source's labels: g_v{b="x"} jumps.)
    r#"max_over_time({b="x",__name__!~"prescale_.*"}[10m])"#,
];

/// Range vectors: an instant query answers their samples; a range query refuses them.
const RANGE_VECTORS: &[&str] = &[
    "g_v[5m]",
    r#"req_total{code="200"}[10m]"#,
    "g_v[3m] offset 10m",
    "g_v[2m] @ MID",
    "lat_bucket[1m] @ end()",
];

#[test]
fn queries_answer_as_prometheus_does_on_the_same_samples() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Three hours ago, on the hour: the grid the queries are evaluated on.
    let base = (now - 3 * 3600) / 3600 * 3600;
    let corpus = corpus(base);

    // Prometheus, on blocks built from the corpus.
    let Some(prometheus) = Prometheus::on_blocks(&openmetrics(&corpus)) else {
        return; // skipped, saying so
    };
    let prom = prometheus.addr;

    // prescale, fed the same samples.
    let sdir = tempfile::tempdir().unwrap();
    let d = Daemon::start(sdir.path(), &default_config());
    wait_for(
        || get(d.addr, "/healthz").is_some_and(|(c, _)| c == 200),
        "prescale to serve",
        &|| d.logs(),
    );
    let (code, text) = write_lines(d.addr, &line_protocol(&corpus));
    assert_eq!(code, 204, "{text}");

    // From 20 minutes in (every window full) to the end, every minute, 13 s past it: no
    // window's edge falls on a sample (7 s past a quarter minute) or on a subquery's
    // point (on the minute or half minute).
    let range = format!(
        "start={}&end={}&step=60",
        base + 1213,
        base + 7 + 15 * 599 + 60
    );
    // And instant queries at its start, middle and last step.
    let first = base + 1213;
    let instants = [first, first + 60 * 60, first + 60 * 130];
    let mut wrong = Vec::new();
    // An hour in, 13 s past the minute, for the queries fixed there with @.
    let mid = (first + 3600).to_string();
    for q in QUERIES {
        let q = &q.replace("MID", &mid);
        let asks = std::iter::once(format!("/api/v1/query_range?query={}&{range}", enc(q))).chain(
            instants
                .iter()
                .map(|t| format!("/api/v1/query?query={}&time={t}", enc(q))),
        );
        for path in asks {
            let want = answer(prom, &path).unwrap_or_else(|e| panic!("Prometheus on {q}: {e}"));
            if path.contains("query_range") {
                assert!(!want.is_empty(), "Prometheus has nothing for {q}");
            }
            match answer(d.addr, &path) {
                Ok(got) => {
                    if let Some(why) = differ(&want, &got) {
                        wrong.push(format!("{path} ({q}): {why}"));
                    } else if q.starts_with("sort") && path.contains("query?") {
                        // An instant answer's order is sort's whole point.
                        let order = |a: &Answer| a.iter().map(|s| s.0.clone()).collect::<Vec<_>>();
                        if order(&want) != order(&got) {
                            wrong.push(format!(
                                "{path} ({q}): order {:?} against {:?}",
                                order(&want),
                                order(&got)
                            ));
                        }
                    }
                }
                Err(e) => wrong.push(format!("{path} ({q}): prescale refused: {e}")),
            }
        }
    }
    for q in RANGE_VECTORS {
        let q = &q.replace("MID", &mid);
        for t in instants {
            let path = format!("/api/v1/query?query={}&time={t}", enc(q));
            let want = answer(prom, &path).unwrap_or_else(|e| panic!("Prometheus on {q}: {e}"));
            assert!(!want.is_empty(), "Prometheus has no samples for {q}");
            match answer(d.addr, &path) {
                Ok(got) => {
                    if let Some(why) = differ(&want, &got) {
                        wrong.push(format!("{path} ({q}): {why}"));
                    }
                }
                Err(e) => wrong.push(format!("{path} ({q}): prescale refused: {e}")),
            }
        }
        // Both refuse a range vector as a range query's answer.
        let path = format!("/api/v1/query_range?query={}&{range}", enc(q));
        for (who, addr) in [("Prometheus", prom), ("prescale", d.addr)] {
            let (code, body) = get(addr, &path).unwrap();
            if code != 400 {
                wrong.push(format!("{path}: {who} answered {code}, not 400: {body}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} queries differ from Prometheus:\n{}",
        wrong.len(),
        QUERIES.len() + RANGE_VECTORS.len(),
        wrong.join("\n")
    );
}
