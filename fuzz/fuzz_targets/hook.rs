//! The control loop over a webhook provider with `report_state` (the hook's state is the
//! truth prescale plans from, as it is for the Kubernetes provider), the hook a stand-in
//! on loopback that keeps its own truth and behaves as the input says: it applies each
//! action or refuses it; its instances come up when the input says; what it holds
//! drifts without prescale asking (someone scales by hand, the cloud takes spot
//! capacity back, a workload prescale never managed holds some of a tier); and its
//! state report is at times unreadable, counts more than can be, names a tier the
//! catalog has not, or leaves a workload out. Over demand samples, passes at any pace,
//! pauses, and reloads of a tier's maximum and the budget.
//!
//! No pass panics or fails; every action the hook accepted is counted as one and every
//! refusal as an error, each logged as an error decision; the provider never refuses
//! an action for a tier's maximum itself (the pools are planned within what the hook
//! reported, so that it does not); a pass while a pause of every change holds sends
//! the hook no action, one while a pause of scale-down holds or the state cannot be
//! read removes nothing; what the workload is asked to hold stays within each tier's
//! `max_instances` in force (or, while a pause holds or the state cannot be read, what
//! it holds); its plan's cost and ready capacity are finite;
//! every action counts `instances_after` from `instances_before`, which is what the
//! hook holds whenever its last report was believed and nothing drifted since;
//! what the status lists as unmanaged is what the provider holds for workloads not
//! configured, and every holder is listed; the status says the state is unread exactly
//! when the pass's report could not be believed. `HOOK_FUZZ_TRACE=1` prints each pass.
#![no_main]
#[path = "common/ops.rs"]
mod ops;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prescale_core::config::Config;
use prescale_core::{PauseScope, SeriesKey, TimestampMs};
use prescale_orchestrate::hook::{HookProvider, Transport};
use prescale_orchestrate::{Engine, Provider};

/// A workload prescale never managed, which the hook may say holds capacity.
const STRANGER: &str = "stranger";

/// The stand-in hook's truth and how it answers.
#[derive(Default)]
struct Hook {
    /// Workload -> tier -> (ready, pending).
    truth: BTreeMap<String, BTreeMap<String, (u32, u32)>>,
    /// How the next actions are answered: 0 applied, 1 HTTP 500, 2 HTTP 409.
    answers: Vec<u8>,
    /// How the next state report is spoiled: 0 not, 1 not JSON, 2 a count past any
    /// fleet, 3 a tier the catalog has not, 4 the configured workload left out.
    reports: Vec<u8>,
    /// Keys applied: the same key twice changes nothing.
    keys: BTreeSet<String>,
    /// Actions taken, refused, and removals taken.
    accepted: u64,
    refused: u64,
    removed: u64,
    /// Actions asked while nothing should have been: counted by the target.
    asked: u64,
    /// Whether the last state report could not be believed (not JSON, or past any
    /// fleet).
    unbelievable: bool,
    /// Whether prescale knows exactly what the configured workload holds: its last
    /// report was believed and named it, and nothing drifted since.
    exact: bool,
    /// An action whose counts were wrong: `instances_after` not `instances_before`
    /// with `count` added or taken, or, while `exact`, `instances_before` not what the
    /// hook holds.
    wrong: Option<String>,
}

impl Hook {
    /// The answer to one request body: (status, body).
    fn answer(&mut self, body: &str) -> (u16, String) {
        let req: serde_json::Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => return (400, format!("not JSON: {e}")),
        };
        match req["type"].as_str() {
            Some("state") => (200, self.report()),
            Some("action") => {
                self.asked += 1;
                let answer = if self.answers.is_empty() {
                    0
                } else {
                    self.answers.remove(0)
                };
                match answer {
                    1 => {
                        self.refused += 1;
                        return (500, "the cloud's API timed out".into());
                    }
                    2 => {
                        self.refused += 1;
                        return (409, "quota exceeded".into());
                    }
                    _ => {}
                }
                self.check_counts(&req);
                self.accepted += 1;
                let key = req["key"].as_str().unwrap_or_default().to_string();
                if !self.keys.insert(key) {
                    return (200, String::new());
                }
                let (w, t) = (
                    req["workload"].as_str().unwrap_or_default(),
                    req["tier"].as_str().unwrap_or_default(),
                );
                let count = req["count"].as_u64().unwrap_or(0) as u32;
                let held = self
                    .truth
                    .entry(w.to_string())
                    .or_default()
                    .entry(t.to_string())
                    .or_default();
                if req["kind"] == "provision" {
                    held.1 += count;
                } else {
                    self.removed += 1;
                    let pending = count.min(held.1);
                    held.1 -= pending;
                    held.0 = held.0.saturating_sub(count - pending);
                }
                (200, String::new())
            }
            _ => (400, "no type".into()),
        }
    }

    /// Notes in `wrong` an action whose counts are not what the hook's truth says they
    /// should be (a hook may carry an action out only if it still holds
    /// `instances_before`).
    fn check_counts(&mut self, req: &serde_json::Value) {
        let n = |k: &str| req[k].as_u64().unwrap_or(u64::MAX);
        let (before, after, count) = (n("instances_before"), n("instances_after"), n("count"));
        let want = if req["kind"] == "provision" {
            before + count
        } else {
            before.saturating_sub(count)
        };
        let (w, t) = (
            req["workload"].as_str().unwrap_or_default(),
            req["tier"].as_str().unwrap_or_default(),
        );
        let holds = self
            .truth
            .get(w)
            .and_then(|tiers| tiers.get(t))
            .map_or(0, |(ready, pending)| u64::from(ready + pending));
        if after != want || (self.exact && w == "host" && before != holds) {
            self.wrong.get_or_insert(format!(
                "{req} while the hook holds {holds} (exact: {})",
                self.exact
            ));
        }
    }

    /// The state report, spoiled as the next of `reports` says.
    fn report(&mut self) -> String {
        let spoil = if self.reports.is_empty() {
            0
        } else {
            self.reports.remove(0)
        };
        self.unbelievable = matches!(spoil, 1 | 2);
        self.exact = matches!(spoil, 0 | 3);
        let mut r = serde_json::Map::new();
        for (w, tiers) in &self.truth {
            let mut t = serde_json::Map::new();
            for (tier, (ready, pending)) in tiers {
                t.insert(
                    tier.clone(),
                    serde_json::json!({"ready": ready, "pending": pending}),
                );
            }
            r.insert(w.clone(), serde_json::Value::Object(t));
        }
        match spoil {
            1 => return "<html>502 Bad Gateway</html>".into(),
            2 => {
                r.insert(
                    STRANGER.into(),
                    serde_json::json!({"standard": {"ready": u32::MAX, "pending": 1}}),
                );
            }
            3 => {
                r.insert(STRANGER.into(), serde_json::json!({"gpu": {"ready": 3}}));
            }
            4 => {
                r.remove("host");
            }
            _ => {}
        }
        serde_json::Value::Object(r).to_string()
    }
}

/// The stand-in hook on loopback, started once for every input: its URL and state.
fn hook() -> &'static (String, Arc<Mutex<Hook>>) {
    static HOOK: OnceLock<(String, Arc<Mutex<Hook>>)> = OnceLock::new();
    HOOK.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let state: Arc<Mutex<Hook>> = Arc::default();
        let s = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let body = loop {
                    let Ok(n) = conn.read(&mut chunk) else { break None };
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if rest.len() >= len {
                            break Some(rest[..len].to_string());
                        }
                    }
                };
                let Some(body) = body else { continue };
                let (code, answer) = s.lock().unwrap().answer(&body);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (url, state)
    })
}

/// A webhook provider reporting its state, on the stand-in hook.
fn provider(c: &Config) -> HookProvider {
    let agent = prescale_collect::http::agent(Duration::from_secs(10), Default::default()).unwrap();
    HookProvider::new(
        Transport::Webhook {
            url: hook().0.clone(),
            token: None,
            agent,
        },
        Duration::from_secs(10),
        true,
        &c.tiers,
        c.workloads.iter().map(|w| w.name.clone()).collect(),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((_dir, store, mut c, ops)) = ops::start(data) else {
        return;
    };
    let name = c.workloads[0].name.clone();
    assert_eq!(
        name, "host",
        "the hook leaves this one out of a spoiled report"
    );
    let shared = hook().1.clone();
    *shared.lock().unwrap() = Hook::default();
    let mut e = Engine::from_config(&c, 0, store.clone(), provider(&c));
    e.set_inline_training();
    let key = SeriesKey::parse(&c.workloads[0].demand).unwrap();
    let mut now: TimestampMs = 1_800_000_000_000;
    let mut paused: Option<(PauseScope, TimestampMs)> = None;
    let trace = std::env::var_os("HOOK_FUZZ_TRACE").is_some();
    for op in ops.chunks_exact(3).take(200) {
        match op[0] % 8 {
            // A sample, up to ten minutes late.
            0 | 1 => ops::sample(&store, &key, now, op),
            // The hook's next answers to actions.
            2 => shared
                .lock()
                .unwrap()
                .answers
                .extend([op[1] % 3, op[2] % 3, op[1] / 3 % 3]),
            // What the hook holds drifts, or comes up.
            3 => {
                let mut h = shared.lock().unwrap();
                let tiers = ["spot", "standard", "high-performance"];
                let tier = tiers[usize::from(op[1] % 3)];
                let who = if op[1] / 3 % 2 == 0 { "host" } else { STRANGER };
                match op[1] / 6 % 4 {
                    // Every instance asked for comes up.
                    0 => {
                        for held in h.truth.values_mut().flat_map(|t| t.values_mut()) {
                            *held = (held.0 + held.1, 0);
                        }
                    }
                    // Someone scales by hand.
                    1 => {
                        h.exact = false;
                        h.truth
                            .entry(who.into())
                            .or_default()
                            .insert(tier.into(), (u32::from(op[2] % 60), 0));
                    }
                    // The cloud takes spot back.
                    2 => {
                        h.exact = false;
                        for held in h.truth.values_mut().filter_map(|t| t.get_mut("spot")) {
                            held.0 = held.0 * u32::from(op[2] % 4) / 4;
                        }
                    }
                    // What the stranger held is gone.
                    _ => {
                        h.truth.remove(STRANGER);
                    }
                }
            }
            // The next state reports, spoiled or not.
            4 => shared
                .lock()
                .unwrap()
                .reports
                .extend([op[1] % 5, op[2] % 5]),
            // A pause of up to four hours, or a resume.
            5 => paused = ops::pause_or_resume(&mut e, &name, now, op),
            // A reload: one tier's maximum, and the budget.
            6 => {
                ops::reload_settings(&mut c, op);
                let interval = e.interval_ms();
                e.reconfigure(
                    c.tiers.clone(),
                    c.workloads.clone(),
                    interval,
                    provider(&c),
                    now,
                );
            }
            // A pass, 15 s to an hour after the last.
            _ => {
                let (asked, removed) = {
                    let h = shared.lock().unwrap();
                    (h.asked, h.removed)
                };
                now += 15_000 * (1 + i64::from(u16::from_le_bytes([op[1], op[2]]) % 240));
                e.tick(now).unwrap();
                let st = e.status_handle().read().unwrap().clone();
                let h = shared.lock().unwrap();
                if trace {
                    let ws = &st.workloads[&name];
                    eprintln!(
                        "{now} demand {:?} held {:?} desired {:?} truth {:?} unmanaged {:?}: {}",
                        ws.demand,
                        ws.allocation,
                        ws.desired,
                        h.truth,
                        st.unmanaged.keys().collect::<Vec<_>>(),
                        ws.plan.as_ref().map(|p| p.reason.as_str()).unwrap_or("")
                    );
                }
                assert_eq!(
                    st.actions, h.accepted,
                    "actions counted against those accepted"
                );
                // Refused by the hook, or by the provider itself at a tier's maximum.
                let own = st
                    .errors
                    .checked_sub(h.refused)
                    .unwrap_or_else(|| panic!("{} errors for {} refusals", st.errors, h.refused));
                assert_eq!(
                    own, 0,
                    "the provider refused what the pools should have kept"
                );
                // The status says whether this pass's report was read.
                let read = st.provider_state.clone().expect("the hook's state is read");
                assert_eq!(read.unread_since.is_some(), h.unbelievable, "{read:?}");
                assert!(read.unread_since.is_none_or(|t| t <= now), "{read:?}");
                // While the state cannot be read, nothing is removed.
                if h.unbelievable {
                    assert_eq!(removed, h.removed, "removed on a state not read");
                }
                match paused {
                    Some((PauseScope::All, until)) if now < until => {
                        assert_eq!(asked, h.asked, "asked of the hook while paused")
                    }
                    Some((PauseScope::ScaleDown, until)) if now < until => {
                        assert_eq!(removed, h.removed, "removed while paused")
                    }
                    _ => {}
                }
                assert_eq!(h.wrong, None, "an action's counts");
                let unread = h.unbelievable;
                drop(h);
                // A pause, or a state not read, keeps what is held, over a maximum a
                // reload lowered too.
                let pausing = paused.is_some_and(|(_, until)| now < until);
                ops::check_workloads(&st, &c.tiers, pausing || unread);
                // What is listed as unmanaged is what the provider holds for it.
                for (u, listed) in &st.unmanaged {
                    let a = e.provider().allocation(u, now);
                    for t in &c.tiers {
                        let n = a.get(&t.name).total();
                        let l = listed.instances.get(&t.name).copied().unwrap_or(0);
                        assert_eq!(n, l, "{u} {}: held {n}, listed {l}", t.name);
                    }
                }
                for w in e.provider().holders() {
                    assert!(
                        w == name || st.unmanaged.contains_key(&w),
                        "{w} holds capacity and is not listed: {:?}",
                        st.unmanaged.keys().collect::<Vec<_>>()
                    );
                }
            }
        }
    }
    // Each refusal is a decision saying so (a state that could not be read is one
    // without an action), or counted and not logged yet (a refusal repeated at every
    // pass is logged once an hour and when it stops).
    let logged: u64 = store
        .decisions(None, usize::MAX)
        .unwrap()
        .iter()
        .map(|d| d.refusals())
        .sum();
    let counted = e.unlogged_refusals();
    assert_eq!(
        logged + counted,
        shared.lock().unwrap().refused,
        "refusals logged ({logged}) and counted, not yet logged ({counted})"
    );
});
