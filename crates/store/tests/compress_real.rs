//! How small real series get once compressed into chunks, and that they read back bit
//! for bit: every series in `../shared/data/series` (skipped, saying so, where the
//! folder is absent), at most 20,000 points each. `cargo test -p prescale-store --test
//! compress_real -- --nocapture` prints the bytes a sample per metric kind.

use std::collections::BTreeMap;
use std::path::Path;

use prescale_core::{Sample, SeriesKey};
use prescale_store::{Durability, Store};

#[test]
fn real_series_compress_and_read_back_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/series");
    let Ok(index) = std::fs::read_to_string(dir.join("INDEX.csv")) else {
        eprintln!("skipping: no ../shared/data/series (the shared data folder is absent)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let st = Store::open(tmp.path(), Durability::Buffered).unwrap();
    // Per metric kind: samples, and the bytes their chunks take.
    let mut kinds: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let (name, kind) = (cols[0], cols[2]);
        let text = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap();
        let samples: Vec<Sample> = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (t, v) = l.split_once(',')?;
                Some(Sample {
                    ts: t.parse::<i64>().ok()? * 1000,
                    value: v.parse().ok()?,
                })
            })
            .filter(|s| s.value.is_finite())
            .take(20_000)
            .collect();
        let key = SeriesKey::metric("real")
            .unwrap()
            .with_label("name", name.to_string());
        st.append(&key, &samples).unwrap();
        let before = st.chunk_stats().unwrap();
        assert_eq!(st.compress_before(&key, i64::MAX).unwrap(), samples.len());
        let after = st.chunk_stats().unwrap();
        assert_eq!(
            after.samples - before.samples,
            samples.len() as u64,
            "{name}"
        );
        let back = st.range(&key, i64::MIN, i64::MAX).unwrap().unwrap();
        assert_eq!(back.len(), samples.len(), "{name}");
        assert!(
            back.iter()
                .zip(&samples)
                .all(|(a, b)| a.ts == b.ts && a.value.to_bits() == b.value.to_bits()),
            "{name} reads back changed"
        );
        let e = kinds.entry(kind.to_string()).or_default();
        e.0 += samples.len();
        e.1 += after.bytes - before.bytes;
    }
    let (n, b) = kinds
        .values()
        .fold((0, 0), |(n, b), (sn, sb)| (n + sn, b + sb));
    for (kind, (n, b)) in &kinds {
        eprintln!(
            "{kind}: {n} samples, {:.2} bytes a sample",
            *b as f64 / *n as f64
        );
    }
    eprintln!(
        "all: {n} samples, {:.2} bytes a sample",
        b as f64 / n as f64
    );
    // Measured 2.15 (rows take 8.5-12 in compacted tables): timestamps and values
    // together, in chunks of at most CHUNK_MAX.
    assert!((b as f64) < 3.0 * n as f64, "{b} bytes for {n} samples");
}
