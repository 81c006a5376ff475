//! Seasonal average: the forecast for a step is the median (or mean) of the values at the
//! same phase in the last few seasons. Seasonal naive repeats one noisy season; averaging
//! several keeps the shape and cancels much of the noise (for independent noise, the
//! error variance falls from twice the noise to `1 + 1/k` times it), which matters most
//! at long horizons, where nothing recent is known. The median keeps a past burst from
//! repeating itself. It costs one pass over the history, so `auto` always has it.

use crate::{check_finite, check_levels, quantile_sorted, Fitted, ForecastError, Forecaster};

/// Median or mean of the same phase over the last `cycles` seasons.
#[derive(Debug, Clone)]
pub struct SeasonalAverage {
    /// Season length in steps (at least 2).
    pub season: usize,
    /// Seasons averaged (at least 2; fewer when the history is shorter).
    pub cycles: usize,
    /// Median (robust to bursts) instead of mean.
    pub median: bool,
}

/// Most recent in-sample errors kept for the spread.
const MAX_ERRORS: usize = 4032;

struct Fit {
    y: Vec<f64>,
    m: usize,
    cycles: usize,
    median: bool,
    /// Sorted one-season-ahead errors of the same rule in the history.
    errors: Vec<f64>,
}

fn aggregate(v: &mut [f64], median: bool) -> f64 {
    if median {
        v.sort_by(f64::total_cmp);
        quantile_sorted(v, 0.5)
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

impl SeasonalAverage {
    fn label(&self) -> &'static str {
        if self.median {
            "smedian"
        } else {
            "smean"
        }
    }
}

impl Forecaster for SeasonalAverage {
    fn name(&self) -> String {
        self.label().into()
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        check_finite(y)?;
        let m = self.season;
        if m < 2 || self.cycles < 2 {
            return Err(ForecastError::Invalid(format!(
                "seasonal average needs a season of at least 2 steps and at least 2 cycles, got {m} and {}",
                self.cycles
            )));
        }
        // Two seasons to average plus one to measure errors on.
        if y.len() < 3 * m {
            return Err(ForecastError::TooShort {
                model: format!("{}(m={m})", self.label()),
                needed: 3 * m,
                got: y.len(),
            });
        }
        let cycles = self.cycles.min(y.len() / m - 1);
        let keep = y.len().min(MAX_ERRORS + (cycles + 1) * m);
        let y = y[y.len() - keep..].to_vec();
        let mut buf = Vec::with_capacity(cycles);
        let mut errors: Vec<f64> = (cycles * m..y.len())
            .map(|t| {
                buf.clear();
                buf.extend((1..=cycles).map(|j| y[t - j * m]));
                y[t] - aggregate(&mut buf, self.median)
            })
            .collect();
        errors.sort_by(f64::total_cmp);
        Ok(Box::new(Fit {
            y,
            m,
            cycles,
            median: self.median,
            errors,
        }))
    }
}

impl Fitted for Fit {
    fn describe(&self) -> String {
        format!(
            "{}(m={}, k={})",
            if self.median { "smedian" } else { "smean" },
            self.m,
            self.cycles
        )
    }

    /// The same rule (season, cycles) on the history followed by `new`.
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        let rule = SeasonalAverage {
            season: self.m,
            cycles: self.cycles,
            median: self.median,
        };
        let y: Vec<f64> = self.y.iter().chain(new).copied().collect();
        Some(rule.fit(&y))
    }

    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        check_levels(levels)?;
        let (n, m) = (self.y.len(), self.m);
        let offsets: Vec<f64> = levels
            .iter()
            .map(|p| quantile_sorted(&self.errors, *p))
            .collect();
        let mut buf = Vec::with_capacity(self.cycles);
        Ok((1..=horizon)
            .map(|h| {
                // The nearest season back that is in the history, then older ones.
                let i = n - 1 + h;
                let first = h.div_ceil(m);
                buf.clear();
                buf.extend(
                    (first..first + self.cycles)
                        .filter(|j| j * m <= i)
                        .map(|j| self.y[i - j * m]),
                );
                let point = aggregate(&mut buf, self.median);
                offsets.iter().map(|o| point + o).collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_the_same_phase_ignores_one_burst() {
        // Season 4: [0, 10, 20, 10] five times, with a burst of +100 in the last season.
        let mut y: Vec<f64> = (0..20).map(|t| [0.0, 10.0, 20.0, 10.0][t % 4]).collect();
        y[18] += 100.0;
        let spec = SeasonalAverage {
            season: 4,
            cycles: 3,
            median: true,
        };
        let q = spec.fit(&y).unwrap().predict(6, &[0.5]).unwrap();
        let median: Vec<f64> = q.iter().map(|r| r[0]).collect();
        assert_eq!(median, vec![0.0, 10.0, 20.0, 10.0, 0.0, 10.0]);
        // The mean carries a third of the burst into its phase.
        let mean = SeasonalAverage {
            median: false,
            ..spec
        };
        let q = mean.fit(&y).unwrap().predict(4, &[0.5]).unwrap();
        assert!((q[2][0] - (20.0 + 100.0 / 3.0)).abs() < 1e-9, "{:?}", q);
    }

    #[test]
    fn averaging_beats_seasonal_naive_on_noise_and_intervals_cover() {
        use crate::cv::{cross_validate, CvConfig};
        use crate::SeasonalNaive;
        // A fixed daily shape plus independent noise (a deterministic generator).
        let mut s: u64 = 99;
        let mut noise = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 6.0
        };
        let y: Vec<f64> = (0..24 * 40)
            .map(|t| 30.0 + 10.0 * (t as f64 * std::f64::consts::TAU / 24.0).sin() + noise())
            .collect();
        let cv = CvConfig::back_to_back(24, 6, 24, 10_000);
        let avg = SeasonalAverage {
            season: 24,
            cycles: 7,
            median: false,
        };
        let a = cross_validate(&avg, &y, &cv).scores.unwrap();
        let b = cross_validate(&SeasonalNaive { season: 24 }, &y, &cv)
            .scores
            .unwrap();
        // Uniform noise: snaive's error has twice its variance, a 7-season mean 8/7.
        assert!(a.mase < 0.85 * b.mase, "{} vs {}", a.mase, b.mase);
        assert!(
            (0.7..=0.9).contains(&a.coverage80),
            "80% interval covered {}",
            a.coverage80
        );
    }

    #[test]
    fn short_histories_are_refused() {
        let spec = SeasonalAverage {
            season: 24,
            cycles: 5,
            median: true,
        };
        assert!(matches!(
            spec.fit(&[1.0; 70]),
            Err(ForecastError::TooShort { needed: 72, .. })
        ));
        // Three seasons: averages the two available.
        let f = spec.fit(&[1.0; 72]).unwrap();
        assert!(f.describe().contains("k=2"), "{}", f.describe());
    }
}
