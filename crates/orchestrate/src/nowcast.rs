//! The forecast in force, brought up to the present: what the daemon plans from, and
//! what the simulator's predictive policy replays.
//!
//! A model is refreshed every `refit_s` (its forecast reaches far enough to last until
//! the next refresh). At each step in between, its forecast from now on is
//! - shifted by its error at the last observed step, fading by `error_decay` per step
//!   ahead, less when its errors have lately not carried over from one step to the next
//!   ([`persistence`]);
//! - for the steps a plan reads, kept at least as wide above the median as the
//!   nowcast's own recent errors at that lead (the spread floor).
//!
//! The simulator records what it needs in whole-trace vectors; the daemon keeps a
//! [`Record`] per series over the last [`SPREAD_FLOOR_WINDOW`] steps.

use std::collections::VecDeque;

use prescale_core::{Forecast, Tier, TimestampMs};

use crate::jumps::raise_upper;

/// Steps ahead whose upper quantiles get the spread floor.
pub(crate) const SPREAD_FLOOR_STEPS: usize = 6;

/// Most recent steps whose errors (or changes) set that floor, and whose errors say how
/// far they persist.
pub(crate) const SPREAD_FLOOR_WINDOW: usize = 288;

/// Errors at a lead before they replace the last day's changes in that floor (6 hours
/// of 5-minute steps), and pairs of the model's own errors before [`persistence`] is
/// estimated.
pub(crate) const SPREAD_FLOOR_MIN_ERRORS: usize = 72;

/// Steps a plan made now reads until capacity asked for at the next decision is ready
/// (the longest 90th-percentile lead time of `tiers`, plus a step), and how many of them
/// get the spread floor.
pub(crate) fn cover_and_leads(tiers: &[&Tier], step_ms: i64) -> (usize, usize) {
    let max_lead_ms = tiers
        .iter()
        .map(|t| t.lead_time_p90() as i64 * 1000)
        .max()
        .unwrap_or(0);
    let step_ms = step_ms.max(1);
    let cover = ((max_lead_ms + step_ms) as f64 / step_ms as f64).ceil() as usize;
    (cover, SPREAD_FLOOR_STEPS.min(cover))
}

/// Too little history (`steps` of `step_ms`) to select a seasonal model: under two days
/// (of at most 288 steps each; 24 steps when the step does not divide a day). Until then
/// the forecast is naive, refreshed at every step.
pub(crate) fn warming_up(steps: usize, step_ms: i64) -> bool {
    steps < 2 * steps_per_day(step_ms).unwrap_or(24).min(288)
}

/// Steps of `step_ms` in a day, when they divide it into at least two.
pub(crate) fn steps_per_day(step_ms: i64) -> Option<usize> {
    (step_ms > 0 && 86_400_000 % step_ms == 0 && 86_400_000 / step_ms >= 2)
        .then(|| (86_400_000 / step_ms) as usize)
}

/// How much of the model's error at a step is still there at the next: the lag-1
/// regression slope of its own errors (`raw`, consecutive steps, NaN where there was
/// none), within [0, 1], with their usual size (median absolute value, as a standard
/// deviation). `None` until [`SPREAD_FLOOR_MIN_ERRORS`] pairs of them are known.
///
/// Demand that wanders (a level that drifts, a surge that lasts) leaves errors that
/// persist, and the next step is likely off the same way; noise around a pattern the
/// model knows leaves errors that do not, and shifting the forecast by the latest one
/// only adds that noise a second time (on a daily service with 5% noise, a slope near 0
/// where a fixed 0.9 made its nowcasts off by 1.35 times the noise).
pub(crate) fn persistence(raw: &[f64]) -> Option<(f64, f64)> {
    let (mut xy, mut xx) = (0.0, 0.0);
    let mut size = Vec::with_capacity(raw.len());
    for w in raw.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.is_finite() && b.is_finite() {
            xy += a * b;
            xx += a * a;
            size.push(b.abs());
        }
    }
    if size.len() < SPREAD_FLOOR_MIN_ERRORS {
        return None;
    }
    let slope = if xx > 0.0 {
        (xy / xx).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let usual = 1.4826 * prescale_forecast::quantiles_unsorted(&mut size, &[0.5])[0];
    Some((slope, usual))
}

/// The forecast in force `f` from `now` on, given the demand observed before it (`past`,
/// consecutive steps), the model's own errors over the same last steps (`raw`, see
/// [`persistence`]) and, per lead, the recent errors of the nowcasts made that many
/// steps ahead (`errors`, see [`recent_errors`]).
///
/// It keeps at most `decay` of the latest error per step ahead: an error within the
/// model's usual keeps what its errors usually keep, one beyond three times the usual (a
/// surge, a level shift: it lasts) keeps `decay`, and in between, in proportion.
pub(crate) fn nowcast(
    f: &Forecast,
    now: TimestampMs,
    past: &[f64],
    decay: f64,
    raw: &[f64],
    errors: &mut [Vec<f64>],
) -> Option<Forecast> {
    let decay = match persistence(raw) {
        Some((slope, usual)) if slope < decay => {
            let surprise = last_error(f, now, past).abs() / usual.max(f64::MIN_POSITIVE);
            slope + (decay - slope) * ((surprise - 1.0) / 2.0).clamp(0.0, 1.0)
        }
        _ => decay,
    };
    shifted(f, now, past, decay, errors)
}

/// The forecast from `now` on, corrected by the error of its latest observed step: the
/// forecast of a refresh made up to `refit_s` ago is shifted by that error, fading by
/// `decay` per step ahead.
///
/// For the next `errors.len()` steps (at most [`SPREAD_FLOOR_STEPS`]: those a plan reads)
/// an upper quantile is never closer to the median than the same quantile of the
/// nowcast's own recent errors at that many steps ahead (`errors[k]`, from
/// [`recent_errors`]; reordered here): a model refitted on a calm stretch
/// must not forget how far off it has lately been. Until enough errors are known, the
/// last day's changes over as many steps stand in for them.
pub(crate) fn shifted(
    f: &Forecast,
    now: TimestampMs,
    past: &[f64],
    decay: f64,
    errors: &mut [Vec<f64>],
) -> Option<Forecast> {
    let idx = ((now - f.start) / f.step_ms).clamp(0, f.horizon() as i64) as usize;
    let err = last_error(f, now, past);
    let mid = f.levels.iter().position(|l| (*l - 0.5).abs() < 1e-9);
    let leads = errors.len();
    let values: Vec<Vec<f64>> = f.values[idx..]
        .iter()
        .enumerate()
        .map(|(k, row)| {
            let shift = err * decay.powi(k as i32 + 1);
            let mut row: Vec<f64> = row.iter().map(|v| (v + shift).max(0.0)).collect();
            let mut changes: Vec<f64>;
            let spread: &mut [f64] = match (mid, errors.get_mut(k)) {
                (None, _) => &mut [],
                _ if k >= leads => &mut [],
                (Some(_), Some(e)) if e.len() >= SPREAD_FLOOR_MIN_ERRORS => e,
                (Some(_), _) => {
                    changes = recent_changes(past, k + 1);
                    &mut changes
                }
            };
            if let (Some(m), false) = (mid, spread.is_empty()) {
                let upper = prescale_forecast::quantiles_unsorted(spread, &f.levels[m + 1..]);
                raise_upper(&mut row, m, &upper);
            }
            row
        })
        .collect();
    if values.is_empty() {
        return None; // run out: no forecast reaches this far
    }
    Forecast::new(
        f.series.clone(),
        f.model.clone(),
        now,
        f.start + idx as i64 * f.step_ms,
        f.step_ms,
        f.levels.clone(),
        values,
    )
    .ok()
}

/// The error of `f`'s median at the last step of `past` (the demand observed before
/// `now`); 0 when `f` does not cover it or that step's demand is left out (NaN: see
/// [`prescale_plan::floor_only_steps`]).
pub(crate) fn last_error(f: &Forecast, now: TimestampMs, past: &[f64]) -> f64 {
    let idx = ((now - f.start) / f.step_ms).clamp(0, f.horizon() as i64) as usize;
    match (idx.checked_sub(1), past.last()) {
        (Some(last), Some(actual)) if actual.is_finite() => actual - f.quantile(last, 0.5),
        _ => 0.0,
    }
}

/// Changes over `lag` steps of the last [`SPREAD_FLOOR_WINDOW`] steps of `past`.
fn recent_changes(past: &[f64], lag: usize) -> Vec<f64> {
    let from = past.len().saturating_sub(SPREAD_FLOOR_WINDOW);
    (from + lag..past.len())
        .map(|t| past[t] - past[t - lag])
        .filter(|c| c.is_finite())
        .collect()
}

/// For each `k`, the errors (actual - median) of the nowcasts made `k + 1` steps ahead
/// of the last [`SPREAD_FLOOR_WINDOW`] observed steps of `past` (`said[k][t]`, NaN where
/// none was made; `past` NaN where its demand is left out).
pub(crate) fn recent_errors(said: &[Vec<f64>], past: &[f64]) -> Vec<Vec<f64>> {
    let from = past.len().saturating_sub(SPREAD_FLOOR_WINDOW);
    said.iter()
        .map(|s| {
            (from..past.len())
                .filter_map(|t| s.get(t).map(|m| past[t] - m))
                .filter(|e| e.is_finite())
                .collect()
        })
        .collect()
}

/// What the daemon keeps of one series to nowcast it as the simulator does: what its
/// nowcasts said of the coming steps at each lead but the first (the first is the
/// workload's persisted `said`), the model's own errors, and the forecast in force.
///
/// The daemon keeps what it records in the store (what [`Record::observe`] and
/// [`Record::remember`] return) and reads it back after a restart ([`Record::restore`]);
/// only the forecast in force is gone then, until the next refresh.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// `ahead[k]`: (step, median) the nowcast said of the step `k + 2` steps before it.
    ahead: Vec<VecDeque<(TimestampMs, f64)>>,
    /// (step, actual - median of the forecast in force then).
    raw: VecDeque<(TimestampMs, f64)>,
    /// The forecast in force at the last pass, as the model made it.
    pub(crate) in_force: Option<Forecast>,
}

/// The last steps of `buckets` a nowcast reads: [`SPREAD_FLOOR_WINDOW`] and one.
pub(crate) fn tail(buckets: &VecDeque<(TimestampMs, f64)>) -> Vec<(TimestampMs, f64)> {
    let from = buckets.len().saturating_sub(SPREAD_FLOOR_WINDOW + 1);
    buckets.range(from..).copied().collect()
}

/// The values of `xs` (a series of (step, value) kept in time order) at each of `ts`
/// (in time order too), `None` where it has none: one search, then a walk along both.
pub(crate) fn aligned<'a, T: IntoIterator<Item = TimestampMs>>(
    xs: &'a VecDeque<(TimestampMs, f64)>,
    ts: T,
) -> impl Iterator<Item = Option<f64>> + use<'a, T> {
    let mut k = None;
    ts.into_iter().map(move |t| {
        let k = k.get_or_insert_with(|| xs.partition_point(|x| x.0 < t));
        while *k < xs.len() && xs[*k].0 < t {
            *k += 1;
        }
        xs.get(*k).filter(|x| x.0 == t).map(|x| x.1)
    })
}

/// Sets `(ts, v)` as the last entry of `xs`: replaces it when it is for `ts`, else
/// appends it; then drops entries from before `keep_from`. Returns the entry it
/// appended after, which no later pass changes (for the store).
fn put(
    xs: &mut VecDeque<(TimestampMs, f64)>,
    ts: TimestampMs,
    v: f64,
    keep_from: TimestampMs,
) -> Option<(TimestampMs, f64)> {
    let done = match xs.back_mut() {
        Some(b) if b.0 == ts => {
            b.1 = v;
            None
        }
        Some(b) if b.0 > ts => None,
        back => {
            let done = back.map(|b| *b);
            xs.push_back((ts, v));
            done
        }
    };
    while xs.front().is_some_and(|x| x.0 < keep_from) {
        xs.pop_front();
    }
    done
}

impl Record {
    /// A record of what was kept: `ahead[k]` what the nowcasts said `k + 2` steps
    /// ahead, `raw` the model's own errors (both in time order).
    pub(crate) fn restore(
        ahead: Vec<VecDeque<(TimestampMs, f64)>>,
        raw: VecDeque<(TimestampMs, f64)>,
    ) -> Self {
        Record {
            ahead,
            raw,
            in_force: None,
        }
    }

    /// Records the error of the forecast in force at the newly completed `steps` (but
    /// those whose demand is left out, NaN); returns those recorded.
    pub(crate) fn observe(&mut self, steps: &[(TimestampMs, f64)]) -> Vec<(TimestampMs, f64)> {
        let Some(f) = &self.in_force else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &(ts, v) in steps {
            if ts < f.start || f.step_ms <= 0 {
                continue;
            }
            let k = ((ts - f.start) / f.step_ms) as usize;
            if k < f.horizon() && v.is_finite() {
                let keep_from = ts - SPREAD_FLOOR_WINDOW as i64 * f.step_ms;
                let e = v - f.quantile(k, 0.5);
                put(&mut self.raw, ts, e, keep_from);
                out.push((ts, e));
            }
        }
        out
    }

    /// The forecast in force `f` from the step after the last of `steps` (consecutive
    /// steps, oldest first, at least the last [`SPREAD_FLOOR_WINDOW`] and one: see
    /// [`tail`]) on: [`nowcast`] with what this record and `said` (the first lead's
    /// medians) know, its spread floor on the first `leads` steps.
    pub(crate) fn nowcast(
        &self,
        f: &Forecast,
        steps: &[(TimestampMs, f64)],
        said: &VecDeque<(TimestampMs, f64)>,
        step_ms: i64,
        decay: f64,
        leads: usize,
    ) -> Option<Forecast> {
        let &(last, _) = steps.last()?;
        let steps = &steps[steps.len().saturating_sub(SPREAD_FLOOR_WINDOW + 1)..];
        let past: Vec<f64> = steps.iter().map(|s| s.1).collect();
        let raw: Vec<f64> = aligned(&self.raw, steps.iter().map(|s| s.0))
            .map(|v| v.unwrap_or(f64::NAN))
            .collect();
        let from = past.len().saturating_sub(SPREAD_FLOOR_WINDOW);
        let mut errors: Vec<Vec<f64>> = (0..leads)
            .map(|k| {
                let told = if k == 0 {
                    Some(said)
                } else {
                    self.ahead.get(k - 1)
                };
                let Some(told) = told else {
                    return Vec::new();
                };
                aligned(told, steps[from..].iter().map(|s| s.0))
                    .zip(&steps[from..])
                    .filter_map(|(m, &(_, v))| Some(v - m?))
                    .filter(|e| e.is_finite())
                    .collect()
            })
            .collect();
        nowcast(f, last + step_ms, &past, decay, &raw, &mut errors)
    }

    /// Records what nowcast `g` (from the step in progress on) says of the steps after
    /// its first, at leads 2 to `leads` (a later pass in the same step says it again).
    /// Returns the entries no pass changes any more, with their lead (2 and up).
    pub(crate) fn remember(
        &mut self,
        g: &Forecast,
        leads: usize,
    ) -> Vec<(usize, (TimestampMs, f64))> {
        self.ahead
            .resize_with(leads.saturating_sub(1), VecDeque::new);
        let mut done = Vec::new();
        for (k, told) in self.ahead.iter_mut().enumerate() {
            if k + 1 >= g.horizon() {
                break;
            }
            let ts = g.step_time(k + 1);
            let keep_from = g.start - (SPREAD_FLOOR_WINDOW + leads) as i64 * g.step_ms;
            if let Some(x) = put(told, ts, g.quantile(k + 1, 0.5), keep_from) {
                done.push((k + 2, x));
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::SeriesKey;

    #[test]
    fn aligned_finds_each_step_or_says_none() {
        let xs: VecDeque<(TimestampMs, f64)> = [(10, 1.0), (20, 2.0), (40, 4.0), (50, 5.0)].into();
        // Before the first, in a gap, between entries, after the last.
        let got: Vec<Option<f64>> = aligned(&xs, [0, 10, 15, 30, 40, 50, 60]).collect();
        assert_eq!(
            got,
            [None, Some(1.0), None, None, Some(4.0), Some(5.0), None]
        );
        // Starting part-way, as a search alone would find them.
        let got: Vec<Option<f64>> = aligned(&xs, [40, 50]).collect();
        assert_eq!(got, [Some(4.0), Some(5.0)]);
        assert_eq!(
            aligned(&VecDeque::new(), [1, 2]).collect::<Vec<_>>(),
            [None, None]
        );
    }

    fn flat(start: TimestampMs, step: i64, rows: Vec<Vec<f64>>, levels: Vec<f64>) -> Forecast {
        Forecast::new(
            SeriesKey::metric("d").unwrap(),
            "t",
            0,
            start,
            step,
            levels,
            rows,
        )
        .unwrap()
    }

    #[test]
    fn the_spread_floor_follows_the_nowcasts_own_errors() {
        // A forecast with a narrow band (q0.95 one above the median) over demand that
        // jumps by 20 at every step.
        let f = flat(
            0,
            300_000,
            vec![vec![9.0, 10.0, 11.0]; 2 * SPREAD_FLOOR_STEPS],
            vec![0.1, 0.5, 0.95],
        );
        let past: Vec<f64> = (0..400).map(|t| [10.0, 30.0][t % 2]).collect();
        let band = |g: &Forecast, k: usize| g.quantile(k, 0.95) - g.quantile(k, 0.5);
        // Too few known errors: the last day's changes set the floor (+20 at lead 1,
        // even leads change nothing).
        let mut few = vec![vec![0.0; SPREAD_FLOOR_MIN_ERRORS - 1]; SPREAD_FLOOR_STEPS];
        let g = shifted(&f, 0, &past, 0.0, &mut few).unwrap();
        assert!((band(&g, 0) - 20.0).abs() < 1e-9, "{}", band(&g, 0));
        assert!((band(&g, 1) - 1.0).abs() < 1e-9, "{}", band(&g, 1));
        // The nowcast foresaw the jumps (errors within 0.5): the model's band stands.
        let mut small = vec![vec![0.5; SPREAD_FLOOR_MIN_ERRORS]; SPREAD_FLOOR_STEPS];
        let g = shifted(&f, 0, &past, 0.0, &mut small).unwrap();
        assert!((band(&g, 0) - 1.0).abs() < 1e-9, "{}", band(&g, 0));
        // It has been off by up to 10: its own 95th percentile error sets the floor,
        // for the first SPREAD_FLOOR_STEPS steps only.
        let mut wide: Vec<Vec<f64>> = (0..SPREAD_FLOOR_STEPS)
            .map(|_| (0..=100).map(|i| i as f64 / 10.0).collect())
            .collect();
        let g = shifted(&f, 0, &past, 0.0, &mut wide).unwrap();
        for k in 0..SPREAD_FLOOR_STEPS {
            assert!(
                (band(&g, k) - 9.5).abs() < 1e-9,
                "lead {k}: {}",
                band(&g, k)
            );
        }
        assert!((band(&g, SPREAD_FLOOR_STEPS) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn recent_errors_pair_each_nowcast_with_what_came() {
        // Step t was said to be t + k + 1 by the nowcast k + 1 steps before; the first
        // steps were never said.
        let n = SPREAD_FLOOR_WINDOW + 50;
        let past: Vec<f64> = (0..n).map(|t| t as f64).collect();
        let said: Vec<Vec<f64>> = (0..2)
            .map(|k| {
                (0..n)
                    .map(|t| if t < 10 { f64::NAN } else { (t + k + 1) as f64 })
                    .collect()
            })
            .collect();
        let e = recent_errors(&said, &past);
        assert_eq!(e.len(), 2);
        for (k, errs) in e.iter().enumerate() {
            // Only the last SPREAD_FLOOR_WINDOW observed steps count.
            assert_eq!(errs.len(), SPREAD_FLOOR_WINDOW);
            assert!(errs.iter().all(|x| *x == -((k + 1) as f64)), "{errs:?}");
        }
    }

    #[test]
    fn warm_up_lasts_two_days_of_at_most_288_steps() {
        assert!(warming_up(575, 300_000));
        assert!(!warming_up(576, 300_000));
        // One-minute steps: two blocks of 288.
        assert!(!warming_up(576, 60_000));
        // A step that does not divide a day: two blocks of 24.
        assert!(warming_up(47, 7_000_000));
        assert!(!warming_up(48, 7_000_000));
    }

    /// The daemon's record, fed step by step, gives the nowcast the simulator's
    /// whole-trace vectors give: the same shift, kept as far as errors persist, and the
    /// same spread floor from what was said at each lead.
    #[test]
    fn the_daemons_record_nowcasts_as_the_simulators_vectors_do() {
        let step = 300_000;
        let n = SPREAD_FLOOR_WINDOW + 40;
        let leads = 3;
        // Demand with a wandering level the model (a flat 100) does not follow.
        let demand: Vec<f64> = (0..n)
            .map(|t| 100.0 + 10.0 * ((t as f64) / 30.0).sin() + [0.0, 3.0, -2.0][t % 3])
            .collect();
        let model = flat(
            0,
            step,
            vec![vec![99.0, 100.0, 101.0]; n + 20],
            vec![0.1, 0.5, 0.95],
        );
        let mut record = Record::default();
        let mut buckets: VecDeque<(TimestampMs, f64)> = VecDeque::new();
        let mut said0: VecDeque<(TimestampMs, f64)> = VecDeque::new();
        let mut said = vec![vec![f64::NAN; n + leads]; leads];
        let mut raw = vec![f64::NAN; n];
        let mut last = None;
        for t in 1..n {
            // Step t - 1 completed.
            let ts = (t - 1) as i64 * step;
            record.observe(&[(ts, demand[t - 1])]);
            if t >= 2 {
                raw[t - 1] = demand[t - 1] - 100.0; // a forecast was in force
            }
            buckets.push_back((ts, demand[t - 1]));
            record.in_force = Some(model.clone());
            let g = record
                .nowcast(&model, &tail(&buckets), &said0, step, 0.9, leads)
                .unwrap();
            // The simulator's way, on the whole trace so far.
            let past = &demand[..t];
            let from = t.saturating_sub(SPREAD_FLOOR_WINDOW).max(1);
            let mut errors = recent_errors(&said, past);
            let h = nowcast(
                &model,
                t as i64 * step,
                past,
                0.9,
                &raw[from - 1..t],
                &mut errors,
            )
            .unwrap();
            assert_eq!(g.values, h.values, "step {t}");
            assert_eq!(g.start, t as i64 * step);
            said0.push_back((g.start, g.quantile(0, 0.5)));
            record.remember(&g, leads);
            for (k, s) in said.iter_mut().enumerate() {
                s[t + k] = g.quantile(k, 0.5);
            }
            last = Some(g);
        }
        // By the end the errors' persistence is known: the median keeps some of the
        // last error, and no more than `decay` of it; the floor lifted q0.95 over the
        // model's narrow band.
        let g = last.unwrap();
        assert!(persistence(&raw[n - SPREAD_FLOOR_WINDOW - 1..n - 1]).is_some());
        let kept = (g.quantile(0, 0.5) - 100.0) / (demand[n - 2] - 100.0);
        assert!(kept > 0.0 && kept <= 0.9, "{kept}");
        assert!(g.quantile(0, 0.95) - g.quantile(0, 0.5) > 1.5);
        // An error is recorded only for steps the forecast in force covers.
        let mut r = Record {
            in_force: Some(flat(600_000, step, vec![vec![10.0], vec![20.0]], vec![0.5])),
            ..Record::default()
        };
        r.observe(&[
            (300_000, 1.0),
            (600_000, 12.5),
            (900_000, 0.0),
            (1_200_000, 5.0),
        ]);
        assert_eq!(
            r.raw.iter().copied().collect::<Vec<_>>(),
            vec![(600_000, 2.5), (900_000, -20.0)]
        );
    }
}
