//! Desired capacity vs actual capacity -> actions, in the style of a Kubernetes
//! controller: a pure function of its inputs, idempotent (each action carries a key built
//! from the workload, tier, direction and decision time), and safe to rerun after a
//! restart because it reads the provider's truth every time.

use std::collections::{BTreeMap, VecDeque};

use prescale_core::{Action, ActionKind, Allocation, TimestampMs};

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

/// The reconciler's verdict for one workload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// Actions to send, provisions first.
    pub actions: Vec<Action>,
    /// Deliberate non-actions, with reasons.
    pub holds: Vec<String>,
}

/// Compares desired (stabilised) and planned counts with what the workload holds.
///
/// Scale-up is immediate. Scale-down happens only when the stabilised count allows it and
/// no instance of the workload is still pending (removing capacity while replacements
/// are not serving yet would open a gap).
pub fn reconcile(
    workload: &str,
    planned: &BTreeMap<String, u32>,
    desired: &BTreeMap<String, u32>,
    actual: &Allocation,
    now: TimestampMs,
) -> Reconciled {
    let mut out = Reconciled::default();
    let pending: u32 = actual.tiers.values().map(|c| c.pending).sum();
    let mut tiers: Vec<&String> = desired.keys().chain(actual.tiers.keys()).collect();
    tiers.sort();
    tiers.dedup();
    let mut downs = Vec::new();
    for tier in tiers {
        let want = desired.get(tier).copied().unwrap_or(0);
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
            if pending > 0 {
                out.holds.push(format!(
                    "{tier}: keeping {have} (plan wants {want}) until {pending} pending instance(s) are ready"
                ));
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

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::model::TierCount;

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
}
