//! What a workload's own history says prescale saved: over its last days of stored
//! demand, what prescale spent and how long its ready capacity fell short, next to what
//! Kubernetes' HPA would have spent and been short on the same demand (the simulator's
//! `reactive` policy with the workload's tiers and SLA, HPA's defaults), and the
//! oracle's floor.
//!
//! prescale's side is read from the series the engine stores at every pass:
//! `prescale_instances{workload,tier}` (held, ready or pending: billed from request) at
//! each tier's list price, and `prescale_capacity_vcpu{workload,tier}` against
//! `prescale_demand{workload}`, each step's demand holding over the step as the
//! simulator counts it. A workload's other dimensions (`prescale_demand_memory` and
//! the like) are compared too: the ready instances behind each pass's CPU capacity
//! provide them as their tier's shape says, a step is short when any dimension is, and
//! HPA, the oracle and what runs today are simulated over all of them.

use std::collections::BTreeMap;

use prescale_core::model::TierCount;
use prescale_core::{Allocation, Dim, SeriesKey, Tier, TimestampMs, Workload};
use prescale_orchestrate::engine::demand_key;
use prescale_orchestrate::simulate::{
    hpa_tier, reactive_matching, simulate, Policy, Scenario, Trace,
};
use prescale_store::Store;
use serde::Serialize;

/// Cost and shortfall of one way of running the workload over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    /// Dollars.
    pub cost: f64,
    /// Minutes in which ready capacity was below demand.
    pub underprovisioned_minutes: f64,
}

/// prescale against HPA and the oracle over the same stored demand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Start of the first step compared (ms).
    pub from: TimestampMs,
    /// End of the last (ms).
    pub to: TimestampMs,
    /// Steps of demand compared.
    pub steps: usize,
    /// The dimensions compared, CPU first (`cpu`, `memory`, `disk_iops`,
    /// `network_mbps`): the CPU and each of the workload's `dimensions` with demand
    /// stored while prescale ran it. A step is short when any of them is.
    pub dimensions: Vec<String>,
    /// Dimensions of the workload's left out of the comparison, with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dimensions_left_out: Vec<String>,
    /// What prescale did.
    pub prescale: Side,
    /// What HPA would have done, simulated.
    pub hpa: Side,
    /// HPA's target utilization in that simulation.
    pub hpa_target_utilization: f64,
    /// The tier HPA scales (one, as a Deployment's pods are alike).
    pub hpa_tier: String,
    /// HPA with its target utilization lowered a point at a time until it is short no
    /// longer than prescale was: what HPA costs for prescale's service level.
    pub hpa_matched: Matched,
    /// The cheapest capacity that would never have been short (a floor, not a policy).
    pub oracle_cost: f64,
    /// prescale's cost relative to HPA's, less one (-0.4: 40% cheaper).
    pub vs_hpa: f64,
    /// prescale's cost relative to the matched HPA's, less one.
    pub vs_matched_hpa: f64,
    /// What the workload actually had (its `actual` query, and each dimension's
    /// `actual`), priced as instances of the one tier HPA scales, as many as the
    /// dimension needing most of them asks for, and short where demand was above it:
    /// what runs today while prescale recommends. `None` without an `actual` query, or
    /// when none gave anything.
    pub as_run: Option<Side>,
    /// prescale's cost relative to that, less one.
    pub vs_as_run: Option<f64>,
    /// Why `as_run` is missing, or leaves a dimension out, although the workload has
    /// an `actual` query for it (each dimension's reason, `; `-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_run_error: Option<String>,
}

/// HPA tuned to prescale's shortfall.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Matched {
    /// Its target utilization.
    pub target_utilization: f64,
    /// What it cost and how long it was short.
    #[serde(flatten)]
    pub side: Side,
    /// Whether it was short no longer than prescale; if not even at a 5% target, the
    /// target at which it was short least.
    pub found: bool,
}

/// The series `name{workload=.., tier=..}` (or without the tier) over `[from, to]`.
pub(crate) fn series(
    store: &Store,
    name: &str,
    workload: &str,
    tier: Option<&str>,
    from: TimestampMs,
    to: TimestampMs,
) -> Result<Vec<(TimestampMs, f64)>, String> {
    let mut key = SeriesKey::metric(name)
        .map_err(|e| e.to_string())?
        .with_label("workload", workload.to_string());
    if let Some(t) = tier {
        key = key.with_label("tier", t.to_string());
    }
    Ok(store
        .range(&key, from, to)
        .map_err(|e| e.to_string())?
        .unwrap_or_default()
        .iter()
        .map(|s| (s.ts, s.value))
        .collect())
}

/// Dollars of `held` instances (sampled at each pass, each count kept until the next)
/// at `price` an hour between `from` and `to`.
pub(crate) fn spent(
    held: &[(TimestampMs, f64)],
    price: f64,
    from: TimestampMs,
    to: TimestampMs,
) -> f64 {
    held.iter()
        .enumerate()
        .map(|(i, &(t, n))| {
            let end = held.get(i + 1).map_or(to, |x| x.0).min(to);
            let start = t.max(from);
            n * price * (end - start).max(0) as f64 / 3_600_000.0
        })
        .sum()
}

/// Minutes in which `capacity` (sampled at each pass, each value kept until the next;
/// none before the first) was below `demand` (each step's value holding over
/// `[ts, ts + step_ms)`) in any dimension: both give one value per dimension, in the
/// same order.
pub(crate) fn minutes_short(
    demand: &[(TimestampMs, Vec<f64>)],
    capacity: &[(TimestampMs, Vec<f64>)],
    step_ms: i64,
) -> f64 {
    let short = |c: Option<&Vec<f64>>, d: &[f64]| match c {
        None => true,
        Some(c) => c.iter().zip(d).any(|(c, d)| c < d),
    };
    let mut short_ms = 0i64;
    for (t, d) in demand {
        let (t, end) = (*t, t + step_ms);
        // The capacity in force at t, then each change within the step.
        let mut at = t;
        let mut k = capacity.partition_point(|c| c.0 <= t);
        let mut c = k.checked_sub(1).map(|j| &capacity[j].1);
        while at < end {
            let next = capacity.get(k).map_or(end, |x| x.0.min(end));
            if short(c, d) {
                short_ms += next - at;
            }
            at = next;
            if let Some(x) = capacity.get(k).filter(|x| x.0 < end) {
                c = Some(&x.1);
                k += 1;
            }
        }
    }
    short_ms as f64 / 60_000.0
}

/// `samples` at each of `times`: a sample at the time itself, else the last one before
/// (the first ones the first sample); `None` when there is none.
fn at_times(samples: &[(TimestampMs, f64)], times: &[TimestampMs]) -> Option<Vec<f64>> {
    let first = samples.first()?.1;
    Some(
        times
            .iter()
            .map(|&t| {
                let k = samples.partition_point(|s| s.0 <= t);
                k.checked_sub(1).map_or(first, |j| samples[j].1)
            })
            .collect(),
    )
}

/// The instances `w` held on each of `tiers` (as each pass stored them) in `[from, to]`.
fn held_instances(
    store: &Store,
    tiers: &[Tier],
    w: &Workload,
    from: TimestampMs,
    to: TimestampMs,
) -> Result<Vec<Vec<(TimestampMs, f64)>>, String> {
    tiers
        .iter()
        .map(|t| {
            series(
                store,
                "prescale_instances",
                &w.name,
                Some(&t.name),
                from,
                to,
            )
        })
        .collect()
}

/// The stored demand of `w`'s other dimensions at `times` (a step missing holds the
/// last value before it), read over `[from, to]`; and those left out, with why.
#[allow(clippy::type_complexity)]
pub(crate) fn other_dimensions(
    store: &Store,
    w: &Workload,
    times: &[TimestampMs],
    from: TimestampMs,
    to: TimestampMs,
) -> Result<(Vec<(Dim, Vec<f64>)>, Vec<String>), String> {
    let mut others: Vec<(Dim, Vec<f64>)> = Vec::new();
    let mut left_out = Vec::new();
    for name in w.dimensions.keys() {
        let Some(d) = Dim::parse(name).filter(|d| *d != Dim::Cpu) else {
            left_out.push(format!("{name}: not a dimension prescale plans"));
            continue;
        };
        let stored = store
            .range(&demand_key(&w.name, d), from, to)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let stored: Vec<(TimestampMs, f64)> = stored.iter().map(|s| (s.ts, s.value)).collect();
        match at_times(&stored, times) {
            Some(v) => others.push((d, v)),
            None => left_out.push(format!(
                "{name}: no demand stored since prescale began running the workload (does `{}` match any series?)",
                w.dimensions[name].series
            )),
        }
    }
    Ok((others, left_out))
}

/// A trace of stored `demand` (and the `others` dimensions' and what ran, `actual`, at
/// its steps), its steps laid end to end from the first: a gap in what was stored (the
/// daemon stopped) is not replayed as demand.
pub(crate) fn end_to_end(
    demand: &[(TimestampMs, f64)],
    others: Vec<(Dim, Vec<f64>)>,
    actual: Vec<(Dim, Vec<f64>)>,
    step_ms: i64,
) -> Trace {
    let first = demand.first().map_or(0, |d| d.0);
    Trace {
        ts: (0..demand.len() as i64)
            .map(|i| first + i * step_ms)
            .collect(),
        cpu: demand.iter().map(|d| d.1).collect(),
        others,
        actual,
        step_ms,
    }
}

/// Each CPU demand step with the other dimensions' demand at it, CPU first.
fn with_others(
    cpu: &[(TimestampMs, f64)],
    others: &[(Dim, Vec<f64>)],
) -> Vec<(TimestampMs, Vec<f64>)> {
    cpu.iter()
        .enumerate()
        .map(|(i, &(t, c))| {
            let mut v = vec![c];
            v.extend(others.iter().map(|o| o.1[i]));
            (t, v)
        })
        .collect()
}

/// What prescale's own capacity for `w` cost over `[first, to)` (`held`: its
/// instances per tier, as [`held_instances`] reads them) and how long it was short of
/// `demand_at` (in `dims`' order), from the capacity each pass stored.
#[allow(clippy::too_many_arguments)]
fn own_side(
    store: &Store,
    tiers: &[Tier],
    w: &Workload,
    held: &[Vec<(TimestampMs, f64)>],
    dims: &[Dim],
    demand_at: &[(TimestampMs, Vec<f64>)],
    first: TimestampMs,
    to: TimestampMs,
) -> Result<Side, String> {
    let cost: f64 = tiers
        .iter()
        .zip(held)
        .map(|(t, h)| spent(h, t.price_per_hour, first, to))
        .sum();
    // Each pass's ready CPU as stored, and the ready instances behind it, which provide
    // the other dimensions (one no tier's shape states never limits).
    let mut passes: BTreeMap<TimestampMs, (f64, Allocation)> = BTreeMap::new();
    for t in tiers {
        for (ts, v) in series(
            store,
            "prescale_capacity_vcpu",
            &w.name,
            Some(&t.name),
            first - 3_600_000,
            to,
        )? {
            let (cpu, alloc) = passes.entry(ts).or_default();
            *cpu += v;
            // The stored capacity is what served (instances under notice included).
            let ready = (v / t.effective_capacity()).round() as u32;
            alloc.tiers.insert(
                t.name.clone(),
                TierCount {
                    ready,
                    ..TierCount::default()
                },
            );
        }
    }
    let ready: Vec<(TimestampMs, Vec<f64>)> = passes
        .into_iter()
        .map(|(ts, (cpu, alloc))| {
            let row = dims
                .iter()
                .map(|&d| match d {
                    Dim::Cpu => cpu,
                    d => alloc.ready_of(tiers, d).unwrap_or(f64::INFINITY),
                })
                .collect();
            (ts, row)
        })
        .collect();
    Ok(Side {
        cost,
        underprovisioned_minutes: minutes_short(demand_at, &ready, w.step_s as i64 * 1000),
    })
}

/// How a planned event went, from what prescale stored while it was on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventReview {
    /// Start of the first step reviewed (ms).
    pub from: TimestampMs,
    /// End of the last (ms): the event's end, or the last step so far.
    pub to: TimestampMs,
    /// Steps of demand stored in it.
    pub steps: usize,
    /// The highest CPU demand of a step in it (vCPU).
    pub peak_demand: f64,
    /// What prescale's capacity cost over it, and how long it was short of demand in
    /// any dimension.
    #[serde(flatten)]
    pub prescale: Side,
}

/// How planned event `[start, end)` of `w` went up to `now`: the steps of demand
/// stored from its start, what prescale's capacity cost over them and how long it was
/// short. `None` before it starts or where no step of it was stored.
pub fn review_event(
    store: &Store,
    tiers: &[Tier],
    w: &Workload,
    start: TimestampMs,
    end: TimestampMs,
    now: TimestampMs,
) -> Result<Option<EventReview>, String> {
    let step_ms = w.step_s as i64 * 1000;
    if start >= now {
        return Ok(None);
    }
    // The steps that start within it (stored by now: complete).
    let demand: Vec<(TimestampMs, f64)> =
        series(store, "prescale_demand", &w.name, None, start, end.min(now))?
            .into_iter()
            .filter(|&(t, _)| t < end)
            .collect();
    let Some(&(first, _)) = demand.first() else {
        return Ok(None);
    };
    let to = (demand[demand.len() - 1].0 + step_ms).min(end);
    let times: Vec<TimestampMs> = demand.iter().map(|d| d.0).collect();
    // The counts in force at its start were stored by a pass before it.
    let held = held_instances(store, tiers, w, first - 3_600_000, to)?;
    let (others, _) = other_dimensions(store, w, &times, first - 3_600_000, to)?;
    let dims: Vec<Dim> = std::iter::once(Dim::Cpu)
        .chain(others.iter().map(|o| o.0))
        .collect();
    let demand_at = with_others(&demand, &others);
    Ok(Some(EventReview {
        from: first,
        to,
        steps: demand.len(),
        peak_demand: demand.iter().map(|d| d.1).fold(f64::NEG_INFINITY, f64::max),
        prescale: own_side(store, tiers, w, &held, &dims, &demand_at, first, to)?,
    }))
}

/// prescale against HPA and the oracle over `w`'s stored demand in the `days` before
/// `now`, from prescale's first pass in them on. Fails, saying why, when prescale has
/// not run the workload then or fewer than two steps of demand followed.
pub fn compare(
    store: &Store,
    tiers: &[Tier],
    w: &Workload,
    days: f64,
    now: TimestampMs,
) -> Result<Comparison, String> {
    let step_ms = w.step_s as i64 * 1000;
    let from = now - (days * 86_400_000.0) as i64;
    // Only while prescale ran the workload: from its first pass in the window (demand
    // stored from before, a history it was given, had no capacity of prescale's).
    let held = held_instances(store, tiers, w, from, now)?;
    let began = held.iter().filter_map(|h| h.first().map(|x| x.0)).min();
    let began = began.ok_or_else(|| {
        format!(
            "prescale has not run {:?} in the last {days} day(s): nothing of its own to compare",
            w.name
        )
    })?;
    let demand: Vec<(TimestampMs, f64)> =
        series(store, "prescale_demand", &w.name, None, began, now)?;
    if demand.len() < 2 {
        return Err(format!(
            "{:?} has {} step(s) of stored demand since prescale began running it ({}): at least two are needed to compare",
            w.name,
            demand.len(),
            prescale_core::format_ts(began)
        ));
    }
    let (first, to) = (demand[0].0, demand[demand.len() - 1].0 + step_ms);
    let times: Vec<TimestampMs> = demand.iter().map(|d| d.0).collect();
    let single_tier = hpa_tier(tiers, w)
        .ok_or_else(|| format!("no tier serves {:?}, so HPA has none to scale", w.name))?;
    let (others, left_out) = other_dimensions(store, w, &times, began, now)?;
    let dims: Vec<Dim> = std::iter::once(Dim::Cpu)
        .chain(others.iter().map(|o| o.0))
        .collect();
    let demand_at = with_others(&demand, &others);
    let prescale = own_side(store, tiers, w, &held, &dims, &demand_at, first, to)?;
    // What the workload actually had at each step's start, per dimension it says.
    let mut queries: Vec<(Dim, &str)> = Vec::new();
    if let Some(q) = &w.actual {
        queries.push((Dim::Cpu, q));
    }
    for &d in &dims[1..] {
        if let Some(q) = w.dimensions.get(d.name()).and_then(|s| s.actual.as_deref()) {
            queries.push((d, q));
        }
    }
    let mut actual = Vec::new();
    let mut why_not = Vec::new();
    for (d, q) in queries {
        match crate::promql::series_at(store, q, &times, step_ms).map(|v| held_through(&v)) {
            Ok(Some(v)) => actual.push((d, v)),
            Ok(None) => why_not.push(format!(
                "`{q}` has no value while prescale ran the workload"
            )),
            Err(e) => why_not.push(format!("`{q}`: {e}")),
        }
    }
    let as_run_error = (!why_not.is_empty()).then(|| why_not.join("; "));
    // HPA and the oracle on the same demand, its steps laid end to end.
    let trace = end_to_end(&demand, others, actual, step_ms);
    let scenario = Scenario {
        tiers: tiers.to_vec(),
        workload: w.clone(),
        reactive: Default::default(),
        forecast: Default::default(),
        control: Default::default(),
        single_tier: single_tier.clone(),
    };
    // The search starts at HPA's own target: its first try is HPA as configured.
    let m = reactive_matching(
        &trace,
        &scenario,
        1,
        prescale.underprovisioned_minutes,
        |_, _| {},
    )?;
    let (target, short, cost) = m.tried[0];
    let oracle = simulate(&trace, &scenario, Policy::Oracle, 1, None, |_, _| {})?;
    let as_run = if trace.actual.is_empty() {
        None
    } else {
        let r = simulate(&trace, &scenario, Policy::AsRun, 1, None, |_, _| {})?;
        Some(Side {
            cost: r.cost_total,
            underprovisioned_minutes: r.underprovisioned_minutes,
        })
    };
    let against = |c: f64| {
        if c > 0.0 {
            prescale.cost / c - 1.0
        } else {
            0.0
        }
    };
    Ok(Comparison {
        from: first,
        to,
        steps: demand.len(),
        dimensions: dims.iter().map(|d| d.name().to_string()).collect(),
        dimensions_left_out: left_out,
        vs_hpa: against(cost),
        vs_matched_hpa: against(m.report.cost_total),
        vs_as_run: as_run.as_ref().map(|s| against(s.cost)),
        as_run,
        as_run_error,
        hpa: Side {
            cost,
            underprovisioned_minutes: short,
        },
        hpa_target_utilization: target,
        hpa_matched: Matched {
            target_utilization: m.report.reactive_target_utilization.unwrap_or(target),
            side: Side {
                cost: m.report.cost_total,
                underprovisioned_minutes: m.report.underprovisioned_minutes,
            },
            found: m.found,
        },
        prescale,
        hpa_tier: single_tier,
        oracle_cost: oracle.cost_total,
    })
}

/// `values` with each gap holding the value before it (the first ones the first value
/// known); `None` when there is none.
fn held_through(values: &[Option<f64>]) -> Option<Vec<f64>> {
    let mut last = values.iter().flatten().copied().find(|v| v.is_finite())?;
    Some(
        values
            .iter()
            .map(|v| {
                if let Some(x) = v.filter(|x| x.is_finite()) {
                    last = x.max(0.0);
                }
                last.max(0.0)
            })
            .collect(),
    )
}

/// How many days the comparisons kept as series cover (see [`record_all`]).
pub const RECORDED_DAYS: f64 = 7.0;

/// Keeps comparison `c` of workload `w` over `days`, made at `at`, as series, so PromQL
/// and Grafana can chart the money saved over time:
/// `prescale_compare_cost{workload,days,policy}` (dollars over the window; `policy` is
/// `prescale`, `hpa`, `hpa_matched`, `oracle` or, with an `actual` query, `as_run`),
/// `prescale_compare_short_minutes{workload,days,policy}` (all but the oracle) and
/// `prescale_compare_vs_hpa{workload,days}`, `prescale_compare_vs_matched_hpa` and
/// `prescale_compare_vs_as_run` (prescale's cost over theirs, less one: -0.2 is 20%
/// cheaper).
pub fn record(
    store: &Store,
    w: &str,
    days: f64,
    c: &Comparison,
    at: TimestampMs,
) -> Result<(), String> {
    let key = |name: &str, policy: Option<&str>| {
        let k = SeriesKey::metric(name)
            .expect("static name")
            .with_label("workload", w.to_string())
            .with_label("days", format!("{days}"));
        match policy {
            Some(p) => k.with_label("policy", p.to_string()),
            None => k,
        }
    };
    let one = |v: f64| vec![prescale_core::Sample { ts: at, value: v }];
    let mut out = Vec::new();
    for (policy, side) in [
        ("prescale", &c.prescale),
        ("hpa", &c.hpa),
        ("hpa_matched", &c.hpa_matched.side),
    ] {
        out.push((key("prescale_compare_cost", Some(policy)), one(side.cost)));
        out.push((
            key("prescale_compare_short_minutes", Some(policy)),
            one(side.underprovisioned_minutes),
        ));
    }
    out.push((
        key("prescale_compare_cost", Some("oracle")),
        one(c.oracle_cost),
    ));
    out.push((key("prescale_compare_vs_hpa", None), one(c.vs_hpa)));
    if let (Some(side), Some(vs)) = (&c.as_run, c.vs_as_run) {
        out.push((key("prescale_compare_cost", Some("as_run")), one(side.cost)));
        out.push((
            key("prescale_compare_short_minutes", Some("as_run")),
            one(side.underprovisioned_minutes),
        ));
        out.push((key("prescale_compare_vs_as_run", None), one(vs)));
    }
    out.push((
        key("prescale_compare_vs_matched_hpa", None),
        one(c.vs_matched_hpa),
    ));
    // A comparison that could not price a side (no cost) is not kept: NaN is refused.
    out.retain(|(_, s)| s[0].value.is_finite());
    store.append_many(&out).map_err(|e| e.to_string())?;
    Ok(())
}

/// Compares every workload over its last [`RECORDED_DAYS`] (or as much as there is)
/// at `now` and keeps each comparison ([`record`]); returns the workloads it could not
/// compare yet, with why.
pub fn record_all(
    store: &Store,
    tiers: &[Tier],
    workloads: &[Workload],
    now: TimestampMs,
) -> Vec<(String, String)> {
    let mut skipped = Vec::new();
    for w in workloads {
        let done = compare(store, tiers, w, RECORDED_DAYS, now)
            .and_then(|c| record(store, &w.name, RECORDED_DAYS, &c, now));
        if let Err(why) = done {
            skipped.push((w.name.clone(), why));
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortfall_counts_the_part_of_each_step_capacity_is_below_demand() {
        let one = |v: &[(i64, f64)]| -> Vec<(i64, Vec<f64>)> {
            v.iter().map(|&(t, x)| (t, vec![x])).collect()
        };
        // Steps of a minute: 10, 20, 10 vCPU. Capacity 15 until 90 s, then 25.
        let demand = one(&[(0, 10.0), (60_000, 20.0), (120_000, 10.0)]);
        let capacity = one(&[(0, 15.0), (90_000, 25.0)]);
        assert!((minutes_short(&demand, &capacity, 60_000) - 0.5).abs() < 1e-12);
        // None before the first pass: the first 30 s of the first step are short.
        let late = one(&[(30_000, 15.0)]);
        assert!((minutes_short(&demand[..1], &late, 60_000) - 0.5).abs() < 1e-12);
        // A dip within a step counts only while it lasts.
        let dip = one(&[(0, 30.0), (70_000, 5.0), (80_000, 30.0)]);
        let m = minutes_short(&demand, &dip, 60_000);
        assert!((m - 10.0 / 60.0).abs() < 1e-12, "{m}");
    }

    #[test]
    fn a_step_is_short_when_any_dimension_is() {
        // CPU and memory: the CPU always covered; memory 64 GiB until 90 s, then 128,
        // against 40, 100 and 40 GiB.
        let demand = vec![
            (0, vec![10.0, 40.0]),
            (60_000, vec![10.0, 100.0]),
            (120_000, vec![10.0, 40.0]),
        ];
        let capacity = vec![(0, vec![16.0, 64.0]), (90_000, vec![16.0, 128.0])];
        assert!((minutes_short(&demand, &capacity, 60_000) - 0.5).abs() < 1e-12);
        // A dimension no tier states is never short: infinite capacity.
        let unstated = vec![(0, vec![16.0, f64::INFINITY])];
        assert_eq!(minutes_short(&demand, &unstated, 60_000), 0.0);
    }

    #[test]
    fn stored_values_hold_until_the_next_at_each_step() {
        let s = [(60_000, 1.0), (180_000, 3.0)];
        let v = at_times(&s, &[0, 60_000, 120_000, 180_000, 240_000]).unwrap();
        assert_eq!(v, vec![1.0, 1.0, 1.0, 3.0, 3.0]);
        assert!(at_times(&[], &[0]).is_none());
    }

    /// A workload with a memory dimension, prescale's passes written by hand: an hour of
    /// two standard instances (8 vCPU, 32 GiB) against 4 vCPU and 20 GiB of demand, 40
    /// GiB from minute 10 to 20; what runs today has 8 vCPU and 48 GiB.
    #[test]
    fn every_dimension_of_a_workload_is_compared() {
        use prescale_core::config::Config;
        use prescale_core::{DimensionSource, Sample};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), prescale_store::Durability::Buffered).unwrap();
        let cfg = Config::default();
        let mut w = cfg.workloads[0].clone();
        w.name = "web".into();
        w.step_s = 60;
        let key = |name: &str, tier: Option<&str>| {
            let k = SeriesKey::metric(name)
                .unwrap()
                .with_label("workload", "web".to_string());
            tier.map_or(k.clone(), |t| k.with_label("tier", t.to_string()))
        };
        let put = |k: SeriesKey, ts: i64, value: f64| {
            store.append(&k, &[Sample { ts, value }]).unwrap();
        };
        for m in 0..60i64 {
            let ts = m * 60_000;
            for t in &cfg.tiers {
                let n = if t.name == "standard" { 2.0 } else { 0.0 };
                put(key("prescale_instances", Some(&t.name)), ts, n);
                put(
                    key("prescale_capacity_vcpu", Some(&t.name)),
                    ts,
                    n * t.effective_capacity(),
                );
            }
            put(key("prescale_demand", None), ts, 4.0);
            // No memory stored from 30 to 34: the value before holds.
            if !(30..35).contains(&m) {
                let gib = if (10..20).contains(&m) { 40.0 } else { 20.0 };
                put(key("prescale_demand_memory", None), ts, gib);
            }
            put(SeriesKey::metric("requests_cpu").unwrap(), ts, 8.0);
            put(SeriesKey::metric("requests_memory_gib").unwrap(), ts, 48.0);
        }
        let now = 3_600_000;
        let cpu_only = {
            let mut w = w.clone();
            w.actual = Some("sum(requests_cpu)".into());
            compare(&store, &cfg.tiers, &w, 1.0, now).unwrap()
        };
        assert_eq!(cpu_only.dimensions, vec!["cpu"]);
        assert_eq!(cpu_only.prescale.underprovisioned_minutes, 0.0);
        let mem = |actual: Option<&str>| DimensionSource {
            series: "memory_used_gib".into(),
            scale: 1.0,
            actual: actual.map(String::from),
        };
        w.actual = Some("sum(requests_cpu)".into());
        w.dimensions
            .insert("memory".into(), mem(Some("sum(requests_memory_gib)")));
        let c = compare(&store, &cfg.tiers, &w, 1.0, now).unwrap();
        assert_eq!(c.dimensions, vec!["cpu", "memory"]);
        assert!(c.dimensions_left_out.is_empty());
        assert_eq!(c.steps, 60);
        // prescale: $0.192 an hour twice over, short of memory for ten minutes.
        assert!((c.prescale.cost - 2.0 * 0.192).abs() < 1e-9);
        assert!((c.prescale.underprovisioned_minutes - 10.0).abs() < 1e-9);
        assert_eq!(cpu_only.prescale.cost, c.prescale.cost);
        // What runs today: 48 GiB takes three instances, which are never short.
        let ran = c.as_run.clone().unwrap();
        assert!((ran.cost - 3.0 * 0.192).abs() < 1e-9, "{}", ran.cost);
        assert_eq!(ran.underprovisioned_minutes, 0.0);
        assert!(c.as_run_error.is_none());
        // Its CPU alone says two, which the memory outgrows for those ten minutes.
        let cpu_ran = cpu_only.as_run.clone().unwrap();
        assert!((cpu_ran.cost - 2.0 * 0.192).abs() < 1e-9);
        let mut unknown_memory = w.clone();
        unknown_memory.dimensions.insert("memory".into(), mem(None));
        let u = compare(&store, &cfg.tiers, &unknown_memory, 1.0, now).unwrap();
        assert!((u.as_run.unwrap().underprovisioned_minutes - 10.0).abs() < 1e-9);
        // HPA and the oracle need more where memory binds.
        assert!(c.oracle_cost > cpu_only.oracle_cost);
        assert!(c.hpa.cost > cpu_only.hpa.cost);
        // A dimension with nothing stored is left out, saying why; a failing actual
        // query is named while the other dimensions' are priced.
        w.dimensions.insert(
            "disk_iops".into(),
            DimensionSource {
                series: "no_such_series".into(),
                scale: 1.0,
                actual: None,
            },
        );
        w.dimensions
            .insert("memory".into(), mem(Some("sum(no_such_requests)")));
        let c = compare(&store, &cfg.tiers, &w, 1.0, now).unwrap();
        assert_eq!(c.dimensions, vec!["cpu", "memory"]);
        assert_eq!(c.dimensions_left_out.len(), 1);
        assert!(
            c.dimensions_left_out[0].starts_with("disk_iops: no demand stored"),
            "{:?}",
            c.dimensions_left_out
        );
        let e = c.as_run_error.clone().unwrap();
        assert!(
            e.contains("sum(no_such_requests)") && e.contains("no value"),
            "{e}"
        );
        assert!((c.as_run.unwrap().underprovisioned_minutes - 10.0).abs() < 1e-9);
    }

    #[test]
    fn spending_holds_each_count_until_the_next_pass() {
        // 2 instances from 0, 4 from 30 min, at $1/h, over the first hour: 1 + 2.
        let held = [(0, 2.0), (1_800_000, 4.0)];
        assert!((spent(&held, 1.0, 0, 3_600_000) - 3.0).abs() < 1e-12);
        // Clipped to the window.
        assert!((spent(&held, 1.0, 900_000, 2_700_000) - 1.5).abs() < 1e-12);
    }
}
