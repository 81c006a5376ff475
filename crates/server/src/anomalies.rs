//! Anomalies in every stored series: what the host collector, the scrape loops and the
//! write receivers store is scored once stored, off the write's path
//! ([`Anomalies::submit`]), and each
//! anomaly is kept in the store as two series with the source's labels plus
//! `series_name` (the source's name): `prescale_anomaly_score` (its likelihood, 0..1)
//! and `prescale_anomaly_value` (what was judged: the value, or a counter's per-second
//! rate). So anomalies outlive a restart, follow the store's retention, chart in
//! Grafana, and are listed by `GET /api/v1/anomalies`. The watch reads the store too: a
//! series new to it (after a restart, every one) first learns from its stored history,
//! so it is judged at once, and what a series did a day or a week before at about that
//! time is no anomaly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use prescale_core::config::DetectConfig;
use prescale_core::{Demand, Sample, Selector, SeriesKey, SeriesMatch, TimestampMs, Workload};
use prescale_detect::watch::{kind_of, Kind};
use prescale_detect::{SeriesAnomaly, SeriesWatch};
use prescale_store::{AppendReport, Store, StoreError};
use serde::Serialize;
use serde_json::json;

use crate::promapi::ApiParams;
use crate::AppState;

/// The series of an anomaly's likelihood.
pub const SCORE: &str = "prescale_anomaly_score";
/// The series of what an anomaly's judged value was.
pub const VALUE: &str = "prescale_anomaly_value";
/// The label naming the source series' metric.
const SOURCE: &str = "series_name";
/// Where a source label of that name goes, as Prometheus renames clashing labels.
const EXPORTED_SOURCE: &str = "exported_series_name";

/// The per-series detectors, shared by everything that stores samples.
///
/// What is stored is judged off the write path ([`Anomalies::submit`]): a worker thread
/// takes the batches in the order they come, so a write is answered as soon as it is
/// stored, however long judging takes (after a restart each series first learns from
/// its stored history: with 5,000 series the first write after a restart waited 1.5 to
/// 9.7 s for it).
/// [`Anomalies::flush`] waits for what is queued (the anomaly list does, so it answers
/// for every write acknowledged before it).
#[derive(Clone)]
pub struct Anomalies {
    inner: Arc<Inner>,
    /// The worker's queue (`None` when detection is off).
    queue: Option<SyncSender<Batch>>,
    /// Batches queued and not yet judged, with a signal when that falls.
    pending: Arc<(Mutex<usize>, Condvar)>,
}

struct Inner {
    watch: Option<Mutex<SeriesWatch>>,
    /// The workloads' planned events, by the series their demand reads: what scores as
    /// an anomaly there was announced ([`Anomalies::set_planned`]).
    planned: std::sync::RwLock<Vec<Planned>>,
    /// `[detect] match`: the series watched (empty: all); a reload may change it.
    picked: std::sync::RwLock<Vec<SeriesMatch>>,
    store: Store,
    found: AtomicU64,
    /// The watch's counts after the last batch judged ([`Anomalies::stats`]).
    counts: Mutex<WatchStats>,
}

/// The series a workload's demand reads, and its planned events' windows.
type Planned = (Selector, Vec<(TimestampMs, TimestampMs)>);

/// `[detect] match`'s selectors (each was checked when the configuration was read).
fn picked(cfg: &DetectConfig) -> Vec<SeriesMatch> {
    cfg.match_
        .iter()
        .filter_map(|m| SeriesMatch::parse(m, "").ok())
        .collect()
}

/// Stored samples, series by series.
type Batch = Vec<(SeriesKey, Vec<Sample>)>;

/// Batches the queue holds before a write waits for the worker to catch up.
const QUEUED: usize = 1024;

impl Anomalies {
    /// Watches as `[detect]` says (nothing when it is disabled).
    pub fn new(cfg: &DetectConfig, store: Store) -> Self {
        let watch = cfg.enabled.then(|| {
            let w = SeriesWatch::new(cfg.threshold, cfg.max_series);
            // A remote store would take a request per series to read each one's
            // history after a restart, holding up the watch meanwhile.
            let w = if store.is_remote() {
                w.without_history()
            } else {
                w
            };
            Mutex::new(w)
        });
        let inner = Arc::new(Inner {
            watch,
            planned: Default::default(),
            // Each was checked when the configuration was read.
            picked: std::sync::RwLock::new(picked(cfg)),
            store,
            found: AtomicU64::new(0),
            counts: Mutex::default(),
        });
        let pending: Arc<(Mutex<usize>, Condvar)> = Arc::default();
        let queue = inner.watch.is_some().then(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(QUEUED);
            // The worker does not keep the watch, and so the store, open: once every
            // handle is dropped the store can be opened again at once (a restart in a
            // test), and the worker ends with the queue.
            let (inner, pending) = (Arc::downgrade(&inner), pending.clone());
            std::thread::Builder::new()
                .name("anomaly-watch".into())
                .spawn(move || {
                    for batch in rx {
                        if let Some(inner) = inner.upgrade() {
                            if let Err(e) = inner.judge(&batch) {
                                tracing::warn!("anomalies found could not be saved: {e}");
                            }
                        }
                        let (n, done) = &*pending;
                        *n.lock().expect("pending lock") -= 1;
                        done.notify_all();
                    }
                })
                .expect("a thread for the anomaly watch");
            tx
        });
        Self {
            inner,
            queue,
            pending,
        }
    }

    /// Takes the planned events of `workloads` (at start and at each reload): a sample
    /// of a series a workload's demand, or one of its dimensions, reads that falls in
    /// one of its events is neither judged nor learnt from (the team announced it; see
    /// [`SeriesWatch::observe_planned`]).
    pub fn set_planned(&self, workloads: &[Workload]) {
        let mut planned = Vec::new();
        for w in workloads.iter().filter(|w| !w.events.is_empty()) {
            let windows: Vec<(TimestampMs, TimestampMs)> =
                w.events.iter().map(|e| (e.start.0, e.end.0)).collect();
            let reads = std::iter::once(w.demand.as_str())
                .chain(w.dimensions.values().map(|d| d.series.as_str()));
            for expr in reads {
                // Each was checked when the configuration was read.
                if let Ok(d) = Demand::parse(expr) {
                    planned.push((d.selector().clone(), windows.clone()));
                }
            }
        }
        *self.inner.planned.write().expect("planned lock") = planned;
    }

    /// Takes a reloaded `[detect]`'s threshold, `max_series` and `match`, keeping what
    /// every series learnt; `false`, changing nothing, when `enabled` differs (the watch
    /// is started or stopped with the process).
    pub fn reconfigure(&self, cfg: &DetectConfig) -> bool {
        let Some(watch) = &self.inner.watch else {
            return !cfg.enabled;
        };
        if !cfg.enabled {
            return false;
        }
        watch
            .lock()
            .expect("anomaly watch lock")
            .set_limits(cfg.threshold, cfg.max_series);
        *self.inner.picked.write().expect("match lock") = picked(cfg);
        true
    }

    /// Queues the samples `append_many` just stored (those its `reports` rejected are
    /// left out) to be judged, and their anomalies saved, by the worker; returns at once
    /// unless [`QUEUED`] batches wait already. Call it where the samples were stored,
    /// off the async threads.
    pub fn submit(&self, stored: Vec<(SeriesKey, Vec<Sample>)>, reports: &[AppendReport]) {
        let Some(queue) = &self.queue else {
            return;
        };
        let batch = self.inner.kept(stored, reports);
        if batch.is_empty() {
            return;
        }
        let (n, done) = &*self.pending;
        *n.lock().expect("pending lock") += 1;
        if let Err(e) = queue.send(batch) {
            // The worker is gone (it panicked): judge here rather than lose them.
            *n.lock().expect("pending lock") -= 1;
            done.notify_all();
            if let Err(e) = self.inner.judge(&e.0) {
                tracing::warn!("anomalies found could not be saved: {e}");
            }
        }
    }

    /// Waits until what was submitted before is judged, at most `timeout`; whether it
    /// all was.
    pub fn flush(&self, timeout: std::time::Duration) -> bool {
        let (n, done) = &*self.pending;
        let guard = n.lock().expect("pending lock");
        let (guard, _) = done
            .wait_timeout_while(guard, timeout, |n| *n > 0)
            .expect("pending lock");
        *guard == 0
    }

    /// Judges the samples `append_many` just stored (those its `reports` rejected are
    /// left out) here and now, and saves the anomalies among them; returns them. For a
    /// caller that must have the verdicts before it goes on (the demo, whose summary is
    /// the same for the same seed): it does not wait for what [`Anomalies::submit`]
    /// queued.
    pub fn observe(
        &self,
        stored: &[(SeriesKey, Vec<Sample>)],
        reports: &[AppendReport],
    ) -> Result<Vec<SeriesAnomaly>, StoreError> {
        if self.inner.watch.is_none() {
            return Ok(Vec::new());
        }
        let batch = self.inner.kept(stored.to_vec(), reports);
        self.inner.judge(&batch)
    }

    /// Batches of stored samples waiting to be judged.
    pub fn pending(&self) -> usize {
        *self.pending.0.lock().expect("pending lock")
    }

    /// The watch, held: for a test to keep it busy.
    #[cfg(test)]
    pub(crate) fn hold(&self) -> std::sync::MutexGuard<'_, SeriesWatch> {
        let watch = self.inner.watch.as_ref().expect("detection on");
        watch.lock().expect("anomaly watch lock")
    }

    /// Series watched, new series turned away because the watch was full, samples
    /// scored, anomalies found since the start, and batches waiting to be judged;
    /// `None` when detection is off.
    pub fn stats(&self) -> Option<WatchStats> {
        self.inner.watch.as_ref()?;
        // As of the last batch judged: the watch itself is held while a batch is, for
        // seconds when many series learn their history after a restart.
        let counts = *self.inner.counts.lock().expect("counts lock");
        Some(WatchStats {
            found: self.inner.found.load(Ordering::Relaxed),
            pending: self.pending(),
            ..counts
        })
    }
}

impl Inner {
    /// The series `[detect] match` picks among `stored`, without the samples `reports`
    /// (one per series, in order) rejected.
    fn kept(
        &self,
        stored: Vec<(SeriesKey, Vec<Sample>)>,
        reports: &[AppendReport],
    ) -> Vec<(SeriesKey, Vec<Sample>)> {
        stored
            .into_iter()
            .enumerate()
            .filter(|(_, (key, _))| {
                let picked = self.picked.read().expect("match lock");
                picked.is_empty() || picked.iter().any(|m| m.matches(key))
            })
            .map(|(i, (key, mut samples))| {
                if let Some(r) = reports.get(i).filter(|r| !r.rejected.is_empty()) {
                    let rejected: HashSet<TimestampMs> = r.rejected.iter().map(|x| x.ts).collect();
                    samples.retain(|s| !rejected.contains(&s.ts));
                }
                (key, samples)
            })
            .filter(|(_, samples)| !samples.is_empty())
            .collect()
    }

    /// Scores `batch` and saves the anomalies among it; returns them.
    fn judge(&self, batch: &[(SeriesKey, Vec<Sample>)]) -> Result<Vec<SeriesAnomaly>, StoreError> {
        let Some(watch) = &self.watch else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        {
            let mut w = watch.lock().expect("anomaly watch lock");
            let planned = self.planned.read().expect("planned lock");
            for (key, samples) in batch {
                let windows: Vec<(TimestampMs, TimestampMs)> = planned
                    .iter()
                    .filter(|(sel, _)| sel.matches(key))
                    .flat_map(|(_, w)| w.iter().copied())
                    .collect();
                let in_event = |ts: TimestampMs| windows.iter().any(|&(a, b)| a <= ts && ts < b);
                found.extend(w.observe_planned(
                    key,
                    samples,
                    |a, b| self.stored(key, a, b),
                    in_event,
                ));
            }
            let mut counts = self.counts.lock().expect("counts lock");
            counts.watched = w.watched();
            counts.unwatched = w.unwatched();
            counts.scored = w.scored();
            counts.expected = w.expected();
        }
        if found.is_empty() {
            return Ok(found);
        }
        let mut saved = Vec::with_capacity(2 * found.len());
        for a in &found {
            tracing::debug!(
                "anomaly in {} at {} ms: {} scores {:.3}",
                a.key,
                a.ts,
                a.value,
                a.score
            );
            let (score, value) = finding_keys(&a.key);
            saved.push((
                score,
                vec![Sample {
                    ts: a.ts,
                    value: a.score,
                }],
            ));
            saved.push((
                value,
                vec![Sample {
                    ts: a.ts,
                    value: a.value,
                }],
            ));
        }
        self.store.append_many(&saved)?;
        self.found.fetch_add(found.len() as u64, Ordering::Relaxed);
        Ok(found)
    }

    /// What the watch reads of a series: its stored samples from `start` to `end` (none
    /// when they cannot be read, which is logged).
    fn stored(&self, key: &SeriesKey, start: TimestampMs, end: TimestampMs) -> Vec<Sample> {
        match self.store.range(key, start, end) {
            Ok(h) => h.unwrap_or_default(),
            Err(e) => {
                tracing::warn!("{key}: its history could not be read to judge it by: {e}");
                Vec::new()
            }
        }
    }
}

/// What [`Anomalies::stats`] counts.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct WatchStats {
    /// Series watched now.
    pub watched: usize,
    /// Times a new series found the watch full.
    pub unwatched: u64,
    /// Samples scored.
    pub scored: u64,
    /// Samples that scored as anomalies but that the series matched a day or a week
    /// before, at about the same time: not reported.
    pub expected: u64,
    /// Anomalies found.
    pub found: u64,
    /// Batches of stored samples waiting to be judged (the watch catching up).
    pub pending: usize,
}

/// The keys an anomaly of `src` is saved under (its likelihood's, then its value's): its
/// labels, plus `series_name`.
pub fn finding_keys(src: &SeriesKey) -> (SeriesKey, SeriesKey) {
    let mut labels = src.labels.clone();
    if let Some(clash) = labels.remove(SOURCE) {
        labels.insert(EXPORTED_SOURCE.into(), clash);
    }
    labels.insert(SOURCE.into(), src.name.clone());
    let key = |name: &str| SeriesKey {
        name: name.into(),
        labels: labels.clone(),
    };
    (key(SCORE), key(VALUE))
}

/// The source of a saved anomaly's key, `None` for a key not made by [`finding_keys`].
fn source_of(saved: &SeriesKey) -> Option<SeriesKey> {
    let mut labels = saved.labels.clone();
    let name = labels.remove(SOURCE)?;
    if let Some(clash) = labels.remove(EXPORTED_SOURCE) {
        labels.insert(SOURCE.into(), clash);
    }
    Some(SeriesKey { name, labels })
}

/// One anomaly as `/api/v1/anomalies` lists it.
#[derive(Debug, Clone, Serialize)]
struct Listed {
    series: String,
    metric: String,
    labels: prescale_core::Labels,
    /// Unix seconds.
    time: f64,
    score: f64,
    /// The value, or the counter's per-second rate, that was judged.
    value: Option<f64>,
    judged: &'static str,
    /// What was judged in the hour before, to set the value against (filled in for
    /// what is answered: each anomaly listed, each event's peak).
    before: Option<Before>,
}

/// The 5th, 50th and 95th percentiles of what a series was judged by (its values, or a
/// counter's per-second rates) in the hour before an anomaly, and how many there were.
#[derive(Debug, Clone, Serialize)]
struct Before {
    p5: f64,
    p50: f64,
    p95: f64,
    samples: usize,
}

/// The hour before a listed anomaly, `None` without two values judged in it.
fn before(store: &Store, a: &Listed) -> Result<Option<Before>, StoreError> {
    let key = SeriesKey {
        name: a.metric.clone(),
        labels: a.labels.clone(),
    };
    let Some(kind) = kind_of(&key.name) else {
        return Ok(None);
    };
    let t = (a.time * 1000.0).round() as TimestampMs;
    let stored = store.range(&key, t - 3_600_000, t - 1)?.unwrap_or_default();
    let mut judged = prescale_detect::watch::judged_values(kind, &stored);
    judged.retain(|v| v.is_finite());
    if judged.len() < 2 {
        return Ok(None);
    }
    judged.sort_by(f64::total_cmp);
    let at = |q: f64| judged[((judged.len() - 1) as f64 * q).round() as usize];
    Ok(Some(Before {
        p5: at(0.05),
        p50: at(0.5),
        p95: at(0.95),
        samples: judged.len(),
    }))
}

/// Anomalies of one instance each within the gap of the next: a deploy or a compilation
/// moves many of a host's series at once.
#[derive(Debug, Serialize)]
struct Event {
    /// The `instance` label its series share ("" for series without one).
    instance: String,
    /// Unix seconds of its first and last anomaly.
    start: f64,
    end: f64,
    /// Its anomalies, and the series they are in.
    anomalies: usize,
    series: usize,
    /// Its most surprising anomaly.
    peak: Listed,
    /// Its anomalies, newest first, at most [`EVENT_MEMBERS`].
    members: Vec<Listed>,
    /// What moved: its metrics with the most anomalies first, at most
    /// [`EVENT_METRICS`], so an event of 80 series reads as "mostly disk and memory".
    metrics: Vec<EventMetric>,
}

/// One metric's share of an event.
#[derive(Debug, Serialize, PartialEq)]
struct EventMetric {
    metric: String,
    anomalies: usize,
    series: usize,
}

/// The anomalies an event lists.
const EVENT_MEMBERS: usize = 100;
/// The metrics an event lists.
const EVENT_METRICS: usize = 20;
/// The gap that ends an event unless the query says.
const EVENT_GAP_MS: i64 = 60_000;

/// `listed` (newest first) as events, newest first: an instance's anomalies each at
/// most `gap_ms` from the next are one. Returns the first `limit` of them and how many
/// there were; only those are counted up and listed.
fn events(listed: Vec<Listed>, gap_ms: i64, limit: usize) -> (Vec<Event>, usize) {
    let gap = gap_ms as f64 / 1000.0;
    /// An event while the anomalies are grouped: its first and last times, the index
    /// of its most surprising anomaly, and how many it has.
    struct Span {
        start: f64,
        end: f64,
        peak: usize,
        anomalies: usize,
    }
    // The event each anomaly is in, and each instance's newest-found (open) event.
    let mut spans: Vec<Span> = Vec::new();
    let mut of: Vec<usize> = Vec::with_capacity(listed.len());
    let mut open: HashMap<&str, usize> = HashMap::new();
    for (i, a) in listed.iter().enumerate() {
        let instance = a.labels.get("instance").map_or("", String::as_str);
        match open.get(instance) {
            Some(&e) if spans[e].start - a.time <= gap => {
                let span = &mut spans[e];
                span.start = a.time;
                span.anomalies += 1;
                if a.score > listed[span.peak].score {
                    span.peak = i;
                }
                of.push(e);
            }
            _ => {
                open.insert(instance, spans.len());
                of.push(spans.len());
                spans.push(Span {
                    start: a.time,
                    end: a.time,
                    peak: i,
                    anomalies: 1,
                });
            }
        }
    }
    let total = spans.len();
    spans.truncate(limit);
    // What moved in each event listed: its metrics' anomalies and series.
    let mut moved: Vec<BTreeMap<&str, (usize, HashSet<&str>)>> =
        (0..spans.len()).map(|_| BTreeMap::new()).collect();
    for (a, &e) in listed.iter().zip(&of) {
        if let Some(m) = moved.get_mut(e) {
            let m = m.entry(a.metric.as_str()).or_default();
            m.0 += 1;
            m.1.insert(a.series.as_str());
        }
    }
    let mut out: Vec<Event> = spans
        .iter()
        .zip(moved)
        .map(|(span, moved)| {
            let mut metrics: Vec<EventMetric> = moved
                .iter()
                .map(|(metric, (anomalies, series))| EventMetric {
                    metric: metric.to_string(),
                    anomalies: *anomalies,
                    series: series.len(),
                })
                .collect();
            // Most anomalies first; the sort is stable, so ties stay in name order.
            metrics.sort_by_key(|m| std::cmp::Reverse(m.anomalies));
            metrics.truncate(EVENT_METRICS);
            let peak = listed[span.peak].clone();
            Event {
                instance: peak.labels.get("instance").cloned().unwrap_or_default(),
                start: span.start,
                end: span.end,
                anomalies: span.anomalies,
                series: moved.values().map(|m| m.1.len()).sum(),
                peak,
                members: Vec::new(),
                metrics,
            }
        })
        .collect();
    for (a, e) in listed.into_iter().zip(of) {
        if let Some(event) = out.get_mut(e) {
            if event.members.len() < EVENT_MEMBERS {
                event.members.push(a);
            }
        }
    }
    (out, total)
}

/// `GET /api/v1/anomalies`: anomalies found in stored series between `start` and `end`
/// (unix seconds or RFC 3339; default: the last day), newest first, at most `limit`
/// (default 100, at most 10,000); `match[]` selectors pick the source series
/// (`match[]=node_disk_io_time_seconds_total{device="sda"}`), `min_score` the least
/// likelihood listed. With `group=events`, events instead of anomalies, newest first
/// and at most `limit`: an instance's anomalies each within `gap` (a duration, default
/// 1m) of the next are one, with its start, end, counts, most surprising anomaly and
/// first 100 anomalies, and its 20 metrics with the most anomalies (`metrics`: metric,
/// anomalies, series); `found` counts the anomalies and `events_total` the events in
/// the window, before the limit.
pub async fn list(State(st): State<AppState>, p: ApiParams) -> Response {
    let now = prescale_core::now_ms();
    let time = |name, default| crate::promapi::time_param(&p, name, default);
    let parsed = (|| -> Result<_, String> {
        let end = time("end", now)?;
        let start = time("start", end - 86_400_000)?;
        if start > end {
            return Err("`start` is after `end`".into());
        }
        let limit = match p.get("limit") {
            None => 100,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "`limit` is a whole number from 1 to 10000, not {s:?}"
                    ))
                }
            },
        };
        let min_score = match p.get("min_score") {
            None => 0.0,
            Some(s) => match s.parse::<f64>() {
                Ok(v) if (0.0..1.0).contains(&v) => v,
                _ => {
                    return Err(format!(
                        "`min_score` is a likelihood from 0 to 1, not {s:?}"
                    ))
                }
            },
        };
        let matches = p
            .all("match[]")
            .into_iter()
            .map(|m| SeriesMatch::parse(m, "match[]="))
            .collect::<Result<Vec<_>, _>>()?;
        let grouped = match p.get("group") {
            None | Some("") | Some("anomalies") => None,
            Some("events") => Some(match p.get("gap") {
                None => EVENT_GAP_MS,
                Some(g) => prescale_core::selector::parse_duration_ms(g)
                    .filter(|&ms| ms >= 0)
                    .ok_or_else(|| format!("`gap` is a duration such as 60s or 5m, not {g:?}"))?,
            }),
            Some(g) => {
                return Err(format!(
                    "`group` is events (or anomalies, the default), not {g:?}"
                ))
            }
        };
        Ok((start, end, limit, min_score, matches, grouped))
    })();
    let (start, end, limit, min_score, matches, grouped) = match parsed {
        Ok(x) => x,
        Err(e) => return crate::error(StatusCode::BAD_REQUEST, e),
    };
    let st2 = st.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, StoreError> {
        // Every write acknowledged before this request is judged first (samples are
        // judged off the write path), unless the watch is far behind.
        st2.anomalies.flush(std::time::Duration::from_secs(5));
        let store = &st2.store;
        let selector = prescale_core::Selector::parse(SCORE).expect("a metric name");
        let mut out = Vec::new();
        for saved in store.select_matching(&selector) {
            let Some(src) = source_of(&saved) else {
                continue;
            };
            if !matches.is_empty() && !matches.iter().any(|m| m.matches(&src)) {
                continue;
            }
            let scores = store.range(&saved, start, end)?.unwrap_or_default();
            if scores.iter().all(|s| s.value < min_score) {
                continue;
            }
            let value_key = SeriesKey {
                name: VALUE.into(),
                labels: saved.labels.clone(),
            };
            let values: BTreeMap<TimestampMs, f64> = store
                .range(&value_key, start, end)?
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.ts, s.value))
                .collect();
            let judged = match kind_of(&src.name) {
                Some(Kind::Counter) => "per-second rate",
                _ => "value",
            };
            for s in scores.into_iter().filter(|s| s.value >= min_score) {
                out.push(Listed {
                    series: src.to_string(),
                    metric: src.name.clone(),
                    labels: src.labels.clone(),
                    time: s.ts as f64 / 1000.0,
                    score: s.value,
                    value: values.get(&s.ts).copied(),
                    judged,
                    before: None,
                });
            }
        }
        out.sort_by(|a, b| b.time.total_cmp(&a.time).then(a.series.cmp(&b.series)));
        Ok(match grouped {
            None => {
                out.truncate(limit);
                for a in &mut out {
                    a.before = before(store, a)?;
                }
                json!({"anomalies": out})
            }
            Some(gap) => {
                let found = out.len();
                let (mut all, total) = events(out, gap, limit);
                for e in &mut all {
                    e.peak.before = before(store, &e.peak)?;
                }
                json!({"found": found, "events_total": total, "events": all})
            }
        })
    })
    .await;
    let mut data = match res {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return crate::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return crate::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    data["watch"] = json!(st.anomalies.stats());
    Json(json!({"status": "success", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(metric: &str, device: &str, time: f64) -> Listed {
        let labels = prescale_core::Labels::from([
            ("instance".to_string(), "h:9100".to_string()),
            ("device".to_string(), device.to_string()),
        ]);
        Listed {
            series: format!(r#"{metric}{{device="{device}",instance="h:9100"}}"#),
            metric: metric.into(),
            labels,
            time,
            score: 0.6,
            value: Some(1.0),
            judged: "value",
            before: None,
        }
    }

    #[test]
    fn a_planned_events_demand_is_neither_reported_nor_learnt_from() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), prescale_store::Durability::Buffered).unwrap();
        let a = Anomalies::new(&DetectConfig::default(), store.clone());
        // The web workload announced a launch over samples 600 to 640 (15 s apart);
        // the same rise to 2.5 times comes again, unannounced, at 800, and on a database
        // no workload reads, at both.
        let mut w = prescale_core::config::Config::default().workloads[0].clone();
        w.name = "web".into();
        w.demand = r#"sum(demand_cores{job="web"}) * 2"#.into();
        w.events = vec![prescale_core::PlannedEvent {
            name: "launch".into(),
            start: prescale_core::EventTime(600 * 15_000),
            end: prescale_core::EventTime(640 * 15_000),
            scale: 2.5,
            min_demand: None,
            recurring: None,
            min_dimensions: Default::default(),
        }];
        a.set_planned(&[w]);
        let found = |job: &str| -> Vec<i64> {
            let key = SeriesKey::metric("demand_cores")
                .unwrap()
                .with_label("job", job.to_string());
            let mut at = Vec::new();
            for i in 0..1000i64 {
                let wobble = ((i as f64 * 0.7).sin() + (i as f64 * 1.3).cos()) / 2.0;
                let rise = (600..640).contains(&i) || (800..820).contains(&i);
                let value = (10.0 + wobble) * if rise { 2.5 } else { 1.0 };
                let samples = vec![Sample {
                    ts: i * 15_000,
                    value,
                }];
                let reports = store
                    .append_many(&[(key.clone(), samples.clone())])
                    .unwrap();
                at.extend(
                    a.observe(&[(key.clone(), samples)], &reports)
                        .unwrap()
                        .iter()
                        .map(|x| x.ts / 15_000),
                );
            }
            at
        };
        let web = found("web");
        assert!(!web.iter().any(|i| (600..640).contains(i)), "{web:?}");
        assert!(web.iter().any(|i| (800..820).contains(i)), "{web:?}");
        let db = found("db");
        assert!(db.iter().any(|i| (600..640).contains(i)), "{db:?}");
        assert_eq!(
            a.stats().unwrap().scored,
            2 * 1000 - 40,
            "the launch is not scored"
        );
        // A reload without the event watches it again.
        a.set_planned(&[]);
        assert!(a.inner.planned.read().unwrap().is_empty());
    }

    #[test]
    fn a_reload_changes_what_is_watched_and_keeps_what_was_learnt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), prescale_store::Durability::Buffered).unwrap();
        let mut cfg = DetectConfig {
            match_: vec![r#"{job="api"}"#.into()],
            ..DetectConfig::default()
        };
        let a = Anomalies::new(&cfg, store.clone());
        let feed = |job: &str, from: i64| {
            let key = SeriesKey::metric("latency_seconds")
                .unwrap()
                .with_label("job", job.to_string());
            let samples: Vec<Sample> = (from..from + 10)
                .map(|i| Sample {
                    ts: i * 15_000,
                    value: 0.1 + (i % 3) as f64 * 0.01,
                })
                .collect();
            let reports = store
                .append_many(&[(key.clone(), samples.clone())])
                .unwrap();
            a.observe(&[(key, samples)], &reports).unwrap();
        };
        feed("api", 0);
        feed("web", 0);
        assert_eq!(a.stats().unwrap().watched, 1, "web is not matched");
        cfg.match_ = vec![r#"{job=~"api|web"}"#.into()];
        cfg.max_series = 2;
        assert!(a.reconfigure(&cfg));
        feed("api", 10);
        feed("web", 10);
        let st = a.stats().unwrap();
        assert_eq!(st.watched, 2);
        assert_eq!(
            st.scored, 30,
            "api's 20 samples and web's 10 since the reload"
        );
        // The limit applies to the next new series.
        feed("db", 20);
        cfg.match_.clear();
        assert!(a.reconfigure(&cfg));
        feed("db", 30);
        assert_eq!(a.stats().unwrap().unwatched, 1);
        // Starting or stopping the watch is for a restart.
        cfg.enabled = false;
        assert!(!a.reconfigure(&cfg));
        let off = Anomalies::new(&cfg, store);
        assert!(off.reconfigure(&cfg));
        cfg.enabled = true;
        assert!(!off.reconfigure(&cfg));
    }

    #[test]
    fn an_event_counts_each_metric_s_anomalies_and_series_and_lists_the_largest() {
        // Newest first: three disks' reads (four anomalies), two of one disk's writes,
        // and one anomaly each in 25 other metrics, all within a second of each other.
        let mut all = vec![
            listed("disk_reads", "sda", 100.0),
            listed("disk_reads", "sdb", 99.9),
            listed("disk_reads", "sdc", 99.8),
            listed("disk_reads", "sda", 99.7),
            listed("disk_writes", "sda", 99.6),
            listed("disk_writes", "sda", 99.5),
        ];
        for i in 0..25 {
            all.push(listed(
                &format!("other_{i:02}"),
                "sda",
                99.0 - i as f64 * 0.01,
            ));
        }
        let (e, total) = events(all, 1_000, 10);
        assert_eq!(total, 1);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].anomalies, e[0].series), (31, 29));
        assert_eq!(e[0].metrics.len(), EVENT_METRICS);
        let count = |m: &EventMetric| (m.metric.clone(), m.anomalies, m.series);
        assert_eq!(count(&e[0].metrics[0]), ("disk_reads".into(), 4, 3));
        assert_eq!(count(&e[0].metrics[1]), ("disk_writes".into(), 2, 1));
        // The rest tie at one each and come in name order, as far as the list goes.
        assert_eq!(count(&e[0].metrics[2]), ("other_00".into(), 1, 1));
        assert_eq!(count(&e[0].metrics[19]), ("other_17".into(), 1, 1));
    }
}
