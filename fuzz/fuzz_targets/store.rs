//! The embedded store against a model of what it promises: appends (in order, out of
//! order, repeated, non-finite, in bulk past a chunk's size), compression into chunks,
//! retention and reopening, in any order, over three series. After every operation
//! each series reads back exactly the samples accepted and not yet deleted, its newest
//! sample is the model's, and each append's report counts what the model expects: no
//! sample acknowledged is lost, none refused is stored.
#![no_main]
use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use prescale_core::{Sample, SeriesKey};
use prescale_store::{AppendReport, Durability, Store};

/// What the store should hold per series: timestamp -> value bits.
type Model = [BTreeMap<i64, u64>; 3];

fn keys() -> [SeriesKey; 3] {
    ["a", "b", "c"].map(|j| SeriesKey::new("m", [("job", j)]).unwrap())
}

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.next()?, self.next()?]))
    }
}

/// A value from a byte: a few distinct finite values (so repeats are often identical),
/// or NaN / infinity, which the store must refuse.
fn value(b: u8) -> f64 {
    match b {
        250 => f64::NAN,
        251 => f64::INFINITY,
        252 => -0.0,
        _ => f64::from(b % 5) * 1.5,
    }
}

/// Applies `batch` to the model as the store's rules say, and checks that the store's
/// report `r` counts what the model accepted, found repeated and refused.
fn expect(model: &mut BTreeMap<i64, u64>, batch: &[Sample], r: &AppendReport, what: &str) {
    let (mut acc, mut dup, mut rej) = (0, 0, 0);
    for s in batch {
        if !s.value.is_finite() {
            rej += 1;
            continue;
        }
        match model.get(&s.ts) {
            Some(&bits) if bits == s.value.to_bits() => dup += 1,
            Some(_) => rej += 1,
            None => {
                model.insert(s.ts, s.value.to_bits());
                acc += 1;
            }
        }
    }
    assert_eq!(
        (r.accepted, r.duplicates, r.rejected.len()),
        (acc, dup, rej),
        "{what}"
    );
}

fn verify(store: &Store, model: &Model, step: usize) {
    for (key, m) in keys().iter().zip(model) {
        let got = store
            .range(key, i64::MIN, i64::MAX)
            .unwrap()
            .unwrap_or_default();
        let got: Vec<(i64, u64)> = got.iter().map(|s| (s.ts, s.value.to_bits())).collect();
        let want: Vec<(i64, u64)> = m.iter().map(|(&t, &v)| (t, v)).collect();
        if got != want {
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "step {step}: {key} reads {} samples, the model {} (first difference at {first:?}: {:?} / {:?})",
                got.len(),
                want.len(),
                first.and_then(|i| got.get(i)),
                first.and_then(|i| want.get(i)),
            );
        }
        let latest = store
            .latest(key)
            .unwrap()
            .map(|s| (s.ts, s.value.to_bits()));
        assert_eq!(latest, want.last().copied(), "step {step}: latest of {key}");
        // A window read agrees with the model's window.
        if let (Some(&(lo, _)), Some(&(hi, _))) = (want.first(), want.last()) {
            let (a, b) = (lo + (hi - lo) / 3, hi - (hi - lo) / 3);
            let got = store.range(key, a, b).unwrap().unwrap_or_default().len();
            assert_eq!(
                got,
                m.range(a..=b).count(),
                "step {step}: {key} in [{a}, {b}]"
            );
            assert_eq!(
                store.has_samples(key, a, b).unwrap(),
                got > 0,
                "step {step}: has_samples"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), Durability::Buffered).unwrap();
    let keys = keys();
    let mut model: Model = Default::default();
    let mut b = Bytes(data);
    let mut step = 0;
    while let Some(op) = b.next() {
        step += 1;
        let s = usize::from(op >> 4) % 3;
        match op % 16 {
            // A batch of up to 31 samples, anywhere in 0..65,536 ms.
            0..=6 => {
                let Some(n) = b.next() else { break };
                let mut batch = Vec::new();
                for _ in 0..n % 32 {
                    let (Some(t), Some(v)) = (b.u16(), b.next()) else {
                        break;
                    };
                    batch.push(Sample {
                        ts: i64::from(t),
                        value: value(v),
                    });
                }
                let r = store.append(&keys[s], &batch).unwrap();
                expect(&mut model[s], &batch, &r, &format!("step {step}: report"));
            }
            // The same few samples for every series, in one atomic batch.
            7 => {
                let (Some(t), Some(v)) = (b.u16(), b.next()) else {
                    break;
                };
                let batch: Vec<Sample> = (0..4)
                    .map(|i| Sample {
                        ts: i64::from(t) + i * 7,
                        value: value(v.wrapping_add(i as u8)),
                    })
                    .collect();
                let all: Vec<(SeriesKey, Vec<Sample>)> =
                    keys.iter().map(|k| (k.clone(), batch.clone())).collect();
                let reports = store.append_many(&all).unwrap();
                for (i, r) in reports.iter().enumerate() {
                    let what = format!("step {step}: report of series {i}");
                    expect(&mut model[i], &batch, r, &what);
                }
            }
            // A run of 5,000 samples one ms apart: more than one chunk's worth.
            8 => {
                let (Some(t), Some(v)) = (b.u16(), b.next()) else {
                    break;
                };
                let batch: Vec<Sample> = (0..5_000)
                    .map(|i| Sample {
                        ts: i64::from(t) + i,
                        value: value(v % 250),
                    })
                    .collect();
                let r = store.append(&keys[s], &batch).unwrap();
                expect(
                    &mut model[s],
                    &batch,
                    &r,
                    &format!("step {step}: bulk report"),
                );
            }
            9..=11 => {
                let Some(t) = b.u16() else { break };
                store.compress_before(&keys[s], i64::from(t)).unwrap();
            }
            12..=14 => {
                let Some(t) = b.u16() else { break };
                let cut = i64::from(t);
                let n = store.delete_before(&keys[s], cut).unwrap();
                let before = model[s].len();
                model[s].retain(|&ts, _| ts >= cut);
                assert_eq!(n, before - model[s].len(), "step {step}: deleted count");
            }
            // Reopening replays the journal, which is most of a run's time: rarer.
            _ => {
                store.flush().unwrap();
                drop(store);
                store = Store::open(dir.path(), Durability::Buffered).unwrap();
            }
        }
        verify(&store, &model, step);
    }
});
