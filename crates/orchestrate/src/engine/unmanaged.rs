//! Capacity held for workloads prescale no longer manages.
//!
//! A workload removed from the configuration (by a reload, or while prescale was
//! stopped) is no longer planned, and what it holds is left as it is, as Kubernetes
//! leaves a Deployment's replicas when its HPA is deleted. Left unseen, that capacity
//! would go on costing money with no one looking: the engine keeps a list of such
//! workloads (persisted, so a restart keeps it), reads what each still holds at every
//! pass, prices it, publishes it in the status, and releases it only when asked
//! ([`Engine::release`]). A workload added back to the configuration takes its
//! capacity over again.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use prescale_core::{
    Action, ActionKind, Decision, DecisionKind, Sample, SeriesKey, Tier, TimestampMs,
};
use prescale_store::StoreError;
use serde::{Deserialize, Serialize};

use super::{Engine, Status};
use crate::provider::Provider;

/// Where the list is kept in the store.
const STATE_KEY: &str = "unmanaged";

/// The series of what each unmanaged workload's capacity costs an hour.
pub const COST_SERIES: &str = "prescale_unmanaged_cost_per_hour";

/// What the release endpoint is, for the reasons that point to it.
pub const RELEASE_PATH: &str = "POST /api/v1/unmanaged/{name}/release";

/// The release endpoint for `name`.
pub fn release_path(name: &str) -> String {
    RELEASE_PATH.replace("{name}", name)
}

/// Instances a provider holds for a workload no longer configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unmanaged {
    /// When prescale found it no longer managed.
    pub since: TimestampMs,
    /// How it came to be unmanaged.
    pub why: String,
    /// Instances per tier, pending ones included (those under an interruption notice
    /// left out: they stop by themselves).
    pub instances: BTreeMap<String, u32>,
    /// What they cost per hour at the catalog's prices.
    pub cost_per_hour: f64,
    /// Tiers held that the catalog no longer prices (left out of `cost_per_hour`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpriced: Vec<String>,
}

/// What [`Engine::release`] released, per tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Released {
    /// The workload.
    pub workload: String,
    /// Instances released per tier.
    pub released: BTreeMap<String, u32>,
    /// What they cost per hour.
    pub cost_per_hour: f64,
    /// Whether the provider changes real capacity (`false` for `recommend`, whose
    /// release is advice).
    pub acted: bool,
}

/// Why a release was refused or failed.
#[derive(Debug)]
pub enum ReleaseError {
    /// The workload is configured: prescale plans it.
    Managed(String),
    /// No unmanaged workload has the name.
    Unknown {
        /// The name asked for.
        name: String,
        /// The unmanaged workloads there are.
        known: Vec<String>,
    },
    /// The provider refused or failed; what was released before it stays released.
    Provider {
        /// The provider's name.
        provider: String,
        /// The provider's error.
        error: String,
        /// What was released before it.
        released: BTreeMap<String, u32>,
    },
    /// The decision log could not be written.
    Store(StoreError),
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseError::Managed(n) => write!(
                f,
                "workload `{n}` is configured, so prescale plans its capacity; remove it from the configuration and reload first"
            ),
            ReleaseError::Unknown { name, known } if known.is_empty() => write!(
                f,
                "no unmanaged workload is named `{name}`: every workload holding capacity is configured"
            ),
            ReleaseError::Unknown { name, known } => write!(
                f,
                "no unmanaged workload is named `{name}`; unmanaged: {}",
                known.join(", ")
            ),
            ReleaseError::Provider {
                provider,
                error,
                released,
            } if released.is_empty() => {
                write!(f, "the {provider} provider: {error}; nothing was released")
            }
            ReleaseError::Provider {
                provider,
                error,
                released,
            } => write!(
                f,
                "the {provider} provider: {error}; released before that: {}",
                counts(released)
            ),
            ReleaseError::Store(e) => write!(f, "the decision log: {e}"),
        }
    }
}

impl std::error::Error for ReleaseError {}

impl From<StoreError> for ReleaseError {
    fn from(e: StoreError) -> Self {
        ReleaseError::Store(e)
    }
}

/// "3 spot, 2 standard".
fn counts(by_tier: &BTreeMap<String, u32>) -> String {
    let v: Vec<String> = by_tier.iter().map(|(t, n)| format!("{n} {t}")).collect();
    v.join(", ")
}

/// What `instances` cost per hour at `tiers`' prices, and the tiers it does not price.
fn price(tiers: &[Tier], instances: &BTreeMap<String, u32>) -> (f64, Vec<String>) {
    let mut cost = 0.0;
    let mut unpriced = Vec::new();
    for (name, n) in instances {
        match tiers.iter().find(|t| &t.name == name) {
            Some(t) => cost += *n as f64 * t.price_per_hour,
            None => unpriced.push(name.clone()),
        }
    }
    (cost, unpriced)
}

impl<P: Provider> Engine<P> {
    /// Instances per tier `name` holds at `now` (pending included).
    pub(super) fn held_instances(&self, name: &str, now: TimestampMs) -> BTreeMap<String, u32> {
        self.provider
            .allocation(name, now)
            .tiers
            .into_iter()
            .filter(|(_, c)| c.total() > 0)
            .map(|(t, c)| (t, c.total()))
            .collect()
    }

    /// Lists `name` as unmanaged (removed by a reload while holding `instances`),
    /// priced at `tiers`.
    pub(super) fn leave_unmanaged(
        &mut self,
        name: &str,
        instances: BTreeMap<String, u32>,
        tiers: &[Tier],
        now: TimestampMs,
    ) {
        let (cost_per_hour, unpriced) = price(tiers, &instances);
        self.unmanaged.insert(
            name.to_string(),
            Unmanaged {
                since: now,
                why: "removed by a configuration reload".into(),
                instances,
                cost_per_hour,
                unpriced,
            },
        );
    }

    /// Takes over the list of the replica that held the lease before this one
    /// (`handed`, as it wrote it on the Lease): a standby's store has none of it (or its
    /// own from when it last acted), and capacity a removed workload holds would go on
    /// costing unseen. Workloads configured here, or listed here already, are left as
    /// they are; what each holds is read again at the next pass. Returns the names
    /// taken.
    pub fn adopt_unmanaged(
        &mut self,
        handed: &BTreeMap<String, Unmanaged>,
        now: TimestampMs,
    ) -> Result<Vec<String>, StoreError> {
        let configured: BTreeSet<&str> = self.states.iter().map(|s| s.w.name.as_str()).collect();
        let taken: Vec<(String, Unmanaged)> = handed
            .iter()
            .filter(|(n, _)| !configured.contains(n.as_str()) && !self.unmanaged.contains_key(*n))
            .map(|(n, u)| (n.clone(), u.clone()))
            .collect();
        for (name, u) in &taken {
            self.log_config(name, now, format!(
                "listed as unmanaged by the replica that held the lease before ({}, since {}): kept on the list; `{}` releases it",
                u.why,
                prescale_core::format_ts(u.since),
                release_path(name)
            ))?;
            self.unmanaged.insert(name.clone(), u.clone());
        }
        if !taken.is_empty() {
            self.save_unmanaged()?;
            self.status.write().expect("status lock").unmanaged = self.unmanaged.clone();
        }
        Ok(taken.into_iter().map(|(n, _)| n).collect())
    }

    /// Takes `name` off the list: configured again, prescale manages its capacity.
    pub(super) fn manage_again(&mut self, name: &str) -> bool {
        self.unmanaged.remove(name).is_some()
    }

    /// Stores the list.
    pub(super) fn save_unmanaged(&self) -> Result<(), StoreError> {
        if self.persist_status {
            self.store.put_state(STATE_KEY, &self.unmanaged)?;
        }
        Ok(())
    }

    /// Reads the stored list (a restart).
    pub(super) fn restore_unmanaged(&mut self) -> Result<(), StoreError> {
        if let Some(u) = self
            .store
            .get_state::<BTreeMap<String, Unmanaged>>(STATE_KEY)?
        {
            self.unmanaged = u;
        }
        Ok(())
    }

    /// At each pass: reads what each unmanaged workload still holds, lists workloads the
    /// provider holds capacity for that are not configured (removed while prescale was
    /// stopped), drops those that hold nothing any more, and publishes the list in `st`.
    pub(super) fn track_unmanaged(
        &mut self,
        now: TimestampMs,
        st: &mut Status,
    ) -> Result<(), StoreError> {
        let configured: BTreeSet<&str> = self.states.iter().map(|s| s.w.name.as_str()).collect();
        let mut names: BTreeSet<String> = self.unmanaged.keys().cloned().collect();
        names.extend(
            self.provider
                .holders()
                .into_iter()
                .filter(|h| !configured.contains(h.as_str())),
        );
        let mut changed = false;
        let before: Vec<String> = self.unmanaged.keys().cloned().collect();
        for name in names {
            if configured.contains(name.as_str()) {
                changed |= self.unmanaged.remove(&name).is_some();
                continue;
            }
            let instances = self.held_instances(&name, now);
            if instances.is_empty() {
                if let Some(u) = self.unmanaged.remove(&name) {
                    changed = true;
                    self.log_config(&name, now, format!(
                        "no longer managed ({}) and now holds no instances: off the list of unmanaged capacity",
                        u.why
                    ))?;
                }
                continue;
            }
            let (cost_per_hour, unpriced) = price(&self.tiers, &instances);
            match self.unmanaged.get_mut(&name) {
                Some(u) => {
                    if u.instances != instances || u.cost_per_hour != cost_per_hour {
                        (u.instances, u.cost_per_hour, u.unpriced) =
                            (instances, cost_per_hour, unpriced);
                        changed = true;
                    }
                }
                None => {
                    let n: u32 = instances.values().sum();
                    self.log_config(&name, now, format!(
                        "not in the configuration, but the {} provider holds {n} instance(s) for it ({}, ${cost_per_hour:.3}/h): left as they are; `{}` releases them",
                        self.provider.name(),
                        counts(&instances),
                        release_path(&name)
                    ))?;
                    self.unmanaged.insert(
                        name,
                        Unmanaged {
                            since: now,
                            why: format!(
                                "held by the {} provider but in no workload of the configuration",
                                self.provider.name()
                            ),
                            instances,
                            cost_per_hour,
                            unpriced,
                        },
                    );
                    changed = true;
                }
            }
        }
        if changed {
            self.save_unmanaged()?;
        }
        // What each costs an hour, as a series (Grafana on prescale charts it beside
        // prescale_cost_per_hour); one that left the list ends at 0.
        let cost: Vec<(SeriesKey, Vec<Sample>)> = before
            .iter()
            .filter(|n| !self.unmanaged.contains_key(*n))
            .map(|n| (n, 0.0))
            .chain(self.unmanaged.iter().map(|(n, u)| (n, u.cost_per_hour)))
            .map(|(n, value)| {
                let key = SeriesKey::metric(COST_SERIES)
                    .expect("static name")
                    .with_label("workload", n.clone());
                (key, vec![Sample { ts: now, value }])
            })
            .collect();
        if !cost.is_empty() {
            self.store.append_many(&cost)?;
        }
        st.unmanaged = self.unmanaged.clone();
        Ok(())
    }

    /// Releases everything unmanaged workload `name` holds (pending instances included),
    /// logging an `act` decision per tier. Refused for a configured workload and for a
    /// name not on the list; when the provider refuses, what it released before stays
    /// released and an `error` decision says what failed.
    pub fn release(&mut self, name: &str, now: TimestampMs) -> Result<Released, ReleaseError> {
        if self.states.iter().any(|s| s.w.name == name) {
            return Err(ReleaseError::Managed(name.to_string()));
        }
        let Some(u) = self.unmanaged.get(name).cloned() else {
            return Err(ReleaseError::Unknown {
                name: name.to_string(),
                known: self.unmanaged.keys().cloned().collect(),
            });
        };
        let held = self.held_instances(name, now);
        let acts = self.provider.acts();
        let mut released = BTreeMap::new();
        let mut failed = None;
        for (tier, &count) in &held {
            let action = Action {
                key: format!("release/{name}/{tier}/{now}"),
                workload: name.to_string(),
                tier: tier.clone(),
                kind: ActionKind::Deprovision,
                count,
                at: now,
            };
            match self.provider.apply(&action, now) {
                Ok(()) => {
                    self.log_action_decision(&Decision {
                        at: now,
                        workload: name.to_string(),
                        kind: DecisionKind::Act,
                        action: Some(action),
                        reason: format!(
                            "{}release {count} {tier}, as asked (`{}`): the workload is no longer managed ({})",
                            if acts {
                                ""
                            } else {
                                "recommend (nothing changed: providers.use = \"recommend\"): "
                            },
                            release_path(name),
                            u.why
                        ),
                        repeated: None,
                    })?;
                    released.insert(tier.clone(), count);
                }
                Err(e) => {
                    self.log_action_decision(&Decision {
                        at: now,
                        workload: name.to_string(),
                        kind: DecisionKind::Error,
                        action: Some(action),
                        reason: format!(
                            "{} refused to release {count} {tier}: {e}; nothing retries it: ask again",
                            self.provider.name()
                        ),
                        repeated: None,
                    })?;
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        // What the provider keeps of it is stored at once, as the list is.
        self.save_provider(None)?;
        // The list and the status follow at once, not at the next pass (passes run
        // under the same lock as this, so none publishes meanwhile).
        let status = self.status.clone();
        let mut st = status.write().expect("status lock");
        st.actions += released.len() as u64;
        st.errors += failed.is_some() as u64;
        self.track_unmanaged(now, &mut st)?;
        drop(st);
        if let Some(error) = failed {
            return Err(ReleaseError::Provider {
                provider: self.provider.name().to_string(),
                error,
                released,
            });
        }
        let (cost_per_hour, _) = price(&self.tiers, &released);
        Ok(Released {
            workload: name.to_string(),
            released,
            cost_per_hour,
            acted: acts,
        })
    }
}
