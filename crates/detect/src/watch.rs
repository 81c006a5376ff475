//! Anomaly detection on every stored series: one [`LikelihoodDetector`] per series, fed
//! each new sample once it is stored, in bounded memory.
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
            (Kind::Counter, Some(l)) => Some(rate(l, s)),
        };
        self.last = Some(s);
        let v = judged?;
        self.last_judged = Some(v);
        Some((v, self.detector.score_at(s.ts, v)))
    }

    /// Takes `s` as the latest sample without judging or learning from it (a planned
    /// event's: see [`SeriesWatch::observe_planned`]).
    fn pass(&mut self, s: Sample) {
        if s.value.is_finite() && self.last.is_none_or(|l| s.ts > l.ts) {
            self.last = Some(s);
        }
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

/// How [`SeriesWatch::judge_stored`] found a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Below the threshold.
    Usual,
    /// At or above it: reported.
    Anomaly,
    /// At or above it, but the series did as much a day or a week before at about that
    /// time: not reported.
    Expected,
}

/// One sample as [`SeriesWatch::judge_stored`] judged it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judged {
    /// When.
    pub ts: TimestampMs,
    /// What was judged: the value, or a counter's per-second rate.
    pub value: f64,
    /// The anomaly likelihood.
    pub score: f64,
    /// What it made of it.
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
struct Watched {
    detector: LikelihoodDetector,
    kind: Kind,
    /// The newest sample scored (or, for a counter's first, taken as the base).
    last: Option<Sample>,
    /// What was judged of it (its value, or the counter's rate up to it).
    last_judged: Option<f64>,
}

/// Per-series anomaly detectors for everything stored.
///
/// Each series is scored in timestamp order: a sample no newer than the last one scored
/// (a retried write, a late out-of-order sample) is not scored again. At most
/// `max_series` series are watched; when a new one would pass that, series that have had
/// no sample for an hour (of sample time) are forgotten first, and if none has, the new
/// one is counted in [`SeriesWatch::unwatched`] and not watched. Whether full or not, a
/// series without a sample for a day is forgotten when a new one comes (at most every
/// ten minutes of sample time), so a pod long gone holds no memory; if it comes back it
/// learns from its stored history again.
#[derive(Debug)]
pub struct SeriesWatch {
    threshold: f64,
    max_series: usize,
    /// Boxed: a detector is a few hundred bytes, and a table sized for growth holds up
    /// to twice as many slots as series (and both tables while it grows).
    series: HashMap<SeriesKey, Box<Watched>>,
    newest: TimestampMs,
    swept_at: TimestampMs,
    idle_swept_at: TimestampMs,
    unwatched: u64,
    scored: u64,
    expected: u64,
    learn: bool,
}

/// Samples a series may go without before a full watch forgets it...
const STALE_MS: i64 = 3_600_000;
/// ... and before any watch does, looked for every [`IDLE_SWEEP_MS`] as new series come.
const IDLE_MS: i64 = 86_400_000;
const IDLE_SWEEP_MS: i64 = 600_000;
/// How far back a series new to the watch is read...
pub const HISTORY_MS: i64 = 6 * 3_600_000;
/// ... and how many of its last samples there its detector learns from: enough for its
/// tails to be fitted again (they need about 1,100), so a restart judges as before it.
pub const HISTORY_SAMPLES: usize = 1200;
/// A sparser series (a minute's or five minutes' samples) is read further back, as far
/// as its samples in those 6 hours say holds the rest, but no further than this.
pub const SPARSE_HISTORY_MS: i64 = 7 * 86_400_000;
/// The seasons an anomaly is compared with: the same time a day and a week before...
const SEASONS_MS: [i64; 2] = [86_400_000, 7 * 86_400_000];
/// ... give or take this much (a nightly job starts at about the same time).
const SEASON_SLACK_MS: i64 = 15 * 60_000;

impl SeriesWatch {
    /// A watch reporting samples scoring `threshold` or more (0.5: a surprise a series'
    /// tail expects less than once in ten days), over at most `max_series` series.
    pub fn new(threshold: f64, max_series: usize) -> Self {
        Self {
            threshold,
            max_series,
            series: HashMap::new(),
            newest: TimestampMs::MIN,
            swept_at: TimestampMs::MIN,
            idle_swept_at: TimestampMs::MIN,
            unwatched: 0,
            scored: 0,
            expected: 0,
            learn: true,
        }
    }

    /// The same watch, but a series new to it does not first learn from its stored
    /// history (where reading it costs a request per series, as from a remote store).
    pub fn without_history(mut self) -> Self {
        self.learn = false;
        self
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

    /// Samples that scored as anomalies but were not reported: the series did as much
    /// at about the same time a day or a week before.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Scores the samples of one series just stored; returns those at or above the
    /// threshold. Non-finite values and samples no newer than the last scored are
    /// skipped. Without the series' stored history: see [`SeriesWatch::observe_stored`].
    pub fn observe(&mut self, key: &SeriesKey, samples: &[Sample]) -> Vec<SeriesAnomaly> {
        self.observe_stored(key, samples, |_, _| Vec::new())
    }

    /// [`SeriesWatch::observe`], with `stored(start, end)` giving the series' stored
    /// samples with `start <= ts <= end` in time order, for two things:
    ///
    /// - when `key` is not watched yet (a new series, or every series after a restart),
    ///   its detector first learns from its last [`HISTORY_SAMPLES`] in the
    ///   [`HISTORY_MS`] before the first new sample (further back, up to
    ///   [`SPARSE_HISTORY_MS`], for a sparse series), reporting nothing there (it was
    ///   judged before), so a restart does not leave series unjudged for 270 samples;
    /// - a sample that scores as an anomaly is not reported when the series did as much
    ///   a day or a week before, within 15 minutes of the same time: some value judged
    ///   then lies nearer this one than halfway back to the value before it, or than
    ///   three of its usual changes from one sample to the next (a nightly job, a daily
    ///   peak; [`SeriesWatch::expected`] counts them). Only anomalies are looked up, so
    ///   this costs little.
    pub fn observe_stored(
        &mut self,
        key: &SeriesKey,
        samples: &[Sample],
        stored: impl FnMut(TimestampMs, TimestampMs) -> Vec<Sample>,
    ) -> Vec<SeriesAnomaly> {
        self.observe_planned(key, samples, stored, |_| false)
    }

    /// [`SeriesWatch::observe_stored`], with `planned(ts)` saying whether a sample falls
    /// in a planned event of a workload that reads the series: such a sample was
    /// announced, so it is neither judged nor learnt from (a launch at 2.5 times the
    /// usual would otherwise teach the series that such a rise is nothing unusual, and
    /// an unannounced one hours later would go unreported).
    pub fn observe_planned(
        &mut self,
        key: &SeriesKey,
        samples: &[Sample],
        stored: impl FnMut(TimestampMs, TimestampMs) -> Vec<Sample>,
        planned: impl Fn(TimestampMs) -> bool,
    ) -> Vec<SeriesAnomaly> {
        self.judge_planned(key, samples, stored, planned)
            .into_iter()
            .filter(|j| j.verdict == Verdict::Anomaly)
            .map(|j| SeriesAnomaly {
                key: key.clone(),
                ts: j.ts,
                value: j.value,
                score: j.score,
            })
            .collect()
    }

    /// [`SeriesWatch::observe_stored`], saying how each sample judged was found (what
    /// `prescale detect --as-daemon` writes).
    pub fn judge_stored(
        &mut self,
        key: &SeriesKey,
        samples: &[Sample],
        stored: impl FnMut(TimestampMs, TimestampMs) -> Vec<Sample>,
    ) -> Vec<Judged> {
        self.judge_planned(key, samples, stored, |_| false)
    }

    /// [`SeriesWatch::judge_stored`] with planned events (see
    /// [`SeriesWatch::observe_planned`]).
    pub fn judge_planned(
        &mut self,
        key: &SeriesKey,
        samples: &[Sample],
        mut stored: impl FnMut(TimestampMs, TimestampMs) -> Vec<Sample>,
        planned: impl Fn(TimestampMs) -> bool,
    ) -> Vec<Judged> {
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
        if !self.series.contains_key(key) {
            if !self.make_room() {
                self.unwatched += 1;
                return Vec::new();
            }
            let mut w = Watched {
                detector: LikelihoodDetector::new(),
                kind,
                last: None,
                last_judged: None,
            };
            let first = fresh[0].ts;
            let mut history: Vec<Sample> = if self.learn {
                stored(first.saturating_sub(HISTORY_MS), first.saturating_sub(1))
            } else {
                Vec::new()
            };
            history.retain(|s| s.ts < first);
            if self.learn && !history.is_empty() && history.len() < HISTORY_SAMPLES {
                // A sparse series: the 6 hours before hold too few to judge by, so reach
                // back as far as its rate says the rest lie (a restart would otherwise
                // leave a five-minute series unjudged for its next 270 samples).
                let back = (HISTORY_MS as f64 * HISTORY_SAMPLES as f64 / history.len() as f64)
                    .min(SPARSE_HISTORY_MS as f64) as i64;
                if back > HISTORY_MS {
                    let mut older = stored(
                        first.saturating_sub(back),
                        first.saturating_sub(HISTORY_MS + 1),
                    );
                    older.retain(|s| s.ts < first.saturating_sub(HISTORY_MS));
                    older.append(&mut history);
                    history = older;
                }
            }
            let old = history.len().saturating_sub(HISTORY_SAMPLES);
            history.drain(..old);
            for s in history {
                if planned(s.ts) {
                    w.pass(s);
                } else {
                    w.judge(s);
                }
            }
            // The key is copied once, when the series is first watched, not per write.
            self.series.insert(key.clone(), Box::new(w));
        }
        let w = self.series.get_mut(key).expect("watched above");
        let mut judged = Vec::new();
        for s in fresh {
            if planned(s.ts) {
                w.pass(s);
                continue;
            }
            let before = w.last_judged;
            let Some((v, score)) = w.judge(s) else {
                continue;
            };
            self.scored += 1;
            let mut verdict = Verdict::Usual;
            if score >= self.threshold {
                let near =
                    before.map(|b| (0.5 * (v - b).abs()).max(3.0 * w.detector.typical_change()));
                if near.is_some_and(|near| seen_before(kind, s.ts, v, near, &mut stored)) {
                    // Expected: nor does it damp what comes next.
                    w.detector.unreport();
                    self.expected += 1;
                    verdict = Verdict::Expected;
                } else {
                    verdict = Verdict::Anomaly;
                }
            }
            judged.push(Judged {
                ts: s.ts,
                value: v,
                score,
                verdict,
            });
        }
        judged
    }

    /// Changes the threshold and the most series watched (a configuration reload):
    /// what each series learnt is kept; past a lowered limit, no new series is taken
    /// until enough fall idle.
    pub fn set_limits(&mut self, threshold: f64, max_series: usize) {
        self.threshold = threshold;
        self.max_series = max_series;
    }

    /// Whether one more series may be watched, forgetting stale ones if that is what it
    /// takes (at most one sweep per minute of sample time).
    fn make_room(&mut self) -> bool {
        if self.newest.saturating_sub(self.idle_swept_at) >= IDLE_SWEEP_MS {
            self.idle_swept_at = self.newest;
            self.forget_before(self.newest.saturating_sub(IDLE_MS));
        }
        if self.series.len() < self.max_series {
            return true;
        }
        if self.newest.saturating_sub(self.swept_at) >= 60_000 {
            self.swept_at = self.newest;
            self.forget_before(self.newest.saturating_sub(STALE_MS));
        }
        self.series.len() < self.max_series
    }

    /// Forgets the series whose last sample is older than `cutoff`.
    fn forget_before(&mut self, cutoff: TimestampMs) {
        self.series
            .retain(|_, w| w.last.is_some_and(|l| l.ts >= cutoff));
    }
}

/// A counter's per-second rise from `prev` to `s` (a later sample), a reset counting
/// from zero as Prometheus' `rate()` does.
fn rate(prev: Sample, s: Sample) -> f64 {
    s.counter_rise(prev.value) * 1000.0 / (s.ts - prev.ts) as f64
}

/// Whether a series judged `v` at `ts` did as much a season before: some value judged
/// within [`SEASON_SLACK_MS`] of `ts` a day or a week earlier lies within `near` of it.
fn seen_before(
    kind: Kind,
    ts: TimestampMs,
    v: f64,
    near: f64,
    stored: &mut impl FnMut(TimestampMs, TimestampMs) -> Vec<Sample>,
) -> bool {
    SEASONS_MS.iter().any(|season| {
        let then = stored(ts - season - SEASON_SLACK_MS, ts - season + SEASON_SLACK_MS);
        judged_values(kind, &then)
            .iter()
            .any(|u| (v - u).abs() <= near)
    })
}

/// What a series of this kind is judged by over `samples` (in time order): a gauge's
/// values, a counter's per-second rates from each sample to the next.
pub fn judged_values(kind: Kind, samples: &[Sample]) -> Vec<f64> {
    match kind {
        Kind::Gauge => samples.iter().map(|s| s.value).collect(),
        Kind::Counter => samples
            .windows(2)
            .filter(|p| p[1].ts > p[0].ts)
            .map(|p| rate(p[0], p[1]))
            .collect(),
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
        let found = primed.observe_stored(&k, &after, |start, end| {
            asked.get_or_insert((start, end));
            // Everything stored up to `end`, the new samples too: only what came before
            // the first new one counts.
            history
                .iter()
                .chain(&after)
                .filter(|s| (start..=end).contains(&s.ts))
                .copied()
                .collect()
        });
        assert_eq!(
            asked,
            Some((600 * 15_000 - HISTORY_MS, 600 * 15_000 - 1)),
            "the last 6 hours before the first new sample"
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ts, spike.ts);
        assert_eq!(primed.scored(), 30, "history is learnt, not counted");
        // Asked only once: the series is watched now.
        let more = [Sample {
            ts: 630 * 15_000,
            value: 10.0,
        }];
        primed.observe_stored(&k, &more, |_, _| panic!("history asked again"));
        let mut cold = SeriesWatch::new(0.5, 10);
        assert!(cold.observe(&k, &after).is_empty());
        let mut told_not_to = SeriesWatch::new(0.5, 10).without_history();
        let found = told_not_to.observe_stored(&k, &after, |a, b| {
            assert!(
                b - a < HISTORY_MS,
                "only a season's look back, not the history"
            );
            Vec::new()
        });
        assert!(found.is_empty());
    }

    #[test]
    fn a_sparse_series_is_read_back_far_enough_to_be_judged_after_a_restart() {
        // Five-minute samples for four days, then a restart: the 6 hours before hold 72,
        // too few to be scored (270), so the watch reads back as far as 1,200 lie.
        let k = key("rds_cpu_percent");
        let step = 300_000i64;
        let history: Vec<Sample> = (0..1152i64)
            .map(|i| Sample {
                ts: i * step,
                value: 30.0 + 3.0 * wobble(i),
            })
            .collect();
        let after: Vec<Sample> = (1152..1160i64)
            .map(|i| Sample {
                ts: i * step,
                value: if i == 1155 {
                    95.0
                } else {
                    30.0 + 3.0 * wobble(i)
                },
            })
            .collect();
        let mut asked = Vec::new();
        let mut w = SeriesWatch::new(0.5, 10);
        let found = w.observe_stored(&k, &after, |start, end| {
            asked.push((start, end));
            history
                .iter()
                .filter(|s| (start..=end).contains(&s.ts))
                .copied()
                .collect()
        });
        let first = 1152 * step;
        // 6 hours, then 6 x 1,200 / 72 = 100 hours back.
        assert_eq!(asked[0], (first - HISTORY_MS, first - 1));
        assert_eq!(asked[1], (first - 100 * 3_600_000, first - HISTORY_MS - 1));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].ts, 1155 * step);
        // A series as sparse as one a day is read back no more than a week.
        let mut w = SeriesWatch::new(0.5, 10);
        let mut reach = None;
        w.observe_stored(
            &k,
            &[Sample {
                ts: 100 * 86_400_000,
                value: 1.0,
            }],
            |start, end| {
                reach.get_or_insert(0);
                if end - start >= HISTORY_MS {
                    reach = Some(100 * 86_400_000 - start);
                }
                vec![Sample {
                    ts: end,
                    value: 1.0,
                }]
            },
        );
        assert_eq!(reach, Some(SPARSE_HISTORY_MS));
    }

    #[test]
    fn what_the_series_did_a_day_before_at_that_time_is_no_anomaly() {
        // Five-minute steps for eight days: about 3, a daily job holding about 36 from
        // 23:00 for an hour, and a spike to 150 at 14:00 on the third and the seventh
        // day. The job's start is surprising the first day only; the spikes, four times
        // anything before, are reported, the second when the series' tails are fitted
        // (with the job's jumps in them).
        let step = 300_000i64;
        let value = |i: i64| {
            let minute = (i * 5) % 1440;
            if i == 2 * 288 + 168 || i == 6 * 288 + 168 {
                150.0
            } else if minute >= 1380 {
                36.0 + wobble(i)
            } else {
                3.0 + 0.3 * wobble(i)
            }
        };
        let k = key("batch_cpu_cores");
        let mut w = SeriesWatch::new(0.5, 10);
        let mut stored: Vec<Sample> = Vec::new();
        let mut found = Vec::new();
        for i in 0..8 * 288i64 {
            let s = Sample {
                ts: i * step,
                value: value(i),
            };
            // Stored first, then shown to the watch, as the server does.
            stored.push(s);
            found.extend(w.observe_stored(&k, &[s], |a, b| {
                stored
                    .iter()
                    .filter(|s| (a..=b).contains(&s.ts))
                    .copied()
                    .collect()
            }));
        }
        let days: Vec<(i64, i64)> = found
            .iter()
            .map(|a| (a.ts / 86_400_000, a.ts % 86_400_000 / 60_000))
            .collect();
        // The first day's job, and the spike: a job already seen damps nothing after it.
        assert_eq!(days, [(0, 23 * 60), (2, 14 * 60), (6, 14 * 60)]);
        assert!(w.expected() >= 1, "a later day's job: {}", w.expected());
        // The same without the store: a later day's job is an anomaly again.
        let mut blind = SeriesWatch::new(0.5, 10);
        let nights = (0..4 * 288i64)
            .flat_map(|i| {
                blind.observe(
                    &k,
                    &[Sample {
                        ts: i * step,
                        value: value(i),
                    }],
                )
            })
            .filter(|a| a.ts % 86_400_000 / 60_000 == 1380)
            .count();
        assert!(nights > 1, "{nights}");
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
        // A watch with room forgets only what has been quiet for a day, when a new
        // series comes: `b` was sampled 2 hours in, `c` goes on.
        let mut w = SeriesWatch::new(0.5, 100);
        for k in ["a", "b", "c"] {
            w.observe(&key(k), &s(0));
        }
        w.observe(&key("b"), &s(7_200_000));
        w.observe(&key("c"), &s(86_400_000 + 3_600_000));
        assert_eq!(w.watched(), 3, "no new series, no sweep");
        w.observe(&key("d"), &s(86_400_000 + 3_600_000));
        assert_eq!(w.watched(), 3, "a is forgotten");
        assert!(!w.series.contains_key(&key("a")));
        // An hour on, b has been quiet for a day, and goes as e comes.
        w.observe(&key("e"), &s(86_400_000 + 7_200_000 + 60_000));
        assert_eq!(w.watched(), 3, "b is forgotten; e joins");
        assert!(!w.series.contains_key(&key("b")));
        assert_eq!(w.unwatched(), 0);
    }
}
