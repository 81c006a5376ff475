//! `prescale demo`: the real engine, store and simulated cloud driven by an accelerated
//! clock and synthetic demand with daily and weekly cycles, noise and bursts.
//!
//! Before the simulated period starts, `warmup_days` of history are written so the
//! forecaster can see the weekly cycle, and the engine runs its passes over the slowest
//! tier's 90th-percentile lead time before the period, as the simulator and the fleet
//! replay start warm, so the week begins with what its first minute needs rather than
//! with nothing (what those minutes cost is not counted); then every simulated minute
//! the demand is stored, the engine runs a pass, and the ready capacity is compared with
//! the demand. On the last day the on-call pauses the batch job's scale-down for two
//! hours ([`INCIDENT`]), as `prescale pause` would, so the dashboard and the decision
//! log show a pause too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prescale_collect::{DemandProfile, SyntheticDemand};
use prescale_core::config::Config;
use prescale_core::{Dim, DimensionSource, PauseScope, Sample, SeriesKey, TimestampMs};
use prescale_store::{AppendReport, Store, StoreError};
use serde::Serialize;

use crate::engine::Engine;
use crate::provider::{Provider, SimCloud};

/// 2026-01-05 00:00:00 UTC, a Monday: demos start here so runs are reproducible.
pub const DEMO_START_MS: TimestampMs = 1_767_571_200_000;
const MINUTE_MS: i64 = 60_000;

/// Options of a demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Seed of demand noise, bursts and spot interruptions.
    pub seed: u64,
    /// Simulated days with the control loop running.
    pub days: u32,
    /// Days of history written before the loop starts.
    pub warmup_days: u32,
    /// Simulated seconds per real second; 0 runs as fast as possible.
    pub speed: f64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seed: 42,
            days: 7,
            warmup_days: 14,
            // A week in about a minute.
            speed: 7.0 * 86_400.0 / 60.0,
        }
    }
}

/// The demo's configuration: the default tier catalog and two workloads with different
/// shapes (the batch job's memory binding more than its CPU), a 5-minute forecast step
/// and a 1-minute control interval, and no receivers; the web service has the campaign
/// of the last of `days` as a planned event (see [`campaign`]).
pub fn demo_config(seed: u64, days: u32) -> Config {
    let mut c = Config::default();
    c.control.interval_s = 60;
    c.providers.sim.seed = seed;
    // The demo runs on its own accelerated clock: samples pushed from outside, stamped
    // with the real time, have no place in it.
    c.sources.remote_write.enabled = false;
    c.sources.influx.enabled = false;
    let mut web = c.workloads[0].clone();
    web.name = "web".into();
    web.demand = r#"demo_cpu_demand_cores{workload="web"}"#.into();
    web.step_s = 300;
    web.history_s = 14 * 86_400;
    web.horizon_s = 6 * 3_600;
    // The fast inline baseline keeps a simulated week within a minute and reproducible.
    web.model = "baseline".into();
    // What each workload has today without prescale (see [`REQUESTED`]), so the
    // dashboard also prices that.
    web.actual = Some(r#"sum(demo_cpu_requests_cores{workload="web"})"#.into());
    let mut batch = web.clone();
    batch.name = "batch".into();
    batch.demand = r#"demo_cpu_demand_cores{workload="batch"}"#.into();
    batch.actual = Some(r#"sum(demo_cpu_requests_cores{workload="batch"})"#.into());
    // Its jobs hold their data in memory: instances of 16 GiB run out of memory before
    // they run out of CPU, so the plan covers both.
    batch.dimensions.insert(
        Dim::Memory.name().into(),
        DimensionSource {
            series: r#"demo_memory_demand_gib{workload="batch"}"#.into(),
            scale: 1.0,
            actual: Some(r#"sum(demo_memory_requests_gib{workload="batch"})"#.into()),
        },
    );
    batch.max_spot_share = 0.8;
    batch.sla_quantile = 0.9;
    web.events = vec![campaign_event(days)];
    c.workloads = vec![web, batch];
    // A fleet budget the two never reach together (the campaign's peak costs about
    // $3.56/h), so the dashboards show the fleet's cost against it.
    c.fleet.budget_per_hour = Some(8.0);
    c
}

/// When the campaign of [`campaign`] starts and ends, on the last of `days`.
fn campaign_window(days: u32) -> (TimestampMs, TimestampMs) {
    let day = DEMO_START_MS + (i64::from(days.max(1)) - 1) * 86_400_000;
    (day + 10 * 3_600_000, day + 12 * 3_600_000)
}

/// The web team's campaign, announced ahead: on the demo's last day from 10:00 to 12:00
/// UTC, demand is expected at 2.5 times the usual.
pub fn campaign_event(days: u32) -> prescale_core::PlannedEvent {
    let (start, end) = campaign_window(days);
    prescale_core::PlannedEvent {
        name: "campaign".into(),
        start: prescale_core::EventTime(start),
        end: prescale_core::EventTime(end),
        scale: 2.5,
        min_demand: None,
        recurring: None,
        min_dimensions: Default::default(),
    }
}

/// The campaign's effect on the web service's demand: 2.5 times the usual from 10:00 to
/// 12:00 UTC on the demo's last day (a campaign email lands, all at once), as announced
/// ([`campaign_event`]); as large as the flash crowd that follows at 14:00, but prescale
/// was told.
fn campaign(days: u32, now: TimestampMs) -> f64 {
    let (start, end) = campaign_window(days);
    if (start..end).contains(&now) {
        2.5
    } else {
        1.0
    }
}

/// What each workload's deployment requests without prescale, as a team sizes a fixed
/// deployment from a usual day: its daily peak (web 32 vCPU, batch 36 vCPU and 200 GiB)
/// with about a quarter to spare, so paying for that all day and still short in the
/// bursts above it. The demo writes them beside the demand as
/// `demo_cpu_requests_cores{workload=...}` and `demo_memory_requests_gib` (what
/// kube-state-metrics' requests would be), and each workload's `actual` prices them.
pub const REQUESTED: [(&str, Dim, f64); 3] = [
    ("web", Dim::Cpu, 40.0),
    ("batch", Dim::Cpu, 48.0),
    ("batch", Dim::Memory, 280.0),
];

/// The series of a demo workload's demand (`demo_cpu_demand_cores`,
/// `demo_memory_demand_gib`) or, with `requests`, of what its fixed deployment requests.
fn demo_key(workload: &str, dim: Dim, requests: bool) -> SeriesKey {
    let unit = match dim {
        Dim::Cpu => "cores",
        Dim::Memory => "gib",
        Dim::Disk => "iops",
        Dim::Network => "mbps",
    };
    let what = if requests { "requests" } else { "demand" };
    let resource = if dim == Dim::Cpu { "cpu" } else { dim.name() };
    SeriesKey::metric(format!("demo_{resource}_{what}_{unit}"))
        .expect("static name")
        .with_label("workload", workload)
}

fn generators(seed: u64) -> Vec<(String, Dim, SyntheticDemand)> {
    vec![
        (
            "web".into(),
            Dim::Cpu,
            SyntheticDemand::new(
                DemandProfile::Service {
                    base: 8.0,
                    peak: 32.0,
                    weekend_factor: 0.45,
                },
                seed,
                0.04,
                1.0,
            ),
        ),
        (
            "batch".into(),
            Dim::Cpu,
            SyntheticDemand::new(
                DemandProfile::NightlyBatch {
                    idle: 3.0,
                    busy: 36.0,
                    start_hour: 1.0,
                    end_hour: 4.5,
                },
                seed.wrapping_add(1),
                0.05,
                0.5,
            ),
        ),
        (
            "batch".into(),
            Dim::Memory,
            SyntheticDemand::new(
                DemandProfile::NightlyBatch {
                    idle: 24.0,
                    busy: 200.0,
                    start_hour: 1.0,
                    end_hour: 4.5,
                },
                seed.wrapping_add(2),
                0.03,
                0.5,
            ),
        ),
    ]
}

/// An operator's pause the demo asks for on its last day.
#[derive(Debug, Clone, Copy)]
pub struct Incident {
    /// The workload paused.
    pub workload: &'static str,
    /// What the pause holds back.
    pub scope: PauseScope,
    /// The hours (UTC) it starts and ends.
    pub hours: (i64, i64),
    /// The reason given.
    pub reason: &'static str,
}

/// The on-call's pause on the demo's last day, as
/// `prescale pause batch --scope scale-down --for 2h --reason '...'` at 04:00 asks. The
/// nightly job ends at 04:30, so its capacity is held past it until 06:00, and the
/// decision log says each pass what the plan wanted meanwhile.
pub const INCIDENT: Incident = Incident {
    workload: "batch",
    scope: PauseScope::ScaleDown,
    hours: (4, 6),
    reason: "INC-4711: the database the batch job writes to is failing over; keep its capacity until it is done",
};

/// When the pause of [`INCIDENT`] starts and ends, on the last of `days`.
fn incident_window(days: u32) -> (TimestampMs, TimestampMs) {
    let day = DEMO_START_MS + (i64::from(days.max(1)) - 1) * 86_400_000;
    let (from, to) = INCIDENT.hours;
    (day + from * 3_600_000, day + to * 3_600_000)
}

/// A flash crowd on the web service, on the demo's last simulated day: from 14:00 UTC its
/// demand rises over 3 minutes to 2.5 times what it would be and holds for 20 minutes,
/// as when a link to it lands on a busy news site. Unlike the daily surges nothing like
/// it has come before: no forecast sees it coming, the pass surges as it arrives, and the
/// anomaly watch reports it.
fn flash_crowd(days: u32, now: TimestampMs) -> f64 {
    let begins = DEMO_START_MS + (i64::from(days.max(1)) - 1) * 86_400_000 + 14 * 3_600_000;
    let since = now - begins;
    if !(0..20 * MINUTE_MS).contains(&since) {
        return 1.0;
    }
    1.0 + 1.5 * (since as f64 / (3 * MINUTE_MS) as f64).min(1.0)
}

/// Per-workload outcome.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WorkloadSummary {
    /// Minutes with ready capacity below demand.
    pub underprovisioned_minutes: u64,
    /// Mean demand (vCPU).
    pub mean_demand: f64,
    /// Peak demand (vCPU).
    pub peak_demand: f64,
    /// Mean ready effective capacity (vCPU).
    pub mean_capacity: f64,
    /// The same for each other dimension the workload plans (`memory`: GiB).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, DimensionSummary>,
    /// Minutes an operator's pause held it ([`INCIDENT`]).
    pub paused_minutes: u64,
    /// What it held in those minutes beyond what its plans wanted, at list price (the
    /// scale-down delay would have kept some of it for a few minutes anyway).
    pub paused_cost: f64,
}

/// A workload's demand and ready capacity in a dimension other than CPU.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DimensionSummary {
    /// Mean demand.
    pub mean_demand: f64,
    /// Peak demand.
    pub peak_demand: f64,
    /// Mean ready capacity.
    pub mean_capacity: f64,
}

/// The demo's result.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DemoSummary {
    /// Seed used.
    pub seed: u64,
    /// Simulated minutes with the loop running.
    pub simulated_minutes: u64,
    /// Workload-minutes with ready capacity below demand (summed over workloads).
    pub underprovisioned_minutes: u64,
    /// `underprovisioned_minutes` over workload-minutes simulated (0..1).
    pub underprovisioned_share: f64,
    /// Total cost.
    pub cost_total: f64,
    /// Cost per tier.
    pub cost_per_tier: BTreeMap<String, f64>,
    /// Cost of holding each workload's peak demand on standard instances the whole time
    /// (as many as its dimension needing most asks for).
    pub static_peak_cost: f64,
    /// Cost of each workload's fixed deployment ([`REQUESTED`]) as standard instances
    /// the whole time: what the workloads would run without prescale.
    pub requested_cost: f64,
    /// Workload-minutes those fixed deployments were below demand.
    pub requested_underprovisioned_minutes: u64,
    /// Actions applied.
    pub actions: u64,
    /// Actions the provider refused.
    pub errors: u64,
    /// Spot interruptions.
    pub interruptions: u64,
    /// Anomalies detected.
    pub anomalies: u64,
    /// Most instances of each tier held at once (all workloads).
    pub peak_instances_per_tier: BTreeMap<String, u32>,
    /// Each tier's configured maximum.
    pub max_instances_per_tier: BTreeMap<String, u32>,
    /// Per workload.
    pub workloads: BTreeMap<String, WorkloadSummary>,
    /// True when Ctrl-C stopped the run early.
    pub interrupted: bool,
}

/// A workload's fixed deployment ([`REQUESTED`]) in a demo run.
#[derive(Default)]
struct Fixed {
    /// Per dimension it requests: its `demo_*_requests_*` series and the amount.
    requests: Vec<(Dim, SeriesKey, f64)>,
    /// Standard instances holding that: as many as the dimension needing most asks for.
    instances: f64,
    /// What those instances serve of each dimension the tier's shape states.
    serves: Vec<(Dim, f64)>,
}

/// Writes the warm-up history, then runs the loop minute by minute. `progress` is
/// called with (simulated minutes done, total) about once per simulated hour; `stop`
/// ends the run early; `stored` sees each write of the demo's metrics with the store's
/// report, as a daemon's sources are watched for anomalies.
pub fn run_demo(
    engine: &mut Engine<SimCloud>,
    opts: &DemoOptions,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64, u64),
    mut stored: impl FnMut(&[(SeriesKey, Vec<Sample>)], &[AppendReport]),
) -> Result<DemoSummary, StoreError> {
    // Stores one series' samples as a source would, and shows them to `stored`.
    let mut append = |store: &Store, key: &SeriesKey, samples: Vec<Sample>| {
        let report = store.append(key, &samples)?;
        stored(&[(key.clone(), samples)], &[report]);
        Ok::<(), StoreError>(())
    };
    let standard = engine
        .tiers()
        .iter()
        .find(|t| t.class == prescale_core::TierClass::Standard)
        .or(engine.tiers().first())
        .expect("at least one tier")
        .clone();
    // Each fixed deployment: its series, what it requests, and that as standard
    // instances (how many, and what they serve).
    let mut fixed: BTreeMap<String, Fixed> = BTreeMap::new();
    for (w, d, v) in REQUESTED {
        let f = fixed.entry(w.to_string()).or_default();
        f.requests.push((d, demo_key(w, d, true), v));
        if let Some(per) = standard.provides(d) {
            f.instances = f.instances.max((v / per - 1e-9).ceil());
        }
    }
    for f in fixed.values_mut() {
        f.serves = Dim::ALL
            .into_iter()
            .filter_map(|d| Some((d, f.instances * standard.provides(d)?)))
            .collect();
    }
    let mut gens = generators(opts.seed);
    let start = DEMO_START_MS;
    let warm_from = start - opts.warmup_days as i64 * 86_400_000;
    let store = engine.store().clone();
    // Warm-up history, one sample per minute, written in day-sized batches.
    for (name, dim, g) in gens.iter_mut() {
        let k = demo_key(name, *dim, false);
        let requested = fixed.get(name.as_str()).and_then(|f| {
            f.requests
                .iter()
                .find(|r| r.0 == *dim)
                .map(|r| (r.1.clone(), r.2))
        });
        let mut t = warm_from;
        while t < start {
            let end = (t + 86_400_000).min(start);
            let mut batch = Vec::new();
            while t < end {
                batch.push(Sample {
                    ts: t,
                    value: g.next(t),
                });
                t += MINUTE_MS;
            }
            append(&store, &k, batch.clone())?;
            if let Some((key, value)) = &requested {
                let held: Vec<Sample> = batch
                    .iter()
                    .map(|s| Sample {
                        ts: s.ts,
                        value: *value,
                    })
                    .collect();
                append(&store, key, held)?;
            }
        }
    }
    // A warm start, as the fleet replay's, on the history just written.
    for k in (1..=crate::replay::warm_passes(engine.tiers(), MINUTE_MS)).rev() {
        engine.tick(start - k * MINUTE_MS)?;
    }
    let spent_before: BTreeMap<String, f64> = engine.provider().cost_per_tier().clone();
    let total = opts.days as u64 * 1440;
    let mut summary = DemoSummary {
        seed: opts.seed,
        max_instances_per_tier: engine
            .tiers()
            .iter()
            .map(|t| (t.name.clone(), t.max_instances))
            .collect(),
        ..Default::default()
    };
    let began = Instant::now();
    // Per workload and dimension: demand summed, its peak, ready capacity summed, minutes.
    let mut sums: BTreeMap<(String, Dim), (f64, f64, f64, u64)> = BTreeMap::new();
    let mut done = 0u64;
    let incident = incident_window(opts.days);
    for m in 0..total {
        if stop.load(Ordering::Relaxed) {
            summary.interrupted = true;
            break;
        }
        let now = start + m as i64 * MINUTE_MS;
        // Each workload's demand in every dimension it has.
        let mut demands: BTreeMap<String, Vec<(Dim, f64)>> = BTreeMap::new();
        for (name, dim, g) in gens.iter_mut() {
            let mut d = g.next(now);
            if name == "web" {
                d *= flash_crowd(opts.days, now) * campaign(opts.days, now);
            }
            append(
                &store,
                &demo_key(name, *dim, false),
                vec![Sample { ts: now, value: d }],
            )?;
            demands.entry(name.clone()).or_default().push((*dim, d));
        }
        for f in fixed.values() {
            for (_, key, v) in &f.requests {
                append(&store, key, vec![Sample { ts: now, value: *v }])?;
            }
        }
        if now == incident.0 {
            let Incident {
                workload: name,
                scope,
                reason,
                ..
            } = INCIDENT;
            match engine.pause(name, scope, incident.1, reason, now) {
                Ok(_) => {}
                Err(crate::engine::PauseError::Store(e)) => return Err(e),
                Err(e) => tracing::warn!("the demo's pause of {name} was refused: {e}"),
            }
        }
        engine.tick(now)?;
        // What a pause held beyond what the plan wanted, from the pass's status.
        let paused: Vec<(String, f64)> = {
            let status = engine.status_handle();
            let st = status.read().expect("status lock");
            st.workloads
                .iter()
                .filter(|(_, w)| w.paused.is_some())
                .map(|(name, w)| {
                    let held = w.allocation.cost_per_hour(engine.tiers());
                    let wanted = w.plan.as_ref().map_or(held, |p| p.cost_per_hour);
                    (name.clone(), (held - wanted).max(0.0))
                })
                .collect()
        };
        for (name, over) in paused {
            let ws = summary.workloads.entry(name).or_default();
            ws.paused_minutes += 1;
            ws.paused_cost += over / 60.0;
        }
        for (name, d) in demands {
            let alloc = engine.provider().allocation(&name, now);
            let ws = summary.workloads.entry(name.clone()).or_default();
            for &(dim, v) in &d {
                let cap = alloc.ready_of(engine.tiers(), dim).unwrap_or(0.0);
                let e = sums.entry((name.clone(), dim)).or_default();
                e.0 += v;
                e.1 = e.1.max(v);
                e.2 += cap;
                e.3 += 1;
            }
            if let Some(f) = fixed.get(&name) {
                summary.requested_cost += f.instances * standard.price_per_hour / 60.0;
                let short = d.iter().any(|&(dim, v)| {
                    f.serves
                        .iter()
                        .any(|&(sd, serves)| sd == dim && serves + 1e-9 < v)
                });
                if short {
                    summary.requested_underprovisioned_minutes += 1;
                }
            }
            if alloc.short_of(engine.tiers(), &d).is_some() {
                ws.underprovisioned_minutes += 1;
                summary.underprovisioned_minutes += 1;
            }
        }
        for t in engine.tiers() {
            let n = engine.provider().tier_count(&t.name);
            let e = summary
                .peak_instances_per_tier
                .entry(t.name.clone())
                .or_insert(0);
            *e = (*e).max(n);
        }
        done += 1;
        if m % 60 == 59 {
            progress(done, total);
        }
        if opts.speed > 0.0 {
            let due = Duration::from_secs_f64(done as f64 * 60.0 / opts.speed);
            let elapsed = began.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
    }
    store.flush()?;
    let status = engine.status_handle();
    let st = status.read().expect("status lock");
    summary.simulated_minutes = done;
    let workload_minutes: u64 = sums
        .iter()
        .filter(|((_, d), _)| *d == Dim::Cpu)
        .map(|(_, e)| e.3)
        .sum();
    summary.underprovisioned_share = if workload_minutes > 0 {
        summary.underprovisioned_minutes as f64 / workload_minutes as f64
    } else {
        0.0
    };
    summary.cost_per_tier = engine
        .provider()
        .cost_per_tier()
        .iter()
        .map(|(t, c)| (t.clone(), c - spent_before.get(t).copied().unwrap_or(0.0)))
        .collect();
    summary.cost_total = summary.cost_per_tier.values().sum();
    summary.actions = st.actions;
    summary.errors = st.errors;
    summary.interruptions = engine.provider().interruptions();
    summary.anomalies = st.anomalies;
    // Standard instances for each workload's peak in the dimension needing most, and
    // the minutes they would be held.
    let mut peak_instances: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for ((name, dim), (sum, peak, cap, n)) in sums {
        if let Some(per) = standard.provides(dim) {
            let e = peak_instances.entry(name.clone()).or_default();
            *e = (e.0.max((peak / per).ceil()), n);
        }
        let ws = summary.workloads.entry(name).or_default();
        if dim == Dim::Cpu {
            ws.mean_demand = sum / n as f64;
            ws.peak_demand = peak;
            ws.mean_capacity = cap / n as f64;
        } else {
            let d = DimensionSummary {
                mean_demand: sum / n as f64,
                peak_demand: peak,
                mean_capacity: cap / n as f64,
            };
            ws.dimensions.insert(dim.name().to_string(), d);
        }
    }
    for (instances, n) in peak_instances.into_values() {
        summary.static_peak_cost += instances * standard.price_per_hour * n as f64 / 60.0;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_store::{Durability, Store};

    fn engine(dir: &std::path::Path, seed: u64, days: u32) -> Engine<SimCloud> {
        let c = demo_config(seed, days);
        let store = Store::open(dir, Durability::Buffered).unwrap();
        let sim = SimCloud::new(&c.tiers, seed);
        let mut e = Engine::from_config(&c, 0, store, sim);
        e.set_persist_status(false);
        e
    }

    /// Day `day` of the demo (from 0), at `h`:`m` UTC.
    fn at(day: i64, h: i64, m: i64) -> TimestampMs {
        DEMO_START_MS + day * 86_400_000 + h * 3_600_000 + m * MINUTE_MS
    }

    #[test]
    fn the_announced_campaign_raises_the_web_demand_on_the_last_morning() {
        assert_eq!(campaign(7, at(6, 9, 59)), 1.0);
        assert_eq!(campaign(7, at(6, 10, 0)), 2.5);
        assert_eq!(campaign(7, at(6, 11, 59)), 2.5);
        assert_eq!(campaign(7, at(6, 12, 0)), 1.0);
        assert_eq!(campaign(7, at(5, 11, 0)), 1.0);
        // As announced in the web service's configuration.
        let web = &demo_config(1, 7).workloads[0];
        assert_eq!(web.events, vec![campaign_event(7)]);
        assert_eq!(
            (
                web.events[0].start.0,
                web.events[0].end.0,
                web.events[0].scale
            ),
            (at(6, 10, 0), at(6, 12, 0), 2.5)
        );
    }

    #[test]
    fn the_flash_crowd_comes_once_on_the_last_day() {
        // A week: Sunday 14:00 to 14:20, rising over 3 minutes to 2.5 times.
        assert_eq!(flash_crowd(7, at(6, 13, 59)), 1.0);
        assert_eq!(flash_crowd(7, at(6, 14, 0)), 1.0);
        assert_eq!(flash_crowd(7, at(6, 14, 1)), 1.5);
        assert_eq!(flash_crowd(7, at(6, 14, 3)), 2.5);
        assert_eq!(flash_crowd(7, at(6, 14, 19)), 2.5);
        assert_eq!(flash_crowd(7, at(6, 14, 20)), 1.0);
        // Not on other days, and on a one-day demo's only day.
        assert_eq!(flash_crowd(7, at(5, 14, 5)), 1.0);
        assert_eq!(flash_crowd(1, at(0, 14, 5)), 2.5);
    }

    #[test]
    fn the_demo_starts_warm() {
        // Stopped after its first five minutes: its workloads were served from the
        // first, by capacity asked for before the period (cold, both were short for
        // two or three minutes while it came up), and what that cost before is not
        // counted in the period's.
        let opts = DemoOptions {
            seed: 42,
            days: 7,
            warmup_days: 8,
            speed: 0.0,
        };
        let stop = AtomicBool::new(false);
        let d = tempfile::tempdir().unwrap();
        let mut e = engine(d.path(), 42, 7);
        let a = run_demo(
            &mut e,
            &opts,
            &stop,
            |_, _| {},
            |written, _| {
                if written
                    .iter()
                    .any(|(_, s)| s.iter().any(|x| x.ts >= DEMO_START_MS + 4 * MINUTE_MS))
                {
                    stop.store(true, Ordering::Relaxed);
                }
            },
        )
        .unwrap();
        assert!(a.interrupted && a.simulated_minutes <= 5, "{a:?}");
        assert_eq!(a.underprovisioned_minutes, 0, "{a:?}");
        assert!(a.actions > 0, "{a:?}");
        let held: f64 = e
            .tiers()
            .iter()
            .map(|t| e.provider().tier_count(&t.name) as f64 * t.price_per_hour)
            .sum();
        // What is held, for at most the minutes simulated: nothing from before.
        let minutes = a.simulated_minutes as f64;
        assert!(
            a.cost_total > 0.0 && a.cost_total <= held * (minutes + 1.0) / 60.0,
            "{a:?}"
        );
    }

    #[test]
    fn a_simulated_day_tracks_demand_and_is_reproducible() {
        let opts = DemoOptions {
            seed: 9,
            days: 1,
            warmup_days: 8,
            speed: 0.0,
        };
        let stop = AtomicBool::new(false);
        let d1 = tempfile::tempdir().unwrap();
        let mut e1 = engine(d1.path(), 9, 1);
        let a = run_demo(&mut e1, &opts, &stop, |_, _| {}, |_, _| {}).unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let b = run_demo(
            &mut engine(d2.path(), 9, 1),
            &opts,
            &stop,
            |_, _| {},
            |_, _| {},
        )
        .unwrap();
        assert_eq!(a, b, "same seed, same summary");
        assert_eq!(a.simulated_minutes, 1440);
        assert!(a.actions > 0);
        assert!(a.underprovisioned_share < 0.02, "{a:?}");
        for (tier, peak) in &a.peak_instances_per_tier {
            assert!(*peak <= a.max_instances_per_tier[tier]);
        }
        assert!(
            a.cost_total > 0.0 && a.cost_total < a.static_peak_cost,
            "{a:?}"
        );
        // The fixed deployments: 10 standard instances (4 vCPU, 16 GiB, $0.192/h) for
        // web's 40 vCPU, and 18 for batch's 280 GiB (its 48 vCPU would take 12), all day.
        let want = (10.0 + 18.0) * 0.192 * 24.0;
        assert!((a.requested_cost - want).abs() < 1e-6, "{a:?}");
        assert!(a.requested_underprovisioned_minutes < 2 * 1440, "{a:?}");
        // The batch job's memory was planned for: ready memory well above its demand on
        // average, and more instances than its CPU alone needs.
        let batch = &a.workloads["batch"];
        let memory = &batch.dimensions["memory"];
        assert!(memory.peak_demand > 190.0, "{memory:?}");
        assert!(memory.mean_capacity > memory.mean_demand, "{memory:?}");
        assert!(
            batch.mean_capacity / batch.mean_demand > memory.mean_capacity / memory.mean_demand,
            "the CPU is the dimension with room to spare: {batch:?}"
        );
        assert!(a.workloads["web"].dimensions.is_empty());
        // The on-call's pause held the batch job's capacity from 04:00 to 06:00, past
        // the job's end at 04:30, and the log says when it began and ended and what the
        // plan wanted meanwhile; the web service was never paused.
        assert_eq!(batch.paused_minutes, 120, "{batch:?}");
        assert!(batch.paused_cost > 0.0, "{batch:?}");
        assert_eq!(a.workloads["web"].paused_minutes, 0);
        let log = e1.store().decisions(Some("batch"), 100_000).unwrap();
        let (from, until) = incident_window(1);
        let said = |at: TimestampMs, words: &str| {
            log.iter().any(|d| d.at == at && d.reason.contains(words))
        };
        assert!(said(from, "INC-4711"), "the pause is logged as it begins");
        assert!(said(until, "has ended"), "and as it ends");
        let held = log
            .iter()
            .filter(|d| d.at > from + 30 * MINUTE_MS && d.at < until)
            .filter(|d| d.kind == prescale_core::DecisionKind::Hold)
            .filter(|d| d.reason.contains("paused"))
            .count();
        assert!(
            held > 0,
            "{:?}",
            log.iter()
                .filter(|d| d.at > from && d.at < until)
                .collect::<Vec<_>>()
        );
        // Nothing of batch's went while it held; something did once it ended.
        let down = |d: &&prescale_core::Decision| {
            d.action
                .as_ref()
                .is_some_and(|x| x.kind == prescale_core::ActionKind::Deprovision)
        };
        assert!(!log
            .iter()
            .filter(|d| d.at >= from && d.at < until)
            .any(|d| down(&d)));
        assert!(log.iter().filter(|d| d.at >= until).any(|d| down(&d)));
    }
}
