//! The control loop over any stream of demand samples (late, repeated, zero, huge),
//! passes at any pace, an operator's pauses and resumes, reloads that change a tier's
//! maximum or the workload's budget, and a provider that fails when the input says: each
//! action is applied, or refused as unavailable (a timeout) or at capacity.
//!
//! No pass panics or fails; every action the provider accepted is counted as an action
//! and every one it refused as an error (each logged as a decision); a pass while a
//! pause of every change holds asks nothing of the provider, and one while a pause of
//! scale-down holds removes nothing; what a workload is asked to hold stays within each
//! tier's `max_instances` in force (or, while a pause holds, what it holds), and its plan's cost and ready capacity are finite.
//! `ENGINE_FUZZ_DEBUG=1` prints where an input left the workload, `ENGINE_FUZZ_TRACE=1`
//! its demand, instances and plan at each pass.
#![no_main]
#[path = "common/flaky.rs"]
mod flaky;
#[path = "common/ops.rs"]
mod ops;

use std::sync::{Arc, Mutex};

use flaky::{Asked, Faults, Flaky};
use libfuzzer_sys::fuzz_target;
use prescale_core::{PauseScope, SeriesKey, TimestampMs};
use prescale_orchestrate::Engine;

fuzz_target!(|data: &[u8]| {
    let Some((_dir, store, mut c, ops)) = ops::start(data) else {
        return;
    };
    let faults: Faults = Arc::default();
    let asked: Arc<Mutex<Asked>> = Arc::default();
    let provider = Flaky::new(&c.tiers, &faults, &asked);
    let mut e = Engine::from_config(&c, 0, store.clone(), provider);
    e.set_inline_training();
    let key = SeriesKey::parse(&c.workloads[0].demand).unwrap();
    let name = c.workloads[0].name.clone();
    let mut now: TimestampMs = 1_800_000_000_000;
    // The operator's pause in force: its scope and end.
    let mut paused: Option<(PauseScope, TimestampMs)> = None;
    for op in ops.chunks_exact(3).take(200) {
        match op[0] % 6 {
            // A sample, up to ten minutes late.
            0 | 1 => ops::sample(&store, &key, now, op),
            // The provider's next answers.
            2 => faults
                .lock()
                .unwrap()
                .extend([op[1] % 3, op[2] % 3, op[1] / 3 % 3]),
            // A pause of up to four hours, or a resume.
            4 => paused = ops::pause_or_resume(&mut e, &name, now, op),
            // A reload: one tier's maximum, and the budget.
            5 => {
                ops::reload_settings(&mut c, op);
                flaky::reload(&mut e, &c, now);
            }
            // A pass, 15 s to an hour after the last.
            _ => {
                let before = asked.lock().unwrap().clone();
                now += 15_000 * (1 + i64::from(u16::from_le_bytes([op[1], op[2]]) % 240));
                e.tick(now).unwrap();
                let st = e.status_handle().read().unwrap().clone();
                let after = asked.lock().unwrap().clone();
                assert_eq!(
                    st.actions, after.accepted,
                    "actions counted against those accepted"
                );
                assert_eq!(
                    st.errors, after.refused,
                    "errors counted against those refused"
                );
                match paused {
                    Some((PauseScope::All, until)) if now < until => {
                        assert_eq!(before, after, "asked of the provider while paused")
                    }
                    Some((PauseScope::ScaleDown, until)) if now < until => {
                        assert_eq!(before.removed, after.removed, "removed while paused")
                    }
                    _ => {}
                }
                if std::env::var_os("ENGINE_FUZZ_TRACE").is_some() {
                    let ws = &st.workloads[&name];
                    eprintln!(
                        "{now} demand {:?} desired {:?} {}",
                        ws.demand,
                        ws.desired,
                        ws.plan.as_ref().map(|p| p.reason.as_str()).unwrap_or("")
                    );
                }
                // A pause keeps what is held, over a maximum a reload lowered too.
                let pausing = paused.is_some_and(|(_, until)| now < until);
                ops::check_workloads(&st, &c.tiers, pausing);
            }
        }
    }
    if std::env::var_os("ENGINE_FUZZ_DEBUG").is_some() {
        let st = e.status_handle().read().unwrap().clone();
        let ws = &st.workloads[&c.workloads[0].name];
        eprintln!(
            "{} passes, {} actions, {} errors; desired {:?}; plan {:?}",
            st.ticks,
            st.actions,
            st.errors,
            ws.desired,
            ws.plan.as_ref().map(|p| &p.reason)
        );
    }
    // Each refusal is a decision saying so.
    flaky::assert_refusals_logged(&[&store], &[&e], &asked);
});
