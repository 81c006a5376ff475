//! An operator's pause of a workload.
//!
//! During an incident, a migration or a load test a team wants a workload's capacity
//! left alone, or at least not removed, without stopping prescale or editing its
//! configuration: as KEDA's `autoscaling.keda.sh/paused` annotation does, or an HPA
//! whose minimum is raised to the current count. A pause is asked for through the API
//! ([`Engine::pause`]) and always has an end, so a forgotten one does not leave a
//! workload unmanaged for good. It is kept in the store (a restart keeps it), handed to
//! the replica that takes the lease over ([`Engine::adopt_pauses`]), logged as a
//! `config` decision when it starts, is lifted and ends, and shown in the status. While
//! it holds, prescale goes on forecasting and planning the workload, and logs what it
//! kept against what the plan wanted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use prescale_core::{format_ts, Allocation, Pause, PauseScope, Tier, TimestampMs};
use prescale_store::StoreError;

use super::{Engine, UnknownWorkload};
use crate::provider::Provider;

/// The endpoints that pause and resume a workload, for the reasons that point to them.
pub const PAUSE_PATH: &str = "POST /api/v1/workloads/{name}/pause";
/// See [`PAUSE_PATH`].
pub const RESUME_PATH: &str = "POST /api/v1/workloads/{name}/resume";

/// The series each pass stores of whether a pause held the workload (1) or not (0).
pub const PAUSED_SERIES: &str = "prescale_paused";

/// The longest a pause may last: a year and a day (one meant for longer is a change of
/// configuration, and an end past any calendar cannot be written).
pub const MAX_PAUSE_MS: i64 = 366 * 86_400_000;

/// Where workload `name`'s pause is kept in the store (`null` once lifted).
fn state_key(name: &str) -> String {
    format!("pause/{name}")
}

/// Why a pause or its lifting was refused.
#[derive(Debug)]
pub enum PauseError {
    /// No configured workload has the name.
    Unknown(UnknownWorkload),
    /// The end asked for is not after now, or more than [`MAX_PAUSE_MS`] after it.
    Ended {
        /// The end asked for.
        until: TimestampMs,
        /// Now, by the engine's clock.
        now: TimestampMs,
    },
    /// The store could not keep it.
    Store(StoreError),
}

impl fmt::Display for PauseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseError::Unknown(u) => write!(f, "{u}"),
            PauseError::Ended { until, now } => write!(
                f,
                "a pause must end after now ({}) and within {} days of it, not at {}",
                format_ts(*now),
                MAX_PAUSE_MS / 86_400_000,
                format_ts(*until)
            ),
            PauseError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PauseError {}

impl From<UnknownWorkload> for PauseError {
    fn from(e: UnknownWorkload) -> Self {
        PauseError::Unknown(e)
    }
}

impl From<StoreError> for PauseError {
    fn from(e: StoreError) -> Self {
        PauseError::Store(e)
    }
}

/// What a pause holds back, in words.
fn holds_back(scope: PauseScope) -> &'static str {
    match scope {
        PauseScope::All => {
            "capacity stays as it is (nothing provisioned or removed, an interrupted spot instance not replaced)"
        }
        PauseScope::ScaleDown => "no capacity is removed; what plans need is still provisioned",
    }
}

/// How a pause is named in decisions: its scope, end and reason.
fn describe(p: &Pause) -> String {
    let mut s = format!("paused ({}) until {}", p.scope.name(), format_ts(p.until));
    if !p.reason.is_empty() {
        s.push_str(&format!(" for \"{}\"", p.reason));
    }
    s
}

/// Raises or sets `desired` as a hold of `scope` requires against what `alloc` holds
/// (ready and pending) in each of `tiers` and of the tiers it holds, and the pass's
/// `target` with it (the hold keeps these, not the stabilisation window). Returns what
/// it kept in the words `say` gives the list of kept tiers (`spot kept at 6 (plan 3),
/// ...`), with the way the plan wants to move from what is kept (`spot=6-;`), by which
/// a hold is logged again only when that changes, not at every pass of a plan that
/// wavers; `None` when the plan's counts stand. An operator's pause holds by it, and so
/// does a provider whose state cannot be read.
pub(super) fn hold_back(
    scope: PauseScope,
    tiers: &[Tier],
    alloc: &Allocation,
    desired: &mut BTreeMap<String, u32>,
    target: &mut BTreeMap<String, u32>,
    say: impl FnOnce(&str) -> String,
) -> Option<(String, String)> {
    let names: BTreeSet<&String> = tiers
        .iter()
        .map(|t| &t.name)
        .chain(alloc.tiers.keys())
        .collect();
    let mut kept = Vec::new();
    for name in names {
        let have = alloc.get(name).total();
        let want = desired.get(name).copied().unwrap_or(0);
        let keep = match scope {
            PauseScope::All => have,
            PauseScope::ScaleDown => want.max(have),
        };
        if keep != want {
            desired.insert(name.clone(), keep);
            target.insert(name.clone(), keep);
            kept.push((name.clone(), keep, want));
        }
    }
    if kept.is_empty() {
        return None;
    }
    let list: Vec<String> = kept
        .iter()
        .map(|(t, keep, want)| format!("{t} kept at {keep} (plan {want})"))
        .collect();
    let way = kept
        .iter()
        .map(|(t, keep, want)| format!("{t}={keep}{};", if want > keep { '+' } else { '-' }))
        .collect();
    Some((say(&list.join(", ")), way))
}

/// What a pause kept (`list`, from [`hold_back`]), in words, with the pause.
pub(super) fn kept_words(name: &str, p: &Pause, list: &str) -> String {
    format!(
        "{}: {list} (`{}` lifts it)",
        describe(p),
        RESUME_PATH.replace("{name}", name)
    )
}

impl<P: Provider> Engine<P> {
    /// Puts `p` in force for state `i`, in the store, the state and, at once (not at
    /// the next pass), the published status.
    fn keep_pause(&mut self, i: usize, p: Option<Pause>) -> Result<(), StoreError> {
        let s = &mut self.states[i];
        self.store.put_state(&state_key(&s.w.name), &p)?;
        s.pause = p.clone();
        s.status.paused = p;
        self.publish_now(i, |w, s| w.paused = s.paused.clone());
        Ok(())
    }

    /// Pauses configured workload `name` from `now` until `until`: what `scope` holds
    /// back is not done (see [`PauseScope`]), from the next pass on, while forecasts and
    /// plans go on. A pause in force is replaced. Kept in the store before it is
    /// answered, and logged as a `config` decision.
    pub fn pause(
        &mut self,
        name: &str,
        scope: PauseScope,
        until: TimestampMs,
        reason: &str,
        now: TimestampMs,
    ) -> Result<Pause, PauseError> {
        let i = self.configured_index(name)?;
        if until <= now || until.saturating_sub(now) > MAX_PAUSE_MS {
            return Err(PauseError::Ended { until, now });
        }
        let p = Pause {
            scope,
            since: now,
            until,
            reason: reason.to_string(),
        };
        self.keep_pause(i, Some(p.clone()))?;
        self.log_config(
            name,
            now,
            format!(
                "{}, as asked (`{}`): {}; forecasts and plans go on, and what the plan wanted is logged",
                describe(&p),
                PAUSE_PATH.replace("{name}", name),
                holds_back(scope)
            ),
        )?;
        Ok(p)
    }

    /// Lifts workload `name`'s pause: its plans are acted on again from the next pass.
    /// Returns the pause lifted (`None`: there was none in force).
    pub fn resume(&mut self, name: &str, now: TimestampMs) -> Result<Option<Pause>, PauseError> {
        let i = self.configured_index(name)?;
        let was = self.stored_pause(i).filter(|p| p.holds(now));
        self.keep_pause(i, None)?;
        if let Some(p) = &was {
            self.log_config(
                name,
                now,
                format!(
                    "resumed, as asked (`{}`): the pause ({} until {}, asked for at {}) is lifted; plans are acted on again",
                    RESUME_PATH.replace("{name}", name),
                    p.scope.name(),
                    format_ts(p.until),
                    format_ts(p.since)
                ),
            )?;
        }
        Ok(was)
    }

    /// State `i`'s pause as stored (`None`: none, or lifted). One that cannot be read
    /// holds everything until it is lifted: acting against an operator's pause is the
    /// worse mistake.
    pub(super) fn stored_pause(&self, i: usize) -> Option<Pause> {
        let name = &self.states[i].w.name;
        match self.store.get_state::<Option<Pause>>(&state_key(name)) {
            Ok(p) => p.flatten(),
            Err(e) => Some(Pause {
                scope: PauseScope::All,
                since: TimestampMs::MIN,
                until: TimestampMs::MAX,
                reason: format!(
                    "the pause kept in the store cannot be read ({e}); `{}` clears it",
                    RESUME_PATH.replace("{name}", name)
                ),
            }),
        }
    }

    /// The pause in force for state `i` at `now`; logs, once, that one has ended (and
    /// clears it from the store, so a restart does not log it again).
    pub(super) fn pause_in_force(
        &mut self,
        i: usize,
        now: TimestampMs,
    ) -> Result<Option<Pause>, StoreError> {
        let active = self.stored_pause(i).filter(|p| p.holds(now));
        if let Some(old) = self.states[i].pause.clone() {
            if active.is_none() && old.until <= now {
                let name = self.states[i].w.name.clone();
                self.store.put_state(&state_key(&name), &None::<Pause>)?;
                self.log_config(
                    &name,
                    now,
                    format!(
                        "the pause ({} until {}, asked for at {}) has ended; plans are acted on again",
                        old.scope.name(),
                        format_ts(old.until),
                        format_ts(old.since)
                    ),
                )?;
            }
        }
        // The pass publishes it with the rest of the workload's status.
        let s = &mut self.states[i];
        s.pause = active.clone();
        s.status.paused = active.clone();
        Ok(active)
    }

    /// Takes over the pauses the replica that held the lease before handed over (by
    /// workload, as it wrote them on the Lease: every pause it had, ours among them as
    /// it took them over from us): each configured workload's that has not ended. A
    /// pause of this replica's own (from when it last held the lease) is replaced by
    /// the holder's, or lifted where the holder had none in force: that one resumed it,
    /// or replaced it by one that ended. The holder's list decides, not which pause was
    /// asked for later: the replicas' clocks may disagree. Returns the workloads whose
    /// pause was taken over or lifted.
    pub fn adopt_pauses(
        &mut self,
        handed: &BTreeMap<String, Pause>,
        now: TimestampMs,
    ) -> Result<Vec<String>, StoreError> {
        let mut taken = Vec::new();
        for i in 0..self.states.len() {
            let name = self.states[i].w.name.clone();
            let own = self.stored_pause(i).filter(|o| o.holds(now));
            let theirs = handed.get(&name).filter(|p| p.holds(now));
            match (theirs, own) {
                (Some(p), own) if own.as_ref() != Some(p) => {
                    self.keep_pause(i, Some(p.clone()))?;
                    self.log_config(
                        &name,
                        now,
                        format!(
                            "{}, as the replica that held the lease before kept it (asked for at {})",
                            describe(p),
                            format_ts(p.since)
                        ),
                    )?;
                }
                (None, Some(o)) => {
                    self.keep_pause(i, None)?;
                    self.log_config(
                        &name,
                        now,
                        format!(
                            "resumed, as the replica that held the lease before had it resumed: the pause ({} until {}, asked for at {}) is lifted; plans are acted on again",
                            o.scope.name(),
                            format_ts(o.until),
                            format_ts(o.since)
                        ),
                    )?;
                }
                _ => continue,
            }
            taken.push(name);
        }
        Ok(taken)
    }
}
