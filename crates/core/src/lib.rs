//! Domain types and the configuration schema shared by every prescale stage.
//!
//! Everything that crosses a crate boundary lives here as a plain, serde-serializable
//! value: series keys and samples (the Prometheus data model), forecasts (quantiles over
//! a horizon), tiers and workloads, plans, actions and decisions. This crate does no I/O
//! beyond parsing configuration text handed to it.

pub mod config;
pub mod error;
pub mod forecast;
pub mod model;
pub mod series;

pub use error::CoreError;
pub use forecast::Forecast;
pub use model::{
    Action, ActionKind, Allocation, Decision, DecisionKind, Plan, PlanStep, Tier, TierClass,
    Workload,
};
pub use series::{Sample, SeriesKey};

/// Milliseconds since the Unix epoch, the time unit used everywhere in prescale.
pub type TimestampMs = i64;
