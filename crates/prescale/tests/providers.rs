//! End-to-end test of a hook provider: `prescale run` managing this host's CPU demand
//! through an exec hook that keeps its own small "cloud" in files and reports it back.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{fast_config, get, Daemon};

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
    let cfg = fast_config()
        .replace("use = \"sim\"", "use = \"exec\"")
        .replace(
            "[providers.sim]",
            &format!(
                "[providers.exec]\ncommand = [{:?}]\ntimeout_s = 10\nreport_state = true\n\n[providers.sim]",
                hook.display().to_string()
            ),
        );
    let d = Daemon::start(dir.path(), &cfg);
    let (addr, log) = (d.addr, d.log.clone());
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

/// A stand-in for kubectl: Deployments are files holding their replicas (and, in
/// NAME.ready, how many are ready; all of them when absent); every call is logged.
/// `scale --current-replicas=N` refuses, as kubectl does, unless the replicas are N
/// (an absent file counting as 0). `get hpa` lists NAMESPACE.hpas.
const FAKE_KUBECTL: &str = r#"#!/bin/sh
d="$(cd "$(dirname "$0")" && pwd)/cluster"
mkdir -p "$d"
echo "$*" >> "$d/../kubectl.log"
[ "$1" = -n ] || exit 3
ns=$2; shift 2
case "$1" in
scale)
  name=${2#deployment/}
  shift 2
  current=-1
  for a in "$@"; do
    case "$a" in
    --current-replicas=*) current=${a#--current-replicas=} ;;
    --replicas=*) replicas=${a#--replicas=} ;;
    *) exit 3 ;;
    esac
  done
  was=0
  [ -f "$d/$ns.$name" ] && was=$(cat "$d/$ns.$name")
  if [ "$current" != -1 ] && [ "$current" != "$was" ]; then
    echo "error: Expected replicas to be $current, was $was" >&2
    exit 1
  fi
  echo "$replicas" > "$d/$ns.$name"
  echo "deployment.apps/$name scaled"
  ;;
get)
  if [ "$2" = hpa ]; then
    # One "Kind/target=hpa" line each, as the hook's jsonpath asks.
    [ -f "$d/$ns.hpas" ] && cat "$d/$ns.hpas"
    exit 0
  fi
  name=${2#deployment/}
  [ -f "$d/$ns.$name" ] || { echo "Error from server (NotFound)" >&2; exit 1; }
  want=$(cat "$d/$ns.$name")
  ready=$want
  [ -f "$d/$ns.$name.ready" ] && ready=$(cat "$d/$ns.$name.ready")
  printf '%s %s' "$want" "$ready"
  ;;
*) exit 3 ;;
esac
"#;

#[test]
fn the_kubernetes_example_hook_scales_deployments_and_reports_their_replicas() {
    use prescale_core::{Action, ActionKind};
    use prescale_orchestrate::hook::{HookProvider, Transport};
    use prescale_orchestrate::Provider;
    let dir = tempfile::tempdir().unwrap();
    let kubectl = dir.path().join("kubectl");
    std::fs::write(&kubectl, FAKE_KUBECTL).unwrap();
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes/prescale-hook.sh");
    let command = vec![
        "/usr/bin/env".to_string(),
        format!("KUBECTL={}", kubectl.display()),
        "PRESCALE_K8S_NAMESPACE=prod".to_string(),
        hook.display().to_string(),
    ];
    let tiers = prescale_core::config::Config::default().tiers;
    let mut p = HookProvider::new(
        Transport::Exec(command),
        Duration::from_secs(10),
        true,
        &tiers,
        vec!["web".into()],
    );
    let act = |key: &str, tier: &str, kind, count| Action {
        key: key.into(),
        workload: "web".into(),
        tier: tier.into(),
        kind,
        count,
        at: 0,
    };
    // Nothing deployed yet: the state is empty, not an error.
    assert!(p.advance(0).is_empty());
    assert!(p.allocation("web", 0).tiers.is_empty());
    p.apply(&act("k1", "spot", ActionKind::Provision, 3), 0)
        .unwrap();
    p.apply(&act("k2", "standard", ActionKind::Provision, 2), 0)
        .unwrap();
    let log = std::fs::read_to_string(dir.path().join("kubectl.log")).unwrap();
    assert!(
        log.contains("-n prod scale deployment/web-spot --current-replicas=0 --replicas=3"),
        "{log}"
    );
    assert!(
        log.contains("-n prod scale deployment/web-standard --current-replicas=0 --replicas=2"),
        "{log}"
    );
    // One spot replica is not ready yet: the state says so.
    std::fs::write(dir.path().join("cluster/prod.web-spot.ready"), "1").unwrap();
    assert!(p.advance(1000).is_empty());
    let a = p.allocation("web", 1000);
    assert_eq!((a.tiers["spot"].ready, a.tiers["spot"].pending), (1, 2));
    assert_eq!(
        (a.tiers["standard"].ready, a.tiers["standard"].pending),
        (2, 0)
    );
    // A scale-down sets the count the tier keeps.
    p.apply(&act("k3", "standard", ActionKind::Deprovision, 1), 2000)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cluster/prod.web-standard"))
            .unwrap()
            .trim(),
        "1"
    );
    // Pods still ready while a scale-down ends are not counted over the desired count,
    // which the next action is checked against.
    std::fs::write(dir.path().join("cluster/prod.web-standard.ready"), "2").unwrap();
    assert!(p.advance(2500).is_empty());
    let a = p.allocation("web", 2500);
    assert_eq!(
        (a.tiers["standard"].ready, a.tiers["standard"].pending),
        (1, 0)
    );
    std::fs::remove_file(dir.path().join("cluster/prod.web-standard.ready")).unwrap();
    // Someone scaled web-spot to 1 behind prescale's back: an event.
    std::fs::write(dir.path().join("cluster/prod.web-spot"), "1").unwrap();
    let ev = p.advance(3000);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].tier, "spot");
    // Scaled by hand again after that read: an action counted from the read 1 is
    // refused, kubectl saying why, and the 4 replicas are left as they are.
    std::fs::write(dir.path().join("cluster/prod.web-spot"), "4").unwrap();
    let e = p
        .apply(&act("k4", "spot", ActionKind::Provision, 2), 3000)
        .unwrap_err();
    assert!(
        e.to_string().contains("Expected replicas to be 1, was 4"),
        "{e}"
    );
    let spot = || std::fs::read_to_string(dir.path().join("cluster/prod.web-spot")).unwrap();
    assert_eq!(spot().trim(), "4");
    // Read again, the action is counted from 4.
    p.advance(4000);
    assert_eq!(p.allocation("web", 4000).tiers["spot"].total(), 4);
    p.apply(&act("k5", "spot", ActionKind::Provision, 2), 4000)
        .unwrap();
    assert_eq!(spot().trim(), "6");
    // An HPA scales web-spot too: left to it, saying so; an HPA of a StatefulSet of
    // the same name is not its.
    std::fs::write(
        dir.path().join("cluster/prod.hpas"),
        "StatefulSet/web-spot=db\nDeployment/web-spot=web-hpa\n",
    )
    .unwrap();
    let e = p
        .apply(&act("k6", "spot", ActionKind::Provision, 1), 4000)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("deployment/web-spot is also scaled by HorizontalPodAutoscaler web-hpa"),
        "{e}"
    );
    assert_eq!(spot().trim(), "6");
    std::fs::write(
        dir.path().join("cluster/prod.hpas"),
        "StatefulSet/web-spot=db\n",
    )
    .unwrap();
    p.apply(&act("k7", "spot", ActionKind::Provision, 1), 4000)
        .unwrap();
    assert_eq!(spot().trim(), "7");
}

#[test]
fn recommend_mode_logs_advice_and_plans_on_as_if_it_were_followed() {
    if !Path::new("/proc/stat").exists() {
        eprintln!("skipping: no /proc on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = fast_config().replace("use = \"sim\"", "use = \"recommend\"");
    let d = Daemon::start(dir.path(), &cfg);
    let (addr, log) = (d.addr, d.log.clone());
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let decisions = || {
        get(addr, "/api/v1/workloads/host/decisions?limit=200")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    common::wait_for(
        || {
            let Some((200, body)) = get(addr, "/api/v1/workloads/host/status") else {
                return false;
            };
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let held: u64 = v["data"]["allocation"]["tiers"]
                .as_object()
                .map(|t| {
                    t.values()
                        .map(|c| {
                            c["ready"].as_u64().unwrap_or(0) + c["pending"].as_u64().unwrap_or(0)
                        })
                        .sum()
                })
                .unwrap_or(0);
            held > 0 && decisions().contains("\"kind\":\"act\"")
        },
        "recommended capacity counted as held",
        &|| format!("{}\n{}", decisions(), logs()),
    );
    // Every action is logged as advice, saying nothing was changed.
    let v: serde_json::Value = serde_json::from_str(&decisions()).unwrap();
    let acts: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "act")
        .map(|d| d["reason"].as_str().unwrap())
        .collect();
    assert!(!acts.is_empty());
    for r in &acts {
        assert!(
            r.starts_with("recommend (nothing changed: providers.use = \"recommend\"): provision")
                || r.starts_with(
                    "recommend (nothing changed: providers.use = \"recommend\"): deprovision"
                ),
            "{r}"
        );
    }
    let (_, sources) = get(addr, "/api/v1/sources").unwrap();
    assert!(sources.contains("\"provider\":\"recommend\""), "{sources}");
    // The recommended instances are on /metrics for a KEDA or HPA trigger to follow
    // (pending until the tier's lead time has passed, as if they had been asked for).
    let (_, metrics) = get(addr, "/metrics").unwrap();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("prescale_allocation_instances{workload=\"host\"")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
    // And as a series, which KEDA's Prometheus scaler can ask prescale for directly.
    let q = common::enc(r#"sum(prescale_instances{workload="host"})"#);
    let (code, body) = get(addr, &format!("/api/v1/query?query={q}")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200, "{body}");
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "one value for KEDA: {body}");
    let n: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{body}");
    assert!(
        metrics.contains("prescale_provider_errors_total 0"),
        "{metrics}"
    );
}
