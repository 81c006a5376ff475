//! `prescale forecast --report`: the forecast as a fan chart over the recent history,
//! with the model chosen, why, and every candidate's cross-validation scores, on one
//! self-contained HTML page (inline SVG, no scripts), as Prophet's `plot` or
//! statsforecast's `plot` show a forecast to someone deciding whether to trust it.

use std::fmt::Write as _;

use prescale_forecast::Selection;

use crate::input::{format_ts, Series};
use crate::simulate_cmd::html_escape;
use crate::svg::{grid_line, path_through, range_ticks, tick_label, time_axis};

/// Steps of history drawn before the forecast: three horizons, at least 48 steps (so a
/// short forecast still shows its context), at most 4,000 (the page stays small).
pub(crate) fn history_shown(len: usize, horizon: usize) -> usize {
    len.min(horizon.saturating_mul(3).clamp(48, 4000))
}

/// The levels' bands, outermost first: the index of each level below the median with
/// the index of the level as far above it (`0.05` with `0.95`, then `0.25` with `0.75`),
/// for levels sorted ascending.
pub(crate) fn fan_pairs(levels: &[f64]) -> Vec<(usize, usize)> {
    let n = levels.len();
    (0..n / 2)
        .map(|i| (i, n - 1 - i))
        .filter(|&(a, b)| levels[a] < 0.5 && levels[b] > 0.5)
        .collect()
}

/// Where a time (unix seconds) and a value fall on the chart.
pub(crate) struct Frame {
    pub w: f64,
    pub h: f64,
    pub pad: f64,
    pub t0: i64,
    pub t1: i64,
    pub lo: f64,
    pub hi: f64,
}

impl Frame {
    /// A chart 1100 wide and `h` high, margin `pad`, from `t0` to `t1` across and `lo`
    /// to `hi` up.
    pub fn new(h: f64, pad: f64, (t0, t1): (i64, i64), (lo, hi): (f64, f64)) -> Frame {
        Frame {
            w: 1100.0,
            h,
            pad,
            t0,
            t1,
            lo,
            hi,
        }
    }

    /// The opening of its SVG (`label` read out for those who cannot see it) and a grid
    /// line at each round value of its range, labelled.
    pub fn svg_with_grid(&self, label: &str) -> String {
        let mut svg = format!(
            "<svg viewBox=\"0 0 {} {}\" width=\"100%\" role=\"img\" aria-label=\"{label}\">",
            self.w, self.h
        );
        let (ticks, step) = range_ticks(self.lo, self.hi, 6);
        for v in ticks {
            grid_line(
                &mut svg,
                self.w,
                self.pad,
                self.y(v),
                &tick_label(v, step),
                "#ddd",
            );
        }
        svg
    }

    pub fn x(&self, t: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        self.pad + (self.w - 2.0 * self.pad) * (t - self.t0) as f64 / span
    }

    pub fn y(&self, v: f64) -> f64 {
        self.h - self.pad - (self.h - 2.0 * self.pad) * (v - self.lo) / (self.hi - self.lo)
    }
}

/// The range of `values` with 5% spare above and below (5% of the value either side of
/// a constant; 0 to 1 without values): not from zero, as a series of millions that moves
/// by thousands would be a flat line.
pub(crate) fn value_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0);
    }
    let spare = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - spare, hi + spare)
}

/// The chart's frame: the history shown and every quantile inside it.
pub(crate) fn frame(hist: &[(i64, f64)], times: &[i64], q: &[Vec<f64>]) -> Frame {
    let all = hist.iter().map(|p| p.1).chain(q.iter().flatten().copied());
    let across = (
        hist.first().map_or(0, |p| p.0),
        times.last().copied().unwrap_or(0),
    );
    Frame::new(420.0, 66.0, across, value_range(all))
}

/// Band colour: one blue, denser toward the median.
const FAN: &str = "#3d7cc9";

fn band_opacity(k: usize) -> f64 {
    (0.18 + 0.14 * k as f64).min(0.6)
}

fn seconds_words(s: i64) -> String {
    match s {
        s if s > 0 && s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s > 0 && s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s > 0 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The chart: the history's last steps as a line, each pair of levels as a band from
/// the last point observed, the median as a line, and a line at the last observation.
pub(crate) fn chart(
    series: &Series,
    levels: &[(String, f64)],
    times: &[i64],
    q: &[Vec<f64>],
) -> String {
    let shown = history_shown(series.values.len(), times.len());
    let start = series.values.len() - shown;
    let hist: Vec<(i64, f64)> = series.ts[start..]
        .iter()
        .copied()
        .zip(series.values[start..].iter().copied())
        .collect();
    let f = &frame(&hist, times, q);
    let mut svg = f.svg_with_grid(&format!(
        "the series' last {shown} steps and the forecast's quantiles"
    ));
    let &(now_t, now_v) = hist.last().expect("a forecast needs history");
    let lv: Vec<f64> = levels.iter().map(|l| l.1).collect();
    // Each band opens at the last observation, so the fan starts where the data ends.
    let at = |k: usize| {
        std::iter::once((f.x(now_t), f.y(now_v))).chain(
            times
                .iter()
                .zip(q)
                .map(move |(t, row)| (f.x(*t), f.y(row[k]))),
        )
    };
    for (band, (a, b)) in fan_pairs(&lv).into_iter().enumerate() {
        let upper: Vec<(f64, f64)> = at(b).collect();
        let lower: Vec<(f64, f64)> = at(a).collect();
        let d = path_through(upper.into_iter().chain(lower.into_iter().rev()));
        let _ = write!(
            svg,
            "<path class=\"band\" data-levels=\"{} {}\" d=\"{d}Z\" fill=\"{FAN}\" fill-opacity=\"{:.2}\" stroke=\"none\"><title>q{} to q{}</title></path>",
            levels[a].0,
            levels[b].0,
            band_opacity(band),
            html_escape(&levels[a].0),
            html_escape(&levels[b].0),
        );
    }
    if let Some(m) = lv.iter().position(|l| (l - 0.5).abs() < 1e-9) {
        let _ = write!(
            svg,
            "<path class=\"median\" d=\"{}\" fill=\"none\" stroke=\"#1d4f91\" stroke-width=\"1.6\"/>",
            path_through(at(m))
        );
    }
    let _ = write!(
        svg,
        "<path class=\"history\" d=\"{}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1.2\"/>",
        path_through(hist.iter().map(|(t, v)| (f.x(*t), f.y(*v))))
    );
    let xn = f.x(now_t);
    let _ = write!(
        svg,
        "<line class=\"now\" x1=\"{xn:.1}\" x2=\"{xn:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" fill=\"#555\">last observed</text>",
        f.pad - 8.0,
        f.h - f.pad,
        xn + 4.0,
        f.pad - 12.0,
    );
    time_axis(&mut svg, f.w, f.h, f.pad, f.t0 * 1000, f.t1 * 1000);
    svg
}

/// The whole page: what was read, the chart, the model and why, the candidates.
pub(crate) fn report_html(
    name: &str,
    series: &Series,
    levels: &[(String, f64)],
    times: &[i64],
    q: &[Vec<f64>],
    selection: &Selection,
) -> String {
    let lv: Vec<f64> = levels.iter().map(|l| l.1).collect();
    let mut legend = String::from("<span><i style=\"background:#222\"></i>observed</span>");
    if lv.iter().any(|l| (l - 0.5).abs() < 1e-9) {
        legend.push_str("<span><i style=\"background:#1d4f91\"></i>median (q0.5)</span>");
    }
    for (k, (a, b)) in fan_pairs(&lv).into_iter().enumerate() {
        let _ = write!(
            legend,
            "<span><i style=\"background:{FAN};opacity:{:.2}\"></i>q{} to q{} ({:.0}% of outcomes expected inside)</span>",
            band_opacity(k),
            html_escape(&levels[a].0),
            html_escape(&levels[b].0),
            (lv[b] - lv[a]) * 100.0
        );
    }
    let mut rows = String::new();
    for r in &selection.ranking {
        // The winner may carry its calibration: `ets(A,N,A)+conformal`.
        let won =
            selection.winner == r.model || selection.winner.starts_with(&format!("{}+", r.model));
        let cells = match &r.scores {
            Some(s) => format!(
                "<td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.2}</td><td>{:.2}</td><td>{:.3}</td><td>{}</td>",
                s.crps, s.mase, s.smape, s.coverage80, s.width80, s.fit_seconds, s.folds
            ),
            None => "<td colspan=\"7\">no fold completed</td>".to_string(),
        };
        let failures = if r.failures.is_empty() {
            String::new()
        } else {
            html_escape(&r.failures.join("; "))
        };
        let _ = write!(
            rows,
            "<tr{}><td>{}</td>{cells}<td>{failures}</td></tr>",
            if won { " class=\"winner\"" } else { "" },
            html_escape(&r.model)
        );
    }
    let candidates = if rows.is_empty() {
        "<p>No candidate was cross-validated on this history: the model was fitted to all of it, uncalibrated.</p>"
            .to_string()
    } else {
        format!(
            "<table><tr><th>candidate</th><th>scaled CRPS</th><th>MASE</th><th>sMAPE</th><th>80% coverage</th><th>80% width</th><th>s per fit</th><th>folds</th><th>failures</th></tr>{rows}</table><p>Scores are over rolling-origin folds of the history, each fold as long as the forecast; scaled CRPS, MASE and width are over the in-sample error of the seasonal naive (lower is better); coverage is the share of held-out points inside q0.1 to q0.9 (0.80 is calibrated).</p>"
        )
    };
    let warnings: String = series
        .warnings
        .iter()
        .map(|w| format!("<li>{}</li>", html_escape(w)))
        .collect();
    let warnings = if warnings.is_empty() {
        String::new()
    } else {
        format!("<h2>Fixed on reading</h2><ul>{warnings}</ul>")
    };
    let last = *series.ts.last().expect("non-empty");
    let shown = history_shown(series.values.len(), times.len());
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>prescale forecast: {name}</title><style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}.legend span{{margin-right:16px;font-size:12px}}.legend i{{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}}table{{border-collapse:collapse;margin-top:8px}}th,td{{text-align:left;padding:3px 12px;border-bottom:1px solid #eee}}tr.winner td{{font-weight:600}}</style></head><body><h1>prescale forecast: {name}</h1><p>{points} points every {step}, the last at {last}; the chart shows the last {shown} and {horizon} steps ({ahead}) ahead.</p><p>Model: <b>{winner}</b>.</p><p>Why: {reason}.</p>{svg}<div class=\"legend\">{legend}</div><h2>Candidates</h2>{candidates}{warnings}</body></html>\n",
        name = html_escape(name),
        points = series.values.len(),
        step = seconds_words(series.step),
        last = if series.rfc3339 {
            html_escape(&format_ts(last, true))
        } else {
            format!("{last} ({})", format_ts(last, true))
        },
        horizon = times.len(),
        ahead = seconds_words(series.step * times.len() as i64),
        winner = html_escape(&selection.winner),
        reason = html_escape(&selection.reason),
        svg = chart(series, levels, times, q),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_pair_levels_across_the_median_outermost_first() {
        assert_eq!(fan_pairs(&[0.05, 0.5, 0.95]), vec![(0, 2)]);
        assert_eq!(
            fan_pairs(&[0.05, 0.25, 0.5, 0.75, 0.95]),
            vec![(0, 4), (1, 3)]
        );
        assert_eq!(fan_pairs(&[0.1, 0.9]), vec![(0, 1)]);
        // Levels all on one side make no band.
        assert!(fan_pairs(&[0.5, 0.9, 0.95]).is_empty());
        assert!(fan_pairs(&[0.5]).is_empty());
    }

    #[test]
    fn history_shown_is_three_horizons_within_bounds() {
        assert_eq!(history_shown(10_000, 288), 864);
        assert_eq!(history_shown(10_000, 4), 48);
        assert_eq!(history_shown(10_000, 5_000), 4_000);
        assert_eq!(history_shown(30, 4), 30);
    }

    fn numbers(d: &str) -> Vec<(f64, f64)> {
        d.split(['M', 'L', 'Z'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    fn path_of<'a>(svg: &'a str, class: &str) -> &'a str {
        let at = svg.find(&format!("class=\"{class}\"")).unwrap();
        let d = &svg[at..];
        let d = &d[d.find(" d=\"").unwrap() + 4..];
        &d[..d.find('"').unwrap()]
    }

    #[test]
    fn the_fan_opens_at_the_last_observation_and_spans_its_quantiles() {
        // A day of hourly history at 10, then three steps forecast 8 / 10 / 12 widening.
        let ts: Vec<i64> = (0..24).map(|i| 1_700_000_000 + i * 3600).collect();
        let series = Series {
            ts: ts.clone(),
            values: vec![10.0; 24],
            step: 3600,
            rfc3339: false,
            warnings: Vec::new(),
        };
        let levels = vec![
            ("0.05".to_string(), 0.05),
            ("0.5".to_string(), 0.5),
            ("0.95".to_string(), 0.95),
        ];
        let times: Vec<i64> = (1..=3).map(|i| ts[23] + i * 3600).collect();
        let q = vec![
            vec![9.0, 10.0, 11.0],
            vec![8.0, 10.0, 12.0],
            vec![6.0, 10.0, 14.0],
        ];
        let svg = chart(&series, &levels, &times, &q);
        let hist: Vec<(i64, f64)> = ts.iter().map(|t| (*t, 10.0)).collect();
        let f = frame(&hist, &times, &q);
        // The frame holds 6..14 with 5% spare.
        assert!((f.lo - 5.6).abs() < 1e-9 && (f.hi - 14.4).abs() < 1e-9);
        let band = numbers(path_of(&svg, "band"));
        // Up the q0.95 from the last observation, back along the q0.05.
        assert_eq!(band.len(), 8);
        let close = |p: (f64, f64), t: i64, v: f64| {
            (p.0 - f.x(t)).abs() < 0.06 && (p.1 - f.y(v)).abs() < 0.06
        };
        assert!(close(band[0], ts[23], 10.0), "{band:?}");
        assert!(close(band[3], times[2], 14.0), "{band:?}");
        assert!(close(band[4], times[2], 6.0), "{band:?}");
        assert!(close(band[7], ts[23], 10.0), "{band:?}");
        let median = numbers(path_of(&svg, "median"));
        assert!(median.iter().all(|p| (p.1 - f.y(10.0)).abs() < 0.06));
        let history = numbers(path_of(&svg, "history"));
        assert_eq!(history.len(), 24);
        assert!(close(history[0], ts[0], 10.0) && close(history[23], ts[23], 10.0));
        // The history starts the chart and the forecast ends it.
        assert!((f.x(ts[0]) - f.pad).abs() < 1e-9);
        assert!((f.x(times[2]) - (f.w - f.pad)).abs() < 1e-9);
        assert!(svg.contains("class=\"now\""));
    }
}
