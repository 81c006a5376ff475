//! The embedded time-series store: durable samples, series index, decision log and
//! small state documents, on the `fjall` LSM key-value store.
//!
//! Layout (one fjall keyspace each):
//! - `series`: series id (u64, big-endian) -> the [`SeriesKey`] as JSON;
//! - `samples`: series id ++ timestamp (sign-flipped, big-endian) -> value (f64 LE), so a
//!   range scan over one series returns samples in time order: the recent samples, as
//!   they arrive;
//! - `chunks`: series id ++ the chunk's last timestamp -> a chunk of the series' older
//!   samples compressed with `pco` ([`Store::compress_before`], hourly in the daemon):
//!   timestamps and values each as a `pco` stream, about 1 byte a sample for a steady
//!   scrape where a raw row takes 8 in compacted tables. A series' chunks never overlap
//!   each other or hold a timestamp its raw rows hold; reads merge both;
//! - `decisions`: sequence number -> [`Decision`] as JSON, the persisted decision log;
//! - `state`: name -> JSON document (latest forecasts, plans, provider state).
//!
//! Appends are acknowledged only after the journal has been synced to disk (unless the
//! store was opened with [`Durability::Buffered`], which the accelerated demo uses), so an
//! acknowledged sample survives a crash. Retention deletes a series' samples before a
//! cutoff ([`Store::delete_before`]; the daemon decides the cutoffs). Moving samples into
//! chunks is one atomic batch (the chunk written, the rows removed), so a crash leaves
//! each sample in one place or the other.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

mod remote;

pub use remote::{query_range, RemoteConfig, QUERY_RANGE_POINTS};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use prescale_core::{now_ms, Decision, DecisionKind, Sample, Selector, SeriesKey, TimestampMs};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

/// A storage failure.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The underlying key-value store failed.
    #[error("store I/O error at {path}: {source}; check that the directory is writable and not used by another prescale process")]
    Io {
        /// Store directory.
        path: String,
        /// The fjall error.
        #[source]
        source: fjall::Error,
    },
    /// The remote store failed or refused; nothing of the request is known to be stored.
    #[error("{0}; check [storage.remote] and that the server is up")]
    Remote(String),
    /// A snapshot could not be made where it was asked for.
    #[error("{0}")]
    Snapshot(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt record in keyspace {keyspace}: {detail}")]
    Corrupt {
        /// Which keyspace.
        keyspace: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every append syncs the journal before returning (the daemon's default).
    Sync,
    /// Appends go to OS buffers; call [`Store::flush`] to sync (accelerated simulations).
    Buffered,
}

/// Why a sample was not stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejection {
    /// The sample's timestamp.
    pub ts: TimestampMs,
    /// What is wrong, for the sender.
    pub reason: String,
}

/// What happened to a batch of samples.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct AppendReport {
    /// Samples newly stored.
    pub accepted: usize,
    /// Samples identical to one already stored (same timestamp and value): ignored.
    pub duplicates: usize,
    /// Samples refused, with reasons; the rest of the batch is still stored.
    pub rejected: Vec<Rejection>,
}

#[derive(Default)]
struct Index {
    /// Every series' id, by key (the key shared with `by_name`).
    by_key: HashMap<Arc<SeriesKey>, u64>,
    /// Every series, by metric name: a selector naming its metric (every workload's
    /// demand at every control pass, most queries) looks at those alone rather than at
    /// every series.
    by_name: HashMap<String, Vec<Arc<SeriesKey>>>,
    /// The newest stored timestamp per series id, once looked up: a sample newer than
    /// it cannot repeat one, so the common append (the next sample of a series) needs no
    /// read of the disk.
    newest: HashMap<u64, TimestampMs>,
}

impl Index {
    /// Adds series `key` with `id`.
    fn insert(&mut self, key: SeriesKey, id: u64) {
        let key = Arc::new(key);
        self.by_name
            .entry(key.name.clone())
            .or_default()
            .push(key.clone());
        self.by_key.insert(key, id);
    }

    /// Removes series `key`.
    fn remove(&mut self, key: &SeriesKey) {
        self.by_key.remove(key);
        if let Some(same) = self.by_name.get_mut(&key.name) {
            same.retain(|k| **k != *key);
            if same.is_empty() {
                self.by_name.remove(&key.name);
            }
        }
    }
}

struct Inner {
    path: String,
    db: Database,
    series: Keyspace,
    samples: Keyspace,
    chunks: Keyspace,
    decisions: Keyspace,
    state: Keyspace,
    durability: Durability,
    /// Held while samples move into chunks, so two compressions never interleave.
    compressing: Mutex<()>,
    /// Held while a snapshot picks its name and is written, so two asked for in the
    /// same second get names of their own.
    snapshotting: Mutex<()>,
    /// Held shared by each append from looking up its series' ids to committing its
    /// samples, and alone while a series emptied by retention is forgotten
    /// ([`Store::delete_before`]), so no append writes under an id that is being let go.
    appending: RwLock<()>,
    /// Held by each append from its first duplicate check to its commit (not its sync),
    /// so two senders of the same new sample (a Prometheus pair) cannot both find it
    /// absent and both be told it was stored, the second overwriting the first.
    committing: Mutex<()>,
    /// Syncs to disk this process asked for (what the tests check appends ask for).
    #[cfg(test)]
    syncs: AtomicU64,
    index: RwLock<Index>,
    next_series: Mutex<u64>,
    next_decision: AtomicU64,
    appended: AtomicU64,
    /// Samples this process moved into chunks.
    compressed: AtomicU64,
    /// Series this process forgot.
    forgotten: AtomicU64,
    /// Most series held (0: no limit): see [`Store::set_max_series`].
    max_series: AtomicUsize,
    remote: Option<remote::Remote>,
}

/// Which decisions [`Store::decisions_matching`] reads; the default lets all through.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter<'a> {
    /// Only this workload's.
    pub workload: Option<&'a str>,
    /// Only those decided at or after this.
    pub since: Option<TimestampMs>,
    /// Only those decided at or before this.
    pub until: Option<TimestampMs>,
    /// Only these kinds (any when empty).
    pub kinds: Vec<DecisionKind>,
}

/// A handle to the embedded store; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

fn ts_key(ts: TimestampMs) -> [u8; 8] {
    ((ts as u64) ^ (1u64 << 63)).to_be_bytes()
}

fn ts_from_key(b: &[u8]) -> TimestampMs {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    (u64::from_be_bytes(a) ^ (1u64 << 63)) as i64
}

fn sample_key(id: u64, ts: TimestampMs) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&id.to_be_bytes());
    k[8..].copy_from_slice(&ts_key(ts));
    k
}

fn decode_f64(b: &[u8]) -> Result<f64> {
    let a: [u8; 8] = b.try_into().map_err(|_| StoreError::Corrupt {
        keyspace: "samples",
        detail: format!("value has {} bytes, expected 8", b.len()),
    })?;
    Ok(f64::from_le_bytes(a))
}

/// The sample a `samples` row holds (its key: series id ++ timestamp; its value: f64).
fn row_sample(key: &[u8], value: &[u8]) -> Result<Sample> {
    Ok(Sample {
        ts: ts_from_key(&key[8..]),
        value: decode_f64(value)?,
    })
}

/// How many bytes of new samples the store holds in memory before it writes them out
/// as a table (fjall's memtable of the `samples` keyspace, set when the store is
/// created). fjall counts about 73 bytes a row against it, so 16 MiB is about 230,000
/// samples: a quarter of an hour of a node exporter's 500 series every 2 s. At fjall's
/// default of 64 MiB, a daemon scraping it grew by 1.4 MB a minute and had reached 130
/// MB after 65 minutes, against 65 MB from its 25th minute on now (heaptrack: the
/// memtable was nearly all of its heap). A smaller memtable means more, smaller tables
/// for compaction to merge, which ingest does not notice (`prescale bench ingest`).
pub const SAMPLES_MEMTABLE_BYTES: u64 = 16 << 20;

/// Most samples one chunk holds; longer runs are split.
pub const CHUNK_MAX: usize = 4096;

/// The chunk format's version byte.
const CHUNK_V1: u8 = 1;

/// What [`Store::chunk_stats`] counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStats {
    /// Chunks.
    pub chunks: u64,
    /// Samples in them.
    pub samples: u64,
    /// Their encoded size.
    pub bytes: u64,
}

/// A run of one series' samples, in time order, as stored in `chunks`.
#[derive(Debug, Clone, PartialEq)]
struct Chunk {
    samples: Vec<Sample>,
}

/// The chunk [`Store::in_chunk_cached`] read last, decoded, and the compression lock
/// held while it is kept.
#[derive(Default)]
struct ChunkCache<'a> {
    lock: Option<std::sync::MutexGuard<'a, ()>>,
    chunk: Option<(u64, Chunk)>,
}

impl Chunk {
    /// The value at `ts`, if the chunk holds one.
    fn value_at(&self, ts: TimestampMs) -> Option<f64> {
        self.samples
            .binary_search_by_key(&ts, |s| s.ts)
            .ok()
            .map(|i| self.samples[i].value)
    }

    fn first(&self) -> TimestampMs {
        self.samples[0].ts
    }

    fn last(&self) -> TimestampMs {
        self.samples[self.samples.len() - 1].ts
    }

    /// `[version][first ts i64 LE][sample count u32 LE][timestamps' length u32 LE]`, then
    /// the timestamps and the values, each a lossless `pco` stream.
    fn encode(&self) -> Vec<u8> {
        let ts: Vec<i64> = self.samples.iter().map(|s| s.ts).collect();
        let values: Vec<f64> = self.samples.iter().map(|s| s.value).collect();
        let config = pco::ChunkConfig::default();
        let t = pco::standalone::simple_compress(&ts, &config).expect("pco takes any i64");
        let v = pco::standalone::simple_compress(&values, &config).expect("pco takes any f64");
        let mut out = Vec::with_capacity(17 + t.len() + v.len());
        out.push(CHUNK_V1);
        out.extend_from_slice(&self.first().to_le_bytes());
        out.extend_from_slice(&(self.samples.len() as u32).to_le_bytes());
        out.extend_from_slice(&(t.len() as u32).to_le_bytes());
        out.extend_from_slice(&t);
        out.extend_from_slice(&v);
        out
    }

    /// The first timestamp, without decoding the rest.
    fn first_of(b: &[u8]) -> Result<TimestampMs> {
        match b.get(1..9) {
            Some(f) if b[0] == CHUNK_V1 => Ok(i64::from_le_bytes(f.try_into().expect("8 bytes"))),
            _ => Err(corrupt_chunk("unknown version or truncated header")),
        }
    }

    fn decode(b: &[u8]) -> Result<Self> {
        if b.len() < 17 || b[0] != CHUNK_V1 {
            return Err(corrupt_chunk("unknown version or truncated header"));
        }
        let n = u32::from_le_bytes(b[9..13].try_into().expect("4 bytes")) as usize;
        let tl = u32::from_le_bytes(b[13..17].try_into().expect("4 bytes")) as usize;
        let body = &b[17..];
        if tl > body.len() {
            return Err(corrupt_chunk("timestamps run past the end"));
        }
        let pco = |e: pco::errors::PcoError| corrupt_chunk(&e.to_string());
        let ts: Vec<i64> = pco::standalone::simple_decompress(&body[..tl]).map_err(pco)?;
        let values: Vec<f64> = pco::standalone::simple_decompress(&body[tl..]).map_err(pco)?;
        if ts.len() != n || values.len() != n || n == 0 {
            return Err(corrupt_chunk(&format!(
                "{} timestamps and {} values where the header says {n}",
                ts.len(),
                values.len()
            )));
        }
        Ok(Chunk {
            samples: ts
                .into_iter()
                .zip(values)
                .map(|(ts, value)| Sample { ts, value })
                .collect(),
        })
    }
}

fn corrupt_chunk(detail: &str) -> StoreError {
    StoreError::Corrupt {
        keyspace: "chunks",
        detail: detail.to_string(),
    }
}

/// Merges two time-ordered runs of samples without shared timestamps.
fn merge(a: Vec<Sample>, b: Vec<Sample>) -> Vec<Sample> {
    if b.is_empty() {
        return a;
    }
    if a.is_empty() {
        return b;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].ts <= b[j].ts {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// A `series` row: its id (the key, big-endian) and its [`SeriesKey`] (the value, JSON).
fn series_entry(k: &[u8], v: &[u8]) -> Result<(u64, SeriesKey)> {
    let id = u64::from_be_bytes(k.try_into().map_err(|_| StoreError::Corrupt {
        keyspace: "series",
        detail: "bad id".into(),
    })?);
    let key = serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        keyspace: "series",
        detail: e.to_string(),
    })?;
    Ok((id, key))
}

/// State document `name` read from its stored JSON `v`; corrupt, naming it, when it
/// does not read as a `T`.
fn state_doc<T: DeserializeOwned>(name: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        keyspace: "state",
        detail: format!("{name}: {e}"),
    })
}

impl Store {
    /// Opens (or creates) the store in `dir`, recovering from the journal.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let path = dir.display().to_string();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let db = Database::builder(dir).open().map_err(io)?;
        let ks = |name: &str| db.keyspace(name, KeyspaceCreateOptions::default);
        let series = ks("series").map_err(io)?;
        let samples = db
            .keyspace("samples", || {
                KeyspaceCreateOptions::default().max_memtable_size(SAMPLES_MEMTABLE_BYTES)
            })
            .map_err(io)?;
        let chunks = ks("chunks").map_err(io)?;
        let decisions = ks("decisions").map_err(io)?;
        let state = ks("state").map_err(io)?;

        let mut index = Index::default();
        let mut max_id = 0u64;
        for item in series.iter() {
            let (k, v) = item.into_inner().map_err(io)?;
            let (id, key) = series_entry(&k, &v)?;
            max_id = max_id.max(id);
            index.insert(key, id);
        }
        let next_decision = match decisions.last_key_value() {
            Some(g) => {
                let (k, _) = g.into_inner().map_err(io)?;
                u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8])) + 1
            }
            None => 0,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                db,
                series,
                samples,
                chunks,
                decisions,
                state,
                durability,
                compressing: Mutex::new(()),
                snapshotting: Mutex::new(()),
                appending: RwLock::new(()),
                committing: Mutex::new(()),
                #[cfg(test)]
                syncs: AtomicU64::new(0),
                index: RwLock::new(index),
                next_series: Mutex::new(max_id + 1),
                next_decision: AtomicU64::new(next_decision),
                appended: AtomicU64::new(0),
                max_series: AtomicUsize::new(0),
                forgotten: AtomicU64::new(0),
                compressed: AtomicU64::new(0),
                remote: None,
            }),
        })
    }

    /// Opens the local store in `dir` for decisions and state, with samples kept in a
    /// Prometheus-compatible server ([`remote`]).
    pub fn open_remote(dir: &Path, durability: Durability, cfg: RemoteConfig) -> Result<Self> {
        let mut store = Self::open(dir, durability)?;
        Arc::get_mut(&mut store.inner)
            .expect("just opened: one handle")
            .remote = Some(remote::Remote::new(cfg).map_err(StoreError::Remote)?);
        Ok(store)
    }

    /// Whether samples are kept in a remote server ([`Store::open_remote`]).
    pub fn is_remote(&self) -> bool {
        self.inner.remote.is_some()
    }

    /// How many series the embedded store holds, from its index (no I/O); `None` for a
    /// remote store, whose count would take listing every series it has.
    pub fn series_count(&self) -> Option<usize> {
        if self.is_remote() {
            return None;
        }
        Some(self.inner.index.read().expect("index lock").by_key.len())
    }

    /// Where samples are kept, for logs: the directory or the remote server.
    pub fn describe(&self) -> String {
        match &self.inner.remote {
            Some(r) => r.describe(),
            None => self.inner.path.clone(),
        }
    }

    fn io(&self) -> impl Fn(fjall::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: self.inner.path.clone(),
            source,
        }
    }

    fn series_id(&self, key: &SeriesKey, create: bool) -> Result<Option<u64>> {
        if let Some(id) = self.inner.index.read().expect("index lock").by_key.get(key) {
            return Ok(Some(*id));
        }
        if !create {
            return Ok(None);
        }
        let mut next = self.inner.next_series.lock().expect("id lock");
        let mut index = self.inner.index.write().expect("index lock");
        if let Some(id) = index.by_key.get(key) {
            return Ok(Some(*id));
        }
        let max = self.inner.max_series.load(Ordering::Relaxed);
        if max > 0 && index.by_key.len() >= max {
            return Ok(None);
        }
        let id = *next;
        let json = serde_json::to_vec(key).expect("series keys serialize");
        self.inner
            .series
            .insert(id.to_be_bytes(), json)
            .map_err(self.io())?;
        *next += 1;
        index.insert(key.clone(), id);
        Ok(Some(id))
    }

    fn persist(&self) -> Result<()> {
        if self.inner.durability == Durability::Sync {
            #[cfg(test)]
            self.inner.syncs.fetch_add(1, Ordering::Relaxed);
            self.inner
                .db
                .persist(PersistMode::SyncAll)
                .map_err(self.io())?;
        }
        Ok(())
    }

    /// Stores samples of one series. Valid samples are stored even when others in the
    /// batch are rejected; out-of-order samples are accepted; a repeated timestamp with
    /// the same value is ignored, with a different value it is rejected. With
    /// [`Durability::Sync`] the samples are on disk when this returns `Ok`.
    pub fn append(&self, key: &SeriesKey, samples: &[Sample]) -> Result<AppendReport> {
        let mut reports = self.append_many(&[(key.clone(), samples.to_vec())])?;
        Ok(reports.pop().expect("one report per series"))
    }

    /// Stores samples of several series in one atomic batch and one sync, with the same
    /// rules as [`Store::append`]; returns one report per entry, in order.
    pub fn append_many(&self, batches: &[(SeriesKey, Vec<Sample>)]) -> Result<Vec<AppendReport>> {
        if let Some(r) = &self.inner.remote {
            return self.append_remote(r, batches);
        }
        let _appending = self.inner.appending.read().expect("append lock");
        let committing = self.inner.committing.lock().expect("commit lock");
        let mut batch = self.inner.db.batch();
        let mut reports = Vec::with_capacity(batches.len());
        let mut in_batch: HashMap<(u64, TimestampMs), f64> = HashMap::new();
        // Samples at or before a series' newest are looked up; those that fall in a
        // compressed chunk's span read the chunk, decoded once per call rather than once
        // per sample (a resent hour of a series is one or two chunks, not 240 decodes).
        let mut chunked = ChunkCache::default();
        let mut newest_after = Vec::new();
        let mut total = 0usize;
        for (key, samples) in batches {
            let mut report = AppendReport::default();
            let Some(id) = self.series_id(key, true)? else {
                let max = self.inner.max_series.load(Ordering::Relaxed);
                let reason = format!(
                    "series limit reached: the store holds {max} series (storage.max_series), so this new one is not stored; raise the limit, or drop the label that makes each series new (a request id, a timestamp)"
                );
                report.rejected = samples
                    .iter()
                    .map(|s| Rejection {
                        ts: s.ts,
                        reason: reason.clone(),
                    })
                    .collect();
                reports.push(report);
                continue;
            };
            let mut newest = self.newest(id)?;
            for s in samples {
                if !s.value.is_finite() {
                    report.rejected.push(Rejection {
                        ts: s.ts,
                        reason: format!("value {} is not finite; send finite floats only", s.value),
                    });
                    continue;
                }
                let k = sample_key(id, s.ts);
                let existing = match in_batch.get(&(id, s.ts)) {
                    Some(v) => Some(*v),
                    None if newest.is_none_or(|n| s.ts > n) => None,
                    None => match self.inner.samples.get(k).map_err(self.io())? {
                        Some(v) => Some(decode_f64(&v)?),
                        None => self.in_chunk_cached(id, s.ts, &mut chunked)?,
                    },
                };
                match existing {
                    Some(v) if v.to_bits() == s.value.to_bits() => report.duplicates += 1,
                    Some(v) => report.rejected.push(Rejection {
                        ts: s.ts,
                        reason: format!(
                            "duplicate timestamp {} for {key} with a different value ({} stored, {} sent); timestamps must be unique per series",
                            s.ts, v, s.value
                        ),
                    }),
                    None => {
                        newest = Some(newest.map_or(s.ts, |n| n.max(s.ts)));
                        batch.insert(&self.inner.samples, k, s.value.to_le_bytes());
                        in_batch.insert((id, s.ts), s.value);
                        report.accepted += 1;
                    }
                }
            }
            total += report.accepted;
            reports.push(report);
            if let Some(n) = newest {
                newest_after.push((id, n));
            }
        }
        if total > 0 {
            batch.commit().map_err(self.io())?;
            {
                let mut index = self.inner.index.write().expect("index lock");
                for (id, n) in newest_after {
                    let e = index.newest.entry(id).or_insert(n);
                    *e = (*e).max(n);
                }
            }
        }
        // The locks go before the sync: the next append's checks already see what was
        // committed, and the sync need not hold others back (they sync their own).
        drop(chunked);
        drop(committing);
        // What is acknowledged is synced before the answer: the samples committed, and
        // any repeat, which may be of another append's sample committed but not yet
        // synced ("already stored" acknowledges it). Refusals alone need no sync.
        if total > 0 || reports.iter().any(|r| r.duplicates > 0) {
            self.persist()?;
        }
        self.inner
            .appended
            .fetch_add(total as u64, Ordering::Relaxed);
        Ok(reports)
    }

    /// The newest stored timestamp of series `id`, from the cache or, the first time, the
    /// last key of its range.
    fn newest(&self, id: u64) -> Result<Option<TimestampMs>> {
        if let Some(&n) = self.inner.index.read().expect("index lock").newest.get(&id) {
            return Ok((n != TimestampMs::MIN).then_some(n));
        }
        let all = sample_key(id, i64::MIN)..=sample_key(id, i64::MAX);
        let raw = match self.inner.samples.range(all.clone()).next_back() {
            Some(g) => Some(ts_from_key(&g.key().map_err(self.io())?[8..])),
            None => None,
        };
        // A chunk is keyed by its last timestamp.
        let chunked = match self.inner.chunks.range(all).next_back() {
            Some(g) => Some(ts_from_key(&g.key().map_err(self.io())?[8..])),
            None => None,
        };
        let last = raw.max(chunked);
        self.inner
            .index
            .write()
            .expect("index lock")
            .newest
            .entry(id)
            .or_insert(last.unwrap_or(TimestampMs::MIN));
        Ok(last)
    }

    /// The remote side of [`Store::append_many`]: non-finite values are refused here, the
    /// rest go in one remote_write request (duplicates and order are the server's rules).
    fn append_remote(
        &self,
        r: &remote::Remote,
        batches: &[(SeriesKey, Vec<Sample>)],
    ) -> Result<Vec<AppendReport>> {
        let mut reports = Vec::with_capacity(batches.len());
        let mut send = Vec::with_capacity(batches.len());
        let mut total = 0;
        for (key, samples) in batches {
            let mut report = AppendReport::default();
            let mut ok = Vec::with_capacity(samples.len());
            for s in samples {
                if s.value.is_finite() {
                    ok.push(*s);
                } else {
                    report.rejected.push(Rejection {
                        ts: s.ts,
                        reason: format!("value {} is not finite; send finite floats only", s.value),
                    });
                }
            }
            report.accepted = ok.len();
            total += ok.len();
            if !ok.is_empty() {
                send.push((key.clone(), ok));
            }
            reports.push(report);
        }
        if !send.is_empty() {
            match r.write(&send) {
                Ok(()) => {
                    self.inner
                        .appended
                        .fetch_add(total as u64, Ordering::Relaxed);
                }
                Err(remote::WriteError::Failed(e)) => return Err(StoreError::Remote(e)),
                // The server may have taken some of them (Prometheus stores the rest of a
                // batch it answers 400 for), but says which only in words: every sample
                // sent is reported refused, with its reason, so no sender resends them.
                Err(remote::WriteError::Refused(e)) => {
                    for ((_, samples), report) in batches.iter().zip(&mut reports) {
                        for s in samples.iter().filter(|s| s.value.is_finite()) {
                            report.rejected.push(Rejection {
                                ts: s.ts,
                                reason: format!(
                                    "the remote store refused some or all of this batch: {e}"
                                ),
                            });
                        }
                        report.accepted = 0;
                    }
                }
            }
        }
        Ok(reports)
    }

    /// Syncs everything written so far to disk.
    pub fn flush(&self) -> Result<()> {
        self.inner
            .db
            .persist(PersistMode::SyncAll)
            .map_err(self.io())
    }

    /// All known series, sorted (with a remote store: those seen within its lookback;
    /// empty if it cannot be reached, which is logged).
    pub fn series(&self) -> Vec<SeriesKey> {
        if let Some(r) = &self.inner.remote {
            return r
                .select(r#"{__name__=~".+"}"#, now_ms())
                .unwrap_or_else(|e| {
                    tracing::warn!("listing series: {e}");
                    Vec::new()
                });
        }
        self.keys_where(|_| true)
    }

    /// The series `pick` keeps, sorted. On the embedded store only those are copied; a
    /// remote store lists every series and they are picked from that.
    pub fn series_where(&self, pick: impl Fn(&SeriesKey) -> bool) -> Vec<SeriesKey> {
        if self.inner.remote.is_some() {
            return self.series().into_iter().filter(|k| pick(k)).collect();
        }
        self.keys_where(pick)
    }

    /// Calls `f` with every series, in no particular order, copying none (with a remote
    /// store, each of those [`Store::series`] lists): for answers built from a few labels
    /// of many series, as Grafana's variables ask for label values, where copying each
    /// key would cost a few hundred bytes a series per request. `f` runs under the
    /// index's read lock, so it must be quick and must not call the store.
    pub fn visit_series(&self, mut f: impl FnMut(&SeriesKey)) {
        if self.inner.remote.is_some() {
            self.series().iter().for_each(f);
            return;
        }
        let index = self.inner.index.read().expect("index lock");
        for key in index.by_key.keys() {
            f(key);
        }
    }

    /// Calls `f` with every series, sorted, copying none (with a remote store, those
    /// [`Store::series`] lists): for an answer listing every series, which would
    /// otherwise copy each key first. `f` runs under the index's read lock, so it must
    /// not call the store.
    pub fn with_series_sorted<R>(&self, f: impl FnOnce(&[&SeriesKey]) -> R) -> R {
        if self.inner.remote.is_some() {
            let keys = self.series();
            return f(&keys.iter().collect::<Vec<_>>());
        }
        let index = self.inner.index.read().expect("index lock");
        let mut keys: Vec<&SeriesKey> = index.by_key.keys().map(|k| &**k).collect();
        keys.sort_unstable();
        f(&keys)
    }

    /// Up to `n` of the embedded store's series with ids above `after` (0: from the
    /// first), in id order, and the id to go on after when there may be more: a pass
    /// over every series (retention's) holds one page of keys at a time, not all of them
    /// (some 650 MB at a million series). Read from the `series` keyspace.
    pub fn series_page(&self, after: u64, n: usize) -> Result<(Vec<SeriesKey>, Option<u64>)> {
        let mut page = Vec::new();
        let mut last = None;
        for item in self
            .inner
            .series
            .range(after.saturating_add(1).to_be_bytes()..)
            .take(n)
        {
            let (k, v) = item.into_inner().map_err(self.io())?;
            let (id, key) = series_entry(&k, &v)?;
            page.push(key);
            last = Some(id);
        }
        let more = n > 0 && page.len() == n;
        Ok((page, last.filter(|_| more)))
    }

    /// The embedded store's series that `pick` keeps, sorted; only those are copied.
    fn keys_where(&self, pick: impl Fn(&SeriesKey) -> bool) -> Vec<SeriesKey> {
        let mut v: Vec<SeriesKey> = self
            .inner
            .index
            .read()
            .expect("index lock")
            .by_key
            .keys()
            .filter(|k| pick(k))
            .map(|k| (**k).clone())
            .collect();
        v.sort();
        v
    }

    /// Series a selector with label matchers (`=`, `!=`, `=~`, `!~`) picks, sorted.
    pub fn select_matching(&self, selector: &Selector) -> Vec<SeriesKey> {
        if let Some(r) = &self.inner.remote {
            return r
                .select(&selector.to_string(), now_ms())
                .unwrap_or_else(|e| {
                    tracing::warn!("selecting {selector}: {e}");
                    Vec::new()
                });
        }
        // Only the keys picked are copied: every control pass selects each workload's
        // demand, and copying all of a large store's keys each time cost more than the
        // matching. A selector naming its metric looks at that metric's series alone.
        if !selector.name.is_empty() {
            let index = self.inner.index.read().expect("index lock");
            let mut v: Vec<SeriesKey> = index
                .by_name
                .get(&selector.name)
                .into_iter()
                .flatten()
                .filter(|k| selector.matches(k))
                .map(|k| (**k).clone())
                .collect();
            v.sort();
            return v;
        }
        self.keys_where(|k| selector.matches(k))
    }

    /// Samples of `key` with `start <= ts <= end`, in time order. An unknown series
    /// yields `None` so callers can say so.
    pub fn range(
        &self,
        key: &SeriesKey,
        start: TimestampMs,
        end: TimestampMs,
    ) -> Result<Option<Vec<Sample>>> {
        if let Some(r) = &self.inner.remote {
            // Open ends (the API's defaults, "everything said so far") mean up to now.
            let end = end.min(now_ms() + 3_600_000);
            if start > end {
                return Ok(Some(Vec::new()));
            }
            let samples = r.range(key, start, end).map_err(StoreError::Remote)?;
            if samples.is_empty() && !self.select_matching(&Selector::from(key)).contains(key) {
                return Ok(None);
            }
            return Ok(Some(samples));
        }
        let Some(id) = self.series_id(key, false)? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        if start > end {
            return Ok(Some(out));
        }
        for item in self
            .inner
            .samples
            .range(sample_key(id, start)..=sample_key(id, end))
        {
            let (k, v) = item.into_inner().map_err(self.io())?;
            out.push(row_sample(&k, &v)?);
        }
        let chunked: Vec<Sample> = self
            .chunks_in(id, start, end)?
            .into_iter()
            .flat_map(|c| c.samples)
            .filter(|s| (start..=end).contains(&s.ts))
            .collect();
        Ok(Some(merge(chunked, out)))
    }

    /// Whether `key` has a sample with `start <= ts <= end`, without reading them all:
    /// what the query API's series and label lists filter on. A remote store answers
    /// for the series its listing holds (those seen within its lookback).
    pub fn has_samples(
        &self,
        key: &SeriesKey,
        start: TimestampMs,
        end: TimestampMs,
    ) -> Result<bool> {
        if self.inner.remote.is_some() {
            return Ok(true);
        }
        let Some(id) = self.series_id(key, false)? else {
            return Ok(false);
        };
        if start > end {
            return Ok(false);
        }
        if let Some(item) = self
            .inner
            .samples
            .range(sample_key(id, start)..=sample_key(id, end))
            .next()
        {
            item.into_inner().map_err(self.io())?;
            return Ok(true);
        }
        Ok(self
            .chunks_in(id, start, end)?
            .iter()
            .any(|c| c.samples.iter().any(|s| (start..=end).contains(&s.ts))))
    }

    /// The chunks of series `id` that may hold samples in `[start, end]` (their last
    /// timestamp at or after `start`, their first at or before `end`), in time order.
    fn chunks_in(&self, id: u64, start: TimestampMs, end: TimestampMs) -> Result<Vec<Chunk>> {
        let mut out = Vec::new();
        for item in self
            .inner
            .chunks
            .range(sample_key(id, start)..=sample_key(id, i64::MAX))
        {
            let (_, v) = item.into_inner().map_err(self.io())?;
            if Chunk::first_of(&v)? > end {
                break;
            }
            out.push(Chunk::decode(&v)?);
        }
        Ok(out)
    }

    /// The value a chunk of series `id` holds at `ts`, if any, through `cache`: the
    /// chunk read last stays decoded for the next lookup. The first lookup that reads a
    /// chunk takes the compression lock for as long as `cache` lives, so no compression
    /// moves rows into a chunk while a stale copy of it is held (a row read after such a
    /// move would be found in neither).
    fn in_chunk_cached<'a>(
        &'a self,
        id: u64,
        ts: TimestampMs,
        cache: &mut ChunkCache<'a>,
    ) -> Result<Option<f64>> {
        if let Some((cid, c)) = &cache.chunk {
            if *cid == id && (c.first()..=c.last()).contains(&ts) {
                return Ok(c.value_at(ts));
            }
        }
        if cache.lock.is_none() {
            cache.lock = Some(self.inner.compressing.lock().expect("compression lock"));
        }
        let Some(c) = self.chunks_in(id, ts, ts)?.pop() else {
            return Ok(None);
        };
        let v = c.value_at(ts);
        cache.chunk = Some((id, c));
        Ok(v)
    }

    /// Moves the samples of `key` older than `cutoff` from rows into compressed chunks
    /// (of at most [`CHUNK_MAX`] samples; a late sample inside an existing chunk's span
    /// joins that chunk), each move one atomic batch, and syncs; returns how many moved.
    /// Reads, appends and their duplicate checks see every sample the same before and
    /// after.
    pub fn compress_before(&self, key: &SeriesKey, cutoff: TimestampMs) -> Result<usize> {
        if self.inner.remote.is_some() || cutoff == i64::MIN {
            return Ok(0);
        }
        let Some(id) = self.series_id(key, false)? else {
            return Ok(0);
        };
        let _one = self.inner.compressing.lock().expect("compression lock");
        const ROWS: usize = 100_000;
        let mut moved = 0;
        loop {
            let mut raw = Vec::new();
            for item in self
                .inner
                .samples
                .range(sample_key(id, i64::MIN)..sample_key(id, cutoff))
                .take(ROWS)
            {
                let (k, v) = item.into_inner().map_err(self.io())?;
                raw.push(row_sample(&k, &v)?);
            }
            let (Some(lo), Some(hi)) = (raw.first().map(|s| s.ts), raw.last().map(|s| s.ts)) else {
                break;
            };
            let chunks = self.chunks_in(id, lo, hi)?;
            // Each sample joins the chunk whose span holds it, or the run between two
            // chunks it falls in (`gaps[c]`: before chunk c).
            let mut joins: Vec<Vec<Sample>> = vec![Vec::new(); chunks.len()];
            let mut gaps: Vec<Vec<Sample>> = vec![Vec::new(); chunks.len() + 1];
            let mut c = 0;
            for s in &raw {
                while c < chunks.len() && chunks[c].last() < s.ts {
                    c += 1;
                }
                if c < chunks.len() && chunks[c].first() <= s.ts {
                    joins[c].push(*s);
                } else {
                    gaps[c].push(*s);
                }
            }
            let mut batch = self.inner.db.batch();
            let put = |samples: Vec<Sample>, batch: &mut fjall::OwnedWriteBatch| {
                for piece in samples.chunks(CHUNK_MAX) {
                    let c = Chunk {
                        samples: piece.to_vec(),
                    };
                    batch.insert(&self.inner.chunks, sample_key(id, c.last()), c.encode());
                }
            };
            for (old, extra) in chunks.into_iter().zip(joins) {
                if !extra.is_empty() {
                    batch.remove(&self.inner.chunks, sample_key(id, old.last()));
                    put(merge(old.samples, extra), &mut batch);
                }
            }
            for run in gaps.into_iter().filter(|g| !g.is_empty()) {
                put(run, &mut batch);
            }
            for s in &raw {
                batch.remove(&self.inner.samples, sample_key(id, s.ts));
            }
            batch.commit().map_err(self.io())?;
            moved += raw.len();
            if raw.len() < ROWS {
                break;
            }
        }
        if moved > 0 {
            self.persist()?;
            self.inner
                .compressed
                .fetch_add(moved as u64, Ordering::Relaxed);
        }
        Ok(moved)
    }

    /// Deletes the samples of `key` older than `cutoff` (ms) and syncs; returns how many.
    /// Deletes in batches, so a long backlog does not hold one huge batch in memory. A
    /// series left without samples is forgotten: listed no more, and a new series if it
    /// comes back.
    pub fn delete_before(&self, key: &SeriesKey, cutoff: TimestampMs) -> Result<usize> {
        if self.inner.remote.is_some() {
            // The remote server's own retention applies.
            return Ok(0);
        }
        let Some(id) = self.series_id(key, false)? else {
            return Ok(0);
        };
        if cutoff == i64::MIN {
            return Ok(0);
        }
        let mut deleted = 0;
        loop {
            let mut keys = Vec::new();
            for item in self
                .inner
                .samples
                .range(sample_key(id, i64::MIN)..sample_key(id, cutoff))
                .take(50_000)
            {
                keys.push(item.key().map_err(self.io())?);
            }
            if keys.is_empty() {
                break;
            }
            let mut batch = self.inner.db.batch();
            for k in &keys {
                batch.remove(&self.inner.samples, k.clone());
            }
            batch.commit().map_err(self.io())?;
            deleted += keys.len();
        }
        // Chunks that end before the cutoff go whole; one that straddles it keeps its
        // samples from the cutoff on (under the same key: its last sample stays).
        let mut batch = self.inner.db.batch();
        let mut touched = false;
        for item in self
            .inner
            .chunks
            .range(sample_key(id, i64::MIN)..=sample_key(id, i64::MAX))
        {
            let (k, v) = item.into_inner().map_err(self.io())?;
            if Chunk::first_of(&v)? >= cutoff {
                break;
            }
            let mut c = Chunk::decode(&v)?;
            let before = c.samples.len();
            c.samples.retain(|s| s.ts >= cutoff);
            deleted += before - c.samples.len();
            touched = true;
            if c.samples.is_empty() {
                batch.remove(&self.inner.chunks, k);
            } else {
                batch.insert(&self.inner.chunks, k, c.encode());
                break;
            }
        }
        if touched {
            batch.commit().map_err(self.io())?;
        }
        if deleted > 0 {
            self.forget_if_empty(key, id)?;
            self.persist()?;
        }
        Ok(deleted)
    }

    /// Forgets series `key` (id `id`) if it holds no sample: its entry in `series` and the index go,
    /// so a series that retention has emptied (a pod long gone, whose name was a label)
    /// costs no memory and no work in later passes. If it comes back it is a new series.
    fn forget_if_empty(&self, key: &SeriesKey, id: u64) -> Result<bool> {
        let holds = || {
            let all = sample_key(id, i64::MIN)..=sample_key(id, i64::MAX);
            self.inner.samples.range(all.clone()).next().is_some()
                || self.inner.chunks.range(all).next().is_some()
        };
        // Most series retention trims still hold samples: those are told without
        // stopping every append, hourly, series after series.
        if holds() {
            return Ok(false);
        }
        let _alone = self.inner.appending.write().expect("append lock");
        let _compressing = self.inner.compressing.lock().expect("compression lock");
        // Again, alone: an append may have come since.
        if holds() {
            return Ok(false);
        }
        let mut index = self.inner.index.write().expect("index lock");
        self.inner
            .series
            .remove(id.to_be_bytes())
            .map_err(self.io())?;
        if index.by_key.get(key) == Some(&id) {
            index.remove(key);
        }
        index.newest.remove(&id);
        self.inner.forgotten.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// The newest sample of `key`, if any.
    pub fn latest(&self, key: &SeriesKey) -> Result<Option<Sample>> {
        if self.inner.remote.is_some() {
            let now = now_ms();
            return Ok(self
                .range(key, now - 86_400_000, now)?
                .and_then(|v| v.last().copied()));
        }
        let Some(id) = self.series_id(key, false)? else {
            return Ok(None);
        };
        let lo = sample_key(id, i64::MIN);
        let hi = sample_key(id, i64::MAX);
        let raw = match self.inner.samples.range(lo..=hi).next_back() {
            Some(g) => {
                let (k, v) = g.into_inner().map_err(self.io())?;
                Some(row_sample(&k, &v)?)
            }
            None => None,
        };
        let chunked = match self.inner.chunks.range(lo..=hi).next_back() {
            Some(g) => Chunk::decode(&g.value().map_err(self.io())?)?
                .samples
                .last()
                .copied(),
            None => None,
        };
        Ok(match (raw, chunked) {
            (Some(r), Some(c)) => Some(if c.ts > r.ts { c } else { r }),
            (r, c) => r.or(c),
        })
    }

    /// Appends a decision to the persisted log (synced like samples).
    pub fn log_decision(&self, d: &Decision) -> Result<u64> {
        let seq = self.inner.next_decision.fetch_add(1, Ordering::SeqCst);
        let json = serde_json::to_vec(d).expect("decisions serialize");
        self.inner
            .decisions
            .insert(seq.to_be_bytes(), json)
            .map_err(self.io())?;
        self.persist()?;
        Ok(seq)
    }

    /// The newest `limit` decisions (optionally of one workload), oldest first.
    pub fn decisions(&self, workload: Option<&str>, limit: usize) -> Result<Vec<Decision>> {
        self.decisions_matching(
            &DecisionFilter {
                workload,
                ..DecisionFilter::default()
            },
            limit,
        )
    }

    /// The newest `limit` decisions that `filter` lets through, oldest first. The log
    /// is read from its newest entry back, in the order decided (which is time order),
    /// and stops at the first entry from before `filter.since`.
    pub fn decisions_matching(
        &self,
        filter: &DecisionFilter<'_>,
        limit: usize,
    ) -> Result<Vec<Decision>> {
        let mut out = Vec::new();
        for item in self.inner.decisions.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = item.into_inner().map_err(self.io())?;
            let d: Decision = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                keyspace: "decisions",
                detail: e.to_string(),
            })?;
            if filter.since.is_some_and(|t| d.at < t) {
                break;
            }
            let wanted = filter.workload.is_none_or(|w| w == d.workload)
                && filter.until.is_none_or(|t| d.at <= t)
                && (filter.kinds.is_empty() || filter.kinds.contains(&d.kind));
            if wanted {
                out.push(d);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// Deletes the decisions made before `cutoff` (ms), oldest first, and returns how
    /// many. The log is in time order, so it stops at the first one kept. The newest is
    /// always kept: the next decision's place in the log is counted from it when the
    /// store is opened again, and a standby copying the log reads on after the last
    /// place it read.
    pub fn delete_decisions_before(&self, cutoff: TimestampMs) -> Result<usize> {
        let Some((newest, _)) = self
            .inner
            .decisions
            .last_key_value()
            .map(|kv| kv.into_inner())
            .transpose()
            .map_err(self.io())?
        else {
            return Ok(0);
        };
        let mut deleted = 0;
        loop {
            // A batch of keys at a time: a log left unpruned for years is long.
            let mut keys = Vec::new();
            let mut done = false;
            for item in self.inner.decisions.iter().take(10_000) {
                let (k, v) = item.into_inner().map_err(self.io())?;
                let d: Decision = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    keyspace: "decisions",
                    detail: e.to_string(),
                })?;
                if d.at >= cutoff || k == newest {
                    done = true;
                    break;
                }
                keys.push(k);
            }
            if !keys.is_empty() {
                let mut batch = self.inner.db.batch();
                for k in &keys {
                    batch.remove(&self.inner.decisions, k.clone());
                }
                batch.commit().map_err(self.io())?;
                deleted += keys.len();
            }
            if done || keys.is_empty() {
                break;
            }
        }
        if deleted > 0 {
            self.persist()?;
        }
        Ok(deleted)
    }

    /// Up to `limit` decisions of the log in the order logged, each with its place in
    /// the log: those after place `after`, or without it those decided at or after
    /// `since` (from the first without either). A standby copies the holder's log with
    /// it page by page: the first page by time, the next ones after the last place read.
    pub fn decisions_from(
        &self,
        after: Option<u64>,
        since: Option<TimestampMs>,
        limit: usize,
    ) -> Result<Vec<(u64, Decision)>> {
        let decode = |k: &[u8], v: &[u8]| -> Result<(u64, Decision)> {
            let seq = k
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    keyspace: "decisions",
                    detail: format!("key has {} bytes, expected 8", k.len()),
                })?;
            let d = serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
                keyspace: "decisions",
                detail: e.to_string(),
            })?;
            Ok((seq, d))
        };
        let start = match (after, since) {
            (Some(a), _) => a.saturating_add(1),
            (None, Some(t)) => {
                // Back from the newest to the first decided before `since`.
                let mut first = self.inner.next_decision.load(Ordering::SeqCst);
                for item in self.inner.decisions.iter().rev() {
                    let (k, v) = item.into_inner().map_err(self.io())?;
                    let (seq, d) = decode(&k, &v)?;
                    if d.at < t {
                        break;
                    }
                    first = seq;
                }
                first
            }
            (None, None) => 0,
        };
        let mut out = Vec::new();
        for item in self
            .inner
            .decisions
            .range(start.to_be_bytes()..)
            .take(limit)
        {
            let (k, v) = item.into_inner().map_err(self.io())?;
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Number of decisions ever logged.
    pub fn decision_count(&self) -> u64 {
        self.inner.next_decision.load(Ordering::SeqCst)
    }

    /// Stores a JSON state document under `name`.
    pub fn put_state<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.put_states(&[(name, value)])
    }

    /// Stores several JSON state documents, by name, in one atomic batch and one sync.
    pub fn put_states<N: AsRef<str>, T: Serialize>(&self, docs: &[(N, T)]) -> Result<()> {
        let mut batch = self.inner.db.batch();
        for (name, value) in docs {
            let json = serde_json::to_vec(value).expect("state serializes");
            batch.insert(&self.inner.state, name.as_ref().as_bytes(), json);
        }
        batch.commit().map_err(self.io())?;
        self.persist()
    }

    /// Reads a state document; `None` when absent.
    pub fn get_state<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.inner.state.get(name.as_bytes()).map_err(self.io())? {
            Some(v) => state_doc(name, &v).map(Some),
            None => Ok(None),
        }
    }

    /// Every state document whose name starts with `prefix`, by name, each read or
    /// failing on its own (a corrupt document does not hide the others).
    pub fn states<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, Result<T>)>> {
        let mut out = Vec::new();
        for item in self.inner.state.prefix(prefix.as_bytes()) {
            let (k, v) = item.into_inner().map_err(self.io())?;
            let name = String::from_utf8_lossy(&k).into_owned();
            let doc = state_doc(&name, &v);
            out.push((name, doc));
        }
        Ok(out)
    }

    /// Samples accepted since this handle was opened.
    pub fn appended_total(&self) -> u64 {
        self.inner.appended.load(Ordering::Relaxed)
    }

    /// Holds at most `max` series (0: no limit): samples of a new series past it are
    /// refused ([`AppendReport::rejected`], saying why), those of series held are stored
    /// as before. A store already past the limit keeps what it holds.
    pub fn set_max_series(&self, max: usize) {
        self.inner.max_series.store(max, Ordering::Relaxed);
    }

    /// The most series held (0: no limit): see [`Store::set_max_series`].
    pub fn max_series(&self) -> usize {
        self.inner.max_series.load(Ordering::Relaxed)
    }

    /// Series forgotten since this handle was opened: retention deleted their last
    /// sample ([`Store::delete_before`]).
    pub fn forgotten_total(&self) -> u64 {
        self.inner.forgotten.load(Ordering::Relaxed)
    }

    /// Samples moved into compressed chunks since this handle was opened.
    pub fn compressed_total(&self) -> u64 {
        self.inner.compressed.load(Ordering::Relaxed)
    }

    /// Writes the samples held in memory out as tables and compacts them, as a
    /// long-running store's are (for measuring its size: [`Store::samples_disk_bytes`]).
    pub fn settle(&self) -> Result<()> {
        for ks in [&self.inner.samples, &self.inner.chunks] {
            ks.rotate_memtable_and_wait().map_err(self.io())?;
            ks.major_compact().map_err(self.io())?;
        }
        Ok(())
    }

    /// How many chunks there are, how many samples they hold, and their encoded bytes
    /// (reads every chunk's header: for reports, not for every scrape).
    pub fn chunk_stats(&self) -> Result<ChunkStats> {
        let mut st = ChunkStats::default();
        for item in self.inner.chunks.iter() {
            let (_, v) = item.into_inner().map_err(self.io())?;
            let n = v
                .get(9..13)
                .ok_or_else(|| corrupt_chunk("truncated header"))?;
            st.chunks += 1;
            st.samples += u32::from_le_bytes(n.try_into().expect("4 bytes")) as u64;
            st.bytes += v.len() as u64;
        }
        Ok(st)
    }

    /// Bytes the samples' tables take on disk, rows and chunks (not the journal).
    pub fn samples_disk_bytes(&self) -> u64 {
        self.inner.samples.disk_space() + self.inner.chunks.disk_space()
    }

    /// Bytes the store takes on disk, journal included: the space its files hold, not
    /// their length (a journal file is made 64 MiB long at once and filled as writes
    /// come, so a new store's length is 64 MiB where it holds a few hundred KB).
    pub fn disk_bytes(&self) -> u64 {
        // Snapshots are copies kept beside the store, not the store.
        let root = Path::new(&self.inner.path);
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name() != SNAPSHOTS)
            .map(|e| held_under(&e.path()))
            .sum()
    }

    /// A snapshot ([`Store::snapshot_to`]) into the store's own [`SNAPSHOTS`]
    /// directory, named for the time in UTC (`20261204T175000Z`, then `-2`, `-3` within
    /// the same second): its name, directory and what it copied.
    pub fn snapshot(&self) -> Result<(String, std::path::PathBuf, SnapshotReport)> {
        let base: String = prescale_core::format_ts(now_ms())
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let _one = self.inner.snapshotting.lock().expect("snapshot lock");
        let root = Path::new(&self.inner.path).join(SNAPSHOTS);
        std::fs::create_dir_all(&root)
            .map_err(|e| StoreError::Snapshot(format!("cannot create {}: {e}", root.display())))?;
        let mut name = base.clone();
        let mut n = 1;
        while root.join(&name).exists() {
            n += 1;
            name = format!("{base}-{n}");
        }
        let dir = root.join(&name);
        let report = self.snapshot_to(&dir)?;
        Ok((name, dir, report))
    }

    /// Copies the store as it stands at one instant into `dir`, a new directory, while
    /// writes go on: every keyspace is read from one snapshot of the database, so the
    /// copy holds each write whole or not at all, and is a store `prescale run
    /// --data-dir DIR` opens as it is (Prometheus' TSDB snapshot, for backups). The
    /// copy is synced to disk before this returns.
    pub fn snapshot_to(&self, dir: &Path) -> Result<SnapshotReport> {
        let started = std::time::Instant::now();
        if dir.exists() {
            return Err(StoreError::Snapshot(format!(
                "{} already exists: a snapshot goes into a new directory",
                dir.display()
            )));
        }
        let path = dir.display().to_string();
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let db = Database::builder(dir).open().map_err(io)?;
        let at = self.inner.db.snapshot();
        let mut report = SnapshotReport::default();
        for (name, from) in [
            ("series", &self.inner.series),
            ("samples", &self.inner.samples),
            ("chunks", &self.inner.chunks),
            ("decisions", &self.inner.decisions),
            ("state", &self.inner.state),
        ] {
            let to = if name == "samples" {
                db.keyspace(name, || {
                    KeyspaceCreateOptions::default().max_memtable_size(SAMPLES_MEMTABLE_BYTES)
                })
            } else {
                db.keyspace(name, KeyspaceCreateOptions::default)
            }
            .map_err(io)?;
            let mut n = 0u64;
            let mut ingest = to.start_ingestion().map_err(io)?;
            for item in fjall::Readable::iter(&at, from) {
                let (k, v) = item.into_inner().map_err(|source| StoreError::Io {
                    path: self.inner.path.clone(),
                    source,
                })?;
                ingest.write(k, v).map_err(io)?;
                n += 1;
            }
            ingest.finish().map_err(io)?;
            match name {
                "series" => report.series = n,
                "samples" => report.rows = n,
                "chunks" => report.chunks = n,
                "decisions" => report.decisions = n,
                _ => report.states = n,
            }
        }
        drop(at);
        db.persist(PersistMode::SyncAll).map_err(io)?;
        drop(db);
        report.bytes = held_under(dir);
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// Where the daemon keeps snapshots, inside the store's directory (as Prometheus'
/// `data/snapshots`); the store itself never reads it.
pub const SNAPSHOTS: &str = "snapshots";

/// What [`Store::snapshot_to`] copied.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SnapshotReport {
    /// Series (index entries).
    pub series: u64,
    /// Sample rows not yet compressed.
    pub rows: u64,
    /// Compressed chunks.
    pub chunks: u64,
    /// Decision log entries.
    pub decisions: u64,
    /// State documents (workload status, models, provider state, metadata).
    pub states: u64,
    /// Bytes the copy takes on disk.
    pub bytes: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// The space the file or the files under the directory at `path` hold on disk (not
/// their length: see [`Store::disk_bytes`]).
fn held_under(path: &Path) -> u64 {
    #[cfg(unix)]
    fn held(m: &std::fs::Metadata) -> u64 {
        use std::os::unix::fs::MetadataExt;
        m.blocks() * 512
    }
    #[cfg(not(unix))]
    fn held(m: &std::fs::Metadata) -> u64 {
        m.len()
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| held_under(&e.path()))
            .sum(),
        Ok(m) => held(&m),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_taken_during_writes_is_a_store_holding_each_write_whole() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        // History: rows, chunks, a decision and a state document.
        let a = key("a");
        st.append(
            &a,
            &(0..5_000)
                .map(|i| s(i * 1000, i as f64))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        assert!(st.compress_before(&a, 4_000_000).unwrap() > 0);
        st.log_decision(&Decision {
            at: 1,
            workload: "w".into(),
            kind: DecisionKind::Hold,
            action: None,
            reason: "kept".into(),
            repeated: None,
        })
        .unwrap();
        st.put_state("model/w", &"v1").unwrap();
        // Meanwhile a writer appends two series in one batch, step after step.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (st, stop) = (st.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0i64;
                while !stop.load(Ordering::Relaxed) {
                    let batch = vec![
                        (key("b"), vec![s(i, i as f64)]),
                        (key("c"), vec![s(i, -(i as f64))]),
                    ];
                    st.append_many(&batch).unwrap();
                    i += 1;
                }
                i
            })
        };
        while st
            .range(&key("b"), 0, i64::MAX)
            .unwrap()
            .map_or(0, |v| v.len())
            < 200
        {
            std::thread::yield_now();
        }
        let snap = dir.path().join(SNAPSHOTS).join("one");
        let report = st.snapshot_to(&snap).unwrap();
        stop.store(true, Ordering::Relaxed);
        let written = writer.join().unwrap();
        assert!(
            report.chunks > 0 && report.rows > 0 && report.series == 3,
            "{report:?}"
        );
        assert_eq!((report.decisions, report.states), (1, 1));
        assert!(report.bytes > 0);
        // A second snapshot into the same place is refused, naming it.
        let again = st.snapshot_to(&snap).unwrap_err().to_string();
        assert!(again.contains("already exists"), "{again}");

        let copy = Store::open(&snap, Durability::Buffered).unwrap();
        let all = |st: &Store, k: &str| st.range(&key(k), 0, i64::MAX).unwrap().unwrap();
        assert_eq!(all(&copy, "a"), all(&st, "a"));
        // The writer's batches are each in the copy whole or not at all, and the copy
        // holds a prefix of what was written.
        let (b, c) = (all(&copy, "b"), all(&copy, "c"));
        assert_eq!(b.len(), c.len(), "a batch split by the snapshot");
        assert!(b.len() >= 200 && (b.len() as i64) <= written);
        assert!(b.iter().enumerate().all(|(i, x)| x.ts == i as i64));
        assert_eq!(copy.decisions(Some("w"), 10).unwrap().len(), 1);
        assert_eq!(
            copy.get_state::<String>("model/w").unwrap().as_deref(),
            Some("v1")
        );
        // The copy takes writes of its own; the store opens again with it inside, and
        // does not count it as its own size.
        copy.append(&key("d"), &[s(1, 1.0)]).unwrap();
        drop(copy);
        drop(st);
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        assert_eq!(all(&st, "b").len() as i64, written);
        assert!(st.range(&key("d"), 0, i64::MAX).unwrap().is_none());
        // The store's size leaves its snapshots out (measured on a quiet store: a busy
        // one's background flushes change its size between two readings).
        let quiet_dir = tempfile::tempdir().unwrap();
        let quiet = Store::open(quiet_dir.path(), Durability::Sync).unwrap();
        quiet.append(&key("q"), &[s(1, 1.0)]).unwrap();
        let before = quiet.disk_bytes();
        quiet.snapshot().unwrap();
        let big: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(quiet_dir.path().join(SNAPSHOTS).join("big"), big).unwrap();
        assert_eq!(quiet.disk_bytes(), before);
    }

    fn key(n: &str) -> SeriesKey {
        SeriesKey::parse(n).unwrap()
    }

    fn s(ts: i64, v: f64) -> Sample {
        Sample { ts, value: v }
    }

    #[test]
    fn timestamps_sort_across_sign() {
        let mut ts = vec![5i64, -3, 0, i64::MIN, i64::MAX, -1];
        let mut keys: Vec<_> = ts.iter().map(|t| ts_key(*t)).collect();
        keys.sort();
        ts.sort();
        let back: Vec<_> = keys.iter().map(|k| ts_from_key(k)).collect();
        assert_eq!(back, ts);
    }

    #[test]
    fn append_range_out_of_order_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let k = key(r#"cpu{host="a"}"#);
        let r = st
            .append(&k, &[s(30, 3.0), s(10, 1.0), s(20, 2.0)])
            .unwrap();
        assert_eq!(r.accepted, 3);
        let r = st
            .append(&k, &[s(20, 2.0), s(20, 9.0), s(40, f64::NAN), s(15, 1.5)])
            .unwrap();
        assert_eq!(r.accepted, 1);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.rejected.len(), 2);
        assert!(r
            .rejected
            .iter()
            .any(|x| x.reason.contains("duplicate timestamp")));
        assert!(r.rejected.iter().any(|x| x.reason.contains("not finite")));
        let got = st.range(&k, 0, 100).unwrap().unwrap();
        let ts: Vec<_> = got.iter().map(|x| x.ts).collect();
        assert_eq!(ts, vec![10, 15, 20, 30]);
        assert_eq!(got[2].value, 2.0, "the first value for a timestamp is kept");
        assert_eq!(st.range(&k, 16, 29).unwrap().unwrap().len(), 1);
        assert_eq!(st.latest(&k).unwrap().unwrap(), s(30, 3.0));
        assert!(st.range(&key("nope"), 0, 1).unwrap().is_none());
    }

    fn rows(st: &Store) -> usize {
        st.inner.samples.iter().count()
    }

    fn chunk_bytes(st: &Store) -> (usize, usize) {
        st.inner.chunks.iter().fold((0, 0), |(n, b), item| {
            (n + 1, b + item.into_inner().unwrap().1.len())
        })
    }

    #[test]
    fn has_samples_looks_in_rows_and_chunks_alike() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let k = key(r#"cpu{host="a"}"#);
        // Samples at 0..=9 s and 100..=109 s: a gap between.
        let all: Vec<Sample> = (0..10)
            .chain(100..110)
            .map(|i| s(i * 1000, i as f64))
            .collect();
        st.append(&k, &all).unwrap();
        let check = |st: &Store| {
            assert!(st.has_samples(&k, 0, 0).unwrap());
            assert!(st.has_samples(&k, 5_500, 100_000).unwrap());
            assert!(st.has_samples(&k, i64::MIN, i64::MAX).unwrap());
            assert!(!st.has_samples(&k, 9_001, 99_999).unwrap(), "the gap");
            assert!(!st.has_samples(&k, 109_001, i64::MAX).unwrap());
            assert!(
                !st.has_samples(&k, 5_000, 4_000).unwrap(),
                "start after end"
            );
            assert!(!st.has_samples(&key("nope"), 0, i64::MAX).unwrap());
        };
        check(&st);
        // The first run and the gap into one chunk; the second run stays rows.
        assert_eq!(st.compress_before(&k, 50_000).unwrap(), 10);
        check(&st);
        assert_eq!(st.compress_before(&k, 200_000).unwrap(), 10);
        check(&st);
    }

    #[test]
    fn compressed_samples_read_and_repeat_exactly_as_rows_did() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(r#"cpu{host="a"}"#);
        let other = key(r#"cpu{host="b"}"#);
        // A day of 15 s samples of a smooth signal, with values that must survive bit for
        // bit: zeros of both signs, huge and tiny numbers.
        let mut all: Vec<Sample> = (0..5760)
            .map(|i| s(i * 15_000, 40.0 + 10.0 * ((i as f64) / 300.0).sin()))
            .collect();
        all[7].value = -0.0;
        all[8].value = 0.0;
        all[9].value = 1e300;
        all[10].value = f64::MIN_POSITIVE;
        let bits = |v: &[Sample]| -> Vec<(i64, u64)> {
            v.iter().map(|x| (x.ts, x.value.to_bits())).collect()
        };
        {
            let st = Store::open(dir.path(), Durability::Sync).unwrap();
            st.append(&k, &all).unwrap();
            st.append(&other, &all[..100]).unwrap();
            // Everything before 20:00 into chunks; the last four hours stay rows.
            let cutoff = 20 * 3_600_000;
            assert_eq!(st.compress_before(&k, cutoff).unwrap(), 4800);
            assert_eq!(rows(&st), 960 + 100, "the other series is untouched");
            assert_eq!(
                bits(&st.range(&k, 0, i64::MAX).unwrap().unwrap()),
                bits(&all)
            );
            // A range across the boundary, and one inside a chunk.
            let mid = st
                .range(&k, 19 * 3_600_000, 21 * 3_600_000)
                .unwrap()
                .unwrap();
            assert_eq!(mid.len(), 481);
            assert_eq!(bits(&mid), bits(&all[4560..=5040]));
            assert_eq!(
                bits(&st.range(&k, 105_000, 150_000).unwrap().unwrap()),
                bits(&all[7..=10])
            );
            assert_eq!(st.latest(&k).unwrap(), all.last().copied());
            // A smooth signal at a steady scrape takes about a byte a sample.
            let (chunks, bytes) = chunk_bytes(&st);
            assert_eq!(chunks, 2, "4800 samples in chunks of at most {CHUNK_MAX}");
            assert!(bytes < 4800 * 2, "{bytes} bytes for 4800 samples");
            // A repeat inside a chunk is a duplicate, a changed value is refused, and a
            // late sample between two in a chunk's span is taken.
            let r = st
                .append(
                    &k,
                    &[all[100], s(all[101].ts, 7.0), s(100 * 15_000 + 5, 1.5)],
                )
                .unwrap();
            assert_eq!(
                (r.accepted, r.duplicates, r.rejected.len()),
                (1, 1, 1),
                "{r:?}"
            );
            assert!(r.rejected[0].reason.contains("different value"), "{r:?}");
            // Compressing again puts it into that chunk, in order.
            assert_eq!(st.compress_before(&k, cutoff).unwrap(), 1);
            let got = st.range(&k, 100 * 15_000, 101 * 15_000).unwrap().unwrap();
            assert_eq!(
                got.iter().map(|x| x.ts).collect::<Vec<_>>(),
                [1_500_000, 1_500_005, 1_515_000]
            );
            // The first chunk was full: with the late sample it splits in two.
            assert_eq!(chunk_bytes(&st).0, 3);
            assert_eq!(rows(&st), 960 + 100);
        }
        // After a restart: the same samples, and the newest (in a chunk now too) still
        // known, so repeats are caught.
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        assert_eq!(st.range(&k, 0, i64::MAX).unwrap().unwrap().len(), 5761);
        assert_eq!(st.compress_before(&k, i64::MAX).unwrap(), 960);
        assert_eq!(rows(&st), 100);
        let r = st.append(&k, &[*all.last().unwrap(), all[3]]).unwrap();
        assert_eq!((r.accepted, r.duplicates), (0, 2), "{r:?}");
        let st2 = Store::open(dir.path(), Durability::Sync);
        assert!(st2.is_err(), "one process at a time");
        drop(st2);
        assert_eq!(st.latest(&k).unwrap(), all.last().copied());
        // Retention cuts a chunk at the cutoff and drops the chunks before it.
        let cutoff = 10 * 3_600_000 + 7;
        let n = st.delete_before(&k, cutoff).unwrap();
        assert_eq!(n, 2402, "the 2401 samples up to 10:00 and the late one");
        let left = st.range(&k, 0, i64::MAX).unwrap().unwrap();
        assert_eq!(left.first().unwrap().ts, 10 * 3_600_000 + 15_000);
        assert_eq!(left.len(), 5761 - 2402);
        // A sample earlier than every chunk is a row until it is compressed.
        st.append(&k, &[s(-15_000, 3.0)]).unwrap();
        assert_eq!(
            st.range(&k, i64::MIN, 0).unwrap().unwrap(),
            vec![s(-15_000, 3.0)]
        );
        assert_eq!(st.compress_before(&k, i64::MAX).unwrap(), 1);
        assert_eq!(
            st.range(&k, i64::MIN, 0).unwrap().unwrap(),
            vec![s(-15_000, 3.0)]
        );
    }

    #[test]
    fn an_append_answering_already_stored_syncs_first() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let k = key(r#"cpu{host="a"}"#);
        let syncs = || st.inner.syncs.load(Ordering::Relaxed);
        st.append(&k, &[s(1_000, 1.0)]).unwrap();
        let before = syncs();
        // Only a repeat: it may be of a sample another append has not synced yet.
        let r = st.append(&k, &[s(1_000, 1.0)]).unwrap();
        assert_eq!(r.duplicates, 1);
        assert_eq!(
            syncs(),
            before + 1,
            "a repeat is acknowledged only once synced"
        );
        // Only refusals acknowledge nothing: no sync.
        let r = st.append(&k, &[s(1_000, 2.0), s(2_000, f64::NAN)]).unwrap();
        assert_eq!(r.rejected.len(), 2);
        assert_eq!(syncs(), before + 1);
    }

    #[test]
    fn a_resend_into_chunks_is_judged_against_each_series_own_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let (a, b) = (key(r#"cpu{host="a"}"#), key(r#"cpu{host="b"}"#));
        // Two series at the same times with different values, each over two chunks.
        let n = CHUNK_MAX as i64 + 500;
        let of = |k: f64| -> Vec<Sample> { (0..n).map(|i| s(i * 1_000, k + i as f64)).collect() };
        st.append_many(&[(a.clone(), of(0.5)), (b.clone(), of(0.25))])
            .unwrap();
        assert_eq!(st.compress_before(&a, i64::MAX).unwrap(), n as usize);
        assert_eq!(st.compress_before(&b, i64::MAX).unwrap(), n as usize);
        assert_eq!(rows(&st), 0);
        // One batch resending both, interleaved, crossing from one chunk to the next
        // and back; then b's values sent as a's, and late samples between.
        let interleaved: Vec<Sample> = (0..n)
            .rev()
            .step_by(97)
            .chain((0..n).step_by(89))
            .map(|i| s(i * 1_000, 0.5 + i as f64))
            .collect();
        let as_b: Vec<Sample> = (0..n)
            .step_by(101)
            .map(|i| s(i * 1_000, 0.5 + i as f64))
            .collect();
        let late: Vec<Sample> = (0..n).step_by(103).map(|i| s(i * 1_000 + 1, 9.0)).collect();
        let r = st
            .append_many(&[
                (a.clone(), interleaved.clone()),
                (b.clone(), as_b.clone()),
                (a.clone(), late.clone()),
            ])
            .unwrap();
        assert_eq!((r[0].accepted, r[0].duplicates), (0, interleaved.len()));
        assert_eq!((r[1].accepted, r[1].rejected.len()), (0, as_b.len()));
        assert_eq!((r[2].accepted, r[2].duplicates), (late.len(), 0));
        assert_eq!(
            st.range(&a, 0, i64::MAX).unwrap().unwrap().len(),
            n as usize + late.len()
        );

        // Two senders (a Prometheus pair) write the same late samples, into a chunk's
        // span, while a compression runs beside them: one sends the late samples alone,
        // the other after 2,000 older ones of the same span, so it reads the chunk at
        // its first sample and looks the late ones up later, by when they may have been
        // stored by the first sender and moved into that chunk. Each late sample must be
        // taken once, by one of them: the chunk is not read stale.
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        let c = key(r#"cpu{host="c"}"#);
        let steady: Vec<Sample> = (0..8_000).map(|i| s(i * 1_000, i as f64)).collect();
        st.append(&c, &steady).unwrap();
        st.compress_before(&c, i64::MAX).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        // Stops the compressions however the appends end (a failed assertion too).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    st.compress_before(&c, i64::MAX).unwrap();
                    // A mutex is not fair: let the appends waiting on it in.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            });
            let _stop = Stop(&stop);
            for round in 0..100i64 {
                let late: Vec<Sample> = (0..20)
                    .map(|j| s((j * 97 % 2_000) * 1_000 + 1 + round, -1.0))
                    .collect();
                let mut resend = steady[..2_000].to_vec();
                resend.extend_from_slice(&late);
                let (alone, after) = std::thread::scope(|pair| {
                    let first = pair.spawn(|| {
                        std::thread::sleep(std::time::Duration::from_micros(
                            (round as u64 % 10) * 300,
                        ));
                        st.append(&c, &late).unwrap()
                    });
                    let second = st.append(&c, &resend).unwrap();
                    (first.join().unwrap(), second)
                });
                assert_eq!(alone.rejected.len() + after.rejected.len(), 0);
                assert_eq!(
                    alone.accepted + after.accepted,
                    20,
                    "round {round}: {alone:?} {after:?}"
                );
                assert_eq!(after.accepted + after.duplicates, resend.len());
            }
        });
        let back = st.range(&c, 0, i64::MAX).unwrap().unwrap();
        assert_eq!(back.len(), 8_000 + 100 * 20);
        assert!(back.windows(2).all(|w| w[0].ts < w[1].ts));
    }

    #[test]
    fn a_corrupt_chunk_is_an_error_naming_the_keyspace() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let k = key("m");
        st.append(&k, &[s(10, 1.0), s(20, 2.0)]).unwrap();
        st.compress_before(&k, 100).unwrap();
        let id = st.series_id(&k, false).unwrap().unwrap();
        let mut bad = Chunk {
            samples: vec![s(10, 1.0), s(20, 2.0)],
        }
        .encode();
        bad.truncate(bad.len() - 3);
        st.inner.chunks.insert(sample_key(id, 20), bad).unwrap();
        let e = st.range(&k, 0, 100).unwrap_err().to_string();
        assert!(e.contains("corrupt record in keyspace chunks"), "{e}");
    }

    #[test]
    fn repeats_are_caught_whether_the_newest_is_cached_or_read_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("m");
        {
            let st = Store::open(dir.path(), Durability::Sync).unwrap();
            st.append(&k, &[s(10, 1.0), s(20, 2.0)]).unwrap();
            // Cached newest (20): the next sample is taken without a read; a repeat of the
            // newest and of an older one is still caught.
            let r = st
                .append(&k, &[s(30, 3.0), s(20, 9.0), s(10, 1.0)])
                .unwrap();
            assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (1, 1, 1));
            let r = st.append(&k, &[s(30, 4.0), s(25, 2.5)]).unwrap();
            assert_eq!((r.accepted, r.rejected.len()), (1, 1), "{r:?}");
        }
        // After a restart the newest is read from disk once.
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let r = st
            .append(&k, &[s(30, 5.0), s(40, 4.0), s(40, 6.0)])
            .unwrap();
        assert_eq!((r.accepted, r.rejected.len()), (1, 2), "{r:?}");
        let got: Vec<(i64, f64)> = st
            .range(&k, 0, 100)
            .unwrap()
            .unwrap()
            .iter()
            .map(|x| (x.ts, x.value))
            .collect();
        assert_eq!(
            got,
            vec![(10, 1.0), (20, 2.0), (25, 2.5), (30, 3.0), (40, 4.0)]
        );
    }

    #[test]
    fn append_many_reports_per_series() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let a = key("a");
        let b = key("b");
        let r = st
            .append_many(&[
                (a.clone(), vec![s(1, 1.0), s(1, 2.0)]),
                (b.clone(), vec![s(1, 5.0), s(2, f64::INFINITY)]),
                (a.clone(), vec![s(2, 2.0)]),
            ])
            .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].accepted, r[0].rejected.len()), (1, 1));
        assert_eq!((r[1].accepted, r[1].rejected.len()), (1, 1));
        assert_eq!(r[2].accepted, 1);
        assert_eq!(st.range(&a, 0, 10).unwrap().unwrap().len(), 2);
        assert_eq!(st.appended_total(), 3);
    }

    #[test]
    fn series_do_not_bleed_into_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        let a = key(r#"m{i="a"}"#);
        let b = key(r#"m{i="b"}"#);
        st.append(&a, &[s(1, 1.0), s(2, 1.0)]).unwrap();
        st.append(&b, &[s(1, 2.0)]).unwrap();
        assert_eq!(st.range(&a, i64::MIN, i64::MAX).unwrap().unwrap().len(), 2);
        assert_eq!(st.range(&b, i64::MIN, i64::MAX).unwrap().unwrap().len(), 1);
        let sel = |t: &str| st.select_matching(&Selector::parse(t).unwrap());
        assert_eq!(sel("m").len(), 2);
        assert_eq!(sel(r#"m{i="b"}"#), vec![b.clone()]);
        assert_eq!(sel(r#"m{i!="b"}"#), vec![a]);
        assert_eq!(sel(r#"m{i=~"[bc]"}"#), vec![b.clone()]);
        // By name alone, or by `__name__` (every series looked at): the same picks, and
        // none of another metric's.
        st.append(&key(r#"n{i="b"}"#), &[s(1, 3.0)]).unwrap();
        assert_eq!(sel(r#"{__name__="m",i="b"}"#), vec![b.clone()]);
        assert_eq!(sel(r#"{__name__=~"m|x",i=~".+"}"#).len(), 2);
        assert_eq!(sel(r#"{i="b"}"#), vec![b, key(r#"n{i="b"}"#)]);
        assert_eq!(sel("x"), Vec::<SeriesKey>::new());
    }

    #[test]
    fn restart_keeps_every_acknowledged_sample_and_decision() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(r#"disk{dev="sda"}"#);
        let mut expected = Vec::new();
        {
            let st = Store::open(dir.path(), Durability::Sync).unwrap();
            for batch in 0..20 {
                let samples: Vec<_> = (0..50)
                    .map(|i| s(batch * 1000 + i, (batch * 50 + i) as f64 * 0.5))
                    .collect();
                assert_eq!(st.append(&k, &samples).unwrap().accepted, 50);
                expected.extend(samples);
            }
            st.log_decision(&Decision {
                at: 7,
                workload: "w".into(),
                kind: DecisionKind::Hold,
                action: None,
                reason: "steady".into(),
                repeated: None,
            })
            .unwrap();
            st.put_state("x", &vec![1, 2, 3]).unwrap();
            // Money and clocks in state documents come back to the last bit (a month's
            // spending that read back a bit off restarted the pacing from another sum).
            st.put_state("f", &vec![999.925_000_000_000_1_f64, 0.1 + 0.2, 1e-300])
                .unwrap();
            // Dropped without an explicit flush: acknowledged writes must already be durable.
        }
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        assert_eq!(st.series(), vec![k.clone()]);
        assert_eq!(st.range(&k, i64::MIN, i64::MAX).unwrap().unwrap(), expected);
        let d = st.decisions(None, 10).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].reason, "steady");
        assert_eq!(st.get_state::<Vec<i32>>("x").unwrap(), Some(vec![1, 2, 3]));
        let f = st.get_state::<Vec<f64>>("f").unwrap().unwrap();
        assert_eq!(
            f.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            [999.925_000_000_000_1_f64, 0.1 + 0.2, 1e-300].map(f64::to_bits)
        );
        // New series ids and decision numbers continue after the old ones.
        let k2 = key("other");
        st.append(&k2, &[s(1, 1.0)]).unwrap();
        assert_eq!(
            st.range(&k, i64::MIN, i64::MAX).unwrap().unwrap().len(),
            1000
        );
        assert_eq!(st.decision_count(), 1);
    }

    #[test]
    fn the_log_is_read_in_pages_from_a_time_or_after_a_place() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        // Two decisions a pass, passes a minute apart.
        for i in 0..10 {
            st.log_decision(&Decision {
                at: (i / 2) * 60_000,
                workload: "a".into(),
                kind: DecisionKind::Hold,
                action: None,
                reason: format!("r{i}"),
                repeated: None,
            })
            .unwrap();
        }
        let page = |after, since, limit| -> Vec<(u64, String)> {
            st.decisions_from(after, since, limit)
                .unwrap()
                .into_iter()
                .map(|(s, d)| (s, d.reason))
                .collect()
        };
        let r = |v: &[(u64, &str)]| -> Vec<(u64, String)> {
            v.iter().map(|(s, t)| (*s, t.to_string())).collect()
        };
        assert_eq!(page(None, None, 2), r(&[(0, "r0"), (1, "r1")]));
        // From a time: both of that pass, the oldest first.
        assert_eq!(
            page(None, Some(180_000), 3),
            r(&[(6, "r6"), (7, "r7"), (8, "r8")])
        );
        assert_eq!(page(None, Some(170_000), 1), r(&[(6, "r6")]));
        assert_eq!(page(Some(8), None, 5), r(&[(9, "r9")]));
        assert!(
            page(Some(9), Some(0), 5).is_empty(),
            "after wins over since"
        );
        assert!(page(None, Some(300_000), 5).is_empty());
    }

    #[test]
    fn decisions_filter_by_workload_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        for i in 0..6 {
            st.log_decision(&Decision {
                at: i,
                workload: if i % 2 == 0 { "a" } else { "b" }.into(),
                kind: DecisionKind::Hold,
                action: None,
                reason: format!("r{i}"),
                repeated: None,
            })
            .unwrap();
        }
        let a = st.decisions(Some("a"), 2).unwrap();
        assert_eq!(a.iter().map(|d| d.at).collect::<Vec<_>>(), vec![2, 4]);
        assert_eq!(st.decisions(None, 100).unwrap().len(), 6);
        // Between two times, of some kinds.
        st.log_decision(&Decision {
            at: 6,
            workload: "a".into(),
            kind: DecisionKind::Act,
            action: None,
            reason: "r6".into(),
            repeated: None,
        })
        .unwrap();
        let at = |f: DecisionFilter, limit| -> Vec<i64> {
            st.decisions_matching(&f, limit)
                .unwrap()
                .iter()
                .map(|d| d.at)
                .collect()
        };
        let window = DecisionFilter {
            since: Some(1),
            until: Some(4),
            ..DecisionFilter::default()
        };
        assert_eq!(at(window.clone(), 100), vec![1, 2, 3, 4]);
        assert_eq!(at(window.clone(), 2), vec![3, 4], "the newest within it");
        let of_a = DecisionFilter {
            workload: Some("a"),
            ..window
        };
        assert_eq!(at(of_a, 100), vec![2, 4]);
        let acts = DecisionFilter {
            kinds: vec![DecisionKind::Act, DecisionKind::Error],
            ..DecisionFilter::default()
        };
        assert_eq!(at(acts, 100), vec![6]);
    }

    /// Not a test on its own: the child process of `kill_9_loses_nothing_acknowledged`.
    #[test]
    #[ignore]
    fn crash_child() {
        use std::io::Write;
        let Ok(dir) = std::env::var("PRESCALE_CRASH_DIR") else {
            return;
        };
        let st = Store::open(Path::new(&dir), Durability::Sync).unwrap();
        let k = key("crash_test");
        // Samples move into chunks all the while, so the kill may land mid-move.
        {
            let (st, k) = (st.clone(), k.clone());
            std::thread::spawn(move || loop {
                if st.compress_before(&k, i64::MAX).unwrap() > 0 {
                    println!("COMPRESSED");
                }
            });
        }
        let mut out = std::io::stdout();
        for batch in 0i64.. {
            let samples: Vec<_> = (0..10).map(|i| s(batch * 10 + i, i as f64)).collect();
            st.append(&k, &samples).unwrap();
            writeln!(out, "ACK {batch}").unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn kill_9_loses_nothing_acknowledged() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::crash_child", "--ignored", "--nocapture"])
            .env("PRESCALE_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let (mut last_ack, mut compressed) = (-1i64, false);
        for line in reader.lines() {
            let line = line.unwrap();
            compressed |= line == "COMPRESSED";
            if let Some(n) = line.strip_prefix("ACK ") {
                last_ack = n.trim().parse().unwrap();
            }
            // Killed once some samples are in chunks (a loaded machine may starve the
            // compressing thread for a while), moves going on all the while.
            if last_ack >= 30 && compressed || last_ack >= 100_000 {
                break;
            }
        }
        child.kill().unwrap(); // SIGKILL: no destructors, no final persist.
        child.wait().unwrap();
        assert!(last_ack >= 30, "child stopped early");
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let got = st
            .range(&key("crash_test"), i64::MIN, i64::MAX)
            .unwrap()
            .unwrap();
        let acked = ((last_ack + 1) * 10) as usize;
        assert!(
            got.len() >= acked,
            "{} samples acknowledged, {} recovered",
            acked,
            got.len()
        );
        for (i, smp) in got.iter().take(acked).enumerate() {
            assert_eq!(smp.ts, i as i64);
        }
        // Some of them were in chunks, and none is there twice.
        assert!(st.inner.chunks.iter().count() > 0, "nothing was compressed");
        assert!(got.windows(2).all(|w| w[1].ts > w[0].ts), "a sample twice");
    }

    #[test]
    fn state_documents_are_listed_by_prefix_and_a_corrupt_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let st = Store::open(dir.path(), Durability::Sync).unwrap();
            st.put_state("metadata/b", &2).unwrap();
            st.put_state("metadata/a", &1).unwrap();
            st.put_state("model/a", &3).unwrap();
            st.inner.state.insert("metadata/c", "{not json").unwrap();
        }
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let got = st.states::<i32>("metadata/").unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["metadata/a", "metadata/b", "metadata/c"]);
        assert_eq!(got[0].1.as_ref().unwrap(), &1);
        assert_eq!(got[1].1.as_ref().unwrap(), &2);
        let err = got[2].1.as_ref().unwrap_err().to_string();
        assert!(err.contains("metadata/c"), "{err}");
        assert!(st.states::<i32>("none/").unwrap().is_empty());
    }

    #[test]
    fn new_samples_are_written_out_once_they_fill_the_memtable() {
        // fjall counts about 73 bytes a row: 300,000 samples are some 21 MiB, past
        // SAMPLES_MEMTABLE_BYTES, and under fjall's default of 64 MiB, which held every
        // row in memory until the journal was replayed or the hourly compression.
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        assert_eq!(st.samples_disk_bytes(), 0);
        let batches: Vec<(SeriesKey, Vec<Sample>)> = (0..100)
            .map(|i| {
                let samples = (0..3_000).map(|t| s(t * 15_000, (i * t) as f64)).collect();
                (key(&format!(r#"m{{i="{i}"}}"#)), samples)
            })
            .collect();
        for chunk in batches.chunks(10) {
            st.append_many(chunk).unwrap();
        }
        // The flush runs in the background.
        let mut waited = 0;
        while st.samples_disk_bytes() == 0 && waited < 600 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            waited += 1;
        }
        assert!(
            st.samples_disk_bytes() > 0,
            "300,000 samples are still all in memory after 30 s"
        );
        let k = key(r#"m{i="7"}"#);
        let got = st.range(&k, 0, i64::MAX).unwrap().unwrap();
        assert_eq!(got.len(), 3_000);
        assert_eq!(got[2_999], s(2_999 * 15_000, 7.0 * 2_999.0));
    }

    #[test]
    fn a_series_retention_empties_is_forgotten_and_may_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        let pod = |n: u32| key(&format!(r#"container_cpu{{pod="web-{n}"}}"#));
        let old: Vec<Sample> = (0..10).map(|t| s(t, t as f64)).collect();
        for n in 1..=3 {
            st.append(&pod(n), &old).unwrap();
        }
        st.append(&pod(2), &[s(1_000, 5.0)]).unwrap();
        // Pod 3's samples are in a chunk, not rows.
        assert_eq!(st.compress_before(&pod(3), i64::MAX).unwrap(), 10);
        for n in 1..=3 {
            assert_eq!(st.delete_before(&pod(n), 100).unwrap(), 10);
        }
        // Pods 1 and 3 are gone; pod 2 keeps its newer sample.
        assert_eq!(st.series(), [pod(2)]);
        let sel = |st: &Store| st.select_matching(&Selector::parse("container_cpu").unwrap());
        assert_eq!(sel(&st), [pod(2)]);
        assert_eq!(st.series_count(), Some(1));
        assert_eq!(st.forgotten_total(), 2);
        assert_eq!(st.range(&pod(1), i64::MIN, i64::MAX).unwrap(), None);
        assert_eq!(st.range(&pod(3), i64::MIN, i64::MAX).unwrap(), None);
        assert_eq!(
            st.range(&pod(2), i64::MIN, i64::MAX).unwrap().unwrap(),
            [s(1_000, 5.0)]
        );
        // So too after a restart; a forgotten series that comes back is a new one.
        drop(st);
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        assert_eq!(st.series(), [pod(2)]);
        assert_eq!(sel(&st), [pod(2)]);
        st.append(&pod(1), &[s(2_000, 7.0)]).unwrap();
        assert_eq!(sel(&st), [pod(1), pod(2)]);
        assert_eq!(
            st.range(&pod(1), i64::MIN, i64::MAX).unwrap().unwrap(),
            [s(2_000, 7.0)]
        );
        assert_eq!(st.series_count(), Some(2));
        // Deleting nothing forgets nothing.
        assert_eq!(st.delete_before(&pod(1), 0).unwrap(), 0);
        assert_eq!(st.series_count(), Some(2));
    }

    #[test]
    fn no_append_is_lost_to_a_series_being_forgotten() {
        // One thread appends a series sample by sample while another keeps deleting all
        // of it, so it is forgotten again and again between appends. Each sample must
        // land where the series' key finds it: under an id let go, it would be an
        // orphan row that no read or deletion reaches.
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        let k = key(r#"container_cpu{pod="web-1"}"#);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                for t in 0..20_000 {
                    st.append(&k, &[s(t, 1.0)]).unwrap();
                    if t % 100 == 0 {
                        // Now and then room for the other thread to empty the series.
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                done.store(true, Ordering::SeqCst);
            });
            while !done.load(Ordering::SeqCst) {
                st.delete_before(&k, i64::MAX).unwrap();
            }
        });
        assert!(st.forgotten_total() > 0, "the series was never forgotten");
        st.delete_before(&k, i64::MAX).unwrap();
        assert_eq!(st.inner.samples.iter().count(), 0, "orphan rows left");
        assert_eq!(st.series_count(), Some(0));
    }

    #[test]
    fn past_the_series_limit_a_new_series_is_refused_saying_why_and_the_rest_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        st.set_max_series(2);
        let req = |n: u32| key(&format!(r#"http_requests{{request_id="{n}"}}"#));
        let reports = st
            .append_many(&[
                (req(1), vec![s(10, 1.0)]),
                (req(2), vec![s(10, 1.0)]),
                (req(3), vec![s(10, 1.0), s(20, 2.0)]),
            ])
            .unwrap();
        assert_eq!(
            reports.iter().map(|r| r.accepted).collect::<Vec<_>>(),
            [1, 1, 0]
        );
        assert_eq!(reports[2].rejected.len(), 2);
        assert!(
            reports[2].rejected[0]
                .reason
                .contains("series limit reached: the store holds 2 series (storage.max_series)"),
            "{:?}",
            reports[2].rejected
        );
        assert_eq!(st.series_count(), Some(2));
        assert_eq!(st.range(&req(3), i64::MIN, i64::MAX).unwrap(), None);
        // The series held go on.
        assert_eq!(st.append(&req(1), &[s(20, 2.0)]).unwrap().accepted, 1);
        // Once retention has emptied one, there is room again.
        st.delete_before(&req(2), i64::MAX).unwrap();
        assert_eq!(st.append(&req(3), &[s(30, 3.0)]).unwrap().accepted, 1);
        // No limit: any number.
        st.set_max_series(0);
        assert_eq!(st.append(&req(4), &[s(30, 3.0)]).unwrap().accepted, 1);
        assert_eq!(st.series_count(), Some(3));
    }

    #[test]
    fn the_size_on_disk_is_what_the_files_hold_not_their_length() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Sync).unwrap();
        // The journal is 64 MiB long from the start, and holds next to nothing.
        let empty = st.disk_bytes();
        assert!(empty < 8 << 20, "{empty}");
        let samples: Vec<Sample> = (0..100_000).map(|t| s(t, t as f64)).collect();
        st.append(&key("m"), &samples).unwrap();
        let full = st.disk_bytes();
        // Each row journalled: a key of 16 bytes and a value of 8, and more.
        assert!(full >= empty + 2_400_000, "{empty} then {full}");
    }

    #[test]
    fn series_are_listed_a_page_at_a_time_in_the_order_they_came() {
        let dir = tempfile::tempdir().unwrap();
        let st = Store::open(dir.path(), Durability::Buffered).unwrap();
        let k = |i: u32| key(&format!(r#"m{{i="{i:02}"}}"#));
        for i in 0..25 {
            st.append(&k(i), &[s(1, 1.0)]).unwrap();
        }
        let mut seen = Vec::new();
        let mut after = 0;
        let mut pages = Vec::new();
        loop {
            let (page, next) = st.series_page(after, 10).unwrap();
            pages.push(page.len());
            seen.extend(page);
            match next {
                Some(n) => after = n,
                None => break,
            }
        }
        assert_eq!(pages, [10, 10, 5]);
        assert_eq!(seen, (0..25).map(k).collect::<Vec<_>>());
        // A forgotten series is not listed; a full last page ends with an empty one.
        st.delete_before(&k(3), i64::MAX).unwrap();
        let (first, next) = st.series_page(0, 24).unwrap();
        assert_eq!(first.len(), 24);
        assert!(!first.contains(&k(3)));
        assert_eq!(
            st.series_page(next.unwrap(), 24).unwrap(),
            (Vec::new(), None)
        );
    }
}
