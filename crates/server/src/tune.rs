//! Each workload's safeguards tuned on its own stored demand, every `[control]
//! tune_every_s`: what `prescale tune` answers on request, kept current as Kubernetes
//! VPA's recommender keeps its recommendation, and shown; applied only with `[control]
//! tune_apply`, by the daemon ([`Applied`] keeps what came of it).
//!
//! A tuning replays the workload's last `tune_days` of `prescale_demand{workload}` (and
//! the other dimensions it stored) with its configuration in force, at its own settings
//! and with each safeguard turned the other way ([`prescale_orchestrate::tune`]). Where
//! another run costs no more and is short no longer, and is better in one, the advice
//! says so, whether it held on each half of the stretch, and the lines to set. It is
//! served at `GET /api/v1/workloads/{name}/tune`, kept as series
//! (`prescale_tune_saving_dollars{workload}` and the like, so `/metrics`, PromQL and
//! Grafana read it), and a change of advice is a `config` decision in the log.

use prescale_core::config::Config;
use prescale_core::{Decision, DecisionKind, SeriesKey, TimestampMs};
use prescale_orchestrate::simulate::Scenario;
use prescale_orchestrate::tune::{run_in_turn, safeguard_flips, tune, Tuning};
use prescale_store::Store;
use serde::{Deserialize, Serialize};

/// The latest tuning of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tuned {
    /// When it was made (unix ms): the last pass it replayed up to.
    pub at: TimestampMs,
    /// Days of stored demand it asked for.
    pub days: u64,
    /// What it found; `None` where it could not tune, with `error` saying why.
    pub tuning: Option<Tuning>,
    /// The finding in words (or why there is none).
    pub summary: String,
    /// Why it could not tune (too little demand stored, a replay that failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The configuration it replayed, as [`fingerprint`] gives it: one reloaded since
    /// (the advice applied, say) is tuned again at once.
    #[serde(default)]
    pub fingerprint: String,
}

/// What of `cfg` a tuning of workload `w` replays (the workload's entry, the tiers, the
/// control loop's pace), as a short hash: a reload that changes any of it makes the
/// tuning before out of date.
pub fn fingerprint(cfg: &Config, w: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let workload = cfg.workloads.iter().find(|x| x.name == w);
    serde_json::to_string(&(workload, &cfg.tiers, cfg.control.interval_s))
        .unwrap_or_default()
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// At least this many hours of demand before a tuning: the seasonal floor and the
/// scale-down window hold capacity over a day, and judging them on less says little.
pub const LEAST_HOURS: f64 = 24.0;

/// Tunes workload `name` of `cfg` on its stored demand over the `days` before `now`.
pub fn tune_workload(
    store: &Store,
    cfg: &Config,
    name: &str,
    days: u64,
    now: TimestampMs,
) -> Result<Tuning, String> {
    let scenario = Scenario::from_config(cfg, Some(name))?;
    let w = &scenario.workload;
    let from = now - days as i64 * 86_400_000;
    let demand = crate::compare::series(store, "prescale_demand", name, None, from, now)?;
    let step_ms = w.step_s as i64 * 1000;
    let hours = demand.len() as f64 * step_ms as f64 / 3_600_000.0;
    // The step in progress is not stored yet: a day of passes has a day less a step.
    if (demand.len() as i64 + 1) * step_ms < (LEAST_HOURS * 3_600_000.0) as i64 {
        return Err(format!(
            "{hours:.1} h of {name:?}'s demand is stored (prescale_demand{{workload={name:?}}}); a tuning needs at least {LEAST_HOURS:.0} h, as the seasonal floor and the scale-down window hold capacity over a day"
        ));
    }
    let times: Vec<TimestampMs> = demand.iter().map(|d| d.0).collect();
    let (others, _) = crate::compare::other_dimensions(store, w, &times, from, now)?;
    let trace = crate::compare::end_to_end(&demand, others, Vec::new(), step_ms);
    tune(&trace, &scenario, 1, &safeguard_flips(w), &run_in_turn)
}

/// The state document that keeps workload `w`'s latest tuning.
fn state_name(w: &str) -> String {
    format!("tune/{w}")
}

/// Workload `w`'s latest tuning, kept in the store (`None`: not tuned yet).
pub fn latest(store: &Store, w: &str) -> Result<Option<Tuned>, String> {
    store.get_state(&state_name(w)).map_err(|e| e.to_string())
}

/// What came of the daemon's applying a workload's advice (`[control] tune_apply`): the
/// lines written into its configuration file and reloaded, or why it was not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// When (unix ms): the tuning's time.
    pub at: TimestampMs,
    /// The advice offered, as the tuning gave it.
    pub advice: prescale_orchestrate::tune::Advice,
    /// The tuning's finding in words ([`Tuning::summary`]).
    pub summary: String,
    /// The file written (or that would have been).
    pub file: String,
    /// What changed in it, in words (`[[workloads]] "web": scale_down_window_s = 0
    /// (was 3600)`); empty where it was not applied.
    pub written: Vec<String>,
    /// Why it was not applied; `None` where it was, and reloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl Applied {
    /// The `config` decision that says so, for workload `w`; `None` for a refusal said
    /// already (`before`'s, the one kept last), so a file left edited is not said daily.
    pub fn decision(&self, w: &str, before: Option<&Applied>) -> Option<Decision> {
        let reason = match &self.refused {
            None => format!(
                "tune applied (control.tune_apply): wrote {} into {} and reloaded. {}",
                self.written.join("; "),
                self.file,
                self.summary
            ),
            Some(why) => {
                let said = before.is_some_and(|b| {
                    b.refused.as_ref() == Some(why) && b.advice.settings == self.advice.settings
                });
                if said {
                    return None;
                }
                format!(
                    "tune not applied (control.tune_apply): {}: {why}",
                    prescale_orchestrate::tune::settings_name(&self.advice.settings)
                )
            }
        };
        Some(Decision {
            at: self.at,
            workload: w.to_string(),
            kind: DecisionKind::Config,
            action: None,
            reason,
            repeated: None,
        })
    }
}

/// The state document that keeps what came of applying workload `w`'s latest advice.
fn applied_state_name(w: &str) -> String {
    format!("tune-applied/{w}")
}

/// What came of the daemon's last applying of workload `w`'s advice (`None`: never
/// offered one).
pub fn last_applied(store: &Store, w: &str) -> Result<Option<Applied>, String> {
    store
        .get_state(&applied_state_name(w))
        .map_err(|e| e.to_string())
}

/// Keeps `a` as workload `w`'s last applying, after `before` (the one kept last,
/// [`last_applied`]): with its decision where it says something new
/// ([`Applied::decision`]), and as the series `prescale_tune_apply_refused{workload}`
/// at its time (1 where it was not applied, 0 where it was), for `/metrics` and the
/// alert `PrescaleTuningNotApplied`.
pub fn keep_applied(
    store: &Store,
    w: &str,
    a: &Applied,
    before: Option<&Applied>,
) -> Result<(), String> {
    if let Some(d) = a.decision(w, before) {
        store.log_decision(&d).map_err(|e| e.to_string())?;
    }
    let key = SeriesKey::metric("prescale_tune_apply_refused")
        .expect("static name")
        .with_label("workload", w.to_string());
    let refused = f64::from(u8::from(a.refused.is_some()));
    store
        .append(
            &key,
            &[prescale_core::Sample {
                ts: a.at,
                value: refused,
            }],
        )
        .map_err(|e| e.to_string())?;
    store
        .put_state(&applied_state_name(w), a)
        .map_err(|e| e.to_string())
}

/// Seconds after a tuning that could not run (too little demand stored) before the
/// next try.
pub const RETRY_S: u64 = 3600;

/// Whether workload `w` of `cfg`, last tuned `before` (`None`: never), is due a tuning
/// at `now`: tuned with another configuration (a reload changed it), or its last
/// tuning `tune_every_s` ago ([`RETRY_S`] where it could not run); never with
/// `tune_every_s = 0`.
pub fn due(cfg: &Config, w: &str, before: Option<&Tuned>, now: TimestampMs) -> bool {
    match before {
        None => cfg.control.tune_every_s > 0,
        Some(t) => next_due(cfg, w, t).is_some_and(|at| now >= at),
    }
}

/// When workload `w` of `cfg`, last tuned as `t`, is next [`due`] (unix ms; the daemon
/// takes it up at its next check, every five minutes): `tune_every_s` after `t`,
/// [`RETRY_S`] where it could not run, at once where a reload changed what it replays;
/// `None` with `tune_every_s = 0`.
pub fn next_due(cfg: &Config, w: &str, t: &Tuned) -> Option<TimestampMs> {
    let every = cfg.control.tune_every_s;
    if every == 0 {
        return None;
    }
    if t.fingerprint != fingerprint(cfg, w) {
        return Some(t.at);
    }
    let wait = if t.tuning.is_some() {
        every
    } else {
        RETRY_S.min(every)
    };
    Some(t.at + wait as i64 * 1000)
}

/// Tunes the workloads of `cfg` that are [`due`] at `now` (the last pass), one after
/// the other, and keeps each tuning: in the store (served by [`latest`], through
/// restarts), as series ([`record`]), and, where the advice changed, as a decision
/// ([`changed_advice`]). The tunings, each with why where it could not tune; an error
/// where the store refused to keep one.
pub fn tune_all(
    store: &Store,
    cfg: &Config,
    now: TimestampMs,
) -> Result<Vec<(String, Tuned)>, String> {
    let days = cfg.control.tune_days;
    let mut out = Vec::new();
    for w in &cfg.workloads {
        let before = latest(store, &w.name).ok().flatten();
        if !due(cfg, &w.name, before.as_ref(), now) {
            continue;
        }
        let (tuning, error) = match tune_workload(store, cfg, &w.name, days, now) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e)),
        };
        let tuned = Tuned {
            at: now,
            days,
            summary: match (&tuning, &error) {
                (Some(t), _) => t.summary(),
                (None, e) => format!("not tuned: {}", e.as_deref().unwrap_or_default()),
            },
            tuning,
            error,
            fingerprint: fingerprint(cfg, &w.name),
        };
        if let Some(d) = changed_advice(&w.name, before.as_ref(), &tuned) {
            store.log_decision(&d).map_err(|e| e.to_string())?;
        }
        record(store, &w.name, &tuned)?;
        store
            .put_state(&state_name(&w.name), &tuned)
            .map_err(|e| e.to_string())?;
        out.push((w.name.clone(), tuned));
    }
    Ok(out)
}

/// Keeps `t` of workload `w` as series at its time: `prescale_tune_saving_dollars`
/// (what the advice costs less over the stretch; 0 where no run dominates),
/// `prescale_tune_minutes_less` (minutes short it saves), `prescale_tune_holds`
/// (1 where the advice also held on each half, 0 where it did not, was not checked for
/// a stretch under two days, or there is none)
/// and `prescale_tune_own_cost_dollars` (the own settings' cost over the stretch), each
/// `{workload}`. A tuning that could not run keeps nothing.
pub fn record(store: &Store, w: &str, t: &Tuned) -> Result<(), String> {
    let Some(tuning) = &t.tuning else {
        return Ok(());
    };
    let key = |name: &str| {
        SeriesKey::metric(name)
            .expect("static name")
            .with_label("workload", w.to_string())
    };
    let a = tuning.advice.as_ref();
    let values = [
        (
            "prescale_tune_saving_dollars",
            a.map_or(0.0, |a| a.cost_less),
        ),
        (
            "prescale_tune_minutes_less",
            a.map_or(0.0, |a| a.minutes_less),
        ),
        (
            "prescale_tune_holds",
            f64::from(u8::from(a.is_some_and(|a| a.holds_on_each_half))),
        ),
        ("prescale_tune_own_cost_dollars", tuning.own.cost),
    ];
    let out: Vec<_> = values
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(name, v)| {
            (
                key(name),
                vec![prescale_core::Sample {
                    ts: t.at,
                    value: *v,
                }],
            )
        })
        .collect();
    store.append_many(&out).map_err(|e| e.to_string())?;
    Ok(())
}

/// The decision logged when a workload's advice changes from `before` (the settings
/// advised then; `None`: none, or no tuning before) to `now`'s: a `config` decision
/// with the finding and the lines to set, or that the advice no longer stands. `None`
/// where nothing changed, or the tuning could not run.
pub fn changed_advice(w: &str, before: Option<&Tuned>, now: &Tuned) -> Option<Decision> {
    let advised = |t: &Tuned| {
        t.tuning
            .as_ref()
            .and_then(|x| x.advice.as_ref())
            .map(|a| a.settings.clone())
    };
    let tuning = now.tuning.as_ref()?;
    let (was, is) = (before.and_then(advised), advised(now));
    if was == is {
        return None;
    }
    let reason = match &tuning.advice {
        Some(a) => format!(
            "tune: {} To use it, set in the workload's [[workloads]] entry and reload: {}",
            tuning.summary(),
            a.toml.trim_end().replace('\n', "; ")
        ),
        None => format!(
            "tune: the advice before no longer stands. {}",
            tuning.summary()
        ),
    };
    Some(Decision {
        at: now.at,
        workload: w.to_string(),
        kind: DecisionKind::Config,
        action: None,
        reason,
        repeated: None,
    })
}
