//! Series identity and samples, following the Prometheus data model.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{CoreError, TimestampMs};

/// Identifies one time series: a metric name plus a sorted set of labels.
///
/// Labels are kept in a `BTreeMap`, so two keys with the same labels in a different
/// order are equal and serialize identically.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The metric name, e.g. `host_cpu_usage_cores`.
    pub name: String,
    /// Label names to values, sorted by name.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn valid_name(s: &str, allow_colon: bool) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let ok_first = first.is_ascii_alphabetic() || first == '_' || (allow_colon && first == ':');
    ok_first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':'))
}

impl SeriesKey {
    /// Builds a key after checking the metric and label names.
    pub fn new<I, K, V>(name: impl Into<String>, labels: I) -> Result<Self, CoreError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let name = name.into();
        if !valid_name(&name, true) {
            return Err(CoreError::InvalidName {
                what: "metric",
                name,
            });
        }
        let mut map = BTreeMap::new();
        for (k, v) in labels {
            let k = k.into();
            if !valid_name(&k, false) || k == "__name__" {
                return Err(CoreError::InvalidName {
                    what: "label",
                    name: k,
                });
            }
            map.insert(k, v.into());
        }
        Ok(Self { name, labels: map })
    }

    /// A key with a metric name and no labels.
    pub fn metric(name: impl Into<String>) -> Result<Self, CoreError> {
        Self::new(name, std::iter::empty::<(String, String)>())
    }

    /// Returns a copy with one more label (replacing an existing one of that name).
    pub fn with_label(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }

    /// Parses the Prometheus text form `name{a="x",b="y"}` (labels optional): a
    /// selector whose matchers are all `=`.
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let sel = crate::Selector::parse(input)?;
        let mut labels = Vec::with_capacity(sel.matchers.len());
        for m in sel.matchers {
            if m.op != crate::selector::MatchOp::Eq {
                return Err(CoreError::BadSelector {
                    input: input.to_string(),
                    reason: format!("{}: a series is named with = only", m.label),
                });
            }
            labels.push((m.label, m.value));
        }
        Self::new(sel.name, labels)
    }
}

impl fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                let escaped = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                write!(f, "{k}=\"{escaped}\"")?;
            }
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// One observation of a series: a timestamp and a finite value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub ts: TimestampMs,
    /// The observed value; always finite.
    pub value: f64,
}

impl Sample {
    /// Builds a sample, rejecting NaN and infinities.
    pub fn new(ts: TimestampMs, value: f64) -> Result<Self, CoreError> {
        if !value.is_finite() {
            return Err(CoreError::NonFinite {
                value,
                context: format!("timestamp {ts}"),
            });
        }
        Ok(Self { ts, value })
    }

    /// How much a counter rose from `before` to this sample: the difference, or, where it
    /// fell (the process restarted), this value, counted from zero as Prometheus does.
    pub fn counter_rise(&self, before: f64) -> f64 {
        if self.value < before {
            self.value
        } else {
            self.value - before
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let k = SeriesKey::parse(r#"http_requests{path="/a\"b", code="200"}"#).unwrap();
        assert_eq!(k.name, "http_requests");
        assert_eq!(k.labels["path"], "/a\"b");
        assert_eq!(k.labels["code"], "200");
        let text = k.to_string();
        assert_eq!(text, r#"http_requests{code="200",path="/a\"b"}"#);
        assert_eq!(SeriesKey::parse(&text).unwrap(), k);
    }

    #[test]
    fn label_order_does_not_matter() {
        let a = SeriesKey::new("m", [("a", "1"), ("b", "2")]).unwrap();
        let b = SeriesKey::new("m", [("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }

    #[test]
    fn rejects_bad_names_and_selectors() {
        assert!(SeriesKey::metric("1abc").is_err());
        assert!(SeriesKey::metric("").is_err());
        assert!(SeriesKey::new("m", [("a:b", "x")]).is_err());
        assert!(SeriesKey::parse("m{a=1}").is_err());
        assert!(SeriesKey::parse("m{a=\"1\"").is_err());
        assert!(SeriesKey::parse("m{a}").is_err());
    }

    #[test]
    fn matching_is_by_subset_of_labels() {
        let k = SeriesKey::parse(r#"cpu{mode="user",host="a"}"#).unwrap();
        let sel = |t: &str| crate::Selector::parse(t).unwrap().matches(&k);
        assert!(sel(r#"cpu{mode="user"}"#));
        assert!(sel("cpu"));
        assert!(!sel(r#"cpu{mode="idle"}"#));
        assert!(!sel("mem"));
    }

    #[test]
    fn samples_must_be_finite() {
        assert!(Sample::new(1, f64::NAN).is_err());
        assert!(Sample::new(1, f64::INFINITY).is_err());
        let err = Sample::new(5, f64::NEG_INFINITY).unwrap_err().to_string();
        assert!(err.contains("not a finite number"), "{err}");
        assert_eq!(Sample::new(1, 2.5).unwrap().value, 2.5);
    }
}
