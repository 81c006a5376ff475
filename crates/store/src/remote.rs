//! A Prometheus-compatible server as the sample store, for when one machine is not
//! enough: samples are written with remote_write (acknowledged only once the server took
//! them) and read back with the Prometheus HTTP API (`/api/v1/series`, and `/api/v1/query`
//! with a range selector, which returns raw samples). VictoriaMetrics, Prometheus with
//! `--web.enable-remote-write-receiver`, Mimir, Thanos Receive and Cortex speak both.
//! Decisions and state documents stay in the local store.

use std::time::Duration;

use prescale_collect::http::percent_encode as enc;
use prescale_core::{Sample, Selector, SeriesKey, TimestampMs};
use serde::Deserialize;

/// Where the remote server is.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The remote_write endpoint, e.g. `http://vm:8428/api/v1/write`.
    pub write_url: String,
    /// The base of the query API, e.g. `http://vm:8428` (`/api/v1/...` is appended).
    pub read_url: String,
    /// How long one request may take.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// User name and password sent as `Authorization: Basic` (when there is no token).
    pub basic: Option<(String, String)>,
    /// How far back series are listed (`/api/v1/series?start=`), in ms.
    pub lookback_ms: i64,
    /// PEM certificates to check the server's certificate against (https).
    pub ca_file: Option<std::path::PathBuf>,
    /// A PEM client certificate and its private key, for a server that asks for one.
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Why a remote write did not go through.
pub(crate) enum WriteError {
    /// The server answered 4xx: it will not take these samples, however often sent.
    Refused(String),
    /// Unreachable, timed out or 5xx: a retry may pass.
    Failed(String),
}

pub(crate) struct Remote {
    cfg: RemoteConfig,
    agent: ureq::Agent,
}

#[derive(Deserialize)]
struct ApiResponse<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Matrix {
    result: Vec<MatrixSeries>,
}

#[derive(Deserialize)]
struct MatrixSeries {
    metric: std::collections::BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

fn key_of(mut labels: std::collections::BTreeMap<String, String>) -> Option<SeriesKey> {
    let name = labels.remove("__name__")?;
    SeriesKey::new(name, labels).ok()
}

impl Remote {
    pub(crate) fn new(cfg: RemoteConfig) -> Result<Self, String> {
        let agent = prescale_collect::http::agent(
            cfg.timeout,
            prescale_collect::http::TlsFiles {
                ca_file: cfg.ca_file.as_deref(),
                client: cfg.client.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
            },
        )?;
        Ok(Self { cfg, agent })
    }

    pub(crate) fn describe(&self) -> String {
        format!("remote store {}", self.cfg.read_url)
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match (&self.cfg.token, &self.cfg.basic) {
            (Some(t), _) => req.header("Authorization", &format!("Bearer {t}")),
            (None, Some((user, password))) => {
                use base64::Engine as _;
                let cred =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                req.header("Authorization", &format!("Basic {cred}"))
            }
            (None, None) => req,
        }
    }

    /// Writes with remote_write; `Ok` only when the server answered 2xx. A 4xx answer
    /// (out of order, out of bounds, too old) is [`WriteError::Refused`]: sending the same
    /// again would not help; anything else may pass on a retry.
    pub(crate) fn write(&self, series: &[(SeriesKey, Vec<Sample>)]) -> Result<(), WriteError> {
        let body = prescale_collect::receive::encode_remote_write(series);
        let url = &self.cfg.write_url;
        let req = self
            .agent
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        let mut resp = self
            .auth(req)
            .send(&body[..])
            .map_err(|e| WriteError::Failed(format!("remote_write to {url}: {e}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let msg = format!("remote_write to {url}: HTTP {status}: {}", text.trim());
        Err(if status.is_client_error() {
            WriteError::Refused(msg)
        } else {
            WriteError::Failed(msg)
        })
    }

    fn get<T: for<'de> Deserialize<'de>>(&self, path_and_query: &str) -> Result<T, String> {
        let url = format!(
            "{}/api/v1/{path_and_query}",
            self.cfg.read_url.trim_end_matches('/')
        );
        let mut resp = self
            .auth(self.agent.get(&url))
            .call()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()
            .map_err(|e| format!("GET {url}: {e}"))?;
        let parsed: ApiResponse<T> = serde_json::from_str(&text).map_err(|e| {
            format!(
                "GET {url}: HTTP {status}, not a Prometheus API answer ({e}): {}",
                text.chars().take(200).collect::<String>()
            )
        })?;
        match (parsed.status.as_str(), parsed.data) {
            ("success", Some(d)) => Ok(d),
            _ => Err(format!(
                "GET {url}: {}",
                parsed.error.unwrap_or_else(|| format!("HTTP {status}"))
            )),
        }
    }

    /// Series the selector picks, seen within the lookback.
    pub(crate) fn select(&self, sel: &str, now: TimestampMs) -> Result<Vec<SeriesKey>, String> {
        let start = (now - self.cfg.lookback_ms) as f64 / 1000.0;
        let found: Vec<std::collections::BTreeMap<String, String>> =
            self.get(&format!("series?match[]={}&start={start}", enc(sel)))?;
        let mut keys: Vec<SeriesKey> = found.into_iter().filter_map(key_of).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// Raw samples of exactly `key` with `start <= ts <= end`.
    pub(crate) fn range(
        &self,
        key: &SeriesKey,
        start: TimestampMs,
        end: TimestampMs,
    ) -> Result<Vec<Sample>, String> {
        // A range selector ending at `end` reaches back `window` ms, left-open.
        let from = start.max(end.saturating_sub(self.cfg.lookback_ms));
        let window = end - from + 1;
        let query = format!("{}[{window}ms]", Selector::from(key));
        let m: Matrix = self.get(&format!(
            "query?query={}&time={}",
            enc(&query),
            end as f64 / 1000.0
        ))?;
        let mut out = Vec::new();
        for s in m.result {
            // The selector also matches series with more labels: keep only this one.
            if key_of(s.metric).as_ref() != Some(key) {
                continue;
            }
            for (t, v) in s.values {
                let ts = (t * 1000.0).round() as TimestampMs;
                if let Ok(value) = v.parse::<f64>() {
                    if ts >= start && ts <= end && value.is_finite() {
                        out.push(Sample { ts, value });
                    }
                }
            }
        }
        out.sort_by_key(|s| s.ts);
        Ok(out)
    }
}

/// Most steps one `query_range` request asks for: Prometheus refuses more than 11,000
/// points a series.
pub const QUERY_RANGE_POINTS: i64 = 10_000;

/// `query` evaluated every `step_s` seconds from `start` to `end` (unix seconds, both
/// included) by the Prometheus-compatible query API at `cfg.read_url`, as (unix seconds,
/// value) pairs in time order: the steps where it has a finite value.
///
/// Long ranges are read in requests of at most [`QUERY_RANGE_POINTS`] steps, and
/// `progress` is told (steps read, steps in all) after each. The query must give one
/// series: a trace has one per dimension, so several are an error that says to aggregate
/// them; so is a query that gives no value at all in the range.
pub fn query_range(
    cfg: RemoteConfig,
    query: &str,
    (start, end, step_s): (i64, i64, i64),
    mut progress: impl FnMut(i64, i64),
) -> Result<Vec<(i64, f64)>, String> {
    if step_s <= 0 || end < start {
        return Err(format!(
            "a range from {start} to {end} every {step_s} s is empty; the start must come before the end"
        ));
    }
    let remote = Remote::new(cfg)?;
    let total = (end - start) / step_s + 1;
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut from = start;
    while from <= end {
        let to = (from + (QUERY_RANGE_POINTS - 1) * step_s).min(end);
        let m: Matrix = remote.get(&format!(
            "query_range?query={}&start={from}&end={to}&step={step_s}",
            enc(query)
        ))?;
        if m.result.len() > 1 {
            let shown: Vec<String> = m
                .result
                .iter()
                .take(3)
                .map(|s| {
                    let labels: Vec<String> =
                        s.metric.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                    format!("{{{}}}", labels.join(", "))
                })
                .collect();
            return Err(format!(
                "`{query}` gives {} series ({}{}); a trace needs one per dimension: aggregate them, e.g. sum({query})",
                m.result.len(),
                shown.join(", "),
                if m.result.len() > 3 { ", ..." } else { "" }
            ));
        }
        for s in m.result {
            for (t, v) in s.values {
                let ts = t.round() as i64;
                match v.parse::<f64>() {
                    Ok(value) if value.is_finite() && ts >= from && ts <= to => {
                        out.push((ts, value))
                    }
                    _ => {}
                }
            }
        }
        progress(((to - start) / step_s + 1).min(total), total);
        from = to + step_s;
    }
    if out.is_empty() {
        return Err(format!(
            "`{query}` gives no value from {} to {}; check it in Prometheus' graph view over that range",
            prescale_core::format_ts(start * 1000),
            prescale_core::format_ts(end * 1000)
        ));
    }
    out.sort_by_key(|p| p.0);
    out.dedup_by_key(|p| p.0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request to a local server that answers `status`; returns the request's head.
    fn write_once(
        basic: Option<(&str, &str)>,
        token: Option<&str>,
        status: &str,
    ) -> (String, Result<(), WriteError>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let status = status.to_string();
        let server = std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            // The whole request before answering: answering after its first segment and
            // closing can reset the connection while the client still sends the body,
            // and the client then sees a failure instead of the status (a flaky test on
            // a busy machine).
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = c.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                let Some(end) = text.find("\r\n\r\n") else {
                    if n == 0 {
                        break;
                    }
                    continue;
                };
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if n == 0 || buf.len() >= end + 4 + length {
                    break;
                }
            }
            let n = buf.len();
            write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno!"
            )
            .unwrap();
            String::from_utf8_lossy(&buf[..n]).to_string()
        });
        let r = Remote::new(RemoteConfig {
            write_url: format!("http://{addr}/api/v1/write"),
            read_url: format!("http://{addr}"),
            timeout: Duration::from_secs(5),
            token: token.map(String::from),
            basic: basic.map(|(u, p)| (u.to_string(), p.to_string())),
            lookback_ms: 0,
            ca_file: None,
            client: None,
        })
        .unwrap();
        let res = r.write(&[(
            SeriesKey::metric("m").unwrap(),
            vec![Sample { ts: 1, value: 1.0 }],
        )]);
        (server.join().unwrap(), res)
    }

    #[test]
    fn writes_carry_basic_or_bearer_credentials_and_4xx_is_a_refusal() {
        let (head, res) = write_once(Some(("u", "p")), None, "204 No Content");
        assert!(res.is_ok());
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: basic dtpw"),
            "{head}"
        );
        assert!(
            head.contains("Content-Encoding: snappy")
                || head
                    .to_ascii_lowercase()
                    .contains("content-encoding: snappy"),
            "{head}"
        );
        let (head, res) = write_once(Some(("u", "p")), Some("tok"), "400 Bad Request");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer tok"),
            "{head}"
        );
        assert!(
            matches!(res, Err(WriteError::Refused(m)) if m.contains("400") && m.contains("no!"))
        );
        let (_, res) = write_once(None, None, "503 Service Unavailable");
        assert!(matches!(res, Err(WriteError::Failed(m)) if m.contains("503")));
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(enc(r#"m{a="x y"}[5ms]"#), "m%7Ba%3D%22x%20y%22%7D%5B5ms%5D");
    }

    #[test]
    fn answers_become_keys_without_the_name_label() {
        let k = key_of(
            [
                ("__name__".to_string(), "up".to_string()),
                ("job".into(), "x".into()),
            ]
            .into(),
        )
        .unwrap();
        assert_eq!(k, SeriesKey::parse(r#"up{job="x"}"#).unwrap());
        assert!(key_of([("job".to_string(), "x".to_string())].into()).is_none());
    }
}
