//! The provider the control-loop targets drive: the simulated cloud, failing as the
//! input says, counting what it was asked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use prescale_core::config::Config;
use prescale_core::{Action, ActionKind, Allocation, DecisionKind, Tier, TimestampMs};
use prescale_orchestrate::provider::{ProviderError, ProviderEvent};
use prescale_orchestrate::{Engine, Provider, SimCloud};
use prescale_store::Store;

/// What the provider does with the next actions: 0 applies, 1 times out, 2 is at capacity.
pub type Faults = Arc<Mutex<VecDeque<u8>>>;

/// What the provider was asked: accepted, refused (as told, or by the simulated cloud),
/// removals accepted, and requests the simulated cloud itself refused at a tier's
/// maximum; and per workload, how many actions were asked and how many removals taken.
#[derive(Default, Clone, PartialEq, Debug)]
pub struct Asked {
    pub accepted: u64,
    pub refused: u64,
    pub removed: u64,
    pub over: u64,
    pub by: BTreeMap<String, (u64, u64)>,
}

/// The simulated cloud, failing as told; counts what it was asked.
pub struct Flaky {
    inner: SimCloud,
    faults: Faults,
    asked: Arc<Mutex<Asked>>,
}

impl Flaky {
    pub fn new(tiers: &[Tier], faults: &Faults, asked: &Arc<Mutex<Asked>>) -> Self {
        Flaky {
            inner: SimCloud::new(tiers, 1),
            faults: faults.clone(),
            asked: asked.clone(),
        }
    }
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
        let mut asked = self.asked.lock().unwrap();
        let removed = u64::from(r.is_ok() && a.kind == ActionKind::Deprovision);
        let by = asked.by.entry(a.workload.clone()).or_default();
        (by.0, by.1) = (by.0 + 1, by.1 + removed);
        asked.removed += removed;
        match &r {
            Ok(()) => asked.accepted += 1,
            Err(ProviderError::AtCapacity { .. }) if fault == 0 => {
                eprintln!("refused by the simulated cloud: {a:?}: {r:?}");
                asked.refused += 1;
                asked.over += 1;
            }
            Err(_) => asked.refused += 1,
        }
        r
    }
    fn allocation(&self, workload: &str, now: TimestampMs) -> Allocation {
        self.inner.allocation(workload, now)
    }
    fn advance(&mut self, now: TimestampMs) -> Vec<ProviderEvent> {
        self.inner.advance(now)
    }
    fn save(&self) -> Option<serde_json::Value> {
        self.inner.save()
    }
    fn restore(&mut self, state: serde_json::Value) -> Result<(), ProviderError> {
        self.inner.restore(state)
    }
}

/// Checks that each refusal the provider gave is an error decision in `store`'s log.
pub fn assert_refusals_logged(store: &Store, asked: &Mutex<Asked>) {
    let errors = store
        .decisions(None, usize::MAX)
        .unwrap()
        .into_iter()
        .filter(|d| d.kind == DecisionKind::Error)
        .count() as u64;
    assert_eq!(
        errors,
        asked.lock().unwrap().refused,
        "error decisions logged"
    );
}

/// Reloads `c`'s tiers and workloads into `e` at `now`, over a new flaky provider that
/// takes the old one's state, as the daemon's reload does.
pub fn reload(
    e: &mut Engine<Flaky>,
    c: &Config,
    faults: &Faults,
    asked: &Arc<Mutex<Asked>>,
    now: TimestampMs,
) {
    let provider = Flaky::new(&c.tiers, faults, asked);
    let interval = e.interval_ms();
    e.reconfigure(
        c.tiers.clone(),
        c.workloads.clone(),
        interval,
        provider,
        now,
    );
}
