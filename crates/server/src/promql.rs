//! The part of Prometheus' query API that charting tools use, so Grafana can add prescale
//! as a Prometheus data source and chart demand, forecasts and capacity next to
//! everything else: `query` and `query_range` with a series selector (label matchers
//! `=`, `!=`, `=~`, `!~`), `rate(SELECTOR)` or `rate(SELECTOR[RANGE])`,
//! `increase(SELECTOR[RANGE])`, `avg_`, `min_`, `max_`, `sum_`, `count_`, `last_`,
//! `stddev_` or `stdvar_over_time(SELECTOR[RANGE])`,
//! `quantile_over_time(PHI, SELECTOR[RANGE])`, `delta`, `idelta`, `irate`, `deriv`,
//! `changes` and `resets(SELECTOR[RANGE])` and `predict_linear(SELECTOR[RANGE], SECONDS)`, either under
//! `sum`, `avg`, `min`, `max` or `count` with or without `by (...)` / `without (...)`,
//! with `offset D` and `@ T` (unix seconds, `start()` or `end()`) on any selector or
//! subquery, and `+`, `-`, `*`, `/`, `%` and `^` between any of
//! these and numbers (series matched one to one on their labels, or on `on (...)` / all
//! but `ignoring (...)` of them, and many to one with `group_left (...)` /
//! `group_right (...)`), the comparisons `==`, `!=`, `>`, `<`, `>=` and `<=` (a filter,
//! or 1 and 0 with `bool`), `and`, `or` and `unless` between series, in PromQL's order
//! of precedence, `histogram_quantile(PHI, ...)` of
//! classic histograms' bucket series, `topk(K, ...)` and `bottomk(K, ...)`, and `abs`, `ceil`, `floor`, `round`, `clamp_min`,
//! `clamp_max`, `clamp`, `sqrt`, `exp`, `ln`, `log2`, `log10` and `sgn` of any of these,
//! `absent_over_time` and `present_over_time`, `sort` and `sort_desc`, `label_join`,
//! `stddev`, `stdvar`, `group`, `quantile` and `count_values` aggregations, the date functions (`hour`
//! and the like), `vector(N)`, `absent(X)`, `time()`, `timestamp(X)` and `scalar(X)` (numbers are one
//! per evaluation time, so `time()` moves), subqueries (`X[RANGE:RES]` of any
//! expression in any range function, e.g. `max_over_time(rate(x[5m])[1h:1m])`), and `label_replace(X, DST, REPLACEMENT,
//! SRC, REGEX)`, each of these under `sum`, `avg`, `min`, `max` or `count` too;
//! a range vector `SELECTOR[RANGE]` (with `offset` and `@`) as an instant query, which
//! answers each series' stored samples in the range;
//! and `status/buildinfo` (`labels`, `label/NAME/values` and `series` are in
//! [`crate::promapi`]). Other PromQL (other functions
//! and operators) is refused with a message saying what is supported.
//!
//! As in Prometheus, a selector's value at time `t` is its newest sample in the five
//! minutes up to `t`, and each series is returned on its own; `rate(S[R])` and
//! `increase(S[R])` are each counter's increase over the `R` before `t` as Prometheus
//! extrapolates it to the range's edges, and `rate(S)` (prescale's, as a workload's
//! demand reads it) the increase over the step before `t` (the five minutes before it
//! for an instant query). An aggregation drops `__name__` and keeps the `by` labels (or
//! all but the `without` ones), as Prometheus'; of the range functions only
//! `last_over_time` keeps it. `crates/prescale/tests/promql_vs_prometheus.rs` holds
//! every kind of query here to a real Prometheus' answers on the same samples.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prescale_core::nesting::{grow, nest};
use prescale_core::{
    now_ms, parens, parse_duration_ms, unquoted, DemandExpr, Labels, Sample, TimestampMs, MAX_TS_MS,
};
use serde_json::{json, Value};

use crate::{error, AppState};
use prescale_store::Store;

/// How far back a selector looks for a sample, as Prometheus' default lookback delta.
const LOOKBACK_MS: i64 = 300_000;
/// The most points a range query may ask for per series, as in Prometheus.
const MAX_POINTS: i64 = 11_000;

/// A query's parameters, as Prometheus takes them (read by [`crate::promapi::ApiParams`]).
pub struct PromParams {
    pub(crate) query: Option<String>,
    pub(crate) time: Option<String>,
    pub(crate) start: Option<String>,
    pub(crate) end: Option<String>,
    pub(crate) step: Option<String>,
}

pub(crate) fn bad(msg: impl Into<String>) -> Response {
    let msg = msg.into();
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"status": "error", "errorType": "bad_data", "error": msg})),
    )
        .into_response()
}

/// Unix seconds (as Grafana sends them) or RFC 3339, in ms.
fn parse_time(s: &str) -> Option<TimestampMs> {
    prescale_core::parse_ts(s)
}

/// A step as seconds (`15`, `0.5`) or a duration (`15s`, `1m`, `1h`), in ms.
fn parse_step(s: &str) -> Option<i64> {
    match s.parse::<f64>() {
        Ok(v) => {
            let ms = (v * 1e3).round() as i64;
            (v.is_finite() && ms > 0 && ms <= MAX_TS_MS).then_some(ms)
        }
        Err(_) => parse_duration_ms(s),
    }
}

/// What the query API evaluates: a selector or a rate, over a range when given, and
/// perhaps aggregated.
#[derive(Debug, Clone, PartialEq)]
struct Expr {
    inner: DemandExpr,
    /// `rate(S[R])`'s `R` in ms (or `increase`'s, or `*_over_time`'s).
    range: Option<i64>,
    /// `avg_over_time(S[R])` and the like: each series' samples in the range combined.
    over: Option<AggOp>,
    agg: Option<Agg>,
    /// `* k` or `/ k` on the result, when written.
    factor: Option<f64>,
    /// `offset D` (ms): evaluated this long before each time asked (negative: after).
    offset: i64,
    /// `timestamp(SELECTOR)`: each value is the time of the sample it comes from, in
    /// unix seconds.
    stamp: bool,
    /// `@ T`: evaluated at that one time (less the offset) whatever time is asked.
    at: Option<At>,
}

impl Expr {
    /// A selector or range function, not yet aggregated or scaled, with its modifiers.
    fn of(inner: DemandExpr, range: Option<i64>, over: Option<AggOp>, m: Modifiers) -> Self {
        Self {
            inner,
            range,
            over,
            agg: None,
            factor: None,
            offset: m.offset,
            stamp: false,
            at: m.at,
        }
    }
}

/// The time an `@` modifier fixes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    /// `@ 1700000000` (unix seconds), in ms.
    Ms(TimestampMs),
    /// `@ start()`: the query's first evaluation time ([`pin`] sets it).
    Start,
    /// `@ end()`: its last.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum AggOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    /// The newest (`last_over_time`).
    Last,
    /// The φ-quantile, interpolated between ranks (`quantile_over_time`).
    Quantile(f64),
    /// The population standard deviation (`stddev_over_time`).
    Stddev,
    /// The population variance (`stdvar_over_time`).
    Stdvar,
    /// The last sample less the first, extrapolated to the range's edges (`delta`).
    Delta,
    /// The last sample less the one before (`idelta`).
    Idelta,
    /// The per-second change between the last two samples, a counter reset counting
    /// from zero (`irate`).
    Irate,
    /// The per-second slope of a least-squares line through the samples (`deriv`).
    Deriv,
    /// That line's value this many seconds after the evaluation time
    /// (`predict_linear`).
    PredictLinear(f64),
    /// How many times the value changed from one sample to the next (`changes`).
    Changes,
    /// How many times a counter fell from one sample to the next (`resets`).
    Resets,
    /// A counter's per-second increase over the range, resets counted from zero and
    /// extrapolated to the range's edges as Prometheus does (`rate(x[5m])`).
    Rate,
    /// The same, not per second (`increase(x[5m])`).
    Increase,
    /// 1 for each group (`group`).
    Group,
    /// 1 where the range holds a sample (`present_over_time`).
    Present,
}

#[derive(Debug, Clone, PartialEq)]
struct Agg {
    op: AggOp,
    /// `true`: keep only `labels` (`by`); `false`: drop them (`without`).
    by: bool,
    labels: Vec<String>,
}

const SUPPORTED: &str = "prescale answers a series selector, rate(SELECTOR) or rate(SELECTOR[5m]), increase(SELECTOR[5m]), avg_, min_, max_, sum_, count_, last_, stddev_ or stdvar_over_time(SELECTOR[5m]), quantile_over_time(0.95, SELECTOR[5m]), delta, idelta, irate, deriv, changes and resets(SELECTOR[5m]) and predict_linear(SELECTOR[1h], 3600), either under sum, avg, min, max or count (with by (...) or without (...)), with offset (x offset 1h, rate(x[5m] offset 1d)) and @ (x @ 1700000000, x @ start(), x @ end()), and +, -, *, /, % and ^ between any of them and numbers (with on (...) or ignoring (...), and group_left (...) or group_right (...) for many-to-one), the comparisons ==, !=, >, <, >= and <= (filtering, or 1 and 0 with bool), and, or and unless between series, histogram_quantile(0.95, ...) of bucket series, topk(K, ...) and bottomk(K, ...) (with by or without), abs, ceil, floor, round, clamp_min, clamp_max, clamp, sqrt, exp, ln, log2, log10 and sgn of any of them, and label_replace(...), with sum, avg, min, max and count of any of these too, vector(N), absent(...), absent_over_time(...), present_over_time(...), time(), timestamp(...), scalar(...), minute, hour, day_of_week, day_of_month, day_of_year, days_in_month, month and year, sort(...) and sort_desc(...), label_join(...), stddev, stdvar, group, quantile(PHI, ...) and count_values(\"LABEL\", ...) aggregations, and subqueries in any range function (max_over_time(rate(x[5m])[1h:1m]), [1h:] for a minute's resolution); not other PromQL";

/// A whole query: series, a number, or arithmetic between two of them.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Number(f64),
    Series(Expr),
    Binary {
        op: BinOp,
        /// A comparison's `bool`: 1 or 0 rather than a filter.
        boolean: bool,
        lhs: Box<Node>,
        rhs: Box<Node>,
        /// `on (...)` or `ignoring (...)`, perhaps with `group_left` / `group_right`.
        matching: Option<Matching>,
    },
    /// `histogram_quantile(PHI, BUCKETS)`: the φ-quantile of classic histograms, from
    /// series that differ by their `le` label.
    HistogramQuantile {
        phi: f64,
        buckets: Box<Node>,
    },
    /// `topk(K, X)` (`highest`) or `bottomk(K, X)`, perhaps `by (...)` / `without
    /// (...)`: at each time, the K series of each group with the highest (lowest)
    /// values, each with its own labels.
    Select {
        highest: bool,
        k: usize,
        by: bool,
        labels: Vec<String>,
        arg: Box<Node>,
    },
    /// `abs(X)`, `ceil(X)`, `floor(X)`, `round(X[, TO])`, `clamp_min(X, LO)`,
    /// `clamp_max(X, HI)` or `clamp(X, LO, HI)`: each value mapped on its own.
    Math {
        f: MathFn,
        arg: Box<Node>,
    },
    /// `label_replace(X, "DST", "REPLACEMENT", "SRC", "REGEX")`: where `REGEX` matches
    /// all of a series' `SRC` label, its `DST` label becomes `REPLACEMENT` with `$1`,
    /// `${name}` expanded (an empty result removes it); other series are unchanged.
    LabelReplace {
        arg: Box<Node>,
        dst: String,
        replacement: String,
        src: String,
        regex: String,
    },
    /// `sum`, `avg`, `min`, `max` or `count` of a computed expression (arithmetic
    /// between series, a function of them): grouped and combined as of stored series.
    Aggregate {
        agg: Agg,
        arg: Box<Node>,
    },
    /// `vector(N)`: one series without labels, with the number N (a literal, `time()`,
    /// `scalar(...)`) at each time.
    Vector(Box<Node>),
    /// `time()`: each evaluation time, in unix seconds.
    Time,
    /// `count_values("LABEL", X)`, perhaps `by (...)` / `without (...)`: at each time,
    /// how many series of each group have each value, the value in `LABEL`.
    CountValues {
        label: String,
        by: bool,
        labels: Vec<String>,
        arg: Box<Node>,
    },
    /// `sort(X)` or `sort_desc(X)`: X's series by their value at the first time
    /// (lowest first, or highest; NaN last), the order of an instant query's answer.
    Sort {
        desc: bool,
        arg: Box<Node>,
    },
    /// `label_join(X, "DST", "SEP", "SRC", ...)`: each series' `DST` label set to its
    /// `SRC` labels' values joined by `SEP` (removed when that is empty).
    LabelJoin {
        arg: Box<Node>,
        dst: String,
        sep: String,
        srcs: Vec<String>,
    },
    /// `timestamp(X)`: the time of each value, in unix seconds: of the sample a
    /// selector's value comes from, else the evaluation time.
    Timestamp(Box<Node>),
    /// `scalar(X)`: at each time, the value of X's only series with one, else NaN.
    ScalarOf(Box<Node>),
    /// `FUNCTION(X[RANGE:RES])`, a subquery: X evaluated every `res` ms (at multiples
    /// of it), and at each time the `range` before it (`offset` earlier) combined as
    /// the function combines a range's samples (`over`); with `at`, the one time it is
    /// evaluated at.
    Subquery {
        at: Option<At>,
        over: AggOp,
        arg: Box<Node>,
        range: i64,
        res: i64,
        offset: i64,
    },
    /// `absent(X)`: one series, 1 at the times X has no value, with the labels X's
    /// selector asks to equal (none for a computed X).
    Absent {
        arg: Box<Node>,
        labels: Labels,
    },
}

/// A function of one value, with its numeric arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MathFn {
    Abs,
    Ceil,
    Floor,
    /// To the nearest multiple of this (1 by default), halves up, as Prometheus rounds.
    Round(f64),
    /// Between these bounds (`clamp_min` leaves the upper one infinite, `clamp_max` the
    /// lower).
    Clamp(f64, f64),
    Sqrt,
    Exp,
    /// The natural logarithm (`ln`).
    Ln,
    Log2,
    Log10,
    /// -1, 0 or 1 by the sign (`sgn`).
    Sgn,
    /// A part of the UTC date and time the value is, in unix seconds: `minute`, `hour`,
    /// `day_of_week` (0 on Sunday), `day_of_month`, `day_of_year`, `days_in_month`,
    /// `month` and `year`.
    Date(DatePart),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum DatePart {
    Minute,
    Hour,
    DayOfWeek,
    DayOfMonth,
    DayOfYear,
    DaysInMonth,
    Month,
    Year,
}

impl DatePart {
    /// The part of the UTC time `secs` (truncated to whole seconds, as Prometheus);
    /// NaN for a value that is no time.
    fn of(self, secs: f64) -> f64 {
        use chrono::{Datelike, Timelike};
        let Some(t) = secs
            .is_finite()
            .then(|| chrono::DateTime::from_timestamp(secs.trunc() as i64, 0))
            .flatten()
        else {
            return f64::NAN;
        };
        f64::from(match self {
            Self::Minute => t.minute(),
            Self::Hour => t.hour(),
            Self::DayOfWeek => t.weekday().num_days_from_sunday(),
            Self::DayOfMonth => t.day(),
            Self::DayOfYear => t.ordinal(),
            Self::DaysInMonth => {
                let (y, m) = (t.year(), t.month());
                let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let first = |(y, m)| chrono::NaiveDate::from_ymd_opt(y, m, 1);
                match (first((y, m)), first(next)) {
                    (Some(a), Some(b)) => (b - a).num_days() as u32,
                    _ => return f64::NAN,
                }
            }
            Self::Month => t.month(),
            Self::Year => return f64::from(t.year()),
        })
    }
}

impl MathFn {
    fn apply(self, v: f64) -> f64 {
        match self {
            MathFn::Abs => v.abs(),
            MathFn::Ceil => v.ceil(),
            MathFn::Floor => v.floor(),
            MathFn::Round(to) => (v / to + 0.5).floor() * to,
            // NaN stays NaN, as in Prometheus (f64::max would drop it).
            MathFn::Clamp(_, _) if v.is_nan() => v,
            MathFn::Clamp(lo, hi) => v.max(lo).min(hi),
            MathFn::Sqrt => v.sqrt(),
            MathFn::Exp => v.exp(),
            MathFn::Ln => v.ln(),
            MathFn::Log2 => v.log2(),
            MathFn::Log10 => v.log10(),
            MathFn::Sgn if v == 0.0 || v.is_nan() => v,
            MathFn::Sgn => v.signum(),
            MathFn::Date(part) => part.of(v),
        }
    }
}

/// A binary operator, by PromQL's precedence from the loosest: `or`; `and` and
/// `unless`; the comparisons; `+` and `-`; `*`, `/` and `%`; `^`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    /// Every operator with how it is written; longer symbols before their prefixes.
    const ALL: [(&'static str, BinOp); 15] = [
        ("==", BinOp::Eq),
        ("!=", BinOp::Ne),
        (">=", BinOp::Ge),
        ("<=", BinOp::Le),
        (">", BinOp::Gt),
        ("<", BinOp::Lt),
        ("+", BinOp::Add),
        ("-", BinOp::Sub),
        ("*", BinOp::Mul),
        ("/", BinOp::Div),
        ("%", BinOp::Mod),
        ("^", BinOp::Pow),
        ("and", BinOp::And),
        ("or", BinOp::Or),
        ("unless", BinOp::Unless),
    ];

    fn symbol(self) -> &'static str {
        BinOp::ALL
            .iter()
            .find(|(_, op)| *op == self)
            .map_or("?", |(s, _)| s)
    }

    /// Higher binds tighter.
    fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 0,
            BinOp::And | BinOp::Unless => 1,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Lt | BinOp::Ge | BinOp::Le => 2,
            BinOp::Add | BinOp::Sub => 3,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 4,
            BinOp::Pow => 5,
        }
    }

    fn is_comparison(self) -> bool {
        self.precedence() == 2
    }

    fn is_set(self) -> bool {
        self.precedence() < 2
    }

    /// `a op b` for arithmetic; for a comparison, 1 when it holds and 0 when not.
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            // As Go's math.Mod, which Prometheus uses: the sign of the dividend.
            BinOp::Mod => a % b,
            BinOp::Pow => a.powf(b),
            _ if self.is_comparison() => f64::from(u8::from(self.holds(a, b))),
            _ => f64::NAN,
        }
    }

    /// Whether the comparison `a op b` holds (NaN compares unequal to everything).
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            BinOp::Eq => a == b,
            BinOp::Ne => a != b,
            BinOp::Gt => a > b,
            BinOp::Lt => a < b,
            BinOp::Ge => a >= b,
            BinOp::Le => a <= b,
            _ => false,
        }
    }

    /// The value `a op b` leaves: arithmetic's result; a comparison's 1 or 0 with
    /// `bool`, else `a` where it holds and nothing where not.
    fn value(self, a: f64, b: f64, boolean: bool) -> Option<f64> {
        if self.is_comparison() && !boolean {
            self.holds(a, b).then_some(a)
        } else {
            Some(self.apply(a, b))
        }
    }
}

/// How `a op b` pairs series: on some labels or ignoring some, one to one or many to one.
#[derive(Debug, Clone, PartialEq)]
struct Matching {
    /// `on (...)` (`true`) or `ignoring (...)` (`false`).
    on: bool,
    labels: Vec<String>,
    /// `group_left (...)` (`Some((true, ..))`: many on the left) or `group_right (...)`,
    /// with the labels copied from the one side.
    group: Option<(bool, Vec<String>)>,
}

/// What a query API call without `query` is told.
const MISSING_QUERY: &str = "missing `query`, e.g. query=prescale_demand{workload=\"web\"}";

/// The top-level binary operator `q` splits at, with its byte offset and length: the
/// loosest-binding one (see [`BinOp`]), the last of its level so each level groups from
/// the left, as in PromQL, but the first `^` (which groups from the right). A sign (at
/// the start, after another operator, an opening parenthesis or a comma, or in a
/// number's exponent) is not one, nor is `and`, `or` or `unless` inside a name.
fn split_point(q: &str) -> Option<(usize, usize, BinOp)> {
    let bytes = q.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.';
    let (mut depth, mut skip_to) = (0i32, 0usize);
    // An operand just ended, so what follows may be a binary operator.
    let mut after_operand = false;
    let mut best: Option<(usize, usize, BinOp)> = None;
    let mut consider = |at: usize, len: usize, op: BinOp| {
        let better = best.is_none_or(|(_, _, b)| {
            op.precedence() < b.precedence()
                || (op.precedence() == b.precedence() && op != BinOp::Pow)
        });
        if better {
            best = Some((at, len, op));
        }
    };
    for (i, c) in unquoted(q) {
        if i < skip_to {
            continue;
        }
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                after_operand = false;
            }
            ')' | ']' | '}' => {
                depth -= 1;
                after_operand = true;
            }
            _ if depth != 0 || c.is_whitespace() => {}
            ',' => after_operand = false,
            _ if ident(c as u8) && c.is_ascii() => {
                // A whole word or number (with its exponent's sign).
                let mut j = i;
                while j < bytes.len() {
                    let exponent_sign = matches!(bytes[j], b'+' | b'-')
                        && j > i
                        && matches!(bytes[j - 1], b'e' | b'E')
                        && bytes[i].is_ascii_digit()
                        && !q[i..j].contains(['x', 'X']);
                    if !(ident(bytes[j]) || exponent_sign) {
                        break;
                    }
                    j += 1;
                }
                skip_to = j;
                let word = &q[i..j];
                match BinOp::ALL.iter().find(|(w, _)| *w == word) {
                    Some(&(_, op)) if after_operand => {
                        consider(i, word.len(), op);
                        after_operand = false;
                    }
                    _ => {
                        after_operand = !matches!(
                            word,
                            "bool"
                                | "on"
                                | "ignoring"
                                | "group_left"
                                | "group_right"
                                | "by"
                                | "without"
                                | "offset"
                        );
                    }
                }
            }
            // `@ -1700000000`: what follows is a time, perhaps signed.
            '@' => after_operand = false,
            _ => {
                let Some(&(sym, op)) = BinOp::ALL
                    .iter()
                    .find(|(sym, op)| !op.is_set() && q[i..].starts_with(sym))
                else {
                    continue;
                };
                skip_to = i + sym.len();
                if matches!(op, BinOp::Add | BinOp::Sub) && !after_operand {
                    continue; // a sign
                }
                consider(i, sym.len(), op);
                after_operand = false;
            }
        }
    }
    best
}

/// `s` after the keyword `word` (a whole word) at its start.
fn strip_keyword<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(word)?;
    let next = rest.chars().next();
    next.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .then(|| rest.trim_start())
}

/// `q` with a sign in front (`-x`, `-sum(x)`, `+x`): what follows, negated for `-`;
/// `None` without one.
fn signed(q: &str) -> Option<Result<Node, String>> {
    if let Some(rest) = q.strip_prefix('+') {
        return Some(parse_node(rest));
    }
    let rest = q.strip_prefix('-')?;
    Some(parse_node(rest).map(|n| match n {
        Node::Number(v) => Node::Number(-v),
        n => Node::Binary {
            op: BinOp::Mul,
            boolean: false,
            lhs: Box::new(Node::Number(-1.0)),
            rhs: Box::new(n),
            matching: None,
        },
    }))
}

/// [`parse_level`] one level deeper: refused past [`prescale_core::nesting::MAX_NESTING`] levels.
fn parse_node(q: &str) -> Result<Node, String> {
    nest(q, || parse_level(q))
}

fn parse_level(q: &str) -> Result<Node, String> {
    let q = q.trim();
    if q.is_empty() {
        return Err(format!("an empty expression; {SUPPORTED}"));
    }
    if let Some(body) = q.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        if parens(q).is_ok_and(|(_, rest)| rest.trim().is_empty()) {
            return parse_node(body);
        }
    }
    if let Some((i, len, op)) = split_point(q) {
        // A sign binds looser than ^, as in PromQL: -2 ^ 2 is -(2 ^ 2).
        if op == BinOp::Pow {
            if let Some(signed) = signed(q) {
                return signed;
            }
        }
        let (lhs, mut rhs) = (&q[..i], q[i + len..].trim_start());
        let mut boolean = false;
        if let Some(after) = strip_keyword(rhs, "bool") {
            if !op.is_comparison() {
                return Err(format!(
                    "bool follows a comparison (==, !=, >, <, >=, <=), not {}; {SUPPORTED}",
                    op.symbol()
                ));
            }
            boolean = true;
            rhs = after;
        }
        let mut matching = None;

        for (word, on) in [("on", true), ("ignoring", false)] {
            let Some(after) = rhs.strip_prefix(word).map(str::trim_start) else {
                continue;
            };
            if after.starts_with('(') {
                let (labels, rest) = parens(after)?;
                let (group, rest) = group_modifier(rest)?;
                matching = Some(Matching {
                    on,
                    labels: label_list(labels)?,
                    group,
                });
                rhs = rest;
                break;
            }
        }
        if matching.is_none() && group_modifier(rhs)?.0.is_some() {
            return Err(format!(
                "group_left and group_right come after on (...) or ignoring (...), e.g. a * on (job) group_left b; {SUPPORTED}"
            ));
        }
        let (l, r) = (parse_node(lhs)?, parse_node(rhs)?);
        let number = |n: &Node| matches!(n, Node::Number(_));
        if matching.is_some() && (number(&l) || number(&r)) {
            return Err(format!(
                "on (...) and ignoring (...) match series with series, not with a number; {SUPPORTED}"
            ));
        }
        if op.is_set() && (number(&l) || number(&r)) {
            return Err(format!(
                "{} works between series, not with a number; {SUPPORTED}",
                op.symbol()
            ));
        }
        if op.is_set() && matching.as_ref().is_some_and(|m| m.group.is_some()) {
            return Err(format!(
                "group_left and group_right do not apply to {}: it matches many to many; {SUPPORTED}",
                op.symbol()
            ));
        }
        return Ok(match (l, r) {
            (Node::Number(_), Node::Number(_)) if op.is_comparison() && !boolean => {
                return Err(format!(
                    "a comparison between two numbers needs bool, e.g. 2 > bool 1; {SUPPORTED}"
                ))
            }
            (Node::Number(a), Node::Number(b)) => Node::Number(op.apply(a, b)),
            (l, r) => Node::Binary {
                op,
                boolean,
                lhs: Box::new(l),

                rhs: Box::new(r),
                matching,
            },
        });
    }
    if let Some(signed) = signed(q) {
        return signed;
    }
    for (name, desc) in [("sort", false), ("sort_desc", true)] {
        if let Some(arg) = call(q, name)? {
            return Ok(Node::Sort {
                desc,
                arg: Box::new(parse_node(arg)?),
            });
        }
    }
    if let Some(args) = call(q, "label_join")? {
        return parse_label_join(args);
    }
    if let Some(args) = call(q, "label_replace")? {
        return parse_label_replace(args);
    }
    if let Some(arg) = call(q, "time")? {
        if !arg.trim().is_empty() {
            return Err(format!("time() takes no argument, not {:?}", arg.trim()));
        }
        return Ok(Node::Time);
    }
    if let Some(arg) = call(q, "timestamp")? {
        let arg = parse_node(arg)?;
        if matches!(arg, Node::Number(_)) {
            return Err("timestamp(...) takes series, e.g. timestamp(up), not a number".into());
        }
        return Ok(Node::Timestamp(Box::new(arg)));
    }
    if let Some(arg) = call(q, "scalar")? {
        return Ok(Node::ScalarOf(Box::new(parse_node(arg)?)));
    }
    if let Some(arg) = call(q, "vector")? {
        return Ok(Node::Vector(Box::new(parse_node(arg)?)));
    }
    // absent_over_time(X[R]): absent(...) of X's presence over the range.
    let absent = match call(q, "absent_over_time")? {
        Some(arg) => Some(format!("present_over_time({arg})")),
        None => call(q, "absent")?.map(str::to_string),
    };
    if let Some(arg) = absent {
        let arg = parse_node(&arg)?;
        let labels = match &arg {
            Node::Series(e)
                if e.agg.is_none() && (e.range.is_none() || e.over == Some(AggOp::Present)) =>
            {
                e.inner
                    .selector()
                    .matchers
                    .iter()
                    .filter(|m| {
                        m.op == prescale_core::selector::MatchOp::Eq && m.label != "__name__"
                    })
                    .map(|m| (m.label.clone(), m.value.clone()))
                    .collect()
            }
            Node::Number(_) => {
                return Err("absent(...) asks whether series have values, not a number".into())
            }
            _ => Labels::new(),
        };
        return Ok(Node::Absent {
            arg: Box::new(arg),
            labels,
        });
    }
    if let Some(args) = call(q, "histogram_quantile")? {
        let usage = "histogram_quantile(...) takes a quantile and the buckets, e.g. histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))";
        let (phi, buckets) = leading_quantile(args, usage)?;
        return Ok(Node::HistogramQuantile {
            phi,
            buckets: Box::new(parse_node(buckets)?),
        });
    }
    if let Some((by, labels, inner)) = aggregation(q, "count_values")? {
        let usage = r#"count_values(...) takes a label and an expression, e.g. count_values("version", build_info)"#;
        let [label, arg] = top_level_args(inner)[..] else {
            return Err(usage.into());
        };
        return Ok(Node::CountValues {
            label: label_arg(label, usage)?,
            by,
            labels,
            arg: Box::new(parse_node(arg)?),
        });
    }
    for (word, highest) in [("topk", true), ("bottomk", false)] {
        let Some((by, labels, inner)) = aggregation(q, word)? else {
            continue;
        };
        let usage = format!("{word}(...) takes a count and an expression, e.g. {word}(5, sum by (workload) (prescale_demand))");
        let (k, arg) = inner.split_once(',').ok_or_else(|| usage.clone())?;
        let k: usize = k
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not a count: {usage}", k.trim()))?;
        return Ok(Node::Select {
            highest,
            k,
            by,
            labels,
            arg: Box::new(parse_node(arg)?),
        });
    }
    if let Some(node) = parse_subquery(q)? {
        return Ok(node);
    }
    if let Some(node) = parse_math(q)? {
        return Ok(node);
    }
    if let Some(node) = parse_date(q)? {
        return Ok(node);
    }
    if let Ok(v) = q.parse::<f64>() {
        return Ok(Node::Number(v));
    }
    match parse_expr(q, None) {
        Ok(e) => Ok(Node::Series(e)),
        // An aggregation of what a stored series' evaluation cannot express.
        Err(first) => parse_aggregate(q)?.ok_or(first),
    }
}

/// A subquery's resolution when it gives none (`x[1h:]`): Prometheus' default
/// evaluation interval, a minute.
const SUBQUERY_RES_MS: i64 = 60_000;

/// The most points a subquery may evaluate its expression at, per query.
const MAX_SUBQUERY_POINTS: i64 = 10 * MAX_POINTS;

/// `q` as one of the [`RANGE_FUNCTIONS`] of a subquery, `FUNCTION(X[RANGE:RES])` with
/// any expression X, the resolution optional (`[1h:]`: a minute) and perhaps an
/// `offset` after the brackets; `None` when `q` is not one.
fn parse_subquery(q: &str) -> Result<Option<Node>, String> {
    let Some((name, over, arg)) = range_call(q)? else {
        return Ok(None);
    };
    let (arg, Modifiers { offset, at }) = strip_modifiers(arg)?;
    let Some((inner, brackets)) = arg.strip_suffix(']').and_then(|a| a.rsplit_once('[')) else {
        return Ok(None);
    };
    let Some((range, res)) = brackets.split_once(':') else {
        return Ok(None);
    };
    let usage = format!(
        "a subquery is EXPR[RANGE:RESOLUTION], e.g. {name}(rate(x[5m])[1h:1m]), or [1h:] for a minute's resolution"
    );
    let duration = |s: &str| {
        parse_step(s.trim()).ok_or_else(|| format!("{:?} is not a duration; {usage}", s.trim()))
    };
    let range = duration(range)?;
    let res = match res.trim() {
        "" => SUBQUERY_RES_MS,
        r => duration(r)?,
    };
    let arg = parse_node(inner)?;
    if matches!(arg, Node::Number(_)) {
        return Err(format!(
            "a subquery evaluates series, not a number; {usage}"
        ));
    }
    Ok(Some(Node::Subquery {
        at,
        over,
        arg: Box::new(arg),
        range,
        res,
        offset,
    }))
}

/// A subquery's values at `times`: `arg` at every multiple of `res` that some time's
/// `range` (shifted back by `offset`) covers, then each time's `(t - range, t]` of
/// those points combined.
#[allow(clippy::too_many_arguments)]
fn subquery(
    st: &Store,
    arg: &Node,
    over: AggOp,
    range: i64,
    res: i64,
    offset: i64,
    times: &[TimestampMs],
) -> Result<Evaluated, Failed> {
    let (first, last) = (times[0] - offset - range, times[times.len() - 1] - offset);
    // Multiples of res from the last at or before `first` (which no window holds, but
    // a rate counts from), up to `last`.
    let from = first.div_euclid(res) * res;
    let n = (last - from).div_euclid(res) + 1;
    if n > MAX_SUBQUERY_POINTS {
        return Err(Failed::Query(format!(
            "the subquery would evaluate its expression at {n} points, more than {MAX_SUBQUERY_POINTS}: coarsen its resolution or narrow the range"
        )));
    }
    let grid: Vec<TimestampMs> = (0..n.max(0)).map(|i| from + i * res).collect();
    if grid.is_empty() {
        return Ok(Vec::new());
    }
    let Val::Vector(inner) = eval(st, arg, &grid, res)? else {
        return Err(Failed::Query(
            "a subquery evaluates series, not a number".into(),
        ));
    };
    Ok(inner
        .into_iter()
        .filter_map(|(mut labels, values)| {
            let points: Vec<Sample> = grid
                .iter()
                .zip(values)
                .filter_map(|(&ts, v)| Some(Sample { ts, value: v? }))
                .collect();
            let values: Vec<Option<f64>> = times
                .iter()
                .map(|&t| {
                    let t = t - offset;
                    let lo = points.partition_point(|p| p.ts <= t - range);
                    let hi = points.partition_point(|p| p.ts <= t);
                    over_range(over, &points[lo..hi], t - range, t)
                })
                .collect();
            // As Prometheus, last_over_time keeps the metric name.
            if over != AggOp::Last {
                labels.remove("__name__");
            }
            values
                .iter()
                .any(Option::is_some)
                .then_some((labels, values))
        })
        .collect())
}

/// The aggregation operators, by name.
const AGGREGATIONS: [(&str, AggOp); 5] = [
    ("sum", AggOp::Sum),
    ("avg", AggOp::Avg),
    ("min", AggOp::Min),
    ("max", AggOp::Max),
    ("count", AggOp::Count),
];

/// The aggregation operators only [`parse_aggregate`] reads (of any expression).
const MORE_AGGREGATIONS: [(&str, AggOp); 4] = [
    ("stddev", AggOp::Stddev),
    ("stdvar", AggOp::Stdvar),
    ("group", AggOp::Group),
    ("quantile", AggOp::Quantile(f64::NAN)),
];

/// `sum(X)` and the like (see [`aggregation`]) where `X` is any expression, and
/// `stddev`, `stdvar`, `group` and `quantile(PHI, X)`.
fn parse_aggregate(q: &str) -> Result<Option<Node>, String> {
    for (word, op) in MORE_AGGREGATIONS {
        let Some((by, labels, inner)) = aggregation(q, word)? else {
            continue;
        };
        let (op, inner) = match op {
            AggOp::Quantile(_) => {
                let usage = "quantile(...) takes a quantile and an expression, e.g. quantile(0.95, rate(x[5m]))";
                let (phi, rest) = leading_quantile(inner, usage)?;
                (AggOp::Quantile(phi), rest)
            }
            op => (op, inner),
        };
        return Ok(Some(Node::Aggregate {
            agg: Agg { op, by, labels },
            arg: Box::new(parse_node(inner)?),
        }));
    }
    for (word, op) in AGGREGATIONS {
        if let Some((by, labels, inner)) = aggregation(q, word)? {
            return Ok(Some(Node::Aggregate {
                agg: Agg { op, by, labels },
                arg: Box::new(parse_node(inner)?),
            }));
        }
    }
    Ok(None)
}

/// What is inside the parentheses of `q` when `q` is a call of `name` (`name(...)`,
/// nothing after); `None` when it is not one (another name, or a metric whose name
/// starts with it); an error when something follows the call.
fn call<'a>(q: &'a str, name: &str) -> Result<Option<&'a str>, String> {
    let Some(rest) = q.strip_prefix(name).map(str::trim_start) else {
        return Ok(None);
    };
    if !rest.starts_with('(') {
        return Ok(None);
    }
    let (inside, tail) = parens(rest)?;
    match tail.trim() {
        "" => Ok(Some(inside)),
        t => Err(format!("unexpected {t:?} after {name}(...); {SUPPORTED}")),
    }
}

/// `q` split at its top-level commas (not those inside parentheses, braces, brackets or
/// quotes).
fn top_level_args(q: &str) -> Vec<&str> {
    let (mut depth, mut from, mut out) = (0i32, 0, Vec::new());
    for (i, c) in unquoted(q) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&q[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(&q[from..]);
    out
}

/// The date functions, by name.
const DATE_FUNCTIONS: [(&str, DatePart); 8] = [
    ("minute", DatePart::Minute),
    ("hour", DatePart::Hour),
    ("day_of_week", DatePart::DayOfWeek),
    ("day_of_month", DatePart::DayOfMonth),
    ("day_of_year", DatePart::DayOfYear),
    ("days_in_month", DatePart::DaysInMonth),
    ("month", DatePart::Month),
    ("year", DatePart::Year),
];

/// `hour()` and the other [`DATE_FUNCTIONS`]: of each value of X taken as unix seconds,
/// or of the evaluation time without X.
fn parse_date(q: &str) -> Result<Option<Node>, String> {
    for (name, part) in DATE_FUNCTIONS {
        let Some(inside) = call(q, name)? else {
            continue;
        };
        let arg = match top_level_args(inside)[..] {
            [x] if x.trim().is_empty() => Node::Vector(Box::new(Node::Time)),
            [x] => parse_node(x)?,
            ref more => {
                return Err(format!(
                    "{name}(...) takes one expression of unix seconds, or none for the evaluation time, not {}",
                    more.len()
                ))
            }
        };
        return Ok(Some(Node::Math {
            f: MathFn::Date(part),
            arg: Box::new(arg),
        }));
    }
    Ok(None)
}

/// `q` as one of the [`MathFn`] calls, `None` when it is not one.
fn parse_math(q: &str) -> Result<Option<Node>, String> {
    let names = [
        "abs",
        "ceil",
        "floor",
        "round",
        "clamp_min",
        "clamp_max",
        "clamp",
        "sqrt",
        "exp",
        "ln",
        "log2",
        "log10",
        "sgn",
    ];
    let mut found = None;
    for name in names {
        if let Some(inside) = call(q, name)? {
            found = Some((name, inside));
            break;
        }
    }
    let Some((name, inside)) = found else {
        return Ok(None);
    };
    let args = top_level_args(inside);
    let number = |s: &str| -> Result<f64, String> {
        s.trim().parse().map_err(|_| {
            format!(
                "{:?} is not a number: {name}(...) takes numbers after its first argument",
                s.trim()
            )
        })
    };
    let f = match (name, args.len()) {
        ("abs", 1) => MathFn::Abs,
        ("ceil", 1) => MathFn::Ceil,
        ("floor", 1) => MathFn::Floor,
        ("round", 1) => MathFn::Round(1.0),
        ("round", 2) => MathFn::Round(number(args[1])?),
        ("clamp_min", 2) => MathFn::Clamp(number(args[1])?, f64::INFINITY),
        ("clamp_max", 2) => MathFn::Clamp(f64::NEG_INFINITY, number(args[1])?),
        ("clamp", 3) => MathFn::Clamp(number(args[1])?, number(args[2])?),
        ("sqrt", 1) => MathFn::Sqrt,
        ("exp", 1) => MathFn::Exp,
        ("ln", 1) => MathFn::Ln,
        ("log2", 1) => MathFn::Log2,
        ("log10", 1) => MathFn::Log10,
        ("sgn", 1) => MathFn::Sgn,
        _ => {
            let takes = match name {
                "round" => "one or two arguments",
                "clamp" => "three arguments",
                "clamp_min" | "clamp_max" => "two arguments",
                _ => "one argument",
            };
            return Err(format!("{name}(...) takes {takes}, not {}", args.len()));
        }
    };
    Ok(Some(Node::Math {
        f,
        arg: Box::new(parse_node(args[0])?),
    }))
}

/// A double-quoted string argument, nothing after it (`usage` says how to call).
fn string_arg(s: &str, usage: &str) -> Result<String, String> {
    let (v, rest) = prescale_core::selector::quoted(s.trim())
        .map_err(|e| format!("{:?}: {e}; {usage}", s.trim()))?;
    if rest.trim().is_empty() {
        Ok(v)
    } else {
        Err(format!(
            "unexpected {:?} after a string; {usage}",
            rest.trim()
        ))
    }
}

/// A [`string_arg`] that must be a label name.
fn label_arg(s: &str, usage: &str) -> Result<String, String> {
    let l = string_arg(s, usage)?;
    let mut c = l.chars();
    let valid = c
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(l)
    } else {
        Err(format!("{l:?} is not a label name; {usage}"))
    }
}

/// `label_join`'s arguments: an expression, the label to set, a separator and the
/// labels whose values it joins.
fn parse_label_join(args: &str) -> Result<Node, String> {
    let usage = r#"label_join(...) takes an expression, a label, a separator and the labels to join, e.g. label_join(up, "where", "/", "job", "instance")"#;
    let parts = top_level_args(args);
    let [arg, dst, sep, srcs @ ..] = &parts[..] else {
        return Err(usage.into());
    };
    let string = |s: &str| string_arg(s, usage);
    let dst = label_arg(dst, usage)?;
    Ok(Node::LabelJoin {
        arg: Box::new(parse_node(arg)?),
        dst,
        sep: string(sep)?,
        srcs: srcs.iter().map(|s| string(s)).collect::<Result<_, _>>()?,
    })
}

/// `label_replace`'s arguments: an expression and four strings.
fn parse_label_replace(args: &str) -> Result<Node, String> {
    let usage = r#"label_replace(...) takes an expression and four strings, e.g. label_replace(prescale_demand, "service", "$1", "workload", "(.*)-prod")"#;
    let parts = top_level_args(args);
    let [arg, dst, replacement, src, regex] = parts[..] else {
        return Err(format!("{usage}, not {} arguments", parts.len()));
    };
    let string = |s: &str| string_arg(s, usage);
    let dst = label_arg(dst, usage)?;
    let regex = string(regex)?;
    regex::Regex::new(&format!("^(?:{regex})$"))
        .map_err(|e| format!("{regex:?} is not a regular expression: {e}"))?;
    Ok(Node::LabelReplace {
        arg: Box::new(parse_node(arg)?),
        dst,
        replacement: string(replacement)?,
        src: string(src)?,
        regex,
    })
}

/// At each of `n` times, how many series of each group (by `labels`, or all but them)
/// have each value: a series per group and value, the value (as Prometheus writes it)
/// in `label`. As in Prometheus, `without` that same label drops it again: the values
/// are then counted together.
fn count_values(v: Evaluated, label: &str, by: bool, labels: &[String], n: usize) -> Evaluated {
    let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    let dropped = !by && labels.iter().any(|l| l == label);
    for (l, values) in v {
        let mut group: Labels = l
            .into_iter()
            .filter(|(name, _)| name != "__name__" && labels.contains(name) == by)
            .collect();
        for (t, x) in values.into_iter().enumerate() {
            let Some(x) = x else { continue };
            if !dropped {
                group.insert(label.to_string(), fmt_value(x));
            }
            let counts = out.entry(group.clone()).or_insert_with(|| vec![None; n]);
            counts[t] = Some(counts[t].unwrap_or(0.0) + 1.0);
        }
    }
    out.into_iter().collect()
}

/// Each series of `v` with label `dst` set to what `value` makes of its labels (an
/// empty value removes it; `None` leaves the series as it is); two series left with
/// the same labels are refused, as `function` (`label_join`, `label_replace`) says,
/// with `hint` on how to keep them apart.
fn relabel(
    v: Evaluated,
    dst: &str,
    function: &str,
    hint: &str,
    value: impl Fn(&Labels) -> Option<String>,
) -> Result<Evaluated, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(v.len());
    for (mut labels, values) in v {
        match value(&labels) {
            Some(to) if to.is_empty() => {
                labels.remove(dst);
            }
            Some(to) => {
                labels.insert(dst.to_string(), to);
            }
            None => {}
        }
        if !seen.insert(labels.clone()) {
            return Err(format!(
                "{function}(...) gave two series the labels {labels:?}; {hint}"
            ));
        }
        out.push((labels, values));
    }
    Ok(out)
}

/// Each series of `v` with `dst` set to its `srcs` labels' values joined by `sep` (an
/// empty result removes it); two series left with the same labels are refused.
fn label_join(v: Evaluated, dst: &str, sep: &str, srcs: &[String]) -> Result<Evaluated, String> {
    relabel(
        v,
        dst,
        "label_join",
        "join labels that tell them apart",
        |labels| {
            let parts: Vec<&str> = srcs
                .iter()
                .map(|s| labels.get(s).map_or("", String::as_str))
                .collect();
            Some(parts.join(sep))
        },
    )
}

fn label_replace(
    v: Evaluated,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Evaluated, String> {
    let re = regex::Regex::new(&format!("^(?:{regex})$")).map_err(|e| e.to_string())?;
    relabel(
        v,
        dst,
        "label_replace",
        "make the replacement keep them apart",
        |labels| {
            let value = labels.get(src).map_or("", String::as_str);
            let caps = re.captures(value)?;
            let mut to = String::new();
            caps.expand(replacement, &mut to);
            Some(to)
        },
    )
}

/// A function's first argument, a quantile (a number, as Prometheus takes it), and the
/// rest after its comma; `usage` says what the function takes when it is not there.
fn leading_quantile<'a>(args: &'a str, usage: &str) -> Result<(f64, &'a str), String> {
    let (phi, rest) = args.split_once(',').ok_or_else(|| usage.to_string())?;
    let phi = phi
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a number: {usage}", phi.trim()))?;
    Ok((phi, rest))
}

/// What a quantile outside [0, 1] is, as Prometheus answers it: NaN for NaN, -Inf below
/// 0, +Inf above 1; `None` within.
fn outside_quantile(phi: f64) -> Option<f64> {
    if phi.is_nan() {
        Some(f64::NAN)
    } else if phi < 0.0 {
        Some(f64::NEG_INFINITY)
    } else if phi > 1.0 {
        Some(f64::INFINITY)
    } else {
        None
    }
}

/// The φ-quantile of one histogram's cumulative buckets `(upper bound, count)`, as
/// Prometheus' `histogram_quantile` estimates it: linear within the bucket the rank
/// falls in, the `+Inf` bucket answered by the highest finite bound, counts made
/// monotonic first. NaN without a `+Inf` bucket, with fewer than two buckets, or with
/// no observations; -Inf below 0 and +Inf above 1.
pub(crate) fn bucket_quantile(phi: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if let Some(v) = outside_quantile(phi) {
        return v;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = buckets.len();
    if n < 2 || buckets[n - 1].0 != f64::INFINITY {
        return f64::NAN;
    }
    // Rates of counters scraped at slightly different times may dip: keep them rising.
    for i in 1..n {
        buckets[i].1 = buckets[i].1.max(buckets[i - 1].1);
    }
    let total = buckets[n - 1].1;
    if total.is_nan() || total <= 0.0 {
        return f64::NAN;
    }
    let mut rank = phi * total;
    let b = buckets.iter().position(|x| x.1 >= rank).unwrap_or(n - 1);
    if b == n - 1 {
        return buckets[n - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (start, mut count) = (if b == 0 { 0.0 } else { buckets[b - 1].0 }, buckets[b].1);
    if b > 0 {
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (buckets[b].0 - start) * (rank / count)
}

/// Each histogram's φ-quantile at each time: `series` grouped by all their labels but
/// `le` (and `__name__`), each group's buckets read from its `le` labels.
fn histogram_quantiles(phi: f64, series: Evaluated, n: usize) -> Result<Evaluated, Failed> {
    // Each histogram's labels with its buckets: (upper bound, value at each time).
    type Buckets = Vec<(f64, Vec<Option<f64>>)>;
    let mut groups: BTreeMap<Labels, Buckets> = BTreeMap::new();
    for (mut labels, values) in series {
        labels.remove("__name__");
        let Some(le) = labels.remove("le") else {
            return Err(Failed::Query(format!(
                "histogram_quantile(...) reads buckets by their le label, and {labels:?} has none: give it the _bucket series, e.g. sum by (le) (rate(NAME_bucket[5m]))"
            )));
        };
        let bound: f64 = match le.trim() {
            "+Inf" | "Inf" | "inf" | "+inf" => f64::INFINITY,
            other => other.parse().map_err(|_| {
                Failed::Query(format!(
                    "le=\"{le}\" is not a bucket bound (a number or +Inf)"
                ))
            })?,
        };
        groups.entry(labels).or_default().push((bound, values));
    }
    Ok(groups
        .into_iter()
        .filter_map(|(labels, buckets)| {
            let values: Vec<Option<f64>> = (0..n)
                .map(|t| {
                    let at: Vec<(f64, f64)> = buckets
                        .iter()
                        .filter_map(|(le, v)| Some((*le, v[t]?)))
                        .collect();
                    (!at.is_empty()).then(|| bucket_quantile(phi, at))
                })
                .collect();
            values
                .iter()
                .any(Option::is_some)
                .then_some((labels, values))
        })
        .collect())
}

/// `group_left` or `group_right` at the start of `s`, with its labels when it has
/// them, and the rest of `s`.
type Group = Option<(bool, Vec<String>)>;
fn group_modifier(s: &str) -> Result<(Group, &str), String> {
    let s = s.trim_start();
    for (word, left) in [("group_left", true), ("group_right", false)] {
        let Some(after) = s.strip_prefix(word) else {
            continue;
        };
        // `group_leftover` is a metric name, not the modifier.
        if after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let after = after.trim_start();
        if after.starts_with('(') {
            let (labels, rest) = parens(after)?;
            return Ok((Some((left, label_list(labels)?)), rest));
        }
        return Ok((Some((left, Vec::new())), after));
    }
    Ok((None, s))
}

/// The label names of `by (...)`, `on (...)` and the like.
fn label_list(s: &str) -> Result<Vec<String>, String> {
    let labels: Vec<String> = s
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(l) = labels.iter().find(|l| {
        !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || l.starts_with(|c: char| c.is_ascii_digit())
    }) {
        return Err(format!("{l:?} is not a label name"));
    }
    Ok(labels)
}

/// `q` as one stored series' evaluation ([`Expr`]): a selector or a range function of
/// one, perhaps times a number and under one aggregation; `inside`, the aggregation it
/// is the argument of (where another one is refused at once, rather than after
/// reading all that is under it: [`parse_node`] then reads it level by level, and with
/// each level read to its end first, a chain of aggregations took the square of its
/// depth).
fn parse_expr(q: &str, inside: Option<&str>) -> Result<Expr, String> {
    nest(q, || parse_expr_level(q, inside))
}

fn parse_expr_level(q: &str, inside: Option<&str>) -> Result<Expr, String> {
    let q = q.trim();
    if let Some(split) = prescale_core::scalar_factor(q) {
        let (inner, k) = split.map_err(|e| format!("{e}; {SUPPORTED}"))?;
        let mut e = parse_expr(inner, inside)?;
        e.factor = Some(e.factor.unwrap_or(1.0) * k);
        return Ok(e);
    }
    if let Some(body) = q.strip_prefix('(').and_then(|b| b.strip_suffix(')')) {
        if parens(q).is_ok_and(|(_, rest)| rest.trim().is_empty()) {
            return parse_expr(body, inside);
        }
    }
    for (word, op) in AGGREGATIONS {
        let Some((by, labels, inner)) = aggregation(q, word)? else {
            continue;
        };
        if let Some(outer) = inside {
            return Err(format!("an aggregation inside {outer}(...); {SUPPORTED}"));
        }
        let mut e = parse_expr(inner, Some(word))?;
        // A factor inside comes out: sum and avg scale with it, min and max too (swapped
        // by a negative one), a count does not.
        let op = match (op, e.factor) {
            (AggOp::Count, _) => {
                e.factor = None;
                op
            }
            (AggOp::Min, Some(k)) if k < 0.0 => AggOp::Max,
            (AggOp::Max, Some(k)) if k < 0.0 => AggOp::Min,
            _ => op,
        };
        e.agg = Some(Agg { op, by, labels });
        return Ok(e);
    }
    parse_inner(q)
}

/// An aggregation's `by` (else `without`), its labels and what it aggregates.
type Grouped<'a> = (bool, Vec<String>, &'a str);

/// `q` as the aggregation `word` (`word(X)`, `word by (a, b) (X)`, `word(X) without
/// (a)` and the like): whether it groups `by` (else `without`), its labels and `X`;
/// `None` when `q` is not one (a metric whose name starts with the word).
fn aggregation<'a>(q: &'a str, word: &str) -> Result<Option<Grouped<'a>>, String> {
    let Some(rest) = q.strip_prefix(word) else {
        return Ok(None);
    };
    let rest = rest.trim_start();
    let after_all = |tail: &str| -> Result<(), String> {
        match tail.trim() {
            "" => Ok(()),
            t => Err(format!("unexpected {t:?} after {word}(...); {SUPPORTED}")),
        }
    };
    let (by, labels, inner) = if let Some((by, after)) = grouping(rest) {
        // sum by (a, b) (X)
        let (labels, after) = parens(after)?;
        let (inner, tail) = parens(after.trim_start())?;
        after_all(tail)?;
        (by, labels, inner)
    } else if rest.starts_with('(') {
        // sum(X), sum(X) by (a, b)
        let (inner, tail) = parens(rest)?;
        match grouping(tail.trim()) {
            Some((by, after)) => {
                let (labels, tail) = parens(after)?;
                after_all(tail)?;
                (by, labels, inner)
            }
            // No grouping: one series of everything, as `by ()`.
            None => {
                after_all(tail)?;
                (true, "", inner)
            }
        }
    } else {
        return Ok(None);
    };
    Ok(Some((by, label_list(labels)?, inner)))
}

/// `by (` or `without (` at the start of `s`: whether it is `by`, and the rest from the
/// parenthesis.
fn grouping(s: &str) -> Option<(bool, &str)> {
    let (by, after) = if let Some(a) = s.strip_prefix("by") {
        (true, a)
    } else {
        (false, s.strip_prefix("without")?)
    };
    let after = after.trim_start();
    after.starts_with('(').then_some((by, after))
}

/// The functions of a range, and how each combines a range's samples.
const RANGE_FUNCTIONS: [(&str, AggOp); 19] = [
    ("rate", AggOp::Rate),
    ("increase", AggOp::Increase),
    ("avg_over_time", AggOp::Avg),
    ("min_over_time", AggOp::Min),
    ("max_over_time", AggOp::Max),
    ("sum_over_time", AggOp::Sum),
    ("count_over_time", AggOp::Count),
    ("last_over_time", AggOp::Last),
    ("stddev_over_time", AggOp::Stddev),
    ("stdvar_over_time", AggOp::Stdvar),
    ("quantile_over_time", AggOp::Quantile(f64::NAN)),
    ("delta", AggOp::Delta),
    ("idelta", AggOp::Idelta),
    ("irate", AggOp::Irate),
    ("deriv", AggOp::Deriv),
    ("predict_linear", AggOp::PredictLinear(f64::NAN)),
    ("changes", AggOp::Changes),
    ("resets", AggOp::Resets),
    ("present_over_time", AggOp::Present),
];

/// A range function's name, what it combines and its range argument (see
/// [`range_call`]).
type RangeCall<'a> = (&'static str, AggOp, &'a str);

/// `q` as a call of one of the [`RANGE_FUNCTIONS`]: its name, what it combines (with
/// `quantile_over_time`'s φ and `predict_linear`'s seconds read) and its range argument
/// as written (`x[5m]`, `x[5m] offset 1d`, a subquery `rate(x[5m])[1h:1m]`); `None`
/// when `q` is no such call.
fn range_call(q: &str) -> Result<Option<RangeCall<'_>>, String> {
    let mut called = None;
    for (name, over) in RANGE_FUNCTIONS {
        if let Some(arg) = call(q, name)? {
            called = Some((name, over, arg));
            break;
        }
    }
    let Some((name, mut over, arg)) = called else {
        return Ok(None);
    };
    let mut arg = arg.trim();
    if let AggOp::Quantile(_) = over {
        let usage =
            format!("{name}(...) takes a quantile and a range, e.g. {name}(0.95, {arg}[5m])");
        let (phi, rest) = leading_quantile(arg, &usage)?;
        over = AggOp::Quantile(phi);
        arg = rest.trim();
    }
    if let AggOp::PredictLinear(_) = over {
        let usage =
            "predict_linear(...) takes a range and seconds ahead, e.g. predict_linear(x[1h], 3600)";
        let args = top_level_args(arg);
        let [range, ahead] = args[..] else {
            return Err(usage.to_string());
        };
        let secs: f64 = ahead
            .trim()
            .parse()
            .map_err(|_| format!("{:?} is not a number; {usage}", ahead.trim()))?;
        over = AggOp::PredictLinear(secs);
        arg = range.trim();
    }
    Ok(Some((name, over, arg)))
}

/// Prometheus' functions and aggregations that prescale does not answer, so that a
/// query calling one is told so rather than that it calls an unknown function.
const PROMQL_ONLY: [&str; 33] = [
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "cos",
    "cosh",
    "deg",
    "double_exponential_smoothing",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "info",
    "limit_ratio",
    "limitk",
    "mad_over_time",
    "pi",
    "rad",
    "sin",
    "sinh",
    "sort_by_label",
    "sort_by_label_desc",
    "tan",
    "tanh",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
];

/// The name of the function `q` calls (`name(...)`, spaces allowed before the
/// parenthesis), if it is a call; `rate(...)` is a demand, not a call here.
fn called_name(q: &str) -> Option<&str> {
    let end = q
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(q.len());
    let (name, rest) = q.split_at(end);
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    (valid && name != "rate" && rest.trim_start().starts_with('(')).then_some(name)
}

/// `SELECTOR`, `rate(SELECTOR)`, `rate(SELECTOR[RANGE])`, `increase(SELECTOR[RANGE])`,
/// `OP_over_time(SELECTOR[RANGE])` or `quantile_over_time(PHI, SELECTOR[RANGE])`.
fn parse_inner(q: &str) -> Result<Expr, String> {
    let q = q.trim();
    let Some((name, over, arg)) = range_call(q)? else {
        let (q, modifiers) = strip_modifiers(q)?;
        if let Some(name) = called_name(q) {
            return Err(if PROMQL_ONLY.contains(&name) {
                format!("{name}(...) is PromQL that prescale does not answer; {SUPPORTED}")
            } else {
                format!("unknown function {name:?}; {SUPPORTED}")
            });
        }
        let inner = DemandExpr::parse(q).map_err(|e| format!("{e}; {SUPPORTED}"))?;
        return Ok(Expr::of(inner, None, None, modifiers));
    };
    let (arg, modifiers) = strip_modifiers(arg)?;
    let (sel, range) = match arg.strip_suffix(']').and_then(|a| a.rsplit_once('[')) {
        Some((sel, r)) => (
            sel,
            Some(
                parse_step(r.trim())
                    .ok_or_else(|| format!("{r:?} is not a range such as 5m or 30s"))?,
            ),
        ),
        None if name == "rate" => (arg, None),
        None => return Err(format!("{name}(...) needs a range, e.g. {name}({arg}[5m])")),
    };
    // A rate without a range is prescale's, over each step; with one, the counter's
    // samples in each range, extrapolated as Prometheus does, like every other range
    // function's.
    let over = (range.is_some() || over != AggOp::Rate).then_some(over);
    if over.is_some() {
        // The samples over the range: the selector is a plain one.
        let inner = DemandExpr::parse(sel).map_err(|e| format!("{e}; {SUPPORTED}"))?;
        if !matches!(inner, DemandExpr::Sum(_)) {
            return Err(format!(
                "{name}(...) takes a series selector with a range; {SUPPORTED}"
            ));
        }
        return Ok(Expr::of(inner, range, over, modifiers));
    }
    // Only a rate without a range is left: prescale's, over each step.
    let inner =
        DemandExpr::parse(&format!("rate({sel})")).map_err(|e| format!("{e}; {SUPPORTED}"))?;
    Ok(Expr::of(inner, None, None, modifiers))
}

/// What follows a selector, its range or a subquery: `offset D` and `@ T`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Modifiers {
    /// In ms, 0 without one.
    offset: i64,
    at: Option<At>,
}

/// A selector (with its range or a subquery's brackets) and its modifiers, in either
/// order: `x @ 1700000000 offset 5m`, `x[5m] offset 1d @ end()`.
fn strip_modifiers(s: &str) -> Result<(&str, Modifiers), String> {
    let (rest, offset) = strip_offset(s)?;
    let (rest, at) = strip_at(rest)?;
    if at.is_some() && offset == 0 {
        let (rest, offset) = strip_offset(rest)?;
        return Ok((rest, Modifiers { offset, at }));
    }
    Ok((rest, Modifiers { offset, at }))
}

/// A selector and its `@` modifier: `x @ 1700000000` (unix seconds), `x @ start()`,
/// `x[5m] @ end()`; `None` without one.
fn strip_at(s: &str) -> Result<(&str, Option<At>), String> {
    let t = s.trim_end();
    let Some(pos) = unquoted(t)
        .filter(|(_, c)| *c == '@')
        .map(|(i, _)| i)
        .last()
    else {
        return Ok((s, None));
    };
    let (before, after) = (t[..pos].trim_end(), t[pos + 1..].trim());
    if before.is_empty() {
        return Err(format!(
            "@ follows a selector, e.g. x @ 1700000000; {SUPPORTED}"
        ));
    }
    let at = match after {
        "start()" => At::Start,
        "end()" => At::End,
        n => At::Ms(
            n.parse::<f64>()
                .ok()
                .and_then(prescale_core::unix_seconds_ms)
                .ok_or_else(|| {
                    format!(
                        "{n:?} after @ is not a time: write unix seconds (within {} of 1970), start() or end()",
                        prescale_core::MAX_TS_SPAN
                    )
                })?,
        ),
    };
    Ok((before, Some(at)))
}

/// A selector (with its range, if any) and its `offset` modifier in ms (0 without
/// one): `x offset 1h`, `x[5m] offset 1d`, `x offset -5m`.
fn strip_offset(s: &str) -> Result<(&str, i64), String> {
    let t = s.trim_end();
    let Some((before, dur)) = t.rsplit_once(char::is_whitespace) else {
        return Ok((s, 0));
    };
    let Some(sel) = before.trim_end().strip_suffix("offset") else {
        return Ok((s, 0));
    };
    // A whole word, after the selector: not the end of a name such as `time_offset`.
    if sel.is_empty() || !sel.ends_with(|c: char| c.is_whitespace() || c == ']' || c == '}') {
        return Ok((s, 0));
    }
    let (sign, d) = match dur.strip_prefix('-') {
        Some(d) => (-1, d),
        None => (1, dur),
    };
    let ms = parse_duration_ms(d)
        .ok_or_else(|| format!("{dur:?} is not an offset such as 5m, 1h or -1d"))?;
    Ok((sel.trim_end(), sign * ms))
}

fn fmt_value(v: f64) -> String {
    // Prometheus writes values as strings, NaN and infinities by name.
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// The value of one series at each of `times` (ascending, `step` apart).
fn evaluate(expr: &Expr, samples: &[Sample], times: &[TimestampMs], step: i64) -> Vec<Option<f64>> {
    if let (Some(op), Some(r)) = (expr.over, expr.range) {
        // Each time's own window (t - r, t].
        return times
            .iter()
            .map(|&t| {
                let lo = samples.partition_point(|s| s.ts <= t - r);
                let hi = samples.partition_point(|s| s.ts <= t);
                over_range(op, &samples[lo..hi], t - r, t)
            })
            .collect();
    }
    match &expr.inner {
        DemandExpr::Sum(_) => {
            let mut out = Vec::with_capacity(times.len());
            let mut i = 0;
            let mut last: Option<Sample> = None;
            for &t in times {
                while i < samples.len() && samples[i].ts <= t {
                    last = Some(samples[i]);
                    i += 1;
                }
                let stamp = |s: Sample| s.ts as f64 / 1000.0;
                out.push(last.filter(|s| s.ts > t - LOOKBACK_MS).map(|s| {
                    if expr.stamp {
                        stamp(s)
                    } else {
                        s.value
                    }
                }));
            }
            out
        }
        DemandExpr::Rate(_) => {
            // Bucket b covers (t_b - step, t_b]: from one ms after the previous time.
            let from = times[0] - step + 1;
            prescale_orchestrate::engine::step_rates(samples, from, times.len(), step)
        }
    }
}

/// Each result series' labels with its value (if any) at each evaluation time.
type Evaluated = Vec<(Labels, Vec<Option<f64>>)>;

/// Evaluates `expr` at `times` for every series it selects, then aggregates.
fn run(st: &Store, expr: &Expr, times: &[TimestampMs], step: i64) -> Result<Evaluated, String> {
    if let Some(at) = expr.at {
        let once = Expr {
            at: None,
            ..expr.clone()
        };
        return Ok(replicate(run(st, &once, &[pinned(at)], step)?, times.len()));
    }
    // With an offset, each time's value is the one from that long before it.
    let shifted: Vec<TimestampMs> = times.iter().map(|t| t - expr.offset).collect();
    let times = &shifted[..];
    let (lo, hi) = (times[0], *times.last().expect("at least one time"));
    let back = match (&expr.inner, expr.range) {
        (DemandExpr::Sum(_), Some(r)) if expr.over.is_some() => r,
        (DemandExpr::Sum(_), _) => LOOKBACK_MS,
        // prescale's rate without a range: over each step.
        (DemandExpr::Rate(_), _) => 2 * step,
    };
    // A plain selector keeps the metric name; a rate or an aggregation drops it.
    let keep_name = matches!(expr.inner, DemandExpr::Sum(_))
        && expr.agg.is_none()
        && expr.factor.is_none()
        && expr.over.is_none_or(|op| op == AggOp::Last)
        && !expr.stamp;
    let mut out = Vec::new();
    for key in st.select_matching(expr.inner.selector()) {
        let samples = st
            .range(&key, lo - back, hi)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let values = evaluate(expr, &samples, times, step);
        if values.iter().any(Option::is_some) {
            let mut labels = key.labels;
            if keep_name {
                labels.insert("__name__".into(), key.name);
            }
            out.push((labels, values));
        }
    }
    Ok(match &expr.agg {
        None => out,
        Some(a) => aggregate(a, out, times.len()),
    }
    .into_iter()
    .map(|(labels, values)| match expr.factor {
        Some(k) => (
            labels,
            values.into_iter().map(|v| v.map(|v| v * k)).collect(),
        ),
        None => (labels, values),
    })
    .collect())
}

/// Series evaluated at one time, their value repeated at each of `n` (an `@` modifier's).
fn replicate(v: Evaluated, n: usize) -> Evaluated {
    v.into_iter()
        .map(|(labels, values)| (labels, vec![values[0]; n]))
        .collect()
}

/// An `@` modifier's time once [`pin`] has resolved `start()` and `end()`.
fn pinned(at: At) -> TimestampMs {
    match at {
        At::Ms(t) => t,
        At::Start | At::End => unreachable!("@ start() and end() are pinned before evaluation"),
    }
}

/// Sets every `@ start()` and `@ end()` in `node` to the query's first and last
/// evaluation times, as Prometheus does (also inside subqueries).
fn pin(node: &mut Node, start: TimestampMs, end: TimestampMs) {
    grow(|| pin_level(node, start, end))
}

fn pin_level(node: &mut Node, start: TimestampMs, end: TimestampMs) {
    let fix = |at: &mut Option<At>| match at {
        Some(At::Start) => *at = Some(At::Ms(start)),
        Some(At::End) => *at = Some(At::Ms(end)),
        _ => {}
    };
    match node {
        Node::Number(_) | Node::Time => {}
        Node::Series(e) => fix(&mut e.at),
        Node::Subquery { at, arg, .. } => {
            fix(at);
            pin(arg, start, end);
        }
        Node::Binary { lhs, rhs, .. } => {
            pin(lhs, start, end);
            pin(rhs, start, end);
        }
        Node::HistogramQuantile { buckets: arg, .. }
        | Node::Select { arg, .. }
        | Node::Math { arg, .. }
        | Node::LabelReplace { arg, .. }
        | Node::Aggregate { arg, .. }
        | Node::Vector(arg)
        | Node::ScalarOf(arg)
        | Node::Timestamp(arg)
        | Node::Absent { arg, .. }
        | Node::Sort { arg, .. }
        | Node::CountValues { arg, .. }
        | Node::LabelJoin { arg, .. } => pin(arg, start, end),
    }
}

/// Groups series by the aggregation's labels and combines each group's values at each
/// time (a time no series of the group has a value at has none).
fn aggregate(a: &Agg, series: Evaluated, n: usize) -> Evaluated {
    let mut groups: BTreeMap<Labels, Vec<Vec<f64>>> = BTreeMap::new();
    for (labels, values) in series {
        let key: Labels = labels
            .into_iter()
            .filter(|(k, _)| k != "__name__" && a.labels.contains(k) == a.by)
            .collect();
        let g = groups.entry(key).or_insert_with(|| vec![Vec::new(); n]);
        for (slot, v) in g.iter_mut().zip(values) {
            slot.extend(v);
        }
    }
    groups
        .into_iter()
        .map(|(labels, per_time)| {
            let values = per_time.into_iter().map(|vs| combine(a.op, &vs)).collect();
            (labels, values)
        })
        .collect()
}

/// The samples of one series in the range `(start, end]` (oldest first) combined by
/// `op`, as Prometheus' range functions do; `None` when too few.
pub(crate) fn over_range(
    op: AggOp,
    w: &[Sample],
    start: TimestampMs,
    end: TimestampMs,
) -> Option<f64> {
    let secs = |ms: i64| ms as f64 / 1000.0;
    let last = w.last()?;
    let prev = || w.len().checked_sub(2).map(|k| w[k]);
    match op {
        AggOp::Delta => extrapolated(w, start, end, false),
        AggOp::Increase => extrapolated(w, start, end, true),
        AggOp::Rate => extrapolated(w, start, end, true).map(|v| v / secs(end - start)),
        AggOp::Idelta => Some(last.value - prev()?.value),
        AggOp::Present => Some(1.0),
        // As Prometheus: NaN to NaN is no change, anything else to NaN is one.
        AggOp::Changes => Some(
            w.windows(2)
                .filter(|p| {
                    p[0].value != p[1].value && !(p[0].value.is_nan() && p[1].value.is_nan())
                })
                .count() as f64,
        ),
        AggOp::Resets => Some(w.windows(2).filter(|p| p[1].value < p[0].value).count() as f64),
        AggOp::Irate => {
            let p = prev()?;
            Some(last.counter_rise(p.value) / secs(last.ts - p.ts))
        }
        AggOp::Deriv | AggOp::PredictLinear(_) => {
            // Least squares on times relative to the evaluation time, so the intercept
            // is the line's value then.
            (w.len() >= 2).then_some(())?;
            let n = w.len() as f64;
            let x = |s: &Sample| secs(s.ts - end);
            let (sx, sy) = w
                .iter()
                .fold((0.0, 0.0), |(a, b), s| (a + x(s), b + s.value));
            let (mx, my) = (sx / n, sy / n);
            let (sxy, sxx) = w.iter().fold((0.0, 0.0), |(a, b), s| {
                (
                    a + (x(s) - mx) * (s.value - my),
                    b + (x(s) - mx) * (x(s) - mx),
                )
            });
            let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
            Some(match op {
                AggOp::PredictLinear(ahead) => my - slope * mx + slope * ahead,
                _ => slope,
            })
        }
        _ => combine(op, &w.iter().map(|s| s.value).collect::<Vec<_>>()),
    }
}

/// Prometheus' extrapolatedRate over the samples `w` of the range `(start, end]`, not
/// per second: the change from the first sample to the last (for a `counter`, each
/// fall counted as a reset from zero), extended to the range's edges unless a sample is
/// more than 1.1 average intervals from an edge (then by half an interval), and for a
/// counter no further back than where it would have been zero. `None` under two
/// samples.
fn extrapolated(w: &[Sample], start: TimestampMs, end: TimestampMs, counter: bool) -> Option<f64> {
    let secs = |ms: i64| ms as f64 / 1000.0;
    let (first, last) = (w.first()?, w.last()?);
    (w.len() >= 2).then_some(())?;
    let mut change = last.value - first.value;
    if counter {
        change += w
            .windows(2)
            .filter(|p| p[1].value < p[0].value)
            .map(|p| p[0].value)
            .sum::<f64>();
    }
    let sampled = secs(last.ts - first.ts);
    let avg = sampled / (w.len() - 1) as f64;
    let mut to_start = secs(first.ts - start);
    if counter && change > 0.0 && first.value >= 0.0 {
        to_start = to_start.min(sampled * first.value / change);
    }
    let edge = |d: f64| if d >= 1.1 * avg { avg / 2.0 } else { d };
    let span = sampled + edge(to_start) + edge(secs(end - last.ts));
    Some(change * span / sampled)
}

/// `vs` (oldest first) combined by `op`; `None` when empty.
fn combine(op: AggOp, vs: &[f64]) -> Option<f64> {
    let mean = || vs.iter().sum::<f64>() / vs.len() as f64;
    let var = || {
        let m = mean();
        vs.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / vs.len() as f64
    };
    (!vs.is_empty()).then(|| match op {
        AggOp::Sum => vs.iter().sum(),
        AggOp::Avg => mean(),
        AggOp::Min => vs.iter().copied().fold(f64::INFINITY, f64::min),
        AggOp::Max => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        AggOp::Count => vs.len() as f64,
        AggOp::Last => vs[vs.len() - 1],
        AggOp::Stddev => var().sqrt(),
        AggOp::Stdvar => var(),
        // Time-aware: see over_range.
        AggOp::Delta
        | AggOp::Idelta
        | AggOp::Irate
        | AggOp::Deriv
        | AggOp::PredictLinear(_)
        | AggOp::Changes
        | AggOp::Resets
        | AggOp::Rate
        | AggOp::Increase
        | AggOp::Present => f64::NAN,
        AggOp::Group => 1.0,
        // As Prometheus: interpolated at rank phi * (n - 1) of the sorted values.
        AggOp::Quantile(phi) => outside_quantile(phi).unwrap_or_else(|| {
            let mut s = vs.to_vec();
            s.sort_by(f64::total_cmp);
            let rank = phi * (s.len() - 1) as f64;
            let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (rank - lo as f64)
        }),
    })
}

/// What a query evaluates to.
enum Val {
    /// A number at each time (the same one for a literal; `time()` moves).
    Scalar(Vec<f64>),
    Vector(Evaluated),
}

/// Why a query could not be answered: the query's fault (`400`) or the store's (`500`).
enum Failed {
    Query(String),
    Store(String),
}

/// At each of `n` times, the `k` series of each group (by `labels`, or all but them)
/// with the highest values (the lowest unless `highest`; NaN last either way), as
/// `topk` and `bottomk` choose; a series keeps its values at the times it is chosen and
/// is left out when it never is.
fn select_k(
    v: Evaluated,
    highest: bool,
    k: usize,
    by: bool,
    labels: &[String],
    n: usize,
) -> Evaluated {
    let group = |l: &Labels| -> Labels {
        l.iter()
            .filter(|(name, _)| *name != "__name__" && labels.contains(name) == by)
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect()
    };
    let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
    for (i, (l, _)) in v.iter().enumerate() {
        groups.entry(group(l)).or_default().push(i);
    }
    // kept[t][i]: series i is chosen at time t.
    let mut kept = vec![vec![false; v.len()]; n];
    for members in groups.values() {
        for (t, chosen) in kept.iter_mut().enumerate() {
            let mut at: Vec<(usize, f64)> = members
                .iter()
                .filter_map(|&i| Some((i, v[i].1[t]?)))
                .collect();
            at.sort_by(|a, b| match (a.1.is_nan(), b.1.is_nan()) {
                (false, false) if highest => b.1.total_cmp(&a.1),
                (false, false) => a.1.total_cmp(&b.1),
                (x, y) => x.cmp(&y),
            });
            for (i, _) in at.into_iter().take(k) {
                chosen[i] = true;
            }
        }
    }
    v.into_iter()
        .enumerate()
        .filter_map(|(i, (l, values))| {
            let values: Vec<Option<f64>> = values
                .into_iter()
                .zip(&kept)
                .map(|(x, chosen)| x.filter(|_| chosen[i]))
                .collect();
            values.iter().any(Option::is_some).then_some((l, values))
        })
        .collect()
}

/// Every value of `v` mapped by `f`; the metric name goes, as PromQL drops it from
/// anything computed.
fn each(v: Evaluated, f: impl Fn(f64) -> f64) -> Evaluated {
    v.into_iter()
        .map(|(mut labels, values)| {
            labels.remove("__name__");
            (labels, values.into_iter().map(|x| x.map(&f)).collect())
        })
        .collect()
}

/// `node`'s series at `times`, or a refusal saying that `what` (e.g. "label_join(...)
/// relabels") series, not a number.
fn vector_of(
    st: &Store,
    node: &Node,
    times: &[TimestampMs],
    step: i64,
    what: &str,
) -> Result<Evaluated, Failed> {
    match eval(st, node, times, step)? {
        Val::Vector(v) => Ok(v),
        Val::Scalar(_) => Err(Failed::Query(format!("{what} series, not a number"))),
    }
}

/// Evaluates `node` at `times` (on a grown stack where this one runs low: its depth is
/// the parse's, bounded by [`prescale_core::nesting::MAX_NESTING`]).
fn eval(st: &Store, node: &Node, times: &[TimestampMs], step: i64) -> Result<Val, Failed> {
    grow(|| eval_level(st, node, times, step))
}

fn eval_level(st: &Store, node: &Node, times: &[TimestampMs], step: i64) -> Result<Val, Failed> {
    Ok(match node {
        Node::Number(v) => Val::Scalar(vec![*v; times.len()]),
        Node::Time => Val::Scalar(times.iter().map(|t| *t as f64 / 1000.0).collect()),
        Node::CountValues {
            label,
            by,
            labels,
            arg,
        } => {
            let v = vector_of(st, arg, times, step, "count_values(...) counts")?;
            Val::Vector(count_values(v, label, *by, labels, times.len()))
        }
        Node::Sort { desc, arg } => {
            let mut v = vector_of(st, arg, times, step, "sort(...) and sort_desc(...) order")?;
            let at = |s: &(Labels, Vec<Option<f64>>)| s.1[0];
            v.sort_by(|a, b| match (at(a), at(b)) {
                (Some(x), Some(y)) if !x.is_nan() && !y.is_nan() => {
                    if *desc {
                        y.total_cmp(&x)
                    } else {
                        x.total_cmp(&y)
                    }
                }
                (x, y) => {
                    let last = |v: Option<f64>| v.is_none_or(f64::is_nan);
                    last(x).cmp(&last(y))
                }
            });
            Val::Vector(v)
        }
        Node::LabelJoin {
            arg,
            dst,
            sep,
            srcs,
        } => {
            let v = vector_of(st, arg, times, step, "label_join(...) relabels")?;
            Val::Vector(label_join(v, dst, sep, srcs).map_err(Failed::Query)?)
        }
        Node::Timestamp(arg) => match &**arg {
            Node::Series(e)
                if matches!(e.inner, DemandExpr::Sum(_))
                    && e.range.is_none()
                    && e.agg.is_none()
                    && e.factor.is_none() =>
            {
                let e = Expr {
                    stamp: true,
                    ..e.clone()
                };
                Val::Vector(run(st, &e, times, step).map_err(Failed::Store)?)
            }
            _ => match eval(st, arg, times, step)? {
                Val::Vector(v) => {
                    let at: Vec<f64> = times.iter().map(|t| *t as f64 / 1000.0).collect();
                    Val::Vector(
                        v.into_iter()
                            .map(|(mut labels, values)| {
                                labels.remove("__name__");
                                let values =
                                    values.iter().zip(&at).map(|(x, t)| x.map(|_| *t)).collect();
                                (labels, values)
                            })
                            .collect(),
                    )
                }
                Val::Scalar(_) => {
                    return Err(Failed::Query(
                        "timestamp(...) takes series, not a number".into(),
                    ))
                }
            },
        },
        Node::ScalarOf(arg) => match eval(st, arg, times, step)? {
            // As Prometheus: the value of the only series with one, else NaN.
            Val::Vector(v) => Val::Scalar(
                (0..times.len())
                    .map(|t| {
                        let mut at = v.iter().filter_map(|s| s.1[t]);
                        match (at.next(), at.next()) {
                            (Some(x), None) => x,
                            _ => f64::NAN,
                        }
                    })
                    .collect(),
            ),
            scalar => scalar,
        },
        Node::Select {
            highest,
            k,
            by,
            labels,
            arg,
        } => {
            let v = vector_of(
                st,
                arg,
                times,
                step,
                "topk(...) and bottomk(...) choose among",
            )?;
            Val::Vector(select_k(v, *highest, *k, *by, labels, times.len()))
        }
        Node::Math { f, arg } => match eval(st, arg, times, step)? {
            Val::Scalar(v) => Val::Scalar(v.into_iter().map(|x| f.apply(x)).collect()),
            // As in Prometheus, clamp with its bounds crossed answers nothing.
            Val::Vector(_) if matches!(f, MathFn::Clamp(lo, hi) if lo > hi) => {
                Val::Vector(Vec::new())
            }
            Val::Vector(v) => Val::Vector(each(v, |x| f.apply(x))),
        },
        Node::Aggregate { agg, arg } => {
            let v = vector_of(
                st,
                arg,
                times,
                step,
                "sum, avg, min, max and count aggregate",
            )?;
            Val::Vector(aggregate(agg, v, times.len()))
        }
        Node::LabelReplace {
            arg,
            dst,
            replacement,
            src,
            regex,
        } => {
            let v = vector_of(st, arg, times, step, "label_replace(...) relabels")?;
            Val::Vector(label_replace(v, dst, replacement, src, regex).map_err(Failed::Query)?)
        }
        Node::HistogramQuantile { phi, buckets } => {
            let v = vector_of(
                st,
                buckets,
                times,
                step,
                "histogram_quantile(...) needs bucket",
            )?;
            Val::Vector(histogram_quantiles(*phi, v, times.len())?)
        }
        Node::Series(e) => Val::Vector(run(st, e, times, step).map_err(Failed::Store)?),
        Node::Vector(arg) => match eval(st, arg, times, step)? {
            Val::Scalar(v) => Val::Vector(vec![(Labels::new(), v.into_iter().map(Some).collect())]),
            Val::Vector(_) => {
                return Err(Failed::Query(
                    "vector(...) takes a number, e.g. vector(0) or vector(time()), not series"
                        .into(),
                ))
            }
        },
        Node::Subquery {
            at,
            over,
            arg,
            range,
            res,
            offset,
        } => Val::Vector(match at {
            Some(at) => replicate(
                subquery(st, arg, *over, *range, *res, *offset, &[pinned(*at)])?,
                times.len(),
            ),
            None => subquery(st, arg, *over, *range, *res, *offset, times)?,
        }),
        Node::Absent { arg, labels } => {
            let Val::Vector(v) = eval(st, arg, times, step)? else {
                return Err(Failed::Query(
                    "absent(...) asks whether series have values, not a number".into(),
                ));
            };
            let values: Vec<Option<f64>> = (0..times.len())
                .map(|t| (!v.iter().any(|s| s.1[t].is_some())).then_some(1.0))
                .collect();
            Val::Vector(if values.iter().any(Option::is_some) {
                vec![(labels.clone(), values)]
            } else {
                Vec::new()
            })
        }
        Node::Binary {
            op,
            boolean,
            lhs,
            rhs,
            matching,
        } => {
            let (op, boolean) = (*op, *boolean);
            match (eval(st, lhs, times, step)?, eval(st, rhs, times, step)?) {
                (Val::Scalar(_), _) | (_, Val::Scalar(_)) if op.is_set() => {
                    return Err(Failed::Query(format!(
                        "{} works between series, not with a number",
                        op.symbol()
                    )))
                }
                (Val::Scalar(_), Val::Scalar(_)) if op.is_comparison() && !boolean => {
                    return Err(Failed::Query(
                        "a comparison between two numbers needs bool, e.g. time() > bool 0".into(),
                    ))
                }
                (Val::Scalar(a), Val::Scalar(b)) => {
                    Val::Scalar(a.iter().zip(&b).map(|(a, b)| op.apply(*a, *b)).collect())
                }
                (Val::Vector(v), Val::Scalar(b)) => {
                    Val::Vector(with_number(v, op, boolean, |t, x| (x, b[t])))
                }
                (Val::Scalar(a), Val::Vector(v)) => {
                    Val::Vector(with_number(v, op, boolean, |t, x| (a[t], x)))
                }
                (Val::Vector(l), Val::Vector(r)) if op.is_set() => {
                    Val::Vector(set_operation(op, l, r, matching.as_ref()))
                }
                (Val::Vector(l), Val::Vector(r)) => {
                    Val::Vector(match_vectors(op, boolean, l, r, matching.as_ref())?)
                }
            }
        }
    })
}

/// `x op k` or `k op x` for every value `x` of `v` (`pair` puts them in order, with the
/// number at that time): the
/// result of arithmetic or of a comparison with `bool`, without the metric name; a
/// comparison without `bool` keeps each series (its name too) where it holds, with the
/// series' own value, whichever side it is on.
fn with_number(
    v: Evaluated,
    op: BinOp,
    boolean: bool,
    pair: impl Fn(usize, f64) -> (f64, f64),
) -> Evaluated {
    let filter = op.is_comparison() && !boolean;
    v.into_iter()
        .filter_map(|(mut labels, values)| {
            if !filter {
                labels.remove("__name__");
            }
            let values: Vec<Option<f64>> = values
                .into_iter()
                .enumerate()
                .map(|(t, x)| {
                    let (a, b) = pair(t, x?);
                    let v = op.value(a, b, boolean)?;
                    Some(if filter { x? } else { v })
                })
                .collect();
            values
                .iter()
                .any(Option::is_some)
                .then_some((labels, values))
        })
        .collect()
}

/// The labels `l op r` matches series on: all but `__name__`, or only the `on` ones,
/// or all but the `ignoring` ones.
fn signature(labels: &Labels, matching: Option<&Matching>) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| *k != "__name__" && matching.is_none_or(|m| m.labels.contains(k) == m.on))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `l and r`, `l or r`, `l unless r`, as PromQL's set operators, at each time on its
/// own, series matched on their [`signature`]s, many to many: `and` keeps each series
/// of `l` where some series of `r` like it has a value, `unless` where none has, and
/// `or` keeps all of `l` and adds each series of `r` where no series of `l` like it has
/// a value. Series keep all their labels, the metric name too.
fn set_operation(op: BinOp, l: Evaluated, r: Evaluated, matching: Option<&Matching>) -> Evaluated {
    let n = l.iter().chain(&r).map(|s| s.1.len()).max().unwrap_or(0);
    let present = |side: &Evaluated| {
        let mut at: BTreeMap<Labels, Vec<bool>> = BTreeMap::new();
        for (labels, values) in side {
            let slot = at
                .entry(signature(labels, matching))
                .or_insert_with(|| vec![false; n]);
            for (p, v) in slot.iter_mut().zip(values) {
                *p |= v.is_some();
            }
        }
        at
    };
    // Keeps each value of `side` at the times `keep` says for its signature.
    let kept = |side: Evaluated, keep: &dyn Fn(&Labels, usize) -> bool| {
        side.into_iter()
            .map(|(labels, values)| {
                let sig = signature(&labels, matching);
                let values: Vec<Option<f64>> = values
                    .into_iter()
                    .enumerate()
                    .map(|(t, v)| v.filter(|_| keep(&sig, t)))
                    .collect();
                (labels, values)
            })
            .collect::<Evaluated>()
    };
    let out = match op {
        BinOp::And | BinOp::Unless => {
            let right = present(&r);
            let want = op == BinOp::And;
            kept(l, &|sig, t| right.get(sig).is_some_and(|p| p[t]) == want)
        }
        _ => {
            let left = present(&l);
            let extra = kept(r, &|sig, t| !left.get(sig).is_some_and(|p| p[t]));
            // A series on both sides (the same labels) is one series.
            let mut merged: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
            for (labels, values) in l.into_iter().chain(extra) {
                let slot = merged.entry(labels).or_insert_with(|| vec![None; n]);
                for (s, v) in slot.iter_mut().zip(values) {
                    *s = s.or(v);
                }
            }
            merged.into_iter().collect()
        }
    };
    out.into_iter()
        .filter(|(_, values)| values.iter().any(Option::is_some))
        .collect()
}

/// `l op r` between series with the same labels (all but `__name__`, or only the `on`
/// ones, or all but the `ignoring` ones), as PromQL matches vectors; a series without a
/// partner is left out.
///
/// One to one, each result is labelled with the labels matched on, and two series on
/// one side with the same ones are an error saying how to tell them apart. With
/// `group_left` (`group_right`) many series on the left (right) may share a partner on
/// the other side, which must still be one; each result keeps the labels of its series
/// on the many side (but `__name__`) and takes the `group_left (...)` labels from its
/// partner (dropping those the partner lacks). Two results with the same labels are an
/// error, as in Prometheus. A comparison without `bool` keeps the left value where it
/// holds and, as Prometheus, the metric name (but when matching `on` some labels).
fn match_vectors(
    op: BinOp,
    boolean: bool,
    l: Evaluated,
    r: Evaluated,
    matching: Option<&Matching>,
) -> Result<Evaluated, Failed> {
    let signature = |labels: &Labels| signature(labels, matching);
    // A comparison that filters keeps the left series' name, where the labels it
    // matched on are not only the `on` ones.
    let filter = op.is_comparison() && !boolean;
    let op_name = op.symbol();
    let group = matching.and_then(|m| m.group.as_ref());
    let many_left = group.is_none_or(|g| g.0);
    let (many, one) = if many_left { (l, r) } else { (r, l) };
    let side_name = |left: bool| if left { "left" } else { "right" };
    let twice = |which: &str, sig: &Labels| {
        Failed::Query(format!(
            "two series on the {which} of {op_name} have the labels {sig:?}: match on fewer labels with on (...) or ignoring (...), or aggregate that side"
        ))
    };
    if group.is_none() {
        let mut seen = BTreeSet::new();
        for (labels, _) in &many {
            let sig = signature(labels);
            if !seen.insert(sig.clone()) {
                return Err(twice("left", &sig));
            }
        }
    }
    let mut ones = BTreeMap::new();
    for (labels, values) in one {
        let sig = signature(&labels);
        if ones.contains_key(&sig) {
            return Err(twice(side_name(!many_left), &sig));
        }
        ones.insert(sig, (labels, values));
    }
    let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
    for (labels, mv) in many {
        let sig = signature(&labels);
        let Some((their, ov)) = ones.get(&sig) else {
            continue;
        };
        let result = match group {
            None => {
                let mut sig = sig;
                let named = many_left && filter && matching.is_none_or(|m| !m.on);
                if let Some(name) = labels.get("__name__").filter(|_| named) {
                    sig.insert("__name__".into(), name.clone());
                }
                sig
            }
            Some((_, include)) => {
                let mut lb = labels;
                if !filter {
                    lb.remove("__name__");
                }
                for name in include {
                    match their.get(name).filter(|v| !v.is_empty()) {
                        Some(v) => lb.insert(name.clone(), v.clone()),
                        None => lb.remove(name),
                    };
                }
                lb
            }
        };
        let values: Vec<Option<f64>> = mv
            .into_iter()
            .zip(ov)
            .map(|(m, o)| {
                let (a, b) = if many_left { (m?, (*o)?) } else { ((*o)?, m?) };
                op.value(a, b, boolean)
            })
            .collect();
        if !values.iter().any(Option::is_some) {
            continue;
        }
        if out.contains_key(&result) {
            return Err(Failed::Query(format!(
                "two results of {op_name} have the labels {result:?}: with group_left or group_right the labels of the many side must tell its series apart"
            )));
        }
        out.insert(result, values);
    }
    Ok(out.into_iter().collect())
}

/// Whether prescale can answer `query`: what is wrong with it if not.
pub fn check(query: &str) -> Result<(), String> {
    parse_node(query).map(|_| ())
}

/// `query` (PromQL) at each of `times` (`step` apart) over `store`, as one series: its
/// value at each time, `None` where it has none. An error says what is wrong when the
/// query cannot be read or gives several series.
pub fn series_at(
    store: &Store,
    query: &str,
    times: &[TimestampMs],
    step: i64,
) -> Result<Vec<Option<f64>>, String> {
    let mut node = parse_node(query)?;
    let (first, last) = (times.first().copied(), times.last().copied());
    pin(&mut node, first.unwrap_or(0), last.unwrap_or(0));
    match eval(store, &node, times, step) {
        Ok(Val::Scalar(x)) => Ok(x.into_iter().map(Some).collect()),
        Ok(Val::Vector(v)) if v.len() <= 1 => Ok(v
            .into_iter()
            .next()
            .map_or_else(|| vec![None; times.len()], |(_, x)| x)),
        Ok(Val::Vector(v)) => Err(format!(
            "`{query}` gives {} series; it must give one: aggregate them, e.g. sum({query})",
            v.len()
        )),
        Err(Failed::Query(m) | Failed::Store(m)) => Err(m),
    }
}

/// Parses and evaluates `query` off the async threads (evaluating reads the store, and
/// parsing a query of megabytes may take a few tenths of a second); gives the times back with the value, a
/// `400` when the query cannot be answered as written and a `500` saying why when the
/// store fails.
async fn run_blocking(
    st: AppState,
    query: String,
    times: Vec<TimestampMs>,
    step: i64,
) -> Result<(Val, Vec<TimestampMs>), Response> {
    let now = now_ms();
    let (first, last) = (times.first().copied(), times.last().copied());
    let res = tokio::task::spawn_blocking(move || {
        let mut node = parse_node(&query).map_err(Failed::Query)?;
        pin(&mut node, first.unwrap_or(now), last.unwrap_or(now));
        eval(&st.store, &node, &times, step).map(|v| (v, times))
    })
    .await;
    match res {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(Failed::Query(m))) => Err(bad(m)),
        Ok(Err(Failed::Store(e))) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// A range vector, `SELECTOR[RANGE]` with its modifiers: what an instant query answers
/// with each selected series' stored samples in the range, as Prometheus' console does
/// (the way to see a series' raw samples).
#[derive(Debug, Clone, PartialEq)]
struct RangeVector {
    selector: prescale_core::Selector,
    range: i64,
    m: Modifiers,
}

/// `q` as a range vector, `None` when it is something else (a subquery's `[1h:1m]`
/// too), an error when its range is not a duration.
fn range_vector(q: &str) -> Result<Option<RangeVector>, String> {
    // Modifiers that cannot be read here are the whole query's to explain.
    let Ok((rest, m)) = strip_modifiers(q.trim()) else {
        return Ok(None);
    };
    let Some((sel, r)) = rest
        .trim_end()
        .strip_suffix(']')
        .and_then(|a| a.rsplit_once('['))
    else {
        return Ok(None);
    };
    if r.contains(':') {
        return Ok(None);
    }
    let Ok(DemandExpr::Sum(selector)) = DemandExpr::parse(sel) else {
        return Ok(None);
    };
    let range = parse_duration_ms(r.trim())
        .filter(|&ms| ms > 0)
        .ok_or_else(|| format!("{:?} is not a range such as 5m or 30s", r.trim()))?;
    Ok(Some(RangeVector { selector, range, m }))
}

/// Each series `rv` selects, with its samples in the range before `t` (less the offset,
/// or before the `@` time): after its start, up to and including its end, as
/// Prometheus 3 takes a range.
fn raw_samples(st: &Store, rv: &RangeVector, t: TimestampMs) -> Result<Value, String> {
    let end = rv.m.at.map_or(t, pinned) - rv.m.offset;
    let mut result = Vec::new();
    for key in st.select_matching(&rv.selector) {
        let samples = st
            .range(&key, end - rv.range + 1, end)
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        if samples.is_empty() {
            continue;
        }
        let values: Vec<Value> = samples
            .iter()
            .map(|s| json!([s.ts as f64 / 1000.0, fmt_value(s.value)]))
            .collect();
        let mut labels = key.labels;
        labels.insert("__name__".into(), key.name);
        result.push(json!({"metric": labels, "values": values}));
    }
    Ok(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
}

/// `GET /api/v1/query`: an instant vector at `time` (default now), or a range vector's
/// samples.
pub async fn query(State(st): State<AppState>, p: crate::promapi::ApiParams) -> Response {
    let p = p.query();
    let t = match p.time.as_deref().map(parse_time) {
        None => now_ms(),
        Some(Some(t)) => t,
        Some(None) => {
            return bad(format!(
                "`time` must be unix seconds or RFC 3339, within {} of 1970",
                prescale_core::MAX_TS_SPAN
            ))
        }
    };
    match p.query.as_deref().map(range_vector) {
        Some(Ok(Some(mut rv))) => {
            if matches!(rv.m.at, Some(At::Start | At::End)) {
                rv.m.at = Some(At::Ms(t));
            }
            let res = tokio::task::spawn_blocking(move || raw_samples(&st.store, &rv, t)).await;
            return match res {
                Ok(Ok(v)) => Json(v).into_response(),
                Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
        }
        Some(Err(m)) => return bad(m),
        _ => {}
    }
    let Some(query) = p.query else {
        return bad(MISSING_QUERY);
    };
    let series = match run_blocking(st, query, vec![t], LOOKBACK_MS).await {
        Ok((Val::Vector(v), _)) => v,
        Ok((Val::Scalar(x), _)) => {
            return Json(json!({"status": "success", "data": {"resultType": "scalar", "result": [t as f64 / 1000.0, fmt_value(x[0])]}}))
                .into_response()
        }
        Err(r) => return r,
    };
    let result: Vec<Value> = series
        .iter()
        .filter_map(|(k, v)| {
            v[0].map(|x| json!({"metric": k, "value": [t as f64 / 1000.0, fmt_value(x)]}))
        })
        .collect();
    Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
        .into_response()
}

/// `GET /api/v1/query_range` with `query`: a matrix from `start` to `end` every `step`.
pub async fn query_range(st: AppState, p: PromParams) -> Response {
    if let Some(Ok(Some(_))) = p.query.as_deref().map(range_vector) {
        return bad(
            "a range vector (SELECTOR[RANGE]) is a range of samples at one time: ask /api/v1/query for it, or give a range query an instant vector, e.g. last_over_time(SELECTOR[RANGE])",
        );
    }
    let Some(query) = p.query else {
        return bad(MISSING_QUERY);
    };
    let (Some(start), Some(end)) = (
        p.start.as_deref().and_then(parse_time),
        p.end.as_deref().and_then(parse_time),
    ) else {
        return bad(format!(
            "`start` and `end` must be unix seconds or RFC 3339, within {} of 1970",
            prescale_core::MAX_TS_SPAN
        ));
    };
    let Some(step) = p.step.as_deref().and_then(parse_step) else {
        return bad("`step` must be a positive number of seconds or a duration such as 15s");
    };
    if end < start {
        return bad("`end` is before `start`");
    }
    if (end - start) / step + 1 > MAX_POINTS {
        return bad(format!(
            "more than {MAX_POINTS} points per series: widen `step` or narrow the range"
        ));
    }
    let times: Vec<TimestampMs> = (0..=(end - start) / step)
        .map(|i| start + i * step)
        .collect();
    let (series, times) = match run_blocking(st, query, times, step).await {
        Ok((Val::Vector(v), times)) => (v, times),
        // A number is one series without labels, as Prometheus charts it.
        Ok((Val::Scalar(x), times)) => (
            vec![(Labels::new(), x.into_iter().map(Some).collect())],
            times,
        ),
        Err(r) => return r,
    };
    let result: Vec<Value> = series
        .iter()
        .map(|(k, vals)| {
            let values: Vec<Value> = times
                .iter()
                .zip(vals)
                .filter_map(|(t, v)| v.map(|x| json!([*t as f64 / 1000.0, fmt_value(x)])))
                .collect();
            json!({"metric": k, "values": values})
        })
        .collect();
    Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
        .into_response()
}

/// `GET /api/v1/status/buildinfo`: what Grafana asks a data source first.
pub async fn buildinfo() -> Response {
    Json(json!({"status": "success", "data": {
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "application": "prescale",
    }}))
    .into_response()
}
