//! A tier is one pool shared by every workload.
//!
//! A tier's `max_instances` is the most instances of it that every workload prescale
//! manages may hold together: a node pool's maximum size, as cluster-autoscaler's
//! `maxSize` of a node group, or a cloud account's quota of an instance type. The
//! simulated cloud and the hooks refuse a request past it. Planned one workload at a
//! time against the whole maximum, two workloads that each wanted most of a pool asked
//! for more than it holds: the provider refused the second one's request at every pass
//! ("will retry at the next pass") and it stayed short, while the next tier it may use
//! had room. So each workload's plan reads a tier's maximum less what the other
//! workloads, and capacity no longer managed, hold of it (ready and pending), and fills
//! the rest from its next tier, saying so. Among workloads of equal `priority` none
//! takes what another holds: whoever holds keeps, until its own plan lets it go. A pass
//! plans higher priorities first, and one whose every tier is full claims what lower
//! priorities hold there: they plan as if it held it, and let it go as soon as the
//! rest of their plans serves (after their scale-down delay at the latest).

use std::collections::BTreeMap;

use prescale_core::{format_ts, Allocation, Tier, TimestampMs};
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::provider::Provider;

/// One tier as a pool: what every workload holds of it against its maximum, in the
/// status after each pass (`GET /api/v1/workloads`' `pools`, `/metrics`'
/// `prescale_tier_instances` and `prescale_tier_max_instances`, the dashboard's tier
/// tables).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    /// The tier's `max_instances`.
    pub max_instances: u32,
    /// Instances held (ready and pending) over every workload and capacity no longer
    /// managed.
    pub held: u32,
    /// Who holds them: each workload holding any, and each workload no longer managed as
    /// `NAME (unmanaged)`.
    pub by: BTreeMap<String, u32>,
    /// Whether no workload has room left in it (a tier with a maximum of 0, turned
    /// off, is not full): judged here once, for the status, the dashboard and the
    /// command line alike.
    pub full: bool,
}

/// What others hold of one tier whose room for a workload is below its maximum.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Shared {
    /// The tier.
    pub tier: String,
    /// Its configured `max_instances`.
    pub max: u32,
    /// Who holds the rest, with how many (the other workloads, the claims of those of
    /// higher priority, capacity no longer managed), largest first.
    pub held: Vec<(String, u32)>,
    /// The workloads of higher priority that claim instances of it, with how many (also
    /// in `held`, as `NAME's claim`).
    pub claimants: Vec<(String, u32)>,
}

impl Shared {
    /// Instances of the tier others hold.
    pub fn others(&self) -> u32 {
        self.held.iter().map(|h| h.1).sum()
    }

    /// The room left for the workload.
    pub fn room(&self) -> u32 {
        self.max.saturating_sub(self.others())
    }

    /// A plan's words for it.
    pub fn words(&self) -> String {
        let who: Vec<String> = self
            .held
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        format!(
            "{}'s max_instances = {} is shared by every workload and the others hold {} ({}): room for {} here",
            self.tier,
            self.max,
            self.others(),
            who.join(", "),
            self.room()
        )
    }
}

/// Where workload `held` holds more of a tier than the room `shared` leaves it because
/// workloads of higher priority claim some, and every other tier of its plan (`target`)
/// is ready, lowers `desired` to that room: the capacity replacing the claimed instances
/// serves, so they go at once rather than after the scale-down delay or the shrink
/// limit, which would keep them from the claimant that long (make before break: until
/// then they are kept, at most for the scale-down delay, as before). Per tier let go,
/// how many and to whom.
pub(super) fn give_way(
    shared: &[Shared],
    target: &BTreeMap<String, u32>,
    held: &Allocation,
    desired: &mut BTreeMap<String, u32>,
) -> Vec<(String, u32, String)> {
    let claimed = |t: &str| {
        shared
            .iter()
            .any(|x| x.tier == t && !x.claimants.is_empty())
    };
    let replaced = target
        .iter()
        .filter(|(t, _)| !claimed(t))
        .all(|(t, &n)| held.get(t).ready >= n);
    if !replaced {
        return Vec::new();
    }
    shared
        .iter()
        .filter(|x| !x.claimants.is_empty())
        .filter_map(|x| {
            let want = desired.get_mut(&x.tier)?;
            let before = *want;
            *want = before.min(x.room());
            let go = before.min(held.get(&x.tier).total()).saturating_sub(*want);
            let who: Vec<String> = x
                .claimants
                .iter()
                .map(|(name, n)| format!("{name} {n}"))
                .collect();
            (go > 0).then(|| (x.tier.clone(), go, who.join(", ")))
        })
        .collect()
}

/// A plan's words for what [`give_way`] let go.
pub(super) fn gave_way_words(given: &[(String, u32, String)]) -> String {
    let each: Vec<String> = given
        .iter()
        .map(|(t, n, who)| format!("{n} {t} let go to the claims of {who}"))
        .collect();
    format!(
        "gives way to workloads of higher priority: {} now that the rest of its plan is ready, before its scale-down delay",
        each.join(", ")
    )
}

/// Per tier, who holds instances of it, with how many.
pub(super) type Holders = BTreeMap<String, Vec<(String, u32)>>;

/// What a plan claims of each tier from the workloads of lower priority that hold it
/// (`holders`): what the plan made as if their holdings were free (`more`) asks beyond
/// the plan acted on (`base`), at most what they hold.
pub(super) fn claims(
    base: &BTreeMap<String, u32>,
    more: &BTreeMap<String, u32>,
    holders: &Holders,
) -> BTreeMap<String, u32> {
    holders
        .iter()
        .filter_map(|(t, who)| {
            let held: u32 = who.iter().map(|h| h.1).sum();
            let more = more.get(t).copied().unwrap_or(0);
            let extra = more
                .saturating_sub(base.get(t).copied().unwrap_or(0))
                .min(held);
            (extra > 0).then(|| (t.clone(), extra))
        })
        .collect()
}

/// A plan's words for its `claims`, with the lower-priority `holders` of each tier and
/// those of them an operator's pause keeps from letting any go (`paused`: name and when
/// the pause ends).
pub(super) fn claim_words(
    claims: &BTreeMap<String, u32>,
    holders: &Holders,
    paused: &[(String, TimestampMs)],
) -> String {
    let each: Vec<String> = claims
        .iter()
        .map(|(t, n)| {
            let who: Vec<String> = holders
                .get(t)
                .into_iter()
                .flatten()
                .map(|(name, k)| format!("{name} {k}"))
                .collect();
            format!("{n} {t} ({})", who.join(", "))
        })
        .collect();
    let mut words = format!(
        "every tier it may use is full: it claims {} from workloads of lower priority, which plan as if it held them and let them go once the rest of their plans is ready (after their scale-down delay at the latest)",
        each.join(", ")
    );
    let claimed_from = |name: &str| {
        claims.keys().any(|t| {
            holders
                .get(t)
                .is_some_and(|who| who.iter().any(|h| h.0 == name))
        })
    };
    for (name, until) in paused.iter().filter(|p| claimed_from(&p.0)) {
        words.push_str(&format!(
            "; {name} is paused by an operator until {}: it lets none go before then",
            format_ts(*until)
        ));
    }
    words
}

impl<P: Provider> Engine<P> {
    /// The workloads in the order a pass plans them: higher `priority` first, then as
    /// configured.
    pub(super) fn pass_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.states.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.states[i].w.priority));
        order
    }

    /// The workloads of higher priority than workload `i` that claim instances of
    /// `tier`, with how many.
    fn claimants(&self, tier: &str, i: usize) -> Vec<(String, u32)> {
        let mine = self.states[i].w.priority;
        self.states
            .iter()
            .filter(|s| s.w.priority > mine)
            .filter_map(|s| Some((s.w.name.clone(), *s.status.claims.get(tier)?)))
            .filter(|c| c.1 > 0)
            .collect()
    }

    /// Who holds instances of `tier` (ready and pending), leaving workload `but` out:
    /// each workload by name, then each no longer managed as `NAME (unmanaged)`; those
    /// holding none left out. With `but`, workloads of higher priority than it count
    /// their claims too (`NAME's claim`).
    fn holders(&self, tier: &str, but: Option<usize>) -> Vec<(String, u32)> {
        let claims = but
            .map(|i| self.claimants(tier, i))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, n)| (format!("{name}'s claim"), n));
        self.states
            .iter()
            .enumerate()
            .filter(|(j, _)| Some(*j) != but)
            .map(|(_, s)| (s.w.name.clone(), s.status.allocation.get(tier).total()))
            .chain(claims)
            .chain(self.unmanaged.iter().map(|(name, u)| {
                (
                    format!("{name} (unmanaged)"),
                    u.instances.get(tier).copied().unwrap_or(0),
                )
            }))
            .filter(|h| h.1 > 0)
            .collect()
    }

    /// `pooled` (the tiers as workload `i`'s plan reads them, [`Engine::pooled_tiers`])
    /// as they would be were what workloads of lower priority hold free, and who those
    /// are per tier; `None` where they hold nothing.
    pub(super) fn claimable_tiers(
        &self,
        i: usize,
        pooled: &[Tier],
    ) -> Option<(Vec<Tier>, Holders)> {
        let mine = self.states[i].w.priority;
        let lower: Holders = pooled
            .iter()
            .filter_map(|t| {
                let who: Vec<(String, u32)> = self
                    .states
                    .iter()
                    .filter(|s| s.w.priority < mine)
                    .map(|s| (s.w.name.clone(), s.status.allocation.get(&t.name).total()))
                    .filter(|h| h.1 > 0)
                    .collect();
                (!who.is_empty()).then(|| (t.name.clone(), who))
            })
            .collect();
        if lower.is_empty() {
            return None;
        }
        let mut out = pooled.to_vec();
        for t in &mut out {
            let free: u32 = lower.get(&t.name).into_iter().flatten().map(|h| h.1).sum();
            t.max_instances += free;
        }
        Some((out, lower))
    }

    /// `tiers` (the catalog as workload `i`'s pass reads it) with each tier's
    /// `max_instances` (and `min_instances`, which cannot pass it) lowered to the room
    /// the other workloads (and the claims of those of higher priority) and unmanaged
    /// capacity leave, and what they hold of each tier so lowered; `None` where nobody
    /// else holds anything.
    pub(super) fn pooled_tiers(
        &self,
        i: usize,
        tiers: &[Tier],
    ) -> Option<(Vec<Tier>, Vec<Shared>)> {
        let mut out = tiers.to_vec();
        let mut shared = Vec::new();
        for t in &mut out {
            let mut held = self.holders(&t.name, Some(i));
            if held.is_empty() {
                continue;
            }
            held.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let s = Shared {
                tier: t.name.clone(),
                max: t.max_instances,
                held,
                claimants: self.claimants(&t.name, i),
            };
            t.max_instances = s.room();
            t.min_instances = t.min_instances.min(t.max_instances);
            shared.push(s);
        }
        (!shared.is_empty()).then_some((out, shared))
    }

    /// The workloads an operator's pause keeps from letting instances go at `now`, with
    /// when each pause ends.
    pub(super) fn paused_workloads(&self, now: TimestampMs) -> Vec<(String, TimestampMs)> {
        self.states
            .iter()
            .filter_map(|s| {
                let p = s.pause.as_ref().filter(|p| p.holds(now))?;
                Some((s.w.name.clone(), p.until))
            })
            .collect()
    }

    /// Reads every workload's holdings again before the next pass plans any: after
    /// standing by while another replica held the lease, what this one last read is
    /// stale (prescale reads its own workload's at each pass, the others' at theirs).
    pub fn forget_holdings(&mut self) {
        self.holdings_read = false;
    }

    /// Every tier as a pool, by tier.
    pub(super) fn pools(&self) -> BTreeMap<String, Pool> {
        self.tiers
            .iter()
            .map(|t| {
                let by: BTreeMap<String, u32> = self.holders(&t.name, None).into_iter().collect();
                let held = by.values().sum();
                let pool = Pool {
                    max_instances: t.max_instances,
                    held,
                    by,
                    full: t.max_instances > 0 && held >= t.max_instances,
                };
                (t.name.clone(), pool)
            })
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use prescale_core::config::Config;
    use prescale_core::{Action, ActionKind, DecisionKind, Sample, SeriesKey};
    use prescale_store::{Durability, Store};

    use crate::engine::Engine;
    use crate::provider::{Provider, SimCloud};

    /// The default configuration with the default workload under each of `names`.
    pub(crate) fn services(names: &[&str]) -> Config {
        let mut c = Config::default();
        let base = c.workloads[0].clone();
        c.workloads = names
            .iter()
            .map(|name| {
                let mut w = base.clone();
                w.name = name.to_string();
                w
            })
            .collect();
        c
    }

    /// The default configuration with two services, `a` and `b`, each demanding
    /// `NAME_cpu` (30 vCPU every minute from 0 to `minutes`, stored in a store in
    /// `dir`), on the naive model with no seasonal floor.
    pub(in crate::engine) fn flat_services(dir: &std::path::Path, minutes: i64) -> (Config, Store) {
        let store = Store::open(dir, Durability::Buffered).unwrap();
        let mut c = services(&["a", "b"]);
        for w in &mut c.workloads {
            w.demand = format!("{}_cpu", w.name);
            (w.model, w.seasonal_floor) = ("naive".into(), false);
        }
        for name in ["a", "b"] {
            let key = SeriesKey::metric(format!("{name}_cpu")).unwrap();
            let samples: Vec<Sample> = (0..minutes)
                .map(|m| Sample::new(m * 60_000, 30.0).unwrap())
                .collect();
            store.append(&key, &samples).unwrap();
        }
        (c, store)
    }

    /// [`flat_services`] for an hour, both allowed all-spot, over a spot pool of 10
    /// instances (40 vCPU): each alone would take 10.
    fn two_services(dir: &std::path::Path) -> (Config, Store) {
        let (mut c, store) = flat_services(dir, 60);
        c.tiers[0].max_instances = 10;
        for w in &mut c.workloads {
            w.max_spot_share = 1.0;
        }
        (c, store)
    }

    /// An engine over `c` and `store` on `sim`, training inline.
    fn engine(c: &Config, store: &Store, sim: SimCloud) -> Engine<SimCloud> {
        let mut e = Engine::from_config(c, 0, store.clone(), sim);
        e.set_inline_training();
        e
    }

    /// What another prescale (or one before a restart) did: `kind` 10 instances of
    /// `tier` for `workload`.
    fn done_before(kind: ActionKind, workload: &str, tier: &str) -> Action {
        Action {
            key: format!("before: {kind:?} {workload} {tier}"),
            workload: workload.into(),
            tier: tier.into(),
            kind,
            count: 10,
            at: 0,
        }
    }

    /// Workload `name`'s plan's reason at the last pass.
    fn plan_reason(e: &Engine<SimCloud>, name: &str) -> String {
        let st = e.status_handle();
        let st = st.read().unwrap();
        st.workloads[name].plan.as_ref().unwrap().reason.clone()
    }

    /// The decisions of workload `name` that were errors.
    fn errors(store: &Store, name: &str) -> Vec<String> {
        store
            .decisions(Some(name), 1_000)
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == DecisionKind::Error)
            .map(|d| d.reason)
            .collect()
    }

    #[test]
    fn at_the_first_pass_what_later_workloads_hold_is_known_too() {
        // b holds the whole spot pool when prescale starts (a restart); a is planned
        // first and wants all of it.
        let dir = tempfile::tempdir().unwrap();
        let (c, store) = two_services(dir.path());
        let mut sim = SimCloud::new(&c.tiers, 1);
        sim.apply(&done_before(ActionKind::Provision, "b", "spot"), 0)
            .unwrap();
        let mut e = engine(&c, &store, sim);
        e.tick(30 * 60_000 + 1).unwrap();
        assert_eq!(errors(&store, "a"), Vec::<String>::new());
        let reason = plan_reason(&e, "a");
        assert!(
            reason.contains("the others hold 10 (b 10): room for 0 here"),
            "{reason}"
        );
    }

    /// [`two_services`] with a planned onto the whole spot pool at minute 30, and its
    /// instances moved to b at minute 31 by another replica (read again at the next
    /// pass, as after standing by).
    fn moved_to_b(dir: &std::path::Path) -> (Engine<SimCloud>, Store) {
        let (c, store) = two_services(dir);
        let mut e = engine(&c, &store, SimCloud::new(&c.tiers, 1));
        e.tick(30 * 60_000 + 1).unwrap();
        assert_eq!(e.states[0].status.allocation.get("spot").total(), 10);
        for (kind, workload) in [(ActionKind::Deprovision, "a"), (ActionKind::Provision, "b")] {
            let moved = done_before(kind, workload, "spot");
            e.provider.apply(&moved, 31 * 60_000).unwrap();
        }
        e.forget_holdings();
        (e, store)
    }

    #[test]
    fn a_replica_taking_the_lease_over_reads_every_holding_first() {
        // This replica planned a onto the whole spot pool, then stood by while another
        // moved it to b; taking the lease back, a is planned first again.
        let dir = tempfile::tempdir().unwrap();
        let (mut e, store) = moved_to_b(dir.path());
        e.tick(40 * 60_000 + 1).unwrap();
        assert_eq!(errors(&store, "a"), Vec::<String>::new());
        assert_eq!(e.states[1].status.allocation.get("spot").total(), 10);
    }

    #[test]
    fn the_scale_down_delay_asks_no_pool_for_what_others_took_meanwhile() {
        // a's plan took the whole spot pool; within its scale-down delay it lost the
        // instances (another replica moved them to b, as a timed-out request and b's
        // pass would too). Its delay remembers 10 spot, but the pool has no room: it is
        // not asked for (it was refused at every pass of the delay).
        let dir = tempfile::tempdir().unwrap();
        let (mut e, store) = moved_to_b(dir.path());
        e.tick(31 * 60_000 + 1).unwrap();
        let reason = plan_reason(&e, "a");
        assert!(
            reason.contains("the scale-down delay keeps what it holds but asks no more of a pool the others hold: 10 spot (holding 0, room for 0) not asked for"),
            "{reason}"
        );
        for m in [32, 33] {
            e.tick(m * 60_000 + 1).unwrap();
        }
        assert_eq!(errors(&store, "a"), Vec::<String>::new());
        assert_eq!(e.states[0].status.desired.get("spot"), Some(&0));
        assert_eq!(e.states[1].status.allocation.get("spot").total(), 10);
    }

    /// A batch job (priority 0) holding the whole high-performance pool of 10 and the
    /// standard one of 4, and a critical service (high-performance only, `priority`)
    /// idle until minute 60, then at 20 vCPU: the engine, and the minutes to tick.
    fn critical_and_batch(
        dir: &std::path::Path,
        priority: i32,
        min_instances: u32,
    ) -> (Engine<SimCloud>, Store) {
        let store = Store::open(dir, Durability::Buffered).unwrap();
        let mut c = Config::default();
        (c.tiers[0].max_instances, c.tiers[1].max_instances) = (0, 4);
        c.tiers[2].max_instances = 10;
        let base = c.workloads[0].clone();
        let workload = |name: &str| {
            let mut w = base.clone();
            w.name = name.into();
            w.demand = format!("{name}_cpu");
            (w.model, w.seasonal_floor, w.min_instances) = ("naive".into(), false, 0);
            w
        };
        // It keeps capacity half an hour after its plan lets it go (a stateful
        // workload's default).
        let mut batch = workload("batch");
        batch.tiers = vec!["standard".into(), "high-performance".into()];
        batch.scale_down_delay_s = 1800;
        let mut critical = workload("critical");
        critical.latency_class = prescale_core::model::LatencyClass::Critical;
        (critical.priority, critical.min_instances) = (priority, min_instances);
        c.workloads = vec![batch, critical];
        for name in ["batch", "critical"] {
            let key = SeriesKey::metric(format!("{name}_cpu")).unwrap();
            let at = |m: i64| match name {
                "batch" => 60.0,
                _ if m < 60 => 0.0,
                _ => 20.0,
            };
            let samples: Vec<Sample> = (0..100)
                .map(|m| Sample::new(m * 60_000, at(m)).unwrap())
                .collect();
            store.append(&key, &samples).unwrap();
        }
        (engine(&c, &store, SimCloud::new(&c.tiers, 1)), store)
    }

    #[test]
    fn a_workload_of_higher_priority_takes_a_full_pool_from_lower_ones_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let (mut e, store) = critical_and_batch(dir.path(), 10, 0);
        let (mut claimed, mut served) = (None, None);
        for m in 30..95 {
            e.tick(m * 60_000 + 1).unwrap();
            let st = e.status_handle();
            let st = st.read().unwrap();
            // Never more than the pool holds, and nothing refused.
            assert!(
                st.pools["high-performance"].held <= 10,
                "{m}: {:?}",
                st.pools
            );
            // Spot, turned off here (a maximum of 0), holds nothing and is not full.
            assert!(!st.pools["spot"].full && st.pools["spot"].held == 0);
            let (c, b) = (&st.workloads["critical"], &st.workloads["batch"]);
            let reason = &c.plan.as_ref().unwrap().reason;
            if c.allocation.get("high-performance").ready >= 4 {
                served.get_or_insert(m);
            }
            if m < 60 {
                assert_eq!(b.allocation.get("high-performance").total(), 10, "{m}");
            } else if claimed.is_none() && reason.contains("it claims") {
                assert!(
                    reason.contains("every tier it may use is full: it claims 4 high-performance (batch 10) from workloads of lower priority"),
                    "{reason}"
                );
                claimed = Some(m);
                // The claim is in the service's status (the API's workload list).
                assert_eq!(c.claims, [("high-performance".to_string(), 4)].into());
                // Batch, planned after the service, reads its claim and, the rest of its
                // plan being ready (its standard pool is full), lets four go at once
                // rather than after its half hour.
                let why = &b.plan.as_ref().unwrap().reason;
                assert!(
                    why.contains("the others hold 4 (critical's claim 4): room for 6 here")
                        && why.contains("gives way to workloads of higher priority: 4 high-performance let go to the claims of critical 4"),
                    "{why}"
                );
                assert_eq!(b.allocation.get("high-performance").total(), 6);
            }
        }
        assert_eq!(
            claimed,
            Some(60),
            "at the pass that sees the rise in its step"
        );
        for name in ["critical", "batch"] {
            assert_eq!(errors(&store, name), Vec::<String>::new(), "{name}");
        }
        // The service has them ready within a high-performance lead time or two, not
        // after batch's half-hour scale-down delay.
        assert!(served.is_some_and(|m| m <= 70), "{served:?}");
        // And keeps them.
        let st = e.status_handle();
        let st = st.read().unwrap();
        let (c, b) = (&st.workloads["critical"], &st.workloads["batch"]);
        let taken = c.allocation.get("high-performance").ready;
        assert!(taken >= 4 && c.ready_capacity >= 20.0, "{c:?}");
        assert_eq!(b.allocation.get("high-performance").total(), 10 - taken);
        let reason = &c.plan.as_ref().unwrap().reason;
        assert!(!reason.contains("it claims"), "{reason}");
        // Standard, which the service may not use, is not said to be shared with it.
        assert!(!reason.contains("standard's max_instances"), "{reason}");
        drop(st);
        // Of equal priority, the service gets none of the pool.
        let dir = tempfile::tempdir().unwrap();
        let (mut e, _) = critical_and_batch(dir.path(), 0, 0);
        for m in 30..95 {
            e.tick(m * 60_000 + 1).unwrap();
        }
        let st = e.status_handle();
        let c = st.read().unwrap().workloads["critical"].clone();
        assert_eq!(c.allocation.get("high-performance").total(), 0, "{c:?}");
        assert!(!c.plan.unwrap().reason.contains("it claims"));
    }

    #[test]
    fn claimed_instances_go_once_the_rest_of_the_plan_is_ready() {
        use prescale_core::model::TierCount;
        use prescale_core::Allocation;
        use std::collections::BTreeMap;
        // A workload holds 10 high-performance, of which a service of higher priority
        // claims 4; its plan moved 3 standard's worth onto standard.
        let shared = [super::Shared {
            tier: "high-performance".into(),
            max: 10,
            held: vec![("critical's claim".into(), 4)],
            claimants: vec![("critical".into(), 4)],
        }];
        let target: BTreeMap<String, u32> =
            [("high-performance".into(), 6), ("standard".into(), 3)].into();
        let held = |standard: TierCount| Allocation {
            tiers: [
                (
                    "high-performance".to_string(),
                    TierCount {
                        ready: 10,
                        ..Default::default()
                    },
                ),
                ("standard".to_string(), standard),
            ]
            .into(),
        };
        // The scale-down delay keeps all ten.
        let kept: BTreeMap<String, u32> =
            [("high-performance".into(), 10), ("standard".into(), 3)].into();
        // While standard's three are coming up, the ten are kept (make before break).
        let pending = TierCount {
            ready: 1,
            pending: 2,
            ..Default::default()
        };
        let mut desired = kept.clone();
        assert!(super::give_way(&shared, &target, &held(pending), &mut desired).is_empty());
        assert_eq!(desired, kept);
        // Once they serve, four go to the claim, whatever the delay would keep.
        let ready = TierCount {
            ready: 3,
            ..Default::default()
        };
        let given = super::give_way(&shared, &target, &held(ready), &mut desired);
        assert_eq!(given, [("high-performance".into(), 4, "critical 4".into())]);
        assert_eq!(desired["high-performance"], 6);
        assert_eq!(
            super::gave_way_words(&given),
            "gives way to workloads of higher priority: 4 high-performance let go to the claims of critical 4 now that the rest of its plan is ready, before its scale-down delay"
        );
        // Unclaimed, a tier the delay keeps stays kept.
        let mut unclaimed = shared.clone();
        unclaimed[0].claimants.clear();
        let mut desired = kept.clone();
        assert!(super::give_way(&unclaimed, &target, &held(ready), &mut desired).is_empty());
        assert_eq!(desired, kept);
    }

    #[test]
    fn a_claim_on_a_paused_workload_says_the_pause_keeps_its_instances() {
        // Batch is paused (scale-down) from minute 50 to 80 when the service claims at
        // minute 60: it lets none go until the pause ends, and the claim says so.
        let dir = tempfile::tempdir().unwrap();
        let (mut e, store) = critical_and_batch(dir.path(), 10, 0);
        let until = 80 * 60_000;
        for m in 30..95 {
            if m == 50 {
                let scope = prescale_core::PauseScope::ScaleDown;
                e.pause("batch", scope, until, "INC-1", m * 60_000).unwrap();
            }
            e.tick(m * 60_000 + 1).unwrap();
            let st = e.status_handle();
            let st = st.read().unwrap();
            let (c, b) = (&st.workloads["critical"], &st.workloads["batch"]);
            let reason = &c.plan.as_ref().unwrap().reason;
            if m == 60 {
                assert!(
                    reason.contains("it claims 4 high-performance (batch 10)")
                        && reason.contains("; batch is paused by an operator until 1970-01-01T01:20:00Z: it lets none go before then"),
                    "{reason}"
                );
            }
            if (60..80).contains(&m) {
                // The pause keeps all ten.
                assert_eq!(b.allocation.get("high-performance").total(), 10, "{m}");
            }
            if m == 90 {
                // Let go once it ended, and the service has them.
                assert!(c.allocation.get("high-performance").ready >= 4, "{c:?}");
                assert!(!reason.contains("paused by an operator"), "{reason}");
            }
        }
        for name in ["critical", "batch"] {
            assert_eq!(errors(&store, name), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn a_minimum_a_full_pool_cannot_hold_is_claimed_too() {
        // Idle, the service keeps two instances (min_instances) of a pool batch holds
        // when prescale starts.
        let dir = tempfile::tempdir().unwrap();
        let (mut e, store) = critical_and_batch(dir.path(), 10, 2);
        let held = done_before(ActionKind::Provision, "batch", "high-performance");
        e.provider.apply(&held, 0).unwrap();
        e.tick(30 * 60_000 + 1).unwrap();
        let reason = plan_reason(&e, "critical");
        assert!(
            reason.contains("2 instance(s) short of the workload's min_instances = 2: its tiers are at their max_instances")
                && reason.contains("it claims 2 high-performance (batch 10)"),
            "{reason}"
        );
        for m in 31..50 {
            e.tick(m * 60_000 + 1).unwrap();
        }
        let c = e.status_handle().read().unwrap().workloads["critical"].clone();
        assert_eq!(c.allocation.get("high-performance").ready, 2, "{c:?}");
        assert_eq!(errors(&store, "critical"), Vec::<String>::new());
    }

    #[test]
    fn workloads_sharing_a_tier_plan_within_what_the_others_leave() {
        let dir = tempfile::tempdir().unwrap();
        let (c, store) = two_services(dir.path());
        let mut e = engine(&c, &store, SimCloud::new(&c.tiers, 1));
        for m in 30..60 {
            e.tick(m * 60_000 + 1).unwrap();
        }
        let st = e.status_handle();
        let st = st.read().unwrap();
        let (a, b) = (&st.workloads["a"], &st.workloads["b"]);
        // Nothing refused: the pool was never asked for more than it holds.
        for name in ["a", "b"] {
            assert_eq!(errors(&store, name), Vec::<String>::new(), "{name}");
        }
        let spot = |w: &crate::engine::WorkloadStatus| w.allocation.get("spot").total();
        assert!(spot(a) + spot(b) <= 10, "{} + {}", spot(a), spot(b));
        // The status has each tier as a pool: the spot one full, held by the first.
        let pool = &st.pools["spot"];
        assert_eq!(
            (pool.max_instances, pool.held, pool.full),
            (10, 10, true),
            "{pool:?}"
        );
        assert_eq!(pool.by, [("a".to_string(), 10)].into());
        let standard = &st.pools["standard"];
        assert_eq!(standard.held, b.allocation.get("standard").total());
        assert!(!standard.full && standard.max_instances == 50);
        // Both are served: the one that found the pool taken filled the rest on standard.
        for w in [a, b] {
            assert!(w.ready_capacity >= 30.0, "{w:?}");
        }
        let reason = &b.plan.as_ref().unwrap().reason;
        assert!(
            reason.contains("spot's max_instances = 10 is shared by every workload and the others hold 10 (a 10): room for 0 here"),
            "{reason}"
        );
        assert!(
            b.allocation.get("standard").total() >= 8,
            "{:?}",
            b.allocation
        );
        let b_standard = b.allocation.get("standard").total();
        drop(st);
        // Capacity no longer managed takes its room too, and is named as such.
        e.unmanaged.insert(
            "old".into(),
            crate::engine::Unmanaged {
                since: 0,
                why: "removed".into(),
                instances: [("standard".to_string(), 3)].into(),
                cost_per_hour: 0.576,
                unpriced: Vec::new(),
            },
        );
        let (tiers, shared) = e.pooled_tiers(0, &c.tiers).unwrap();
        assert_eq!(tiers[1].max_instances, 50 - b_standard - 3);
        let standard = shared.iter().find(|s| s.tier == "standard").unwrap();
        assert_eq!(
            standard.held,
            [
                ("b".to_string(), b_standard),
                ("old (unmanaged)".to_string(), 3)
            ]
        );
        assert_eq!(e.pools()["standard"].held, b_standard + 3);
        // Nobody else holds any high-performance: a's plan reads that tier as it is.
        assert_eq!(tiers[2], c.tiers[2]);
    }
}
