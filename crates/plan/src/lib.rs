//! The planner: turns a workload's forecast distribution into instances per tier.
//!
//! This is the spec's baseline rule, made explicit and safe:
//! 1. take the SLA quantile of forecast demand (e.g. q0.95) and divide by the target
//!    utilization to get the effective capacity needed;
//! 2. over the window that capacity requested now must cover (until the slowest tier's
//!    lead time plus one control interval has passed), take the peak of that need;
//! 3. fill it from the eligible tiers, cheapest per effective unit first, where a tier
//!    supplies `need / (vcpu × performance_factor)` instances: spot only up to the
//!    workload's spot share, no tier beyond its `max_instances`, and at least its
//!    `min_instances`;
//! 4. if the result costs more than the hourly budget, drop the dearest capacity until it
//!    fits and say that the SLA is not met.
//!
//! 5. chance constraint: counting the spot capacity that interruptions may take away
//!    before replacements serve, the chance that demand at the peak step exceeds
//!    capacity must stay within `1 - sla_quantile`; cheapest on-demand instances are
//!    added until it does (see [`shortfall_risk`]).
//!
//! Every plan says which constraint bound it, the risk it runs, the alternative it
//! rejected and why, in words. Multi-dimension planning comes with the tier-mapping issue.

use std::collections::BTreeMap;
use std::ops::Range;

use prescale_core::{
    format_ts, Dim, Forecast, Plan, PlanStep, PlannedEvent, Tier, TierClass, TimestampMs, Workload,
};

/// Tiers the workload may use, cheapest effective unit first.
pub fn eligible_tiers<'a>(w: &Workload, catalog: &'a [Tier]) -> Vec<&'a Tier> {
    let mut v: Vec<&Tier> = catalog.iter().filter(|t| t.serves(w)).collect();
    v.sort_by(|a, b| {
        a.unit_price()
            .total_cmp(&b.unit_price())
            .then(a.name.cmp(&b.name))
    });
    v
}

/// The outcome of filling one capacity need.
#[derive(Debug, Clone, PartialEq)]
pub struct Fill {
    /// Instances per tier (every eligible tier present, zero included).
    pub instances: BTreeMap<String, u32>,
    /// Effective capacity provided.
    pub capacity: f64,
    /// Cost per hour.
    pub cost_per_hour: f64,
    /// `sla` when the need is met within every limit, else the limit that stopped it.
    pub binding: &'static str,
    /// Notes for the explanation.
    pub notes: Vec<String>,
}

impl Fill {
    /// The effective capacity it holds on spot, of `tiers`.
    fn spot_capacity(&self, tiers: &[&Tier]) -> f64 {
        tiers
            .iter()
            .filter(|t| t.class == TierClass::Spot)
            .map(|t| self.instances[&t.name] as f64 * t.effective_capacity())
            .sum()
    }
}

/// Whether one more spot instance of effective capacity `e` keeps spot (`spot` of
/// `capacity` now) within the workload's share of the capacity the plan ends up with.
fn spot_fits(w: &Workload, spot: f64, capacity: f64, e: f64) -> bool {
    spot + e <= w.max_spot_share * (capacity + e) + 1e-9
}

/// What a plan says of a tier its `max_instances` (`max`) capped: a caller that lowered
/// the maximum (the engine, to what the other workloads leave of a pool) finds the tiers
/// that bound by it.
pub fn capped_words(tier: &str, max: u32) -> String {
    format!("{tier} capped at {max} instance(s) (max_instances)")
}

/// Fills an effective capacity `need` from `tiers` (already sorted cheapest first).
pub fn fill(need: f64, tiers: &[&Tier], w: &Workload) -> Fill {
    let need = need.max(0.0);
    // Instances per tier, by the tiers' order (their names are unique).
    let mut n: Vec<u32> = Vec::with_capacity(tiers.len());
    let mut remaining = need;
    let mut capacity = 0.0;
    let mut notes = Vec::new();
    let mut spot_allowance = need * w.max_spot_share;
    for t in tiers {
        let eff = t.effective_capacity();
        let mut k = if t.class == TierClass::Spot {
            // Spot never carries more than its share: round down.
            let k = (spot_allowance.min(remaining) / eff).floor() as u32;
            spot_allowance -= k as f64 * eff;
            k
        } else {
            (remaining / eff - 1e-9).ceil().max(0.0) as u32
        };
        if k > t.max_instances {
            notes.push(capped_words(&t.name, t.max_instances));
            k = t.max_instances;
        }
        k = k.max(t.min_instances);
        remaining -= k as f64 * eff;
        capacity += k as f64 * eff;
        n.push(k);
    }
    if remaining > 1e-9 {
        // Spot was rounded down within its share of the need; where on demand could not
        // take the rest (no on-demand tier, or each at its maximum), spot takes what its
        // share of the capacity allows (a workload on spot alone: all of it).
        let mut spot: f64 = tiers
            .iter()
            .zip(&n)
            .filter(|(t, _)| t.class == TierClass::Spot)
            .map(|(t, k)| *k as f64 * t.effective_capacity())
            .sum();
        for (t, k) in tiers.iter().zip(n.iter_mut()) {
            let e = t.effective_capacity();
            while t.class == TierClass::Spot
                && remaining > 1e-9
                && *k < t.max_instances
                && spot_fits(w, spot, capacity, e)
            {
                *k += 1;
                (spot, capacity, remaining) = (spot + e, capacity + e, remaining - e);
            }
        }
    }
    if remaining <= 1e-9 {
        capacity = spot_within_capacity_share(need, capacity, &mut n, tiers, w);
        remaining = need - capacity;
    }
    let mut binding = "sla";
    if remaining > 1e-9 {
        binding = "max_instances";
        notes.push(format!(
            "{remaining:.2} vCPU of need left uncovered: every eligible tier is at its maximum"
        ));
    }
    let mut cost: f64 = tiers
        .iter()
        .zip(&n)
        .map(|(t, k)| *k as f64 * t.price_per_hour)
        .sum();
    if let Some(budget) = w.budget_per_hour {
        if cost > budget + 1e-12 {
            // Least-bad rule: remove the dearest effective units first, keeping as much
            // capacity as the budget buys.
            for (t, k) in tiers.iter().zip(n.iter_mut()).rev() {
                while cost > budget + 1e-12 && *k > t.min_instances {
                    *k -= 1;
                    cost -= t.price_per_hour;
                    capacity -= t.effective_capacity();
                }
            }
            binding = "budget";
            notes.push(format!(
                "budget ${budget:.2}/h cannot buy the SLA: capacity cut to {capacity:.1} of {need:.1} needed vCPU (dearest units dropped first)"
            ));
        }
    }
    // The workload's floor (HPA's minReplicas), on the cheapest on-demand tiers first,
    // within the budget: a budget is a limit the user set, and it binds first.
    let held: u32 = n.iter().sum();
    if held < w.min_instances {
        let mut short = w.min_instances - held;
        let affordable = |t: &Tier, cost: f64| {
            w.budget_per_hour
                .is_none_or(|b| cost + t.price_per_hour <= b + 1e-12)
        };
        let spot = |k: &usize| tiers[*k].class == TierClass::Spot;
        let on_demand = (0..tiers.len()).filter(|k| !spot(k));
        for k in on_demand.chain((0..tiers.len()).filter(spot)) {
            let t = tiers[k];
            while short > 0 && n[k] < t.max_instances && affordable(t, cost) {
                n[k] += 1;
                short -= 1;
                cost += t.price_per_hour;
                capacity += t.effective_capacity();
            }
        }
        let added = w.min_instances - held - short;
        if added > 0 {
            notes.push(format!(
                "held at the workload's min_instances = {}: {added} instance(s) added above the need",
                w.min_instances
            ));
            if binding == "sla" {
                binding = "min_instances";
            }
        }
        if short > 0 {
            // What stopped it: a tier with room that the budget could not pay for, or
            // every tier at its maximum (which then decided the plan).
            let room = tiers.iter().zip(&n).any(|(t, k)| *k < t.max_instances);
            let why = match w.budget_per_hour {
                Some(b) if room => format!("the ${b:.2}/h budget buys no more"),
                _ => {
                    if matches!(binding, "sla" | "min_instances") {
                        binding = "max_instances";
                    }
                    "its tiers are at their max_instances".into()
                }
            };
            notes.push(format!(
                "{} instance(s) short of the workload's min_instances = {}: {why}",
                short, w.min_instances,
            ));
        }
    }
    Fill {
        instances: tiers
            .iter()
            .zip(n)
            .map(|(t, k)| (t.name.clone(), k))
            .collect(),
        capacity,
        cost_per_hour: cost,
        binding,
        notes,
    }
}

/// Moves on-demand capacity onto spot where that is cheaper and keeps `need` covered,
/// with spot within `max_spot_share` of the capacity the fill ends up with, and returns
/// that capacity.
///
/// [`fill`] first rounds spot down within its share of the need and the on-demand rest
/// up, so the spot share of what runs falls short of the bound by up to an instance on
/// each side (with 4 vCPU instances, 30 vCPU needed and half allowed on spot, 3 spot and
/// 5 standard: 37.5% spot). Trading the dearest on-demand instance for spot, one at a
/// time, fills that room (4 and 4: 50%).
fn spot_within_capacity_share(
    need: f64,
    mut capacity: f64,
    n: &mut [u32],
    tiers: &[&Tier],
    w: &Workload,
) -> f64 {
    let is_spot = |k: usize| tiers[k].class == TierClass::Spot;
    for s in (0..tiers.len()).filter(|&k| is_spot(k)) {
        let se = tiers[s].effective_capacity();
        if se <= 0.0 {
            continue;
        }
        loop {
            let spot: f64 = (0..tiers.len())
                .filter(|&k| is_spot(k))
                .map(|k| n[k] as f64 * tiers[k].effective_capacity())
                .sum();
            let Some(t) = (0..tiers.len())
                .rev()
                .find(|&k| !is_spot(k) && n[k] > tiers[k].min_instances)
            else {
                break;
            };
            let after = capacity - tiers[t].effective_capacity();
            let k = ((need - after) / se - 1e-9).ceil().max(0.0) as u32;
            let with = after + k as f64 * se;
            if n[s] + k > tiers[s].max_instances
                || spot + k as f64 * se > w.max_spot_share * with + 1e-9
                || k as f64 * tiers[s].price_per_hour >= tiers[t].price_per_hour
            {
                break;
            }
            n[t] -= 1;
            n[s] += k;
            capacity = with;
        }
    }
    capacity
}

/// The slowest tier's lead time by `lead` (in seconds), in milliseconds.
fn slowest_ms(tiers: &[&Tier], lead: impl Fn(&Tier) -> u64) -> i64 {
    tiers
        .iter()
        .map(|t| lead(t) as i64 * 1000)
        .max()
        .unwrap_or(0)
}

/// The slowest tier's median lead time, in milliseconds.
fn max_lead_ms(tiers: &[&Tier]) -> i64 {
    slowest_ms(tiers, |t| t.lead_time_s)
}

/// The largest `scale` of the planned events among `events` that the step from `ts`
/// (`step_ms` long) falls in, when one does.
pub fn event_scale(events: &[PlannedEvent], ts: TimestampMs, step_ms: i64) -> Option<f64> {
    events
        .iter()
        .filter(|e| e.overlaps(ts, ts + step_ms))
        .map(|e| e.scale)
        .reduce(f64::max)
}

/// An event's least demand in its other dimensions, in words (", and at least 200
/// GiB of memory"), or nothing.
pub fn least_of_dimensions(e: &PlannedEvent) -> String {
    e.min_dimensions
        .iter()
        .map(|(d, v)| {
            let unit = Dim::parse(d).map_or("", |d| d.unit());
            format!(", and at least {v} {unit} of {d}")
        })
        .collect()
}

/// Forecast `f` with every step within one of `events` multiplied by its `scale` (the
/// largest, where events overlap), as the demand the team expects there: `None` when
/// no step of it is in an event. The daemon and the simulator apply it to the model's
/// forecast before bringing it up to date, so the errors they correct by are against
/// what was expected of the event, and one that comes as expected is not counted twice.
pub fn with_events(f: &Forecast, events: &[PlannedEvent]) -> Option<Forecast> {
    let scales: Vec<(usize, f64)> = (0..f.horizon())
        .filter_map(|i| {
            let k = event_scale(events, f.step_time(i), f.step_ms)?;
            (k != 1.0).then_some((i, k))
        })
        .collect();
    if scales.is_empty() {
        return None;
    }
    let mut g = f.clone();
    for (i, k) in scales {
        g.values[i].iter_mut().for_each(|v| *v *= k);
    }
    Some(g)
}

/// The demand `values` of dimension `dim` at the steps from `ts` (ascending, `step_ms`
/// long) as they would have been without the planned `events`. A step an event scales
/// is divided by the largest scale of the events it overlaps ([`event_scale`]). An
/// event that only holds this dimension at least at a floor (`min_demand` for CPU,
/// `min_dimensions` for the others, at a scale of 1) says nothing of how much it
/// added, so its steps are taken at most at the line from the step before it to the
/// step after it (the one before carried on while it is in progress). Models are
/// fitted on the history so made, so they do not expect an event's demand again a
/// season later (as a holiday effect is taken out of what a model learns). Each event
/// finds its steps by bisection, so a history of weeks under the hundreds of
/// occurrences of a recurring event costs what reading it does.
pub fn without_events_all(
    events: &[PlannedEvent],
    dim: Dim,
    ts: &[TimestampMs],
    step_ms: i64,
    values: &[f64],
) -> Vec<f64> {
    let mut scale: Vec<Option<f64>> = vec![None; ts.len()];
    for e in events {
        let (from, to) = event_steps(e, ts, step_ms);
        for k in &mut scale[from..to] {
            *k = Some(k.map_or(e.scale, |k| k.max(e.scale)));
        }
    }
    let mut out: Vec<f64> = values
        .iter()
        .zip(scale)
        .map(|(v, k)| v / k.unwrap_or(1.0))
        .collect();
    for e in events.iter().filter(|e| only_a_floor(e, dim)) {
        let (from, to) = event_steps(e, ts, step_ms);
        let before = from.checked_sub(1).map(|k| out[k]);
        let after = out.get(to).copied();
        let Some((a, b)) = before.or(after).zip(after.or(before)) else {
            continue;
        };
        let span = (to - from + 1) as f64;
        for (j, v) in out[from..to].iter_mut().enumerate() {
            let line = a + (b - a) * (j + 1) as f64 / span;
            *v = v.min(line);
        }
    }
    out
}

/// The steps of `ts` (ascending, `step_ms` long) that event `e` overlaps: `from..to`.
fn event_steps(e: &PlannedEvent, ts: &[TimestampMs], step_ms: i64) -> (usize, usize) {
    let from = ts.partition_point(|&t| t + step_ms <= e.start.0);
    (from, ts.partition_point(|&t| t < e.end.0).max(from))
}

/// Whether event `e` only holds dimension `dim` at least at a floor (`min_demand` for
/// CPU, `min_dimensions` for the others, at a scale of 1): it says how much capacity to
/// hold, not how much demand to expect.
fn only_a_floor(e: &PlannedEvent, dim: Dim) -> bool {
    e.scale == 1.0
        && match dim {
            Dim::Cpu => e.min_demand.is_some(),
            d => e.min_dimensions.contains_key(d.name()),
        }
}

/// Whether each step of `ts` (ascending, `step_ms` long) is within an event of `events`
/// that only holds dimension `dim` at a floor. The forecast is not raised there (only
/// the plan is), so the demand of such a step says nothing of how far off the forecast
/// is: the nowcast leaves it out of its shift, its spread floor and the errors that say
/// how far they persist, and the drift check out of the model's live error, in the
/// daemon and the simulator alike.
pub fn floor_only_steps(
    events: &[PlannedEvent],
    dim: Dim,
    ts: &[TimestampMs],
    step_ms: i64,
) -> Vec<bool> {
    in_events(events.iter().filter(|e| only_a_floor(e, dim)), ts, step_ms)
}

/// Whether each step of `ts` (ascending, `step_ms` long) overlaps one of `events`,
/// found by bisection, as in [`without_events_all`].
pub fn in_events<'a>(
    events: impl IntoIterator<Item = &'a PlannedEvent>,
    ts: &[TimestampMs],
    step_ms: i64,
) -> Vec<bool> {
    let mut out = vec![false; ts.len()];
    for e in events {
        let (from, to) = event_steps(e, ts, step_ms);
        out[from..to].iter_mut().for_each(|x| *x = true);
    }
    out
}

/// Whether step `i` of `f` is within the window a plan made at `now` covers:
/// the step in progress and each starting before `window_end`, or, within a planned
/// event, before `event_end` (the slowest tier's 90th-percentile lead time ahead, so
/// the event's capacity is most likely ready by its start).
fn in_window(
    f: &Forecast,
    i: usize,
    now: TimestampMs,
    window_end: TimestampMs,
    event_end: TimestampMs,
    events: &[PlannedEvent],
) -> bool {
    let ts = f.step_time(i);
    ts + f.step_ms > now
        && (ts < window_end
            || (ts < event_end && events.iter().any(|e| e.overlaps(ts, ts + f.step_ms))))
}

/// The end of the window of [`in_window`] for planned events: the slowest tier's
/// 90th-percentile lead time and a pass ahead.
fn event_window_end(tiers: &[&Tier], now: TimestampMs, interval_ms: i64) -> TimestampMs {
    now + slowest_ms(tiers, Tier::lead_time_p90) + interval_ms
}

/// Plans a workload from its forecast.
///
/// `interval_ms` is the control interval: capacity asked for now must serve until the
/// decision after the slowest tier's lead time.
pub fn plan(
    w: &Workload,
    catalog: &[Tier],
    forecast: &Forecast,
    now: TimestampMs,
    interval_ms: i64,
) -> Plan {
    let mut p = plan_held(w, catalog, forecast, now, interval_ms, None);
    p.steps = plan_steps(w, catalog, forecast);
    p
}

/// The plan over the forecast's horizon: at each step, the instances per tier that
/// would serve its SLA quantile at the target utilization. [`plan`] includes them;
/// [`plan_held`] and [`plan_dimensions`] leave them out, since only a plan that is
/// published (the daemon's, served by its API) needs them, and a replay plans twice a
/// step: filling every step of a two-hour horizon at one-minute steps took a seventh
/// of a replay's time.
pub fn plan_steps(w: &Workload, catalog: &[Tier], forecast: &Forecast) -> Vec<PlanStep> {
    let tiers = eligible_tiers(w, catalog);
    let q = w.sla_quantile;
    (0..forecast.horizon())
        .map(|i| {
            let demand = forecast.quantile(i, q);
            PlanStep {
                ts: forecast.step_time(i),
                demand,
                instances: fill(demand / w.target_utilization, &tiers, w).instances,
            }
        })
        .collect()
}

/// Observed demand a plan keeps covering at the target utilization, whatever the
/// forecast says, and what it is (for the plan's reason).
#[derive(Debug, Clone, PartialEq)]
pub struct Floor {
    /// The dimension.
    pub dim: Dim,
    /// The demand, in the dimension's unit.
    pub demand: f64,
    /// What it is, e.g. "the highest demand of the last 7200 s (scale_down_window_s)".
    pub what: String,
    /// How many higher peaks it left out because the forecast saw them coming and going
    /// ([`held_peak`]), and the highest of them.
    pub left_out: Option<(usize, f64)>,
    /// How many higher readings it left out as lone glitches ([`held_peak`]), and the
    /// highest of them.
    pub glitches: Option<(usize, f64)>,
}

/// How far past this time one season ago the seasonal floor looks.
///
/// A surge that recurs daily rarely starts at the same minute: Alibaba's 06:30 surge
/// moves by up to half an hour from day to day. Looking that far ahead asks for its
/// capacity before an early start (and at least two steps ahead, so an instance slower
/// than its 90th-percentile lead time still comes in time); on the shared traces it
/// cost 0.1-1.1% more and was never short for longer.
pub const SEASONAL_FLOOR_AHEAD_MS: i64 = 30 * 60_000;

/// How many past seasons [`came_late`] reads: on every one the rise must have come late.
pub const LATE_SEASONS: i64 = 3;

/// How far below the peak of the whole look-ahead the peak of its first steps must be,
/// on a season, for the rise to count as having come after them ([`came_late`]).
pub const LATE_SHARE: f64 = 0.8;

/// Whether, on each of the last [`LATE_SEASONS`] seasons (`season_ms`), demand rose
/// only after `near` past this time, within the seasonal floor's full look-ahead
/// (`ahead`): the peak from a step before to `near` after this time then was below
/// [`LATE_SHARE`] of the peak to `ahead` after it, on every one of them. `false` when
/// a season is missing. `peak(from, to)` is as for [`demand_floors`].
///
/// The look-ahead ([`SEASONAL_FLOOR_AHEAD_MS`]) is for a surge whose start moves from
/// day to day. A job that starts on the minute every day (a cron job, the start of
/// office hours) does not move: looking half an hour ahead asked for its capacity half
/// an hour early every day (on a 30-minute job every four hours, with the scale-down
/// window asking again for what it had let go, [`demand_floors_in`], 1.5 times the
/// oracle's cost). Where the rise came late on every one of the last seasons, the floor
/// looks only `near` ahead, as far as a plan needs to have capacity in time; where it
/// came early on any of them, it keeps the whole look-ahead.
pub fn came_late(
    now: TimestampMs,
    season_ms: i64,
    step_ms: i64,
    near: i64,
    ahead: i64,
    peak: impl Fn(TimestampMs, TimestampMs) -> Option<Held>,
) -> bool {
    (1..=LATE_SEASONS).all(|k| {
        let at = now - k * season_ms;
        match (
            peak(at - step_ms, at + near).map(|h| h.demand),
            peak(at - step_ms, at + ahead).map(|h| h.demand),
        ) {
            (Some(first), Some(all)) => first < LATE_SHARE * all,
            _ => false,
        }
    })
}

/// How many seasons running, up to the last, a spike must have come near this time for
/// the seasonal floor to wait for it when it has not come yet ([`late_spike`]).
pub const LATE_SPIKE_SEASONS: i64 = 4;

/// How long before now demand must have stayed below [`LATE_SHARE`] of a recurring spike
/// for [`late_spike`] to wait for it: the spike is this time's, not any hour's.
pub const LATE_SPIKE_QUIET_MS: i64 = 6 * 3_600_000;

/// The demand of a spike that came in the half hour ([`SEASONAL_FLOOR_AHEAD_MS`]) before
/// this time one season (`season_ms`) ago and has not come yet today, when it recurs:
/// the highest demand from that half hour before to a step before this time then
/// (`top` reads a [`Held`], lone glitches included), when
/// - it came near this time (within that half hour either side) at least
///   [`LATE_SHARE`] as high on each of the [`LATE_SPIKE_SEASONS`] - 1 seasons before,
/// - and demand stayed below [`LATE_SHARE`] of it over the last
///   [`LATE_SPIKE_QUIET_MS`]: it is this time's spike, and today's has not come.
///
/// `None` otherwise, where a season is missing, and where the spike is no higher than
/// `above` (what the floor holds already: the seasons before are not read then).
/// `peak(from, to)` is as for [`demand_floors`].
///
/// The seasonal floor looks from a step before this time one season ago, so that a
/// surge which came at 06:30 yesterday is held from 06:00 today, perhaps earlier, and
/// let go once 06:35 has passed. A nightly job's spike that came at 03:10 yesterday and
/// comes at 03:40 today found it let go (an EC2 instance of the NAB corpus: a one-step
/// spike to 1.4 times its level between 03:10 and 03:45 every night, short on the nights
/// it came later than the night before); this keeps it held until it comes, or the half
/// hour is over.
pub fn late_spike(
    now: TimestampMs,
    season_ms: i64,
    step_ms: i64,
    above: f64,
    peak: impl Fn(TimestampMs, TimestampMs) -> Option<Held>,
    top: impl Fn(&Held) -> f64,
) -> Option<f64> {
    let back = SEASONAL_FLOOR_AHEAD_MS;
    if back <= step_ms {
        return None;
    }
    let at = now - season_ms;
    let spike = top(&peak(at - back, at - step_ms)?);
    if spike.is_nan() || spike <= above.max(0.0) {
        return None;
    }
    let high = |h: Option<Held>| h.is_some_and(|h| top(&h) >= LATE_SHARE * spike);
    let recurs = (2..=LATE_SPIKE_SEASONS).all(|k| {
        let then = now - k * season_ms;
        high(peak(then - back, then + back))
    });
    let come = high(peak(now - LATE_SPIKE_QUIET_MS, now));
    (recurs && !come).then_some(spike)
}

/// The season the scale-down window's [`seasonal_fall`] looks back by: the workload's
/// `season_s`, else a day. Not a detected season: a surge most often comes back the
/// next day, and a detection may find a week, or land a few steps off a day or a week
/// on a noisy history.
fn floor_season_ms(w: &Workload) -> i64 {
    w.season_s.map_or(DAY_MS, |s| s as i64 * 1000)
}

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// How much closer demand must have come, hour by hour over the last week, to the same
/// hour a week before than to the same hour a day before, for the seasonal floor of a
/// workload without `season_s` to look back a week ([`floor_season`]).
///
/// A service quieter at weekends runs each Saturday like the Saturday before, not like
/// the Friday: looking back a day holds a Friday's capacity all Saturday (1.5 times the
/// oracle's cost on the synthetic service's Saturdays). A daily service, or a daily
/// surge, comes back alike either way (a share near 1), so it keeps looking back a day.
pub const WEEKLY_SHARE: f64 = 0.5;

/// The fewest hours with a week before them that [`floor_season`] compares.
pub const WEEKLY_MIN_HOURS: usize = 24;

/// The season the seasonal floor looks back by at `now`: the workload's `season_s`;
/// else a week when, over the complete hours of the last week that have demand a week
/// before them (at least [`WEEKLY_MIN_HOURS`]), demand was in total at most
/// [`WEEKLY_SHARE`] as far from the same hour a week before as from the same hour a day
/// before; else a day. Hours are `step_ms` when longer, counted from the epoch, so the
/// answer only changes when [`floor_season_hour`] does; `peak(from, to)` is as for
/// [`demand_floors`]. Returns the season and, when it chose a week, the share it
/// measured.
pub fn floor_season(
    w: &Workload,
    now: TimestampMs,
    step_ms: i64,
    peak: impl Fn(TimestampMs, TimestampMs) -> Option<Held>,
) -> FloorSeason {
    if let Some(s) = w.season_s {
        return (s as i64 * 1000, None);
    }
    let block = step_ms.max(3_600_000);
    let per_day = (DAY_MS / block) as usize;
    let per_week = (WEEK_MS / block) as usize;
    if per_day < 2 || DAY_MS % block != 0 {
        return (DAY_MS, None);
    }
    // Block k ends k blocks before the last whole one: the day before block k is
    // block k + per_day, the week before it block k + per_week.
    let end = floor_season_hour(now, step_ms) * block;
    let peaks: Vec<Option<f64>> = (0..2 * per_week)
        .map(|k| {
            let to = end - k as i64 * block;
            peak(to - block, to)
                .map(|h| h.demand)
                .filter(|v| v.is_finite())
        })
        .collect();
    let (mut by_day, mut by_week, mut hours) = (0.0, 0.0, 0usize);
    for k in 0..per_week {
        if let (Some(p), Some(d), Some(wk)) = (peaks[k], peaks[k + per_day], peaks[k + per_week]) {
            by_day += (p - d).abs();
            by_week += (p - wk).abs();
            hours += 1;
        }
    }
    if hours >= WEEKLY_MIN_HOURS && by_day > 0.0 && by_week <= WEEKLY_SHARE * by_day {
        (WEEK_MS, Some(by_week / by_day))
    } else {
        (DAY_MS, None)
    }
}

/// A floor season in ms and, when [`floor_season`] chose a week, the share it measured.
pub type FloorSeason = (i64, Option<f64>);

/// The hour (or step, when longer) from the epoch that `now` is in: [`floor_season`]
/// reads the hours before it, so a caller may keep its answer until this changes.
pub fn floor_season_hour(now: TimestampMs, step_ms: i64) -> i64 {
    now.div_euclid(step_ms.max(3_600_000))
}

/// How far the median forecast must have come toward a peak, and back from it, for the
/// peak to count as foreseen: this share of the rise to it and of the fall after it.
pub const FORESEEN_SHARE: f64 = 0.5;

/// Whether observed step `t` of `demand` was a peak the forecast saw coming and going:
/// demand rose to it from the step before and fell in the step after, and the median
/// forecast made before each of those two steps (`said`, NaN where none was made) had
/// come at least [`FORESEEN_SHARE`] of the way up to the peak and of the way back down.
/// A forecast that foresaw one such peak (an hourly job, a daily batch) foresees the
/// next, so the floors need not hold its capacity; a dip or a surge it did not see
/// coming is never one.
pub fn foreseen_peak(demand: &[f64], said: &[f64], t: usize) -> bool {
    let (Some(&before), Some(&at), Some(&after)) = (
        t.checked_sub(1).and_then(|b| demand.get(b)),
        demand.get(t),
        demand.get(t + 1),
    ) else {
        return false;
    };
    let (said_at, said_after) = match (said.get(t), said.get(t + 1)) {
        (Some(a), Some(b)) => (*a, *b),
        _ => return false,
    };
    at > before
        && after < at
        && said_at >= before + FORESEEN_SHARE * (at - before)
        && said_after <= at - FORESEEN_SHARE * (at - after)
}

/// The demand a floor holds, and what higher demand it left out (see [`held_peak`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    /// The demand held.
    pub demand: f64,
    /// Higher peaks left out because the forecast saw them coming and going: how many,
    /// and the highest.
    pub foreseen: Option<(usize, f64)>,
    /// Higher readings left out as lone glitches: how many, and the highest.
    pub glitches: Option<(usize, f64)>,
}

impl From<f64> for Held {
    /// `demand` held, nothing left out.
    fn from(demand: f64) -> Held {
        Held {
            demand,
            foreseen: None,
            glitches: None,
        }
    }
}

/// The demand a floor holds over steps `range` of `demand` (with `said`, as for
/// [`foreseen_peak`]; the steps either side of the range, when given, only tell whether
/// its first and last steps were such peaks): the highest but for the peaks the forecast
/// saw coming and going and the steps `lone` says are lone glitches (a reading a hundred
/// times the usual that came back at once, as `prescale_forecast::clean` finds them), and, when
/// it left out higher ones, how many and the highest. `None` when no step is held.
pub fn held_peak(
    demand: &[f64],
    said: &[f64],
    lone: impl Fn(usize) -> bool,
    range: Range<usize>,
) -> Option<Held> {
    let mut held: Option<f64> = None;
    let (mut foreseen, mut glitches) = (Vec::new(), Vec::new());
    for t in range.start..range.end.min(demand.len()) {
        // Only a step that would raise what is held need be judged.
        if held.is_some_and(|h| demand[t] <= h) {
            continue;
        }
        if foreseen_peak(demand, said, t) {
            foreseen.push(demand[t]);
        } else if lone(t) {
            glitches.push(demand[t]);
        } else {
            held = Some(held.map_or(demand[t], |h| h.max(demand[t])));
        }
    }
    let h = held?;
    let higher = |v: Vec<f64>| {
        let higher: Vec<f64> = v.into_iter().filter(|v| *v > h).collect();
        let top = higher.iter().copied().reduce(f64::max);
        top.map(|top| (higher.len(), top))
    };
    Some(Held {
        demand: h,
        foreseen: higher(foreseen),
        glitches: higher(glitches),
    })
}

/// The floors of workload `w` at `now`: the highest demand of its `scale_down_window_s`
/// (with `seasonal_floor`, times its [`seasonal_fall`] where demand fell alike after this
/// time on each of the last seasons) and, with `seasonal_floor`, the highest from one step before to
/// [`SEASONAL_FLOOR_AHEAD_MS`] (at least three steps) after this time one season (its
/// `season_s`, else a day) ago, times its [`seasonal_level`] where demand has run well
/// below its level then. `peak(j, from, to)` is the demand held of `dims[j]` in
/// the steps starting in `[from, to)` (see [`held_peak`]), `None` when there is none.
pub fn demand_floors(
    w: &Workload,
    now: TimestampMs,
    step_ms: i64,
    dims: &[Dim],
    peak: impl Fn(usize, TimestampMs, TimestampMs) -> Option<Held>,
) -> Vec<Floor> {
    let seasons: Vec<FloorSeason> = (0..dims.len())
        .map(|j| {
            if w.seasonal_floor {
                floor_season(w, now, step_ms, |a, b| peak(j, a, b))
            } else {
                (floor_season_ms(w), None)
            }
        })
        .collect();
    demand_floors_in(
        w,
        now,
        step_ms,
        dims,
        peak,
        &seasons,
        &mut vec![None; dims.len()],
    )
}

/// How far the scale-down window let its peak fall ([`seasonal_fall`]), as a pass found
/// it: the peak it held, the ratio (1 where it held it whole) and the pass that found
/// it. [`demand_floors_in`] keeps one per dimension from pass to pass, so that what the
/// window let go it does not hold again while the same peak is in it. The daemon keeps
/// it over a restart.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowFall {
    /// The window's peak demand.
    pub peak: f64,
    /// What the window holds of it.
    pub ratio: f64,
    /// When a pass found that ratio.
    pub since: TimestampMs,
}

/// [`demand_floors`] with each dimension's [`floor_season`] given (`seasons[j]`, as it
/// answered in this [`floor_season_hour`]): a replay that plans every few seconds of
/// every step asks it once an hour; and with what the scale-down window let each
/// dimension's peak fall to at the last pass (`falls[j]`, updated).
///
/// The window's fall is found again at each pass, over the window after this time on
/// the last seasons; while the same peak is held, it never rises above what a pass
/// found. A job that ran 04:00-04:30 and runs again at 08:00 comes back within two
/// hours of 06:05: the window let the run's capacity go at 04:35, and asked for it
/// again at 06:05, for nothing, until it let the run's last step go at 06:30.
pub fn demand_floors_in(
    w: &Workload,
    now: TimestampMs,
    step_ms: i64,
    dims: &[Dim],
    peak: impl Fn(usize, TimestampMs, TimestampMs) -> Option<Held>,
    seasons: &[FloorSeason],
    falls: &mut [Option<WindowFall>],
) -> Vec<Floor> {
    let season_ms = floor_season_ms(w);
    let mut out = Vec::new();
    for (j, d) in dims.iter().enumerate() {
        if w.scale_down_window_s > 0 {
            let win = w.scale_down_window_s as i64 * 1000;
            // Not an event's demand once it is over: the plan expected it to end.
            let ended = w
                .events
                .iter()
                .filter(|e| e.end.0 <= now && e.end.0 > now - win)
                .max_by_key(|e| e.end);
            let from = ended.map_or(now - win, |e| e.end.0);
            if let Some(held) = peak(j, from, now) {
                let p = held.demand;
                let mut what = format!(
                    "the highest demand of the last {} s (scale_down_window_s)",
                    w.scale_down_window_s
                );
                if let Some(e) = ended {
                    what.push_str(&format!(
                        " since the planned event \"{}\" ended at {}",
                        e.name,
                        format_ts(e.end.0)
                    ));
                }
                let mut demand = p;
                // As far as demand fell after this time on the last seasons, and never
                // higher than a pass with the same peak let it fall to: the window slows
                // a descent; it does not ask again for what it let go.
                let found = w
                    .seasonal_floor
                    .then(|| seasonal_fall(now, win, season_ms, p, |a, b| peak(j, a, b)))
                    .flatten()
                    .unwrap_or(1.0);
                let fall = falls
                    .get(j)
                    .copied()
                    .flatten()
                    .filter(|f| f.peak == p && f.ratio < found)
                    .unwrap_or(WindowFall {
                        peak: p,
                        ratio: found,
                        since: now,
                    });
                if let Some(slot) = falls.get_mut(j) {
                    *slot = Some(fall);
                }
                if fall.ratio < 1.0 {
                    demand = p * fall.ratio;
                    let after = if fall.since == now {
                        "this time".to_string()
                    } else {
                        format_ts(fall.since)
                    };
                    what.push_str(&format!(
                        " times {:.2}, as far as demand fell after {after} on each of the last {FALL_SEASONS} seasons ({} s)",
                        fall.ratio,
                        season_ms / 1000
                    ));
                    if fall.since != now {
                        what.push_str(": what the window let go it does not hold again");
                    }
                }
                out.push(Floor {
                    dim: *d,
                    demand,
                    what,
                    left_out: held.foreseen,
                    glitches: held.glitches,
                });
            }
        }
        // While a planned event that only holds this dimension at a floor lasts, the
        // forecast does not follow its demand ([`floor_only_steps`]): the plan holds
        // the highest since it began, whatever the scale-down window.
        let lasting = w
            .events
            .iter()
            .filter(|e| only_a_floor(e, *d) && e.start.0 < now && now < e.end.0);
        for e in lasting {
            if let Some(held) = peak(j, e.start.0, now) {
                out.push(Floor {
                    dim: *d,
                    demand: held.demand,
                    what: format!(
                        "the highest demand since the planned event \"{}\" began at {} (it only holds a floor: the forecast does not follow its demand)",
                        e.name,
                        format_ts(e.start.0)
                    ),
                    left_out: held.foreseen,
                    glitches: held.glitches,
                });
            }
        }
        if w.seasonal_floor && season_ms > 2 * step_ms {
            let (s, weekly) = seasons.get(j).copied().unwrap_or((season_ms, None));
            let at = now - s;
            let near = 3 * step_ms;
            let mut ahead = near.max(SEASONAL_FLOOR_AHEAD_MS);
            let late =
                ahead > near && came_late(now, s, step_ms, near, ahead, |a, b| peak(j, a, b));
            if late {
                ahead = near;
            }
            // A planned event then is not this season's demand.
            let evented = w
                .events
                .iter()
                .any(|e| e.overlaps(at - step_ms, at + ahead));
            if let Some(held) = peak(j, at - step_ms, at + ahead).filter(|_| !evented) {
                // What stood alone then may be what comes at this time every season (a
                // nightly job's one-step spike, judged against a history where it is
                // rare): this floor is for it, so it keeps lone glitches.
                let top = |h: &Held| h.glitches.map_or(h.demand, |(_, t)| t.max(h.demand));
                let mut p = top(&held);
                let mut what = format!(
                    "the highest demand around this time one season ({} s) ago (seasonal_floor)",
                    s / 1000
                );
                let before = at - SEASONAL_FLOOR_AHEAD_MS;
                let waiting = (!w.events.iter().any(|e| e.overlaps(before, at)))
                    .then(|| late_spike(now, s, step_ms, p, |a, b| peak(j, a, b), top))
                    .flatten();
                if let Some(spike) = waiting {
                    p = spike;
                    what.push_str(&format!(
                        ", or {} min before it: a spike that came then and near this time on each of the {} seasons before has not come yet today",
                        SEASONAL_FLOOR_AHEAD_MS / 60_000,
                        LATE_SPIKE_SEASONS - 1
                    ));
                }
                if let Some(share) = weekly {
                    what.push_str(&format!(
                        ", a week as over the last week demand came {share:.2} as far from the same hour a week before as from the same hour a day before"
                    ));
                }
                if late {
                    what.push_str(&format!(
                        ", {} min ahead: on each of the last {LATE_SEASONS} seasons demand rose later than that after this time",
                        near / 60_000
                    ));
                }
                let mut demand = p;
                if let Some(r) = seasonal_level(now, s, p, |a, b| peak(j, a, b)) {
                    demand = p * r;
                    what.push_str(&format!(
                        ", times {r:.2}, as far below its level then as demand has run over the last {} s",
                        LEVEL_WINDOW_MS / 1000
                    ));
                }
                out.push(Floor {
                    dim: *d,
                    demand,
                    what,
                    left_out: held.foreseen,
                    glitches: None,
                });
            }
        }
    }
    out
}

/// The stretch before now that [`seasonal_level`] compares with the same stretch one
/// season ago.
pub const LEVEL_WINDOW_MS: i64 = 2 * 3_600_000;

/// How far below its level one season ago demand must run for [`seasonal_level`] to
/// scale the seasonal floor down: further than a noisy peak strays.
pub const LEVEL_SHRINK: f64 = 0.85;

/// How far above the typical peak (the median block peak) of the stretch before it the
/// seasonal floor's demand may be for [`seasonal_level`] to scale it: a daily ramp's
/// next half hour, not a burst.
pub const LEVEL_SPIKE: f64 = 1.5;

/// Blocks [`seasonal_level`] splits its window into.
pub const LEVEL_BLOCKS: i64 = 8;

/// How far demand has run below its level one season ago, when it has run well below
/// it throughout: the higher of two ratios of the last [`LEVEL_WINDOW_MS`] to the same
/// stretch one season before, that of their peaks and that of the medians of their
/// [`LEVEL_BLOCKS`] block peaks, when below [`LEVEL_SHRINK`]; `None` otherwise, when
/// any is missing, or when `held` (the floor's demand from around this time one season
/// ago) is above [`LEVEL_SPIKE`] times the median block peak of the stretch before it.
///
/// The seasonal floor holds the demand of this time one season ago; on the first
/// quieter day (a Saturday after a Friday, before a week of history tells the floor to
/// look back a week) it held the Friday's capacity all day. The block medians keep it
/// whole where only the window a season ago held a burst, and the [`LEVEL_SPIKE`] check
/// where the floor's own demand was a burst out of a quiet stretch (an idle disk's
/// spike): neither is a level to scale.
pub fn seasonal_level(
    now: TimestampMs,
    season_ms: i64,
    held: f64,
    peak: impl Fn(TimestampMs, TimestampMs) -> Option<Held>,
) -> Option<f64> {
    let ratio = |a: f64, b: f64| (b > 0.0 && a >= 0.0).then(|| a / b);
    let whole = ratio(
        peak(now - LEVEL_WINDOW_MS, now)?.demand,
        peak(now - season_ms - LEVEL_WINDOW_MS, now - season_ms)?.demand,
    )?;
    let block = LEVEL_WINDOW_MS / LEVEL_BLOCKS;
    let typical = |end: TimestampMs| -> Option<f64> {
        let mut v = (0..LEVEL_BLOCKS)
            .map(|b| peak(end - (b + 1) * block, end - b * block).map(|h| h.demand))
            .collect::<Option<Vec<f64>>>()?;
        v.sort_by(f64::total_cmp);
        Some((v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0)
    };
    let then = typical(now - season_ms)?;
    // NaN held counts as a burst: nothing to scale.
    if held.is_nan() || held > LEVEL_SPIKE * then {
        return None;
    }
    let blocks = ratio(typical(now)?, then)?;
    let r = whole.max(blocks);
    (r.is_finite() && r < LEVEL_SHRINK).then_some(r)
}

/// How many comparable past seasons [`seasonal_fall`] reads: every one must have fallen
/// alike.
pub const FALL_SEASONS: i64 = 3;

/// How far apart (as a share of the window's peak) the falls of those seasons may be
/// for the fall to count as seasonal. A daily service's evening descent falls alike
/// each day (within 0.1 at 5% noise); random bursts either side of this time a few
/// days running rarely do.
pub const FALL_SPREAD: f64 = 0.2;

/// How many past seasons [`seasonal_fall`] searches for [`FALL_SEASONS`] comparable
/// ones: a week of days.
pub const FALL_LOOKBACK: i64 = 7;

/// How high, as a share of the window's peak now, a season's peak before this time
/// must have been for [`seasonal_fall`] to compare it: a day that never rose that far
/// (a quiet Sunday beside a weekday's office hours) had no peak to fall from.
pub const FALL_COMPARABLE: f64 = 0.5;

/// How far demand fell after this time on each of the last [`FALL_SEASONS`] seasons
/// comparable with this one, when it fell alike on each: for each season, the peak of
/// the `win` after this time then over the peak of the `win` before it. The highest of
/// these ratios, when every one is below 1 and they are within [`FALL_SPREAD`] of each
/// other; `None` otherwise, or when one is missing. A season is comparable when the
/// peak of its `win` before this time was at least [`FALL_COMPARABLE`] of `held` (the
/// window's peak now); the search goes back [`FALL_LOOKBACK`] seasons at most.
/// `peak(from, to)` is as for [`demand_floors`].
///
/// The scale-down window keeps the peak of its last `win` because demand may come back
/// to it; where it fell just as far after this time on each of the last seasons (a
/// daily service's evening), it is not coming back, and holding it only pays for the
/// descent a second time: on a daily service at 5% noise, about 3% of its cost. A
/// service busy only in office hours has no evening fall on Saturday and Sunday: until
/// Thursday the last three days held one of them, and the window held each evening's
/// office-hours capacity for two hours (a fifth of what it cost beyond the oracle).
pub fn seasonal_fall(
    now: TimestampMs,
    win: i64,
    season_ms: i64,
    held: f64,
    peak: impl Fn(TimestampMs, TimestampMs) -> Option<Held>,
) -> Option<f64> {
    if win >= season_ms || held.is_nan() {
        return None;
    }
    let (mut highest, mut lowest, mut found) = (0.0f64, 1.0f64, 0);
    for k in 1..=FALL_LOOKBACK {
        let at = now - k * season_ms;
        let before = peak(at - win, at)?.demand;
        if before.is_nan() || before <= 0.0 {
            return None;
        }
        if before < FALL_COMPARABLE * held {
            continue;
        }
        let after = peak(at, at + win)?.demand;
        if after >= before {
            return None;
        }
        highest = highest.max(after / before);
        lowest = lowest.min(after / before);
        found += 1;
        if found == FALL_SEASONS {
            return (highest - lowest <= FALL_SPREAD).then_some(highest);
        }
    }
    None
}

/// [`plan`], with the need kept at least at `floor`'s demand over the target
/// utilization, and without its steps ([`plan_steps`]).
pub fn plan_held(
    w: &Workload,
    catalog: &[Tier],
    forecast: &Forecast,
    now: TimestampMs,
    interval_ms: i64,
    floor: Option<&Floor>,
) -> Plan {
    let tiers = eligible_tiers(w, catalog);
    let q = w.sla_quantile;
    let need_at = |i: usize| forecast.quantile(i, q) / w.target_utilization;

    let max_lead_ms = max_lead_ms(&tiers);
    let window_end = now + max_lead_ms + interval_ms;
    let event_end = event_window_end(&tiers, now, interval_ms);
    let mut peak = (0.0f64, forecast.start);
    for i in 0..forecast.horizon() {
        if in_window(forecast, i, now, window_end, event_end, &w.events) {
            let n = need_at(i);
            if n > peak.0 {
                peak = (n, forecast.step_time(i));
            }
        }
    }
    let (mut need, peak_ts) = peak;
    let mut held = None;
    if let Some(fl) = floor.filter(|f| f.demand / w.target_utilization > need) {
        held = Some((fl, need));
        need = fl.demand / w.target_utilization;
    }
    let mut f = fill(need, &tiers, w);
    // Chance constraint at the peak step: counting the spot capacity that may be lost
    // before a replacement serves, the chance that demand exceeds capacity must stay
    // within 1 - sla_quantile; add the cheapest on-demand instances until it does.
    let peak_idx = (0..forecast.horizon())
        .find(|i| forecast.step_time(*i) == peak_ts)
        .unwrap_or(0);
    let bound = 1.0 - q;
    let mut risk = shortfall_risk(forecast, peak_idx, &f, &tiers, interval_ms);
    let mut added: BTreeMap<&str, u32> = BTreeMap::new();
    // Not where a limit already bound (a floor of instances is no limit).
    if matches!(f.binding, "sla" | "min_instances") {
        while risk > bound * (1.0 + 1e-9) {
            // On demand first; where no on-demand tier has room (or the workload may use
            // none), more spot within its share: losing some of more instances still
            // leaves enough.
            let spot = f.spot_capacity(&tiers);
            let room = |t: &&&Tier| f.instances[&t.name] < t.max_instances;
            let Some(t) = tiers
                .iter()
                .filter(room)
                .find(|t| t.class != TierClass::Spot)
                .or_else(|| {
                    tiers.iter().filter(room).find(|t| {
                        t.class == TierClass::Spot
                            && spot_fits(w, spot, f.capacity, t.effective_capacity())
                    })
                })
            else {
                f.binding = "max_instances";
                f.notes.push(format!(
                    "no tier it may use has room for the cover against spot losses (on demand at its max_instances, or none; spot at its maximum or its share): the risk of shortfall stays over the {:.1}% bound",
                    bound * 100.0
                ));
                break;
            };
            if w.budget_per_hour
                .is_some_and(|b| f.cost_per_hour + t.price_per_hour > b + 1e-12)
            {
                f.binding = "budget";
                f.notes.push(format!(
                    "budget ${:.2}/h cannot buy the on-demand cover for spot losses",
                    w.budget_per_hour.unwrap_or_default()
                ));
                break;
            }
            *f.instances.get_mut(&t.name).expect("present") += 1;
            f.capacity += t.effective_capacity();
            f.cost_per_hour += t.price_per_hour;
            *added.entry(t.name.as_str()).or_default() += 1;
            risk = shortfall_risk(forecast, peak_idx, &f, &tiers, interval_ms);
        }
    }
    if !added.is_empty() {
        let list: Vec<String> = added.iter().map(|(t, n)| format!("{n} {t}")).collect();
        f.notes.push(format!(
            "{} added so that losing spot capacity keeps the shortfall risk within {:.1}%",
            list.join(" + "),
            bound * 100.0
        ));
    }
    let mix: Vec<String> = tiers
        .iter()
        .filter(|t| f.instances[&t.name] > 0)
        .map(|t| {
            format!(
                "{} {}×{:.1}",
                t.name,
                f.instances[&t.name],
                t.effective_capacity()
            )
        })
        .collect();
    let mut reason = format!(
        "cover q{q} of forecast demand, peaking at {:.2} vCPU in the next {} min (step starting {}), at {:.0}% target utilization: {:.2} effective vCPU needed -> {} = {:.2} vCPU for ${:.3}/h",
        need * w.target_utilization,
        (max_lead_ms + interval_ms) / 60_000,
        format_ts(peak_ts),
        w.target_utilization * 100.0,
        need,
        if mix.is_empty() { "no instances".to_string() } else { mix.join(" + ") },
        f.capacity,
        f.cost_per_hour,
    );
    if let Some((fl, forecast_need)) = held {
        reason.push_str(&format!(
            "; held at {}, {:.2} vCPU ({need:.2} effective vCPU at the target utilization), above the forecast's {forecast_need:.2}",
            fl.what, fl.demand
        ));
    }
    if w.max_spot_share < 1.0 && tiers.iter().any(|t| t.class == TierClass::Spot) {
        reason.push_str(&format!(
            "; spot limited to {:.0}% of capacity",
            w.max_spot_share * 100.0
        ));
    }
    reason.push_str(&format!(
        "; risk of shortfall at the peak {:.2}% (bound {:.1}%, spot losses included)",
        risk * 100.0,
        bound * 100.0
    ));
    // The alternative a person would ask about: everything on the cheapest on-demand tier.
    if let Some(t) = tiers.iter().find(|t| t.class != TierClass::Spot) {
        let n = (need / t.effective_capacity() - 1e-9).ceil().max(0.0);
        let alt = n * t.price_per_hour;
        if alt > f.cost_per_hour + 1e-9 {
            reason.push_str(&format!(
                "; rejected: {n:.0} x {} alone at ${alt:.3}/h",
                t.name
            ));
        }
    }
    for n in &f.notes {
        reason.push_str("; ");
        reason.push_str(n);
    }
    Plan {
        workload: w.name.clone(),
        made_at: now,
        quantile: q,
        target: f.instances,
        steps: Vec::new(),
        cost_per_hour: f.cost_per_hour,
        binding: f.binding.to_string(),
        reason,
    }
}

/// Plans every dimension of a workload at once: CPU by [`plan`], then each other
/// dimension's forecast (memory in GiB, disk in IOPS, network in Mbps) at the SLA
/// quantile, its peak over the same window at the target utilization, covered by
/// [`cover_dimensions`]. The reason says which dimension bound and what it added.
///
/// `floors` (see [`demand_floors`]) hold observed demand per dimension that the need
/// of each stays at least at, over the target utilization.
pub fn plan_dimensions(
    w: &Workload,
    catalog: &[Tier],
    cpu: &Forecast,
    others: &[(Dim, &Forecast)],
    now: TimestampMs,
    interval_ms: i64,
    floors: &[Floor],
) -> Plan {
    let tiers = eligible_tiers(w, catalog);
    let window_end = now + max_lead_ms(&tiers) + interval_ms;
    let event_end = event_window_end(&tiers, now, interval_ms);
    // The planned events whose capacity this plan asks for, and their demand floors.
    let events: Vec<&PlannedEvent> = w
        .events
        .iter()
        .filter(|e| e.overlaps(now, event_end))
        .collect();
    let mut floors = floors.to_vec();
    for e in &events {
        let least = e
            .min_demand
            .map(|v| (Dim::Cpu, v, "min_demand".to_string()));
        let others = e
            .min_dimensions
            .iter()
            .filter_map(|(d, v)| Some((Dim::parse(d)?, *v, format!("min_dimensions.{d}"))));
        floors.extend(
            least
                .into_iter()
                .chain(others)
                .map(|(dim, demand, key)| Floor {
                    dim,
                    demand,
                    what: format!("the planned event \"{}\"'s {key}", e.name),
                    left_out: None,
                    glitches: None,
                }),
        );
    }
    let floors = &floors[..];
    let highest = |d: Dim| {
        floors
            .iter()
            .filter(|f| f.dim == d)
            .max_by(|a, b| a.demand.total_cmp(&b.demand))
    };
    let mut p = plan_held(w, catalog, cpu, now, interval_ms, highest(Dim::Cpu));
    for e in &events {
        let mut said = format!(
            "; planned event \"{}\" from {} to {}",
            e.name,
            format_ts(e.start.0),
            format_ts(e.end.0)
        );
        if e.scale != 1.0 {
            said.push_str(&format!(
                ": demand expected at {} times the forecast",
                e.scale
            ));
        }
        if let Some(d) = e.min_demand {
            said.push_str(&format!(
                "{} at least {d:.2} vCPU",
                if e.scale != 1.0 { ", and" } else { ":" }
            ));
        }
        said.push_str(&least_of_dimensions(e));
        if e.start.0 > now {
            said.push_str(", its capacity asked for by the slowest tier's 90th-percentile lead time before it starts");
        }
        p.reason.push_str(&said);
    }
    // A floor that did not hold a peak says so, or capacity falling after one would
    // look like the floor failing.
    for fl in floors {
        let left = [
            (
                fl.left_out,
                ("a higher peak", "higher peaks"),
                "the forecast saw coming and going",
            ),
            (
                fl.glitches,
                ("a lone glitch", "lone glitches"),
                "stood alone, far from the steps either side, and came back at once",
            ),
        ];
        for (n, top, (one, many), why) in left
            .into_iter()
            .filter_map(|(l, names, why)| l.map(|(n, top)| (n, top, names, why)))
        {
            p.reason.push_str(&format!(
                "; {} leaves out {} of {} demand (up to {top:.2}) that {why}",
                fl.what,
                if n == 1 {
                    one.to_string()
                } else {
                    format!("{n} {many}")
                },
                fl.dim.name(),
            ));
        }
    }
    if others.is_empty() {
        return p;
    }
    let needs: Vec<(Dim, f64)> = others
        .iter()
        .map(|(d, f)| {
            let peak = (0..f.horizon())
                .filter(|i| in_window(f, *i, now, window_end, event_end, &w.events))
                .map(|i| f.quantile(i, w.sla_quantile))
                .fold(0.0, f64::max)
                .max(highest(*d).map_or(0.0, |f| f.demand));
            (*d, peak / w.target_utilization)
        })
        .collect();
    let mut f = Fill {
        instances: p.target.clone(),
        capacity: tiers
            .iter()
            .map(|t| p.target.get(&t.name).copied().unwrap_or(0) as f64 * t.effective_capacity())
            .sum(),
        cost_per_hour: p.cost_per_hour,
        binding: "sla",
        notes: Vec::new(),
    };
    for t in &tiers {
        f.instances.entry(t.name.clone()).or_insert(0);
    }
    cover_dimensions(&mut f, &needs, &tiers, w);
    if !f.notes.is_empty() {
        for n in &f.notes {
            p.reason.push_str("; ");
            p.reason.push_str(n);
        }
        if f.binding != "sla" {
            p.binding = f.binding.to_string();
        }
        p.target = f.instances;
        p.cost_per_hour = f.cost_per_hour;
    }
    p
}

/// Tops `f` (a CPU fill) up so that every other dimension's need is covered too: an
/// instance shape brings CPU, memory, disk and network together, so a memory-bound
/// workload needs more instances than its CPU alone asks for. Each missing dimension is
/// bought from the eligible tier with the lowest price per unit of it (spot within its
/// share of the capacity the plan ends up with), up to the tiers' maxima; the notes say what
/// was added and why, and what could not be covered.
pub fn cover_dimensions(f: &mut Fill, needs: &[(Dim, f64)], tiers: &[&Tier], w: &Workload) {
    for &(d, need) in needs {
        if d == Dim::Cpu || need <= 0.0 {
            continue;
        }
        let covered = |f: &Fill| -> f64 {
            tiers
                .iter()
                .map(|t| f.instances[&t.name] as f64 * t.provides(d).unwrap_or(0.0))
                .sum()
        };
        let mut candidates: Vec<&&Tier> =
            tiers.iter().filter(|t| t.provides(d).is_some()).collect();
        if candidates.is_empty() {
            continue; // no tier's shape says anything about this dimension
        }
        candidates.sort_by(|a, b| {
            (a.price_per_hour / a.provides(d).unwrap_or(1.0))
                .total_cmp(&(b.price_per_hour / b.provides(d).unwrap_or(1.0)))
        });
        let mut added: BTreeMap<String, u32> = BTreeMap::new();
        let mut spot_cpu = f.spot_capacity(tiers);
        while covered(f) < need - 1e-9 {
            let Some(t) = candidates.iter().find(|t| {
                // Spot stays within its share of the capacity the plan ends up with.
                f.instances[&t.name] < t.max_instances
                    && (t.class != TierClass::Spot
                        || spot_fits(w, spot_cpu, f.capacity, t.effective_capacity()))
            }) else {
                f.binding = "max_instances";
                f.notes.push(format!(
                    "{:.1} {} of need left uncovered: every tier that provides it is at its maximum",
                    need - covered(f),
                    d.name()
                ));
                break;
            };
            // The budget binds first, as it does for CPU: no instance it cannot pay for.
            if let Some(b) = w
                .budget_per_hour
                .filter(|b| f.cost_per_hour + t.price_per_hour > b + 1e-9)
            {
                f.binding = "budget";
                f.notes.push(format!(
                    "the ${b:.2}/h budget cannot buy the {} too: {:.1} of {:.1} needed covered",
                    d.name(),
                    covered(f),
                    need
                ));
                break;
            }
            *f.instances.get_mut(&t.name).expect("present") += 1;
            *added.entry(t.name.clone()).or_default() += 1;
            f.capacity += t.effective_capacity();
            f.cost_per_hour += t.price_per_hour;
            if t.class == TierClass::Spot {
                spot_cpu += t.effective_capacity();
            }
        }
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|(t, n)| format!("{n} {t}")).collect();
            f.notes.push(format!(
                "{} binds: {:.1} needed, so {} added beyond CPU's need",
                d.name(),
                need,
                list.join(" + ")
            ));
            if f.binding == "sla" {
                f.binding = d.name(); // CPU was skipped above
            }
        }
    }
}

/// Probability that demand at forecast step `i` exceeds the effective capacity of `f`,
/// when each spot instance may be lost before its replacement serves: interruptions
/// arrive at the tier's rate, and a lost instance is missing for the replacement's lead
/// time (90th percentile) less the notice, plus one control interval. The demand's
/// distribution is the forecast's quantiles with the CDF interpolated linearly between
/// them; beyond the outermost levels the tail mass is that level's complement.
pub fn shortfall_risk(
    forecast: &Forecast,
    i: usize,
    f: &Fill,
    tiers: &[&Tier],
    interval_ms: i64,
) -> f64 {
    let exceed = |c: f64| -> f64 {
        let levels = &forecast.levels;
        let v = &forecast.values[i];
        if c < v[0] {
            return 1.0 - levels[0] * (c / v[0]).clamp(0.0, 1.0);
        }
        for j in 1..v.len() {
            if c < v[j] {
                let w = (c - v[j - 1]) / (v[j] - v[j - 1]).max(1e-12);
                return 1.0 - (levels[j - 1] + w * (levels[j] - levels[j - 1]));
            }
        }
        // Beyond the last quantile: an exponential tail through the last two.
        let k = v.len() - 1;
        let top = 1.0 - levels[k];
        if k == 0 {
            return if c > v[k] { 0.0 } else { top };
        }
        let ratio = (1.0 - levels[k - 1]) / top;
        let scale = (v[k] - v[k - 1]) / ratio.ln();
        if scale <= 1e-12 {
            return if c > v[k] { 0.0 } else { top };
        }
        top * (-(c - v[k]) / scale).exp()
    };
    // Spot losses: one binomial per spot tier, combined by convolution over lost capacity.
    let mut dist: Vec<(f64, f64)> = vec![(0.0, 1.0)]; // (capacity lost, probability)
    for t in tiers.iter().filter(|t| t.class == TierClass::Spot) {
        let n = f.instances.get(&t.name).copied().unwrap_or(0) as usize;
        if n == 0 || t.interruption_rate_per_hour <= 0.0 {
            continue;
        }
        let gap_ms =
            (t.lead_time_p90() as i64 - t.interruption_notice_s as i64).max(0) * 1000 + interval_ms;
        let p = 1.0 - (-t.interruption_rate_per_hour * gap_ms as f64 / 3_600_000.0).exp();
        let mut pk = (1.0 - p).powi(n as i32); // P(k = 0)
        let mut next = Vec::new();
        for k in 0..=n {
            if k > 0 {
                pk *= (n - k + 1) as f64 / k as f64 * p / (1.0 - p).max(1e-300);
            }
            if pk < 1e-12 && k > 0 {
                break;
            }
            for (lost, q) in &dist {
                next.push((lost + k as f64 * t.effective_capacity(), q * pk));
            }
        }
        dist = next;
    }
    dist.iter()
        .map(|(lost, q)| q * exceed(f.capacity - lost))
        .sum::<f64>()
        .clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::config::Config;
    use prescale_core::model::LatencyClass;
    use prescale_core::SeriesKey;

    fn setup() -> (Workload, Vec<Tier>) {
        let c = Config::default();
        (c.workloads[0].clone(), c.tiers.clone())
    }

    /// The effective capacity plan `p` asks for of `tiers`.
    fn capacity(p: &Plan, tiers: &[Tier]) -> f64 {
        tiers
            .iter()
            .map(|t| p.target.get(&t.name).copied().unwrap_or(0) as f64 * t.effective_capacity())
            .sum()
    }

    fn flat_forecast(levels_values: Vec<f64>, steps: usize) -> Forecast {
        let levels = vec![0.5, 0.95];
        Forecast::new(
            SeriesKey::metric("d").unwrap(),
            "t",
            0,
            60_000,
            60_000,
            levels,
            vec![levels_values; steps],
        )
        .unwrap()
    }

    #[test]
    fn baseline_rule_divides_by_performance_factor() {
        let (mut w, tiers) = setup();
        w.latency_class = LatencyClass::Critical; // high-performance only: factor 1.6, 4 vCPU
        w.target_utilization = 1.0;
        let f = flat_forecast(vec![10.0, 32.0], 30);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        // 32 / (4 * 1.6) = 5 instances exactly.
        assert_eq!(p.target["high-performance"], 5);
        assert_eq!(p.target.len(), 1);
        assert_eq!(p.binding, "sla");
        assert!((p.cost_per_hour - 5.0 * 0.34).abs() < 1e-9);
        assert!(p.reason.contains("q0.95"), "{}", p.reason);
    }

    fn event(name: &str, start: TimestampMs, end: TimestampMs, scale: f64) -> PlannedEvent {
        PlannedEvent {
            name: name.into(),
            start: prescale_core::EventTime(start),
            end: prescale_core::EventTime(end),
            scale,
            min_demand: None,
            recurring: None,
            min_dimensions: Default::default(),
        }
    }

    #[test]
    fn a_planned_event_raises_its_steps_and_is_provisioned_ahead_of_its_start() {
        let (mut w, tiers) = setup();
        // Minute steps from minute 1; the slowest tier's lead time is 300 s (450 s at its
        // 90th percentile), the control interval a minute.
        let f = flat_forecast(vec![10.0, 12.0], 30);
        let launch = event("launch", 480_000, 1_200_000, 3.0);
        assert_eq!(with_events(&f, &[]), None);
        let g = with_events(&f, std::slice::from_ref(&launch)).unwrap();
        let scaled: Vec<usize> = (0..30).filter(|&i| g.values[i] != f.values[i]).collect();
        assert_eq!(
            scaled,
            (7..19).collect::<Vec<_>>(),
            "the steps from minute 8 to 20"
        );
        assert_eq!(g.values[7], vec![30.0, 36.0]);
        let cap = |p: &Plan| capacity(p, &tiers);
        let usual = plan_dimensions(&w, &tiers, &f, &[], 0, 60_000, &[]);
        // At 0, the median lead time's window ends at 6 minutes: the event's first step
        // (at 8) is within the 90th percentile's (7.5 minutes), so it is asked for now.
        w.events = vec![launch.clone()];
        let ahead = plan_dimensions(&w, &tiers, &g, &[], 0, 60_000, &[]);
        assert!(
            cap(&ahead) >= 36.0 / w.target_utilization,
            "{}",
            ahead.reason
        );
        assert!(cap(&usual) < 36.0 / w.target_utilization);
        assert!(
            ahead.reason.contains(
                "; planned event \"launch\" from 1970-01-01T00:08:00Z to 1970-01-01T00:20:00Z: demand expected at 3 times the forecast, its capacity asked for by the slowest tier's 90th-percentile lead time before it starts"
            ),
            "{}",
            ahead.reason
        );
        // One that starts beyond that is not asked for yet, nor said.
        w.events = vec![event("later", 600_000, 1_200_000, 3.0)];
        let g = with_events(&f, &w.events).unwrap();
        let early = plan_dimensions(&w, &tiers, &g, &[], 0, 60_000, &[]);
        assert_eq!(early.target, usual.target);
        assert!(!early.reason.contains("planned event"), "{}", early.reason);
        // Its least demand holds over it, as any floor does, and the plan says whose.
        let mut least = event("sale", 0, 1_200_000, 1.0);
        least.min_demand = Some(50.0);
        w.events = vec![least];
        assert_eq!(
            with_events(&f, &w.events),
            None,
            "a scale of 1 changes no step"
        );
        let held = plan_dimensions(&w, &tiers, &f, &[], 60_000, 60_000, &[]);
        assert!(cap(&held) >= 50.0 / w.target_utilization, "{}", held.reason);
        assert!(
            held.reason
                .contains("held at the planned event \"sale\"'s min_demand, 50.00 vCPU")
                && held.reason.contains(": at least 50.00 vCPU")
                && !held.reason.contains("asked for by"),
            "{}",
            held.reason
        );
        // The other dimensions are read over the same window.
        w.events = vec![launch];
        let mem = flat_forecast(vec![30.0, 40.0], 30);
        let mem = with_events(&mem, &w.events).unwrap();
        let both = plan_dimensions(&w, &tiers, &f, &[(Dim::Memory, &mem)], 0, 60_000, &[]);
        assert!(
            both.reason.contains("memory binds: 150.0 needed"),
            "{}",
            both.reason
        );
        // Its least demand in another dimension holds that dimension over it: 400 GiB
        // at the target where the forecast says 40 at most.
        let mut warm = event("cache warm-up", 0, 1_200_000, 1.0);
        warm.min_dimensions = [("memory".to_string(), 400.0)].into();
        w.events = vec![warm];
        let mem = flat_forecast(vec![30.0, 40.0], 30);
        let held = plan_dimensions(&w, &tiers, &f, &[(Dim::Memory, &mem)], 60_000, 60_000, &[]);
        let memory: f64 = tiers
            .iter()
            .map(|t| held.target.get(&t.name).copied().unwrap_or(0) as f64 * t.memory_gib)
            .sum();
        assert!(
            memory >= 400.0 / w.target_utilization,
            "{memory} GiB: {}",
            held.reason
        );
        assert!(
            held.reason.contains(
                "; planned event \"cache warm-up\" from 1970-01-01T00:00:00Z to 1970-01-01T00:20:00Z, and at least 400 GiB of memory; memory binds: 500.0 needed"
            ),
            "{}",
            held.reason
        );
        let without = plan_dimensions(
            &w,
            &tiers,
            &f,
            &[(Dim::Memory, &mem)],
            1_300_000,
            60_000,
            &[],
        );
        assert!(without.target.values().sum::<u32>() < held.target.values().sum::<u32>());
    }

    #[test]
    fn a_history_without_its_events_is_as_each_step_without_them() {
        // Overlapping events, one with a scale below 1, steps straddling their edges.
        let events = [
            event("a", 250, 1_000, 2.0),
            event("b", 700, 1_400, 0.5),
            event("c", 900, 1_000, 3.0),
            event("d", 2_000, 2_100, 1.0),
        ];
        let ts: Vec<i64> = (0..30).map(|k| k * 100).collect();
        let values: Vec<f64> = (0..30).map(|k| 10.0 + k as f64).collect();
        let all = without_events_all(&events, Dim::Cpu, &ts, 100, &values);
        for k in 0..30 {
            assert_eq!(
                all[k],
                values[k] / event_scale(&events, ts[k], 100).unwrap_or(1.0),
                "step {k}"
            );
        }
        assert_eq!(all[2], values[2] / 2.0, "straddles a's start");
        assert_eq!(all[9], values[9] / 3.0);
        assert_eq!(all[12], values[12] / 0.5);
        assert_eq!(without_events_all(&[], Dim::Cpu, &ts, 100, &values), values);
        // An event that only holds CPU at a floor: its steps at most on the line from
        // the step before to the step after, in CPU only; a dip under it is kept.
        let mut spike = values.clone();
        spike[5..8].copy_from_slice(&[60.0, 5.0, 60.0]);
        let mut least = event("load test", 500, 800, 1.0);
        least.min_demand = Some(60.0);
        let cpu = without_events_all(std::slice::from_ref(&least), Dim::Cpu, &ts, 100, &spike);
        assert_eq!(cpu[..5], spike[..5]);
        assert_eq!(cpu[5..8], [15.0, 5.0, 17.0], "from 14 before to 18 after");
        assert_eq!(cpu[8..], spike[8..]);
        let memory =
            without_events_all(std::slice::from_ref(&least), Dim::Memory, &ts, 100, &spike);
        assert_eq!(memory, spike, "it said nothing of memory");
        // In progress at the history's end: the step before carried on.
        let cpu = without_events_all(
            std::slice::from_ref(&least),
            Dim::Cpu,
            &ts[..7],
            100,
            &spike[..7],
        );
        assert_eq!(cpu[5..7], [14.0, 5.0]);
        // Held at a floor of memory instead.
        least.min_demand = None;
        least.min_dimensions = [("memory".to_string(), 60.0)].into();
        let memory =
            without_events_all(std::slice::from_ref(&least), Dim::Memory, &ts, 100, &spike);
        assert_eq!(memory[5..8], [15.0, 5.0, 17.0]);
        assert_eq!(
            without_events_all(std::slice::from_ref(&least), Dim::Cpu, &ts, 100, &spike),
            spike
        );
        // Its steps are what the forecast is not judged by, in the dimension it holds;
        // every event's steps are announced.
        let held = |d| floor_only_steps(std::slice::from_ref(&least), d, &ts, 100);
        let steps = |m: Vec<bool>| -> Vec<usize> { (0..30).filter(|k| m[*k]).collect() };
        assert_eq!(steps(held(Dim::Memory)), [5, 6, 7]);
        assert_eq!(steps(held(Dim::Cpu)), Vec::<usize>::new());
        assert_eq!(
            steps(floor_only_steps(&events, Dim::Cpu, &ts, 100)),
            Vec::<usize>::new(),
            "they scale it"
        );
        assert_eq!(
            steps(in_events(&events, &ts, 100)),
            [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20]
        );
    }

    #[test]
    fn a_planned_events_demand_is_not_held_after_it_nor_a_season_later() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 600;
        let step = 60_000;
        let day = 86_400_000;
        let now = 2 * day + 600 * step;
        // Each window's demand is the minute it starts at.
        let peak = |_j: usize, from: i64, _to: i64| Some(Held::from((from / step) as f64));
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peak);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].demand, (now / step - 10) as f64);
        // An event that ended 3 minutes ago: the window starts at its end.
        w.events = vec![event("launch", now - 60 * step, now - 3 * step, 3.0)];
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peak);
        assert_eq!(f[0].demand, (now / step - 3) as f64);
        assert!(
            f[0].what
                .ends_with("since the planned event \"launch\" ended at 1970-01-03T09:57:00Z"),
            "{}",
            f[0].what
        );
        assert_eq!(f.len(), 2, "a day ago was not in the event: {f:?}");
        // One in progress is held as any demand is.
        w.events = vec![event("launch", now - 60 * step, now + 3 * step, 3.0)];
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peak);
        assert_eq!(f[0].demand, (now / step - 10) as f64);
        // The same time a day ago was in one: no seasonal floor.
        w.events = vec![event(
            "launch",
            now - day - 60 * step,
            now - day + 60 * step,
            3.0,
        )];
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peak);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].what.contains("scale_down_window_s"));
    }

    #[test]
    fn the_scale_down_window_keeps_capacity_for_the_recent_peak() {
        let (w, tiers) = setup();
        // The forecast followed a dip down to 10 (q0.95 12); demand was 24 an hour ago.
        let f = flat_forecast(vec![10.0, 12.0], 30);
        let free = plan_dimensions(&w, &tiers, &f, &[], 0, 60_000, &[]);
        let floor = |demand: f64| Floor {
            dim: Dim::Cpu,
            demand,
            what: "the highest demand of the last 7200 s (scale_down_window_s)".into(),
            left_out: None,
            glitches: None,
        };
        let held = plan_dimensions(&w, &tiers, &f, &[], 0, 60_000, &[floor(24.0)]);
        let cap = |p: &Plan| capacity(p, &tiers);
        assert!(
            cap(&free) < 24.0 / w.target_utilization,
            "{:?}",
            free.target
        );
        assert!(
            cap(&held) >= 24.0 / w.target_utilization,
            "{:?}",
            held.target
        );
        assert!(
            held.reason.contains("scale_down_window_s"),
            "{}",
            held.reason
        );
        // The reason puts the held demand and the need it makes side by side.
        let need = 24.0 / w.target_utilization;
        assert!(
            held.reason.contains(&format!(
                "24.00 vCPU ({need:.2} effective vCPU at the target utilization)"
            )),
            "{}",
            held.reason
        );
        assert!(
            !free.reason.contains("scale_down_window_s"),
            "{}",
            free.reason
        );
        // A recent peak below the forecast's need changes nothing.
        let low = plan_dimensions(&w, &tiers, &f, &[], 0, 60_000, &[floor(5.0)]);
        assert_eq!(low.target, free.target);
    }

    #[test]
    fn floors_are_the_window_peak_and_the_same_time_one_season_ago() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 600;
        // Minute steps: demand = the minute of the day, so every peak is its window's end.
        let step = 60_000;
        let day = 86_400_000;
        let now = 2 * day + 600 * step;
        let peak = |_j: usize, from: i64, to: i64| -> Option<Held> {
            let last = (to - 1).div_euclid(step) * step;
            (last >= from).then(|| Held::from((last % day / step) as f64))
        };
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peak);
        assert_eq!(f.len(), 2, "{f:?}");
        // The last 10 minutes end at minute 599; one day ago, from minute 599 to
        // half an hour after 600.
        assert_eq!(f[0].demand, 599.0);
        assert!(f[0].what.contains("scale_down_window_s"), "{}", f[0].what);
        assert_eq!(f[1].demand, 629.0);
        assert!(f[1].what.contains("seasonal_floor"), "{}", f[1].what);
        // With hour steps, three steps ahead.
        let hour = 3_600_000;
        let hourly = |_j: usize, from: i64, to: i64| -> Option<Held> {
            let last = (to - 1).div_euclid(hour) * hour;
            (last >= from).then(|| Held::from((last % day / hour) as f64))
        };
        let f = demand_floors(&w, 2 * day + 10 * hour, hour, &[Dim::Cpu], hourly);
        assert_eq!(f.last().unwrap().demand, 12.0, "{f:?}");
        // A day unless the workload sets its season.
        assert_eq!(floor_season_ms(&w), day);
        w.season_s = Some(3600);
        assert_eq!(floor_season_ms(&w), 3_600_000);
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peak);
        assert_eq!(f[1].demand, 569.0, "{f:?}");
        // Both can be turned off; a season of two steps or less is no season.
        w.scale_down_window_s = 0;
        w.seasonal_floor = false;
        assert!(demand_floors(&w, now, step, &[Dim::Cpu], peak).is_empty());
        w.seasonal_floor = true;
        w.season_s = Some(120);
        assert!(demand_floors(&w, now, step, &[Dim::Cpu], peak).is_empty());
    }

    /// The highest `demand(t)` of the five-minute steps from time 0 starting in
    /// `[from, to)`, as held ([`Held::from`]); `None` where there is none.
    fn steps_peak(from: i64, to: i64, demand: impl Fn(i64) -> f64) -> Option<Held> {
        let step = 300_000i64;
        let first = from.div_euclid(step) + i64::from(from.rem_euclid(step) != 0);
        (first..to.div_euclid(step) + i64::from(to.rem_euclid(step) != 0))
            .map(|k| k * step)
            .filter(|t| *t >= 0 && *t < to)
            .map(demand)
            .reduce(f64::max)
            .map(Held::from)
    }

    /// Five-minute steps of a job every four hours from `start` past the hour
    /// (150 for its first 30 minutes, 50 between runs), started `early` earlier on day
    /// `odd_day`: the peak of the steps starting in `[from, to)`.
    fn cron_peak(start: i64, odd_day: i64, early: i64) -> impl Fn(i64, i64) -> Option<Held> {
        let day = 86_400_000i64;
        move |from: i64, to: i64| {
            steps_peak(from, to, |t| {
                let shift = if t.div_euclid(day) == odd_day {
                    early
                } else {
                    0
                };
                let m = (t - start + shift).rem_euclid(4 * 3_600_000);
                if m < 1_800_000 {
                    150.0
                } else {
                    50.0
                }
            })
        }
    }

    #[test]
    fn the_window_does_not_hold_again_what_it_let_go() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 7200;
        let (step, hour, day) = (300_000i64, 3_600_000i64, 86_400_000i64);
        let job = cron_peak(0, -1, 0);
        let peak = |_j: usize, a: i64, b: i64| job(a, b);
        let window = |now: i64, falls: &mut Vec<Option<WindowFall>>| {
            let seasons = vec![(day, None)];
            demand_floors_in(&w, now, step, &[Dim::Cpu], peak, &seasons, falls)
                .into_iter()
                .find(|f| f.what.contains("scale_down_window_s"))
                .expect("a window floor")
        };
        // Pass by pass from the end of the 04:00 run: the window lets it go at once, as
        // demand fell after 04:30 on the last days.
        let mut falls = vec![None];
        let f = window(5 * day + 4 * hour + 6 * step, &mut falls);
        assert_eq!(f.demand, 50.0, "{f:?}");
        assert!(
            f.what
                .contains("times 0.33, as far as demand fell after this time"),
            "{}",
            f.what
        );
        let mut now = 5 * day + 4 * hour + 6 * step;
        while now < 5 * day + 6 * hour + 6 * step {
            now += step;
            let f = window(now, &mut falls);
            // From 06:05 the next run (08:00) is within two hours on the last days, so
            // the window's own fall says hold the run's 150; it was let go at 04:30 and
            // is not asked for again (the seasonal floor asks for 08:00's in time). The
            // reason names the last pass that found the fall.
            assert_eq!(f.demand, 50.0, "at {}: {f:?}", format_ts(now));
            if now >= 5 * day + 6 * hour + step && now < 5 * day + 6 * hour + 6 * step {
                assert!(
                    f.what.contains(
                        "times 0.33, as far as demand fell after 1970-01-06T06:00:00Z on each of the last 3 seasons (86400 s): what the window let go it does not hold again"
                    ),
                    "{}",
                    f.what
                );
            }
        }
        // A pass that finds the fall anew (no pass before it, as after a restart) holds
        // what the window says at that time.
        let f = window(5 * day + 6 * hour + step, &mut vec![None]);
        assert_eq!(f.demand, 150.0, "{f:?}");
        // A new peak in the window is judged afresh: the 08:00 run, at 08:35.
        let f = window(5 * day + 8 * hour + 7 * step, &mut falls);
        assert_eq!(f.demand, 50.0, "{f:?}");
        assert!(f.what.contains("after this time"), "{}", f.what);
        assert_eq!(
            falls[0].map(|f| f.since),
            Some(5 * day + 8 * hour + 7 * step)
        );
    }

    #[test]
    fn the_seasonal_floor_looks_near_where_the_rise_came_on_the_minute() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 0;
        let (step, hour, day) = (300_000i64, 3_600_000i64, 86_400_000i64);
        let seasonal = |now: i64, job: &dyn Fn(i64, i64) -> Option<Held>| {
            demand_floors(&w, now, step, &[Dim::Cpu], |_j, a, b| job(a, b))
                .into_iter()
                .find(|f| f.what.contains("seasonal_floor"))
                .expect("a seasonal floor")
        };
        // The job starts at 04:00 on the minute every day: at 03:35 nothing is held
        // for it yet (the full look-ahead held its 150 from 03:30), and the reason says
        // why; from 03:50 it is.
        let job = cron_peak(0, -1, 0);
        let f = seasonal(5 * day + 3 * hour + 7 * step, &job);
        assert_eq!(f.demand, 50.0, "{f:?}");
        assert!(
            f.what
                .contains("15 min ahead: on each of the last 3 seasons demand rose later"),
            "{}",
            f.what
        );
        let f = seasonal(5 * day + 3 * hour + 10 * step, &job);
        assert_eq!(f.demand, 150.0, "{f:?}");
        // Where it started 25 minutes early on one of the last three days, it may
        // again: the floor looks the whole half hour ahead.
        let jittery = cron_peak(0, 3, 25 * 60_000);
        let f = seasonal(5 * day + 3 * hour + 7 * step, &jittery);
        assert_eq!(f.demand, 150.0, "{f:?}");
        assert!(!f.what.contains("min ahead"), "{}", f.what);
        // Three seasons are needed to tell: on the third day, the whole look-ahead.
        let f = seasonal(2 * day + 3 * hour + 7 * step, &job);
        assert_eq!(f.demand, 150.0, "{f:?}");
        assert!(!came_late(
            2 * day + 3 * hour + 7 * step,
            day,
            step,
            3 * step,
            SEASONAL_FLOOR_AHEAD_MS,
            &job
        ));
        // A ramp that rises steadily through the half hour came no later than that.
        let ramp = |from: i64, to: i64| {
            let last = (to - 1).div_euclid(step) * step;
            (last >= from).then(|| Held::from(100.0 + (last % day) as f64 / 60_000.0))
        };
        assert!(!came_late(
            5 * day + 3 * hour,
            day,
            step,
            3 * step,
            SEASONAL_FLOOR_AHEAD_MS,
            ramp
        ));
    }

    /// Five-minute steps at 100 with a one-step spike to 140 at 03:00 plus `minutes[d]`
    /// on day `d` (none where it is negative) and at each of `extra`: the peak of the
    /// steps starting in `[from, to)`.
    fn nightly_spike(minutes: Vec<i64>, extra: Vec<i64>) -> impl Fn(i64, i64) -> Option<Held> {
        let (hour, day) = (3_600_000i64, 86_400_000i64);
        let spikes: Vec<i64> = (0..minutes.len() as i64)
            .filter(|d| minutes[*d as usize] >= 0)
            .map(|d| d * day + 3 * hour + minutes[d as usize] * 60_000)
            .chain(extra)
            .collect();
        move |from: i64, to: i64| {
            steps_peak(
                from,
                to,
                |t| if spikes.contains(&t) { 140.0 } else { 100.0 },
            )
        }
    }

    #[test]
    fn the_seasonal_floor_waits_for_a_nightly_spike_that_comes_later_than_yesterday() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 0;
        let (step, hour, day) = (300_000i64, 3_600_000i64, 86_400_000i64);
        let seasonal_of = |w: &Workload, now: i64, demand: &dyn Fn(i64, i64) -> Option<Held>| {
            demand_floors(w, now, step, &[Dim::Cpu], |_j, a, b| demand(a, b))
                .into_iter()
                .find(|f| f.what.contains("seasonal_floor"))
                .expect("a seasonal floor")
        };
        let seasonal =
            |now: i64, demand: &dyn Fn(i64, i64) -> Option<Held>| seasonal_of(&w, now, demand);
        // The spike came at 03:20, 03:35, 03:15, 03:30, 03:10 and comes at 03:40 on day 5.
        let nightly = nightly_spike(vec![20, 35, 15, 30, 10, 40], vec![]);
        // At 03:30 a day ago was 03:25-04:00 at 100: the spike came at 03:10, half an hour
        // before, and near 03:30 on each of the three days before, and not yet today.
        let f = seasonal(5 * day + 3 * hour + 6 * step, &nightly);
        assert_eq!(f.demand, 140.0, "{f:?}");
        assert!(
            f.what.contains(
                "or 30 min before it: a spike that came then and near this time on each of the 3 seasons before has not come yet today"
            ),
            "{}",
            f.what
        );
        assert_eq!(
            late_spike(
                5 * day + 3 * hour + 6 * step,
                day,
                step,
                0.0,
                &nightly,
                |h| h.demand
            ),
            Some(140.0)
        );
        // Nothing to wait for where the floor holds as much already.
        assert_eq!(
            late_spike(
                5 * day + 3 * hour + 6 * step,
                day,
                step,
                140.0,
                &nightly,
                |h| h.demand
            ),
            None
        );
        // Once today's has come, the floor is what it was a day ago then.
        let f = seasonal(5 * day + 3 * hour + 9 * step, &nightly);
        assert_eq!(f.demand, 100.0, "{f:?}");
        assert!(!f.what.contains("not come yet"), "{}", f.what);
        // A spike that did not come two days ago is not this time's.
        let skipped = nightly_spike(vec![20, 35, 15, -1, 10, 40], vec![]);
        assert_eq!(
            seasonal(5 * day + 3 * hour + 6 * step, &skipped).demand,
            100.0
        );
        // Nor one that comes at any hour: another at 23:00 yesterday.
        let any_hour = nightly_spike(vec![20, 35, 15, 30, 10, 40], vec![4 * day + 23 * hour]);
        assert_eq!(
            seasonal(5 * day + 3 * hour + 6 * step, &any_hour).demand,
            100.0
        );
        // Four seasons are needed to tell.
        assert_eq!(
            late_spike(
                3 * day + 3 * hour + 6 * step,
                day,
                step,
                0.0,
                &nightly,
                |h| h.demand
            ),
            None
        );
        // An event then is not the season's demand.
        let batch = event(
            "batch",
            4 * day + 3 * hour,
            4 * day + 3 * hour + 15 * 60_000,
            1.4,
        );
        let mut w = w.clone();
        w.events.push(batch);
        assert_eq!(
            seasonal_of(&w, 5 * day + 3 * hour + 6 * step, &nightly).demand,
            100.0
        );
    }

    #[test]
    fn the_window_lets_go_where_demand_fell_alike_on_the_last_seasons() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 7200;
        let (hour, day) = (3_600_000i64, 86_400_000i64);
        // Hourly steps: 100 until 18:00, then down by 10 an hour, each day alike (the
        // cases below change single days around it).
        let alike = move |from: i64, to: i64| -> Option<Held> {
            (from.div_euclid(hour)..to.div_euclid(hour))
                .filter(|h| *h >= 0)
                .map(|h| match h % 24 {
                    at if at < 18 => 100.0,
                    at => 100.0 - 10.0 * (at - 17) as f64,
                })
                .reduce(f64::max)
                .map(Held::from)
        };
        let now = 5 * day + 20 * hour;
        // The two hours before 20:00 peaked at 90 (18:00), the two after at 70 (20:00).
        let r = seasonal_fall(now, 2 * hour, day, 90.0, alike).expect("a seasonal fall");
        assert!((r - 70.0 / 90.0).abs() < 1e-9, "{r}");
        // In the floor: today's window peak (90) times that fall, and the reason says so.
        let peak = |_j: usize, a: i64, b: i64| alike(a, b);
        let f = demand_floors(&w, now, hour, &[Dim::Cpu], peak);
        assert!((f[0].demand - 70.0).abs() < 1e-9, "{f:?}");
        assert!(f[0].what.contains("times 0.78"), "{}", f[0].what);
        assert!(f[0].what.contains("last 3 seasons"), "{}", f[0].what);
        // The highest of the falls: a day that fell by less sets it.
        let mild = |from: i64, to: i64| {
            let v = alike(from, to)?.demand;
            // Three days ago, the two hours after 20:00 were at 85, not 70.
            let late = from >= 2 * day + 20 * hour && to <= 2 * day + 22 * hour;
            Some(Held::from(if late { 85.0 } else { v }))
        };
        let r = seasonal_fall(now, 2 * hour, day, 90.0, mild).unwrap();
        assert!((r - 85.0 / 90.0).abs() < 1e-9, "{r}");
        // Falls further apart than FALL_SPREAD are no pattern: 0.78 against 0.5.
        let apart = |from: i64, to: i64| {
            let v = alike(from, to)?.demand;
            let odd = from >= 3 * day + 20 * hour && to <= 3 * day + 22 * hour;
            Some(Held::from(if odd { 45.0 } else { v }))
        };
        assert_eq!(seasonal_fall(now, 2 * hour, day, 90.0, apart), None);
        // A season where demand came back up, or one not seen yet, keeps the peak.
        let back = |from: i64, to: i64| {
            let v = alike(from, to)?.demand;
            let up = from >= 4 * day + 20 * hour && to <= 4 * day + 22 * hour;
            Some(Held::from(if up { 95.0 } else { v }))
        };
        assert_eq!(seasonal_fall(now, 2 * hour, day, 90.0, back), None);
        assert_eq!(
            seasonal_fall(2 * day + 20 * hour, 2 * hour, day, 90.0, alike),
            None
        );
        // A quiet day (no peak to fall from: yesterday at 20 all day, as a Sunday beside
        // office hours) is no comparison: the fall is found over the three days before.
        let quiet = |from: i64, to: i64| {
            let v = alike(from, to)?.demand;
            Some(Held::from(if from >= 4 * day { 20.0 } else { v }))
        };
        let r = seasonal_fall(now, 2 * hour, day, 90.0, quiet).expect("over days 1 to 3");
        assert!((r - 70.0 / 90.0).abs() < 1e-9, "{r}");
        // Only a week back: with the seven days before quiet, none (though the eighth
        // fell alike).
        let week_quiet = |from: i64, to: i64| {
            let v = alike(from, to)?.demand;
            let quiet = from >= day && from < 8 * day;
            Some(Held::from(if quiet { 20.0 } else { v }))
        };
        assert_eq!(
            seasonal_fall(8 * day + 20 * hour, 2 * hour, day, 90.0, week_quiet),
            None
        );
        // Neither at 10:00, where demand held at 100, nor with a window of a season or
        // more, nor without the seasonal floor.
        assert_eq!(
            seasonal_fall(5 * day + 10 * hour, 2 * hour, day, 100.0, alike),
            None
        );
        assert_eq!(seasonal_fall(now, day, day, 90.0, alike), None);
        w.seasonal_floor = false;
        let f = demand_floors(&w, now, hour, &[Dim::Cpu], peak);
        assert_eq!(f[0].demand, 90.0, "{f:?}");
        assert!(!f[0].what.contains("times"), "{}", f[0].what);
    }

    #[test]
    fn the_seasonal_floor_scales_down_on_a_quieter_day_but_keeps_bursts() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 0;
        let (step, hour, day) = (300_000i64, 3_600_000i64, 86_400_000i64);
        // Five-minute steps: the peak of a range is its highest step.
        fn peaks(level: impl Fn(i64) -> f64) -> impl Fn(usize, i64, i64) -> Option<Held> {
            move |_, from: i64, to: i64| {
                let step = 300_000i64;
                (from.div_euclid(step).max(0)..to.div_euclid(step))
                    .map(&level)
                    .reduce(f64::max)
                    .map(Held::from)
            }
        }
        let noise = |s: i64| 1.0 + 0.04 * (((s * 7919) % 13) as f64 / 13.0 - 0.5);
        let daily = move |s: i64| {
            let h = (s % 288) as f64 / 12.0;
            (30.0 + 150.0 * (0.5 - 0.5 * ((h - 3.0) / 24.0 * std::f64::consts::TAU).cos()))
                * noise(s)
        };
        // Day 2 is the first quieter day (at 60%), with two days of history: too little
        // for the floor to look back a week, so it looks back to the busier day.
        let quiet = move |s: i64| daily(s) * if s / 288 == 2 { 0.6 } else { 1.0 };
        let now = 2 * day + 11 * hour;
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peaks(quiet));
        let yesterday = peaks(daily)(0, now - day - step, now - day + 30 * 60_000)
            .unwrap()
            .demand;
        let r = f[0].demand / yesterday;
        assert!((0.55..0.7).contains(&r), "{r}: {f:?}");
        assert!(
            f[0].what.contains("times") && f[0].what.contains("7200 s"),
            "{}",
            f[0].what
        );
        // A day like the one before keeps the floor whole.
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peaks(daily));
        assert_eq!(f[0].demand, yesterday);
        assert!(!f[0].what.contains("times"), "{}", f[0].what);
        // A burst yesterday in the two hours before this time, none today: the typical
        // level is the same, so the floor stays whole.
        let burst = move |s: i64| daily(s) + if s == 288 + 10 * 12 { 300.0 } else { 0.0 };
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peaks(burst));
        assert!(!f[0].what.contains("times"), "{}", f[0].what);
        // An idle disk with a burst at this time yesterday, quieter than yesterday's
        // idle since: the burst is no level, and is held.
        let idle = move |s: i64| {
            let base = if s / 288 == 2 { 0.2 } else { 0.5 };
            base * noise(s) + if s == 288 + 11 * 12 + 2 { 150.0 } else { 0.0 }
        };
        let f = demand_floors(&w, now, step, &[Dim::Cpu], peaks(idle));
        assert!(f[0].demand > 150.0, "{f:?}");
        // Without a seasonal floor there is nothing to scale.
        w.seasonal_floor = false;
        assert!(demand_floors(&w, now, step, &[Dim::Cpu], peaks(quiet)).is_empty());
    }

    #[test]
    fn the_seasonal_floor_looks_back_a_week_where_weeks_repeat_and_days_do_not() {
        let (mut w, _) = setup();
        w.scale_down_window_s = 0;
        let (hour, day) = (3_600_000i64, 86_400_000i64);
        // Hourly steps from day 0 (a Monday): `level(h)` in hour h; the peak of a range
        // is its highest hour, with a little noise that differs every hour.
        fn peaks(
            level: impl Fn(i64) -> f64,
            start: i64,
        ) -> impl Fn(usize, i64, i64) -> Option<Held> {
            move |_, from: i64, to: i64| {
                let hour = 3_600_000i64;
                (from.div_euclid(hour).max(start)..to.div_euclid(hour))
                    .map(|h| level(h) * (1.0 + 0.02 * (((h * 7919) % 13) as f64 / 13.0 - 0.5)))
                    .reduce(f64::max)
                    .map(Held::from)
            }
        }
        let daily = |h: i64| 50.0 + 100.0 * ((h % 24) as f64 / 24.0 * std::f64::consts::PI).sin();
        let weekends = move |h: i64| daily(h) * if (h / 24) % 7 >= 5 { 0.5 } else { 1.0 };
        // A Saturday at 14:00 after two weeks: a week back is last Saturday's level.
        let now = (2 * 7 + 5) * day + 14 * hour;
        let p = peaks(weekends, 0);
        let (season, share) = floor_season(&w, now, hour, |a, b| p(0, a, b));
        assert_eq!(season, 7 * day);
        assert!(share.unwrap() < 0.2, "{share:?}");
        let f = demand_floors(&w, now, hour, &[Dim::Cpu], &p);
        assert!(
            f[0].what.contains("604800 s") && f[0].what.contains("a week as"),
            "{}",
            f[0].what
        );
        assert!(f[0].demand < 0.6 * daily(14), "{f:?}");
        // The same service without quieter weekends repeats daily: a day back.
        let p = peaks(daily, 0);
        assert_eq!(floor_season(&w, now, hour, |a, b| p(0, a, b)), (day, None));
        let f = demand_floors(&w, now, hour, &[Dim::Cpu], &p);
        assert!(
            f[0].what.contains("86400 s") && !f[0].what.contains("week"),
            "{}",
            f[0].what
        );
        // Too few hours with a week before them (history from 7 days and 20 hours ago),
        // or a season the workload sets: no choice made.
        let p = peaks(weekends, (2 * 7 + 5) * 24 + 14 - 7 * 24 - 20);
        assert_eq!(floor_season(&w, now, hour, |a, b| p(0, a, b)), (day, None));
        let p = peaks(weekends, 0);
        w.season_s = Some(43_200);
        assert_eq!(
            floor_season(&w, now, hour, |a, b| p(0, a, b)),
            (day / 2, None)
        );
        // Steps longer than a day fraction that divides it: a day.
        w.season_s = None;
        assert_eq!(
            floor_season(&w, now, 7 * hour, |a, b| p(0, a, b)),
            (day, None)
        );
    }

    #[test]
    fn lone_glitches_are_not_held_and_the_plan_says_so() {
        let nan = f64::NAN;
        let demand = [60.0, 62.0, 6_000.0, 61.0, 150.0, 63.0, 64.0, 62.0];
        let said = [nan; 8];
        // Step 2 is judged a lone glitch (4, a real surge, is not): held at 150, and the
        // glitch counted as left out; one the held demand is above is not counted.
        let lone = |t: usize| t == 2;
        assert_eq!(
            held_peak(&demand, &said, lone, 0..8),
            Some(Held {
                demand: 150.0,
                foreseen: None,
                glitches: Some((1, 6_000.0)),
            })
        );
        assert_eq!(
            held_peak(&demand, &said, |_| false, 0..8),
            Some(Held::from(6_000.0))
        );
        let mut low = demand;
        low[2] = 100.0;
        assert_eq!(held_peak(&low, &said, lone, 0..8), Some(Held::from(150.0)));
        // A range of nothing but a glitch holds nothing.
        assert_eq!(held_peak(&demand, &said, lone, 2..3), None);
        // The floor passes it on and the plan says what it left out.
        let (mut w, tiers) = setup();
        w.scale_down_window_s = 600;
        w.seasonal_floor = false;
        let f = demand_floors(&w, 3_600_000, 60_000, &[Dim::Cpu], |_, _, _| {
            held_peak(&demand, &said, lone, 0..8)
        });
        assert_eq!((f[0].demand, f[0].glitches), (150.0, Some((1, 6_000.0))));
        let fc = flat_forecast(vec![10.0, 12.0], 30);
        let p = plan_dimensions(&w, &tiers, &fc, &[], 3_600_000, 60_000, &f);
        assert!(
            p.reason.contains("(scale_down_window_s) leaves out a lone glitch of cpu demand (up to 6000.00) that stood alone"),
            "{}",
            p.reason
        );
        // The seasonal floor keeps it: what stood alone a day ago may be what comes at
        // this time every day.
        w.seasonal_floor = true;
        let f = demand_floors(&w, 3 * 86_400_000, 60_000, &[Dim::Cpu], |_, _, _| {
            held_peak(&demand, &said, lone, 0..8)
        });
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f[1].what.contains("seasonal_floor"), "{}", f[1].what);
        assert_eq!((f[1].demand, f[1].glitches), (6_000.0, None));
    }

    #[test]
    fn peaks_the_forecast_saw_coming_and_going_are_not_held() {
        let nan = f64::NAN;
        // An hourly job's spike at step 2 that the forecast said both ways; a surge at
        // step 5 it did not see coming.
        let demand = [60.0, 65.0, 200.0, 95.0, 64.0, 150.0, 140.0, 62.0];
        let said = [nan, 64.0, 190.0, 100.0, 66.0, 70.0, 145.0, 130.0];
        assert!(foreseen_peak(&demand, &said, 2));
        assert!(!foreseen_peak(&demand, &said, 5));
        assert_eq!(
            held_peak(&demand, &said, |_| false, 0..8),
            Some(Held {
                demand: 150.0,
                foreseen: Some((1, 200.0)),
                glitches: None
            })
        );
        // Halfway is enough; less is not, on the way up or down.
        let mut s = said;
        s[2] = 65.0 + 0.5 * 135.0;
        s[3] = 200.0 - 0.5 * 105.0;
        assert!(foreseen_peak(&demand, &s, 2));
        s[2] -= 0.01;
        assert!(!foreseen_peak(&demand, &s, 2));
        s[2] += 0.01;
        s[3] += 0.01;
        assert!(!foreseen_peak(&demand, &s, 2));
        // Seen coming but not going (the forecast expected it to stay): held.
        assert!(!foreseen_peak(
            &[60.0, 200.0, 70.0],
            &[nan, 190.0, 180.0],
            1
        ));
        // Without the step after (the latest one), the step before, or a forecast made
        // before them, a peak is held.
        assert!(!foreseen_peak(&demand[..3], &said[..3], 2));
        assert!(!foreseen_peak(&demand[2..], &said[2..], 0));
        assert!(!foreseen_peak(&demand, &[nan; 8], 2));
        assert!(!foreseen_peak(&demand, &said[..3], 2));
        // A range of foreseen peaks only holds nothing; one past the data is clipped.
        assert_eq!(held_peak(&demand, &said, |_| false, 2..3), None);
        assert_eq!(
            held_peak(&demand, &said, |_| false, 6..20),
            Some(Held::from(140.0))
        );
        // A foreseen peak no higher than what is held is not counted as left out.
        let low = [60.0, 65.0, 100.0, 95.0, 64.0, 150.0, 140.0, 62.0];
        let mut ls = said;
        ls[3] = 80.0;
        assert!(foreseen_peak(&low, &ls, 2));
        assert_eq!(
            held_peak(&low, &ls, |_| false, 0..8),
            Some(Held::from(150.0))
        );
        // The floor keeps what it left out, and the plan says so whether the floor binds
        // (a forecast of 10) or not (200).
        let (mut w, tiers) = setup();
        w.scale_down_window_s = 600;
        w.seasonal_floor = false;
        for (left_out, says) in [
            (None, None),
            (
                Some((1, 200.0)),
                Some("leaves out a higher peak of cpu demand (up to 200.00)"),
            ),
            (
                Some((3, 210.0)),
                Some("leaves out 3 higher peaks of cpu demand (up to 210.00)"),
            ),
        ] {
            let f = demand_floors(&w, 3_600_000, 60_000, &[Dim::Cpu], |_, _, _| {
                Some(Held {
                    demand: 150.0,
                    foreseen: left_out,
                    glitches: None,
                })
            });
            assert_eq!((f[0].demand, f[0].left_out), (150.0, left_out));
            for median in [10.0, 200.0] {
                let fc = flat_forecast(vec![median, median * 1.2], 30);
                let p = plan_dimensions(&w, &tiers, &fc, &[], 0, 60_000, &f);
                assert_eq!(
                    p.reason.contains("held at the highest demand"),
                    median < 100.0
                );
                match says {
                    Some(s) => assert!(
                        p.reason.contains(&format!(
                            "(scale_down_window_s) {s} that the forecast saw coming and going"
                        )),
                        "{}",
                        p.reason
                    ),
                    None => assert!(!p.reason.contains("leaves out"), "{}", p.reason),
                }
            }
        }
    }

    #[test]
    fn memory_is_covered_within_the_budget() {
        let (mut w, tiers) = setup();
        w.budget_per_hour = Some(1.0);
        let cpu = flat_forecast(vec![1.0, 1.0], 30);
        let memory = flat_forecast(vec![1000.0, 1000.0], 30);
        let p = plan_dimensions(&w, &tiers, &cpu, &[(Dim::Memory, &memory)], 0, 60_000, &[]);
        // 1000 GiB at 80% would take dozens of instances; $1/h buys a few.
        assert!(p.cost_per_hour <= 1.0 + 1e-9, "{}", p.reason);
        assert!(p.target.values().sum::<u32>() >= 2, "{:?}", p.target);
        assert_eq!(p.binding, "budget", "{}", p.reason);
        assert!(
            p.reason
                .contains("the $1.00/h budget cannot buy the memory too"),
            "{}",
            p.reason
        );
        w.budget_per_hour = None;
        let p = plan_dimensions(&w, &tiers, &cpu, &[(Dim::Memory, &memory)], 0, 60_000, &[]);
        assert!(
            p.cost_per_hour > 1.0 && p.binding == "memory",
            "{}",
            p.reason
        );
    }

    #[test]
    fn a_workload_on_spot_alone_covers_spot_losses_with_spot_or_says_it_cannot() {
        let (mut w, mut tiers) = setup();
        tiers[0].interruption_rate_per_hour = 5.0;
        tiers[0].max_instances = 100;
        w.tiers = vec![tiers[0].name.clone()];
        w.max_spot_share = 1.0;
        w.sla_quantile = 0.99;
        w.target_utilization = 1.0;
        let f = flat_forecast(vec![10.0, 11.0], 30);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        // 11 vCPU: 3 spot cover it, and more spot covers their losses (no on-demand tier
        // may serve it).
        assert_eq!(p.binding, "sla", "{}", p.reason);
        assert!(p.target[&tiers[0].name] > 3, "{}", p.reason);
        assert!(
            p.reason.contains(
                " spot added so that losing spot capacity keeps the shortfall risk within 1.0%"
            ),
            "{}",
            p.reason
        );
        // With no room for the cover, the plan says the bound is not met.
        tiers[0].max_instances = 3;
        let p = plan(&w, &tiers, &f, 0, 60_000);
        assert_eq!(p.target[&tiers[0].name], 3);
        assert_eq!(p.binding, "max_instances", "{}", p.reason);
        assert!(
            p.reason
                .contains("no tier it may use has room for the cover against spot losses"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn a_tier_reserved_for_other_workloads_is_not_used() {
        let (w, mut tiers) = setup();
        tiers[0].workloads = vec!["batch-jobs".into()]; // spot, for another workload only
        let f = flat_forecast(vec![10.0, 24.0], 30);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        assert!(!p.target.contains_key(&tiers[0].name), "{:?}", p.target);
        // need 30 vCPU, all on standard now.
        assert_eq!(p.target["standard"], 8);
        tiers[0].workloads.push(w.name.clone());
        let p = plan(&w, &tiers, &f, 0, 60_000);
        assert_eq!(p.target[&tiers[0].name], 4);
    }

    #[test]
    fn cheapest_tiers_first_with_a_spot_cap() {
        let (w, tiers) = setup();
        // need = 24 / 0.8 = 30 vCPU; spot share 50% -> 15 vCPU -> floor(15/4) = 3 spot;
        // rest 18 vCPU on the next cheapest (standard at 0.048/vCPU vs hp 0.053) -> 5,
        // 37.5% of 32 vCPU on spot; one standard traded for a spot -> 4 + 4, 50%.
        let f = flat_forecast(vec![10.0, 24.0], 30);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        assert_eq!(p.target["spot"], 4);
        assert_eq!(p.target["standard"], 4);
        assert_eq!(p.target["high-performance"], 0);
        let cap: f64 = tiers
            .iter()
            .map(|t| p.target[&t.name] as f64 * t.effective_capacity())
            .sum();
        assert!(cap >= 30.0);
        assert!(
            p.reason.contains("spot limited to 50% of capacity"),
            "{}",
            p.reason
        );
        // need 26: 3 spot + 4 standard (28 vCPU); a fourth spot for a standard would be
        // 16 of 28 on spot, over half, so it stays.
        let f = flat_forecast(vec![10.0, 20.8], 30);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        assert_eq!((p.target["spot"], p.target["standard"]), (3, 4));
    }

    #[test]
    fn the_window_covers_lead_time_and_no_further() {
        let (w, tiers) = setup();
        // Demand jumps at step 10 (11 min ahead); the slowest lead is 5 min + 1 min interval.
        let levels = vec![0.5, 0.95];
        let mut values = vec![vec![1.0, 1.0]; 60];
        for row in values.iter_mut().skip(10) {
            *row = vec![40.0, 40.0];
        }
        let f = Forecast::new(
            SeriesKey::metric("d").unwrap(),
            "t",
            0,
            60_000,
            60_000,
            levels,
            values,
        )
        .unwrap();
        let early = plan(&w, &tiers, &f, 0, 60_000);
        let total: u32 = early.target.values().sum();
        assert_eq!(total, 1, "jump is beyond the window: {:?}", early.target);
        let late = plan(&w, &tiers, &f, 6 * 60_000, 60_000);
        let total: u32 = late.target.values().sum();
        assert!(total >= 13, "jump is inside the window: {:?}", late.target);
        assert_eq!(early.steps.len(), 60);
        assert!(early.steps[20].instances.values().sum::<u32>() >= 13);
    }

    #[test]
    fn never_exceeds_max_instances_and_says_so() {
        let (w, mut tiers) = setup();
        for t in &mut tiers {
            t.max_instances = 2;
        }
        let f = flat_forecast(vec![10.0, 500.0], 30);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        for t in &tiers {
            assert!(p.target[&t.name] <= 2);
        }
        assert_eq!(p.binding, "max_instances");
        assert!(p.reason.contains("uncovered"), "{}", p.reason);
        // A floor of instances the tiers cannot hold: the maxima decided the plan too.
        let mut w = w;
        w.min_instances = 8;
        let quiet = plan(&w, &tiers, &flat_forecast(vec![0.0, 0.0], 30), 0, 60_000);
        assert_eq!(quiet.binding, "max_instances", "{}", quiet.reason);
        assert!(
            quiet.reason.contains("2 instance(s) short of the workload's min_instances = 8: its tiers are at their max_instances"),
            "{}",
            quiet.reason
        );
        // With a budget that could pay for more, the maxima still stopped it.
        w.budget_per_hour = Some(100.0);
        let paid = plan(&w, &tiers, &flat_forecast(vec![0.0, 0.0], 30), 0, 60_000);
        assert_eq!(paid.binding, "max_instances", "{}", paid.reason);
    }

    #[test]
    fn budget_cuts_dearest_first_and_explains() {
        let (mut w, tiers) = setup();
        w.budget_per_hour = Some(1.0);
        let f = flat_forecast(vec![10.0, 40.0], 30);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        assert!(p.cost_per_hour <= 1.0 + 1e-9);
        assert_eq!(p.binding, "budget");
        assert!(p.reason.contains("cannot buy the SLA"), "{}", p.reason);
        // Spot (cheapest) is kept at its share; standard was cut.
        assert_eq!(p.target["spot"], 6);
    }

    #[test]
    fn spot_losses_count_in_the_chance_constraint() {
        let (mut w, mut tiers) = setup();
        w.max_spot_share = 1.0;
        w.target_utilization = 1.0;
        for t in &mut tiers {
            t.interruption_rate_per_hour = 0.0;
        }
        let f = flat_forecast(vec![30.0, 40.0], 30);
        let calm = plan(&w, &tiers, &f, 0, 60_000);
        // No interruptions: spot carries it all and the risk is the SLA's 5%.
        assert_eq!(calm.target["spot"], 10);
        assert_eq!(calm.target["standard"], 0);
        assert!(calm.reason.contains("risk of shortfall"), "{}", calm.reason);
        assert!(calm.reason.contains("rejected"), "{}", calm.reason);
        // Spot that is lost often (30 per hour) needs on-demand cover.
        for t in &mut tiers {
            if t.class == TierClass::Spot {
                t.interruption_rate_per_hour = 30.0;
            }
        }
        let risky = plan(&w, &tiers, &f, 0, 60_000);
        assert!(risky.target["standard"] >= 1, "{:?}", risky.target);
        assert!(
            risky
                .reason
                .contains(" standard added so that losing spot capacity"),
            "{}",
            risky.reason
        );
        let eligible = eligible_tiers(&w, &tiers);
        let fill = Fill {
            instances: risky.target.clone(),
            capacity: tiers
                .iter()
                .map(|t| risky.target[&t.name] as f64 * t.effective_capacity())
                .sum(),
            cost_per_hour: risky.cost_per_hour,
            binding: "sla",
            notes: Vec::new(),
        };
        let r = shortfall_risk(&f, 0, &fill, &eligible, 60_000);
        assert!(r <= 0.05 * (1.0 + 1e-9), "risk {r}");
    }

    #[test]
    fn shortfall_risk_reads_the_forecast_cdf() {
        let (w, tiers) = setup();
        let eligible = eligible_tiers(&w, &tiers);
        let f = flat_forecast(vec![10.0, 20.0], 1); // q0.5 = 10, q0.95 = 20
        let fill_with = |cap: f64| Fill {
            instances: BTreeMap::new(),
            capacity: cap,
            cost_per_hour: 0.0,
            binding: "sla",
            notes: Vec::new(),
        };
        assert!((shortfall_risk(&f, 0, &fill_with(10.0), &eligible, 0) - 0.5).abs() < 1e-9);
        assert!((shortfall_risk(&f, 0, &fill_with(15.0), &eligible, 0) - 0.275).abs() < 1e-9);
        assert!((shortfall_risk(&f, 0, &fill_with(20.0), &eligible, 0) - 0.05).abs() < 1e-9);
        // Exponential tail through (10, 0.5) and (20, 0.05): a tenth per 10 / ln 10.
        let tail = 0.05 * (-(25.0 - 20.0) * 10f64.ln() / 10.0).exp();
        assert!((shortfall_risk(&f, 0, &fill_with(25.0), &eligible, 0) - tail).abs() < 1e-9);
        assert!((shortfall_risk(&f, 0, &fill_with(0.0), &eligible, 0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn memory_bound_needs_add_instances_of_the_cheapest_memory() {
        let (mut w, tiers) = setup();
        w.max_spot_share = 0.0;
        let eligible = eligible_tiers(&w, &tiers);
        // 8 vCPU -> 2 standard (16 GiB each = 32 GiB); 100 GiB of memory needs 7 in all.
        let mut f = fill(8.0, &eligible, &w);
        assert_eq!(f.instances["standard"], 2);
        cover_dimensions(
            &mut f,
            &[(Dim::Cpu, 8.0), (Dim::Memory, 100.0)],
            &eligible,
            &w,
        );
        assert_eq!(f.instances["standard"], 7, "{:?}", f.instances);
        assert_eq!(
            f.instances["high-performance"], 0,
            "8 GiB at $0.34 is dearer memory"
        );
        assert_eq!(f.binding, "memory");
        assert!(
            f.notes.iter().any(|n| n.contains("memory binds")),
            "{:?}",
            f.notes
        );
        assert!((f.cost_per_hour - 7.0 * 0.192).abs() < 1e-9);
        // A dimension no tier describes does not constrain.
        let before = f.instances.clone();
        cover_dimensions(&mut f, &[(Dim::Network, 1e9)], &eligible, &w);
        assert_ne!(f.instances, before, "the default tiers describe network");
        let mut g = fill(8.0, &eligible, &w);
        let no_disk: Vec<Tier> = tiers
            .iter()
            .cloned()
            .map(|mut t| {
                t.disk_iops = None;
                t
            })
            .collect();
        let nd = eligible_tiers(&w, &no_disk);
        cover_dimensions(&mut g, &[(Dim::Disk, 1e9)], &nd, &w);
        assert_eq!(g.instances["standard"], 2);
    }

    #[test]
    fn memory_top_ups_use_spot_within_its_share_of_the_final_capacity() {
        let (w, tiers) = setup();
        assert_eq!(w.max_spot_share, 0.5);
        let eligible = eligible_tiers(&w, &tiers);
        // 8 vCPU -> 1 spot + 1 standard; 320 GiB needs 20 instances of 16 GiB: half of
        // them may be spot, the cheapest memory, so 10 + 10, not 1 spot + 19 standard.
        let mut f = fill(8.0, &eligible, &w);
        assert_eq!((f.instances["spot"], f.instances["standard"]), (1, 1));
        cover_dimensions(&mut f, &[(Dim::Memory, 320.0)], &eligible, &w);
        assert_eq!(
            (f.instances["spot"], f.instances["standard"]),
            (10, 10),
            "{:?}",
            f.instances
        );
        assert!((f.cost_per_hour - 10.0 * (0.058 + 0.192)).abs() < 1e-9);
    }

    #[test]
    fn zero_demand_plans_min_instances() {
        let (w, mut tiers) = setup();
        tiers[1].min_instances = 1;
        let f = flat_forecast(vec![0.0, 0.0], 10);
        let p = plan(&w, &tiers, &f, 0, 60_000);
        assert_eq!(p.target["standard"], 1);
        assert_eq!(p.target["spot"], 0);
    }

    #[test]
    fn a_workload_keeps_its_min_instances_on_the_cheapest_on_demand_tier() {
        let (mut w, tiers) = setup();
        w.min_instances = 2;
        // No demand: two standard instances (not spot, which could both be lost).
        let p = plan(&w, &tiers, &flat_forecast(vec![0.0, 0.0], 10), 0, 60_000);
        assert_eq!((p.target["standard"], p.target["spot"]), (2, 0), "{p:?}");
        assert_eq!(p.binding, "min_instances");
        assert!(
            p.reason.contains(
                "held at the workload's min_instances = 2: 2 instance(s) added above the need"
            ),
            "{}",
            p.reason
        );
        assert!(p
            .steps
            .iter()
            .all(|s| s.instances.values().sum::<u32>() == 2));
        // A need of more instances than that is planned as before.
        let busy = plan(&w, &tiers, &flat_forecast(vec![20.0, 30.0], 10), 0, 60_000);
        assert!(busy.target.values().sum::<u32>() > 2);
        assert_ne!(busy.binding, "min_instances");
        assert!(!busy.reason.contains("min_instances"), "{}", busy.reason);
        // One instance of need: one more, on demand.
        let one = plan(&w, &tiers, &flat_forecast(vec![1.0, 1.5], 10), 0, 60_000);
        assert_eq!(one.target.values().sum::<u32>(), 2, "{one:?}");
        assert!(
            one.reason.contains("1 instance(s) added above the need"),
            "{}",
            one.reason
        );
        // Within the budget: what it can pay for, saying what is missing.
        w.budget_per_hour = Some(0.2);
        let poor = plan(&w, &tiers, &flat_forecast(vec![0.0, 0.0], 10), 0, 60_000);
        assert_eq!(poor.target.values().sum::<u32>(), 1, "{poor:?}");
        assert_eq!(poor.binding, "min_instances");
        assert!(
            poor.reason.contains(
                "1 instance(s) short of the workload's min_instances = 2: the $0.20/h budget buys no more"
            ),
            "{}",
            poor.reason
        );
        // A workload only spot may serve keeps its floor on spot.
        w.budget_per_hour = None;
        w.tiers = vec!["spot".into()];
        w.max_spot_share = 1.0;
        let spot = plan(&w, &tiers, &flat_forecast(vec![0.0, 0.0], 10), 0, 60_000);
        assert_eq!(spot.target["spot"], 2, "{spot:?}");
    }
}
