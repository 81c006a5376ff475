//! The write endpoints senders push to: Prometheus remote_write at `POST /api/v1/write`
//! and InfluxDB line protocol at `POST /api/v2/write` (InfluxDB 2) and `POST /write`
//! (InfluxDB 1).
//!
//! Samples are on disk before the answer: `204 No Content` means every sample was stored
//! (or was already there). When some were refused (a corrupt line, a NaN, a timestamp
//! reused with another value), the rest are stored anyway and the answer is `400` with a
//! text saying what was refused and why, so senders log it and do not resend what was
//! taken. A payload that cannot be read at all is a `400` and nothing of it is stored; a
//! store failure is a `500`, which senders retry. When a token is configured every write
//! must carry it, as `Authorization: Bearer TOKEN` or `Token TOKEN`, or as the password
//! of Basic credentials.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use prescale_collect::receive::{self, Decoded, Precision, ReceiveError};
use serde::Deserialize;

use crate::AppState;

/// The receivers' settings and counters, shared by the handlers.
#[derive(Debug, Default)]
pub struct Receivers {
    /// Whether remote_write is accepted (a reload may change it).
    pub remote_write: std::sync::atomic::AtomicBool,
    /// Whether line protocol is accepted (a reload may change it).
    pub influx: std::sync::atomic::AtomicBool,
    /// The token writes must carry, if any: a reload reads its file again (a rotated
    /// Secret), see [`Receivers::set_token`].
    token: std::sync::RwLock<Option<String>>,
    /// Counters per receiver: `[remote_write, influx]`.
    pub counts: [ReceiveCounts; 2],
}

/// What one receiver has taken so far.
#[derive(Debug, Default)]
pub struct ReceiveCounts {
    /// Write requests answered, whatever the outcome.
    pub requests: AtomicU64,
    /// Samples newly stored.
    pub accepted: AtomicU64,
    /// Samples already stored with the same value.
    pub duplicates: AtomicU64,
    /// Samples the store refused (non-finite, a timestamp reused with another value).
    pub rejected: AtomicU64,
    /// Payloads, series or lines that could not be read, so none of their samples were
    /// stored.
    pub unreadable: AtomicU64,
    /// Samples dropped on purpose (staleness markers, string fields).
    pub skipped: AtomicU64,
}

impl Receivers {
    /// Settings from a configuration and the token read from its `token_file`.
    pub fn new(cfg: &prescale_core::config::Config, token: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            remote_write: cfg.sources.remote_write.enabled.into(),
            influx: cfg.sources.influx.enabled.into(),
            token: std::sync::RwLock::new(token),
            counts: Default::default(),
        })
    }
}

impl Receivers {
    /// The token writes and changes must carry, if any.
    pub fn token(&self) -> Option<String> {
        self.token.read().expect("token lock").clone()
    }

    /// Puts a token read again at a reload in force (`None`: none is needed).
    pub fn set_token(&self, token: Option<String>) {
        *self.token.write().expect("token lock") = token;
    }

    /// Puts a reloaded configuration's `[sources.remote_write]` and `[sources.influx]`
    /// `enabled` in force.
    pub fn enable(&self, cfg: &prescale_core::config::Config) {
        self.remote_write
            .store(cfg.sources.remote_write.enabled, Ordering::Relaxed);
        self.influx
            .store(cfg.sources.influx.enabled, Ordering::Relaxed);
    }
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg.into() + "\n",
    )
        .into_response()
}

/// Compares in time independent of where the strings differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `None` if the request may write, else the answer that refuses it.
fn refuse(r: &Receivers, headers: &HeaderMap) -> Option<Response> {
    refuse_without(r.token().as_deref()?, headers, "writes need")
}

/// `None` if `headers` carry the token `want`, else the answer that refuses what
/// `needs` it (`writes need`, `reloading needs`).
pub(crate) fn refuse_without(want: &str, headers: &HeaderMap, needs: &str) -> Option<Response> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // Basic credentials carry the token as the password, whatever the user name (what
    // Prometheus' basic_auth and InfluxDB 1 clients send).
    let basic = value
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|up| up.split_once(':').map(|(_, p)| p.to_string()));
    let got = value
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("Token "))
        })
        .map(|t| t.trim().to_string())
        .or(basic);
    match got {
        Some(t) if same(t.as_bytes(), want.as_bytes()) => None,
        Some(_) => Some(text(
            StatusCode::UNAUTHORIZED,
            "the token does not match the one in server.token_file",
        )),
        None => Some(text(
            StatusCode::UNAUTHORIZED,
            format!("{needs} the token from server.token_file, as `Authorization: Bearer TOKEN`"),
        )),
    }
}

fn disabled(what: &str, key: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("the {what} receiver is disabled; set {key}.enabled = true to accept writes here"),
    )
}

/// The answer when the store failed: a `500`, which senders retry.
fn not_stored(e: String) -> Response {
    tracing::error!(error = %e, "a write could not be stored");
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("this write may not have been stored: {e}; retry it (samples already stored are taken again without harm)"),
    )
}

/// Stores what was decoded and answers for it.
async fn store(st: &AppState, which: usize, mut decoded: Decoded) -> Response {
    let counts = &st.receivers.counts[which];
    counts
        .skipped
        .fetch_add(decoded.skipped as u64, Ordering::Relaxed);
    counts.unreadable.fetch_add(
        (decoded.problems.len() + decoded.more_problems) as u64,
        Ordering::Relaxed,
    );
    let ahead = decoded.drop_ahead(prescale_core::now_ms());
    counts.rejected.fetch_add(ahead as u64, Ordering::Relaxed);
    let store = st.store.clone();
    let known = st.metadata.clone();
    let watch = st.anomalies.clone();
    // Acknowledged only once the samples and what the sender said of their families are
    // both saved: a sender that is refused sends both again.
    let res = tokio::task::spawn_blocking(move || {
        let series = std::mem::take(&mut decoded.series);
        let reports = store.append_many(&series)?;
        known.remember(std::mem::take(&mut decoded.metadata))?;
        let (mut accepted, mut duplicates, mut rejected) = (0, 0, 0);
        for ((key, _), r) in series.iter().zip(&reports) {
            accepted += r.accepted;
            duplicates += r.duplicates;
            rejected += r.rejected.len();
            for x in &r.rejected {
                decoded.problem(format!("{key} at {} ms: {}", x.ts, x.reason));
            }
        }
        // Found anomalies are derived, not what was sent: they are judged off the
        // write's path, and failing to save them does not fail it.
        watch.submit(series, &reports);
        Ok::<_, prescale_store::StoreError>((
            accepted,
            duplicates,
            rejected,
            decoded.problems,
            decoded.more_problems,
        ))
    })
    .await;
    let (accepted, duplicates, rejected, lines, more) = match res {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return not_stored(e.to_string()),
        Err(e) => return not_stored(e.to_string()),
    };
    counts
        .accepted
        .fetch_add(accepted as u64, Ordering::Relaxed);
    counts
        .duplicates
        .fetch_add(duplicates as u64, Ordering::Relaxed);
    counts
        .rejected
        .fetch_add(rejected as u64, Ordering::Relaxed);
    let mut resp = if lines.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let mut msg = format!(
            "stored {accepted} samples ({duplicates} already stored); these were not stored:\n{}",
            lines.join("\n")
        );
        if more > 0 {
            msg.push_str(&format!("\n... and {more} more"));
        }
        text(StatusCode::BAD_REQUEST, msg)
    };
    if which == 0 {
        // What remote write 2.0 senders read back (1.0 senders ignore them): samples
        // now stored, a resent one included; histograms and exemplars are not stored.
        let h = resp.headers_mut();
        for (name, n) in [
            (
                "x-prometheus-remote-write-samples-written",
                accepted + duplicates,
            ),
            ("x-prometheus-remote-write-histograms-written", 0),
            ("x-prometheus-remote-write-exemplars-written", 0),
        ] {
            h.insert(name, n.into());
        }
    }
    resp
}

fn malformed(st: &AppState, which: usize, e: ReceiveError) -> Response {
    st.receivers.counts[which]
        .unreadable
        .fetch_add(1, Ordering::Relaxed);
    let code = match e {
        ReceiveError::Malformed(_) => StatusCode::BAD_REQUEST,
        ReceiveError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    };
    text(code, format!("nothing of this write was stored: {e}"))
}

/// `POST /api/v1/write`: Prometheus remote_write 1.0.
pub async fn remote_write(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let r = &st.receivers;
    if !r.remote_write.load(Ordering::Relaxed) {
        return disabled("remote_write", "sources.remote_write");
    }
    if let Some(no) = refuse(r, &headers) {
        return no;
    }
    r.counts[0].requests.fetch_add(1, Ordering::Relaxed);
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Remote write 2.0 says which message it is in the content type; 1.0 may not.
    let v2 = match ctype
        .split_once("proto=")
        .map(|(_, p)| p.split(';').next().unwrap_or("").trim())
    {
        None | Some("prometheus.WriteRequest") => false,
        Some("io.prometheus.write.v2.Request") => true,
        Some(other) => {
            return malformed(
                &st,
                0,
                ReceiveError::Unsupported(format!(
                    "proto={other} is not a remote write message; send prometheus.WriteRequest (1.0) or io.prometheus.write.v2.Request (2.0)"
                )),
            )
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("snappy");
    if !encoding.eq_ignore_ascii_case("snappy") {
        return malformed(
            &st,
            0,
            ReceiveError::Unsupported(format!(
                "Content-Encoding {encoding:?}: remote_write bodies are snappy-compressed"
            )),
        );
    }
    let decoded = tokio::task::spawn_blocking(move || {
        if v2 {
            receive::decode_remote_write_v2(&body)
        } else {
            receive::decode_remote_write(&body)
        }
    })
    .await;
    match decoded {
        Ok(Ok(d)) => store(&st, 0, d).await,
        Ok(Err(e)) => malformed(&st, 0, e),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The query parameters of InfluxDB's write endpoints that matter here.
#[derive(Deserialize)]
pub struct InfluxParams {
    precision: Option<String>,
}

/// `POST /api/v2/write` and `POST /write`: InfluxDB line protocol.
pub async fn influx_write(
    State(st): State<AppState>,
    Query(p): Query<InfluxParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = &st.receivers;
    if !r.influx.load(Ordering::Relaxed) {
        return disabled("InfluxDB line protocol", "sources.influx");
    }
    if let Some(no) = refuse(r, &headers) {
        return no;
    }
    r.counts[1].requests.fetch_add(1, Ordering::Relaxed);
    let precision = match Precision::parse(p.precision.as_deref()) {
        Ok(x) => x,
        Err(e) => return malformed(&st, 1, e),
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let now = prescale_core::now_ms();
    let decoded = tokio::task::spawn_blocking(move || {
        let raw = receive::decode_content(encoding.as_deref(), &body)?;
        receive::decode_line_protocol(&raw, precision, now)
    })
    .await;
    match decoded {
        Ok(Ok(d)) => store(&st, 1, d).await,
        Ok(Err(e)) => malformed(&st, 1, e),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
