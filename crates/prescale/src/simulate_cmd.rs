//! `prescale simulate`: replay a demand trace under a policy and report it in dollars.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use prescale_orchestrate::simulate::{
    simulate, Policy, Report, Scenario, TimelineRow, Trace, EXAMPLE_SCENARIO,
};

/// Arguments of `prescale simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// CSV demand trace: a `timestamp` column (unix seconds or RFC 3339) and a `cpu`
    /// column in vCPU.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "example_scenario"
    )]
    pub trace: Option<PathBuf>,
    /// Scenario TOML: tier catalog, SLA, budget, policy settings
    /// (`--example-scenario` prints a complete one).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "example_scenario"
    )]
    pub scenario: Option<PathBuf>,
    /// predictive, spec-baseline, reactive, static or oracle.
    #[arg(long, default_value = "predictive")]
    pub policy: String,
    /// Write one CSV row per step: demand, ready capacity and instances per tier, cost.
    #[arg(long, value_name = "OUT.csv")]
    pub timeline: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SimFormat::Table)]
    pub format: SimFormat,
    /// Seed of lead times and spot interruptions.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a complete, commented example scenario and exit.
    #[arg(long)]
    pub example_scenario: bool,
}

/// Report format.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum SimFormat {
    /// Aligned text.
    Table,
    /// One JSON object.
    Json,
}

/// Runs the command; errors are the user's to fix (exit 2).
pub fn run(a: SimulateArgs) -> Result<(), String> {
    if a.example_scenario {
        print!("{EXAMPLE_SCENARIO}");
        return Ok(());
    }
    let policy = Policy::parse(&a.policy)?;
    let (trace_path, scenario_path) = (
        a.trace.expect("required by clap"),
        a.scenario.expect("required by clap"),
    );
    let src = std::fs::read_to_string(&scenario_path)
        .map_err(|e| format!("{}: cannot read: {e}", scenario_path.display()))?;
    let scenario = Scenario::parse(&src, &scenario_path.display().to_string())?;
    let header = std::fs::read_to_string(&trace_path)
        .map_err(|e| format!("{}: cannot read: {e}", trace_path.display()))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    for col in header.split(',').map(|c| c.trim().trim_matches('"')) {
        if !col.eq_ignore_ascii_case("timestamp") && !col.eq_ignore_ascii_case("cpu") {
            eprintln!(
                "warning: {}: column {col:?} ignored: this version simulates the `cpu` dimension only",
                trace_path.display()
            );
        }
    }
    let series = crate::input::read_csv_column(&trace_path, "cpu")?;
    for w in &series.warnings {
        eprintln!("warning: {}: {w}", trace_path.display());
    }
    if let Some(i) = series.values.iter().position(|v| *v < 0.0) {
        return Err(format!(
            "{}: demand must not be negative (row {} has {})",
            trace_path.display(),
            i + 2,
            series.values[i]
        ));
    }
    let trace = Trace {
        ts: series.ts.iter().map(|t| t * 1000).collect(),
        cpu: series.values.clone(),
        step_ms: series.step * 1000,
    };
    let bar = crate::progress_bar(
        trace.cpu.len() as u64,
        "{spinner} simulating [{bar:30}] {pos}/{len} steps ({eta})",
    );
    let mut timeline: Vec<TimelineRow> = Vec::new();
    let report = simulate(
        &trace,
        &scenario,
        policy,
        a.seed,
        a.timeline.as_ref().map(|_| &mut timeline),
        |i, _| {
            if i % 64 == 0 {
                bar.set_position(i as u64)
            }
        },
    )?;
    bar.finish_and_clear();
    if let Some(path) = &a.timeline {
        std::fs::write(path, timeline_csv(&scenario, &timeline, series.rfc3339))
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    match a.format {
        SimFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("serialisable")
        ),
        SimFormat::Table => print!("{}", table(&report)),
    }
    Ok(())
}

fn timeline_csv(scenario: &Scenario, rows: &[TimelineRow], rfc3339: bool) -> String {
    let mut out = String::from("timestamp,demand_cpu");
    for t in &scenario.tiers {
        let _ = write!(out, ",ready_cpu_{}", t.name);
    }
    for t in &scenario.tiers {
        let _ = write!(out, ",instances_{}", t.name);
    }
    out.push_str(",forecast_q10,forecast_q50,forecast_sla,cost_so_far\n");
    for r in rows {
        let _ = write!(
            out,
            "{},{}",
            crate::input::format_ts(r.ts / 1000, rfc3339),
            r.demand
        );
        for c in &r.ready_capacity {
            let _ = write!(out, ",{c}");
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
        let _ = writeln!(out, ",{:.4}", r.cost_so_far);
    }
    out
}

fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "policy {:?}: {} steps ({:.1} h), seed {}",
        r.policy, r.steps, r.hours, r.seed
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
    let _ = writeln!(s, "  budget breaches       {} steps", r.budget_breaches);
    if r.forecaster_fits > 0 {
        let _ = writeln!(s, "  forecaster fits       {}", r.forecaster_fits);
    }
    s
}
