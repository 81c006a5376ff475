//! Reading a series from CSV for `forecast`, `backtest` and `simulate`: a header with
//! `timestamp` (unix seconds or RFC 3339; a column of epoch numbers too large for seconds
//! is read as milliseconds, microseconds or nanoseconds, with a warning) and `value`
//! columns. Unsorted rows are sorted and repeated
//! timestamps keep their first value, each with a warning; empty or NaN values and gaps in
//! the regular step are filled by linear interpolation, also with a warning. Anything
//! else wrong is an error naming the file and line.

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// A regular series read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Unix seconds of each point (regular, `step` apart).
    pub ts: Vec<i64>,
    /// Values, all finite.
    pub values: Vec<f64>,
    /// Seconds between points.
    pub step: i64,
    /// Whether the file used RFC 3339 timestamps (output follows the input).
    pub rfc3339: bool,
    /// Things fixed on the way, for stderr.
    pub warnings: Vec<String>,
}

pub(crate) fn parse_ts(s: &str) -> Option<(i64, bool)> {
    let s = s.trim();
    if let Ok(v) = s.parse::<i64>() {
        return Some((v, false));
    }
    if let Ok(v) = s.parse::<f64>() {
        if v.is_finite() {
            return Some((v.round() as i64, false));
        }
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    Some((secs, true))
}

/// Formats unix seconds the way the input was written (as seconds where RFC 3339
/// cannot write them: before 1970, past the year 9999).
pub fn format_ts(secs: i64, rfc3339: bool) -> String {
    if rfc3339 && (0..253_402_300_800).contains(&secs) {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs as u64)).to_string()
    } else {
        secs.to_string()
    }
}

/// Reads and regularises a CSV series from its `timestamp` and `value` columns.
pub fn read_csv(path: &Path) -> Result<Series, String> {
    read_csv_column(path, "value")
}

/// Reads and regularises the `timestamp` column and column `col` of a CSV file.
pub fn read_csv_column(path: &Path, col: &str) -> Result<Series, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| format!("{name}: empty file; expected a header `timestamp,{col}`"))?;
    let cols: Vec<String> = header
        .split(',')
        .map(|c| unquote(c).to_ascii_lowercase())
        .collect();
    // Which of two same-named columns is meant cannot be guessed.
    if let Some((k, c)) = cols
        .iter()
        .enumerate()
        .find(|(k, c)| !c.is_empty() && cols[..*k].contains(c))
    {
        return Err(format!(
            "{name}:1: column {c:?} appears twice in the header (columns {} and {}); rename or drop one",
            cols.iter().position(|x| x == c).unwrap_or(0) + 1,
            k + 1
        ));
    }
    let find = |want: &str| cols.iter().position(|c| c == want);
    let (Some(ti), Some(vi)) = (find("timestamp"), find(col)) else {
        let missing: Vec<String> = ["timestamp", col]
            .iter()
            .filter(|c| find(c).is_none())
            .map(|c| format!("`{c}`"))
            .collect();
        return Err(format!(
            "{name}:1: header {header:?} has no {} column; the first line must name both, e.g. `timestamp,{col}`",
            missing.join(" or ")
        ));
    };
    let mut rows: Vec<(i64, Option<f64>)> = Vec::new();
    let mut rfc = false;
    // Each row's numeric timestamp as written, to tell the unit by.
    let mut numeric: Vec<f64> = Vec::new();
    for (i, line) in lines {
        let f: Vec<&str> = line.split(',').collect();
        let lineno = i + 1;
        let (Some(t), Some(v)) = (f.get(ti), f.get(vi)) else {
            return Err(format!(
                "{name}:{lineno}: expected {} columns, found {}",
                cols.len(),
                f.len()
            ));
        };
        let t = unquote(t);
        let (ts, is_rfc) = parse_ts(t).ok_or_else(|| {
            format!("{name}:{lineno}: timestamp {t:?} is neither unix seconds nor RFC 3339 (2026-01-05T14:00:00Z)")
        })?;
        rfc |= is_rfc;
        if !is_rfc {
            numeric.push(t.parse::<f64>().unwrap_or(ts as f64));
        }
        let v = unquote(v);
        let value = if v.is_empty() || v.eq_ignore_ascii_case("nan") {
            None
        } else {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Some(x),
                Ok(_) => None,
                Err(_) => {
                    return Err(format!(
                        "{name}:{lineno}: value {v:?} is not a number; the `{col}` column must hold numbers"
                    ))
                }
            }
        };
        rows.push((ts, value));
    }
    let mut warning = None;
    if !rfc {
        if let Some((unit, per_second)) = epoch_unit(&numeric) {
            for (r, t) in rows.iter_mut().zip(&numeric) {
                r.0 = (t / per_second).round() as i64;
            }
            warning = Some(unit_warning(unit));
        }
    }
    let mut series = regularise(&name.to_string(), rows, rfc, None)?;
    series.warnings.splice(0..0, warning);
    Ok(series)
}

/// A CSV field without the spaces and double quotes around it.
pub(crate) fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

/// What reading timestamps in `unit` (from [`epoch_unit`]) is reported as.
pub(crate) fn unit_warning(unit: &str) -> String {
    format!("timestamps read as {unit} since 1970 (as seconds, they would be past the year 5000)")
}

/// Unix seconds past this are in the year 5138: a timestamp column all beyond it was
/// written in a finer unit (Grafana, pandas and most databases write milliseconds,
/// InfluxDB nanoseconds).
const SECONDS_BEYOND: f64 = 1e11;

/// The unit of a column of epoch timestamps that are all too large for seconds, and how
/// many of it make a second: milliseconds below 10^14, microseconds below 10^17, else
/// nanoseconds (each the same span of years as seconds below 10^11). `None` when any is
/// small enough to be seconds: a column mixing units is then refused for the gap it
/// makes ([`regularise`]).
pub(crate) fn epoch_unit(ts: &[f64]) -> Option<(&'static str, f64)> {
    let least = ts.iter().map(|t| t.abs()).min_by(f64::total_cmp)?;
    if least < SECONDS_BEYOND {
        None
    } else if least < SECONDS_BEYOND * 1e3 {
        Some(("milliseconds", 1e3))
    } else if least < SECONDS_BEYOND * 1e6 {
        Some(("microseconds", 1e6))
    } else {
        Some(("nanoseconds", 1e9))
    }
}

/// How many steps a series may span, at most, per row it has (beyond
/// [`MIN_GRID_REFUSED`]): more and most of its grid would be interpolated.
const MAX_GRID_PER_ROW: usize = 100;

/// Spans this short are always put on their grid, however few their rows.
const MIN_GRID_REFUSED: usize = 100_000;

/// Puts `rows` (unix seconds, value or none) of the series `name` on a regular grid of
/// `step` seconds (by default the most common gap between them), from the first row on:
/// rows out of order are sorted, repeated timestamps keep their first value, holes are
/// filled by linear interpolation, each said in the warnings.
pub fn regularise(
    name: &str,
    mut rows: Vec<(i64, Option<f64>)>,
    rfc: bool,
    step: Option<i64>,
) -> Result<Series, String> {
    let mut warnings = Vec::new();
    if rows.windows(2).any(|w| w[1].0 < w[0].0) {
        warnings.push("rows were not in time order; sorted them".to_string());
        rows.sort_by_key(|r| r.0);
    }
    let before = rows.len();
    // The first number of each: an empty or NaN row does not hide a good one after it.
    rows.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same && first.1.is_none() {
            first.1 = later.1;
        }
        same
    });
    if rows.len() < before {
        warnings.push(format!(
            "{} repeated timestamp(s); kept the first value of each (the first number, where one was empty or not a number)",
            before - rows.len()
        ));
    }
    if rows.len() < 2 {
        return Err(format!(
            "{name}: {} data row(s); a series needs at least 2",
            rows.len()
        ));
    }
    let far = prescale_core::MAX_TS_MS / 1000;
    if let Some((t, _)) = rows.iter().find(|(t, _)| !(-far..=far).contains(t)) {
        return Err(format!(
            "{name}: timestamp {t} is not a time: unix seconds within {} of 1970",
            prescale_core::MAX_TS_SPAN
        ));
    }
    let step = step.unwrap_or_else(|| {
        // The lower median of the gaps: with as many long gaps as short ones, the finer
        // grid fills the long ones where the coarser would merge rows and lose values.
        let mut diffs: Vec<i64> = rows.windows(2).map(|w| w[1].0 - w[0].0).collect();
        diffs.sort_unstable();
        diffs[(diffs.len() - 1) / 2]
    });
    let step = step.max(1);
    // Put every row on the regular grid starting at the first timestamp; fill holes.
    let t0 = rows[0].0;
    let last = rows[rows.len() - 1].0;
    let span = (last - t0) / step + 1;
    if span > (MAX_GRID_PER_ROW * rows.len()).max(MIN_GRID_REFUSED) as i64 {
        // A grid mostly made up is a timestamp in the wrong unit or a gap of years, not
        // data: one row in milliseconds among seconds made a grid of billions of steps,
        // and the process ran out of memory filling it.
        let (a, b) = rows
            .windows(2)
            .map(|w| (w[0].0, w[1].0))
            .max_by_key(|(a, b)| b - a)
            .expect("at least two rows");
        return Err(format!(
            "{name}: {} rows would take {span} steps of {step} s, most of them made up: the largest gap is from {a} to {b}; fix that timestamp (seconds, not milliseconds?) or split the series there",
            rows.len()
        ));
    }
    let n = span as usize;
    let mut grid: Vec<Option<f64>> = vec![None; n];
    let mut off_grid = 0;
    for (t, v) in &rows {
        let k = ((t - t0) as f64 / step as f64).round() as i64;
        if (t - t0) % step != 0 {
            off_grid += 1;
        }
        if let Some(slot) = grid.get_mut(k as usize) {
            if slot.is_none() {
                *slot = *v;
            }
        }
    }
    if off_grid > 0 {
        warnings.push(format!(
            "{off_grid} timestamp(s) off the {step}-second grid; moved to the nearest step"
        ));
    }
    let missing = grid.iter().filter(|v| v.is_none()).count();
    if missing == n {
        return Err(format!("{name}: no numeric values"));
    }
    if missing > 0 {
        warnings.push(format!(
            "{missing} missing or non-finite point(s) on the {step}-second grid; filled by linear interpolation"
        ));
    }
    let values = interpolate(&grid);
    let ts = (0..n).map(|k| t0 + k as i64 * step).collect();
    Ok(Series {
        ts,
        values,
        step,
        rfc3339: rfc,
        warnings,
    })
}

fn interpolate(grid: &[Option<f64>]) -> Vec<f64> {
    let known: Vec<(usize, f64)> = grid
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|x| (i, x)))
        .collect();
    let mut out = Vec::with_capacity(grid.len());
    let mut k = 0;
    for i in 0..grid.len() {
        while k + 1 < known.len() && known[k + 1].0 <= i {
            k += 1;
        }
        let (i0, v0) = known[k];
        let v = if i <= i0 || k + 1 == known.len() {
            v0
        } else {
            let (i1, v1) = known[k + 1];
            v0 + (v1 - v0) * (i - i0) as f64 / (i1 - i0) as f64
        };
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Series, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.csv");
        std::fs::write(&p, text).unwrap();
        read_csv(&p)
    }

    #[test]
    fn a_repeated_timestamp_keeps_its_first_number() {
        // Sorted by time (stable: the NaN row at 300 stays before the 3), the 300's
        // first number is 3, not a NaN to interpolate over; the first of two numbers
        // stays, as before.
        let s = read("timestamp,value\n0,1\n600,2\n300,NaN\n300,3\n600,9\n900,4\n").unwrap();
        assert_eq!(s.values, [1.0, 3.0, 2.0, 4.0]);
        assert!(
            s.warnings
                .iter()
                .any(|w| w.starts_with("2 repeated timestamp(s); kept the first value of each")),
            "{:?}",
            s.warnings
        );
        assert!(
            !s.warnings.iter().any(|w| w.contains("interpolation")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn a_grid_mostly_made_up_is_refused_naming_the_gap() {
        // Milliseconds among seconds: billions of five-minute steps.
        let e = read("timestamp,value\n0,1\n300,1\n600,1\n999999999999,1\n").unwrap_err();
        assert!(
            e.contains("4 rows would take 3333333334 steps of 300 s")
                && e.contains("the largest gap is from 600 to 999999999999"),
            "{e}"
        );
        // Timestamps past any calendar: refused before any arithmetic on them.
        let e = read(&format!(
            "timestamp,value\n{},1\n0,1\n{},1\n",
            i64::MIN,
            i64::MAX
        ))
        .unwrap_err();
        assert!(
            e.contains(&format!("timestamp {} is not a time", i64::MIN)),
            "{e}"
        );
        // A day missing from a week of five-minute steps is filled, as before.
        let rows: String = (0..2016)
            .filter(|i| !(288..576).contains(i))
            .map(|i| format!("{},1\n", i * 300))
            .collect();
        assert_eq!(
            read(&format!("timestamp,value\n{rows}"))
                .unwrap()
                .values
                .len(),
            2016
        );
    }

    #[test]
    fn epoch_timestamps_in_finer_units_are_read_as_such() {
        // Five-minute steps from 2023-11-14T22:13:20Z, written in each unit.
        for (unit, scale) in [
            ("seconds", 1i128),
            ("milliseconds", 1_000),
            ("microseconds", 1_000_000),
            ("nanoseconds", 1_000_000_000),
        ] {
            let rows: String = (0..4)
                .map(|i| format!("{},{i}\n", (1_700_000_000 + 300 * i) as i128 * scale))
                .collect();
            let s = read(&format!("timestamp,value\n{rows}")).unwrap();
            assert_eq!(s.step, 300, "{unit}");
            assert_eq!(s.ts[0], 1_700_000_000, "{unit}");
            assert_eq!(s.values, vec![0.0, 1.0, 2.0, 3.0], "{unit}");
            if scale == 1 {
                assert!(s.warnings.is_empty(), "{:?}", s.warnings);
            } else {
                assert!(
                    s.warnings.len() == 1 && s.warnings[0].contains(&format!("read as {unit}")),
                    "{unit}: {:?}",
                    s.warnings
                );
            }
        }
        // Fractional milliseconds round to the second.
        let s = read("timestamp,value\n1700000000000.4,1\n1700000060123.9,2\n").unwrap();
        assert_eq!((s.ts[0], s.step), (1_700_000_000, 60));
        // Relative seconds stay seconds, however many.
        let s = read("timestamp,value\n0,1\n300,2\n").unwrap();
        assert_eq!((s.ts.clone(), s.warnings.len()), (vec![0, 300], 0));
        // One row in milliseconds among seconds is no unit: refused for its gap.
        let e =
            read("timestamp,value\n1700000000,1\n1700000300,1\n1700000600,1\n1700000900000,2\n")
                .unwrap_err();
        assert!(e.contains("seconds, not milliseconds?"), "{e}");
        // RFC 3339 beside a number: the number is seconds.
        let s = read("timestamp,value\n2023-11-14T22:13:20Z,1\n1700000300,2\n").unwrap();
        assert_eq!((s.ts[1], s.warnings.len()), (1_700_000_300, 0));
    }

    #[test]
    fn sorts_dedups_and_fills_with_warnings() {
        let s = read("timestamp,value\n300,3\n0,0\n0,9\n600,\n1200,12\n").unwrap();
        assert_eq!(s.step, 300);
        assert_eq!(s.ts, vec![0, 300, 600, 900, 1200]);
        assert_eq!(s.values, vec![0.0, 3.0, 6.0, 9.0, 12.0]);
        assert_eq!(s.warnings.len(), 3, "{:?}", s.warnings);
        assert!(!s.rfc3339);
    }

    #[test]
    fn as_many_long_gaps_as_short_take_the_short_step() {
        // 00:00, 00:05 and 00:20: the grid is five minutes, with two steps filled; a
        // 15-minute grid moved 00:05 onto 00:00 and dropped its value.
        let s = read("timestamp,value\n0,1\n300,2\n1200,5\n").unwrap();
        assert_eq!(s.step, 300);
        assert_eq!(s.values, vec![1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(
            s.warnings.iter().all(|w| !w.contains("off the")),
            "{:?}",
            s.warnings
        );
    }

    #[test]
    fn rfc3339_round_trips() {
        let s = read("value,timestamp\n1,2026-01-05T00:00:00Z\n2,2026-01-05T00:05:00Z\n").unwrap();
        assert!(s.rfc3339);
        assert_eq!(s.step, 300);
        assert_eq!(format_ts(s.ts[1], true), "2026-01-05T00:05:00Z");
        // A forecast's steps past the year 9999 are written as seconds.
        assert_eq!(format_ts(253_402_300_799, true), "9999-12-31T23:59:59Z");
        assert_eq!(format_ts(253_402_300_800, true), "253402300800");
    }

    #[test]
    fn bad_input_names_file_and_line() {
        // Each column the header lacks is named, and only those.
        let e = read("time,val\n1,2\n").unwrap_err();
        assert!(
            e.contains(":1:") && e.contains("has no `timestamp` or `value` column"),
            "{e}"
        );
        let e = read("time,value\n1,2\n").unwrap_err();
        assert!(e.contains("has no `timestamp` column"), "{e}");
        let e = read("timestamp,val\n1,2\n").unwrap_err();
        assert!(e.contains("has no `value` column"), "{e}");
        let e = read("timestamp,value\n0,1\n60,abc\n").unwrap_err();
        assert!(e.contains(":3:") && e.contains("not a number"), "{e}");
        let e = read("timestamp,value\nyesterday,1\n").unwrap_err();
        assert!(e.contains(":2:") && e.contains("RFC 3339"), "{e}");
        assert!(read("").unwrap_err().contains("empty"));
        let e = read("timestamp,value,value\n0,1,2\n60,2,3\n").unwrap_err();
        assert!(
            e.contains(":1:") && e.contains("\"value\" appears twice") && e.contains("2 and 3"),
            "{e}"
        );
        assert!(read("timestamp,value\n0,1\n")
            .unwrap_err()
            .contains("at least 2"));
    }
}
