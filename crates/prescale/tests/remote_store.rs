//! End-to-end test of the remote sample store: `prescale run` keeping its samples in a
//! real VictoriaMetrics (skipped, saying so, where the binary is absent; `.ci/run`
//! installs it from Debian), writing with remote_write and reading back for its plans.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{
    default_config, enc, fast_config, find, free_addr, get, http, samples, wait_for, write_lines,
    Daemon, Killed,
};

/// A `[storage.remote]` section for a server at `addr`, to go before `[sources.host]`.
fn remote_store_at(addr: std::net::SocketAddr) -> String {
    format!("\n[storage.remote]\nwrite_url = \"http://{addr}/api/v1/write\"\nread_url = \"http://{addr}\"\n\n[sources.host]")
}

#[test]
fn samples_live_in_victoria_metrics_and_plans_read_them_back() {
    let Some(vm_bin) = find("victoria-metrics") else {
        eprintln!(
            "skipping: no victoria-metrics binary (apt-get install victoria-metrics; .ci/run does)"
        );
        return;
    };
    if !Path::new("/proc/stat").exists() {
        eprintln!("skipping: no /proc on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vm = free_addr();
    let ps = free_addr();
    let vlog = dir.path().join("vm.log");
    let _vm = Killed(
        Command::new(&vm_bin)
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("vm").display()
            ))
            .arg(format!("-httpListenAddr={vm}"))
            .arg("-search.latencyOffset=0s")
            .stdout(std::fs::File::create(&vlog).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Two more workloads whose demand finds nothing: a misspelt name, and the right
    // name with a label no series has.
    let mut cfg = fast_config().replace("\n[sources.host]", &remote_store_at(vm));
    for (name, demand) in [
        ("typo", r#"host_cpu_usage_core{mode="busy"}"#),
        ("label", r#"host_cpu_usage_cores{mode="bizzy"}"#),
    ] {
        cfg.push_str(&format!(
            "\n[[workloads]]\nname = \"{name}\"\ndemand = '{demand}'\nstep_s = 1\nhorizon_s = 600\n"
        ));
    }
    let d = Daemon::start_at(dir.path(), &cfg, ps);
    let plog = d.log.clone();
    let logs = || {
        format!(
            "prescale:\n{}\nvictoria-metrics:\n{}",
            std::fs::read_to_string(&plog).unwrap_or_default(),
            std::fs::read_to_string(&vlog).unwrap_or_default()
        )
    };
    // Raw samples in VictoriaMetrics itself.
    let in_vm = |sel: &str| -> usize {
        match get(
            vm,
            &format!("/api/v1/query?query={}", enc(&format!("{sel}[10m]"))),
        ) {
            Some((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                v["data"]["result"].as_array().map_or(0, |r| {
                    r.iter()
                        .map(|s| s["values"].as_array().map_or(0, Vec::len))
                        .sum()
                })
            }
            _ => 0,
        }
    };
    let busy = r#"host_cpu_usage_cores{mode="busy"}"#;
    wait_for(
        || in_vm(busy) >= 3,
        "host samples in VictoriaMetrics",
        &logs,
    );
    // prescale reads them back through the query API.
    let through = || samples(ps, busy).len();
    wait_for(
        || through() >= 3,
        "host samples read back through prescale",
        &logs,
    );
    // The engine plans from them and writes its own series there too.
    wait_for(
        || http(ps, "GET", "/api/v1/workloads/host/plan", &[], b"").is_some_and(|r| r.0 == 200),
        "a plan for the host workload",
        &logs,
    );
    wait_for(
        || in_vm(r#"prescale_demand{workload="host"}"#) >= 1,
        "prescale_demand in VictoriaMetrics",
        &logs,
    );
    // The workloads whose demand finds nothing say so, from targeted queries only.
    let last_error = |w: &str| -> String {
        http(
            ps,
            "GET",
            &format!("/api/v1/workloads/{w}/status"),
            &[],
            b"",
        )
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["data"]["last_error"].as_str().map(str::to_string))
        .unwrap_or_default()
    };
    wait_for(
        || {
            last_error("typo")
                .contains("no series in the remote store is named host_cpu_usage_core;")
        },
        "the misspelt demand named",
        &logs,
    );
    wait_for(
        || {
            last_error("label").contains(r#"series named host_cpu_usage_cores are in the remote store, but none matches host_cpu_usage_cores{mode="bizzy"}; for example host_cpu_usage_cores{"#)
        },
        "the demand whose labels pick nothing named",
        &logs,
    );
    // Pushed samples go through to the server.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let line = format!("app rps=42 {at}\n");
    let (code, body) = write_lines(ps, &line);
    assert_eq!(code, 204, "{body}");
    wait_for(
        || in_vm("app_rps") == 1,
        "the pushed sample in VictoriaMetrics",
        &logs,
    );
    // An unknown series is still reported as unknown.
    let (code, _) = http(
        ps,
        "GET",
        "/api/v1/query_range?series=no_such_metric",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 404);
}

#[test]
fn prometheus_as_the_store_and_what_it_refuses_is_reported_not_retried() {
    let Some(prom) = find("prometheus") else {
        eprintln!("skipping: no prometheus binary (apt-get install prometheus; .ci/run does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pm = free_addr();
    let ps = free_addr();
    std::fs::write(
        dir.path().join("prom.yml"),
        "global:\n  scrape_interval: 15s\n",
    )
    .unwrap();
    let mlog = dir.path().join("prometheus.log");
    let _prom = Killed(
        Command::new(&prom)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prom.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={pm}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&mlog).unwrap())
            .spawn()
            .unwrap(),
    );
    let cfg = default_config()
        .replacen("enabled = true", "enabled = false", 1)
        .replace("\n[sources.host]", &remote_store_at(pm));
    let d = Daemon::start_at(dir.path(), &cfg, ps);
    let plog = d.log.clone();
    let logs = || {
        format!(
            "prescale:\n{}\nprometheus:\n{}",
            std::fs::read_to_string(&plog).unwrap_or_default(),
            std::fs::read_to_string(&mlog).unwrap_or_default()
        )
    };
    wait_for(
        || {
            get(pm, "/-/ready").is_some_and(|r| r.0 == 200)
                && get(ps, "/healthz").is_some_and(|r| r.0 == 200)
        },
        "both servers",
        &logs,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let push = |line: String| write_lines(ps, &line);
    let (code, body) = push(format!("app rps=7 {}\n", now - 5));
    assert_eq!(code, 204, "{body}\n{}", logs());
    wait_for(
        || samples(ps, "app_rps").len() == 1,
        "the sample read back from Prometheus",
        &logs,
    );
    // Three days old: Prometheus answers 400 (out of bounds). The sender is told so, with
    // the reason, as a refusal it must not resend, not as a failure to retry.
    let (code, body) = push(format!("app rps=8 {}\n", now - 3 * 86_400));
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("the remote store refused") && body.contains("out of bounds"),
        "{body}"
    );
}
