//! The `prescale` command line: `run` (the daemon), `demo` (the same loop on an
//! accelerated simulated clock), and `config` (print or check configuration).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod bench_cmd;
mod ctl;
mod detect_cmd;
mod detect_report;
mod fleet_cmd;
mod forecast_cmd;
mod forecast_report;
mod input;
mod prom_trace;
mod reload;
mod simulate_cmd;
mod simulate_compare;
mod svg;
mod tune_apply;
mod tune_cmd;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use prescale_core::config::{Config, DEFAULT_TOML};
use prescale_core::now_ms;
use prescale_orchestrate::demo::{demo_config, run_demo, DemoOptions, DemoSummary};
use prescale_orchestrate::engine::FLEET_SPEND_KEY;
use prescale_orchestrate::{Engine, Provider, SimCloud};
use prescale_server::AppState;
use prescale_store::{Durability, Store};

/// mimalloc rather than glibc's malloc: with glibc the daemon kept most of what write
/// requests had briefly used (decoded batches, their keys) as free memory it never gave
/// back. 100,000 series of 20 samples written by line protocol left a daemon at 312-376
/// MB resident with glibc and 167 MB with mimalloc; `prescale bench ingest` ran faster
/// (284,000-310,000 samples/s against 227,000-259,000) and `prescale bench simulate` as
/// fast. Built without transparent huge pages (`no_thp`), so an idle daemon stays as
/// small as with glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// prescale: a predictive autoscaler. It forecasts each workload's demand as a
/// distribution and provisions tiered capacity (spot, standard, high-performance) before
/// the demand arrives.
#[derive(Parser)]
#[command(name = "prescale", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How log lines are written on stderr: `text` (colours only at a terminal) or
    /// `json`, one object per line with `timestamp`, `level`, `target` and the event's
    /// fields, for Loki, Elasticsearch or journald's JSON collectors (as Prometheus'
    /// `--log.format=json`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Whether stderr carries JSON lines only (`--log-format json`).
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A line for the person who started prescale: as it is on a terminal, a log event
/// among the others with `--log-format json` (so every line stays one object).
/// A task that every `period_s` seconds (the first at once) runs `job` with the
/// engine's last pass off the async threads, while this replica acts (a standby's
/// status is its last as holder) and once a pass has run; `what` names it in the log
/// if it dies.
fn periodic(
    state: &AppState,
    period_s: u64,
    what: &'static str,
    job: impl Fn(&AppState, prescale_core::TimestampMs) + Send + Sync + Clone + 'static,
) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(period_s));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if state.stands_by() {
                continue;
            }
            let last = state.status.read().expect("status lock").last_tick;
            let Some(now) = last else {
                // No pass yet: run at the first one, not a whole period later (a
                // workload that cannot be tuned yet says so from its first minute).
                tick.reset_after(Duration::from_secs(1));
                continue;
            };
            let (st, job) = (state.clone(), job.clone());
            if let Err(e) = tokio::task::spawn_blocking(move || job(&st, now)).await {
                tracing::error!("{what} task died: {e}");
            }
        }
    })
}

fn say(line: &str) {
    if JSON_LOGS.load(Ordering::Relaxed) {
        tracing::info!("{line}");
    } else {
        eprintln!("prescale: {line}");
    }
}

/// Why prescale stops with an error, as [`say`] says it.
fn fail(why: &str) {
    if JSON_LOGS.load(Ordering::Relaxed) {
        tracing::error!("{why}");
    } else {
        eprintln!("error: {why}");
    }
}

#[derive(clap::Args, Clone)]
struct Overrides {
    /// Store directory (overrides [storage] path).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address for the HTTP server (overrides [server] listen), e.g. 127.0.0.1:9180.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<SocketAddr>,
    /// File whose first line is the token writes must carry (overrides [server]
    /// token_file): needed with --listen beyond loopback, as in a container.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: collect, store, forecast, plan and provision continuously.
    Run {
        /// Configuration file; without it the built-in defaults apply
        /// (`prescale config default` prints them).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        overrides: Overrides,
        /// Where the other replicas reach this one (overrides [leader_election]
        /// advertise_url), e.g. http://$(POD_IP):9180 in a pod's arguments.
        #[arg(long, value_name = "URL", value_parser = http_url)]
        advertise_url: Option<String>,
    },
    /// Watch a simulated week of predictive scaling in about a minute, then print a summary.
    Demo {
        /// Seed for demand, bursts and spot interruptions; the same seed gives the same summary.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Simulated days.
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=60))]
        days: u32,
        /// Simulated seconds per real second; 0 runs as fast as the machine allows.
        /// The default shows a week in about a minute.
        #[arg(long, default_value_t = 10_080.0, allow_hyphen_values = true)]
        speed: f64,
        /// Stop after printing the summary instead of keeping the dashboard up.
        #[arg(long)]
        exit: bool,
        /// Summary format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Forecast a CSV series (`timestamp`, `value`) as quantiles.
    Forecast(forecast_cmd::ForecastArgs),
    /// Cross-validate models on CSV series and print their scores.
    Backtest(forecast_cmd::BacktestArgs),
    /// Score every row of CSV series for anomalies (`timestamp`, `value` -> `anomaly_score`).
    Detect(detect_cmd::DetectArgs),
    /// Replay a demand trace under a scaling policy: cost, shortfalls, actions.
    Simulate(Box<simulate_cmd::SimulateArgs>),
    /// Measure prescale's own speed (e.g. `bench ingest`: samples per second received).
    Bench {
        #[command(subcommand)]
        what: bench_cmd::BenchCmd,
    },
    /// Declare, list or cancel a workload's planned events on a running daemon.
    Events {
        #[command(subcommand)]
        action: ctl::EventsCmd,
    },
    /// Pause a workload on a running daemon: its capacity left as it is, or none
    /// removed, until the pause ends.
    Pause(ctl::PauseArgs),
    /// Lift a workload's pause on a running daemon.
    Resume(ctl::ResumeArgs),
    /// Each workload of a running daemon: demand, ready capacity, instances, cost, model.
    Status(ctl::StatusArgs),
    /// A running daemon's decisions, each with its reason (`--follow` to watch them).
    Decisions(ctl::DecisionsArgs),
    /// Replay a workload's stored demand on a running daemon with each of its
    /// safeguards turned the other way: which pay for themselves, and the settings to
    /// write where another costs less and is short no longer.
    Tune(tune_cmd::TuneArgs),
    /// Print a shell's completion script: `prescale completions bash >
    /// /etc/bash_completion.d/prescale` (zsh: into a directory on `$fpath` as
    /// `_prescale`; fish: `~/.config/fish/completions/prescale.fish`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print or check configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the complete default configuration, with comments.
    Default,
    /// Validate a configuration file; exit 2 with the line and key at fault.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the configuration in effect: the file laid over the defaults (no file:
    /// the defaults), every key written out. Secrets are named by their files only.
    Show {
        /// The file to show.
        file: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// An error that should exit with code 2 (the user must fix their input).
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// A progress bar on stderr when it is a terminal, hidden otherwise (logs, CI).
pub(crate) fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .expect("a valid template")
                .progress_chars("=> "),
        );
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        // Colours for a person at a terminal; plain lines for journald, container logs
        // and files.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The event's message and fields at the top level, as log shippers expect.
        LogFormat::Json => {
            JSON_LOGS.store(true, Ordering::Relaxed);
            logs.json().flatten_event(true).init()
        }
    }
    let result = match cli.command {
        Command::Config { action } => config_cmd(action),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "prescale", &mut script);
            // A reader that stops early (`| head`) is no error.
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(()),
            }
        }
        Command::Forecast(a) => forecast_cmd::forecast(a).map_err(|e| UsageError(e).into()),
        Command::Backtest(a) => forecast_cmd::backtest(a).map_err(|e| UsageError(e).into()),
        Command::Detect(a) => detect_cmd::run(a).map_err(|e| UsageError(e).into()),
        Command::Bench { what } => bench_cmd::run(what).map_err(|e| UsageError(e).into()),
        Command::Simulate(a) => simulate_cmd::run(*a).map_err(|e| UsageError(e).into()),
        Command::Events { action } => ctl::events(action).map_err(ctl_error),
        Command::Pause(a) => ctl::pause(a).map_err(ctl_error),
        Command::Resume(a) => ctl::resume(a).map_err(ctl_error),
        Command::Status(a) => ctl::status(a).map_err(ctl_error),
        Command::Decisions(a) => ctl::decisions(a).map_err(ctl_error),
        Command::Tune(a) => tune_cmd::run(a).map_err(ctl_error),
        Command::Run {
            config,
            overrides,
            advertise_url,
        } => run_cmd(config, overrides, advertise_url),
        Command::Demo {
            seed,
            days,
            speed,
            exit,
            format,
            overrides,
        } => demo_cmd(seed, days, speed, exit, format, overrides),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                fail(&u.to_string());
                ExitCode::from(2)
            } else if let Some(c) = e.downcast_ref::<prescale_core::config::ConfigError>() {
                fail(&c.to_string());
                ExitCode::from(2)
            } else {
                fail(&format!("{e:#}"));
                ExitCode::FAILURE
            }
        }
    }
}

/// A refusal (the request must change) exits 2, a failure 1.
fn ctl_error(e: ctl::CtlError) -> anyhow::Error {
    match e {
        ctl::CtlError::Refused(m) => UsageError(m).into(),
        ctl::CtlError::Failed(m) => anyhow::anyhow!(m),
    }
}

fn config_cmd(action: ConfigAction) -> Result<()> {
    match action {
        ConfigAction::Default => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        ConfigAction::Check { file } => {
            let c = Config::load(&file)?;
            check_models(&c)?;
            for caution in c.cautions(now_ms()) {
                eprintln!("warning: {}: {caution}", file.display());
            }
            println!(
                "{}: ok ({} workload(s), {} tier(s))",
                file.display(),
                c.workloads.len(),
                c.tiers.len()
            );
            for line in c.recurring_summary(now_ms()) {
                println!("{line}");
            }
            Ok(())
        }
        ConfigAction::Show { file } => {
            let c = match &file {
                Some(f) => Config::load(f)?,
                None => Config::default(),
            };
            print!("{}", c.to_toml());
            Ok(())
        }
    }
}

/// Every workload's model must exist in this build (`lstm` needs the `lstm` feature),
/// and its `actual` must be PromQL prescale answers.
fn check_models(cfg: &Config) -> Result<()> {
    for w in &cfg.workloads {
        if let Some(q) = &w.actual {
            prescale_server::promql::check(q)
                .map_err(|e| UsageError(format!("workload {:?}: actual: {e}", w.name)))?;
        }
        for (dim, src) in &w.dimensions {
            if let Some(q) = &src.actual {
                prescale_server::promql::check(q).map_err(|e| {
                    UsageError(format!(
                        "workload {:?}: dimensions.{dim}.actual: {e}",
                        w.name
                    ))
                })?;
            }
        }
        if w.model != "baseline" {
            prescale_forecast::ModelChoice::parse(&w.model)
                .map_err(|e| UsageError(format!("workload {:?}: {e}", w.name)))?;
        }
    }
    Ok(())
}

/// What a configuration needs beyond being read that this build can check: its PromQL
/// queries (`check_models`) and HTTPS where the build has it. At a start and at each
/// reload.
fn check_runnable(cfg: &Config) -> Result<()> {
    check_models(cfg)?;
    if !prescale_collect::http::TLS {
        if let Some(first) = cfg.https_uses().first() {
            return Err(UsageError(prescale_collect::http::no_tls(first)).into());
        }
    }
    Ok(())
}

fn apply_overrides(cfg: &mut Config, o: &Overrides) {
    if let Some(d) = &o.data_dir {
        cfg.storage.path = d.clone();
    }
    if let Some(l) = o.listen {
        cfg.server.listen = l.to_string();
    }
    if let Some(t) = &o.token_file {
        cfg.server.token_file = Some(t.clone());
    }
}

/// Listens on `addr`, saying where the dashboard is (over HTTPS when `https`).
async fn bind(addr: SocketAddr, https: bool) -> Result<tokio::net::TcpListener> {
    let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        UsageError(format!(
            "cannot listen on {addr}: {e}; pick another address with --listen ADDR:PORT"
        ))
    })?;
    let local = l.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            "listening on {local}, beyond loopback: writes need the token, but reads are open to anyone who can reach this address{}",
            if https { "" } else { "; without [server] cert_file the token crosses the network in the clear" }
        );
    }
    let scheme = if https { "https" } else { "http" };
    say(&format!("dashboard and API at {scheme}://{local}/"));
    Ok(l)
}

fn open_store(path: &Path, durability: Durability) -> Result<Store> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("cannot create the data directory {}", path.display()))?;
    Store::open(path, durability).map_err(|e| anyhow::anyhow!(e))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// An `http://` or `https://` URL, for `--advertise-url`.
fn http_url(s: &str) -> std::result::Result<String, String> {
    if prescale_core::config::is_http_url(s) {
        Ok(s.trim_end_matches('/').to_string())
    } else {
        Err("must be an http:// or https:// URL, e.g. http://10.0.0.7:9180".into())
    }
}

fn run_cmd(
    config: Option<PathBuf>,
    overrides: Overrides,
    advertise_url: Option<String>,
) -> Result<()> {
    let mut cfg = match &config {
        Some(f) => Config::load(f)?,
        None => Config::default(),
    };
    apply_overrides(&mut cfg, &overrides);
    if let Some(u) = advertise_url {
        if !cfg.leader_election.enabled {
            return Err(UsageError(
                "--advertise-url says where the other replicas reach this one: it needs [leader_election] enabled = true".into(),
            )
            .into());
        }
        cfg.leader_election.advertise_url = Some(u);
    }
    check_runnable(&cfg)?;
    for c in cfg.cautions(now_ms()) {
        tracing::warn!("{c}");
    }
    // Before anything is opened: --listen may have moved the server beyond loopback.
    cfg.write_token()
        .map_err(|e| UsageError(format!("server.token_file: {e}")))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = match &cfg.storage.remote {
            None => {
                let store = open_store(&cfg.storage.path, Durability::Sync)?;
                store.set_max_series(cfg.storage.max_series);
                store
            }
            Some(r) => {
                std::fs::create_dir_all(&cfg.storage.path).with_context(|| {
                    format!(
                        "cannot create the data directory {}",
                        cfg.storage.path.display()
                    )
                })?;
                let token = match &r.token_file {
                    Some(f) => Some(
                        prescale_core::config::read_token_file(f)
                            .map_err(|e| UsageError(format!("storage.remote.token_file: {e}")))?,
                    ),
                    None => None,
                };
                let basic = match (&r.username, &r.password_file) {
                    (Some(u), Some(f)) => Some((
                        u.clone(),
                        prescale_core::config::read_token_file(f).map_err(|e| {
                            UsageError(format!("storage.remote.password_file: {e}"))
                        })?,
                    )),
                    _ => None,
                };
                let lookback_s = reload::remote_lookback_s(&cfg);
                Store::open_remote(
                    &cfg.storage.path,
                    Durability::Sync,
                    prescale_store::RemoteConfig {
                        write_url: r.write_url.clone(),
                        read_url: r.read_url.clone(),
                        timeout: Duration::from_secs(r.timeout_s),
                        token,
                        lookback_ms: lookback_s as i64 * 1000,
                        ca_file: r.ca_file.clone(),
                        client: r.cert_file.clone().zip(r.key_file.clone()),
                        basic,
                    },
                )
                .map_err(|e| anyhow::anyhow!(e))?
            }
        };
        tracing::info!(
            samples = %store.describe(),
            path = %cfg.storage.path.display(),
            series = ?store.series_count(),
            "store open"
        );
        let provider = make_provider(&cfg)?;
        let interval_ms = cfg.control.interval_s as i64 * 1000;
        let grace_ms = (cfg.sources.host.interval_s as i64 * 1000).min(5_000);
        let mut engine = Engine::from_config(&cfg, grace_ms, store.clone(), provider);
        engine.restore_status(now_ms())?;
        let mut state =
            AppState::new(&cfg, store.clone(), engine.status_handle()).map_err(UsageError)?;
        let (reload_tx, reload_rx) =
            tokio::sync::mpsc::channel::<prescale_server::ReloadRequest>(4);
        state.reload = Some(reload_tx.clone());
        let interval_ms = Arc::new(std::sync::atomic::AtomicU64::new(interval_ms as u64));
        let listener = bind(cfg.listen_addr(), cfg.server.cert_file.is_some()).await?;
        let engine = Arc::new(Mutex::new(engine));
        state.release = Some({
            let engine = engine.clone();
            Arc::new(move |name: &str| engine.lock().expect("engine").release(name, now_ms()))
        });
        state.pause = Some({
            let engine = engine.clone();
            Arc::new(move |name: &str, ask, now| {
                let mut engine = engine.lock().expect("engine");
                match ask {
                    Some((scope, until, reason)) => {
                        engine.pause(name, scope, until, &reason, now).map(Some)
                    }
                    None => engine.resume(name, now),
                }
            })
        });
        state.events = Some({
            let engine = engine.clone();
            Arc::new(move |name: &str, ask, now| {
                let mut engine = engine.lock().expect("engine");
                match ask {
                    prescale_server::EventAsk::Declare(e) => engine
                        .declare_event(name, e, now)
                        .map(prescale_server::EventDone::Declared),
                    prescale_server::EventAsk::Cancel(event) => engine
                        .cancel_event(name, &event, now)
                        .map(prescale_server::EventDone::Cancelled),
                }
            })
        });
        let stop = Arc::new(AtomicBool::new(false));

        let mut tasks = Vec::new();
        // With leader election, only the replica holding the lease plans and acts. On
        // taking the lease over, what the holder before wrote on it (the month's
        // spending, the unmanaged capacity, the pauses, the declared events) goes to the
        // engine as it takes the lease, before its first pass.
        let elector = match cfg.leader_election.enabled {
            false => None,
            true => {
                let kube = cfg.providers.kubernetes.clone().unwrap_or_default();
                let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "prescale".into());
                let identity = format!("{host}_{}_{}", std::process::id(), now_ms());
                let e = prescale_orchestrate::lease::Elector::new(
                    &cfg.leader_election,
                    &kube,
                    identity,
                    |k| std::env::var(k).ok(),
                    std::path::Path::new(prescale_collect::kube::SERVICE_ACCOUNT_DIR),
                )
                .map_err(|e| UsageError(format!("leader_election needs a Kubernetes API server: {e}")))?;
                let leadership = Arc::new(prescale_server::Leadership {
                    lease: e.lease(),
                    identity: e.identity().to_string(),
                    advertise_url: cfg.leader_election.advertise_url.clone(),
                    agent: cfg
                        .leader_election
                        .ca_file
                        .as_deref()
                        .map(|ca| prescale_server::forward::holder_agent(Some(ca)))
                        .transpose()
                        .map_err(|e| UsageError(format!("leader_election.ca_file: {e}")))?,
                    ..Default::default()
                });
                tracing::info!(lease = %leadership.lease, identity = %leadership.identity, "leader election: standing by until this replica holds the lease");
                state.leadership = Some(leadership.clone());
                let e = Arc::new(Mutex::new(e));
                // What an operator asks of the holder goes on the Lease before it is
                // answered, not at the next renewal: a holder dying right after would
                // otherwise take it along.
                state.hand_on = Some({
                    let (el, lead, status) = (e.clone(), leadership.clone(), state.status.clone());
                    Arc::new(move || {
                        let mut el = el.lock().expect("elector");
                        if !lead.leading.load(Ordering::SeqCst) {
                            return Err("this replica no longer holds the lease".into());
                        }
                        let noted = prescale_orchestrate::lease::Noted::of(&status.read().expect("status lock"), true);
                        el.notes().note(noted, now_ms());
                        el.renew_now()
                    })
                });
                let every = Duration::from_secs(cfg.leader_election.retry_period_s);
                let (el, lead, status, engine, standby) =
                    (e.clone(), leadership, state.status.clone(), engine.clone(), state.clone());
                tasks.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let (el, status, leading) = (el.clone(), status.clone(), lead.clone());
                        let Ok(mut round) = tokio::task::spawn_blocking(move || {
                            let mut el = el.lock().expect("elector");
                            // What each workload spent this month, the unmanaged
                            // capacity, the pauses and the declared events, as
                            // published: the holder writes them on the Lease (the lists
                            // once it leads, having taken over those handed to it).
                            // Read under the elector's lock, so a change written at
                            // once (hand_on) is not written over by an older reading.
                            let st = status.read().expect("status lock");
                            let noted = prescale_orchestrate::lease::Noted::of(&st, leading.leading.load(Ordering::SeqCst));
                            drop(st);
                            el.notes().note(noted, now_ms());
                            el.round()
                        })
                        .await
                        else {
                            break;
                        };
                        if let Some(h) = round.handed.take() {
                            // To the engine before the control loop sees this replica
                            // lead, and before this replica writes its own lists.
                            let (engine, watch) = (engine.clone(), standby.clone());
                            let adopted = tokio::task::spawn_blocking(move || {
                                let mut engine = engine.lock().expect("engine");
                                engine.forget_holdings();
                                let taken = h.hand_to(&mut engine, now_ms());
                                log_taken_over(taken, &watch);
                            })
                            .await;
                            if let Err(e) = adopted {
                                tracing::error!("leader election: taking over what was handed died: {e}");
                            }
                        }
                        let was = lead.leading.swap(round.leading, Ordering::SeqCst);
                        let before = std::mem::replace(
                            &mut *lead.holder.write().expect("holder lock"),
                            round.holder.clone(),
                        );
                        if let Some(e) = &round.error {
                            tracing::warn!("leader election: {e}");
                        }
                        *lead.error.write().expect("error lock") = round.error;
                        *lead.holder_url.write().expect("holder url lock") = round.holder_url;
                        match (was, round.leading) {
                            (false, true) => tracing::info!(lease = %lead.lease, "leader election: this replica holds the lease: it plans and acts"),
                            (true, false) => tracing::warn!(lease = %lead.lease, holder = %round.holder, "leader election: this replica no longer holds the lease: it stands by"),
                            (false, false) if before != round.holder && !round.holder.is_empty() => {
                                tracing::info!(lease = %lead.lease, holder = %round.holder, "leader election: standing by while another replica acts")
                            }
                            _ => {}
                        }
                    }
                }));
                Some(e)
            }
        };
        if state.leadership.is_some() {
            // A standby copies the holder's decision log as it is written, so the one
            // that takes over serves the decisions from before the failover too.
            let state = state.clone();
            let every = Duration::from_secs(cfg.control.interval_s.max(1));
            tasks.push(tokio::spawn(async move {
                let copy = Arc::new(Mutex::new(prescale_server::forward::LogCopy::default()));
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut said: Option<String> = None;
                loop {
                    tick.tick().await;
                    let (copy, st) = (copy.clone(), state.clone());
                    let Ok(res) = tokio::task::spawn_blocking(move || {
                        copy.lock().expect("log copy").copy(&st)
                    })
                    .await
                    else {
                        break;
                    };
                    match res {
                        Ok(n) => {
                            if n > 0 {
                                tracing::debug!(decisions = n, "leader election: decisions copied from the holder");
                            }
                            said = None;
                        }
                        Err(e) => {
                            if said.as_ref() != Some(&e) {
                                tracing::warn!("leader election: the holder's decisions were not copied: {e}");
                            }
                            said = Some(e);
                        }
                    }
                }
            }));
        }
        let host = reload::host_loop(&cfg, &state).map(tokio::spawn);
        // Every quarter hour, each workload's last week against HPA, kept as series
        // (prescale_compare_*) for charts of the money saved.
        tasks.push(periodic(&state, 900, "comparison", |st, now| {
            let m = st.managed();
            for (w, why) in prescale_server::compare::record_all(&st.store, &m.tiers, &m.workloads, now) {
                tracing::debug!(workload = %w, "not compared with HPA yet: {why}");
            }
        }));
        // Every control.tune_every_s, each workload's safeguards tuned on its stored
        // demand and the advice kept (prescale_server::tune); checked at the first pass
        // and every five minutes after, so a reload's new setting or workload is taken
        // up. With control.tune_apply, an advice that held is written into the file
        // and reloaded (tune_apply).
        let applying = (config.clone(), overrides.clone(), reload_tx.clone());
        tasks.push(periodic(&state, 300, "tuning", move |st, now| {
            let cfg = st.config.read().expect("config lock").clone();
            if cfg.control.tune_every_s == 0 {
                return;
            }
            let done = match prescale_server::tune::tune_all(&st.store, &cfg, now) {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!("tuning could not be kept: {e}");
                    return;
                }
            };
            for (w, t) in &done {
                match &t.error {
                    Some(why) => tracing::debug!(workload = %w, "not tuned yet: {why}"),
                    None => tracing::info!(workload = %w, "{}", t.summary),
                }
            }
            let (Some(path), overrides, tx) = &applying else {
                return;
            };
            let reload = || {
                let (answer, answered) = tokio::sync::oneshot::channel();
                let asked = prescale_server::ReloadRequest {
                    dry_run: false,
                    answer,
                };
                match tx.blocking_send(asked).map(|()| answered.blocking_recv()) {
                    Ok(Ok(answer)) => answer,
                    _ => Err("the daemon is stopping".to_string()),
                }
            };
            let applier = tune_apply::Applier {
                path,
                overrides,
                reload: &reload,
            };
            for (w, t) in &done {
                // As in force now: applying one workload's advice reloads the file.
                let in_force = st.config.read().expect("config lock").clone();
                if !in_force.control.tune_apply {
                    return;
                }
                let paused = st
                    .status
                    .read()
                    .expect("status lock")
                    .workloads
                    .get(w)
                    .is_some_and(|s| s.paused.is_some());
                let last = prescale_server::tune::last_applied(&st.store, w)
                    .ok()
                    .flatten();
                let Some(a) = applier.offer(&in_force, (paused, last.as_ref()), w, t) else {
                    continue;
                };
                match &a.refused {
                    None => tracing::info!(workload = %w, written = ?a.written, "tuning applied (control.tune_apply)"),
                    Some(why) => tracing::warn!(workload = %w, "tuning not applied (control.tune_apply): {why}"),
                }
                if let Err(e) = prescale_server::tune::keep_applied(&st.store, w, &a, last.as_ref()) {
                    tracing::error!(workload = %w, "what came of applying the tuning could not be kept: {e}");
                }
            }
        }));
        {
            // Retention: at start, then hourly, off the async threads.
            let store = store.clone();
            let live = state.config.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(3600));
                loop {
                    tick.tick().await;
                    let store = store.clone();
                    // The configuration in force: a reload may have changed retention.
                    let cfg = live.read().expect("config lock").clone();
                    let res = tokio::task::spawn_blocking(move || {
                        prescale_orchestrate::retention::enforce(&store, &cfg, now_ms())
                    })
                    .await;
                    match res {
                        Ok(Ok(r)) => {
                            if r.samples > 0 {
                                tracing::info!(
                                    series = r.series,
                                    samples = r.samples,
                                    forgotten = r.forgotten,
                                    "retention: deleted samples older than their series keep (forgotten: series left empty)"
                                );
                            }
                            if r.decisions > 0 {
                                tracing::info!(
                                    decisions = r.decisions,
                                    "retention: deleted decisions older than storage.decision_retention_s"
                                );
                            }
                            if r.compressed > 0 {
                                tracing::info!(
                                    samples = r.compressed,
                                    "storage: compressed samples older than an hour into chunks"
                                );
                            }
                        }
                        Ok(Err(e)) => tracing::warn!("retention pass failed: {e}"),
                        Err(e) => tracing::error!("retention task died: {e}"),
                    }
                }
            }));
        }
        let scrapes: Vec<_> = reload::scrape_loops(&cfg, &state)
            .map_err(UsageError)?
            .into_iter()
            .map(tokio::spawn)
            .collect();
        {
            let engine = engine.clone();
            let interval_ms = interval_ms.clone();
            let standby = state.clone();
            tasks.push(tokio::spawn(async move {
                let every = |ms: u64| {
                    let mut t = tokio::time::interval_at(
                        tokio::time::Instant::now() + Duration::from_millis(ms),
                        Duration::from_millis(ms),
                    );
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                };
                let mut current = interval_ms.load(Ordering::Relaxed);
                let mut tick = every(current);
                let mut stood_by = false;
                // The first pass once the sources have had their first go (the host
                // collector's first samples), as every step waits `grace_ms` for its
                // samples: at once, it reported the host's own series as missing.
                tick.reset_after(Duration::from_millis(grace_ms as u64));
                loop {
                    tick.tick().await;
                    let want = interval_ms.load(Ordering::Relaxed);
                    if want != current {
                        // A reload changed the pace: the next pass after the new interval.
                        current = want;
                        tick = every(current);
                    }
                    if standby.stands_by() {
                        // Standing by: another replica plans and acts.
                        stood_by = true;
                        continue;
                    }
                    let took_over = std::mem::take(&mut stood_by);
                    let engine = engine.clone();
                    let res = tokio::task::spawn_blocking(move || {
                        let mut engine = engine.lock().expect("engine");
                        if took_over {
                            engine.forget_holdings();
                        }
                        engine.tick(now_ms())
                    })
                    .await;
                    match res {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::warn!("control pass failed: {e}"),
                        Err(e) => tracing::error!("control task died: {e}"),
                    }
                }
            }));
        }
        tasks.push(tokio::spawn(
            reload::Reloading {
                path: config.clone(),
                overrides,
                engine: engine.clone(),
                state: state.clone(),
                scrapes,
                host,
                interval_ms: interval_ms.clone(),
                lookback_s: reload::remote_lookback_s(&cfg),
            }
            .serve(reload_rx),
        ));
        #[cfg(unix)]
        {
            // SIGHUP rereads the configuration, as it does for Prometheus.
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            tasks.push(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let (answer, _) = tokio::sync::oneshot::channel();
                    let asked = prescale_server::ReloadRequest {
                        dry_run: false,
                        answer,
                    };
                    if reload_tx.send(asked).await.is_err() {
                        break;
                    }
                }
            }));
        }
        let stop2 = stop.clone();
        let watch = state.anomalies.clone();
        prescale_server::serve(listener, state, async move {
            shutdown_signal().await;
            stop2.store(true, Ordering::SeqCst);
        })
        .await?;
        for t in tasks {
            t.abort();
        }
        if let Some(e) = elector {
            // Given up, so another replica takes over at its next try, not after the
            // lease runs out.
            match tokio::task::spawn_blocking(move || e.lock().expect("elector").release()).await? {
                Ok(()) => tracing::info!("leader election: the lease is released"),
                Err(e) => tracing::warn!("leader election: the lease was not released: {e}"),
            }
        }
        // What was stored but not judged yet is judged and its anomalies saved: after a
        // restart these samples are history, learnt from and not reported.
        let judged =
            tokio::task::spawn_blocking(move || watch.flush(Duration::from_secs(10))).await?;
        if !judged {
            tracing::warn!("stopping with stored samples not yet judged for anomalies");
        }
        store.flush()?;
        tracing::info!("stopped; every acknowledged sample is on disk");
        Ok(())
    })
}

/// The provider `[providers] use` names.
fn make_provider(cfg: &Config) -> Result<Box<dyn Provider>> {
    use prescale_core::config::ProviderKind;
    use prescale_orchestrate::hook::{HookProvider, Transport};
    let workloads: Vec<String> = cfg.workloads.iter().map(|w| w.name.clone()).collect();
    let p = &cfg.providers;
    Ok(match p.use_ {
        ProviderKind::Sim => Box::new(SimCloud::new(&cfg.tiers, p.sim.seed)),
        ProviderKind::Exec => {
            let e = p.exec.as_ref().expect("validated with the config");
            Box::new(HookProvider::new(
                Transport::Exec(e.command.clone()),
                Duration::from_secs(e.timeout_s),
                e.report_state,
                &cfg.tiers,
                workloads,
            ))
        }
        ProviderKind::Webhook => {
            let w = p.webhook.as_ref().expect("validated with the config");
            let token = match &w.token_file {
                Some(f) => Some(
                    prescale_core::config::read_token_file(f)
                        .map_err(|e| UsageError(format!("providers.webhook.token_file: {e}")))?,
                ),
                None => None,
            };
            let agent = prescale_collect::http::agent(
                Duration::from_secs(w.timeout_s),
                prescale_collect::http::TlsFiles {
                    ca_file: w.ca_file.as_deref(),
                    client: w.cert_file.as_deref().zip(w.key_file.as_deref()),
                },
            )
            .map_err(|e| UsageError(format!("providers.webhook: {e}")))?;
            Box::new(HookProvider::new(
                Transport::Webhook {
                    url: w.url.clone(),
                    token,
                    agent,
                },
                Duration::from_secs(w.timeout_s),
                w.report_state,
                &cfg.tiers,
                workloads,
            ))
        }
        ProviderKind::Recommend => Box::new(HookProvider::new(
            Transport::Record,
            Duration::from_secs(1),
            false,
            &cfg.tiers,
            workloads,
        )),
        ProviderKind::Kubernetes => {
            use prescale_orchestrate::kube::{KubeApi, SERVICE_ACCOUNT_DIR};
            let k = p.kubernetes.clone().unwrap_or_default();
            let api = KubeApi::from_config(
                &k,
                |v| std::env::var(v).ok(),
                Path::new(SERVICE_ACCOUNT_DIR),
            )
            .map_err(UsageError)?;
            tracing::info!(
                api = %api.conn.api_url,
                namespace = %api.conn.namespace,
                objects = %k.name,
                "scaling Kubernetes {}s",
                k.kind.noun()
            );
            // The cluster holds the truth: its replicas are read at every pass.
            Box::new(HookProvider::new(
                Transport::Kubernetes(Box::new(api)),
                Duration::from_secs(k.timeout_s),
                true,
                &cfg.tiers,
                workloads,
            ))
        }
    })
}

/// Logs what this replica's engine took over of what the holder before handed it on
/// the Lease, and tells the anomaly watch of declared events it took.
fn log_taken_over(taken: prescale_orchestrate::lease::Adopted, watch: &prescale_server::AppState) {
    for (w, s) in taken.spend {
        if w == FLEET_SPEND_KEY {
            tracing::info!(spent = s.spent, "leader election: the fleet's spending this month taken over from the replica that held the lease before");
        } else {
            tracing::info!(workload = %w, spent = s.spent, "leader election: this month's spending taken over from the replica that held the lease before");
        }
    }
    match taken.unmanaged {
        Ok(names) if !names.is_empty() => {
            tracing::info!(workloads = ?names, "leader election: unmanaged capacity taken over from the replica that held the lease before")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!("leader election: the unmanaged capacity handed over was not kept: {e}")
        }
    }
    match taken.paused {
        Some(Ok(names)) if !names.is_empty() => {
            tracing::info!(workloads = ?names, "leader election: pauses taken over from the replica that held the lease before (or lifted where it had resumed them)")
        }
        Some(Err(e)) => {
            tracing::warn!("leader election: the pauses handed over were not kept: {e}")
        }
        _ => {}
    }
    match taken.events {
        Some(Ok(names)) if !names.is_empty() => {
            tracing::info!(workloads = ?names, "leader election: planned events declared through the API taken over from the replica that held the lease before");
            watch.watch_planned();
        }
        Some(Err(e)) => {
            tracing::warn!("leader election: the planned events handed over were not kept: {e}")
        }
        _ => {}
    }
}

/// Finds a scrape job's targets among the pods of a namespace every `refresh_s`:
/// starts scraping each new one, stops scraping (and stops listing) each one gone, and
/// keeps the targets it has while the API server cannot be asked, logging that once.
async fn discover_loop(
    job: prescale_core::config::ScrapeConfig,
    conn: prescale_collect::kube::Connection,
    agent: ureq::Agent,
    store: Store,
    targets: prescale_server::Targets,
    metadata: prescale_server::Metadata,
    anomalies: prescale_server::anomalies::Anomalies,
) {
    use prescale_collect::kube::{discover_endpoints, discover_pods, PodRule};
    use prescale_collect::scrape::{Target, TargetHealth};
    use prescale_core::config::SdRole;
    let sd = job.kubernetes.clone().expect("a discovery job");
    let rule = PodRule {
        job: job.job.clone(),
        selector: sd.selector.clone(),
        port: sd.port,
        port_name: sd.port_name.clone(),
        scheme: job.scheme.clone(),
        path: job.path.clone(),
    };
    let (listed, discover): (&str, fn(&_, &_) -> _) = match sd.role {
        SdRole::Pod => ("pods", discover_pods),
        SdRole::Endpoints => ("endpoints", discover_endpoints),
    };
    let every = Duration::from_secs(job.interval_s);
    let mut running: std::collections::BTreeMap<String, (Target, tokio::task::JoinHandle<()>)> =
        Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(sd.refresh_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = String::new();
    let mut portless: Vec<String> = Vec::new();
    loop {
        tick.tick().await;
        let (c, r) = (conn.clone(), rule.clone());
        let found = match tokio::task::spawn_blocking(move || discover(&c, &r)).await {
            Ok(Ok(d)) => {
                if d.without_port != portless && !d.without_port.is_empty() {
                    match sd.role {
                        SdRole::Pod => {
                            tracing::warn!(job = %job.job, "not scraping {} running pod(s) with no port to scrape ({}): set port in [sources.scrape.kubernetes] or annotate them prometheus.io/port", d.without_port.len(), d.without_port.join(", "))
                        }
                        SdRole::Endpoints => {
                            tracing::warn!(job = %job.job, "not scraping {} Service(s) whose ready addresses have no port named {:?} ({}): check port_name or port in [sources.scrape.kubernetes]", d.without_port.len(), sd.port_name.as_deref().unwrap_or(""), d.without_port.join(", "))
                        }
                    }
                }
                portless = d.without_port;
                d.targets
            }
            Ok(Err(e)) => {
                let why = format!(
                    "{e}{}",
                    prescale_collect::kube::hint(
                        &e,
                        "sources.scrape.kubernetes",
                        &format!("list on {listed} in namespace {}", conn.namespace)
                    )
                );
                if why != failing {
                    tracing::warn!(job = %job.job, "cannot list {listed} to scrape, keeping the {} found before: {why}", running.len());
                    failing = why;
                }
                continue;
            }
            Err(e) => {
                tracing::error!("{listed} discovery task died: {e}");
                continue;
            }
        };
        if !failing.is_empty() {
            tracing::info!(job = %job.job, "listing {listed} to scrape again");
            failing.clear();
        }
        running.retain(|_, (t, handle)| {
            if found.contains(t) {
                return true;
            }
            handle.abort();
            targets
                .write()
                .expect("targets lock")
                .remove(&(t.job.clone(), t.instance.clone()));
            tracing::info!(job = %t.job, pod = t.labels.get("pod").map_or("", String::as_str), "stopped scraping {}: the {} is gone", t.url, if sd.role == SdRole::Pod { "pod" } else { "address" });
            false
        });
        for t in found {
            if running.contains_key(&t.instance) {
                continue;
            }
            tracing::info!(job = %t.job, pod = t.labels.get("pod").map_or("", String::as_str), "found {} to scrape at {}", if sd.role == SdRole::Pod { "a pod" } else { "an address" }, t.url);
            targets.write().expect("targets lock").insert(
                (t.job.clone(), t.instance.clone()),
                TargetHealth {
                    job: t.job.clone(),
                    instance: t.instance.clone(),
                    url: t.url.clone(),
                    labels: t.labels.clone(),
                    health: "unknown".into(),
                    ..Default::default()
                },
            );
            let mut target = t.clone();
            target.sample_limit = job.sample_limit;
            let handle = tokio::spawn(scrape_loop(
                target,
                every,
                agent.clone(),
                store.clone(),
                targets.clone(),
                metadata.clone(),
                anomalies.clone(),
            ));
            running.insert(t.instance.clone(), (t, handle));
        }
    }
}

/// Scrapes one target every `every` until the task is aborted: stores what it yields
/// (`up` 0 included when it is down), keeps its health for `/api/v1/targets`, and logs
/// when it goes down or comes back, not at every failed scrape.
async fn scrape_loop(
    target: prescale_collect::scrape::Target,
    every: Duration,
    agent: ureq::Agent,
    store: Store,
    targets: prescale_server::Targets,
    metadata: prescale_server::Metadata,
    anomalies: prescale_server::anomalies::Anomalies,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let id = (target.job.clone(), target.instance.clone());
    let mut was = String::new();
    loop {
        tick.tick().await;
        let t = target.clone();
        let store = store.clone();
        let agent = agent.clone();
        let known = metadata.clone();
        let watch = anomalies.clone();
        let res = tokio::task::spawn_blocking(move || {
            let scraped = prescale_collect::scrape::scrape(&agent, &t, now_ms());
            let stored = store.append_many(&scraped.series);
            if let Ok(reports) = &stored {
                watch.submit(scraped.series, reports);
            }
            let said = known.remember(scraped.metadata);
            (scraped.health, said, stored)
        })
        .await;
        let (mut health, said, stored) = match res {
            Ok(x) => x,
            Err(e) => {
                tracing::error!("scrape task for {} died: {e}", target.url);
                continue;
            }
        };
        if let Err(e) = said {
            tracing::warn!(
                "{}: its metric metadata could not be saved: {e}",
                target.url
            );
        }
        match stored {
            Ok(reports) => {
                let rejected: usize = reports.iter().map(|r| r.rejected.len()).sum();
                if rejected > 0 {
                    let first = reports.iter().flat_map(|r| &r.rejected).next();
                    let said = format!(
                        "{rejected} samples not stored, e.g. {}",
                        first.map(|r| r.reason.as_str()).unwrap_or("")
                    );
                    tracing::warn!("{}: {said}", target.url);
                    // The target is up, but what it said was not all kept: the
                    // Sources panel and /api/v1/targets say so beside it.
                    if health.last_error.is_empty() {
                        health.last_error = said;
                    }
                }
            }
            Err(e) => {
                health.health = "down".into();
                health.last_error = format!("the scrape could not be stored: {e}");
            }
        }
        if health.health != was {
            if health.health == "up" {
                tracing::info!(job = %target.job, "scraping {}: up", target.url);
            } else {
                tracing::warn!(job = %target.job, "scraping {}: down: {}", target.url, health.last_error);
            }
            was = health.health.clone();
        }
        targets
            .write()
            .expect("targets lock")
            .insert(id.clone(), health);
    }
}

fn print_summary(s: &DemoSummary, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    let days = s.simulated_minutes as f64 / 1440.0;
    println!("prescale demo: {days:.1} simulated days, seed {}", s.seed);
    if s.interrupted {
        println!("  (stopped early by Ctrl-C)");
    }
    println!(
        "  cost           ${:.2} (static peak capacity on standard would cost ${:.2}: {:.0}% saved)",
        s.cost_total,
        s.static_peak_cost,
        if s.static_peak_cost > 0.0 {
            100.0 * (1.0 - s.cost_total / s.static_peak_cost)
        } else {
            0.0
        }
    );
    for (tier, c) in &s.cost_per_tier {
        println!(
            "    {tier:<18} ${c:>9.2}   peak {:>3} of max {} instances",
            s.peak_instances_per_tier.get(tier).copied().unwrap_or(0),
            s.max_instances_per_tier.get(tier).copied().unwrap_or(0)
        );
    }
    if s.requested_cost > 0.0 {
        // "web 40 vCPU, batch 48 vCPU and 280 GiB".
        let mut fixed: Vec<(&str, Vec<String>)> = Vec::new();
        for (w, d, v) in prescale_orchestrate::demo::REQUESTED {
            let amount = format!("{v:.0} {}", d.unit());
            match fixed.iter_mut().find(|f| f.0 == w) {
                Some(f) => f.1.push(amount),
                None => fixed.push((w, vec![amount])),
            }
        }
        let fixed: Vec<String> = fixed
            .into_iter()
            .map(|(w, a)| format!("{w} {}", a.join(" and ")))
            .collect();
        println!(
            "  without prescale: the fixed deployments ({}) would cost ${:.2}, short {} workload-minutes; prescale costs {:.0}% less, short {}",
            fixed.join(", "),
            s.requested_cost,
            s.requested_underprovisioned_minutes,
            100.0 * (1.0 - s.cost_total / s.requested_cost),
            s.underprovisioned_minutes
        );
    }
    println!(
        "  under-provisioned {} workload-minutes ({:.3}% of the time)",
        s.underprovisioned_minutes,
        s.underprovisioned_share * 100.0
    );
    for (w, ws) in &s.workloads {
        println!(
            "    {w:<10} {:>5} min short; demand mean {:.1} peak {:.1} vCPU; capacity mean {:.1} vCPU",
            ws.underprovisioned_minutes, ws.mean_demand, ws.peak_demand, ws.mean_capacity
        );
        for (dim, d) in &ws.dimensions {
            let unit = prescale_core::Dim::parse(dim).map_or("", |d| d.unit());
            println!(
                "    {:<10}       {dim}: demand mean {:.1} peak {:.1} {unit}; capacity mean {:.1} {unit}",
                "", d.mean_demand, d.peak_demand, d.mean_capacity
            );
        }
        let incident = prescale_orchestrate::demo::INCIDENT;
        if ws.paused_minutes > 0 && w == incident.workload {
            println!(
                "    {:<10}       paused ({}) {} min by the on-call, \"{}\": held ${:.2} beyond what its plans wanted",
                "",
                incident.scope.name(),
                ws.paused_minutes,
                incident.reason,
                ws.paused_cost
            );
        }
    }
    println!(
        "  actions {}   refused {}   spot interruptions {}   anomalies {}",
        s.actions, s.errors, s.interruptions, s.anomalies
    );
    Ok(())
}

fn demo_cmd(
    seed: u64,
    days: u32,
    speed: f64,
    exit: bool,
    format: Format,
    overrides: Overrides,
) -> Result<()> {
    if !(speed.is_finite() && speed >= 0.0) {
        return Err(UsageError(format!(
            "--speed must be 0 or a positive number, got {speed}"
        ))
        .into());
    }
    let mut cfg = demo_config(seed, days);
    apply_overrides(&mut cfg, &overrides);
    // The demo writes its own history: it needs a fresh directory.
    let _temp;
    let data_dir = match &overrides.data_dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(d)
                    .map(|mut r| r.next().is_some())
                    .unwrap_or(true)
            {
                return Err(UsageError(format!(
                    "--data-dir {} is not empty; the demo needs an empty or new directory so it cannot mix with real data",
                    d.display()
                ))
                .into());
            }
            d.clone()
        }
        None => {
            _temp = tempfile::Builder::new()
                .prefix("prescale-demo-")
                .tempdir()?;
            _temp.path().to_path_buf()
        }
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let store = open_store(&data_dir, Durability::Buffered)?;
        let sim = SimCloud::new(&cfg.tiers, seed);
        let mut engine = Engine::from_config(&cfg, 0, store.clone(), sim);
        engine.set_persist_status(false);
        let state =
            AppState::new(&cfg, store.clone(), engine.status_handle()).map_err(UsageError)?;
        let listener = bind(cfg.listen_addr(), false).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let stop_sig = stop.clone();
        let anomalies = state.anomalies.clone();
        let server = tokio::spawn(prescale_server::serve(listener, state, async move {
            tokio::select! {
                _ = shutdown_signal() => {},
                _ = done_rx => {},
            }
            stop_sig.store(true, Ordering::SeqCst);
        }));
        let opts = DemoOptions {
            seed,
            days,
            speed,
            ..DemoOptions::default()
        };
        let stop2 = stop.clone();
        let status = engine.status_handle();
        let summary = tokio::task::spawn_blocking(move || {
            let total = days as u64 * 1440;
            let bar = progress_bar(
                total,
                "{spinner} simulating [{bar:40}] {pos}/{len} min ({msg})",
            );
            let r = run_demo(
                &mut engine,
                &opts,
                &stop2,
                |done, _| {
                    bar.set_position(done);
                    bar.set_message(format!("day {:.1}", done as f64 / 1440.0));
                },
                // The demo's metrics are watched for anomalies as a daemon's sources are.
                |batch, reports| {
                    if let Err(e) = anomalies.observe(batch, reports) {
                        tracing::warn!("anomalies in the demo's metrics could not be saved: {e}");
                    }
                },
            );
            bar.finish_and_clear();
            r
        })
        .await??;
        // The demo's week against HPA, kept as series as the daemon keeps it (every
        // quarter hour), for charts of the money saved.
        let last = status.read().expect("status lock").last_tick;
        if let Some(now) = last {
            let (kept, tiers, workloads) =
                (store.clone(), cfg.tiers.clone(), cfg.workloads.clone());
            tokio::task::spawn_blocking(move || {
                prescale_server::compare::record_all(&kept, &tiers, &workloads, now)
            })
            .await?;
        }
        print_summary(&summary, format)?;
        if exit || summary.interrupted {
            let _ = done_tx.send(());
        } else {
            // While the dashboard stays up, each workload's safeguards tuned on the days
            // it ran, as the daemon tunes them daily, for the dashboard and `prescale
            // decisions` (and here, in words).
            if let Some(now) = last {
                let (store, mut cfg) = (store.clone(), cfg.clone());
                cfg.control.tune_days = u64::from(days.max(1));
                let bar = progress_bar(0, "{spinner} tuning each workload's safeguards on the run");
                bar.enable_steady_tick(Duration::from_millis(120));
                let tuned = tokio::task::spawn_blocking(move || {
                    prescale_server::tune::tune_all(&store, &cfg, now)
                })
                .await?;
                bar.finish_and_clear();
                match tuned {
                    Ok(t) if format == Format::Text => {
                        println!("  tuned on the run, as the daemon tunes each workload daily (GET /api/v1/workloads/NAME/tune):");
                        for (w, t) in t {
                            println!("    {w:<10} {}", t.summary);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!("the demo's tuning could not be kept: {e}"),
                }
            }
            say("the dashboard stays up; press Ctrl-C to stop");
        }
        server.await??;
        Ok(())
    })
}
