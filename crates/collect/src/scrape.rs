//! Pulling from Prometheus exporters: one scrape of one target (an HTTP GET of its
//! `/metrics`), the text exposition format parsed into series and samples, and the
//! target's health, as Prometheus' own scrape loop records it.
//!
//! Every sample gets the target's `job` and `instance` labels (a label of the same name
//! the exporter sent is kept as `exported_job` / `exported_instance`, as Prometheus does
//! by default). Each scrape also yields `up` (1 when the scrape worked, 0 when not),
//! `scrape_duration_seconds` and `scrape_samples_scraped`. Non-finite values (a summary
//! with no observations reports NaN) are skipped and counted, not stored.

use std::collections::BTreeMap;
use std::time::Instant;

use prescale_core::{Sample, SeriesKey, TimestampMs};
use serde::{Deserialize, Serialize};

/// One target of a scrape job.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The job's name (the `job` label).
    pub job: String,
    /// `host:port` (the `instance` label).
    pub instance: String,
    /// The full URL scraped.
    pub url: String,
    /// More labels for everything scraped from it (a discovered pod's `namespace`,
    /// `pod` and `node`); an exporter's label of the same name is kept as `exported_*`.
    pub labels: BTreeMap<String, String>,
    /// Most samples a scrape may have (0: no limit); a scrape with more fails whole, as
    /// Prometheus' `sample_limit` does.
    pub sample_limit: usize,
}

impl Target {
    /// A target `host:port` of `job`, scraped at `{scheme}://host:port{path}`.
    pub fn new(job: &str, scheme: &str, instance: &str, path: &str) -> Self {
        Self {
            job: job.to_string(),
            instance: instance.to_string(),
            url: format!("{scheme}://{instance}{path}"),
            labels: BTreeMap::new(),
            sample_limit: 0,
        }
    }

    /// Gives `key` this target's extra labels, keeping a label of the same name the
    /// exporter sent as `exported_NAME`.
    fn label(&self, key: &mut SeriesKey) {
        for (k, v) in &self.labels {
            if let Some(old) = key.labels.insert(k.clone(), v.clone()) {
                key.labels.insert(format!("exported_{k}"), old);
            }
        }
    }
}

/// How a target is doing, for `/api/v1/targets`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TargetHealth {
    /// The job.
    pub job: String,
    /// The instance.
    pub instance: String,
    /// The URL scraped.
    pub url: String,
    /// The target's extra labels (a discovered pod's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `"up"`, `"down"` or `"unknown"` (not scraped yet).
    pub health: String,
    /// Why the last scrape failed; empty when it worked.
    pub last_error: String,
    /// When the last scrape started (ms since the epoch), if any.
    pub last_scrape_ms: Option<TimestampMs>,
    /// How long the last scrape took, in seconds.
    pub last_duration_s: f64,
    /// Samples the last scrape yielded.
    pub last_samples: usize,
    /// Non-finite samples the last scrape skipped.
    pub last_skipped: usize,
    /// Samples the last scrape did not store because the target stamped them more than
    /// [`crate::receive::MAX_AHEAD_MS`] ahead of this server's clock (check the clocks).
    #[serde(default)]
    pub last_ahead: usize,
}

/// What one scrape gives: samples to store (the target's and the `up` family) and the
/// target's health.
#[derive(Debug)]
pub struct Scraped {
    /// Samples per series.
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
    /// What the exposition said of its metric families (`# TYPE`, `# HELP`).
    pub metadata: BTreeMap<String, MetricMeta>,
    /// The target's health after this scrape.
    pub health: TargetHealth,
}

/// What a metric family is, as its exposition (`# TYPE`, `# HELP`) or its sender
/// (remote write's metadata) describes it: what Prometheus' `/api/v1/metadata` lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricMeta {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`, `stateset`
    /// or `unknown`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What it measures.
    pub help: String,
    /// Its unit, when the sender gives one.
    pub unit: String,
}

/// A line that is not in the text exposition format.
#[derive(Debug, PartialEq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// One parsed sample line: name, labels, value, optional timestamp (ms).
type Line = (String, Vec<(String, String)>, f64, Option<i64>);

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn parse_line(line: &str) -> Result<Line, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("a sample line needs a value after the metric name")?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            if rest.is_empty() {
                return Err("missing closing '}'".into());
            }
            let eq = rest.find('=').ok_or("a label without '='")?;
            let label = rest[..eq].trim().to_string();
            let after = rest[eq + 1..].trim_start();
            let (value, after) = prescale_core::selector::quoted(after)?;
            labels.push((label, value));
            rest = after;
        }
    }
    let mut parts = rest.split_whitespace();
    let value = parts.next().ok_or("a sample line needs a value")?;
    let value = parse_value(value).ok_or_else(|| format!("{value:?} is not a number"))?;
    let ts = match parts.next() {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| format!("timestamp {t:?} is not integer milliseconds"))?,
        ),
        None => None,
    };
    if parts.next().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok((name.to_string(), labels, value, ts))
}

/// What a parse of an exposition yields.
#[derive(Debug, Default, PartialEq)]
pub struct Exposition {
    /// Samples per series, target labels added.
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
    /// Samples read (stored or not).
    pub samples: usize,
    /// Non-finite samples skipped.
    pub skipped: usize,
    /// Samples stamped more than [`crate::receive::MAX_AHEAD_MS`] after `now`, not kept.
    pub ahead: usize,
    /// Each family's `# TYPE` and `# HELP`.
    pub metadata: BTreeMap<String, MetricMeta>,
}

/// Parses the Prometheus text exposition format (version 0.0.4). Samples without a
/// timestamp take `now`, and those stamped more than [`crate::receive::MAX_AHEAD_MS`]
/// after it are counted and left out, as Prometheus leaves them out of a scrape; `job`
/// and `instance` are added. A malformed line fails the whole
/// scrape, as it does in Prometheus, so a half-read target never looks healthy.
pub fn parse_exposition(
    text: &str,
    job: &str,
    instance: &str,
    now: TimestampMs,
) -> Result<Exposition, ParseError> {
    let mut by_key: BTreeMap<SeriesKey, Vec<Sample>> = BTreeMap::new();
    let mut out = Exposition::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(comment) = line.strip_prefix('#') {
            read_comment(comment, &mut out.metadata);
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let err = |reason: String| ParseError {
            line: i + 1,
            reason,
        };
        let (name, labels, value, ts) = parse_line(line).map_err(|e| err(e.to_string()))?;
        out.samples += 1;
        if !value.is_finite() {
            out.skipped += 1;
            continue;
        }
        // The target's own job and instance win; the exposition's are kept as
        // exported_job and exported_instance (exported_exported_job where that is taken
        // too), as Prometheus keeps them.
        let taken: Vec<String> = labels.iter().map(|(k, _)| k.clone()).collect();
        let mut key = SeriesKey::new(
            name,
            labels.into_iter().map(|(mut k, v)| {
                if k == "job" || k == "instance" {
                    k = format!("exported_{k}");
                    while taken.contains(&k) {
                        k = format!("exported_{k}");
                    }
                }
                (k, v)
            }),
        )
        .map_err(|e| err(e.to_string()))?;
        key.labels.insert("job".into(), job.into());
        key.labels.insert("instance".into(), instance.into());
        by_key.entry(key).or_default().push(Sample {
            ts: ts.unwrap_or(now),
            value,
        });
    }
    for samples in by_key.values_mut() {
        out.ahead += crate::receive::take_ahead(samples, now).map_or(0, |(n, _)| n);
    }
    by_key.retain(|_, samples| !samples.is_empty());
    out.series = by_key.into_iter().collect();
    Ok(out)
}

/// Reads a `# TYPE NAME TYPE` or `# HELP NAME TEXT` line (`\\` and `\n` escaped in
/// the text) into `meta`; other comments are ignored, as Prometheus ignores them.
fn read_comment(comment: &str, meta: &mut BTreeMap<String, MetricMeta>) {
    let mut words = comment.trim_start().splitn(3, ' ');
    let (Some(what), Some(name)) = (words.next(), words.next()) else {
        return;
    };
    let rest = words.next().unwrap_or("").trim();
    match what {
        "TYPE" => meta.entry(name.to_string()).or_default().kind = rest.to_string(),
        "HELP" => {
            let mut help = String::with_capacity(rest.len());
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    help.push(c);
                    continue;
                }
                // Only \\ and \n are escapes; any other backslash stays.
                match chars.next() {
                    Some('n') => help.push('\n'),
                    Some('\\') => help.push('\\'),
                    other => help.extend(std::iter::once('\\').chain(other)),
                }
            }
            meta.entry(name.to_string()).or_default().help = help;
        }
        _ => {}
    }
}

/// Scrapes `target` once with `agent` (which holds the time-out and TLS settings, see
/// [`crate::http::agent`]), at `now`; never fails: a target that cannot be reached or
/// read is `up` 0 with the reason in its health.
pub fn scrape(agent: &ureq::Agent, target: &Target, now: TimestampMs) -> Scraped {
    let started = Instant::now();
    let fetched = fetch(agent, &target.url);
    let parsed = fetched.and_then(|text| {
        parse_exposition(&text, &target.job, &target.instance, now)
            .map_err(|e| format!("the response is not in the Prometheus text format: {e}"))
    });
    let duration = started.elapsed().as_secs_f64();
    let mut health = TargetHealth {
        job: target.job.clone(),
        instance: target.instance.clone(),
        url: target.url.clone(),
        labels: target.labels.clone(),
        last_scrape_ms: Some(now),
        last_duration_s: duration,
        ..Default::default()
    };
    let (mut series, metadata, up) = match parsed {
        Ok(exp) if target.sample_limit > 0 && exp.samples > target.sample_limit => {
            health.health = "down".into();
            health.last_samples = exp.samples;
            health.last_error = format!(
                "{} samples, more than sample_limit = {}: none stored (raise the limit, or have the exporter drop series)",
                exp.samples, target.sample_limit
            );
            (Vec::new(), BTreeMap::new(), 0.0)
        }
        Ok(exp) => {
            health.health = "up".into();
            health.last_samples = exp.samples;
            health.last_skipped = exp.skipped;
            health.last_ahead = exp.ahead;
            (exp.series, exp.metadata, 1.0)
        }
        Err(e) => {
            health.health = "down".into();
            health.last_error = e;
            (Vec::new(), BTreeMap::new(), 0.0)
        }
    };
    let meta = |name: &str, value: f64| {
        let key = SeriesKey::new(
            name,
            [
                ("job", target.job.as_str()),
                ("instance", target.instance.as_str()),
            ],
        )
        .expect("fixed names");
        (key, vec![Sample { ts: now, value }])
    };
    series.push(meta("up", up));
    series.push(meta("scrape_duration_seconds", duration));
    series.push(meta("scrape_samples_scraped", health.last_samples as f64));
    if !target.labels.is_empty() {
        for (key, _) in &mut series {
            target.label(key);
        }
    }
    Scraped {
        series,
        metadata,
        health,
    }
}

/// GETs `url` as Prometheus does (asking for the text format).
fn fetch(agent: &ureq::Agent, url: &str) -> Result<String, String> {
    let mut resp = agent
        .get(url)
        .header("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
        .header(
            "User-Agent",
            concat!("prescale/", env!("CARGO_PKG_VERSION")),
        )
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("GET {url}: HTTP {status}"));
    }
    resp.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading the body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(s: &str) -> SeriesKey {
        SeriesKey::parse(s).unwrap()
    }

    #[test]
    fn the_text_format_parses_with_target_labels_and_timestamps() {
        let text = r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1234.5
node_cpu_seconds_total{cpu="0",mode="user",} 56.25
http_requests_total{path="/a \"b\"\\c",job="app"} 7 1700000000123
rpc_duration_seconds{quantile="0.5"} NaN
go_goroutines 12
histogram_bucket{le="+Inf"} 3e2
clock_ahead 1 1700000601000
both{job="a",exported_job="b"} 2
"#;
        let now = 1_700_000_000_456;
        let e = parse_exposition(text, "node", "h:9100", now).unwrap();
        // A sample stamped more than 10 minutes after the scrape is left out, counted.
        assert_eq!((e.samples, e.skipped, e.ahead), (8, 1, 1));
        let got: BTreeMap<_, _> = e.series.into_iter().collect();
        assert_eq!(
            got[&key(
                r#"node_cpu_seconds_total{cpu="0",mode="user",job="node",instance="h:9100"}"#
            )],
            vec![Sample {
                ts: now,
                value: 56.25
            }]
        );
        let http = key(
            r#"http_requests_total{path="/a \"b\"\\c",exported_job="app",job="node",instance="h:9100"}"#,
        );
        assert_eq!(
            got[&http],
            vec![Sample {
                ts: 1_700_000_000_123,
                value: 7.0
            }]
        );
        assert_eq!(
            got[&key(r#"histogram_bucket{le="+Inf",job="node",instance="h:9100"}"#)][0].value,
            300.0
        );
        // An exported job beside the exported job: kept as Prometheus keeps it.
        let both =
            key(r#"both{exported_exported_job="a",exported_job="b",job="node",instance="h:9100"}"#);
        assert_eq!(got[&both][0].value, 2.0);
        assert_eq!(got.len(), 6);
    }

    #[test]
    fn type_and_help_lines_describe_their_family() {
        let text = "# HELP a_total Requests served,\\ with \\\\ and a\\nsecond line.\n# TYPE a_total counter\n# TYPE b gauge\n# a plain comment\n#HELP c   Spaced out.\na_total 1\nb 2\n";
        let e = parse_exposition(text, "j", "i", 0).unwrap();
        let m = |kind: &str, help: &str| MetricMeta {
            kind: kind.into(),
            help: help.into(),
            unit: String::new(),
        };
        assert_eq!(
            e.metadata.into_iter().collect::<Vec<_>>(),
            vec![
                (
                    "a_total".to_string(),
                    m("counter", "Requests served,\\ with \\ and a\nsecond line.")
                ),
                ("b".to_string(), m("gauge", "")),
                ("c".to_string(), m("", "Spaced out.")),
            ]
        );
    }

    #[test]
    fn a_malformed_line_fails_the_scrape_naming_the_line() {
        for (text, why) in [
            ("ok 1\nbad{a=\"1\"\n", "line 2: missing closing '}'"),
            ("bad", "line 1: a sample line needs a value"),
            ("m{a=1} 2", "line 1: label value must be double-quoted"),
            ("m abc", "line 1: \"abc\" is not a number"),
            ("m 1 2.5", "line 1: timestamp \"2.5\""),
            ("m 1 2 3", "unexpected text"),
            ("m{a=\"x} 1", "unterminated"),
            ("1m 1", "line 1: invalid metric name"),
        ] {
            let e = parse_exposition(text, "j", "i", 0).unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    #[test]
    fn an_unreachable_target_is_down_with_the_reason() {
        // A port nothing listens on: bind one and drop it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let t = Target::new("j", "http", &format!("127.0.0.1:{port}"), "/metrics");
        let agent =
            crate::http::agent(Duration::from_secs(2), crate::http::TlsFiles::default()).unwrap();
        let s = scrape(&agent, &t, 1000);
        assert_eq!(s.health.health, "down");
        assert!(
            s.health.last_error.contains("GET http://127.0.0.1:"),
            "{:?}",
            s.health
        );
        let up = key(&format!(r#"up{{job="j",instance="127.0.0.1:{port}"}}"#));
        let got: BTreeMap<_, _> = s.series.into_iter().collect();
        assert_eq!(
            got[&up],
            vec![Sample {
                ts: 1000,
                value: 0.0
            }]
        );
    }

    #[test]
    fn a_served_exposition_is_scraped_up() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let two = "queue_depth{q=\"a\"} 5\nqueue_depth{q=\"b\"} 6\n";
            for body in [
                "queue_depth{q=\"a\"} 5\n",
                "not a metric line at all\n",
                two,
                two,
            ] {
                let (mut c, _) = listener.accept().unwrap();
                let mut buf = [0u8; 4096];
                let n = c.read(&mut buf).unwrap();
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(req.starts_with("GET /metrics "), "{req}");
                write!(
                    c,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        let mut t = Target::new("app", "http", &addr.to_string(), "/metrics");
        let agent =
            crate::http::agent(Duration::from_secs(5), crate::http::TlsFiles::default()).unwrap();
        let s = scrape(&agent, &t, 7);
        assert_eq!(s.health.health, "up", "{:?}", s.health);
        assert_eq!(s.health.last_samples, 1);
        let got: BTreeMap<_, _> = s.series.into_iter().collect();
        let q = key(&format!(
            r#"queue_depth{{q="a",job="app",instance="{addr}"}}"#
        ));
        assert_eq!(got[&q], vec![Sample { ts: 7, value: 5.0 }]);
        let s = scrape(&agent, &t, 8);
        assert_eq!(s.health.health, "down");
        assert!(
            s.health
                .last_error
                .contains("not in the Prometheus text format: line 1"),
            "{:?}",
            s.health
        );
        // Two samples against a limit of one: the scrape fails whole, saying why, and
        // only `up` 0 and the scrape's own counts are kept.
        t.sample_limit = 1;
        let s = scrape(&agent, &t, 9);
        assert_eq!(s.health.health, "down");
        assert_eq!(s.health.last_samples, 2);
        assert!(
            s.health
                .last_error
                .contains("2 samples, more than sample_limit = 1: none stored"),
            "{:?}",
            s.health
        );
        let names: Vec<&str> = s.series.iter().map(|(k, _)| k.name.as_str()).collect();
        assert_eq!(
            names,
            ["up", "scrape_duration_seconds", "scrape_samples_scraped"]
        );
        assert_eq!(s.series[0].1, vec![Sample { ts: 9, value: 0.0 }]);
        // At the limit, it is taken.
        t.sample_limit = 2;
        let s = scrape(&agent, &t, 10);
        assert_eq!(s.health.health, "up", "{:?}", s.health);
        assert_eq!(s.series.len(), 2 + 3);
        server.join().unwrap();
    }
}
