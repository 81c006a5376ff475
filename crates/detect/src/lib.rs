//! Streaming anomaly detectors that look at every sample once, in constant memory.
//!
//! The first detector is an exponentially weighted z-score: it keeps an EWMA of the
//! value and of its squared deviation, and flags a sample whose deviation from the
//! running mean exceeds `threshold` running standard deviations. Anomalous samples are
//! folded in with a reduced weight so a single spike does not inflate the variance and
//! hide the next one, while a lasting level shift is still absorbed. Richer detectors
//! (seasonal, change points, NAB-scored) come with the detection issue.

use prescale_core::{Sample, TimestampMs};
use serde::{Deserialize, Serialize};

/// A sample judged anomalous, with how far off it was.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// When.
    pub ts: TimestampMs,
    /// The observed value.
    pub value: f64,
    /// The running mean before this sample.
    pub expected: f64,
    /// Deviation in running standard deviations (signed).
    pub score: f64,
}

/// Streaming EWMA z-score detector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EwmaDetector {
    alpha: f64,
    threshold: f64,
    warmup: u32,
    seen: u32,
    mean: f64,
    var: f64,
}

impl EwmaDetector {
    /// `alpha` is the EWMA weight of a new sample (0..1, e.g. 0.05), `threshold` the
    /// z-score that counts as anomalous (e.g. 4), `warmup` the samples to see before
    /// flagging anything.
    pub fn new(alpha: f64, threshold: f64, warmup: u32) -> Self {
        assert!(alpha > 0.0 && alpha < 1.0, "alpha must be in (0, 1)");
        assert!(threshold > 0.0, "threshold must be positive");
        Self {
            alpha,
            threshold,
            warmup,
            seen: 0,
            mean: 0.0,
            var: 0.0,
        }
    }

    /// Feeds one sample; returns the anomaly if it is one.
    pub fn observe(&mut self, s: Sample) -> Option<Anomaly> {
        if !s.value.is_finite() {
            return None;
        }
        if self.seen == 0 {
            self.mean = s.value;
            self.var = 0.0;
            self.seen = 1;
            return None;
        }
        let diff = s.value - self.mean;
        // A floor on the deviation keeps a perfectly flat history from flagging noise
        // at the last bit of precision.
        let sd = self.var.sqrt().max(1e-9 * self.mean.abs().max(1.0));
        let score = diff / sd;
        let anomalous = self.seen >= self.warmup && score.abs() > self.threshold;
        let a = if anomalous {
            self.alpha * 0.1
        } else {
            self.alpha
        };
        let expected = self.mean;
        self.mean += a * diff;
        self.var = (1.0 - a) * (self.var + a * diff * diff);
        self.seen = self.seen.saturating_add(1);
        anomalous.then_some(Anomaly {
            ts: s.ts,
            value: s.value,
            expected,
            score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: u64) -> f64 {
        // Deterministic pseudo-noise in [-0.5, 0.5).
        let x = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    #[test]
    fn flags_a_spike_and_nothing_in_steady_noise() {
        let mut d = EwmaDetector::new(0.05, 5.0, 50);
        let mut flagged = Vec::new();
        for i in 0..2000u64 {
            let mut v = 10.0 + noise(i);
            if i == 1500 {
                v += 8.0;
            }
            if let Some(a) = d.observe(Sample {
                ts: i as i64,
                value: v,
            }) {
                flagged.push(a);
            }
        }
        assert_eq!(flagged.len(), 1, "{flagged:?}");
        assert_eq!(flagged[0].ts, 1500);
        assert!(flagged[0].score > 5.0);
        assert!((flagged[0].expected - 10.0).abs() < 0.2);
    }

    #[test]
    fn a_lasting_level_shift_is_absorbed() {
        let mut d = EwmaDetector::new(0.05, 5.0, 50);
        let mut flagged = 0;
        for i in 0..3000u64 {
            let base = if i < 1000 { 10.0 } else { 20.0 };
            if d.observe(Sample {
                ts: i as i64,
                value: base + noise(i),
            })
            .is_some()
            {
                flagged += 1;
            }
        }
        assert!(flagged >= 1, "the shift itself is anomalous");
        // After absorbing the new level it stops flagging.
        for i in 3000..3500u64 {
            assert!(d
                .observe(Sample {
                    ts: i as i64,
                    value: 20.0 + noise(i)
                })
                .is_none());
        }
    }

    #[test]
    fn warmup_suppresses_early_flags() {
        let mut d = EwmaDetector::new(0.1, 3.0, 100);
        for i in 0..99 {
            assert!(d
                .observe(Sample {
                    ts: i,
                    value: (i % 7) as f64 * 100.0
                })
                .is_none());
        }
    }
}
