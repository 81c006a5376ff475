//! `prescale forecast` and `prescale backtest`: the forecasting engine on CSV files.

use std::io::Write;
use std::path::{Path, PathBuf};

use prescale_forecast::cv::{cross_validate, CvConfig};
use prescale_forecast::{AutoSpec, ModelChoice, ScoreKind};
use serde_json::json;

use crate::input::{format_ts, read_csv, Series};

/// Output format of `forecast`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForecastFormat {
    /// `timestamp` then one `q<level>` column per level.
    Csv,
    /// The forecast, the model and why it was chosen.
    Json,
}

/// Output format of `backtest`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BacktestFormat {
    /// Aligned columns for people.
    Table,
    /// One row per series and model.
    Csv,
    /// Everything, including failures.
    Json,
}

/// Parses `0.05,0.5,0.95`, keeping each level's spelling for the column names.
pub fn parse_levels(s: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let v: f64 = part.parse().map_err(|_| {
            format!("quantile {part:?} is not a number; give levels like 0.05,0.5,0.95")
        })?;
        if !(v > 0.0 && v < 1.0) {
            return Err(format!("quantile {part} is outside (0, 1)"));
        }
        if out.iter().any(|(_, x)| (x - v).abs() < 1e-12) {
            return Err(format!("quantile {part} is given twice"));
        }
        out.push((part.to_string(), v));
    }
    if out.is_empty() {
        return Err("no quantile levels given".into());
    }
    out.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(out)
}

fn day_steps(step: i64) -> Option<usize> {
    (step > 0 && 86_400 % step == 0 && 86_400 / step >= 2).then(|| (86_400 / step) as usize)
}

#[allow(clippy::too_many_arguments)]
fn spec(
    budget: Option<f64>,
    series: &Series,
    choice: ModelChoice,
    season: Option<usize>,
    horizon: usize,
    folds: usize,
    levels: &[f64],
    score: ScoreKind,
) -> AutoSpec {
    AutoSpec {
        choice,
        season,
        day: day_steps(series.step),
        horizon,
        folds,
        levels: levels.to_vec(),
        score,
        budget: budget
            .filter(|b| *b > 0.0)
            .map(std::time::Duration::from_secs_f64),
    }
}

/// Score that picks the model.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScoreArg {
    /// Scaled CRPS.
    Crps,
    /// MASE of the median.
    Mase,
    /// sMAPE of the median.
    Smape,
}

impl From<ScoreArg> for ScoreKind {
    fn from(s: ScoreArg) -> Self {
        match s {
            ScoreArg::Crps => ScoreKind::Crps,
            ScoreArg::Mase => ScoreKind::Mase,
            ScoreArg::Smape => ScoreKind::Smape,
        }
    }
}

/// Arguments of `prescale forecast`.
#[derive(clap::Args)]
pub struct ForecastArgs {
    /// CSV file with a header and `timestamp` (unix seconds or RFC 3339) and `value` columns.
    #[arg(long, short, value_name = "FILE")]
    pub input: PathBuf,
    /// Steps to forecast (the step is the data's own).
    #[arg(long, value_name = "STEPS")]
    pub horizon: usize,
    /// Quantile levels; the CSV columns are named `q` + each level as written.
    #[arg(long, default_value = "0.05,0.5,0.95")]
    pub quantiles: String,
    /// auto (cross-validated choice), ensemble, naive, snaive, ets, mstl, arima, theta,
    /// prophet or lstm (lstm needs a build with `--features lstm`).
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Season length in steps (detected when absent).
    #[arg(long, value_name = "N", value_parser = season_steps)]
    pub season: Option<usize>,
    /// Cross-validation folds for selection and calibration.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub folds: u32,
    /// Score that picks the model.
    #[arg(long, value_enum, default_value_t = ScoreArg::Crps)]
    pub score: ScoreArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ForecastFormat::Csv)]
    pub format: ForecastFormat,
    /// Seconds `auto` and `ensemble` may spend cross-validating candidates; those still
    /// running then are left out (0: no limit). A named model always runs to the end.
    #[arg(long, default_value_t = 0.4, value_name = "SECS", value_parser = budget_secs, allow_hyphen_values = true)]
    pub time_budget: f64,
    /// Also write an HTML page: the forecast's quantiles as a fan over the recent
    /// history, the model chosen and why, and every candidate's cross-validation scores.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

/// `--season`: steps per season, at least two (a season of one step is no season).
fn season_steps(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 2 => Ok(n),
        Ok(n) => Err(format!(
            "a season is at least 2 steps, got {n}; leave --season out to detect it"
        )),
        Err(_) => Err(format!("{s:?} is not a whole number of steps")),
    }
}

/// `--time-budget`: seconds, zero (no limit) or more.
fn budget_secs(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!(
            "{s:?} is not a number of seconds, zero (no limit) or more"
        )),
    }
}

/// Runs `prescale forecast`; errors are for the user to fix (exit 2).
pub fn forecast(a: ForecastArgs) -> Result<(), String> {
    let levels = parse_levels(&a.quantiles)?;
    let choice = ModelChoice::parse(&a.model)?;
    if a.horizon == 0 {
        return Err("--horizon must be at least 1 step".into());
    }
    let series = read_csv(&a.input)?;
    for w in &series.warnings {
        eprintln!("warning: {}: {w}", a.input.display());
    }
    let need = a.horizon.max(8);
    if series.values.len() < need {
        return Err(format!(
            "{}: {} points are too few to forecast {} steps; give at least {need}",
            a.input.display(),
            series.values.len(),
            a.horizon
        ));
    }
    let lv: Vec<f64> = levels.iter().map(|l| l.1).collect();
    let spec = spec(
        Some(a.time_budget),
        &series,
        choice,
        a.season,
        a.horizon,
        a.folds as usize,
        &lv,
        a.score.into(),
    );
    // Candidates' cross-validations can take minutes (`--model arima` on hourly data
    // with a daily season, `--time-budget 0`): a spinner on a terminal counts them.
    let bar = crate::progress_bar(
        0,
        "{spinner} cross-validating candidates: {pos} done{msg} ({elapsed})",
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let run = spec.run(&series.values, |name| {
        bar.set_message(format!(", the last {name}"));
        bar.inc(1);
    });
    bar.finish_and_clear();
    let (model, selection) = run.map_err(|e| format!("{}: {e}", a.input.display()))?;
    let mut q = model
        .predict(a.horizon, &lv)
        .map_err(|e| format!("{}: {e}", a.input.display()))?;
    if q.iter().flatten().any(|v| !v.is_finite()) {
        // Past about 1e154 a value's square overflows, and every model squares them.
        let largest = series.values.iter().map(|v| v.abs()).fold(0.0, f64::max);
        let why = if largest > 1e100 {
            format!(
                "; the series reaches {largest:e}, too large for the models' arithmetic: scale it down (e.g. to thousands or millions)"
            )
        } else {
            format!("; try another --model than {}", selection.winner)
        };
        return Err(format!(
            "{}: the model produced a non-finite forecast{why}",
            a.input.display()
        ));
    }
    for row in &mut q {
        row.sort_by(|x, y| x.total_cmp(y));
    }
    let last = *series.ts.last().expect("non-empty");
    let at: Vec<i64> = (1..=a.horizon as i64)
        .map(|i| last + i * series.step)
        .collect();
    if let Some(path) = &a.report {
        let name = a.input.file_name().map_or_else(
            || a.input.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let page =
            crate::forecast_report::report_html(&name, &series, &levels, &at, &q, &selection);
        std::fs::write(path, page)
            .map_err(|e| format!("{}: cannot write the report: {e}", path.display()))?;
    }
    let times: Vec<String> = at.iter().map(|t| format_ts(*t, series.rfc3339)).collect();
    let mut out = std::io::stdout().lock();
    match a.format {
        ForecastFormat::Csv => {
            let header: Vec<String> = levels.iter().map(|(s, _)| format!("q{s}")).collect();
            let _ = writeln!(out, "timestamp,{}", header.join(","));
            for (t, row) in times.iter().zip(&q) {
                let vals: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
                let _ = writeln!(out, "{t},{}", vals.join(","));
            }
        }
        ForecastFormat::Json => {
            let rows: Vec<serde_json::Value> = times
                .iter()
                .zip(&q)
                .map(|(t, row)| {
                    let mut m = serde_json::Map::new();
                    m.insert("timestamp".into(), json!(t));
                    for ((name, _), v) in levels.iter().zip(row) {
                        m.insert(format!("q{name}"), json!(v));
                    }
                    serde_json::Value::Object(m)
                })
                .collect();
            let doc = json!({
                "model": selection.winner,
                "step_s": series.step,
                "selection": selection,
                "warnings": series.warnings,
                "forecast": rows,
            });
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&doc).expect("json"));
        }
    }
    Ok(())
}

/// Arguments of `prescale backtest`.
#[derive(clap::Args)]
pub struct BacktestArgs {
    /// A CSV file, or a directory of them.
    #[arg(long, short, value_name = "FILE|DIR")]
    pub input: PathBuf,
    /// Comma-separated models (as for `forecast --model`).
    #[arg(long, default_value = "naive,snaive,ets,mstl,arima,theta,auto")]
    pub models: String,
    /// Steps per fold.
    #[arg(long, default_value_t = 12)]
    pub horizon: usize,
    /// Rolling origins.
    #[arg(long, default_value_t = 3)]
    pub folds: usize,
    /// Season length in steps (detected when absent).
    #[arg(long, value_name = "N", value_parser = season_steps)]
    pub season: Option<usize>,
    /// Levels scored by CRPS.
    #[arg(long, default_value = "0.05,0.1,0.25,0.5,0.75,0.9,0.95")]
    pub quantiles: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = BacktestFormat::Table)]
    pub format: BacktestFormat,
    /// Seconds each model selection may spend cross-validating (0: no limit).
    #[arg(long, default_value_t = 0.4, value_name = "SECS", value_parser = budget_secs, allow_hyphen_values = true)]
    pub time_budget: f64,
}

fn inputs(p: &Path) -> Result<Vec<PathBuf>, String> {
    if p.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "csv")
                    && p.file_name().is_some_and(|n| n != "INDEX.csv")
            })
            .collect();
        v.sort();
        if v.is_empty() {
            return Err(format!("{}: no .csv files", p.display()));
        }
        Ok(v)
    } else {
        Ok(vec![p.to_path_buf()])
    }
}

/// Runs `prescale backtest`: each model's whole `forecast` procedure (selection and
/// calibration included) is cross-validated on each series.
pub fn backtest(a: BacktestArgs) -> Result<(), String> {
    let levels: Vec<f64> = parse_levels(&a.quantiles)?
        .into_iter()
        .map(|l| l.1)
        .collect();
    let choices: Vec<(String, ModelChoice)> = a
        .models
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(|m| ModelChoice::parse(m).map(|c| (m.to_string(), c)))
        .collect::<Result<_, _>>()?;
    if a.horizon == 0 || a.folds == 0 {
        return Err("--horizon and --folds must be at least 1".into());
    }
    let files = inputs(&a.input)?;
    let bar = crate::progress_bar(
        (files.len() * choices.len()) as u64,
        "{spinner} backtest [{bar:30}] {pos}/{len} {msg}",
    );
    let mut rows = Vec::new();
    for f in &files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let series = match read_csv(f) {
            Ok(s) => s,
            Err(e) => {
                bar.suspend(|| eprintln!("skipping {e}"));
                bar.inc(choices.len() as u64);
                continue;
            }
        };
        for (label, choice) in &choices {
            bar.set_message(format!("{name} {label}"));
            let spec = spec(
                Some(a.time_budget),
                &series,
                *choice,
                a.season,
                a.horizon,
                3,
                &levels,
                ScoreKind::Crps,
            );
            let inner_cv = match spec.plan(&series.values) {
                Ok(p) => p.cv,
                Err(e) => {
                    rows.push(json!({"series": name, "model": label, "error": e.to_string()}));
                    bar.inc(1);
                    continue;
                }
            };
            let cv = CvConfig {
                folds: a.folds,
                ..inner_cv
            };
            let r = cross_validate(&spec, &series.values, &cv);
            rows.push(json!({
                "series": name,
                "model": label,
                "fitted": r.folds.last().map(|f| f.model.clone()),
                "scores": r.scores,
                "failures": r.failures,
            }));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let mut out = std::io::stdout().lock();
    let num = |r: &serde_json::Value, k: &str| r["scores"][k].as_f64();
    match a.format {
        BacktestFormat::Json => {
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&rows).expect("json")
            );
        }
        BacktestFormat::Csv => {
            let _ = writeln!(
                out,
                "series,model,fitted,folds,mase,smape,crps,coverage80,width80,fit_seconds"
            );
            for r in &rows {
                let f = |k: &str| num(r, k).map(|v| format!("{v}")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{}",
                    r["series"].as_str().unwrap_or(""),
                    r["model"].as_str().unwrap_or(""),
                    r["fitted"].as_str().unwrap_or("").replace(',', ";"),
                    r["scores"]["folds"].as_u64().unwrap_or(0),
                    f("mase"),
                    f("smape"),
                    f("crps"),
                    f("coverage80"),
                    f("width80"),
                    f("fit_seconds"),
                );
            }
        }
        BacktestFormat::Table => {
            let _ = writeln!(
                out,
                "{:<48} {:<9} {:>5} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8}",
                "series", "model", "folds", "MASE", "sMAPE", "CRPS", "cov80", "width80", "fit s"
            );
            for r in &rows {
                let f = |k: &str, p: usize| {
                    num(r, k)
                        .map(|v| format!("{v:.p$}"))
                        .unwrap_or_else(|| "-".into())
                };
                let _ = writeln!(
                    out,
                    "{:<48} {:<9} {:>5} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8}",
                    r["series"].as_str().unwrap_or(""),
                    r["model"].as_str().unwrap_or(""),
                    r["scores"]["folds"].as_u64().unwrap_or(0),
                    f("mase", 3),
                    f("smape", 3),
                    f("crps", 3),
                    f("coverage80", 2),
                    f("width80", 2),
                    f("fit_seconds", 3),
                );
                if let Some(e) = r["error"].as_str() {
                    let _ = writeln!(out, "    error: {e}");
                } else if r["scores"].is_null() {
                    let _ = writeln!(out, "    failed: {}", r["failures"]);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_keep_their_spelling_and_reject_nonsense() {
        let l = parse_levels("0.95,0.05,0.5").unwrap();
        assert_eq!(
            l.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            vec!["0.05", "0.5", "0.95"]
        );
        assert!(parse_levels("0.5,1.5").is_err());
        assert!(parse_levels("0.5,0.50").is_err());
        assert!(parse_levels("a").is_err());
        assert!(parse_levels("").is_err());
    }

    #[test]
    fn day_steps_only_for_divisors_of_a_day() {
        assert_eq!(day_steps(300), Some(288));
        assert_eq!(day_steps(7), None);
        assert_eq!(day_steps(86_400), None);
    }
}
