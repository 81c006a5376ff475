//! Anomaly detection on every stored series: one [`LikelihoodDetector`] per series, fed
//! each new sample as it is stored, in bounded memory.
//!
//! A gauge is judged by its values. A counter (a name ending `_total`, `_count` or
//! `_sum`, as Prometheus names them) only ever grows, so it is judged by its per-second
//! rate between two samples, a reset counting from zero as `rate()` does. Histogram
//! buckets (`_bucket`), `_created` timestamps and `_info` series are not watched: a
//! histogram is watched through its `_count` and `_sum`, and the others say nothing of
//! load.

use std::collections::HashMap;

use prescale_core::{Sample, SeriesKey, TimestampMs};

use crate::LikelihoodDetector;

/// How a series is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// By its values.
    Gauge,
    /// By its per-second rate of increase.
    Counter,
}

impl Watched {
    /// Scores one sample: what was judged (its value or rate) and the likelihood, `None`
    /// for one no newer than the last, non-finite, or a counter's first.
    fn judge(&mut self, s: Sample) -> Option<(f64, f64)> {
        if !s.value.is_finite() || self.last.is_some_and(|l| s.ts <= l.ts) {
            return None;
        }
        let judged = match (self.kind, self.last) {
            (Kind::Gauge, _) => Some(s.value),
            (Kind::Counter, None) => None,
            (Kind::Counter, Some(l)) => {
                let secs = (s.ts - l.ts) as f64 / 1000.0;
                let rise = if s.value >= l.value {
                    s.value - l.value
                } else {
                    s.value
                };
                Some(rise / secs)
            }
        };
        self.last = Some(s);
        let v = judged?;
        Some((v, self.detector.score(v)))
    }
}

/// Prefix of the series [`SeriesWatch`]'s findings are stored as, which are not
/// watched themselves.
pub const ANOMALY_PREFIX: &str = "prescale_anomaly_";

/// How a series named `name` is judged, or `None` when it is not watched.
pub fn kind_of(name: &str) -> Option<Kind> {
    if name.starts_with(ANOMALY_PREFIX)
        || ["_bucket", "_created", "_info"]
            .iter()
            .any(|s| name.ends_with(s))
    {
        return None;
    }
    if ["_total", "_count", "_sum"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Some(Kind::Counter)
    } else {
        Some(Kind::Gauge)
    }
}

/// One anomalous sample of a watched series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesAnomaly {
    /// The series.
    pub key: SeriesKey,
    /// When.
    pub ts: TimestampMs,
    /// What was judged: the value, or a counter's per-second rate.
    pub value: f64,
    /// The anomaly likelihood, at or above the watch's threshold.
    pub score: f64,
}

#[derive(Debug, Clone)]
struct Watched {
    detector: LikelihoodDetector,
    kind: Kind,
    /// The newest sample scored (or, for a counter's first, taken as the base).
    last: Option<Sample>,
}

/// Per-series anomaly detectors for everything stored.
///
/// Each series is scored in timestamp order: a sample no newer than the last one scored
/// (a retried write, a late out-of-order sample) is not scored again. At most
/// `max_series` series are watched; when a new one would pass that, series that have had
/// no sample for an hour (of sample time) are forgotten first, and if none has, the new
/// one is counted in [`SeriesWatch::unwatched`] and not watched.
#[derive(Debug)]
pub struct SeriesWatch {
    threshold: f64,
    max_series: usize,
    series: HashMap<SeriesKey, Watched>,
    newest: TimestampMs,
    swept_at: TimestampMs,
    unwatched: u64,
    scored: u64,
}

/// Samples a series may go without before a full watch forgets it.
const STALE_MS: i64 = 3_600_000;

impl SeriesWatch {
    /// A watch reporting samples scoring `threshold` or more (0.5: a surprise of one in
    /// 10^10), over at most `max_series` series.
    pub fn new(threshold: f64, max_series: usize) -> Self {
        Self {
            threshold,
            max_series,
            series: HashMap::new(),
            newest: TimestampMs::MIN,
            swept_at: TimestampMs::MIN,
            unwatched: 0,
            scored: 0,
        }
    }

    /// Series watched now.
    pub fn watched(&self) -> usize {
        self.series.len()
    }

    /// Times a new series found the watch full.
    pub fn unwatched(&self) -> u64 {
        self.unwatched
    }

    /// Samples scored so far.
    pub fn scored(&self) -> u64 {
        self.scored
    }

    /// Scores the samples of one series just stored; returns those at or above the
    /// threshold. Non-finite values and samples no newer than the last scored are
    /// skipped.
    pub fn observe(&mut self, key: &SeriesKey, samples: &[Sample]) -> Vec<SeriesAnomaly> {
        self.observe_after(key, samples, |_| Vec::new())
    }

    /// [`SeriesWatch::observe`], and when `key` is not watched yet (a new series, or
    /// every series after a restart), its detector first learns from `history(ts)`: the
    /// series' samples before `ts`, the first new sample's time, in time order. What it
    /// scores there is not reported (it was judged before), so a restart does not leave
    /// series unjudged for their first 100 samples.
    pub fn observe_after(
        &mut self,
        key: &SeriesKey,
        samples: &[Sample],
        history: impl FnOnce(TimestampMs) -> Vec<Sample>,
    ) -> Vec<SeriesAnomaly> {
        let Some(kind) = kind_of(&key.name) else {
            return Vec::new();
        };
        let mut fresh: Vec<Sample> = samples
            .iter()
            .filter(|s| s.value.is_finite())
            .copied()
            .collect();
        if fresh.is_empty() {
            return Vec::new();
        }
        fresh.sort_by_key(|s| s.ts);
        if let Some(last) = fresh.last() {
            self.newest = self.newest.max(last.ts);
        }
        if !self.series.contains_key(key) && !self.make_room() {
            self.unwatched += 1;
            return Vec::new();
        }
        let w = match self.series.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut w = Watched {
                    detector: LikelihoodDetector::new(),
                    kind,
                    last: None,
                };
                let first = fresh[0].ts;
                for s in history(first).into_iter().filter(|s| s.ts < first) {
                    w.judge(s);
                }
                e.insert(w)
            }
        };
        let mut found = Vec::new();
        for s in fresh {
            let Some((v, score)) = w.judge(s) else {
                continue;
            };
            self.scored += 1;
            if score >= self.threshold {
                found.push(SeriesAnomaly {
                    key: key.clone(),
                    ts: s.ts,
                    value: v,
                    score,
                });
            }
        }
        found
    }

    /// Whether one more series may be watched, forgetting stale ones if that is what it
    /// takes (at most one sweep per minute of sample time).
    fn make_room(&mut self) -> bool {
        if self.series.len() < self.max_series {
            return true;
        }
        if self.newest.saturating_sub(self.swept_at) >= 60_000 {
            self.swept_at = self.newest;
            let cutoff = self.newest.saturating_sub(STALE_MS);
            self.series
                .retain(|_, w| w.last.is_some_and(|l| l.ts >= cutoff));
        }
        self.series.len() < self.max_series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> SeriesKey {
        SeriesKey::metric(name).unwrap()
    }

    fn wobble(i: i64) -> f64 {
        // A deterministic, irregular wobble in [-1, 1].
        ((i as f64 * 0.7).sin() + (i as f64 * 1.3).cos()) / 2.0
    }

    #[test]
    fn a_gauge_spike_is_found_once_with_its_value() {
        let mut w = SeriesWatch::new(0.5, 10);
        let k = key("node_disk_read_time_seconds");
        let mut found = Vec::new();
        for i in 0..600i64 {
            let v = if i == 400 { 60.0 } else { 10.0 + wobble(i) };
            found.extend(w.observe(
                &k,
                &[Sample {
                    ts: i * 15_000,
                    value: v,
                }],
            ));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ts, 400 * 15_000);
        assert_eq!(found[0].value, 60.0);
        assert!(found[0].score >= 0.5);
        assert_eq!(w.scored(), 600);
    }

    #[test]
    fn a_counter_is_judged_by_its_rate_and_a_reset_is_not_an_anomaly() {
        let mut w = SeriesWatch::new(0.5, 10);
        let k = key("http_requests_total");
        let mut total = 0.0;
        let mut found = Vec::new();
        for i in 0..800i64 {
            // About 100 requests a second; the process restarts at 300 (the counter
            // starts again from zero) and a burst of 10 times the rate comes at 600.
            let rate = if i == 600 {
                1000.0
            } else {
                100.0 + 5.0 * wobble(i)
            };
            total = if i == 300 {
                rate * 15.0
            } else {
                total + rate * 15.0
            };
            found.extend(w.observe(
                &k,
                &[Sample {
                    ts: i * 15_000,
                    value: total,
                }],
            ));
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ts, 600 * 15_000);
        assert!((found[0].value - 1000.0).abs() < 1e-6, "{}", found[0].value);
        // The first sample only sets the base.
        assert_eq!(w.scored(), 799);
    }

    #[test]
    fn retried_late_and_non_finite_samples_are_not_scored_again() {
        let mut w = SeriesWatch::new(0.5, 10);
        let k = key("g");
        let batch: Vec<Sample> = (0..50)
            .rev()
            .map(|i| Sample {
                ts: i * 1000,
                value: i as f64,
            })
            .collect();
        w.observe(&k, &batch);
        assert_eq!(
            w.scored(),
            50,
            "a batch out of order is scored in time order"
        );
        w.observe(&k, &batch);
        w.observe(
            &k,
            &[
                Sample {
                    ts: 10_000,
                    value: 3.0,
                },
                Sample {
                    ts: 60_000,
                    value: f64::NAN,
                },
            ],
        );
        assert_eq!(w.scored(), 50);
    }

    #[test]
    fn a_series_new_to_the_watch_learns_from_its_history_first() {
        let k = key("pg_query_seconds");
        let history: Vec<Sample> = (0..600i64)
            .map(|i| Sample {
                ts: i * 15_000,
                value: if i == 150 { 60.0 } else { 10.0 + wobble(i) },
            })
            .collect();
        // Restarted at step 600: the spike at 150 was judged before and is not reported
        // again, and a spike 20 steps on is found at once, where a watch without the
        // history is still learning.
        let spike = Sample {
            ts: 620 * 15_000,
            value: 60.0,
        };
        let after: Vec<Sample> = (600..630i64)
            .map(|i| {
                if i == 620 {
                    spike
                } else {
                    Sample {
                        ts: i * 15_000,
                        value: 10.0 + wobble(i),
                    }
                }
            })
            .collect();
        let mut primed = SeriesWatch::new(0.5, 10);
        let mut asked = None;
        let found = primed.observe_after(&k, &after, |ts| {
            asked = Some(ts);
            // Everything stored, the new samples too: only what came before counts.
            history.iter().chain(&after).copied().collect()
        });
        assert_eq!(asked, Some(600 * 15_000));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ts, spike.ts);
        assert_eq!(primed.scored(), 30, "history is learnt, not counted");
        // Asked only once: the series is watched now.
        let more = [Sample {
            ts: 630 * 15_000,
            value: 10.0,
        }];
        primed.observe_after(&k, &more, |_| panic!("history asked again"));
        let mut cold = SeriesWatch::new(0.5, 10);
        assert!(cold.observe(&k, &after).is_empty());
    }

    #[test]
    fn what_is_not_watched_and_what_a_full_watch_does() {
        assert_eq!(kind_of("x_bucket"), None);
        assert_eq!(kind_of("process_start_time_seconds"), Some(Kind::Gauge));
        assert_eq!(
            kind_of("http_request_duration_seconds_sum"),
            Some(Kind::Counter)
        );
        assert_eq!(kind_of("prescale_anomaly_score"), None);
        let mut w = SeriesWatch::new(0.5, 2);
        let s = |ts| [Sample { ts, value: 1.0 }];
        w.observe(&key("a"), &s(0));
        w.observe(&key("b"), &s(0));
        w.observe(&key("c"), &s(1000));
        assert_eq!((w.watched(), w.unwatched()), (2, 1), "full, none stale");
        // Two hours on, only `b` is still sampled: `a` is forgotten to make room.
        w.observe(&key("b"), &s(7_200_000));
        w.observe(&key("c"), &s(7_200_000));
        assert_eq!((w.watched(), w.unwatched()), (2, 1));
        assert!(w.observe(&key("x_bucket"), &s(0)).is_empty());
        assert_eq!(w.watched(), 2);
    }
}
