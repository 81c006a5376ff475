//! `prescale simulate --prometheus URL`: the demand trace read from a team's own
//! Prometheus (or any server with its query API: VictoriaMetrics, Thanos, Mimir, or
//! prescale itself), so a simulation replays their history without an export step.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::input::{format_ts, parse_ts, regularise, Series};
use prescale_core::Dim;
use prescale_orchestrate::simulate::Trace;

/// Where the trace comes from when it is read from a query API.
#[derive(Args, Clone)]
pub struct PromArgs {
    /// Read the trace from this Prometheus-compatible query API (its base URL, e.g.
    /// http://prometheus:9090) instead of a CSV file; `--cpu` gives the demand (or, with
    /// `--config`, `--fleet-query` each workload's).
    #[arg(long, value_name = "URL", conflicts_with = "trace")]
    pub prometheus: Option<String>,
    /// With `--prometheus`: PromQL giving CPU demand in vCPU as one series, e.g.
    /// 'sum(rate(container_cpu_usage_seconds_total{namespace="shop"}[5m]))'.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub cpu: Option<String>,
    /// With `--prometheus`: PromQL giving memory demand in GiB, e.g.
    /// 'sum(container_memory_working_set_bytes{namespace="shop"}) / 2^30'.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub memory: Option<String>,
    /// With `--prometheus`: PromQL giving disk demand in IOPS.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub disk_iops: Option<String>,
    /// With `--prometheus`: PromQL giving network demand in Mbps, e.g.
    /// 'sum(rate(container_network_receive_bytes_total{namespace="shop"}[5m])) * 8 / 1e6'.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub network_mbps: Option<String>,
    /// With `--prometheus`: PromQL giving the vCPU the service actually had, e.g.
    /// 'sum(kube_pod_container_resource_requests{namespace="shop",resource="cpu"})':
    /// the `as-run` policy prices it, what it runs today beside what prescale would do.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub actual_cpu: Option<String>,
    /// With `--prometheus`: PromQL giving the memory the service actually had, in GiB,
    /// e.g. 'sum(kube_pod_container_resource_requests{namespace="shop",resource="memory"}) / 2^30':
    /// `as-run` then holds enough instances for both, as a memory-heavy service needs.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub actual_memory: Option<String>,
    /// With `--prometheus`: PromQL giving the disk IOPS the service actually had (its
    /// volumes' provisioned IOPS, say), where disk binds.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub actual_disk_iops: Option<String>,
    /// With `--prometheus`: PromQL giving the network Mbps the service actually had,
    /// where the network binds.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub actual_network_mbps: Option<String>,
    /// First step of the history read (unix seconds or RFC 3339); by default a week
    /// before `--end`.
    #[arg(long, value_name = "TIME", requires = "prometheus")]
    pub start: Option<String>,
    /// Last step of the history read (unix seconds or RFC 3339); by default now.
    #[arg(long, value_name = "TIME", requires = "prometheus")]
    pub end: Option<String>,
    /// Seconds between the trace's steps (or 30s, 5m, 1h), each the queries' value then.
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub step: String,
    /// A file holding a bearer token the query API wants (sent, never printed).
    #[arg(long, value_name = "FILE", requires = "prometheus")]
    pub bearer_token_file: Option<PathBuf>,
    /// A file holding `USER:PASSWORD` for a query API behind basic authentication
    /// (sent, never printed).
    #[arg(
        long,
        value_name = "FILE",
        requires = "prometheus",
        conflicts_with = "bearer_token_file"
    )]
    pub basic_auth_file: Option<PathBuf>,
    /// Seconds one request may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub query_timeout_s: u64,
    /// Also write the trace read, as a CSV `--trace` replays, so the run can be
    /// repeated without the server; with `--fleet-query`, a directory that gets each
    /// workload's as NAME.csv, as `--fleet-trace` replays it.
    #[arg(long, value_name = "OUT.csv|DIR", requires = "prometheus")]
    pub save_trace: Option<PathBuf>,
}

/// A week: how far back the history goes by default.
const DEFAULT_SPAN_S: i64 = 7 * 86_400;

/// `text` as seconds: a whole number, or a duration such as 30s, 5m or 1h.
fn seconds(text: &str, what: &str) -> Result<i64, String> {
    let text = text.trim();
    let secs = match text.parse::<i64>() {
        Ok(s) => s,
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{what} {text:?}: {e}; give seconds or a duration such as 5m"))?
            .as_secs() as i64,
    };
    if secs <= 0 {
        return Err(format!("{what} {text:?} must be at least a second"));
    }
    Ok(secs)
}

/// `text` as unix seconds, or `default` when absent.
fn time(text: Option<&str>, what: &str, default: i64) -> Result<i64, String> {
    match text {
        None => Ok(default),
        Some(t) => parse_ts(t).map(|(s, _)| s).ok_or_else(|| {
            format!("{what} {t:?} is neither unix seconds nor RFC 3339 (2026-01-05T14:00:00Z)")
        }),
    }
}

/// The trace the queries of `a` give (CPU, then the other dimensions asked for), on
/// one grid of `--step` over the range where all of them have values; warnings go to
/// stderr. `--save-trace` gets it as CSV.
pub fn fetch(a: &PromArgs) -> Result<Trace, String> {
    let url = a.prometheus.as_deref().expect("checked by the caller");
    if !prescale_collect::http::TLS && url.to_ascii_lowercase().starts_with("https:") {
        return Err(prescale_collect::http::no_tls(&format!(
            "--prometheus {url}"
        )));
    }
    let step = seconds(&a.step, "--step")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let end = time(a.end.as_deref(), "--end", now / step * step)?;
    let start = time(a.start.as_deref(), "--start", end - DEFAULT_SPAN_S)?;
    if start >= end {
        return Err(format!(
            "--start ({}) must come before --end ({})",
            format_ts(start, true),
            format_ts(end, true)
        ));
    }
    let secret = |path: &Option<PathBuf>, what: &str| -> Result<Option<String>, String> {
        path.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| format!("{}: cannot read the {what}: {e}", p.display()))
            })
            .transpose()
    };
    let token = secret(&a.bearer_token_file, "bearer token")?;
    let basic = match secret(&a.basic_auth_file, "user and password")? {
        None => None,
        Some(pair) => match pair.split_once(':') {
            Some((user, password)) => Some((user.to_string(), password.to_string())),
            None => {
                let p = a.basic_auth_file.as_ref().expect("read").display();
                return Err(format!(
                    "{p}: expected one line USER:PASSWORD (the file's text is not shown)"
                ));
            }
        },
    };
    let cfg = prescale_store::RemoteConfig {
        write_url: String::new(),
        read_url: url.trim_end_matches('/').to_string(),
        timeout: Duration::from_secs(a.query_timeout_s.max(1)),
        token,
        basic,
        lookback_ms: 0,
        ca_file: None,
        client: None,
    };
    // Each dimension's demand, CPU first; then what the service had.
    let queries: Vec<(Query, &str)> = [
        (Query::Demand(Dim::Cpu), a.cpu.as_deref()),
        (Query::Demand(Dim::Memory), a.memory.as_deref()),
        (Query::Demand(Dim::Disk), a.disk_iops.as_deref()),
        (Query::Demand(Dim::Network), a.network_mbps.as_deref()),
        (Query::Had(Dim::Cpu), a.actual_cpu.as_deref()),
        (Query::Had(Dim::Memory), a.actual_memory.as_deref()),
        (Query::Had(Dim::Disk), a.actual_disk_iops.as_deref()),
        (Query::Had(Dim::Network), a.actual_network_mbps.as_deref()),
    ]
    .into_iter()
    .filter_map(|(d, q)| Some((d, q?)))
    .collect();
    let mut series: Vec<(Query, &str, Series)> = Vec::new();
    for (what, query) in queries {
        let opt = flag(what);
        let bar = crate::progress_bar(
            0,
            &format!(
                "{{spinner}} reading {} from {} [{{bar:30}}] {{pos}}/{{len}} steps",
                opt,
                // Braces are the template's own.
                url.replace('{', "{{").replace('}', "}}")
            ),
        );
        let points = prescale_store::query_range(cfg.clone(), query, (start, end, step), |i, n| {
            bar.set_length(n as u64);
            bar.set_position(i as u64);
        })
        .map_err(|e| format!("--{}: {e}", opt))?;
        bar.finish_and_clear();
        let rows = points.into_iter().map(|(t, v)| (t, Some(v))).collect();
        let s = regularise(&format!("`{query}`"), rows, false, Some(step))
            .map_err(|e| format!("--{}: {e}", opt))?;
        if let Some(i) = s.values.iter().position(|v| *v < 0.0) {
            return Err(format!(
                "--{}: `{query}` is {} at {}: it must not be negative",
                opt,
                s.values[i],
                format_ts(s.ts[i], true)
            ));
        }
        for w in &s.warnings {
            eprintln!("warning: --{}: {w}", opt);
        }
        series.push((what, query, s));
    }
    // The range every query has values in.
    let from = series
        .iter()
        .map(|s| s.2.ts[0])
        .max()
        .expect("cpu is there");
    let to = series
        .iter()
        .map(|s| *s.2.ts.last().expect("at least two steps"))
        .min()
        .expect("cpu is there");
    if from > to {
        return Err(
            "the queries have no step with values in common; check each over the range in Prometheus' graph view"
                .into(),
        );
    }
    if from > start || to < end {
        eprintln!(
            "warning: the queries have values from {} to {} only: the trace covers that",
            format_ts(from, true),
            format_ts(to, true)
        );
    }
    let n = ((to - from) / step + 1) as usize;
    let cut = |s: &Series| -> Vec<f64> {
        let k = ((from - s.ts[0]) / step) as usize;
        s.values[k..k + n].to_vec()
    };
    let trace = Trace {
        ts: (0..n).map(|k| (from + k as i64 * step) * 1000).collect(),
        cpu: cut(&series[0].2),
        others: series[1..]
            .iter()
            .filter_map(|(q, _, s)| match q {
                Query::Demand(d) => Some((*d, cut(s))),
                Query::Had(_) => None,
            })
            .collect(),
        actual: series
            .iter()
            .filter_map(|(q, _, s)| match q {
                Query::Had(d) => Some((*d, cut(s))),
                Query::Demand(_) => None,
            })
            .collect(),
        step_ms: step * 1000,
    };
    if trace.cpu.len() < 2 {
        return Err(format!(
            "the queries share {} step(s) with values; a trace needs at least 2",
            trace.cpu.len()
        ));
    }
    if let Some(path) = &a.save_trace {
        std::fs::write(path, csv(&trace))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(trace)
}

/// What a query gives.
#[derive(Clone, Copy)]
enum Query {
    /// A dimension's demand.
    Demand(Dim),
    /// What the service had of a dimension.
    Had(Dim),
}

/// The option that names query `q`.
fn flag(q: Query) -> String {
    match q {
        Query::Demand(d) => d.name().replace('_', "-"),
        Query::Had(d) => format!("actual-{}", d.name().replace('_', "-")),
    }
}

/// `trace` as the CSV `--trace` reads: unix seconds, then a column per dimension.
fn csv(trace: &Trace) -> String {
    let dims = trace.dims();
    let mut out = String::from("timestamp");
    for (d, _) in &dims {
        out.push(',');
        out.push_str(d.name());
    }
    for (d, _) in &trace.actual {
        out.push(',');
        out.push_str(&crate::simulate_cmd::actual_column(*d));
    }
    out.push('\n');
    for (k, ts) in trace.ts.iter().enumerate() {
        out.push_str(&(ts / 1000).to_string());
        let had = trace.actual.iter().map(|(_, v)| v.as_slice());
        for v in dims.iter().map(|(_, v)| *v).chain(had) {
            out.push(',');
            out.push_str(&v[k].to_string());
        }
        out.push('\n');
    }
    out
}
