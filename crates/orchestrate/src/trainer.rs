//! Training off the control path. The engine hands the trainer jobs (select a model by
//! cross-validation, or refit the selected recipe on newer data); workers run them and
//! the engine collects the outcomes at its next pass, so a slow fit never delays a
//! scaling decision. Jobs are coalesced per workload: when a workload already has a job
//! waiting, the newer job replaces it (the newer data makes the older job pointless).
//!
//! In inline mode jobs run at once, on the caller's thread: simulations and tests use it
//! so that the same inputs always give the same decisions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use prescale_core::{Forecast, SeriesKey, TimestampMs};
use prescale_forecast::auto::Recipe;
use prescale_forecast::{forecast, AutoSpec, LevelSpread, Selection};
use serde::{Deserialize, Serialize};

/// Why a model was (re)trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// No model yet.
    Initial,
    /// The retraining schedule came round.
    Schedule,
    /// Live errors grew past the configured ratio of the cross-validation errors.
    Drift,
    /// The anomaly detector flagged the demand.
    Anomaly,
    /// A new step arrived: the selected recipe is refitted, not reselected.
    NewData,
}

/// What to do.
pub enum JobKind {
    /// Cross-validate candidates and pick one.
    Select(Box<AutoSpec>),
    /// Follow new data with the selected recipe ([`Recipe::refresh`]): each member as
    /// selected moved on over the `new_points` at the end of the history when it can
    /// (parameters kept), else refitted on the whole history.
    Refit {
        /// The selection's recipe.
        recipe: Recipe,
        /// Points at the end of the history that came after the selection's data.
        new_points: usize,
    },
}

/// One unit of training work.
pub struct Job {
    /// Workload it belongs to.
    pub workload: String,
    /// Which definition of the workload it is for: a reload that changes what is
    /// forecast starts a new one, and outcomes for an older one are dropped.
    pub generation: u64,
    /// History, oldest first, `step_ms` apart, ending at `last_ts`.
    pub y: Vec<f64>,
    /// Timestamp of the last history step.
    pub last_ts: TimestampMs,
    /// Step in milliseconds.
    pub step_ms: i64,
    /// Steps to forecast.
    pub horizon: usize,
    /// Quantile levels.
    pub levels: Vec<f64>,
    /// Series key of the forecast.
    pub key: SeriesKey,
    /// Select or refit.
    pub kind: JobKind,
    /// Why.
    pub trigger: Trigger,
}

/// What a job produced.
pub struct Outcome {
    /// Workload.
    pub workload: String,
    /// The job's [`Job::generation`].
    pub generation: u64,
    /// Why the job ran.
    pub trigger: Trigger,
    /// The forecast, or why there is none.
    pub forecast: Result<Forecast, String>,
    /// The selection, for select jobs that succeeded.
    pub selection: Option<Selection>,
    /// The recipe used (refit jobs) or chosen (select jobs).
    pub recipe: Option<Recipe>,
    /// Timestamp of the last history step used.
    pub data_to: TimestampMs,
    /// History steps used.
    pub points: usize,
    /// Wall-clock seconds the job took.
    pub seconds: f64,
    /// How the history's rises grew with its level, when they did: the forecast's band
    /// is narrowed by it once brought up to date ([`LevelSpread`]).
    pub spread: Option<LevelSpread>,
}

fn run(job: Job) -> Outcome {
    let t = Instant::now();
    let wrap = |fitted: Box<dyn prescale_forecast::Fitted>| {
        forecast(
            fitted.as_ref(),
            job.key.clone(),
            job.last_ts,
            job.step_ms,
            job.horizon,
            &job.levels,
            Some(0.0),
        )
        .map_err(|e| e.to_string())
    };
    let (forecast, selection, recipe) = match job.kind {
        JobKind::Select(spec) => match spec.run(&job.y, |_| {}) {
            Ok((fitted, sel)) => {
                let recipe = sel.recipe.clone();
                (wrap(fitted), Some(sel), recipe)
            }
            Err(e) => (Err(e.to_string()), None, None),
        },
        JobKind::Refit { recipe, new_points } => {
            let f = recipe
                .refresh(&job.y, new_points)
                .map_err(|e| e.to_string())
                .and_then(wrap);
            (f, None, Some(recipe))
        }
    };
    let spread = forecast
        .is_ok()
        .then(|| crate::engine::level_spread(&job.y, job.step_ms))
        .flatten();
    Outcome {
        spread,
        workload: job.workload,
        generation: job.generation,
        trigger: job.trigger,
        forecast,
        selection,
        recipe,
        data_to: job.last_ts,
        points: job.y.len(),
        seconds: t.elapsed().as_secs_f64(),
    }
}

struct Shared {
    queue: Mutex<BTreeMap<String, Job>>,
    ready: Condvar,
    stop: AtomicBool,
}

/// Runs training jobs inline or on a bounded pool of background workers.
pub struct Trainer {
    shared: Option<Arc<Shared>>,
    tx: Sender<Outcome>,
    rx: Receiver<Outcome>,
}

impl Trainer {
    /// Jobs run at once, on the caller's thread (deterministic).
    pub fn inline() -> Self {
        let (tx, rx) = channel();
        Self {
            shared: None,
            tx,
            rx,
        }
    }

    /// Jobs run on `workers` background threads.
    pub fn background(workers: usize) -> Self {
        let (tx, rx) = channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(BTreeMap::new()),
            ready: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        for n in 0..workers.max(1) {
            let shared = shared.clone();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("prescale-train-{n}"))
                .spawn(move || loop {
                    let job = {
                        let mut q = shared.queue.lock().expect("train queue");
                        loop {
                            if shared.stop.load(Ordering::SeqCst) {
                                return;
                            }
                            if let Some((_, job)) = q.pop_first() {
                                break job;
                            }
                            q = shared.ready.wait(q).expect("train queue");
                        }
                    };
                    if tx.send(run(job)).is_err() {
                        return;
                    }
                })
                .expect("spawn a training worker");
        }
        Self {
            shared: Some(shared),
            tx,
            rx,
        }
    }

    /// Queues a job (replacing a waiting job of the same workload), or runs it now in
    /// inline mode.
    pub fn submit(&self, job: Job) {
        match &self.shared {
            None => {
                let _ = self.tx.send(run(job));
            }
            Some(s) => {
                s.queue
                    .lock()
                    .expect("train queue")
                    .insert(job.workload.clone(), job);
                s.ready.notify_one();
            }
        }
    }

    /// Outcomes finished since the last call.
    pub fn drain(&self) -> Vec<Outcome> {
        self.rx.try_iter().collect()
    }

    /// Jobs waiting for a worker.
    pub fn waiting(&self) -> usize {
        self.shared
            .as_ref()
            .map_or(0, |s| s.queue.lock().expect("train queue").len())
    }
}

impl Drop for Trainer {
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.stop.store(true, Ordering::SeqCst);
            s.ready.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_forecast::{ModelChoice, ScoreKind};

    fn job(name: &str, y: Vec<f64>, choice: ModelChoice) -> Job {
        Job {
            workload: name.into(),
            generation: 0,
            last_ts: y.len() as i64 * 60_000,
            y,
            step_ms: 60_000,
            horizon: 10,
            levels: vec![0.1, 0.5, 0.9],
            key: SeriesKey::metric("d").unwrap(),
            kind: JobKind::Select(Box::new(AutoSpec {
                choice,
                season: None,
                day: None,
                horizon: 10,
                folds: 3,
                levels: vec![0.1, 0.5, 0.9],
                score: ScoreKind::Crps,
                budget: None,
            })),
            trigger: Trigger::Initial,
        }
    }

    fn cycle(n: usize) -> Vec<f64> {
        (0..n).map(|i| 10.0 + (i % 24) as f64).collect()
    }

    #[test]
    fn inline_jobs_finish_before_submit_returns_and_give_a_recipe() {
        let t = Trainer::inline();
        t.submit(job("a", cycle(400), ModelChoice::Auto));
        let out = t.drain();
        assert_eq!(out.len(), 1);
        let o = &out[0];
        let f = o.forecast.as_ref().unwrap();
        assert_eq!(f.horizon(), 10);
        assert!(o
            .selection
            .as_ref()
            .unwrap()
            .winner
            .starts_with("snaive(m=24)"));
        // Refitting the recipe on more data continues the cycle.
        let recipe = o.recipe.clone().unwrap();
        let mut j = job("a", cycle(401), ModelChoice::Auto);
        j.kind = JobKind::Refit {
            recipe,
            new_points: 1,
        };
        j.trigger = Trigger::NewData;
        t.submit(j);
        let out = t.drain();
        let f = out[0].forecast.as_ref().unwrap();
        assert_eq!(f.values[0][1], 10.0 + (401 % 24) as f64);
    }

    #[test]
    fn background_workers_coalesce_and_deliver() {
        let t = Trainer::background(1);
        for n in [300, 320, 340] {
            t.submit(job("a", cycle(n), ModelChoice::Naive));
        }
        t.submit(job("b", cycle(300), ModelChoice::Naive));
        let started = Instant::now();
        let mut got: Vec<Outcome> = Vec::new();
        let done = |got: &Vec<Outcome>| {
            got.iter().any(|o| o.workload == "a" && o.points == 340)
                && got.iter().any(|o| o.workload == "b")
        };
        while !done(&got) && started.elapsed().as_secs() < 30 {
            got.extend(t.drain());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(done(&got), "the newest job of each workload is delivered");
        // A waiting job is replaced by a newer one, so "a" yields at most three outcomes
        // (fewer when the worker was busy while they arrived).
        assert!(got.iter().filter(|o| o.workload == "a").count() <= 3);
        assert!(got.iter().all(|o| o.forecast.is_ok()));
        assert_eq!(t.waiting(), 0);
    }
}
