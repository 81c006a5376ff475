//! Which of a workload's safeguards pay for themselves on its own history.
//!
//! A safeguard (the seasonal floor, the scale-down window and delay, the surge's extra
//! instances) buys fewer minutes short with money, and what it buys depends on the
//! workload. [`tune`] replays a trace at a scenario's own settings and with each
//! safeguard turned the other way ([`safeguard_flips`]); where another run costs no
//! more and is short no longer (and is better in one), it is advice, checked on each
//! half of the trace replayed alone ([`on_each_half`]): a saving that holds on one
//! stretch only may be chance. `prescale simulate --sweep` and `prescale tune` print
//! the same with HPA beside every run; the daemon runs [`tune`] on each workload's
//! stored demand every day, as Kubernetes VPA's recommender keeps a recommendation
//! current, and shows the advice without acting on it.

use serde::{Deserialize, Serialize};

use crate::simulate::{simulate, Policy, Report, Scenario, Trace};
use prescale_core::Workload;

/// The settings a run changes, `(KEY, VALUE)` each (`KEY` or `TABLE.KEY`, the value as
/// `prescale simulate --sweep` takes it), in the order given.
pub type Settings = Vec<(String, String)>;

/// Each safeguard turned the other way from `w`'s setting, one setting a run: the
/// seasonal floor on or off, the scale-down window 0 (or an hour where it is off), the
/// scale-down delay 0 (or five minutes), the surge's extra instances 0 (or 1).
pub fn safeguard_flips(w: &Workload) -> Vec<Settings> {
    let other = |now: u64, on: u64| if now > 0 { 0 } else { on };
    let one = |k: &str, v: String| vec![(k.to_string(), v)];
    vec![
        one("seasonal_floor", (!w.seasonal_floor).to_string()),
        one(
            "scale_down_window_s",
            other(w.scale_down_window_s, 3600).to_string(),
        ),
        one(
            "scale_down_delay_s",
            other(w.scale_down_delay_s, 300).to_string(),
        ),
        one(
            "surge_extra",
            if w.surge_extra > 0.0 { "0" } else { "1" }.to_string(),
        ),
    ]
}

/// A run's settings as `KEY = VALUE, ...`.
pub fn settings_name(settings: &Settings) -> String {
    settings
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a run saving `cost_less` dollars and `minutes_less` minutes short over the own
/// settings (either below zero where it does worse) is no worse in either: a cent or a
/// tenth of a minute worse is rounding, not worse.
pub fn holds(cost_less: f64, minutes_less: f64) -> bool {
    cost_less >= -0.005 && minutes_less >= -0.05
}

/// For each of `points` (cost, minutes short), the cheapest other point that costs no
/// more and is short no longer, and is better in one of them (ties by the first given):
/// where there is one, the point is off the frontier of cost against minutes short.
pub fn dominated(points: &[(f64, f64)]) -> Vec<Option<usize>> {
    points
        .iter()
        .map(|&(cost, short)| {
            points
                .iter()
                .enumerate()
                .filter(|(_, &(c, m))| c <= cost && m <= short && (c < cost || m < short))
                .min_by(|(_, a), (_, b)| a.0.total_cmp(&b.0))
                .map(|(k, _)| k)
        })
        .collect()
}

/// Whether a saving held on each half of the trace (`halves`, as [`on_each_half`] gives
/// them): not known, so not said, for a trace too short to halve.
pub fn holds_on_each(halves: &[(f64, f64)]) -> bool {
    !halves.is_empty() && halves.iter().all(|&(c, m)| holds(c, m))
}

/// Whether a run that dominates the own settings on the whole trace also does on each
/// half replayed alone (`halves`: what it saves there, dollars and minutes short), in a
/// sentence; empty where the trace was too short to halve.
pub fn halves_words(halves: &[(f64, f64)]) -> String {
    const HALF: [&str; 2] = ["first", "second"];
    let worse: Vec<String> = halves
        .iter()
        .zip(HALF)
        .filter(|(&(cost, minutes), _)| !holds(cost, minutes))
        .map(|(&(cost, minutes), half)| {
            let mut how = Vec::new();
            if cost < -0.005 {
                how.push(format!("costs ${:.2} more", -cost));
            }
            if minutes < -0.05 {
                how.push(format!("is short {:.1} minutes longer", -minutes));
            }
            format!("on the {half} half it {}", how.join(" and "))
        })
        .collect();
    match (halves.len(), worse.is_empty()) {
        (0, _) => String::new(),
        (_, true) => {
            let list = |f: &dyn Fn(&(f64, f64)) -> String| -> String {
                halves.iter().map(f).collect::<Vec<_>>().join(" and ")
            };
            format!(
                "It does on each half of the trace replayed alone too ({} less; short {} minutes less).",
                list(&|(c, _)| format!("${c:.2}")),
                list(&|(_, m)| format!("{m:.1}"))
            )
        }
        (_, false) => format!(
            "But replayed on each half of the trace alone it does not ({}): a saving that does not hold on both halves may be chance.",
            worse.join("; ")
        ),
    }
}

/// Where a run's settings came from, and so where advice goes: a scenario's tables, or
/// the daemon's configuration, where a workload's settings are its entry in
/// `[[workloads]]` (`prescale simulate --config`, `prescale tune`, the daemon's own).
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    /// A scenario file.
    Scenario,
    /// The configuration, the workload so named.
    Config(String),
}

impl Form {
    /// Whose settings the runs vary, for the table's and the page's words.
    pub fn whose(&self) -> &'static str {
        match self {
            Form::Scenario => "scenario's",
            Form::Config(_) => "workload's",
        }
    }

    /// Before the advice's TOML: where it goes.
    pub fn lead_in(&self) -> &'static str {
        match self {
            Form::Scenario => "To use it, set:",
            Form::Config(_) => {
                "To use it, set in the configuration (in the workload's own [[workloads]] entry):"
            }
        }
    }

    /// Under a sweep's table where the own run is not dominated.
    pub fn not_dominated(&self) -> String {
        format!(
            "No run dominates the {} own settings on this trace: every run that costs less is short longer.",
            self.whose()
        )
    }
}

/// `settings` (`KEY` or `TABLE.KEY` with the value as given to `--sweep`) as TOML: a
/// table per `TABLE` (`workload` for a bare key), in the order first given, each value
/// as TOML reads it (a number, a boolean, an array, a quoted string) or, a bare word,
/// quoted, as the sweep took it. In the configuration's [`Form`], the workload's
/// settings (and `forecast.history_s`, `refit_s` and `error_decay`, which the daemon
/// reads from the workload) go in its `[[workloads]]` entry, named, and `control.KEY`
/// in `[control]`; a setting only the simulator has (HPA's, the selection's budget) is
/// a comment saying so.
pub fn settings_toml(settings: &Settings, form: &Form) -> String {
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    let mut simulator_only = Vec::new();
    for (key, value) in settings {
        let (table, field) = key.split_once('.').unwrap_or(("workload", key));
        let literal = if format!("v = {value}").parse::<toml::Table>().is_ok() {
            value.clone()
        } else {
            toml::Value::String(value.clone()).to_string()
        };
        let line = format!("{field} = {literal}");
        let heading = match (form, table) {
            (Form::Scenario, t) => format!("[{t}]"),
            (Form::Config(name), t)
                if t == "workload"
                    || (t == "forecast"
                        && matches!(field, "history_s" | "refit_s" | "error_decay")) =>
            {
                format!(
                    "[[workloads]]\nname = {}",
                    toml::Value::String(name.clone())
                )
            }
            (Form::Config(_), "control") => "[control]".to_string(),
            (Form::Config(_), _) => {
                simulator_only.push(format!(
                    "# {key} = {literal}: the simulator's own setting; the daemon has none"
                ));
                continue;
            }
        };
        match tables.iter_mut().find(|(t, _)| *t == heading) {
            Some((_, lines)) => lines.push(line),
            None => tables.push((heading, vec![line])),
        }
    }
    let mut out: String = tables
        .iter()
        .map(|(t, lines)| format!("{t}\n{}\n", lines.join("\n")))
        .collect();
    for line in simulator_only {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Runs jobs (a scenario and a policy each) on a trace with a seed: their reports in
/// order, or the first failure.
pub type Runner<'a> =
    dyn Fn(&Trace, u64, &[(&Scenario, Policy)]) -> Result<Vec<Report>, String> + 'a;

/// Runs `jobs` one after the other: what the daemon's background task does, leaving
/// the other core to the control loop.
pub fn run_in_turn(
    trace: &Trace,
    seed: u64,
    jobs: &[(&Scenario, Policy)],
) -> Result<Vec<Report>, String> {
    jobs.iter()
        .map(|(s, p)| simulate(trace, s, *p, seed, None, |_, _| {}))
        .collect()
}

/// What the run of `other` saves over `scenario`'s (dollars, minutes short) with
/// `policy` on each half of `trace` replayed alone, the forecaster learning afresh on
/// each; nothing for a trace of fewer than two days of steps.
pub fn on_each_half(
    trace: &Trace,
    (scenario, other): (&Scenario, &Scenario),
    (policy, seed): (Policy, u64),
    run: &Runner,
) -> Result<Vec<(f64, f64)>, String> {
    let n = trace.ts.len();
    if (n as i64) * trace.step_ms < 2 * 86_400_000 {
        return Ok(Vec::new());
    }
    let mut saved = Vec::new();
    for half in [trace.part(0..n / 2), trace.part(n / 2..n)] {
        let r = run(&half, seed, &[(scenario, policy), (other, policy)])?;
        saved.push((
            r[0].cost_total - r[1].cost_total,
            r[0].underprovisioned_minutes - r[1].underprovisioned_minutes,
        ));
    }
    Ok(saved)
}

/// What a run cost and how long it was short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tried {
    /// The settings it changed (none: the workload's own); in JSON `{KEY: VALUE}`.
    #[serde(with = "as_map")]
    pub settings: Settings,
    /// Dollars over the trace.
    pub cost: f64,
    /// Minutes ready capacity was below demand.
    pub underprovisioned_minutes: f64,
}

/// Where another run dominates the own settings: which, what it saves, whether that
/// holds on each half, and the configuration's lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advice {
    /// The settings of the cheapest run that dominates the own; in JSON `{KEY: VALUE}`.
    #[serde(with = "as_map")]
    pub settings: Settings,
    /// Dollars it costs less over the trace (zero or more).
    pub cost_less: f64,
    /// Minutes it is short less (zero or more; one of the two above zero).
    pub minutes_less: f64,
    /// On each half of the trace replayed alone, what it saves there (dollars, minutes
    /// short; below zero where it does worse); empty for a trace under two days. In
    /// JSON, each `{cost_less, minutes_less, holds}`.
    #[serde(with = "as_halves")]
    pub halves: Vec<(f64, f64)>,
    /// Whether it saves (or does no worse) on each half too; false where the trace was
    /// too short to halve (not known).
    pub holds_on_each_half: bool,
    /// The lines that set it, as [`settings_toml`] writes them.
    pub toml: String,
}

impl Advice {
    /// What it saves over the own settings (short `own_minutes`), in words naming the
    /// settings: `KEY = VALUE costs $X less and is short ...`.
    pub fn sentence(&self, own_minutes: f64) -> String {
        let cost = if self.cost_less > 0.005 {
            format!("costs ${:.2} less", self.cost_less)
        } else {
            "costs no more".to_string()
        };
        let short = if self.minutes_less > 0.05 {
            // Whole minutes, but a difference under half a minute is shown in tenths.
            let p = if self.minutes_less < 0.5 { 1 } else { 0 };
            let m = format!("{:.p$}", self.minutes_less);
            format!(
                "is short {m} minute{} less ({:.p$} against {:.p$})",
                if m == "1" { "" } else { "s" },
                own_minutes - self.minutes_less,
                own_minutes
            )
        } else {
            format!("is short no longer ({own_minutes:.0} minutes)")
        };
        format!("{} {cost} and {short}", settings_name(&self.settings))
    }
}

/// What [`tune`] found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    /// Steps replayed.
    pub steps: usize,
    /// Hours replayed.
    pub hours: f64,
    /// The workload's own settings.
    pub own: Tried,
    /// Each safeguard turned the other way.
    pub runs: Vec<Tried>,
    /// The cheapest run that costs no more and is short no longer, better in one;
    /// `None` where none is.
    pub advice: Option<Advice>,
}

impl Tuning {
    /// The finding in words: the advice, whether it held on each half, and its lines;
    /// or that no run dominates.
    pub fn summary(&self) -> String {
        let span = if self.hours >= 48.0 {
            format!("{:.1} days", self.hours / 24.0)
        } else {
            format!("{:.1} h", self.hours)
        };
        match &self.advice {
            Some(a) => {
                let halves = halves_words(&a.halves);
                let gap = if halves.is_empty() { "" } else { " " };
                format!(
                    "Replayed over its last {span} of stored demand, the workload's own settings are dominated: {}.{gap}{halves}",
                    a.sentence(self.own.underprovisioned_minutes)
                )
            }
            None => format!(
                "Replayed over its last {span} of stored demand, no safeguard turned the other way dominates the workload's own settings: every run that costs less is short longer."
            ),
        }
    }
}

/// Replays `trace` with the predictive policy at `scenario`'s own settings and with each
/// of `tried` (by default [`safeguard_flips`]), one after the other with `run`, and
/// finds the cheapest run that dominates the own, checked on each half of the trace.
pub fn tune(
    trace: &Trace,
    scenario: &Scenario,
    seed: u64,
    tried: &[Settings],
    run: &Runner,
) -> Result<Tuning, String> {
    let form = Form::Config(scenario.workload.name.clone());
    let mut scenarios = Vec::with_capacity(tried.len());
    for set in tried {
        scenarios.push(scenario.with_settings(set)?);
    }
    let jobs: Vec<(&Scenario, Policy)> = std::iter::once(scenario)
        .chain(&scenarios)
        .map(|s| (s, Policy::Predictive))
        .collect();
    let reports = run(trace, seed, &jobs)?;
    let as_tried = |settings: &Settings, r: &Report| Tried {
        settings: settings.clone(),
        cost: r.cost_total,
        underprovisioned_minutes: r.underprovisioned_minutes,
    };
    let own = as_tried(&Vec::new(), &reports[0]);
    let runs: Vec<Tried> = tried
        .iter()
        .zip(&reports[1..])
        .map(|(s, r)| as_tried(s, r))
        .collect();
    let points: Vec<(f64, f64)> = std::iter::once(&own)
        .chain(&runs)
        .map(|t| (t.cost, t.underprovisioned_minutes))
        .collect();
    let advice = match dominated(&points)[0] {
        Some(k) => {
            let best = &runs[k - 1];
            let halves = on_each_half(
                trace,
                (scenario, &scenarios[k - 1]),
                (Policy::Predictive, seed),
                run,
            )?;
            Some(Advice {
                settings: best.settings.clone(),
                cost_less: own.cost - best.cost,
                minutes_less: own.underprovisioned_minutes - best.underprovisioned_minutes,
                holds_on_each_half: holds_on_each(&halves),
                halves,
                toml: settings_toml(&best.settings, &form),
            })
        }
        None => None,
    };
    Ok(Tuning {
        steps: reports[0].steps,
        hours: reports[0].hours,
        own,
        runs,
        advice,
    })
}

/// [`Settings`] in JSON as an object, `{KEY: VALUE}` in their order.
mod as_map {
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (k, x) in v {
            m.serialize_entry(k, x)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Settings, D::Error> {
        let m = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Ok(m.into_iter().collect())
    }
}

/// [`Advice::halves`] in JSON: `{cost_less, minutes_less, holds}` each.
mod as_halves {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Half {
        cost_less: f64,
        minutes_less: f64,
        #[serde(default)]
        holds: bool,
    }

    pub fn serialize<S: Serializer>(v: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let halves: Vec<Half> = v
            .iter()
            .map(|&(cost_less, minutes_less)| Half {
                cost_less,
                minutes_less,
                holds: super::holds(cost_less, minutes_less),
            })
            .collect();
        halves.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        let v = Vec::<Half>::deserialize(d)?;
        Ok(v.into_iter()
            .map(|h| (h.cost_less, h.minutes_less))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pairs` as a run's settings.
    fn set(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Three days of five-minute steps of a smooth daily cycle from 20 to 100 vCPU.
    fn smooth_days() -> Trace {
        crate::replay::tests::daily(3, 20.0, 100.0)
    }

    /// What [`tune`] reports is what replaying each run on its own measures, and the
    /// advice is the cheapest run no dearer and no shorter than the own, with its halves
    /// replayed alone: on a smooth daily cycle, holding each evening's peak for two hours
    /// (the scale-down window) buys nothing.
    #[test]
    fn tuning_replays_each_safeguard_turned_and_advises_the_cheapest_that_dominates() {
        let trace = smooth_days();
        let scenario = Scenario::parse(crate::simulate::EXAMPLE_SCENARIO, "example").unwrap();
        let flips = safeguard_flips(&scenario.workload);
        let t = tune(&trace, &scenario, 1, &flips, &run_in_turn).unwrap();
        let replay = |s: &Scenario, tr: &Trace| {
            simulate(tr, s, Policy::Predictive, 1, None, |_, _| {}).unwrap()
        };
        let with = |set: &Settings| scenario.with_settings(set).unwrap();
        let own = replay(&scenario, &trace);
        assert_eq!(
            (t.own.cost, t.own.underprovisioned_minutes, t.steps),
            (own.cost_total, own.underprovisioned_minutes, trace.ts.len())
        );
        assert_eq!(t.runs.len(), 4);
        for (run, set) in t.runs.iter().zip(&flips) {
            let r = replay(&with(set), &trace);
            assert_eq!(&run.settings, set);
            assert_eq!(
                (run.cost, run.underprovisioned_minutes),
                (r.cost_total, r.underprovisioned_minutes)
            );
        }
        let best = t
            .runs
            .iter()
            .filter(|r| {
                r.cost <= t.own.cost
                    && r.underprovisioned_minutes <= t.own.underprovisioned_minutes
                    && (r.cost < t.own.cost
                        || r.underprovisioned_minutes < t.own.underprovisioned_minutes)
            })
            .min_by(|a, b| a.cost.total_cmp(&b.cost))
            .expect("a run dominates the own on a smooth cycle");
        let a = t.advice.as_ref().expect("advice");
        assert_eq!(a.settings, best.settings);
        assert_eq!(a.settings, set(&[("scale_down_window_s", "0")]), "{t:?}");
        assert!(a.cost_less > 1.0, "{t:?}");
        assert!((a.cost_less - (t.own.cost - best.cost)).abs() < 1e-9);
        // Each half replayed alone, at the own settings and the advised.
        let n = trace.ts.len();
        for (k, range) in [0..n / 2, n / 2..n].into_iter().enumerate() {
            let half = trace.part(range);
            let (o, b) = (replay(&scenario, &half), replay(&with(&a.settings), &half));
            assert!((a.halves[k].0 - (o.cost_total - b.cost_total)).abs() < 1e-9);
            assert!(
                (a.halves[k].1 - (o.underprovisioned_minutes - b.underprovisioned_minutes)).abs()
                    < 1e-9
            );
        }
        assert_eq!(
            a.holds_on_each_half,
            a.halves.len() == 2 && a.halves.iter().all(|&(c, m)| holds(c, m))
        );
        // The lines go in the workload's own entry.
        assert!(
            a.toml.starts_with("[[workloads]]\nname = \"trace\"\n"),
            "{}",
            a.toml
        );
        let summary = t.summary();
        assert!(
            summary.starts_with(
                "Replayed over its last 3.0 days of stored demand, the workload's own settings are dominated: "
            ),
            "{summary}"
        );
        assert!(summary.contains(&settings_name(&a.settings)), "{summary}");
        // A trace too short to halve is judged whole.
        let day = trace.part(0..288);
        let t = tune(&day, &scenario, 1, &flips, &run_in_turn).unwrap();
        if let Some(a) = t.advice {
            assert!(a.halves.is_empty() && !a.holds_on_each_half);
        }
    }

    #[test]
    fn each_safeguard_is_turned_the_other_way() {
        let cfg = prescale_core::config::Config::default();
        // (seasonal floor, window, delay, surge) as set, and what is tried.
        let cases = [
            (
                (true, 7200, 0, 1.0),
                [
                    ("seasonal_floor", "false"),
                    ("scale_down_window_s", "0"),
                    ("scale_down_delay_s", "300"),
                    ("surge_extra", "0"),
                ],
            ),
            (
                (false, 0, 600, 0.0),
                [
                    ("seasonal_floor", "true"),
                    ("scale_down_window_s", "3600"),
                    ("scale_down_delay_s", "0"),
                    ("surge_extra", "1"),
                ],
            ),
        ];
        for ((floor, window, delay, surge), tried) in cases {
            let mut w = cfg.workloads[0].clone();
            w.seasonal_floor = floor;
            w.scale_down_window_s = window;
            w.scale_down_delay_s = delay;
            w.surge_extra = surge;
            let want: Vec<Settings> = tried.iter().map(|&p| set(&[p])).collect();
            assert_eq!(safeguard_flips(&w), want);
        }
    }

    #[test]
    fn swept_settings_become_toml_tables_a_scenario_takes() {
        let toml = settings_toml(
            &set(&[
                ("seasonal_floor", "false"),
                ("forecast.refit_s", "3600"),
                ("workload.model", "ets"),
                ("tiers", "[\"spot\", \"standard\"]"),
                ("forecast.model", "\"theta\""),
            ]),
            &Form::Scenario,
        );
        assert_eq!(
            toml,
            "[workload]\nseasonal_floor = false\nmodel = \"ets\"\ntiers = [\"spot\", \"standard\"]\n[forecast]\nrefit_s = 3600\nmodel = \"theta\"\n"
        );
        let parsed: toml::Table = toml.parse().unwrap();
        assert_eq!(
            parsed["workload"]["seasonal_floor"],
            toml::Value::Boolean(false)
        );
        assert_eq!(parsed["forecast"]["refit_s"], toml::Value::Integer(3600));
        assert_eq!(parsed["workload"]["model"].as_str(), Some("ets"));
    }

    #[test]
    fn advice_says_whether_it_holds_on_each_half() {
        assert_eq!(halves_words(&[]), "");
        assert_eq!(
            halves_words(&[(5.25, 0.0), (6.031, 1.26)]),
            "It does on each half of the trace replayed alone too ($5.25 and $6.03 less; short 0.0 and 1.3 minutes less)."
        );
        // A cent or a tenth of a minute worse is noise, not worse.
        assert!(halves_words(&[(-0.004, -0.04), (1.0, 0.0)]).starts_with("It does"));
        assert_eq!(
            halves_words(&[(-0.76, -3.4), (2.0, -0.6)]),
            "But replayed on each half of the trace alone it does not (on the first half it costs $0.76 more and is short 3.4 minutes longer; on the second half it is short 0.6 minutes longer): a saving that does not hold on both halves may be chance."
        );
    }

    #[test]
    fn swept_settings_become_the_workloads_entry_in_a_configuration() {
        let toml = settings_toml(
            &set(&[
                ("seasonal_floor", "false"),
                ("control.interval_s", "30"),
                ("forecast.refit_s", "3600"),
                ("workload.scale_down_window_s", "0"),
                ("reactive.target_utilization", "0.6"),
            ]),
            &Form::Config("web".into()),
        );
        assert_eq!(
            toml,
            "[[workloads]]\nname = \"web\"\nseasonal_floor = false\nrefit_s = 3600\nscale_down_window_s = 0\n[control]\ninterval_s = 30\n# reactive.target_utilization = 0.6: the simulator's own setting; the daemon has none\n"
        );
        // What the daemon's configuration reads, laid over the defaults.
        let cfg = prescale_core::config::Config::parse(
            &toml.replacen("name = \"web\"\n", "name = \"web\"\ndemand = \"x\"\n", 1),
            "advice.toml",
        )
        .unwrap();
        let w = &cfg.workloads[0];
        assert_eq!(w.name, "web");
        assert!(!w.seasonal_floor);
        assert_eq!((w.refit_s, w.scale_down_window_s), (3600, 0));
        assert_eq!(cfg.control.interval_s, 30);
    }

    #[test]
    fn a_run_is_dominated_by_the_cheapest_run_no_dearer_and_no_shorter() {
        // (cost, minutes short)
        let points = [
            (100.0, 50.0), // dominated by 1 and 3: 3 is cheaper
            (90.0, 50.0),  // by 3
            (120.0, 10.0), // on the frontier: the least short
            (80.0, 40.0),  // on the frontier: the cheapest
            (80.0, 40.0),  // the same run again: neither dominates the other
            (85.0, 45.0),  // by 3 (and 4, given later)
        ];
        assert_eq!(
            dominated(&points),
            [Some(3), Some(3), None, None, None, Some(3)]
        );
        assert_eq!(dominated(&[]), Vec::<Option<usize>>::new());
    }
}
