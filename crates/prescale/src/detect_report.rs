//! `prescale detect --report`: one file's values with the rows flagged marked, and every
//! row's anomaly score against the threshold, on one self-contained HTML page (inline
//! SVG, no scripts): where a threshold is being chosen, what it flags is seen at once.

use std::fmt::Write as _;

use crate::detect_cmd::Scored;
use crate::forecast_report::{value_range, Frame};
use crate::simulate_cmd::html_escape;
use crate::svg::{path_through, range_ticks, tick_label, time_axis};

/// The rows' x: their times (ms) where every row has one (a row out of order is drawn
/// where its time is: NAB's machine temperature steps back an hour once), else their
/// numbers (the axis then counts rows).
pub(crate) fn xs(rows: &[Scored]) -> (Vec<i64>, bool) {
    let times: Option<Vec<i64>> = rows.iter().map(|r| r.at).collect();
    match times {
        Some(t) if t.len() > 1 => (t, true),
        _ => ((0..rows.len() as i64).collect(), false),
    }
}

/// The first and last x.
fn span(x: &[i64]) -> (i64, i64) {
    (
        x.iter().copied().min().unwrap_or(0),
        x.iter().copied().max().unwrap_or(0),
    )
}

/// The x axis under a plot: whole days or hours where x is time, row numbers otherwise.
fn x_axis(svg: &mut String, f: &Frame, timed: bool) {
    if timed {
        time_axis(svg, f.w, f.h, f.pad, f.t0, f.t1);
        return;
    }
    let (ticks, step) = range_ticks(f.t0 as f64, f.t1 as f64, 6);
    for v in ticks {
        let x = f.x(v as i64);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">row {}</text>",
            f.h - f.pad,
            f.h - f.pad + 5.0,
            f.h - f.pad + 18.0,
            tick_label(v + 1.0, step)
        );
    }
    svg.push_str("</svg>");
}

/// The values' chart: a line through the numbers (broken where a row has none), a red
/// circle at each row flagged, its time or row and score in its tooltip.
pub(crate) fn values_chart(rows: &[Scored], x: &[i64], timed: bool) -> String {
    let range = value_range(rows.iter().filter_map(|r| r.value));
    let f = Frame::new(340.0, 66.0, span(x), range);
    let mut svg = f.svg_with_grid("the values, the rows flagged circled");
    // Runs of rows with a number, each its own path.
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (r, t) in rows.iter().zip(x) {
        match r.value {
            Some(v) => runs.last_mut().expect("one run").push((f.x(*t), f.y(v))),
            None => runs.push(Vec::new()),
        }
    }
    for run in runs.into_iter().filter(|r| !r.is_empty()) {
        let _ = write!(
            svg,
            "<path class=\"values\" d=\"{}\" fill=\"none\" stroke=\"#222\" stroke-width=\"1\"/>",
            path_through(run)
        );
    }
    for ((r, t), k) in rows.iter().zip(x).zip(1..) {
        let (true, Some(v)) = (r.hit, r.value) else {
            continue;
        };
        let when = if timed {
            prescale_core::format_ts(*t)
        } else {
            format!("row {k}")
        };
        let _ = write!(
            svg,
            "<circle class=\"flagged\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"1.6\"><title>{when}: {v}, score {:.3}</title></circle>",
            f.x(*t),
            f.y(v),
            r.score
        );
    }
    x_axis(&mut svg, &f, timed);
    svg
}

/// The scores' chart: every row's score from 0 to 1, the threshold as a dashed line.
pub(crate) fn scores_chart(rows: &[Scored], x: &[i64], timed: bool, threshold: f64) -> String {
    let f = Frame::new(200.0, 40.0, span(x), (0.0, 1.0));
    let mut svg = f.svg_with_grid("each row's anomaly score and the threshold");
    let _ = write!(
        svg,
        "<path class=\"scores\" d=\"{}\" fill=\"none\" stroke=\"#7a7a7a\" stroke-width=\"0.8\"/>",
        path_through(rows.iter().zip(x).map(|(r, t)| (f.x(*t), f.y(r.score))))
    );
    let yt = f.y(threshold);
    let _ = write!(
        svg,
        "<line class=\"threshold\" x1=\"{}\" x2=\"{}\" y1=\"{yt:.1}\" y2=\"{yt:.1}\" stroke=\"#d62728\" stroke-dasharray=\"5 3\"/><text x=\"{}\" y=\"{:.1}\" font-size=\"11\" fill=\"#d62728\" text-anchor=\"end\">threshold {threshold}</text>",
        f.pad,
        f.w - f.pad,
        f.w - f.pad,
        yt - 4.0
    );
    x_axis(&mut svg, &f, timed);
    svg
}

/// The whole page.
pub(crate) fn report_html(name: &str, rows: &[Scored], threshold: f64, as_daemon: bool) -> String {
    let (x, timed) = xs(rows);
    let flagged = rows.iter().filter(|r| r.hit).count();
    let unnumbered = rows.iter().filter(|r| r.value.is_none()).count();
    let mode = if as_daemon {
        "as the daemon judges them: a row that scores as an anomaly is not one where the series came as near a day or a week before"
    } else {
        "each row against what came before it"
    };
    let axis = if timed {
        ""
    } else {
        " Not every timestamp is a time (unix seconds or RFC 3339), so rows are drawn evenly."
    };
    let skipped = if unnumbered > 0 {
        format!(" {unnumbered} row(s) without a number are gaps in the line (scored 0).")
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>prescale detect: {name}</title><style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}}h1{{font-size:20px}}h2{{font-size:16px}}</style></head><body><h1>prescale detect: {name}</h1><p>{n} rows scored {mode}; {flagged} at or above {threshold}, circled in red.{axis}{skipped}</p><h2>Values</h2>{values}<h2>Anomaly score</h2>{scores}</body></html>\n",
        name = html_escape(name),
        n = rows.len(),
        values = values_chart(rows, &x, timed),
        scores = scores_chart(rows, &x, timed, threshold),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(at: Option<i64>, value: Option<f64>, score: f64, hit: bool) -> Scored {
        Scored {
            at,
            value,
            score,
            hit,
        }
    }

    #[test]
    fn rows_are_placed_by_time_when_every_row_has_one_in_order() {
        let timed = [
            row(Some(0), Some(1.0), 0.1, false),
            row(Some(60_000), Some(2.0), 0.2, false),
        ];
        assert_eq!(xs(&timed), (vec![0, 60_000], true));
        // A row out of order stays where its time is.
        let late = [
            row(Some(60_000), Some(1.0), 0.1, false),
            row(Some(0), Some(2.0), 0.2, false),
        ];
        assert_eq!(xs(&late), (vec![60_000, 0], true));
        assert_eq!(span(&xs(&late).0), (0, 60_000));
        let untimed = [
            row(None, Some(1.0), 0.1, false),
            row(Some(0), Some(2.0), 0.2, false),
        ];
        assert_eq!(xs(&untimed), (vec![0, 1], false));
    }

    #[test]
    fn flagged_rows_are_circled_where_their_values_are_and_gaps_break_the_line() {
        let rows: Vec<Scored> = (0..10)
            .map(|i| match i {
                4 => row(Some(i * 60_000), None, 0.0, false),
                7 => row(Some(i * 60_000), Some(50.0), 0.9, true),
                _ => row(Some(i * 60_000), Some(10.0), 0.1, false),
            })
            .collect();
        let (x, timed) = xs(&rows);
        let svg = values_chart(&rows, &x, timed);
        // Two runs of numbers around the gap, and one circle, at row 7's value.
        assert_eq!(svg.matches("class=\"values\"").count(), 2);
        assert_eq!(svg.matches("class=\"flagged\"").count(), 1);
        let f = Frame {
            w: 1100.0,
            h: 340.0,
            pad: 66.0,
            t0: 0,
            t1: 540_000,
            lo: 10.0 - 2.0,
            hi: 50.0 + 2.0,
        };
        assert!(
            svg.contains(&format!(
                "cx=\"{:.1}\" cy=\"{:.1}\"",
                f.x(420_000),
                f.y(50.0)
            )),
            "{svg}"
        );
        let page = report_html("s.csv", &rows, 0.5, false);
        assert!(page.contains("10 rows scored"));
        assert!(page.contains("1 at or above 0.5"));
        assert!(page.contains("1 row(s) without a number"));
        assert!(page.contains("class=\"threshold\""));
    }
}
