//! Errors raised when a domain value is constructed from bad input.

use thiserror::Error;

/// A value could not be constructed because its input breaks an invariant.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// A sample or forecast value was NaN or infinite.
    #[error("value {value} at {context} is not a finite number; send finite floats only (NaN and ±Inf are rejected)")]
    NonFinite {
        /// The offending value.
        value: f64,
        /// Where it was found (series, timestamp or forecast step).
        context: String,
    },
    /// A metric or label name does not follow the Prometheus data model.
    #[error(
        "invalid {what} name {name:?}: names must match [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no ':')"
    )]
    InvalidName {
        /// "metric" or "label".
        what: &'static str,
        /// The offending name.
        name: String,
    },
    /// A series names a label twice (Prometheus refuses such a series too).
    #[error("label {name:?} is given twice; a series has each label once")]
    DuplicateLabel {
        /// The label.
        name: String,
    },
    /// A series selector string could not be parsed.
    #[error("cannot parse series {input:?}: {reason}; expected name{{label=\"value\",...}}")]
    BadSelector {
        /// The text given.
        input: String,
        /// What went wrong.
        reason: String,
    },
    /// A forecast's quantiles are malformed.
    #[error("invalid forecast: {0}")]
    BadForecast(String),
}
