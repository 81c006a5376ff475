//! Payloads that senders push: Prometheus remote write 1.0 and 2.0 (snappy-compressed protobuf)
//! and InfluxDB line protocol, decoded into series and samples the store takes.
//!
//! A payload that cannot be read at all (not snappy, not a `WriteRequest`, not UTF-8, a
//! bad `precision`) is a [`ReceiveError`] and nothing of it is stored. Otherwise every
//! series and line that can be read is returned, and each one that cannot is named in
//! [`Decoded::problems`], so a sender learns what to fix without losing the rest.
//! Values are passed on as sent: the store refuses non-finite ones, sample by sample,
//! except Prometheus' staleness markers, which are dropped here (they mark the end of a
//! series, not a value).

use std::collections::BTreeMap;
use std::io::Read;

use prescale_core::{Sample, SeriesKey, TimestampMs};
use prost::Message;
use thiserror::Error;

/// The largest payload, once decompressed, that a receiver accepts: as large as the
/// largest body taken uncompressed. At 256 MiB a 23 MB gzip of line protocol (5.8
/// million samples) took the daemon to 1 GB resident; senders batch far less
/// (Prometheus 2,000 samples a request, Telegraf 1,000 metrics, vmagent 8 MB).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// At most this many problems are listed; the rest are counted.
const MAX_PROBLEMS: usize = 20;

/// How far ahead of this server's clock a sample may be stamped, as Prometheus allows a
/// scrape's: one further ahead (a sender whose clock is years off, seconds sent as
/// milliseconds) is not stored. Stored, it would be the newest sample of all for as
/// long, and the anomaly watch, which lets go of series without a sample for a day of
/// sample time, would let go of every other series at once.
pub const MAX_AHEAD_MS: i64 = 10 * 60_000;

/// Takes the samples stamped more than [`MAX_AHEAD_MS`] after `now` out of `samples`:
/// how many, and the earliest of their times; `None` when there were none.
pub(crate) fn take_ahead(
    samples: &mut Vec<Sample>,
    now: TimestampMs,
) -> Option<(usize, TimestampMs)> {
    let limit = now.saturating_add(MAX_AHEAD_MS);
    let before = samples.len();
    let mut first: Option<TimestampMs> = None;
    samples.retain(|s| {
        if s.ts > limit {
            first = Some(first.map_or(s.ts, |f| f.min(s.ts)));
        }
        s.ts <= limit
    });
    first.map(|f| (before - samples.len(), f))
}

/// The bit pattern of Prometheus' staleness marker (a NaN).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// A payload that could not be read at all; nothing of it was stored.
#[derive(Debug, Error, PartialEq)]
pub enum ReceiveError {
    /// The body is not in the format or encoding the endpoint takes.
    #[error("{0}")]
    Malformed(String),
    /// The body is in an encoding this receiver does not take.
    #[error("{0}")]
    Unsupported(String),
}

/// What a payload holds.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    /// Samples per series, to be stored.
    pub series: Vec<(SeriesKey, Vec<Sample>)>,
    /// Samples dropped on purpose: staleness markers, string fields.
    pub skipped: usize,
    /// Parts that could not be read and were not stored, each saying what to fix.
    pub problems: Vec<String>,
    /// Problems beyond those listed.
    pub more_problems: usize,
    /// What the sender said of its metric families (remote write's metadata), by name.
    pub metadata: Vec<(String, crate::scrape::MetricMeta)>,
}

impl Decoded {
    /// Names one thing not stored: listed up to a limit, counted beyond it.
    pub fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        } else {
            self.more_problems += 1;
        }
    }

    /// Leaves out the samples stamped more than [`MAX_AHEAD_MS`] after `now` (the
    /// receiving server's clock), each series' named among the problems; returns how
    /// many.
    pub fn drop_ahead(&mut self, now: TimestampMs) -> usize {
        let mut series = std::mem::take(&mut self.series);
        let mut dropped = 0;
        for (key, samples) in &mut series {
            if let Some((n, first)) = take_ahead(samples, now) {
                dropped += n;
                self.problem(format!(
                    "{key}: {n} samples from {first} ms on are more than {} minutes ahead of this server's clock ({now} ms); check the sender's clock, and that its timestamps are in the unit this endpoint reads",
                    MAX_AHEAD_MS / 60_000
                ));
            }
        }
        series.retain(|(_, samples)| !samples.is_empty());
        self.series = series;
        dropped
    }

    /// Takes the samples to store, leaving out series that ended up with none (only
    /// staleness markers, say).
    fn collect(&mut self, by_key: BTreeMap<SeriesKey, Vec<Sample>>) {
        self.series = by_key.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    }

    /// The number of samples to be stored.
    pub fn samples(&self) -> usize {
        self.series.iter().map(|(_, s)| s.len()).sum()
    }
}

/// Undoes a `Content-Encoding` of `gzip` (or passes `identity` and no encoding through),
/// refusing a payload that would inflate beyond [`MAX_DECOMPRESSED_BYTES`].
pub fn decode_content(encoding: Option<&str>, body: &[u8]) -> Result<Vec<u8>, ReceiveError> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(MAX_DECOMPRESSED_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ReceiveError::Malformed(format!(
                        "the body is not valid gzip ({e}); send it uncompressed or gzip it whole"
                    ))
                })?;
            if out.len() > MAX_DECOMPRESSED_BYTES {
                return Err(too_large());
            }
            Ok(out)
        }
        Some(other) => Err(ReceiveError::Unsupported(format!(
            "Content-Encoding {other:?} is not supported here; send gzip or no encoding"
        ))),
    }
}

fn too_large() -> ReceiveError {
    ReceiveError::Malformed(format!(
        "the payload decompresses to more than {} MiB; send smaller batches",
        MAX_DECOMPRESSED_BYTES >> 20
    ))
}

// The remote_write 1.0 messages (prometheus/prompb types.proto and remote.proto), only
// the fields a receiver reads; the rest (exemplars) is skipped when decoding.

#[derive(Clone, PartialEq, Message)]
struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    metadata: Vec<MetricMetadata>,
}

/// A metric family's type, help and unit (Prometheus sends them every minute).
#[derive(Clone, PartialEq, Message)]
struct MetricMetadata {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(string, tag = "2")]
    metric_family_name: String,
    #[prost(string, tag = "4")]
    help: String,
    #[prost(string, tag = "5")]
    unit: String,
}

/// The name of a metric type as remote write 1.0 and 2.0 number them (0: unknown in
/// 1.0, unspecified in 2.0).
fn metric_type(kind: i32) -> &'static str {
    match kind {
        1 => "counter",
        2 => "gauge",
        3 => "histogram",
        4 => "gaugehistogram",
        5 => "summary",
        6 => "info",
        7 => "stateset",
        _ => "unknown",
    }
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<PbSample>,
    /// Native histograms, kept as bytes only to be counted: they are not stored.
    #[prost(bytes = "vec", repeated, tag = "4")]
    histograms: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
struct Label {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct PbSample {
    #[prost(double, tag = "1")]
    value: f64,
    #[prost(int64, tag = "2")]
    timestamp: i64,
}

/// The protobuf inside a snappy block, refusing one that would inflate past
/// [`MAX_DECOMPRESSED_BYTES`].
fn unsnappy(body: &[u8]) -> Result<Vec<u8>, ReceiveError> {
    let not_snappy = |e: snap::Error| {
        ReceiveError::Malformed(format!(
            "the body is not snappy-compressed (block format) as remote_write sends it: {e}"
        ))
    };
    let len = snap::raw::decompress_len(body).map_err(not_snappy)?;
    if len > MAX_DECOMPRESSED_BYTES {
        return Err(too_large());
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(not_snappy)
}

/// Adds one series of a remote_write request (its labels, `__name__` among them, its
/// float samples and how many native histogram samples came with it) to `by_key`, or
/// says in `out` why it cannot be stored. The series is described only when something
/// is wrong with it: the common path formats nothing.
fn add_series(
    out: &mut Decoded,
    by_key: &mut BTreeMap<SeriesKey, Vec<Sample>>,
    all_labels: Vec<(String, String)>,
    samples: Vec<PbSample>,
    histograms: usize,
) {
    let lost = samples.len() + histograms;
    if histograms > 0 {
        out.problem(format!(
            "{}: {histograms} native histogram samples not stored (not supported: send classic histograms)",
            labels_text(all_labels.iter().map(|(k, v)| (k, v)))
        ));
    }
    let mut name = None;
    let mut labels = Vec::with_capacity(all_labels.len());
    for (k, v) in all_labels {
        if k == "__name__" {
            name = Some(v);
        } else {
            labels.push((k, v));
        }
    }
    let Some(name) = name else {
        out.problem(format!(
            "{}: no __name__ label, so {lost} samples were not stored",
            labels_text(labels.iter().map(|(k, v)| (k, v)))
        ));
        return;
    };
    let key = match SeriesKey::new(name, labels) {
        Ok(k) => k,
        Err(e) => {
            out.problem(format!("a series: {e}; {lost} samples not stored"));
            return;
        }
    };
    let entry = by_key.entry(key).or_default();
    for s in samples {
        if s.value.to_bits() == STALE_NAN_BITS {
            out.skipped += 1;
        } else {
            entry.push(Sample {
                ts: s.timestamp,
                value: s.value,
            });
        }
    }
}

/// Decodes a remote_write 1.0 body: a snappy block (`Content-Encoding: snappy`) holding a
/// `prometheus.WriteRequest`.
pub fn decode_remote_write(body: &[u8]) -> Result<Decoded, ReceiveError> {
    let raw = unsnappy(body)?;
    let req = WriteRequest::decode(raw.as_slice()).map_err(|e| {
        ReceiveError::Malformed(format!(
            "the body is not a remote_write 1.0 prometheus.WriteRequest: {e}"
        ))
    })?;
    let metadata = req
        .metadata
        .into_iter()
        .filter(|m| !m.metric_family_name.is_empty())
        .map(|m| {
            let meta = crate::scrape::MetricMeta {
                kind: metric_type(m.kind).to_string(),
                help: m.help,
                unit: m.unit,
            };
            (m.metric_family_name, meta)
        })
        .collect();
    let mut out = Decoded {
        metadata,
        ..Decoded::default()
    };
    let mut by_key: BTreeMap<SeriesKey, Vec<Sample>> = BTreeMap::new();
    for ts in req.timeseries {
        let labels = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        add_series(
            &mut out,
            &mut by_key,
            labels,
            ts.samples,
            ts.histograms.len(),
        );
    }
    out.collect(by_key);
    Ok(out)
}

// The remote write 2.0 messages (io.prometheus.write.v2, prompb/io/prometheus/write/v2
// types.proto), only the fields a receiver reads: labels are pairs of indices into the
// request's table of strings.

#[derive(Clone, PartialEq, Message)]
struct RequestV2 {
    #[prost(string, repeated, tag = "4")]
    symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    timeseries: Vec<TimeSeriesV2>,
}

#[derive(Clone, PartialEq, Message)]
struct TimeSeriesV2 {
    #[prost(uint32, repeated, tag = "1")]
    labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    samples: Vec<PbSample>,
    /// Native histograms, kept as bytes only to be counted: they are not stored.
    #[prost(bytes = "vec", repeated, tag = "3")]
    histograms: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    metadata: Option<MetadataV2>,
}

/// A series' type, help and unit, the strings as indices into the request's symbols.
#[derive(Clone, PartialEq, Message)]
struct MetadataV2 {
    #[prost(int32, tag = "1")]
    kind: i32,
    #[prost(uint32, tag = "3")]
    help_ref: u32,
    #[prost(uint32, tag = "4")]
    unit_ref: u32,
}

/// Decodes a remote write 2.0 body: a snappy block holding an
/// `io.prometheus.write.v2.Request`. A series whose label references are odd in number
/// or point past the table of strings is refused on its own, saying so.
pub fn decode_remote_write_v2(body: &[u8]) -> Result<Decoded, ReceiveError> {
    let raw = unsnappy(body)?;
    let req = RequestV2::decode(raw.as_slice()).map_err(|e| {
        ReceiveError::Malformed(format!(
            "the body is not a remote write 2.0 io.prometheus.write.v2.Request: {e}"
        ))
    })?;
    let mut out = Decoded::default();
    let mut by_key: BTreeMap<SeriesKey, Vec<Sample>> = BTreeMap::new();
    let sym = &req.symbols;
    for (i, ts) in req.timeseries.into_iter().enumerate() {
        let lost = ts.samples.len() + ts.histograms.len();
        let labels: Option<Vec<(String, String)>> = (ts.labels_refs.len() % 2 == 0)
            .then(|| {
                ts.labels_refs
                    .chunks(2)
                    .map(|p| {
                        Some((
                            sym.get(p[0] as usize)?.clone(),
                            sym.get(p[1] as usize)?.clone(),
                        ))
                    })
                    .collect()
            })
            .flatten();
        let Some(labels) = labels else {
            out.problem(format!(
                "series {i} of the request: its labels_refs are not pairs of indices into the {} symbols, so {lost} samples were not stored",
                sym.len()
            ));
            continue;
        };
        // Its metadata, when it says anything, under its metric name.
        let name = labels
            .iter()
            .find(|(k, _)| k == "__name__")
            .map(|l| l.1.clone());
        if let (Some(m), Some(name)) = (ts.metadata, name) {
            let text = |i: u32| sym.get(i as usize).cloned().unwrap_or_default();
            let meta = crate::scrape::MetricMeta {
                kind: metric_type(m.kind).to_string(),
                help: text(m.help_ref),
                unit: text(m.unit_ref),
            };
            if m.kind != 0 || !meta.help.is_empty() || !meta.unit.is_empty() {
                out.metadata.push((name, meta));
            }
        }
        add_series(
            &mut out,
            &mut by_key,
            labels,
            ts.samples,
            ts.histograms.len(),
        );
    }
    out.collect(by_key);
    Ok(out)
}

/// Encodes series as a remote write 2.0 body (snappy-compressed
/// `io.prometheus.write.v2.Request`, strings interned, the first one empty), as
/// Prometheus 3 sends it when asked to.
pub fn encode_remote_write_v2(series: &[(SeriesKey, Vec<Sample>)]) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut index: std::collections::HashMap<String, u32> = Default::default();
    let mut intern = |s: &str| -> u32 {
        *index.entry(s.to_string()).or_insert_with(|| {
            symbols.push(s.to_string());
            symbols.len() as u32 - 1
        })
    };
    let timeseries = series
        .iter()
        .map(|(key, samples)| {
            let mut pairs: Vec<(&str, &str)> = vec![("__name__", key.name.as_str())];
            pairs.extend(key.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            pairs.sort();
            TimeSeriesV2 {
                labels_refs: pairs
                    .iter()
                    .flat_map(|(k, v)| [intern(k), intern(v)])
                    .collect(),
                samples: samples
                    .iter()
                    .map(|s| PbSample {
                        value: s.value,
                        timestamp: s.ts,
                    })
                    .collect(),
                histograms: Vec::new(),
                metadata: None,
            }
        })
        .collect();
    let req = RequestV2 {
        symbols,
        timeseries,
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any buffer")
}

/// Encodes series as a remote_write 1.0 body (snappy-compressed `WriteRequest`), as
/// Prometheus sends it: what a sender, a test or a benchmark pushes to a receiver.
pub fn encode_remote_write(series: &[(SeriesKey, Vec<Sample>)]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|(k, samples)| TimeSeries {
                labels: std::iter::once(("__name__", k.name.as_str()))
                    .chain(k.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                    .map(|(name, value)| Label {
                        name: name.into(),
                        value: value.into(),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|s| PbSample {
                        value: s.value,
                        timestamp: s.ts,
                    })
                    .collect(),
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy compresses any input")
}

fn labels_text<'a>(labels: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    let inner: Vec<String> = labels.map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("series {{{}}}", inner.join(","))
}

/// The unit of line-protocol timestamps (the `precision` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (the default).
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds.
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (InfluxDB 1 only).
    Minutes,
    /// Hours (InfluxDB 1 only).
    Hours,
}

impl Precision {
    /// Parses InfluxDB 2's `ns`, `us`, `ms`, `s` and InfluxDB 1's `n`, `u`, `ms`, `s`,
    /// `m`, `h`; no value means nanoseconds.
    pub fn parse(p: Option<&str>) -> Result<Self, ReceiveError> {
        Ok(match p.unwrap_or("ns") {
            "ns" | "n" | "" => Self::Nanoseconds,
            "us" | "u" | "µs" => Self::Microseconds,
            "ms" => Self::Milliseconds,
            "s" => Self::Seconds,
            "m" => Self::Minutes,
            "h" => Self::Hours,
            other => {
                return Err(ReceiveError::Malformed(format!(
                    "precision {other:?} is not one of ns, us, ms, s (or InfluxDB 1's n, u, m, h)"
                )))
            }
        })
    }

    /// A timestamp in this unit, in milliseconds; `None` if it does not fit.
    fn to_ms(self, t: i64) -> Option<TimestampMs> {
        match self {
            Self::Nanoseconds => Some(t.div_euclid(1_000_000)),
            Self::Microseconds => Some(t.div_euclid(1_000)),
            Self::Milliseconds => Some(t),
            Self::Seconds => t.checked_mul(1_000),
            Self::Minutes => t.checked_mul(60_000),
            Self::Hours => t.checked_mul(3_600_000),
        }
    }
}

/// A Prometheus metric or label name made from an InfluxDB identifier: characters
/// outside `[A-Za-z0-9_]` (and `:` in metric names) become `_`, and a leading digit gets
/// a `_` before it.
fn prometheus_name(s: &str, allow_colon: bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Decodes InfluxDB line protocol. Field `f` of measurement `m` becomes the series `m_f`
/// with the line's tags as labels (names made Prometheus-safe, as Telegraf's Prometheus
/// output does), except that the measurement `prometheus` adds nothing to its fields'
/// names, as in Telegraf's Prometheus output too: that is how Telegraf's Prometheus input
/// (`metric_version = 2`) sends what it scraped, one field per metric under its own name.
/// Integers and floats are stored as they are, booleans as 1 and 0, and string fields
/// are skipped. A line without a timestamp takes `now_ms`.
pub fn decode_line_protocol(
    body: &[u8],
    precision: Precision,
    now_ms: TimestampMs,
) -> Result<Decoded, ReceiveError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ReceiveError::Malformed(format!(
            "the body is not UTF-8 text ({e}); line protocol is UTF-8"
        ))
    })?;
    let mut out = Decoded::default();
    let mut by_key: BTreeMap<SeriesKey, Vec<Sample>> = BTreeMap::new();
    for (i, line) in influxdb_line_protocol::split_lines(text).enumerate() {
        let n = i + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let parsed = match influxdb_line_protocol::parse_lines(trimmed).next() {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                // The parser reports a field it cannot read as no fields at all.
                let hint = if matches!(e, influxdb_line_protocol::Error::FieldSetMissing) {
                    " (each field is name=value, the value a number (1.5, 2i, 3u), a boolean or a \"quoted string\"; NaN and Inf cannot be written)"
                } else {
                    ""
                };
                out.problem(format!("line {n}: {e}{hint}; the line was not stored"));
                continue;
            }
            None => continue,
        };
        let ts = match parsed.timestamp {
            None => now_ms,
            Some(t) => match precision.to_ms(t) {
                Some(ms) => ms,
                None => {
                    out.problem(format!(
                        "line {n}: timestamp {t} is out of range at precision {precision:?}; the line was not stored"
                    ));
                    continue;
                }
            },
        };
        let measurement = parsed.series.measurement.as_str();
        let prefix = if measurement == "prometheus" {
            String::new()
        } else {
            prometheus_name(measurement, true) + "_"
        };
        let mut labels = Vec::new();
        for (k, v) in parsed.series.tag_set.iter().flatten() {
            let mut k = prometheus_name(k.as_str(), false);
            if k.starts_with("__") {
                k.insert_str(0, "tag");
            }
            labels.push((k, v.as_str().to_string()));
        }
        for (field, value) in &parsed.field_set {
            let v = match value {
                influxdb_line_protocol::FieldValue::F64(v) => *v,
                influxdb_line_protocol::FieldValue::I64(v) => *v as f64,
                influxdb_line_protocol::FieldValue::U64(v) => *v as f64,
                influxdb_line_protocol::FieldValue::Boolean(b) => f64::from(u8::from(*b)),
                influxdb_line_protocol::FieldValue::String(_) => {
                    out.skipped += 1;
                    continue;
                }
            };
            let name = format!("{prefix}{}", prometheus_name(field.as_str(), true));
            match SeriesKey::new(name, labels.clone()) {
                Ok(key) => by_key.entry(key).or_default().push(Sample { ts, value: v }),
                Err(e) => out.problem(format!("line {n}: {e}; the field was not stored")),
            }
        }
    }
    out.collect(by_key);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn snappy(req: &WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap()
    }

    fn series(labels: Vec<Label>, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| PbSample { value, timestamp })
                .collect(),
            histograms: vec![],
        }
    }

    #[test]
    fn remote_write_keeps_labels_merges_repeats_and_drops_staleness_markers() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    vec![
                        label("__name__", "http_requests_total"),
                        label("job", "api"),
                        label("code", "200"),
                    ],
                    &[(1_000, 5.0), (2_000, 7.5)],
                ),
                series(
                    vec![
                        label("code", "200"),
                        label("__name__", "http_requests_total"),
                        label("job", "api"),
                    ],
                    &[(3_000, 9.0), (4_000, f64::from_bits(STALE_NAN_BITS))],
                ),
                series(vec![label("__name__", "up")], &[(1_000, f64::NAN)]),
            ],
            metadata: vec![],
        };
        let d = decode_remote_write(&snappy(&req)).unwrap();
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        assert_eq!(d.skipped, 1);
        let key = SeriesKey::parse(r#"http_requests_total{code="200",job="api"}"#).unwrap();
        let got: BTreeMap<_, _> = d.series.iter().cloned().collect();
        let vals: Vec<(i64, f64)> = got[&key].iter().map(|s| (s.ts, s.value)).collect();
        assert_eq!(vals, vec![(1_000, 5.0), (2_000, 7.5), (3_000, 9.0)]);
        // A NaN that is not a staleness marker reaches the store, which refuses it.
        assert!(got[&SeriesKey::metric("up").unwrap()][0].value.is_nan());
        assert_eq!(d.samples(), 4);
    }

    #[test]
    fn remote_write_names_series_it_cannot_store_and_keeps_the_rest() {
        let mut no_name = series(vec![label("job", "x")], &[(1, 1.0), (2, 2.0)]);
        no_name.histograms = vec![vec![]];
        let req = WriteRequest {
            timeseries: vec![
                no_name,
                series(vec![label("__name__", "bad-name")], &[(1, 1.0)]),
                series(vec![label("__name__", "ok")], &[(1, 1.0)]),
            ],
            metadata: vec![],
        };
        let d = decode_remote_write(&snappy(&req)).unwrap();
        assert_eq!(d.series.len(), 1);
        assert_eq!(d.series[0].0, SeriesKey::metric("ok").unwrap());
        assert_eq!(d.problems.len(), 3, "{:?}", d.problems);
        assert!(
            d.problems[0].contains("native histogram"),
            "{}",
            d.problems[0]
        );
        assert!(
            d.problems[1].contains("no __name__ label, so 3 samples"),
            "{}",
            d.problems[1]
        );
        assert!(d.problems[2].contains("bad-name"), "{}", d.problems[2]);
    }

    #[test]
    fn encoded_remote_write_decodes_to_the_same_series() {
        let series = vec![
            (
                SeriesKey::parse(r#"a{x="1"}"#).unwrap(),
                vec![Sample { ts: 5, value: 1.5 }, Sample { ts: 6, value: -2.0 }],
            ),
            (
                SeriesKey::metric("b").unwrap(),
                vec![Sample { ts: 7, value: 0.0 }],
            ),
        ];
        let d = decode_remote_write(&encode_remote_write(&series)).unwrap();
        assert_eq!(d.series, series);
        assert!(d.problems.is_empty());
    }

    #[test]
    fn remote_write_2_resolves_interned_labels_and_refuses_bad_references() {
        let series = vec![
            (
                SeriesKey::parse(r#"a{x="1",y="a"}"#).unwrap(),
                vec![Sample { ts: 5, value: 1.5 }, Sample { ts: 6, value: -2.0 }],
            ),
            (
                SeriesKey::parse(r#"b{x="1"}"#).unwrap(),
                vec![Sample { ts: 7, value: 0.0 }],
            ),
        ];
        let d = decode_remote_write_v2(&encode_remote_write_v2(&series)).unwrap();
        assert_eq!(d.series, series);
        assert!(d.problems.is_empty());

        let symbols: Vec<String> = ["", "__name__", "up", "job", "x"]
            .map(String::from)
            .to_vec();
        let ts = |refs: Vec<u32>, value: f64, histograms: usize| TimeSeriesV2 {
            labels_refs: refs,
            samples: vec![PbSample {
                value,
                timestamp: 9,
            }],
            histograms: vec![vec![0]; histograms],
            metadata: None,
        };
        let req = RequestV2 {
            symbols,
            timeseries: vec![
                ts(vec![1, 2, 3, 4], 1.0, 0),
                // Odd, past the table, a staleness marker, a histogram beside a sample.
                ts(vec![1, 2, 3], 1.0, 0),
                ts(vec![1, 2, 3, 9], 1.0, 0),
                ts(vec![1, 2], f64::from_bits(STALE_NAN_BITS), 0),
                ts(vec![1, 2, 4, 4], 2.0, 1),
            ],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let d = decode_remote_write_v2(&body).unwrap();
        let keys: Vec<String> = d.series.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys, [r#"up{job="x"}"#, r#"up{x="x"}"#]);
        assert_eq!(d.skipped, 1);
        assert_eq!(d.problems.len(), 3, "{:?}", d.problems);
        assert!(
            d.problems[0].contains("series 1 of the request"),
            "{:?}",
            d.problems
        );
        assert!(d.problems[1].contains("series 2 of the request: its labels_refs are not pairs of indices into the 5 symbols"), "{:?}", d.problems);
        assert!(
            d.problems[2].contains("1 native histogram samples not stored"),
            "{:?}",
            d.problems
        );
        let e = decode_remote_write_v2(b"not snappy").unwrap_err();
        assert!(e.to_string().contains("not snappy-compressed"), "{e}");
    }

    #[test]
    fn remote_write_metadata_describes_families_in_both_versions() {
        use crate::scrape::MetricMeta;
        let meta = |kind: &str, help: &str, unit: &str| MetricMeta {
            kind: kind.into(),
            help: help.into(),
            unit: unit.into(),
        };
        let snappy = |b: Vec<u8>| snap::raw::Encoder::new().compress_vec(&b).unwrap();
        // 1.0: a list beside the series, as Prometheus sends it every minute.
        let req = WriteRequest {
            timeseries: vec![],
            metadata: vec![
                MetricMetadata {
                    kind: 1,
                    metric_family_name: "http_requests_total".into(),
                    help: "Requests served.".into(),
                    unit: String::new(),
                },
                MetricMetadata {
                    kind: 3,
                    metric_family_name: "latency_seconds".into(),
                    help: "How long.".into(),
                    unit: "seconds".into(),
                },
                // A nameless entry says nothing of any family.
                MetricMetadata {
                    kind: 2,
                    metric_family_name: String::new(),
                    help: "?".into(),
                    unit: String::new(),
                },
            ],
        };
        let d = decode_remote_write(&snappy(req.encode_to_vec())).unwrap();
        assert_eq!(
            d.metadata,
            vec![
                (
                    "http_requests_total".into(),
                    meta("counter", "Requests served.", "")
                ),
                (
                    "latency_seconds".into(),
                    meta("histogram", "How long.", "seconds")
                ),
            ]
        );
        // 2.0: on each series, its strings in the symbols; a reference past them reads
        // as empty, and a series without metadata adds none.
        let symbols: Vec<String> = ["", "__name__", "up", "Whether it is up.", "queue"]
            .map(String::from)
            .to_vec();
        let ts = |name: u32, metadata| TimeSeriesV2 {
            labels_refs: vec![1, name],
            samples: vec![PbSample {
                value: 1.0,
                timestamp: 9,
            }],
            histograms: vec![],
            metadata,
        };
        let req = RequestV2 {
            symbols,
            timeseries: vec![
                ts(
                    2,
                    Some(MetadataV2 {
                        kind: 2,
                        help_ref: 3,
                        unit_ref: 0,
                    }),
                ),
                ts(
                    4,
                    Some(MetadataV2 {
                        kind: 1,
                        help_ref: 99,
                        unit_ref: 0,
                    }),
                ),
                ts(4, None),
            ],
        };
        let d = decode_remote_write_v2(&snappy(req.encode_to_vec())).unwrap();
        assert_eq!(
            d.metadata,
            vec![
                ("up".into(), meta("gauge", "Whether it is up.", "")),
                ("queue".into(), meta("counter", "", "")),
            ]
        );
        assert_eq!(d.series.len(), 2, "the samples are stored as ever");
    }

    #[test]
    fn a_gzip_body_inflating_past_the_limit_is_refused() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![b'#'; MAX_DECOMPRESSED_BYTES + 1])
            .unwrap();
        let body = gz.finish().unwrap();
        assert!(body.len() < 1 << 20, "{}", body.len());
        let e = decode_content(Some("gzip"), &body).unwrap_err();
        assert!(
            e.to_string()
                .contains("more than 64 MiB; send smaller batches"),
            "{e}"
        );
    }

    #[test]
    fn corrupt_remote_write_payloads_are_refused_whole() {
        let e = decode_remote_write(b"plain text, not snappy").unwrap_err();
        assert!(e.to_string().contains("not snappy-compressed"), "{e}");
        let junk = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff, 0xff])
            .unwrap();
        let e = decode_remote_write(&junk).unwrap_err();
        assert!(e.to_string().contains("not a remote_write 1.0"), "{e}");
        // A snappy header that claims more than the limit is refused before inflating.
        let mut huge = Vec::new();
        let mut n = (MAX_DECOMPRESSED_BYTES + 1) as u64;
        while n >= 0x80 {
            huge.push((n as u8) | 0x80);
            n >>= 7;
        }
        huge.push(n as u8);
        let e = decode_remote_write(&huge).unwrap_err();
        assert!(e.to_string().contains("more than 64 MiB"), "{e}");
    }

    #[test]
    fn line_protocol_maps_fields_to_series_and_reports_bad_lines_by_number() {
        let body = "\
# a comment
cpu,host=a,region=eu-west usage_busy=1.5,cores=4i,up=true,note=\"x\" 1700000000000000000
cpu,host=a,region=eu-west usage_busy=2.5 1700000010000000000

disk io=
net.if,host=a rx_bytes=10u
";
        let d = decode_line_protocol(body.as_bytes(), Precision::Nanoseconds, 0).unwrap();
        let got: BTreeMap<_, _> = d.series.iter().cloned().collect();
        let busy = SeriesKey::parse(r#"cpu_usage_busy{host="a",region="eu-west"}"#).unwrap();
        let vals: Vec<(i64, f64)> = got[&busy].iter().map(|s| (s.ts, s.value)).collect();
        assert_eq!(
            vals,
            vec![(1_700_000_000_000, 1.5), (1_700_000_010_000, 2.5)]
        );
        let cores = SeriesKey::parse(r#"cpu_cores{host="a",region="eu-west"}"#).unwrap();
        assert_eq!(got[&cores][0].value, 4.0);
        let up = SeriesKey::parse(r#"cpu_up{host="a",region="eu-west"}"#).unwrap();
        assert_eq!(got[&up][0].value, 1.0);
        let rx = SeriesKey::parse(r#"net_if_rx_bytes{host="a"}"#).unwrap();
        assert_eq!(got[&rx][0].ts, 0, "no timestamp: the receive time");
        assert_eq!(d.skipped, 1, "the string field");
        assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
        assert!(d.problems[0].starts_with("line 5:"), "{}", d.problems[0]);
        // A value the parser cannot read (an unquoted word, NaN) says what a value is.
        for line in ["cpu,host=a v=abc 1", "cpu v=NaN 1"] {
            let d = decode_line_protocol(line.as_bytes(), Precision::Seconds, 0).unwrap();
            assert!(d.series.is_empty(), "{line}");
            assert!(
                d.problems.len() == 1
                    && d.problems[0].starts_with("line 1: No fields were provided (each field is name=value, the value a number")
                    && d.problems[0].ends_with("; the line was not stored"),
                "{line}: {:?}",
                d.problems
            );
        }
    }

    #[test]
    fn telegraf_prometheus_input_keeps_the_scraped_names() {
        // Telegraf's Prometheus input (metric_version = 2) sends what it scraped as the
        // measurement `prometheus` with one field per metric; its Prometheus output
        // leaves that measurement out of the names, and so does prescale.
        let body = "\
prometheus,instance=web:9100,le=0.5 http_request_duration_seconds_bucket=12 1700000000000000000
prometheus,instance=web:9100 http_request_duration_seconds_sum=3.5,http_request_duration_seconds_count=20 1700000000000000000
prometheuses,host=a v=1 1700000000000000000
";
        let d = decode_line_protocol(body.as_bytes(), Precision::Nanoseconds, 0).unwrap();
        let names: Vec<String> = d.series.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            names,
            vec![
                r#"http_request_duration_seconds_bucket{instance="web:9100",le="0.5"}"#,
                r#"http_request_duration_seconds_count{instance="web:9100"}"#,
                r#"http_request_duration_seconds_sum{instance="web:9100"}"#,
                r#"prometheuses_v{host="a"}"#,
            ]
        );
        assert!(d.problems.is_empty(), "{:?}", d.problems);
    }

    #[test]
    fn line_protocol_precisions_and_their_errors() {
        let at = |p: &str, line: &str| {
            let d = decode_line_protocol(line.as_bytes(), Precision::parse(Some(p)).unwrap(), 0)
                .unwrap();
            d.series[0].1[0].ts
        };
        assert_eq!(at("s", "m v=1 1700000000"), 1_700_000_000_000);
        assert_eq!(at("ms", "m v=1 1700000000000"), 1_700_000_000_000);
        assert_eq!(at("us", "m v=1 1700000000000000"), 1_700_000_000_000);
        assert_eq!(at("h", "m v=1 2"), 7_200_000);
        assert!(Precision::parse(Some("weeks"))
            .unwrap_err()
            .to_string()
            .contains("not one of"));
        let d = decode_line_protocol(b"m v=1 9223372036854775807", Precision::Seconds, 0).unwrap();
        assert!(d.series.is_empty());
        assert!(d.problems[0].contains("out of range"), "{:?}", d.problems);
        let e = decode_line_protocol(&[0x6d, 0x20, 0xff], Precision::Seconds, 0).unwrap_err();
        assert!(e.to_string().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn gzip_bodies_are_inflated_and_bad_ones_refused() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"m v=1 1").unwrap();
        let body = gz.finish().unwrap();
        assert_eq!(decode_content(Some("gzip"), &body).unwrap(), b"m v=1 1");
        assert_eq!(decode_content(None, b"abc").unwrap(), b"abc");
        assert!(decode_content(Some("gzip"), b"nope")
            .unwrap_err()
            .to_string()
            .contains("not valid gzip"));
        assert!(matches!(
            decode_content(Some("br"), b"x"),
            Err(ReceiveError::Unsupported(_))
        ));
    }

    #[test]
    fn influx_identifiers_become_prometheus_names() {
        assert_eq!(prometheus_name("net.if-rx", true), "net_if_rx");
        assert_eq!(prometheus_name("9lives", false), "_9lives");
        assert_eq!(prometheus_name("a:b", true), "a:b");
        assert_eq!(prometheus_name("a:b", false), "a_b");
    }
}
