//! A forecast band that narrows where the series' moves are smaller: at its lower levels,
//! when its noise grows with its level.
//!
//! Errors pooled over a whole history (cross-validation residuals, the last day's errors)
//! give one spread for every step. Where demand varies by a share of itself, as the
//! requests of a service do, that spread is right at the daily peak and several times
//! too wide at night: a daily service between 30 and 180 vCPU with 5% noise was given a
//! q0.95 some 14 vCPU above the median at 31 vCPU, where its noise reaches 2.6.
//!
//! [`LevelSpread::fit`] measures how far the series moved up in one step, by the level
//! it moved from: the 99th percentile of the rises from each of [`BINS`] level bands.
//! When those follow a power of the level (`rise ~ level^b`, `b > 0`) closely over the
//! whole history and over each half of it, [`LevelSpread::narrow`] scales a forecast's
//! distance from its median by `(median / reference)^b`, never more than 1: the
//! reference is the level whose fitted rise is the history's own 99th percentile, which
//! pooled errors stand for. Bursts that do not grow with the level (a spike from a quiet
//! night as high as one from the peak) break the fit, and the band stays as it was: of
//! the 48 shared five-minute traces of the README's tables, two pass the test.

use prescale_core::Forecast;

use crate::quantile_unsorted;

/// Level bands the rises are measured in (equal counts of steps).
pub const BINS: usize = 8;

/// Fewest steps per band.
pub const MIN_PER_BIN: usize = 50;

/// The percentile of each band's rises that is fitted.
pub const TAIL: f64 = 0.99;

/// How much of the variation of the bands' (log) rises the power law must explain, over
/// the whole history and over each half.
pub const MIN_R2: f64 = 0.8;

/// How a series' one-step rises grow with its level: `rise ~ level^exponent`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LevelSpread {
    /// The power (0 < exponent <= 1).
    pub exponent: f64,
    /// The level at which the band is left as it is (the fitted rise there is the
    /// history's 99th percentile rise).
    pub reference: f64,
    /// The level of the lowest band: below it the band narrows no further.
    pub lowest: f64,
}

/// The power law fitted to `y`'s rises by level: (exponent, r², reference, lowest).
fn power_law(y: &[f64]) -> Option<(f64, f64, f64, f64)> {
    let mut steps: Vec<(f64, f64)> = y
        .windows(2)
        .filter(|w| w[0].is_finite() && w[1].is_finite() && w[0] > 0.0)
        .map(|w| (w[0], (w[1] - w[0]).max(0.0)))
        .collect();
    if steps.len() < BINS * MIN_PER_BIN {
        return None;
    }
    let mut rises: Vec<f64> = steps.iter().map(|s| s.1).collect();
    let overall = quantile_unsorted(&mut rises, TAIL);
    steps.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let per = steps.len() / BINS;
    let mut xs = Vec::with_capacity(BINS);
    let mut ys = Vec::with_capacity(BINS);
    for b in 0..BINS {
        let end = if b + 1 == BINS {
            steps.len()
        } else {
            (b + 1) * per
        };
        let band = &steps[b * per..end];
        rises.clear();
        rises.extend(band.iter().map(|s| s.1));
        let tail = quantile_unsorted(&mut rises, TAIL);
        let level = band[band.len() / 2].0;
        if tail <= 0.0 {
            return None;
        }
        xs.push(level.ln());
        ys.push(tail.ln());
    }
    let n = BINS as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx <= 0.0 || syy <= 0.0 || overall <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    let reference = ((overall.ln() - (my - b * mx)) / b).exp();
    Some((b, sxy * sxy / (sxx * syy), reference, xs[0].exp()))
}

impl LevelSpread {
    /// The power law of `y`'s rises by level (oldest first), when it holds over the
    /// whole of `y` and over each half; `None` otherwise, or with fewer than
    /// [`BINS`] x [`MIN_PER_BIN`] steps in each half.
    pub fn fit(y: &[f64]) -> Option<Self> {
        let (b, r2, reference, lowest) = power_law(y)?;
        let halves = [&y[..y.len() / 2], &y[y.len() / 2..]];
        let holds = |(b, r2): (f64, f64)| b > 0.0 && r2 >= MIN_R2;
        let fits = halves
            .iter()
            .all(|h| power_law(h).is_some_and(|(b, r2, ..)| holds((b, r2))));
        (holds((b, r2)) && fits && reference.is_finite() && reference > 0.0).then_some(Self {
            exponent: b.min(1.0),
            reference,
            lowest,
        })
    }

    /// How much of the band is kept at `level`: `(level / reference)^exponent`, within
    /// (0, 1], the level taken as at least the lowest band's.
    pub fn ratio(&self, level: f64) -> f64 {
        let level = level.max(self.lowest);
        (level / self.reference).powf(self.exponent).min(1.0)
    }

    /// Scales every quantile's distance from the median of its step by [`Self::ratio`]
    /// of that median. A forecast without a median is left as it is.
    pub fn narrow(&self, f: &mut Forecast) {
        let Some(mid) = f.levels.iter().position(|l| (*l - 0.5).abs() < 1e-9) else {
            return;
        };
        for row in &mut f.values {
            let m = row[mid];
            let r = self.ratio(m);
            for v in row.iter_mut() {
                *v = m + (*v - m) * r;
            }
        }
    }

    /// For a plan's reason and the API.
    pub fn describe(&self) -> String {
        format!(
            "band scaled by (level / {:.1})^{:.2} below that level, as the series' rises grow with its level",
            self.reference, self.exponent
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Days of a cycle from 30 to 180 with noise of `share` of the level (multiplicative)
    /// plus `flat` (additive), deterministic.
    fn service(days: usize, share: f64, flat: f64) -> Vec<f64> {
        (0..days * 288)
            .map(|i| {
                let a = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
                let level = 105.0 - 75.0 * a.cos();
                level * (1.0 + share * crate::tests::noise(i)) + flat * crate::tests::noise(i + 7)
            })
            .collect()
    }

    #[test]
    fn noise_that_grows_with_the_level_narrows_the_band_at_low_levels_only() {
        let y = service(14, 0.1, 0.0);
        let s = LevelSpread::fit(&y).expect("noise by a share of the level");
        assert!(s.exponent > 0.7 && s.exponent <= 1.0, "{s:?}");
        // At the top the band is kept; at the bottom it is a fraction of it.
        assert_eq!(s.ratio(180.0), 1.0);
        let night = s.ratio(31.0);
        assert!(night < 0.4, "{night} {s:?}");
        // Never below the lowest band's level.
        assert_eq!(s.ratio(0.0), s.ratio(s.lowest));
        assert!(s.ratio(0.0) > 0.0);

        let mut f = Forecast::new(
            prescale_core::SeriesKey::metric("x").unwrap(),
            "m",
            0,
            0,
            300_000,
            vec![0.05, 0.5, 0.95],
            vec![vec![21.0, 31.0, 45.0], vec![160.0, 170.0, 184.0]],
        )
        .unwrap();
        s.narrow(&mut f);
        let r = s.ratio(31.0);
        assert!((f.values[0][2] - (31.0 + 14.0 * r)).abs() < 1e-9);
        assert!((f.values[0][0] - (31.0 - 10.0 * r)).abs() < 1e-9);
        assert_eq!(f.values[1], vec![160.0, 170.0, 184.0]);
    }

    #[test]
    fn noise_the_same_at_every_level_leaves_the_band() {
        assert_eq!(LevelSpread::fit(&service(14, 0.0, 5.0)), None);
    }

    #[test]
    fn bursts_that_do_not_grow_with_the_level_leave_the_band() {
        // The same service, with a burst of +60 from wherever it is, every 97 steps.
        let mut y = service(14, 0.1, 0.0);
        for (i, v) in y.iter_mut().enumerate() {
            if i % 97 == 0 {
                *v += 60.0;
            }
        }
        assert_eq!(LevelSpread::fit(&y), None);
    }

    #[test]
    fn too_little_history_or_a_flat_series_gives_none() {
        assert_eq!(LevelSpread::fit(&service(1, 0.1, 0.0)), None);
        assert_eq!(LevelSpread::fit(&[5.0; 4000]), None);
        assert_eq!(LevelSpread::fit(&[]), None);
    }
}
