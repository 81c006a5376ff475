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
//! every sample once it is stored (off the write path, in the daemon).

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

/// The upper tail of one surprise measure, as peaks over a moving threshold (the idea of
/// SPOT, Siffer et al., KDD 2017): the threshold follows the measure's 98th percentile
/// by stochastic approximation, and the excesses over it are fitted with a generalised
/// Pareto distribution by the method of moments, weighting about the last 100. So the
/// chance of a surprise past the threshold follows the series' own tail, heavy (a
/// collector's timing that now and then takes 500 times as long) or light, rather than
/// a normal one. Constant memory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tail {
    /// The first values, until there are enough to set the threshold from.
    #[serde(default)]
    first: Vec<f64>,
    /// Whether the threshold is set.
    #[serde(default)]
    started: bool,
    /// The threshold.
    u: f64,
    /// The mean distance of the measure from the threshold: the scale of its steps.
    spread: f64,
    /// Values seen since the threshold was set...
    #[serde(default)]
    counted: u64,
    /// ... and the excesses over it among them.
    peaks: u64,
    /// Their weighted mean and mean square.
    m1: f64,
    m2: f64,
    /// A provisional tail: see [`Tail::provisional`].
    #[serde(default)]
    provisional: bool,
}

/// How a tail is fitted.
#[derive(Debug, Clone, Copy)]
struct Fit {
    /// The share of values above the threshold.
    above: f64,
    /// Peaks the fit needs before it is used, over at least the values in which that
    /// many are expected.
    peaks: u64,
    /// The heaviest shape fitted.
    heaviest: f64,
}

impl Tail {
    /// A series' own tail: its 98th percentile, trusted after 20 peaks in 1,000 values
    /// (a new series' first swing can make every value a peak while the threshold
    /// climbs after it), its shape no heavier than 0.5 (a variance exists below).
    const OWN: Fit = Fit {
        above: 0.02,
        peaks: 20,
        heaviest: 0.5,
    };
    /// A provisional tail: its 95th percentile, trusted after 10 peaks in 200 values,
    /// its shape no heavier than 0.25 (among a few dozen peaks, one spike makes the
    /// shape heavy enough that a spike twice its size seems nothing rare).
    const PROVISIONAL: Fit = Fit {
        above: 0.05,
        peaks: 10,
        heaviest: 0.25,
    };
    /// Weight of a new peak in the fit, once there have been 100.
    const PEAK_WEIGHT: f64 = 0.01;
    /// Values that set the first threshold.
    const FIRST: usize = 50;
    /// The lightest tail shape fitted.
    const LIGHTEST: f64 = -0.25;

    /// A tail to judge by while the real one is not yet fitted: its threshold follows
    /// the 95th percentile, its fit is used after 10 peaks in 200 values (so from about
    /// the 270th sample rather than the 1,070th), and its shape is no heavier than 0.25.
    /// Fitted to so few peaks so far below the extremes, it is a rough guess: a change
    /// or a level must be rare under it and under the normal tail to count. (The value
    /// is not judged by one: a slow swing's first trough, past the few hundred values
    /// seen, was "impossible" under it, and `prescale bench ingest`'s gauges reported
    /// 75.) It starts where `main` just did, from the same first values.
    fn provisional(main: &Tail) -> Self {
        Self {
            started: main.started,
            u: main.u,
            spread: main.spread,
            provisional: true,
            ..Self::default()
        }
    }

    fn fit(&self) -> Fit {
        if self.provisional {
            Self::PROVISIONAL
        } else {
            Self::OWN
        }
    }

    /// Whether the fit is used.
    fn fitted(&self) -> bool {
        let fit = self.fit();
        self.peaks >= fit.peaks && self.counted as f64 >= fit.peaks as f64 / fit.above
    }

    /// The chance of a value of at least `x` when the tail is fitted (`None` before);
    /// then learns `x`. Anomalies are learnt too, so spikes a series keeps having become
    /// its habit. (SPOT leaves them out; learning them at a tenth or six tenths of the
    /// weight raised the shared series' false alarms and lowered NAB's
    /// low-false-positive score.)
    fn observe(&mut self, x: f64) -> Option<f64> {
        if !self.started {
            // Before the threshold is set nothing counts as a peak: excesses over a
            // threshold still climbing from zero would be the whole distribution.
            self.first.push(x);
            if self.first.len() >= Self::FIRST {
                // Their 80th percentile, which a few spikes among them do not move
                // (their largest, the 98th, left a spiky series' threshold far above
                // its usual values for thousands of samples: the threshold comes down
                // 0.1% of its distance a sample). Too low, it climbs in a few peaks.
                self.first.sort_by(f64::total_cmp);
                self.u = self.first[Self::FIRST * 4 / 5 - 1];
                self.spread =
                    self.first.iter().map(|v| (v - self.u).abs()).sum::<f64>() / Self::FIRST as f64;
                self.first = Vec::new();
                self.started = true;
            }
            return None;
        }
        let p = self.chance(x);
        self.counted += 1;
        let y = x - self.u;
        self.spread += 0.01 * (y.abs() - self.spread);
        let step = 0.05 * self.spread.max(1e-12);
        if y > 0.0 {
            self.peaks += 1;
            let w = (1.0 / self.peaks as f64).max(Self::PEAK_WEIGHT);
            self.m1 += w * (y - self.m1);
            self.m2 += w * (y * y - self.m2);
            self.u += step * (1.0 - self.fit().above);
        } else {
            self.u -= step * self.fit().above;
        }
        p
    }

    fn chance(&self, x: f64) -> Option<f64> {
        if !self.fitted() {
            return None;
        }
        let y = x - self.u;
        if y <= 0.0 {
            return Some(1.0);
        }
        // The method of moments: shape from the excesses' mean and variance, kept where
        // it can be estimated (a variance exists below 0.5; a provisional tail's below
        // 0.25) and no lighter than -0.25:
        // a lighter one ends the tail just past the largest excesses seen, and a spike
        // a little larger than any before became impossible (at -0.5, in a series whose
        // spikes keep coming at 300 to 700 times its usual value).
        let m = self.m1.max(1e-300);
        let v = (self.m2 - m * m).max(0.0);
        let shape = if v > 0.0 {
            (0.5 * (1.0 - m * m / v)).clamp(Self::LIGHTEST, self.fit().heaviest)
        } else {
            Self::LIGHTEST
        };
        // The scale that keeps the fitted mean excess the one seen.
        let scale = m * (1.0 - shape);
        let beyond = if shape.abs() < 1e-9 {
            (-y / scale).exp()
        } else {
            let base = 1.0 + shape * y / scale;
            if base <= 0.0 {
                0.0
            } else {
                base.powf(-1.0 / shape)
            }
        };
        Some(self.fit().above * beyond)
    }
}

/// Streaming anomaly likelihood. Three surprises are measured at each sample: its change
/// from the previous sample in units of the recent mean absolute change (spikes, jumps),
/// how far the recent level (a fast mean) stands from the long-run level in long-run
/// standard deviations (shifts, drifts), and how far the value itself stands from it
/// (a spike past anything the series has done). Each is judged by how unlikely it is
/// under its own history: by the tail fitted to its largest values (a generalised Pareto
/// one, as SPOT does) once there are enough of them (after about 1,100 samples). Before
/// that, from the 270th sample (the first scored), the change's and the level's are
/// judged by a provisional tail fitted to the values past the 95th percentile and by a
/// normal tail, whichever finds them the less rare (by the normal tail alone while the
/// provisional one has too few peaks), and the value's not at all. The rarest counts,
/// so one threshold
/// means the same on a quiet series and a noisy one, a smooth one and a spiky one.
///
/// The score puts that chance against the sample's interval: 0.5 is a surprise the
/// series' tail expects once in [`LikelihoodDetector::HORIZON_MS`] (ten days), so a
/// series sampled every 2 s needs a rarer surprise than one sampled every 5 minutes to
/// score as high, and each series raises about as many false alarms per day whatever its
/// interval. Under a normal tail, 0.5 is a surprise of one in 10^10.
/// After a report (a score of 0.5 or more) scores are halved for 30 samples, so one
/// burst is reported once. Constant memory and time per sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LikelihoodDetector {
    seen: u64,
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
    /// The tails of the three surprises.
    #[serde(default)]
    tail: Tail,
    #[serde(default)]
    level_tail: Tail,
    #[serde(default)]
    value_tail: Tail,
    /// Provisional tails of the change and the level, from when theirs start until
    /// they are fitted.
    #[serde(default)]
    provisional: Option<Box<[Tail; 2]>>,
    /// The last sample's time, and the typical interval between samples (0: unknown).
    #[serde(default)]
    last_ts: Option<TimestampMs>,
    #[serde(default)]
    interval_ms: f64,
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
    /// A score this high is a report...
    const REPORT: f64 = 0.5;
    /// ... after which scores are multiplied by this ...
    const QUIET_FACTOR: f64 = 0.5;
    /// ... for this many samples, so one burst is not reported sample after sample
    /// (a longer quiet would hide the next event).
    const QUIET_SAMPLES: u64 = 30;
    /// A surprise the series' fitted tail expects once in this long scores 0.5.
    pub const HORIZON_MS: f64 = 10.0 * 86_400_000.0;
    /// Samples are taken as this far apart when their times are not given (the
    /// resolution of the NAB corpus and of most cloud metrics).
    pub const DEFAULT_INTERVAL_MS: f64 = 300_000.0;

    /// Samples scored 0 while the detector learns: the scale's first, the tails' first
    /// values and the provisional tails' fit (270). Judged by a normal tail alone from
    /// their 100th sample, a new node exporter's 523 series reported 94 anomalies in
    /// their first ten minutes; now 3. NAB, which does not score a file's first 15%,
    /// is unmoved.
    const WARMUP: u64 = Self::SCALE_WARMUP
        + Tail::FIRST as u64
        + (Tail::PROVISIONAL.peaks as f64 / Tail::PROVISIONAL.above) as u64;

    /// A detector that scores 0 for its first 270 samples while it learns.
    pub fn new() -> Self {
        Self {
            seen: 0,
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
            tail: Tail::default(),
            level_tail: Tail::default(),
            value_tail: Tail::default(),
            provisional: None,
            last_ts: None,
            interval_ms: 0.0,
        }
    }

    /// Scores one value in [0, 1), its samples taken as
    /// [`LikelihoodDetector::DEFAULT_INTERVAL_MS`] apart: see
    /// [`LikelihoodDetector::score_at`].
    pub fn score(&mut self, x: f64) -> f64 {
        self.judge(None, x)
    }

    /// Scores one value taken at `ts`, in [0, 1): `L / (L + L0)` where `L` is minus the
    /// decimal log of the chance of a surprise this large under the series' fitted tail
    /// and `L0` that of a sample interval in [`LikelihoodDetector::HORIZON_MS`] (0.5: once
    /// in ten days; `L0` is 10 under a normal tail), halved
    /// for 30 samples after a score of 0.5. A non-finite value scores 0 and is not learnt.
    pub fn score_at(&mut self, ts: TimestampMs, x: f64) -> f64 {
        self.judge(Some(ts), x)
    }

    /// The typical interval between samples, from their times (the default without).
    pub fn interval_ms(&self) -> f64 {
        if self.interval_ms > 0.0 {
            self.interval_ms
        } else {
            Self::DEFAULT_INTERVAL_MS
        }
    }

    fn judge(&mut self, ts: Option<TimestampMs>, x: f64) -> f64 {
        if !x.is_finite() {
            return 0.0;
        }
        if let Some(ts) = ts {
            if let Some(dt) = self.last_ts.map(|l| (ts - l) as f64).filter(|&d| d > 0.0) {
                // A gap (a restart, an outage) moves the typical interval little.
                self.interval_ms = if self.interval_ms > 0.0 {
                    let i = self.interval_ms;
                    i + 0.05 * (dt.clamp(0.25 * i, 4.0 * i) - i)
                } else {
                    dt
                };
            }
            self.last_ts = Some(ts);
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
        let (p, p2) = (self.tail.observe(raw), self.level_tail.observe(level));
        // The third: how far the value itself stands from the long-run level, in
        // long-run spreads. A spike four times anything a series with a daily job has
        // done is no larger a change, nor a larger move of the recent level, than the
        // job's start, but its value is far past any before.
        let off = ((x - self.v_mean).abs() / self.v_var.sqrt().max(floor)).min(1e3);
        let p3 = self.value_tail.observe(off);
        let (q, q2) = match &mut self.provisional {
            Some(t) => {
                let q = (t[0].observe(raw), t[1].observe(level));
                if self.tail.fitted() && self.level_tail.fitted() {
                    self.provisional = None;
                }
                q
            }
            None => {
                if self.tail.started && self.tail.counted == 0 {
                    // The tails just started, on this value.
                    self.provisional = Some(Box::new([
                        Tail::provisional(&self.tail),
                        Tail::provisional(&self.level_tail),
                    ]));
                }
                (None, None)
            }
        };
        if self.seen <= Self::WARMUP {
            return 0.0;
        }
        // What a score of 0.5 means: a surprise once in the horizon, one interval's share
        // of it.
        let l0 = -(self.interval_ms() / Self::HORIZON_MS)
            .clamp(1e-10, 1e-3)
            .log10();
        let score_of = |chance: f64, l0: f64| {
            let l = (-chance.max(1e-300).log10()).max(0.0);
            l / (l + l0)
        };
        // By the fitted tail; before it is, by the normal one and the provisional one,
        // whichever finds the surprise the less rare.
        let judged = |z: f64, p: Option<f64>, q: Option<f64>| match (p, q) {
            (Some(p), _) => score_of(p, l0),
            (None, None) => score_of(normal_tail(z), 10.0),
            (None, Some(q)) => score_of(normal_tail(z), 10.0).min(score_of(q, l0)),
        };
        // The rarest surprise is the sample's. The value's own only counts once its
        // tail is fitted: under a normal one, every busy hour of a daily cycle would be.
        let mut score = judged(z, p, q).max(judged(z2, p2, q2));
        if let Some(chance) = p3 {
            score = score.max(score_of(chance, l0));
        }
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

    /// Scores of `values` taken `every_ms` apart.
    fn scored(values: impl IntoIterator<Item = f64>, every_ms: i64) -> Vec<f64> {
        let mut d = LikelihoodDetector::new();
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| d.score_at(i as i64 * every_ms, v))
            .collect()
    }

    fn peak(s: &[f64]) -> f64 {
        s.iter().cloned().fold(0.0, f64::max)
    }

    #[test]
    fn likelihood_scores_a_jump_high_and_steady_noise_low_at_any_scale() {
        for scale in [1e-3, 1.0, 1e6] {
            let series = (0..2000u64).map(|i| {
                let v = (10.0 + noise(i)) * scale;
                if i >= 1500 {
                    v + 8.0 * scale
                } else {
                    v
                }
            });
            // Every 2 s: a report (0.5) is a surprise of one in 432,000 samples.
            let scores = scored(series, 2_000);
            assert!(scores[..270].iter().all(|&s| s == 0.0), "warm-up");
            // 1,400 steady samples: the rarest is about one in 1,400 (0.37).
            let quiet = peak(&scores[100..1500]);
            assert!(quiet < 0.42, "steady noise peaks at {quiet}");
            // The jump is beyond anything the tail allows.
            assert!(scores[1500] > 0.9, "the jump: {}", scores[1500]);
            assert!(scores.iter().all(|s| (0.0..1.0).contains(s)));
            // After the jump the new level is ordinary again.
            let after = peak(&scores[1600..]);
            assert!(after < 0.42, "after the jump: {after}");
        }
        let mut d = LikelihoodDetector::new();
        assert_eq!(d.score(f64::NAN), 0.0);
    }

    #[test]
    fn the_bar_is_as_rare_as_the_samples_are_frequent() {
        // The same steady noise, judged by its fitted tails (from about sample 1,100):
        // every 5 minutes its rarest of 2,500 samples is a surprise of about once in two
        // days (nearly a report), every second about once in ten minutes (far from one).
        let series = || (0..4000u64).map(|i| 10.0 + noise(i));
        let slow = peak(&scored(series(), 300_000)[1500..]);
        let fast = peak(&scored(series(), 1_000)[1500..]);
        assert!(slow > 0.42 && slow < 0.5, "every 5 minutes: {slow}");
        assert!(fast < 0.36, "every second: {fast}");
        // Without times, samples are taken as 5 minutes apart.
        let mut d = LikelihoodDetector::new();
        let untimed = peak(&series().map(|v| d.score(v)).collect::<Vec<_>>()[1500..]);
        assert_eq!(untimed, slow);
        assert_eq!(d.interval_ms(), LikelihoodDetector::DEFAULT_INTERVAL_MS);
    }

    #[test]
    fn spikes_a_series_often_has_stop_being_reported_and_a_larger_one_is() {
        // A collector's timing: 30 µs, and about one sample in 150 taking 300 to 700
        // times as long (the machine was busy), as node exporter's
        // node_scrape_collector_duration_seconds does, from after the detector's
        // warm-up. A normal tail reports each.
        let spiky = |i: u64| i >= 300 && noise(i * 7 + 3) + 0.5 < 1.0 / 150.0;
        let value = |i: u64| {
            if spiky(i) {
                30e-6 * (300.0 + 400.0 * (noise(i * 13) + 0.5))
            } else {
                30e-6 * (1.0 + 0.1 * noise(i))
            }
        };
        let spikes: Vec<usize> = (0..9000u64)
            .filter(|&i| spiky(i))
            .map(|i| i as usize)
            .collect();
        assert!(spikes.len() > 40, "{}", spikes.len());
        let scores = scored((0..9000).map(value), 2_000);
        let reported = |from: usize, to: usize| {
            spikes
                .iter()
                .filter(|&&i| (from..to).contains(&i) && scores[i] >= 0.5)
                .count()
        };
        // The first are news; once the tail has them, they are the series' habit.
        assert!(reported(0, 3000) >= 1, "{:?}", &spikes);
        assert_eq!(reported(4000, 9000), 0, "spikes reported once learnt");
        // So too when spikes come among the first values the tails start from.
        let early = scored(
            (0..9000).map(|i| if i == 30 || i == 45 { 0.02 } else { value(i) }),
            2_000,
        );
        let late: Vec<&usize> = spikes
            .iter()
            .filter(|&&i| i >= 4000 && early[i] >= 0.5)
            .collect();
        assert!(
            late.is_empty(),
            "spikes reported after early ones: {late:?}"
        );
        let mut old = 0;
        let mut d = LikelihoodDetector::new();
        for i in 0..9000u64 {
            // What the same scores were under a normal tail alone: each spike a report.
            let v = value(i);
            d.tail.peaks = 0;
            d.level_tail.peaks = 0;
            d.value_tail.peaks = 0;
            d.provisional = None;
            if d.score_at(i as i64 * 2_000, v) >= 0.5 && i >= 4000 {
                old += 1;
            }
        }
        assert!(old > 10, "under a normal tail: {old}");
        // A spike fifty times the usual ones is still news.
        let big = scored(
            (0..9000).map(|i| if i == 8000 { 1.0 } else { value(i) }),
            2_000,
        );
        assert!(big[8000] >= 0.5, "{}", big[8000]);
    }

    #[test]
    fn a_new_series_is_judged_by_provisional_tails_before_its_own_are_fitted() {
        // The collector timing above, from its 270th sample to its 1,050th: its tails are
        // not fitted yet, and a normal tail would report spike after spike.
        let value = |i: u64| {
            if noise(i * 7 + 3) + 0.5 < 1.0 / 150.0 {
                30e-6 * (300.0 + 400.0 * (noise(i * 13) + 0.5))
            } else {
                30e-6 * (1.0 + 0.1 * noise(i))
            }
        };
        let reports = |normal_only: bool, value: &dyn Fn(u64) -> f64| {
            let mut d = LikelihoodDetector::new();
            let mut found = Vec::new();
            for i in 0..1050u64 {
                if normal_only {
                    d.provisional = None;
                }
                if d.score_at(i as i64 * 2_000, value(i)) >= 0.5 && i >= 250 {
                    found.push(i);
                }
            }
            found
        };
        let provisional = reports(false, &value);
        let normal = reports(true, &value);
        assert!(normal.len() >= 4, "under a normal tail: {normal:?}");
        assert!(
            provisional.len() * 4 <= normal.len(),
            "provisional {provisional:?}, normal {normal:?}"
        );
        // The same timing without its spikes: a first spike is news.
        let steady = |i: u64| {
            if i == 700 {
                0.01
            } else {
                30e-6 * (1.0 + 0.1 * noise(i))
            }
        };
        assert_eq!(reports(false, &steady), [700]);
        // And so is a steady series' jump.
        let mut d = LikelihoodDetector::new();
        let jump: Vec<f64> = (0..1000u64)
            .map(|i| {
                d.score_at(
                    i as i64 * 15_000,
                    10.0 + noise(i) + if i >= 600 { 4.0 } else { 0.0 },
                )
            })
            .collect();
        assert!(d.provisional.is_some(), "its own tails are not fitted yet");
        assert!(jump[600] >= 0.5, "{}", jump[600]);
        assert!(peak(&jump[250..600]) < 0.45, "{}", peak(&jump[250..600]));
    }

    #[test]
    fn a_new_series_first_slow_swing_is_no_anomaly() {
        // `prescale bench ingest`'s gauges: a slow swing of +-15 around 50 and a jitter
        // of up to +-2 that repeats, every 15 s. While the first swing runs, each sample
        // is the level's largest yet: the tails are not trusted before they have seen
        // 1,000 values (they were, at 20 peaks, and reported these), and the value is
        // not judged by a provisional tail (it was, and 75 of the thousand reported
        // their first trough or crest).
        let mut reported = Vec::new();
        for k in 0..1000u64 {
            let scores = scored(
                (0..1000u64).map(|step| {
                    let n = step * 1000 + k;
                    let jitter = ((n * 7919) % 41) as f64 / 10.0 - 2.0;
                    let swing = 15.0 * (step as f64 / 120.0 + k as f64).sin();
                    ((50.0 + swing + jitter) * 10.0).round() / 10.0
                }),
                15_000,
            );
            if peak(&scores) >= 0.5 {
                reported.push(k);
            }
        }
        assert!(reported.is_empty(), "series {reported:?}");
    }

    #[test]
    fn a_second_jump_soon_after_a_report_is_damped_and_one_later_is_not() {
        let run = |second: u64| {
            let scores = scored(
                (0..2000u64).map(|i| {
                    let mut v = 10.0 + noise(i);
                    if i >= 500 {
                        v += 8.0;
                    }
                    if i >= second {
                        v += 8.0;
                    }
                    v
                }),
                60_000,
            );
            (scores[500], scores[second as usize])
        };
        let (first, soon) = run(510);
        let (_, late) = run(600);
        assert!(first >= 0.5, "{first}");
        assert!(
            soon < 0.5 && soon > 0.25,
            "within 30 samples: halved, {soon}"
        );
        assert!(late >= 0.5, "after 100 samples: a report again, {late}");
    }

    #[test]
    fn a_level_shift_too_gradual_for_any_one_change_is_caught_by_the_level() {
        // Noise of width 1 around 10, then a ramp to 13 over 30 samples: no single change
        // stands out, the new level does.
        let scores = scored(
            (0..2000u64).map(|i| {
                let ramp = ((i as f64 - 1500.0) / 30.0).clamp(0.0, 1.0) * 3.0;
                10.0 + noise(i) + ramp
            }),
            60_000,
        );
        let before = peak(&scores[100..1500]);
        let during = peak(&scores[1500..1560]);
        assert!(before < 0.45, "{before}");
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
