//! The control loop over any stream of demand samples (late, repeated, zero, huge),
//! passes at any pace, and a provider that fails when the input says: each action is
//! applied, or refused as unavailable (a timeout) or at capacity.
//!
//! No pass panics or fails; every action the provider accepted is counted as an action
//! and every one it refused as an error (each logged as a decision); what a workload is
//! asked to hold stays within each tier's `max_instances`, and what it holds, its plan's
//! cost and its ready capacity are finite. `ENGINE_FUZZ_DEBUG=1` prints where an input
//! left the workload.
#![no_main]
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use prescale_core::config::Config;
use prescale_core::{Action, Allocation, DecisionKind, Sample, SeriesKey, TimestampMs};
use prescale_orchestrate::provider::{ProviderError, ProviderEvent};
use prescale_orchestrate::{Engine, Provider, SimCloud};
use prescale_store::{Durability, Store};

/// What the provider does with the next actions: 0 applies, 1 times out, 2 is at capacity.
type Faults = Arc<Mutex<VecDeque<u8>>>;

/// The simulated cloud, failing as told; counts what it accepted and refused.
struct Flaky {
    inner: SimCloud,
    faults: Faults,
    accepted: Arc<Mutex<(u64, u64)>>,
}

impl Provider for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn apply(&mut self, a: &Action, now: TimestampMs) -> Result<(), ProviderError> {
        let fault = self.faults.lock().unwrap().pop_front().unwrap_or(0);
        let r = match fault {
            1 => Err(ProviderError::Unavailable("timed out after 10 s".into())),
            2 => Err(ProviderError::AtCapacity {
                tier: a.tier.clone(),
                have: 0,
                want: a.count,
                max: 0,
            }),
            _ => self.inner.apply(a, now),
        };
        let mut c = self.accepted.lock().unwrap();
        if r.is_ok() {
            c.0 += 1;
        } else {
            c.1 += 1;
        }
        r
    }
    fn allocation(&self, workload: &str, now: TimestampMs) -> Allocation {
        self.inner.allocation(workload, now)
    }
    fn advance(&mut self, now: TimestampMs) -> Vec<ProviderEvent> {
        self.inner.advance(now)
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Buffered).unwrap();
    let mut c = Config::default();
    let Some((&head, ops)) = data.split_first() else {
        return;
    };
    c.workloads[0].min_instances = u32::from(head % 3);
    c.workloads[0].budget_per_hour = [None, Some(0.5), Some(5.0)][usize::from(head / 3 % 3)];
    let faults: Faults = Arc::default();
    let accepted = Arc::new(Mutex::new((0, 0)));
    let provider = Flaky {
        inner: SimCloud::new(&c.tiers, 1),
        faults: faults.clone(),
        accepted: accepted.clone(),
    };
    let mut e = Engine::from_config(&c, 0, store.clone(), provider);
    e.set_inline_training();
    let key = SeriesKey::parse(&c.workloads[0].demand).unwrap();
    let max: std::collections::BTreeMap<&str, u32> = c
        .tiers
        .iter()
        .map(|t| (t.name.as_str(), t.max_instances))
        .collect();
    let mut now: TimestampMs = 1_800_000_000_000;
    for op in ops.chunks_exact(3).take(200) {
        match op[0] % 4 {
            // A sample, up to ten minutes late.
            0 | 1 => {
                let at = now - i64::from(op[1] % 11) * 60_000;
                let v = match u16::from_le_bytes([op[1], op[2]]) {
                    u16::MAX => 1e9,
                    x => f64::from(x) / 256.0,
                };
                let _ = store.append(&key, &[Sample::new(at, v).unwrap()]);
            }
            // The provider's next answers.
            2 => faults
                .lock()
                .unwrap()
                .extend([op[1] % 3, op[2] % 3, op[1] / 3 % 3]),
            // A pass, 15 s to an hour after the last.
            _ => {
                now += 15_000 * (1 + i64::from(u16::from_le_bytes([op[1], op[2]]) % 240));
                e.tick(now).unwrap();
                let st = e.status_handle().read().unwrap().clone();
                let (ok, refused) = *accepted.lock().unwrap();
                assert_eq!(st.actions, ok, "actions counted against those accepted");
                assert_eq!(st.errors, refused, "errors counted against those refused");
                for (w, ws) in &st.workloads {
                    for (tier, n) in &ws.desired {
                        assert!(n <= &max[tier.as_str()], "{w} asked for {n} {tier}");
                    }
                    if let Some(p) = &ws.plan {
                        assert!(p.cost_per_hour.is_finite(), "{w}: {p:?}");
                    }
                    assert!(ws.ready_capacity.is_finite(), "{w}: {}", ws.ready_capacity);
                }
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
    // Each error is a decision saying so.
    let errors = store
        .decisions(None, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|d| d.kind == DecisionKind::Error)
        .count() as u64;
    assert_eq!(errors, accepted.lock().unwrap().1, "error decisions logged");
});
