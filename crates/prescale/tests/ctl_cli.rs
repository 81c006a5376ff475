//! `prescale events` and `prescale pause` / `resume` against a real daemon: what they
//! send is what the API takes, what they print is what it answered, its refusals exit
//! 2 with its words, an unreachable daemon exits 1 saying where it was looked for, and
//! the token goes from its file to the daemon and nowhere else.

mod common;

use common::{bin, fast_config, free_addr, get, wait_for, Daemon, Killed};

/// Runs `prescale ARGS` against the daemon at `server`, the token file in the
/// environment when given: (exit code, stdout, stderr).
fn ctl(server: &str, token: Option<&std::path::Path>, args: &[&str]) -> (i32, String, String) {
    let mut c = bin();
    c.args(args).env("PRESCALE_SERVER", server);
    match token {
        Some(t) => c.env("PRESCALE_TOKEN_FILE", t),
        None => c.env_remove("PRESCALE_TOKEN_FILE"),
    };
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn events_and_pauses_are_told_to_a_running_daemon_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-token-for-ctl";
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{secret}\n")).unwrap();
    let config = fast_config().replace(
        "# token_file = \"/etc/prescale/token\"",
        &format!("token_file = {:?}", token.to_str().unwrap()),
    );
    assert!(
        config.contains("\ntoken_file = \""),
        "the default's token_file line moved"
    );
    let d = Daemon::start(dir.path(), &config);
    let server = format!("http://{}", d.addr);
    wait_for(
        || get(d.addr, "/api/v1/workloads/host/events").is_some_and(|(c, _)| c == 200),
        "the host workload's first pass",
        &|| d.logs(),
    );
    let t = Some(token.as_path());
    let declare = [
        "events",
        "declare",
        "host",
        "load test",
        "--start",
        "+1h",
        "--for",
        "2h",
        "--scale",
        "2",
        "--min-demand",
        "4",
    ];
    // Without the token the daemon refuses, and says what it needs.
    let (code, out, err) = ctl(&server, None, &declare);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("(give the file holding it with --token-file or PRESCALE_TOKEN_FILE)"),
        "{err}"
    );
    // With it, declared; the answer says what was sent.
    let (code, out, err) = ctl(&server, t, &declare);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("declared \"load test\" for host: ")
            && out.contains(", x2, at least 4 vCPU"),
        "{out}"
    );
    // Listed, as a table and as the API's JSON.
    let (code, out, err) = ctl(&server, None, &["events", "list", "host"]);
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("load test"))
        .expect(&out);
    assert!(out.starts_with("NAME "), "{out}");
    assert!(
        row.contains(" api ") && row.contains(" ahead ") && row.contains("x2"),
        "{out}"
    );
    let (_, json, _) = ctl(
        &server,
        None,
        &["events", "list", "host", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect(&json);
    let e = &v.as_array().unwrap()[0];
    assert_eq!(
        (&e["name"], &e["scale"], &e["min_demand"]),
        (&"load test".into(), &2.0.into(), &4.0.into())
    );
    let hours = |k: &str| prescale_core::parse_ts(e[k].as_str().unwrap()).unwrap();
    assert_eq!(hours("end") - hours("start"), 2 * 3_600_000, "{json}");
    // Declared again: changed, and the answer names the one it replaced.
    let (code, out, _) = ctl(
        &server,
        t,
        &[
            "events",
            "declare",
            "host",
            "load test",
            "--start",
            "+1h",
            "--end",
            "+4h",
            "--min-demand",
            "6",
        ],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("it replaces the one declared under that name before"),
        "{out}"
    );
    assert!(out.contains(", x2, at least 4 vCPU)"), "{out}");
    // The daemon's refusals, in its words: an unknown workload, a configured name's
    // twin, a floor of a dimension the workload does not plan.
    let (code, _, err) = ctl(
        &server,
        t,
        &[
            "events", "declare", "web", "x", "--start", "+1h", "--for", "1h", "--scale", "2",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("answered 404") && err.contains("configured: host"),
        "{err}"
    );
    let (code, _, err) = ctl(
        &server,
        t,
        &[
            "events",
            "declare",
            "host",
            "warm-up",
            "--start",
            "+1h",
            "--for",
            "1h",
            "--min",
            "memory=64",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("answered 400") && err.contains("memory"),
        "{err}"
    );
    // Bad input is refused before anything is sent.
    let (code, _, err) = ctl(
        &server,
        t,
        &[
            "events", "declare", "host", "x", "--start", "soon", "--for", "1h",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("RFC 3339"), "{err}");
    let (code, _, err) = ctl(
        &server,
        t,
        &["events", "declare", "host", "x", "--start", "now"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--end") || err.contains("--for"), "{err}");
    // Each declaration is a decision with its reason, listed for the workload and
    // for all; one made while following is printed as it is logged.
    let (code, out, _) = ctl(&server, None, &["decisions", "host", "--kind", "config"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 2, "{out}");
    assert!(
        lines[0].contains("  host  config  planned event \"load test\" declared, as asked"),
        "{out}"
    );
    assert!(
        lines[1].contains("planned event \"load test\" changed, as asked"),
        "{out}"
    );
    let (_, all, _) = ctl(
        &server,
        None,
        &["decisions", "--since", "-1h", "--limit", "1000"],
    );
    assert!(
        all.contains("  host  config  planned event \"load test\" changed"),
        "{all}"
    );
    let mut follow = Killed(
        bin()
            .args(["decisions", "--follow", "--kind", "config", "--limit", "1"])
            .env("PRESCALE_SERVER", &server)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = std::sync::mpsc::channel();
    let stdout = follow.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.0.send(l).is_err() {
                break;
            }
        }
    });
    let first = lines
        .1
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(
        first.contains("\"load test\" changed"),
        "the last one first: {first}"
    );
    let (code, _, _) = ctl(
        &server,
        t,
        &[
            "events", "declare", "host", "later", "--start", "+2h", "--for", "1h", "--scale", "3",
        ],
    );
    assert_eq!(code, 0);
    let next = lines.1.recv_timeout(std::time::Duration::from_secs(10));
    drop(follow);
    let next = next.expect("the new decision, followed");
    assert!(next.contains("planned event \"later\" declared"), "{next}");
    // Every workload as the daemon's last pass saw it, once it planned.
    wait_for(
        || {
            get(d.addr, "/api/v1/workloads")
                .is_some_and(|(_, b)| b.contains("\"plan_reason\":\"cover"))
        },
        "a plan",
        &|| d.logs(),
    );
    // Tried at the first pass, its tuning could not run yet (a day of demand is needed).
    wait_for(
        || get(d.addr, "/api/v1/workloads/host/tune").is_some_and(|(code, _)| code == 200),
        "host's first tuning",
        &|| d.logs(),
    );
    let (_, body) = get(d.addr, "/api/v1/workloads/host/tune").unwrap();
    let tuned: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tuned = &tuned["data"];
    let (code, out, _) = ctl(&server, None, &["status", "--wide"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("1 workload(s), last pass "), "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .ends_with(", provider sim (the simulated cloud, seed 42)"),
        "{out}"
    );
    // Why it is not tuned, and when the daemon tries again.
    let line = format!(
        "host: tune: {} Tried again from {}.\n",
        tuned["summary"].as_str().unwrap(),
        prescale_core::format_ts(tuned["next_at"].as_i64().unwrap())
    );
    assert!(
        line.starts_with("host: tune: not tuned: ")
            && line.contains("a tuning needs at least 24 h"),
        "{line}"
    );
    assert!(out.contains(&line), "{line}\n{out}");
    let head = out.lines().nth(1).unwrap_or("");
    assert!(
        head.starts_with("WORKLOAD  DEMAND  READY  INSTANCES"),
        "{out}"
    );
    assert!(
        out.lines().nth(2).is_some_and(|l| l.starts_with("host ")),
        "{out}"
    );
    assert!(out.contains("host: plan: cover q0.95"), "{out}");
    // Each tier as a pool: what the host holds of it against its maximum.
    assert!(
        out.lines()
            .any(|l| l.starts_with("tier spot: ") && l.contains(" of its max_instances = 50 held")),
        "{out}"
    );
    assert!(
        out.contains("tier high-performance: 0 of its max_instances = 20 held\n"),
        "{out}"
    );
    // What the fleet holds costs, and what it spent; no fleet budget here.
    assert!(
        out.lines().any(|l| l.starts_with("fleet: $")
            && l.contains("/h held, $")
            && l.ends_with(" spent this month")),
        "{out}"
    );
    // Cancelled, then not there to cancel.
    let (code, out, _) = ctl(&server, t, &["events", "cancel", "host", "load test"]);
    assert_eq!((code, out.trim()), (0, "cancelled \"load test\" for host"));
    ctl(&server, t, &["events", "cancel", "host", "later"]);
    let (code, _, err) = ctl(&server, t, &["events", "cancel", "host", "load test"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("answered 404"), "{err}");
    let (_, out, _) = ctl(&server, None, &["events", "list", "host"]);
    assert!(out.contains("host has no planned events"), "{out}");
    // A pause, in the status, lifted; lifting none says so.
    let (code, out, err) = ctl(
        &server,
        t,
        &[
            "pause",
            "host",
            "--scope",
            "scale-down",
            "--for",
            "30m",
            "--reason",
            "INC-4711 db failover",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("paused host (scale-down until ")
            && out.contains("for \"INC-4711 db failover\")"),
        "{out}"
    );
    let (_, status) = get(d.addr, "/api/v1/workloads").unwrap();
    assert!(status.contains("INC-4711 db failover"), "{status}");
    let (code, _, err) = ctl(
        &server,
        t,
        &["pause", "host", "--scope", "scale-down", "--for", "400d"],
    );
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = ctl(&server, t, &["resume", "host"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("resumed host: lifted its pause (scale-down until "),
        "{out}"
    );
    let (_, out, _) = ctl(&server, t, &["resume", "host"]);
    assert_eq!(out.trim(), "host was not paused");
    // Nobody there: exit 1, saying where it looked.
    let gone = format!("http://{}", free_addr());
    let (code, _, err) = ctl(&gone, None, &["events", "list", "host"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("cannot reach prescale at {gone}")),
        "{err}"
    );
    // The token went to the daemon only: never printed, never logged.
    assert!(!d.logs().contains(secret));
}
