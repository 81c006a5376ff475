//! `prescale tune WORKLOAD`: which of a workload's safeguards pay for themselves on its
//! own history, asked of the running daemon.
//!
//! A safeguard (the seasonal floor, the scale-down window and delay, the surge's extra
//! instances) buys fewer minutes short with money, and what it buys depends on the
//! workload: on a steady service the scale-down window holds capacity after every
//! peak for nothing, on a spiky one the seasonal floor saves minutes a day. `prescale
//! simulate --sweep` answers this on a trace and a scenario; a team running prescale
//! wants it answered on what its daemon has seen, with the settings as the daemon has
//! them, and the advice written as its configuration takes it. So this reads the
//! configuration in force (`GET /api/v1/status/config`) and the workload's demand as the
//! daemon stored it at each step (`prescale_demand{workload="..."}` and its other
//! dimensions', through the query API) over its last days, replays it at the
//! workload's own settings and with each safeguard turned the other way (or the
//! settings `--sweep` names), beside the oracle and HPA, and says whether another run
//! costs less and is short no longer, with the lines to put in the workload's
//! `[[workloads]]` entry. Nothing is changed: a person reads the advice and decides.

use std::path::PathBuf;

use clap::Args;
use prescale_core::config::Config;
use prescale_core::Dim;
use prescale_orchestrate::simulate::{Policy, Scenario};
use prescale_orchestrate::tune::safeguard_flips;

use crate::ctl::{call, CtlError, Server};
use crate::simulate_cmd::{sweep, Form, SimFormat};

/// `prescale tune`.
#[derive(Args)]
pub struct TuneArgs {
    /// The workload, as the daemon's configuration names it.
    workload: String,
    #[command(flatten)]
    server: Server,
    /// How many days of its stored demand to replay, back from the daemon's last pass.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=90))]
    days: u32,
    /// Settings to try instead of the safeguards, as `prescale simulate --sweep` takes
    /// them: KEY=V1,V2,... (e.g. `sla_quantile=0.9,0.99`), given once or more.
    #[arg(long, value_name = "KEY=V1,V2,...")]
    sweep: Vec<String>,
    /// With `--sweep` given more than once: every combination of the values.
    #[arg(long, requires = "sweep")]
    grid: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SimFormat::Table)]
    format: SimFormat,
    /// Write an HTML page charting each run's cost against its minutes short.
    #[arg(long, value_name = "OUT.html")]
    report: Option<PathBuf>,
    /// Seed of lead times and spot interruptions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs the command.
pub fn run(a: TuneArgs) -> Result<(), CtlError> {
    let config = call(&a.server, "GET", "/api/v1/status/config", None)?;
    let toml = config["toml"].as_str().ok_or_else(|| {
        CtlError::Failed("the daemon's /api/v1/status/config has no configuration".into())
    })?;
    let cfg = Config::parse(toml, "the daemon's configuration")
        .map_err(|e| CtlError::Failed(e.to_string()))?;
    if !cfg.workloads.iter().any(|w| w.name == a.workload) {
        let names: Vec<&str> = cfg.workloads.iter().map(|w| w.name.as_str()).collect();
        return Err(CtlError::Refused(format!(
            "no workload {:?} in the daemon's configuration; it has {}",
            a.workload,
            names.join(", ")
        )));
    }
    let scenario = Scenario::from_config(&cfg, Some(&a.workload))?;
    let w = &scenario.workload;
    let status = call(&a.server, "GET", "/api/v1/workloads", None)?;
    let end_ms = status["last_tick"].as_i64().ok_or_else(|| {
        CtlError::Refused(format!(
            "the daemon at {} has not run a pass yet: nothing is stored to replay",
            a.server.url()
        ))
    })?;
    // The steps it stored: the last complete one before its last pass, and `days`
    // before that.
    let step = w.step_s as i64;
    let end = end_ms / 1000 / step * step - step;
    let start = end - i64::from(a.days) * 86_400;
    // Its other dimensions, where their demand was stored.
    let selector = |metric: &str| format!("{metric}{{workload={:?}}}", w.name);
    let mut dims = Vec::new();
    for d in Dim::ALL.into_iter().filter(|d| *d != Dim::Cpu) {
        if !w.dimensions.contains_key(d.name()) {
            continue;
        }
        let sel = selector(&format!("prescale_demand_{}", d.name()));
        let path = format!(
            "/api/v1/series?match[]={}",
            prescale_collect::http::percent_encode(&sel)
        );
        let found = call(&a.server, "GET", &path, None)?;
        if found.as_array().is_some_and(|s| !s.is_empty()) {
            dims.push((d, sel));
        } else {
            eprintln!(
                "note: {} is replayed without its {}: the daemon stored none of it ({sel})",
                w.name,
                d.name()
            );
        }
    }
    let dim = |d: Dim| dims.iter().find(|(x, _)| *x == d).map(|(_, s)| s.clone());
    let prom = crate::prom_trace::PromArgs {
        prometheus: Some(a.server.url().to_string()),
        cpu: Some(selector("prescale_demand")),
        memory: dim(Dim::Memory),
        disk_iops: dim(Dim::Disk),
        network_mbps: dim(Dim::Network),
        actual_cpu: None,
        actual_memory: None,
        actual_disk_iops: None,
        actual_network_mbps: None,
        start: Some(start.to_string()),
        end: Some(end.to_string()),
        step: format!("{step}s"),
        bearer_token_file: a.server.token_file().cloned(),
        basic_auth_file: None,
        query_timeout_s: 60,
        save_trace: None,
    };
    let trace = crate::prom_trace::fetch(&prom)?;
    let hours = trace.ts.len() as f64 * step as f64 / 3600.0;
    eprintln!(
        "{}: {} steps of {step} s ({hours:.1} h) of the demand the daemon stored, replayed at the workload's own settings and at each other value",
        w.name,
        trace.ts.len()
    );
    if hours < 24.0 {
        eprintln!(
            "warning: less than a day of {}'s demand is stored: settings that hold capacity over a day (the seasonal floor, the scale-down window) are judged on too little of it",
            w.name
        );
    }
    let specs = if a.sweep.is_empty() {
        safeguard_flips(w)
            .iter()
            .map(|set| {
                let (k, v) = &set[0];
                format!("{k}={v}")
            })
            .collect()
    } else {
        a.sweep.clone()
    };
    sweep(
        &specs,
        a.grid,
        Policy::Predictive,
        (&trace, &scenario, a.seed),
        (a.format, a.report.as_deref()),
        &Form::Config(w.name.clone()),
    )?;
    Ok(())
}
