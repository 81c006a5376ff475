//! Providers carry out actions. The simulated cloud is the first: instances of each tier
//! become ready after a lead time drawn as the simulator draws it (log-normal, the tier's
//! `lead_time_s` its median and `lead_time_p90_s` its 90th percentile), are billed from
//! request to release rounded up to the tier's `billing_granularity_s`, and spot
//! instances are interrupted at random (all seeded, so runs replay). The hook providers
//! ([`crate::hook`]) hand actions to a command or an HTTP endpoint.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use crate::simulate::{billed_s, draw_lead_ms, keyed_unit};
use prescale_core::{Action, ActionKind, Allocation, Decision, Tier, TierClass, TimestampMs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A provider refused or failed an action; nothing was changed.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ProviderError {
    /// The tier is not in the provider's catalog.
    #[error("unknown tier {0:?}; configure it under [[tiers]]")]
    UnknownTier(String),
    /// The request would exceed the tier's configured maximum.
    #[error(
        "tier {tier} is at its limit: {have} instances + {want} requested > max_instances {max}"
    )]
    AtCapacity {
        /// Tier name.
        tier: String,
        /// Instances held now (all workloads).
        have: u32,
        /// Instances requested.
        want: u32,
        /// The tier's maximum.
        max: u32,
    },
    /// The provider could not be reached or timed out.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider answered and said no.
    #[error("provider refused: {0}")]
    Refused(String),
}

/// The catalog's tier `name`, or why an action on it is refused.
pub(crate) fn tier_of(tiers: &BTreeMap<String, Tier>, name: &str) -> Result<Tier, ProviderError> {
    tiers
        .get(name)
        .cloned()
        .ok_or_else(|| ProviderError::UnknownTier(name.to_string()))
}

/// Refuses to provision `want` more of `tier` when every workload together holds `have`
/// and that would pass the tier's `max_instances`.
pub(crate) fn within_max(tier: &Tier, have: u32, want: u32) -> Result<(), ProviderError> {
    if have.saturating_add(want) > tier.max_instances {
        return Err(ProviderError::AtCapacity {
            tier: tier.name.clone(),
            have,
            want,
            max: tier.max_instances,
        });
    }
    Ok(())
}

/// Something that turns actions into capacity.
pub trait Provider: Send {
    /// Name for logs and metrics.
    fn name(&self) -> &str;
    /// Whether applying an action changes real capacity; `false` for the recommend-only
    /// provider, whose actions are recorded as advice.
    fn acts(&self) -> bool {
        true
    }
    /// Applies an action. Applying an action whose key was already applied is a no-op.
    fn apply(&mut self, action: &Action, now: TimestampMs) -> Result<(), ProviderError>;
    /// What `workload` holds at `now`, per tier.
    fn allocation(&self, workload: &str, now: TimestampMs) -> Allocation;
    /// Workloads this provider knows to hold instances, configured or not, so capacity
    /// left by a workload removed while prescale was stopped is found; empty where the
    /// provider cannot list them (the engine still follows workloads a reload removed).
    fn holders(&self) -> Vec<String> {
        Vec::new()
    }
    /// Workloads no longer configured whose capacity the engine still follows (set
    /// before every pass): a provider that asks an outside system what each workload
    /// holds asks about these too.
    fn follow(&mut self, _unmanaged: &[String]) {}
    /// Moves the provider's clock to `now`; returns events that happened meanwhile
    /// (e.g. spot interruptions).
    fn advance(&mut self, now: TimestampMs) -> Vec<ProviderEvent>;
    /// State to persist between runs, for providers whose truth lives in this process
    /// (a real cloud keeps its own and returns `None`).
    fn save(&self) -> Option<serde_json::Value> {
        None
    }
    /// Restores state saved by [`Provider::save`].
    fn restore(&mut self, _state: serde_json::Value) -> Result<(), ProviderError> {
        Ok(())
    }
    /// For a provider that reads what each workload holds from outside (a hook with
    /// `report_state`, Kubernetes) at each [`Provider::advance`]: how the last read
    /// went. `None` for one whose truth is its own (the simulated cloud, a book).
    fn state_read(&self) -> Option<StateRead> {
        None
    }
    /// Told of each decision about one of its actions once it is logged (an action
    /// taken or refused, a refusal's repeats), for a provider that records them where
    /// its users look: Kubernetes posts an Event on the object, as an HPA's rescale shows
    /// in `kubectl describe`. Never fails the pass: a provider that cannot record says
    /// so in its log.
    fn record(&self, _decision: &Decision) {}
}

/// How a provider that reads its state from outside last read it
/// ([`Provider::state_read`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateRead {
    /// When it was last read (unix ms; `None`: not since prescale started).
    pub read_at: Option<TimestampMs>,
    /// Since when it could not be read (unix ms), while it cannot: plans go on from what
    /// it last said, with what was applied since.
    pub unread_since: Option<TimestampMs>,
    /// Why the last read failed, while it fails.
    pub error: Option<String>,
}

/// A provider chosen at run time (the daemon's `[providers] use`).
impl Provider for Box<dyn Provider> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn acts(&self) -> bool {
        (**self).acts()
    }
    fn apply(&mut self, action: &Action, now: TimestampMs) -> Result<(), ProviderError> {
        (**self).apply(action, now)
    }
    fn allocation(&self, workload: &str, now: TimestampMs) -> Allocation {
        (**self).allocation(workload, now)
    }
    fn holders(&self) -> Vec<String> {
        (**self).holders()
    }
    fn follow(&mut self, unmanaged: &[String]) {
        (**self).follow(unmanaged)
    }
    fn advance(&mut self, now: TimestampMs) -> Vec<ProviderEvent> {
        (**self).advance(now)
    }
    fn save(&self) -> Option<serde_json::Value> {
        (**self).save()
    }
    fn restore(&mut self, state: serde_json::Value) -> Result<(), ProviderError> {
        (**self).restore(state)
    }
    fn state_read(&self) -> Option<StateRead> {
        (**self).state_read()
    }
    fn record(&self, decision: &Decision) {
        (**self).record(decision)
    }
}

/// Something the provider did on its own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderEvent {
    /// When.
    pub at: TimestampMs,
    /// Workload affected.
    pub workload: String,
    /// Tier affected.
    pub tier: String,
    /// What happened.
    pub what: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Instance {
    id: u64,
    workload: String,
    tier: String,
    /// When it was asked for: billed from then (absent in states saved before lead
    /// times were drawn: its ready time less the tier's median lead time).
    #[serde(default)]
    requested_at: Option<TimestampMs>,
    ready_at: TimestampMs,
    /// Set by an interruption notice: the instance serves until then, then stops.
    #[serde(default)]
    ends_at: Option<TimestampMs>,
}

/// How many recent action keys the simulated cloud remembers for idempotency.
const REMEMBERED_KEYS: usize = 4096;

/// What the simulated cloud persists between runs.
#[derive(Serialize, Deserialize)]
struct SimState {
    seed: u64,
    instances: Vec<Instance>,
    applied: Vec<String>,
    next_id: u64,
    clock: Option<TimestampMs>,
    cost: BTreeMap<String, f64>,
    interruptions: u64,
}

/// The built-in simulated cloud.
pub struct SimCloud {
    seed: u64,
    tiers: BTreeMap<String, Tier>,
    rng: ChaCha8Rng,
    instances: Vec<Instance>,
    applied: HashSet<String>,
    applied_order: VecDeque<String>,
    next_id: u64,
    clock: Option<TimestampMs>,
    cost: BTreeMap<String, f64>,
    interruptions: u64,
}

impl SimCloud {
    /// A simulated cloud selling `tiers`, with spot interruptions drawn from `seed`.
    pub fn new(tiers: &[Tier], seed: u64) -> Self {
        Self {
            seed,
            tiers: tiers.iter().map(|t| (t.name.clone(), t.clone())).collect(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            instances: Vec::new(),
            applied: HashSet::new(),
            applied_order: VecDeque::new(),
            next_id: 0,
            clock: None,
            cost: tiers.iter().map(|t| (t.name.clone(), 0.0)).collect(),
            interruptions: 0,
        }
    }

    /// Money spent so far per tier (instances are billed per second from request).
    pub fn cost_per_tier(&self) -> &BTreeMap<String, f64> {
        &self.cost
    }

    /// Spot interruptions so far.
    pub fn interruptions(&self) -> u64 {
        self.interruptions
    }

    /// Bills what instance `i`, released at `end`, owes beyond what was billed as it ran
    /// (up to the clock): the rest of its time, rounded up to the tier's granularity.
    fn settle(&mut self, i: &Instance, end: TimestampMs) {
        let Some(t) = self.tiers.get(&i.tier) else {
            return;
        };
        let from = requested_at(i, t);
        let accrued = (self.clock.unwrap_or(from).min(end) - from).max(0);
        let owed = billed_s(t, end - from) as f64 * 1000.0 - accrued as f64;
        if owed > 0.0 {
            *self.cost.entry(i.tier.clone()).or_default() += owed / 3_600_000.0 * t.price_per_hour;
        }
    }

    /// The times in `(from, to)` at which what `workload` has serving changes without
    /// an action: an instance comes up, or one under notice stops. (Interruptions come
    /// only as the clock advances.) Sorted, each once.
    pub fn changes(&self, workload: &str, from: TimestampMs, to: TimestampMs) -> Vec<TimestampMs> {
        let mut at: Vec<TimestampMs> = self
            .instances
            .iter()
            .filter(|i| i.workload == workload)
            .flat_map(|i| [Some(i.ready_at), i.ends_at])
            .flatten()
            .filter(|t| *t > from && *t < to)
            .collect();
        at.sort_unstable();
        at.dedup();
        at
    }

    /// Instances of a tier across all workloads, those under notice left out.
    pub fn tier_count(&self, tier: &str) -> u32 {
        self.instances
            .iter()
            .filter(|i| i.tier == tier && i.ends_at.is_none())
            .count() as u32
    }
}

/// When instance `i` of tier `t` was asked for.
fn requested_at(i: &Instance, t: &Tier) -> TimestampMs {
    i.requested_at
        .unwrap_or(i.ready_at - t.lead_time_s as i64 * 1000)
}

impl Provider for SimCloud {
    fn name(&self) -> &str {
        "sim"
    }

    fn apply(&mut self, a: &Action, now: TimestampMs) -> Result<(), ProviderError> {
        if self.applied.contains(&a.key) {
            return Ok(());
        }
        match a.kind {
            ActionKind::Provision => {
                let tier = tier_of(&self.tiers, &a.tier)?;
                within_max(&tier, self.tier_count(&a.tier), a.count)?;
                for _ in 0..a.count {
                    // Keyed by the seed and the instance, not drawn from the
                    // interruptions' sequence, so a lead time neither shifts nor depends
                    // on it, and a restored cloud draws what it would have.
                    let u = |salt: u64| keyed_unit(&[self.seed, self.next_id, salt]);
                    self.instances.push(Instance {
                        id: self.next_id,
                        workload: a.workload.clone(),
                        tier: a.tier.clone(),
                        requested_at: Some(now),
                        ready_at: now + draw_lead_ms(&tier, u(1), u(2)),
                        ends_at: None,
                    });
                    self.next_id += 1;
                }
            }
            ActionKind::Deprovision => {
                // Release pending instances first (they serve nothing yet), then the newest.
                let mut mine: Vec<usize> = self
                    .instances
                    .iter()
                    .enumerate()
                    .filter(|(_, i)| {
                        i.workload == a.workload && i.tier == a.tier && i.ends_at.is_none()
                    })
                    .map(|(n, _)| n)
                    .collect();
                mine.sort_by_key(|n| {
                    let i = &self.instances[*n];
                    (std::cmp::Reverse(i.ready_at), std::cmp::Reverse(i.id))
                });
                let drop: HashSet<usize> = mine.into_iter().take(a.count as usize).collect();
                let mut n = 0;
                let mut released = Vec::new();
                self.instances.retain(|i| {
                    let keep = !drop.contains(&n);
                    n += 1;
                    if !keep {
                        released.push(i.clone());
                    }
                    keep
                });
                for i in &released {
                    self.settle(i, now);
                }
            }
        }
        self.applied.insert(a.key.clone());
        self.applied_order.push_back(a.key.clone());
        if self.applied_order.len() > REMEMBERED_KEYS {
            if let Some(old) = self.applied_order.pop_front() {
                self.applied.remove(&old);
            }
        }
        Ok(())
    }

    fn save(&self) -> Option<serde_json::Value> {
        serde_json::to_value(SimState {
            seed: self.seed,
            instances: self.instances.clone(),
            applied: self.applied_order.iter().cloned().collect(),
            next_id: self.next_id,
            clock: self.clock,
            cost: self.cost.clone(),
            interruptions: self.interruptions,
        })
        .ok()
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ProviderError> {
        let st: SimState = serde_json::from_value(state).map_err(|e| {
            ProviderError::Unavailable(format!("saved simulator state unreadable: {e}"))
        })?;
        // Instances of tiers no longer configured are dropped: nothing can bill them.
        self.instances = st
            .instances
            .into_iter()
            .filter(|i| self.tiers.contains_key(&i.tier))
            .collect();
        self.applied_order = st.applied.into_iter().collect();
        self.applied = self.applied_order.iter().cloned().collect();
        self.next_id = st.next_id;
        self.clock = st.clock;
        for (tier, c) in st.cost {
            self.cost.insert(tier, c);
        }
        self.interruptions = st.interruptions;
        // Continue the interruption sequence deterministically from the saved clock.
        self.rng = ChaCha8Rng::seed_from_u64(self.seed ^ st.clock.unwrap_or(0) as u64);
        Ok(())
    }

    fn holders(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .instances
            .iter()
            .filter(|i| i.ends_at.is_none())
            .map(|i| i.workload.as_str())
            .collect();
        names.into_iter().map(str::to_string).collect()
    }

    fn allocation(&self, workload: &str, now: TimestampMs) -> Allocation {
        let mut a = Allocation::default();
        // An instance whose notice ran out has stopped, though the clock has not yet
        // come to reap it.
        let live = |i: &&Instance| i.workload == workload && i.ends_at.is_none_or(|e| e > now);
        for i in self.instances.iter().filter(live) {
            let c = a.tiers.entry(i.tier.clone()).or_default();
            if i.ends_at.is_some() {
                c.ending += 1;
            } else if i.ready_at <= now {
                c.ready += 1;
            } else {
                c.pending += 1;
            }
        }
        a
    }

    fn advance(&mut self, now: TimestampMs) -> Vec<ProviderEvent> {
        let mut events = Vec::new();
        let Some(prev) = self.clock else {
            self.clock = Some(now);
            return events;
        };
        if now <= prev {
            return events;
        }
        let dt_h = (now - prev) as f64 / 3_600_000.0;
        // What happened to instance `i`, at `now`.
        let event = |i: &Instance, what: String| ProviderEvent {
            at: now,
            workload: i.workload.clone(),
            tier: i.tier.clone(),
            what,
        };
        // Notices that have run out stop their instances, billed to their end.
        let mut stopped = Vec::new();
        self.instances.retain(|i| match i.ends_at {
            Some(e) if e <= now => {
                let what = format!("spot instance {} stopped at the end of its notice", i.id);
                events.push(event(i, what));
                stopped.push(i.clone());
                false
            }
            _ => true,
        });
        for i in &stopped {
            self.settle(i, i.ends_at.unwrap_or(now));
        }
        // The rest run on: billed from `prev`, or from their request if later.
        for i in &self.instances {
            let t = &self.tiers[&i.tier];
            let from = requested_at(i, t).max(prev);
            *self.cost.get_mut(&i.tier).expect("known tier") +=
                t.price_per_hour * (now - from).max(0) as f64 / 3_600_000.0;
        }
        let tiers = &self.tiers;
        let rng = &mut self.rng;
        let mut interrupted = 0;
        // A notice comes at the tier's rate: a ready instance serves out the tier's
        // interruption_notice_s (no longer held, so the reconciler replaces it at its
        // next pass); a pending one, or one with no notice, goes at once.
        self.instances.retain_mut(|i| {
            let t = &tiers[&i.tier];
            if t.class != TierClass::Spot
                || t.interruption_rate_per_hour <= 0.0
                || i.ends_at.is_some()
            {
                return true;
            }
            let p = 1.0 - (-t.interruption_rate_per_hour * dt_h).exp();
            if rng.random::<f64>() >= p {
                return true;
            }
            interrupted += 1;
            let notice = t.interruption_notice_s as i64 * 1000;
            let serves_out = notice > 0 && i.ready_at <= now;
            let what = if serves_out {
                i.ends_at = Some(now + notice);
                format!(
                    "spot instance {} interrupted by the provider: {} s notice",
                    i.id, t.interruption_notice_s
                )
            } else {
                format!("spot instance {} interrupted by the provider", i.id)
            };
            events.push(event(i, what));
            serves_out
        });
        self.interruptions += interrupted;
        self.clock = Some(now);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::config::Config;

    fn action(key: &str, tier: &str, kind: ActionKind, count: u32) -> Action {
        Action {
            key: key.into(),
            workload: "w".into(),
            tier: tier.into(),
            kind,
            count,
            at: 0,
        }
    }

    #[test]
    fn lead_time_billing_and_idempotency() {
        let tiers = Config::default().tiers;
        let mut sim = SimCloud::new(&tiers, 1);
        sim.advance(0);
        sim.apply(&action("a", "standard", ActionKind::Provision, 2), 0)
            .unwrap();
        sim.apply(&action("a", "standard", ActionKind::Provision, 2), 0)
            .unwrap();
        let a = sim.allocation("w", 0);
        assert_eq!((a.get("standard").ready, a.get("standard").pending), (0, 2));
        // Ready after lead times drawn around the tier's 180 s median.
        let a = sim.allocation("w", 3_600_000);
        assert_eq!(a.get("standard").ready, 2);
        sim.advance(3_600_000);
        assert!((sim.cost_per_tier()["standard"] - 2.0 * 0.192).abs() < 1e-9);
        sim.apply(
            &action("b", "standard", ActionKind::Deprovision, 1),
            3_600_000,
        )
        .unwrap();
        assert_eq!(sim.allocation("w", 3_600_000).get("standard").total(), 1);
        assert!(sim.allocation("other", 3_600_000).tiers.is_empty());
    }

    #[test]
    fn lead_times_are_drawn_about_the_tiers_median_and_90th_percentile() {
        let tiers = Config::default().tiers;
        let t = tiers.iter().find(|t| t.name == "standard").unwrap();
        let (median, p90) = (t.lead_time_s as i64 * 1000, t.lead_time_p90() as i64 * 1000);
        assert!(
            p90 > median,
            "the default tier has a tail: {median} ms, {p90} ms"
        );
        let leads = |seed: u64| {
            let mut sim = SimCloud::new(&tiers, seed);
            sim.advance(0);
            // Four requests of 10: 40 instances, none refused by the tier's 50.
            for n in 0..4 {
                let a = action(&format!("p{n}"), "standard", ActionKind::Provision, 10);
                sim.apply(&a, 0).unwrap();
            }
            let mut leads: Vec<i64> = sim.instances.iter().map(|i| i.ready_at).collect();
            leads.sort_unstable();
            leads
        };
        let mut all = Vec::new();
        for seed in 0..50 {
            all.extend(leads(seed));
        }
        all.sort_unstable();
        let q = |p: f64| all[((all.len() - 1) as f64 * p).round() as usize];
        // 2,000 draws: the median and the 90th percentile within 5% of the tier's.
        assert!((q(0.5) - median).abs() < median / 20, "median {}", q(0.5));
        assert!((q(0.9) - p90).abs() < p90 / 20, "p90 {}", q(0.9));
        assert!(
            all[0] > 0 && all[0] < median / 2,
            "some come up early: {}",
            all[0]
        );
        // Seeded: the same seed draws the same times, another seed others.
        assert_eq!(leads(7), leads(7));
        assert_ne!(leads(7), leads(8));
        // A tier whose 90th percentile is its median comes up after exactly that.
        let mut fixed = tiers.clone();
        for t in &mut fixed {
            t.lead_time_p90_s = Some(t.lead_time_s);
        }
        let mut sim = SimCloud::new(&fixed, 3);
        sim.apply(&action("f", "standard", ActionKind::Provision, 5), 1_000)
            .unwrap();
        assert!(sim.instances.iter().all(|i| i.ready_at == 1_000 + median));
    }

    #[test]
    fn billing_runs_from_request_to_release_rounded_up_to_the_granularity() {
        let mut tiers = Config::default().tiers;
        for t in &mut tiers {
            t.billing_granularity_s = 3600;
        }
        let price = tiers
            .iter()
            .find(|t| t.name == "standard")
            .unwrap()
            .price_per_hour;
        let mut sim = SimCloud::new(&tiers, 1);
        sim.advance(0);
        sim.apply(&action("a", "standard", ActionKind::Provision, 2), 0)
            .unwrap();
        sim.advance(600_000);
        // Billed as they run: ten minutes of two so far.
        let so_far = sim.cost_per_tier()["standard"];
        assert!((so_far - 2.0 * price / 6.0).abs() < 1e-9, "{so_far}");
        // One goes after 20 minutes: it pays its whole hour.
        sim.apply(
            &action("b", "standard", ActionKind::Deprovision, 1),
            1_200_000,
        )
        .unwrap();
        let after = sim.cost_per_tier()["standard"];
        assert!((after - (price + price / 6.0)).abs() < 1e-9, "{after}");
        // The other runs on into its second hour, billed as it runs until released.
        sim.advance(4_000_000);
        let run = sim.cost_per_tier()["standard"];
        assert!(
            (run - (price + price * 4_000.0 / 3_600.0)).abs() < 1e-9,
            "{run}"
        );
        sim.apply(
            &action("c", "standard", ActionKind::Deprovision, 1),
            4_000_000,
        )
        .unwrap();
        let total = sim.cost_per_tier()["standard"];
        assert!(
            (total - 3.0 * price).abs() < 1e-9,
            "two hours and one: {total}"
        );
        // Per second (the default), a pending instance let go pays its seconds only.
        let tiers = Config::default().tiers;
        let mut sim = SimCloud::new(&tiers, 1);
        sim.advance(0);
        sim.apply(&action("a", "standard", ActionKind::Provision, 1), 0)
            .unwrap();
        sim.apply(&action("b", "standard", ActionKind::Deprovision, 1), 30_000)
            .unwrap();
        let paid = sim.cost_per_tier()["standard"];
        assert!((paid - price * 30.0 / 3_600.0).abs() < 1e-9, "{paid}");
    }

    #[test]
    fn refuses_unknown_tiers_and_the_max() {
        let tiers = Config::default().tiers;
        let mut sim = SimCloud::new(&tiers, 1);
        assert!(matches!(
            sim.apply(&action("x", "gold", ActionKind::Provision, 1), 0),
            Err(ProviderError::UnknownTier(_))
        ));
        let e = sim
            .apply(
                &action("y", "high-performance", ActionKind::Provision, 21),
                0,
            )
            .unwrap_err();
        assert!(e.to_string().contains("max_instances 20"), "{e}");
        assert_eq!(
            sim.tier_count("high-performance"),
            0,
            "nothing half-applied"
        );
    }

    #[test]
    fn spot_interruptions_follow_the_rate_and_the_seed() {
        let mut tiers = Config::default().tiers;
        tiers[0].interruption_rate_per_hour = 0.5;
        tiers[0].max_instances = 1000;
        let run = |seed| {
            let mut sim = SimCloud::new(&tiers, seed);
            sim.advance(0);
            sim.apply(&action("a", "spot", ActionKind::Provision, 1000), 0)
                .unwrap();
            // One hour in one-minute steps: expect 1000 * (1 - e^-0.5) ~ 393 interruptions.
            for m in 1..=60 {
                sim.advance(m * 60_000);
            }
            sim.interruptions()
        };
        let n = run(3);
        assert!((330..460).contains(&n), "{n}");
        assert_eq!(run(3), n);
        assert_ne!(run(4), n);
    }

    #[test]
    fn a_spot_notice_keeps_the_instance_serving_until_it_runs_out() {
        // Four spot instances come up on a calm cloud; then interruptions come often.
        let mut tiers = Config::default().tiers;
        let k = tiers.iter().position(|t| t.name == "spot").unwrap();
        tiers[k].interruption_rate_per_hour = 0.0;
        let mut calm = SimCloud::new(&tiers, 5);
        calm.advance(0);
        calm.apply(&action("a", "spot", ActionKind::Provision, 4), 0)
            .unwrap();
        calm.advance(600_000);
        tiers[k].interruption_rate_per_hour = 30.0;
        tiers[k].interruption_notice_s = 120;
        let mut sim = SimCloud::new(&tiers, 5);
        sim.restore(calm.save().unwrap()).unwrap();
        let mut events = Vec::new();
        let mut t = 600_000;
        while sim.interruptions() == 0 {
            t += 15_000;
            events.extend(sim.advance(t));
        }
        // Under notice: still serving, no longer held, so the reconciler replaces it.
        let a = sim.allocation("w", t).get("spot");
        let noticed = a.ending;
        assert!(noticed >= 1, "{a:?}");
        assert_eq!((a.serving(), a.total()), (4, 4 - noticed));
        assert!(
            events.iter().any(|e| e.what.contains("120 s notice")),
            "{events:?}"
        );
        // A scale-down releases held instances, not those already going.
        sim.apply(&action("b", "spot", ActionKind::Deprovision, 1), t)
            .unwrap();
        let b = sim.allocation("w", t).get("spot");
        assert_eq!((b.ending, b.total()), (noticed, 3 - noticed));
        // When the notice runs out is a change in what serves, and from then the
        // instance serves no more, though the clock has not yet come to reap it.
        assert_eq!(sim.changes("w", t, t + 600_000), vec![t + 120_000]);
        assert!(sim.changes("other", t, t + 600_000).is_empty());
        assert_eq!(sim.allocation("w", t + 119_000).get("spot").serving(), 3);
        let gone = sim.allocation("w", t + 120_000).get("spot");
        assert_eq!((gone.ending, gone.serving()), (0, 3 - noticed));
        // Two minutes on, the noticed ones have stopped, and said so.
        let events = sim.advance(t + 120_000);
        assert!(
            events
                .iter()
                .filter(|e| e.what.contains("end of its notice"))
                .count() as u32
                >= noticed,
            "{events:?}"
        );
        let c = sim.allocation("w", t + 120_000).get("spot");
        assert!(c.serving() <= 3 - noticed, "{c:?}");
        // With no notice, an interrupted instance goes at once.
        tiers[k].interruption_notice_s = 0;
        let mut sudden = SimCloud::new(&tiers, 5);
        sudden.restore(calm.save().unwrap()).unwrap();
        let mut t = 600_000;
        while sudden.interruptions() == 0 {
            t += 15_000;
            sudden.advance(t);
        }
        let d = sudden.allocation("w", t).get("spot");
        assert_eq!(d.ending, 0);
        assert_eq!(d.serving() as u64, 4 - sudden.interruptions());
    }

    #[test]
    fn state_survives_a_restart() {
        let tiers = Config::default().tiers;
        let mut sim = SimCloud::new(&tiers, 1);
        sim.advance(0);
        sim.apply(&action("a", "standard", ActionKind::Provision, 3), 0)
            .unwrap();
        sim.advance(3_600_000);
        let saved = sim.save().unwrap();
        let mut again = SimCloud::new(&tiers, 1);
        again.restore(saved).unwrap();
        assert_eq!(again.allocation("w", 3_600_000).get("standard").ready, 3);
        assert!((again.cost_per_tier()["standard"] - 3.0 * 0.192).abs() < 1e-9);
        // The old key is still remembered: re-sending the action changes nothing.
        again
            .apply(
                &action("a", "standard", ActionKind::Provision, 3),
                3_600_000,
            )
            .unwrap();
        assert_eq!(again.tier_count("standard"), 3);
        assert!(again.restore(serde_json::json!({"bogus": 1})).is_err());
    }

    #[test]
    fn deprovision_releases_pending_first() {
        let tiers = Config::default().tiers;
        let mut sim = SimCloud::new(&tiers, 1);
        sim.apply(&action("a", "spot", ActionKind::Provision, 2), 0)
            .unwrap();
        sim.apply(&action("b", "spot", ActionKind::Provision, 1), 200_000)
            .unwrap();
        sim.apply(&action("c", "spot", ActionKind::Deprovision, 1), 250_000)
            .unwrap();
        let a = sim.allocation("w", 250_000);
        assert_eq!((a.get("spot").ready, a.get("spot").pending), (2, 0));
    }
}
