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
//! simulator counts it.

use std::collections::BTreeMap;

use prescale_core::{Dim, SeriesKey, Tier, TimestampMs, Workload};
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
    /// What the workload actually had (its `actual` query), priced as the one tier HPA
    /// scales and short where demand was above it: what runs today while prescale
    /// recommends. `None` without an `actual` query, or when it gave nothing.
    pub as_run: Option<Side>,
    /// prescale's cost relative to that, less one.
    pub vs_as_run: Option<f64>,
    /// Why `as_run` is missing although the workload has an `actual` query.
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
fn series(
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
/// `[ts, ts + step_ms)`).
pub(crate) fn minutes_short(
    demand: &[(TimestampMs, f64)],
    capacity: &[(TimestampMs, f64)],
    step_ms: i64,
) -> f64 {
    let mut short_ms = 0i64;
    for &(t, d) in demand {
        let end = t + step_ms;
        // The capacity in force at t, then each change within the step.
        let mut at = t;
        let mut k = capacity.partition_point(|c| c.0 <= t);
        let mut c = k.checked_sub(1).map_or(0.0, |j| capacity[j].1);
        while at < end {
            let next = capacity.get(k).map_or(end, |x| x.0.min(end));
            if c < d {
                short_ms += next - at;
            }
            at = next;
            if let Some(x) = capacity.get(k).filter(|x| x.0 < end) {
                c = x.1;
                k += 1;
            }
        }
    }
    short_ms as f64 / 60_000.0
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
    let held = tiers
        .iter()
        .map(|t| {
            series(
                store,
                "prescale_instances",
                &w.name,
                Some(&t.name),
                from,
                now,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
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
    let single_tier = hpa_tier(tiers, w)
        .ok_or_else(|| format!("no tier serves {:?}, so HPA has none to scale", w.name))?;
    // prescale: what it held and what it had ready, pass by pass.
    let cost: f64 = tiers
        .iter()
        .zip(&held)
        .map(|(t, h)| spent(h, t.price_per_hour, first, to))
        .sum();
    let mut ready: BTreeMap<TimestampMs, f64> = BTreeMap::new();
    for t in tiers {
        for (ts, v) in series(
            store,
            "prescale_capacity_vcpu",
            &w.name,
            Some(&t.name),
            first - 3_600_000,
            to,
        )? {
            *ready.entry(ts).or_default() += v;
        }
    }
    let ready: Vec<(TimestampMs, f64)> = ready.into_iter().collect();
    let prescale = Side {
        cost,
        underprovisioned_minutes: minutes_short(&demand, &ready, step_ms),
    };
    // What the workload actually had at each step's start, where it says.
    let (actual, as_run_error) = match &w.actual {
        None => (None, None),
        Some(q) => {
            let times: Vec<TimestampMs> = demand.iter().map(|d| d.0).collect();
            match crate::promql::series_at(store, q, &times, step_ms).map(|v| held_through(&v)) {
                Ok(Some(v)) => (Some(v), None),
                Ok(None) => (
                    None,
                    Some(format!(
                        "`{q}` has no value while prescale ran the workload"
                    )),
                ),
                Err(e) => (None, Some(format!("`{q}`: {e}"))),
            }
        }
    };
    // HPA and the oracle on the same demand, its steps laid end to end.
    let trace = Trace {
        ts: (0..demand.len() as i64)
            .map(|i| first + i * step_ms)
            .collect(),
        cpu: demand.iter().map(|d| d.1).collect(),
        others: Vec::new(),
        // The query gives vCPU, as the demand compared is CPU.
        actual: actual.map(|v| vec![(Dim::Cpu, v)]).unwrap_or_default(),
        step_ms,
    };
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
        // Steps of a minute: 10, 20, 10 vCPU. Capacity 15 until 90 s, then 25.
        let demand = [(0, 10.0), (60_000, 20.0), (120_000, 10.0)];
        let capacity = [(0, 15.0), (90_000, 25.0)];
        assert!((minutes_short(&demand, &capacity, 60_000) - 0.5).abs() < 1e-12);
        // None before the first pass: the first 30 s of the first step are short.
        let late = [(30_000, 15.0)];
        assert!((minutes_short(&demand[..1], &late, 60_000) - 0.5).abs() < 1e-12);
        // A dip within a step counts only while it lasts.
        let dip = [(0, 30.0), (70_000, 5.0), (80_000, 30.0)];
        let m = minutes_short(&demand, &dip, 60_000);
        assert!((m - 10.0 / 60.0).abs() < 1e-12, "{m}");
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
