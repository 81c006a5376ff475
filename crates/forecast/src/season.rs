//! Season detection from the autocorrelation function.
//!
//! Not `augurs-seasons`: its Welch periodogram reads periods off power-of-two DFT bins, so
//! on clean sines (amplitude 5, small noise) it reported 256 for a 288-step day (8,064 and
//! 2,016 points), 23 for 24 and 64 for 60 (measured with 0.10.3's default detector); a
//! seasonal model one phase off by 32 steps is worse than none. The autocorrelation is
//! exact at every lag and costs a few milliseconds on a month of 5-minute data.

/// Returns the season length (in steps) with the strongest autocorrelation peak between
/// `min` and `max` lags, if that peak is clearly periodic (autocorrelation above 0.3).
///
/// The series is first detrended by removing a least-squares line, so a trend alone does
/// not look like a long season. A peak must stand at least 0.3 above the autocorrelation
/// half a period later (where a cycle is out of phase), so a smooth series' high
/// autocorrelation at short lags is not mistaken for a season. A peak is a lag whose autocorrelation is at least that of
/// its neighbours; the strongest peak wins, unless a shorter peak of which it is a whole
/// multiple comes within 10% of it, so a series with a daily cycle reports one day
/// rather than two, and a week with quieter weekends reports a week.
pub fn detect_season(y: &[f64], min: usize, max: usize) -> Option<usize> {
    let n = y.len();
    let min = min.max(2);
    let max = max.min(n / 2);
    if n < 8 || max <= min {
        return None;
    }
    // Detrend with a least-squares line.
    let nf = n as f64;
    let (a, b) = crate::theta::ols(y);
    let r: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| v - a - b * i as f64)
        .collect();
    let var: f64 = r.iter().map(|v| v * v).sum();
    if var <= f64::EPSILON * nf {
        return None;
    }
    let acf = |lag: usize| -> f64 {
        let s = dot(&r[lag..], &r[..n - lag]);
        // Rescale by n / (n - lag) so long lags are not penalised for having fewer pairs.
        s / var * nf / (n - lag) as f64
    };
    let values: Vec<f64> = (min - 1..=max + 1)
        .map(|l| if l < n { acf(l) } else { 0.0 })
        .collect();
    let mut peaks = Vec::new();
    for lag in min..=max {
        let i = lag - (min - 1);
        let v = values[i];
        if v > 0.3 && v >= values[i - 1] && v >= values[i + 1] {
            // A real cycle is out of phase half a period later: demand a trough there, so
            // the high autocorrelation of a smooth series at short lags is not a season.
            let trough = acf(lag / 2).max(acf(lag.div_ceil(2)));
            if v - trough >= 0.1 {
                peaks.push((lag, v));
            }
        }
    }
    let (best_lag, best) = peaks.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    // A shorter season wins only when the best lag is a whole number of it (a harmonic)
    // and it explains nearly as much: a daily cycle reports one day, not two, while a
    // week with distinct weekends stays a week rather than six days.
    let divides = |p: usize| {
        let k = (best_lag as f64 / p as f64).round();
        k >= 1.0 && (best_lag as f64 - k * p as f64).abs() <= (0.02 * p as f64).max(1.0)
    };
    peaks
        .into_iter()
        .find(|(lag, v)| *v >= best * 0.9 && divides(*lag))
        .map(|(lag, _)| lag)
}

/// The dot product of `a` and `b` (of one length), summed in eight lanes so it
/// vectorises: every lag of a long history is one (the autocorrelation of two weeks of
/// one-minute steps at each lag up to a week was a quarter of a simulation's time).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_sum_is_the_dot_product() {
        for n in [0, 1, 7, 8, 9, 100, 1_003] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos() - 0.2).collect();
            let plain: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            let scale: f64 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            assert!((dot(&a, &b) - plain).abs() <= 1e-12 * scale.max(1.0), "{n}");
        }
    }

    #[test]
    fn finds_a_daily_cycle_under_trend_and_noise() {
        let y: Vec<f64> = (0..24 * 14)
            .map(|i| {
                let t = i as f64;
                0.05 * t
                    + 3.0 * (2.0 * std::f64::consts::PI * t / 24.0).sin()
                    + crate::tests::noise(i)
            })
            .collect();
        assert_eq!(detect_season(&y, 2, 100), Some(24));
    }

    #[test]
    fn prefers_the_week_when_weekends_differ() {
        // Hourly data, three weeks: daily cycle, but weekends at half level.
        let y: Vec<f64> = (0..24 * 21)
            .map(|i| {
                let day = (i / 24) % 7;
                let level = if day >= 5 { 0.3 } else { 1.0 };
                level * (1.0 + (2.0 * std::f64::consts::PI * i as f64 / 24.0).sin())
            })
            .collect();
        assert_eq!(detect_season(&y, 2, 24 * 8), Some(168));
    }

    #[test]
    fn smooth_series_do_not_report_short_seasons() {
        // A slow daily sine plus a pattern that repeats every 3 steps at small amplitude,
        // strongly autocorrelated at lag 3 but not a season worth modelling over the day.
        let y: Vec<f64> = (0..288 * 3)
            .map(|i| {
                20.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin()
                    + 3.0 * (((i * 7919) % 97) as f64 / 97.0 - 0.5)
            })
            .collect();
        // The pattern's own period (97) ripples the peak by a step or two around the day.
        let m = detect_season(&y, 2, y.len() / 2).unwrap();
        assert!((285..=291).contains(&m), "{m}");
    }

    #[test]
    fn none_for_noise_and_trend() {
        let noise: Vec<f64> = (0..400).map(crate::tests::noise).collect();
        assert_eq!(detect_season(&noise, 2, 200), None);
        let trend: Vec<f64> = (0..400).map(|i| i as f64).collect();
        assert_eq!(detect_season(&trend, 2, 200), None);
        assert_eq!(detect_season(&[1.0; 100], 2, 50), None);
    }
}
