//! PromQL as Grafana (or a workload's `demand_query`) sends it, evaluated over a store
//! holding a gauge, two counters (one reset) and a classic histogram: answered or
//! refused with a message, never a panic, an overflow or a hang.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prescale_core::{Sample, SeriesKey};
use prescale_server::promql::{check, series_at};
use prescale_store::{Durability, Store};

const T0: i64 = 1_800_000_000_000;

fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), Durability::Buffered).unwrap();
            let put = |name: &str, labels: &[(&str, &str)], f: &dyn Fn(i64) -> f64| {
                let key = SeriesKey::new(name, labels.iter().copied()).unwrap();
                let samples: Vec<Sample> = (0..240)
                    .map(|i| Sample::new(T0 - 3_600_000 + i * 15_000, f(i)).unwrap())
                    .collect();
                store.append(&key, &samples).unwrap();
            };
            put("up", &[("job", "a"), ("instance", "x:1")], &|i| {
                (i % 2) as f64
            });
            put("cpu", &[("job", "a"), ("instance", "x:1")], &|i| {
                2.0 + (i as f64 / 10.0).sin()
            });
            put("req_total", &[("job", "a"), ("code", "200")], &|i| {
                (i * 7) as f64
            });
            put("req_total", &[("job", "a"), ("code", "500")], &|i| {
                ((i % 100) * 3) as f64
            });
            for (le, share) in [("0.1", 0.5), ("0.5", 0.8), ("1", 0.95), ("+Inf", 1.0)] {
                put("lat_bucket", &[("job", "a"), ("le", le)], &|i| {
                    (i as f64 * 10.0 * share).floor()
                });
            }
            (dir, store)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(query) = std::str::from_utf8(rest) else {
        return;
    };
    if check(query).is_err() {
        return;
    }
    // An instant query, or a range query of up to 64 points at a step of 1 s to 1 h.
    let step = [1_000, 15_000, 60_000, 3_600_000][usize::from(sel & 3)];
    let n = i64::from(sel >> 2) + 1;
    let times: Vec<i64> = (0..n).map(|i| T0 - (n - 1 - i) * step).collect();
    let _ = series_at(store(), query, &times, step);
});
