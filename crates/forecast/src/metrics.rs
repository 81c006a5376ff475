//! Accuracy metrics shared by every model: the same code scores every forecast, as in
//! statsforecast's `evaluate`. Scaled metrics divide by the in-sample mean absolute error
//! of seasonal naive (season `m`, or 1 when the history is shorter than two seasons),
//! so they compare across series.

/// In-sample scale: mean |y[t] - y[t-m]|, falling back to lag 1 when the history is
/// shorter than two seasons, and to mean |y| (or 1) when that is zero.
pub fn scale(y: &[f64], m: usize) -> f64 {
    let m = if m >= 1 && y.len() > 2 * m { m } else { 1 };
    if y.len() <= m {
        return 1.0;
    }
    let s = y[m..]
        .iter()
        .zip(&y[..y.len() - m])
        .map(|(a, b)| (a - b).abs())
        .sum::<f64>()
        / (y.len() - m) as f64;
    if s.is_finite() && s > 0.0 {
        return s;
    }
    let mean_abs = y.iter().map(|v| v.abs()).sum::<f64>() / y.len() as f64;
    if mean_abs > 0.0 {
        mean_abs
    } else {
        1.0
    }
}

/// Mean absolute scaled error of point forecasts.
pub fn mase(truth: &[f64], point: &[f64], scale: f64) -> f64 {
    mean(truth.iter().zip(point).map(|(y, f)| (y - f).abs())) / scale
}

/// Symmetric mean absolute percentage error, in 0..2 (0 when both are zero).
pub fn smape(truth: &[f64], point: &[f64]) -> f64 {
    mean(truth.iter().zip(point).map(|(y, f)| {
        let d = y.abs() + f.abs();
        if d == 0.0 {
            0.0
        } else {
            2.0 * (y - f).abs() / d
        }
    }))
}

/// Pinball (quantile) loss of forecast `q` at level `p` for outcome `y`.
pub fn pinball(y: f64, q: f64, p: f64) -> f64 {
    if y >= q {
        p * (y - q)
    } else {
        (1.0 - p) * (q - y)
    }
}

/// Scaled CRPS, approximated as twice the mean pinball loss over the levels, divided by
/// `scale`. `quantiles[step][level]`.
pub fn scaled_crps(truth: &[f64], quantiles: &[Vec<f64>], levels: &[f64], scale: f64) -> f64 {
    let mut total = 0.0;
    let mut n = 0usize;
    for (y, row) in truth.iter().zip(quantiles) {
        for (q, p) in row.iter().zip(levels) {
            total += pinball(*y, *q, *p);
            n += 1;
        }
    }
    if n == 0 {
        return f64::NAN;
    }
    2.0 * total / n as f64 / scale
}

/// Share of outcomes inside `[lo, hi]`.
pub fn coverage(truth: &[f64], lo: &[f64], hi: &[f64]) -> f64 {
    mean(
        truth
            .iter()
            .zip(lo.iter().zip(hi))
            .map(|(y, (l, h))| if *y >= *l && *y <= *h { 1.0 } else { 0.0 }),
    )
}

fn mean(it: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = it.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Scale with m = 2 on [1, 2, 3, 5, 5]: |3-1| + |5-2| + |5-3| = 7 over 3.
        assert!((scale(&[1.0, 2.0, 3.0, 5.0, 5.0], 2) - 7.0 / 3.0).abs() < 1e-12);
        // Too short for m = 10: lag 1.
        assert!((scale(&[1.0, 2.0, 4.0], 10) - 1.5).abs() < 1e-12);
        assert_eq!(scale(&[3.0, 3.0, 3.0], 1), 3.0);
        assert!((mase(&[1.0, 2.0], &[2.0, 2.0], 0.5) - 1.0).abs() < 1e-12);
        assert!((smape(&[100.0, 0.0], &[50.0, 0.0]) - (2.0 * 50.0 / 150.0) / 2.0).abs() < 1e-12);
        assert_eq!(pinball(10.0, 8.0, 0.9), 0.9 * 2.0);
        assert!((pinball(8.0, 10.0, 0.9) - 0.2).abs() < 1e-12);
        assert_eq!(coverage(&[1.0, 5.0, 3.0, 9.0], &[0.0; 4], &[4.0; 4]), 0.5);
    }

    #[test]
    fn crps_of_a_point_mass_is_twice_the_mean_pinball() {
        // All quantiles at 0, outcome 1: pinball = p for each level.
        let levels = [0.1, 0.5, 0.9];
        let c = scaled_crps(&[1.0], &[vec![0.0, 0.0, 0.0]], &levels, 1.0);
        assert!((c - 2.0 * 0.5).abs() < 1e-12);
    }
}
