//! A workload's `min_instances` while it has no forecast.
//!
//! A workload has no forecast for its first two steps, and none while no stored series
//! matches its demand. Its plans keep `min_instances` whatever the forecast, as HPA
//! keeps `minReplicas` whatever its metrics say; until session 53 that held only once a
//! forecast came, so `prescale run` on its defaults started with nothing, asked for its
//! first instance two minutes in and was short until that instance came up, and a
//! workload whose demand matched nothing (a typo) kept no instance at all. Now a pass
//! without a forecast asks for what the workload lacks of its minimum, on the tiers a
//! plan would use for it (the cheapest on-demand first, within its budget), and removes
//! nothing.

use std::collections::BTreeMap;

use prescale_core::{Forecast, Pause, PauseScope, Tier, TimestampMs};
use prescale_store::StoreError;

use super::{forecast_steps, level_set, month_bounds, Engine, Status};
use crate::provider::Provider;
use crate::reconcile::reconcile;

impl<P: Provider> Engine<P> {
    /// A pass of workload `i` without a forecast: asks for what it lacks of its
    /// `min_instances`, planned on `tiers` (each with what the other workloads leave of
    /// it) within its budget ([`Engine::minimum_budget`], under a fleet budget `cap`
    /// with the others holding `others_held`), nothing while a pause holds every
    /// change; or, where it asks for nothing, logs `hold` (its category and why there
    /// is no forecast).
    pub(super) fn hold_without_forecast(
        &mut self,
        i: usize,
        now: TimestampMs,
        (tiers, cap, others_held): (&[Tier], Option<f64>, &[f64]),
        pause: Option<&Pause>,
        (category, why): (&str, String),
        st: &mut Status,
    ) -> Result<(), StoreError> {
        let budget = self.minimum_budget(i, now, cap, others_held);
        if !self.keep_minimum(i, now, (tiers, budget), pause, &why, st)? {
            self.hold(i, now, category, why)?;
        }
        Ok(())
    }

    /// Asks for what workload `i` lacks of its `min_instances` while it has no forecast
    /// (`why`), planned on `tiers` within `budget`; nothing while a pause holds every
    /// change. Returns whether it acted (the decision log says so, with `why`).
    fn keep_minimum(
        &mut self,
        i: usize,
        now: TimestampMs,
        (tiers, budget): (&[Tier], Option<f64>),
        pause: Option<&Pause>,
        why: &str,
        st: &mut Status,
    ) -> Result<bool, StoreError> {
        let s = &self.states[i];
        let min = s.w.min_instances;
        let held: u32 = s.status.allocation.tiers.values().map(|c| c.total()).sum();
        if min == 0 || held >= min || pause.is_some_and(|p| p.scope == PauseScope::All) {
            return Ok(false);
        }
        let levels = level_set(s.w.sla_quantile);
        let steps = forecast_steps(&s.w, s.step_ms);
        let start = now - now.rem_euclid(s.step_ms);
        let Ok(none) = Forecast::new(
            s.key.clone(),
            "none",
            now,
            start,
            s.step_ms,
            levels.clone(),
            vec![vec![0.0; levels.len()]; steps],
        ) else {
            return Ok(false);
        };
        // The minimum only: what a planned event needs is planned with the forecast it
        // raises, from the first forecast on.
        let mut w = s.w.clone();
        w.budget_per_hour = budget;
        w.events.clear();
        let plan =
            prescale_plan::plan_dimensions(&w, tiers, &none, &[], now, self.interval_ms, &[]);
        // Nothing held is let go: only what the minimum lacks is asked for.
        let alloc = &s.status.allocation;
        let mut target: BTreeMap<String, u32> = alloc
            .tiers
            .iter()
            .map(|(t, c)| (t.clone(), c.total()))
            .collect();
        for (t, n) in &plan.target {
            let k = target.entry(t.clone()).or_default();
            *k = (*k).max(*n);
        }
        let verdict = reconcile(&s.w.name, &target, &target, alloc, now);
        if verdict.actions.is_empty() {
            return Ok(false);
        }
        // What it asks for, and what stopped it short of the minimum (a budget, full
        // tiers).
        let asked: Vec<String> = plan
            .target
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let short: Vec<&str> = plan
            .reason
            .split("; ")
            .filter(|p| p.contains("short of the workload's min_instances"))
            .collect();
        let why = match why.trim_end_matches("; keeping current capacity") {
            "no forecast yet" => "no forecast yet".to_string(),
            why => format!("no forecast yet ({why})"),
        };
        let reason = format!(
            "{why}; meanwhile the workload keeps its min_instances = {min}, as HPA keeps minReplicas whatever its metrics say: {} for ${:.3}/h{}{}",
            asked.join(", "),
            plan.cost_per_hour,
            if short.is_empty() { "" } else { "; " },
            short.join("; ")
        );
        let acted = self.apply_verdict(i, now, &verdict, &reason, st)?;
        if acted {
            self.states[i].last_hold = None;
            self.read_allocation(i, now, Some(&verdict.released_pending))?;
        }
        Ok(acted)
    }

    /// The most workload `i` may spend an hour on its minimum at `now`: its own hourly
    /// budget, its monthly one paced as its plans pace it, and under a fleet budget
    /// (`cap`) what the other workloads' holdings (`others_held`, per hour) leave of it.
    fn minimum_budget(
        &self,
        i: usize,
        now: TimestampMs,
        cap: Option<f64>,
        others_held: &[f64],
    ) -> Option<f64> {
        let s = &self.states[i];
        let mut w = s.w.clone();
        if w.budget_per_month.is_some() {
            let (_, month_end) = month_bounds(now);
            let spent = s.status.spend.map_or(0.0, |x| x.spent);
            w.budget_per_hour = w.hourly_cap(spent, (month_end - now) as f64 / 3_600_000.0);
        }
        let room = cap.map(|c| (c - others_held.iter().sum::<f64>()).max(0.0));
        match (w.budget_per_hour, room) {
            (Some(b), Some(r)) => Some(b.min(r)),
            (b, r) => b.or(r),
        }
    }
}
