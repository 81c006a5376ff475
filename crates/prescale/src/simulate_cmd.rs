//! `prescale simulate`: replay a demand trace under a policy and report it in dollars.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use crate::svg::{grid_line, linear_ticks, path_through, tick_label, time_axis};
use prescale_core::Dim;
use prescale_orchestrate::simulate::{
    reactive_matching, simulate, Matched, Policy, Report, Scenario, TimelineRow, Trace,
    EXAMPLE_SCENARIO, MATCH_LOWEST_TARGET,
};
use prescale_orchestrate::tune;
use prescale_orchestrate::tune::{
    dominated, halves_words, on_each_half, settings_name, settings_toml,
};
pub(crate) use prescale_orchestrate::tune::{Form, Settings};

/// Arguments of `prescale simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// CSV demand trace: a `timestamp` column (unix seconds or RFC 3339), a `cpu`
    /// column in vCPU, and optionally `memory` (GiB), `disk_iops` and `network_mbps`;
    /// `actual_cpu`, `actual_memory`, ... say what the service had (`as-run` prices it).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["example_scenario", "prometheus", "fleet_trace"]
    )]
    pub trace: Option<PathBuf>,
    /// Scenario TOML: tier catalog, SLA, budget, policy settings
    /// (`--example-scenario` prints a complete one).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present_any = ["example_scenario", "config"]
    )]
    pub scenario: Option<PathBuf>,
    /// Instead of a scenario, prescale's own configuration file: its tiers and one of
    /// its workloads (SLA, budgets, class, model), as the daemon would run them.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    pub config: Option<PathBuf>,
    /// With `--config`: the workload to simulate (needed when it has several).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub workload: Option<String>,
    /// With `--config`: replay several of its workloads together through the daemon's
    /// engine, NAME=FILE for each (the workload, and its trace as `--trace` takes it),
    /// so the tiers' maxima shared by every workload, claims by priority and the
    /// `[fleet]` budget are counted; each is set against HPA alone on its trace.
    #[arg(
        long = "fleet-trace",
        value_name = "NAME=FILE",
        requires = "config",
        conflicts_with_all = ["trace", "workload"]
    )]
    pub fleet_trace: Vec<String>,
    /// With `--config` and `--prometheus`: as `--fleet-trace`, the workload's CPU demand
    /// in vCPU read from the query API as NAME=PROMQL (one series: aggregate it), over
    /// `--start` to `--end` at `--step`; NAME.memory=PROMQL (GiB), NAME.disk_iops=PROMQL
    /// or NAME.network_mbps=PROMQL adds another of its dimensions. `--save-trace DIR`
    /// keeps each workload's as DIR/NAME.csv.
    #[arg(
        long = "fleet-query",
        value_name = "NAME=PROMQL",
        requires_all = ["config", "prometheus"],
        conflicts_with_all = ["trace", "workload", "cpu", "memory", "disk_iops", "network_mbps"]
    )]
    pub fleet_query: Vec<String>,
    /// With `--fleet-trace`: seconds between the engine's passes (the configuration's
    /// `control.interval_s` by default; longer replays faster and coarser).
    #[arg(long, value_name = "SECONDS")]
    pub pass_s: Option<u64>,
    /// predictive, spec-baseline, reactive, static or oracle; or `all`: every policy on
    /// the same trace and seed, compared side by side.
    #[arg(long, default_value = "predictive")]
    pub policy: String,
    /// Write one CSV row per step: demand, ready capacity and instances per tier, cost.
    #[arg(long, value_name = "OUT.csv")]
    pub timeline: Option<PathBuf>,
    /// Write an HTML page with charts of demand, the forecast band and capacity by tier;
    /// with `--policy all`, a comparison of the policies: cost against minutes short
    /// (HPA at every target tried, and predictive at SLA quantiles 0.8, 0.9 and 0.99,
    /// too) and cost over time.
    #[arg(long, value_name = "OUT.html")]
    pub report: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SimFormat::Table)]
    pub format: SimFormat,
    /// Seed of lead times and spot interruptions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replay the policy once for each value of one of the workload's settings,
    /// KEY=V1,V2,... (e.g. `scale_down_window_s=0,3600,7200` or
    /// `sla_quantile=0.9,0.95,0.99`; `forecast.KEY`, `reactive.KEY` or `control.KEY`
    /// for the scenario's other tables), after the oracle and HPA as the scenario has
    /// them, on the same trace and seed: what each value would have cost and how short
    /// it would have fallen. Given more than once, each setting is swept alone, the
    /// others as the scenario has them (`--sweep scale_down_window_s=0 --sweep
    /// seasonal_floor=false`: what each safeguard buys), or with `--grid` together, at
    /// every combination of their values. With `--report`, a page charting each run
    /// against HPA at every target down to the least short run's shortfall.
    #[arg(
        long,
        value_name = "KEY=V1,V2,...",
        conflicts_with_all = ["timeline", "fleet_trace", "fleet_query"]
    )]
    pub sweep: Vec<String>,
    /// With `--sweep` given more than once: replay every combination of the settings'
    /// values (at most 100 runs) rather than each setting alone, for the
    /// settings whose effects overlap (the scale-down window and delay each hold
    /// capacity after a peak: what do both off cost?).
    #[arg(long, requires = "sweep")]
    pub grid: bool,
    /// Print a complete, commented example scenario and exit.
    #[arg(long)]
    pub example_scenario: bool,
    /// Or the trace read from a Prometheus-compatible query API.
    #[command(flatten)]
    pub prometheus: crate::prom_trace::PromArgs,
}

/// Report format.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SimFormat {
    /// Aligned text.
    Table,
    /// One JSON object.
    Json,
}

/// The most runs `--grid` replays: each is a whole replay of the trace.
pub const GRID_MOST: usize = 100;

/// The SLA quantiles the comparison page also runs predictive at (the scenario's own is
/// skipped: it is the predictive run).
const COMPARED_QUANTILES: [f64; 3] = [0.8, 0.9, 0.99];

/// What trace columns holding what the service actually had (what `as-run` prices)
/// begin with: `actual_cpu` in vCPU, `actual_memory` in GiB, and so on.
pub(crate) const ACTUAL_PREFIX: &str = "actual_";

/// The trace column holding what the service had of `d`.
pub(crate) fn actual_column(d: Dim) -> String {
    format!("{ACTUAL_PREFIX}{}", d.name())
}

/// The trace in `trace_path`, checked (warnings go to stderr), and whether its
/// timestamps are RFC 3339.
pub(crate) fn load_trace(trace_path: &Path) -> Result<(Trace, bool), String> {
    let header = std::fs::read_to_string(trace_path)
        .map_err(|e| format!("{}: cannot read: {e}", trace_path.display()))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let mut others = Vec::new();
    let mut had = Vec::new();
    for col in header
        .split(',')
        .map(|c| crate::input::unquote(c).to_ascii_lowercase())
    {
        if let Some(d) = col.strip_prefix(ACTUAL_PREFIX).and_then(Dim::parse) {
            had.push(d);
            continue;
        }
        match Dim::parse(&col) {
            Some(Dim::Cpu) => {}
            Some(d) => others.push(d),
            None if col.is_empty() || col == "timestamp" => {}
            None => eprintln!(
                "warning: {}: column {col:?} ignored: the dimensions are cpu, memory, disk_iops and network_mbps (and {ACTUAL_PREFIX}cpu, {ACTUAL_PREFIX}memory, ...: what the service had of each)",
                trace_path.display()
            ),
        }
    }
    let series = crate::input::read_csv_column(trace_path, "cpu")?;
    for w in &series.warnings {
        eprintln!("warning: {}: {w}", trace_path.display());
    }
    non_negative(trace_path, "demand", Dim::Cpu.name(), &series)?;
    let mut other_series = Vec::new();
    for d in others {
        let s = crate::input::read_csv_column(trace_path, d.name())?;
        if s.ts != series.ts {
            return Err(format!(
                "{}: the {} column covers other steps than cpu (fill empty cells or drop the column)",
                trace_path.display(),
                d.name()
            ));
        }
        non_negative(trace_path, "demand", d.name(), &s)?;
        other_series.push((d, s.values));
    }
    let mut actual = Vec::new();
    for d in had {
        let col = actual_column(d);
        let s = crate::input::read_csv_column(trace_path, &col)?;
        if s.ts != series.ts {
            return Err(format!(
                "{}: the {col} column covers other steps than cpu (fill empty cells or drop the column)",
                trace_path.display()
            ));
        }
        non_negative(trace_path, "capacity", &col, &s)?;
        actual.push((d, s.values));
    }
    let trace = Trace {
        ts: series.ts.iter().map(|t| t * 1000).collect(),
        cpu: series.values.clone(),
        others: other_series,
        actual,
        step_ms: series.step * 1000,
    };
    Ok((trace, series.rfc3339))
}

/// How far beyond what the tiers can hold a trace's demand may peak before the replay
/// warns that its unit may be wrong.
const OUT_OF_REACH: f64 = 10.0;

/// A warning for each dimension of `trace` whose demand peaks at more than
/// [`OUT_OF_REACH`] times what the scenario's tiers serving its workload hold at their
/// `max_instances`: a query in bytes where GiB were meant, or a counter not turned into
/// a rate, which every policy would then be short of all along.
pub(crate) fn out_of_reach(trace: &Trace, scenario: &Scenario) -> Vec<String> {
    let w = &scenario.workload;
    trace
        .dims()
        .into_iter()
        .filter_map(|(d, v)| {
            let room: f64 = scenario
                .tiers
                .iter()
                .filter(|t| t.serves(w))
                .filter_map(|t| Some(t.provides(d)? * t.max_instances as f64))
                .sum();
            let peak = v.iter().copied().fold(0.0, f64::max);
            (room > 0.0 && peak > OUT_OF_REACH * room).then(|| {
                let hint = match d {
                    Dim::Memory => " (a byte count needs dividing by 2^30)",
                    Dim::Cpu => " (a counter of CPU seconds needs rate())",
                    _ => "",
                };
                let times = peak / room;
                let times = if times < 1e6 {
                    format!("{times:.0}")
                } else {
                    format!("{times:.1e}")
                };
                format!(
                    "{} demand peaks at {peak:.4e} {unit}, {times} times what the tiers serving {} hold at their max_instances ({room:.0} {unit}): every policy will be short of it; is the trace in {unit}{hint}?",
                    d.name(),
                    w.name,
                    unit = d.unit(),
                )
            })
        })
        .collect()
}

/// Runs the command; errors are the user's to fix (exit 2).
pub fn run(a: SimulateArgs) -> Result<(), String> {
    if a.example_scenario {
        print!("{EXAMPLE_SCENARIO}");
        return Ok(());
    }
    if !a.fleet_trace.is_empty() || !a.fleet_query.is_empty() {
        return crate::fleet_cmd::run(&a);
    }
    if a.pass_s.is_some() {
        return Err("--pass-s paces the engine's passes in a fleet replay: give --fleet-trace or --fleet-query".into());
    }
    if a.prometheus.prometheus.is_some() && a.prometheus.cpu.is_none() {
        return Err("--prometheus needs --cpu, the PromQL of the demand in vCPU (or, with --config, --fleet-query NAME=PROMQL for each workload)".into());
    }
    let policies: Vec<Policy> = if a.policy == "all" {
        if !a.sweep.is_empty() {
            return Err("--sweep replays one policy (predictive unless --policy names another) beside the oracle and HPA: name it with --policy".into());
        }
        if a.timeline.is_some() {
            return Err("--timeline holds one policy's run: name it with --policy".into());
        }
        Policy::ALL.to_vec()
    } else {
        vec![Policy::parse(&a.policy).map_err(|e| format!("{e}, or all to compare them"))?]
    };
    // An output written over an input would lose the input once the run is over.
    let outputs = [
        ("--timeline", a.timeline.as_deref()),
        ("--report", a.report.as_deref()),
        ("--save-trace", a.prometheus.save_trace.as_deref()),
    ];
    let inputs = [
        ("--trace", a.trace.as_deref()),
        ("--scenario", a.scenario.as_deref()),
        ("--config", a.config.as_deref()),
    ];
    for (out, o) in outputs.iter().filter_map(|(k, p)| Some((k, (*p)?))) {
        for (inp, i) in inputs.iter().filter_map(|(k, p)| Some((k, (*p)?))) {
            if let (Ok(x), Ok(y)) = (std::fs::canonicalize(o), std::fs::canonicalize(i)) {
                if x == y {
                    return Err(format!(
                        "{out} {} is the file {inp} reads: it would be overwritten; write it elsewhere",
                        o.display()
                    ));
                }
            }
        }
    }
    let scenario = match (&a.scenario, &a.config) {
        (Some(path), _) => {
            let src = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            Scenario::parse(&src, &path.display().to_string())?
        }
        (None, Some(path)) => {
            let cfg = prescale_core::config::Config::load(path).map_err(|e| e.to_string())?;
            let s = Scenario::from_config(&cfg, a.workload.as_deref())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            // The daemon plans each tier as one pool over every workload; a replay has
            // this one alone in it.
            let shared: Vec<&str> = cfg
                .tiers
                .iter()
                .filter(|t| t.serves(&s.workload))
                .filter(|t| {
                    cfg.workloads
                        .iter()
                        .any(|o| o.name != s.workload.name && t.serves(o))
                })
                .map(|t| t.name.as_str())
                .collect();
            if !shared.is_empty() {
                eprintln!(
                    "note: {} replayed alone in its tiers: the daemon shares {} with the configuration's other workloads (each tier's max_instances over all of them), which this replay does not count (--fleet-trace NAME=FILE for each replays them together)",
                    s.workload.name,
                    shared.join(", ")
                );
            }
            // Nor does it count a budget over the fleet.
            if cfg.fleet.budgeted() {
                eprintln!(
                    "note: {} replayed under its own budgets only: the daemon also shares [fleet]'s budget among the configuration's workloads, which this replay does not count (--fleet-trace NAME=FILE for each replays them together)",
                    s.workload.name
                );
            }
            s
        }
        (None, None) => unreachable!("clap requires --scenario or --config"),
    };
    let (trace, rfc3339) = match &a.trace {
        Some(path) => load_trace(path)?,
        None => {
            let mut prom = a.prometheus.clone();
            // What the configured workload had, as its own `actual` (and each
            // dimension's) says, unless the command line says what it had.
            let w = &scenario.workload;
            let had = [
                &mut prom.actual_cpu,
                &mut prom.actual_memory,
                &mut prom.actual_disk_iops,
                &mut prom.actual_network_mbps,
            ];
            if a.config.is_some() && had.iter().all(|q| q.is_none()) {
                for (d, slot) in Dim::ALL.into_iter().zip(had) {
                    let q = match d {
                        Dim::Cpu => w.actual.as_ref(),
                        _ => w.dimensions.get(d.name()).and_then(|s| s.actual.as_ref()),
                    };
                    if let Some(q) = q {
                        eprintln!(
                            "what the service had of {}: the workload's actual, `{q}`",
                            d.name()
                        );
                        *slot = Some(q.clone());
                    }
                }
            }
            (crate::prom_trace::fetch(&prom)?, true)
        }
    };
    // What ran is compared only where the trace says what that was.
    let policies: Vec<Policy> = policies
        .into_iter()
        .filter(|p| *p != Policy::AsRun || !trace.actual.is_empty() || a.policy != "all")
        .collect();
    for w in out_of_reach(&trace, &scenario) {
        eprintln!("warning: {w}");
    }
    if let (false, [policy]) = (a.sweep.is_empty(), &policies[..]) {
        let out = (a.format, a.report.as_deref());
        let form = match &a.config {
            Some(_) => Form::Config(scenario.workload.name.clone()),
            None => Form::Scenario,
        };
        return sweep(
            &a.sweep,
            a.grid,
            *policy,
            (&trace, &scenario, a.seed),
            out,
            &form,
        )
        .map(|_| ());
    }
    let dims: Vec<Dim> = trace.dims().iter().map(|(d, _)| *d).collect();
    // One timeline per policy, kept when an output needs them.
    let keep = a.timeline.is_some() || a.report.is_some();
    let mut timelines: Vec<Vec<TimelineRow>> = Vec::new();
    let mut reports = Vec::with_capacity(policies.len());
    for policy in policies {
        let mut timeline = Vec::new();
        let label = format!("simulating {:<13}", policy.name());
        let run = (&trace, &scenario, policy, a.seed);
        reports.push(with_progress(run, keep.then_some(&mut timeline), &label)?);
        timelines.push(timeline);
    }
    // What HPA would cost for prescale's service level: its target lowered until it is
    // short no longer than predictive.
    let mut matched = None;
    if let Some(p) = reports.iter().find(|r| r.policy == Policy::Predictive) {
        if reports.len() > 1 {
            let bar = crate::progress_bar(
                0,
                "{spinner} lowering HPA's target to predictive's shortfall [{bar:30}] {pos}/{len} targets",
            );
            let m = reactive_matching(
                &trace,
                &scenario,
                a.seed,
                p.underprovisioned_minutes,
                |i, n| {
                    bar.set_length(n as u64);
                    bar.set_position(i as u64);
                },
            )?;
            bar.finish_and_clear();
            matched = Some(m);
        }
    }
    if let ([report], [timeline]) = (&reports[..], &timelines[..]) {
        let paths = (a.timeline.as_deref(), a.report.as_deref());
        write_outputs(paths, &scenario, &dims, timeline, rfc3339, report)?;
        match a.format {
            SimFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(report).expect("serialisable")
            ),
            SimFormat::Table => print!("{}", table(report)),
        }
    } else {
        if let Some(path) = &a.report {
            // Predictive at other SLA quantiles: what each service level costs.
            let mut quantiles = Vec::new();
            for q in COMPARED_QUANTILES {
                if (q - scenario.workload.sla_quantile).abs() < 1e-9 {
                    continue;
                }
                let mut s = scenario.clone();
                s.workload.sla_quantile = q;
                let run = (&trace, &s, Policy::Predictive, a.seed);
                let r = with_progress(run, None, &format!("predictive at q{q:<6}"))?;
                quantiles.push((q, r.underprovisioned_minutes, r.cost_total));
            }
            let html = crate::simulate_compare::compare_html(
                &reports,
                &timelines,
                matched.as_ref(),
                &quantiles,
                scenario.workload.sla_quantile,
            );
            std::fs::write(path, html)
                .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        }
        // What telling prescale of its planned events was worth: predictive without them.
        let n_events = scenario.workload.events.len() + scenario.workload.recurring_events.len();
        let mut unplanned = None;
        if n_events > 0 && reports.iter().any(|r| r.policy == Policy::Predictive) {
            let mut s = scenario.clone();
            s.workload.events.clear();
            s.workload.recurring_events.clear();
            let run = (&trace, &s, Policy::Predictive, a.seed);
            unplanned = Some(with_progress(run, None, "predictive, no events")?);
        }
        match a.format {
            SimFormat::Json => {
                let mut all: Vec<serde_json::Value> = reports
                    .iter()
                    .map(|r| serde_json::to_value(r).expect("serialisable"))
                    .collect();
                all.extend(matched.as_ref().map(matched_json));
                all.extend(unplanned.as_ref().map(|r| {
                    let mut v = serde_json::to_value(r).expect("serialisable");
                    v["planned_events_left_out"] = n_events.into();
                    v
                }));
                println!(
                    "{}",
                    serde_json::to_string_pretty(&all).expect("serialisable")
                )
            }
            SimFormat::Table => {
                print!("{}", comparison(&reports, matched.as_ref()));
                let p = reports.iter().find(|r| r.policy == Policy::Predictive);
                if let (Some(u), Some(p)) = (&unplanned, p) {
                    println!(
                        "Without its {n_events} planned event(s), predictive would cost ${:.2} and be short {:.0} min: telling it saved ${:.2} and {:.0} min",
                        u.cost_total,
                        u.underprovisioned_minutes,
                        u.cost_total - p.cost_total,
                        u.underprovisioned_minutes - p.underprovisioned_minutes
                    );
                }
            }
        }
    }
    Ok(())
}

/// One run of a sweep: the settings it changed and their values (one, or with `--grid`
/// one per swept setting), whether they are all the scenario's own, and what the run
/// measured.
pub(crate) struct SweptRun {
    pub settings: Settings,
    /// The scenario with them set.
    pub scenario: Scenario,
    pub own: bool,
    pub report: Report,
}

impl SweptRun {
    /// Its name in the table and on the page: `KEY = VALUE, ...`, `*` marking the
    /// scenario's.
    pub fn name(&self) -> String {
        let mark = if self.own { " *" } else { "" };
        format!("{}{mark}", settings_name(&self.settings))
    }
}

/// The settings a sweep's `runs` set, each once, in the order given.
pub(crate) fn swept_keys(runs: &[SweptRun]) -> Vec<&str> {
    let mut keys: Vec<&str> = Vec::new();
    for (k, _) in runs.iter().flat_map(|r| &r.settings) {
        if !keys.contains(&k.as_str()) {
            keys.push(k);
        }
    }
    keys
}

/// The row of a sweep's run at the scenario's own settings, where no swept value is.
pub(crate) fn as_is_name(policy: Policy, form: &Form) -> String {
    match form {
        Form::Scenario => format!("{} (scenario)", policy.name()),
        Form::Config(_) => format!("{} (as configured)", policy.name()),
    }
}

/// `--sweep KEY=V1,V2,...`, each given once or more: `policy` replayed once for each
/// value of each setting, the others as the scenario has them (one setting at a time),
/// or with `grid` once for every combination of the settings' values, every run's
/// settings checked before the first run; after the oracle and HPA as `scenario` has
/// them (and the policy too, where no run is at the scenario's own values), in
/// [`comparison`]'s columns, the scenario's own values marked. With a `report` path,
/// the page of [`crate::simulate_compare::sweep_html`]. The advice, where a run
/// dominates the scenario's own settings.
pub(crate) fn sweep(
    specs: &[String],
    grid: bool,
    policy: Policy,
    (trace, scenario, seed): (&Trace, &Scenario, u64),
    (format, report): (SimFormat, Option<&Path>),
    form: &Form,
) -> Result<Option<tune::Advice>, String> {
    let usage = "give KEY=V1,V2,... with KEY one of the workload's settings (e.g. scale_down_window_s=0,3600,7200), or of [forecast], [reactive] or [control] as forecast.KEY, reactive.KEY or control.KEY";
    let mut swept: Vec<(String, Vec<String>)> = Vec::new();
    for spec in specs {
        let (key, values) = spec
            .split_once('=')
            .ok_or_else(|| format!("--sweep {spec:?}: {usage}"))?;
        let key = key.trim();
        let values = sweep_values(values);
        if key.is_empty() || values.is_empty() {
            return Err(format!("--sweep {spec:?}: {usage}"));
        }
        // A table the policy never reads would replay the same run at every value.
        let (table, reads) = match key.split_once('.').map_or("workload", |(t, _)| t) {
            "reactive" => (
                "reactive",
                matches!(policy, Policy::Reactive | Policy::Static),
            ),
            "forecast" => (
                "forecast",
                matches!(policy, Policy::Predictive | Policy::SpecBaseline),
            ),
            _ => ("", true),
        };
        if !reads {
            return Err(format!(
                "--sweep {key}: the {} policy does not read [{table}]; name one that does with --policy",
                policy.name()
            ));
        }
        if swept.iter().any(|(k, _)| k == key) {
            return Err(format!(
                "--sweep {key} is given twice: give its values once, KEY=V1,V2,..."
            ));
        }
        swept.push((key.to_string(), values));
    }
    // Each run's settings: one setting's value at a time, or every combination.
    let combos: Vec<Settings> = if grid {
        let count = swept
            .iter()
            .map(|(_, v)| v.len())
            .try_fold(1usize, |n, l| n.checked_mul(l))
            .unwrap_or(usize::MAX);
        if count > GRID_MOST {
            return Err(format!(
                "--grid: {count} combinations of the settings' values; at most {GRID_MOST} runs: give fewer values"
            ));
        }
        swept.iter().fold(vec![Vec::new()], |done, (k, values)| {
            done.iter()
                .flat_map(|set| {
                    values.iter().map(move |v| {
                        let mut set = set.clone();
                        set.push((k.clone(), v.clone()));
                        set
                    })
                })
                .collect()
        })
    } else {
        swept
            .iter()
            .flat_map(|(k, values)| values.iter().map(move |v| vec![(k.clone(), v.clone())]))
            .collect()
    };
    // Each run, and whether it is at the scenario's own values (marked; where none is,
    // the scenario's own run comes first, to compare the others with).
    let mut runs: Vec<(Settings, Scenario, bool)> = Vec::new();
    for set in combos {
        let s = scenario
            .with_settings(&set)
            .map_err(|e| format!("--sweep: {e}"))?;
        let own = set.iter().all(|(key, _)| {
            let own = scenario.setting(key);
            own.is_some() && s.setting(key) == own
        });
        runs.push((set, s, own));
    }
    // The oracle's and HPA's own runs are already beside them.
    let with_own = !matches!(policy, Policy::Oracle | Policy::Reactive)
        && !runs.iter().any(|(_, _, own)| *own);
    let mut jobs = vec![(scenario, Policy::Oracle), (scenario, Policy::Reactive)];
    if with_own {
        jobs.push((scenario, policy));
    }
    jobs.extend(runs.iter().map(|(_, s, _)| (s, policy)));
    let mut reports = run_all(trace, seed, &jobs, "sweeping")?.into_iter();
    let mut next = || reports.next().expect("a report per job");
    let (oracle, reactive) = (next(), next());
    let as_is = with_own.then(&mut next);
    let swept: Vec<SweptRun> = runs
        .into_iter()
        .map(|(settings, scenario, own)| SweptRun {
            own,
            settings,
            scenario,
            report: next(),
        })
        .collect();
    // HPA at every target down to the least short run's shortfall: HPA as short as
    // each run, the yardstick "cheaper than HPA at equal or fewer minutes short".
    let least = swept
        .iter()
        .map(|r| &r.report)
        .chain(&as_is)
        .map(|r| r.underprovisioned_minutes)
        .fold(f64::INFINITY, f64::min);
    let bar = crate::progress_bar(
        0,
        "{spinner} lowering HPA's target to the least short run's shortfall [{bar:30}] {pos}/{len} targets",
    );
    let matched = reactive_matching(trace, scenario, seed, least, |i, n| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
    })?;
    bar.finish_and_clear();
    // Each run (the scenario's own first, where it ran apart) beside HPA as short as it
    // and the cheapest run that costs no more and is short no longer.
    let ranked: Vec<(String, &Report)> = as_is
        .iter()
        .map(|r| (as_is_name(policy, form), r))
        .chain(swept.iter().map(|r| (r.name(), &r.report)))
        .collect();
    let points: Vec<(f64, f64)> = ranked
        .iter()
        .map(|(_, r)| (r.cost_total, r.underprovisioned_minutes))
        .collect();
    let beside: Vec<Beside> = dominated(&points)
        .into_iter()
        .zip(&ranked)
        .map(|(by, (_, r))| Beside {
            hpa: matched.at_most(r.underprovisioned_minutes),
            dominated_by: by.map(|k| ranked[k].0.clone()),
        })
        .collect();
    let (own_beside, run_beside) = beside.split_at(usize::from(as_is.is_some()));
    // The scenario's own run (apart, or the swept run at its values) and what dominates it.
    let own: Option<(&Report, &Beside)> = match (&as_is, own_beside) {
        (Some(r), [b]) => Some((r, b)),
        _ => swept
            .iter()
            .zip(run_beside)
            .find(|(r, _)| r.own)
            .map(|(r, b)| (&r.report, b)),
    };
    let mut advice = own
        .and_then(|(r, b)| Advice::new(r, b.dominated_by.as_deref(), &swept, form).map(|a| (r, a)));
    // Whether the advice holds on each half of the trace alone, or rests on a stretch.
    if let Some((_, a)) = advice.as_mut() {
        let run = |t: &Trace, seed: u64, jobs: &[(&Scenario, Policy)]| {
            run_all(t, seed, jobs, "checking each half")
        };
        a.core.halves = on_each_half(trace, (scenario, &a.run.scenario), (policy, seed), &run)?;
        a.core.holds_on_each_half = tune::holds_on_each(&a.core.halves);
    }
    if let Some(path) = report {
        let html = crate::simulate_compare::sweep_html(
            policy,
            (&oracle, &reactive, as_is.as_ref()),
            (&swept, (own_beside.first(), run_beside)),
            Some(&matched),
            own.map(|(r, _)| (r, advice.as_ref().map(|(_, a)| a))),
            form,
        );
        std::fs::write(path, html).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    let keys = swept_keys(&swept);
    match format {
        SimFormat::Json => {
            let runs: Vec<serde_json::Value> = swept
                .iter()
                .zip(run_beside)
                .map(|(r, b)| {
                    let mut j = serde_json::to_value(&r.report).expect("serialisable");
                    b.add_to(&mut j, &r.report);
                    if let [(key, value)] = &r.settings[..] {
                        j["setting"] = key.as_str().into();
                        j["value"] = value.as_str().into();
                    }
                    j["settings"] = r
                        .settings
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                    j["scenario_value"] = r.own.into();
                    j
                })
                .collect();
            let mut out = serde_json::json!({
                "sweep": keys,
                "grid": grid,
                "oracle": oracle,
                "reactive": reactive,
                "runs": runs,
            });
            if let (Some(r), [b]) = (&as_is, own_beside) {
                let mut j = serde_json::to_value(r).expect("serialisable");
                b.add_to(&mut j, r);
                out["scenario"] = j;
            }
            out["scenario_dominated_by"] = advice
                .as_ref()
                .map_or(serde_json::Value::Null, |(_, a)| a.json());
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("serialisable")
            );
        }
        SimFormat::Table => {
            let names: Vec<String> = swept.iter().map(SweptRun::name).collect();
            let width = names
                .iter()
                .map(|n| n.len())
                .chain(as_is.as_ref().map(|_| as_is_name(policy, form).len()))
                .max()
                .unwrap_or(0)
                .max(14);
            let shown: Vec<String> = keys
                .iter()
                .map(|k| {
                    if k.contains('.') {
                        k.to_string()
                    } else {
                        format!("workload.{k}")
                    }
                })
                .collect();
            let mut s = String::new();
            let _ = writeln!(
                s,
                "{} steps ({:.1} h), seed {seed}: {} at {} of {}{} (* the {} own)",
                oracle.steps,
                oracle.hours,
                policy.name(),
                if grid && shown.len() > 1 {
                    "every combination of the values"
                } else {
                    "each value"
                },
                shown.join(", "),
                if shown.len() > 1 && !grid {
                    ", one setting at a time"
                } else {
                    ""
                },
                form.whose()
            );
            header(&mut s, "run", width, Beside::HEADING);
            let (o, h) = (Some(oracle.cost_total), Some(reactive.cost_total));
            row(&mut s, Policy::Oracle.name(), width, &oracle, o, h, "");
            row(&mut s, Policy::Reactive.name(), width, &reactive, o, h, "");
            if let (Some(r), [b]) = (&as_is, own_beside) {
                row(
                    &mut s,
                    &as_is_name(policy, form),
                    width,
                    r,
                    o,
                    h,
                    &b.columns(r),
                );
            }
            for ((name, r), b) in names.iter().zip(&swept).zip(run_beside) {
                row(&mut s, name, width, &r.report, o, h, &b.columns(&r.report));
            }
            let _ = writeln!(
                s,
                "HPA as short: HPA at its highest target (down to {:.0}%) short no longer than the run; vs it: the run's cost against that; dominated: another {} run costs no more and is short no longer",
                MATCH_LOWEST_TARGET * 100.0,
                policy.name()
            );
            match (&advice, own) {
                (Some((r, a)), _) => s.push_str(&a.lines(r)),
                (None, Some(_)) => {
                    let _ = writeln!(s, "{}", form.not_dominated());
                }
                (None, None) => {}
            }
            print!("{s}");
        }
    }
    Ok(advice.map(|(_, a)| a.core))
}

/// What a sweep sets beside each of its runs: HPA as short as it, and the cheapest other
/// run that costs no more and is short no longer.
pub(crate) struct Beside {
    /// HPA's highest target short no longer than the run, as [`Matched::at_most`] gives it.
    hpa: Option<(f64, f64, f64)>,
    /// The name of the cheapest run that dominates it.
    pub(crate) dominated_by: Option<String>,
}

impl Beside {
    /// The table's columns after [`header`]'s.
    const HEADING: &str = "      HPA as short   vs it";

    /// The run `r`'s cells under [`Beside::HEADING`].
    fn columns(&self, r: &Report) -> String {
        let (hpa, vs) = self.cells(r);
        let dominated = if self.dominated_by.is_some() {
            "  dominated"
        } else {
            ""
        };
        format!(" {hpa:>18} {vs:>7}{dominated}")
    }

    /// HPA as short as the run `r` (its target and cost) and the run against it.
    pub(crate) fn cells(&self, r: &Report) -> (String, String) {
        match self.hpa {
            Some((target, _, cost)) => (
                format!("{:.0}%, ${cost:.2}", target * 100.0),
                change(r.cost_total, cost).unwrap_or_else(|| "-".into()),
            ),
            None => (
                format!("none to {:.0}%", MATCH_LOWEST_TARGET * 100.0),
                "-".into(),
            ),
        }
    }

    /// Adds them to the run `r`'s JSON `j`: `hpa_short_no_longer` (HPA's target
    /// utilization, minutes short and cost, or null where no target down to
    /// [`MATCH_LOWEST_TARGET`] was), `vs_hpa_short_no_longer` (the run's cost over it,
    /// less one) and `dominated_by` (the cheapest run costing no more and short no
    /// longer, by name, or null).
    fn add_to(&self, j: &mut serde_json::Value, r: &Report) {
        j["hpa_short_no_longer"] = self.hpa.map_or(serde_json::Value::Null, tried_json);
        j["vs_hpa_short_no_longer"] = self
            .hpa
            .filter(|(_, _, c)| *c > 0.0)
            .map_or(serde_json::Value::Null, |(_, _, c)| {
                (r.cost_total / c - 1.0).into()
            });
        j["dominated_by"] = self.dominated_by.clone().into();
    }
}

/// Where another run dominates the scenario's own: that run and the library's
/// [`tune::Advice`] (what it saves, whether that holds on each half, the settings'
/// TOML), with where the TOML goes.
pub(crate) struct Advice<'a> {
    run: &'a SweptRun,
    pub(crate) core: tune::Advice,
    whose: &'static str,
    /// What comes before the TOML: where it goes.
    pub(crate) lead_in: &'static str,
}

impl<'a> Advice<'a> {
    /// From the scenario's own run `own` and its [`Beside::dominated_by`], the run of
    /// `runs` so named (its halves not yet replayed).
    fn new(
        own: &Report,
        dominated_by: Option<&str>,
        runs: &'a [SweptRun],
        form: &Form,
    ) -> Option<Self> {
        let run = runs
            .iter()
            .find(|r| Some(r.name().as_str()) == dominated_by)?;
        Some(Advice {
            run,
            core: tune::Advice {
                settings: run.settings.clone(),
                cost_less: own.cost_total - run.report.cost_total,
                minutes_less: own.underprovisioned_minutes - run.report.underprovisioned_minutes,
                halves: Vec::new(),
                holds_on_each_half: false,
                toml: settings_toml(&run.settings, form),
            },
            whose: form.whose(),
            lead_in: form.lead_in(),
        })
    }

    /// What it saves over the scenario's own run `own`, in a sentence.
    pub(crate) fn sentence(&self, own: &Report) -> String {
        format!(
            "On this trace the {} own settings are dominated: {}.",
            self.whose,
            self.core.sentence(own.underprovisioned_minutes)
        )
    }

    /// Whether it also dominates on each half of the trace alone, in a sentence.
    pub(crate) fn halves_sentence(&self) -> String {
        halves_words(&self.core.halves)
    }

    /// Lines under the sweep's table: the sentences and the settings' TOML.
    fn lines(&self, own: &Report) -> String {
        let table: String = self.core.toml.lines().map(|l| format!("  {l}\n")).collect();
        let halves = self.halves_sentence();
        let gap = if halves.is_empty() { "" } else { " " };
        format!(
            "{}{gap}{halves} {}\n{table}",
            self.sentence(own),
            self.lead_in
        )
    }

    /// Its JSON: `run`, `cost_less`, `minutes_less`, `toml` and `halves` (each half's
    /// `cost_less` and `minutes_less`, and whether it `holds` there).
    fn json(&self) -> serde_json::Value {
        let core = serde_json::to_value(&self.core).expect("serialisable");
        serde_json::json!({
            "run": self.run.name(),
            "cost_less": self.core.cost_less,
            "minutes_less": self.core.minutes_less,
            "toml": self.core.toml,
            "halves": core["halves"],
        })
    }
}

/// Runs `jobs` (a scenario and a policy each) on `trace` with `seed`, as many at once as
/// the machine has cores (a run is mostly one thread), under one progress bar headed
/// `what`; the reports in the order of `jobs`, or the first failed run's error (no run
/// starts once one has failed).
fn run_all(
    trace: &Trace,
    seed: u64,
    jobs: &[(&Scenario, Policy)],
    what: &str,
) -> Result<Vec<Report>, String> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    let steps = trace.cpu.len() as u64;
    let bar = crate::progress_bar(
        steps * jobs.len() as u64,
        &format!(
            "{{spinner}} {what} ({} runs) [{{bar:30}}] {{pos}}/{{len}} steps ({{eta}})",
            jobs.len()
        ),
    );
    let (next, failed) = (AtomicUsize::new(0), AtomicBool::new(false));
    let results: Vec<Mutex<Option<Result<Report, String>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some((scenario, policy)) = jobs.get(k) else {
                    break;
                };
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let mut shown = 0u64;
                let r = simulate(trace, scenario, *policy, seed, None, |i, _| {
                    let i = i as u64;
                    if i >= shown + 64 {
                        bar.inc(i - shown);
                        shown = i;
                    }
                });
                bar.inc(steps.saturating_sub(shown));
                failed.fetch_or(r.is_err(), Ordering::Relaxed);
                *results[k].lock().expect("no run panicked") = Some(r);
            });
        }
    });
    bar.finish_and_clear();
    let results: Vec<Option<Result<Report, String>>> = results
        .into_iter()
        .map(|m| m.into_inner().expect("no run panicked"))
        .collect();
    if let Some(Err(e)) = results.iter().flatten().find(|r| r.is_err()) {
        return Err(e.clone());
    }
    Ok(results.into_iter().flatten().flatten().collect())
}

/// The values of `--sweep KEY=V1,V2,...`, split at the commas outside brackets and
/// quotes (so an array such as `["spot", "standard"]` is one value), trimmed, empty
/// ones dropped.
fn sweep_values(list: &str) -> Vec<String> {
    let (mut out, mut cur) = (Vec::new(), String::new());
    let (mut depth, mut quote) = (0i32, None::<char>);
    for c in list.chars() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth <= 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.into_iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// One simulation `(trace, scenario, policy, seed)` with a progress bar on the terminal
/// headed `label`.
pub(crate) fn with_progress(
    (trace, scenario, policy, seed): (&Trace, &Scenario, Policy, u64),
    timeline: Option<&mut Vec<TimelineRow>>,
    label: &str,
) -> Result<Report, String> {
    let bar = crate::progress_bar(
        trace.cpu.len() as u64,
        &format!("{{spinner}} {label} [{{bar:30}}] {{pos}}/{{len}} steps ({{eta}})"),
    );
    let r = simulate(trace, scenario, policy, seed, timeline, |i, _| {
        if i % 64 == 0 {
            bar.set_position(i as u64)
        }
    });
    bar.finish_and_clear();
    r
}

/// Writes the timeline CSV and the HTML report of one policy's run to the paths given.
fn write_outputs(
    (timeline_path, report_path): (Option<&Path>, Option<&Path>),
    scenario: &Scenario,
    dims: &[Dim],
    timeline: &[TimelineRow],
    rfc3339: bool,
    report: &Report,
) -> Result<(), String> {
    if let Some(path) = timeline_path {
        std::fs::write(path, timeline_csv(scenario, dims, timeline, rfc3339))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    if let Some(path) = report_path {
        std::fs::write(path, report_html(scenario, dims, timeline, report))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(())
}

/// An error naming the first negative value of `column` in `series` (read from `path`,
/// `what` it holds: demand or capacity), and when it is.
fn non_negative(
    path: &Path,
    what: &str,
    column: &str,
    series: &crate::input::Series,
) -> Result<(), String> {
    match series.values.iter().position(|v| *v < 0.0) {
        Some(i) => Err(format!(
            "{}: {what} must not be negative ({column} is {} at {})",
            path.display(),
            series.values[i],
            crate::input::format_ts(series.ts[i], series.rfc3339)
        )),
        None => Ok(()),
    }
}

/// Every policy's run side by side: cost against the oracle's floor and against
/// reactive (what Kubernetes HPA would have done), and how often each fell short; then
/// `matched` (from [`reactive_matching`]): HPA with its target lowered to predictive's
/// shortfall, and what predictive saves against it.
fn comparison(reports: &[Report], matched: Option<&Matched>) -> String {
    let cost_of = |p: Policy| reports.iter().find(|r| r.policy == p).map(|r| r.cost_total);
    let (oracle, reactive) = (cost_of(Policy::Oracle), cost_of(Policy::Reactive));
    let mut s = String::new();
    if let Some(r) = reports.first() {
        let _ = writeln!(s, "{} steps ({:.1} h), seed {}", r.steps, r.hours, r.seed);
    }
    header(&mut s, "policy", 14, "");
    let rows = reports.iter().map(|r| (r, r.policy.name().to_string()));
    // HPA lowered to predictive's shortfall, unless that is the reactive row already.
    let shown = reports
        .iter()
        .find(|r| r.policy == Policy::Reactive)
        .map(|r| r.reactive_target_utilization);
    let extra = matched
        .map(|m| &m.report)
        .filter(|r| shown != Some(r.reactive_target_utilization))
        .map(|r| {
            let pct = r.reactive_target_utilization.unwrap_or_default() * 100.0;
            (r, format!("reactive@{pct:.0}%"))
        });
    for (r, name) in rows.chain(extra) {
        row(&mut s, &name, 14, r, oracle, reactive, "");
    }
    let predictive = reports.iter().find(|r| r.policy == Policy::Predictive);
    if let (Some(p), Some(m)) = (predictive, matched) {
        let _ = writeln!(s, "{}", matched_summary(p, m));
    }
    let ran = reports.iter().find(|r| r.policy == Policy::AsRun);
    if let (Some(p), Some(ran)) = (predictive, ran) {
        let _ = writeln!(s, "{}", as_run_summary(p, ran));
    }
    s
}

/// The heading of [`comparison`]'s columns, the first (`first`) `width` wide, and
/// `extra` after them.
fn header(s: &mut String, first: &str, width: usize, extra: &str) {
    let line = format!(
        "{first:<width$} {:>12} {:>9} {:>10} {:>22} {:>8} {:>14}{extra}",
        "cost", "x oracle", "vs HPA", "under-provisioned", "actions", "interruptions"
    );
    let _ = writeln!(s, "{}", line.trim_end());
}

/// One run `r`, named `name`, in [`comparison`]'s columns: its cost against the
/// oracle's and reactive's when known; then `extra`.
fn row(
    s: &mut String,
    name: &str,
    width: usize,
    r: &Report,
    oracle: Option<f64>,
    reactive: Option<f64>,
    extra: &str,
) {
    let (x_oracle, vs_hpa) = against(r.cost_total, oracle, reactive);
    let line = format!(
        "{name:<width$} {:>12} {:>9} {:>10} {:>22} {:>8} {:>14}{extra}",
        format!("${:.2}", r.cost_total),
        x_oracle,
        vs_hpa,
        format!(
            "{:.0} min ({:.3}%)",
            r.underprovisioned_minutes,
            r.underprovisioned_share * 100.0
        ),
        r.actions,
        r.interruptions
    );
    let _ = writeln!(s, "{}", line.trim_end());
}

/// HPA matched to predictive's shortfall as `--policy all --format json` ends with it:
/// its run, and `matched_to_predictive`: whether a target got it there (`found`), and
/// every target tried (highest first) with its minutes short and cost.
fn matched_json(m: &Matched) -> serde_json::Value {
    let mut v = serde_json::to_value(&m.report).expect("serialisable");
    let tried: Vec<serde_json::Value> = m.tried.iter().copied().map(tried_json).collect();
    v["matched_to_predictive"] = serde_json::json!({"found": m.found, "tried": tried});
    v
}

/// One HPA target tried ([`Matched::tried`]): its target utilization, minutes short and
/// cost, as JSON.
fn tried_json((target, short, cost): (f64, f64, f64)) -> serde_json::Value {
    serde_json::json!({
        "target_utilization": target,
        "underprovisioned_minutes": short,
        "cost_total": cost,
    })
}

/// What predictive `p` would have cost and how long it would have been short, against
/// what the service had (`ran`).
pub(crate) fn as_run_summary(p: &Report, ran: &Report) -> String {
    let cost = match change(p.cost_total, ran.cost_total) {
        Some(change) => format!("{change} (${:.2})", p.cost_total),
        None => format!("${:.2}", p.cost_total),
    };
    format!(
        "Against what the service had (as-run, ${:.2}, short {:.0} min): predictive costs {cost}, short {:.0} min",
        ran.cost_total, ran.underprovisioned_minutes, p.underprovisioned_minutes
    )
}

/// What predictive `p` saves against HPA lowered to its shortfall (`m`), or that no
/// target got HPA there: one sentence, for the table and the comparison page.
pub(crate) fn matched_summary(p: &Report, m: &Matched) -> String {
    let pct = m.report.reactive_target_utilization.unwrap_or_default() * 100.0;
    if m.found {
        let cost = match change(p.cost_total, m.report.cost_total) {
            Some(change) => format!("{change} against it"),
            None => format!("${:.2}", p.cost_total),
        };
        format!(
            "HPA's highest target at which it is short no longer than predictive ({:.0} min): {pct:.0}%, costing ${:.2}; predictive costs {cost}",
            p.underprovisioned_minutes, m.report.cost_total,
        )
    } else {
        format!(
            "HPA is short longer than predictive ({:.0} min) at every target down to {:.0}%: at {pct:.0}%, {:.0} min for ${:.2}",
            p.underprovisioned_minutes,
            MATCH_LOWEST_TARGET * 100.0,
            m.report.underprovisioned_minutes,
            m.report.cost_total
        )
    }
}

/// A cost as a multiple of the oracle's and as a change against HPA's ("-" without them).
pub(crate) fn against(cost: f64, oracle: Option<f64>, reactive: Option<f64>) -> (String, String) {
    (
        oracle
            .filter(|b| *b > 0.0)
            .map_or_else(|| "-".into(), |b| format!("{:.2}", cost / b)),
        reactive
            .and_then(|b| change(cost, b))
            .unwrap_or_else(|| "-".into()),
    )
}

/// `cost` as a change against `base` ("-40%"), `None` when `base` costs nothing (a
/// trace without demand): no change to put a figure on.
pub(crate) fn change(cost: f64, base: f64) -> Option<String> {
    (base > 0.0).then(|| format!("{:+.0}%", (cost / base - 1.0) * 100.0))
}

fn timeline_csv(scenario: &Scenario, dims: &[Dim], rows: &[TimelineRow], rfc3339: bool) -> String {
    let mut out = String::from("timestamp");
    for d in dims {
        let _ = write!(out, ",demand_{}", d.name());
    }
    for d in dims {
        for t in &scenario.tiers {
            let _ = write!(out, ",ready_{}_{}", d.name(), t.name);
        }
    }
    for t in &scenario.tiers {
        let _ = write!(out, ",instances_{}", t.name);
    }
    out.push_str(",forecast_q10,forecast_q50,forecast_sla,forecast_model,cost_so_far,reason\n");
    for r in rows {
        out.push_str(&crate::input::format_ts(r.ts / 1000, rfc3339));
        for v in &r.demand {
            let _ = write!(out, ",{v}");
        }
        for j in 0..dims.len() {
            for tier in &r.ready {
                let _ = write!(out, ",{}", tier[j]);
            }
        }
        for n in &r.instances {
            let _ = write!(out, ",{n}");
        }
        match r.forecast {
            Some((a, b, c)) => {
                let _ = write!(out, ",{a:.4},{b:.4},{c:.4}");
            }
            None => out.push_str(",,,"),
        }
        out.push(',');
        if let Some(m) = &r.model {
            let _ = write!(out, "\"{}\"", m.replace('"', "\"\""));
        }
        let _ = write!(out, ",{:.4},", r.cost_so_far);
        if let Some(why) = &r.reason {
            let _ = write!(out, "\"{}\"", why.replace('"', "\"\""));
        }
        out.push('\n');
    }
    out
}

fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "policy {}: {} steps ({:.1} h), seed {}",
        r.policy.name(),
        r.steps,
        r.hours,
        r.seed
    );
    let _ = writeln!(s, "  cost total            ${:.2}", r.cost_total);
    for (t, c) in &r.cost_per_tier {
        let _ = writeln!(
            s,
            "    {t:<20} ${c:.2}  (peak {} instances)",
            r.peak_instances.get(t).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        s,
        "  under-provisioned     {:.0} min ({:.3}% of the trace)",
        r.underprovisioned_minutes,
        r.underprovisioned_share * 100.0
    );
    for (d, v) in &r.unserved {
        let _ = writeln!(s, "  unserved {d:<12} {v:.1} unit-minutes");
    }
    let _ = writeln!(s, "  scaling actions       {}", r.actions);
    let _ = writeln!(s, "  spot interruptions    {}", r.interruptions);
    let _ = writeln!(
        s,
        "  budget breaches       {} steps, ${:.2} above the cap",
        r.budget_breaches, r.budget_overrun
    );
    if r.forecaster_fits > 0 {
        let _ = writeln!(
            s,
            "  forecaster fits       {} ({} selections)",
            r.forecaster_fits, r.forecaster_selections
        );
    }
    if let Some(e) = &r.first_forecaster_error {
        let _ = writeln!(
            s,
            "  forecaster errors     {} (previous forecast kept); first: {e}",
            r.forecaster_errors
        );
    }
    s
}

/// One chart column: start, peak demand, lowest ready capacity per tier, forecast band.
type Column = (i64, f64, Vec<f64>, Option<(f64, f64)>);

/// Colours of the tiers, in catalog order (cycled).
pub(crate) const TIER_COLOURS: [&str; 6] = [
    "#7fb77e", "#6b9bd1", "#c98bd6", "#e0a458", "#d16b6b", "#8c8c8c",
];

/// One dimension's chart: demand, ready capacity stacked by tier, and (CPU, `j == 0`)
/// the forecast band; `bucket` steps per column.
fn chart(scenario: &Scenario, rows: &[TimelineRow], j: usize, bucket: usize) -> String {
    let (w, h, pad) = (1100.0, 380.0, 48.0);
    // At most ~1,500 columns: each keeps its bucket's peak demand and lowest capacity,
    // so shortfalls stay visible.
    let cols: Vec<Column> = rows
        .chunks(bucket)
        .map(|c| {
            let cap = |x: &TimelineRow| -> Vec<f64> { x.ready.iter().map(|t| t[j]).collect() };
            let demand = c.iter().map(|x| x.demand[j]).fold(0.0, f64::max);
            let worst = c
                .iter()
                .min_by(|a, b| {
                    let (sa, sb): (f64, f64) = (cap(a).iter().sum(), cap(b).iter().sum());
                    sa.total_cmp(&sb)
                })
                .expect("non-empty chunk");
            let band = c.iter().filter(|_| j == 0).filter_map(|x| x.forecast).fold(
                None,
                |acc: Option<(f64, f64)>, (lo, _, hi)| {
                    Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
                },
            );
            (c[0].ts, demand, cap(worst), band)
        })
        .collect();
    let ymax = cols
        .iter()
        .map(|(_, d, cap, band)| d.max(cap.iter().sum()).max(band.map_or(0.0, |(_, hi)| hi)))
        .fold(1.0, f64::max)
        * 1.05;
    let n = cols.len().max(2) as f64;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n - 1.0);
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / ymax;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"demand, forecast band and capacity by tier\">"
    );
    // Planned events: shaded over the columns they overlap, named.
    let span = rows.get(1).map_or(1, |r| r.ts - rows[0].ts) * bucket as i64;
    let wl = &scenario.workload;
    let recurring = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) => wl
            .recurring_events
            .iter()
            .flat_map(|r| r.occurrences(a.ts, b.ts + span))
            .collect(),
        _ => Vec::new(),
    };
    for e in wl.events.iter().chain(&recurring) {
        let over: Vec<usize> = (0..cols.len())
            .filter(|&i| e.overlaps(cols[i].0, cols[i].0 + span))
            .collect();
        let (Some(&a), Some(&b)) = (over.first(), over.last()) else {
            continue;
        };
        let (x0, x1) = (x(a), x(b).max(x(a) + 1.0));
        let _ = write!(
            svg,
            "<rect class=\"event\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#7fb0d6\" fill-opacity=\"0.2\"><title>planned event {} from {} to {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#1f5f8b\">{}</text>",
            y(ymax),
            x1 - x0,
            y(0.0) - y(ymax),
            html_escape(&e.name),
            prescale_core::format_ts(e.start.0),
            prescale_core::format_ts(e.end.0),
            x0 + 3.0,
            y(ymax) + 14.0,
            html_escape(e.recurring.as_deref().unwrap_or(&e.name))
        );
    }
    // Stacked ready capacity per tier.
    let tiers = scenario.tiers.len();
    let mut base = vec![0.0; cols.len()];
    for k in 0..tiers {
        let top: Vec<f64> = cols
            .iter()
            .zip(&base)
            .map(|(c, b)| b + c.2.get(k).copied().unwrap_or(0.0))
            .collect();
        let d = path_through(
            top.iter()
                .enumerate()
                .map(|(i, v)| (x(i), y(*v)))
                .chain((0..cols.len()).rev().map(|i| (x(i), y(base[i])))),
        );
        let _ = write!(
            svg,
            "<path d=\"{d}Z\" fill=\"{}\" fill-opacity=\"0.75\" stroke=\"none\"/>",
            TIER_COLOURS[k % TIER_COLOURS.len()]
        );
        base = top;
    }
    // Forecast band (q0.1 .. SLA quantile) where the policy had one.
    let mut seg: Vec<(usize, f64, f64)> = Vec::new();
    let flush = |seg: &mut Vec<(usize, f64, f64)>, svg: &mut String| {
        if seg.len() > 1 {
            let d = path_through(
                seg.iter()
                    .map(|(i, _, hi)| (x(*i), y(*hi)))
                    .chain(seg.iter().rev().map(|(i, lo, _)| (x(*i), y(*lo)))),
            );
            // Its SLA quantile as a line too: over the capacity areas the band alone is
            // a faint tint.
            let top = path_through(seg.iter().map(|(i, _, hi)| (x(*i), y(*hi))));
            let _ = write!(
                svg,
                "<path d=\"{d}Z\" fill=\"#f2c14e\" fill-opacity=\"0.35\" stroke=\"none\"/><path d=\"{top}\" fill=\"none\" stroke=\"#c98a00\" stroke-width=\"1\"/>"
            );
        }
        seg.clear();
    };
    for (i, c) in cols.iter().enumerate() {
        match c.3 {
            Some((lo, hi)) => seg.push((i, lo, hi)),
            None => flush(&mut seg, &mut svg),
        }
    }
    flush(&mut seg, &mut svg);
    // Demand.
    let d = path_through(cols.iter().enumerate().map(|(i, c)| (x(i), y(c.1))));
    let _ = write!(
        svg,
        "<path d=\"{d}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.2\"/>"
    );
    // Axes: round ticks of the dimension's unit, and whole days or hours.
    let (ticks, step) = linear_ticks(ymax, 5);
    for v in ticks {
        grid_line(&mut svg, w, pad, y(v), &tick_label(v, step), "#ddd");
    }
    let (first, last) = (
        cols.first().map_or(0, |c| c.0),
        cols.last().map_or(0, |c| c.0),
    );
    time_axis(&mut svg, w, h, pad, first, last);
    svg
}

/// Decisions listed in the HTML report at most (the timeline CSV has them all).
const MAX_DECISIONS: usize = 300;

/// A self-contained HTML page: per dimension, demand and ready capacity stacked by tier
/// over time (one SVG each, no scripts; CPU's also has the forecast band), then the
/// report's figures and the decisions with their reasons.
pub fn report_html(scenario: &Scenario, dims: &[Dim], rows: &[TimelineRow], r: &Report) -> String {
    let bucket = rows.len().div_ceil(1500).max(1);
    let mut charts = String::new();
    for (j, d) in dims.iter().enumerate() {
        if !scenario.tiers.iter().any(|t| t.provides(*d).is_some()) {
            continue;
        }
        let _ = write!(
            charts,
            "<h2>{}</h2>{}",
            html_escape(d.name()),
            chart(scenario, rows, j, bucket)
        );
    }
    let mut legend = String::from("<span><i style=\"background:#222\"></i>demand</span>");
    legend.push_str(
        "<span><i style=\"background:#f2c14e\"></i>forecast: q0.1 to the SLA quantile, and the SLA quantile as a line</span>",
    );
    for (k, t) in scenario.tiers.iter().enumerate() {
        let _ = write!(
            legend,
            "<span><i style=\"background:{}\"></i>ready capacity: {}</span>",
            TIER_COLOURS[k % TIER_COLOURS.len()],
            html_escape(&t.name)
        );
    }
    let mut figures = String::new();
    let mut row = |k: &str, v: String| {
        let _ = write!(figures, "<tr><th>{k}</th><td>{}</td></tr>", html_escape(&v));
    };
    row("policy", r.policy.name().to_string());
    row("trace", format!("{} steps, {:.1} h", r.steps, r.hours));
    row("cost total", format!("${:.2}", r.cost_total));
    for (t, c) in &r.cost_per_tier {
        row(&format!("cost on {}", html_escape(t)), format!("${c:.2}"));
    }
    row(
        "under-provisioned",
        format!(
            "{:.0} min ({:.3}% of the trace)",
            r.underprovisioned_minutes,
            r.underprovisioned_share * 100.0
        ),
    );
    for (d, v) in &r.unserved {
        row(&format!("unserved {d}"), format!("{v:.1} unit-minutes"));
    }
    row("scaling actions", r.actions.to_string());
    row("spot interruptions", r.interruptions.to_string());
    row(
        "budget breaches",
        format!(
            "{} steps, ${:.2} above the cap",
            r.budget_breaches, r.budget_overrun
        ),
    );
    row("seed", r.seed.to_string());
    let decisions: Vec<&TimelineRow> = rows.iter().filter(|x| x.reason.is_some()).collect();
    let mut log = String::new();
    for x in decisions.iter().take(MAX_DECISIONS) {
        let held: Vec<String> = scenario
            .tiers
            .iter()
            .zip(&x.instances)
            .map(|(t, n)| format!("{n} {}", t.name))
            .collect();
        let _ = write!(
            log,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            prescale_core::format_ts(x.ts),
            html_escape(&held.join(", ")),
            html_escape(x.reason.as_deref().unwrap_or(""))
        );
    }
    let shown = if decisions.len() > MAX_DECISIONS {
        format!(
            "the first {MAX_DECISIONS} of {} (the timeline CSV has all)",
            decisions.len()
        )
    } else {
        format!("all {}", decisions.len())
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>prescale simulate: {policy}</title><style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}.legend span{{margin-right:16px;font-size:12px}}.legend i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}table{{border-collapse:collapse;margin-top:16px}}th,td{{text-align:left;padding:3px 12px;border-bottom:1px solid #eee}}</style></head><body><h1>prescale simulate: policy {policy}</h1><p>Columns keep each bucket's peak demand and its lowest ready capacity ({bucket} step(s) per column), so every shortfall shows as demand above the coloured area.</p>{charts}<div class=\"legend\">{legend}</div><table>{figures}</table><h2>Decisions: {shown}</h2><table><tr><th>time</th><th>instances after</th><th>why</th></tr>{log}</table></body></html>\n",
        policy = r.policy.name()
    )
}

pub(crate) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
