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

/// A metric name and label matchers: `name{a="x",b!="y",c=~"z.*"}`, or matchers alone,
/// which may test the name as `__name__` does: `{__name__=~"node_disk_.*",device="sda"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// The metric name the series must have; empty when the matchers say (`__name__`).
    pub name: String,
    /// Every matcher must pass.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Parses the Prometheus form; label values are double-quoted with `\"`, `\\` and
    /// `\n` escapes. Without a name before the braces, the matchers may test
    /// `__name__`, and as in Prometheus one of them must not match the empty string
    /// (`{job=~".*"}` would select every series). `{__name__="up",job="x"}` is read as
    /// `up{job="x"}`.
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
        let nameless = name.is_empty() && rest.is_some();
        if !nameless {
            // The name is checked as a series key's would be.
            SeriesKey::metric(name).map_err(|e| bad(e.to_string()))?;
        }
        let mut matchers = Vec::new();
        if let Some(rest) = rest {
            let body = rest
                .trim_end()
                .strip_suffix('}')
                .ok_or_else(|| bad("missing closing '}'".into()))?;
            matchers = parse_matchers(body, nameless).map_err(bad)?;
        }
        let mut name = name.to_string();
        if nameless {
            if matchers.iter().all(|m| m.matches("")) {
                return Err(bad(
                    "it would select every series: name a metric, or give a matcher that an empty label does not pass (job=\"node\", not job=~\".*\")".into(),
                ));
            }
            let named: Vec<usize> = (0..matchers.len())
                .filter(|&i| matchers[i].label == "__name__")
                .collect();
            if let [i] = named[..] {
                if matchers[i].op == MatchOp::Eq {
                    name = matchers.remove(i).value;
                    SeriesKey::metric(&name).map_err(|e| bad(e.to_string()))?;
                }
            }
        }
        Ok(Self { name, matchers })
    }

    /// Whether a series is selected.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        (self.name.is_empty() || key.name == self.name)
            && self.matchers.iter().all(|m| {
                m.matches(if m.label == "__name__" {
                    &key.name
                } else {
                    key.labels.get(&m.label).map_or("", String::as_str)
                })
            })
    }
}

/// A series selector as Prometheus' `match[]` takes it: `name`, `name{...}` or `{...}`,
/// whose matchers may test `__name__` (the metric name).
#[derive(Debug, Clone)]
pub struct SeriesMatch(Vec<Matcher>);

impl SeriesMatch {
    /// Parses one; as Prometheus, refuses one that every series without labels would
    /// pass (`{}`, `{a=""}`, `{a=~".*"}`): it would pick everything. Errors give examples
    /// written as `given` is (`match[]=` in a query string, nothing in a file).
    pub fn parse(s: &str, given: &str) -> Result<Self, String> {
        let s = s.trim();
        let usage = format!("e.g. {given}prescale_demand or {given}{{workload=\"web\"}}");
        let (name, body) = match s.find('{') {
            Some(i) => {
                let body = s[i + 1..]
                    .trim_end()
                    .strip_suffix('}')
                    .ok_or_else(|| format!("{s:?} misses its closing '}}'; {usage}"))?;
                (s[..i].trim(), Some(body))
            }
            None => (s, None),
        };
        let mut matchers = Vec::new();
        if !name.is_empty() {
            SeriesKey::metric(name).map_err(|e| format!("{e}; {usage}"))?;
            matchers.push(Matcher::new("__name__", MatchOp::Eq, name)?);
        }
        if let Some(body) = body {
            matchers
                .extend(parse_matchers(body, true).map_err(|e| format!("{s:?}: {e}; {usage}"))?);
        }
        if matchers.iter().all(|m| m.matches("")) {
            return Err(format!(
                "{s:?} would match every series: name a metric or give a label a value; {usage}"
            ));
        }
        Ok(Self(matchers))
    }

    /// Whether it picks `key`.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        self.0.iter().all(|m| {
            let v = if m.label == "__name__" {
                key.name.as_str()
            } else {
                key.labels.get(&m.label).map_or("", String::as_str)
            };
            m.matches(v)
        })
    }
}

/// The label matchers between a selector's braces (`a="x", b!="y", c=~"z.*"`), in
/// order. `__name__` (the metric name) is a label here only with `name_ok`, as in the
/// query API's `{__name__=~"prescale_.*"}`; a workload's selector names its metric.
pub fn parse_matchers(body: &str, name_ok: bool) -> Result<Vec<Matcher>, String> {
    let mut matchers = Vec::new();
    let mut rest = body;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        if rest.is_empty() {
            return Ok(matchers);
        }
        let end = rest
            .find(['=', '!'])
            .ok_or("label without an operator (=, !=, =~, !~)")?;
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
            return Err(format!("unknown operator after {label:?}"));
        };
        if !(name_ok && label == "__name__") {
            SeriesKey::new("m", [(label, "")]).map_err(|e| e.to_string())?;
        }
        let (value, after) = quoted(after.trim_start())?;
        matchers.push(Matcher::new(label, op, &value)?);
        rest = after;
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
            // Outside label values: `{os="Debian (bookworm)"}` is a selector.
            if unquoted(s).any(|(_, c)| c == '(' || c == '[') {
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

/// A workload's demand (or one of its dimensions), as written in its config: a
/// [`DemandExpr`], perhaps with a range for its rate and a constant factor, in the
/// PromQL a Prometheus or KEDA user already writes:
///
/// - `SELECTOR` or `sum(SELECTOR)`: the selected series' means over each step, summed;
/// - `rate(SELECTOR)`, `rate(SELECTOR[R])`, either inside `sum(...)`: the selected
///   counters' per-second increase over each step (or over the `R` ending with it),
///   summed;
/// - any of these times or divided by a number (`sum(rate(http_requests_total[1m])) /
///   50`: requests per second at 50 per vCPU, in vCPU).
///
/// Demand is one series, so `sum` takes no `by`/`without`, and other aggregations and
/// functions are refused saying what is supported.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// The selector and whether it is a rate.
    pub expr: DemandExpr,
    /// `rate(S[R])`'s `R` in ms; `None`: the step.
    pub range_ms: Option<i64>,
    /// The number the sum is multiplied by (1 unless written).
    pub factor: f64,
}

const DEMAND_FORMS: &str = "a demand is SELECTOR, rate(SELECTOR) or rate(SELECTOR[1m]), either perhaps inside sum(...) and times or divided by a number, e.g. sum(rate(http_requests_total{job=\"web\"}[1m])) / 50";

/// A Prometheus duration with one unit (`500ms`, `30s`, `1m`, `2h`, `1d`, `1w`), in ms.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let i = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = (&s[..i], &s[i..]);
    let v: f64 = num.parse().ok()?;
    let mult = match unit {
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3_600e3,
        "d" => 86_400e3,
        "w" => 604_800e3,
        _ => return None,
    };
    let ms = (v * mult).round() as i64;
    (v.is_finite() && ms > 0 && ms <= crate::MAX_TS_MS).then_some(ms)
}

fn fmt_duration(ms: i64) -> String {
    for (unit, n) in [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms % n == 0 {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

/// The characters of `s` outside double-quoted strings (label values, where `\"`
/// escapes a quote), with their byte offsets; the quotes themselves are left out.
pub fn unquoted(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let (mut quoted, mut escaped) = (false, false);
    s.char_indices().filter(move |&(_, c)| {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            return false;
        }
        quoted = c == '"';
        !quoted
    })
}

/// The top-level `*` or `/` of `s` last in it (outside parentheses, brackets, braces
/// and quoted strings), with its byte offset.
fn top_level_op(s: &str) -> Option<(usize, char)> {
    let mut depth = 0i32;
    let mut found = None;
    for (i, c) in unquoted(s) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '*' | '/' if depth == 0 => found = Some((i, c)),
            _ => {}
        }
    }
    found
}

/// Splits `(inside) rest` at the parenthesis that closes the first, skipping quoted
/// label values.
pub fn parens(s: &str) -> Result<(&str, &str), String> {
    let body = s
        .strip_prefix('(')
        .ok_or_else(|| format!("expected '(' at {s:?}"))?;
    let mut depth = 1;
    for (i, c) in unquoted(body) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok((&body[..i], &body[i + 1..]));
                }
            }
            _ => {}
        }
    }
    Err(format!("no ')' closes {s:?}"))
}

/// [`Selector::parse`], its error as the reason for the whole demand's.
fn selector(s: &str) -> Result<Selector, String> {
    Selector::parse(s.trim()).map_err(|e| match e {
        CoreError::BadSelector { input, reason } => format!("{input:?}: {reason}"),
        e => e.to_string(),
    })
}

/// PromQL arithmetic with a number at the top level of `s` (`EXPR * k`, `k * EXPR`,
/// `EXPR / k`; with several, the last): the rest of the expression and the factor it is
/// multiplied by. `None` when `s` has no top-level `*` or `/`; an error when neither side
/// is a number, when a number is divided by the expression, or when `k` is 0 under `/`.
pub fn scalar_factor(s: &str) -> Option<Result<(&str, f64), String>> {
    let (i, op) = top_level_op(s)?;
    let (lhs, rhs) = (s[..i].trim(), s[i + 1..].trim());
    let number = |t: &str| t.parse::<f64>().ok().filter(|v| v.is_finite());
    Some(match (number(lhs), number(rhs)) {
        (_, Some(k)) if op == '/' && k == 0.0 => Err(format!("{s:?} divides by zero")),
        (_, Some(k)) if op == '/' => Ok((lhs, 1.0 / k)),
        (_, Some(k)) => Ok((lhs, k)),
        (Some(k), None) if op == '*' => Ok((rhs, k)),
        _ => Err(format!(
            "{op} joins {lhs:?} and {rhs:?}: only multiplying or dividing by a number is supported"
        )),
    })
}

/// `(inside)` when the whole of `s` is one parenthesised group.
fn enclosed(s: &str) -> Option<&str> {
    let (body, rest) = parens(s).ok()?;
    rest.trim().is_empty().then_some(body)
}

impl Demand {
    /// Parses a demand (see [`Demand`]); the error says what to write instead.
    pub fn parse(input: &str) -> Result<Self, CoreError> {
        let bad = |reason: String| CoreError::BadSelector {
            input: input.to_string(),
            // The selector's own error names it; not again when it is the whole input.
            reason: reason
                .strip_prefix(&format!("{:?}: ", input.trim()))
                .map_or(reason.clone(), str::to_string),
        };
        let (mut quoted, mut escaped) = (false, false);
        for c in input.chars() {
            match (quoted, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, _, '"') => quoted = !quoted,
                _ => {}
            }
        }
        if quoted {
            return Err(bad(
                "unterminated quoted label value: a '\"' is not closed".into()
            ));
        }
        Self::parse_part(input.trim()).map_err(bad)
    }

    /// [`Demand::parse_level`] one level deeper (see [`crate::nesting`]).
    fn parse_part(s: &str) -> Result<Self, String> {
        crate::nesting::nest(s, || Self::parse_level(s))
    }

    fn parse_level(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err(format!("empty; {DEMAND_FORMS}"));
        }
        if let Some(split) = scalar_factor(s) {
            let (inner, factor) = split.map_err(|e| format!("{e}; {DEMAND_FORMS}"))?;
            if factor <= 0.0 {
                return Err(format!(
                    "times {factor}: a demand is multiplied or divided by a positive number only"
                ));
            }
            let mut d = Self::parse_part(inner)?;
            d.factor *= factor;
            return Ok(d);
        }
        if let Some(body) = enclosed(s) {
            return Self::parse_part(body);
        }
        if let Some(rest) = s.strip_prefix("sum") {
            let rest = rest.trim_start();
            if rest.starts_with("by") || rest.starts_with("without") {
                return Err(format!(
                    "a demand is one series, so sum takes no by/without; {DEMAND_FORMS}"
                ));
            }
            if rest.starts_with('(') {
                return match enclosed(rest) {
                    Some(body) => Self::parse_part(body),
                    None => Err(format!(
                        "unexpected text after sum(...) (a demand is one series, so sum takes no by/without); {DEMAND_FORMS}"
                    )),
                };
            }
        }
        if let Some(rest) = s.strip_prefix("rate") {
            let rest = rest.trim_start();
            if rest.starts_with('(') {
                let arg = enclosed(rest)
                    .ok_or_else(|| format!("rate( without its closing ')'; {DEMAND_FORMS}"))?
                    .trim();
                let (sel, range_ms) = match arg.strip_suffix(']').and_then(|a| a.rsplit_once('[')) {
                    Some((sel, r)) => {
                        let ms = parse_duration_ms(r)
                            .ok_or_else(|| format!("[{r}] is not a range such as [1m] or [30s]"))?;
                        if ms > 86_400_000 {
                            return Err(format!("[{r}] is longer than a day: use at most [1d]"));
                        }
                        (sel, Some(ms))
                    }
                    None => (arg, None),
                };
                return Ok(Demand {
                    expr: DemandExpr::Rate(selector(sel)?),
                    range_ms,
                    factor: 1.0,
                });
            }
        }
        for word in [
            "avg",
            "min",
            "max",
            "count",
            "stddev",
            "stdvar",
            "topk",
            "bottomk",
            "quantile",
            "irate",
            "increase",
            "delta",
            "deriv",
            "histogram_quantile",
        ] {
            if s.strip_prefix(word)
                .is_some_and(|r| r.trim_start().starts_with('('))
            {
                return Err(format!(
                    "{word}(...) is not supported: demand is the total of what it selects; {DEMAND_FORMS}"
                ));
            }
        }
        if s.ends_with(']') {
            return Err(format!(
                "a range belongs inside rate(...): a plain selector is averaged over each step; {DEMAND_FORMS}"
            ));
        }
        if unquoted(s).any(|(_, c)| c == '(') {
            return Err(format!("not a supported function; {DEMAND_FORMS}"));
        }
        Ok(Demand {
            expr: DemandExpr::Sum(selector(s)?),
            range_ms: None,
            factor: 1.0,
        })
    }

    /// The selector either way.
    pub fn selector(&self) -> &Selector {
        self.expr.selector()
    }
}

impl fmt::Display for Demand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.expr, self.range_ms) {
            (DemandExpr::Rate(s), Some(r)) => write!(f, "rate({s}[{}])", fmt_duration(r))?,
            (e, _) => write!(f, "{e}")?,
        }
        if self.factor != 1.0 {
            write!(f, " * {}", self.factor)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SeriesKey {
        SeriesKey::parse(s).unwrap()
    }

    #[test]
    fn a_demand_nested_too_deep_is_refused_not_overflowed() {
        let nested = |n: usize| format!("{}x{}", "(".repeat(n), " * 2)".repeat(n));
        let d = Demand::parse(&nested(100)).unwrap();
        assert_eq!(d.factor, 2f64.powi(100));
        let e = Demand::parse(&nested(5000)).unwrap_err().to_string();
        assert!(e.contains("nests more than 256 levels"), "{e}");
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
    fn a_selector_may_leave_the_name_to_its_matchers() {
        let s = Selector::parse(r#"{__name__=~"node_load.*", job="node"}"#).unwrap();
        assert!(s.name.is_empty());
        assert!(s.matches(&key(r#"node_load1{job="node"}"#)));
        assert!(!s.matches(&key(r#"node_load1{job="db"}"#)));
        assert!(!s.matches(&key(r#"node_cpu{job="node"}"#)));
        // Written back as Prometheus reads it (a remote store is asked so).
        assert_eq!(s.to_string(), r#"{__name__=~"node_load.*",job="node"}"#);
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
        let by_label = Selector::parse(r#"{job="node"}"#).unwrap();
        assert!(by_label.matches(&key(r#"anything{job="node"}"#)));
        assert!(!by_label.matches(&key("anything")));
        // One name matcher of equality is the name.
        assert_eq!(
            Selector::parse(r#"{__name__="up", job="x"}"#).unwrap(),
            Selector::parse(r#"up{job="x"}"#).unwrap()
        );
        assert_eq!(
            SeriesKey::parse(r#"{__name__="up",job="x"}"#).unwrap(),
            key(r#"up{job="x"}"#)
        );
        for every in [r#"{}"#, r#"{job=~".*"}"#, r#"{a="", b!="x"}"#] {
            let e = Selector::parse(every).unwrap_err().to_string();
            assert!(e.contains("every series"), "{every}: {e}");
        }
        let e = Selector::parse(r#"{__name__="1x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("metric"), "{e}");
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
        // Parentheses and brackets inside label values are the values'.
        let e = DemandExpr::parse(r#"os_info{pretty_name="Debian 12 (bookworm)",v="[1]"}"#);
        assert!(
            matches!(&e, Ok(DemandExpr::Sum(s)) if s.matchers[0].value == "Debian 12 (bookworm)"),
            "{e:?}"
        );
        let e = DemandExpr::parse(r#"x{a="("}[5m]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = DemandExpr::parse("rate(x[5m])").unwrap_err().to_string();
        assert!(e.contains("without a range"), "{e}");
        let e = DemandExpr::parse("sum(x)").unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        let e = DemandExpr::parse("rate(x").unwrap_err().to_string();
        assert!(e.contains("closing ')'"), "{e}");
    }
    #[test]
    fn demands_are_written_as_prometheus_users_write_them() {
        let d = |s: &str| Demand::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        // What KEDA's Prometheus scaler is usually given, in vCPU at 50 requests each.
        let e = d(r#"sum(rate(http_requests_total{job="web", code=~"2.."}[1m])) / 50"#);
        assert!(matches!(&e.expr, DemandExpr::Rate(s) if s.name == "http_requests_total"));
        assert_eq!(e.range_ms, Some(60_000));
        assert!((e.factor - 0.02).abs() < 1e-15);
        assert_eq!(
            e.to_string(),
            r#"rate(http_requests_total{job="web",code=~"2.."}[1m]) * 0.02"#
        );
        // Written back, it reads the same.
        assert_eq!(d(&e.to_string()), e);
        // The plain forms, unchanged.
        let plain = d("up");
        assert_eq!((plain.range_ms, plain.factor), (None, 1.0));
        assert!(matches!(plain.expr, DemandExpr::Sum(_)));
        assert_eq!(d("rate(x)").range_ms, None);
        // Factors on either side, nested in sum and parentheses, multiply.
        assert_eq!(d("2 * sum(x) * 3").factor, 6.0);
        assert_eq!(d("(sum((x))) / 4").factor, 0.25);
        assert_eq!(d("sum(rate(x[5m]) * 2)").factor, 2.0);
        assert_eq!(d("sum (rate(x[90s]))").range_ms, Some(90_000));
        // A '/' or '*' inside a label value is the value's.
        let q = d(r#"x{path=~"/api/.*"} / 2"#);
        assert_eq!(q.selector().to_string(), r#"x{path=~"/api/.*"}"#);
        assert_eq!(q.factor, 0.5);
        // And so are parentheses and brackets.
        let q = d(r#"sum(up{os="Debian 12 (bookworm)"}) * 2"#);
        assert_eq!(q.selector().to_string(), r#"up{os="Debian 12 (bookworm)"}"#);
        let q = d(r#"rate(x{v="[1]"}[1m])"#);
        assert_eq!(q.selector().to_string(), r#"x{v="[1]"}"#);
        assert_eq!(q.range_ms, Some(60_000));
        assert_eq!(parse_duration_ms("1w"), Some(604_800_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("14892855w"), Some(9_007_198_704_000_000));
        assert_eq!(parse_duration_ms("14892856w"), None, "past MAX_TS_MS");
    }

    #[test]
    fn demands_not_supported_say_what_is() {
        for (text, says) in [
            ("sum by (pod) (x)", "no by/without"),
            ("sum(x) by (pod)", "no by/without"),
            ("avg(x)", "avg(...) is not supported"),
            ("irate(x[1m])", "irate(...) is not supported"),
            ("x[5m]", "a range belongs inside rate"),
            ("rate(x[5q])", "not a range such as"),
            ("rate(x[2d])", "longer than a day"),
            ("x / y", "only multiplying or dividing by a number"),
            ("2 / x", "only multiplying or dividing by a number"),
            ("x / 0", "divides by zero"),
            ("x / -4", "positive number only"),
            ("x * -2", "positive number"),
            ("rate(x", "closing ')'"),
            ("abs(x)", "not a supported function"),
            ("", "empty"),
            (r#"x{a="1}"#, "unterminated"),
            (r#"sum(x{a=1}) / 2"#, r#""x{a=1}": "#),
        ] {
            let e = Demand::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
            assert!(
                e.contains("sum(rate(") || !says.contains("supported"),
                "{text}: {e}"
            );
        }
    }
}
