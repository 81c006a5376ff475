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
pub mod nesting;
pub mod selector;
pub mod series;

pub use error::CoreError;
pub use forecast::Forecast;
pub use model::{
    occurrences, Action, ActionKind, Allocation, Decision, DecisionKind, Dim, DimensionSource,
    EventTime, Pause, PauseScope, Plan, PlanStep, PlannedEvent, RecurringEvent, Repeated, Schedule,
    Tier, TierClass, Workload, MIN_RECURRENCE_S, RECURRENCE_CHECK_S,
};
pub use selector::{
    parens, parse_duration_ms, parse_matchers, scalar_factor, unquoted, Demand, DemandExpr,
    MatchOp, Matcher, Selector, SeriesMatch,
};
pub use series::{Labels, Sample, SeriesKey};

/// Milliseconds since the Unix epoch, the time unit used everywhere in prescale.
pub type TimestampMs = i64;

/// The wall clock now, in [`TimestampMs`] (0 if the clock is before 1970).
pub fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as TimestampMs)
        .unwrap_or(0)
}

/// Formats a timestamp as RFC 3339 UTC to the second (`2026-01-05T14:00:00Z`), for
/// explanations people read; one before 1970 or past the year 9999, which RFC 3339
/// cannot write, as its milliseconds (`-5 ms`).
pub fn format_ts(ts: TimestampMs) -> String {
    /// The first second of the year 10000.
    const PAST_RFC3339_S: i64 = 253_402_300_800;
    let secs = ts.div_euclid(1000);
    if !(0..PAST_RFC3339_S).contains(&secs) {
        return format!("{ts} ms");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Reads a time given as unix seconds (`1767621600`, `1767621600.5`) or RFC 3339
/// (`2026-01-05T14:00:00Z`), as people and the query API write them.
pub fn parse_ts(s: &str) -> Option<TimestampMs> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return unix_seconds_ms(v);
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    TimestampMs::try_from(ms).ok()
}

/// The furthest from 1970 a time read from a user (a query's `time`, an `@`) may be,
/// and the longest duration (a range, an offset), in ms: 2^53, some 285,000 years,
/// every millisecond of it exact as an `f64`. Times and durations within it add up
/// without overflowing however a query combines them (a query nests at most
/// [`nesting::MAX_NESTING`] levels); `time=1e300` made `x offset -1w` overflow.
pub const MAX_TS_MS: TimestampMs = 1 << 53;

/// Unix seconds `v` in ms, when it is finite and within [`MAX_TS_MS`] of 1970.
pub fn unix_seconds_ms(v: f64) -> Option<TimestampMs> {
    (v.is_finite() && (v * 1000.0).abs() <= MAX_TS_MS as f64)
        .then(|| (v * 1000.0).round() as TimestampMs)
}

/// [`MAX_TS_MS`] as people read it, for the errors that refuse a time past it.
pub const MAX_TS_SPAN: &str = "285,000 years";

#[cfg(test)]
mod tests {
    #[test]
    fn formats_timestamps() {
        assert_eq!(super::format_ts(1_767_571_200_000), "2026-01-05T00:00:00Z");
        assert_eq!(super::format_ts(0), "1970-01-01T00:00:00Z");
        // RFC 3339 ends with the year 9999 (humantime refuses to write later ones).
        assert_eq!(
            super::format_ts(253_402_300_799_000),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(super::format_ts(253_402_300_800_000), "253402300800000 ms");
        assert_eq!(super::format_ts(i64::MAX), format!("{} ms", i64::MAX));
        assert_eq!(super::format_ts(-5), "-5 ms");
    }

    #[test]
    fn reads_times_as_seconds_or_rfc3339() {
        use super::parse_ts;
        assert_eq!(parse_ts("2026-01-05T00:00:00Z"), Some(1_767_571_200_000));
        assert_eq!(parse_ts("1767571200"), Some(1_767_571_200_000));
        assert_eq!(parse_ts(" 1767571200.25 "), Some(1_767_571_200_250));
        assert_eq!(
            parse_ts(&super::format_ts(1_767_600_000_000)),
            Some(1_767_600_000_000)
        );
        assert_eq!(parse_ts("-9007199254740"), Some(-9_007_199_254_740_000));
        for bad in [
            "yesterday",
            "2026-13-01T00:00:00Z",
            "NaN",
            "",
            "1e300",
            "9007199254741",
        ] {
            assert_eq!(parse_ts(bad), None, "{bad}");
        }
    }
}
