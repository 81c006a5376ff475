//! `prescale bench ingest`: how fast the write receivers take samples, end to end. A
//! server on this machine's loopback with a fresh store (synced before each answer, as
//! the daemon runs) receives remote_write or line-protocol batches from one or more
//! senders, as Prometheus' shards send them; the result is samples per second and the
//! latency of a request.
//!
//! `prescale bench simulate`: how long a predictive replay of a trace takes, model
//! selection and refits included (the simulator's target: a 30-day trace in under 10 s).
//!
//! `prescale bench query`: how fast the query API answers what a Grafana dashboard
//! asks, over a store of many series that has run for days (its older samples in
//! compressed chunks, as the daemon's are after an hour).
//!
//! `prescale bench control`: how long the daemon's control pass takes over many
//! workloads sharing the tiers' pools (and a fleet budget): what bounds how many
//! workloads one prescale can manage at its pass interval.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use prescale_core::config::Config;
use prescale_core::{Sample, SeriesKey};
use prescale_orchestrate::simulate::{Scenario, Trace};
use prescale_store::{Durability, Store};

/// `prescale bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Samples per second through the write receivers into the store.
    Ingest(IngestArgs),
    /// Seconds a predictive replay of a trace takes, forecaster retraining included.
    Simulate(SimulateBenchArgs),
    /// Milliseconds the query API takes for what Grafana dashboards ask.
    Query(QueryBenchArgs),
    /// Milliseconds a control pass takes over many workloads.
    Control(ControlBenchArgs),
    /// Seconds a tuning of a workload's safeguards takes, as the daemon's daily one.
    Tune(TuneBenchArgs),
}

/// `prescale bench tune` arguments.
#[derive(Debug, Args)]
pub struct TuneBenchArgs {
    /// A trace to tune on, as `prescale simulate --trace` reads it. Absent: the
    /// synthetic service of `prescale bench simulate`, `--days` days at 5-minute steps.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Days of the synthetic trace (the daemon's `tune_days` is 7 by default).
    #[arg(long, default_value_t = 7)]
    pub days: usize,
    /// Seconds a step of the synthetic trace (a divisor of 300: the service's
    /// five-minute points drawn straight between), as the workload's `step_s`: the
    /// host's defaults step every minute.
    #[arg(long, default_value_t = 300, conflicts_with = "trace")]
    pub step_s: u32,
    /// Tunings timed; the median is reported.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// The scenario (absent: `prescale simulate --example-scenario`'s), whose
    /// workload's safeguards are turned.
    #[arg(long)]
    pub scenario: Option<PathBuf>,
}

/// `prescale bench control` arguments.
#[derive(Debug, Args)]
pub struct ControlBenchArgs {
    /// Workloads managed, each with a demand series of its own.
    #[arg(long, default_value_t = 100)]
    pub workloads: usize,
    /// Hours of one-minute history each demand has before the first pass.
    #[arg(long, default_value_t = 24)]
    pub hours: usize,
    /// Passes timed after the first (which reads every history), 15 s apart, each
    /// after a new sample of every demand every minute.
    #[arg(long, default_value_t = 40)]
    pub passes: usize,
    /// A fleet budget over all of them, $/h (absent: none).
    #[arg(long)]
    pub fleet_budget: Option<f64>,
    /// Other series in the store, as scraped exporters' would be (node_exporter has
    /// several hundred a host), which no workload's demand selects.
    #[arg(long, default_value_t = 10_000)]
    pub other_series: usize,
}

/// `prescale bench query` arguments.
#[derive(Debug, Args)]
pub struct QueryBenchArgs {
    /// Distinct series (`bench_value{job="bench", instance="host-N"}`, and a counter
    /// `bench_requests_total` of each).
    #[arg(long, default_value_t = 100)]
    pub series: usize,
    /// Days of 15-second samples per series.
    #[arg(long, default_value_t = 2.0)]
    pub days: f64,
    /// Times each query is asked; the median and the slowest are reported.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
}

/// `prescale bench simulate` arguments.
#[derive(Debug, Args)]
pub struct SimulateBenchArgs {
    /// A trace to replay, as `prescale simulate --trace` reads it. Absent: a synthetic
    /// service of `--days` days at 5-minute steps (a daily cycle from 30 to 180 vCPU,
    /// quieter at weekends, with 5% noise), the same every run.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Days of the synthetic trace.
    #[arg(long, default_value_t = 30)]
    pub days: usize,
    /// Replays timed; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The scenario (absent: `prescale simulate --example-scenario`'s).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
}

/// The payload format sent.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Wire {
    /// Prometheus remote_write 1.0.
    RemoteWrite,
    /// Prometheus remote write 2.0 (interned strings).
    #[value(name = "remote-write-2")]
    RemoteWrite2,
    /// InfluxDB line protocol.
    Influx,
}

/// `prescale bench ingest` arguments.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Distinct series.
    #[arg(long, default_value_t = 1000)]
    pub series: usize,
    /// Samples sent per series.
    #[arg(long, default_value_t = 200)]
    pub samples: usize,
    /// Samples per request (Prometheus sends up to 2000).
    #[arg(long, default_value_t = 2000)]
    pub batch: usize,
    /// Concurrent senders (Prometheus' remote_write shards).
    #[arg(long, default_value_t = 1)]
    pub senders: usize,
    /// The payload format.
    #[arg(long, value_enum, default_value_t = Wire::RemoteWrite)]
    pub wire: Wire,
}

/// The API server on a loopback port over `store` (with the default configuration),
/// on its own runtime, for a benchmark to send requests to.
struct Served {
    addr: SocketAddr,
    /// Its anomaly watch, which judges what was stored off the requests' path.
    watch: prescale_server::anomalies::Anomalies,
    rt: tokio::runtime::Runtime,
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    fn start(store: &Store) -> Result<Self, String> {
        let state = prescale_server::AppState::new(
            &Config::default(),
            store.clone(),
            Arc::new(RwLock::new(Default::default())),
        )?;
        let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watch = state.anomalies.clone();
        let handle = rt.spawn(prescale_server::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            watch,
            rt,
            stop,
            handle,
        })
    }

    /// Stops serving and waits until it has, and until what was stored is judged.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.rt.block_on(self.handle);
        self.watch.flush(Duration::from_secs(600));
    }
}

/// Runs a benchmark.
pub fn run(cmd: BenchCmd) -> Result<(), String> {
    match cmd {
        BenchCmd::Ingest(a) => ingest(a),
        BenchCmd::Simulate(a) => simulate(a),
        BenchCmd::Query(a) => query(a),
        BenchCmd::Control(a) => control(a),
        BenchCmd::Tune(a) => tune(a),
    }
}

/// A benchmark workload's demand at minute `m`: a daily cycle of its own size and
/// phase, with a little noise, the same every run.
fn bench_demand(k: usize, m: i64) -> f64 {
    let size = 4.0 + (k % 17) as f64 * 3.0;
    let phase = (k % 24) as f64 / 24.0;
    let day = (m as f64 / 1440.0 + phase) * std::f64::consts::TAU;
    let noise = ((k as i64 * 7919 + m * 104_729) % 1000) as f64 / 1000.0 - 0.5;
    size * (1.0 + 0.5 * day.sin()) * (1.0 + 0.05 * noise)
}

fn control(a: ControlBenchArgs) -> Result<(), String> {
    use prescale_orchestrate::{Engine, SimCloud};
    if a.workloads == 0 || a.hours == 0 || a.passes == 0 {
        return Err("--workloads, --hours and --passes must be at least 1".into());
    }
    if a.fleet_budget.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
        return Err("--fleet-budget must be zero or positive (dollars an hour)".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(dir.path(), Durability::Sync).map_err(|e| e.to_string())?;
    // The default configuration's tiers (every workload sharing their pools) and
    // workload, once per demand, on the fast inline baseline model: the daemon selects
    // and trains models in the background, off the pass.
    let mut c = Config::default();
    c.fleet.budget_per_hour = a.fleet_budget;
    for t in &mut c.tiers {
        t.max_instances = t.max_instances.max(20 * a.workloads as u32);
    }
    let base = c.workloads[0].clone();
    let keys: Vec<SeriesKey> = (0..a.workloads)
        .map(|k| {
            SeriesKey::metric("bench_cpu")
                .expect("static name")
                .with_label("workload", format!("w{k:04}"))
        })
        .collect();
    c.workloads = keys
        .iter()
        .enumerate()
        .map(|(k, key)| {
            let mut w = base.clone();
            w.name = format!("w{k:04}");
            w.demand = key.to_string();
            w.model = "baseline".into();
            w.priority = (k % 3) as i32;
            w
        })
        .collect();
    let minutes = (a.hours * 60) as i64;
    let bar = crate::progress_bar(
        a.workloads as u64,
        "{spinner} storing history [{bar:30}] {pos}/{len} workloads",
    );
    for (k, key) in keys.iter().enumerate() {
        let samples: Vec<Sample> = (0..minutes)
            .map(|m| Sample::new(m * 60_000, bench_demand(k, m)).expect("finite"))
            .collect();
        store.append(key, &samples).map_err(|e| e.to_string())?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    // The exporters' series, one sample each, in batches.
    let others: Vec<(SeriesKey, Vec<Sample>)> = (0..a.other_series)
        .map(|n| {
            let key = SeriesKey::metric(format!("node_metric_{}", n % 400))
                .expect("a valid name")
                .with_label("instance", format!("host-{:03}:9100", n / 400));
            (key, vec![Sample::new(0, n as f64).expect("finite")])
        })
        .collect();
    for batch in others.chunks(2_000) {
        store.append_many(batch).map_err(|e| e.to_string())?;
    }
    let sim = SimCloud::new(&c.tiers, 1);
    let mut engine = Engine::from_config(&c, 0, store.clone(), sim);
    engine.set_inline_training();
    let start = minutes * 60_000;
    let started = Instant::now();
    engine.tick(start).map_err(|e| e.to_string())?;
    let first = started.elapsed().as_secs_f64() * 1000.0;
    let bar = crate::progress_bar(
        a.passes as u64,
        "{spinner} control passes [{bar:30}] {pos}/{len}",
    );
    let mut ms = Vec::with_capacity(a.passes);
    for p in 1..=a.passes as i64 {
        let now = start + p * 15_000;
        // A new sample of every demand each minute, as collected.
        if now % 60_000 == 0 {
            let m = now / 60_000;
            let batch: Vec<(SeriesKey, Vec<Sample>)> = keys
                .iter()
                .enumerate()
                .map(|(k, key)| {
                    let s = Sample::new(now, bench_demand(k, m)).expect("finite");
                    (key.clone(), vec![s])
                })
                .collect();
            store.append_many(&batch).map_err(|e| e.to_string())?;
        }
        let started = Instant::now();
        engine.tick(now).map_err(|e| e.to_string())?;
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let slowest = sorted[sorted.len() - 1];
    let status = engine.status_handle();
    let st = status.read().expect("status lock");
    let errors: usize = st
        .workloads
        .values()
        .filter(|w| w.last_error.is_some())
        .count();
    println!(
        "control pass over {} workload(s) sharing {} tier pool(s){}, {} h of history each, {} other series stored: first pass {first:.0} ms (reads every history), then {median:.1} ms median, {slowest:.1} ms slowest over {} pass(es) 15 s apart ({:.0} µs a workload); {} action(s), fleet ${:.2}/h; {errors} workload(s) with an error",
        a.workloads,
        c.tiers.len(),
        match a.fleet_budget {
            Some(b) => format!(" under a ${b:.2}/h fleet budget"),
            None => String::new(),
        },
        a.hours,
        a.other_series,
        a.passes,
        median * 1000.0 / a.workloads as f64,
        st.actions,
        st.fleet.cost_per_hour,
    );
    Ok(())
}

/// The queries `bench query` times: `(what, path)`, `{N}` a series, `{START}`,
/// `{END}` and `{DAY}` the stored range's bounds and a day before its end.
const BENCH_QUERIES: [(&str, &str); 11] = [
    ("one series, now", "/api/v1/query?query=bench_value{instance=\"host-00001\"}&time={END}"),
    ("one series, a day every minute", "/api/v1/query_range?query=bench_value{instance=\"host-00001\"}&start={DAY}&end={END}&step=60"),
    ("the mean of all, a day every minute", "/api/v1/query_range?query=avg by (job) (bench_value)&start={DAY}&end={END}&step=60"),
    ("every series' 5-minute mean, a day every 5 minutes", "/api/v1/query_range?query=avg_over_time(bench_value[5m])&start={DAY}&end={END}&step=300"),
    ("summed rate of all counters, a day every minute", "/api/v1/query_range?query=sum(rate(bench_requests_total[5m]))&start={DAY}&end={END}&step=60"),
    ("top 5 by rate, the whole range every 10 minutes", "/api/v1/query_range?query=topk(5, rate(bench_requests_total[5m]))&start={START}&end={END}&step=600"),
    ("hourly peak of the mean (subquery), a day every 5 minutes", "/api/v1/query_range?query=max_over_time(avg(bench_value)[1h:1m])&start={DAY}&end={END}&step=300"),
    ("series by match[]", "/api/v1/series?match[]=bench_value&start={DAY}&end={END}"),
    ("label values", "/api/v1/label/instance/values"),
    ("the dashboard's anomaly events, the whole range", "/api/v1/anomalies?start={START}&end={END}&group=events&limit=20"),
    ("a day's anomalies, each with the hour before it", "/api/v1/anomalies?start={DAY}&end={END}&limit=1000"),
];

/// Anomalies found in each gauge every two hours (offset a minute a series), saved as the
/// watch saves them, for the anomaly queries to list.
const BENCH_ANOMALY_EVERY_MS: i64 = 7_200_000;

/// `prescale bench query`.
fn query(a: QueryBenchArgs) -> Result<(), String> {
    if a.series == 0 || a.runs == 0 || a.days.is_nan() || a.days <= 0.0 {
        return Err("--series and --runs must be at least 1, --days more than 0".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(dir.path(), Durability::Buffered).map_err(|e| e.to_string())?;
    let step_ms = 15_000i64;
    let steps = (a.days * 86_400_000.0 / step_ms as f64) as i64;
    let start_ms = 1_767_571_200_000i64;
    let end_ms = start_ms + (steps - 1) * step_ms;
    let bar = crate::progress_bar(
        a.series as u64,
        "{spinner} storing [{bar:30}] {pos}/{len} series",
    );
    let mut keys = Vec::new();
    for i in 0..a.series {
        let key = |name: &str| {
            SeriesKey::metric(name)
                .expect("static name")
                .with_label("instance", format!("host-{i:05}"))
                .with_label("job", "bench")
        };
        let gauge: Vec<Sample> = (0..steps)
            .map(|n| Sample {
                ts: start_ms + n * step_ms,
                value: 50.0 + 15.0 * (n as f64 / 240.0 + i as f64).sin(),
            })
            .collect();
        let mut total = 0.0;
        let counter: Vec<Sample> = (0..steps)
            .map(|n| {
                total += 15.0 * (10.0 + (i % 7) as f64 + 3.0 * (n as f64 / 100.0).sin());
                Sample {
                    ts: start_ms + n * step_ms,
                    value: total.round(),
                }
            })
            .collect();
        let (score, value) = prescale_server::anomalies::finding_keys(&key("bench_value"));
        let found: Vec<i64> = (0..)
            .map(|k| start_ms + (i as i64 % 120) * 60_000 + k * BENCH_ANOMALY_EVERY_MS)
            .take_while(|&t| t <= end_ms)
            .collect();
        let at =
            |v: f64| -> Vec<Sample> { found.iter().map(|&ts| Sample { ts, value: v }).collect() };
        store
            .append_many(&[(score, at(0.6)), (value, at(99.0))])
            .map_err(|e| e.to_string())?;
        let batch = [
            (key("bench_value"), gauge),
            (key("bench_requests_total"), counter),
        ];
        store.append_many(&batch).map_err(|e| e.to_string())?;
        // All but the last hour into compressed chunks, as the daemon keeps them.
        for (k, _) in &batch {
            store
                .compress_before(k, end_ms - 3_600_000)
                .map_err(|e| e.to_string())?;
        }
        keys.extend(batch.into_iter().map(|(k, _)| k));
        bar.inc(1);
    }
    bar.finish_and_clear();
    store.settle().map_err(|e| e.to_string())?;

    let server = Served::start(&store)?;
    let addr = server.addr;
    let agent = prescale_collect::http::agent(
        Duration::from_secs(120),
        prescale_collect::http::TlsFiles::default(),
    )?;
    let secs = |ms: i64| (ms / 1000).to_string();
    println!(
        "query API over {} series ({} gauges and {} counters) of {:.1} days at 15 s ({} samples), all but the last hour in compressed chunks; {} runs each:",
        keys.len(),
        a.series,
        a.series,
        a.days,
        keys.len() as i64 * steps,
        a.runs
    );
    let mut result = Ok(());
    for (what, path) in BENCH_QUERIES {
        let path = path
            .replace("{START}", &secs(start_ms))
            .replace("{END}", &secs(end_ms))
            .replace("{DAY}", &secs((end_ms - 86_400_000).max(start_ms)));
        let path: String = path
            .chars()
            .map(|c| match c {
                ' ' => "%20".to_string(),
                '"' => "%22".to_string(),
                '{' => "%7B".to_string(),
                '}' => "%7D".to_string(),
                '[' => "%5B".to_string(),
                ']' => "%5D".to_string(),
                c => c.to_string(),
            })
            .collect();
        let mut took = Vec::with_capacity(a.runs);
        let mut size = 0;
        for _ in 0..a.runs {
            let t = Instant::now();
            let mut resp = match agent.get(format!("http://{addr}{path}")).call() {
                Ok(r) => r,
                Err(e) => {
                    result = Err(format!("{what}: {e}"));
                    break;
                }
            };
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_string()
                .map_err(|e| e.to_string())?;
            took.push(t.elapsed().as_secs_f64() * 1e3);
            size = body.len();
            // A fast empty answer measures nothing: each must hold what it asked for.
            let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            let data = &v["data"];
            let empty = ["result", "anomalies", "events"]
                .iter()
                .find_map(|k| data.get(k))
                .unwrap_or(data)
                .as_array()
                .is_none_or(Vec::is_empty);
            if empty {
                result = Err(format!("{what}: an empty answer: {body}"));
                break;
            }
        }
        if result.is_err() {
            break;
        }
        took.sort_by(f64::total_cmp);
        println!(
            "  {what}: median {:.1} ms, slowest {:.1} ms ({:.1} kB answer)",
            took[took.len() / 2],
            took[took.len() - 1],
            size as f64 / 1e3
        );
    }
    server.stop();
    result
}

/// What `prescale bench simulate` and `bench tune` replay: the scenario (the example's
/// when none is given), and the trace (a synthetic service of `days` days when none
/// is given) with its name in words; `runs` checked.
fn bench_inputs(
    scenario: &Option<PathBuf>,
    trace: &Option<PathBuf>,
    days: usize,
    runs: usize,
) -> Result<(Scenario, Trace, String), String> {
    use prescale_orchestrate::simulate::EXAMPLE_SCENARIO;
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let scenario = match scenario {
        Some(p) => {
            let src = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
            Scenario::parse(&src, &p.display().to_string())?
        }
        None => Scenario::parse(EXAMPLE_SCENARIO, "the example scenario")?,
    };
    let (trace, what) = match trace {
        Some(p) => (
            crate::simulate_cmd::load_trace(p)?.0,
            p.display().to_string(),
        ),
        None => {
            if days == 0 {
                return Err("--days must be at least 1".into());
            }
            (
                prescale_orchestrate::simulate::synthetic_service(days, 0.05, false),
                format!("a synthetic {days}-day service"),
            )
        }
    };
    Ok((scenario, trace, what))
}

/// The median of `secs` and each, in words: `M s median of N run(s) (A, B s)`.
fn median_words(secs: &[f64]) -> (f64, String) {
    let mut sorted = secs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let each: Vec<String> = secs.iter().map(|s| format!("{s:.2}")).collect();
    (
        median,
        format!(
            "{median:.2} s median of {} run(s) ({} s)",
            secs.len(),
            each.join(", ")
        ),
    )
}

/// `prescale bench tune`: a tuning as the daemon's daily one runs it (the workload's
/// own settings and each safeguard turned the other way, one replay after another,
/// then each half where a run dominates), timed.
fn tune(a: TuneBenchArgs) -> Result<(), String> {
    use prescale_orchestrate::simulate::Policy;
    use prescale_orchestrate::tune;
    if a.step_s == 0 || 300 % a.step_s != 0 {
        return Err(format!(
            "--step-s {}: a step must divide five minutes (300 s): 60, 100, 150 or 300, say",
            a.step_s
        ));
    }
    let (scenario, trace, what) = bench_inputs(&a.scenario, &a.trace, a.days, a.runs)?;
    // A given trace keeps its steps: clap refuses `--step-s` beside `--trace`.
    let (trace, what) = if a.step_s == 300 {
        (trace, what)
    } else {
        (
            finer(trace, a.step_s),
            format!("{what} at {}-s steps", a.step_s),
        )
    };
    let steps = trace.cpu.len();
    let days = steps as f64 * trace.step_ms as f64 / 86_400_000.0;
    let flips = tune::safeguard_flips(&scenario.workload);
    let bar = crate::progress_bar(0, "{spinner} tuning: {pos} replay(s) done");
    let (whole, halves) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let run = |t: &Trace, seed: u64, jobs: &[(&Scenario, Policy)]| {
        let counted = if t.ts.len() == steps { &whole } else { &halves };
        counted.set(counted.get() + jobs.len());
        let mut reports = Vec::with_capacity(jobs.len());
        for (s, policy) in jobs {
            let simulate = prescale_orchestrate::simulate::simulate;
            reports.push(simulate(t, s, *policy, seed, None, |_, _| {})?);
            bar.inc(1);
        }
        Ok(reports)
    };
    let mut secs = Vec::with_capacity(a.runs);
    let mut found = None;
    for _ in 0..a.runs {
        whole.set(0);
        halves.set(0);
        let started = Instant::now();
        found = Some(tune::tune(&trace, &scenario, 1, &flips, &run)?);
        secs.push(started.elapsed().as_secs_f64());
    }
    bar.finish_and_clear();
    let (_, timed) = median_words(&secs);
    let found = found.expect("at least one run");
    let advice = match &found.advice {
        Some(v) => format!(
            "advice: {} (on each half too: {})",
            v.sentence(found.own.underprovisioned_minutes),
            if v.holds_on_each_half { "yes" } else { "no" }
        ),
        None => "no run dominates the own settings".to_string(),
    };
    println!(
        "tuning on {what}: {steps} steps ({days:.1} days): {timed}; each {} replays of the whole trace and {} of half of it; {advice}",
        whole.get(),
        halves.get(),
    );
    Ok(())
}

/// A trace of one dimension at steps of `step_s` (dividing its own), each value drawn
/// straight between its own steps' (the last held); as it is at its own step.
fn finer(trace: Trace, step_s: u32) -> Trace {
    let step_ms = i64::from(step_s) * 1000;
    if step_ms >= trace.step_ms || trace.cpu.is_empty() {
        return trace;
    }
    let k = (trace.step_ms / step_ms) as usize;
    let n = trace.cpu.len();
    let (ts, cpu) = (0..n * k)
        .map(|i| {
            let (j, f) = (i / k, (i % k) as f64 / k as f64);
            let next = trace.cpu[(j + 1).min(n - 1)];
            (
                trace.ts[0] + i as i64 * step_ms,
                trace.cpu[j] * (1.0 - f) + next * f,
            )
        })
        .unzip();
    Trace {
        ts,
        cpu,
        step_ms,
        ..trace
    }
}

/// `prescale bench simulate`.
fn simulate(a: SimulateBenchArgs) -> Result<(), String> {
    use prescale_orchestrate::simulate::Policy;
    let (scenario, trace, what) = bench_inputs(&a.scenario, &a.trace, a.days, a.runs)?;
    let steps = trace.cpu.len();
    let days = steps as f64 * trace.step_ms as f64 / 86_400_000.0;
    let mut secs = Vec::with_capacity(a.runs);
    let mut fits = 0;
    for i in 0..a.runs {
        let bar = crate::progress_bar(
            steps as u64,
            &format!(
                "{{spinner}} replay {}/{} [{{bar:30}}] {{pos}}/{{len}} steps",
                i + 1,
                a.runs
            ),
        );
        let started = Instant::now();
        let report = prescale_orchestrate::simulate::simulate(
            &trace,
            &scenario,
            Policy::Predictive,
            1,
            None,
            |done, _| bar.set_position(done as u64),
        )?;
        secs.push(started.elapsed().as_secs_f64());
        bar.finish_and_clear();
        fits = report.forecaster_fits;
    }
    let (median, timed) = median_words(&secs);
    println!(
        "predictive replay of {what}: {steps} steps ({days:.1} days, {} dimension(s)): {timed}; {:.0} steps/s; {fits} forecaster fits and selections",
        trace.dims().len(),
        steps as f64 / median,
    );
    Ok(())
}

fn ingest(a: IngestArgs) -> Result<(), String> {
    if a.series == 0 || a.samples == 0 || a.batch == 0 || a.senders == 0 {
        return Err("--series, --samples, --batch and --senders must be at least 1".into());
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(dir.path(), Durability::Sync).map_err(|e| e.to_string())?;
    let server = Served::start(&store)?;
    let addr = server.addr;

    // Every sender gets every batch-th request; each series' timestamps rise by 15 s.
    let keys: Vec<SeriesKey> = (0..a.series)
        .map(|i| {
            SeriesKey::metric("bench_value")
                .expect("static name")
                .with_label("instance", format!("host-{:05}", i))
                .with_label("job", "bench")
        })
        .collect();
    let total = a.series * a.samples;
    let requests = total.div_ceil(a.batch);
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} samples {per_sec}")
            .expect("valid template"),
    );
    let start = Instant::now();
    let latencies: Vec<Result<Vec<Duration>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.senders)
            .map(|sender| {
                let (keys, bar) = (&keys, &bar);
                let a = &a;
                s.spawn(move || send(addr, a, keys, sender, requests, bar))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a sender panicked".into())))
            .collect()
    });
    let took = start.elapsed();
    bar.finish_and_clear();
    server.stop();
    let mut lat: Vec<Duration> = Vec::new();
    for l in latencies {
        lat.extend(l?);
    }
    lat.sort();
    let stored = store.appended_total() as usize;
    if stored != total {
        return Err(format!("sent {total} samples but the store took {stored}"));
    }
    // On disk as received (journal and tables), then once the samples are tables as a
    // long-running store's are, then once they are compressed chunks (as the daemon's
    // are after an hour).
    let bytes = store.disk_bytes();
    // A restart: the store opened again replays what its journal holds beyond its
    // tables (what the daemon waits for before it serves).
    drop(store);
    let t = Instant::now();
    let store = Store::open(dir.path(), Durability::Sync).map_err(|e| e.to_string())?;
    let reopen_s = t.elapsed().as_secs_f64();
    store.settle().map_err(|e| e.to_string())?;
    let table_bytes = store.samples_disk_bytes();
    let t = Instant::now();
    let mut compressed = 0;
    for key in &keys {
        compressed += store
            .compress_before(key, i64::MAX)
            .map_err(|e| e.to_string())?;
    }
    let compress_s = t.elapsed().as_secs_f64();
    store.settle().map_err(|e| e.to_string())?;
    let chunk_bytes = store.samples_disk_bytes();
    // A sender resending what was stored long ago (a Prometheus pair's second replica,
    // a retry after an outage): every sample again, each found in a compressed chunk.
    let mut again = Vec::with_capacity(keys.len());
    for key in &keys {
        let samples = store
            .range(key, i64::MIN, i64::MAX)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        again.push((key, samples));
    }
    let t = Instant::now();
    let mut duplicates = 0;
    for (key, samples) in &again {
        for batch in samples.chunks(a.batch) {
            duplicates += store
                .append(key, batch)
                .map_err(|e| e.to_string())?
                .duplicates;
        }
    }
    let resend_s = t.elapsed().as_secs_f64();
    if duplicates != total {
        return Err(format!(
            "resent {total} samples, and the store found {duplicates} of them already stored"
        ));
    }
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{} {total} samples ({} series x {}) in {} requests of up to {} from {} sender(s): {:.2} s, {:.0} samples/s; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (store synced before each answer)",
        match a.wire {
            Wire::RemoteWrite => "remote_write",
            Wire::RemoteWrite2 => "remote write 2.0",
            Wire::Influx => "line protocol",
        },
        a.series,
        a.samples,
        lat.len(),
        a.batch,
        a.senders,
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        q(0.5),
        q(0.99),
        q(1.0),
    );
    if compressed != total {
        return Err(format!("compressed {compressed} of {total} samples"));
    }
    println!(
        "on disk: {:.1} bytes per sample as received (journal and tables, {:.1} MB); {:.1} bytes per sample once in compacted tables ({:.1} MB); {:.2} bytes per sample once compressed into chunks ({:.2} MB, {:.0} samples/s compressed)",
        bytes as f64 / total as f64,
        bytes as f64 / 1e6,
        table_bytes as f64 / total as f64,
        table_bytes as f64 / 1e6,
        chunk_bytes as f64 / total as f64,
        chunk_bytes as f64 / 1e6,
        total as f64 / compress_s,
    );
    println!(
        "resent whole once compressed, in batches of {} straight to the store: {:.2} s, {:.0} samples/s found already stored",
        a.batch,
        resend_s,
        total as f64 / resend_s
    );
    println!("reopened (a restart: the journal replayed) in {reopen_s:.2} s");
    if let Some(bytes) = prescale_server::process::status_bytes("VmHWM:") {
        println!(
            "memory: {:.0} MB at most resident (senders, server and store in one process; the store holds up to {} MiB of new samples before writing a table)",
            bytes / (1024.0 * 1024.0),
            prescale_store::SAMPLES_MEMTABLE_BYTES >> 20,
        );
    }
    Ok(())
}

/// Sends requests `sender`, `sender + senders`, ... of the run; returns their latencies.
fn send(
    addr: SocketAddr,
    a: &IngestArgs,
    keys: &[SeriesKey],
    sender: usize,
    requests: usize,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Duration>, String> {
    let agent = prescale_collect::http::agent(
        Duration::from_secs(60),
        prescale_collect::http::TlsFiles::default(),
    )?;
    let total = keys.len() * a.samples;
    let mut out = Vec::new();
    for r in (sender..requests).step_by(a.senders) {
        // Request r carries samples [r * batch, ...) of the run, series fastest.
        let (lo, hi) = (r * a.batch, ((r + 1) * a.batch).min(total));
        let mut by_key: Vec<(SeriesKey, Vec<Sample>)> = Vec::new();
        let mut lines = String::new();
        for n in lo..hi {
            let (k, step) = (n % keys.len(), n / keys.len());
            let ts = 1_767_571_200_000 + step as i64 * 15_000;
            // A utilisation gauge in percent to one decimal, as exporters report it: a
            // slow swing per series plus step-to-step jitter of up to +-2.
            let jitter = ((n * 7919) % 41) as f64 / 10.0 - 2.0;
            let swing = 15.0 * (step as f64 / 120.0 + k as f64).sin();
            let value = ((50.0 + swing + jitter) * 10.0).round() / 10.0;
            match a.wire {
                Wire::RemoteWrite | Wire::RemoteWrite2 => match by_key.last_mut() {
                    Some((key, v)) if *key == keys[k] => v.push(Sample { ts, value }),
                    _ => by_key.push((keys[k].clone(), vec![Sample { ts, value }])),
                },
                Wire::Influx => lines.push_str(&format!(
                    "bench,instance=host-{k:05},job=bench value={value} {ts}\n"
                )),
            }
        }
        let body = match a.wire {
            Wire::RemoteWrite => prescale_collect::receive::encode_remote_write(&by_key),
            Wire::RemoteWrite2 => prescale_collect::receive::encode_remote_write_v2(&by_key),
            Wire::Influx => lines.into_bytes(),
        };
        let t = Instant::now();
        let resp = match a.wire {
            Wire::RemoteWrite | Wire::RemoteWrite2 => agent
                .post(format!("http://{addr}/api/v1/write"))
                .header("Content-Encoding", "snappy")
                .header(
                    "Content-Type",
                    if matches!(a.wire, Wire::RemoteWrite2) {
                        "application/x-protobuf;proto=io.prometheus.write.v2.Request"
                    } else {
                        "application/x-protobuf"
                    },
                )
                .send(&body[..]),
            Wire::Influx => agent
                .post(format!("http://{addr}/api/v2/write?precision=ms"))
                .send(&body[..]),
        };
        let mut resp = resp.map_err(|e| format!("request {r}: {e}"))?;
        if resp.status() != 204 {
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(format!("request {r}: HTTP {}: {body}", resp.status()));
        }
        out.push(t.elapsed());
        bar.inc((hi - lo) as u64);
    }
    Ok(out)
}
