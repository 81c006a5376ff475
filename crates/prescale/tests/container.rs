//! The container image (`deploy/Containerfile`, built by `deploy/image.sh`) run with
//! podman as `examples/kubernetes/prescale.yaml` runs it (its arguments, mounts,
//! read-only root and no capabilities): an unprivileged user, no start without a write
//! token, the dashboard and API on the published port, writes refused without the
//! token, and what was acknowledged still there after the container is stopped and a
//! new one started on the same volume (skipped, saying so, without podman; `.ci/run`
//! installs it).

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{find, free_addr, get, http, wait_for};

/// podman with the runtime and cgroup manager that also work inside a container (as CI
/// runs): runc and cgroupfs need no systemd and no cgroup v2 delegation.
fn podman() -> Command {
    let mut c = Command::new("podman");
    c.args(["--runtime", "runc", "--cgroup-manager", "cgroupfs"]);
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("podman runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A soft limit of this process from /proc/self/limits ("Max open files", say).
fn limit(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l[name.len()..].split_whitespace().next()?.parse().ok())
        .unwrap_or(1024)
}

/// The container's arguments in the Kubernetes example's Deployment.
fn manifest_args() -> (Vec<String>, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/kubernetes/prescale.yaml"
    );
    let yaml = std::fs::read_to_string(path).unwrap();
    let args = yaml
        .lines()
        .skip_while(|l| l.trim() != "args:")
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(String::from)
        .collect();
    (args, yaml)
}

/// Removes the test's containers, volume and image however it ends.
struct Cleanup {
    names: Vec<String>,
    volume: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = podman().args(["rm", "-f", "-v", n]).output();
        }
        let _ = podman().args(["volume", "rm", "-f", &self.volume]).output();
        let _ = podman().args(["rmi", "-f", &self.image]).output();
    }
}

#[test]
fn the_image_runs_unprivileged_needs_a_token_and_keeps_its_store_on_a_volume() {
    if find("podman").is_none() || find("runc").is_none() {
        eprintln!("skipping: no podman and runc (apt-get install podman runc; .ci/run does)");
        return;
    }
    let id = std::process::id();
    let image = format!("localhost/prescale-test:{id}");
    let (first, second, refused) = (
        format!("prescale-test-{id}-a"),
        format!("prescale-test-{id}-b"),
        format!("prescale-test-{id}-no-token"),
    );
    let volume = format!("prescale-test-{id}");
    let _cleanup = Cleanup {
        names: vec![first.clone(), second.clone(), refused.clone()],
        volume: volume.clone(),
        image: image.clone(),
    };
    // The image, from the binary under test.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/image.sh");
    let built = run(Command::new(script).args([
        "--binary",
        env!("CARGO_BIN_EXE_prescale"),
        "--tag",
        &image,
        "--tool",
        "podman",
    ]));
    assert!(built.status.success(), "{}", text(&built));
    let inspect = run(podman().args([
        "image",
        "inspect",
        &image,
        "--format",
        "{{.Config.User}} {{json .Config.ExposedPorts}} {{json .Config.Cmd}}",
    ]));
    let said = text(&inspect);
    assert!(said.starts_with("65532:65532 "), "not root: {said}");
    assert!(said.contains("9180/tcp"), "{said}");
    assert!(
        said.contains("0.0.0.0:9180") && said.contains("--token-file"),
        "{said}"
    );

    // Limits no higher than this process has: raising them needs a privilege a nested
    // container lacks.
    let nofile = limit("Max open files").min(65_536);
    let nproc = limit("Max processes").min(4_096);
    let limits = [
        "--ulimit".to_string(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".to_string(),
        format!("nproc={nproc}:{nproc}"),
    ];

    // Listening on every address, it refuses to start without the token writes need.
    let out = run(podman()
        .args(["run", "--name", &refused])
        .args(&limits)
        .arg(&image));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cannot read the token file /etc/prescale/token"),
        "{}",
        text(&out)
    );

    // As the Deployment runs it, with its configuration and token mounted, the
    // dashboard and API answer on the published port.
    let (args, yaml) = manifest_args();
    assert_eq!(args[0], "run", "{args:?}");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "c0ntainer-s3cret\n").unwrap();
    // A ConfigMap's file, saying only what differs from the defaults.
    let config = dir.path().join("prescale.toml");
    std::fs::write(&config, "[providers]\nuse = \"recommend\"\n").unwrap();
    let mounts = [
        (token.display().to_string(), "/etc/prescale/token", "token"),
        (
            config.display().to_string(),
            "/etc/prescale/config",
            "prescale.toml",
        ),
    ];
    for (_, at, file) in &mounts {
        assert!(yaml.contains(&format!("mountPath: {at}\n")), "{at}");
        assert!(args.contains(&format!("{at}/{file}")), "{args:?}");
    }
    let addr = free_addr();
    let start = |name: String| {
        let out =
            run(podman()
                .args(["run", "-d", "--name", &name])
                .args(&limits)
                .args(["--read-only", "--cap-drop", "ALL"])
                .args(["--security-opt", "no-new-privileges"])
                .args(["-p", &format!("{addr}:9180")])
                .args(mounts.iter().flat_map(|(from, at, file)| {
                    ["-v".to_string(), format!("{from}:{at}/{file}:ro")]
                }))
                .args(["-v", &format!("{volume}:/var/lib/prescale")])
                .arg(&image)
                .args(&args));
        assert!(out.status.success(), "{}", text(&out));
        let logs = move || text(&run(podman().args(["logs", &name])));
        wait_for(
            || get(addr, "/healthz").is_some_and(|(c, _)| c == 200),
            "the container's API",
            &logs,
        );
        logs
    };
    let logs = start(first.clone());
    let (code, page) = get(addr, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<title>"), "the dashboard: {page}");
    let (_, sources) = get(addr, "/api/v1/sources").unwrap();
    let sources: serde_json::Value = serde_json::from_str(&sources).unwrap();
    assert_eq!(
        sources["data"]["provider"], "recommend",
        "its configuration"
    );
    assert_eq!(sources["data"]["token_required"], true, "{sources}");

    // A write without the token is refused; with it, it is kept.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 60;
    let line = format!("boxes,site=a count=7 {t}000000000");
    let (code, body) = http(addr, "POST", "/write", &[], line.as_bytes()).unwrap();
    assert_eq!(code, 401, "{body}");
    let auth = "Authorization: Bearer c0ntainer-s3cret";
    let (code, body) = http(addr, "POST", "/write", &[auth], line.as_bytes()).unwrap();
    assert_eq!(code, 204, "{body}");
    // Its logs are plain lines (no terminal colours) and never hold the token.
    let said = logs();
    assert!(said.contains("dashboard and API at"), "{said}");
    assert!(
        !said.contains('\x1b'),
        "colour codes in container logs: {said}"
    );
    assert!(!said.contains("c0ntainer-s3cret"), "{said}");

    // Stopped (SIGTERM, as Kubernetes stops a pod) and replaced by a new container on
    // the same volume, it still has the sample.
    let out = run(podman().args(["stop", "-t", "20", &first]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        logs().contains("every acknowledged sample is on disk"),
        "{}",
        logs()
    );
    let out = run(podman().args(["rm", &first]));
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(200));
    let _logs = start(second);
    let (code, body) = get(addr, "/api/v1/query?query=boxes_count").unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &v["data"]["result"][0];
    assert_eq!(r["metric"]["site"], "a", "{body}");
    assert_eq!(r["value"][1], "7", "{body}");
}
