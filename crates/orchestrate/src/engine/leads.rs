//! How long each tier's instances take to serve, as measured: plans ask for capacity
//! a tier's configured lead time ahead (`lead_time_s`, `lead_time_p90_s`), and when
//! the provider's instances come up slower than that, capacity is ready late. Each
//! pass reads what every workload holds pending; an instance that is pending no more
//! came up (the oldest first, as providers start them in order) and is measured from
//! the pass that asked for it, to the pass (at most `interval_s` late). Instances
//! pending that no pass asked for (a rollout's, a crashed one restarting, those found
//! when the engine starts) are not measured: they say nothing of how fast the provider
//! answers a request. The
//! last [`LEAD_SAMPLES`] of each tier are in the status, `/metrics` and on the
//! dashboard, and when their 90th percentile runs past the configured one by more than
//! [`LEAD_SLACK`] a `config` decision says so, and what to set.

use std::collections::{BTreeMap, VecDeque};

use prescale_core::{Allocation, Decision, DecisionKind, Tier, TimestampMs};
use prescale_store::StoreError;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::provider::Provider;

/// Instances measured per tier: the most recent.
pub const LEAD_SAMPLES: usize = 50;

/// Instances measured before the measure is compared with the configuration.
pub const LEAD_MIN_SAMPLES: usize = 10;

/// How far past the configured 90th percentile (as a factor, after one control
/// interval for the measure's resolution) the measured one may run before it is said.
pub const LEAD_SLACK: f64 = 1.25;

/// What was measured of one tier's lead times.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LeadTimes {
    /// Instances measured (the last [`LEAD_SAMPLES`]).
    pub samples: usize,
    /// Their median, in seconds.
    pub median_s: f64,
    /// Their 90th percentile, in seconds.
    pub p90_s: f64,
    /// The tier's configured median (`lead_time_s`).
    pub configured_s: u64,
    /// The tier's configured 90th percentile (`lead_time_p90_s`, or its default).
    pub configured_p90_s: u64,
    /// Each measure may run up to this late (a control interval), in seconds.
    pub resolution_s: f64,
    /// Whether the measured 90th percentile runs past the configured one (see
    /// [`LEAD_SLACK`]), with at least [`LEAD_MIN_SAMPLES`] measured.
    pub late: bool,
}

/// Per tier, when each instance a workload holds pending was asked for (`None`: pending
/// without a request of the engine's, so not measured), oldest first.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    tiers: BTreeMap<String, VecDeque<Option<TimestampMs>>>,
}

impl Pending {
    /// Takes in what the workload holds at `now`: instances pending no more came up,
    /// the oldest first; returns the tier and seconds of each measured. Newly pending
    /// ones are counted from `now` when the engine has just `asked` for capacity (the
    /// read after its actions), else not measured.
    pub(crate) fn observe(
        &mut self,
        tiers: &[Tier],
        alloc: &Allocation,
        now: TimestampMs,
        asked: bool,
    ) -> Vec<(String, f64)> {
        let mut came = Vec::new();
        for t in tiers {
            let pending = alloc.get(&t.name).pending as usize;
            let q = self.tiers.entry(t.name.clone()).or_default();
            while q.len() > pending {
                if let Some(asked) = q.pop_front().flatten() {
                    came.push((t.name.clone(), (now - asked).max(0) as f64 / 1000.0));
                }
            }
            while q.len() < pending {
                q.push_back(asked.then_some(now));
            }
        }
        came
    }

    /// Forgets the `n` newest pending instances of `tier`: released before they
    /// served, so not measured.
    pub(crate) fn released(&mut self, tier: &str, n: u32) {
        if let Some(q) = self.tiers.get_mut(tier) {
            for _ in 0..n {
                q.pop_back();
            }
        }
    }
}

/// The median and 90th percentile of `secs` (not empty).
fn median_p90(secs: &VecDeque<f64>) -> (f64, f64) {
    let mut v: Vec<f64> = secs.iter().copied().collect();
    let q = prescale_forecast::quantiles_unsorted(&mut v, &[0.5, 0.9]);
    (q[0], q[1])
}

impl<P: Provider> Engine<P> {
    /// Reads what workload `i` holds at `now` into its status, and measures the
    /// instances that came up since the last read; `acted`: the read after the pass's
    /// actions, with those they released while still pending, per tier.
    pub(super) fn read_allocation(
        &mut self,
        i: usize,
        now: TimestampMs,
        acted: Option<&BTreeMap<String, u32>>,
    ) -> Result<(), StoreError> {
        let s = &mut self.states[i];
        s.status.allocation = self.provider.allocation(&s.w.name, now);
        s.status.ready_capacity = s.status.allocation.ready_capacity(&self.tiers);
        if !self.provider.acts() {
            return Ok(());
        }
        for (tier, n) in acted.into_iter().flatten() {
            s.pending.released(tier, *n);
        }
        let came = s
            .pending
            .observe(&self.tiers, &s.status.allocation, now, acted.is_some());
        let name = s.w.name.clone();
        for (tier, secs) in came {
            let seen = self.lead_seen.entry(tier.clone()).or_default();
            seen.push_back(secs);
            while seen.len() > LEAD_SAMPLES {
                seen.pop_front();
            }
            self.judge_leads(&tier, &name, now)?;
        }
        Ok(())
    }

    /// Whether plans read a tier's lead times as measured where they run late (on by
    /// default; `[control] measured_lead_times`).
    pub fn set_measured_lead_times(&mut self, on: bool) {
        self.measured_leads = on;
    }

    /// The tiers with the lead times of those that run late as measured (each the
    /// larger of its configured and measured median and 90th percentile), and what
    /// plans say of it; `None` where none runs late (or plans read the configuration).
    pub(super) fn measured_tiers(&self) -> Option<(Vec<Tier>, String)> {
        if !self.measured_leads {
            return None;
        }
        let measured = self.lead_times();
        let mut said = Vec::new();
        let tiers: Vec<Tier> = self
            .tiers
            .iter()
            .map(|t| {
                let mut t = t.clone();
                if let Some(m) = measured.get(&t.name).filter(|m| m.late) {
                    let p90 = t.lead_time_p90();
                    t.lead_time_s = t.lead_time_s.max(m.median_s.ceil() as u64);
                    t.lead_time_p90_s = Some(p90.max(m.p90_s.ceil() as u64).max(t.lead_time_s));
                    said.push(format!(
                        "{} {} s (90th percentile {} s) where {} s ({} s) are configured",
                        t.name,
                        t.lead_time_s,
                        t.lead_time_p90(),
                        m.configured_s,
                        m.configured_p90_s
                    ));
                }
                t
            })
            .collect();
        (!said.is_empty()).then(|| {
            (
                tiers,
                format!(
                    "lead times as measured over the tiers' last instances (control.measured_lead_times): {}",
                    said.join(", ")
                ),
            )
        })
    }

    /// What was measured of each tier's lead times ([`LeadTimes`]).
    pub(super) fn lead_times(&self) -> BTreeMap<String, LeadTimes> {
        self.tiers
            .iter()
            .filter_map(|t| {
                let seen = self.lead_seen.get(&t.name).filter(|s| !s.is_empty())?;
                let (median_s, p90_s) = median_p90(seen);
                let resolution_s = self.interval_ms as f64 / 1000.0;
                let configured_p90_s = t.lead_time_p90();
                let late = seen.len() >= LEAD_MIN_SAMPLES
                    && p90_s > configured_p90_s as f64 * LEAD_SLACK + resolution_s;
                Some((
                    t.name.clone(),
                    LeadTimes {
                        samples: seen.len(),
                        median_s,
                        p90_s,
                        configured_s: t.lead_time_s,
                        configured_p90_s,
                        resolution_s,
                        late,
                    },
                ))
            })
            .collect()
    }

    /// Says once (a `config` decision about `workload`, whose instance was measured
    /// last) when `tier`'s measured lead times run late, and again only after they
    /// came back within the configuration.
    fn judge_leads(
        &mut self,
        tier: &str,
        workload: &str,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        let Some(m) = self.lead_times().remove(tier) else {
            return Ok(());
        };
        if !m.late {
            self.leads_late.remove(tier);
            return Ok(());
        }
        if !self.leads_late.insert(tier.to_string()) {
            return Ok(());
        }
        self.store.log_decision(&Decision {
            at: now,
            workload: workload.to_string(),
            kind: DecisionKind::Config,
            action: None,
            reason: format!(
                "tier {tier}: its last {} instances took {:.0} s to serve at the 90th percentile (median {:.0} s, measured to the control pass), past its lead_time_p90_s = {} (lead_time_s = {}): {}; set lead_time_s = {:.0} and lead_time_p90_s = {:.0}",
                m.samples,
                m.p90_s,
                m.median_s,
                m.configured_p90_s,
                m.configured_s,
                if self.measured_leads {
                    "plans read the measured lead times until the configuration says as much (control.measured_lead_times)"
                } else {
                    "plans ask for its capacity too late to be ready in time (control.measured_lead_times = false)"
                },
                m.median_s.ceil(),
                m.p90_s.ceil()
            ),
            repeated: None,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::model::TierCount;

    fn held(pending: &[(&str, u32)]) -> Allocation {
        Allocation {
            tiers: pending
                .iter()
                .map(|(t, p)| {
                    (
                        t.to_string(),
                        TierCount {
                            pending: *p,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn instances_pending_no_more_are_measured_oldest_first() {
        let tiers = prescale_core::config::Config::default().tiers;
        assert_eq!((&*tiers[0].name, &*tiers[1].name), ("spot", "standard"));
        let mut p = Pending::default();
        // Found pending at start, not asked for: not measured.
        assert!(p
            .observe(&tiers, &held(&[("spot", 1)]), 0, false)
            .is_empty());
        // Two more asked for at 15 s, one at 30 s.
        p.observe(&tiers, &held(&[("spot", 3)]), 15_000, true);
        p.observe(&tiers, &held(&[("spot", 3), ("standard", 1)]), 30_000, true);
        // At 120 s, the one found at start and the first asked for came up.
        let came = p.observe(
            &tiers,
            &held(&[("spot", 1), ("standard", 1)]),
            120_000,
            false,
        );
        assert_eq!(came, vec![("spot".to_string(), 105.0)]);
        // The last spot one released while pending, the standard one up at 200 s.
        p.released("spot", 1);
        let came = p.observe(&tiers, &held(&[]), 200_000, true);
        assert_eq!(came, vec![("standard".to_string(), 170.0)]);
        // One pending that no pass asked for (a rollout's pod, a crashed one coming
        // back): not measured when it serves.
        p.observe(&tiers, &held(&[("standard", 1)]), 300_000, false);
        assert!(p.observe(&tiers, &held(&[]), 400_000, false).is_empty());
    }
}
