//! Small pieces of the inline SVG charts of `prescale simulate`'s HTML pages.

use std::fmt::Write as _;

/// An SVG path through `points` (`M` to the first, `L` to each next), for a `d`
/// attribute; append `Z` to close an area.
pub(crate) fn path_through(points: impl IntoIterator<Item = (f64, f64)>) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.into_iter().enumerate() {
        let _ = write!(d, "{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" });
    }
    d
}

/// A horizontal grid line at height `y` across a plot `w` wide with margin `pad`, and its
/// `label` at the left edge.
pub(crate) fn grid_line(svg: &mut String, w: f64, pad: f64, y: f64, label: &str, stroke: &str) {
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{stroke}\"/><text x=\"4\" y=\"{:.1}\" font-size=\"11\">{label}</text>",
        w - pad,
        y + 4.0
    );
}

/// Ticks for a linear axis from 0 up to `max`: 0 and the multiples of a step of 1, 2,
/// 2.5 or 5 times a power of ten, the smallest step giving at most `most` ticks above 0.
pub(crate) fn linear_ticks(max: f64, most: usize) -> (Vec<f64>, f64) {
    if !(max > 0.0 && max.is_finite()) || most == 0 {
        return (vec![0.0], 1.0);
    }
    let mut p = 10f64.powf((max / most as f64).log10().floor());
    let step = loop {
        if let Some(s) = [1.0, 2.0, 2.5, 5.0]
            .iter()
            .map(|m| m * p)
            .find(|s| (max / s).floor() <= most as f64)
        {
            break s;
        }
        p *= 10.0;
    };
    let n = (max / step + 1e-9).floor() as usize;
    ((0..=n).map(|i| i as f64 * step).collect(), step)
}

/// Ticks for a linear axis from `lo` to `hi` (either side of zero): the multiples of a
/// step of 1, 2, 2.5 or 5 times a power of ten within the range, the smallest step
/// giving at most `most` of them.
pub(crate) fn range_ticks(lo: f64, hi: f64, most: usize) -> (Vec<f64>, f64) {
    if !(lo.is_finite() && hi.is_finite() && hi > lo) || most == 0 {
        return (vec![lo], 1.0);
    }
    let mut p = 10f64.powf(((hi - lo) / most as f64).log10().floor());
    let count = |s: f64| (hi / s + 1e-9).floor() - (lo / s - 1e-9).ceil() + 1.0;
    let step = loop {
        if let Some(s) = [1.0, 2.0, 2.5, 5.0]
            .iter()
            .map(|m| m * p)
            .find(|s| count(*s) <= most as f64)
        {
            break s;
        }
        p *= 10.0;
    };
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    ((first..=last).map(|i| i as f64 * step).collect(), step)
}

/// A tick's label: `v` with as many decimals as the axis `step` needs, thousands
/// separated (`12,500`, `0.25`, `-1,500`).
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    if v < 0.0 && format!("{:.3}", -v) != "0.000" {
        return format!("-{}", tick_label(-v, step));
    }
    let v = v.abs();
    let decimals = (0..4)
        .find(|d| {
            let s = step * 10f64.powi(*d);
            (s - s.round()).abs() < 1e-6
        })
        .unwrap_or(3);
    let text = format!("{:.*}", decimals as usize, v);
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Times to label under a time axis from `first` to `last` (ms): the whole minutes,
/// hours or days of the shortest of these spacings that cuts the span into at most six,
/// each with a label as long as its spacing needs (`2014-05-14` for days, `05-14 06:00` within a
/// day).
pub(crate) fn time_ticks(first: i64, last: i64) -> Vec<(i64, String)> {
    const M: i64 = 60_000;
    const H: i64 = 60 * M;
    const D: i64 = 24 * H;
    let span = last - first;
    let Some(every) = [
        M,
        5 * M,
        10 * M,
        15 * M,
        30 * M,
        H,
        2 * H,
        3 * H,
        6 * H,
        12 * H,
        D,
        2 * D,
        7 * D,
        14 * D,
        28 * D,
        91 * D,
        365 * D,
    ]
    .into_iter()
    .find(|e| span / e <= 6) else {
        return Vec::new();
    };
    let mut t = first.div_euclid(every) * every;
    if t < first {
        t += every;
    }
    let mut out = Vec::new();
    while t <= last {
        let full = prescale_core::format_ts(t);
        let label = if every >= D {
            full.get(..10).unwrap_or(&full).to_string()
        } else {
            full.get(5..16)
                .map_or(full.clone(), |s| s.replace('T', " "))
        };
        out.push((t, label));
        t += every;
    }
    out
}

/// The time axis under a plot `w` by `h` with margin `pad` whose x runs linearly from
/// `first` to `last`: a tick and label at each of [`time_ticks`], and the end of the SVG.
pub(crate) fn time_axis(svg: &mut String, w: f64, h: f64, pad: f64, first: i64, last: i64) {
    let x = |t: i64| {
        if last > first {
            pad + (w - 2.0 * pad) * (t - first) as f64 / (last - first) as f64
        } else {
            pad
        }
    };
    for (t, label) in time_ticks(first, last) {
        let xx = x(t);
        let _ = write!(
            svg,
            "<line x1=\"{xx:.1}\" x2=\"{xx:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{xx:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>",
            h - pad,
            h - pad + 5.0,
            h - pad + 18.0,
        );
    }
    svg.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_moves_to_the_first_point_and_draws_to_the_rest() {
        assert_eq!(
            path_through([(1.0, 2.0), (3.25, 4.0), (5.0, 6.0)]),
            "M1.0,2.0 L3.2,4.0 L5.0,6.0 "
        );
        assert_eq!(path_through(std::iter::empty()), "");
    }

    #[test]
    fn linear_ticks_are_round_and_labels_say_no_more_than_the_step_needs() {
        assert_eq!(
            linear_ticks(252.0, 5),
            (vec![0.0, 50.0, 100.0, 150.0, 200.0, 250.0], 50.0)
        );
        assert_eq!(
            linear_ticks(20794.0, 5),
            (vec![0.0, 5000.0, 10000.0, 15000.0, 20000.0], 5000.0)
        );
        assert_eq!(linear_ticks(1.0, 4).1, 0.25);
        assert_eq!(linear_ticks(0.0, 4), (vec![0.0], 1.0));
        assert_eq!(tick_label(20000.0, 5000.0), "20,000");
        assert_eq!(tick_label(1234567.0, 1.0), "1,234,567");
        assert_eq!(tick_label(0.75, 0.25), "0.75");
        assert_eq!(tick_label(2.5, 2.5), "2.5");
        assert_eq!(tick_label(150.0, 50.0), "150");
        assert_eq!(tick_label(-1500.0, 500.0), "-1,500");
        assert_eq!(tick_label(-0.0, 0.5), "0.0");
    }

    #[test]
    fn range_ticks_fall_on_round_values_within_the_range() {
        assert_eq!(
            range_ticks(5.6, 14.4, 6),
            (vec![6.0, 8.0, 10.0, 12.0, 14.0], 2.0)
        );
        let (t, step) = range_ticks(-3.2, 7.9, 5);
        assert_eq!((t, step), (vec![-2.0, 0.0, 2.0, 4.0, 6.0], 2.0));
        // A series of millions that moves by thousands keeps its thousands.
        let (t, step) = range_ticks(5_741_000.0, 6_335_000.0, 6);
        assert_eq!(step, 100_000.0);
        assert_eq!(t.first(), Some(&5_800_000.0));
        assert_eq!(t.last(), Some(&6_300_000.0));
        assert_eq!(range_ticks(1.0, 1.0, 5), (vec![1.0], 1.0));
    }

    #[test]
    fn time_ticks_fall_on_whole_days_hours_or_minutes() {
        let day = 86_400_000;
        // 2014-05-14 01:10 to 2014-07-15 17:15: every 14 days, from a whole day.
        let (first, last) = (1_400_029_800_000, 1_405_444_500_000);
        let t = time_ticks(first, last);
        assert!(!t.is_empty() && t.len() <= 6, "{t:?}");
        assert!(
            t.iter().all(|(ts, l)| ts % day == 0 && l.len() == 10),
            "{t:?}"
        );
        assert!(t.windows(2).all(|p| p[1].0 - p[0].0 == 14 * day), "{t:?}");
        assert!(t[0].0 >= first && t.last().unwrap().0 <= last);
        // Five hours: every hour, labelled with the time of day.
        let t = time_ticks(30 * 60_000, 5 * 3_600_000 + 30 * 60_000);
        assert_eq!(t.len(), 5, "{t:?}");
        assert_eq!(t[0], (3_600_000, "01-01 01:00".to_string()));
        // An hour: every ten minutes, both ends included.
        let t = time_ticks(0, 3_600_000);
        assert_eq!(t.len(), 7, "{t:?}");
        assert_eq!(t[1], (600_000, "01-01 00:10".to_string()));
    }
}
