//! A scenario file as `prescale simulate --scenario` reads it: refused with a message
//! naming the key, or replayed over a day of the synthetic service by every policy
//! without a panic, with costs and shares that make sense.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use prescale_orchestrate::simulate::{simulate, synthetic, Policy, Scenario, Synthetic, Trace};

fn trace() -> &'static Trace {
    static TRACE: OnceLock<Trace> = OnceLock::new();
    TRACE.get_or_init(|| synthetic(1, 0.05, Synthetic::FourHourlyJobs))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(scenario) = Scenario::parse(text, "fuzz.toml") else {
        return;
    };
    for policy in Policy::ALL {
        if policy == Policy::AsRun {
            continue;
        }
        let Ok(r) = simulate(trace(), &scenario, policy, 1, None, |_, _| {}) else {
            continue;
        };
        assert!(
            r.cost_total.is_finite() && r.cost_total >= 0.0,
            "{policy:?} cost {}",
            r.cost_total
        );
        assert!(
            (0.0..=1.0).contains(&r.underprovisioned_share),
            "{policy:?} share {}",
            r.underprovisioned_share
        );
        assert!(
            r.underprovisioned_minutes >= 0.0,
            "{policy:?} minutes {}",
            r.underprovisioned_minutes
        );
    }
});
