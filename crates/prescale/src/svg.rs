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

/// The first and last times under a plot `w` by `h` with margin `pad`, and the end of
/// the SVG.
pub(crate) fn time_axis(svg: &mut String, w: f64, h: f64, pad: f64, first: i64, last: i64) {
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"11\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{}</text></svg>",
        h - 18.0,
        prescale_core::format_ts(first),
        w - pad,
        h - 18.0,
        prescale_core::format_ts(last)
    );
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
}
