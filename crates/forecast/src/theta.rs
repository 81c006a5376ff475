//! The Theta method (Assimakopoulos & Nikolopoulos 2000) with optimised parameters
//! (Fiorucci et al. 2016's "optimised Theta model").
//!
//! The series is split into two "theta lines": the least-squares line `A + B t` (theta 0)
//! and `Z_t = θ y_t + (1 - θ)(A + B t)`, which amplifies the local curvature. `Z` is
//! extrapolated by simple exponential smoothing (flat at its last level), the line by
//! itself, and the forecast recombines them with weights `1/θ` and `1 - 1/θ`, which gives
//! back `y` exactly in sample. With `θ = 2` this is the classic method, equal to SES with
//! half the regression slope as drift (Hyndman & Billah 2003). Here `α` and `θ` (at
//! least 1) are chosen by the one-step in-sample squared error, nested golden-section
//! searches costing a few passes over the window, so the model is cheap enough to be
//! refitted at every cross-validation origin.
//!
//! Intervals are those of SES, `σ² (1 + (h - 1) α²)` around the point forecast, with `σ²`
//! the one-step in-sample error variance; [`crate::calibrate`] corrects them on
//! cross-validation residuals.

use crate::prophet::normal_quantile;
use crate::{check_finite, check_levels, ForecastError};

/// A fitted Theta model on a (seasonally adjusted) series.
#[derive(Debug, Clone, PartialEq)]
pub struct ThetaFit {
    /// Smoothing weight of the theta line's level.
    pub alpha: f64,
    /// Theta (2 is the classic method; 1 is plain SES).
    pub theta: f64,
    /// Intercept of the least-squares line (at t = 0, the first point).
    pub intercept: f64,
    /// Slope of the least-squares line per step.
    pub slope: f64,
    /// Level of the theta line after the last point.
    pub level: f64,
    /// Points fitted.
    pub n: usize,
    /// One-step in-sample error standard deviation.
    pub sigma: f64,
}

/// Least-squares intercept and slope of `y` on `t = 0..n`.
pub(crate) fn ols(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    let tm = (n - 1.0) / 2.0;
    let ym = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in y.iter().enumerate() {
        let dt = t as f64 - tm;
        sxy += dt * (v - ym);
        sxx += dt * dt;
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (ym - b * tm, b)
}

/// Runs the model over `y`: returns the one-step squared error sum and the final level
/// of the theta line.
fn pass(y: &[f64], a: f64, b: f64, alpha: f64, theta: f64) -> (f64, f64) {
    let w = 1.0 - 1.0 / theta;
    let line = |t: usize| a + b * t as f64;
    let mut level = theta * y[0] + (1.0 - theta) * line(0);
    let mut sse = 0.0;
    for (t, v) in y.iter().enumerate().skip(1) {
        let e = v - (level / theta + w * line(t));
        sse += e * e;
        level += alpha * (theta * v + (1.0 - theta) * line(t) - level);
    }
    (sse, level)
}

/// Finite values, at least four.
fn check(y: &[f64]) -> Result<(), ForecastError> {
    check_finite(y)?;
    if y.len() < 4 {
        return Err(ForecastError::TooShort {
            model: "theta".into(),
            needed: 4,
            got: y.len(),
        });
    }
    Ok(())
}

/// Minimises `f` on `[lo, hi]` by golden-section search.
fn golden(mut lo: f64, mut hi: f64, iters: usize, mut f: impl FnMut(f64) -> f64) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut x1 = hi - g * (hi - lo);
    let mut x2 = lo + g * (hi - lo);
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..iters {
        if f1 <= f2 {
            hi = x2;
            x2 = x1;
            f2 = f1;
            x1 = hi - g * (hi - lo);
            f1 = f(x1);
        } else {
            lo = x1;
            x1 = x2;
            f1 = f2;
            x2 = lo + g * (hi - lo);
            f2 = f(x2);
        }
    }
    if f1 <= f2 {
        x1
    } else {
        x2
    }
}

/// Largest theta searched (beyond it the model is nearly the regression line).
const MAX_THETA: f64 = 10.0;

impl ThetaFit {
    /// Fits with `theta` fixed (`Some(2.0)`: the classic method) or optimised (`None`).
    pub fn fit(y: &[f64], theta: Option<f64>) -> Result<Self, ForecastError> {
        check(y)?;
        let (a, b) = ols(y);
        let best_alpha = |th: f64| golden(0.001, 0.999, 30, |al| pass(y, a, b, al, th).0);
        let theta = match theta {
            Some(t) if t >= 1.0 => t,
            Some(t) => {
                return Err(ForecastError::Invalid(format!(
                    "theta must be at least 1, got {t}"
                )))
            }
            None => golden(1.0, MAX_THETA, 20, |th| pass(y, a, b, best_alpha(th), th).0),
        };
        Ok(Self::with(y, best_alpha(theta), theta))
    }

    /// The model on `y` (checked) with `alpha` and `theta` given.
    fn with(y: &[f64], alpha: f64, theta: f64) -> Self {
        let (a, b) = ols(y);
        let (sse, level) = pass(y, a, b, alpha, theta);
        Self {
            alpha,
            theta,
            intercept: a,
            slope: b,
            level,
            n: y.len(),
            sigma: (sse / (y.len() - 1) as f64).sqrt(),
        }
    }

    /// Refits on `y` with `alpha` and `theta` held fixed: the line and the level are
    /// recomputed, in one pass (how cross-validation moves the model to a later origin).
    pub fn refit(&self, y: &[f64]) -> Result<Self, ForecastError> {
        check(y)?;
        Ok(Self::with(y, self.alpha, self.theta))
    }

    /// Point forecast `h` steps (1-based) after the last fitted point.
    pub fn point(&self, h: usize) -> f64 {
        let t = (self.n - 1 + h) as f64;
        self.level / self.theta + (1.0 - 1.0 / self.theta) * (self.intercept + self.slope * t)
    }

    /// Quantiles at `levels` for `horizon` steps.
    pub fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        check_levels(levels)?;
        let z: Vec<f64> = levels.iter().map(|p| normal_quantile(*p)).collect();
        Ok((1..=horizon)
            .map(|h| {
                let sd = self.sigma * (1.0 + (h - 1) as f64 * self.alpha * self.alpha).sqrt();
                let p = self.point(h);
                z.iter().map(|z| p + z * sd).collect()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::noise;

    /// SES with a given alpha and initial level: the final level.
    fn ses(y: &[f64], alpha: f64) -> f64 {
        let mut l = y[0];
        for v in &y[1..] {
            l += alpha * (v - l);
        }
        l
    }

    #[test]
    fn classic_theta_is_ses_with_half_the_slope_as_drift() {
        // Hyndman & Billah (2003): with theta = 2 the forecast is the SES level of the
        // theta line halved plus half the line, which they show equals SES on y plus
        // (b/2) (h - 1 + (1 - (1 - a)^n) / a) when the SES starts at its first point.
        let y: Vec<f64> = (0..300)
            .map(|i| 50.0 + 0.05 * i as f64 + 3.0 * noise(i) + (i as f64 / 20.0).sin())
            .collect();
        let f = ThetaFit::fit(&y, Some(2.0)).unwrap();
        let (a, b) = ols(&y);
        assert!((f.intercept - a).abs() < 1e-12 && (f.slope - b).abs() < 1e-12);
        let n = y.len() as f64;
        let al = f.alpha;
        // SES on y started at y[0], then shifted: SES of the theta line started at z(0).
        for h in [1usize, 5, 40] {
            let z: Vec<f64> = (0..y.len())
                .map(|t| 2.0 * y[t] - (a + b * t as f64))
                .collect();
            let direct = ses(&z, al) / 2.0 + 0.5 * (a + b * (n - 1.0 + h as f64));
            assert!((f.point(h) - direct).abs() < 1e-9, "h {h}");
            let hb = ses(&y, al) + b / 2.0 * (h as f64 - 1.0 + (1.0 - (1.0 - al).powf(n)) / al);
            assert!(
                (f.point(h) - hb).abs() < 1e-6,
                "h {h}: {} vs {hb}",
                f.point(h)
            );
        }
    }

    #[test]
    fn optimised_theta_follows_a_trend_and_a_level() {
        // A clean trend: the optimised model extrapolates it.
        let trend: Vec<f64> = (0..500)
            .map(|i| 10.0 + 0.2 * i as f64 + 0.5 * noise(i))
            .collect();
        let f = ThetaFit::fit(&trend, None).unwrap();
        let want = 10.0 + 0.2 * 549.0;
        assert!(
            (f.point(50) - want).abs() < 2.0,
            "{} vs {want}",
            f.point(50)
        );
        // A level that steps up: the forecast sits at the new level, not the old mean.
        let step: Vec<f64> = (0..400)
            .map(|i| if i < 300 { 20.0 } else { 40.0 } + noise(i))
            .collect();
        let g = ThetaFit::fit(&step, None).unwrap();
        assert!((g.point(1) - 40.0).abs() < 2.5, "{g:?} {}", g.point(1));
        // Intervals widen with the lead and hold the noise.
        let q = g.predict(20, &[0.1, 0.5, 0.9]).unwrap();
        assert!(q[19][2] - q[19][0] >= q[0][2] - q[0][0]);
        assert!(q[0][0] < q[0][1] && q[0][1] < q[0][2]);
        assert!(ThetaFit::fit(&[1.0, f64::NAN, 2.0, 3.0], None).is_err());
        assert!(ThetaFit::fit(&[1.0, 2.0], None).is_err());
    }
}
