//! A refusal the provider gives again at every pass.
//!
//! A provider refuses the same action at every pass until someone mends the cause: a
//! Deployment deleted, a right missing from the Role, an HPA scaling the same object,
//! a hook failing. At one pass every 15 s that was 5,760 `error` decisions a day for
//! each, kept a year, burying every other decision of the workload. As Kubernetes
//! counts a repeated event rather than recording it again, the first refusal is logged
//! in full; the same refusal at the passes after it is counted, and logged as one
//! decision once an hour and when it stops ([`Repeated`] says how many and from when
//! to when). The count not yet logged is kept in the workload's status, which is
//! stored at the end of every pass, so a restart loses none of it, and shown there
//! ([`WorkloadStatus::refusing`](super::WorkloadStatus::refusing)). Every refusal is
//! still counted in `errors` at once.
//!
//! "The same" is the same logged reason: the same action (verb, count, tier) refused
//! with the same words. A refusal that changes (another count wanted, another error)
//! is logged at once.

use prescale_core::{format_ts, Action, Decision, DecisionKind, Repeated, TimestampMs};
use prescale_store::StoreError;
use serde::{Deserialize, Serialize};

use super::Engine;
use crate::provider::Provider;

/// The longest the repeats of a refusal go unlogged: an hour.
pub const RELOG_MS: i64 = 3_600_000;

/// A refusal the provider has given at every pass of the workload since `since`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refusing {
    /// Its reason, as logged.
    pub reason: String,
    /// The action refused last.
    pub action: Action,
    /// When it was first refused so, and last.
    pub since: TimestampMs,
    pub last_at: TimestampMs,
    /// How many times in all since `since`.
    pub times: u64,
    /// When it was last logged.
    pub logged_at: TimestampMs,
    /// The refusals since then, not yet logged, and when the first of them came.
    pub unlogged: u64,
    pub unlogged_since: Option<TimestampMs>,
}

impl Refusing {
    /// The decision that logs the refusals of this not yet logged, at `now`; `None`
    /// when there are none.
    fn decision(&self, now: TimestampMs, stopped: bool) -> Option<Decision> {
        let since = self.unlogged_since?;
        if self.unlogged == 0 {
            return None;
        }
        let then = if stopped {
            "not refused so at this pass: taken, refused otherwise or not asked"
        } else {
            "still refused at every pass; logged again within the hour or when it stops"
        };
        Some(Decision {
            at: now,
            workload: self.action.workload.clone(),
            kind: DecisionKind::Error,
            action: Some(self.action.clone()),
            reason: format!(
                "the same refusal {} more time(s) from {} to {} ({} since {}; {then}): {}",
                self.unlogged,
                format_ts(since),
                format_ts(self.last_at),
                self.times,
                format_ts(self.since),
                self.reason
            ),
            repeated: Some(Repeated {
                times: self.unlogged,
                since,
                until: self.last_at,
            }),
        })
    }
}

impl<P: Provider> Engine<P> {
    /// Logs refusal `d` of workload `i`'s action at `d.at`, or counts it when the
    /// provider refused it the same way at the workload's last pass: the count is logged
    /// once an hour after the last logging, and when the refusals stop
    /// ([`Self::end_refusals`]).
    pub(super) fn log_refusal(&mut self, i: usize, d: Decision) -> Result<(), StoreError> {
        let now = d.at;
        let action = d.action.clone().expect("a refusal has its action");
        let gap = 2 * self.interval_ms;
        let s = &mut self.states[i].status;
        // One that did not come at the last pass (the workload was not planned by this
        // replica meanwhile) starts again.
        if let Some(at) = s
            .refusing
            .iter()
            .position(|r| r.reason == d.reason && now - r.last_at > gap)
        {
            let r = s.refusing.remove(at);
            if let Some(old) = r.decision(now, true) {
                self.log_action_decision(&old)?;
            }
        }
        let s = &mut self.states[i].status;
        let Some(r) = s.refusing.iter_mut().find(|r| r.reason == d.reason) else {
            self.log_action_decision(&d)?;
            let s = &mut self.states[i].status;
            s.refusing.push(Refusing {
                reason: d.reason,
                action,
                since: now,
                last_at: now,
                times: 1,
                logged_at: now,
                unlogged: 0,
                unlogged_since: None,
            });
            return Ok(());
        };
        r.action = action;
        r.last_at = now;
        r.times += 1;
        r.unlogged += 1;
        r.unlogged_since.get_or_insert(now);
        if now - r.logged_at >= RELOG_MS {
            let d = r.decision(now, false).expect("one not logged");
            (r.logged_at, r.unlogged, r.unlogged_since) = (now, 0, None);
            self.log_action_decision(&d)?;
        }
        Ok(())
    }

    /// At the end of workload `i`'s pass at `now`: each refusal the provider did not
    /// give again at this pass has stopped, and its repeats not yet logged are logged
    /// as one.
    pub(super) fn end_refusals(&mut self, i: usize, now: TimestampMs) -> Result<(), StoreError> {
        let s = &mut self.states[i].status;
        if s.refusing.iter().all(|r| r.last_at == now) {
            return Ok(());
        }
        let (go, keep) = std::mem::take(&mut s.refusing)
            .into_iter()
            .partition::<Vec<_>, _>(|r| r.last_at != now);
        s.refusing = keep;
        for r in go {
            if let Some(d) = r.decision(now, true) {
                self.log_action_decision(&d)?;
            }
        }
        Ok(())
    }

    /// The refusals of every workload counted and not yet in the log: with the
    /// [`Decision::refusals`] of the log, every refusal the provider gave.
    pub fn unlogged_refusals(&self) -> u64 {
        let counted = self.states.iter().flat_map(|s| &s.status.refusing);
        counted.map(|r| r.unlogged).sum()
    }

    /// Logs, at `now`, the repeats not yet logged of every refusal of `name` in
    /// `refusing` (a workload a reload removes: it has no pass after). A log that fails
    /// is warned of.
    pub(super) fn log_repeats(&self, refusing: &[Refusing], name: &str, now: TimestampMs) {
        for d in refusing.iter().filter_map(|r| r.decision(now, true)) {
            if let Err(e) = self.log_action_decision(&d) {
                tracing::warn!("{name}: {} (not logged: {e})", d.reason);
            }
        }
    }
}
