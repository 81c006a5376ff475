//! Forecasting models behind one interface: an unfitted spec ([`Forecaster`]) is fitted
//! to a history and returns a [`Fitted`] model that predicts quantiles over a horizon.
//!
//! The first models are the baselines every later model must beat: naive (last value)
//! and seasonal naive (the value one season ago), each with empirical quantiles of its
//! own past errors at the same lead, so the forecast is a distribution, not a point.
//! Seasonality is detected from the autocorrelation of the history unless configured.
//! ETS, ARIMA, MSTL, Theta, Prophet-style and LSTM models, cross-validated selection and
//! calibration come with the forecasting issue.

use prescale_core::{Forecast, SeriesKey, TimestampMs};
use thiserror::Error;

pub mod auto;
pub mod calibrate;
pub mod clean;
pub mod cv;
#[cfg(feature = "lstm")]
pub mod lstm;
pub mod metrics;
pub mod models;
pub mod profile;
pub mod prophet;
pub mod season;
pub mod spread;
pub mod theta;

pub use auto::{
    calendar_snap, default_candidates, seasons_for, select, AutoSpec, ModelChoice, ScoreKind,
    Selection,
};
pub use calibrate::{Calibrated, Calibration};
pub use cv::{cross_validate, CvConfig, CvReport, Scores};
pub use models::{StatKind, StatModel};
pub use profile::SeasonalAverage;
pub use prophet::ProphetStyle;
pub use season::detect_season;
pub use spread::LevelSpread;

/// A model could not be fitted or could not predict.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ForecastError {
    /// Not enough history for this model.
    #[error("{model} needs at least {needed} points, got {got}; collect more history or use a shorter season")]
    TooShort {
        /// Model name.
        model: String,
        /// Points required.
        needed: usize,
        /// Points available.
        got: usize,
    },
    /// The history contains NaN or infinite values.
    #[error("history contains a non-finite value at index {0}; clean the input")]
    NonFinite(usize),
    /// The request itself is invalid.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// An unfitted model specification.
pub trait Forecaster: Send + Sync {
    /// Short name, e.g. `snaive`.
    fn name(&self) -> String;
    /// Fits the model to `y` (equally spaced, oldest first).
    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError>;

    /// Fits at each cross-validation origin (ascending), on the at most `max_train`
    /// points before it. The default fits afresh at each; a model may instead estimate
    /// its parameters at the first origin and only refilter its state at later ones, as
    /// long as each fold reads nothing at or after its origin.
    fn fit_origins(
        &self,
        y: &[f64],
        origins: &[usize],
        max_train: usize,
    ) -> Vec<Result<Box<dyn Fitted>, ForecastError>> {
        fit_each(self, y, origins, max_train)
    }

    /// Whether [`Forecaster::fit_origins`] estimates once and refilters, so that one more
    /// origin at the end of the history costs next to nothing: cross-validation then
    /// also returns the model at the end, and selection uses it instead of fitting again.
    fn refilters(&self) -> bool {
        false
    }
}

/// `spec` fitted afresh at each origin on the at most `max_train` points before it.
pub fn fit_each<F: Forecaster + ?Sized>(
    spec: &F,
    y: &[f64],
    origins: &[usize],
    max_train: usize,
) -> Vec<Result<Box<dyn Fitted>, ForecastError>> {
    origins
        .iter()
        .map(|&o| spec.fit(&y[o.saturating_sub(max_train)..o]))
        .collect()
}

/// A fitted model shared between a cross-validation report and a selection.
#[derive(Clone)]
pub struct SharedFit(pub std::sync::Arc<dyn Fitted>);

impl std::fmt::Debug for SharedFit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedFit({})", self.0.describe())
    }
}

impl Fitted for SharedFit {
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        self.0.predict(horizon, levels)
    }
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        self.0.advance(new)
    }
}

/// A fitted model, ready to predict.
pub trait Fitted: Send + Sync {
    /// Name with fitted parameters, e.g. `snaive(m=288)`.
    fn describe(&self) -> String;
    /// Quantiles at `levels` (strictly increasing, in (0,1)) for `horizon` steps after
    /// the last fitted point: `out[step][level]`, non-decreasing across levels.
    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError>;

    /// This model moved on over `new` points that followed its history, with its
    /// parameters kept (no search, no training): how the daemon follows new data between
    /// two selections when refitting is costly. `None` when the model cannot, and must
    /// be fitted afresh.
    fn advance(&self, _new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        None
    }
}

fn check_finite(y: &[f64]) -> Result<(), ForecastError> {
    match y.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(ForecastError::NonFinite(i)),
        None => Ok(()),
    }
}

fn check_levels(levels: &[f64]) -> Result<(), ForecastError> {
    if levels.is_empty() {
        return Err(ForecastError::Invalid("no quantile levels".into()));
    }
    for w in levels.windows(2) {
        if w[0] >= w[1] {
            return Err(ForecastError::Invalid(
                "quantile levels must be strictly increasing".into(),
            ));
        }
    }
    if levels.iter().any(|l| !(*l > 0.0 && *l < 1.0)) {
        return Err(ForecastError::Invalid(
            "quantile levels must be in (0, 1)".into(),
        ));
    }
    Ok(())
}

/// Empirical quantile of sorted data with linear interpolation (Hyndman-Fan type 7).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Most recent errors to keep per lead when estimating error quantiles.
const MAX_ERRORS: usize = 4032;

/// [`quantile_sorted`] of `v` as if sorted, found by selecting the two order statistics
/// it interpolates (linear time, where sorting is `n log n`); reorders `v`. `v` must not
/// be empty.
pub fn quantile_unsorted(v: &mut [f64], p: f64) -> f64 {
    quantiles_unsorted(v, &[p])[0]
}

/// [`quantile_unsorted`] at each of `levels` (non-decreasing): each selection after the
/// first searches only the part of `v` above the previous one's order statistic, so
/// several quantiles cost little more than one. Reorders `v`, which must not be empty.
pub fn quantiles_unsorted(v: &mut [f64], levels: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(levels.len());
    // v[from..] holds the order statistics from `from` on (v[..from] those below it).
    let mut from = 0;
    for p in levels {
        let h = (v.len() - 1) as f64 * p.clamp(0.0, 1.0);
        let lo = (h.floor() as usize).max(from);
        let (_, x, rest) = v[from..].select_nth_unstable_by(lo - from, f64::total_cmp);
        let x = *x;
        out.push(if h > lo as f64 {
            let next = rest.iter().copied().fold(f64::INFINITY, f64::min);
            x + (h - lo as f64) * (next - x)
        } else {
            x
        });
        from = lo;
    }
    out
}

/// The `levels` quantiles of the errors `y[t] - y[t - lag]` over the most recent part of
/// the history.
fn lag_error_quantiles(y: &[f64], lag: usize, levels: &[f64]) -> Vec<f64> {
    let mut e: Vec<f64> = lag_errors(y, lag).collect();
    quantiles_unsorted(&mut e, levels)
}

/// The errors `y[t] - y[t - lag]` over the most recent [`MAX_ERRORS`] points of `y`.
fn lag_errors(y: &[f64], lag: usize) -> impl Iterator<Item = f64> + '_ {
    let start = lag.max(y.len().saturating_sub(MAX_ERRORS));
    (start..y.len()).map(move |t| y[t] - y[t - lag])
}

/// `y` followed by `new`, keeping the most recent `keep` points: how the models that are
/// their own recent history (naive, seasonal naive, seasonal averages) move on.
fn extended(y: &[f64], new: &[f64], keep: usize) -> Result<Vec<f64>, ForecastError> {
    check_finite(new).map_err(|e| match e {
        ForecastError::NonFinite(i) => ForecastError::NonFinite(y.len() + i),
        e => e,
    })?;
    let mut v: Vec<f64> = y.iter().chain(new).copied().collect();
    let cut = v.len().saturating_sub(keep);
    v.drain(..cut);
    Ok(v)
}

/// Naive: every future step equals the last value; the spread at lead `h` is the
/// empirical distribution of `y[t] - y[t-h]` in the history.
#[derive(Debug, Clone, Default)]
pub struct Naive;

struct NaiveFit {
    y: Vec<f64>,
}

impl Forecaster for Naive {
    fn name(&self) -> String {
        "naive".into()
    }
    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        check_finite(y)?;
        if y.len() < 2 {
            return Err(ForecastError::TooShort {
                model: "naive".into(),
                needed: 2,
                got: y.len(),
            });
        }
        let keep = y.len().min(MAX_ERRORS * 2);
        Ok(Box::new(NaiveFit {
            y: y[y.len() - keep..].to_vec(),
        }))
    }
}

impl Fitted for NaiveFit {
    fn describe(&self) -> String {
        "naive".into()
    }
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        Some(
            extended(&self.y, new, MAX_ERRORS * 2)
                .map(|y| Box::new(NaiveFit { y }) as Box<dyn Fitted>),
        )
    }
    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        check_levels(levels)?;
        let last = *self.y.last().expect("fitted on non-empty data");
        let max_lag = self.y.len() - 1;
        let mut cached: Option<(usize, Vec<f64>)> = None;
        (1..=horizon)
            .map(|h| {
                // Beyond 32 steps the spread changes slowly with the lead: measure it on a
                // grid of about 32 lags per doubling instead of at every lead (a day of
                // 5-minute steps would otherwise measure 288 error sets). Beyond the
                // history's reach, reuse the widest lead we can measure.
                let lag = if h <= 32 { h } else { h - h % h.div_ceil(32) }.min(max_lag);
                if cached.as_ref().is_none_or(|(l, _)| *l != lag) {
                    cached = Some((lag, lag_error_quantiles(&self.y, lag, levels)));
                }
                let q = &cached.as_ref().expect("just cached").1;
                Ok(q.iter().map(|e| last + e).collect())
            })
            .collect()
    }
}

/// Seasonal naive: step `h` equals the value one season before it; the spread is the
/// empirical distribution of `y[t] - y[t - k*m]` where `k` seasons separate the forecast
/// from the value it repeats.
#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    /// Season length in steps (at least 2).
    pub season: usize,
}

struct SeasonalNaiveFit {
    y: Vec<f64>,
    m: usize,
}

impl Forecaster for SeasonalNaive {
    fn name(&self) -> String {
        "snaive".into()
    }
    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        let m = self.season;
        Ok(Box::new(SeasonalNaiveFit {
            y: seasonal_history(y, m)?,
            m,
        }))
    }
}

/// Most errors a seasonal naive forecast needs beyond the season it repeats: a day of
/// five-minute steps.
pub const SEASONAL_MIN_ERRORS: usize = 288;

/// The part of `y` a seasonal naive forecast with season `m` keeps, once `y` is checked:
/// finite, `m` at least 2, and one season to repeat plus as much again (at most
/// [`SEASONAL_MIN_ERRORS`]) to measure errors on.
///
/// A week of five-minute steps with a whole second week before it asked two weeks of
/// every fold: with a fortnight of history (the simulator's), no fold had them, and the
/// weekly candidate was never judged. On an office-hours service's weekends the daily
/// candidates forecast Friday's hours, and naive, chosen instead, carried a band learnt
/// from the openings and closings.
fn seasonal_history(y: &[f64], m: usize) -> Result<Vec<f64>, ForecastError> {
    check_finite(y)?;
    if m < 2 {
        return Err(ForecastError::Invalid(format!(
            "season must be at least 2 steps, got {m}"
        )));
    }
    let needed = m + m.min(SEASONAL_MIN_ERRORS);
    if y.len() < needed {
        return Err(ForecastError::TooShort {
            model: format!("snaive(m={m})"),
            needed,
            got: y.len(),
        });
    }
    let keep = y.len().min(MAX_ERRORS + 4 * m);
    Ok(y[y.len() - keep..].to_vec())
}

impl Fitted for SeasonalNaiveFit {
    fn describe(&self) -> String {
        format!("snaive(m={})", self.m)
    }
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        let m = self.m;
        Some(
            extended(&self.y, new, MAX_ERRORS + 4 * m)
                .map(|y| Box::new(SeasonalNaiveFit { y, m }) as Box<dyn Fitted>),
        )
    }
    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        check_levels(levels)?;
        let (n, m) = (self.y.len(), self.m);
        let mut cache: Vec<(usize, Vec<f64>)> = Vec::new();
        let mut out = Vec::with_capacity(horizon);
        for h in 1..=horizon {
            let k = h.div_ceil(m);
            // The forecast for step h repeats y[n - 1 + h - k*m].
            let point = self.y[n - 1 + h - k * m];
            let lag = (k * m).min(n - 1);
            if !cache.iter().any(|(l, _)| *l == lag) {
                cache.push((lag, lag_error_quantiles(&self.y, lag, levels)));
            }
            let q = &cache.iter().find(|(l, _)| *l == lag).expect("cached").1;
            out.push(q.iter().map(|e| point + e).collect());
        }
        Ok(out)
    }
}

/// The better of naive and seasonal naive at each lead, by the mean absolute error of
/// their own past forecasts at that lead over the recent history: naive (the last value)
/// for the first leads while it is the closer, seasonal naive (the value a season
/// before) from the first lead where it is not. Within a season naive's error grows with
/// the lead and seasonal naive's does not, so one switch is enough. On a smooth series
/// with a weekly cycle the last value is much closer over the next minutes than last
/// week's, which also carries last week's one-off surges into this week's plan; an
/// hourly job that seasonal naive foresees keeps it from the first lead.
#[derive(Debug, Clone)]
pub struct LeadwiseNaive {
    /// Season length in steps (at least 2).
    pub season: usize,
}

struct LeadwiseNaiveFit {
    /// Leads (from 1) forecast by naive.
    naive_leads: usize,
    seasonal: SeasonalNaiveFit,
}

/// Mean of the absolute [`lag_errors`].
fn lag_mean_abs_error(y: &[f64], lag: usize) -> f64 {
    let (sum, n) = lag_errors(y, lag).fold((0.0, 0usize), |(s, n), e| (s + e.abs(), n + 1));
    sum / n.max(1) as f64
}

impl LeadwiseNaiveFit {
    fn new(y: Vec<f64>, m: usize) -> Self {
        let seasonal = lag_mean_abs_error(&y, m);
        let naive_leads = (1..=m)
            .take_while(|h| lag_mean_abs_error(&y, *h) < seasonal)
            .count();
        LeadwiseNaiveFit {
            naive_leads,
            seasonal: SeasonalNaiveFit { y, m },
        }
    }
}

impl Forecaster for LeadwiseNaive {
    fn name(&self) -> String {
        "leadwise-naive".into()
    }
    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        let m = self.season;
        Ok(Box::new(LeadwiseNaiveFit::new(seasonal_history(y, m)?, m)))
    }
}

impl Fitted for LeadwiseNaiveFit {
    fn describe(&self) -> String {
        match self.naive_leads {
            0 => self.seasonal.describe(),
            k => format!("naive to lead {k}, then {}", self.seasonal.describe()),
        }
    }
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        let m = self.seasonal.m;
        Some(
            extended(&self.seasonal.y, new, MAX_ERRORS + 4 * m)
                .map(|y| Box::new(LeadwiseNaiveFit::new(y, m)) as Box<dyn Fitted>),
        )
    }
    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        let mut out = self.seasonal.predict(horizon, levels)?;
        let y = &self.seasonal.y;
        let last = *y.last().expect("fitted on at least two seasons");
        for (h, row) in out.iter_mut().enumerate().take(self.naive_leads) {
            let q = lag_error_quantiles(y, h + 1, levels);
            *row = q.iter().map(|e| last + e).collect();
        }
        Ok(out)
    }
}

/// Picks seasonal naive when a season is configured or detected and the history covers
/// two of them, naive otherwise.
#[derive(Debug, Clone, Default)]
pub struct AutoBaseline {
    /// A configured season in steps; `None` detects it.
    pub season: Option<usize>,
    /// Longest season to look for, in steps, when detecting.
    pub max_season: Option<usize>,
}

impl Forecaster for AutoBaseline {
    fn name(&self) -> String {
        "auto-baseline".into()
    }
    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        check_finite(y)?;
        let season = self.season.or_else(|| {
            let max = self.max_season.unwrap_or(y.len() / 2).min(y.len() / 2);
            detect_season(y, 2, max)
        });
        match season {
            Some(m) if y.len() >= 2 * m => SeasonalNaive { season: m }.fit(y),
            _ => Naive.fit(y),
        }
    }
}

/// Fits `model` to `y` and wraps its prediction in a validated [`Forecast`]; values
/// below `floor` (e.g. 0 for demand) are raised to it, which keeps quantiles ordered.
#[allow(clippy::too_many_arguments)]
pub fn forecast(
    model: &dyn Fitted,
    series: SeriesKey,
    last_ts: TimestampMs,
    step_ms: i64,
    horizon: usize,
    levels: &[f64],
    floor: Option<f64>,
) -> Result<Forecast, ForecastError> {
    let mut values = model.predict(horizon, levels)?;
    if let Some(f) = floor {
        for row in &mut values {
            for v in row.iter_mut() {
                *v = v.max(f);
            }
        }
    }
    Forecast::new(
        series,
        model.describe(),
        last_ts,
        last_ts + step_ms,
        step_ms,
        levels.to_vec(),
        values,
    )
    .map_err(|e| ForecastError::Invalid(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fitted constant forecast: `.0` with quantiles `.0 + (p - 0.5) * .1`.
    pub(crate) struct FixedFit(pub(crate) f64, pub(crate) f64);
    impl Fitted for FixedFit {
        fn describe(&self) -> String {
            format!("fixed({}, {})", self.0, self.1)
        }
        fn predict(&self, h: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
            Ok(vec![
                levels
                    .iter()
                    .map(|p| self.0 + (p - 0.5) * self.1)
                    .collect();
                h
            ])
        }
    }

    /// Deterministic uniform noise in [-0.5, 0.5) (splitmix64 of the index).
    pub(crate) fn noise(i: usize) -> f64 {
        let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    #[test]
    fn quantile_unsorted_is_quantile_sorted_without_the_sort() {
        for n in [1usize, 2, 3, 10, 101, 288] {
            let v: Vec<f64> = (0..n).map(|i| noise(i * 7 + n) * 100.0).collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            for p in [0.0, 0.05, 0.1, 0.5, 0.9, 0.95, 0.975, 1.0] {
                let mut w = v.clone();
                let got = quantile_unsorted(&mut w, p);
                let want = quantile_sorted(&sorted, p);
                assert!((got - want).abs() < 1e-12, "n {n} p {p}: {got} vs {want}");
            }
            // Several levels at once, repeated ones too, on ties as well.
            let levels = [0.0, 0.05, 0.1, 0.1, 0.5, 0.9, 0.95, 0.975, 1.0];
            let tied: Vec<f64> = v.iter().map(|x| (x / 20.0).round()).collect();
            let mut tied_sorted = tied.clone();
            tied_sorted.sort_by(f64::total_cmp);
            for (src, sorted) in [(&v, &sorted), (&tied, &tied_sorted)] {
                let got = quantiles_unsorted(&mut src.clone(), &levels);
                for (g, p) in got.iter().zip(levels) {
                    let want = quantile_sorted(sorted, p);
                    assert!((g - want).abs() < 1e-12, "n {n} p {p}: {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let m = 24;
        let y: Vec<f64> = (0..240).map(|i| (i % m) as f64).collect();
        let f = SeasonalNaive { season: m }.fit(&y).unwrap();
        let p = f.predict(50, &[0.1, 0.5, 0.9]).unwrap();
        for (h, row) in p.iter().enumerate() {
            let expected = ((240 + h) % m) as f64;
            // A perfectly periodic series has zero error: all quantiles collapse.
            assert_eq!(row, &vec![expected; 3], "step {h}");
        }
        assert_eq!(f.describe(), "snaive(m=24)");
    }

    #[test]
    fn leadwise_naive_takes_the_last_value_while_it_is_closer_than_last_season() {
        // A daily cycle whose level moves from day to day, and a surge to 60 at hour 10
        // of yesterday only. The history ends at hour 8 today: seasonal naive repeats
        // yesterday's level and surge, naive follows today's level.
        let m = 24;
        let mut y: Vec<f64> = (0..9 * m + 9)
            .map(|i| {
                let day_level = 10.0 + 4.0 * noise(1000 + i / m);
                day_level
                    + 3.0 * (i as f64 * std::f64::consts::TAU / m as f64).sin()
                    + 0.2 * noise(i)
            })
            .collect();
        for v in &mut y[8 * m + 10..8 * m + 13] {
            *v = 60.0;
        }
        let levels = [0.05, 0.5, 0.95];
        let all = SeasonalNaive { season: m }
            .fit(&y)
            .unwrap()
            .predict(m, &levels)
            .unwrap();
        assert!(
            all[1][1] >= 60.0,
            "seasonal naive repeats the surge: {:?}",
            all[1]
        );
        let f = LeadwiseNaive { season: m }.fit(&y).unwrap();
        let k = f.describe();
        assert!(
            k.starts_with("naive to lead ") && k.ends_with(", then snaive(m=24)"),
            "{k}"
        );
        let switch: usize = k["naive to lead ".len()..]
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((2..m).contains(&switch), "{k}");
        let p = f.predict(m, &levels).unwrap();
        // Up to the switch, the last value plus naive's errors at that lead: the surge
        // is not repeated.
        let last = *y.last().unwrap();
        for (h, row) in p.iter().enumerate().take(switch) {
            let mut e: Vec<f64> = (h + 1..y.len()).map(|t| y[t] - y[t - h - 1]).collect();
            let want: Vec<f64> = quantiles_unsorted(&mut e, &levels)
                .iter()
                .map(|e| last + e)
                .collect();
            assert_eq!(row, &want, "lead {}", h + 1);
        }
        assert!(p[1][2] < 30.0, "{:?}", p[1]);
        // From the switch on, seasonal naive's rows.
        assert_eq!(p[switch..], all[switch..]);

        // An hourly spike seasonal naive foresees: seasonal from the first lead.
        let y: Vec<f64> = (0..10 * 12)
            .map(|i| if i % 12 == 5 { 80.0 } else { 8.0 + noise(i) })
            .collect();
        let f = LeadwiseNaive { season: 12 }.fit(&y).unwrap();
        assert_eq!(f.describe(), "snaive(m=12)");
        let p = f.predict(12, &levels).unwrap();
        assert!(p.iter().any(|r| r[1] >= 80.0), "{p:?}");
    }

    #[test]
    fn history_models_move_on_as_if_fitted_on_the_longer_history() {
        // Naive, seasonal naive and the seasonal averages have no parameters beyond their
        // recent history: moving one on over new points equals fitting it on all of them,
        // also past the history they keep.
        let y: Vec<f64> = (0..12_000)
            .map(|i| 10.0 + (i % 48) as f64 * 0.3 + noise(i))
            .collect();
        let models: Vec<Box<dyn Forecaster>> = vec![
            Box::new(Naive),
            Box::new(SeasonalNaive { season: 48 }),
            Box::new(LeadwiseNaive { season: 48 }),
            Box::new(profile::SeasonalAverage {
                season: 48,
                cycles: 5,
                median: true,
            }),
        ];
        let levels = [0.05, 0.5, 0.95];
        for m in &models {
            for cut in [11_990, 6_000] {
                let moved = m
                    .fit(&y[..cut])
                    .unwrap()
                    .advance(&y[cut..])
                    .unwrap()
                    .unwrap();
                let direct = m.fit(&y).unwrap();
                assert_eq!(
                    moved.predict(60, &levels).unwrap(),
                    direct.predict(60, &levels).unwrap(),
                    "{} from {cut}",
                    m.name()
                );
            }
            let e = m.fit(&y[..500]).unwrap().advance(&[1.0, f64::NAN]).unwrap();
            assert!(e.is_err(), "{}: NaN accepted", m.name());
        }
    }

    #[test]
    fn quantiles_match_the_noise_distribution() {
        // Seasonal signal plus uniform noise in [-0.5, 0.5): the error of seasonal naive
        // is the difference of two such draws (triangular on [-1, 1]), whose 10% and 90%
        // quantiles are -1 + sqrt(0.2) and 1 - sqrt(0.2) (about ±0.553).
        let m = 12;
        let y: Vec<f64> = (0..6000)
            .map(|i| 10.0 + (i % m) as f64 + noise(i))
            .collect();
        let f = SeasonalNaive { season: m }.fit(&y).unwrap();
        let p = f.predict(1, &[0.1, 0.5, 0.9]).unwrap();
        let point = y[6000 - m];
        let q = 1.0 - 0.2f64.sqrt();
        assert!((p[0][0] - (point - q)).abs() < 0.05, "{:?}", p[0]);
        assert!((p[0][1] - point).abs() < 0.05);
        assert!((p[0][2] - (point + q)).abs() < 0.05);
    }

    #[test]
    fn naive_spread_grows_with_the_lead_on_a_random_walk() {
        let mut y = vec![0.0];
        for i in 1..3000 {
            y.push(y[i - 1] + noise(i));
        }
        let f = Naive.fit(&y).unwrap();
        let p = f.predict(20, &[0.05, 0.95]).unwrap();
        let w1 = p[0][1] - p[0][0];
        let w20 = p[19][1] - p[19][0];
        assert!(w20 > 2.5 * w1, "width at 1: {w1}, at 20: {w20}");
        for row in &p {
            assert!(row[0] <= row[1]);
        }
    }

    #[test]
    fn auto_detects_the_season_or_falls_back() {
        let y: Vec<f64> = (0..500)
            .map(|i| 5.0 * (2.0 * std::f64::consts::PI * i as f64 / 50.0).sin() + noise(i))
            .collect();
        let f = AutoBaseline::default().fit(&y).unwrap();
        assert_eq!(f.describe(), "snaive(m=50)");
        let flat: Vec<f64> = (0..500).map(noise).collect();
        assert_eq!(
            AutoBaseline::default().fit(&flat).unwrap().describe(),
            "naive"
        );
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            SeasonalNaive { season: 10 }.fit(&[1.0; 15]),
            Err(ForecastError::TooShort { .. })
        ));
        assert!(matches!(
            Naive.fit(&[1.0, f64::NAN, 2.0]),
            Err(ForecastError::NonFinite(1))
        ));
        let f = Naive.fit(&[1.0, 2.0, 3.0]).unwrap();
        assert!(f.predict(2, &[0.9, 0.1]).is_err());
    }

    #[test]
    fn forecast_wrapper_builds_valid_forecasts_with_a_floor() {
        let y = vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        let f = Naive.fit(&y).unwrap();
        let key = SeriesKey::metric("d").unwrap();
        let fc = forecast(
            f.as_ref(),
            key,
            1000,
            60_000,
            3,
            &[0.05, 0.5, 0.95],
            Some(0.0),
        )
        .unwrap();
        assert_eq!(fc.start, 61_000);
        assert!(fc.values.iter().flatten().all(|v| *v >= 0.0));
    }
}
