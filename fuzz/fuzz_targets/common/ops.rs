//! Operations and checks the control-loop targets over one workload share (`engine`,
//! `hook`): what an input's three-byte operation does, and what every pass must keep.

use prescale_core::config::Config;
use prescale_core::{PauseScope, Sample, SeriesKey, Tier, TimestampMs};
use prescale_orchestrate::engine::Status;
use prescale_orchestrate::{Engine, Provider};
use prescale_store::{Durability, Store};

/// What a target starts from: a store in a new directory (kept while the directory
/// is), and the default configuration with its workload set by the input's first byte
/// ([`workload_from`]); the rest of the input is its operations. `None` for an empty
/// input.
pub fn start(data: &[u8]) -> Option<(tempfile::TempDir, Store, Config, &[u8])> {
    let (&head, ops) = data.split_first()?;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    let mut c = Config::default();
    workload_from(head, &mut c);
    Some((dir, store, c, ops))
}

/// The first workload's `min_instances` (0-2) and budget (none, $0.5/h, $5/h) as an
/// input's first byte says.
fn workload_from(head: u8, c: &mut Config) {
    c.workloads[0].min_instances = u32::from(head % 3);
    c.workloads[0].budget_per_hour = [None, Some(0.5), Some(5.0)][usize::from(head / 3 % 3)];
}

/// A demand sample from `op`'s last two bytes (`u16::MAX`: 1e9, a huge one), up to ten
/// minutes late.
pub fn sample(store: &Store, key: &SeriesKey, now: TimestampMs, op: &[u8]) {
    let at = now - i64::from(op[1] % 11) * 60_000;
    let v = match u16::from_le_bytes([op[1], op[2]]) {
        u16::MAX => 1e9,
        x => f64::from(x) / 256.0,
    };
    let _ = store.append(key, &[Sample::new(at, v).unwrap()]);
}

/// An operator's pause of `name`, of either scope, for up to four hours, or a resume,
/// as `op` says; returns the pause in force afterwards (its scope and end).
pub fn pause_or_resume<P: Provider>(
    e: &mut Engine<P>,
    name: &str,
    now: TimestampMs,
    op: &[u8],
) -> Option<(PauseScope, TimestampMs)> {
    if op[1] % 3 == 2 {
        e.resume(name, now).unwrap();
        return None;
    }
    let scope = [PauseScope::All, PauseScope::ScaleDown][usize::from(op[1] % 2)];
    let until = now + 60_000 * (1 + i64::from(op[2]));
    e.pause(name, scope, until, "fuzz", now).unwrap();
    Some((scope, until))
}

/// The settings a reload changes, as `op` says: one tier's maximum, and the first
/// workload's budget.
pub fn reload_settings(c: &mut Config, op: &[u8]) {
    let t = usize::from(op[1]) % c.tiers.len();
    c.tiers[t].max_instances = [1, 3, 10, 100][usize::from(op[2] % 4)];
    c.workloads[0].budget_per_hour = [None, Some(0.5), Some(5.0)][usize::from(op[2] / 4 % 3)];
}

/// What every pass keeps: each workload asks for no more of a tier than its maximum in
/// force (or, where `holding` (a pause, a state not read), what it holds, over a
/// maximum a reload lowered too), and its plan's cost and ready capacity are finite.
pub fn check_workloads(st: &Status, tiers: &[Tier], holding: bool) {
    for (w, ws) in &st.workloads {
        for (tier, n) in &ws.desired {
            let max = tiers
                .iter()
                .find(|t| &t.name == tier)
                .unwrap()
                .max_instances;
            let held = ws.allocation.get(tier).total();
            assert!(
                *n <= max || (holding && *n <= held),
                "{w} asked for {n} {tier}, over {max} (holding {held})"
            );
        }
        if let Some(p) = &ws.plan {
            assert!(p.cost_per_hour.is_finite(), "{w}: {p:?}");
        }
        assert!(ws.ready_capacity.is_finite(), "{w}: {}", ws.ready_capacity);
    }
}
