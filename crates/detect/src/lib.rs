//! Streaming anomaly detectors that look at every sample once, in constant memory.
//!
//! The first detector is an exponentially weighted z-score: it keeps an EWMA of the
//! value and of its squared deviation, and flags a sample whose deviation from the
//! running mean exceeds `threshold` running standard deviations. Anomalous samples are
//! folded in with a reduced weight so a single spike does not inflate the variance and
//! hide the next one, while a lasting level shift is still absorbed. The engine uses it
//! to retrain early and hold scale-downs.
//!
//! [`LikelihoodDetector`] scores every sample in [0, 1) for `prescale detect`: how
//! unlikely its surprise is given the series' own history of surprises (the "anomaly
//! likelihood" idea of Numenta's detectors, on the simplest predictor), so one threshold
//! means the same on a quiet series and a noisy one. It is measured on the Numenta
//! Anomaly Benchmark by `bench/nab.sh`. [`SeriesWatch`] runs one per stored series, on
//! every sample as it is stored.

pub mod watch;

pub use watch::{SeriesAnomaly, SeriesWatch};

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

/// The upper tail of the standard normal, P(Z > z), with a relative error below 1.2e-7
/// everywhere (the Chebyshev fit of erfc in Numerical Recipes, 6.2), so scores keep
/// their order far into the tail.
fn normal_tail(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * x);
    let p = -x * x - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * p.exp();
    if z >= 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    }
}

/// Streaming anomaly likelihood. Two surprises are measured at each sample: its change
/// from the previous sample in units of the recent mean absolute change (spikes, jumps),
/// and how far the recent level (a fast mean) stands from the long-run level in long-run
/// standard deviations (shifts, drifts). Each is judged by how unlikely it is under its
/// own history (a normal tail), and the rarer counts, so one threshold means the same on
/// a quiet series and a noisy one.
/// After a report (a score of 0.5 or more) scores are halved for 400 samples, so one
/// event is not reported over and over. Constant memory and time per sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LikelihoodDetector {
    seen: u64,
    warmup: u64,
    prev: f64,
    mac: f64,
    r_mean: f64,
    r_var: f64,
    quiet_until: u64,
    /// What `quiet_until` was before the last score, for [`LikelihoodDetector::unreport`].
    #[serde(default)]
    quiet_before: u64,
    v_mean: f64,
    v_var: f64,
    s_mean: f64,
    r2_mean: f64,
    r2_var: f64,
}

impl Default for LikelihoodDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl LikelihoodDetector {
    /// Weight of a new change in the mean absolute change (about 50 samples).
    const SCALE: f64 = 0.02;
    /// Samples whose changes only set the first scale (no surprise is measured yet).
    const SCALE_WARMUP: u64 = 20;
    /// Weight of a new surprise in the long-run surprise statistics (about 200 samples).
    const LONG: f64 = 0.005;
    /// Weight of a new value in the slow mean and spread of the level (about 1,000
    /// samples)...
    const LEVEL_SLOW: f64 = 0.001;
    /// ... and in the fast mean compared with it (about 5 samples).
    const LEVEL_FAST: f64 = 0.2;
    /// A score this high (a surprise of one in 10^10) is a report...
    const REPORT: f64 = 0.5;
    /// ... after which scores are multiplied by this ...
    const QUIET_FACTOR: f64 = 0.5;
    /// ... for this many samples, so one event is not reported again and again.
    const QUIET_SAMPLES: u64 = 400;

    /// A detector that scores 0 for its first 100 samples while it learns.
    pub fn new() -> Self {
        Self {
            seen: 0,
            warmup: 100,
            prev: 0.0,
            mac: 0.0,
            r_mean: 0.0,
            r_var: 0.0,
            quiet_until: 0,
            quiet_before: 0,
            v_mean: 0.0,
            v_var: 0.0,
            s_mean: 0.0,
            r2_mean: 0.0,
            r2_var: 0.0,
        }
    }

    /// Scores one value in [0, 1): `L / (L + 10)` where `L` is minus the decimal log of
    /// the chance of a surprise this large (0.5: one in 10^10), halved for 400 samples
    /// after a score of 0.5; a non-finite value scores 0 and is not learnt.
    pub fn score(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        self.seen += 1;
        // The level: a fast mean of the values against their slow mean and spread.
        {
            let n = self.seen as f64;
            let slow = (1.0 / n).max(Self::LEVEL_SLOW);
            let fast = (1.0 / n).max(Self::LEVEL_FAST);
            let d = x - self.v_mean;
            self.v_mean += slow * d;
            self.v_var = (1.0 - slow) * (self.v_var + slow * d * d);
            self.s_mean += fast * (x - self.s_mean);
        }
        if self.seen == 1 {
            self.prev = x;
            return 0.0;
        }
        let change = (x - self.prev).abs();
        self.prev = x;
        if self.seen <= Self::SCALE_WARMUP {
            // A plain mean of the first changes: the scale surprises are measured in.
            self.mac += (change - self.mac) / (self.seen - 1) as f64;
            return 0.0;
        }
        let floor = 1e-6 * x.abs().max(1e-9);
        let raw = (change / self.mac.max(floor)).min(1e3);
        self.mac += Self::SCALE * (change - self.mac);
        let z = (raw - self.r_mean) / self.r_var.sqrt().max(1e-6);
        let d = raw - self.r_mean;
        // Plain mean and variance of the first surprises (Welford), then exponentially
        // weighted ones, so the start does not weigh in for hundreds of samples.
        let n = (self.seen - Self::SCALE_WARMUP) as f64;
        let w = (1.0 / n).max(Self::LONG);
        self.r_mean += w * d;
        self.r_var = (1.0 - w) * (self.r_var + w * d * d);
        // The second surprise: how far the recent level stands from the long-run one, in
        // long-run spreads, judged against its own history as the first is.
        let level = ((self.s_mean - self.v_mean).abs() / self.v_var.sqrt().max(floor)).min(1e3);
        let z2 = (level - self.r2_mean) / self.r2_var.sqrt().max(1e-6);
        let d2 = level - self.r2_mean;
        self.r2_mean += w * d2;
        self.r2_var = (1.0 - w) * (self.r2_var + w * d2 * d2);
        if self.seen <= self.warmup {
            return 0.0;
        }
        // The rarer of the two surprises is the sample's.
        let l = -normal_tail(z.max(z2)).max(1e-300).log10();
        let mut score = l / (l + 10.0);
        // One event, one report: after a score of REPORT, later ones are damped for a while.
        if self.seen < self.quiet_until {
            score *= Self::QUIET_FACTOR;
        }
        self.quiet_before = self.quiet_until;
        if score >= Self::REPORT {
            self.quiet_until = self.seen + Self::QUIET_SAMPLES;
        }
        score
    }

    /// The recent mean absolute change from one sample to the next: the scale its
    /// spikes and jumps are measured in.
    pub fn typical_change(&self) -> f64 {
        self.mac
    }

    /// Takes back the quiet period the last score started: it was high, but the caller
    /// knows it for an expected event (the series did as much a day before), which
    /// should not damp the scores of what comes next.
    pub fn unreport(&mut self) {
        self.quiet_until = self.quiet_before;
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
    fn likelihood_scores_a_jump_high_and_steady_noise_low_at_any_scale() {
        for scale in [1e-3, 1.0, 1e6] {
            let mut d = LikelihoodDetector::new();
            let mut scores = Vec::new();
            for i in 0..2000u64 {
                let mut v = (10.0 + noise(i)) * scale;
                if i >= 1500 {
                    v += 8.0 * scale;
                }
                scores.push(d.score(v));
            }
            assert!(scores[..100].iter().all(|&s| s == 0.0), "warm-up");
            let quiet = scores[100..1500].iter().cloned().fold(0.0, f64::max);
            // The jump is beyond one in 10^20.
            assert!(scores[1500] > 2.0 / 3.0, "the jump: {}", scores[1500]);
            // 1,400 steady samples: the rarest is about one in 1,400 (0.24), nothing near
            // one in 20,000 (0.3), let alone a report (0.5).
            assert!(quiet < 0.3, "steady noise peaks at {quiet}");
            assert!(scores.iter().all(|s| (0.0..1.0).contains(s)));
            // After the jump the new level is ordinary again.
            assert!(scores[1600..].iter().all(|&s| s < 0.1));
        }
        let mut d = LikelihoodDetector::new();
        assert_eq!(d.score(f64::NAN), 0.0);
    }

    #[test]
    fn a_second_jump_soon_after_a_report_is_damped_and_one_later_is_not() {
        let run = |second: u64| {
            let mut d = LikelihoodDetector::new();
            let mut scores = Vec::new();
            for i in 0..2000u64 {
                let mut v = 10.0 + noise(i);
                if i >= 500 {
                    v += 8.0;
                }
                if i >= second {
                    v += 8.0;
                }
                scores.push(d.score(v));
            }
            (scores[500], scores[second as usize])
        };
        let (first, soon) = run(700);
        let (_, late) = run(1500);
        assert!(first >= 0.5, "{first}");
        assert!(
            soon < 0.5 && soon > 0.25,
            "within 400 samples: halved, {soon}"
        );
        assert!(late >= 0.5, "after 1000 samples: a report again, {late}");
    }

    #[test]
    fn a_level_shift_too_gradual_for_any_one_change_is_caught_by_the_level() {
        // Noise of width 1 around 10, then a ramp to 13 over 30 samples: no single change
        // stands out, the new level does.
        let mut d = LikelihoodDetector::new();
        let mut scores = Vec::new();
        for i in 0..2000u64 {
            let ramp = ((i as f64 - 1500.0) / 30.0).clamp(0.0, 1.0) * 3.0;
            scores.push(d.score(10.0 + noise(i) + ramp));
        }
        let before = scores[100..1500].iter().cloned().fold(0.0, f64::max);
        let during = scores[1500..1560].iter().cloned().fold(0.0, f64::max);
        assert!(before < 0.3, "{before}");
        assert!(during >= 0.5, "a report during the ramp: {during}");
    }

    #[test]
    fn the_normal_tail_is_right_far_out() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(1.959_964) - 0.025).abs() < 1e-6);
        assert!((normal_tail(-1.959_964) - 0.975).abs() < 1e-6);
        // P(Z > 6) = 9.866e-10: relative accuracy holds in the tail.
        assert!((normal_tail(6.0) / 9.865_876e-10 - 1.0).abs() < 1e-3);
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
