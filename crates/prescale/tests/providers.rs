//! End-to-end test of a hook provider: `prescale run` managing this host's CPU demand
//! through an exec hook that keeps its own small "cloud" in files and reports it back.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{default_config, free_addr, get, start_daemon};

const HOOK: &str = r#"#!/bin/sh
# A tiny cloud in files: one file per workload and tier holding its instance count.
here="$(cd "$(dirname "$0")" && pwd)"
d="$here/cloud"
mkdir -p "$d"
cat > /dev/null
if [ "$PRESCALE_TYPE" = action ]; then
  echo "$PRESCALE_INSTANCES_AFTER" > "$d/$PRESCALE_WORKLOAD.$PRESCALE_TIER"
  echo "$PRESCALE_KEY $PRESCALE_KIND $PRESCALE_TIER $PRESCALE_COUNT $PRESCALE_INSTANCES_AFTER" >> "$here/actions.log"
  exit 0
fi
printf '{"host": {'
sep=""
for f in "$d"/host.*; do
  [ -e "$f" ] || continue
  printf '%s"%s": {"ready": %s}' "$sep" "${f##*/host.}" "$(cat "$f")"
  sep=", "
done
printf '}}'
"#;

#[test]
fn an_exec_hook_carries_out_the_plan_and_reports_what_it_holds() {
    if !Path::new("/proc/stat").exists() {
        eprintln!("skipping: no /proc on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hook = dir.path().join("hook.sh");
    std::fs::write(&hook, HOOK).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = default_config()
        .replace("\ninterval_s = 10", "\ninterval_s = 1")
        .replace("\ninterval_s = 15", "\ninterval_s = 1")
        .replace("step_s = 60", "step_s = 1")
        .replace("horizon_s = 3600", "horizon_s = 600")
        .replace("use = \"sim\"", "use = \"exec\"")
        .replace(
            "[providers.sim]",
            &format!(
                "[providers.exec]\ncommand = [{:?}]\ntimeout_s = 10\nreport_state = true\n\n[providers.sim]",
                hook.display().to_string()
            ),
        );
    let config = dir.path().join("p.toml");
    std::fs::write(&config, cfg).unwrap();
    let addr = free_addr();
    let log = dir.path().join("prescale.log");
    let _d = start_daemon(
        &config,
        &dir.path().join("data"),
        &addr.to_string(),
        Some(&log),
    );
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let actions = || std::fs::read_to_string(dir.path().join("actions.log")).unwrap_or_default();
    let t = Instant::now();
    // The status's allocation is what the hook reported: the tiers and counts in its files.
    let held = || -> Option<serde_json::Value> {
        let (code, body) = get(addr, "/api/v1/workloads/host/status")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200).then(|| v["data"]["allocation"]["tiers"].clone())
    };
    loop {
        let a = actions();
        if let (Some(first), Some(tiers)) = (a.lines().next(), held()) {
            let f: Vec<&str> = first.split(' ').collect();
            assert_eq!(f[1], "provision", "{a}");
            let file = dir.path().join("cloud").join(format!("host.{}", f[2]));
            let count: u32 = std::fs::read_to_string(file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            if tiers[f[2]]["ready"].as_u64() == Some(count as u64) {
                break;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "no action carried out and reported back\nactions:\n{}\nprescale:\n{}",
            actions(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, body) = get(addr, "/api/v1/workloads/host/decisions?limit=50").unwrap();
    assert!(body.contains("\"kind\":\"act\""), "{body}");
    let (_, metrics) = get(addr, "/metrics").unwrap();
    assert!(
        metrics.contains("prescale_provider_errors_total 0"),
        "{metrics}"
    );
}
