//! Series identity and samples, following the Prometheus data model.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{CoreError, TimestampMs};

/// Identifies one time series: a metric name plus a sorted set of labels.
///
/// Labels are kept sorted by name ([`Labels`]), so two keys with the same labels in a
/// different order are equal and serialize identically.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    /// The metric name, e.g. `host_cpu_usage_cores`.
    pub name: String,
    /// Label names to values, sorted by name.
    #[serde(default)]
    pub labels: Labels,
}

/// A series' label set: names to values, sorted by name, each name once.
///
/// It behaves as the `BTreeMap<String, String>` it replaced (same order, equality,
/// iteration and JSON form, so stored keys read back the same), but holds its pairs in one
/// sorted vector: a store index and an anomaly watch keep a key per series, and a map's
/// node costs about 540 bytes where a few pairs in a vector take a hundred or so. A clone
/// allocates exactly what the pairs need. Lookups are binary searches over a handful of
/// names.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

/// Iterator over a [`Labels`]' pairs, by name.
pub type LabelsIter<'a> = std::iter::Map<
    std::slice::Iter<'a, (String, String)>,
    fn(&(String, String)) -> (&String, &String),
>;

fn pair_refs(p: &(String, String)) -> (&String, &String) {
    (&p.0, &p.1)
}

impl Labels {
    /// An empty label set.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(name))
    }

    /// The value of label `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    /// Sets label `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.find(&name) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// Removes label `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        self.find(name).ok().map(|i| self.0.remove(i).1)
    }

    /// The pairs, by name.
    pub fn iter(&self) -> LabelsIter<'_> {
        self.0
            .iter()
            .map(pair_refs as fn(&(String, String)) -> (&String, &String))
    }

    /// The names, sorted.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.0.iter().map(|(k, _)| k)
    }

    /// Sorts pairs by name; where a name comes twice the last value counts.
    fn from_pairs(mut pairs: Vec<(String, String)>) -> Self {
        // A stable sort keeps repeated names in the order given; the last one is kept.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Self(out)
    }

    /// How many labels the set has.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set has no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = String;

    fn index(&self, name: &str) -> &String {
        self.get(name)
            .unwrap_or_else(|| panic!("no label {name:?} in {self:?}"))
    }
}

impl FromIterator<(String, String)> for Labels {
    /// Collects pairs; where a name comes twice the last value counts, as in a map.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self::from_pairs(iter.into_iter().collect())
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Self {
        Self(map.into_iter().collect())
    }
}

impl<const N: usize> From<[(String, String); N]> for Labels {
    fn from(pairs: [(String, String); N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Labels {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a String, &'a String);
    type IntoIter = LabelsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    /// Reads a map of names to values straight into the list (every stored key is read
    /// this way when the store opens), the last of a repeated name winning as in a map.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        d.deserialize_map(Pairs)
    }
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
    /// Builds a key after checking the metric and label names. A label with an empty
    /// value is left out: in Prometheus' data model it is the same as no label, and
    /// Prometheus stores `x{a=""}` and `x` as one series.
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
        let mut map = Labels::new();
        for (k, v) in labels {
            let k = k.into();
            if !valid_name(&k, false) || k == "__name__" {
                return Err(CoreError::InvalidName {
                    what: "label",
                    name: k,
                });
            }
            if map.get(&k).is_some() {
                return Err(CoreError::DuplicateLabel { name: k });
            }
            let v = v.into();
            if !v.is_empty() {
                map.insert(k, v);
            }
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
    fn a_label_with_an_empty_value_is_no_label() {
        let plain = SeriesKey::new("x", [("b", "1")]).unwrap();
        assert_eq!(SeriesKey::new("x", [("a", ""), ("b", "1")]).unwrap(), plain);
        assert_eq!(SeriesKey::parse(r#"x{a="",b="1"}"#).unwrap(), plain);
        // An invalid name is refused whatever its value.
        assert!(SeriesKey::new("x", [("1a", "")]).is_err());
    }

    #[test]
    fn a_label_given_twice_is_refused() {
        let e = SeriesKey::new("x", [("a", "1"), ("a", "2")]).unwrap_err();
        assert!(e.to_string().contains(r#"label "a" is given twice"#), "{e}");
        assert!(SeriesKey::parse(r#"x{a="1",a="1"}"#).is_err());
    }

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
    fn labels_behave_as_the_map_they_replaced() {
        // Stored keys were written as JSON from a BTreeMap: they must read back and write
        // out the same, and sort and compare the same (query results are ordered by them).
        let pairs = [
            ("zone", "b"),
            ("app", "web"),
            ("pod", "web-1"),
            ("app", "api"),
        ];
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let labels: Labels = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(labels.len(), 3);
        assert_eq!(
            labels["app"], "api",
            "the last of a repeated name wins, as in a map"
        );
        assert_eq!(
            serde_json::to_string(&labels).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let read: Labels =
            serde_json::from_str(r#"{"zone":"b","app":"api","pod":"web-1"}"#).unwrap();
        assert_eq!(read, labels);
        let twice: Labels = serde_json::from_str(r#"{"a":"1","b":"2","a":"3"}"#).unwrap();
        assert_eq!(
            (twice.len(), twice["a"].as_str()),
            (2, "3"),
            "the last of a name wins"
        );
        assert!(serde_json::from_str::<Labels>(r#"{"a":1}"#).is_err());
        assert!(labels.iter().map(|(k, _)| k).eq(map.keys()));
        assert!(labels.iter().map(|(_, v)| v).eq(map.values()));

        let mut sets: Vec<BTreeMap<String, String>> = vec![
            map.clone(),
            BTreeMap::new(),
            BTreeMap::from([("app".to_string(), "api".to_string())]),
            BTreeMap::from([
                ("app".to_string(), "api".to_string()),
                ("b".to_string(), String::new()),
            ]),
            BTreeMap::from([("aa".to_string(), "z".to_string())]),
        ];
        let mut as_labels: Vec<Labels> = sets.iter().cloned().map(Labels::from).collect();
        sets.sort();
        as_labels.sort();
        assert_eq!(
            as_labels,
            sets.into_iter().map(Labels::from).collect::<Vec<_>>()
        );

        let mut l = labels;
        assert_eq!(l.insert("job".into(), "node".into()), None);
        assert_eq!(l.insert("app".into(), "db".into()), Some("api".into()));
        assert!(l.keys().eq(["app", "job", "pod", "zone"]));
        assert_eq!(l.remove("pod"), Some("web-1".into()));
        assert_eq!(l.remove("pod"), None);
        assert!(l.get("pod").is_none() && l.get("zone").is_some());
        l.remove("zone");
        assert_eq!(format!("{l:?}"), r#"{"app": "db", "job": "node"}"#);
        assert_eq!(l.get("nope"), None);
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
