//! Statistical models from `anofox-forecast` (pinned: its API moves fast), wrapped in the
//! [`Forecaster`] interface:
//!
//! - `ets`: AutoETS over the additive forms (error and trend chosen by AICc, damped trend
//!   allowed) on the series with its season removed first (classical seasonal indices):
//!   direct seasonal fits took 1-2 s on 2,000 points even for an 8-step season;
//! - `mstl`: MSTL decomposition over one or more seasons, AutoETS on trend + remainder and
//!   the last cycle of each season repeated;
//! - `arima`: AutoARIMA (stepwise order search, differencing by unit-root tests), with a
//!   seasonal part for short seasons and on the seasonally adjusted series (classical
//!   seasonal indices) for long ones;
//! - `theta`: the optimised Theta model ([`crate::theta`]) on the seasonally adjusted
//!   series.
//!
//! Quantiles come from each model's own prediction intervals (central intervals at
//! `|2p - 1|`); [`crate::calibrate`] then corrects them on cross-validation residuals.
//!
//! Cross-validation of ETS, Theta and (non-seasonal) ARIMA searches the model form once,
//! at the first origin, and then moves the model to each later origin with that form
//! fixed: ETS filters its state forward with its parameters fixed (what statsforecast's
//! `cross_validation(refit=False)` does), Theta recomputes its line and level with its
//! `alpha` and `theta` fixed, ARIMA re-estimates the chosen order. Each fold still
//! forecasts from the points before its origin only; the search runs once instead of once
//! per fold, and the model moved on to the end of the history is the one selection keeps.

use anofox_forecast::core::TimeSeries;
use anofox_forecast::models::arima::{AutoARIMA, AutoARIMAConfig, ModelOrder, ARIMA, SARIMA};
use anofox_forecast::models::exponential::{AutoETS, AutoETSConfig};
use anofox_forecast::models::mstl_forecaster::MSTLForecaster;
use anofox_forecast::models::Forecaster as AnofoxForecaster;
use anofox_forecast::models::IncrementalForecaster;
use chrono::{TimeZone, Utc};

use crate::theta::ThetaFit;
use crate::{check_finite, check_levels, Fitted, ForecastError, Forecaster};

/// Longest season ARIMA fits directly (seasonal terms); longer seasons are removed
/// first, as they always are for ETS and Theta. anofox's port of R's ARIMA likelihood
/// runs a Kalman filter whose state grows with the season: an AutoARIMA search with a
/// daily season on three weeks of hourly points took 12-20 s, so `--model arima` on
/// them took 2 min 12 s and `auto` never saw it finish within its budget; with the day
/// removed first it takes 0.1 s.
pub const MAX_DIRECT_SEASON: usize = 12;

/// Most recent points ARIMA is fitted on.
pub const ARIMA_WINDOW: usize = 1000;

/// Most recent points ARIMA is fitted on with season `m` (in steps) fitted directly:
/// [`ARIMA_WINDOW`], or three seasons where that is more.
fn arima_window(m: Option<usize>) -> usize {
    ARIMA_WINDOW.max(3 * m.filter(|m| *m <= MAX_DIRECT_SEASON).unwrap_or(0))
}

/// AutoARIMA's search space: R's stepwise Hyndman-Khandakar search with non-seasonal
/// orders up to 3 (R allows 5; higher orders rarely win on infrastructure series and
/// dominate fit time).
fn arima_config(season: Option<usize>) -> AutoARIMAConfig {
    let mut c = AutoARIMAConfig::default().with_max_orders(3, 2, 3);
    c.max_order = 4;
    if let Some(m) = season {
        c = c.with_seasonal_period(m);
    }
    c
}

/// Most recent points ETS is fitted on.
pub const ETS_WINDOW: usize = 2000;

/// Most recent points Theta is fitted on (a week of 5-minute steps).
pub const THETA_WINDOW: usize = 2016;

/// AutoETS over the additive forms only: on seasonally adjusted series, which may cross
/// zero, multiplicative errors make the intervals explode (measured: 1e13 wide a day
/// ahead on a network series).
fn additive_ets() -> AutoETS {
    AutoETS::with_config(AutoETSConfig::non_seasonal().additive_only())
}

/// Which statistical model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    /// AutoETS (on the seasonally adjusted series for long seasons).
    Ets,
    /// MSTL + AutoETS.
    Mstl,
    /// AutoARIMA.
    Arima,
    /// Optimised Theta.
    Theta,
}

/// A statistical model spec with its seasons (in steps, shortest first; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatModel {
    /// The model.
    pub kind: StatKind,
    /// Seasons in steps.
    pub seasons: Vec<usize>,
}

#[derive(Clone)]
enum Inner {
    Ets(AutoETS),
    Mstl(MSTLForecaster),
    Arima(AutoARIMA),
    /// The order AutoARIMA chose, re-estimated at a later cross-validation origin.
    ArimaOrder(ARIMA),
    /// The same for a seasonal order.
    SarimaOrder(SARIMA),
    Theta(Option<ThetaFit>),
}

impl Inner {
    /// The anofox model, for all but Theta.
    fn anofox(&self) -> Option<&dyn AnofoxForecaster> {
        match self {
            Inner::Ets(m) => Some(m),
            Inner::Mstl(m) => Some(m),
            Inner::Arima(m) => Some(m),
            Inner::ArimaOrder(m) => Some(m),
            Inner::SarimaOrder(m) => Some(m),
            Inner::Theta(_) => None,
        }
    }
}

/// Classical seasonal indices: the mean deviation from a centred moving average at each
/// phase, over the history, normalised to sum to zero. Returns the adjusted series and
/// the indices (phase 0 = the first point of `y`).
fn deseasonalize(y: &[f64], m: usize) -> (Vec<f64>, Vec<f64>) {
    let n = y.len();
    // Centred moving average of width m (2 x m for even m).
    let half = m / 2;
    let mut sums = vec![0.0; m];
    let mut counts = vec![0usize; m];
    let prefix: Vec<f64> = std::iter::once(0.0)
        .chain(y.iter().scan(0.0, |s, v| {
            *s += v;
            Some(*s)
        }))
        .collect();
    for t in half..n.saturating_sub(half) {
        let (lo, hi) = (t - half, (t + half).min(n - 1));
        let avg = if m % 2 == 0 && t + half < n && t >= half {
            // 2 x m: average of two windows of m, offset by one.
            let a = (prefix[(t + half).min(n)] - prefix[lo]) / m as f64;
            let b = (prefix[(t + half + 1).min(n)] - prefix[lo + 1]) / m as f64;
            0.5 * (a + b)
        } else {
            (prefix[hi + 1] - prefix[lo]) / (hi + 1 - lo) as f64
        };
        sums[t % m] += y[t] - avg;
        counts[t % m] += 1;
    }
    let mut idx: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| if *c > 0 { s / *c as f64 } else { 0.0 })
        .collect();
    let mean = idx.iter().sum::<f64>() / m as f64;
    for v in &mut idx {
        *v -= mean;
    }
    let adj = y.iter().enumerate().map(|(t, v)| v - idx[t % m]).collect();
    (adj, idx)
}

/// A fitted statistical model.
#[derive(Clone)]
pub struct StatFit {
    inner: Inner,
    /// Seasonal indices removed before fitting, phase 0 = first training point.
    indices: Option<Vec<f64>>,
    n: usize,
    describe: String,
    /// The last points, seasonally adjusted, that Theta's line and level were computed
    /// on or ARIMA was estimated on (empty for the other models), so it can move on over
    /// new ones.
    window: Vec<f64>,
    /// The most points `window` holds: [`THETA_WINDOW`], or ARIMA's [`arima_window`].
    window_len: usize,
}

impl Forecaster for StatModel {
    fn name(&self) -> String {
        match self.kind {
            StatKind::Ets => "ets",
            StatKind::Mstl => "mstl",
            StatKind::Arima => "arima",
            StatKind::Theta => "theta",
        }
        .into()
    }

    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        Ok(Box::new(self.fit_stat(y)?))
    }

    fn refilters(&self) -> bool {
        matches!(self.kind, StatKind::Ets | StatKind::Theta | StatKind::Arima)
    }

    fn fit_origins(
        &self,
        y: &[f64],
        origins: &[usize],
        max_train: usize,
    ) -> Vec<Result<Box<dyn Fitted>, ForecastError>> {
        let cold = || crate::fit_each(self, y, origins, max_train);
        let (StatKind::Ets | StatKind::Theta | StatKind::Arima, Some(&first)) =
            (self.kind, origins.first())
        else {
            return cold();
        };
        let lo = first.saturating_sub(max_train);
        let Ok(fit) = self.fit_stat(&y[lo..first]) else {
            return cold();
        };
        // Estimated once at the first origin; later origins move it on over the points
        // between (see `advance_over`), reading only the points before each origin.
        if matches!(&fit.inner, Inner::Arima(a) if a.selected_full_order().is_none()) {
            return cold();
        }
        let mut out: Vec<Result<Box<dyn Fitted>, ForecastError>> = Vec::new();
        let mut cur = fit;
        let mut at = first;
        for &o in origins {
            let moved = if o > at {
                cur.advance_over(&y[at..o])
            } else {
                Ok(())
            };
            match moved {
                Ok(()) => {
                    at = o;
                    out.push(Ok(Box::new(cur.clone())));
                }
                Err(e) => out.push(Err(e)),
            }
        }
        out
    }
}

impl StatModel {
    fn fit_stat(&self, y: &[f64]) -> Result<StatFit, ForecastError> {
        check_finite(y)?;
        let m = self
            .seasons
            .first()
            .copied()
            .filter(|m| *m >= 2 && y.len() >= 2 * m);
        let needed = m.map_or(8, |m| 2 * m).max(8);
        if y.len() < needed {
            return Err(ForecastError::TooShort {
                model: self.name(),
                needed,
                got: y.len(),
            });
        }
        let long = m.filter(|m| *m > MAX_DIRECT_SEASON);
        let seasons: Vec<usize> = self
            .seasons
            .iter()
            .copied()
            .filter(|s| *s >= 2 && y.len() >= 2 * s)
            .collect();
        let (mut inner, indices) = match (&self.kind, m, long) {
            (StatKind::Ets, Some(m), _) => {
                let (_, idx) = deseasonalize(y, m);
                (Inner::Ets(additive_ets()), Some(idx))
            }
            (StatKind::Mstl, Some(_), _) => {
                (Inner::Mstl(MSTLForecaster::new(seasons.clone())), None)
            }
            (StatKind::Ets, None, _) | (StatKind::Mstl, None, _) => {
                (Inner::Ets(additive_ets()), None)
            }
            (StatKind::Arima, Some(m), None) => (
                Inner::Arima(AutoARIMA::with_config(arima_config(Some(m)))),
                None,
            ),
            (StatKind::Arima, Some(m), Some(_)) => {
                let (_, idx) = deseasonalize(y, m);
                (
                    Inner::Arima(AutoARIMA::with_config(arima_config(None))),
                    Some(idx),
                )
            }
            (StatKind::Arima, None, _) => (
                Inner::Arima(AutoARIMA::with_config(arima_config(None))),
                None,
            ),
            (StatKind::Theta, Some(m), _) => {
                let (_, idx) = deseasonalize(y, m);
                (Inner::Theta(None), Some(idx))
            }
            (StatKind::Theta, None, _) => (Inner::Theta(None), None),
        };
        let adjusted: Vec<f64> = match &indices {
            Some(idx) => y
                .iter()
                .enumerate()
                .map(|(t, v)| v - idx[t % idx.len()])
                .collect(),
            None => y.to_vec(),
        };
        // ARIMA and ETS read the recent past: fitting them on a bounded window keeps the
        // fit fast on long histories (the seasonal indices still use all of it).
        let window = match self.kind {
            StatKind::Arima => arima_window(m),
            StatKind::Ets => ETS_WINDOW,
            StatKind::Theta => THETA_WINDOW,
            StatKind::Mstl => usize::MAX,
        };
        let values = adjusted[adjusted.len().saturating_sub(window)..].to_vec();
        if let Inner::Theta(t) = &mut inner {
            *t = Some(ThetaFit::fit(&values, None)?);
        }
        let kept = match inner {
            Inner::Theta(_) | Inner::Arima(_) => values.clone(),
            _ => Vec::new(),
        };
        let series = series_of(values)?;
        let fail = |e: anofox_forecast::error::ForecastError| {
            ForecastError::Invalid(format!("{} fit failed: {e}", self.name()))
        };
        match &mut inner {
            Inner::Ets(m) => m.fit(&series).map_err(fail)?,
            Inner::Mstl(m) => m.fit(&series).map_err(fail)?,
            Inner::Arima(m) => m.fit(&series).map_err(fail)?,
            Inner::ArimaOrder(m) => m.fit(&series).map_err(fail)?,
            Inner::SarimaOrder(m) => m.fit(&series).map_err(fail)?,
            Inner::Theta(_) => {}
        }
        let detail = match &inner {
            Inner::Ets(e) => e
                .selected_spec()
                .map(|s| format!("ets({:?},{:?},{:?})", s.error, s.trend, s.seasonal))
                .unwrap_or_else(|| "ets".into()),
            Inner::Mstl(_) => format!("mstl({})+ets", join(&seasons)),
            Inner::ArimaOrder(a) => {
                let o = a.spec();
                format!("arima({},{},{})", o.p, o.d, o.q)
            }
            Inner::SarimaOrder(a) => {
                let o = a.spec();
                format!(
                    "arima({},{},{})({},{},{})[{}]",
                    o.p, o.d, o.q, o.cap_p, o.cap_d, o.cap_q, o.s
                )
            }
            Inner::Arima(a) => match a.selected_full_order() {
                Some(o) if o.s > 1 => format!(
                    "arima({},{},{})({},{},{})[{}]",
                    o.p, o.d, o.q, o.cap_p, o.cap_d, o.cap_q, o.s
                ),
                Some(o) => format!("arima({},{},{})", o.p, o.d, o.q),
                None => "arima".into(),
            },
            Inner::Theta(t) => match t {
                Some(t) => format!("theta(theta={:.2}, alpha={:.3})", t.theta, t.alpha),
                None => "theta".into(),
            },
        };
        let describe = match (&indices, m) {
            (Some(_), Some(m)) => format!("{detail} on seasonally adjusted (m={m})"),
            _ => detail,
        };
        Ok(StatFit {
            inner,
            indices,
            n: y.len(),
            describe,
            window: kept,
            window_len: window,
        })
    }
}

/// `order` (as AutoARIMA chose it) estimated on `series`, without searching again.
fn arima_order_fit(order: ModelOrder, series: &TimeSeries) -> Result<Inner, ForecastError> {
    let fail = |e: anofox_forecast::error::ForecastError| {
        ForecastError::Invalid(format!("arima refit failed: {e}"))
    };
    if order.is_seasonal() {
        let mut m = SARIMA::new(
            order.p,
            order.d,
            order.q,
            order.cap_p,
            order.cap_d,
            order.cap_q,
            order.s,
        );
        m.fit(series).map_err(fail)?;
        Ok(Inner::SarimaOrder(m))
    } else {
        let mut m = ARIMA::new(order.p, order.d, order.q);
        m.fit(series).map_err(fail)?;
        Ok(Inner::ArimaOrder(m))
    }
}

/// The values as an anofox series; it wants timestamps, of which only the spacing
/// matters, so one a minute.
fn series_of(values: Vec<f64>) -> Result<TimeSeries, ForecastError> {
    let start = Utc
        .timestamp_opt(946_684_800, 0)
        .single()
        .expect("valid epoch");
    let ts = (0..values.len())
        .map(|i| start + chrono::Duration::minutes(i as i64))
        .collect();
    TimeSeries::univariate(ts, values).map_err(|e| ForecastError::Invalid(e.to_string()))
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// `window` with `new` points added and the oldest let go beyond `len`.
fn moved(window: &[f64], new: Vec<f64>, len: usize) -> Vec<f64> {
    let mut out = window.to_vec();
    out.extend(new);
    out.drain(..out.len().saturating_sub(len));
    out
}

impl StatFit {
    /// The seasonal index removed at `t` points after the first training point.
    fn seasonal(&self, t: usize) -> f64 {
        self.indices.as_ref().map_or(0.0, |i| i[t % i.len()])
    }

    /// The order AutoARIMA chose, for an ARIMA fit.
    fn arima_order(&self) -> Option<ModelOrder> {
        let order = |p, d, q, cap_p, cap_d, cap_q, s| ModelOrder {
            p,
            d,
            q,
            cap_p,
            cap_d,
            cap_q,
            s,
        };
        match &self.inner {
            Inner::Arima(a) => a.selected_full_order(),
            Inner::ArimaOrder(a) => {
                let o = a.spec();
                Some(order(o.p, o.d, o.q, 0, 0, 0, 0))
            }
            Inner::SarimaOrder(a) => {
                let o = a.spec();
                Some(order(o.p, o.d, o.q, o.cap_p, o.cap_d, o.cap_q, o.s))
            }
            _ => None,
        }
    }

    /// The model moved on over `new` points (seasonally adjusted with the indices it was
    /// fitted with), its form kept: ETS filters its state over them; Theta moves its
    /// window over them and recomputes its line and level there with `alpha` and
    /// `theta` kept; ARIMA moves its window over them and estimates the order it chose
    /// there again (the order search is what costs, seconds to a minute with a season
    /// fitted directly, where estimating one order takes milliseconds). MSTL is left as
    /// it is.
    fn advance_over(&mut self, new: &[f64]) -> Result<(), ForecastError> {
        check_finite(new)?;
        let adjusted: Vec<f64> = new
            .iter()
            .enumerate()
            .map(|(j, v)| v - self.seasonal(self.n + j))
            .collect();
        match &mut self.inner {
            Inner::Ets(e) => e
                .update(&adjusted)
                .map_err(|err| ForecastError::Invalid(format!("ets update failed: {err}")))?,
            Inner::Theta(Some(t)) => {
                let window = moved(&self.window, adjusted, self.window_len);
                *t = t.refit(&window)?;
                self.window = window;
            }
            Inner::Arima(_) | Inner::ArimaOrder(_) | Inner::SarimaOrder(_) => {
                let order = self.arima_order().ok_or_else(|| {
                    ForecastError::Invalid("arima refit failed: no order was chosen".into())
                })?;
                let window = moved(&self.window, adjusted, self.window_len);
                self.inner = arima_order_fit(order, &series_of(window.clone())?)?;
                self.window = window;
            }
            _ => {}
        }
        self.n += new.len();
        Ok(())
    }
}

impl Fitted for StatFit {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    /// ETS filters its state over the new points; Theta recomputes its line and level
    /// and ARIMA estimates its order again on their windows moved over them, as
    /// cross-validation moves them to a later origin (seasonal indices, `alpha` and
    /// `theta`, ARIMA's order kept). MSTL is refitted instead.
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        if let Inner::Mstl(_) | Inner::Theta(None) = &self.inner {
            return None;
        }
        let mut next = self.clone();
        Some(
            next.advance_over(new)
                .map(|()| Box::new(next) as Box<dyn Fitted>),
        )
    }

    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        check_levels(levels)?;
        let seasonal = |s: usize| self.seasonal(self.n + s);
        let model = match (&self.inner, self.inner.anofox()) {
            (Inner::Theta(Some(t)), _) => {
                let mut out = t.predict(horizon, levels)?;
                for (s, row) in out.iter_mut().enumerate() {
                    for v in row.iter_mut() {
                        *v += seasonal(s);
                    }
                }
                return Ok(out);
            }
            (_, Some(m)) => m,
            _ => return Err(ForecastError::Invalid("model not fitted".into())),
        };
        let fail = |e: anofox_forecast::error::ForecastError| {
            ForecastError::Invalid(format!("{} predict failed: {e}", self.describe))
        };
        let point = model.predict(horizon).map_err(fail)?.primary().to_vec();
        let mut out = vec![vec![0.0; levels.len()]; horizon];
        let mut cache: Vec<(f64, Vec<f64>, Vec<f64>)> = Vec::new();
        for (j, p) in levels.iter().enumerate() {
            let width = (2.0 * p - 1.0).abs();
            let col: Vec<f64> = if width < 1e-9 {
                point.clone()
            } else {
                if !cache.iter().any(|c| (c.0 - width).abs() < 1e-12) {
                    let f = model.predict_with_intervals(horizon, width).map_err(fail)?;
                    let lo = f.lower().and_then(|l| l.first()).cloned();
                    let hi = f.upper().and_then(|u| u.first()).cloned();
                    let (lo, hi) = match (lo, hi) {
                        (Some(l), Some(h)) if l.len() >= horizon && h.len() >= horizon => (l, h),
                        // No interval from the model: a point mass, which calibration widens.
                        _ => (point.clone(), point.clone()),
                    };
                    cache.push((width, lo, hi));
                }
                let c = cache
                    .iter()
                    .find(|c| (c.0 - width).abs() < 1e-12)
                    .expect("cached");
                if *p < 0.5 {
                    c.1.clone()
                } else {
                    c.2.clone()
                }
            };
            for s in 0..horizon {
                let v = col[s] + seasonal(s);
                out[s][j] = if v.is_finite() {
                    v
                } else {
                    point[s] + seasonal(s)
                };
            }
        }
        for row in &mut out {
            row.sort_by(|a, b| a.total_cmp(b));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::noise;

    fn ar1(n: usize, phi: f64, mean: f64) -> Vec<f64> {
        let mut y = vec![mean];
        for i in 1..n {
            y.push(mean + phi * (y[i - 1] - mean) + noise(i));
        }
        y
    }

    #[test]
    fn arima_finds_an_ar1_and_reverts_to_the_mean() {
        // One window's worth (anofox's stepwise search over-differences some AR(1) windows,
        // e.g. points 500..1500 of this series give (3,1,0); this one gives (1,0,0)).
        let y = ar1(ARIMA_WINDOW, 0.8, 50.0);
        let f = StatModel {
            kind: StatKind::Arima,
            seasons: vec![],
        }
        .fit(&y)
        .unwrap();
        let d = f.describe();
        assert_eq!(d, "arima(1,0,0)");
        let p = f.predict(60, &[0.1, 0.5, 0.9]).unwrap();
        // One step ahead is pulled toward the last value; far ahead toward the mean 50.
        let last = *y.last().unwrap();
        assert!(
            (p[0][1] - (50.0 + 0.8 * (last - 50.0))).abs() < 0.3,
            "{:?} last {last}",
            p[0]
        );
        assert!((p[59][1] - 50.0).abs() < 0.5, "{:?}", p[59]);
        // The interval widens with the lead and holds the noise's spread (sd ~0.29/sqrt(1-0.64)).
        assert!(p[59][2] - p[59][0] > p[0][2] - p[0][0]);
    }

    #[test]
    fn ets_tracks_a_level_and_mstl_a_long_season() {
        let level: Vec<f64> = (0..800).map(|i| 20.0 + noise(i)).collect();
        let e = StatModel {
            kind: StatKind::Ets,
            seasons: vec![],
        }
        .fit(&level)
        .unwrap();
        let p = e.predict(10, &[0.05, 0.5, 0.95]).unwrap();
        assert!((p[9][1] - 20.0).abs() < 0.3, "{:?}", p[9]);
        assert!(e.describe().starts_with("ets("), "{}", e.describe());

        let m = 96;
        let y: Vec<f64> = (0..m * 8)
            .map(|i| {
                10.0 + 4.0 * ((i % m) as f64 / m as f64 * std::f64::consts::TAU).sin()
                    + 0.2 * noise(i)
            })
            .collect();
        let f = StatModel {
            kind: StatKind::Mstl,
            seasons: vec![m],
        }
        .fit(&y)
        .unwrap();
        let p = f.predict(m, &[0.5]).unwrap();
        let truth: Vec<f64> = (0..m)
            .map(|s| {
                10.0 + 4.0 * (((y.len() + s) % m) as f64 / m as f64 * std::f64::consts::TAU).sin()
            })
            .collect();
        let pred: Vec<f64> = p.iter().map(|r| r[0]).collect();
        // The cycle is followed in phase and shape (LOESS smooths the last cycle a little,
        // so the level is off by a fraction of the amplitude of 4).
        let mae = crate::metrics::mase(&truth, &pred, 1.0);
        assert!(mae < 0.75, "mean abs error {mae}");
        let (mt, mp) = (
            truth.iter().sum::<f64>() / m as f64,
            pred.iter().sum::<f64>() / m as f64,
        );
        let cov: f64 = truth
            .iter()
            .zip(&pred)
            .map(|(a, b)| (a - mt) * (b - mp))
            .sum();
        let vt: f64 = truth.iter().map(|a| (a - mt).powi(2)).sum();
        let vp: f64 = pred.iter().map(|b| (b - mp).powi(2)).sum();
        assert!(
            cov / (vt * vp).sqrt() > 0.99,
            "correlation {}",
            cov / (vt * vp).sqrt()
        );
    }

    #[test]
    fn theta_and_arima_on_long_seasons_add_the_season_back() {
        // 60 steps, and a day of hourly steps (24), which ARIMA too fits with the season
        // removed first (a seasonal search took 12-20 s on three weeks of hours).
        for (m, kinds) in [
            (60, &[StatKind::Theta, StatKind::Arima][..]),
            (24, &[StatKind::Arima][..]),
        ] {
            let y: Vec<f64> = (0..m * 6)
                .map(|i| 5.0 + if i % m < m / 6 { 6.0 } else { 0.0 } + 0.1 * noise(i))
                .collect();
            for &kind in kinds {
                let f = StatModel {
                    kind,
                    seasons: vec![m],
                }
                .fit(&y)
                .unwrap();
                assert!(
                    f.describe()
                        .contains(&format!("seasonally adjusted (m={m})")),
                    "{}",
                    f.describe()
                );
                let p = f.predict(m, &[0.5]).unwrap();
                // The first sixth of the next cycle is the high phase.
                let (high, low) = (p[m / 12][0], p[m / 2][0]);
                assert!(high > 9.0 && low < 7.0, "{kind:?} m={m}: {high} {low}");
            }
        }
    }

    /// Box & Jenkins' airline passengers, monthly totals 1949-1960 (thousands).
    const AIR_PASSENGERS: [f64; 144] = [
        112., 118., 132., 129., 121., 135., 148., 148., 136., 119., 104., 118., 115., 126., 141.,
        135., 125., 149., 170., 170., 158., 133., 114., 140., 145., 150., 178., 163., 172., 178.,
        199., 199., 184., 162., 146., 166., 171., 180., 193., 181., 183., 218., 230., 242., 209.,
        191., 172., 194., 196., 196., 236., 235., 229., 243., 264., 272., 237., 211., 180., 201.,
        204., 188., 235., 227., 234., 264., 302., 293., 259., 229., 203., 229., 242., 233., 267.,
        269., 270., 315., 364., 347., 312., 274., 237., 278., 284., 277., 317., 313., 318., 374.,
        413., 405., 355., 306., 271., 306., 315., 301., 356., 348., 355., 422., 465., 467., 404.,
        347., 305., 336., 340., 318., 362., 348., 363., 435., 491., 505., 404., 359., 310., 337.,
        360., 342., 406., 396., 420., 472., 548., 559., 463., 407., 362., 405., 417., 391., 419.,
        461., 472., 535., 622., 606., 508., 461., 390., 432.,
    ];

    #[test]
    fn arima_finds_the_airline_model() {
        let y: Vec<f64> = AIR_PASSENGERS.iter().map(|v| v.ln()).collect();
        let f = StatModel {
            kind: StatKind::Arima,
            seasons: vec![12],
        }
        .fit(&y)
        .unwrap();
        // R: auto.arima(log(AirPassengers)) -> ARIMA(0,1,1)(0,1,1)[12].
        assert_eq!(f.describe(), "arima(0,1,1)(0,1,1)[12]");
        // R's exact-ML fit of that model: ma1 = -0.4018, sma1 = -0.5569 (standard errors
        // 0.090 and 0.073); anofox's estimator lands within about one standard error.
        let start = Utc.timestamp_opt(0, 0).single().unwrap();
        let ts = (0..y.len())
            .map(|i| start + chrono::Duration::minutes(i as i64))
            .collect();
        let series = TimeSeries::univariate(ts, y.clone()).unwrap();
        let mut m = anofox_forecast::models::arima::SARIMA::new(0, 1, 1, 0, 1, 1, 12);
        AnofoxForecaster::fit(&mut m, &series).unwrap();
        let (ma, sma) = (m.ma_coefficients()[0], m.seasonal_ma_coefficients()[0]);
        assert!((ma - -0.4018).abs() < 0.09, "ma1 {ma}");
        assert!((sma - -0.5569).abs() < 0.09, "sma1 {sma}");
        // The forecast keeps the seasonal shape: July above November, a year ahead.
        let p = f.predict(12, &[0.5]).unwrap();
        assert!(p[6][0] > p[10][0] + 0.2, "{p:?}");
        assert!(
            (p[0][0].exp() - 450.0).abs() < 15.0,
            "January 1961: {}",
            p[0][0].exp()
        );
    }

    #[test]
    fn refiltered_folds_never_read_the_future() {
        // ETS, Theta and ARIMA estimate once and refilter to later origins: a fold's
        // forecast must depend only on the points before its origin. Two series equal up
        // to index 700 and different after give the same folds at origins <= 700, and
        // the refiltered models agree with the spec's name.
        let m = 60; // a long season: removed first, so ARIMA stays non-seasonal and fast
        let a: Vec<f64> = (0..900)
            .map(|i| {
                20.0 + 5.0 * ((i % m) as f64 / m as f64 * std::f64::consts::TAU).sin() + noise(i)
            })
            .collect();
        let mut b = a.clone();
        for v in &mut b[700..] {
            *v += 30.0;
        }
        let origins = [600, 650, 700, 800, 900];
        for kind in [StatKind::Ets, StatKind::Theta, StatKind::Arima] {
            let spec = StatModel {
                kind,
                seasons: vec![m],
            };
            assert!(spec.refilters());
            let fa = spec.fit_origins(&a, &origins, 2000);
            let fb = spec.fit_origins(&b, &origins, 2000);
            assert_eq!(fa.len(), origins.len());
            let p = |f: &Result<Box<dyn Fitted>, ForecastError>| {
                f.as_ref().unwrap().predict(6, &[0.1, 0.5, 0.9]).unwrap()
            };
            for k in 0..3 {
                assert_eq!(p(&fa[k]), p(&fb[k]), "{kind:?} origin {}", origins[k]);
            }
            // After the shift the refiltered model follows the new level.
            let (pa, pb) = (p(&fa[4]), p(&fb[4]));
            assert!(pb[0][1] > pa[0][1] + 10.0, "{kind:?}: {pa:?} vs {pb:?}");
            // And at the end it forecasts what a fresh fit does, within the noise.
            let fresh = spec.fit(&a).unwrap().predict(6, &[0.5]).unwrap();
            assert!(
                (pa[0][1] - fresh[0][0]).abs() < 1.5,
                "{kind:?}: {pa:?} vs {fresh:?}"
            );
        }
    }

    #[test]
    fn seasonal_arima_searches_once_and_never_reads_the_future() {
        // A season of six steps is fitted directly (seasonal terms). The order search
        // runs at the first origin only; later origins estimate that order again on the
        // points before them, so two series equal up to an origin give the same fold
        // there, and after a shift the later folds follow it.
        let m = 6;
        let shape = [0.0, 3.0, 6.0, 3.0, 0.0, -2.0];
        let a: Vec<f64> = (0..700).map(|i| 20.0 + shape[i % m] + noise(i)).collect();
        let mut b = a.clone();
        for v in &mut b[600..] {
            *v += 30.0;
        }
        let spec = StatModel {
            kind: StatKind::Arima,
            seasons: vec![m],
        };
        let origins = [500, 550, 600, 650, 700];
        let fa = spec.fit_origins(&a, &origins, 2000);
        let fb = spec.fit_origins(&b, &origins, 2000);
        // A search on b at 700 chooses another order than at 500 ((1,0,0)(2,1,0)[6]
        // for (0,0,0)(1,1,0)[6] when written), so folds searched afresh fail here.
        let first = fa[0].as_ref().unwrap().describe();
        assert!(first.ends_with("[6]"), "{first}");
        for f in fa.iter().chain(&fb) {
            assert_eq!(f.as_ref().unwrap().describe(), first);
        }
        let p = |f: &Result<Box<dyn Fitted>, ForecastError>| {
            f.as_ref().unwrap().predict(6, &[0.1, 0.5, 0.9]).unwrap()
        };
        for k in 0..3 {
            assert_eq!(p(&fa[k]), p(&fb[k]), "origin {}", origins[k]);
        }
        let (pa, pb) = (p(&fa[4]), p(&fb[4]));
        assert!(pb[0][1] > pa[0][1] + 20.0, "{pa:?} vs {pb:?}");
        // At the end the pattern is forecast as a fresh search forecasts it.
        let fresh = spec.fit(&a).unwrap().predict(6, &[0.5]).unwrap();
        for (s, (kept, new)) in pa.iter().zip(&fresh).enumerate() {
            assert!(
                (kept[1] - new[0]).abs() < 0.5,
                "step {s}: {pa:?} vs {fresh:?}"
            );
        }
        for (s, q) in pa.iter().enumerate() {
            let want = 20.0 + shape[(700 + s) % m];
            assert!((q[1] - want).abs() < 0.5, "step {s}: {pa:?}");
        }
    }

    #[test]
    fn ets_advances_as_cross_validation_refilters() {
        // Fitting up to 600 and advancing over 600..750 is what cross-validation does
        // between two origins: the same forecast.
        let m = 60;
        let y: Vec<f64> = (0..900)
            .map(|i| 20.0 + if i % m < 10 { 6.0 } else { 0.0 } + noise(i))
            .collect();
        let spec = StatModel {
            kind: StatKind::Ets,
            seasons: vec![m],
        };
        let folds = spec.fit_origins(&y, &[600, 750], 2000);
        let moved = spec
            .fit(&y[..600])
            .unwrap()
            .advance(&y[600..750])
            .expect("ets advances")
            .unwrap();
        let want = folds[1]
            .as_ref()
            .unwrap()
            .predict(12, &[0.1, 0.5, 0.9])
            .unwrap();
        assert_eq!(moved.predict(12, &[0.1, 0.5, 0.9]).unwrap(), want);
    }

    #[test]
    fn theta_advances_as_cross_validation_moves_it() {
        // Theta recomputes its line and level on its window moved over the new points,
        // alpha and theta kept: the forecast cross-validation gives at the later origin,
        // here with the window full (THETA_WINDOW points) at both.
        let m = 60;
        let y: Vec<f64> = (0..THETA_WINDOW + 700)
            .map(|i| 20.0 + 0.01 * i as f64 + if i % m < 10 { 6.0 } else { 0.0 } + noise(i))
            .collect();
        let spec = StatModel {
            kind: StatKind::Theta,
            seasons: vec![m],
        };
        let (a, b) = (THETA_WINDOW + 300, THETA_WINDOW + 650);
        let folds = spec.fit_origins(&y, &[a, b], 10_000);
        let fitted = spec.fit(&y[..a]).unwrap();
        let moved = fitted.advance(&y[a..b]).expect("theta advances").unwrap();
        let levels = [0.1, 0.5, 0.9];
        let want = folds[1].as_ref().unwrap().predict(12, &levels).unwrap();
        let got = moved.predict(12, &levels).unwrap();
        for (g, w) in got.iter().zip(&want) {
            for (x, z) in g.iter().zip(w) {
                assert!((x - z).abs() < 1e-9, "{got:?} vs {want:?}");
            }
        }
        // It moved: the trend carried the level up by about 0.01 x 350 steps.
        let before = fitted.predict(1, &levels).unwrap()[0][1];
        assert!(got[0][1] - before > 2.0, "{before} -> {}", got[0][1]);
        assert!(fitted.advance(&[1.0, f64::NAN]).unwrap().is_err());
        // ARIMA moves its window and estimates its order there again, as
        // cross-validation does between two origins; MSTL is refitted.
        for seasons in [Vec::new(), vec![6]] {
            let arima = StatModel {
                kind: StatKind::Arima,
                seasons,
            };
            let folds = arima.fit_origins(&y, &[500, 620], 2000);
            let moved = arima
                .fit(&y[..500])
                .unwrap()
                .advance(&y[500..620])
                .expect("arima advances")
                .unwrap();
            let want = folds[1].as_ref().unwrap().predict(12, &levels).unwrap();
            assert_eq!(moved.predict(12, &levels).unwrap(), want);
            assert_eq!(moved.describe(), folds[0].as_ref().unwrap().describe());
        }
        let mstl = StatModel {
            kind: StatKind::Mstl,
            seasons: vec![m],
        };
        assert!(mstl.fit(&y[..500]).unwrap().advance(&y[500..505]).is_none());
    }

    #[test]
    fn deseasonalize_recovers_indices() {
        let m = 4;
        let pattern = [1.0, -1.0, 2.0, -2.0];
        let y: Vec<f64> = (0..40).map(|i| 10.0 + pattern[i % m]).collect();
        let (adj, idx) = deseasonalize(&y, m);
        for (a, b) in idx.iter().zip(pattern) {
            assert!((a - b).abs() < 1e-9, "{idx:?}");
        }
        assert!(adj.iter().all(|v| (v - 10.0).abs() < 1e-9));
    }

    #[test]
    fn too_short_is_a_clear_error() {
        let e = StatModel {
            kind: StatKind::Mstl,
            seasons: vec![288],
        }
        .fit(&[1.0; 5]);
        assert!(matches!(e, Err(ForecastError::TooShort { .. })));
    }
}
