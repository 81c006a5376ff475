//! The provider the control-loop targets drive: the simulated cloud, failing as the
//! input says, counting what it was asked.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use prescale_core::config::Config;
use prescale_core::{Action, ActionKind, Allocation, Tier, TimestampMs};
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

/// The simulated cloud, failing as told; counts what it was asked. A clone is another
/// replica's provider on the same cloud.
#[derive(Clone)]
pub struct Flaky {
    inner: Arc<Mutex<SimCloud>>,
    /// Whether replicas share the cloud: it keeps its own truth then, as Kubernetes does
    /// (or a hook reporting its state), so nothing is saved with a replica.
    shared: bool,
    faults: Faults,
    asked: Arc<Mutex<Asked>>,
}

impl Flaky {
    /// A cloud of this process's, saved with the engine's store.
    pub fn new(tiers: &[Tier], faults: &Faults, asked: &Arc<Mutex<Asked>>) -> Self {
        Flaky {
            inner: Arc::new(Mutex::new(SimCloud::new(tiers, 1))),
            shared: false,
            faults: faults.clone(),
            asked: asked.clone(),
        }
    }

    /// A cloud replicas share, which each reads and none saves.
    #[allow(dead_code)] // The fleet target's alone.
    pub fn shared(tiers: &[Tier], faults: &Faults, asked: &Arc<Mutex<Asked>>) -> Self {
        Flaky {
            shared: true,
            ..Flaky::new(tiers, faults, asked)
        }
    }

    /// The provider for a reload to `tiers`: a new cloud the engine hands this one's
    /// state to, or the shared cloud with its tiers changed under every replica.
    pub fn reloaded(&self, tiers: &[Tier]) -> Self {
        if !self.shared {
            return Flaky::new(tiers, &self.faults, &self.asked);
        }
        let mut cloud = self.inner.lock().unwrap();
        let mut renewed = SimCloud::new(tiers, 1);
        renewed.restore(cloud.save().unwrap()).unwrap();
        *cloud = renewed;
        drop(cloud);
        self.clone()
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
            _ => self.inner.lock().unwrap().apply(a, now),
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
        self.inner.lock().unwrap().allocation(workload, now)
    }
    fn holders(&self) -> Vec<String> {
        self.inner.lock().unwrap().holders()
    }
    fn advance(&mut self, now: TimestampMs) -> Vec<ProviderEvent> {
        self.inner.lock().unwrap().advance(now)
    }
    fn save(&self) -> Option<serde_json::Value> {
        match self.shared {
            true => None,
            false => self.inner.lock().unwrap().save(),
        }
    }
    fn restore(&mut self, state: serde_json::Value) -> Result<(), ProviderError> {
        self.inner.lock().unwrap().restore(state)
    }
}

/// Checks that each refusal the provider gave is an error decision in the log of one of
/// `stores` (one per replica), or counted by one of `engines` and not logged yet: a
/// refusal repeated at every pass is logged once an hour and when it stops.
pub fn assert_refusals_logged(stores: &[&Store], engines: &[&Engine<Flaky>], asked: &Mutex<Asked>) {
    let logged: u64 = stores
        .iter()
        .flat_map(|s| s.decisions(None, usize::MAX).unwrap())
        .map(|d| d.refusals())
        .sum();
    let counted: u64 = engines.iter().map(|e| e.unlogged_refusals()).sum();
    assert_eq!(
        logged + counted,
        asked.lock().unwrap().refused,
        "refusals logged ({logged}) and counted, not yet logged ({counted})"
    );
}

/// Reloads `c`'s tiers and workloads into `e` at `now`, as the daemon's reload does:
/// over a new flaky provider that takes the old one's state, or on the shared cloud.
pub fn reload(e: &mut Engine<Flaky>, c: &Config, now: TimestampMs) {
    let provider = e.provider().reloaded(&c.tiers);
    let interval = e.interval_ms();
    e.reconfigure(
        c.tiers.clone(),
        c.workloads.clone(),
        interval,
        provider,
        now,
    );
}
