//! Retention: deletes samples older than each series may keep
//! ([`prescale_core::config::Config::retention_s_for`]), so a daemon that scrapes and
//! receives for months keeps a bounded store, while every workload keeps the history its
//! forecaster reads; deletes decisions older than `storage.decision_retention_s`; and
//! moves the samples older than [`COMPRESS_AFTER_MS`] into compressed chunks
//! ([`Store::compress_before`]).

use prescale_core::config::Config;
use prescale_core::TimestampMs;
use prescale_store::{Store, StoreError};

/// Samples this old (ms) are compressed: the engine reads the recent ones at every pass,
/// as rows; older ones are read at a restart or for charts.
pub const COMPRESS_AFTER_MS: i64 = 3_600_000;

/// Series one pass holds the keys of at a time.
const PAGE: usize = 10_000;

/// What one pass deleted and compressed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    /// Series that lost samples.
    pub series: usize,
    /// Samples deleted.
    pub samples: usize,
    /// Samples moved into compressed chunks.
    pub compressed: usize,
    /// Series left without samples, and so forgotten (a pod long gone).
    pub forgotten: usize,
    /// Decisions deleted.
    pub decisions: usize,
}

/// Deletes, in every series, the samples older than `now` minus its retention, then
/// compresses those older than [`COMPRESS_AFTER_MS`], series by series.
pub fn enforce(
    store: &Store,
    cfg: &Config,
    now: TimestampMs,
) -> Result<RetentionReport, StoreError> {
    let mut report = RetentionReport::default();
    // The decision log is kept in `path` whichever store holds the samples.
    if cfg.storage.decision_retention_s > 0 {
        let keep_ms = (cfg.storage.decision_retention_s as i64).saturating_mul(1000);
        report.decisions = store.delete_decisions_before(now.saturating_sub(keep_ms))?;
    }
    if store.is_remote() {
        // The remote server's own retention applies; listing its series is not cheap.
        return Ok(report);
    }
    let forgotten = store.forgotten_total();
    // A page of series at a time: all their keys at once would be some 650 MB at a
    // million series.
    let mut after = 0;
    loop {
        let (page, next) = store.series_page(after, PAGE)?;
        for key in page {
            if let Some(keep_s) = cfg.retention_s_for(&key) {
                let cutoff = now.saturating_sub((keep_s as i64).saturating_mul(1000));
                let n = store.delete_before(&key, cutoff)?;
                if n > 0 {
                    report.series += 1;
                    report.samples += n;
                }
            }
            // Nothing, if that deleted its last sample and it was forgotten.
            report.compressed += store.compress_before(&key, now - COMPRESS_AFTER_MS)?;
        }
        match next {
            Some(id) => after = id,
            None => break,
        }
    }
    report.forgotten = (store.forgotten_total() - forgotten) as usize;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prescale_core::{Sample, SeriesKey};
    use prescale_store::Durability;

    fn kept(store: &Store, key: &SeriesKey) -> usize {
        store.range(key, i64::MIN, i64::MAX).unwrap().unwrap().len()
    }

    #[test]
    fn old_samples_go_and_a_workloads_history_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Sync).unwrap();
        let mut cfg = Config::default();
        cfg.storage.retention_s = 86_400;
        let day = 86_400_000i64;
        let now = 30 * day;
        let every_day: Vec<Sample> = (0..=30)
            .map(|d| Sample {
                ts: d * day,
                value: d as f64,
            })
            .collect();
        let read = SeriesKey::parse(r#"host_cpu_usage_cores{mode="busy"}"#).unwrap();
        let other = SeriesKey::parse("queue_depth").unwrap();
        store.append(&read, &every_day).unwrap();
        store.append(&other, &every_day).unwrap();
        // A pod that stopped reporting on day 10: nothing of it is left, so it goes.
        let gone = SeriesKey::parse(r#"container_cpu{pod="web-1"}"#).unwrap();
        store.append(&gone, &every_day[..=10]).unwrap();
        let r = enforce(&store, &cfg, now).unwrap();
        assert_eq!(store.series().len(), 2);
        assert!(!store.series().contains(&gone));
        // The workload reads 14 days: days 16..=30 stay; the other series keeps a day.
        let left = |k: &SeriesKey| store.range(k, i64::MIN, i64::MAX).unwrap().unwrap();
        assert_eq!(left(&read).first().map(|s| s.ts), Some(16 * day));
        assert_eq!(kept(&store, &read), 15);
        assert_eq!(
            left(&other).iter().map(|s| s.ts).collect::<Vec<_>>(),
            vec![29 * day, 30 * day]
        );
        assert_eq!(
            r,
            RetentionReport {
                series: 3,
                samples: 16 + 29 + 11,
                // All but the newest (now itself), of each series.
                compressed: 14 + 1,
                forgotten: 1,
                decisions: 0,
            }
        );
        // A second pass finds nothing more; a restart finds the same.
        assert_eq!(
            enforce(&store, &cfg, now).unwrap(),
            RetentionReport::default()
        );
        drop(store);
        let store = Store::open(dir.path(), Durability::Sync).unwrap();
        assert_eq!(kept(&store, &read), 15);
        // retention 0 keeps everything, and compresses what was still rows.
        cfg.storage.retention_s = 0;
        assert_eq!(
            enforce(&store, &cfg, 1000 * day).unwrap(),
            RetentionReport {
                compressed: 2,
                ..RetentionReport::default()
            }
        );
        assert_eq!(kept(&store, &read), 15);
    }

    #[test]
    fn decisions_older_than_their_retention_go_oldest_first() {
        use prescale_core::{Decision, DecisionKind};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Durability::Sync).unwrap();
        let day = 86_400_000i64;
        // A hold on day `d`, and the reasons of what the log holds.
        let log = |store: &Store, d: i64| {
            let hold = Decision {
                at: d * day,
                workload: "web".into(),
                kind: DecisionKind::Hold,
                action: None,
                reason: format!("day {d}"),
                repeated: None,
            };
            store.log_decision(&hold).unwrap();
        };
        let left = |store: &Store| -> Vec<String> {
            let all = store.decisions(None, 100).unwrap();
            all.into_iter().map(|d| d.reason).collect()
        };
        for d in 0..10 {
            log(&store, d);
        }
        let mut cfg = Config::default();
        assert_eq!(cfg.storage.decision_retention_s, 365 * 86_400);
        // 0 keeps them all.
        cfg.storage.decision_retention_s = 0;
        assert_eq!(enforce(&store, &cfg, 10 * day).unwrap().decisions, 0);
        // Three days: those from day 7 on stay, oldest first gone.
        cfg.storage.decision_retention_s = 3 * 86_400;
        assert_eq!(enforce(&store, &cfg, 10 * day).unwrap().decisions, 7);
        assert_eq!(left(&store), ["day 7", "day 8", "day 9"]);
        assert_eq!(enforce(&store, &cfg, 10 * day).unwrap().decisions, 0);
        // A decision logged after the pruning follows the ones kept, and a reopened
        // store reads the same.
        log(&store, 10);
        drop(store);
        let store = Store::open(dir.path(), Durability::Sync).unwrap();
        assert_eq!(left(&store), ["day 7", "day 8", "day 9", "day 10"]);
        // All of them past it: the newest stays, so the log's places go on from it
        // after a restart (a standby copying the log reads on after the last it read).
        assert_eq!(enforce(&store, &cfg, 100 * day).unwrap().decisions, 3);
        let last = store.decision_count();
        drop(store);
        let store = Store::open(dir.path(), Durability::Sync).unwrap();
        log(&store, 100);
        let logged = store.decisions_from(None, Some(0), 10).unwrap();
        let places: Vec<u64> = logged.iter().map(|(p, _)| *p).collect();
        assert_eq!(places, [last - 1, last], "{logged:?}");
    }
}
