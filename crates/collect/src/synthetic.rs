//! A seeded synthetic demand source: daily and weekly cycles, autocorrelated noise and
//! random bursts, as seen on real services. `prescale demo` feeds it through the same
//! store, forecaster and planner as real metrics.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use prescale_core::TimestampMs;

const DAY_MS: i64 = 86_400_000;

/// The shape of one synthetic workload's demand, in vCPU.
#[derive(Debug, Clone, PartialEq)]
pub enum DemandProfile {
    /// An interactive service: a base load plus a daytime hump peaking mid-afternoon
    /// (UTC), weekends at `weekend_factor` of weekdays.
    Service {
        /// Demand at night.
        base: f64,
        /// Extra demand at the daily peak.
        peak: f64,
        /// Weekend multiplier on the daytime hump.
        weekend_factor: f64,
    },
    /// A nightly batch window: `idle` all day, `busy` between `start_hour` and
    /// `end_hour` (UTC).
    NightlyBatch {
        /// Demand outside the window.
        idle: f64,
        /// Demand inside the window.
        busy: f64,
        /// Window start hour.
        start_hour: f64,
        /// Window end hour.
        end_hour: f64,
    },
}

impl DemandProfile {
    /// The noiseless demand at time `t`.
    pub fn mean(&self, t: TimestampMs) -> f64 {
        let day_frac = t.rem_euclid(DAY_MS) as f64 / DAY_MS as f64;
        let hour = day_frac * 24.0;
        // 1970-01-01 was a Thursday: day 0 -> Thursday, days 2 and 3 -> Sat, Sun.
        let weekday = (t.div_euclid(DAY_MS) + 3).rem_euclid(7); // 0 = Monday
        match *self {
            DemandProfile::Service {
                base,
                peak,
                weekend_factor,
            } => {
                // A smooth hump centred on 14:00, about 10 hours wide.
                let x = (hour - 14.0) / 4.0;
                let hump = (-0.5 * x * x).exp();
                let w = if weekday >= 5 { weekend_factor } else { 1.0 };
                base + peak * w * hump
            }
            DemandProfile::NightlyBatch {
                idle,
                busy,
                start_hour,
                end_hour,
            } => {
                if hour >= start_hour && hour < end_hour {
                    busy
                } else {
                    idle
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Burst {
    start: TimestampMs,
    end: TimestampMs,
    height: f64,
}

/// Generates demand for one workload, sample by sample, in time order.
#[derive(Debug, Clone)]
pub struct SyntheticDemand {
    profile: DemandProfile,
    rng: ChaCha8Rng,
    noise: f64,
    noise_sd: f64,
    bursts_per_day: f64,
    burst: Option<Burst>,
    last: Option<TimestampMs>,
}

impl SyntheticDemand {
    /// `noise_sd` is the relative noise (e.g. 0.05); `bursts_per_day` the mean number of
    /// unpredictable surges (each 10 to 40 minutes, +20% to +60%).
    pub fn new(profile: DemandProfile, seed: u64, noise_sd: f64, bursts_per_day: f64) -> Self {
        Self {
            profile,
            rng: ChaCha8Rng::seed_from_u64(seed),
            noise: 0.0,
            noise_sd,
            bursts_per_day,
            burst: None,
            last: None,
        }
    }

    /// The demand at `t`; calls must come in increasing time order.
    pub fn next(&mut self, t: TimestampMs) -> f64 {
        let dt_ms = self.last.map_or(60_000, |l| (t - l).max(1));
        self.last = Some(t);
        // AR(1) noise with a ~10 minute memory.
        let phi = (-(dt_ms as f64) / 600_000.0).exp();
        let shock: f64 = self.rng.random::<f64>() * 2.0 - 1.0;
        self.noise = phi * self.noise + (1.0 - phi * phi).sqrt() * shock * self.noise_sd * 1.7;
        // Bursts arrive as a Poisson process.
        let p_burst = 1.0 - (-self.bursts_per_day * dt_ms as f64 / DAY_MS as f64).exp();
        if self.burst.as_ref().is_none_or(|b| t >= b.end) {
            self.burst = None;
            if self.rng.random::<f64>() < p_burst {
                let dur = self.rng.random_range(10..=40) as i64 * 60_000;
                let height = self.rng.random_range(0.2..0.6);
                self.burst = Some(Burst {
                    start: t,
                    end: t + dur,
                    height,
                });
            }
        }
        let mean = self.profile.mean(t);
        let burst = self.burst.as_ref().map_or(0.0, |b| {
            // Ramp up over 3 minutes, then hold.
            let ramp = ((t - b.start) as f64 / 180_000.0).min(1.0);
            b.height * ramp
        });
        (mean * (1.0 + self.noise + burst)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_peaks_in_the_afternoon_and_dips_at_weekends() {
        let p = DemandProfile::Service {
            base: 10.0,
            peak: 30.0,
            weekend_factor: 0.4,
        };
        let monday = 4 * DAY_MS; // 1970-01-05 was a Monday
        assert!((p.mean(monday + 14 * 3_600_000) - 40.0).abs() < 1e-9);
        assert!(p.mean(monday + 3 * 3_600_000) < 11.0);
        let saturday = monday + 5 * DAY_MS;
        assert!((p.mean(saturday + 14 * 3_600_000) - 22.0).abs() < 1e-9);
    }

    #[test]
    fn same_seed_same_series_and_noise_is_bounded() {
        let p = DemandProfile::NightlyBatch {
            idle: 4.0,
            busy: 40.0,
            start_hour: 1.0,
            end_hour: 4.0,
        };
        let mut a = SyntheticDemand::new(p.clone(), 7, 0.05, 1.0);
        let mut b = SyntheticDemand::new(p.clone(), 7, 0.05, 1.0);
        let mut c = SyntheticDemand::new(p, 8, 0.05, 1.0);
        let xs: Vec<f64> = (0..10_000).map(|i| a.next(i * 60_000)).collect();
        let ys: Vec<f64> = (0..10_000).map(|i| b.next(i * 60_000)).collect();
        let zs: Vec<f64> = (0..10_000).map(|i| c.next(i * 60_000)).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        // Within the batch window demand stays near 40 (noise and bursts at most ~+80%).
        let in_window = xs[90]; // 01:30
        assert!((30.0..80.0).contains(&in_window), "{in_window}");
        assert!(xs.iter().all(|v| *v >= 0.0 && v.is_finite()));
        // Some bursts happen in a week (1 per day on average).
        let hot = xs
            .iter()
            .enumerate()
            .filter(|(i, v)| **v > 1.25 * 4.0 && !(60..240).contains(&(i % 1440)))
            .count();
        assert!(hot > 30, "{hot} minutes above idle+25%");
    }
}
