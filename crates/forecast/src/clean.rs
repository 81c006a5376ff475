//! Lone glitches taken out of a history before models are fitted to it.
//!
//! One sample a hundred times the usual level (an exporter's bad reading, a counter read
//! across a reset the wrong way) is nothing a model can forecast, yet it is most of
//! what a model fitted over it learns: in a simulated service of 5 to 15 vCPU, one
//! sample of 1,000 made the selection triggered by it lose the daily season (the
//! autocorrelation was the glitch's) and fit an ETS whose 95th percentile rose to
//! 6,000 vCPU within ten steps, and the plans held every tier at its maximum for a day.
//! Hyndman's `tsclean` replaces such outliers before fitting; here only those that
//! stand alone are: a point far from its neighbours (which agree with each other), by
//! many times the series' usual change from one step to the next and by several times
//! more than any other point stands from its own. A series whose spikes are its habit
//! (an hourly job, a disk idle but for bursts) keeps them: the largest stands no
//! further out than the others. Neither is a level shift taken out (the neighbours
//! before and after it disagree), nor the last two points (whether they come back is
//! not known yet).

use std::borrow::Cow;

/// Neighbours on each side a point is set against.
const SIDE: usize = 3;

/// How many robust standard deviations of the step-to-step changes a glitch stands
/// from its neighbours' median, at least.
const GROSS: f64 = 10.0;

/// How many times further than every point that is kept a glitch stands from its
/// neighbours.
const ALONE: f64 = 3.0;

/// At most this share of the history (and at least one point) is taken out.
const MOST: f64 = 0.01;

/// Neighbours on each side [`Bar::lone`] reads: a caller judging points of a longer
/// series passes this many either side of them.
pub const NEIGHBOURS: usize = SIDE;

/// `y` with its lone glitches (see the module) replaced by their neighbours' median, and
/// how many there were; `y` itself when there were none. A point is no glitch where one
/// of `periods` (the series' seasons, in steps) before or after it, give or take a step,
/// a point stood out the same way by at least a third as far and by the bar's gross
/// distance: a nightly job's one-step spike, rare in the history and far above anything
/// else in it, comes every night, and a model that is to foresee it must see it.
pub fn without_glitches<'a>(y: &'a [f64], periods: &[usize]) -> (Cow<'a, [f64]>, usize) {
    let found = survey(y, periods).map(|s| s.0).unwrap_or_default();
    if found.is_empty() {
        return (Cow::Borrowed(y), 0);
    }
    let mut out = y.to_vec();
    for &(t, median) in &found {
        out[t] = median;
    }
    (Cow::Owned(out), found.len())
}

/// How far a point must stand from its neighbours to be a lone glitch of a history
/// ([`bar`]), to judge the points that come after it one at a time ([`Bar::lone`]) as
/// [`without_glitches`] would judge them in it: the scale-down window of a plan need not
/// hold a reading known to be one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// [`GROSS`] robust standard deviations of the history's step-to-step changes.
    gross: f64,
    /// [`ALONE`] times as far as the furthest point the history kept stands from its own
    /// neighbours.
    alone: f64,
}

/// The [`Bar`] of history `y`; `None` where nothing can be judged on it (too short,
/// constant, or not all finite), and then no point is a lone glitch. Points that recur
/// every season count as glitches here: a plan's scale-down window need not hold a
/// nightly spike for the hours after it (its seasonal floor holds it the next night).
pub fn bar(y: &[f64]) -> Option<Bar> {
    survey(y, &[]).map(|s| s.1)
}

impl Bar {
    /// Whether point `t` of `y` is a lone glitch by this bar: it has two points after it
    /// (whether it came back is known), its neighbours ([`NEIGHBOURS`] either side, fewer
    /// at the ends of `y`) before and after it agree, and it stands from their median by
    /// at least the bar.
    pub fn lone(&self, y: &[f64], t: usize) -> bool {
        if !judged_range(y.len()).contains(&t) {
            return false;
        }
        let (before, after) = neighbours(y, t);
        if before
            .iter()
            .chain(after)
            .chain([&y[t]])
            .any(|v| !v.is_finite())
        {
            return false;
        }
        let (off, _, agree) = stand(y, t);
        off >= self.gross && off >= self.alone && agree
    }
}

/// The neighbours of point `t` of `y`: up to [`SIDE`] before it and after it.
fn neighbours(y: &[f64], t: usize) -> (&[f64], &[f64]) {
    (
        &y[t.saturating_sub(SIDE)..t],
        &y[t + 1..(t + 1 + SIDE).min(y.len())],
    )
}

/// How far point `t` of `y` stands from its neighbours' median, that median, and
/// whether its neighbours before and after agree: their medians at most `1 / ALONE` as
/// far apart as the point stands.
fn stand(y: &[f64], t: usize) -> (f64, f64, bool) {
    let (before, after) = neighbours(y, t);
    let (m, m_before, m_after) = medians(before, after);
    let off = y[t] - m;
    (
        off.abs(),
        m,
        (m_before - m_after).abs() * ALONE <= off.abs(),
    )
}

/// The points of a series of `n` that can be judged: those with one before them and two
/// after.
fn judged_range(n: usize) -> std::ops::Range<usize> {
    1..n.saturating_sub(2)
}

/// The median of `before` and `after` together (each at most [`SIDE`] long), and of each.
fn medians(before: &[f64], after: &[f64]) -> (f64, f64, f64) {
    let mid = |v: &mut [f64]| {
        v.sort_unstable_by(f64::total_cmp);
        let m = v.len() / 2;
        if v.len() % 2 == 1 {
            v[m]
        } else {
            (v[m - 1] + v[m]) / 2.0
        }
    };
    let mut buf = [0.0; 2 * SIDE];
    let (b, a) = (before.len(), after.len());
    buf[..b].copy_from_slice(before);
    buf[b..b + a].copy_from_slice(after);
    let m = mid(&mut buf[..b + a]);
    let mut side = [0.0; SIDE];
    side[..b].copy_from_slice(before);
    let m_before = mid(&mut side[..b]);
    side[..a].copy_from_slice(after);
    let m_after = mid(&mut side[..a]);
    (m, m_before, m_after)
}

/// The lone glitches of `y` (each point's index and its neighbours' median) and its
/// [`Bar`], points recurring at one of `periods` kept (see [`without_glitches`]); `None`
/// when nothing can be judged on `y`.
fn survey(y: &[f64], periods: &[usize]) -> Option<(Vec<(usize, f64)>, Bar)> {
    let n = y.len();
    if n < 4 * SIDE || y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // The usual change from one step to the next, robustly (its mean where most
    // changes are nothing, as on an idle disk's series).
    let mut changes: Vec<f64> = y.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
    let mean_change = changes.iter().sum::<f64>() / changes.len() as f64;
    let mut scale = 1.4826 * crate::quantile_unsorted(&mut changes, 0.5);
    if scale <= 0.0 {
        scale = mean_change;
    }
    if scale <= 0.0 {
        return None; // constant
    }
    let most = ((MOST * n as f64) as usize).max(1).min(n - 4);
    // How far each judged point (those with two after them) stands from its neighbours'
    // median is at most its distance to the furthest of them, and at least that to the
    // nearest when it is above or below them all. Only the furthest `most + 1` points
    // matter, so the median is taken (small sorts, at every refit over the whole
    // history) only where the furthest neighbour is at least as far as `most + 1`
    // points surely stand: no other point can be among them.
    let judged = judged_range(n);
    let mut surely: Vec<f64> = judged
        .clone()
        .map(|t| {
            let (b, a) = neighbours(y, t);
            let (lo, hi) = b
                .iter()
                .chain(a)
                .fold((f64::INFINITY, f64::NEG_INFINITY), |r, v| {
                    (r.0.min(*v), r.1.max(*v))
                });
            (y[t] - hi).max(lo - y[t]).max(0.0)
        })
        .collect();
    let (_, bar, _) = surely.select_nth_unstable_by(most, |a, b| b.total_cmp(a));
    let bar = *bar;
    // Each possible one: how far it stands, where, its neighbours' median, and whether
    // its neighbours before and after agree.
    let mut stands: Vec<(f64, usize, f64, bool)> = judged
        .filter_map(|t| {
            let (before, after) = neighbours(y, t);
            let furthest = before
                .iter()
                .chain(after)
                .map(|v| (y[t] - v).abs())
                .fold(0.0, f64::max);
            if furthest < bar {
                return None;
            }
            let (off, m, agree) = stand(y, t);
            Some((off, t, m, agree))
        })
        .collect();
    // The furthest `most + 1`, furthest first (at least that many are left).
    stands.select_nth_unstable_by(most, |a, b| b.0.total_cmp(&a.0));
    stands[..=most].sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    // Whether point `t`, standing `off` from its neighbours' median `m`, comes again: a
    // season before or after, give or take a step, a point stood out the same way by a
    // third as far and grossly.
    let recurs = |t: usize, off: f64, m: f64| {
        let sign = (y[t] - m).signum();
        let enough = (off / ALONE).max(GROSS * scale);
        periods.iter().filter(|p| **p > SIDE).any(|&p| {
            [t.checked_sub(p), t.checked_add(p)]
                .into_iter()
                .flatten()
                .flat_map(|c| c.saturating_sub(1)..=c + 1)
                .filter(|u| judged_range(n).contains(u))
                .any(|u| (y[u] - stand(y, u).1) * sign >= enough)
        })
    };
    // The fewest points that stand ALONE times further out than the next one, all gross,
    // all with neighbours that agree and none recurring.
    let mut found = 0;
    for k in 1..=most {
        let (last, next) = (stands[k - 1].0, stands[k].0);
        let (_, t, m, agree) = stands[k - 1];
        if last < GROSS * scale || !agree || recurs(t, last, m) {
            break;
        }
        if last >= ALONE * next {
            found = k;
            break;
        }
    }
    let bar = Bar {
        gross: GROSS * scale,
        // The furthest point kept.
        alone: ALONE * stands[found].0,
    };
    Some((stands[..found].iter().map(|s| (s.1, s.2)).collect(), bar))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daily cycle of 288 steps between 5 and 15, with some noise.
    fn service(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let noise = ((i * 7919) % 101) as f64 / 100.0 - 0.5;
                10.0 + 5.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin() + 0.3 * noise
            })
            .collect()
    }

    #[test]
    fn a_lone_glitch_is_replaced_by_its_neighbours_median() {
        for glitch in [1_000.0, 100.0, -1_000.0, 0.0] {
            let mut y = service(2_000);
            let clean = y.clone();
            y[1_500] = glitch;
            let (cleaned, n) = without_glitches(&y, &[]);
            assert_eq!(n, 1, "{glitch}");
            assert!(
                (cleaned[1_500] - clean[1_500]).abs() < 0.5,
                "{}",
                cleaned[1_500]
            );
            // Nothing else moved.
            assert!(cleaned
                .iter()
                .zip(&y)
                .enumerate()
                .all(|(i, (a, b))| i == 1_500 || a == b));
        }
        // Two, and two in a row.
        let mut y = service(2_000);
        y[700] = 900.0;
        y[1_500] = 1_000.0;
        y[1_501] = 800.0;
        assert_eq!(without_glitches(&y, &[]).1, 3);
    }

    #[test]
    fn habits_shifts_small_spikes_and_the_latest_points_are_kept() {
        // A spike every hour (12 steps): the series' habit, whatever its height.
        let mut y = service(2_000);
        for t in (5..2_000).step_by(12) {
            y[t] += 40.0 + (t % 7) as f64 * 5.0;
        }
        assert_eq!(without_glitches(&y, &[]).1, 0);
        // A level shift.
        let y: Vec<f64> = service(2_000)
            .iter()
            .enumerate()
            .map(|(i, v)| if i >= 1_500 { v + 200.0 } else { *v })
            .collect();
        assert_eq!(without_glitches(&y, &[]).1, 0);
        // A spike of a few usual changes.
        let mut y = service(2_000);
        y[1_500] += 1.0;
        assert_eq!(without_glitches(&y, &[]).1, 0);
        // The last point, and the one before it: not known yet to come back.
        for last in [1, 2] {
            let mut y = service(2_000);
            y[2_000 - last] = 1_000.0;
            assert_eq!(without_glitches(&y, &[]).1, 0, "{last}");
        }
        // Too short, or constant.
        assert_eq!(without_glitches(&[1.0, 500.0, 1.0], &[]).1, 0);
        assert_eq!(without_glitches(&[3.0; 100], &[]).1, 0);
    }

    #[test]
    fn an_idle_series_glitch_is_found_too() {
        // Mostly zero (the median change is nothing): one reading of 50.
        let mut y = vec![0.0; 1_000];
        y[10] = 0.2;
        y[400] = 50.0;
        let (cleaned, n) = without_glitches(&y, &[]);
        assert_eq!(n, 1);
        assert_eq!(cleaned[400], 0.0);
    }

    #[test]
    fn a_bar_judges_later_points_as_the_whole_history_would() {
        let history = service(2_000);
        let b = bar(&history).expect("a bar");
        // A glitch after the history: lone once two points after it are known, as
        // without_glitches finds it in the longer series.
        for glitch in [1_000.0, 100.0, -1_000.0] {
            let mut y = service(2_010);
            y[2_005] = glitch;
            assert!(!b.lone(&y[..2_006], 2_005), "{glitch}: the last point");
            assert!(!b.lone(&y[..2_007], 2_005), "{glitch}: one after it");
            assert!(b.lone(&y[..2_008], 2_005), "{glitch}");
            assert!(b.lone(&y, 2_005), "{glitch}");
            assert_eq!(without_glitches(&y, &[]).1, 1);
            // Its neighbours are not.
            assert!((2_000..2_010).all(|t| t == 2_005 || !b.lone(&y, t)));
            // Judged with only its neighbours around it.
            assert!(b.lone(&y[2_005 - NEIGHBOURS..2_005 + NEIGHBOURS + 1], NEIGHBOURS));
        }
        // A spike of a few usual changes, a level shift, a NaN neighbour: not lone.
        let mut y = service(2_010);
        y[2_005] += 1.0;
        assert!(!b.lone(&y, 2_005));
        let mut y = service(2_010);
        y[2_005..].iter_mut().for_each(|v| *v += 200.0);
        assert!((2_000..2_008).all(|t| !b.lone(&y, t)));
        let mut y = service(2_010);
        y[2_005] = 1_000.0;
        y[2_006] = f64::NAN;
        assert!(!b.lone(&y, 2_005));
        // Where spikes are the habit, the bar is above them, and a glitch three times
        // further out than any of them is still one.
        let spiky = |n: usize| {
            let mut y = service(n);
            for t in (5..n).step_by(12) {
                y[t] += 40.0 + (t % 7) as f64 * 5.0;
            }
            y
        };
        let b = bar(&spiky(2_000)).expect("a bar");
        let mut y = spiky(2_010);
        y[2_006] += 60.0;
        assert!((2_000..2_008).all(|t| !b.lone(&y, t)));
        y[2_006] = 1_000.0;
        assert!(b.lone(&y, 2_006));
        // Nothing to judge on.
        assert_eq!(bar(&[3.0; 100]), None);
        assert_eq!(bar(&[1.0, 500.0, 1.0]), None);
    }

    #[test]
    fn a_spike_that_comes_every_season_is_no_glitch() {
        // A one-step spike to 130 at about the same step of every 288 (a nightly job,
        // a step early or late some nights), in a service of 5 to 15: rare (0.35% of
        // the history) and far above anything else, so without its season it looks
        // like a glitch every night.
        let nightly = |n: usize| {
            let mut y = service(n);
            for day in 0..n / 288 {
                let t = day * 288 + 100 + [0, 1, 0, 2, 1][day % 5];
                y[t] = 130.0 + (day % 3) as f64 * 10.0;
            }
            y
        };
        let y = nightly(14 * 288);
        assert_eq!(without_glitches(&y, &[]).1, 14);
        assert_eq!(without_glitches(&y, &[288]).1, 0);
        // A season that is not its own does not keep it.
        assert_eq!(without_glitches(&y, &[200]).1, 14);
        // A glitch three times the spikes is still one; one as high as them, on a night
        // without its spike, is not told apart from them.
        let mut y = nightly(14 * 288);
        y[1_000] = 1_000.0;
        let (cleaned, n) = without_glitches(&y, &[288]);
        assert_eq!(n, 1);
        assert!(cleaned[1_000] < 20.0);
        let mut y = nightly(14 * 288);
        y[1_000] = 150.0;
        assert_eq!(without_glitches(&y, &[288]).1, 0);
        // A glitch one day after another glitch of its size comes again too: kept.
        let mut y = service(14 * 288);
        y[1_000] = 1_000.0;
        y[1_288] = 900.0;
        assert_eq!(without_glitches(&y, &[288]).1, 0);
        assert_eq!(without_glitches(&y, &[]).1, 2);
        // The other way: a drop to zero each night.
        let mut y = service(14 * 288);
        for day in 0..14 {
            y[day * 288 + 50] = 0.0;
        }
        assert_eq!(without_glitches(&y, &[288]).1, 0);
    }
}
