//! Rolling-origin cross-validation: one code path for every model, as in statsforecast's
//! `cross_validation`. The last `folds` origins are spaced `step` apart and end exactly
//! `horizon` points before the end of the series; each fold fits on the points before its
//! origin (at most `max_train`) and forecasts `horizon` steps, which are scored with the
//! shared [`crate::metrics`].

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::Forecaster;

/// How to cross-validate.
#[derive(Debug, Clone, PartialEq)]
pub struct CvConfig {
    /// Steps forecast per fold.
    pub horizon: usize,
    /// Number of origins.
    pub folds: usize,
    /// Distance between two origins, in steps.
    pub step: usize,
    /// Quantile levels to score (0.5, 0.1 and 0.9 are always added for MASE and the 80%
    /// interval).
    pub levels: Vec<f64>,
    /// Season of the MASE scale (seasonal naive in-sample), in steps.
    pub season: usize,
    /// Longest training window, in points.
    pub max_train: usize,
}

/// Sorted, de-duplicated union of quantile levels.
pub fn merge_levels(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = a.iter().chain(b).copied().collect();
    v.sort_by(|x, y| x.total_cmp(y));
    v.dedup_by(|x, y| (*x - *y).abs() < 1e-12);
    v
}

impl CvConfig {
    /// Test folds of `horizon` steps laid back to back (`step` = `horizon`), scored at
    /// the 10%, 50% and 90% quantiles.
    #[cfg(test)]
    pub(crate) fn back_to_back(
        horizon: usize,
        folds: usize,
        season: usize,
        max_train: usize,
    ) -> Self {
        CvConfig {
            horizon,
            folds,
            step: horizon,
            levels: vec![0.1, 0.5, 0.9],
            season,
            max_train,
        }
    }

    /// Levels actually forecast: the requested ones plus 0.1, 0.5 and 0.9.
    pub fn all_levels(&self) -> Vec<f64> {
        merge_levels(&self.levels, &[0.1, 0.5, 0.9])
    }

    /// Fold origins (index of the first forecast point), oldest first, for a series of
    /// `n` points; origins that leave fewer than `min_train` training points are skipped.
    pub fn origins(&self, n: usize, min_train: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.folds)
            .filter_map(|j| {
                let back = self.horizon + j * self.step.max(1);
                (n >= back && n - back >= min_train.max(2)).then(|| n - back)
            })
            .collect();
        v.reverse();
        v
    }
}

/// One fold's forecast and outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    /// Index of the first forecast point.
    pub origin: usize,
    /// What happened.
    pub truth: Vec<f64>,
    /// `quantiles[step][level]` at [`CvConfig::all_levels`].
    pub quantiles: Vec<Vec<f64>>,
    /// Seconds to fit and predict.
    pub seconds: f64,
    /// The fitted model's description.
    pub model: String,
}

/// Mean scores over folds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    /// Mean absolute scaled error of the median.
    pub mase: f64,
    /// Symmetric MAPE of the median (0..2).
    pub smape: f64,
    /// Scaled CRPS over the scored levels.
    pub crps: f64,
    /// Share of outcomes inside the 80% interval [q0.1, q0.9].
    pub coverage80: f64,
    /// Mean width of the 80% interval, scaled.
    pub width80: f64,
    /// Mean seconds per fit and predict.
    pub fit_seconds: f64,
    /// Folds scored.
    pub folds: usize,
    /// The mean over folds of what scaled MASE, CRPS and width: the in-sample error of
    /// the seasonal naive at the configured season (of the naive where the training
    /// window held fewer than two seasons). Live errors compared with `mase` must be
    /// divided by it.
    #[serde(default)]
    pub scale: f64,
}

/// A model's cross-validation.
#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    /// The model spec's name.
    pub model: String,
    /// Folds that produced a forecast.
    pub folds: Vec<Fold>,
    /// Scores, when at least one fold succeeded.
    pub scores: Option<Scores>,
    /// Why folds failed, if any did.
    pub failures: Vec<String>,
    /// The model moved on to the end of the series, for models that refilter
    /// ([`Forecaster::refilters`]).
    #[serde(skip)]
    pub at_end: Option<crate::SharedFit>,
}

fn idx(levels: &[f64], p: f64) -> usize {
    levels
        .iter()
        .position(|l| (l - p).abs() < 1e-12)
        .expect("level present")
}

/// Scores folds made with `cfg` on series `y`.
pub fn score(y: &[f64], folds: &[Fold], cfg: &CvConfig) -> Option<Scores> {
    if folds.is_empty() {
        return None;
    }
    let levels = cfg.all_levels();
    let (i10, i50, i90) = (idx(&levels, 0.1), idx(&levels, 0.5), idx(&levels, 0.9));
    let scored: Vec<usize> = cfg.levels.iter().map(|p| idx(&levels, *p)).collect();
    let mut acc = [0.0f64; 7];
    for f in folds {
        let train_lo = f.origin.saturating_sub(cfg.max_train);
        let s = metrics::scale(&y[train_lo..f.origin], cfg.season);
        let med: Vec<f64> = f.quantiles.iter().map(|r| r[i50]).collect();
        let lo: Vec<f64> = f.quantiles.iter().map(|r| r[i10]).collect();
        let hi: Vec<f64> = f.quantiles.iter().map(|r| r[i90]).collect();
        let sub: Vec<Vec<f64>> = f
            .quantiles
            .iter()
            .map(|r| scored.iter().map(|j| r[*j]).collect())
            .collect();
        let sub_levels: Vec<f64> = scored.iter().map(|j| levels[*j]).collect();
        acc[0] += metrics::mase(&f.truth, &med, s);
        acc[1] += metrics::smape(&f.truth, &med);
        acc[2] += metrics::scaled_crps(&f.truth, &sub, &sub_levels, s);
        acc[3] += metrics::coverage(&f.truth, &lo, &hi);
        acc[4] += lo.iter().zip(&hi).map(|(l, h)| h - l).sum::<f64>() / lo.len() as f64 / s;
        acc[5] += f.seconds;
        acc[6] += s;
    }
    let n = folds.len() as f64;
    Some(Scores {
        mase: acc[0] / n,
        smape: acc[1] / n,
        crps: acc[2] / n,
        coverage80: acc[3] / n,
        width80: acc[4] / n,
        fit_seconds: acc[5] / n,
        folds: folds.len(),
        scale: acc[6] / n,
    })
}

/// Cross-validates `spec` on `y`.
pub fn cross_validate(spec: &dyn Forecaster, y: &[f64], cfg: &CvConfig) -> CvReport {
    let levels = cfg.all_levels();
    let mut folds = Vec::new();
    let mut failures = Vec::new();
    let origins = cfg.origins(y.len(), 2);
    let t = Instant::now();
    let mut at = origins.clone();
    if spec.refilters() && !origins.is_empty() {
        at.push(y.len());
    }
    let mut fits = spec.fit_origins(y, &at, cfg.max_train);
    let at_end = if at.len() > origins.len() {
        fits.pop()
            .and_then(Result::ok)
            .map(|f| crate::SharedFit(std::sync::Arc::from(f)))
    } else {
        None
    };
    for (origin, fit) in origins.iter().copied().zip(fits) {
        let res = fit.and_then(|f| Ok((f.describe(), f.predict(cfg.horizon, &levels)?)));
        match res {
            Ok((model, quantiles)) => folds.push(Fold {
                origin,
                truth: y[origin..origin + cfg.horizon].to_vec(),
                quantiles,
                seconds: 0.0,
                model,
            }),
            Err(e) => failures.push(format!("origin {origin}: {e}")),
        }
    }
    // Fits may share work across origins: the time is spread evenly over the folds.
    let each = t.elapsed().as_secs_f64() / origins.len().max(1) as f64;
    for f in &mut folds {
        f.seconds = each;
    }
    let scores = score(y, &folds, cfg);
    CvReport {
        model: spec.name(),
        folds,
        scores,
        failures,
        at_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Naive, SeasonalNaive};

    fn cfg(h: usize, folds: usize) -> CvConfig {
        CvConfig::back_to_back(h, folds, 24, 1000)
    }

    #[test]
    fn origins_end_at_the_series_end_and_never_see_the_future() {
        let c = cfg(5, 3);
        assert_eq!(c.origins(100, 10), vec![85, 90, 95]);
        assert_eq!(c.origins(22, 10), vec![12, 17]);
        // The model only ever gets the points before the origin: record what it saw.
        struct Spy(std::sync::Mutex<Vec<f64>>);
        impl crate::Forecaster for Spy {
            fn name(&self) -> String {
                "spy".into()
            }
            fn fit(&self, y: &[f64]) -> Result<Box<dyn crate::Fitted>, crate::ForecastError> {
                self.0.lock().unwrap().push(*y.last().unwrap());
                Naive.fit(y)
            }
        }
        let y: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let spy = Spy(Default::default());
        let r = cross_validate(&spy, &y, &c);
        let seen = spy.0.lock().unwrap().clone();
        // The series is 0, 1, 2, ...: the newest value each fit saw is origin - 1.
        assert_eq!(seen, vec![84.0, 89.0, 94.0]);
        for f in &r.folds {
            assert_eq!(f.truth[0], f.origin as f64);
        }
    }

    #[test]
    fn the_right_model_wins_on_a_seasonal_series() {
        let y: Vec<f64> = (0..24 * 20)
            .map(|i| {
                10.0 + 5.0 * ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin()
                    + 0.1 * crate::tests::noise(i)
            })
            .collect();
        let c = cfg(24, 4);
        let sn = cross_validate(&SeasonalNaive { season: 24 }, &y, &c);
        let nv = cross_validate(&Naive, &y, &c);
        let (s, n) = (sn.scores.unwrap(), nv.scores.unwrap());
        assert!(s.mase < 1.5, "seasonal naive errs only by the noise: {s:?}");
        assert!(n.mase > 10.0 * s.mase, "naive misses the cycle: {n:?}");
        assert!(s.crps < n.crps);
        assert_eq!(s.folds, 4);
    }

    #[test]
    fn failures_are_reported_not_hidden() {
        let y = vec![1.0; 40];
        let r = cross_validate(&SeasonalNaive { season: 30 }, &y, &cfg(5, 3));
        assert!(r.scores.is_none());
        assert_eq!(r.failures.len(), 3);
        assert!(r.failures[0].contains("needs at least 60"));
    }
}
