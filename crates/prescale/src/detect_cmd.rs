//! `prescale detect`: scores every row of CSV series for anomalies with the streaming
//! [`prescale_detect::LikelihoodDetector`], in one pass, as the daemon would see them.
//!
//! Rows keep their order and timestamps exactly as written (the output has the same rows
//! as the input, as the Numenta Anomaly Benchmark's scorer requires); a row whose value is
//! empty or not a number scores 0 and is not learnt, with a warning. A directory is
//! walked recursively and mirrored under `--output`. `--as-daemon` judges the rows as the
//! daemon's watch of stored series does ([`prescale_detect::SeriesWatch`]).

use std::path::{Path, PathBuf};

use clap::Args;
use prescale_core::{Sample, SeriesKey, TimestampMs};
use prescale_detect::watch::{SeriesWatch, Verdict};
use prescale_detect::LikelihoodDetector;

use crate::input::{epoch_unit, unit_warning, unquote};

/// `prescale detect` arguments.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// A CSV file (`timestamp`, `value`), or a directory searched recursively for them.
    #[arg(long, short, value_name = "FILE|DIR")]
    pub input: PathBuf,
    /// Where to write: a file for a file (default: standard output), a directory for a
    /// directory (required), mirroring the input's layout.
    #[arg(long, short, value_name = "FILE|DIR")]
    pub output: Option<PathBuf>,
    /// Scores at or above this flag a row (`is_anomaly` 1); the scores are written anyway.
    /// 0.5 is a surprise the series' own tail expects less than once in ten days at its
    /// sample interval (from the timestamps; 5 minutes when they cannot be read), about
    /// where the NAB corpus is scored best.
    #[arg(long, default_value_t = 0.5, value_parser = unit_interval)]
    pub threshold: f64,
    /// Judge as the daemon's watch of stored series does: a row that scores as an
    /// anomaly is not one (`is_anomaly` 0) when the series came as near a day or a week
    /// before, within 15 minutes of that time (a nightly job, a daily peak). Timestamps
    /// must then be unix seconds or RFC 3339, in time order.
    #[arg(long)]
    pub as_daemon: bool,
    /// Also write an HTML page of the file: its values with the rows flagged marked, and
    /// every row's score against the threshold (one file, not a directory).
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

/// One scored row, for the report: its time (`None` where the timestamp is not one),
/// value (`None` where it is not a number), score and whether it is flagged.
pub(crate) struct Scored {
    pub at: Option<TimestampMs>,
    pub value: Option<f64>,
    pub score: f64,
    pub hit: bool,
}

/// What one file's scoring gives: the output text, warnings, how many rows were
/// flagged, and the rows.
struct FileScores {
    text: String,
    warnings: Vec<String>,
    flagged: usize,
    rows: Vec<Scored>,
}

/// How rows are scored: alone, or as the daemon's watch does with what came before.
enum Scorer {
    Alone(LikelihoodDetector),
    AsDaemon {
        watch: SeriesWatch,
        key: SeriesKey,
        seen: Vec<Sample>,
    },
}

impl Scorer {
    fn new(as_daemon: bool, threshold: f64) -> Self {
        if as_daemon {
            Self::AsDaemon {
                watch: SeriesWatch::new(threshold, 1),
                key: SeriesKey::metric("value").expect("a valid name"),
                seen: Vec::new(),
            }
        } else {
            Self::Alone(LikelihoodDetector::new())
        }
    }

    /// The row's score, and whether it is an anomaly.
    /// `at` is the row's time, `None` where `ts` (as written) is not one.
    fn score(
        &mut self,
        ts: &str,
        at: Option<TimestampMs>,
        v: f64,
        threshold: f64,
    ) -> Result<(f64, bool), String> {
        match self {
            Self::Alone(d) => {
                // Times say how often the series is sampled, which sets how rare a
                // surprise must be; rows without readable ones are taken as 5 minutes
                // apart.
                let score = match at {
                    Some(t) => d.score_at(t, v),
                    None => d.score(v),
                };
                Ok((score, score >= threshold))
            }
            Self::AsDaemon { watch, key, seen } => {
                let ts = at.ok_or_else(|| {
                    format!(
                        "timestamp {ts:?} is not unix seconds or RFC 3339, as --as-daemon needs"
                    )
                })?;
                let s = Sample { ts, value: v };
                let judged = watch.judge_stored(key, &[s], |a, b| {
                    let from = seen.partition_point(|x| x.ts < a);
                    let to = seen.partition_point(|x| x.ts <= b);
                    seen[from..to.max(from)].to_vec()
                });
                if seen.last().is_none_or(|l| l.ts < ts) {
                    seen.push(s);
                }
                // An expected row's score is halved, as scores are after a report.
                Ok(judged.first().map_or((0.0, false), |j| match j.verdict {
                    Verdict::Expected => (0.5 * j.score, false),
                    v => (j.score, v == Verdict::Anomaly),
                }))
            }
        }
    }
}

fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number in [0, 1]")),
    }
}

/// Scores one file's rows.
fn score_file(path: &Path, threshold: f64, as_daemon: bool) -> Result<FileScores, String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let mut lines = text.lines().enumerate();
    let (_, header) = lines
        .next()
        .ok_or_else(|| format!("{name}: empty file; expected a header `timestamp,value`"))?;
    // Named as `forecast` reads them: in any case, quoted or not.
    let cols: Vec<String> = header
        .split(',')
        .map(|c| unquote(c).to_ascii_lowercase())
        .collect();
    let find = |c: &str| cols.iter().position(|h| h == c);
    let (Some(ti), Some(vi)) = (find("timestamp"), find("value")) else {
        return Err(format!(
            "{name}:1: the header must name `timestamp` and `value` columns, got {header:?}"
        ));
    };
    let mut det = Scorer::new(as_daemon, threshold);
    let mut out = String::from("timestamp,value,anomaly_score,is_anomaly\n");
    let mut warnings = Vec::new();
    // Epoch numbers too large for seconds are in a finer unit, as in `forecast`'s input.
    let numeric: Vec<f64> = text
        .lines()
        .skip(1)
        .filter_map(|l| unquote(l.split(',').nth(ti)?).parse::<f64>().ok())
        .collect();
    let unit = epoch_unit(&numeric);
    if let Some((unit, _)) = unit {
        warnings.push(format!("{name}: {}", unit_warning(unit)));
    }
    let time = |ts: &str| match unit {
        Some((_, per_second)) => ts
            .parse::<f64>()
            .ok()
            .and_then(|t| prescale_core::unix_seconds_ms(t / per_second)),
        None => prescale_core::parse_ts(ts),
    };
    let mut flagged = 0;
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').collect();
        // Read without quotes, echoed as written.
        let written_ts = f
            .get(ti)
            .map(|s| s.trim())
            .filter(|s| !unquote(s).is_empty())
            .ok_or_else(|| format!("{name}:{}: no timestamp", i + 1))?;
        let written = f.get(vi).map(|s| s.trim()).unwrap_or("");
        let (ts, raw) = (unquote(written_ts), unquote(written));
        let value = raw.parse::<f64>().ok().filter(|v| v.is_finite());
        let at = time(ts);
        let (score, hit) = match value {
            Some(v) => det
                .score(ts, at, v, threshold)
                .map_err(|e| format!("{name}:{}: {e}", i + 1))?,
            _ => {
                if warnings.len() < 5 {
                    warnings.push(format!(
                        "{name}:{}: value {raw:?} is not a number; scored 0 and not learnt",
                        i + 1
                    ));
                }
                (0.0, false)
            }
        };
        flagged += usize::from(hit);
        out.push_str(&format!(
            "{written_ts},{written},{score:.6},{}\n",
            u8::from(hit)
        ));
        rows.push(Scored {
            at,
            value,
            score,
            hit,
        });
    }
    Ok(FileScores {
        text: out,
        warnings,
        flagged,
        rows,
    })
}

fn csv_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            csv_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "csv") {
            out.push(p);
        }
    }
    Ok(())
}

/// Runs `prescale detect`.
pub fn run(a: DetectArgs) -> Result<(), String> {
    if a.input.is_dir() && a.report.is_some() {
        return Err(format!(
            "{} is a directory: --report draws one file; give one of its files",
            a.input.display()
        ));
    }
    if a.input.is_dir() {
        let Some(out_dir) = &a.output else {
            return Err(format!(
                "{} is a directory: give --output DIR for the scored files",
                a.input.display()
            ));
        };
        let mut files = Vec::new();
        csv_files(&a.input, &mut files)?;
        if files.is_empty() {
            return Err(format!("no .csv files under {}", a.input.display()));
        }
        let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
                .expect("valid template"),
        );
        let mut flagged = 0;
        let mut rows = 0;
        for f in &files {
            let rel = f.strip_prefix(&a.input).expect("under the input");
            bar.set_message(rel.display().to_string());
            let FileScores {
                text,
                warnings,
                flagged: n,
                ..
            } = score_file(f, a.threshold, a.as_daemon)?;
            for w in warnings {
                bar.suspend(|| eprintln!("warning: {w}"));
            }
            flagged += n;
            rows += text.lines().count() - 1;
            let dest = out_dir.join(rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::write(&dest, text)
                .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let into = format!("in {} files into {}", files.len(), out_dir.display());
        eprintln!("{}", summary(rows, &into, flagged, &a));
        return Ok(());
    }
    let FileScores {
        text,
        warnings,
        flagged,
        rows: scored,
    } = score_file(&a.input, a.threshold, a.as_daemon)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &a.report {
        let name = a.input.file_name().map_or_else(
            || a.input.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let page = crate::detect_report::report_html(&name, &scored, a.threshold, a.as_daemon);
        std::fs::write(path, page)
            .map_err(|e| format!("{}: cannot write the report: {e}", path.display()))?;
    }
    let rows = text.lines().count() - 1;
    match &a.output {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            eprintln!(
                "{}",
                summary(rows, &format!("into {}", p.display()), flagged, &a)
            );
        }
        None => {
            print!("{text}");
            eprintln!("{}", summary(rows, "", flagged, &a));
        }
    }
    Ok(())
}

/// What a run found, for stderr: `scored 4032 rows into out.csv; 3 at or above 0.5`.
fn summary(rows: usize, into: &str, flagged: usize, a: &DetectArgs) -> String {
    format!(
        "scored {rows} rows{}{into}; {flagged} at or above {}{}",
        if into.is_empty() { "" } else { " " },
        a.threshold,
        if a.as_daemon {
            " and not matched a day or a week before"
        } else {
            ""
        }
    )
}
