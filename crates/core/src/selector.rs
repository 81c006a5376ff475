//! Series selectors with Prometheus' label matchers (`=`, `!=`, `=~`, `!~`), and the
//! demand expressions a workload is configured with: the sum of the selected series, or
//! the sum of their per-second rates (`rate(SELECTOR)`, for counters).

use std::fmt;

use regex::Regex;

use crate::{CoreError, SeriesKey};

/// How a label matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: the label equals the value (an absent label counts as empty).
    Eq,
    /// `!=`: the label differs from the value.
    Ne,
    /// `=~`: the label matches the regular expression, anchored at both ends.
    Re,
    /// `!~`: the label does not match the regular expression.
    NotRe,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Re => "=~",
            Self::NotRe => "!~",
        }
    }
}

/// One label matcher, e.g. `mode!="idle"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub label: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or regular expression, as written.
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.label == o.label && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    /// Builds a matcher; a regular expression is anchored as Prometheus anchors it.
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("bad regular expression for {label}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self {
            label: label.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether a label value (empty when the label is absent) passes.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Ne, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::NotRe, Some(re)) => !re.is_match(v),
            _ => unreachable!("regex matchers are built with their regex"),
        }
    }
}

/// Reads a double-quoted label value at the start of `s` (`\"`, `\\` and `\n`
/// escapes, as in the Prometheus text format and PromQL); returns the value and what
/// follows the closing quote.
pub fn quoted(s: &str) -> Result<(String, &str), &'static str> {
    let mut chars = s.char_indices();
    if !matches!(chars.next(), Some((_, '"'))) {
        return Err("label value must be double-quoted");
    }
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, c)) => value.push(c),
                None => return Err("dangling escape"),
            },
            '"' => return Ok((value, &s[i + 1..])),
            c => value.push(c),
        }
    }
    Err("unterminated label value")
}

/// A metric name and label matchers: `name{a="x",b!="y",c=~"z.*"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// The metric name the series must have.
    pub name: String,
    /// Every matcher must pass.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Parses the Prometheus form; label values are double-quoted with `\"`, `\\` and
    /// `\n` escapes.
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let bad = |reason: String| CoreError::BadSelector {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        let (name, rest) = match s.find('{') {
            Some(i) => (s[..i].trim(), Some(&s[i + 1..])),
            None => (s, None),
        };
        // The name is checked as a series key's would be.
        SeriesKey::metric(name).map_err(|e| bad(e.to_string()))?;
        let mut matchers = Vec::new();
        if let Some(rest) = rest {
            let body = rest
                .trim_end()
                .strip_suffix('}')
                .ok_or_else(|| bad("missing closing '}'".into()))?;
            let mut rest = body;
            loop {
                rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
                if rest.is_empty() {
                    break;
                }
                let end = rest
                    .find(['=', '!'])
                    .ok_or_else(|| bad("label without an operator (=, !=, =~, !~)".into()))?;
                let label = rest[..end].trim();
                let after = &rest[end..];
                let (op, after) = if let Some(a) = after.strip_prefix("=~") {
                    (MatchOp::Re, a)
                } else if let Some(a) = after.strip_prefix("!=") {
                    (MatchOp::Ne, a)
                } else if let Some(a) = after.strip_prefix("!~") {
                    (MatchOp::NotRe, a)
                } else if let Some(a) = after.strip_prefix('=') {
                    (MatchOp::Eq, a)
                } else {
                    return Err(bad(format!("unknown operator after {label:?}")));
                };
                SeriesKey::new("m", [(label, "")]).map_err(|e| bad(e.to_string()))?;
                let (value, after) = quoted(after.trim_start()).map_err(|e| bad(e.into()))?;
                matchers.push(Matcher::new(label, op, &value).map_err(bad)?);
                rest = after;
            }
        }
        Ok(Self {
            name: name.to_string(),
            matchers,
        })
    }

    /// Whether a series is selected.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        key.name == self.name
            && self
                .matchers
                .iter()
                .all(|m| m.matches(key.labels.get(&m.label).map(String::as_str).unwrap_or("")))
    }
}

impl From<&SeriesKey> for Selector {
    fn from(k: &SeriesKey) -> Self {
        Self {
            name: k.name.clone(),
            matchers: k
                .labels
                .iter()
                .map(|(l, v)| Matcher::new(l, MatchOp::Eq, v).expect("equality needs no regex"))
                .collect(),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if !self.matchers.is_empty() {
            let inner: Vec<String> = self
                .matchers
                .iter()
                .map(|m| {
                    let v = m
                        .value
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n");
                    format!("{}{}\"{v}\"", m.label, m.op.as_str())
                })
                .collect();
            write!(f, "{{{}}}", inner.join(","))?;
        }
        Ok(())
    }
}

/// What a workload's demand (or one of its dimensions) is computed from.
#[derive(Debug, Clone, PartialEq)]
pub enum DemandExpr {
    /// `SELECTOR`: the sum, at each step, of each selected series' mean over the step
    /// (for gauges: busy cores, bytes in use, requests in flight).
    Sum(Selector),
    /// `rate(SELECTOR)`: the sum, at each step, of each selected counter's per-second
    /// increase over the step, counter resets counted as Prometheus counts them (for
    /// counters: CPU seconds, requests served, bytes sent).
    Rate(Selector),
}

impl DemandExpr {
    /// Parses `SELECTOR` or `rate(SELECTOR)`. The rate's window is always the workload's
    /// step, so a PromQL range (`[1m]`) is refused with a note saying so.
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let s = input.trim();
        let Some(inner) = s.strip_prefix("rate(") else {
            if s.contains('(') || s.contains('[') {
                return Err(CoreError::BadSelector {
                    input: input.to_string(),
                    reason: "a demand is a series selector or rate(SELECTOR); other PromQL functions and ranges are not supported".into(),
                });
            }
            return Selector::parse(s).map(Self::Sum);
        };
        let inner = inner
            .strip_suffix(')')
            .ok_or_else(|| CoreError::BadSelector {
                input: input.to_string(),
                reason: "rate( without its closing ')'".into(),
            })?;
        if inner.trim_end().ends_with(']') {
            return Err(CoreError::BadSelector {
                input: input.to_string(),
                reason: "write rate(SELECTOR) without a range: the rate is taken over each step (the workload's step_s)".into(),
            });
        }
        Selector::parse(inner).map(Self::Rate)
    }

    /// The selector either way.
    pub fn selector(&self) -> &Selector {
        match self {
            Self::Sum(s) | Self::Rate(s) => s,
        }
    }
}

impl fmt::Display for DemandExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sum(s) => write!(f, "{s}"),
            Self::Rate(s) => write!(f, "rate({s})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SeriesKey {
        SeriesKey::parse(s).unwrap()
    }

    #[test]
    fn matchers_select_as_prometheus_does() {
        let cpu = |mode: &str, cpu: &str| {
            key(&format!(
                r#"node_cpu_seconds_total{{cpu="{cpu}",mode="{mode}"}}"#
            ))
        };
        let s = Selector::parse(r#"node_cpu_seconds_total{mode!="idle", mode!~"io.*"}"#).unwrap();
        assert!(s.matches(&cpu("user", "0")));
        assert!(!s.matches(&cpu("idle", "0")));
        assert!(!s.matches(&cpu("iowait", "1")));
        assert!(!s.matches(&key(r#"other{mode="user"}"#)));
        // Regexes are anchored: "us" does not match "user".
        let s = Selector::parse(r#"node_cpu_seconds_total{mode=~"us|sys.*",cpu="0"}"#).unwrap();
        assert!(!s.matches(&cpu("user", "0")));
        assert!(s.matches(&cpu("system", "0")));
        assert!(!s.matches(&cpu("system", "1")));
        // An absent label is empty.
        assert!(Selector::parse(r#"m{a=""}"#).unwrap().matches(&key("m")));
        assert!(!Selector::parse(r#"m{a!=""}"#).unwrap().matches(&key("m")));
        // Equality matchers select as a series key does.
        let k = key(r#"m{a="1",b="x \"q\""}"#);
        assert!(Selector::from(&k).matches(&k));
        assert_eq!(
            Selector::parse(&Selector::from(&k).to_string()).unwrap(),
            Selector::from(&k)
        );
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for (text, why) in [
            (r#"m{a!"x"}"#, "unknown operator"),
            (r#"m{a=x}"#, "double-quoted"),
            (r#"m{a="x"#, "closing '}'"),
            (r#"m{a="x}"#, "unterminated"),
            (r#"m{a=~"("}"#, "bad regular expression for a"),
            (r#"m{a}"#, "without an operator"),
            (r#"1m"#, "metric"),
            (r#"m{__name__="x"}"#, "label"),
        ] {
            let e = Selector::parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn demand_expressions_are_a_selector_or_its_rate() {
        let e = DemandExpr::parse(r#" rate(http_requests_total{code=~"2.."}) "#).unwrap();
        assert!(matches!(&e, DemandExpr::Rate(s) if s.name == "http_requests_total"));
        assert_eq!(e.to_string(), r#"rate(http_requests_total{code=~"2.."})"#);
        assert!(matches!(
            DemandExpr::parse("up").unwrap(),
            DemandExpr::Sum(_)
        ));
        let e = DemandExpr::parse("rate(x[5m])").unwrap_err().to_string();
        assert!(e.contains("without a range"), "{e}");
        let e = DemandExpr::parse("sum(x)").unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = DemandExpr::parse("rate(x").unwrap_err().to_string();
        assert!(e.contains("closing ')'"), "{e}");
    }
}
