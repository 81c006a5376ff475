//! Leader election on a Kubernetes Lease (`coordination.k8s.io/v1`), as client-go's
//! `leaderelection` does it, so several prescale replicas can run and one acts.
//!
//! Each replica tries every `retry_period_s` to take or renew the Lease: it creates it
//! when there is none, renews it while it holds it, and takes it over when its holder
//! has left it (`holderIdentity` empty) or has not renewed it for `lease_duration_s`.
//! Expiry is judged by this process's own clock from when it last saw the Lease change
//! (not by the `renewTime` written in it), so clocks that disagree between nodes do not
//! hand the lease to two replicas. Every write is a replace carrying the
//! `resourceVersion` read, so of two replicas racing for it the API server lets one
//! win (the other gets 409). A holder that cannot renew for `renew_deadline_s` stops
//! acting before another may take over (`renew_deadline_s < lease_duration_s`).
//!
//! The holder also writes on the Lease, as annotations, what the others need from it:
//! where its API is (standbys forward reads there), and what the replica taking over
//! starts from, which its own store does not have: each workload's spending this month,
//! the capacity left unmanaged and the pauses operators asked for ([`Handed`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use prescale_collect::kube::{connect, hint, ApiError, Connection};
use prescale_core::config::{KubernetesProviderConfig, LeaderElectionConfig};
use prescale_core::{Pause, PlannedEvent, TimestampMs};
use prescale_store::StoreError;
use serde_json::{json, Value};

use crate::engine::{month_bounds, MonthSpend, MonthSpends, Status, Unmanaged, FLEET_SPEND_KEY};
use crate::{Engine, Provider};

/// What the service account needs, for errors.
const RIGHTS: &str = "get, create and update on leases in group coordination.k8s.io";

/// The Lease annotation where the holder says where its API is
/// (`[leader_election] advertise_url`), for standbys to forward reads to.
pub const URL_ANNOTATION: &str = "prescale.io/advertise-url";

/// The Lease annotation where the holder keeps each workload's spending this month
/// (JSON, by workload), for the replica that takes over to pace monthly budgets from:
/// its own store has none of it.
pub const SPEND_ANNOTATION: &str = "prescale.io/month-spend";

/// The Lease annotation where the holder keeps its list of capacity held for workloads
/// no longer configured (JSON, by workload), for the replica that takes over to keep
/// watching and pricing it.
pub const UNMANAGED_ANNOTATION: &str = "prescale.io/unmanaged";

/// The Lease annotation where the holder keeps the pauses in force (JSON, by workload),
/// for the replica that takes over to go on holding them back until they end.
pub const PAUSED_ANNOTATION: &str = "prescale.io/paused";

/// The Lease annotation where the holder keeps the planned events declared through the
/// API (JSON, by workload), for the replica that takes over to plan for them.
pub const EVENTS_ANNOTATION: &str = "prescale.io/events";

/// What the holder before wrote on the Lease, for the replica that took it over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handed {
    /// Each workload's spending this month ([`crate::Engine::adopt_spend`]).
    pub spend: MonthSpends,
    /// Capacity held for workloads no longer configured
    /// ([`crate::Engine::adopt_unmanaged`]).
    pub unmanaged: BTreeMap<String, Unmanaged>,
    /// The pauses the holder had, every one, so a pause missing here was resumed there
    /// ([`crate::Engine::adopt_pauses`]); `None` where it wrote none (a version before
    /// them).
    pub paused: Option<BTreeMap<String, Pause>>,
    /// The planned events declared through the API ([`crate::Engine::adopt_events`]);
    /// `None` where the holder wrote none (a version before them).
    pub events: Option<BTreeMap<String, Vec<PlannedEvent>>>,
}

/// What a replica's engine took over of what was handed to it ([`Handed::hand_to`]),
/// for the log.
#[derive(Debug)]
pub struct Adopted {
    /// The spending taken over (newer than the engine's own), by workload; the fleet's
    /// under [`FLEET_SPEND_KEY`].
    pub spend: Vec<(String, MonthSpend)>,
    /// The workloads whose unmanaged capacity was taken onto the list.
    pub unmanaged: Result<Vec<String>, StoreError>,
    /// The workloads whose pause was taken over or lifted (`None`: the holder before
    /// wrote none).
    pub paused: Option<Result<Vec<String>, StoreError>>,
    /// The workloads whose declared events changed (`None`: the holder before wrote
    /// none, being of a version before them).
    pub events: Option<Result<Vec<String>, StoreError>>,
}

impl Handed {
    /// Hands what the holder before wrote to `engine` at `now`, as this replica takes
    /// the lease over, before it makes a pass or writes its own lists on the Lease: the
    /// spending ([`Engine::adopt_spend`]), the unmanaged list
    /// ([`Engine::adopt_unmanaged`]), the pauses ([`Engine::adopt_pauses`]) and the
    /// declared events ([`Engine::adopt_events`]).
    pub fn hand_to<P: Provider>(&self, engine: &mut Engine<P>, now: TimestampMs) -> Adopted {
        Adopted {
            spend: engine.adopt_spend(&self.spend, now),
            unmanaged: engine.adopt_unmanaged(&self.unmanaged, now),
            paused: self.paused.as_ref().map(|p| engine.adopt_pauses(p, now)),
            events: self.events.as_ref().map(|e| engine.adopt_events(e, now)),
        }
    }
}

/// The Lease as last seen: who holds it, and its last renewal as written.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    holder: String,
    renew_time: String,
    transitions: u64,
    /// Where the holder's API is, as it wrote it.
    url: String,
}

/// One replica's part in the election.
pub struct Elector {
    conn: Connection,
    lease: String,
    identity: String,
    /// Where this replica's API is, written on the Lease while it holds it.
    url: Option<String>,
    duration: Duration,
    renew_deadline: Duration,
    /// The Lease as last read, and when (by this clock) it last changed.
    seen: Option<(Seen, Instant)>,
    /// When this replica last took or renewed it.
    renewed: Option<Instant>,
    /// What this replica writes on the Lease while it holds it.
    notes: Notes,
    /// What the holder before wrote, when this replica has just taken the lease over.
    handed: Option<Handed>,
}

/// What a holder writes on the Lease for the replica after it, as annotations, and what
/// a replica reads there when it takes the lease over. Apart from the Lease itself, so
/// the handover can be driven without an API server (the `fleet` fuzz target does).
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// This month's spending by workload: this replica's own as it acts, and what the
    /// holder before it wrote, whichever is newer.
    spend: MonthSpends,
    /// The list of unmanaged capacity to write while this replica holds the lease
    /// (`None`: nothing to write yet, what the holder before wrote stays).
    unmanaged: Option<BTreeMap<String, Unmanaged>>,
    /// The same for the pauses in force.
    paused: Option<BTreeMap<String, Pause>>,
    /// The same for the planned events declared through the API.
    events: Option<BTreeMap<String, Vec<PlannedEvent>>>,
}

/// What a replica's published status says for the Lease ([`Noted::of`]).
#[derive(Debug, Clone, Default)]
pub struct Noted {
    /// Each workload's spending this month, and the fleet's under [`FLEET_SPEND_KEY`].
    spend: Vec<(String, MonthSpend)>,
    /// The unmanaged list, the pauses and the declared events, once the replica's engine
    /// has taken over those handed to it.
    lists: Option<Lists>,
}

/// The unmanaged list, the pauses in force and the events declared, by workload.
type Lists = (
    BTreeMap<String, Unmanaged>,
    BTreeMap<String, Pause>,
    BTreeMap<String, Vec<PlannedEvent>>,
);

impl Noted {
    /// What `st` says: the spending always, the lists only while `leading` (its engine
    /// took over the lists handed to it as it took the lease, [`Handed::hand_to`];
    /// until then the handed ones are written on).
    pub fn of(st: &Status, leading: bool) -> Self {
        let fleet = st.fleet.spend.map(|sp| (FLEET_SPEND_KEY.to_string(), sp));
        let spend = st
            .workloads
            .iter()
            .filter_map(|(w, s)| Some((w.clone(), s.spend?)))
            .chain(fleet)
            .collect();
        let lists = leading.then(|| {
            let paused = st
                .workloads
                .iter()
                .filter_map(|(w, s)| Some((w.clone(), s.paused.clone()?)))
                .collect();
            let declared = st
                .workloads
                .iter()
                .filter(|(_, s)| !s.declared.is_empty())
                .map(|(w, s)| (w.clone(), s.declared_events().cloned().collect()))
                .collect();
            (st.unmanaged.clone(), paused, declared)
        });
        Noted { spend, lists }
    }
}

impl Notes {
    /// Notes what this replica's status says ([`Noted::of`]) at `now` (unix ms).
    pub fn note(&mut self, noted: Noted, now: TimestampMs) {
        self.note_spend(noted.spend, now);
        if let Some((list, paused, declared)) = noted.lists {
            self.note_unmanaged(list);
            self.note_paused(paused);
            self.note_events(declared);
        }
    }

    /// Notes this replica's spending this month by workload (its published status), to
    /// write on the Lease while it holds it. Where the holder before it wrote a newer
    /// figure for a workload, that one is kept; other months' than `now`'s are dropped.
    pub fn note_spend(
        &mut self,
        own: impl IntoIterator<Item = (String, MonthSpend)>,
        now: TimestampMs,
    ) {
        let (month, _) = month_bounds(now);
        for (w, s) in own {
            self.merge(w, s);
        }
        self.spend.retain(|_, s| s.month_start >= month);
    }

    /// Notes this replica's list of unmanaged capacity, to write on the Lease while it
    /// holds it, once its engine has taken over the list handed to it: until then the
    /// handed list is written on.
    pub fn note_unmanaged(&mut self, list: BTreeMap<String, Unmanaged>) {
        self.unmanaged = Some(list);
    }

    /// Notes the pauses in force on this replica, to write on the Lease while it holds
    /// it; as [`Notes::note_unmanaged`], once its engine has taken over the pauses
    /// handed to it.
    pub fn note_paused(&mut self, paused: BTreeMap<String, Pause>) {
        self.paused = Some(paused);
    }

    /// Notes the planned events declared through the API on this replica, as
    /// [`Notes::note_paused`] does the pauses.
    pub fn note_events(&mut self, events: BTreeMap<String, Vec<PlannedEvent>>) {
        self.events = Some(events);
    }

    fn merge(&mut self, workload: String, s: MonthSpend) {
        let kept = self.spend.entry(workload).or_insert(s);
        if kept.at < s.at {
            *kept = s;
        }
    }

    /// Writes what is noted into the Lease's annotations: what nothing was noted for
    /// yet, the holder before wrote, and it stays for the next one.
    pub fn write(&self, notes: &mut serde_json::Map<String, Value>) {
        if !self.spend.is_empty() {
            let text = serde_json::to_string(&self.spend).expect("spending as JSON");
            notes.insert(SPEND_ANNOTATION.into(), json!(text));
        }
        if let Some(list) = &self.unmanaged {
            let text = serde_json::to_string(list).expect("unmanaged list as JSON");
            notes.insert(UNMANAGED_ANNOTATION.into(), json!(text));
        }
        if let Some(paused) = &self.paused {
            let text = serde_json::to_string(paused).expect("pauses as JSON");
            notes.insert(PAUSED_ANNOTATION.into(), json!(text));
        }
        if let Some(events) = &self.events {
            let text = serde_json::to_string(events).expect("events as JSON");
            notes.insert(EVENTS_ANNOTATION.into(), json!(text));
        }
    }

    /// Reads what the holder before wrote in the Lease's `annotations`, for this replica
    /// taking the lease over: its spending where newer than this replica's own, and its
    /// lists, written on until this replica's engine has taken them over. A figure that
    /// cannot be read is not taken over.
    pub fn take_over(&mut self, annotations: &Value) -> Handed {
        let note = |key: &str| annotations[key].as_str();
        let h = Handed {
            spend: note(SPEND_ANNOTATION)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
            unmanaged: note(UNMANAGED_ANNOTATION)
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
            paused: note(PAUSED_ANNOTATION).and_then(|t| serde_json::from_str(t).ok()),
            events: note(EVENTS_ANNOTATION).and_then(|t| serde_json::from_str(t).ok()),
        };
        for (w, s) in &h.spend {
            self.merge(w.clone(), *s);
        }
        self.unmanaged = Some(h.unmanaged.clone());
        if h.paused.is_some() {
            self.paused = h.paused.clone();
        }
        if h.events.is_some() {
            self.events = h.events.clone();
        }
        h
    }
}

/// How a round went.
#[derive(Debug, Clone, PartialEq)]
pub struct Round {
    /// Whether this replica may act until the next round.
    pub leading: bool,
    /// Who holds the lease, as far as this replica knows (empty: nobody, or not known).
    pub holder: String,
    /// Where the holder's API is, as it advertised it (empty: not advertised, or not
    /// known).
    pub holder_url: String,
    /// Why the API server could not be asked, or refused.
    pub error: Option<String>,
    /// On the round that took the lease over: what the holder before wrote.
    pub handed: Option<Handed>,
}

/// RFC 3339 with microseconds, as Kubernetes writes `MicroTime`.
fn micro_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

impl Elector {
    /// An elector for `le`'s Lease on the API server `kube` names (what it leaves out
    /// taken from the cluster prescale runs in), as `identity` (unique per replica: the
    /// pod's name and a random suffix).
    pub fn new(
        le: &LeaderElectionConfig,
        kube: &KubernetesProviderConfig,
        identity: String,
        env: impl Fn(&str) -> Option<String>,
        sa_dir: &std::path::Path,
    ) -> Result<Self, String> {
        // A call may not outlast the time between two tries.
        let timeout = Duration::from_secs(le.retry_period_s.max(1));
        let conn = connect(
            &crate::kube::settings(kube, timeout),
            "providers.kubernetes",
            env,
            sa_dir,
        )?;
        Ok(Self {
            conn,
            lease: le.lease.clone(),
            identity,
            url: le
                .advertise_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_string()),
            duration: Duration::from_secs(le.lease_duration_s),
            renew_deadline: Duration::from_secs(le.renew_deadline_s),
            seen: None,
            renewed: None,
            notes: Notes::default(),
            handed: None,
        })
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// `namespace/name` of the Lease.
    pub fn lease(&self) -> String {
        format!("{}/{}", self.conn.namespace, self.lease)
    }

    fn collection(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.conn.namespace
        )
    }

    fn path(&self) -> String {
        format!("{}/{}", self.collection(), self.lease)
    }

    fn spec(&self, acquire: &str, renew: &str, transitions: u64) -> Value {
        json!({
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration.as_secs(),
            "acquireTime": acquire,
            "renewTime": renew,
            "leaseTransitions": transitions,
        })
    }

    /// One try to take or renew the lease.
    pub fn round(&mut self) -> Round {
        let now = Instant::now();
        match self.take_or_renew(now, true) {
            Ok(holder) => {
                let leading = holder == self.identity;
                self.renewed = leading.then_some(now);
                Round {
                    leading,
                    holder_url: self.url_of(&holder),
                    holder,
                    error: None,
                    handed: self.handed.take(),
                }
            }
            Err(e) => {
                // The holder acts on until its renew deadline, then stops: by then
                // another may soon take the lease over.
                let leading = self
                    .renewed
                    .is_some_and(|t| now.duration_since(t) < self.renew_deadline);
                if !leading {
                    self.renewed = None;
                }
                let holder = self
                    .seen
                    .as_ref()
                    .map(|(s, _)| s.holder.clone())
                    .unwrap_or_default();
                Round {
                    leading,
                    holder_url: self.url_of(&holder),
                    holder,
                    error: Some(format!(
                        "lease {}: {e}{}",
                        self.lease(),
                        hint(&e, "providers.kubernetes", RIGHTS)
                    )),
                    handed: None,
                }
            }
        }
    }

    /// Renews the lease now, writing the notes as they stand, if this replica holds it:
    /// so what an operator just asked of the holder (a pause, a resume, an event
    /// declared or cancelled, a release) is on the Lease for the replica taking over
    /// before it is answered, not only at the next round. It never takes the lease over.
    /// `Err` says why it was not written: this replica does not hold the lease, or the
    /// API server could not be asked or refused.
    pub fn renew_now(&mut self) -> Result<(), String> {
        if self.renewed.is_none() {
            return Err(format!(
                "lease {}: this replica does not hold it",
                self.lease()
            ));
        }
        let now = Instant::now();
        match self.take_or_renew(now, false) {
            Ok(holder) if holder == self.identity => {
                self.renewed = Some(now);
                Ok(())
            }
            Ok(holder) => {
                self.renewed = None;
                Err(format!(
                    "lease {}: held by {} now, not by this replica",
                    self.lease(),
                    if holder.is_empty() { "nobody" } else { &holder }
                ))
            }
            Err(e) => Err(format!(
                "lease {}: {e}{}",
                self.lease(),
                hint(&e, "providers.kubernetes", RIGHTS)
            )),
        }
    }

    /// What this replica writes on the Lease while it holds it.
    pub fn notes(&mut self) -> &mut Notes {
        &mut self.notes
    }

    /// Where `holder` said its API is, if the Lease as last seen is its.
    fn url_of(&self, holder: &str) -> String {
        match &self.seen {
            Some((s, _)) if !holder.is_empty() && s.holder == holder => s.url.clone(),
            _ => String::new(),
        }
    }

    /// The Lease's metadata with this replica's URL annotated (or none, so a former
    /// holder's is not taken for this one's).
    fn annotate(&self, metadata: &mut Value) {
        if !metadata["annotations"].is_object() {
            metadata["annotations"] = json!({});
        }
        let notes = metadata["annotations"]
            .as_object_mut()
            .expect("annotations object");
        match &self.url {
            Some(u) => {
                notes.insert(URL_ANNOTATION.into(), json!(u));
            }
            None => {
                notes.remove(URL_ANNOTATION);
            }
        }
        self.notes.write(notes);
    }

    /// Takes (where `take`) or renews the lease if it may; returns who holds it
    /// afterwards.
    fn take_or_renew(&mut self, now: Instant, take: bool) -> Result<String, ApiError> {
        let stamp = micro_time(SystemTime::now());
        let current = match self.conn.get(&self.path()) {
            Err(ApiError::Status { code: 404, .. }) if !take => return Ok(String::new()),
            Err(ApiError::Status { code: 404, .. }) => {
                let mut lease = json!({
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.lease, "namespace": self.conn.namespace},
                    "spec": self.spec(&stamp, &stamp, 0),
                });
                self.annotate(&mut lease["metadata"]);
                return match self.conn.send("POST", &self.collection(), &lease) {
                    Ok(_) => {
                        self.saw(self.identity.clone(), stamp, 0, self.own_url(), now);
                        Ok(self.identity.clone())
                    }
                    // Another replica created it first: it holds it.
                    Err(ApiError::Status { code: 409, .. }) => Ok(String::new()),
                    Err(e) => Err(e),
                };
            }
            other => other?,
        };
        let spec = &current["spec"];
        let text = |k: &str| spec[k].as_str().unwrap_or_default().to_string();
        let holder = text("holderIdentity");
        let transitions = spec["leaseTransitions"].as_u64().unwrap_or(0);
        let duration = spec["leaseDurationSeconds"]
            .as_u64()
            .map_or(self.duration, Duration::from_secs);
        let url = current["metadata"]["annotations"][URL_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let since = self.saw(holder.clone(), text("renewTime"), transitions, url, now);
        let mine = holder == self.identity;
        let free = holder.is_empty() || now.duration_since(since) > duration;
        if !mine && (!free || !take) {
            return Ok(holder);
        }
        // Taking over: the holder before's spending this month, newer than this
        // replica's own where it is, is what this one goes on from.
        let handed = (!mine).then(|| self.notes.take_over(&current["metadata"]["annotations"]));
        let mut lease = current.clone();
        lease["spec"] = if mine {
            self.spec(&text("acquireTime"), &stamp, transitions)
        } else {
            self.spec(&stamp, &stamp, transitions + 1)
        };
        self.annotate(&mut lease["metadata"]);
        match self.conn.send("PUT", &self.path(), &lease) {
            Ok(_) => {
                let t = if mine { transitions } else { transitions + 1 };
                self.saw(self.identity.clone(), stamp, t, self.own_url(), now);
                self.handed = handed;
                Ok(self.identity.clone())
            }
            // Changed since it was read: another replica renewed or took it.
            Err(ApiError::Status { code: 409, .. }) if !mine => Ok(holder),
            Err(e) => Err(e),
        }
    }

    fn own_url(&self) -> String {
        self.url.clone().unwrap_or_default()
    }

    /// Records what the Lease says; returns when it last changed.
    fn saw(
        &mut self,
        holder: String,
        renew_time: String,
        transitions: u64,
        url: String,
        now: Instant,
    ) -> Instant {
        let seen = Seen {
            holder,
            renew_time,
            transitions,
            url,
        };
        match &self.seen {
            Some((s, at)) if *s == seen => *at,
            _ => {
                self.seen = Some((seen, now));
                now
            }
        }
    }

    /// Gives the lease up if this replica holds it (a clean stop): another takes it at
    /// its next try instead of after `lease_duration_s`.
    pub fn release(&mut self) -> Result<(), String> {
        if self.renewed.take().is_none() {
            return Ok(());
        }
        let fail = |e: ApiError| format!("lease {}: {e}", self.lease());
        let mut current = self.conn.get(&self.path()).map_err(fail)?;
        if current["spec"]["holderIdentity"].as_str() != Some(&self.identity) {
            return Ok(());
        }
        let stamp = micro_time(SystemTime::now());
        current["spec"]["holderIdentity"] = json!("");
        current["spec"]["renewTime"] = json!(stamp);
        if let Some(notes) = current["metadata"]["annotations"].as_object_mut() {
            notes.remove(URL_ANNOTATION);
        }
        self.conn
            .send("PUT", &self.path(), &current)
            .map(|_| ())
            .map_err(fail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::PauseScope;

    #[test]
    fn notes_written_by_one_holder_are_what_the_next_takes_over() {
        let now = 1_800_000_000_000;
        let (month, _) = month_bounds(now);
        let spend = |spent: f64, at: TimestampMs| MonthSpend {
            month_start: month_bounds(at).0,
            spent,
            at,
        };
        let pause = Pause {
            scope: PauseScope::All,
            since: now - 60_000,
            until: now + 3_600_000,
            reason: "incident".into(),
        };
        // Nothing written yet: a replica taking over is handed no lists, not empty ones.
        let mut annotations = serde_json::Map::new();
        let mut next = Notes::default();
        let h = next.take_over(&Value::Object(annotations.clone()));
        assert_eq!(h, Handed::default());
        // A holder before its lists are noted writes its spending only.
        let mut holder = Notes::default();
        holder.note_spend([("web".to_string(), spend(4.0, now))], now);
        holder.write(&mut annotations);
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            [SPEND_ANNOTATION],
            "{annotations:?}"
        );
        holder.note_paused([("web".to_string(), pause.clone())].into());
        holder.note_unmanaged(BTreeMap::new());
        holder.note_events(BTreeMap::new());
        holder.write(&mut annotations);
        // The next one keeps its own newer figure, and writes on what it was handed.
        next.note_spend([("web".to_string(), spend(5.0, now + 1))], now);
        next.note_spend([("last month".to_string(), spend(9.0, month - 1))], now);
        assert!(
            !next.spend.contains_key("last month"),
            "other months' dropped"
        );
        let h = next.take_over(&Value::Object(annotations.clone()));
        assert_eq!(h.paused, Some([("web".to_string(), pause)].into()));
        assert_eq!(h.events, Some(BTreeMap::new()));
        assert_eq!(h.spend["web"].spent, 4.0);
        let mut written = serde_json::Map::new();
        next.write(&mut written);
        assert_eq!(written[PAUSED_ANNOTATION], annotations[PAUSED_ANNOTATION]);
        let spent: MonthSpends =
            serde_json::from_str(written[SPEND_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(spent["web"].spent, 5.0, "its own, newer");
        // A list that cannot be read is not taken over.
        annotations.insert(PAUSED_ANNOTATION.into(), json!("{\"web\": 3"));
        let h = Notes::default().take_over(&Value::Object(annotations));
        assert_eq!(h.paused, None);
    }
}
