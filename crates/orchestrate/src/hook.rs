//! Hook providers: prescale's actions carried out by a command (`exec`) or an HTTP
//! endpoint (`webhook`) of the user's, so it can drive anything that has a CLI or an API
//! (`kubectl scale`, a cloud's instance groups, a ticket queue).
//!
//! Each action goes out as one JSON object ([`Request::Action`]) carrying its idempotency
//! key and the instance count the workload's tier should have afterwards; the hook
//! answers success (exit 0 / HTTP 2xx) or failure (anything else, with a reason on stderr
//! or in the body). A call that takes longer than the timeout is killed and counted as a
//! failure, so a hung hook never stalls the control loop for long; failures are logged as
//! decisions and retried by the next pass with a new plan.
//!
//! What a workload holds comes from the hook itself when `report_state` is on (a
//! [`Request::State`] at every pass, answered with counts per workload and tier: the
//! provider's truth, which survives prescale's restarts, and which shows capacity lost
//! without prescale asking as events). Otherwise prescale keeps its own book of what it
//! asked for, each instance ready after its tier's lead time, saved across restarts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prescale_core::model::TierCount;
use prescale_core::{ActionKind, Allocation, Tier, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::provider::{Provider, ProviderError, ProviderEvent, StateRead};

/// How many recent action keys are remembered, so a resent action is not sent twice.
const REMEMBERED_KEYS: usize = 4096;

/// The most instances a state report is believed for one workload's tier: more is a
/// hook counting something else (bytes, a timestamp, -1 as an unsigned number), and
/// would be priced and planned around as if real.
const MAX_REPORTED: u32 = 1_000_000;

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A program and its arguments, run without a shell; the request on stdin and in
    /// `PRESCALE_*` variables, the answer on stdout.
    Exec(Vec<String>),
    /// An `http://` or `https://` URL requests are POSTed to, with an optional bearer
    /// token.
    Webhook {
        /// The URL.
        url: String,
        /// Sent as `Authorization: Bearer TOKEN`.
        token: Option<String>,
        /// The client, with its time-out and TLS settings
        /// ([`prescale_collect::http::agent`]).
        agent: ureq::Agent,
    },
    /// Nowhere: actions are recommendations, recorded in prescale's book (each instance
    /// ready after its tier's lead time) so plans go on as if they had been carried out,
    /// and nothing outside prescale changes.
    Record,
    /// A Kubernetes API server: each workload tier is an object whose replicas are set
    /// ([`crate::kube`]).
    Kubernetes(Box<crate::kube::KubeApi>),
}

/// What prescale asks a hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Carry out one action.
    Action {
        /// Idempotency key: the same key twice must change nothing the second time.
        key: String,
        /// The workload.
        workload: String,
        /// The tier.
        tier: String,
        /// `provision` or `deprovision`.
        kind: ActionKind,
        /// Instances added or removed.
        count: u32,
        /// Instances of this tier the workload held as prescale last read them (with
        /// `report_state`, the hook's last report and what was applied since; without
        /// it, prescale's own book), which `instances_after` is counted from: a hook may
        /// carry the action out only if it still holds that many, as the Kubernetes
        /// provider does (`kubectl scale --current-replicas`).
        instances_before: u32,
        /// Instances of this tier the workload should hold once this is done.
        instances_after: u32,
        /// When prescale decided it (ms since the epoch).
        at: TimestampMs,
    },
    /// Report what each workload holds.
    State {
        /// The workloads prescale manages.
        workloads: Vec<String>,
        /// The tiers of the catalog.
        tiers: Vec<String>,
    },
}

/// A hook's answer to a state request: workload -> tier -> counts.
pub type StateReport = BTreeMap<String, BTreeMap<String, TierCount>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Book {
    /// (workload, tier) -> ready times of the instances asked for.
    instances: BTreeMap<String, BTreeMap<String, Vec<TimestampMs>>>,
    applied: VecDeque<String>,
}

/// A provider whose actions a command or an HTTP endpoint carries out.
pub struct HookProvider {
    name: String,
    transport: Transport,
    timeout: Duration,
    report_state: bool,
    tiers: BTreeMap<String, Tier>,
    workloads: Vec<String>,
    /// Workloads no longer configured whose capacity the engine follows: asked about in
    /// state requests too ([`Provider::follow`]).
    unmanaged: Vec<String>,
    book: Book,
    /// The hook's last state report, with what was applied since added.
    reported: Option<StateReport>,
    /// How the last state request went.
    read: StateRead,
    clock: TimestampMs,
}

impl HookProvider {
    /// A hook provider for `tiers` and `workloads`.
    pub fn new(
        transport: Transport,
        timeout: Duration,
        report_state: bool,
        tiers: &[Tier],
        workloads: Vec<String>,
    ) -> Self {
        let name = match &transport {
            Transport::Exec(_) => "exec",
            Transport::Webhook { .. } => "webhook",
            Transport::Kubernetes(_) => "kubernetes",
            Transport::Record => "recommend",
        };
        Self {
            name: name.into(),
            transport,
            timeout,
            report_state,
            tiers: tiers.iter().map(|t| (t.name.clone(), t.clone())).collect(),
            workloads,
            unmanaged: Vec::new(),
            book: Book::default(),
            reported: None,
            read: StateRead::default(),
            clock: 0,
        }
    }

    /// Sends one request; returns the hook's answer (stdout or the response body).
    pub fn call(&self, req: &Request) -> Result<String, ProviderError> {
        let body = serde_json::to_string(req).expect("requests serialize");
        match &self.transport {
            Transport::Exec(argv) => run(argv, req, &body, self.timeout),
            Transport::Webhook { url, token, agent } => post(agent, url, token.as_deref(), &body),
            Transport::Kubernetes(api) => api.call(req),
            // Only actions reach it: with nothing outside, there is no state to ask.
            Transport::Record => Ok(String::new()),
        }
    }

    fn held(&self, workload: &str, tier: &str, now: TimestampMs) -> TierCount {
        if let Some(r) = &self.reported {
            return r
                .get(workload)
                .and_then(|t| t.get(tier))
                .copied()
                .unwrap_or_default();
        }
        let ready_at = self.book.instances.get(workload).and_then(|t| t.get(tier));
        let mut c = TierCount::default();
        for &r in ready_at.into_iter().flatten() {
            if r <= now {
                c.ready += 1;
            } else {
                c.pending += 1;
            }
        }
        c
    }

    /// Instances of `tier` held by every workload.
    fn tier_total(&self, tier: &str, now: TimestampMs) -> u32 {
        let mut names: Vec<&String> = self.workloads.iter().collect();
        if let Some(r) = &self.reported {
            names.extend(r.keys());
        }
        names.extend(self.book.instances.keys());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|w| self.held(w, tier, now).total())
            .fold(0, u32::saturating_add)
    }

    /// `Err` saying what to fix where `report` counts more instances of a tier than
    /// [`MAX_REPORTED`].
    fn check_report(&self, report: &StateReport) -> Result<(), String> {
        for (w, tiers) in report {
            for (t, c) in tiers {
                let most = c.ready.max(c.pending).max(c.ending).max(c.total());
                if most > MAX_REPORTED {
                    return Err(format!(
                        "the {} provider's state says {w}/{t} holds {most} instances, more than the {MAX_REPORTED} any tier is believed to hold: check what the hook counts",
                        self.name
                    ));
                }
            }
        }
        Ok(())
    }

    fn record(
        &mut self,
        workload: &str,
        tier: &Tier,
        kind: ActionKind,
        count: u32,
        now: TimestampMs,
    ) {
        let list = self
            .book
            .instances
            .entry(workload.to_string())
            .or_default()
            .entry(tier.name.clone())
            .or_default();
        match kind {
            ActionKind::Provision => list.extend(std::iter::repeat_n(
                now + tier.lead_time_s as i64 * 1000,
                count as usize,
            )),
            ActionKind::Deprovision => {
                // Pending instances go first, then the newest.
                list.sort_unstable();
                for _ in 0..count.min(list.len() as u32) {
                    list.pop();
                }
            }
        }
        if let Some(r) = &mut self.reported {
            let c = r
                .entry(workload.to_string())
                .or_default()
                .entry(tier.name.clone())
                .or_default();
            match kind {
                ActionKind::Provision => c.pending = c.pending.saturating_add(count),
                ActionKind::Deprovision => {
                    let from_pending = count.min(c.pending);
                    c.pending -= from_pending;
                    c.ready = c.ready.saturating_sub(count - from_pending);
                }
            }
        }
    }
}

impl Provider for HookProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn acts(&self) -> bool {
        !matches!(self.transport, Transport::Record)
    }

    fn apply(&mut self, a: &prescale_core::Action, now: TimestampMs) -> Result<(), ProviderError> {
        if self.book.applied.contains(&a.key) {
            return Ok(());
        }
        let tier = crate::provider::tier_of(&self.tiers, &a.tier)?;
        let held = self.held(&a.workload, &a.tier, now).total();
        let after = match a.kind {
            ActionKind::Provision => held.saturating_add(a.count),
            ActionKind::Deprovision => held.saturating_sub(a.count),
        };
        // max_instances bounds the tier across every workload, as the simulated cloud's.
        if a.kind == ActionKind::Provision {
            crate::provider::within_max(&tier, self.tier_total(&a.tier, now), a.count)?;
        }
        self.call(&Request::Action {
            key: a.key.clone(),
            workload: a.workload.clone(),
            tier: a.tier.clone(),
            kind: a.kind,
            count: a.count,
            instances_before: held,
            instances_after: after,
            at: a.at,
        })?;
        self.record(&a.workload, &tier, a.kind, a.count, now);
        self.book.applied.push_back(a.key.clone());
        while self.book.applied.len() > REMEMBERED_KEYS {
            self.book.applied.pop_front();
        }
        Ok(())
    }

    fn allocation(&self, workload: &str, now: TimestampMs) -> Allocation {
        let mut a = Allocation::default();
        for t in self.tiers.keys() {
            let c = self.held(workload, t, now);
            if c.total() > 0 {
                a.tiers.insert(t.clone(), c);
            }
        }
        a
    }

    fn holders(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        for (w, tiers) in &self.book.instances {
            if tiers.values().any(|v| !v.is_empty()) {
                names.insert(w.clone());
            }
        }
        // Only the catalog's tiers: what a report says of others is neither priced,
        // planned on nor released.
        for (w, tiers) in self.reported.iter().flatten() {
            if tiers
                .iter()
                .any(|(t, c)| self.tiers.contains_key(t) && c.total() > 0)
            {
                names.insert(w.clone());
            }
        }
        names.into_iter().collect()
    }

    fn follow(&mut self, unmanaged: &[String]) {
        self.unmanaged = unmanaged.to_vec();
    }

    fn advance(&mut self, now: TimestampMs) -> Vec<ProviderEvent> {
        self.clock = now;
        if !self.report_state {
            return Vec::new();
        }
        let req = Request::State {
            workloads: self
                .workloads
                .iter()
                .chain(
                    self.unmanaged
                        .iter()
                        .filter(|u| !self.workloads.contains(u)),
                )
                .cloned()
                .collect(),
            tiers: self.tiers.keys().cloned().collect(),
        };
        let report = self.call(&req).and_then(|body| {
            let r = serde_json::from_str::<StateReport>(&body).map_err(|e| {
                ProviderError::Unavailable(format!(
                    "the {} provider's state is not {{\"workload\": {{\"tier\": {{\"ready\": N, \"pending\": N}}}}}}: {e}",
                    self.name
                ))
            })?;
            self.check_report(&r).map_err(ProviderError::Unavailable)?;
            Ok(r)
        });
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                // Keep the last report (with what was applied since): better than none.
                tracing::warn!("{}; keeping the last known state", e);
                self.read.unread_since.get_or_insert(now);
                self.read.error = Some(match e {
                    ProviderError::Unavailable(why) | ProviderError::Refused(why) => why,
                    e => e.to_string(),
                });
                return Vec::new();
            }
        };
        self.read = StateRead {
            read_at: Some(now),
            unread_since: None,
            error: None,
        };
        let mut events = Vec::new();
        if let Some(before) = &self.reported {
            for (w, tiers) in before {
                for (t, c) in tiers {
                    let now_total = report
                        .get(w)
                        .and_then(|x| x.get(t))
                        .map_or(0, TierCount::total);
                    if now_total < c.total() {
                        events.push(ProviderEvent {
                            at: now,
                            workload: w.clone(),
                            tier: t.clone(),
                            what: format!(
                                "the {} provider reports {now_total} instances where {} were held, without prescale asking",
                                self.name,
                                c.total()
                            ),
                        });
                    }
                }
            }
        }
        self.reported = Some(report);
        events
    }

    fn state_read(&self) -> Option<StateRead> {
        self.report_state.then(|| self.read.clone())
    }

    fn record(&self, decision: &prescale_core::Decision) {
        if let Transport::Kubernetes(api) = &self.transport {
            api.record(decision);
        }
    }

    fn save(&self) -> Option<serde_json::Value> {
        // With report_state the hook holds the truth; otherwise the book is all there is.
        (!self.report_state).then(|| serde_json::to_value(&self.book).expect("book serializes"))
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), ProviderError> {
        self.book = serde_json::from_value(state).map_err(|e| {
            ProviderError::Unavailable(format!(
                "saved {} provider state unreadable: {e}",
                self.name
            ))
        })?;
        Ok(())
    }
}

/// Runs the program with the request on stdin and in `PRESCALE_*` variables, within
/// `timeout`.
fn run(
    argv: &[String],
    req: &Request,
    body: &str,
    timeout: Duration,
) -> Result<String, ProviderError> {
    let program = &argv[0];
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match req {
        Request::Action {
            key,
            workload,
            tier,
            kind,
            count,
            instances_before,
            instances_after,
            ..
        } => {
            let kind = match kind {
                ActionKind::Provision => "provision",
                ActionKind::Deprovision => "deprovision",
            };
            cmd.env("PRESCALE_TYPE", "action")
                .env("PRESCALE_KEY", key)
                .env("PRESCALE_WORKLOAD", workload)
                .env("PRESCALE_TIER", tier)
                .env("PRESCALE_KIND", kind)
                .env("PRESCALE_COUNT", count.to_string())
                .env("PRESCALE_INSTANCES_BEFORE", instances_before.to_string())
                .env("PRESCALE_INSTANCES_AFTER", instances_after.to_string());
        }
        Request::State { workloads, tiers } => {
            cmd.env("PRESCALE_TYPE", "state")
                .env("PRESCALE_WORKLOADS", workloads.join(" "))
                .env("PRESCALE_TIERS", tiers.join(" "));
        }
    }
    let mut child = cmd.spawn().map_err(|e| {
        ProviderError::Unavailable(format!(
            "cannot run {program}: {e}; check providers.exec.command"
        ))
    })?;
    let mut stdin = child.stdin.take().expect("piped");
    let body = body.to_string();
    // Write from a thread: a hook that does not read stdin must not block us.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(body.as_bytes());
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProviderError::Unavailable(format!(
                    "{program} did not finish within {} s and was killed",
                    timeout.as_secs_f64()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(ProviderError::Unavailable(format!(
                    "waiting for {program}: {e}"
                )))
            }
        }
    };
    let _ = writer.join();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        let why = err.trim();
        let why = if why.is_empty() { out.trim() } else { why };
        Err(ProviderError::Refused(format!(
            "{program} exited with {status}: {}",
            if why.is_empty() { "(no output)" } else { why }
        )))
    }
}

/// POSTs the request as JSON with `agent` (which holds the time-out and TLS settings).
fn post(
    agent: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    body: &str,
) -> Result<String, ProviderError> {
    let mut req = agent.post(url).header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req
        .send(body)
        .map_err(|e| ProviderError::Unavailable(format!("POST {url}: {e}")))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .unwrap_or_default();
    if status.is_success() {
        Ok(text)
    } else {
        let why = text.trim();
        Err(ProviderError::Refused(format!(
            "POST {url}: HTTP {status}: {}",
            if why.is_empty() { "(empty body)" } else { why }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::config::Config;
    use prescale_core::Action;
    use std::os::unix::fs::PermissionsExt;

    /// A hook script in `dir`: appends each request (stdin, then the action's env) to
    /// `calls.log`; answers a state request with `state.json`; fails or hangs on demand.
    fn script(dir: &std::path::Path) -> Vec<String> {
        let path = dir.join("hook.sh");
        std::fs::write(
            &path,
            r#"#!/bin/sh
cd "$(dirname "$0")"
body=$(cat)
echo "$body $PRESCALE_KIND $PRESCALE_COUNT $PRESCALE_INSTANCES_BEFORE $PRESCALE_INSTANCES_AFTER" >> calls.log
[ -f hang ] && sleep 5
if [ -f fail ]; then echo "quota exceeded in region x" >&2; exit 3; fi
[ "$PRESCALE_TYPE" = state ] && cat state.json
exit 0
"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        vec![path.display().to_string()]
    }

    fn action(key: &str, kind: ActionKind, count: u32) -> Action {
        Action {
            key: key.into(),
            workload: "web".into(),
            tier: "standard".into(),
            kind,
            count,
            at: 5,
        }
    }

    fn provider(dir: &std::path::Path, report: bool, timeout_s: u64) -> HookProvider {
        HookProvider::new(
            Transport::Exec(script(dir)),
            Duration::from_secs(timeout_s),
            report,
            &Config::default().tiers,
            vec!["web".into()],
        )
    }

    /// An engine for `c` (training inline) on a reporting exec hook in `dir` whose first
    /// state report is `state`, over a store in `dir` holding `demand(minute)` for
    /// `minutes` of the first workload's demand.
    fn engine_on_hook(
        dir: &std::path::Path,
        c: &Config,
        state: &str,
        minutes: std::ops::Range<i64>,
        demand: impl Fn(i64) -> f64,
    ) -> (crate::Engine<HookProvider>, prescale_store::Store) {
        use prescale_core::{Sample, SeriesKey};
        use prescale_store::{Durability, Store};
        let store = Store::open(&dir.join("data"), Durability::Buffered).unwrap();
        let key = SeriesKey::parse(&c.workloads[0].demand).unwrap();
        for m in minutes {
            let s = Sample::new(m * 60_000, demand(m)).unwrap();
            store.append(&key, &[s]).unwrap();
        }
        std::fs::write(dir.join("state.json"), state).unwrap();
        let p = HookProvider::new(
            Transport::Exec(script(dir)),
            Duration::from_secs(10),
            true,
            &c.tiers,
            vec![c.workloads[0].name.clone()],
        );
        let mut e = crate::Engine::from_config(c, 0, store.clone(), p);
        e.set_inline_training();
        (e, store)
    }

    fn calls(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn a_release_is_in_the_book_a_restart_reads() {
        // Without report_state the book is all prescale knows of what the hook runs: a
        // restart right after a release must not find the released instances again,
        // listed as unmanaged for a second release.
        use crate::Engine;
        use prescale_store::{Durability, Store};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data"), Durability::Buffered).unwrap();
        let c = Config::default();
        let mut p = provider(dir.path(), false, 10);
        let mut old = action("old", ActionKind::Provision, 3);
        old.workload = "old".into();
        p.apply(&old, 0).unwrap();
        let mut e = Engine::from_config(&c, 0, store.clone(), p);
        e.tick(60_000).unwrap();
        let listed = |e: &Engine<HookProvider>| e.status_handle().read().unwrap().unmanaged.clone();
        assert_eq!(listed(&e)["old"].instances["standard"], 3);
        e.release("old", 61_000).unwrap();
        drop(e);
        let mut again = Engine::from_config(&c, 0, store, provider(dir.path(), false, 10));
        again.restore_status(62_000).unwrap();
        assert_eq!(
            again
                .provider()
                .allocation("old", 62_000)
                .get("standard")
                .total(),
            0
        );
        again.tick(120_000).unwrap();
        assert!(listed(&again).is_empty(), "{:?}", listed(&again));
    }

    #[test]
    fn exec_hooks_get_each_action_once_and_prescale_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = provider(dir.path(), false, 10);
        p.apply(&action("k1", ActionKind::Provision, 3), 0).unwrap();
        p.apply(&action("k1", ActionKind::Provision, 3), 0).unwrap();
        let log = calls(dir.path());
        assert_eq!(log.len(), 1, "the same key is sent once: {log:?}");
        assert!(
            log[0].starts_with(r#"{"type":"action","key":"k1","workload":"web","tier":"standard","kind":"provision","count":3,"instances_before":0,"instances_after":3,"at":5}"#),
            "{}",
            log[0]
        );
        assert!(log[0].ends_with(" provision 3 0 3"), "{}", log[0]);
        // Standard instances are ready after the tier's 180 s lead time.
        let c = |p: &HookProvider, t| p.allocation("web", t).tiers["standard"];
        assert_eq!(
            c(&p, 179_999),
            TierCount {
                ready: 0,
                pending: 3,
                ending: 0
            }
        );
        assert_eq!(
            c(&p, 180_000),
            TierCount {
                ready: 3,
                pending: 0,
                ending: 0
            }
        );
        p.apply(&action("k2", ActionKind::Deprovision, 1), 200_000)
            .unwrap();
        assert!(calls(dir.path())[1].ends_with(" deprovision 1 3 2"));
        assert_eq!(
            c(&p, 200_000),
            TierCount {
                ready: 2,
                pending: 0,
                ending: 0
            }
        );
        // The book survives a restart.
        let saved = p.save().unwrap();
        let mut q = provider(dir.path(), false, 10);
        q.restore(saved).unwrap();
        assert_eq!(
            c(&q, 200_000),
            TierCount {
                ready: 2,
                pending: 0,
                ending: 0
            }
        );
        q.apply(&action("k2", ActionKind::Deprovision, 1), 200_000)
            .unwrap();
        assert_eq!(calls(dir.path()).len(), 2, "remembered across the restart");
    }

    #[test]
    fn a_tiers_maximum_counts_every_workloads_instances() {
        let dir = tempfile::tempdir().unwrap();
        let mut tiers = Config::default().tiers;
        for t in &mut tiers {
            t.max_instances = 5;
        }
        let mut p = HookProvider::new(
            Transport::Exec(script(dir.path())),
            Duration::from_secs(10),
            false,
            &tiers,
            vec!["web".into(), "batch".into()],
        );
        p.apply(&action("k1", ActionKind::Provision, 3), 0).unwrap();
        let mut other = action("k2", ActionKind::Provision, 3);
        other.workload = "batch".into();
        let e = p.apply(&other, 0).unwrap_err();
        assert_eq!(
            e,
            ProviderError::AtCapacity {
                tier: "standard".into(),
                have: 3,
                want: 3,
                max: 5
            }
        );
        other.count = 2;
        p.apply(&other, 0).unwrap();
        assert_eq!(calls(dir.path()).len(), 2, "the refused one was not sent");
    }

    #[test]
    fn a_failing_or_hung_hook_changes_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = provider(dir.path(), false, 1);
        std::fs::write(dir.path().join("fail"), "").unwrap();
        let e = p
            .apply(&action("k1", ActionKind::Provision, 2), 0)
            .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Refused(m) if m.contains("exited with exit status: 3: quota exceeded in region x")),
            "{e}"
        );
        assert!(p.allocation("web", 1_000_000).tiers.is_empty());
        std::fs::remove_file(dir.path().join("fail")).unwrap();
        std::fs::write(dir.path().join("hang"), "").unwrap();
        let t = Instant::now();
        let e = p
            .apply(&action("k1", ActionKind::Provision, 2), 0)
            .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Unavailable(m) if m.contains("did not finish within 1 s")),
            "{e}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "killed at the timeout"
        );
        assert!(p.allocation("web", 1_000_000).tiers.is_empty());
        // Not remembered as applied: the next pass may send it again.
        std::fs::remove_file(dir.path().join("hang")).unwrap();
        p.apply(&action("k1", ActionKind::Provision, 2), 0).unwrap();
        assert_eq!(p.allocation("web", 0).tiers["standard"].pending, 2);
        let mut missing = HookProvider::new(
            Transport::Exec(vec!["/nonexistent/hook".into()]),
            Duration::from_secs(1),
            false,
            &Config::default().tiers,
            vec![],
        );
        let e = missing
            .apply(&action("k", ActionKind::Provision, 1), 0)
            .unwrap_err();
        assert!(
            e.to_string().contains("check providers.exec.command"),
            "{e}"
        );
    }

    #[test]
    fn reported_state_is_the_truth_and_losses_become_events() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        std::fs::write(
            &state,
            r#"{"web": {"standard": {"ready": 4}, "spot": {"ready": 2, "pending": 1}}}"#,
        )
        .unwrap();
        let mut p = provider(dir.path(), true, 10);
        assert!(p.advance(1000).is_empty());
        assert!(calls(dir.path())[0].starts_with(
            r#"{"type":"state","workloads":["web"],"tiers":["high-performance","spot","standard"]}"#
        ));
        let a = p.allocation("web", 1000);
        assert_eq!(
            a.tiers["standard"],
            TierCount {
                ready: 4,
                pending: 0,
                ending: 0
            }
        );
        assert_eq!(
            a.tiers["spot"],
            TierCount {
                ready: 2,
                pending: 1,
                ending: 0
            }
        );
        // What is applied counts at once, until the next report.
        p.apply(&action("k1", ActionKind::Provision, 2), 1000)
            .unwrap();
        // Counted from the report: 4 read, 6 after.
        assert!(calls(dir.path())[1].ends_with(" provision 2 4 6"));
        assert_eq!(
            p.allocation("web", 1000).tiers["standard"],
            TierCount {
                ready: 4,
                pending: 2,
                ending: 0
            }
        );
        // The cloud took two spot instances away: an event, and the report is the truth.
        std::fs::write(
            &state,
            r#"{"web": {"standard": {"ready": 4, "pending": 2}, "spot": {"ready": 1}}}"#,
        )
        .unwrap();
        let ev = p.advance(2000);
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!((ev[0].tier.as_str(), ev[0].at), ("spot", 2000));
        assert!(
            ev[0].what.contains("reports 1 instances where 3 were held"),
            "{}",
            ev[0].what
        );
        assert_eq!(
            p.allocation("web", 2000).tiers["spot"],
            TierCount {
                ready: 1,
                pending: 0,
                ending: 0
            }
        );
        // A broken report keeps the last one.
        std::fs::write(&state, "not json").unwrap();
        assert!(p.advance(3000).is_empty());
        assert_eq!(p.allocation("web", 3000).tiers["standard"].total(), 6);
        assert!(p.save().is_none(), "the hook holds the truth");
        // A workload removed from the configuration that still holds capacity: the
        // engine follows it, so the hook is asked about it too.
        p.follow(&["old".into(), "web".into()]);
        std::fs::write(
            &state,
            r#"{"web": {"standard": {"ready": 6}, "spot": {"ready": 1}}, "old": {"spot": {"ready": 3}}}"#,
        )
        .unwrap();
        assert!(p.advance(4000).is_empty());
        let asked = calls(dir.path()).pop().unwrap();
        assert!(
            asked.starts_with(r#"{"type":"state","workloads":["web","old"],"#),
            "{asked}"
        );
        assert_eq!(p.allocation("old", 4000).tiers["spot"].ready, 3);
        assert_eq!(p.holders(), ["old", "web"]);
        // What a report says of a tier the catalog has not is neither held nor listed
        // (the `hook` fuzz target found a holder listed with nothing to price).
        std::fs::write(
            &state,
            r#"{"web": {"standard": {"ready": 6}}, "other": {"gpu": {"ready": 2}}}"#,
        )
        .unwrap();
        assert_eq!(p.advance(5000).len(), 2, "spot gone from web and old");
        assert_eq!(p.holders(), ["web"]);
        assert!(p.allocation("other", 5000).tiers.is_empty());
    }

    #[test]
    fn a_state_that_cannot_be_read_is_said_when_it_starts_and_when_it_ends() {
        use crate::Engine;
        use prescale_core::DecisionKind;
        use prescale_store::{Durability, Store};
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let store = Store::open(&dir.path().join("data"), Durability::Buffered).unwrap();
        let c = Config::default();
        let host = c.workloads[0].name.clone();
        let mut e = Engine::from_config(&c, 0, store.clone(), provider(dir.path(), true, 10));
        let read = |e: &Engine<HookProvider>| {
            e.status_handle()
                .read()
                .unwrap()
                .provider_state
                .clone()
                .expect("a provider that reads its state says how it went")
        };
        let said = |kind: DecisionKind| -> Vec<String> {
            store
                .decisions(Some(&host), 100)
                .unwrap()
                .into_iter()
                .filter(|d| d.kind == kind && d.action.is_none())
                .map(|d| d.reason)
                .collect()
        };
        std::fs::write(&state, r#"{"host": {"standard": {"ready": 2}}}"#).unwrap();
        e.tick(60_000).unwrap();
        assert_eq!(
            read(&e),
            StateRead {
                read_at: Some(60_000),
                ..StateRead::default()
            }
        );
        // It stops answering: once, an error decision saying what plans go on from.
        std::fs::write(&state, "<html>502</html>").unwrap();
        for t in [120_000, 180_000, 240_000] {
            e.tick(t).unwrap();
        }
        let r = read(&e);
        assert_eq!((r.read_at, r.unread_since), (Some(60_000), Some(120_000)));
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("the exec provider's state is not")),
            "{r:?}"
        );
        let errors = said(DecisionKind::Error);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("the exec provider's state could not be read: the exec provider's state is not {\"workload\": ")
                && errors[0].ends_with("; plans go on from what it said at 1970-01-01T00:01:00Z, with what was applied since, and what changed outside prescale meanwhile is not known, so nothing is removed until it is read again (what plans need is still added)"),
            "{}",
            errors[0]
        );
        // A reload brings a new provider: still unread since the first time.
        e.reconfigure(
            c.tiers.clone(),
            c.workloads.clone(),
            e.interval_ms(),
            provider(dir.path(), true, 10),
            250_000,
        );
        e.tick(300_000).unwrap();
        let r = read(&e);
        assert_eq!((r.read_at, r.unread_since), (Some(60_000), Some(120_000)));
        assert_eq!(said(DecisionKind::Error).len(), 1);
        // Read again: an event, with how long it was not.
        std::fs::write(&state, r#"{"host": {"standard": {"ready": 3}}}"#).unwrap();
        e.tick(360_000).unwrap();
        assert_eq!(
            read(&e),
            StateRead {
                read_at: Some(360_000),
                ..StateRead::default()
            }
        );
        let events = said(DecisionKind::Event);
        assert_eq!(
            events,
            ["the exec provider's state is read again, after 4 min unread (since 1970-01-01T00:02:00Z); plans go on from what it says"]
        );
        // A provider without report_state has no state to read.
        let mut bare = Engine::from_config(&c, 0, store.clone(), provider(dir.path(), false, 10));
        bare.tick(420_000).unwrap();
        assert!(bare
            .status_handle()
            .read()
            .unwrap()
            .provider_state
            .is_none());
    }

    #[test]
    fn nothing_is_removed_while_the_state_cannot_be_read() {
        // Demand falls far below what the hook says is held; with its state read, the
        // plan lets capacity go (each pass again, as this hook's report stays put);
        // from the first pass on which it cannot be read, nothing goes, and the hold
        // says why.
        use prescale_core::{ActionKind, DecisionKind};
        let removals = |readable: bool| -> (usize, Vec<String>) {
            let dir = tempfile::tempdir().unwrap();
            let (mut e, store) = engine_on_hook(
                dir.path(),
                &Config::default(),
                r#"{"host": {"standard": {"ready": 12}}}"#,
                0..300,
                |m| if m < 120 { 40.0 } else { 2.0 },
            );
            e.tick(120 * 60_000).unwrap();
            if !readable {
                std::fs::write(dir.path().join("state.json"), "{\"host\": ").unwrap();
            }
            for m in (125..300).step_by(5) {
                e.tick(m * 60_000).unwrap();
            }
            let decisions = store.decisions(None, 10_000).unwrap();
            let removed = decisions
                .iter()
                .filter(|d| {
                    d.kind == DecisionKind::Act
                        && d.at > 120 * 60_000
                        && d.action
                            .as_ref()
                            .is_some_and(|a| a.kind == ActionKind::Deprovision)
                })
                .count();
            let held = decisions
                .into_iter()
                .filter(|d| d.kind == DecisionKind::Hold)
                .map(|d| d.reason)
                .filter(|r| r.contains("has not been read"))
                .collect();
            (removed, held)
        };
        let (removed, held) = removals(true);
        assert!(removed > 0, "the plan lets capacity go");
        assert!(held.is_empty(), "{held:?}");
        let (removed, held) = removals(false);
        assert_eq!(removed, 0);
        assert!(
            held.first().is_some_and(|h| h.contains("the exec provider's state has not been read since 1970-01-01T02:05:00Z: nothing is removed until it is (spot kept at 6 (plan 3), standard kept at 7 (plan 4))")),
            "{held:?}"
        );
        assert_eq!(held.len(), 1, "said once while it stands: {held:?}");
    }

    #[test]
    fn a_pool_filled_by_a_holder_found_at_this_pass_is_not_asked_for_more() {
        // Someone else's capacity in a tier, found in the hook's report at this pass:
        // the workload's plan leaves the tier alone at once, rather than asking for room
        // the provider then refuses at the tier's maximum (the `hook` fuzz target).
        use prescale_core::DecisionKind;
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        let spot = c.tiers.iter_mut().find(|t| t.name == "spot").unwrap();
        spot.max_instances = 4;
        let (mut e, store) = engine_on_hook(
            dir.path(),
            &c,
            r#"{"stranger": {"spot": {"ready": 4}}}"#,
            0..121,
            |_| 10.0,
        );
        e.tick(121 * 60_000).unwrap();
        let st = e.status_handle().read().unwrap().clone();
        let refused: Vec<String> = store
            .decisions(None, 100)
            .unwrap()
            .into_iter()
            .filter(|d| d.kind == DecisionKind::Error)
            .map(|d| d.reason)
            .collect();
        assert_eq!(refused, Vec::<String>::new());
        assert_eq!(st.errors, 0);
        assert_eq!(st.unmanaged["stranger"].instances["spot"], 4);
        let host = &st.workloads[&c.workloads[0].name];
        assert!(
            host.desired.get("spot").copied().unwrap_or(0) == 0,
            "{host:?}"
        );
        assert!(
            host.desired.get("standard").copied().unwrap_or(0) > 0,
            "{host:?}"
        );
    }

    #[test]
    fn a_report_of_more_instances_than_can_be_is_not_believed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        std::fs::write(&state, r#"{"web": {"standard": {"ready": 4}}}"#).unwrap();
        let mut p = provider(dir.path(), true, 10);
        assert!(p.advance(1000).is_empty());
        // Counts past any real fleet (a u32 overflows when they are added up, and the
        // plan would price billions of instances): the last report stands.
        for bad in [
            r#"{"web": {"standard": {"ready": 4294967295, "pending": 1}}}"#,
            r#"{"web": {"standard": {"ready": 4}, "spot": {"pending": 4000000}}}"#,
            r#"{"old": {"standard": {"ready": 2000000}}}"#,
        ] {
            std::fs::write(&state, bad).unwrap();
            assert!(p.advance(2000).is_empty(), "{bad}");
            let a = p.allocation("web", 2000);
            assert_eq!(a.tiers["standard"].total(), 4, "{bad}");
            assert!(!a.tiers.contains_key("spot"), "{bad}");
            assert_eq!(p.holders(), ["web"], "{bad}");
            let err = p.check_report(&serde_json::from_str(bad).unwrap());
            assert!(
                err.as_ref().is_err_and(|e| e.contains("instances, more than the 1000000 any tier is believed to hold: check what the hook counts")),
                "{bad}: {err:?}"
            );
        }
        // Adding to what was reported never wraps around.
        std::fs::write(&state, r#"{"web": {"standard": {"ready": 1000000}}}"#).unwrap();
        assert!(p.advance(3000).is_empty());
        p.apply(&action("k1", ActionKind::Provision, u32::MAX), 3000)
            .unwrap_err();
        assert_eq!(
            p.allocation("web", 3000).tiers["standard"].total(),
            1_000_000
        );
    }

    #[test]
    fn recommendations_change_nothing_outside_but_are_planned_on() {
        let tiers = Config::default().tiers;
        let lead_ms = tiers
            .iter()
            .find(|t| t.name == "standard")
            .unwrap()
            .lead_time_s as i64
            * 1000;
        let mut p = HookProvider::new(
            Transport::Record,
            Duration::from_secs(1),
            false,
            &tiers,
            vec!["web".into()],
        );
        assert_eq!(p.name(), "recommend");
        assert!(!p.acts());
        p.apply(&action("k1", ActionKind::Provision, 3), 0).unwrap();
        p.apply(&action("k1", ActionKind::Provision, 3), 0).unwrap();
        let c = p.allocation("web", 0).tiers["standard"];
        assert_eq!((c.ready, c.pending), (0, 3));
        assert!(p.advance(lead_ms).is_empty());
        let c = p.allocation("web", lead_ms).tiers["standard"];
        assert_eq!((c.ready, c.pending), (3, 0));
        p.apply(&action("k2", ActionKind::Deprovision, 1), lead_ms)
            .unwrap();
        assert_eq!(p.allocation("web", lead_ms).tiers["standard"].total(), 2);
        // The recommended book survives a restart.
        let saved = p.save().expect("the book is all there is");
        let mut again = HookProvider::new(
            Transport::Record,
            Duration::from_secs(1),
            false,
            &tiers,
            vec!["web".into()],
        );
        again.restore(saved).unwrap();
        assert_eq!(again.allocation("web", lead_ms).tiers["standard"].ready, 2);
        // Actions go through the tier's limits as real ones would.
        let max = tiers
            .iter()
            .find(|t| t.name == "standard")
            .unwrap()
            .max_instances;
        let e = again
            .apply(&action("k3", ActionKind::Provision, max), lead_ms)
            .unwrap_err();
        assert!(matches!(e, ProviderError::AtCapacity { .. }), "{e}");
    }

    #[test]
    fn webhooks_get_the_json_and_the_token_and_non_2xx_is_a_refusal() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for (code, body) in [("200 OK", ""), ("409 Conflict", "busy, try later")] {
                let (mut c, _) = listener.accept().unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read the head, then the body by its length.
                loop {
                    let n = c.read(&mut chunk).unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if rest.len() >= len {
                            seen.push(text);
                            break;
                        }
                    }
                }
                write!(
                    c,
                    "HTTP/1.1 {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
            seen
        });
        let mut p = HookProvider::new(
            Transport::Webhook {
                url: format!("http://{addr}/scale"),
                token: Some("tok".into()),
                agent: prescale_collect::http::agent(
                    Duration::from_secs(5),
                    prescale_collect::http::TlsFiles::default(),
                )
                .unwrap(),
            },
            Duration::from_secs(5),
            false,
            &Config::default().tiers,
            vec!["web".into()],
        );
        p.apply(&action("k1", ActionKind::Provision, 1), 0).unwrap();
        let e = p
            .apply(&action("k2", ActionKind::Provision, 1), 0)
            .unwrap_err();
        assert!(
            matches!(&e, ProviderError::Refused(m) if m.contains("409") && m.contains("busy, try later")),
            "{e}"
        );
        let seen = server.join().unwrap();
        assert!(seen[0].starts_with("POST /scale HTTP/1.1"), "{}", seen[0]);
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("authorization: bearer tok"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].ends_with(r#""count":1,"instances_before":0,"instances_after":1,"at":5}"#),
            "{}",
            seen[0]
        );
        assert!(
            seen[1].contains(r#""instances_before":1,"instances_after":2"#),
            "{}",
            seen[1]
        );
        assert_eq!(p.allocation("web", 0).tiers["standard"].pending, 1);
        // Nobody listening: unavailable.
        let mut gone = HookProvider::new(
            Transport::Webhook {
                url: format!("http://{addr}/scale"),
                token: None,
                agent: prescale_collect::http::agent(
                    Duration::from_secs(2),
                    prescale_collect::http::TlsFiles::default(),
                )
                .unwrap(),
            },
            Duration::from_secs(2),
            false,
            &Config::default().tiers,
            vec![],
        );
        let e = gone
            .apply(&action("k3", ActionKind::Provision, 1), 0)
            .unwrap_err();
        assert!(matches!(e, ProviderError::Unavailable(_)), "{e}");
    }
}
