//! Histories as the store hands them to the models: any finite values, of any scale,
//! flat, stepped or spiky. Selection either fails with an error or yields a forecast
//! whose quantiles are finite and ordered, at every lead.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prescale_core::SeriesKey;
use prescale_forecast::auto::{default_candidates, seasons_for, select, ScoreKind};
use prescale_forecast::{forecast, CvConfig};

const LEVELS: [f64; 5] = [0.05, 0.1, 0.5, 0.9, 0.95];

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    // The first byte sets the scale, 1e-20 to 1e+43; each following pair of bytes is a
    // point (at most 400) in units of it, so a fuzzed history can be flat, small or huge.
    let scale = 10f64.powi(i32::from(head % 64) - 20);
    let y: Vec<f64> = rest
        .chunks_exact(2)
        .take(400)
        .map(|c| f64::from(u16::from_le_bytes([c[0], c[1]])) * scale)
        .collect();
    if y.len() < 4 {
        return;
    }
    let day = 24;
    let seasons = seasons_for(&y, None, Some(day));
    let candidates = default_candidates(&seasons, head & 64 != 0);
    let cv = CvConfig {
        horizon: 6,
        folds: 3,
        step: 6,
        levels: LEVELS.to_vec(),
        season: seasons.first().copied().unwrap_or(1),
        max_train: 300,
    };
    let Ok((fitted, _)) = select(&y, &candidates, &cv, ScoreKind::Crps, 0, true, None, |_| {})
    else {
        return;
    };
    let key = SeriesKey::new("demand", [("w", "fuzz")]).unwrap();
    let levels = cv.all_levels();
    // A model that won the selection must forecast: its forecast is what the plan reads.
    let f = forecast(fitted.as_ref(), key, 0, 300_000, 24, &levels, Some(0.0))
        .unwrap_or_else(|e| panic!("{} won but cannot forecast: {e}", fitted.describe()));
    for row in &f.values {
        assert!(
            row.iter().all(|v| v.is_finite()),
            "non-finite quantile in {row:?}"
        );
        assert!(
            row.windows(2).all(|w| w[0] <= w[1]),
            "quantiles out of order: {row:?}"
        );
    }
});
