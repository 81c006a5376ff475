//! `prescale events` and `prescale pause` / `resume`: what a team tells a running
//! daemon through its API (planned events, pauses), from the command line, as
//! `kubectl` or `amtool` talk to theirs: the daemon's own answers and refusals are
//! printed, the token read from a file and never shown.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use prescale_collect::http::percent_encode as segment;
use prescale_core::{format_ts, now_ms, TimestampMs};
use serde_json::{json, Value};

/// Where the daemon is, and the token its changes want.
#[derive(Args, Clone)]
pub struct Server {
    /// The daemon's API (its `[server] listen`, or `--advertise-url`).
    #[arg(
        long,
        env = "PRESCALE_SERVER",
        default_value = "http://127.0.0.1:9180",
        value_name = "URL",
        value_parser = crate::http_url
    )]
    server: String,
    /// File whose first line is the token the daemon wants of changes (its
    /// `[server] token_file`): needed where it listens beyond loopback. Never printed.
    #[arg(long, env = "PRESCALE_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl Server {
    /// The daemon's API.
    pub(crate) fn url(&self) -> &str {
        &self.server
    }

    /// The file holding the token, if one was given.
    pub(crate) fn token_file(&self) -> Option<&PathBuf> {
        self.token_file.as_ref()
    }
}

/// `prescale events ...`.
#[derive(Subcommand)]
pub enum EventsCmd {
    /// A workload's planned events: where each comes from, whether it is over, in
    /// force or ahead, and, once begun, how it went (peak demand, cost, minutes short).
    List {
        /// The workload.
        workload: String,
        #[command(flatten)]
        server: Server,
        /// `table` for people, `json` for scripts (the API's `data`).
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Declares a planned event for a workload (or changes the one declared under its
    /// name): its capacity is asked for ahead of its start.
    Declare {
        /// The workload.
        workload: String,
        /// The event's name (at most 100 characters).
        name: String,
        /// When it starts: RFC 3339 (`2026-12-05T14:00:00Z`), unix seconds, `now`, or
        /// `+DURATION` from now (`+30m`, `+2h`).
        #[arg(long, value_name = "TIME")]
        start: String,
        /// When it ends (as `--start`; `+DURATION` counts from now).
        #[arg(
            long,
            value_name = "TIME",
            required_unless_present = "for_",
            conflicts_with = "for_"
        )]
        end: Option<String>,
        /// How long it lasts, from its start (`90m`, `4h`, `1d`).
        #[arg(long = "for", id = "for_", value_name = "DURATION")]
        for_: Option<String>,
        /// Demand expected at this many times the forecast (1: only the floors below).
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// The least CPU demand to hold over it (vCPU).
        #[arg(long, value_name = "VCPU")]
        min_demand: Option<f64>,
        /// The least demand of another dimension the workload plans, as DIM=VALUE
        /// (`memory=200` in GiB, `disk_iops=`, `network_mbps=`); repeatable.
        #[arg(long = "min", value_name = "DIM=VALUE", value_parser = dimension_floor)]
        min_dimensions: Vec<(String, f64)>,
        #[command(flatten)]
        server: Server,
    },
    /// Cancels a planned event declared through the API (a configured one is changed
    /// in the configuration).
    Cancel {
        /// The workload.
        workload: String,
        /// The event's name.
        name: String,
        #[command(flatten)]
        server: Server,
    },
}

/// `prescale events list --format`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

/// `prescale pause`.
#[derive(Args)]
pub struct PauseArgs {
    /// The workload.
    workload: String,
    /// `all`: capacity left as it is; `scale-down`: none removed, what plans need still
    /// provisioned.
    #[arg(long, value_parser = ["all", "scale-down"])]
    scope: String,
    /// How long it holds (`30m`, `2h`, `1d`; at most 366 days).
    #[arg(
        long = "for",
        id = "for_",
        value_name = "DURATION",
        required_unless_present = "until",
        conflicts_with = "until"
    )]
    for_: Option<String>,
    /// When it ends: RFC 3339 or unix seconds.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Why (kept with it, shown in the decision log and on the dashboard).
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    server: Server,
}

/// `prescale status`.
#[derive(Args)]
pub struct StatusArgs {
    /// Also each workload's plan in words, and where its forecast came from.
    #[arg(long, short)]
    wide: bool,
    /// `table` for people, `json` for scripts (the API's `data`).
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    format: ListFormat,
    #[command(flatten)]
    server: Server,
}

/// `prescale decisions`.
#[derive(Args)]
pub struct DecisionsArgs {
    /// Only this workload's (also after it left the configuration).
    workload: Option<String>,
    /// Only these kinds, comma-separated (`act`, `hold`, `config`, `error`, ...).
    #[arg(long, value_name = "KINDS")]
    kind: Option<String>,
    /// From this time on (RFC 3339, unix seconds, or `-DURATION` ago: `-2h`).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    since: Option<String>,
    /// At most this many, the newest.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Keep printing new decisions as they are logged, until interrupted.
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    server: Server,
}

/// `prescale resume`.
#[derive(Args)]
pub struct ResumeArgs {
    /// The workload.
    workload: String,
    #[command(flatten)]
    server: Server,
}

/// `--min DIM=VALUE`.
fn dimension_floor(s: &str) -> Result<(String, f64), String> {
    let (d, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: give DIM=VALUE, e.g. memory=200"))?;
    let v: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {v:?} is not a number"))?;
    Ok((d.trim().to_string(), v))
}

/// What went wrong talking to the daemon: `Refused` (it answered 4xx: the request must
/// change) exits 2, `Failed` (unreachable, a 5xx, an answer that is not its API's) 1.
pub enum CtlError {
    Refused(String),
    Failed(String),
}

impl From<String> for CtlError {
    fn from(s: String) -> Self {
        CtlError::Refused(s)
    }
}

/// A time as `--start`/`--end` take it, in ms.
fn read_time(s: &str, now: TimestampMs) -> Result<TimestampMs, String> {
    let t = s.trim();
    if t == "now" {
        return Ok(now);
    }
    if let Some(d) = t.strip_prefix('+') {
        return prescale_core::parse_duration_ms(d)
            .map(|d| now + d)
            .ok_or_else(|| format!("{s:?}: give a duration after the +, e.g. +30m or +2h"));
    }
    prescale_core::parse_ts(t).ok_or_else(|| {
        format!("{s:?}: give RFC 3339 with its offset (2026-12-05T14:00:00Z), unix seconds, now, or +DURATION")
    })
}

/// The event `declare` sends.
#[allow(clippy::too_many_arguments)]
fn event_body(
    name: &str,
    start: &str,
    end: Option<&str>,
    for_: Option<&str>,
    scale: f64,
    min_demand: Option<f64>,
    min_dimensions: &[(String, f64)],
    now: TimestampMs,
) -> Result<Value, String> {
    let from = read_time(start, now)?;
    let to = match (end, for_) {
        (Some(e), _) => read_time(e, now)?,
        (None, Some(d)) => {
            from + prescale_core::parse_duration_ms(d)
                .ok_or_else(|| format!("--for {d:?}: give a duration such as 90m, 4h or 1d"))?
        }
        (None, None) => return Err("give --end or --for".into()),
    };
    let mut body = json!({
        "name": name,
        "start": prescale_core::EventTime(from),
        "end": prescale_core::EventTime(to),
        "scale": scale,
    });
    if let Some(m) = min_demand {
        body["min_demand"] = json!(m);
    }
    if !min_dimensions.is_empty() {
        body["min_dimensions"] = min_dimensions
            .iter()
            .map(|(d, v)| (d.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    Ok(body)
}

/// A call to the daemon: its answer's `data`.
pub(crate) fn call(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, CtlError> {
    let url = format!("{}{path}", server.server);
    if !prescale_collect::http::TLS && url.to_ascii_lowercase().starts_with("https:") {
        return Err(CtlError::Refused(prescale_collect::http::no_tls(&url)));
    }
    let agent = prescale_collect::http::agent_with(
        Duration::from_secs(30),
        Some(Duration::from_secs(5)),
        Default::default(),
    )
    .map_err(CtlError::Failed)?;
    let token = match &server.token_file {
        Some(f) => Some(
            prescale_core::config::read_token_file(f)
                .map_err(|e| CtlError::Refused(format!("--token-file: {e}")))?,
        ),
        None => None,
    };
    let answer = match method {
        "GET" => {
            let mut r = agent.get(&url);
            if let Some(t) = &token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(&url);
            if let Some(t) = &token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            match body {
                Some(b) => r
                    .header("Content-Type", "application/json")
                    .send(b.to_string()),
                None => r.send_empty(),
            }
        }
    };
    let mut answer = answer.map_err(|e| {
        CtlError::Failed(format!(
            "cannot reach prescale at {}: {e} (is `prescale run` running there? --server or PRESCALE_SERVER says where)",
            server.server
        ))
    })?;
    let status = answer.status().as_u16();
    let text = answer
        .body_mut()
        .read_to_string()
        .map_err(|e| CtlError::Failed(format!("{url}: reading the answer: {e}")))?;
    let v: Option<Value> = serde_json::from_str(&text).ok();
    if (200..300).contains(&status) {
        return v.map(|v| v["data"].clone()).ok_or_else(|| {
            CtlError::Failed(format!(
                "{url} answered {status} with what is not prescale's API: {}",
                text.chars().take(200).collect::<String>()
            ))
        });
    }
    // Its refusals are JSON with an `error`; the token's is plain text, as its
    // receivers answer senders.
    let why = v
        .as_ref()
        .and_then(|v| v["error"].as_str())
        .unwrap_or(text.trim())
        .chars()
        .take(1000)
        .collect::<String>();
    let mut said = format!("{} answered {status}: {why}", server.server);
    // Where the token is wanted and none was given, how to give it.
    if status == 401 && token.is_none() {
        said.push_str(" (give the file holding it with --token-file or PRESCALE_TOKEN_FILE)");
    }
    Err(if (400..500).contains(&status) {
        CtlError::Refused(said)
    } else {
        CtlError::Failed(said)
    })
}

/// What an event expects, in words: "x3, at least 40 vCPU, 200 GiB of memory".
fn expects(e: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(k) = e["scale"].as_f64().filter(|k| *k != 1.0) {
        parts.push(format!("x{k}"));
    }
    if let Some(m) = e["min_demand"].as_f64() {
        parts.push(format!("at least {m} vCPU"));
    }
    if let Some(dims) = e["min_dimensions"].as_object() {
        for (d, v) in dims {
            let unit = prescale_core::Dim::parse(d).map_or("", |d| d.unit());
            let v = v.as_f64().unwrap_or(f64::NAN);
            parts.push(format!("at least {v} {unit} of {d}"));
        }
    }
    parts.join(", ")
}

/// How a begun event went, in words.
fn reviewed(e: &Value) -> String {
    let r = &e["review"];
    if r.is_object() {
        format!(
            "{} steps, peak {:.2} vCPU, ${:.2}, short {} min",
            r["steps"],
            r["peak_demand"].as_f64().unwrap_or(f64::NAN),
            r["cost"].as_f64().unwrap_or(f64::NAN),
            r["underprovisioned_minutes"].as_f64().unwrap_or(f64::NAN)
        )
    } else if let Some(why) = e["review_error"].as_str() {
        format!("(not reviewed: {why})")
    } else {
        String::new()
    }
}

/// `events` as a table with a header, columns padded to their widest cell.
fn table(events: &[Value]) -> String {
    let head = [
        "NAME", "SOURCE", "STATE", "START", "END", "EXPECTS", "REVIEW",
    ];
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let rows: Vec<[String; 7]> = events
        .iter()
        .map(|e| {
            let source = match e["every"].as_str() {
                Some(every) => format!(
                    "{} (every \"{every}\" {})",
                    text(&e["source"]),
                    e["timezone"].as_str().unwrap_or("UTC")
                ),
                None => text(&e["source"]),
            };
            [
                text(&e["name"]),
                source,
                text(&e["state"]),
                text_time(&e["start"]),
                text_time(&e["end"]),
                expects(e),
                reviewed(e),
            ]
        })
        .collect();
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    columns(&head, &rows)
}

/// `rows` under `head`, each column padded to its widest cell, two spaces apart.
fn columns(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `prescale events`.
pub fn events(cmd: EventsCmd) -> Result<(), CtlError> {
    match cmd {
        EventsCmd::List {
            workload,
            server,
            format,
        } => {
            let path = format!("/api/v1/workloads/{}/events", segment(&workload));
            let data = call(&server, "GET", &path, None)?;
            let list = data.as_array().cloned().unwrap_or_default();
            match format {
                ListFormat::Json => println!("{data:#}"),
                ListFormat::Table if list.is_empty() => {
                    println!("{workload} has no planned events in force, ahead or recently over")
                }
                ListFormat::Table => print!("{}", table(&list)),
            }
            Ok(())
        }
        EventsCmd::Declare {
            workload,
            name,
            start,
            end,
            for_,
            scale,
            min_demand,
            min_dimensions,
            server,
        } => {
            let body = event_body(
                &name,
                &start,
                end.as_deref(),
                for_.as_deref(),
                scale,
                min_demand,
                &min_dimensions,
                // Whole seconds: the API writes such times as RFC 3339.
                now_ms().div_euclid(1000) * 1000,
            )?;
            let path = format!("/api/v1/workloads/{}/events", segment(&workload));
            let data = call(&server, "POST", &path, Some(&body))?;
            let said = expects(&body);
            println!(
                "declared {name:?} for {workload}: {} to {}{}",
                text_time(&body["start"]),
                text_time(&body["end"]),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(", {said}")
                }
            );
            if data["replaced"].is_object() {
                println!(
                    "it replaces the one declared under that name before ({} to {}{})",
                    text_time(&data["replaced"]["start"]),
                    text_time(&data["replaced"]["end"]),
                    match expects(&data["replaced"]) {
                        s if s.is_empty() => s,
                        s => format!(", {s}"),
                    }
                );
            }
            Ok(())
        }
        EventsCmd::Cancel {
            workload,
            name,
            server,
        } => {
            let path = format!(
                "/api/v1/workloads/{}/events/{}/cancel",
                segment(&workload),
                segment(&name)
            );
            call(&server, "POST", &path, None)?;
            println!("cancelled {name:?} for {workload}");
            Ok(())
        }
    }
}

/// An event time as the API writes it (RFC 3339, or unix seconds between seconds).
fn text_time(v: &Value) -> String {
    match v.as_f64() {
        Some(s) => format_ts((s * 1000.0).round() as i64),
        None => v.as_str().unwrap_or("?").to_string(),
    }
}

/// A pause as the API answers it, in words.
fn pause_words(p: &Value) -> String {
    let until = p["until"].as_i64().map_or_else(|| "?".into(), format_ts);
    let reason = p["reason"].as_str().filter(|r| !r.is_empty());
    format!(
        "{} until {until}{}",
        p["scope"].as_str().unwrap_or("?"),
        reason.map_or_else(String::new, |r| format!(" for {r:?}"))
    )
}

/// `prescale pause`.
pub fn pause(a: PauseArgs) -> Result<(), CtlError> {
    let mut query = format!("scope={}&reason={}", segment(&a.scope), segment(&a.reason));
    if let Some(d) = &a.for_ {
        query.push_str(&format!("&for={}", segment(d)));
    }
    if let Some(t) = &a.until {
        query.push_str(&format!("&until={}", segment(t)));
    }
    let path = format!("/api/v1/workloads/{}/pause?{query}", segment(&a.workload));
    let data = call(&a.server, "POST", &path, None)?;
    println!("paused {} ({})", a.workload, pause_words(&data["paused"]));
    Ok(())
}

/// `prescale status`: each workload's demand, ready capacity, instances, cost and
/// model at the daemon's last pass.
pub fn status(a: StatusArgs) -> Result<(), CtlError> {
    let data = call(&a.server, "GET", "/api/v1/workloads", None)?;
    if a.format == ListFormat::Json {
        println!("{data:#}");
        return Ok(());
    }
    let list = data["workloads"].as_array().cloned().unwrap_or_default();
    let last = data["last_tick"].as_i64().map_or_else(
        || "no pass yet".into(),
        |t| format!("last pass {}", format_ts(t)),
    );
    // Where actions go: which objects, program or URL.
    let provider = match (data["provider"].as_str(), data["provider_target"].as_str()) {
        (Some(p), Some(t)) => format!(", provider {p} ({t})"),
        (Some(p), None) => format!(", provider {p}"),
        _ => String::new(),
    };
    println!("{} workload(s), {last}{provider}", list.len());
    // A provider that reads what is held from outside and cannot: plans go on from
    // what it last said, and nothing is removed.
    let read = &data["provider_state"];
    if let Some(since) = read["unread_since"].as_i64() {
        println!(
            "provider {}: its state not read since {} ({}); plans go on from {}, and nothing is removed until it is read",
            data["provider"].as_str().unwrap_or("?"),
            format_ts(since),
            read["error"].as_str().unwrap_or("no reason given"),
            read["read_at"]
                .as_i64()
                .map_or_else(|| "what prescale asked of it".into(), |t| format!("what it said at {}", format_ts(t)))
        );
    }
    let num = |v: &Value, d: usize| {
        v.as_f64()
            .map_or_else(|| "-".into(), |x| format!("{x:.d$}"))
    };
    let head = [
        "WORKLOAD",
        "DEMAND",
        "READY",
        "INSTANCES",
        "$/H",
        "MODEL",
        "PAUSED",
    ];
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            let instances: Vec<String> = w["allocation"]["tiers"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(tier, c)| {
                    let n = |k: &str| c[k].as_u64().unwrap_or(0);
                    let (ready, pending) = (n("ready") + n("ending"), n("pending"));
                    (ready + pending > 0).then(|| match pending {
                        0 => format!("{tier} {ready}"),
                        p => format!("{tier} {ready} (+{p} pending)"),
                    })
                })
                .collect();
            let model = match (w["model"].as_str(), w["model_version"].as_u64()) {
                (Some(m), Some(v)) => format!("{m} (v{v})"),
                (Some(m), None) => m.to_string(),
                _ => "-".into(),
            };
            let paused = match &w["paused"] {
                p if p.is_object() => pause_words(p),
                _ => "-".into(),
            };
            vec![
                w["name"].as_str().unwrap_or("?").to_string(),
                num(&w["demand"], 2),
                num(&w["ready_capacity"], 2),
                if instances.is_empty() {
                    "none".into()
                } else {
                    instances.join(", ")
                },
                num(&w["cost_per_hour"], 3),
                model,
                paused,
            ]
        })
        .collect();
    print!("{}", columns(&head, &rows));
    for w in &list {
        let name = w["name"].as_str().unwrap_or("?");
        if let Some(e) = w["last_error"].as_str() {
            println!("{name}: error: {e}");
        }
        if let Some(l) = w["learning"].as_str() {
            println!("{name}: learning: {l}");
        }
        for r in w["refusing"].as_array().into_iter().flatten() {
            let times = r["times"].as_u64().unwrap_or(0);
            if times > 1 {
                println!(
                    "{name}: refused at every pass since {} ({times} times): {}",
                    r["since"].as_i64().map_or("?".into(), format_ts),
                    r["reason"].as_str().unwrap_or("?")
                );
            }
        }
        if a.wide {
            if let Some(r) = w["plan_reason"].as_str() {
                println!("{name}: plan: {r}");
            }
            if let Some(f) = w["forecast_source"].as_str() {
                println!("{name}: forecast: {f}");
            }
            // Its latest daily tuning, where the daemon has one (not yet: nothing said).
            let path = format!(
                "/api/v1/workloads/{}/tune",
                prescale_collect::http::percent_encode(name)
            );
            if let Ok(t) = call(&a.server, "GET", &path, None) {
                if let Some(summary) = t["summary"].as_str() {
                    let set = t["tuning"]["advice"]["toml"]
                        .as_str()
                        .map(|toml| {
                            let lines: Vec<&str> = toml.trim().lines().skip(2).collect();
                            let write = if t["tuning"]["advice"]["holds_on_each_half"] == true {
                                format!(" (`prescale tune {name} --write prescale.toml` writes it into the file)")
                            } else {
                                String::new()
                            };
                            format!(
                                " To use it, set in its [[workloads]] entry: {}{write}",
                                lines.join("; ")
                            )
                        })
                        .unwrap_or_default();
                    // Where it could not tune, when the daemon tries again.
                    let again = match (t["error"].as_str(), t["next_at"].as_i64()) {
                        (Some(_), Some(at)) => format!(" Tried again from {}.", format_ts(at)),
                        _ => String::new(),
                    };
                    println!("{name}: tune: {summary}{set}{again}");
                }
                // What came of the daemon's applying an advice itself (tune_apply).
                let ap = &t["applied"];
                if let Some(at) = ap["at"].as_i64() {
                    match ap["refused"].as_str() {
                        Some(why) => println!(
                            "{name}: tune: the advice of {} was not applied: {why}",
                            format_ts(at)
                        ),
                        None => println!(
                            "{name}: tune: applied {} (control.tune_apply): wrote {} into {} and reloaded",
                            format_ts(at),
                            ap["written"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|l| l.as_str())
                                .collect::<Vec<_>>()
                                .join("; "),
                            ap["file"].as_str().unwrap_or_default()
                        ),
                    }
                }
            }
        }
    }
    // Each tier's lead times as measured: those late always, the others with --wide.
    for (tier, m) in data["lead_times"].as_object().into_iter().flatten() {
        let late = m["late"].as_bool() == Some(true);
        if late || a.wide {
            println!(
                "tier {tier}: instances served {} s after asked for (median), {} s (90th percentile) over the last {}; configured {} s and {} s{}",
                num(&m["median_s"], 0),
                num(&m["p90_s"], 0),
                m["samples"],
                m["configured_s"],
                m["configured_p90_s"],
                if late {
                    ": late, so plans ask for its capacity too late (`prescale decisions --kind config` says what to set)"
                } else {
                    ""
                }
            );
        }
    }
    // Each tier as a pool shared by every workload: a full one always, the others with
    // --wide.
    for (tier, p) in data["pools"].as_object().into_iter().flatten() {
        let (held, max) = (
            p["held"].as_u64().unwrap_or(0),
            p["max_instances"].as_u64().unwrap_or(0),
        );
        let full = p["full"].as_bool() == Some(true);
        if full || a.wide {
            let by: Vec<String> = p["by"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            println!(
                "tier {tier}: {held} of its max_instances = {max} held{}{}",
                if by.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", by.join(", "))
                },
                if full {
                    ": full, so plans fill the rest from their next tiers"
                } else {
                    ""
                }
            );
        }
    }
    // The fleet: under a fleet budget always, with each workload cut to its share;
    // otherwise what it costs and spent with --wide.
    let fleet = &data["fleet"];
    let cap = fleet["cap_per_hour"].as_f64();
    if cap.is_some() || a.wide {
        let budget = match cap {
            Some(c) => format!(" against a fleet budget of ${c:.3}/h this hour"),
            None => String::new(),
        };
        let cut: Vec<String> = list
            .iter()
            .filter_map(|w| {
                let (want, share) = (w["fleet"]["want"].as_f64()?, w["fleet"]["share"].as_f64()?);
                (share < want - 1e-9).then(|| {
                    format!(
                        "{} ${share:.3} of ${want:.3}",
                        w["name"].as_str().unwrap_or("?")
                    )
                })
            })
            .collect();
        println!(
            "fleet: ${}/h held{budget}, ${} spent this month{}",
            num(&fleet["cost_per_hour"], 3),
            num(&fleet["spend"]["spent"], 2),
            if cut.is_empty() {
                String::new()
            } else {
                format!("; cut to their shares: {}", cut.join(", "))
            }
        );
    }
    Ok(())
}

/// Decisions asked for at a time from the log (the API's largest page).
const PAGE: usize = 10_000;

/// One decision as a line: when, whose, what kind, why.
fn decision_line(d: &Value) -> String {
    format!(
        "{}  {}  {:<6}  {}",
        d["at"].as_i64().map_or_else(|| "?".into(), format_ts),
        d["workload"].as_str().unwrap_or("?"),
        d["kind"].as_str().unwrap_or("?"),
        d["reason"].as_str().unwrap_or("")
    )
}

/// `prescale decisions`: the decision log's newest entries, oldest first, each with
/// its reason; with `--follow`, those logged after them as they come.
pub fn decisions(a: DecisionsArgs) -> Result<(), CtlError> {
    let now = now_ms();
    let since = match a.since.as_deref() {
        Some(s) => Some(match s.trim().strip_prefix('-') {
            Some(d) => {
                now - prescale_core::parse_duration_ms(d).ok_or_else(|| {
                    format!("--since {s:?}: give a duration after the -, e.g. -2h")
                })?
            }
            None => read_time(s, now)?,
        }),
        None => None,
    };
    let kinds: Option<Vec<String>> = a
        .kind
        .as_deref()
        .map(|k| k.split(',').map(|x| x.trim().to_string()).collect());
    let wanted = |d: &Value| {
        a.workload
            .as_deref()
            .is_none_or(|w| d["workload"].as_str() == Some(w))
            && kinds
                .as_ref()
                .is_none_or(|k| k.iter().any(|k| d["kind"].as_str() == Some(k)))
    };
    // The log's entries from `from` on (after `after`), a page at a time, with their
    // places in it.
    let page =
        |after: Option<u64>, from: Option<TimestampMs>| -> Result<Vec<(u64, Value)>, CtlError> {
            let mut path = format!("/api/v1/decisions?limit={PAGE}");
            if let Some(s) = after {
                path.push_str(&format!("&after={s}"));
            } else if let Some(t) = from {
                path.push_str(&format!("&since={}", t as f64 / 1000.0));
            }
            let data = call(&a.server, "GET", &path, None)?;
            Ok(data
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| Some((x["seq"].as_u64()?, x["decision"].clone())))
                .collect())
        };
    // The newest `limit`: a workload's from its own list; every workload's from the
    // log since `--since` (the last hour by default).
    let mut last_seq = None;
    let shown: Vec<Value> = match &a.workload {
        Some(w) => {
            let mut path = format!(
                "/api/v1/workloads/{}/decisions?limit={}",
                segment(w),
                a.limit
            );
            if let Some(k) = &a.kind {
                path.push_str(&format!("&kind={}", segment(k)));
            }
            if let Some(t) = since {
                path.push_str(&format!("&since={}", t as f64 / 1000.0));
            }
            call(&a.server, "GET", &path, None)?
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
        None => {
            // Page by page to the end of the log, keeping the newest `limit`.
            let mut kept: VecDeque<Value> = VecDeque::new();
            let mut from = Some(since.unwrap_or(now - 3_600_000));
            loop {
                let got = page(last_seq, from)?;
                let full = got.len() >= PAGE;
                for (seq, d) in got {
                    last_seq = Some(seq);
                    if wanted(&d) {
                        kept.push_back(d);
                        if kept.len() > a.limit {
                            kept.pop_front();
                        }
                    }
                }
                from = None;
                if !full || last_seq.is_none() {
                    break;
                }
            }
            kept.into()
        }
    };
    if shown.is_empty() && !a.follow {
        println!(
            "no decisions logged{}",
            if since.is_some() { " since then" } else { "" }
        );
    }
    for d in &shown {
        println!("{}", decision_line(d));
    }
    if !a.follow {
        return Ok(());
    }
    // From the last shown on: its time's entries may be printed already.
    let seen_at = shown.last().and_then(|d| d["at"].as_i64());
    let mut printed: Vec<Value> = shown
        .iter()
        .filter(|d| d["at"].as_i64() == seen_at)
        .cloned()
        .collect();
    let mut from = seen_at.or(Some(now));
    let mut failing = false;
    loop {
        // A daemon restarting is waited for, as `tail -f` waits for its file.
        let got = match page(last_seq, from) {
            Ok(got) => {
                failing = false;
                got
            }
            Err(CtlError::Failed(why)) => {
                if !failing {
                    eprintln!("warning: {why}; trying again every 2 s");
                    failing = true;
                }
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            Err(refused) => return Err(refused),
        };
        for (seq, d) in got {
            last_seq = Some(seq);
            if let Some(k) = printed.iter().position(|p| *p == d) {
                printed.remove(k);
                continue;
            }
            if wanted(&d) {
                println!("{}", decision_line(&d));
            }
        }
        if last_seq.is_some() {
            printed.clear();
            from = None;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// `prescale resume`.
pub fn resume(a: ResumeArgs) -> Result<(), CtlError> {
    let path = format!("/api/v1/workloads/{}/resume", segment(&a.workload));
    let data = call(&a.server, "POST", &path, None)?;
    match &data["lifted"] {
        p if p.is_object() => println!(
            "resumed {}: lifted its pause ({})",
            a.workload,
            pause_words(p)
        ),
        _ => println!("{} was not paused", a.workload),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_durations_and_floors_are_read_as_the_api_takes_them() {
        let now = 1_764_943_200_000; // 2025-12-05T14:00:00Z
        assert_eq!(read_time("now", now), Ok(now));
        assert_eq!(read_time("+30m", now), Ok(now + 1_800_000));
        assert_eq!(read_time("2025-12-05T15:00:00Z", now), Ok(now + 3_600_000));
        assert_eq!(read_time("1764943200", now), Ok(now));
        assert!(read_time("+soon", now).unwrap_err().contains("+30m"));
        assert!(read_time("tomorrow", now).unwrap_err().contains("RFC 3339"));
        let body = event_body(
            "sale",
            "+1h",
            None,
            Some("4h"),
            2.0,
            Some(40.0),
            &[("memory".into(), 200.0)],
            now,
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"name": "sale", "start": "2025-12-05T15:00:00Z", "end": "2025-12-05T19:00:00Z",
                   "scale": 2.0, "min_demand": 40.0, "min_dimensions": {"memory": 200.0}})
        );
        assert_eq!(
            expects(&body),
            "x2, at least 40 vCPU, at least 200 GiB of memory"
        );
        assert!(
            event_body("x", "now", None, Some("soon"), 1.0, None, &[], now)
                .unwrap_err()
                .contains("90m")
        );
        assert_eq!(dimension_floor("memory=200"), Ok(("memory".into(), 200.0)));
        assert!(dimension_floor("memory").unwrap_err().contains("DIM=VALUE"));
        assert!(dimension_floor("memory=lots")
            .unwrap_err()
            .contains("not a number"));
        assert_eq!(segment("load test/1"), "load%20test%2F1");
    }

    #[test]
    fn an_events_list_reads_as_a_table() {
        let list = json!([
            {"name": "launch", "source": "api", "state": "over", "start": "2026-12-05T14:00:00Z",
             "end": "2026-12-05T16:00:00Z", "scale": 3.0,
             "review": {"steps": 24, "peak_demand": 51.28, "cost": 5.5, "underprovisioned_minutes": 0.0}},
            {"name": "close at 2026-12-31T17:00:00Z", "source": "configuration", "state": "ahead",
             "start": "2026-12-31T17:00:00Z", "end": "2026-12-31T23:00:00Z", "scale": 1.0,
             "min_demand": 80.0, "recurring": "close", "every": "0 18 L * *", "timezone": "Europe/Berlin"}
        ]);
        let t = table(list.as_array().unwrap());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("NAME "), "{t}");
        assert!(
            lines[1].contains("launch")
                && lines[1].contains("x3")
                && lines[1].contains("24 steps, peak 51.28 vCPU, $5.50, short 0 min"),
            "{t}"
        );
        assert!(
            lines[2].contains("configuration (every \"0 18 L * *\" Europe/Berlin)")
                && lines[2].contains("at least 80 vCPU"),
            "{t}"
        );
        // Columns line up: each header starts where its cells do.
        let at = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(at(lines[0], "STATE"), at(lines[1], "over"));
        assert_eq!(at(lines[0], "STATE"), at(lines[2], "ahead"));
    }
}
