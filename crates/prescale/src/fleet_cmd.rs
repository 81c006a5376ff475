//! `prescale simulate --fleet-trace` / `--fleet-query`: several workloads of a
//! configuration replayed together through the daemon's engine
//! ([`prescale_orchestrate::replay`]), each also alone on its trace under prescale and
//! under HPA, as a table, JSON, a timeline CSV or an HTML page of charts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use prescale_core::Dim;
use prescale_core::Tier;
use prescale_orchestrate::replay::{ReplayReport, ReplayRow};
use prescale_orchestrate::simulate::{Policy, Report, Scenario, Trace};

use crate::simulate_cmd::{
    change, html_escape, load_trace, with_progress, SimFormat, SimulateArgs, TIER_COLOURS,
};
use crate::svg::{grid_line, linear_ticks, path_through, tick_label, time_axis};

/// `--fleet-trace` and `--fleet-query`: the workloads named replayed together through
/// the engine, each also alone on its trace; with `--report`, a page of charts.
pub(crate) fn run(a: &SimulateArgs) -> Result<(), String> {
    let path = a.config.as_deref().expect("clap requires --config");
    if a.policy != "predictive" {
        return Err(format!(
            "a fleet replay runs the daemon's engine (predictive), each workload also alone under prescale and HPA (reactive): --policy {} does not apply",
            a.policy
        ));
    }
    let cfg = prescale_core::config::Config::load(path).map_err(|e| e.to_string())?;
    let queries = fleet_queries(&a.fleet_query, &cfg)?;
    // With queries, `--save-trace` is a directory: a NAME.csv for each workload read.
    let saved: Vec<(String, PathBuf)> = match &a.prometheus.save_trace {
        Some(dir) if queries.is_empty() => {
            return Err(format!(
                "--save-trace {} keeps what --fleet-query reads; the --fleet-trace files are kept already",
                dir.display()
            ))
        }
        Some(dir) => queries
            .keys()
            .map(|n| (n.clone(), dir.join(format!("{n}.csv"))))
            .collect(),
        None => Vec::new(),
    };
    // An output written over an input would lose the input once the run is over.
    let inputs: Vec<&Path> = std::iter::once(path)
        .chain(
            a.fleet_trace
                .iter()
                .filter_map(|s| Some(Path::new(s.split_once('=')?.1))),
        )
        .collect();
    let outputs = [("--timeline", &a.timeline), ("--report", &a.report)]
        .into_iter()
        .filter_map(|(flag, out)| Some((flag, out.as_deref()?)))
        .chain(saved.iter().map(|(_, out)| ("--save-trace", out.as_path())));
    for (flag, out) in outputs {
        let Ok(out) = std::fs::canonicalize(out) else {
            continue;
        };
        if inputs
            .iter()
            .any(|i| std::fs::canonicalize(i).is_ok_and(|i| i == out))
        {
            return Err(format!(
                "{flag} {} is a file the replay reads: it would be overwritten; write it elsewhere",
                out.display()
            ));
        }
    }
    if let Some(dir) = a.prometheus.save_trace.as_deref() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("--save-trace {}: cannot create: {e}", dir.display()))?;
    }
    let mut traces = Vec::new();
    // Timestamps as the first trace wrote them (RFC 3339 from a query API).
    let mut rfc3339 = None;
    for spec in &a.fleet_trace {
        let (name, file) = named(spec, "--fleet-trace", "FILE, the workload and its trace")?;
        let (trace, rfc) = load_trace(Path::new(file)).map_err(|e| format!("{name}: {e}"))?;
        rfc3339.get_or_insert(rfc);
        traces.push((name.to_string(), trace));
    }
    for (name, dims) in &queries {
        // The workload's demand alone, read as `--cpu`, `--memory`, `--disk-iops` and
        // `--network-mbps` would read it for one workload.
        let mut prom = a.prometheus.clone();
        let query = |d: Dim| dims.get(&d).cloned();
        (prom.cpu, prom.memory) = (query(Dim::Cpu), query(Dim::Memory));
        (prom.disk_iops, prom.network_mbps) = (query(Dim::Disk), query(Dim::Network));
        (prom.actual_cpu, prom.actual_memory) = (None, None);
        (prom.actual_disk_iops, prom.actual_network_mbps) = (None, None);
        prom.save_trace = saved
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone());
        let trace = crate::prom_trace::fetch(&prom).map_err(|e| format!("{name}: {e}"))?;
        rfc3339.get_or_insert(true);
        traces.push((name.clone(), trace));
    }
    // Demand far beyond what a workload's tiers hold is likely in the wrong unit.
    for (name, trace) in &traces {
        if let Ok(s) = prescale_orchestrate::simulate::Scenario::from_config(&cfg, Some(name)) {
            for w in crate::simulate_cmd::out_of_reach(trace, &s) {
                eprintln!("warning: {w}");
            }
        }
    }
    if !saved.is_empty() {
        let again: Vec<String> = saved
            .iter()
            .map(|(n, p)| format!("--fleet-trace {n}={}", p.display()))
            .chain(a.fleet_trace.iter().map(|s| format!("--fleet-trace {s}")))
            .collect();
        eprintln!(
            "note: the traces read are saved; replay them without the server with: --config {} {}",
            path.display(),
            again.join(" ")
        );
    }
    let (rc, notes) = prescale_orchestrate::replay::replay_config(&cfg, &traces, a.seed)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    for n in &notes {
        eprintln!("note: {n}");
    }
    let dir = tempfile::tempdir().map_err(|e| format!("a store for the replay: {e}"))?;
    let store = prescale_store::Store::open(dir.path(), prescale_store::Durability::Buffered)
        .map_err(|e| format!("a store for the replay: {e}"))?;
    let bar = crate::progress_bar(
        0,
        "{spinner} replaying the fleet through the engine [{bar:30}] {pos}/{len} passes ({eta})",
    );
    let mut rows = Vec::new();
    let report = prescale_orchestrate::replay::replay_fleet(
        &rc,
        &traces,
        store,
        (a.seed, a.pass_s),
        (a.report.is_some() || a.timeline.is_some()).then_some(&mut rows),
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let report = report?;
    // Each workload alone on its trace over the same time, under HPA and under
    // prescale's own replay of one workload (`--policy reactive` and `predictive`).
    let end = report.start + (report.hours * 3_600_000.0).round() as i64;
    let mut alone = BTreeMap::new();
    for (name, trace) in &traces {
        let scenario = Scenario::from_config(&cfg, Some(name))?;
        let trace = within(trace, report.start, end);
        let run = |policy: Policy, what: &str| {
            let label = format!("{what} {name:<10}");
            with_progress((&trace, &scenario, policy, a.seed), None, &label)
        };
        alone.insert(
            name.clone(),
            Alone {
                hpa: run(Policy::Reactive, "HPA alone on")?,
                hpa_target: scenario.reactive.target_utilization,
                predictive: run(Policy::Predictive, "prescale alone on")?,
            },
        );
    }
    let names: Vec<&str> = traces.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(path) = &a.timeline {
        let csv = timeline_csv(&rc.tiers, &names, &rows, rfc3339.unwrap_or(false));
        std::fs::write(path, csv).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    if let Some(path) = &a.report {
        let page = html(
            &rc.tiers,
            &names,
            &rows,
            &fleet_table(&report, &alone, a.seed),
        );
        std::fs::write(path, page).map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    match a.format {
        SimFormat::Json => {
            let out = serde_json::json!({ "replay": report, "alone": alone, "notes": notes });
            println!(
                "{}",
                serde_json::to_string_pretty(&out).expect("serialisable")
            );
        }
        SimFormat::Table => print!("{}", fleet_table(&report, &alone, a.seed)),
    }
    Ok(())
}

/// The `--fleet-query` specs grouped by workload: NAME=PROMQL its CPU demand in vCPU,
/// NAME.memory=PROMQL (and `.disk_iops`, `.network_mbps`) its other dimensions.
fn fleet_queries(
    specs: &[String],
    cfg: &prescale_core::config::Config,
) -> Result<BTreeMap<String, BTreeMap<Dim, String>>, String> {
    let mut out: BTreeMap<String, BTreeMap<Dim, String>> = BTreeMap::new();
    for spec in specs {
        let (left, query) = named(
            spec,
            "--fleet-query",
            "PROMQL, the workload and its CPU demand's query (NAME.memory=PROMQL, NAME.disk_iops or NAME.network_mbps another dimension's)",
        )?;
        // A workload of that very name first; else NAME.DIMENSION.
        let known = |n: &str| cfg.workloads.iter().any(|w| w.name == n);
        let (name, dim) = match left.rsplit_once('.') {
            Some((n, d)) if !known(left) => match Dim::parse(d) {
                Some(dim) => (n, dim),
                None => {
                    let dims: Vec<&str> = Dim::ALL.iter().map(|d| d.name()).collect();
                    return Err(format!(
                        "--fleet-query {left}=...: {d:?} is not a dimension; give NAME=PROMQL for CPU or NAME.DIMENSION=PROMQL, DIMENSION one of {}",
                        dims.join(", ")
                    ));
                }
            },
            _ => (left, Dim::Cpu),
        };
        if out
            .entry(name.to_string())
            .or_default()
            .insert(dim, query.to_string())
            .is_some()
        {
            return Err(format!(
                "--fleet-query gives workload {name}'s {} twice; give each dimension once",
                dim.name()
            ));
        }
    }
    for (name, dims) in &out {
        if !dims.contains_key(&Dim::Cpu) {
            return Err(format!(
                "--fleet-query gives workload {name}'s other dimensions but not its CPU: add --fleet-query {name}=PROMQL, its CPU demand in vCPU"
            ));
        }
    }
    Ok(out)
}

/// `spec` of `flag` as NAME=VALUE, both given; otherwise an error saying to give
/// NAME=`what`.
fn named<'a>(spec: &'a str, flag: &str, what: &str) -> Result<(&'a str, &'a str), String> {
    spec.split_once('=')
        .filter(|(n, v)| !n.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("{flag} {spec}: give NAME={what}"))
}

/// One workload replayed alone on its trace over the fleet replay's time.
#[derive(serde::Serialize)]
struct Alone {
    /// Under HPA at its target.
    hpa: Report,
    /// HPA's target utilization.
    hpa_target: f64,
    /// Under prescale alone in its tiers and under its own budgets only.
    predictive: Report,
}

/// The steps of `tr` from `start` to before `end`.
fn within(tr: &Trace, start: i64, end: i64) -> Trace {
    let (a, b) = (
        tr.ts.partition_point(|t| *t < start),
        tr.ts.partition_point(|t| *t < end),
    );
    let part = |v: &[(Dim, Vec<f64>)]| v.iter().map(|(d, x)| (*d, x[a..b].to_vec())).collect();
    Trace {
        ts: tr.ts[a..b].to_vec(),
        cpu: tr.cpu[a..b].to_vec(),
        others: part(&tr.others),
        actual: part(&tr.actual),
        step_ms: tr.step_ms,
    }
}

/// The fleet replay's table: each workload's cost and minutes short beside HPA's, then
/// the fleet's budget and pools.
fn fleet_table(r: &ReplayReport, alone: &BTreeMap<String, Alone>, seed: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} workload(s) replayed together through the engine from {}: {:.1} h, a pass every {} s, seed {seed}",
        r.workloads.len(),
        prescale_core::format_ts(r.start),
        r.hours,
        r.pass_s
    );
    let _ = writeln!(
        out,
        "{:<14} {:>30} {:>30} {:>36} {:>7} {:>10} {:>10}",
        "", "together", "alone", "HPA alone", "", "", ""
    );
    let _ = writeln!(
        out,
        "{:<14} {:>11} {:>18} {:>11} {:>18} {:>17} {:>18} {:>7} {:>10} {:>10}",
        "workload",
        "cost",
        "short",
        "cost",
        "short",
        "cost",
        "short",
        "vs HPA",
        "fleet cut",
        "claiming"
    );
    let minutes = r.hours * 60.0;
    let short = |m: f64| format!("{m:.0} min ({:.2}%)", 100.0 * m / minutes.max(1e-9));
    let mut sums = [0.0; 6];
    for (name, w) in &r.workloads {
        let a = &alone[name];
        for (s, v) in sums.iter_mut().zip([
            w.cost_total,
            w.underprovisioned_minutes,
            a.predictive.cost_total,
            a.predictive.underprovisioned_minutes,
            a.hpa.cost_total,
            a.hpa.underprovisioned_minutes,
        ]) {
            *s += v;
        }
        let _ = writeln!(
            out,
            "{:<14} {:>11} {:>18} {:>11} {:>18} {:>17} {:>18} {:>7} {:>10} {:>10}",
            name,
            format!("${:.2}", w.cost_total),
            short(w.underprovisioned_minutes),
            format!("${:.2}", a.predictive.cost_total),
            short(a.predictive.underprovisioned_minutes),
            format!("${:.2} ({:.0}%)", a.hpa.cost_total, a.hpa_target * 100.0),
            short(a.hpa.underprovisioned_minutes),
            change(w.cost_total, a.hpa.cost_total).unwrap_or_else(|| "-".into()),
            format!("{:.0} min", w.fleet_cut_minutes),
            format!("{:.0} min", w.claiming_minutes),
        );
    }
    let _ = writeln!(
        out,
        "{:<14} {:>11} {:>18} {:>11} {:>18} {:>17} {:>18} {:>7}",
        "all",
        format!("${:.2}", sums[0]),
        format!("{:.0} min", sums[1]),
        format!("${:.2}", sums[2]),
        format!("{:.0} min", sums[3]),
        format!("${:.2}", sums[4]),
        format!("{:.0} min", sums[5]),
        change(sums[0], sums[4]).unwrap_or_else(|| "-".into()),
    );
    let tiers: Vec<String> = r
        .cost_per_tier
        .iter()
        .map(|(t, c)| format!("{t} ${c:.2}"))
        .collect();
    let _ = writeln!(out, "cost per tier: {}", tiers.join(", "));
    match r.fleet_cap_per_hour {
        Some(cap) => {
            let _ = writeln!(
                out,
                "fleet budget ${cap:.2}/h in force at the end: held above the cap in force {:.0} min, at most ${:.2}/h",
                r.fleet_over_budget_minutes, r.fleet_peak_cost_per_hour
            );
        }
        None => {
            let _ = writeln!(
                out,
                "no fleet budget: the fleet held at most ${:.2}/h",
                r.fleet_peak_cost_per_hour
            );
        }
    }
    let full: Vec<String> = r
        .tier_full_minutes
        .iter()
        .filter(|(_, m)| **m > 0.0)
        .map(|(t, m)| format!("{t} {m:.0} min"))
        .collect();
    let _ = writeln!(
        out,
        "tiers at their max_instances: {}",
        if full.is_empty() {
            "never".to_string()
        } else {
            full.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "actions {}, refused {}, spot interruptions {}; alone, each workload has every tier to itself and no fleet budget",
        r.actions, r.refused, r.interruptions
    );
    out
}

/// The fleet replay's timeline: a row per pass and workload, with the fleet's budget in
/// force and each tier's instances over every workload repeated on each (long form, as
/// pandas or a spreadsheet's pivot reads it).
fn timeline_csv(tiers: &[Tier], names: &[&str], rows: &[ReplayRow], rfc3339: bool) -> String {
    let mut out = String::from("timestamp,workload,demand_cpu");
    for t in tiers {
        let _ = write!(out, ",ready_cpu_{}", t.name);
    }
    out.push_str(",cost_per_hour,short_minutes,fleet_cap_per_hour");
    for t in tiers {
        let _ = write!(out, ",fleet_instances_{}", t.name);
    }
    out.push('\n');
    for r in rows {
        let ts = crate::input::format_ts(r.ts / 1000, rfc3339);
        for (name, w) in names.iter().zip(&r.workloads) {
            let _ = write!(out, "{ts},{name},{}", w.demand);
            for v in &w.ready {
                let _ = write!(out, ",{v}");
            }
            let _ = write!(out, ",{:.4},{},", w.cost_per_hour, w.short_minutes);
            if let Some(c) = r.cap_per_hour {
                let _ = write!(out, "{c:.4}");
            }
            for n in &r.held {
                let _ = write!(out, ",{n}");
            }
            out.push('\n');
        }
    }
    out
}

/// Colours of the workloads' areas in the cost chart.
const WORKLOAD_COLOURS: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f",
];

/// A chart's area: its label, colour and value at each column.
type Area = (String, &'static str, Vec<f64>);
/// A chart's line: its label, colour, whether dashed, and value at each column.
type Line = (String, &'static str, bool, Vec<f64>);

/// An SVG of `areas` stacked and `lines` over them, at the columns' times `ts`, with a
/// legend under it.
fn chart(label: &str, ts: &[i64], areas: &[Area], lines: &[Line]) -> String {
    let (w, h, pad) = (1100.0, 300.0, 48.0);
    let n = ts.len();
    let mut tops = vec![0.0; n];
    for (_, _, v) in areas {
        for (t, x) in tops.iter_mut().zip(v) {
            *t += x;
        }
    }
    let ymax = lines
        .iter()
        .flat_map(|l| l.3.iter().copied())
        .chain(tops.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1e-9, f64::max)
        * 1.05;
    let x = |i: usize| pad + (w - 2.0 * pad) * i as f64 / (n.max(2) - 1) as f64;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * v / ymax;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        html_escape(label)
    );
    let mut base = vec![0.0; n];
    for (_, colour, v) in areas {
        let top: Vec<f64> = base.iter().zip(v).map(|(b, x)| b + x).collect();
        let d = path_through(
            top.iter()
                .enumerate()
                .map(|(i, v)| (x(i), y(*v)))
                .chain((0..n).rev().map(|i| (x(i), y(base[i])))),
        );
        let _ = write!(
            svg,
            "<path d=\"{d}Z\" fill=\"{colour}\" fill-opacity=\"0.75\" stroke=\"none\"/>"
        );
        base = top;
    }
    for (_, colour, dashed, v) in lines {
        // A line is drawn where it has a value (a budget only while one is in force).
        let mut seg: Vec<(f64, f64)> = Vec::new();
        let dash = if *dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let flush = |seg: &mut Vec<(f64, f64)>, svg: &mut String| {
            if seg.len() > 1 {
                let _ = write!(
                    svg,
                    "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.4\"{dash}/>",
                    path_through(seg.iter().copied())
                );
            }
            seg.clear();
        };
        for (i, v) in v.iter().enumerate() {
            if v.is_finite() {
                seg.push((x(i), y(*v)));
            } else {
                flush(&mut seg, &mut svg);
            }
        }
        flush(&mut seg, &mut svg);
    }
    let (ticks, step) = linear_ticks(ymax, 5);
    for v in ticks {
        grid_line(&mut svg, w, pad, y(v), &tick_label(v, step), "#ddd");
    }
    time_axis(
        &mut svg,
        w,
        h,
        pad,
        ts.first().copied().unwrap_or(0),
        ts.last().copied().unwrap_or(0),
    );
    let mut legend = String::from("<div class=\"legend\">");
    for (name, colour, _) in areas {
        let _ = write!(
            legend,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            html_escape(name)
        );
    }
    for (name, colour, dashed, _) in lines {
        let _ = write!(
            legend,
            "<span><i style=\"background:{colour}{}\"></i>{}</span>",
            if *dashed {
                ";height:3px"
            } else {
                ";height:2px"
            },
            html_escape(name)
        );
    }
    legend.push_str("</div>");
    svg + &legend
}

/// At most ~1,500 columns: the row of each bucket that `worst` ranks highest, so a
/// shortfall, a cost peak or a full pool stays visible.
fn columns(rows: &[ReplayRow], worst: impl Fn(&ReplayRow) -> f64) -> Vec<&ReplayRow> {
    let bucket = rows.len().div_ceil(1500).max(1);
    rows.chunks(bucket)
        .filter_map(|c| c.iter().max_by(|a, b| worst(a).total_cmp(&worst(b))))
        .collect()
}

/// The fleet replay's page: the table, then each workload's demand against its ready
/// capacity stacked by tier, the fleet's cost stacked by workload against the budget
/// in force, and each tier's instances held over every workload against its maximum.
pub(crate) fn html(tiers: &[Tier], names: &[&str], rows: &[ReplayRow], table: &str) -> String {
    let mut charts = String::new();
    for (k, name) in names.iter().enumerate() {
        let cols = columns(rows, |x| {
            let w = &x.workloads[k];
            w.demand - w.ready.iter().sum::<f64>()
        });
        let ts: Vec<i64> = cols.iter().map(|x| x.ts).collect();
        let areas: Vec<Area> = tiers
            .iter()
            .enumerate()
            .map(|(j, t)| {
                (
                    format!("ready on {}", t.name),
                    TIER_COLOURS[j % TIER_COLOURS.len()],
                    cols.iter().map(|x| x.workloads[k].ready[j]).collect(),
                )
            })
            .collect();
        let demand: Line = (
            "demand".into(),
            "#222",
            false,
            cols.iter().map(|x| x.workloads[k].demand).collect(),
        );
        let _ = write!(
            charts,
            "<h2>{}: demand and ready capacity, vCPU</h2>{}",
            html_escape(name),
            chart(
                &format!("{name}: demand and ready capacity by tier"),
                &ts,
                &areas,
                &[demand]
            )
        );
    }
    let cols = columns(rows, |x| x.workloads.iter().map(|w| w.cost_per_hour).sum());
    let ts: Vec<i64> = cols.iter().map(|x| x.ts).collect();
    let areas: Vec<Area> = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            (
                name.to_string(),
                WORKLOAD_COLOURS[k % WORKLOAD_COLOURS.len()],
                cols.iter().map(|x| x.workloads[k].cost_per_hour).collect(),
            )
        })
        .collect();
    let mut lines: Vec<Line> = Vec::new();
    if cols.iter().any(|x| x.cap_per_hour.is_some()) {
        lines.push((
            "fleet budget in force".into(),
            "#c0392b",
            true,
            cols.iter()
                .map(|x| x.cap_per_hour.unwrap_or(f64::NAN))
                .collect(),
        ));
    }
    let _ = write!(
        charts,
        "<h2>The fleet's cost by workload, $/h</h2>{}",
        chart(
            "the fleet's cost per hour by workload, and its budget",
            &ts,
            &areas,
            &lines
        )
    );
    for (j, t) in tiers.iter().enumerate() {
        let cols = columns(rows, |x| x.held[j] as f64);
        let ts: Vec<i64> = cols.iter().map(|x| x.ts).collect();
        let held: Area = (
            format!("{} instances held, every workload", t.name),
            TIER_COLOURS[j % TIER_COLOURS.len()],
            cols.iter().map(|x| x.held[j] as f64).collect(),
        );
        let max: Line = (
            "max_instances".into(),
            "#c0392b",
            true,
            vec![t.max_instances as f64; cols.len()],
        );
        let _ = write!(
            charts,
            "<h2>{}: the pool</h2>{}",
            html_escape(&t.name),
            chart(
                &format!("{}: instances held against max_instances", t.name),
                &ts,
                &[held],
                &[max]
            )
        );
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>prescale simulate: fleet replay</title><style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}h2{{font-size:16px;margin-top:28px}}.legend span{{margin-right:16px;font-size:12px}}.legend i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}pre{{background:#f6f6f6;padding:12px;overflow-x:auto}}</style></head><body><h1>prescale simulate: workloads replayed together through the engine</h1><pre>{}</pre><p>Each column is the pass of its bucket where the chart's measure is worst (the widest shortfall, the highest cost, the fullest pool), so none is averaged away.</p>{charts}</body></html>\n",
        html_escape(table)
    )
}
