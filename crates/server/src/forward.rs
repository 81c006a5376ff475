//! A standby forwards reads to the replica that acts. With `[leader_election]`, only the
//! holder of the lease plans, decides and stores plans and decisions; a standby's own
//! status is what it last stored itself. So, as a Vault standby forwards requests to the
//! active node, a standby that knows where the holder is (the `advertise_url` the holder
//! wrote on the Lease) passes the API's reads (workloads, plans, decisions, series,
//! anomalies, unmanaged capacity) and releases on to it, and the dashboard behind a
//! Service that picks either replica shows what the acting one does. What is this
//! replica's own stays here: `/api/v1/sources`, `/api/v1/targets`, `/api/v1/status/*`,
//! writes, snapshots, `/metrics` and `/healthz`. When the holder cannot be reached the
//! standby answers itself and says so in a header and in `/api/v1/sources`.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::{error, AppState, Leadership};

/// Carried by a forwarded request: the replica that gets it answers it itself, so two
/// replicas that each take the other for the holder do not pass it back and forth. A
/// person can send it to read a standby's own store.
pub const FORWARDED: &str = "x-prescale-forwarded";
/// On an answer from the holder: the holder's identity.
pub const SERVED_BY: &str = "x-prescale-served-by";
/// On an answer a standby gave itself because the holder could not be reached: why.
pub const FORWARD_ERROR: &str = "x-prescale-forward-error";

/// The largest request body forwarded (queries, match[] lists).
const MAX_REQUEST: usize = 16 << 20;
/// The largest answer taken from the holder (a long query range).
const MAX_ANSWER: u64 = 256 << 20;
/// After the holder could not be reached, answers come from here this long before it
/// is tried again, so a dashboard's dozen requests do not each wait for it.
const BACK_OFF: Duration = Duration::from_secs(5);

/// The request headers passed on: the credentials (the holder applies its own token
/// rule) and what the body is.
const PASSED_ON: [header::HeaderName; 3] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];
/// The answer headers passed back (a browser asked for the token, a download).
const PASSED_BACK: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::WWW_AUTHENTICATE,
    header::CONTENT_DISPOSITION,
];

/// What went wrong forwarding to the holder, kept for `/api/v1/sources`.
#[derive(Debug, Clone)]
pub struct ForwardError {
    /// Why, naming the URL tried.
    pub message: String,
    /// When.
    pub at: Instant,
}

/// Whether a standby passes `method path` on to the holder.
pub fn forwarded(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/api/v1/") else {
        return false;
    };
    let first = rest.split('/').next().unwrap_or_default();
    !matches!(first, "sources" | "targets" | "status" | "write" | "admin")
        && (method == Method::GET || method == Method::POST)
}

/// A client for the holder's API, trusting `ca_file` (PEM) for https where given: 2 s
/// to connect, a minute for the answer (a comparison with HPA replays a week).
pub fn holder_agent(ca_file: Option<&std::path::Path>) -> Result<ureq::Agent, String> {
    prescale_collect::http::agent_with(
        Duration::from_secs(60),
        Some(Duration::from_secs(2)),
        prescale_collect::http::TlsFiles {
            ca_file,
            client: None,
        },
    )
}

/// The client `lead` forwards with.
fn agent(lead: &Leadership) -> ureq::Agent {
    static DEFAULT: OnceLock<ureq::Agent> = OnceLock::new();
    lead.agent.clone().unwrap_or_else(|| {
        DEFAULT
            .get_or_init(|| holder_agent(None).expect("no file to read"))
            .clone()
    })
}

/// The holder's answer: status, headers passed back, body.
type Answer = (u16, Vec<(header::HeaderName, String)>, Vec<u8>);

/// `req` marked as forwarded, with the headers of `headers` passed on.
fn passing<B>(mut req: ureq::RequestBuilder<B>, headers: &HeaderMap) -> ureq::RequestBuilder<B> {
    req = req.header(FORWARDED, "1");
    for h in &PASSED_ON {
        if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
            req = req.header(h.as_str(), v);
        }
    }
    req
}

/// Sends the request to `url` with `agent` (blocking).
fn send(
    agent: &ureq::Agent,
    method: &Method,
    url: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, String> {
    let answer = if method == Method::POST {
        passing(agent.post(url), headers).send(&body[..])
    } else {
        passing(agent.get(url), headers).call()
    };
    let mut resp = answer.map_err(|e| format!("{method} {url}: {e}"))?;
    let back = PASSED_BACK
        .iter()
        .filter_map(|h| {
            resp.headers()
                .get(h.as_str())
                .and_then(|v| v.to_str().ok())
                .map(|v| (h.clone(), v.to_string()))
        })
        .collect();
    let code = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(|e| format!("{method} {url}: reading the answer: {e}"))?;
    Ok((code, back, body))
}

/// Where a standby forwards to, if it should try now.
fn holder_to_try(lead: &Leadership) -> Option<(String, String)> {
    if lead.leading.load(Ordering::Relaxed) {
        return None;
    }
    if lead.unusable_url().is_some() {
        return None;
    }
    let url = lead.holder_url.read().expect("holder url lock").clone();
    let backing_off = lead
        .forward_error
        .read()
        .expect("forward error lock")
        .as_ref()
        .is_some_and(|e| e.at.elapsed() < BACK_OFF);
    (!backing_off).then(|| (url, lead.holder.read().expect("holder lock").clone()))
}

/// The middleware: on a standby, forwards what [`forwarded`] names to the holder.
pub async fn to_the_holder(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(lead) = st.leadership.clone() else {
        return next.run(req).await;
    };
    if req.headers().contains_key(FORWARDED) || !forwarded(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let Some((url, holder)) = holder_to_try(&lead) else {
        return here(&lead, next, req).await;
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_REQUEST).await {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body could not be read to pass it on to the replica that holds the lease: {e}"),
            )
        }
    };
    let target = format!(
        "{url}{}",
        parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |p| p.as_str())
    );
    let (method, headers, sent) = (parts.method.clone(), parts.headers.clone(), body.clone());
    let client = agent(&lead);
    let answer =
        tokio::task::spawn_blocking(move || send(&client, &method, &target, &headers, sent))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
    match answer {
        Ok((code, back, bytes)) => {
            if lead
                .forward_error
                .write()
                .expect("forward error lock")
                .take()
                .is_some()
            {
                tracing::info!(holder = %holder, url = %url, "leader election: reads go to the holder again");
            }
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            for (name, value) in back {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    resp.headers_mut().insert(name, v);
                }
            }
            if let Ok(v) = HeaderValue::from_str(&holder) {
                resp.headers_mut().insert(SERVED_BY, v);
            }
            resp
        }
        Err(why) => {
            let message = format!(
                "the replica holding the lease ({holder}) could not be reached at {url}: {why}"
            );
            {
                let mut last = lead.forward_error.write().expect("forward error lock");
                if last.as_ref().is_none_or(|e| e.message != message) {
                    tracing::warn!("leader election: {message}; answering from this replica");
                }
                *last = Some(ForwardError {
                    message,
                    at: Instant::now(),
                });
            }
            here(&lead, next, Request::from_parts(parts, Body::from(body))).await
        }
    }
}

/// This replica's own answer, saying why it is not the holder's.
async fn here(lead: &Leadership, next: Next, req: Request) -> Response {
    let why = lead.not_forwarded();
    let mut resp = next.run(req).await;
    if let Some(why) = why {
        let ascii: String = why
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&ascii) {
            resp.headers_mut().insert(FORWARD_ERROR, v);
        }
    }
    resp
}

impl Leadership {
    /// On a standby, why its answers are its own rather than the holder's.
    pub fn not_forwarded(&self) -> Option<String> {
        if self.leading.load(Ordering::Relaxed) {
            return None;
        }
        if let Some(e) = &*self.forward_error.read().expect("forward error lock") {
            return Some(e.message.clone());
        }
        self.unusable_url()
    }

    /// Why the holder's URL, as known, cannot be forwarded to, if it cannot.
    fn unusable_url(&self) -> Option<String> {
        let url = self.holder_url.read().expect("holder url lock");
        let holder = self.holder.read().expect("holder lock");
        if holder.is_empty() {
            return Some("no replica holds the lease".to_string());
        }
        if url.is_empty() {
            return Some(format!("the replica holding the lease ({holder}) advertises no URL ([leader_election] advertise_url)"));
        }
        // One URL in a configuration every replica shares (a Service's, say): reads
        // sent there may come back here.
        (self.advertise_url.as_deref() == Some(url.as_str())).then(|| {
            format!("the replica holding the lease ({holder}) advertises {url}, as this one does: each replica needs its own advertise_url (e.g. --advertise-url http://$(POD_IP):9180)")
        })
    }
}

/// Decisions asked of the holder at once when copying its log.
const LOG_PAGE: usize = 1000;

/// Where a standby's copy of the holder's decision log has got to. Only the holder
/// logs decisions, each replica in its own store: a standby copies them as they are
/// made, so the one that takes over serves the log from before the failover too.
#[derive(Debug, Default)]
pub struct LogCopy {
    /// The holder copied from and the last place in its log copied.
    from: Option<(String, u64)>,
}

impl LogCopy {
    /// Copies into `st`'s store what the holder logged since the last call, when this
    /// replica stands by and the holder's URL can be used (blocking); returns how many
    /// decisions were copied. From a holder not copied from before, it starts at the
    /// newest decision this replica has (its own as a former holder, or one copied),
    /// and leaves out those of that very time it has already.
    pub fn copy(&mut self, st: &AppState) -> Result<usize, String> {
        let Some(lead) = &st.leadership else {
            return Ok(0);
        };
        let res = self.copy_from_holder(st, lead);
        *lead.copy_error.write().expect("copy error lock") = res.as_ref().err().cloned();
        res
    }

    fn copy_from_holder(&mut self, st: &AppState, lead: &Leadership) -> Result<usize, String> {
        if lead.leading.load(Ordering::Relaxed) || lead.unusable_url().is_some() {
            return Ok(0);
        }
        let url = lead.holder_url.read().expect("holder url lock").clone();
        let holder = lead.holder.read().expect("holder lock").clone();
        let store = &st.store;
        let mut copied = 0;
        loop {
            let (query, have) = match &self.from {
                Some((h, seq)) if *h == holder => (format!("after={seq}"), Vec::new()),
                _ => match store.decisions(None, 1).map_err(|e| e.to_string())?.pop() {
                    None => (String::new(), Vec::new()),
                    Some(newest) => {
                        let at = newest.at;
                        let have = store
                            .decisions_matching(
                                &prescale_store::DecisionFilter {
                                    since: Some(at),
                                    until: Some(at),
                                    ..Default::default()
                                },
                                LOG_PAGE,
                            )
                            .map_err(|e| e.to_string())?;
                        (format!("since={:.3}", at as f64 / 1000.0), have)
                    }
                },
            };
            let target = format!("{url}/api/v1/decisions?limit={LOG_PAGE}&{query}");
            let mut headers = HeaderMap::new();
            if let Some(v) = st
                .receivers
                .token()
                .and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok())
            {
                headers.insert(header::AUTHORIZATION, v);
            }
            let (code, _, body) =
                send(&agent(lead), &Method::GET, &target, &headers, Bytes::new())?;
            let body = String::from_utf8_lossy(&body);
            if code != 200 {
                return Err(format!(
                    "GET {target}: {code}: {}",
                    body.chars().take(300).collect::<String>()
                ));
            }
            #[derive(serde::Deserialize)]
            struct Entry {
                seq: u64,
                decision: prescale_core::Decision,
            }
            #[derive(serde::Deserialize)]
            struct Page {
                data: Vec<Entry>,
            }
            let page: Page = serde_json::from_str(&body)
                .map_err(|e| format!("GET {target}: not a page of the decision log: {e}"))?;
            let n = page.data.len();
            for e in page.data {
                if !have.contains(&e.decision) {
                    store.log_decision(&e.decision).map_err(|e| e.to_string())?;
                    copied += 1;
                }
                self.from = Some((holder.clone(), e.seq));
            }
            if n < LOG_PAGE {
                return Ok(copied);
            }
        }
    }
}
