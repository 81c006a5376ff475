//! The alerting rules shipped in `examples/prometheus/` for the Prometheus that scrapes
//! prescale: `promtool` checks them and runs their unit tests, and every prescale metric
//! they use must be one a running prescale exposes on `/metrics` (skipped, saying so,
//! without promtool; `.ci/run` installs it with Prometheus).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{find, get, Demo};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/prometheus");

#[test]
fn the_alert_rules_pass_promtool_and_use_metrics_prescale_exposes() {
    if find("promtool").is_none() {
        eprintln!("skipping: no promtool (apt-get install prometheus; .ci/run does)");
        return;
    }
    for args in [
        ["check", "rules", "prescale-alerts.yml"],
        ["test", "rules", "prescale-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(DIR)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The prescale metrics the rules read.
    let rules = std::fs::read_to_string(format!("{DIR}/prescale-alerts.yml")).unwrap();
    let used: BTreeSet<&str> = rules
        .match_indices("prescale_")
        .map(|(i, _)| {
            let rest = &rules[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(used.len() >= 6, "{used:?}");

    // What a running prescale exposes, plans made: families with series, and labelled
    // families declared with none yet (capacity left unmanaged: none in the demo).
    let demo = Demo::run(1, 1);
    let addr = demo.addr;
    let (_, metrics) = get(addr, "/metrics").unwrap();
    let exposed: BTreeSet<&str> = metrics
        .lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split(' ').next(),
            None if l.starts_with('#') => None,
            None => l.split(['{', ' ']).next(),
        })
        .collect();
    for m in used {
        assert!(exposed.contains(m), "{m} is not on /metrics: {exposed:?}");
    }
}
