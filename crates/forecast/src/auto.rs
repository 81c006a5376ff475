//! Model selection by cross-validation: every candidate goes through the same
//! rolling-origin folds, the best by the configured score wins (optionally the top `k`
//! averaged quantile by quantile), and its quantiles are calibrated on the winner's own
//! fold residuals. The [`Selection`] records every candidate's scores and why the winner
//! won.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::calibrate::{calibrated_folds, Calibrated, Calibration};
use crate::cv::{cross_validate, score, CvConfig, CvReport, Fold, Scores};
use crate::models::{StatKind, StatModel};
use crate::{
    detect_season, Fitted, ForecastError, Forecaster, Naive, SeasonalAverage, SeasonalNaive,
};

/// Which score picks the winner (lower is better for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// Scaled CRPS (pinball loss over the levels): judges the whole distribution.
    #[default]
    Crps,
    /// Mean absolute scaled error of the median.
    Mase,
    /// Symmetric MAPE of the median.
    Smape,
}

impl ScoreKind {
    fn of(self, s: &Scores) -> f64 {
        match self {
            ScoreKind::Crps => s.crps,
            ScoreKind::Mase => s.mase,
            ScoreKind::Smape => s.smape,
        }
    }
}

/// One candidate's result.
#[derive(Debug, Clone, Serialize)]
pub struct Ranked {
    /// Candidate name (e.g. `snaive(m=288)`).
    pub model: String,
    /// Scores over the folds, when it produced any forecast (of its calibrated folds when
    /// the selection calibrates: what it would have output).
    pub scores: Option<Scores>,
    /// Why folds failed.
    pub failures: Vec<String>,
}

/// The outcome of a selection.
#[derive(Debug, Clone, Serialize)]
pub struct Selection {
    /// Every candidate, best first (failed ones last).
    pub ranking: Vec<Ranked>,
    /// The chosen model (or ensemble).
    pub winner: String,
    /// The score used.
    pub score: ScoreKind,
    /// Why the winner won, in words.
    pub reason: String,
    /// Cross-validation residuals behind the calibration (0 when not calibrated).
    pub calibration_residuals: usize,
    /// Scores of the winner (or ensemble) over the folds, when cross-validated.
    pub winner_scores: Option<Scores>,
    /// How to refit the winner on newer data without selecting again.
    #[serde(skip)]
    pub recipe: Option<Recipe>,
}

/// The winner of a selection as a reusable recipe: its model specs (one, or the members
/// of an ensemble) and the calibration learnt for it. Refitting a recipe on new data is
/// one fit per member, no cross-validation.
#[derive(Clone)]
pub struct Recipe {
    /// Model specs; more than one means a quantile-averaged ensemble.
    pub specs: Vec<Arc<dyn Forecaster>>,
    /// Conformal shifts, when calibrated.
    pub calibration: Option<Calibration>,
    /// Longest training window.
    pub max_train: usize,
    /// Each member as selected (uncalibrated, in the order of `specs`), for
    /// [`Recipe::refresh`]; empty when not kept.
    pub member_fits: Vec<crate::SharedFit>,
    /// The seasons (in steps) at which a spike that recurs is no lone glitch
    /// ([`crate::clean::without_glitches`]): those the selection was given.
    pub periods: Vec<usize>,
}

impl std::fmt::Debug for Recipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.specs.iter().map(|s| s.name()).collect();
        f.debug_struct("Recipe")
            .field("specs", &names)
            .field("calibrated", &self.calibration.is_some())
            .finish()
    }
}

impl Recipe {
    /// Fits the recipe's models on `y` (its lone glitches taken out, as for the
    /// selection: [`crate::clean`]) and applies its calibration.
    pub fn refit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        let (y, _) = crate::clean::without_glitches(y, &self.periods);
        let lo = y.len().saturating_sub(self.max_train);
        let fitted = self
            .specs
            .iter()
            .map(|s| s.fit(&y[lo..]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.assemble(fitted))
    }

    /// The selected model brought up to date with `y`, whose last `new` points came
    /// after the selection: each member that can move on over them does, parameters
    /// kept ([`Fitted::advance`]), the others are refitted on `y` (so an ensemble with
    /// one member that cannot move on, such as ARIMA, does not refit them all); then the
    /// calibration. Without the members as selected, or with `new` beyond `y`, a
    /// [`Recipe::refit`].
    pub fn refresh(&self, y: &[f64], new: usize) -> Result<Box<dyn Fitted>, ForecastError> {
        if self.member_fits.len() != self.specs.len() || new > y.len() {
            return self.refit(y);
        }
        let (y, _) = crate::clean::without_glitches(y, &self.periods);
        let tail = &y[y.len() - new..];
        let lo = y.len().saturating_sub(self.max_train);
        let fitted = self
            .specs
            .iter()
            .zip(&self.member_fits)
            .map(|(spec, f)| match f.advance(tail) {
                Some(moved) => moved,
                None => spec.fit(&y[lo..]),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.assemble(fitted))
    }

    /// Fitted members as one model (an ensemble when several), calibrated.
    fn assemble(&self, mut fitted: Vec<Box<dyn Fitted>>) -> Box<dyn Fitted> {
        let model: Box<dyn Fitted> = if fitted.len() == 1 {
            fitted.pop().expect("one")
        } else {
            Box::new(Ensemble { members: fitted })
        };
        match &self.calibration {
            Some(c) => Box::new(Calibrated {
                inner: model,
                calibration: c.clone(),
            }),
            None => model,
        }
    }
}

/// The default candidates for a series with the given seasons (in steps), cheapest first;
/// ARIMA only `with_arima`.
///
/// Theta and ETS are always in: cross-validation estimates them once and refilters
/// (see [`crate::models`]), so they cost about one fit each. [`AutoSpec`] adds ARIMA
/// only for horizons of at least a quarter of a day (or of the season): re-estimating its
/// order at every origin of a short horizon's many folds costs several times the rest
/// together, and on
/// the shared 5-minute folds it improved only the day-ahead forecasts (geometric-mean
/// MASE 0.760 without, 0.736 with). MSTL is left to `--model mstl`: it refits at every
/// origin and did not improve any horizon there (0.757 day ahead).
pub fn default_candidates(seasons: &[usize], with_arima: bool) -> Vec<Arc<dyn Forecaster>> {
    let mut v: Vec<Arc<dyn Forecaster>> = vec![Arc::new(Naive)];
    for m in seasons {
        v.push(Arc::new(SeasonalNaive { season: *m }));
    }
    // Cheapest first: under a time budget the baselines always finish.
    let mut kinds = vec![StatKind::Theta, StatKind::Ets];
    if with_arima {
        kinds.push(StatKind::Arima);
    }
    for kind in kinds {
        v.push(Arc::new(StatModel {
            kind,
            seasons: seasons.to_vec(),
        }));
    }
    v
}

/// Seasons to model for `y`: the configured one, or the detected one; plus a weekly
/// season when the first is daily (`day` steps) and the history holds two weeks.
///
/// A detected season within [`CALENDAR_SNAP`] of a day or a week is taken as exactly
/// that: on a noisy history the autocorrelation peak lands a step or two off (289 for a
/// 5-minute day), and a seasonal model one step off the day drifts a step a day, its
/// indices smeared over the history it averages.
pub fn seasons_for(y: &[f64], configured: Option<usize>, day: Option<usize>) -> Vec<usize> {
    let m = configured.or_else(|| {
        detect_season(y, 2, y.len() / 2).map(|m| day.map_or(m, |d| calendar_snap(m, d)))
    });
    let mut v: Vec<usize> = m.into_iter().collect();
    if let (Some(m), Some(d)) = (m, day) {
        if m == d && y.len() >= 2 * 7 * d {
            v.push(7 * d);
        }
    }
    v
}

/// How close (a share of its length) a detected season must come to a day or a week to
/// be taken as one.
pub const CALENDAR_SNAP: f64 = 0.02;

/// `m`, or the day (`day` steps) or week it is within [`CALENDAR_SNAP`] of.
pub fn calendar_snap(m: usize, day: usize) -> usize {
    [day, 7 * day]
        .into_iter()
        .find(|&c| (m as f64 - c as f64).abs() <= CALENDAR_SNAP * c as f64)
        .unwrap_or(m)
}

/// Keeps, of the candidates that completed at least half as many folds as the most
/// complete one, only the folds they all completed, and scores them on those: a
/// candidate whose season needs more history than the earliest folds had is compared
/// with the rest where it could forecast, rather than ranked after them all for the
/// folds it never could. On a day of five-minute history with an hourly pattern, the
/// 6-step selection chose naive (scaled CRPS 0.54 over five folds) over seasonal naive
/// (0.10 over the four with two hours of history). Candidates with fewer folds keep
/// theirs and are ranked after (as is everything when those shared are fewer).
fn on_shared_folds(reports: &mut [(usize, CvReport)], y: &[f64], cv: &CvConfig) {
    let most = reports
        .iter()
        .map(|(_, r)| r.folds.len())
        .max()
        .unwrap_or(0);
    let comparable = |r: &CvReport| r.scores.is_some() && 2 * r.folds.len() >= most;
    let mut shared: Option<std::collections::BTreeSet<usize>> = None;
    for (_, r) in reports.iter().filter(|(_, r)| comparable(r)) {
        let origins = r.folds.iter().map(|f| f.origin);
        shared = Some(match shared {
            None => origins.collect(),
            Some(s) => origins.filter(|o| s.contains(o)).collect(),
        });
    }
    let Some(shared) = shared.filter(|s| 2 * s.len() >= most && s.len() < most) else {
        return;
    };
    for (_, r) in reports.iter_mut() {
        if comparable(r) && r.folds.len() > shared.len() {
            r.folds.retain(|f| shared.contains(&f.origin));
            r.scores = score(y, &r.folds, cv);
        }
    }
}

/// Cross-validates `candidates` on `y` and fits the winner (or top-`ensemble` average) on
/// all of `y`, calibrated on its fold residuals when `calibrate` is set. With
/// `ensemble == 0` the mean of the top three is chosen when it scores better than the
/// best single model on the same folds.
///
/// Candidates run on one thread per core. With a `budget`, candidates whose
/// cross-validation has not finished when it runs out are left out of the ranking (as
/// failures saying so); their threads finish in the background and are ignored.
#[allow(clippy::too_many_arguments)]
pub fn select(
    y: &[f64],
    candidates: &[Arc<dyn Forecaster>],
    cv: &CvConfig,
    score_kind: ScoreKind,
    ensemble: usize,
    calibrate: bool,
    budget: Option<Duration>,
    mut progress: impl FnMut(&str),
) -> Result<(Box<dyn Fitted>, Selection), ForecastError> {
    let started = Instant::now();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(candidates.len())
        .max(1);
    let queue = Arc::new(std::sync::Mutex::new(
        // Popped from the back: reversed so the cheap baselines (listed first) go first.
        candidates
            .iter()
            .cloned()
            .enumerate()
            .rev()
            .collect::<Vec<_>>(),
    ));
    let data: Arc<Vec<f64>> = Arc::new(y.to_vec());
    let (tx, rx) = std::sync::mpsc::channel::<(usize, CvReport)>();
    for _ in 0..workers {
        let (tx, queue, data, cv) = (tx.clone(), queue.clone(), data.clone(), cv.clone());
        std::thread::spawn(move || loop {
            let job = queue.lock().map(|mut q| q.pop());
            let Ok(Some((i, c))) = job else { break };
            let r = cross_validate(c.as_ref(), &data, &cv);
            if tx.send((i, r)).is_err() {
                break;
            }
        });
    }
    drop(tx);
    let mut reports: Vec<(usize, CvReport)> = Vec::new();
    while reports.len() < candidates.len() {
        // Once the budget is spent, wait on only while no candidate has scores yet: the
        // cheapest candidates go first, so a loaded machine waits for them rather than
        // failing the selection.
        let scored = reports.iter().any(|(_, r)| r.scores.is_some());
        let left = budget.map(|b| b.saturating_sub(started.elapsed()));
        let got = match left {
            Some(left) if !left.is_zero() => match rx.recv_timeout(left) {
                Ok(x) => Some(x),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !scored => continue,
                Err(_) => None,
            },
            Some(_) if scored => None,
            _ => rx.recv().ok(),
        };
        let Some((i, r)) = got else { break };
        progress(&r.model);
        reports.push((i, r));
    }
    if let Ok(mut q) = queue.lock() {
        q.clear(); // nothing new starts once the budget is spent
    }
    for (i, c) in candidates.iter().enumerate() {
        if !reports.iter().any(|(j, _)| *j == i) {
            reports.push((
                i,
                CvReport {
                    model: c.name(),
                    folds: Vec::new(),
                    scores: None,
                    failures: vec![format!(
                        "cross-validation did not finish within the {:.1} s budget",
                        budget.unwrap_or_default().as_secs_f64()
                    )],
                    at_end: None,
                },
            ));
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    on_shared_folds(&mut reports, y, cv);
    let name_of = |r: &CvReport| {
        r.folds
            .last()
            .map(|f| f.model.clone())
            .unwrap_or_else(|| r.model.clone())
    };
    let levels = cv.all_levels();
    // With calibration on, candidates are ranked by their calibrated folds (see
    // [`calibrated_folds`]).
    if calibrate {
        for (_, r) in reports.iter_mut() {
            if r.scores.is_some() {
                r.scores = score(y, &calibrated_folds(&r.folds, &levels), cv).or(r.scores.take());
            }
        }
    }
    let mut ok: Vec<&(usize, CvReport)> =
        reports.iter().filter(|(_, r)| r.scores.is_some()).collect();
    ok.sort_by(|a, b| {
        let (sa, sb) = (
            a.1.scores.as_ref().expect("ok"),
            b.1.scores.as_ref().expect("ok"),
        );
        // Candidates with fewer folds are ranked after complete ones.
        b.1.folds
            .len()
            .cmp(&a.1.folds.len())
            .then(score_kind.of(sa).total_cmp(&score_kind.of(sb)))
    });
    let mut ranking: Vec<Ranked> = ok
        .iter()
        .map(|(_, r)| Ranked {
            model: name_of(r),
            scores: r.scores.clone(),
            failures: r.failures.clone(),
        })
        .collect();
    for (_, r) in reports.iter().filter(|(_, r)| r.scores.is_none()) {
        ranking.push(Ranked {
            model: r.model.clone(),
            scores: None,
            failures: r.failures.clone(),
        });
    }
    let Some(best) = ok.first() else {
        let why: Vec<String> = ranking
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.model,
                    r.failures.first().cloned().unwrap_or_default()
                )
            })
            .collect();
        return Err(ForecastError::Invalid(format!(
            "no model could be cross-validated on {} points: {}",
            y.len(),
            why.join("; ")
        )));
    };
    // `ensemble == 0`: the mean of the top three competes with the best single model
    // on the same folds (no refits needed: fold quantiles are averaged).
    let mut k = ensemble.max(1).min(ok.len());
    if ensemble == 0 && ok.len() >= 3 {
        let top: Vec<&CvReport> = ok.iter().take(3).map(|(_, r)| r).collect();
        let avg = average_folds(&top);
        if avg.len() == best.1.folds.len() {
            let avg = if calibrate {
                calibrated_folds(&avg, &levels)
            } else {
                avg
            };
            if let (Some(e), Some(b)) = (score(y, &avg, cv), best.1.scores.as_ref()) {
                if score_kind.of(&e) < score_kind.of(b) {
                    k = 3;
                }
            }
        }
    }
    let members: Vec<&(usize, CvReport)> = ok.iter().take(k).copied().collect();
    // Folds of the chosen model or ensemble (ensembles average members' fold quantiles).
    let folds: Vec<Fold> = if k == 1 {
        best.1.folds.clone()
    } else {
        average_folds(&members.iter().map(|m| &m.1).collect::<Vec<_>>())
    };
    let mut member_fits: Vec<crate::SharedFit> = Vec::new();
    for (i, r) in &members {
        // A model that refilters was already moved on to the end of the history.
        member_fits.push(match &r.at_end {
            Some(f) => f.clone(),
            None => {
                let lo = y.len().saturating_sub(cv.max_train);
                crate::SharedFit(Arc::from(candidates[*i].fit(&y[lo..])?))
            }
        });
    }
    let raw = score(y, &folds, cv).expect("folds exist");
    // The winner's scores on the footing it was ranked on (calibrated, when selection
    // calibrates), so the reason compares like with like.
    let winner_scores = if calibrate {
        score(y, &calibrated_folds(&folds, &levels), cv).unwrap_or_else(|| raw.clone())
    } else {
        raw.clone()
    };
    // The runner-up: the best single model when an ensemble won, else the second.
    let runner = if k > 1 {
        Some(&best.1)
    } else {
        ok.get(1).map(|(_, r)| r)
    };
    let mut reason = format!(
        "{} has the lowest {:?} ({:.4}) over {} folds of {} steps",
        if k == 1 {
            name_of(&best.1)
        } else {
            format!("the mean of the top {k}")
        },
        score_kind,
        score_kind.of(&winner_scores),
        folds.len(),
        cv.horizon
    );
    if let Some(r) = runner {
        let s = r.scores.as_ref().expect("ok");
        reason.push_str(&format!(
            "; next best {} at {:.4}",
            name_of(r),
            score_kind.of(s)
        ));
    }
    reason.push_str(&format!(
        "; 80% interval covered {:.0}% of held-out points before calibration",
        raw.coverage80 * 100.0
    ));
    let calibration = calibrate
        .then(|| Calibration::fit(&folds, &levels))
        .flatten()
        .map(|c| c.with_change_caps(&y[y.len().saturating_sub(cv.max_train)..]));
    let residuals = calibration.as_ref().map_or(0, |c| c.residuals);
    let recipe = Recipe {
        specs: members
            .iter()
            .map(|(i, _)| candidates[*i].clone())
            .collect(),
        calibration,
        max_train: cv.max_train,
        member_fits,
        periods: Vec::new(),
    };
    // The selected model is the recipe's members as selected, assembled as a refresh
    // assembles them.
    let model = recipe.assemble(
        recipe
            .member_fits
            .iter()
            .map(|f| Box::new(f.clone()) as Box<dyn Fitted>)
            .collect(),
    );
    let winner = model.describe();
    Ok((
        model,
        Selection {
            ranking,
            winner,
            score: score_kind,
            reason,
            calibration_residuals: residuals,
            winner_scores: Some(winner_scores),
            recipe: Some(recipe),
        },
    ))
}

fn average_folds(reports: &[&CvReport]) -> Vec<Fold> {
    let first = reports[0];
    first
        .folds
        .iter()
        .filter_map(|f| {
            let same: Vec<&Fold> = reports
                .iter()
                .filter_map(|r| r.folds.iter().find(|g| g.origin == f.origin))
                .collect();
            (same.len() == reports.len()).then(|| Fold {
                origin: f.origin,
                truth: f.truth.clone(),
                quantiles: mean_quantiles(&same.iter().map(|g| &g.quantiles).collect::<Vec<_>>()),
                seconds: same.iter().map(|g| g.seconds).sum(),
                model: "ensemble".into(),
            })
        })
        .collect()
}

fn mean_quantiles(qs: &[&Vec<Vec<f64>>]) -> Vec<Vec<f64>> {
    let n = qs.len() as f64;
    (0..qs[0].len())
        .map(|s| {
            (0..qs[0][s].len())
                .map(|j| qs.iter().map(|q| q[s][j]).sum::<f64>() / n)
                .collect()
        })
        .collect()
}

/// Quantile averaging of several fitted models.
pub struct Ensemble {
    /// The members.
    pub members: Vec<Box<dyn Fitted>>,
}

impl Fitted for Ensemble {
    fn describe(&self) -> String {
        let names: Vec<String> = self.members.iter().map(|m| m.describe()).collect();
        format!("ensemble[{}]", names.join(" + "))
    }
    fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
        let preds = self
            .members
            .iter()
            .map(|m| m.predict(horizon, levels))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(mean_quantiles(&preds.iter().collect::<Vec<_>>()))
    }
    fn advance(&self, new: &[f64]) -> Option<Result<Box<dyn Fitted>, ForecastError>> {
        let members = self
            .members
            .iter()
            .map(|m| m.advance(new))
            .collect::<Option<Result<Vec<_>, _>>>()?;
        Some(members.map(|members| Box::new(Ensemble { members }) as Box<dyn Fitted>))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::noise;

    /// Predicts the length of the history it was fitted on; cannot move on without it.
    struct Len;
    struct LenFit(f64);
    impl Forecaster for Len {
        fn name(&self) -> String {
            "len".into()
        }
        fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
            Ok(Box::new(LenFit(y.len() as f64)))
        }
    }
    impl Fitted for LenFit {
        fn describe(&self) -> String {
            "len".into()
        }
        fn predict(&self, horizon: usize, levels: &[f64]) -> Result<Vec<Vec<f64>>, ForecastError> {
            Ok(vec![vec![self.0; levels.len()]; horizon])
        }
    }

    #[test]
    fn refresh_moves_on_the_members_that_can_and_refits_the_others() {
        let y: Vec<f64> = (0..200).map(|i| 5.0 + noise(i)).collect();
        let (old, new) = y.split_at(150);
        let specs: Vec<Arc<dyn Forecaster>> = vec![Arc::new(crate::Naive), Arc::new(Len)];
        let member_fits = specs
            .iter()
            .map(|s| crate::SharedFit(Arc::from(s.fit(old).unwrap())))
            .collect();
        let recipe = Recipe {
            specs,
            calibration: None,
            max_train: 120,
            member_fits,
            periods: Vec::new(),
        };
        let levels = [0.1, 0.5, 0.9];
        let got = recipe
            .refresh(&y, new.len())
            .unwrap()
            .predict(3, &levels)
            .unwrap();
        // Naive moved on over the new points (the same as a fit on the longer history);
        // Len was refitted on the recipe's training window of the whole history.
        // Every quantile is the mean of the naive one and Len's 120.
        let mean_with_len = |got: &[Vec<f64>], naive: &[Vec<f64>]| {
            for (g, n) in got.iter().zip(naive) {
                for (a, b) in g.iter().zip(n) {
                    assert!((a - (b + 120.0) / 2.0).abs() < 1e-9, "{g:?} vs {n:?}");
                }
            }
        };
        let naive = crate::Naive.fit(&y).unwrap().predict(3, &levels).unwrap();
        mean_with_len(&got, &naive);
        // Without the members as selected, a refit of both.
        let bare = Recipe {
            member_fits: Vec::new(),
            ..recipe.clone()
        };
        let refit = bare
            .refresh(&y, new.len())
            .unwrap()
            .predict(3, &levels)
            .unwrap();
        let naive = crate::Naive
            .fit(&y[80..])
            .unwrap()
            .predict(3, &levels)
            .unwrap();
        mean_with_len(&refit, &naive);
    }

    /// A square daily-like cycle of `m` steps with a little noise, and day-long folds.
    fn clean_cycle(m: usize) -> (Vec<f64>, CvConfig) {
        let y = (0..m * 30)
            .map(|i| 10.0 + if i % m < 6 { 8.0 } else { 0.0 } + 0.3 * noise(i))
            .collect();
        let cv = CvConfig::back_to_back(m, 3, m, 2000);
        (y, cv)
    }

    #[test]
    fn a_fortnight_of_office_hours_judges_the_weekly_seasonal_naive() {
        // Two weeks of five-minute steps from a Sunday: 180 from 09:00 to 18:00 on
        // weekdays, 25 otherwise. Selected at the end of a Saturday, the folds are that
        // Saturday's: the daily seasonal naive forecasts Friday's office hours there,
        // naive a band learnt from the openings and closings; a week ago was a Saturday.
        let (day, week) = (288usize, 2016usize);
        let y: Vec<f64> = (0..2 * week)
            .map(|i| {
                let weekday = (i / day + 6) % 7; // 0 = Monday
                let hour = (i % day) as f64 / 12.0;
                let open = weekday < 5 && (9.0..18.0).contains(&hour);
                (if open { 180.0 } else { 25.0 }) + noise(i)
            })
            .collect();
        let spec = AutoSpec {
            choice: ModelChoice::Auto,
            season: None,
            day: Some(day),
            horizon: 27,
            folds: 3,
            levels: vec![0.05, 0.5, 0.95],
            score: ScoreKind::Crps,
            budget: None,
        };
        let prep = spec.plan(&y).unwrap();
        assert!(prep.seasons.contains(&week), "{:?}", prep.seasons);
        // The baselines only, to keep the test quick: the weekly one now has folds (it
        // asked two whole weeks of each before), and wins them.
        let cands: Vec<Arc<dyn Forecaster>> = prep
            .candidates
            .iter()
            .filter(|c| c.name().contains("naive"))
            .cloned()
            .collect();
        assert!(cands.len() >= 3, "naive and both seasonal naives");
        let (model, sel) =
            select(&y, &cands, &prep.cv, ScoreKind::Crps, 1, true, None, |_| {}).unwrap();
        assert!(sel.winner.starts_with("snaive(m=2016)"), "{sel:?}");
        // Sunday forecast as last Sunday: quiet all day, the band the noise's.
        let f = model.predict(27, &[0.05, 0.5, 0.95]).unwrap();
        assert!(f.iter().all(|q| q[2] < 40.0), "{f:?}");
        // One week to repeat and a day of errors: a week and a day.
        let weekly = SeasonalNaive { season: week };
        assert!(weekly.fit(&y[..week + 288]).is_ok());
        match weekly.fit(&y[..week + 287]) {
            Err(ForecastError::TooShort { needed, .. }) => assert_eq!(needed, week + 288),
            other => panic!("{:?}", other.map(|f| f.describe())),
        }
    }

    #[test]
    fn a_lone_glitch_is_taken_out_before_selecting_and_the_reason_says_so() {
        // A daily cycle with one reading a hundred times its level: the season is still
        // found, and the band stays the cycle's.
        let cycle: Vec<f64> = (0..2_016)
            .map(|i| 10.0 + 5.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin())
            .collect();
        let mut y = cycle.clone();
        y[1_900] = 1_000.0;
        let spec = AutoSpec {
            choice: ModelChoice::Auto,
            season: None,
            day: Some(288),
            horizon: 12,
            folds: 3,
            levels: vec![0.05, 0.5, 0.95],
            score: ScoreKind::Crps,
            budget: None,
        };
        let (fitted, sel) = spec.run(&y, |_| {}).unwrap();
        assert!(sel.reason.contains("1 lone glitch(es)"), "{}", sel.reason);
        let (_, calm) = spec.run(&cycle, |_| {}).unwrap();
        assert_eq!(sel.winner, calm.winner);
        let top = fitted.predict(12, &[0.05, 0.5, 0.95]).unwrap()[11][2];
        assert!(top < 20.0, "{top}");
        // And a refit of its recipe on the same history takes it out too.
        let refit = sel.recipe.unwrap().refit(&y).unwrap();
        assert!(refit.predict(12, &[0.05, 0.5, 0.95]).unwrap()[11][2] < 20.0);
    }

    #[test]
    fn picks_seasonal_naive_on_a_clean_cycle_and_says_why() {
        let m = 24;
        let (y, cv) = clean_cycle(m);
        let cands: Vec<Arc<dyn Forecaster>> =
            vec![Arc::new(Naive), Arc::new(SeasonalNaive { season: m })];
        let (model, sel) = select(&y, &cands, &cv, ScoreKind::Crps, 1, true, None, |_| {}).unwrap();
        let again = sel.recipe.as_ref().unwrap().refit(&y).unwrap();
        assert_eq!(
            again.predict(m, &[0.1, 0.5, 0.9]).unwrap(),
            model.predict(m, &[0.1, 0.5, 0.9]).unwrap(),
            "refitting the recipe on the same data gives the same forecast"
        );
        assert!(sel.winner.starts_with("snaive(m=24)"), "{sel:?}");
        assert!(sel.reason.contains("lowest Crps"), "{}", sel.reason);
        assert!(sel.reason.contains("next best naive"), "{}", sel.reason);
        // Both figures on the ranking's footing: the winner's is the lower, and is its
        // score in the ranking.
        let figure = |after: &str| -> f64 {
            let rest = &sel.reason[sel.reason.find(after).expect(after) + after.len()..];
            let end = rest
                .find(|c: char| c != '.' && !c.is_ascii_digit())
                .unwrap();
            rest[..end].parse().unwrap()
        };
        let (won, next) = (figure("lowest Crps ("), figure("next best naive at "));
        assert!(won <= next, "{}", sel.reason);
        let ranked = sel.ranking[0].scores.as_ref().unwrap().crps;
        assert!((won - ranked).abs() < 1e-4, "{} vs {ranked}", sel.reason);
        assert_eq!(sel.ranking.len(), 2);
        assert!(sel.calibration_residuals > 0);
        let p = model.predict(m, &[0.1, 0.5, 0.9]).unwrap();
        assert!(p[2][1] > 16.0 && p[12][1] < 12.0, "{:?} {:?}", p[2], p[12]);
    }

    #[test]
    fn a_season_too_long_for_the_earliest_fold_competes_on_the_folds_it_had() {
        // An hourly pattern (12 steps) over 108 steps; five 6-step folds 24 apart, the
        // earliest with 6 steps of history, too few for two hours: seasonal naive forecasts
        // the other four perfectly, naive all five badly.
        let y: Vec<f64> = (0..108)
            .map(|i| if i % 12 < 3 { 80.0 } else { 50.0 } + noise(i))
            .collect();
        let cv = CvConfig {
            step: 24,
            ..CvConfig::back_to_back(6, 5, 12, 1000)
        };
        assert_eq!(cv.origins(y.len(), 2)[0], 6);
        let cands: Vec<Arc<dyn Forecaster>> =
            vec![Arc::new(Naive), Arc::new(SeasonalNaive { season: 12 })];
        let (_, sel) = select(&y, &cands, &cv, ScoreKind::Crps, 1, true, None, |_| {}).unwrap();
        assert!(sel.winner.starts_with("snaive(m=12)"), "{sel:?}");
        assert!(sel.reason.contains("over 4 folds"), "{}", sel.reason);
        // Both are ranked on the same four folds, and snaive's failure is still shown.
        let folds: Vec<usize> = sel
            .ranking
            .iter()
            .map(|r| r.scores.as_ref().unwrap().folds)
            .collect();
        assert_eq!(folds, vec![4, 4]);
        assert!(sel.ranking[0].failures[0].contains("origin 6"), "{sel:?}");
        // A candidate that completed fewer than half the folds is still ranked after,
        // however well it did: a four-hour season fits only the last of nine.
        let cv = CvConfig {
            step: 12,
            ..CvConfig::back_to_back(6, 9, 12, 1000)
        };
        let cands: Vec<Arc<dyn Forecaster>> =
            vec![Arc::new(Naive), Arc::new(SeasonalNaive { season: 48 })];
        let (_, sel) = select(&y, &cands, &cv, ScoreKind::Crps, 1, true, None, |_| {}).unwrap();
        assert!(sel.winner.starts_with("naive"), "{sel:?}");
        let folds = |k: usize| sel.ranking[k].scores.as_ref().unwrap().folds;
        assert_eq!((folds(0), folds(1)), (9, 1), "{sel:?}");
    }

    #[test]
    fn a_spent_budget_still_waits_for_the_first_scored_candidate() {
        let m = 24;
        let (y, cv) = clean_cycle(m);
        let cands: Vec<Arc<dyn Forecaster>> =
            vec![Arc::new(Naive), Arc::new(SeasonalNaive { season: m })];
        // A budget no machine meets: the selection waits for the first candidate rather
        // than failing, and says which ones it left out.
        let (_, sel) = select(
            &y,
            &cands,
            &cv,
            ScoreKind::Crps,
            1,
            true,
            Some(Duration::from_nanos(1)),
            |_| {},
        )
        .unwrap();
        assert!(sel.ranking.iter().any(|r| r.scores.is_some()), "{sel:?}");
        assert_eq!(sel.ranking.len(), 2);
    }

    /// A constant forecast: `centre` with quantiles `centre + (p - 0.5) * spread`.
    struct Fixed {
        centre: f64,
        spread: f64,
    }
    impl Forecaster for Fixed {
        fn name(&self) -> String {
            format!("fixed({}, {})", self.centre, self.spread)
        }
        fn fit(&self, _: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
            Ok(Box::new(crate::tests::FixedFit(self.centre, self.spread)))
        }
    }

    #[test]
    fn ranks_by_the_calibrated_forecast_not_the_raw_intervals() {
        // Uniform noise on [9.5, 10.5): `sharp` has the right median and far too narrow
        // intervals; `biased` is off by 0.3 with roughly right intervals. Raw CRPS
        // prefers `biased`; once calibration widens `sharp`'s intervals it is better,
        // and that is what the selection (which calibrates its winner) must pick.
        let y: Vec<f64> = (0..600).map(|i| 10.0 + noise(i)).collect();
        let cv = CvConfig::back_to_back(12, 8, 1, 1000);
        let sharp = Fixed {
            centre: 10.0,
            spread: 0.01,
        };
        let biased = Fixed {
            centre: 10.3,
            spread: 1.0,
        };
        let raw = |f: &dyn Forecaster| cross_validate(f, &y, &cv).scores.unwrap().crps;
        assert!(
            raw(&biased) < raw(&sharp),
            "raw CRPS must prefer the biased model here"
        );
        let cands: Vec<Arc<dyn Forecaster>> = vec![Arc::new(biased), Arc::new(sharp)];
        let (model, sel) = select(&y, &cands, &cv, ScoreKind::Crps, 1, true, None, |_| {}).unwrap();
        assert!(sel.winner.starts_with("fixed(10, 0.01)"), "{sel:?}");
        // Calibrated, its 80% interval is about the noise's (±0.4).
        let q = model.predict(1, &[0.1, 0.5, 0.9]).unwrap();
        assert!((q[0][2] - q[0][0] - 0.8).abs() < 0.2, "{q:?}");
    }

    #[test]
    fn ensembles_average_members() {
        let y: Vec<f64> = (0..300).map(|i| (i % 10) as f64 + noise(i)).collect();
        let cv = CvConfig {
            levels: vec![0.5],
            ..CvConfig::back_to_back(5, 3, 10, 1000)
        };
        let cands: Vec<Arc<dyn Forecaster>> =
            vec![Arc::new(Naive), Arc::new(SeasonalNaive { season: 10 })];
        let (model, sel) =
            select(&y, &cands, &cv, ScoreKind::Mase, 2, false, None, |_| {}).unwrap();
        assert!(sel.winner.starts_with("ensemble["), "{}", sel.winner);
        let a = Naive.fit(&y).unwrap().predict(5, &[0.5]).unwrap();
        let b = SeasonalNaive { season: 10 }
            .fit(&y)
            .unwrap()
            .predict(5, &[0.5])
            .unwrap();
        let e = model.predict(5, &[0.5]).unwrap();
        for s in 0..5 {
            assert!((e[s][0] - (a[s][0] + b[s][0]) / 2.0).abs() < 1e-9);
        }
    }

    #[test]
    fn all_failing_is_an_error_naming_each_candidate() {
        let cv = CvConfig {
            levels: vec![0.5],
            ..CvConfig::back_to_back(5, 2, 1, 100)
        };
        let cands: Vec<Arc<dyn Forecaster>> = vec![Arc::new(SeasonalNaive { season: 50 })];
        let e = select(
            &[1.0; 30],
            &cands,
            &cv,
            ScoreKind::Crps,
            1,
            true,
            None,
            |_| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("snaive"), "{e}");
    }

    #[test]
    fn model_names_agree_with_the_configuration() {
        for name in ModelChoice::NAMES {
            match ModelChoice::parse(name) {
                Ok(_) => {}
                Err(e) if name == "lstm" && !cfg!(feature = "lstm") => {
                    assert!(e.contains("--features lstm"), "{e}")
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
        // The configuration accepts exactly these plus the inline baseline.
        let mut config: Vec<&str> = prescale_core::model::MODEL_NAMES.to_vec();
        config.retain(|n| *n != "baseline");
        assert_eq!(config, ModelChoice::NAMES.to_vec());
        assert!(ModelChoice::parse("bogus").unwrap_err().contains("theta"));
    }

    #[test]
    fn seasons_add_a_week_to_a_day() {
        let day = 24;
        let y: Vec<f64> = (0..day * 15).map(|i| ((i % day) as f64).sin()).collect();
        assert_eq!(seasons_for(&y, Some(day), Some(day)), vec![24, 168]);
        assert_eq!(seasons_for(&y[..day * 10], Some(day), Some(day)), vec![24]);
        assert_eq!(seasons_for(&y, Some(12), Some(day)), vec![12]);
    }

    #[test]
    fn a_season_detected_a_step_off_the_day_is_the_day() {
        // A cycle of 101 steps where a day is 100 (a 5-minute day's peak detected at 289
        // rather than 288): modelled as the day, so the week joins it.
        let day = 100;
        let cycle = |period: usize| -> Vec<f64> {
            (0..day * 15)
                .map(|i| (i as f64 / period as f64 * std::f64::consts::TAU).sin())
                .collect()
        };
        let y = cycle(101);
        assert_eq!(detect_season(&y, 2, y.len() / 2), Some(101));
        assert_eq!(seasons_for(&y, None, Some(day)), vec![100, 700]);
        // Without a calendar, and for a cycle well off the day, what was detected.
        assert_eq!(seasons_for(&y, None, None), vec![101]);
        let y = cycle(96);
        assert_eq!(seasons_for(&y, None, Some(day)), vec![96]);
        // Near a week, the week.
        assert_eq!(calendar_snap(707, day), 700);
        assert_eq!(calendar_snap(650, day), 650);
    }
}

/// Seasons a seasonal-average candidate looks back over.
pub const AVERAGE_CYCLES: usize = 5;

/// Held-out points the selection wants at least (more folds for short horizons).
pub const MIN_CV_POINTS: usize = 48;

/// Fewest folds for a long horizon (see [`AutoSpec::plan`]).
pub const LONG_FOLDS: usize = 6;

/// Most folds added to reach [`MIN_CV_POINTS`].
pub const MAX_FOLDS: usize = 16;

/// Which model (or selection) a forecast uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelChoice {
    /// Cross-validated choice among all candidates and the mean of the top three.
    Auto,
    /// Quantile average of the best three candidates.
    Ensemble,
    /// Last value.
    Naive,
    /// Value one season ago.
    Snaive,
    /// AutoETS (on the seasonally adjusted series for long seasons).
    Ets,
    /// MSTL + ETS.
    Mstl,
    /// AutoARIMA.
    Arima,
    /// AutoTheta.
    Theta,
    /// Prophet-style additive model (MAP fit with normal priors).
    Prophet,
    /// DeepAR-style LSTM (builds with the `lstm` feature only).
    Lstm,
}

impl ModelChoice {
    /// Parses a model name as the command line spells it.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Self::Auto,
            "ensemble" => Self::Ensemble,
            "naive" => Self::Naive,
            "snaive" => Self::Snaive,
            "ets" => Self::Ets,
            "mstl" => Self::Mstl,
            "arima" => Self::Arima,
            "theta" => Self::Theta,
            "prophet" => Self::Prophet,
            "lstm" if cfg!(feature = "lstm") => Self::Lstm,
            "lstm" => {
                return Err(
                    "model \"lstm\" is not in this build: rebuild with `--features lstm` (it adds candle, a few minutes to compile), or use another model"
                        .to_string(),
                )
            }
            other => {
                return Err(format!(
                    "unknown model {other:?}; use {}",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }

    /// The names [`ModelChoice::parse`] accepts.
    pub const NAMES: [&'static str; 10] = [
        "auto", "ensemble", "naive", "snaive", "ets", "mstl", "arima", "theta", "prophet", "lstm",
    ];
}

/// Everything `prescale forecast` needs to turn a history into a calibrated forecast:
/// seasons, candidates, cross-validation and calibration. Also a [`Forecaster`], so the
/// whole procedure can itself be cross-validated (nested) by `backtest`.
#[derive(Debug, Clone)]
pub struct AutoSpec {
    /// Model or selection.
    pub choice: ModelChoice,
    /// Configured season in steps (`None` detects it).
    pub season: Option<usize>,
    /// Steps per day, when the step divides a day (adds a weekly season, scales MASE).
    pub day: Option<usize>,
    /// Steps to forecast (and to cross-validate).
    pub horizon: usize,
    /// Cross-validation folds (at least; short horizons get more, see [`MIN_CV_POINTS`]).
    pub folds: usize,
    /// Levels to score and calibrate.
    pub levels: Vec<f64>,
    /// Selection score.
    pub score: ScoreKind,
    /// Wall-clock budget for cross-validating the candidates (`None`: no limit).
    pub budget: Option<Duration>,
}

/// What [`AutoSpec::plan`] decides for a history.
pub struct Prepared {
    /// Seasons in steps, shortest first.
    pub seasons: Vec<usize>,
    /// Candidate models.
    pub candidates: Vec<Arc<dyn Forecaster>>,
    /// The cross-validation that judges them.
    pub cv: CvConfig,
}

impl AutoSpec {
    /// The seasons, candidates and cross-validation for history `y`.
    pub fn plan(&self, y: &[f64]) -> Result<Prepared, ForecastError> {
        let seasons = seasons_for(y, self.season, self.day);
        let m = seasons.first().copied();
        // A daily seasonal naive is always worth a try when a day of steps is known.
        let day_snaive = self
            .day
            .filter(|d| !seasons.contains(d) && y.len() >= 2 * d)
            .map(|d| Arc::new(SeasonalNaive { season: d }) as Arc<dyn Forecaster>);
        let candidates: Vec<Arc<dyn Forecaster>> =
            match self.choice {
                ModelChoice::Auto | ModelChoice::Ensemble => {
                    let long = self.day.or(m).is_none_or(|d| 4 * self.horizon >= d);
                    let mut v = default_candidates(&seasons, long);
                    let mut at = 1 + seasons.len();
                    if let Some(d) = day_snaive {
                        v.insert(at, d);
                        at += 1;
                    }
                    // Seasonal averages of the daily (else the first) season: as cheap as
                    // seasonal naive and steadier at long horizons.
                    if let Some(p) = self.day.filter(|d| y.len() >= 3 * d).or(m) {
                        for median in [true, false] {
                            v.insert(at, Arc::new(SeasonalAverage { season: p, cycles: AVERAGE_CYCLES, median }));
                            at += 1;
                        }
                    }
                    v
                }
                ModelChoice::Naive => vec![Arc::new(Naive)],
                ModelChoice::Prophet => vec![Arc::new(crate::prophet::ProphetStyle::new(seasons.clone()))],
                #[cfg(feature = "lstm")]
                ModelChoice::Lstm => vec![Arc::new(crate::lstm::Lstm::with_season(m))],
                #[cfg(not(feature = "lstm"))]
                ModelChoice::Lstm => return Err(ForecastError::Invalid(
                    "model \"lstm\" is not in this build: rebuild with `--features lstm`".into(),
                )),
                ModelChoice::Snaive => match m.or(self.day) {
                    Some(m) => vec![Arc::new(SeasonalNaive { season: m })],
                    None => return Err(ForecastError::Invalid(
                        "snaive needs a season: none was detected and the step does not divide a day; pass --season N (in steps)"
                            .into(),
                    )),
                },
                ModelChoice::Ets | ModelChoice::Mstl | ModelChoice::Arima | ModelChoice::Theta => {
                    let kind = match self.choice {
                        ModelChoice::Ets => StatKind::Ets,
                        ModelChoice::Mstl => StatKind::Mstl,
                        ModelChoice::Arima => StatKind::Arima,
                        _ => StatKind::Theta,
                    };
                    vec![Arc::new(StatModel {
                        kind,
                        seasons: seasons.clone(),
                    })]
                }
            };
        let scale_season = self.day.or(m).unwrap_or(1);
        // Short horizons get more folds, so selection and calibration see at least
        // MIN_CV_POINTS held-out points (up to MAX_FOLDS refits per candidate).
        // Long horizons (a quarter of a day or season and more) get at least LONG_FOLDS
        // origins: with three, the day-ahead calibration saw three days and covered 76%
        // of held-out points with its 80% interval; with six, 79%.
        let long = 4 * self.horizon >= scale_season;
        let folds = self
            .folds
            .max(MIN_CV_POINTS.div_ceil(self.horizon.max(1)))
            .max(if long { LONG_FOLDS } else { 0 })
            .min(MAX_FOLDS.max(self.folds));
        let step = self.horizon.max(scale_season / 4).max(1);
        let cv = CvConfig {
            horizon: self.horizon,
            folds,
            step,
            levels: self.levels.clone(),
            season: scale_season,
            max_train: y.len(),
        };
        Ok(Prepared {
            seasons,
            candidates,
            cv,
        })
    }

    /// Selects, fits and calibrates on `y`, its lone glitches taken out first
    /// ([`crate::clean`]; the selection's reason says how many). When `y` is too short
    /// for even one fold, the first candidate that fits is used uncalibrated and the
    /// selection says so.
    pub fn run(
        &self,
        y: &[f64],
        progress: impl FnMut(&str),
    ) -> Result<(Box<dyn Fitted>, Selection), ForecastError> {
        let periods: Vec<usize> = self.season.into_iter().chain(self.day).collect();
        let (y, glitches) = crate::clean::without_glitches(y, &periods);
        let (fitted, mut selection) = self.run_cleaned(&y, progress)?;
        if let Some(r) = &mut selection.recipe {
            r.periods = periods;
        }
        if glitches > 0 {
            selection.reason.push_str(&format!(
                "; {glitches} lone glitch(es) in the history (a point many times further from its neighbours than any other) replaced by their neighbours' median before fitting"
            ));
        }
        Ok((fitted, selection))
    }

    fn run_cleaned(
        &self,
        y: &[f64],
        progress: impl FnMut(&str),
    ) -> Result<(Box<dyn Fitted>, Selection), ForecastError> {
        let Prepared { candidates, cv, .. } = self.plan(y)?;
        let ensemble = match self.choice {
            ModelChoice::Ensemble => 3,
            ModelChoice::Auto => 0,
            _ => 1,
        };
        if cv.origins(y.len(), 2).is_empty() {
            let mut errors = Vec::new();
            for c in &candidates {
                match c.fit(y) {
                    Ok(f) => {
                        let winner = f.describe();
                        return Ok((
                            f,
                            Selection {
                                ranking: Vec::new(),
                                winner,
                                score: self.score,
                                reason: format!(
                                    "{} points are too few to cross-validate a {}-step horizon: first candidate that fits, intervals not calibrated",
                                    y.len(),
                                    self.horizon
                                ),
                                calibration_residuals: 0,
                                winner_scores: None,
                                recipe: Some(Recipe {
                                    specs: vec![c.clone()],
                                    calibration: None,
                                    max_train: y.len(),
                                    member_fits: Vec::new(),
                                    periods: Vec::new(),
                                }),
                            },
                        ));
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            return Err(ForecastError::Invalid(errors.join("; ")));
        }
        // The budget limits the search; a model the user named always runs to the end.
        let budget = match self.choice {
            ModelChoice::Auto | ModelChoice::Ensemble => self.budget,
            _ => None,
        };
        select(
            y,
            &candidates,
            &cv,
            self.score,
            ensemble,
            true,
            budget,
            progress,
        )
    }
}

impl Forecaster for AutoSpec {
    fn name(&self) -> String {
        format!("{:?}", self.choice).to_lowercase()
    }
    fn fit(&self, y: &[f64]) -> Result<Box<dyn Fitted>, ForecastError> {
        Ok(self.run(y, |_| {})?.0)
    }
}
