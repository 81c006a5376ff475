//! The control loop: from stored demand to provider actions, with every decision logged.
//!
//! - [`provider`]: the [`Provider`] interface and the built-in simulated cloud;
//! - [`hook`]: providers that hand actions to a command or an HTTP endpoint;
//! - [`kube`]: the provider that scales Kubernetes Deployments and StatefulSets;
//! - [`reconcile`]: desired vs actual capacity -> idempotent actions, with HPA-style
//!   scale-down stabilisation;
//! - [`engine`]: one pass of resample -> detect -> forecast -> plan -> reconcile -> act
//!   for every workload, and the status the server shows;
//! - [`trainer`]: model selection and refits off the control path;
//! - [`demo`]: the same engine on an accelerated clock with synthetic demand;
//! - [`jumps`]: upper quantiles at a predicted jump from the errors of past ones;
//! - [`nowcast`]: the forecast in force brought up to the present between refreshes;
//! - [`simulate`]: what-if replay of a demand trace under a policy, in dollars;
//! - [`replay`]: several workloads' traces through the engine at once, pools and the
//!   fleet budget counted;
//! - [`retention`]: deletes samples older than each series may keep;
//! - [`tune`]: which of a workload's safeguards pay for themselves on its history.

pub mod demo;
pub mod engine;
pub mod hook;
pub mod jumps;
pub mod kube;
pub mod lease;
pub mod nowcast;
pub mod provider;
pub mod reconcile;
pub mod replay;
pub mod retention;
pub mod simulate;
pub mod trainer;
pub mod tune;

pub use engine::{Engine, Status, WorkloadStatus};
pub use provider::{Provider, ProviderError, SimCloud};
