//! `prescale simulate --prometheus URL`: a trace read from a query API replays exactly
//! as the same trace from a CSV file, from a real Prometheus (skipped, saying so,
//! without it; `.ci/run` installs it) and from prescale's own API; bad queries and
//! unreachable servers are errors that say what to fix.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use common::{bin, default_config, get, http, wait_for, write_lines, Daemon, Prometheus};
use serde_json::Value;

/// Three days of 5-minute steps ending an hour ago: the first step's unix seconds.
fn first_step() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now - 3600) / 300 * 300 - (STEPS - 1) * 300
}

const STEPS: i64 = 864;

/// CPU (vCPU) and memory (bytes) of the shop at step `k`: a daily cycle with a jump.
fn shop(k: i64) -> (f64, f64) {
    let day = (k % 288) as f64 / 288.0 * std::f64::consts::TAU;
    let cpu = 40.0 + 30.0 * day.sin().max(-0.5) + if k % 97 == 0 { 25.0 } else { 0.0 };
    (cpu, (cpu * 3.5 + 20.0) * (1u64 << 30) as f64)
}

/// The example scenario, written into `dir`.
fn example_scenario(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("scenario.toml");
    let out = bin()
        .args(["simulate", "--example-scenario"])
        .output()
        .unwrap();
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

fn simulate(args: &[&str], scenario: &Path) -> Output {
    bin()
        .arg("simulate")
        .args(args)
        .arg("--scenario")
        .arg(scenario)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The checks both servers must pass: `url` serves `shop_cpu_vcpu{service=...}` and
/// `shop_memory_bytes` for shop and ads over the three days from `t0`.
fn replays_as_the_csv(url: &str, t0: i64, metric: &str) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = example_scenario(dir.path());
    let saved = dir.path().join("saved.csv");
    let (start, end) = (t0.to_string(), (t0 + (STEPS - 1) * 300).to_string());
    let cpu = format!("sum({metric}_cpu_vcpu{{service=\"shop\"}})");
    let memory = format!("{metric}_memory_bytes{{service=\"shop\"}} / 2^30");
    // What the service had: a quarter over its demand, and 300 GiB of memory.
    let actual = format!("{cpu} * 1.25");
    let actual_memory = format!("{memory} * 0 + 300");
    // Where the demand comes from, the same for every run below; and with what the
    // service had.
    let reading = [
        "--prometheus",
        url,
        "--cpu",
        &cpu,
        "--memory",
        &memory,
        "--start",
        &start,
        "--end",
        &end,
    ];
    let had = ["--actual-cpu", &actual, "--actual-memory", &actual_memory];
    let source = [&reading[..], &had].concat();
    let saving = ["--save-trace", saved.to_str().unwrap()];
    let json = ["--policy", "predictive", "--format", "json"];
    let from_api = simulate(&[&source[..], &saving, &json].concat(), &scenario);
    assert!(from_api.status.success(), "{}", stderr(&from_api));

    // The saved trace holds every step, as written.
    let text = std::fs::read_to_string(&saved).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,cpu,memory,actual_cpu,actual_memory")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len() as i64, STEPS, "{}", stderr(&from_api));
    for (k, row) in rows.iter().enumerate() {
        let (cpu, bytes) = shop(k as i64);
        assert_eq!(row[0] as i64, t0 + 300 * k as i64);
        assert!((row[1] - cpu).abs() < 1e-9 * cpu, "step {k}: {row:?}");
        let gib = bytes / (1u64 << 30) as f64;
        assert!((row[2] - gib).abs() < 1e-9 * gib, "step {k}: {row:?}");
        assert!(
            (row[3] - 1.25 * cpu).abs() < 1e-9 * cpu,
            "step {k}: {row:?}"
        );
        assert_eq!(row[4], 300.0, "step {k}: {row:?}");
    }

    // And the same run from that CSV gives the same report, field for field.
    let from_csv = simulate(
        &[&["--trace", saved.to_str().unwrap()][..], &json].concat(),
        &scenario,
    );
    assert!(from_csv.status.success(), "{}", stderr(&from_csv));
    let a: Value = serde_json::from_slice(&from_api.stdout).unwrap();
    let b: Value = serde_json::from_slice(&from_csv.stdout).unwrap();
    assert_eq!(a, b);
    assert_eq!(a["steps"].as_u64(), Some(STEPS as u64), "{a}");
    assert!(a["cost_total"].as_f64().unwrap() > 0.0, "{a}");
    // What the service had is priced as read, too.
    let ran = |source: &[&str]| -> Value {
        let mut args = source.to_vec();
        args.extend(["--policy", "as-run", "--format", "json"]);
        let o = simulate(&args, &scenario);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let api = ran(&source);
    assert_eq!(api["policy"], "as-run");
    // Instances of the one tier (4 vCPU, 16 GiB, $0.192 an hour) for whichever binds:
    // the CPU at the peaks, the 300 GiB (19 instances) at night.
    let want: f64 = (0..STEPS)
        .map(|k| f64::max((1.25 * shop(k).0 / 4.0 - 1e-9).ceil(), 19.0) * 0.192 / 12.0)
        .sum();
    let cost = api["cost_total"].as_f64().unwrap();
    assert!((cost - want).abs() < 1e-6, "{cost} for {want}");
    assert_eq!(api, ran(&["--trace", saved.to_str().unwrap()]));

    // With prescale's own configuration, a workload's `actual` (and its memory's) is
    // what it had, unless the command line says otherwise.
    let config = dir.path().join("prescale.toml");
    std::fs::write(
        &config,
        format!(
            "[[workloads]]\nname = \"shop\"\ndemand = \"x\"\nactual = '{actual}'\n\
             dimensions = {{ memory = {{ series = \"x\", actual = '{actual_memory}' }} }}\n"
        ),
    )
    .unwrap();
    let by_config = |extra: &[&str]| -> (Value, String) {
        let mut args = reading.to_vec();
        args.extend(["--config", config.to_str().unwrap()]);
        args.extend(["--policy", "as-run", "--format", "json"]);
        args.extend_from_slice(extra);
        let o = bin().arg("simulate").args(&args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        (serde_json::from_slice(&o.stdout).unwrap(), stderr(&o))
    };
    let (implied, said) = by_config(&[]);
    assert!(
        said.contains(&format!("the workload's actual, `{actual}`")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "of memory: the workload's actual, `{actual_memory}`"
        )),
        "{said}"
    );
    let (given, said) = by_config(&["--actual-cpu", &actual, "--actual-memory", &actual_memory]);
    assert!(!said.contains("the workload's"), "{said}");
    assert_eq!(implied, given);
    assert!(implied["cost_total"].as_f64().unwrap() > 0.0, "{implied}");
    // Its CPU alone holds fewer instances at night than the 300 GiB need.
    let (cpu_only, _) = by_config(&["--actual-cpu", &actual]);
    let cost = |v: &Value| v["cost_total"].as_f64().unwrap();
    assert!(cost(&cpu_only) < cost(&implied), "{cpu_only} {implied}");
    // Disk too: 60,000 IOPS provisioned is 20 instances of 3,000, at every step.
    let disk = format!("{cpu} * 200");
    let disk_had = format!("{cpu} * 0 + 60000");
    let mut args = reading.to_vec();
    args.extend(["--disk-iops", &disk, "--actual-cpu", &actual]);
    args.extend(["--actual-disk-iops", &disk_had]);
    let api = ran(&args);
    let want: f64 = (0..STEPS)
        .map(|k| f64::max((1.25 * shop(k).0 / 4.0 - 1e-9).ceil(), 20.0) * 0.192 / 12.0)
        .sum();
    let cost = cost(&api);
    assert!((cost - want).abs() < 1e-6, "{cost} for {want}");

    // A query that gives a series per service must be aggregated first; one that
    // gives nothing says so.
    let both = format!("{metric}_cpu_vcpu");
    let aggregate = format!("sum({both})");
    for (query, says) in [
        (both.as_str(), ["gives 3 series", aggregate.as_str()]),
        ("no_such_metric", ["gives no value", "no_such_metric"]),
    ] {
        let args = [
            "--prometheus",
            url,
            "--cpu",
            query,
            "--start",
            &start,
            "--end",
            &end,
        ];
        let o = simulate(&args, &scenario);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        for s in says {
            assert!(stderr(&o).contains(s), "{query}: {}", stderr(&o));
        }
    }
}

/// The samples of [`shop`] over the three days from `t0`, a line each in Prometheus'
/// text format with timestamps in `unit`s per second (1: OpenMetrics, 1000: the
/// exposition format VictoriaMetrics imports): the shop's CPU as two pods (which the
/// queries sum) and its memory, and an `ads` service at a quarter of each.
fn exposition(t0: i64, unit: i64) -> String {
    let mut out = String::new();
    for k in 0..STEPS {
        let (cpu, bytes) = shop(k);
        let t = (t0 + 300 * k) * unit;
        for (pod, share) in [("a", 0.375), ("b", 0.625)] {
            let v = cpu * share;
            writeln!(
                out,
                "demand_cpu_vcpu{{service=\"shop\",pod=\"{pod}\"}} {v} {t}"
            )
            .unwrap();
        }
        writeln!(out, "demand_cpu_vcpu{{service=\"ads\"}} {} {t}", cpu * 0.25).unwrap();
        writeln!(out, "demand_memory_bytes{{service=\"shop\"}} {bytes} {t}").unwrap();
        let ads = bytes * 0.25;
        writeln!(out, "demand_memory_bytes{{service=\"ads\"}} {ads} {t}").unwrap();
    }
    out
}

#[test]
fn a_trace_read_from_prometheus_replays_as_the_same_csv() {
    let t0 = first_step();
    let mut om = exposition(t0, 1);
    om.push_str("# EOF\n");
    let Some(prometheus) = Prometheus::on_blocks(&om) else {
        return; // skipped, saying so
    };
    let url = format!("http://{}", prometheus.addr);
    replays_as_the_csv(&url, t0, "demand");

    // Steps finer than the samples: read in several requests (Prometheus answers at
    // most 11,000 points a series), each step once, in order.
    let dir = tempfile::tempdir().unwrap();
    let scenario = example_scenario(dir.path());
    let saved = dir.path().join("fine.csv");
    let end = t0 + (STEPS - 1) * 300;
    let o = simulate(
        &[
            "--prometheus",
            &url,
            "--cpu",
            "sum(demand_cpu_vcpu{service=\"shop\"})",
            "--start",
            &t0.to_string(),
            "--end",
            &end.to_string(),
            "--step",
            "15s",
            "--save-trace",
            saved.to_str().unwrap(),
            "--policy",
            "reactive",
        ],
        &scenario,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&saved).unwrap();
    let rows: Vec<(i64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let (t, v) = l.split_once(',').unwrap();
            (t.parse().unwrap(), v.parse().unwrap())
        })
        .collect();
    assert_eq!(rows.len() as i64, (end - t0) / 15 + 1);
    assert!(rows.len() as i64 > prescale_store::QUERY_RANGE_POINTS);
    for (i, (t, v)) in rows.iter().enumerate() {
        assert_eq!(*t, t0 + 15 * i as i64);
        // Each 15 s step reads the latest 5-minute sample.
        let (cpu, _) = shop((t - t0) / 300);
        assert!((v - cpu).abs() < 1e-9 * cpu, "{t}: {v} for {cpu}");
    }
}

#[test]
fn a_trace_reads_from_victoria_metrics_as_from_prometheus() {
    let Some(vm_bin) = common::find("victoria-metrics") else {
        eprintln!(
            "skipping: no victoria-metrics binary (apt-get install victoria-metrics; .ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let vm = common::free_addr();
    let _vm = common::Killed(
        std::process::Command::new(vm_bin)
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("vm").display()
            ))
            .arg(format!("-httpListenAddr={vm}"))
            .arg("-search.latencyOffset=0s")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(
        || get(vm, "/health").is_some_and(|(c, _)| c == 200),
        "VictoriaMetrics to serve",
        &String::new,
    );
    let t0 = first_step();
    let (code, text) = http(
        vm,
        "POST",
        "/api/v1/import/prometheus",
        &[],
        exposition(t0, 1000).as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 204, "{text}");
    let q = format!(
        "/api/v1/query_range?query={}&start={t0}&end={}&step=300",
        common::enc(r#"sum(demand_cpu_vcpu{service="shop"})"#),
        t0 + (STEPS - 1) * 300
    );
    wait_for(
        || {
            let _ = get(vm, "/internal/force_flush");
            get(vm, &q).is_some_and(|(c, body)| {
                c == 200 && body.matches("],[").count() as i64 >= STEPS - 1
            })
        },
        "the samples to be searchable in VictoriaMetrics",
        &String::new,
    );
    replays_as_the_csv(&format!("http://{vm}"), t0, "demand");
}

#[test]
fn a_trace_reads_from_prescales_own_query_api_and_bad_servers_say_so() {
    let d = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(d.path(), &default_config());
    wait_for(
        || get(daemon.addr, "/healthz").is_some_and(|(c, _)| c == 200),
        "prescale to serve",
        &|| daemon.logs(),
    );
    let t0 = first_step();
    let mut lp = String::new();
    for k in 0..STEPS {
        let (cpu, bytes) = shop(k);
        let t = t0 + 300 * k;
        writeln!(lp, "shop,service=shop,pod=a cpu_vcpu={} {t}", cpu * 0.375).unwrap();
        writeln!(lp, "shop,service=shop,pod=b cpu_vcpu={} {t}", cpu * 0.625).unwrap();
        writeln!(lp, "shop,service=ads cpu_vcpu={} {t}", cpu * 0.25).unwrap();
        writeln!(lp, "shop,service=shop memory_bytes={bytes} {t}").unwrap();
        writeln!(lp, "shop,service=ads memory_bytes={} {t}", bytes * 0.25).unwrap();
    }
    let (code, text) = write_lines(daemon.addr, &lp);
    assert_eq!(code, 204, "{text}");
    replays_as_the_csv(&format!("http://{}", daemon.addr), t0, "shop");

    // A server that is not there, and a query the server cannot parse.
    let dir = tempfile::tempdir().unwrap();
    let scenario = example_scenario(dir.path());
    let gone = format!("http://{}", common::free_addr());
    let o = simulate(&["--prometheus", &gone, "--cpu", "up"], &scenario);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&gone), "{}", stderr(&o));
    // An https server needs the build with TLS, which says so.
    if !cfg!(feature = "tls") {
        let o = simulate(
            &[
                "--prometheus",
                "https://prometheus.example:9090",
                "--cpu",
                "up",
            ],
            &scenario,
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("--features tls"), "{}", stderr(&o));
    }
    let own = format!("http://{}", daemon.addr);
    let o = simulate(&["--prometheus", &own, "--cpu", "sum(rate("], &scenario);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--cpu"), "{}", stderr(&o));
    // --cpu is required with --prometheus, and the two sources exclude each other.
    let o = simulate(&["--prometheus", &own], &scenario);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = simulate(
        &["--prometheus", &own, "--cpu", "up", "--trace", "x.csv"],
        &scenario,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));

    // Several workloads of a configuration, each its demand's query, replayed together.
    let config = dir.path().join("fleet.toml");
    std::fs::write(
        &config,
        "[[workloads]]\nname = \"shop\"\ndemand = \"x\"\nstep_s = 300\nmodel = \"baseline\"\n\n\
         [[workloads]]\nname = \"ads\"\ndemand = \"y\"\nstep_s = 300\nmodel = \"baseline\"\n",
    )
    .unwrap();
    let (start, end) = (t0.to_string(), (t0 + (STEPS - 1) * 300).to_string());
    let fleet = |queries: &[&str]| {
        bin()
            .arg("simulate")
            .args(["--config", config.to_str().unwrap(), "--prometheus", &own])
            .args(["--start", &start, "--end", &end, "--pass-s", "300"])
            .args(["--format", "json"])
            .args(queries)
            .output()
            .unwrap()
    };
    let shop_q = r#"shop=sum(shop_cpu_vcpu{service="shop"})"#;
    let ads_q = r#"ads=sum(shop_cpu_vcpu{service="ads"})"#;
    let o = fleet(&["--fleet-query", shop_q, "--fleet-query", ads_q]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let replay = &r["replay"];
    assert_eq!(
        replay["hours"].as_f64(),
        Some(STEPS as f64 / 12.0),
        "{replay}"
    );
    let cost = |w: &str| replay["workloads"][w]["cost_total"].as_f64().unwrap();
    // ads' demand is a quarter of shop's.
    assert!(
        cost("ads") > 0.0 && cost("shop") > 2.0 * cost("ads"),
        "{replay}"
    );
    assert!(
        r["alone"]["shop"]["hpa"]["cost_total"].as_f64().unwrap() > 0.0,
        "{r}"
    );
    // shop's memory too, and both traces kept: replayed from the files saved (named in
    // another order: the configuration's is the engine's), the fleet costs what it did
    // read from the server.
    let saved = dir.path().join("saved");
    let shop_mem = r#"shop.memory=sum(shop_memory_bytes{service="shop"}) / 2^30"#;
    let o = fleet(&[
        "--fleet-query",
        shop_q,
        "--fleet-query",
        shop_mem,
        "--fleet-query",
        ads_q,
        "--save-trace",
        saved.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("replay them without the server with: --config")
            && stderr(&o).contains(&format!(
                "--fleet-trace ads={}",
                saved.join("ads.csv").display()
            )),
        "{}",
        stderr(&o)
    );
    let with_memory: Value = serde_json::from_slice(&o.stdout).unwrap();
    let shop_csv = std::fs::read_to_string(saved.join("shop.csv")).unwrap();
    let ads_csv = std::fs::read_to_string(saved.join("ads.csv")).unwrap();
    assert!(shop_csv.starts_with("timestamp,cpu,memory\n"), "{shop_csv}");
    assert!(ads_csv.starts_with("timestamp,cpu\n"), "{ads_csv}");
    assert_eq!(shop_csv.lines().count() as i64, STEPS + 1);
    // The memory saved is what was written, in GiB.
    let (cpu0, bytes0) = shop(0);
    let first: Vec<f64> = shop_csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(first[0], t0 as f64);
    assert!(
        (first[1] - cpu0).abs() < 1e-9 && (first[2] - bytes0 / (1u64 << 30) as f64).abs() < 1e-9,
        "{first:?}"
    );
    let o = bin()
        .arg("simulate")
        .args([
            "--config",
            config.to_str().unwrap(),
            "--pass-s",
            "300",
            "--format",
            "json",
        ])
        .arg("--fleet-trace")
        .arg(format!("shop={}", saved.join("shop.csv").display()))
        .arg("--fleet-trace")
        .arg(format!("ads={}", saved.join("ads.csv").display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let from_files: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(from_files["replay"], with_memory["replay"]);
    assert_eq!(from_files["alone"], with_memory["alone"]);
    // Memory is counted: shop's demand in GiB is in its minutes short and its cost.
    let shop_mem_cost = with_memory["replay"]["workloads"]["shop"]["cost_total"]
        .as_f64()
        .unwrap();
    assert!(
        shop_mem_cost >= cost("shop"),
        "{shop_mem_cost} against {}",
        cost("shop")
    );
    // A query of a series per service must be aggregated, as with --cpu; a query
    // must be named, a dimension known, given once, and a workload's CPU given.
    let dims = r#"shop.gpu=sum(shop_cpu_vcpu)"#;
    let twice = r#"shop.memory=sum(shop_memory_bytes)"#;
    for (queries, says) in [
        (vec!["--fleet-query", "shop=shop_cpu_vcpu"], "shop: "),
        (
            vec!["--fleet-query", "shop=shop_cpu_vcpu"],
            "sum(shop_cpu_vcpu)",
        ),
        (vec!["--fleet-query", "shop"], "give NAME=PROMQL"),
        (
            vec!["--fleet-query", shop_q, "--fleet-query", dims],
            "\"gpu\" is not a dimension",
        ),
        (
            vec![
                "--fleet-query",
                shop_q,
                "--fleet-query",
                shop_mem,
                "--fleet-query",
                twice,
            ],
            "gives workload shop's memory twice",
        ),
        (
            vec!["--fleet-query", shop_mem],
            "add --fleet-query shop=PROMQL",
        ),
        (
            vec!["--fleet-query", shop_q, "--memory", "x"],
            "cannot be used with",
        ),
    ] {
        let o = fleet(&queries);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{says}: {}", stderr(&o));
    }
    // Saving the traces of files only keeps nothing new: said.
    let o = bin()
        .arg("simulate")
        .args(["--config", config.to_str().unwrap(), "--prometheus", &own])
        .args(["--save-trace", saved.to_str().unwrap()])
        .arg("--fleet-trace")
        .arg(format!("shop={}", saved.join("shop.csv").display()))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the --fleet-trace files are kept already"),
        "{}",
        stderr(&o)
    );
    // Nor is a saved trace written over a file the replay reads.
    let o = fleet(&[
        "--fleet-query",
        ads_q,
        "--fleet-trace",
        &format!("shop={}", saved.join("ads.csv").display()),
        "--save-trace",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--save-trace") && stderr(&o).contains("is a file the replay reads"),
        "{}",
        stderr(&o)
    );
}

/// A one-request server on a free loopback port: answers `status` with `body` and gives
/// back the request's head.
fn answer_once(status: &str, body: &'static str) -> (String, std::thread::JoinHandle<String>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let status = status.to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8_lossy(&head).into_owned()
    });
    (url, server)
}

#[test]
fn credentials_are_sent_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = example_scenario(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let pair = dir.path().join("basic");
    std::fs::write(&pair, "shop:pa55word\n").unwrap();
    let run = |url: &str, flag: &str, file: &Path| {
        simulate(
            &[
                "--prometheus",
                url,
                "--cpu",
                "sum(up)",
                "--start",
                "1700000000",
                "--end",
                "1700000300",
                flag,
                file.to_str().unwrap(),
                "--policy",
                "reactive",
            ],
            &scenario,
        )
    };
    for (flag, file, header, secret) in [
        (
            "--bearer-token-file",
            &token,
            "authorization: bearer s3cret-token\r\n",
            "s3cret",
        ),
        (
            "--basic-auth-file",
            &pair,
            "authorization: basic c2hvcdpwytu1d29yza==\r\n",
            "pa55word",
        ),
    ] {
        let (url, server) = answer_once("200 OK", POINTS);
        let o = run(&url, flag, file);
        let head = server.join().unwrap();
        assert!(o.status.success(), "{flag}: {}", stderr(&o));
        assert!(head.to_ascii_lowercase().contains(header), "{flag}: {head}");
        let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(!said.contains(secret), "{flag}: {said}");
        // Refused: the server's answer is said, the secret is not.
        let (url, server) = answer_once(
            "401 Unauthorized",
            r#"{"status":"error","errorType":"unauthorized","error":"bad token"}"#,
        );
        let o = run(&url, flag, file);
        server.join().unwrap();
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("bad token") || err.contains("401"),
            "{flag}: {err}"
        );
        assert!(!err.contains(secret), "{flag}: {err}");
    }
    // A user and password file without a colon is refused, its text not shown.
    std::fs::write(&pair, "pa55word\n").unwrap();
    let o = run("http://127.0.0.1:9", "--basic-auth-file", &pair);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("USER:PASSWORD") && !stderr(&o).contains("pa55word"));
}

/// A query_range answer: two points of one series.
const POINTS: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"4"],[1700000300,"5"]]}]}}"#;
