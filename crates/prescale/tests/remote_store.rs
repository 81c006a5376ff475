//! End-to-end test of the remote sample store: `prescale run` keeping its samples in a
//! real VictoriaMetrics (skipped, saying so, where the binary is absent; `.ci/run`
//! installs it from Debian), writing with remote_write and reading back for its plans.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, buf.split_once("\r\n\r\n")?.1.to_string()))
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn samples_live_in_victoria_metrics_and_plans_read_them_back() {
    let vm_bin = "victoria-metrics";
    if Command::new(vm_bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!(
            "skipping: no victoria-metrics binary (apt-get install victoria-metrics; .ci/run does)"
        );
        return;
    }
    if !Path::new("/proc/stat").exists() {
        eprintln!("skipping: no /proc on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vm = free_addr();
    let ps = free_addr();
    let vlog = dir.path().join("vm.log");
    let _vm = Killed(
        Command::new(vm_bin)
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
    let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["config", "default"])
        .output()
        .unwrap();
    let cfg = String::from_utf8(out.stdout)
        .unwrap()
        .replace("\ninterval_s = 10", "\ninterval_s = 1")
        .replace("\ninterval_s = 15", "\ninterval_s = 1")
        .replace("step_s = 60", "step_s = 1")
        .replace("horizon_s = 3600", "horizon_s = 600")
        .replace(
            "\n[sources.host]",
            &format!(
                "\n[storage.remote]\nwrite_url = \"http://{vm}/api/v1/write\"\nread_url = \"http://{vm}\"\n\n[sources.host]"
            ),
        );
    let config = dir.path().join("p.toml");
    std::fs::write(&config, cfg).unwrap();
    let plog = dir.path().join("prescale.log");
    let _prescale = Killed(
        Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["run", "--config", config.to_str().unwrap()])
            .args(["--data-dir", dir.path().join("data").to_str().unwrap()])
            .args(["--listen", &ps.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&plog).unwrap())
            .spawn()
            .unwrap(),
    );
    let logs = || {
        format!(
            "prescale:\n{}\nvictoria-metrics:\n{}",
            std::fs::read_to_string(&plog).unwrap_or_default(),
            std::fs::read_to_string(&vlog).unwrap_or_default()
        )
    };
    let wait = |what: &str, f: &mut dyn FnMut() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}\n{}",
                logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    // Raw samples in VictoriaMetrics itself.
    let in_vm = |sel: &str| -> usize {
        match http(
            vm,
            "GET",
            &format!("/api/v1/query?query={}", enc(&format!("{sel}[10m]"))),
            b"",
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
    wait("host samples in VictoriaMetrics", &mut || in_vm(busy) >= 3);
    // prescale reads them back through the query API.
    let through = || -> usize {
        match http(
            ps,
            "GET",
            &format!("/api/v1/query_range?series={}", enc(busy)),
            b"",
        ) {
            Some((200, body)) => {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                v["data"]["values"].as_array().map_or(0, Vec::len)
            }
            _ => 0,
        }
    };
    wait("host samples read back through prescale", &mut || {
        through() >= 3
    });
    // The engine plans from them and writes its own series there too.
    wait("a plan for the host workload", &mut || {
        http(ps, "GET", "/api/v1/workloads/host/plan", b"").is_some_and(|r| r.0 == 200)
    });
    wait("prescale_demand in VictoriaMetrics", &mut || {
        in_vm(r#"prescale_demand{workload="host"}"#) >= 1
    });
    // Pushed samples go through to the server.
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let line = format!("app rps=42 {at}\n");
    let (code, body) = http(ps, "POST", "/api/v2/write?precision=s", line.as_bytes()).unwrap();
    assert_eq!(code, 204, "{body}");
    wait("the pushed sample in VictoriaMetrics", &mut || {
        in_vm("app_rps") == 1
    });
    // An unknown series is still reported as unknown.
    let (code, _) = http(ps, "GET", "/api/v1/query_range?series=no_such_metric", b"").unwrap();
    assert_eq!(code, 404);
}
