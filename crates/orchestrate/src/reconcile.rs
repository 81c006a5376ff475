//! Desired capacity vs actual capacity -> actions, in the style of a Kubernetes
//! controller: a pure function of its inputs, idempotent (each action carries a key built
//! from the workload, tier, direction and decision time), and safe to rerun after a
//! restart because it reads the provider's truth every time.

use std::collections::{BTreeMap, VecDeque};

use prescale_core::{Action, ActionKind, Allocation, Tier, TimestampMs};

/// Scale-down stabilisation, as in Kubernetes HPA: the capacity kept for each tier is the
/// highest target seen during the last `window_ms`, so capacity is removed only after
/// the plan has stayed lower for the whole window, while increases apply at once.
#[derive(Debug, Clone, Default)]
pub struct Stabilizer {
    window_ms: i64,
    history: VecDeque<(TimestampMs, BTreeMap<String, u32>)>,
}

impl Stabilizer {
    /// A stabiliser with the given window.
    pub fn new(window_ms: i64) -> Self {
        Self {
            window_ms,
            history: VecDeque::new(),
        }
    }

    /// Changes the window, keeping what was recorded (a configuration reload).
    pub fn set_window(&mut self, window_ms: i64) {
        self.window_ms = window_ms;
    }

    /// Lowers what the window recorded for `tier` to at most `n`: instances given up
    /// before the window ran out (to a claim of a workload of higher priority) are not
    /// wanted back by the targets recorded before.
    pub fn cap(&mut self, tier: &str, n: u32) {
        for (_, past) in &mut self.history {
            if let Some(k) = past.get_mut(tier) {
                *k = (*k).min(n);
            }
        }
    }

    /// Records `target` at `now` and returns the stabilised desired counts.
    pub fn desired(
        &mut self,
        now: TimestampMs,
        target: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, u32> {
        self.history.push_back((now, target.clone()));
        while let Some((t, _)) = self.history.front() {
            if *t < now - self.window_ms {
                self.history.pop_front();
            } else {
                break;
            }
        }
        let mut out: BTreeMap<String, u32> = target.clone();
        for (_, past) in &self.history {
            for (tier, n) in past {
                let e = out.entry(tier.clone()).or_insert(0);
                *e = (*e).max(*n);
            }
        }
        out
    }
}

/// How fast a workload may shrink: its ready capacity may fall at most `share` below the
/// most it held over the last `period_ms` (as HPA's `behavior.scaleDown` policy of type
/// `Percent`), and always by one instance of a shrinking tier per period, so a small
/// fleet still shrinks (HPA's rounding can hold three replicas at 10% forever).
///
/// It works on ready capacity: pending instances serve nothing yet, and a surge's
/// extras or a plan that fell before they came are released at once, as before.
#[derive(Debug, Clone, Default)]
pub struct ShrinkLimit {
    share: f64,
    period_ms: i64,
    /// Ready capacity at each pass of the last period.
    held: VecDeque<(TimestampMs, f64)>,
}

/// A scale-down the [`ShrinkLimit`] slowed.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    /// Ready capacity the stabilised plan would have kept.
    pub planned: f64,
    /// Ready capacity kept.
    pub kept: f64,
    /// The most held in the period.
    pub peak: f64,
    /// Tiers given back instances, by index.
    pub raised: Vec<usize>,
}

impl ShrinkLimit {
    /// A limit of `share` per `period_ms` (a share of 1 or more: none).
    pub fn new(share: f64, period_ms: i64) -> Self {
        Self {
            share,
            period_ms,
            held: VecDeque::new(),
        }
    }

    /// Changes the limit, keeping what was recorded (a configuration reload).
    pub fn set(&mut self, share: f64, period_ms: i64) {
        (self.share, self.period_ms) = (share, period_ms);
    }

    /// Records the ready capacity at `now` (`ready[k]` instances of `tiers[k]`) and
    /// raises `want[k]` where keeping only `want` would take it below what the limit
    /// allows: tiers keep instances in order of their price per effective unit,
    /// cheapest first (the dearest go first, as under a budget). Says so when it binds.
    pub fn apply(
        &mut self,
        now: TimestampMs,
        tiers: &[Tier],
        ready: &[u32],
        want: &mut [u32],
    ) -> Option<Limited> {
        if self.share >= 1.0 {
            self.held.clear();
            return None;
        }
        let eff: Vec<f64> = tiers.iter().map(Tier::effective_capacity).collect();
        let cap = |n: &dyn Fn(usize) -> u32| -> f64 {
            (0..ready.len()).map(|k| n(k) as f64 * eff[k]).sum()
        };
        self.held.push_back((now, cap(&|k| ready[k])));
        while self
            .held
            .front()
            .is_some_and(|(t, _)| *t <= now - self.period_ms)
        {
            self.held.pop_front();
        }
        let peak = self.held.iter().map(|h| h.1).fold(0.0, f64::max);
        let shrinking: Vec<usize> = (0..ready.len()).filter(|&k| want[k] < ready[k]).collect();
        let one = shrinking.iter().map(|&k| eff[k]).fold(0.0, f64::max);
        let floor = ((1.0 - self.share) * peak).min(peak - one);
        let planned = cap(&|k| want[k].min(ready[k]));
        if shrinking.is_empty() || planned >= floor - 1e-9 {
            return None;
        }
        let mut order = shrinking;
        let unit = |k: usize| tiers[k].unit_price();
        order.sort_by(|&a, &b| unit(a).total_cmp(&unit(b)).then(a.cmp(&b)));
        let mut kept = planned;
        let mut raised = Vec::new();
        for k in order {
            while want[k] < ready[k] && kept < floor - 1e-9 {
                want[k] += 1;
                kept += eff[k];
                if raised.last() != Some(&k) {
                    raised.push(k);
                }
            }
        }
        raised.sort_unstable();
        Some(Limited {
            planned,
            kept,
            peak,
            raised,
        })
    }
}

/// Instances of one tier [`within_budget`] lets go.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    /// The hourly cost of what the scale-down delay and the shrink limit kept.
    pub kept_per_hour: f64,
    /// The hourly cost after letting go.
    pub now_per_hour: f64,
    /// Per tier (by index), how many go.
    pub gone: Vec<(usize, u32)>,
}

/// A budget beats the scale-down delay and the shrink limit, as a lowered `maxReplicas`
/// beats HPA's stabilisation: where what they keep (`desired[k]` instances of
/// `tiers[k]`) costs more an hour than `budget`, the instances kept beyond the plan
/// (`planned`) go, the dearest per effective unit first, until it fits, never below the
/// plan (a plan that itself costs more, its minimums, is the planner's to explain).
/// Ready capacity moving to another tier still stays until its replacement serves:
/// the reconciler keeps it while any instance is pending.
pub fn within_budget(
    tiers: &[Tier],
    planned: &[u32],
    desired: &mut [u32],
    budget: f64,
) -> Option<OverBudget> {
    let cost = |n: &[u32]| -> f64 {
        n.iter()
            .zip(tiers)
            .map(|(n, t)| *n as f64 * t.price_per_hour)
            .sum()
    };
    let kept_per_hour = cost(desired);
    if kept_per_hour <= budget + 1e-9 {
        return None;
    }
    let mut order: Vec<usize> = (0..tiers.len())
        .filter(|&k| desired[k] > planned[k] && tiers[k].price_per_hour > 0.0)
        .collect();
    order.sort_by(|&a, &b| {
        tiers[b]
            .unit_price()
            .total_cmp(&tiers[a].unit_price())
            .then(a.cmp(&b))
    });
    let mut gone = Vec::new();
    for k in order {
        let over = cost(desired) - budget;
        if over <= 1e-9 {
            break;
        }
        let extra = desired[k] - planned[k];
        let n = extra.min((over / tiers[k].price_per_hour - 1e-9).ceil() as u32);
        if n > 0 {
            desired[k] -= n;
            gone.push((k, n));
        }
    }
    gone.sort_unstable();
    (!gone.is_empty()).then(|| OverBudget {
        kept_per_hour,
        now_per_hour: cost(desired),
        gone,
    })
}

impl OverBudget {
    /// What a plan says of it: `budget` is the cap in force and `what` names it.
    pub fn words(&self, tiers: &[Tier], budget: f64, what: &str) -> String {
        let gone: Vec<String> = self
            .gone
            .iter()
            .map(|(k, n)| format!("{n} {}", tiers[*k].name))
            .collect();
        format!(
            "{what} (${budget:.2}/h) beats the scale-down delay: {} kept beyond the plan let go (${:.2}/h held down to ${:.2}/h)",
            gone.join(", "),
            self.kept_per_hour,
            self.now_per_hour
        )
    }
}

/// The reconciler's verdict for one workload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// Actions to send, provisions first.
    pub actions: Vec<Action>,
    /// Deliberate non-actions, with reasons.
    pub holds: Vec<String>,
    /// Per tier, how many of its deprovisioned instances are pending ones released
    /// before they serve.
    pub released_pending: BTreeMap<String, u32>,
}

/// Compares desired (stabilised) and planned counts with what the workload holds.
///
/// Scale-up is immediate. Pending instances beyond the desired count are released at
/// once (they serve nothing yet, and cost from their request: a surge's extras, or a
/// plan that fell for the whole stabilisation window before they came). Ready ones are
/// removed only when the stabilised count allows it and no instance of the workload is
/// still pending (removing capacity while replacements are not serving yet would open a
/// gap).
pub fn reconcile(
    workload: &str,
    planned: &BTreeMap<String, u32>,
    desired: &BTreeMap<String, u32>,
    actual: &Allocation,
    now: TimestampMs,
) -> Reconciled {
    let mut out = Reconciled::default();
    let mut tiers: Vec<&String> = desired.keys().chain(actual.tiers.keys()).collect();
    tiers.sort();
    tiers.dedup();
    let want = |tier: &str| desired.get(tier).copied().unwrap_or(0);
    // Surplus pending instances, released first; what stays pending after that.
    let release = |tier: &String| {
        let c = actual.get(tier);
        c.pending.min(c.total().saturating_sub(want(tier)))
    };
    let pending: u32 = tiers
        .iter()
        .map(|t| actual.get(t).pending - release(t))
        .sum();
    let mut downs = Vec::new();
    for tier in tiers {
        let want = want(tier);
        let plan = planned.get(tier).copied().unwrap_or(0);
        let have = actual.get(tier).total();
        let action = |kind, count| Action {
            key: format!(
                "{workload}:{tier}:{}:{now}",
                match kind {
                    ActionKind::Provision => "up",
                    ActionKind::Deprovision => "down",
                }
            ),
            workload: workload.to_string(),
            tier: tier.clone(),
            kind,
            count,
            at: now,
        };
        if want > have {
            out.actions.push(action(ActionKind::Provision, want - have));
        } else if want < have {
            let surplus_pending = release(tier);
            let surplus_ready = have - want - surplus_pending;
            if surplus_pending > 0 {
                out.released_pending.insert(tier.clone(), surplus_pending);
            }
            if surplus_ready > 0 && pending > 0 {
                out.holds.push(format!(
                    "{tier}: keeping {} ready (plan wants {want}) until {pending} pending instance(s) are ready",
                    have - surplus_pending
                ));
                if surplus_pending > 0 {
                    downs.push(action(ActionKind::Deprovision, surplus_pending));
                }
            } else {
                downs.push(action(ActionKind::Deprovision, have - want));
            }
        } else if plan < have {
            out.holds.push(format!(
                "{tier}: keeping {have} (plan wants {plan}) for the scale-down stabilisation window"
            ));
        }
    }
    out.actions.extend(downs);
    out
}

/// A surge: while ready capacity is short of the demand now, each tier asks for
/// `extra` more instances per desired instance not ready yet, beyond its desired count
/// (at most the tier's `max_instances` in `catalog`, and within `budget_per_hour` at
/// the tiers' prices: the dearest extras are left out first). Lead times vary, so the needed count is ready
/// when the fastest of the larger request are, about the median lead time for twice as
/// many, instead of when the slowest of exactly the needed count is. Once capacity
/// covers demand again, the desired count is back to the plan's and [`reconcile`]
/// releases the extras still pending.
pub fn surged(
    desired: &BTreeMap<String, u32>,
    actual: &Allocation,
    extra: f64,
    catalog: &[Tier],
    budget_per_hour: Option<f64>,
) -> BTreeMap<String, u32> {
    let tier = |name: &str| catalog.iter().find(|t| t.name == name);
    let max = |name: &str| tier(name).map_or(0, |t| t.max_instances);
    let price = |name: &str| tier(name).map_or(0.0, |t| t.price_per_hour);
    let mut out: BTreeMap<String, u32> = desired
        .iter()
        .map(|(tier, &n)| {
            let missing = n.saturating_sub(actual.get(tier).ready);
            let more = (missing as f64 * extra.max(0.0)).ceil() as u32;
            (tier.clone(), n.max((n + more).min(max(tier))))
        })
        .collect();
    if let Some(b) = budget_per_hour {
        let mut dearest: Vec<String> = out.keys().cloned().collect();
        dearest.sort_by(|a, b| price(b).total_cmp(&price(a)));
        for tier in dearest {
            let over = out.iter().map(|(t, n)| *n as f64 * price(t)).sum::<f64>() - b;
            let p = price(&tier);
            if over <= 1e-9 {
                break;
            }
            if p > 0.0 {
                let n = out[&tier].saturating_sub((over / p).ceil() as u32);
                out.insert(tier.clone(), n.max(desired[&tier]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::model::TierCount;

    fn priced(name: &str, price: f64, factor: f64) -> Tier {
        Tier {
            name: name.into(),
            price_per_hour: price,
            performance_factor: factor,
            ..prescale_core::config::Config::default().tiers[0].clone()
        }
    }

    #[test]
    fn a_budget_lets_go_what_the_delay_keeps_beyond_the_plan_dearest_first() {
        let tiers = [
            priced("spot", 0.058, 1.0),
            priced("standard", 0.192, 1.0),
            priced("fast", 0.34, 2.0),
        ];
        // The plan moved to spot; the delay keeps 7 standard and 2 fast besides.
        let planned = [23, 24, 0];
        let mut desired = [23, 31, 2];
        let over = within_budget(&tiers, &planned, &mut desired, 6.3).unwrap();
        // Standard costs more per effective unit than fast ($0.192 against $0.17 an
        // instance of standard's work): its seven go first, then one fast of two.
        assert_eq!(over.gone, vec![(1, 7), (2, 1)]);
        assert_eq!(desired, [23, 24, 1]);
        assert!((over.kept_per_hour - 7.966).abs() < 1e-9, "{over:?}");
        assert!(over.now_per_hour <= 6.3 + 1e-9, "{over:?}");
        assert!(
            over.now_per_hour > 6.3 - 0.34,
            "no more goes than the budget needs"
        );
        let words = over.words(&tiers, 6.3, "the budget");
        assert!(
            words.contains(
                "7 standard, 1 fast kept beyond the plan let go ($7.97/h held down to $6.28/h)"
            ),
            "{words}"
        );
        // Within the budget: nothing goes.
        let mut desired = [23, 25, 0];
        assert_eq!(within_budget(&tiers, &planned, &mut desired, 6.3), None);
        assert_eq!(desired, [23, 25, 0]);
        // Never below the plan, even when the plan costs more than the budget.
        let mut desired = [23, 30, 0];
        let over = within_budget(&tiers, &planned, &mut desired, 1.0).unwrap();
        assert_eq!(desired, planned);
        assert_eq!(over.gone, vec![(1, 6)]);
    }

    fn m(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn alloc(pairs: &[(&str, u32, u32)]) -> Allocation {
        Allocation {
            tiers: pairs
                .iter()
                .map(|(k, r, p)| {
                    (
                        k.to_string(),
                        TierCount {
                            ready: *r,
                            pending: *p,
                            ending: 0,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn provisions_the_difference_with_stable_keys() {
        let r = reconcile(
            "w",
            &m(&[("a", 3)]),
            &m(&[("a", 3)]),
            &alloc(&[("a", 1, 0)]),
            42,
        );
        assert_eq!(r.actions.len(), 1);
        assert_eq!(r.actions[0].count, 2);
        assert_eq!(r.actions[0].kind, ActionKind::Provision);
        assert_eq!(r.actions[0].key, "w:a:up:42");
        let again = reconcile(
            "w",
            &m(&[("a", 3)]),
            &m(&[("a", 3)]),
            &alloc(&[("a", 1, 0)]),
            42,
        );
        assert_eq!(again, r, "same inputs, same actions, same keys");
    }

    #[test]
    fn deprovisions_tiers_no_longer_wanted_but_not_while_pending() {
        let r = reconcile("w", &m(&[]), &m(&[]), &alloc(&[("a", 2, 0)]), 0);
        assert_eq!(r.actions[0].kind, ActionKind::Deprovision);
        assert_eq!(r.actions[0].count, 2);
        let r = reconcile(
            "w",
            &m(&[("b", 1)]),
            &m(&[("b", 1)]),
            &alloc(&[("a", 2, 0), ("b", 0, 1)]),
            0,
        );
        assert!(r.actions.is_empty());
        assert!(r.holds[0].contains("pending"), "{:?}", r.holds);
    }

    #[test]
    fn surplus_pending_instances_go_at_once_ready_ones_wait_for_the_pending() {
        // a: 2 ready + 3 pending, 2 wanted; b: 4 ready + 1 pending, 2 wanted. Every
        // pending instance is surplus and goes; then nothing is pending, so b's ready
        // surplus goes too.
        let r = reconcile(
            "w",
            &m(&[("a", 2), ("b", 2)]),
            &m(&[("a", 2), ("b", 2)]),
            &alloc(&[("a", 2, 3), ("b", 4, 1)]),
            0,
        );
        let downs: Vec<(&str, u32)> = r
            .actions
            .iter()
            .map(|a| {
                assert_eq!(a.kind, ActionKind::Deprovision);
                (a.tier.as_str(), a.count)
            })
            .collect();
        assert_eq!(downs, vec![("a", 3), ("b", 3)]);
        assert_eq!(r.released_pending, m(&[("a", 3), ("b", 1)]));
        assert!(r.holds.is_empty(), "{:?}", r.holds);
        // With a's third instance still pending (wanted), b's pending one goes at once
        // but its ready surplus waits for a's.
        let r = reconcile(
            "w",
            &m(&[("a", 3), ("b", 2)]),
            &m(&[("a", 3), ("b", 2)]),
            &alloc(&[("a", 2, 1), ("b", 4, 1)]),
            0,
        );
        assert_eq!(r.actions.len(), 1);
        assert_eq!((r.actions[0].tier.as_str(), r.actions[0].count), ("b", 1));
        assert!(
            r.holds[0].contains("b: keeping 4 ready (plan wants 2) until 1 pending"),
            "{:?}",
            r.holds
        );
    }

    #[test]
    fn a_surge_asks_extra_for_each_needed_instance_not_ready() {
        // a: at most 100 at $0.5/h; b: 12 at $0.5/h; c: 12 at $1/h.
        let base = prescale_core::config::Config::default().tiers[0].clone();
        let tiers: Vec<Tier> = [("a", 100, 0.5), ("b", 12, 0.5), ("c", 12, 1.0)]
            .into_iter()
            .map(|(name, max, price)| Tier {
                name: name.into(),
                max_instances: max,
                price_per_hour: price,
                ..base.clone()
            })
            .collect();
        let have = alloc(&[("a", 2, 3), ("b", 10, 0), ("c", 0, 0)]);
        let want = m(&[("a", 10), ("b", 8), ("c", 7)]);
        // a: 8 not ready -> 8 more; b: all ready -> none; c: 7 more, capped at 12.
        assert_eq!(
            surged(&want, &have, 1.0, &tiers, None),
            m(&[("a", 18), ("b", 8), ("c", 12)])
        );
        assert_eq!(
            surged(&want, &have, 0.5, &tiers, None),
            m(&[("a", 14), ("b", 8), ("c", 11)])
        );
        assert_eq!(surged(&want, &have, 0.0, &tiers, None), want);
        // Within $18.2/h (the plan costs $16, the full surge $25): c's five extras go
        // first (the dearest), then four of a's.
        assert_eq!(
            surged(&want, &have, 1.0, &tiers, Some(18.2)),
            m(&[("a", 14), ("b", 8), ("c", 7)])
        );
        // A budget the plan itself exceeds leaves the plan as it is.
        assert_eq!(surged(&want, &have, 1.0, &tiers, Some(1.0)), want);
    }

    #[test]
    fn stabiliser_delays_scale_down_only() {
        let mut s = Stabilizer::new(300_000);
        assert_eq!(s.desired(0, &m(&[("a", 5)])), m(&[("a", 5)]));
        assert_eq!(s.desired(60_000, &m(&[("a", 2)])), m(&[("a", 5)]));
        assert_eq!(s.desired(120_000, &m(&[("a", 8)])), m(&[("a", 8)]));
        assert_eq!(s.desired(400_000, &m(&[("a", 2)])), m(&[("a", 8)]));
        assert_eq!(s.desired(421_000, &m(&[("a", 2)])), m(&[("a", 2)]));
        let r = reconcile(
            "w",
            &m(&[("a", 2)]),
            &m(&[("a", 5)]),
            &alloc(&[("a", 5, 0)]),
            0,
        );
        assert!(r.actions.is_empty());
        assert!(r.holds[0].contains("stabilisation"));
    }

    #[test]
    fn shrinking_is_limited_to_a_share_of_the_periods_peak_or_one_instance() {
        // The default catalog's: 4 vCPU at $0.058 (spot) and $0.192 (standard) an hour.
        let catalog = prescale_core::config::Config::default().tiers;
        let [spot, standard] =
            ["spot", "standard"].map(|n| catalog.iter().find(|t| t.name == n).unwrap().clone());
        assert_eq!(
            (spot.effective_capacity(), standard.effective_capacity()),
            (4.0, 4.0)
        );
        let one = [standard.clone()];
        let mut l = ShrinkLimit::new(0.1, 300_000);
        // Ten ready, the plan wants two: one goes (a tenth is less than an instance).
        let mut want = [2];
        let got = l.apply(0, &one, &[10], &mut want).unwrap();
        assert_eq!(want, [9]);
        assert_eq!((got.planned, got.kept, got.peak), (8.0, 36.0, 40.0));
        assert_eq!(got.raised, [0]);
        // Within the period, nothing more goes: the peak is still 40.
        let mut want = [2];
        l.apply(60_000, &one, &[9], &mut want).unwrap();
        assert_eq!(want, [9]);
        // Once the peak of 40 is older than the period, the next one.
        let mut want = [2];
        l.apply(300_000, &one, &[9], &mut want).unwrap();
        assert_eq!(want, [8]);
        // Growing is never limited, nor is keeping.
        let mut want = [12];
        assert!(l.apply(360_000, &one, &[8], &mut want).is_none());
        assert_eq!(want, [12]);
        // A large fleet loses a tenth per period: 100 to 90.
        let mut l = ShrinkLimit::new(0.1, 300_000);
        let mut want = [0];
        l.apply(0, &one, &[100], &mut want).unwrap();
        assert_eq!(want, [90]);
        // Over two tiers the dearest effective units go first: spot is kept.
        let both = [spot, standard];
        let mut l = ShrinkLimit::new(0.25, 300_000);
        let mut want = [0, 0];
        let got = l.apply(0, &both, &[4, 4], &mut want).unwrap();
        assert_eq!(want, [4, 2], "24 of 32 kept: spot whole, standard halved");
        assert_eq!(got.raised, [0, 1]);
        // No limit at a share of 1.
        let mut l = ShrinkLimit::new(1.0, 300_000);
        let mut want = [0, 0];
        assert!(l.apply(0, &both, &[4, 4], &mut want).is_none());
        assert_eq!(want, [0, 0]);
    }
}
