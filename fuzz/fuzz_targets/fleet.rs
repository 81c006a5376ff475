//! Two workloads sharing the tiers' pools: of one priority or two, under a fleet budget
//! or none, each fed its own stream of demand samples, paused and resumed, given
//! planned events through the API and cancelled, removed by a reload (what it holds
//! left unmanaged, then released or taken over again when it is added back), over
//! reloads of a tier's maximum and the fleet budget and a provider that fails when the
//! input says.
//!
//! No pass panics or fails; the workloads together never ask the provider for more of
//! a tier than its maximum leaves (the simulated cloud refusing a request at capacity
//! of its own accord is a defect: the pools are planned so that it does not); a pass
//! while a workload's pause of every change holds asks nothing for it, one while its
//! pause of scale-down holds removes nothing of it; every action the provider accepted
//! in a pass is counted as one and every refusal as an error, and each refusal, in a
//! pass or a release, is logged as an error decision; what the status lists as
//! unmanaged is what the provider holds for it after each pass, and a release the
//! provider accepts leaves nothing held nor listed; a restart (the engine read again
//! from its store, the provider from its saved state) keeps each workload's instances,
//! the unmanaged list and the pauses in force; under a fleet budget no workload's plan
//! costs more than its share of it or its minimum's cost.
//!
//! With two replicas (a bit of the header), both run an engine on a cloud they share,
//! which holds its own truth (as Kubernetes does): both take every sample and reload,
//! the holder of the lease plans, acts, is paused and releases, either one restarts,
//! and the holder writes on the Lease, after each step, what the daemon writes
//! ([`Noted`], [`Notes`]); the lease moves to the other replica when the input says,
//! which takes over what was written at once, as the daemon does (`Handed::hand_to`). Then the pauses in force, the
//! events declared through the API and each workload's spending this month are the
//! previous holder's, its unmanaged list is kept (the new holder's own stale entries
//! hold nothing), and every check above holds across replicas (each refusal is an
//! error decision in one of their logs). `FLEET_FUZZ_TRACE=1` prints each pass.
#![no_main]
#[path = "common/flaky.rs"]
mod flaky;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use flaky::{Asked, Faults, Flaky};
use libfuzzer_sys::fuzz_target;
use prescale_core::config::Config;
use prescale_core::model::WorkloadClass;
use prescale_core::{EventTime, PauseScope, PlannedEvent, Sample, SeriesKey, Tier, TimestampMs};
use prescale_orchestrate::engine::{ReleaseError, Status};
use prescale_orchestrate::lease::{Noted, Notes};
use prescale_orchestrate::{Engine, Provider};
use prescale_store::{Durability, Store};

/// What `provider` holds for `workload` (ready and pending), tiers holding none left out.
fn held(
    e: &Engine<Flaky>,
    tiers: &[Tier],
    workload: &str,
    now: TimestampMs,
) -> BTreeMap<String, u32> {
    let a = e.provider().allocation(workload, now);
    tiers
        .iter()
        .map(|t| (t.name.clone(), a.get(&t.name).total()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

const NAMES: [&str; 2] = ["web", "batch"];

/// The planned events an operator declares.
const EVENTS: [&str; 2] = ["sale", "drill"];

/// A replica standing by: its engine, its own store, and what it writes on the Lease.
struct Standby {
    e: Engine<Flaky>,
    store: Store,
    notes: Notes,
}

/// The pauses in force at `now` in `st`, by workload.
fn pauses(st: &Status, now: TimestampMs) -> BTreeMap<String, prescale_core::Pause> {
    st.workloads
        .iter()
        .filter_map(|(w, s)| Some((w.clone(), s.paused.clone().filter(|p| p.holds(now))?)))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    let Some((head, ops)) = data.split_first_chunk::<3>() else {
        return;
    };
    let trace = std::env::var_os("FLEET_FUZZ_TRACE").is_some();
    let mut c = Config::default();
    let budgets = [None, Some(0.2), Some(0.6), Some(3.0)];
    let maxes = [0, 1, 2, 4, 10];
    // Small pools, so the workloads meet in them.
    for (k, t) in c.tiers.iter_mut().enumerate() {
        t.max_instances = maxes[usize::from(head[2] >> (2 * k)) % maxes.len()];
    }
    c.fleet.budget_per_hour = budgets[usize::from(head[1] % 4)];
    let base = c.workloads[0].clone();
    c.workloads = NAMES
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let mut w = base.clone();
            w.name = (*name).into();
            w.demand = format!("{name}_cpu");
            w.min_instances = u32::from(head[0] >> (2 * k) & 1);
            w.priority = [0, 10][usize::from(head[0] >> (2 * k + 1) & 1)];
            if k == 1 {
                w.class = WorkloadClass::Batch;
                w.max_spot_share = 1.0;
                w.scale_down_delay_s = 60;
            }
            w.budget_per_hour = [None, Some(0.5)][usize::from(head[1] >> (2 + k) & 1)];
            // The model selection is the engine target's to explore; here one workload
            // forecasts naively, so more of the inputs reach the pools.
            if head[1] >> (4 + k) & 1 == 1 {
                w.model = "naive".into();
            }
            w
        })
        .collect();
    let configured = c.clone();
    let faults: Faults = Arc::default();
    let asked: Arc<Mutex<Asked>> = Arc::default();
    let replicas = head[1] >> 6 & 1 == 1;
    let provider = match replicas {
        true => Flaky::shared(&c.tiers, &faults, &asked),
        false => Flaky::new(&c.tiers, &faults, &asked),
    };
    let engine = |c: &Config, store: &Store, provider: Flaky| {
        let mut e = Engine::from_config(c, 0, store.clone(), provider);
        e.set_inline_training();
        e.set_fleet(c.fleet.clone());
        e
    };
    let other = tempfile::tempdir().unwrap();
    let mut standby = replicas.then(|| {
        let store = Store::open(other.path(), Durability::Buffered).unwrap();
        Standby {
            e: engine(&c, &store, provider.clone()),
            store,
            notes: Notes::default(),
        }
    });
    let mut e = engine(&c, &store, provider);
    let mut store = store;
    // What the holder writes on the Lease, and the Lease's annotations.
    let mut notes = Notes::default();
    let mut lease = serde_json::Map::new();
    let keys: Vec<SeriesKey> = NAMES
        .iter()
        .map(|n| SeriesKey::parse(&format!("{n}_cpu")).unwrap())
        .collect();
    let mut now: TimestampMs = 1_800_000_000_000;
    // Each workload's pause in force: its scope and end.
    let mut paused: [Option<(PauseScope, TimestampMs)>; 2] = [None, None];
    for op in ops.chunks_exact(3).take(200) {
        let which = usize::from(op[0] >> 3 & 1);
        let name = NAMES[which];
        let managed = |c: &Config| c.workloads.iter().any(|w| w.name == name);
        match op[0] % 8 {
            // A sample, up to ten minutes late.
            0 | 1 => {
                let at = now - i64::from(op[1] % 11) * 60_000;
                let v = match u16::from_le_bytes([op[1], op[2]]) {
                    u16::MAX => 1e9,
                    x => f64::from(x) / 512.0,
                };
                let sample = [Sample::new(at, v).unwrap()];
                let _ = store.append(&keys[which], &sample);
                if let Some(s) = &standby {
                    let _ = s.store.append(&keys[which], &sample);
                }
            }
            // The provider's next answers.
            2 => faults
                .lock()
                .unwrap()
                .extend([op[1] % 3, op[2] % 3, op[1] / 3 % 3]),
            // A pause of up to four hours, or a resume.
            3 if managed(&c) => match op[1] % 6 {
                2 => {
                    e.resume(name, now).unwrap();
                    paused[which] = None;
                }
                // A planned event declared through the API, up to two hours ahead, of
                // half an hour to two hours: a sale, a drill.
                3 | 4 => {
                    let start = now + 900_000 * i64::from(op[2] % 8);
                    let event = PlannedEvent {
                        name: EVENTS[usize::from(op[2] >> 3 & 1)].into(),
                        start: EventTime(start),
                        end: EventTime(start + 1_800_000 * (1 + i64::from(op[2] >> 4 & 3))),
                        scale: 1.0 + f64::from(op[2] >> 6),
                        min_demand: Some(f64::from(op[2]) / 8.0),
                        min_dimensions: Default::default(),
                        recurring: None,
                    };
                    e.declare_event(name, event, now).unwrap();
                }
                5 => {
                    let _ = e.cancel_event(name, EVENTS[usize::from(op[2] & 1)], now);
                }
                _ => {
                    let scope = [PauseScope::All, PauseScope::ScaleDown][usize::from(op[1] % 2)];
                    let until = now + 60_000 * (1 + i64::from(op[2]));
                    e.pause(name, scope, until, "fuzz", now).unwrap();
                    paused[which] = Some((scope, until));
                }
            },
            // A reload: one tier's maximum, and the fleet budget.
            4 => {
                let t = usize::from(op[1]) % c.tiers.len();
                c.tiers[t].max_instances = maxes[usize::from(op[2]) % maxes.len()];
                c.fleet.budget_per_hour = budgets[usize::from(op[2] / 8 % 4)];
                flaky::reload(&mut e, &c, now);
                e.reconfigure_fleet(c.fleet.clone(), now).unwrap();
                // Every replica reads the same configuration.
                if let Some(s) = &mut standby {
                    flaky::reload(&mut s.e, &c, now);
                    s.e.reconfigure_fleet(c.fleet.clone(), now).unwrap();
                }
            }
            // A reload that removes the workload, or adds it back.
            5 => {
                if managed(&c) {
                    c.workloads.retain(|w| w.name != name);
                    paused[which] = None;
                } else {
                    let w = configured.workloads[which].clone();
                    c.workloads.push(w);
                }
                flaky::reload(&mut e, &c, now);
                if let Some(s) = &mut standby {
                    flaky::reload(&mut s.e, &c, now);
                }
                // Added back, a pause stored from before that still holds is in force
                // again (until session 63 it showed only from its first pass).
                if managed(&c) {
                    let st = e.status_handle().read().unwrap().clone();
                    paused[which] = pauses(&st, now).get(name).map(|p| (p.scope, p.until));
                }
            }
            // An operator releases what the workload no longer managed holds.
            6 => {
                let before = asked.lock().unwrap().clone();
                let listed = e
                    .status_handle()
                    .read()
                    .unwrap()
                    .unmanaged
                    .contains_key(name);
                let r = e.release(name, now);
                let after = asked.lock().unwrap().clone();
                match &r {
                    Ok(_) => assert!(listed && !managed(&c), "{name} released: {r:?}"),
                    // The provider refused a release as told.
                    Err(ReleaseError::Provider { .. }) => {
                        assert!(after.refused > before.refused, "{name}: {r:?}")
                    }
                    Err(_) => assert!(!listed || managed(&c), "{name}: {r:?}"),
                }
                if r.is_ok() && after.refused == before.refused {
                    assert!(
                        held(&e, &c.tiers, name, now).is_empty(),
                        "{name} released yet holds {:?}",
                        held(&e, &c.tiers, name, now)
                    );
                    let st = e.status_handle().read().unwrap().clone();
                    assert!(!st.unmanaged.contains_key(name), "{name} still listed");
                }
            }
            // The replica standing by restarts: its engine read again from its own
            // store, stale since it last held the lease, and nothing noted for the Lease.
            7 if op[0] >> 4 & 3 == 3 && which == 1 && standby.is_some() => {
                let s = standby.as_mut().unwrap();
                let provider = s.e.provider().clone();
                s.e = engine(&c, &s.store, provider);
                s.e.restore_status(now).unwrap();
                s.notes = Notes::default();
            }
            // A restart (a crash after the last acknowledged change): the engine read
            // again from the store, with the provider's state as it saved it.
            7 if op[0] >> 4 & 3 == 3 => {
                let was = e.status_handle().read().unwrap().clone();
                let holds: Vec<_> = NAMES.iter().map(|n| held(&e, &c.tiers, n, now)).collect();
                drop(e);
                let provider = match &standby {
                    Some(s) => s.e.provider().clone(),
                    None => Flaky::new(&c.tiers, &faults, &asked),
                };
                e = engine(&c, &store, provider);
                e.restore_status(now).unwrap();
                let st = e.status_handle().read().unwrap().clone();
                for (n, h) in NAMES.iter().zip(&holds) {
                    assert_eq!(
                        &held(&e, &c.tiers, n, now),
                        h,
                        "{n}'s instances over a restart"
                    );
                }
                assert_eq!(
                    st.unmanaged, was.unmanaged,
                    "the unmanaged list over a restart"
                );
                let (a, b) = (pauses(&was, now), pauses(&st, now));
                for w in &c.workloads {
                    let name = &w.name;
                    assert_eq!(a.get(name), b.get(name), "{name}'s pause over a restart");
                }
            }
            // The lease moves to the other replica, which reads what the holder wrote
            // on it and takes it over before anything else, as the daemon does.
            7 if op[0] >> 4 & 3 == 2 && standby.is_some() => {
                let s = standby.as_mut().unwrap();
                let before = e.status_handle().read().unwrap().clone();
                std::mem::swap(&mut e, &mut s.e);
                std::mem::swap(&mut store, &mut s.store);
                std::mem::swap(&mut notes, &mut s.notes);
                let handed = notes.take_over(&serde_json::Value::Object(lease.clone()));
                e.forget_holdings();
                handed.hand_to(&mut e, now);
                let st = e.status_handle().read().unwrap().clone();
                assert_eq!(
                    pauses(&st, now),
                    pauses(&before, now),
                    "the pauses in force over a handover"
                );
                // What this replica listed itself and the holder before released or
                // took back stays listed, holding nothing, until its first pass.
                for (name, u) in &st.unmanaged {
                    assert!(
                        before.unmanaged.contains_key(name)
                            || (held(&e, &c.tiers, name, now).is_empty()
                                && !c.workloads.iter().any(|w| &w.name == name)),
                        "{name} listed as unmanaged over a handover: {u:?}"
                    );
                }
                for name in before.unmanaged.keys() {
                    assert!(
                        st.unmanaged.contains_key(name),
                        "{name} no longer listed as unmanaged over a handover"
                    );
                }
                for w in &c.workloads {
                    let declared = |st: &Status| -> Vec<PlannedEvent> {
                        st.workloads
                            .get(&w.name)
                            .map(|s| s.declared_events().cloned().collect())
                            .unwrap_or_default()
                    };
                    assert_eq!(
                        declared(&st),
                        declared(&before),
                        "{}'s declared events over a handover",
                        w.name
                    );
                }
                for (w, s) in &before.workloads {
                    let (Some(was), Some(is)) =
                        (s.spend, st.workloads.get(w).and_then(|s| s.spend))
                    else {
                        continue;
                    };
                    assert!(
                        is.month_start > was.month_start || is.at >= was.at,
                        "{w}'s spending over a handover: {is:?} after {was:?}"
                    );
                }
            }
            // A pass, 15 s to an hour after the last.
            _ => {
                now += 15_000 * (1 + i64::from(u16::from_le_bytes([op[1], op[2]]) % 240));
                let before = asked.lock().unwrap().clone();
                let was = e.status_handle().read().unwrap().clone();
                e.tick(now).unwrap();
                let st = e.status_handle().read().unwrap().clone();
                let after = asked.lock().unwrap().clone();
                assert_eq!(after.over, 0, "asked past a pool's maximum");
                // A pause of every change asks nothing for its workload, one of
                // scale-down removes nothing of it.
                for (k, name) in NAMES.iter().enumerate() {
                    let of = |a: &Asked| a.by.get(*name).copied().unwrap_or_default();
                    let (b, a) = (of(&before), of(&after));
                    match paused[k] {
                        Some((PauseScope::All, until)) if now < until => {
                            assert_eq!(b, a, "asked for {name} while it was paused")
                        }
                        Some((PauseScope::ScaleDown, until)) if now < until => {
                            assert_eq!(b.1, a.1, "removed of {name} while paused")
                        }
                        _ => {}
                    }
                }
                assert_eq!(
                    st.actions - was.actions,
                    after.accepted - before.accepted,
                    "actions counted against those accepted"
                );
                assert_eq!(
                    st.errors - was.errors,
                    after.refused - before.refused,
                    "errors counted against those refused"
                );
                for (name, u) in &st.unmanaged {
                    let holds = held(&e, &c.tiers, name, now);
                    let listed: BTreeMap<String, u32> = u
                        .instances
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(t, n)| (t.clone(), *n))
                        .collect();
                    assert_eq!(listed, holds, "{name}: listed as unmanaged against held");
                }
                for w in &c.workloads {
                    let ws = &st.workloads[&w.name];
                    if trace {
                        eprintln!(
                            "{now} {} demand {:?} desired {:?} held {:?} fleet {:?} {}",
                            w.name,
                            ws.demand,
                            ws.desired,
                            held(&e, &c.tiers, &w.name, now),
                            ws.fleet,
                            ws.plan.as_ref().map(|p| p.reason.as_str()).unwrap_or("")
                        );
                    }
                    if let Some(p) = &ws.plan {
                        assert!(p.cost_per_hour.is_finite(), "{}: {p:?}", w.name);
                        let floor = w.floor_per_hour(&c.tiers).unwrap_or(0.0);
                        if let (Some(f), Some(_)) = (ws.fleet, st.fleet.cap_per_hour) {
                            assert!(
                                p.cost_per_hour <= f.share.max(floor) + 1e-6,
                                "{}'s plan costs ${}/h, over its fleet share ${}/h and its minimum's ${floor}/h: {}",
                                w.name,
                                p.cost_per_hour,
                                f.share,
                                p.reason
                            );
                        }
                    }
                    assert!(ws.ready_capacity.is_finite(), "{}", w.name);
                }
            }
        }
        // The holder's next round writes on the Lease what its status says.
        if standby.is_some() {
            let st = e.status_handle().read().unwrap().clone();
            notes.note(Noted::of(&st, true), now);
            notes.write(&mut lease);
        }
    }
    // Each refusal is a decision saying so, in one replica's log or the other's.
    let (mut stores, mut engines) = (vec![&store], vec![&e]);
    stores.extend(standby.as_ref().map(|s| &s.store));
    engines.extend(standby.as_ref().map(|s| &s.e));
    flaky::assert_refusals_logged(&stores, &engines, &asked);
});
