//! Forecasts: quantiles of a value at each future step, never crossing.

use serde::{Deserialize, Serialize};

use crate::{CoreError, SeriesKey, TimestampMs};

/// A probabilistic forecast over a horizon.
///
/// For each future step `i` (at `start + i * step_ms`), `values[i][j]` is the quantile at
/// probability `levels[j]`. Levels are strictly increasing in (0, 1); quantile values are
/// finite and non-decreasing across levels at every step. The constructor enforces both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// The series forecast.
    pub series: SeriesKey,
    /// The model that produced it (e.g. `snaive(288)`).
    pub model: String,
    /// When the forecast was made (the last observation it used).
    pub made_at: TimestampMs,
    /// Timestamp of the first forecast step.
    pub start: TimestampMs,
    /// Spacing between steps, in milliseconds.
    pub step_ms: i64,
    /// Probability levels, strictly increasing, each in (0, 1).
    pub levels: Vec<f64>,
    /// `values[step][level]`.
    pub values: Vec<Vec<f64>>,
}

impl Forecast {
    /// Builds a forecast after checking its invariants.
    pub fn new(
        series: SeriesKey,
        model: impl Into<String>,
        made_at: TimestampMs,
        start: TimestampMs,
        step_ms: i64,
        levels: Vec<f64>,
        values: Vec<Vec<f64>>,
    ) -> Result<Self, CoreError> {
        if step_ms <= 0 {
            return Err(CoreError::BadForecast(format!(
                "step must be positive, got {step_ms} ms"
            )));
        }
        if levels.is_empty() {
            return Err(CoreError::BadForecast("no quantile levels".into()));
        }
        for (i, l) in levels.iter().enumerate() {
            if !(l.is_finite() && *l > 0.0 && *l < 1.0) {
                return Err(CoreError::BadForecast(format!(
                    "quantile level {l} is outside (0, 1)"
                )));
            }
            if i > 0 && levels[i - 1] >= *l {
                return Err(CoreError::BadForecast(format!(
                    "quantile levels must be strictly increasing: {} then {l}",
                    levels[i - 1]
                )));
            }
        }
        for (s, row) in values.iter().enumerate() {
            if row.len() != levels.len() {
                return Err(CoreError::BadForecast(format!(
                    "step {s} has {} values for {} levels",
                    row.len(),
                    levels.len()
                )));
            }
            for (j, v) in row.iter().enumerate() {
                if !v.is_finite() {
                    return Err(CoreError::NonFinite {
                        value: *v,
                        context: format!("forecast step {s}, level {}", levels[j]),
                    });
                }
                if j > 0 && row[j - 1] > *v {
                    return Err(CoreError::BadForecast(format!(
                        "quantiles cross at step {s}: q{} = {} > q{} = {v}",
                        levels[j - 1],
                        row[j - 1],
                        levels[j]
                    )));
                }
            }
        }
        Ok(Self {
            series,
            model: model.into(),
            made_at,
            start,
            step_ms,
            levels,
            values,
        })
    }

    /// Number of future steps.
    pub fn horizon(&self) -> usize {
        self.values.len()
    }

    /// Timestamp of step `i`.
    pub fn step_time(&self, i: usize) -> TimestampMs {
        self.start + self.step_ms * i as i64
    }

    /// The value at probability `level` for step `i`, interpolating linearly between the
    /// stored levels and clamping outside them.
    pub fn quantile(&self, i: usize, level: f64) -> f64 {
        interpolate_levels(&self.levels, &self.values[i], level)
    }
}

/// The value at probability `level` from `values` given at increasing `levels`,
/// interpolating linearly between them and clamping outside them.
pub fn interpolate_levels(levels: &[f64], values: &[f64], level: f64) -> f64 {
    let (lv, row) = (levels, values);
    if level <= lv[0] {
        return row[0];
    }
    if level >= lv[lv.len() - 1] {
        return row[row.len() - 1];
    }
    let j = lv.partition_point(|l| *l < level);
    if (lv[j] - level).abs() < 1e-12 {
        return row[j];
    }
    let (l0, l1) = (lv[j - 1], lv[j]);
    let w = (level - l0) / (l1 - l0);
    row[j - 1] + w * (row[j] - row[j - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SeriesKey {
        SeriesKey::metric("demand").unwrap()
    }

    #[test]
    fn accepts_monotone_quantiles_and_interpolates() {
        let f = Forecast::new(
            key(),
            "t",
            0,
            60_000,
            60_000,
            vec![0.1, 0.5, 0.9],
            vec![vec![1.0, 2.0, 4.0], vec![2.0, 2.0, 2.0]],
        )
        .unwrap();
        assert_eq!(f.horizon(), 2);
        assert_eq!(f.step_time(1), 120_000);
        assert_eq!(f.quantile(0, 0.5), 2.0);
        assert!((f.quantile(0, 0.7) - 3.0).abs() < 1e-12);
        assert_eq!(f.quantile(0, 0.99), 4.0);
        assert_eq!(f.quantile(0, 0.01), 1.0);
    }

    #[test]
    fn rejects_crossing_quantiles() {
        let err = Forecast::new(key(), "t", 0, 0, 1000, vec![0.1, 0.9], vec![vec![3.0, 2.0]])
            .unwrap_err();
        assert!(err.to_string().contains("cross"), "{err}");
    }

    #[test]
    fn rejects_non_finite_and_bad_levels() {
        let nan = Forecast::new(key(), "t", 0, 0, 1000, vec![0.5], vec![vec![f64::NAN]]);
        assert!(matches!(nan, Err(CoreError::NonFinite { .. })));
        let lv = Forecast::new(key(), "t", 0, 0, 1000, vec![0.5, 0.5], vec![vec![1.0, 1.0]]);
        assert!(lv.is_err());
        let out = Forecast::new(key(), "t", 0, 0, 1000, vec![1.0], vec![vec![1.0]]);
        assert!(out.is_err());
        let ragged = Forecast::new(key(), "t", 0, 0, 1000, vec![0.5, 0.9], vec![vec![1.0]]);
        assert!(ragged.is_err());
        let step = Forecast::new(key(), "t", 0, 0, 0, vec![0.5], vec![vec![1.0]]);
        assert!(step.is_err());
    }
}
