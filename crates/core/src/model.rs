//! Tiers, workloads, allocations, plans, actions and decisions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::TimestampMs;

/// The kind of capacity a tier sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TierClass {
    /// Cheapest, may be interrupted by the provider at short notice.
    Spot,
    /// On-demand capacity at list price.
    Standard,
    /// Dearest and fastest; required by latency-critical workloads.
    HighPerformance,
}

impl TierClass {
    /// The configuration spelling (`spot`, `standard`, `high-performance`).
    pub fn as_str(self) -> &'static str {
        match self {
            TierClass::Spot => "spot",
            TierClass::Standard => "standard",
            TierClass::HighPerformance => "high-performance",
        }
    }
}

/// A kind of capacity with a shape, a price and operational properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Unique name, used in plans, actions and metrics labels.
    pub name: String,
    /// Spot, standard or high-performance.
    pub class: TierClass,
    /// Demand units (vCPU) one instance provides at performance factor 1.0.
    pub vcpu: f64,
    /// Memory per instance in GiB (0: not part of the shape).
    #[serde(default)]
    pub memory_gib: f64,
    /// Disk operations per second one instance sustains (absent: not part of the shape).
    #[serde(default)]
    pub disk_iops: Option<f64>,
    /// Network bandwidth of one instance in Mbit/s (absent: not part of the shape).
    #[serde(default)]
    pub network_mbps: Option<f64>,
    /// Price of one instance per hour, in the catalog's currency.
    pub price_per_hour: f64,
    /// Work one unit does relative to standard (1.0). A demand `d` needs
    /// `d / performance_factor` units on this tier.
    #[serde(default = "one")]
    pub performance_factor: f64,
    /// Seconds from a provision request until the instance serves load.
    #[serde(default)]
    pub lead_time_s: u64,
    /// The slow tail of the lead time: 90% of provisions are ready within this many
    /// seconds (absent: 1.5 x `lead_time_s`). Lead times are log-normal with median
    /// `lead_time_s`.
    #[serde(default)]
    pub lead_time_p90_s: Option<u64>,
    /// Billing granularity in seconds: each instance's run time is rounded up to a
    /// multiple of it (1 = per-second billing, 3600 = per started hour).
    #[serde(default = "one_u64")]
    pub billing_granularity_s: u64,
    /// Expected interruptions per instance per hour (spot); 0 for on-demand tiers.
    #[serde(default)]
    pub interruption_rate_per_hour: f64,
    /// Seconds of warning before an interrupted instance stops serving (spot).
    #[serde(default = "default_notice_s")]
    pub interruption_notice_s: u64,
    /// Instances always kept, whatever the demand.
    #[serde(default)]
    pub min_instances: u32,
    /// Hard ceiling on instances of this tier over every workload together (a node
    /// pool's maximum size, a quota): each workload's plan has what the others leave.
    pub max_instances: u32,
    /// Workloads that may use this tier, by name; empty means every workload.
    #[serde(default)]
    pub workloads: Vec<String>,
}

fn one() -> f64 {
    1.0
}

fn one_u32() -> u32 {
    1
}

fn one_u64() -> u64 {
    1
}

fn default_notice_s() -> u64 {
    120
}

impl Tier {
    /// Effective demand units one instance serves (`vcpu * performance_factor`).
    pub fn effective_capacity(&self) -> f64 {
        self.vcpu * self.performance_factor
    }

    /// What one instance provides of dimension `d`: CPU counts its performance factor;
    /// `None` when the tier's shape does not say (the dimension does not limit it).
    pub fn provides(&self, d: Dim) -> Option<f64> {
        match d {
            Dim::Cpu => Some(self.effective_capacity()),
            Dim::Memory => (self.memory_gib > 0.0).then_some(self.memory_gib),
            Dim::Disk => self.disk_iops.filter(|v| *v > 0.0),
            Dim::Network => self.network_mbps.filter(|v| *v > 0.0),
        }
    }

    /// The lead time's 90th percentile in seconds.
    pub fn lead_time_p90(&self) -> u64 {
        self.lead_time_p90_s
            .unwrap_or(self.lead_time_s + self.lead_time_s / 2)
            .max(self.lead_time_s)
    }

    /// Whether workload `w` may run on this tier: the tier lists it (or lists no one),
    /// the workload lists the tier (or lists none), and a `critical` latency class
    /// only runs on high-performance tiers.
    pub fn serves(&self, w: &Workload) -> bool {
        (self.workloads.is_empty() || self.workloads.contains(&w.name))
            && (w.tiers.is_empty() || w.tiers.contains(&self.name))
            && (w.latency_class != LatencyClass::Critical
                || self.class == TierClass::HighPerformance)
    }

    /// Price per effective demand unit per hour.
    pub fn unit_price(&self) -> f64 {
        self.price_per_hour / self.effective_capacity()
    }
}

/// A resource dimension of demand and of an instance's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// vCPU (at performance factor 1.0).
    Cpu,
    /// Memory in GiB.
    Memory,
    /// Disk operations per second.
    #[serde(rename = "disk_iops")]
    Disk,
    /// Network bandwidth in Mbit/s.
    #[serde(rename = "network_mbps")]
    Network,
}

impl Dim {
    /// Every dimension, CPU first.
    pub const ALL: [Dim; 4] = [Dim::Cpu, Dim::Memory, Dim::Disk, Dim::Network];

    /// The name used in traces, reports and timelines.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Cpu => "cpu",
            Dim::Memory => "memory",
            Dim::Disk => "disk_iops",
            Dim::Network => "network_mbps",
        }
    }

    /// The unit its amounts are in.
    pub fn unit(self) -> &'static str {
        match self {
            Dim::Cpu => "vCPU",
            Dim::Memory => "GiB",
            Dim::Disk => "IOPS",
            Dim::Network => "Mbps",
        }
    }

    /// Parses a trace column name.
    pub fn parse(s: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.name() == s)
    }
}

/// The kind of workload, with defaults for how much spot risk it accepts, how fast it
/// may shrink and how few instances it may run. A workload that sets `max_spot_share`,
/// `scale_down_delay_s`, `scale_down_window_s`, `scale_down_max_share` or
/// `min_instances` itself keeps its own value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadClass {
    /// A latency-sensitive service: half its capacity may be spot (the planner adds
    /// on-demand cover for spot losses), shrinks after 5 minutes lower.
    #[default]
    Service,
    /// Batch work that can be retried: all of it may be spot, shrinks after 1 minute.
    Batch,
    /// Stateful (databases, caches): no spot, shrinks only after 30 minutes lower and by
    /// at most a tenth of its capacity per `scale_down_period_s`, since every removed
    /// instance moves data.
    Stateful,
}

impl WorkloadClass {
    /// The class's `max_spot_share`.
    pub fn max_spot_share(self) -> f64 {
        match self {
            WorkloadClass::Service => 0.5,
            WorkloadClass::Batch => 1.0,
            WorkloadClass::Stateful => 0.0,
        }
    }

    /// The class's `scale_down_delay_s`.
    pub fn scale_down_delay_s(self) -> u64 {
        match self {
            WorkloadClass::Service => 300,
            WorkloadClass::Batch => 60,
            WorkloadClass::Stateful => 1800,
        }
    }

    /// The class's `scale_down_window_s`: services and stateful workloads keep capacity
    /// for the highest demand of the last two hours; batch work, which can wait, none.
    pub fn scale_down_window_s(self) -> u64 {
        match self {
            WorkloadClass::Service | WorkloadClass::Stateful => 7200,
            WorkloadClass::Batch => 0,
        }
    }

    /// The class's `scale_down_max_share`: stateful workloads lose at most a tenth of
    /// their ready capacity per period (one instance at a time when fewer than ten),
    /// the others are not limited beyond their delay.
    pub fn scale_down_max_share(self) -> f64 {
        match self {
            WorkloadClass::Service | WorkloadClass::Batch => 1.0,
            WorkloadClass::Stateful => 0.1,
        }
    }

    /// The class's `min_instances`: a service or a stateful workload keeps one instance
    /// however quiet it gets (as HPA's `minReplicas` defaults to 1: the first request
    /// after a quiet night should not wait for a lead time); batch work may go to none.
    pub fn min_instances(self) -> u32 {
        match self {
            WorkloadClass::Service | WorkloadClass::Stateful => 1,
            WorkloadClass::Batch => 0,
        }
    }
}
/// The hourly cap in force under an hourly budget `per_hour` and a monthly one
/// `per_month`: the hourly one, or what is left of the monthly one (`spent` so far this
/// month) spread over the `hours_left` in it, whichever is lower.
pub fn paced_cap(
    per_hour: Option<f64>,
    per_month: Option<f64>,
    spent: f64,
    hours_left: f64,
) -> Option<f64> {
    let monthly = per_month.map(|m| (m - spent).max(0.0) / hours_left.max(1.0));
    match (per_hour, monthly) {
        (Some(h), Some(m)) => Some(h.min(m)),
        (h, m) => h.or(m),
    }
}

impl Workload {
    /// What its `min_instances` cost an hour at the least: on the cheapest tier that may
    /// serve it (on demand, as the plan puts them, where one may); `None` where no tier
    /// may.
    pub fn floor_per_hour(&self, tiers: &[Tier]) -> Option<f64> {
        let serving: Vec<&Tier> = tiers.iter().filter(|t| t.serves(self)).collect();
        let cheapest = |spot: bool| {
            serving
                .iter()
                .filter(|t| spot || t.class != TierClass::Spot)
                .map(|t| t.price_per_hour)
                .reduce(f64::min)
        };
        let price = cheapest(false).or_else(|| cheapest(true))?;
        Some(f64::from(self.min_instances) * price)
    }

    /// The hourly cap in force: the hourly budget, or what is left of the monthly
    /// budget (`spent` so far this month) spread over the `hours_left` in it, whichever
    /// is lower.
    pub fn hourly_cap(&self, spent: f64, hours_left: f64) -> Option<f64> {
        paced_cap(
            self.budget_per_hour,
            self.budget_per_month,
            spent,
            hours_left,
        )
    }

    /// Applies the class's defaults to the settings the workload's own table does not
    /// set (`present` says which keys it sets).
    pub fn apply_class_defaults(&mut self, present: impl Fn(&str) -> bool) {
        if !present("max_spot_share") {
            self.max_spot_share = self.class.max_spot_share();
        }
        if !present("scale_down_delay_s") {
            self.scale_down_delay_s = self.class.scale_down_delay_s();
        }
        if !present("scale_down_window_s") {
            self.scale_down_window_s = self.class.scale_down_window_s();
        }
        if !present("scale_down_max_share") {
            self.scale_down_max_share = self.class.scale_down_max_share();
        }
        if !present("min_instances") {
            self.min_instances = self.class.min_instances();
        }
    }
}

/// How latency-sensitive a workload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LatencyClass {
    /// Any tier may serve it.
    #[default]
    Standard,
    /// Only high-performance tiers may serve it.
    Critical,
}

/// Where a workload's demand in one more dimension comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimensionSource {
    /// A demand expression as for [`Workload::demand`]; all matching series are summed
    /// at each step.
    pub series: String,
    /// Factor into the tier shape's unit (e.g. 1/2^30 from bytes to GiB).
    #[serde(default = "one")]
    pub scale: f64,
    /// What the workload actually has of this dimension, in the tier shape's unit, as
    /// PromQL over what prescale stores (its pods' memory requests in GiB, say), as
    /// [`Workload::actual`] is for the CPU: the comparison prices what runs today with
    /// as many instances as the dimension needing most of them asks for. Absent: that
    /// dimension of what runs today is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
}

/// A service whose capacity prescale manages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Unique name.
    pub name: String,
    /// The demand in vCPU: a series selector (`name{label="value"}`, all matching series
    /// summed at each step), `rate(SELECTOR)` or `rate(SELECTOR[R])` for counters, perhaps
    /// inside `sum(...)` and times or divided by a number (see [`crate::Demand`]).
    pub demand: String,
    /// Other resource dimensions to plan with the CPU: `memory` (GiB), `disk_iops` or
    /// `network_mbps`, each read from a series selector and multiplied by `scale` into
    /// the unit of the tiers' shapes. Empty: CPU only.
    #[serde(default)]
    pub dimensions: BTreeMap<String, DimensionSource>,
    /// The vCPU the workload actually has (its pods' CPU requests, say), as PromQL over
    /// what prescale stores, e.g.
    /// `sum(kube_pod_container_resource_requests{namespace="shop",resource="cpu"})`:
    /// while prescale only recommends, the comparison with HPA also prices what runs
    /// today (`as-run`). Absent: not compared.
    #[serde(default)]
    pub actual: Option<String>,
    /// Forecast and control step in seconds; samples are averaged into steps of this size.
    #[serde(default = "default_step_s")]
    pub step_s: u64,
    /// Season length in seconds; absent means detect it from the history.
    #[serde(default)]
    pub season_s: Option<u64>,
    /// How much history the forecaster reads, in seconds.
    #[serde(default = "default_history_s")]
    pub history_s: u64,
    /// Forecast horizon in seconds (must cover the longest lead time).
    #[serde(default = "default_horizon_s")]
    pub horizon_s: u64,
    /// Quantile of predicted demand that capacity must cover (the SLA).
    #[serde(default = "default_quantile")]
    pub sla_quantile: f64,
    /// Fraction of capacity the workload should use at the covered quantile.
    #[serde(default = "default_target_utilization")]
    pub target_utilization: f64,
    /// Latency class; `critical` restricts the workload to high-performance tiers.
    #[serde(default)]
    pub latency_class: LatencyClass,
    /// What kind of workload it is; sets the defaults of `max_spot_share` and
    /// `scale_down_delay_s` (see [`WorkloadClass`]) where the workload does not.
    #[serde(default)]
    pub class: WorkloadClass,
    /// Tiers this workload may use; empty means all.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Largest share of effective capacity that may sit on spot tiers (0..=1).
    #[serde(default = "default_spot_share")]
    pub max_spot_share: f64,
    /// Hourly spending cap; absent means no cap.
    #[serde(default)]
    pub budget_per_hour: Option<f64>,
    /// Monthly spending cap; absent means no cap. It is paced: each hour may spend what
    /// is left of it over the hours left in the month.
    #[serde(default)]
    pub budget_per_month: Option<f64>,
    /// Seconds the plan must stay lower before capacity is removed (like HPA's
    /// scale-down stabilisation window).
    #[serde(default = "default_scale_down_delay_s")]
    pub scale_down_delay_s: u64,
    /// Seconds of observed demand whose highest step capacity keeps covering at the
    /// target utilization: traffic that dipped for a few minutes often comes straight
    /// back, and a forecast that followed the dip down would be short when it does.
    /// 0 turns it off.
    #[serde(default = "default_scale_down_window_s")]
    pub scale_down_window_s: u64,
    /// Largest share of its ready capacity a workload may lose per
    /// `scale_down_period_s`, counted from the most it held in the last period, as HPA's
    /// `behavior.scaleDown` policy of type `Percent`; one instance may always go per
    /// period, so a small fleet still shrinks. 1 (the default but for stateful
    /// workloads): no limit beyond `scale_down_delay_s`.
    #[serde(default = "one")]
    pub scale_down_max_share: f64,
    /// The period of `scale_down_max_share`, in seconds.
    #[serde(default = "default_scale_down_period_s")]
    pub scale_down_period_s: u64,
    /// The fewest instances its plans keep, over all its tiers, whatever the forecast
    /// (HPA's `minReplicas`): 2 keeps a service on two instances at night, so losing one
    /// does not take it down. Those added for it go on the cheapest on-demand tier. The
    /// class sets the default (1 for services and stateful workloads, 0 for batch).
    #[serde(default = "one_u32")]
    pub min_instances: u32,
    /// Which workload a full pool serves first (higher first; 0 by default). A workload
    /// whose plan leaves need uncovered because every tier it may use is full claims
    /// the instances workloads of lower priority hold there: they plan as if it held
    /// them, move to their next tiers and let them go once those serve (after their
    /// scale-down delay at the latest).
    /// Workloads of equal priority never take from each other.
    #[serde(default)]
    pub priority: i32,
    /// Known events ahead (a launch, a sale, a campaign) that no history foretells: over
    /// each, demand is planned at `scale` times the forecast and at least `min_demand`,
    /// with capacity ready by its start (see [`PlannedEvent`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<PlannedEvent>,
    /// Events that come again on a schedule (a month-end close, business hours'
    /// least capacity): each occurrence counts as one of `events` (see
    /// [`RecurringEvent`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recurring_events: Vec<RecurringEvent>,
    /// While ready capacity is short of the demand now, request this many extra
    /// instances per needed one not ready yet, and release those still pending once
    /// capacity covers demand: lead times vary, so the needed count is ready when the
    /// fastest of the larger request are (about the median lead time with 1.0, twice as
    /// many), not when the slowest of exactly the needed count is. 0 turns it off.
    #[serde(default = "default_surge_extra")]
    pub surge_extra: f64,
    /// Capacity also covers the highest demand seen from one step before to half an
    /// hour after this time one season (a day, unless configured or detected
    /// otherwise) ago: a surge that came at 06:30 yesterday is likely again, perhaps a
    /// little earlier; and a spike that came in the half hour before this time then,
    /// and near this time on each of the three seasons before, until today's comes (a
    /// nightly job's spike comes later on some nights). It also lets the scale-down window go of a peak where demand
    /// fell just as far after this time on each of the last three seasons (a daily
    /// service's evening descent): that peak is not coming back.
    #[serde(default = "yes")]
    pub seasonal_floor: bool,
    /// Forecasting model: `auto` (cross-validated choice), `ensemble`, a model name
    /// (`naive`, `snaive`, `ets`, `mstl`, `arima`, `theta`), or `baseline` (seasonal naive
    /// refreshed inline every `refit_s`, no background training).
    #[serde(default = "default_model")]
    pub model: String,
    /// Seconds between two model selections.
    #[serde(default = "default_retrain_s")]
    pub retrain_s: u64,
    /// Seconds between two refreshes of the selected model on the newer data (its
    /// forecast reaches `horizon_s` past the next refresh); in between, at every step,
    /// the forecast is shifted by its latest error (see `error_decay`) and its upper
    /// quantiles kept as wide as its own recent errors. `step_s` refreshes at every
    /// step. The simulator replays the same.
    #[serde(default = "default_refit_s")]
    pub refit_s: u64,
    /// Between refreshes, the forecast is shifted by its latest observed error, fading
    /// by this factor per step ahead (0: no shift). An error within the model's usual
    /// keeps only as much as its errors have lately carried over from one step to the
    /// next, when that is less; one of three times the usual or more keeps this.
    #[serde(default = "default_error_decay")]
    pub error_decay: f64,
    /// Select again when the live forecast error exceeds this multiple of the
    /// cross-validation error.
    #[serde(default = "default_drift_ratio")]
    pub drift_ratio: f64,
    /// Seconds the series this workload reads and writes are kept, when longer than
    /// `storage.retention_s` (0: forever); never less than `history_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_s: Option<u64>,
}

/// A known event a workload's plans prepare for: what a team knows and its history
/// does not (a product launch, a sale, a marketing email, a migration's catch-up), as
/// KEDA's cron scaler or a scheduled scaling action would, but as a change to the
/// forecast rather than a fixed count, so the plan still covers the SLA quantile, spot
/// risk and the budget. From the slowest tier's lead time before `start` to `end`, the
/// forecast of every dimension is multiplied by `scale` over the event's steps, and the
/// CPU need is at least `min_demand` over the target utilization; each plan that reads
/// an event says so. The models learn from the history with the event's steps divided
/// by `scale`, so they do not expect it again a season later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedEvent {
    /// What it is, for the plans' reasons (unique within the workload).
    pub name: String,
    /// When demand is expected to rise: RFC 3339 (a TOML date-time, or a string ending
    /// in `Z`) or unix seconds.
    pub start: EventTime,
    /// When it is expected to be over (after `start`).
    pub end: EventTime,
    /// Demand over the event, as a multiple of the forecast (1: the forecast as it is).
    #[serde(default = "one")]
    pub scale: f64,
    /// Demand over the event at least, in vCPU (the workload's `demand` unit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_demand: Option<f64>,
    /// Demand over the event at least in the workload's other dimensions, by name in
    /// their units (`{ memory = 200.0 }` GiB, `disk_iops`, `network_mbps`): a cache
    /// warmed before a sale, a bulk load's write rate. Each must be one of the
    /// workload's `dimensions`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_dimensions: BTreeMap<String, f64>,
    /// Set by prescale on an occurrence of a [`RecurringEvent`]: that event's name (the
    /// occurrence's own is the name and its start). Not for a configuration to give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurring: Option<String>,
}

impl PlannedEvent {
    /// Whether the event overlaps `[from, to)`.
    pub fn overlaps(&self, from: TimestampMs, to: TimestampMs) -> bool {
        self.start.0 < to && from < self.end.0
    }
}

/// The fewest seconds between two starts of a [`RecurringEvent`]: what comes more often
/// than hourly recurs within every day, and the daily seasons the models learn from the
/// history see it.
pub const MIN_RECURRENCE_S: i64 = 3_600;

/// How far ahead a [`RecurringEvent`]'s schedule is checked, and the longest it may wait
/// for its next occurrence: a schedule that does not come within a year and a day is a
/// mistake (`0 0 30 2 *`: February has no 30th).
pub const RECURRENCE_CHECK_S: i64 = 366 * 86_400;

/// A planned event that comes again on a schedule: a month-end close, a payroll run,
/// the first Monday's report, business hours that must hold some capacity whatever the
/// night before looked like. KEDA's cron scaler and GCP's scaling schedules take the
/// same cron pattern, time zone and duration. Each occurrence (from a start the pattern
/// gives, read in `timezone`, for `duration_s`) counts as a [`PlannedEvent`] named
/// after this one and its start: the forecast is multiplied by `scale` over it and the
/// CPU need is at least `min_demand` over the target utilization, with capacity ready
/// by its start; the models learn from the history with past occurrences divided by
/// `scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecurringEvent {
    /// What it is (unique among the workload's events, recurring or not).
    pub name: String,
    /// When each occurrence starts: a cron pattern of five fields (minute, hour, day of
    /// the month, month, day of the week; `0 18 L * *` at 18:00 on a month's last day,
    /// `0 9 * * MON-FRI` on weekdays at nine, `0 6 * * 1#1` on each first Monday), or
    /// `@daily`, `@weekly`, `@monthly`.
    pub every: String,
    /// The IANA time zone the pattern is read in (`Europe/Berlin`; UTC by default),
    /// with its daylight saving time.
    #[serde(default = "utc", skip_serializing_if = "is_utc")]
    pub timezone: String,
    /// How long each occurrence lasts, in seconds.
    pub duration_s: u64,
    /// Demand over each occurrence, as a multiple of the forecast.
    #[serde(default = "one")]
    pub scale: f64,
    /// Demand over each occurrence at least, in vCPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_demand: Option<f64>,
    /// Demand over each occurrence at least in the workload's other dimensions (as a
    /// [`PlannedEvent`]'s).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub min_dimensions: BTreeMap<String, f64>,
}

fn utc() -> String {
    "UTC".into()
}

fn is_utc(tz: &str) -> bool {
    tz == "UTC"
}

/// A [`RecurringEvent`]'s pattern and time zone, read.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: croner::Cron,
    tz: chrono_tz::Tz,
}

impl Schedule {
    /// The first start after `t` (at `t` too when `inclusive`), if any comes.
    pub fn next(&self, t: TimestampMs, inclusive: bool) -> Option<TimestampMs> {
        use chrono::TimeZone as _;
        let at = chrono::Utc
            .timestamp_millis_opt(t)
            .single()?
            .with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&at, inclusive).ok()?;
        Some(next.timestamp_millis())
    }

    /// What the pattern says, in words ("At 18:00, on the last day of the month").
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// `t` on the schedule's clock, RFC 3339 with its offset.
    pub fn local(&self, t: TimestampMs) -> String {
        use chrono::TimeZone as _;
        chrono::Utc.timestamp_millis_opt(t).single().map_or_else(
            || crate::format_ts(t),
            |u| {
                u.with_timezone(&self.tz)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            },
        )
    }
}

impl RecurringEvent {
    /// Reads the pattern and the time zone: `Err((field, what to fix))`.
    pub fn schedule(&self) -> Result<Schedule, (&'static str, String)> {
        let cron = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build()
            .parse(&self.every)
            .map_err(|e| {
                (
                    "every",
                    format!(
                        "cannot read {:?} as a cron pattern ({e}): give five fields, minute hour day-of-month month day-of-week, e.g. \"0 18 L * *\" for 18:00 on each month's last day or \"0 9 * * MON-FRI\" for weekdays at nine",
                        self.every
                    ),
                )
            })?;
        let tz = self.timezone.parse::<chrono_tz::Tz>().map_err(|_| {
            let near = chrono_tz::TZ_VARIANTS
                .iter()
                .map(|z| z.name())
                .max_by(|a, b| {
                    strsim::jaro_winkler(&self.timezone.to_lowercase(), &a.to_lowercase())
                        .total_cmp(&strsim::jaro_winkler(
                            &self.timezone.to_lowercase(),
                            &b.to_lowercase(),
                        ))
                })
                .unwrap_or("UTC");
            (
                "timezone",
                format!(
                    "{:?} is not an IANA time zone name (did you mean {near:?}? e.g. \"UTC\", \"Europe/Berlin\", \"America/New_York\")",
                    self.timezone
                ),
            )
        })?;
        Ok(Schedule { cron, tz })
    }

    /// Its occurrence starting at `start`.
    pub fn occurrence(&self, start: TimestampMs) -> PlannedEvent {
        PlannedEvent {
            name: format!("{} at {}", self.name, crate::format_ts(start)),
            start: EventTime(start),
            end: EventTime(start + self.duration_s as i64 * 1000),
            scale: self.scale,
            min_demand: self.min_demand,
            min_dimensions: self.min_dimensions.clone(),
            recurring: Some(self.name.clone()),
        }
    }

    /// Its occurrences that overlap `[from, to)`, oldest first; none when the schedule
    /// cannot be read (the configuration refuses it).
    pub fn occurrences(&self, from: TimestampMs, to: TimestampMs) -> Vec<PlannedEvent> {
        let Ok(schedule) = self.schedule() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // A start more than its duration before `from` is over by then.
        let mut at = schedule.next(from - self.duration_s as i64 * 1000, false);
        while let Some(start) = at.filter(|&t| t < to) {
            let e = self.occurrence(start);
            if e.end.0 > from {
                out.push(e);
            }
            at = schedule.next(start, false);
        }
        out
    }

    /// Its first occurrence to start at or after `t`, if one comes within
    /// [`RECURRENCE_CHECK_S`].
    pub fn next(&self, t: TimestampMs) -> Option<PlannedEvent> {
        let start = self.schedule().ok()?.next(t, true)?;
        (start - t <= RECURRENCE_CHECK_S * 1000).then(|| self.occurrence(start))
    }
}

/// The occurrences of `recurring` that overlap `[from, to)`, and of each event that
/// has none starting at or after `now` among them, the next (so that the next is
/// always known), by start.
pub fn occurrences(
    recurring: &[RecurringEvent],
    from: TimestampMs,
    now: TimestampMs,
    to: TimestampMs,
) -> Vec<PlannedEvent> {
    let mut out = Vec::new();
    for r in recurring {
        let mut these = r.occurrences(from, to);
        if !these.iter().any(|e| e.start.0 >= now) {
            these.extend(r.next(now));
        }
        out.extend(these);
    }
    out.sort_by_key(|e| e.start);
    out
}

/// A time in a configuration, in ms since 1970, read from a TOML date-time (with its
/// offset), an RFC 3339 string in UTC or unix seconds, and written as RFC 3339 (as
/// unix seconds when between two seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventTime(pub TimestampMs);

impl Serialize for EventTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // RFC 3339 in whole seconds; a time between seconds as unix seconds, exactly.
        if self.0 % 1000 == 0 {
            s.serialize_str(&crate::format_ts(self.0))
        } else {
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

impl<'de> Deserialize<'de> for EventTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Datetime(toml::value::Datetime),
            Seconds(f64),
            Text(String),
        }
        let bad = |what: &str| {
            serde::de::Error::custom(format!(
                "{what}: give a time as RFC 3339 with its offset (2026-11-27T06:00:00Z or 2026-11-27T07:00:00+01:00, quoted or not) or unix seconds"
            ))
        };
        let ms = match Given::deserialize(d)? {
            Given::Datetime(t) => {
                datetime_ms(&t).ok_or_else(|| bad(&format!("`{t}` has no date or no offset")))?
            }
            Given::Seconds(v) => {
                crate::unix_seconds_ms(v).ok_or_else(|| bad(&format!("{v} is out of range")))?
            }
            // A quoted time with its offset (JSON has no unquoted one), or in UTC.
            Given::Text(s) => match s.trim().parse::<toml::value::Datetime>() {
                Ok(t) if t.offset.is_some() => datetime_ms(&t)
                    .ok_or_else(|| bad(&format!("`{t}` has no date or no offset")))?,
                _ => crate::parse_ts(&s)
                    .filter(|_| {
                        s.trim_end().ends_with(['Z', 'z']) || s.trim().parse::<f64>().is_ok()
                    })
                    .ok_or_else(|| bad(&format!("cannot read {s:?}")))?,
            },
        };
        Ok(EventTime(ms))
    }
}

/// A TOML date-time with a date, a time and an offset, in ms since 1970.
fn datetime_ms(t: &toml::value::Datetime) -> Option<TimestampMs> {
    let (d, tm, off) = (t.date?, t.time?, t.offset?);
    // Days from 1970-01-01 to the civil date (proleptic Gregorian).
    let (y, m) = (i64::from(d.year), i64::from(d.month));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + i64::from(d.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400
        + i64::from(tm.hour) * 3_600
        + i64::from(tm.minute) * 60
        + i64::from(tm.second.unwrap_or(0));
    let off_min = match off {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    Some((secs - off_min * 60) * 1000 + i64::from(tm.nanosecond.unwrap_or(0) / 1_000_000))
}

/// Model names a workload may use.
pub const MODEL_NAMES: [&str; 11] = [
    "auto", "ensemble", "naive", "snaive", "ets", "mstl", "arima", "theta", "prophet", "lstm",
    "baseline",
];

fn default_model() -> String {
    "auto".into()
}
fn default_retrain_s() -> u64 {
    6 * 3_600
}
fn default_refit_s() -> u64 {
    2 * 3_600
}
fn default_error_decay() -> f64 {
    0.9
}
fn default_drift_ratio() -> f64 {
    2.0
}

fn default_step_s() -> u64 {
    60
}
fn default_history_s() -> u64 {
    14 * 86_400
}
fn default_horizon_s() -> u64 {
    3_600
}
fn default_quantile() -> f64 {
    0.95
}
fn default_target_utilization() -> f64 {
    0.8
}
fn default_spot_share() -> f64 {
    0.5
}
fn default_scale_down_delay_s() -> u64 {
    300
}
/// `true`, for serde defaults of switches that are on.
pub(crate) fn yes() -> bool {
    true
}
fn default_surge_extra() -> f64 {
    1.0
}
fn default_scale_down_window_s() -> u64 {
    7200
}
fn default_scale_down_period_s() -> u64 {
    300
}

/// Instances of one tier held by a workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierCount {
    /// Instances serving load.
    #[serde(default)]
    pub ready: u32,
    /// Instances requested but not yet serving.
    #[serde(default)]
    pub pending: u32,
    /// Instances under an interruption notice: still serving until it runs out, but no
    /// longer held, so the reconciler asks for their replacements at once.
    #[serde(default)]
    pub ending: u32,
}

impl TierCount {
    /// Ready plus pending: what the workload holds (instances under notice left out).
    pub fn total(&self) -> u32 {
        self.ready.saturating_add(self.pending)
    }

    /// Instances serving load now: ready, and those still serving out a notice.
    pub fn serving(&self) -> u32 {
        self.ready.saturating_add(self.ending)
    }
}

/// What a workload holds right now, per tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// Tier name to instance counts.
    pub tiers: BTreeMap<String, TierCount>,
}

impl Allocation {
    /// What the instances held (ready and pending) cost an hour at list price.
    pub fn cost_per_hour(&self, catalog: &[Tier]) -> f64 {
        catalog
            .iter()
            .map(|t| self.get(&t.name).total() as f64 * t.price_per_hour)
            .sum()
    }

    /// Effective capacity (demand units) of the ready instances.
    pub fn ready_capacity(&self, catalog: &[Tier]) -> f64 {
        catalog
            .iter()
            .map(|t| self.get(&t.name).serving() as f64 * t.effective_capacity())
            .sum()
    }

    /// Ready capacity in dimension `d` (CPU counting performance factors); `None` when
    /// no tier of `catalog` states the dimension.
    pub fn ready_of(&self, catalog: &[Tier], d: Dim) -> Option<f64> {
        catalog
            .iter()
            .filter_map(|t| Some(self.get(&t.name).serving() as f64 * t.provides(d)?))
            .reduce(|a, b| a + b)
    }

    /// The first of `demand`'s dimensions whose ready capacity falls short of it, with
    /// the demand and the ready capacity; dimensions no tier states are never short.
    pub fn short_of(&self, catalog: &[Tier], demand: &[(Dim, f64)]) -> Option<(Dim, f64, f64)> {
        demand.iter().find_map(|&(d, v)| {
            let ready = self.ready_of(catalog, d)?;
            (v > ready + 1e-9).then_some((d, v, ready))
        })
    }

    /// Counts for a tier (zero when absent).
    pub fn get(&self, tier: &str) -> TierCount {
        self.tiers.get(tier).copied().unwrap_or_default()
    }
}

/// Instances per tier at one future step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanStep {
    /// When this step starts.
    pub ts: TimestampMs,
    /// Demand the plan covers at this step (the SLA quantile of the forecast).
    pub demand: f64,
    /// Instances per tier needed to serve `demand` at the target utilization.
    pub instances: BTreeMap<String, u32>,
}

/// The planner's output for one workload: capacity per tier over time, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The workload planned.
    pub workload: String,
    /// When the plan was made.
    pub made_at: TimestampMs,
    /// Forecast quantile covered.
    pub quantile: f64,
    /// Instances per tier to hold (ready or pending) now, so that capacity is ready for
    /// the demand expected once the lead time has passed.
    pub target: BTreeMap<String, u32>,
    /// The plan over the forecast horizon.
    pub steps: Vec<PlanStep>,
    /// Expected cost per hour of `target`.
    pub cost_per_hour: f64,
    /// The constraint that decided the plan (e.g. `sla`, `budget`, `max_instances`).
    pub binding: String,
    /// Human-readable explanation.
    pub reason: String,
}

/// Provision or deprovision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    /// Add instances.
    Provision,
    /// Remove instances.
    Deprovision,
}

/// One change to a workload's capacity, idempotent by `key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Idempotency key: applying an action twice with the same key changes nothing.
    pub key: String,
    /// Workload whose capacity changes.
    pub workload: String,
    /// Tier affected.
    pub tier: String,
    /// Provision or deprovision.
    pub kind: ActionKind,
    /// Number of instances.
    pub count: u32,
    /// When it was decided.
    pub at: TimestampMs,
}

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionKind {
    /// An action was sent to the provider and accepted.
    Act,
    /// Capacity was deliberately left as it is.
    Hold,
    /// The provider refused or failed; nothing changed.
    Error,
    /// Capacity changed without prescale asking (e.g. a spot interruption).
    Event,
    /// A configuration reload added, changed or removed the workload.
    Config,
}

/// An action or a deliberate non-action, with its reason; the decision log's entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// When it was decided.
    pub at: TimestampMs,
    /// Workload concerned.
    pub workload: String,
    /// Act, hold or error.
    pub kind: DecisionKind,
    /// The action taken, if any.
    pub action: Option<Action>,
    /// Why, in words.
    pub reason: String,
    /// For an `error` the provider gave again and again: the refusals, the same as
    /// this one, that it stands for, each not logged on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeated: Option<Repeated>,
}

impl Decision {
    /// How many of the provider's refusals this decision records: 0 for one that is
    /// not an `error` with an action, else 1, or the number it stands for
    /// ([`Repeated::times`]).
    pub fn refusals(&self) -> u64 {
        match (&self.kind, &self.action, &self.repeated) {
            (DecisionKind::Error, Some(_), Some(r)) => r.times,
            (DecisionKind::Error, Some(_), None) => 1,
            _ => 0,
        }
    }
}

/// The provider's refusals of one action, each refused the same way, which one
/// decision records: a provider that refuses at every pass (a Deployment deleted, a
/// right missing) would otherwise log one every 15 s, 5,760 a day, and bury every
/// other decision of the workload. As Kubernetes counts a repeated event, the first
/// refusal is logged, and the repeats since are logged once an hour, and when they
/// stop, as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repeated {
    /// How many refusals.
    pub times: u64,
    /// When the first of them came, and the last (the decision is logged when they
    /// stop, or an hour after the last one logged, so later).
    pub since: TimestampMs,
    pub until: TimestampMs,
}

/// What an operator's pause of a workload holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PauseScope {
    /// Every change: capacity stays as it is (nothing is provisioned, nothing removed,
    /// an interrupted spot instance is not replaced).
    All,
    /// Removing capacity only: prescale still provisions what its plans need.
    ScaleDown,
}

impl PauseScope {
    /// The name the API takes and gives.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::ScaleDown => "scale-down",
        }
    }
}

/// An operator's pause of a workload (`POST /api/v1/workloads/{name}/pause`): until
/// `until`, prescale goes on forecasting and planning it, and logs what it would have
/// done, but makes no change that `scope` holds back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// What is held back.
    pub scope: PauseScope,
    /// When it was asked for.
    pub since: TimestampMs,
    /// When it ends by itself.
    pub until: TimestampMs,
    /// Why, as the operator said (may be empty).
    pub reason: String,
}

impl Pause {
    /// Whether it holds at `now`.
    pub fn holds(&self, now: TimestampMs) -> bool {
        self.since <= now && now < self.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_units_follow_performance_factor() {
        let t = Tier {
            name: "hp".into(),
            class: TierClass::HighPerformance,
            vcpu: 4.0,
            memory_gib: 16.0,
            disk_iops: None,
            network_mbps: Some(1000.0),
            price_per_hour: 0.4,
            performance_factor: 2.0,
            lead_time_s: 60,
            lead_time_p90_s: None,
            billing_granularity_s: 1,
            interruption_rate_per_hour: 0.0,
            interruption_notice_s: 120,
            min_instances: 0,
            workloads: Vec::new(),
            max_instances: 10,
        };
        assert_eq!(t.effective_capacity(), 8.0);
        assert_eq!(t.lead_time_p90(), 90);
        assert_eq!(t.provides(Dim::Cpu), Some(8.0));
        assert_eq!(t.provides(Dim::Memory), Some(16.0));
        assert_eq!(t.provides(Dim::Disk), None);
        assert_eq!(t.provides(Dim::Network), Some(1000.0));
        assert_eq!(Dim::parse("disk_iops"), Some(Dim::Disk));
        assert!((t.unit_price() - 0.05).abs() < 1e-12);
        let mut a = Allocation::default();
        a.tiers.insert(
            "hp".into(),
            TierCount {
                ready: 2,
                pending: 1,
                ending: 0,
            },
        );
        assert_eq!(a.ready_capacity(std::slice::from_ref(&t)), 16.0);
        assert_eq!(a.get("hp").total(), 3);
        // One more serving out a spot notice: capacity, but not held.
        a.tiers.get_mut("hp").unwrap().ending = 1;
        assert_eq!(a.ready_capacity(std::slice::from_ref(&t)), 24.0);
        assert_eq!(a.get("hp").total(), 3);
        assert_eq!(a.get("none").total(), 0);
    }
}
