//! Whether a provider that reads what each workload holds from outside (a hook with
//! `report_state`, Kubernetes) could read it at the last pass.
//!
//! When it cannot (the API server down, the hook failing, a report not believed), the
//! provider plans from what it last said with what was applied since, and nothing the
//! outside changed meanwhile (someone scaling by hand, spot taken back) is known. That
//! must not go unseen: each configured workload gets an `error` decision when it starts
//! and an `event` when it is read again, and the status keeps since when
//! ([`Status::provider_state`], on `/metrics` and the dashboard).

use prescale_core::{format_ts, Decision, DecisionKind, TimestampMs};
use prescale_store::StoreError;

use super::{Engine, Status};
use crate::provider::{Provider, StateRead};

impl<P: Provider> Engine<P> {
    /// Keeps in `st` how the provider read its state at this pass (`read`, from
    /// [`Provider::state_read`]) and logs when that changed. A state unread across a
    /// reload (which brings a new provider) keeps the time it was first unread, and when
    /// it was last read.
    pub(super) fn note_state_read(
        &mut self,
        read: Option<StateRead>,
        now: TimestampMs,
        st: &mut Status,
    ) -> Result<(), StoreError> {
        let was = st.provider_state.take();
        let Some(mut read) = read else {
            return Ok(());
        };
        let was_unread = was.as_ref().and_then(|w| w.unread_since);
        if let Some(since) = read.unread_since {
            read.unread_since = Some(was_unread.map_or(since, |then| then.min(since)));
            read.read_at = read.read_at.or(was.as_ref().and_then(|w| w.read_at));
        }
        let name = self.provider.name().to_string();
        let said = match (was_unread, read.unread_since) {
            (None, Some(_)) => Some((
                DecisionKind::Error,
                format!(
                    "the {name} provider's state could not be read: {}; plans go on from {}, with what was applied since, and what changed outside prescale meanwhile is not known, so nothing is removed until it is read again (what plans need is still added)",
                    read.error.as_deref().unwrap_or("no reason given"),
                    match read.read_at {
                        Some(t) => format!("what it said at {}", format_ts(t)),
                        None => "what prescale asked of it (it has said nothing since prescale started)".into(),
                    }
                ),
            )),
            (Some(since), None) => Some((
                DecisionKind::Event,
                format!(
                    "the {name} provider's state is read again, after {:.0} min unread (since {}); plans go on from what it says",
                    (now - since) as f64 / 60_000.0,
                    format_ts(since)
                ),
            )),
            _ => None,
        };
        if let Some((kind, reason)) = said {
            for s in &self.states {
                self.store.log_decision(&Decision {
                    at: now,
                    workload: s.w.name.clone(),
                    kind,
                    action: None,
                    reason: reason.clone(),
                    repeated: None,
                })?;
            }
        }
        st.provider_state = Some(read);
        Ok(())
    }
}
