//! Planned events declared through the API.
//!
//! A workload's configuration names the events its team plans ahead (a launch, a
//! sale). Others are known only shortly before, to a pipeline or a person rather than
//! to the configuration's repository: a load test starting in an hour, a campaign moved
//! up, an incident's replay. As AWS's scheduled actions are put through its API, such an
//! event is declared through prescale's ([`Engine::declare_event`]), with the same
//! fields as in the configuration, and then counts exactly as a configured one: plans
//! ask for its demand ahead of it, the models learn from the history without it, the
//! watch does not judge it. A declared event is kept in the store (a restart keeps it),
//! handed to the replica that takes the lease over ([`Engine::adopt_events`]), logged
//! as a `config` decision when declared, changed or cancelled, and shown in the status
//! with those configured. One that ended longer ago than the workload's history reaches
//! is forgotten: no model reads those steps any more.

use std::collections::BTreeMap;
use std::fmt;

use prescale_core::{format_ts, PlannedEvent, TimestampMs};
use prescale_store::StoreError;

use super::{or_none, Engine, UnknownWorkload};
use crate::provider::Provider;

/// The endpoint that declares an event, for the reasons that point to it.
pub const DECLARE_PATH: &str = "POST /api/v1/workloads/{name}/events";
/// The endpoint that cancels a declared event.
pub const CANCEL_PATH: &str = "POST /api/v1/workloads/{name}/events/{event}/cancel";

/// The most events prescale keeps declared, over all workloads: with leader election
/// the holder writes them all on the Lease, whose annotations Kubernetes limits to
/// 256 KiB in all, and a Lease it cannot write is a lease it loses (200 events of the
/// longest name are about 60 KiB).
pub const MAX_DECLARED: usize = 200;

/// The series each pass stores, 1 for each planned event in force
/// (`{workload, event}`), for dashboards to mark the events on their charts.
pub const EVENT_SERIES: &str = "prescale_planned_event";

/// The longest event name the API takes (it is in reasons, labels and charts).
pub const MAX_EVENT_NAME: usize = 100;

/// How far ahead a declared event may end: a year and a day, as a pause.
pub const MAX_AHEAD_MS: i64 = 366 * 86_400_000;

/// Where workload `name`'s declared events are kept in the store.
fn state_key(name: &str) -> String {
    format!("events/{name}")
}

/// Why a declaration or a cancellation was refused.
#[derive(Debug)]
pub enum EventError {
    /// No configured workload has the name.
    Unknown(UnknownWorkload),
    /// The event is not one the API takes: its field and what is wrong.
    Invalid {
        /// `name`, `start`, `end`, `scale`, `min_demand` or `min_dimensions.D`.
        field: String,
        /// What to fix.
        message: String,
    },
    /// The workload's configuration has an event of that name, which only a change of
    /// the configuration changes.
    Configured {
        /// The workload.
        workload: String,
        /// The event's name.
        event: String,
    },
    /// [`MAX_DECLARED`] events are declared already, over all workloads.
    TooMany,
    /// No declared event of the workload has the name.
    NotFound {
        /// The workload.
        workload: String,
        /// The name asked for.
        event: String,
        /// The events declared for it.
        declared: Vec<String>,
    },
    /// The store could not keep it.
    Store(StoreError),
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Unknown(u) => write!(f, "{u}"),
            EventError::Invalid { field, message } => write!(f, "event `{field}`: {message}"),
            EventError::Configured { workload, event } => write!(
                f,
                "workload `{workload}`'s configuration has an event named \"{event}\": change it there and reload, or declare one under another name"
            ),
            EventError::TooMany => write!(
                f,
                "{MAX_DECLARED} events are declared over all workloads, the most prescale keeps (with leader election they are written on the Lease, whose size Kubernetes limits): cancel one first, or put long-lived ones in the configuration"
            ),
            EventError::NotFound {
                workload,
                event,
                declared,
            } => write!(
                f,
                "workload `{workload}` has no declared event named \"{event}\"; declared: {} (those in the configuration change with it)",
                or_none(declared)
            ),
            EventError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EventError {}

impl From<UnknownWorkload> for EventError {
    fn from(e: UnknownWorkload) -> Self {
        EventError::Unknown(e)
    }
}

impl From<StoreError> for EventError {
    fn from(e: StoreError) -> Self {
        EventError::Store(e)
    }
}

/// An event in words, for decisions: its span, its scale (unless 1) and its least
/// demand in each dimension it holds.
pub(super) fn describe(e: &PlannedEvent) -> String {
    let mut what = Vec::new();
    if e.scale != 1.0 {
        what.push(format!("demand expected at {} times the forecast", e.scale));
    }
    if let Some(d) = e.min_demand {
        what.push(format!("at least {d} vCPU"));
    }
    for (d, v) in &e.min_dimensions {
        let unit = prescale_core::Dim::parse(d).map_or("", |d| d.unit());
        what.push(format!("at least {v} {unit} of {d}"));
    }
    format!(
        "from {} to {}, {}",
        format_ts(e.start.0),
        format_ts(e.end.0),
        what.join(" and ")
    )
}

/// Checks an event the API is asked to declare at `now`.
fn check(e: &PlannedEvent, now: TimestampMs) -> Result<(), EventError> {
    let invalid = |field: &str, message: String| {
        Err(EventError::Invalid {
            field: field.into(),
            message,
        })
    };
    if e.name.chars().count() > MAX_EVENT_NAME {
        return invalid(
            "name",
            format!(
                "at most {MAX_EVENT_NAME} characters, got {}",
                e.name.chars().count()
            ),
        );
    }
    if e.name.chars().any(char::is_control) {
        return invalid("name", "must not hold control characters".into());
    }
    if let Err((field, message)) = prescale_core::config::validate_event(e) {
        return invalid(&field, message);
    }
    if e.end.0 <= now {
        return invalid(
            "end",
            format!(
                "{} is not after now ({}): an event that is over changes no plan",
                format_ts(e.end.0),
                format_ts(now)
            ),
        );
    }
    if e.end.0 - now > MAX_AHEAD_MS {
        return invalid(
            "end",
            format!(
                "{} is more than {} days ahead: put an event that far off in the configuration",
                format_ts(e.end.0),
                MAX_AHEAD_MS / 86_400_000
            ),
        );
    }
    Ok(())
}

impl<P: Provider> Engine<P> {
    /// Puts `declared` in force as state `i`'s declared events: in the store, the state
    /// (beside those configured) and, at once, the published status.
    pub(super) fn keep_declared(
        &mut self,
        i: usize,
        declared: Vec<PlannedEvent>,
    ) -> Result<(), StoreError> {
        let s = &mut self.states[i];
        self.store.put_state(&state_key(&s.w.name), &declared)?;
        s.set_declared(declared);
        self.publish_now(i, |w, s| {
            w.events = s.events.clone();
            w.declared = s.declared.clone();
        });
        Ok(())
    }

    /// Declares `event` for configured workload `name` at `now`, or changes the one
    /// declared under its name: from the next pass, plans count it as a configured one.
    /// Kept in the store before it is answered, and logged as a `config` decision.
    /// Returns the one it replaced, if any.
    pub fn declare_event(
        &mut self,
        name: &str,
        event: PlannedEvent,
        now: TimestampMs,
    ) -> Result<Option<PlannedEvent>, EventError> {
        let i = self.configured_index(name)?;
        check(&event, now)?;
        let s = &self.states[i];
        prescale_core::config::check_event_dimensions(&s.w, &event)
            .map_err(|(field, message)| EventError::Invalid { field, message })?;
        if s.configures(&event.name) {
            return Err(EventError::Configured {
                workload: name.into(),
                event: event.name,
            });
        }
        let mut declared = s.declared.clone();
        let was = declared
            .iter()
            .position(|e| e.name == event.name)
            .map(|k| declared.remove(k));
        let total: usize = self.states.iter().map(|s| s.declared.len()).sum();
        if was.is_none() && total >= MAX_DECLARED {
            return Err(EventError::TooMany);
        }
        declared.push(event.clone());
        declared.sort_by(|a, b| (a.start, &a.name).cmp(&(b.start, &b.name)));
        self.keep_declared(i, declared)?;
        let asked = DECLARE_PATH.replace("{name}", name);
        let reason = match &was {
            Some(old) => format!(
                "planned event \"{}\" changed, as asked (`{asked}`): {} (was {})",
                event.name,
                describe(&event),
                describe(old)
            ),
            None => format!(
                "planned event \"{}\" declared, as asked (`{asked}`): {}; plans ask for its demand ahead of it",
                event.name,
                describe(&event)
            ),
        };
        self.log_config(name, now, reason)?;
        Ok(was)
    }

    /// Cancels the event declared as `event` for workload `name`: from the next pass,
    /// plans follow the forecast without it (and the models learn from its steps as
    /// they were). Returns it.
    pub fn cancel_event(
        &mut self,
        name: &str,
        event: &str,
        now: TimestampMs,
    ) -> Result<PlannedEvent, EventError> {
        let i = self.configured_index(name)?;
        let s = &self.states[i];
        if s.configures(event) {
            return Err(EventError::Configured {
                workload: name.into(),
                event: event.into(),
            });
        }
        let mut declared = s.declared.clone();
        let Some(k) = declared.iter().position(|e| e.name == event) else {
            return Err(EventError::NotFound {
                workload: name.into(),
                event: event.into(),
                declared: declared.iter().map(|e| e.name.clone()).collect(),
            });
        };
        let gone = declared.remove(k);
        self.keep_declared(i, declared)?;
        let path = CANCEL_PATH
            .replace("{name}", name)
            .replace("{event}", event);
        self.log_config(
            name,
            now,
            format!(
                "planned event \"{}\" cancelled, as asked (`{path}`): it was {}; plans follow the forecast without it",
                gone.name,
                describe(&gone)
            ),
        )?;
        Ok(gone)
    }

    /// Takes state `i`'s declared events from the store (a list that cannot be read
    /// counts as none, with a warning), leaving out, with a `config` decision, those
    /// the configuration now names.
    pub(super) fn restore_declared(
        &mut self,
        i: usize,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        let name = self.states[i].w.name.clone();
        let stored = match self.store.get_state::<Vec<PlannedEvent>>(&state_key(&name)) {
            Ok(d) => d.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(workload = %name, "the planned events declared through the API cannot be read ({e}): declare them again");
                Vec::new()
            }
        };
        self.states[i].set_declared(stored);
        self.leave_out_configured(i, now)
    }

    /// Leaves out of state `i`'s declared events, with a `config` decision, those its
    /// configuration names (a reload may add one of a declared event's name): the
    /// configuration's is the one in force.
    pub(super) fn leave_out_configured(
        &mut self,
        i: usize,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        let s = &self.states[i];
        let (kept, shadowed): (Vec<_>, Vec<_>) = s
            .declared
            .iter()
            .cloned()
            .partition(|d| !s.configures(&d.name));
        if shadowed.is_empty() {
            return Ok(());
        }
        let name = s.w.name.clone();
        self.keep_declared(i, kept)?;
        for e in shadowed {
            self.log_config(
                &name,
                now,
                format!(
                    "planned event \"{}\" declared through the API ({}) is left out: the configuration has one of that name, which is in force",
                    e.name,
                    describe(&e)
                ),
            )?;
        }
        Ok(())
    }

    /// Forgets state `i`'s declared events that ended longer ago than its history
    /// reaches at `now` (no model reads those steps any more).
    pub(super) fn forget_old_events(
        &mut self,
        i: usize,
        now: TimestampMs,
    ) -> Result<(), StoreError> {
        let s = &self.states[i];
        let reach = now - s.w.history_s as i64 * 1000;
        if s.declared.iter().all(|e| e.end.0 >= reach) {
            return Ok(());
        }
        let kept = s
            .declared
            .iter()
            .filter(|e| e.end.0 >= reach)
            .cloned()
            .collect();
        self.keep_declared(i, kept)
    }

    /// Takes over the events the replica that held the lease before had declared (by
    /// workload, as it wrote them on the Lease): they replace this replica's own, which
    /// may be stale from when it last held the lease. A workload the holder had none
    /// for has none. Returns the workloads whose declared events changed.
    pub fn adopt_events(
        &mut self,
        handed: &BTreeMap<String, Vec<PlannedEvent>>,
        now: TimestampMs,
    ) -> Result<Vec<String>, StoreError> {
        let mut changed = Vec::new();
        for i in 0..self.states.len() {
            let s = &self.states[i];
            let name = s.w.name.clone();
            let theirs: Vec<PlannedEvent> = handed
                .get(&name)
                .into_iter()
                .flatten()
                .filter(|d| !s.configures(&d.name))
                .cloned()
                .collect();
            if theirs == s.declared {
                continue;
            }
            let names = |l: &[PlannedEvent]| {
                or_none(
                    &l.iter()
                        .map(|e| format!("\"{}\"", e.name))
                        .collect::<Vec<_>>(),
                )
            };
            let reason = format!(
                "planned events declared through the API taken over from the replica that held the lease before: {} (this replica had {})",
                names(&theirs),
                names(&s.declared),
            );
            self.keep_declared(i, theirs)?;
            self.log_config(&name, now, reason)?;
            changed.push(name);
        }
        Ok(changed)
    }
}
