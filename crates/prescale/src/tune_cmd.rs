//! `prescale tune WORKLOAD`: which of a workload's safeguards pay for themselves on its
//! own history, asked of the running daemon.
//!
//! A safeguard (the seasonal floor, the scale-down window and delay, the surge's extra
//! instances) buys fewer minutes short with money, and what it buys depends on the
//! workload: on a steady service the scale-down window holds capacity after every
//! peak for nothing, on a spiky one the seasonal floor saves minutes a day. `prescale
//! simulate --sweep` answers this on a trace and a scenario; a team running prescale
//! wants it answered on what its daemon has seen, with the settings as the daemon has
//! them, and the advice written as its configuration takes it. So this reads the
//! configuration in force (`GET /api/v1/status/config`) and the workload's demand as the
//! daemon stored it at each step (`prescale_demand{workload="..."}` and its other
//! dimensions', through the query API) over its last days, replays it at the
//! workload's own settings and with each safeguard turned the other way (or the
//! settings `--sweep` names), beside the oracle and HPA, and says whether another run
//! costs less and is short no longer, with the lines to put in the workload's
//! `[[workloads]]` entry. Nothing is changed unless asked: with `--write FILE` the
//! advice that held on each half of the days replayed is written into the workload's
//! entry of the configuration file a team keeps (its comments and layout kept), for
//! them to reload and commit.

use std::path::{Path, PathBuf};

use clap::Args;
use prescale_core::config::Config;
use prescale_core::Dim;
use prescale_orchestrate::simulate::{Policy, Scenario};
use prescale_orchestrate::tune::safeguard_flips;

use crate::ctl::{call, CtlError, Server};
use crate::simulate_cmd::{sweep, Form, SimFormat};

/// `prescale tune`.
#[derive(Args)]
pub struct TuneArgs {
    /// The workload, as the daemon's configuration names it.
    workload: String,
    #[command(flatten)]
    server: Server,
    /// How many days of its stored demand to replay, back from the daemon's last pass.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=90))]
    days: u32,
    /// Settings to try instead of the safeguards, as `prescale simulate --sweep` takes
    /// them: KEY=V1,V2,... (e.g. `sla_quantile=0.9,0.99`), given once or more.
    #[arg(long, value_name = "KEY=V1,V2,...")]
    sweep: Vec<String>,
    /// With `--sweep` given more than once: every combination of the values.
    #[arg(long, requires = "sweep")]
    grid: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = SimFormat::Table)]
    format: SimFormat,
    /// Write an HTML page charting each run's cost against its minutes short.
    #[arg(long, value_name = "OUT.html")]
    report: Option<PathBuf>,
    /// Seed of lead times and spot interruptions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where another run dominates the workload's own settings and does on each half of
    /// the days replayed too, write its settings into this configuration file (the
    /// workload's `[[workloads]]` entry; comments and layout kept), checked as the
    /// daemon reads it; then reload the daemon and commit the file.
    #[arg(long, value_name = "prescale.toml")]
    write: Option<PathBuf>,
    /// With `--write`: write the advice even where it did not hold on each half (or the
    /// days replayed were too few to halve).
    #[arg(long, requires = "write")]
    force: bool,
}

/// Runs the command.
pub fn run(a: TuneArgs) -> Result<(), CtlError> {
    let config = call(&a.server, "GET", "/api/v1/status/config", None)?;
    let toml = config["toml"].as_str().ok_or_else(|| {
        CtlError::Failed("the daemon's /api/v1/status/config has no configuration".into())
    })?;
    let cfg = Config::parse(toml, "the daemon's configuration")
        .map_err(|e| CtlError::Failed(e.to_string()))?;
    if !cfg.workloads.iter().any(|w| w.name == a.workload) {
        let names: Vec<&str> = cfg.workloads.iter().map(|w| w.name.as_str()).collect();
        return Err(CtlError::Refused(format!(
            "no workload {:?} in the daemon's configuration; it has {}",
            a.workload,
            names.join(", ")
        )));
    }
    let scenario = Scenario::from_config(&cfg, Some(&a.workload))?;
    let w = &scenario.workload;
    let status = call(&a.server, "GET", "/api/v1/workloads", None)?;
    let end_ms = status["last_tick"].as_i64().ok_or_else(|| {
        CtlError::Refused(format!(
            "the daemon at {} has not run a pass yet: nothing is stored to replay",
            a.server.url()
        ))
    })?;
    // The steps it stored: the last complete one before its last pass, and `days`
    // before that.
    let step = w.step_s as i64;
    let end = end_ms / 1000 / step * step - step;
    let start = end - i64::from(a.days) * 86_400;
    // Its other dimensions, where their demand was stored.
    let selector = |metric: &str| format!("{metric}{{workload={:?}}}", w.name);
    let mut dims = Vec::new();
    for d in Dim::ALL.into_iter().filter(|d| *d != Dim::Cpu) {
        if !w.dimensions.contains_key(d.name()) {
            continue;
        }
        let sel = selector(&format!("prescale_demand_{}", d.name()));
        let path = format!(
            "/api/v1/series?match[]={}",
            prescale_collect::http::percent_encode(&sel)
        );
        let found = call(&a.server, "GET", &path, None)?;
        if found.as_array().is_some_and(|s| !s.is_empty()) {
            dims.push((d, sel));
        } else {
            eprintln!(
                "note: {} is replayed without its {}: the daemon stored none of it ({sel})",
                w.name,
                d.name()
            );
        }
    }
    let dim = |d: Dim| dims.iter().find(|(x, _)| *x == d).map(|(_, s)| s.clone());
    let prom = crate::prom_trace::PromArgs {
        prometheus: Some(a.server.url().to_string()),
        cpu: Some(selector("prescale_demand")),
        memory: dim(Dim::Memory),
        disk_iops: dim(Dim::Disk),
        network_mbps: dim(Dim::Network),
        actual_cpu: None,
        actual_memory: None,
        actual_disk_iops: None,
        actual_network_mbps: None,
        start: Some(start.to_string()),
        end: Some(end.to_string()),
        step: format!("{step}s"),
        bearer_token_file: a.server.token_file().cloned(),
        basic_auth_file: None,
        query_timeout_s: 60,
        save_trace: None,
    };
    let trace = crate::prom_trace::fetch(&prom)?;
    let hours = trace.ts.len() as f64 * step as f64 / 3600.0;
    eprintln!(
        "{}: {} steps of {step} s ({hours:.1} h) of the demand the daemon stored, replayed at the workload's own settings and at each other value",
        w.name,
        trace.ts.len()
    );
    if hours < 24.0 {
        eprintln!(
            "warning: less than a day of {}'s demand is stored: settings that hold capacity over a day (the seasonal floor, the scale-down window) are judged on too little of it",
            w.name
        );
    }
    let specs = if a.sweep.is_empty() {
        safeguard_flips(w)
            .iter()
            .map(|set| {
                let (k, v) = &set[0];
                format!("{k}={v}")
            })
            .collect()
    } else {
        a.sweep.clone()
    };
    let advice = sweep(
        &specs,
        a.grid,
        Policy::Predictive,
        (&trace, &scenario, a.seed),
        (a.format, a.report.as_deref()),
        &Form::Config(w.name.clone()),
    )?;
    let Some(path) = &a.write else {
        return Ok(());
    };
    let Some(advice) = advice else {
        eprintln!(
            "nothing written to {}: no run dominates {}'s own settings",
            path.display(),
            w.name
        );
        return Ok(());
    };
    if !advice.holds_on_each_half && !a.force {
        return Err(CtlError::Refused(format!(
            "nothing written to {}: the advice ({}) did not hold on each half of the days replayed ({}), so its saving may be chance; replay more --days, or write it anyway with --force",
            path.display(),
            prescale_orchestrate::tune::settings_name(&advice.settings),
            if advice.halves.is_empty() {
                "too few to halve"
            } else {
                "it did worse on one"
            }
        )));
    }
    let changed = write_advice(path, &w.name, &advice).map_err(CtlError::Refused)?;
    eprintln!("wrote to {}:", path.display());
    for c in changed {
        eprintln!("  {c}");
    }
    eprintln!(
        "reload the daemon to put it in force (`curl -X POST {}/-/reload`, or SIGHUP), and commit the file where the configuration is kept",
        a.server.url()
    );
    Ok(())
}

/// Writes `advice` (its TOML: a `[[workloads]]` entry naming `workload`, and perhaps
/// other tables such as `[control]`) into the configuration file at `path`, keeping its
/// comments and layout: each key set in the workload's own entry (or the table named),
/// its inline comment kept. The file is checked as the daemon reads it, and as meaning
/// the advised values of the workload's own settings, before it replaces the old one
/// (written beside it, then renamed). What changed, in words; an error saying what to
/// fix where the file has no entry for the workload, is not TOML, or would not load.
pub(crate) fn write_advice(
    path: &Path,
    workload: &str,
    advice: &prescale_orchestrate::tune::Advice,
) -> Result<Vec<String>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let (new, changed) =
        with_advice(&text, workload, &advice.toml).map_err(|e| format!("{shown}: {e}"))?;
    let cfg = Config::parse(&new, &shown.to_string())
        .map_err(|e| format!("{shown} would not load with the advice written into it: {e}"))?;
    // The file now means the advised values for the workload (a [workload] default or
    // another entry of the same name cannot undo them), each read as the scenario
    // types it.
    let now = Scenario::from_config(&cfg, Some(workload))?;
    let own = advice
        .settings
        .iter()
        .filter(|(k, _)| !k.contains('.') || k.starts_with("workload."));
    for (k, v) in own {
        let want = now.with_settings(&[(k, v)])?.setting(k);
        if now.setting(k) != want {
            return Err(format!(
                "{shown}: written, {workload}'s {k} would read {}, not the advised {v}; set it by hand",
                now.setting(k).map_or_else(|| "nothing".to_string(), |r| r.to_string())
            ));
        }
    }
    replace_file(path, &new)?;
    Ok(changed)
}

/// Replaces the file at `path` with `text` whole: written beside it (with its
/// permissions), then renamed over it, so a reader never sees half of either. A link is
/// followed: the file it names is replaced and the link kept (a configuration linked
/// from a checkout stays linked).
pub(crate) fn replace_file(path: &Path, text: &str) -> Result<(), String> {
    let resolved = std::fs::canonicalize(path);
    let path = resolved.as_deref().unwrap_or(path);
    let tmp = path.with_file_name(format!(
        ".{}.prescale-tune",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config")
    ));
    std::fs::write(&tmp, text).map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: cannot replace: {e}", path.display())
    })
}

/// `text` (a configuration) with the settings of `advice` written in (see
/// [`write_advice`]), and what changed in words.
fn with_advice(text: &str, workload: &str, advice: &str) -> Result<(String, Vec<String>), String> {
    use toml_edit::{DocumentMut, Item, Table};
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("not TOML: {e}"))?;
    let advice: DocumentMut = advice
        .parse()
        .map_err(|e| format!("the advice is not TOML: {e}"))?;
    let mut changed = Vec::new();
    // Sets `key` of `table` (named `place` in words) to `item`, keeping the old value's
    // inline comment.
    let mut set = |table: &mut Table, place: &str, key: &str, item: &Item| {
        let mut item = item.clone();
        let before = table.get(key).and_then(Item::as_value).map(|old| {
            if let Some(v) = item.as_value_mut() {
                *v.decor_mut() = old.decor().clone();
            }
            old.clone().decorated("", "").to_string()
        });
        let after = item.as_value().map_or_else(
            || item.to_string(),
            |v| v.clone().decorated("", "").to_string(),
        );
        changed.push(match before {
            Some(b) if b == after => format!("{place}: {key} = {after} (already)"),
            Some(b) => format!("{place}: {key} = {after} (was {b})"),
            None => format!("{place}: {key} = {after} (was unset)"),
        });
        table[key] = item;
    };
    for (name, item) in advice.iter() {
        if name == "workloads" {
            let entries = item
                .as_array_of_tables()
                .ok_or("the advice's workloads is not [[workloads]]")?;
            for e in entries {
                let target = doc
                    .get_mut("workloads")
                    .and_then(Item::as_array_of_tables_mut)
                    .and_then(|a| {
                        a.iter_mut()
                            .find(|t| t.get("name").and_then(Item::as_str) == Some(workload))
                    })
                    .ok_or_else(|| {
                        format!(
                            "no [[workloads]] entry with name = {workload:?} to write into; add the advice to the entry that configures it:\n{}",
                            advice.to_string().trim_end()
                        )
                    })?;
                let place = format!("[[workloads]] {workload:?}");
                for (k, v) in e.iter().filter(|(k, _)| *k != "name") {
                    set(target, &place, k, v);
                }
            }
        } else if let Some(t) = item.as_table() {
            let target = doc
                .entry(name)
                .or_insert_with(|| Item::Table(Table::new()))
                .as_table_mut()
                .ok_or_else(|| format!("[{name}] is not a table"))?;
            let place = format!("[{name}]");
            for (k, v) in t.iter() {
                set(target, &place, k, v);
            }
        }
    }
    Ok((doc.to_string(), changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::config::DEFAULT_TOML;
    use prescale_orchestrate::tune::Advice;

    /// Advice setting `settings` of `workload`, as a tuning gives it.
    fn advice(workload: &str, settings: &[(&str, &str)]) -> Advice {
        let lines: String = settings
            .iter()
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        Advice {
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            cost_less: 1.0,
            minutes_less: 0.0,
            halves: vec![(0.5, 0.0), (0.5, 0.0)],
            holds_on_each_half: true,
            toml: format!("[[workloads]]\nname = {workload:?}\n{lines}"),
        }
    }

    /// The default configuration with a comment and an inline comment of a team's own.
    fn teams_file() -> String {
        DEFAULT_TOML
            .replace(
                "\n[[workloads]]\nname = \"host\"\n",
                "\n# Our web tier (owned by the platform team).\n[[workloads]]\nname = \"host\"\n",
            )
            .replace(
                "\nscale_down_window_s = 7200\n",
                "\nscale_down_window_s = 3600  # hold peaks for an hour\n",
            )
    }

    #[test]
    fn the_advice_goes_into_the_workloads_entry_and_the_rest_of_the_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prescale.toml");
        let text = teams_file();
        std::fs::write(&path, &text).unwrap();
        let advice = advice(
            "host",
            &[("scale_down_window_s", "0"), ("seasonal_floor", "false")],
        );
        let changed = write_advice(&path, "host", &advice).unwrap();
        assert_eq!(
            changed,
            [
                "[[workloads]] \"host\": scale_down_window_s = 0 (was 3600)",
                "[[workloads]] \"host\": seasonal_floor = false (was true)",
            ]
        );
        // Only those lines differ: the comments, the inline one included, stay.
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            new.contains(
                "# Our web tier (owned by the platform team).\n[[workloads]]\nname = \"host\"\n"
            ),
            "{new}"
        );
        let old_lines: Vec<&str> = text.lines().collect();
        let new_lines: Vec<&str> = new.lines().collect();
        assert_eq!(new_lines.len(), old_lines.len());
        let differ: Vec<(&str, &str)> = old_lines
            .iter()
            .zip(&new_lines)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (*a, *b))
            .collect();
        assert_eq!(
            differ,
            [
                (
                    "scale_down_window_s = 3600  # hold peaks for an hour",
                    "scale_down_window_s = 0  # hold peaks for an hour"
                ),
                ("seasonal_floor = true", "seasonal_floor = false"),
            ]
        );
        // The daemon reads what was advised, and nothing is left beside the file.
        let cfg = Config::load(&path).unwrap();
        let w = cfg.workloads.iter().find(|w| w.name == "host").unwrap();
        assert_eq!((w.scale_down_window_s, w.seasonal_floor), (0, false));
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // Written again: the same file, each line said to be as advised already.
        let again = write_advice(&path, "host", &advice).unwrap();
        assert!(again.iter().all(|c| c.ends_with("(already)")), "{again:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
        // Through a link (a configuration linked from a checkout): the file it names
        // is written, and the link stays a link.
        #[cfg(unix)]
        {
            let checkout = dir.path().join("checkout");
            std::fs::create_dir(&checkout).unwrap();
            let target = checkout.join("prescale.toml");
            std::fs::write(&target, &text).unwrap();
            let link = dir.path().join("linked.toml");
            std::os::unix::fs::symlink(&target, &link).unwrap();
            write_advice(&link, "host", &advice).unwrap();
            assert!(std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
            assert_eq!(std::fs::read_to_string(&target).unwrap(), new);
            assert_eq!(std::fs::read_dir(&checkout).unwrap().count(), 1);
        }
        // A [control] line of a sweep's advice goes into [control].
        let (with_control, said) = with_advice(
            &text,
            "host",
            "[[workloads]]\nname = \"host\"\n\n[control]\ninterval_s = 30\n",
        )
        .unwrap();
        assert_eq!(said, ["[control]: interval_s = 30 (was 15)"]);
        assert_eq!(
            Config::parse(&with_control, "t")
                .unwrap()
                .control
                .interval_s,
            30
        );
    }

    #[test]
    fn a_file_the_advice_cannot_go_into_is_left_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prescale.toml");
        let text = teams_file();
        std::fs::write(&path, &text).unwrap();
        // No entry for the workload: say where the lines go instead.
        let web = advice("web", &[("scale_down_window_s", "0")]);
        let e = write_advice(&path, "web", &web).unwrap_err();
        assert!(
            e.contains("no [[workloads]] entry with name = \"web\" to write into; add the advice to the entry that configures it:\n[[workloads]]\nname = \"web\"\nscale_down_window_s = 0"),
            "{e}"
        );
        // A value the daemon refuses: nothing written.
        let e = write_advice(
            &path,
            "host",
            &advice("host", &[("scale_down_window_s", "-5")]),
        )
        .unwrap_err();
        assert!(
            e.contains("would not load with the advice written into it"),
            "{e}"
        );
        // Not TOML.
        std::fs::write(&path, "[[workloads]\nname = ").unwrap();
        let e = write_advice(&path, "host", &advice("host", &[])).unwrap_err();
        assert!(e.contains("not TOML"), "{e}");
        std::fs::write(&path, &text).unwrap();
        for _ in 0..2 {
            let _ = write_advice(&path, "web", &web);
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        let missing = dir.path().join("none.toml");
        let e = write_advice(&missing, "host", &web).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
    }
}
