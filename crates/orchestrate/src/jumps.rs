//! Upper quantiles at a jump the forecast predicts, from how far off its past predicted
//! jumps were.
//!
//! A model's quantiles spread its errors evenly over every step, and most steps are calm:
//! when it predicts an hourly job's spike, its 95th percentile sits a few percent above
//! the predicted height, while the heights of past spikes missed it by 10-15%. The steps
//! where the forecast predicted a jump form their own group (a Mondrian split of the
//! conformal errors): at a predicted jump, each upper quantile is at least the median plus
//! the same quantile of the errors at past predicted jumps.

use prescale_core::Forecast;

/// A predicted rise over the last observed step is a jump when it is more than this many
/// times the median predicted change (in either direction) of the recent steps.
pub const JUMP_FACTOR: f64 = 5.0;

/// Steps ahead a predicted jump is looked for (those a plan reads).
pub const JUMP_STEPS: usize = 6;

/// Most recent steps whose forecasts' errors are looked at (a day of 5-minute steps).
pub const JUMP_WINDOW: usize = 288;

/// Fewest past jumps whose errors set the upper quantiles at the next one.
pub const JUMP_MIN: usize = 8;

/// The errors (actual - median) of recent forecasts that predicted a jump.
#[derive(Debug, Clone, PartialEq)]
pub struct Jumps {
    /// A predicted rise above this is a jump.
    pub threshold: f64,
    /// Their errors.
    pub errors: Vec<f64>,
}

impl Jumps {
    /// From one forecast per recent step: `(predicted change over the step before, error)`.
    /// `None` with fewer than [`JUMP_MIN`] jumps among them.
    pub fn from_pairs(pairs: &[(f64, f64)]) -> Option<Jumps> {
        let mut size: Vec<f64> = pairs.iter().map(|p| p.0.abs()).collect();
        if size.is_empty() {
            return None;
        }
        let mid = size.len() / 2;
        let (_, median, _) = size.select_nth_unstable_by(mid, f64::total_cmp);
        let threshold = (JUMP_FACTOR * *median).max(f64::EPSILON);
        let errors: Vec<f64> = pairs
            .iter()
            .filter(|p| p.0 > threshold)
            .map(|p| p.1)
            .collect();
        (errors.len() >= JUMP_MIN).then_some(Jumps { threshold, errors })
    }

    /// On the [`JUMP_STEPS`] rows of `f` from `first` (the step after `last`, the last
    /// observed demand) whose median rises more than the threshold over the row before's
    /// (over `last` for the first), raises each upper quantile (levels above the median)
    /// to at least the median plus the same quantile of the jump errors. Returns the step
    /// whose highest level it raised most, with that level's value before and after.
    pub fn widen_from(
        &self,
        f: &mut Forecast,
        first: usize,
        last: f64,
    ) -> Option<(usize, f64, f64)> {
        let mid = f.levels.iter().position(|l| (*l - 0.5).abs() < 1e-9)?;
        let mut errors = self.errors.clone();
        let upper = prescale_forecast::quantiles_unsorted(&mut errors, &f.levels[mid + 1..]);
        let mut most: Option<(usize, f64, f64)> = None;
        for k in first..(first + JUMP_STEPS).min(f.horizon()) {
            let base = if k == first {
                last
            } else {
                f.values[k - 1][mid]
            };
            let row = &mut f.values[k];
            let before = row[row.len() - 1];
            if row[mid] - base <= self.threshold || mid + 1 >= row.len() {
                continue;
            }
            raise_upper(row, mid, &upper);
            let after = row[row.len() - 1];
            if after > before && most.is_none_or(|m| after - before > m.2 - m.1) {
                most = Some((k, before, after));
            }
        }
        most
    }
}

/// Raises the quantiles of `row` above its median (at `mid`) to at least the median plus
/// `upper` (one per level above it, in order), keeping the row non-decreasing.
pub(crate) fn raise_upper(row: &mut [f64], mid: usize, upper: &[f64]) {
    let median = row[mid];
    for (v, q) in row[mid + 1..].iter_mut().zip(upper) {
        *v = v.max(median + q);
    }
    for j in 1..row.len() {
        row[j] = row[j].max(row[j - 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::SeriesKey;

    fn forecast(median: f64) -> Forecast {
        Forecast::new(
            SeriesKey::metric("d").unwrap(),
            "t",
            0,
            0,
            60_000,
            vec![0.1, 0.5, 0.95],
            vec![vec![median - 5.0, median, median + 5.0]; 3],
        )
        .unwrap()
    }

    #[test]
    fn a_predicted_jump_gets_the_spread_of_past_jumps() {
        // Calm steps predicted within +-2 and off by +-1; ten predicted jumps of +100
        // that came in from 30 below to 30 above.
        let mut pairs: Vec<(f64, f64)> = (0..100)
            .map(|i| ((i % 5) as f64 - 2.0, (i % 3) as f64 - 1.0))
            .collect();
        pairs.extend((0..10).map(|i| (100.0, -30.0 + 60.0 * i as f64 / 9.0)));
        let j = Jumps::from_pairs(&pairs).unwrap();
        assert_eq!(j.errors.len(), 10);
        assert!(j.threshold > 2.0 && j.threshold < 100.0, "{}", j.threshold);
        // A jump from 40 to 160 at the first row: q0.95 from 165 to about 160 + 30;
        // the rows after it do not jump over it.
        let mut f = forecast(160.0);
        let (k, before, after) = j.widen_from(&mut f, 0, 40.0).unwrap();
        assert_eq!((k, before), (0, 165.0));
        assert!(after > 185.0 && after <= 190.0, "{after}");
        assert_eq!(f.values[0][1], 160.0, "the median stays");
        assert_eq!(f.values[1], vec![155.0, 160.0, 165.0], "other rows stay");
        // A jump at the second row, over the first row's median.
        let mut later = forecast(40.0);
        later.values[1] = vec![155.0, 160.0, 165.0];
        let (k, _, after) = j.widen_from(&mut later, 0, 40.0).unwrap();
        assert_eq!(k, 1);
        assert!(after > 185.0, "{after}");
        assert_eq!(later.values[0], vec![35.0, 40.0, 45.0]);
        // No jump over the last step, or quantiles already wider: unchanged.
        let mut f = forecast(160.0);
        assert_eq!(j.widen_from(&mut f, 0, 158.0), None);
        let mut wide = forecast(160.0);
        wide.values[0][2] = 250.0;
        assert_eq!(j.widen_from(&mut wide, 0, 40.0), None);
        assert_eq!(wide.values[0][2], 250.0);
        // Too few past jumps to go by.
        assert_eq!(Jumps::from_pairs(&pairs[..105]), None);
        assert_eq!(Jumps::from_pairs(&[]), None);
    }
}
