//! Helpers the end-to-end tests share: the binary, free ports, a minimal HTTP client,
//! child processes killed on drop, and waiting with the logs on failure.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `prescale` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
}

/// `prescale config default`'s text.
pub fn default_config() -> String {
    let out = bin().args(["config", "default"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// [`default_config`] with one-second control passes, host samples and workload steps
/// (and a ten-minute horizon), so a daemon test sees plans within seconds.
pub fn fast_config() -> String {
    default_config()
        .replace("\ninterval_s = 10", "\ninterval_s = 1")
        .replace("\ninterval_s = 15", "\ninterval_s = 1")
        .replace("step_s = 60", "step_s = 1")
        .replace("horizon_s = 3600", "horizon_s = 600")
}

/// `prescale run` on a configuration text, in `dir` (`p.toml`, `data/`, its stderr in
/// `prescale.log`) on a free loopback port; killed when dropped.
pub struct Daemon {
    /// Where it serves.
    pub addr: SocketAddr,
    /// Its log file.
    pub log: std::path::PathBuf,
    _child: Killed,
}

impl Daemon {
    pub fn start(dir: &std::path::Path, config: &str) -> Self {
        Self::start_at(dir, config, free_addr())
    }

    /// [`Daemon::start`] on `addr`, for a test whose other servers must know it first.
    pub fn start_at(dir: &std::path::Path, config: &str, addr: SocketAddr) -> Self {
        let path = dir.join("p.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("prescale.log");
        let child = start_daemon(&path, &dir.join("data"), &addr.to_string(), Some(&log));
        Self {
            addr,
            log,
            _child: child,
        }
    }

    /// Its process id (to signal it).
    pub fn pid(&self) -> u32 {
        self._child.0.id()
    }

    /// What it has logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A loopback address nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A minimal HTTP/1.1 request (the tests need no client library): (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Some((
        code,
        if chunked {
            dechunk(body)?
        } else {
            body.to_string()
        },
    ))
}

/// A chunked body's content (Prometheus answers large queries so).
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if n == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..n)?);
        body = rest.get(n..)?.strip_prefix("\r\n")?;
    }
}

/// `GET path`.
/// Writes InfluxDB line protocol with second timestamps to prescale at `addr`; its
/// status and body.
pub fn write_lines(addr: SocketAddr, lines: &str) -> (u16, String) {
    http(
        addr,
        "POST",
        "/api/v2/write?precision=s",
        &[],
        lines.as_bytes(),
    )
    .expect("prescale answers")
}

pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http(addr, "GET", path, &[], b"")
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Samples of one series from prescale's API (empty if it has none yet).
pub fn samples(addr: SocketAddr, sel: &str) -> Vec<(f64, f64)> {
    match get(addr, &format!("/api/v1/query_range?series={}", enc(sel))) {
        Some((200, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            serde_json::from_value(v["data"]["values"].clone()).unwrap()
        }
        _ => Vec::new(),
    }
}

/// A child process, killed (SIGKILL: no graceful flush) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `prescale run` with a configuration, data directory and address, its stderr
/// into `log` (or dropped).
pub fn start_daemon(
    config: &std::path::Path,
    data: &std::path::Path,
    listen: &str,
    log: Option<&std::path::Path>,
) -> Killed {
    let stderr = match log {
        Some(l) => Stdio::from(std::fs::File::create(l).unwrap()),
        None => Stdio::null(),
    };
    Killed(
        bin()
            .args(["run", "--config", config.to_str().unwrap()])
            .args(["--data-dir", data.to_str().unwrap(), "--listen", listen])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

/// The binary `name` if it runs (`--version`).
pub fn find(name: &str) -> Option<String> {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then(|| name.to_string())
}

/// A real Prometheus serving blocks that `promtool tsdb create-blocks-from openmetrics`
/// built from OpenMetrics text, on a free loopback port; killed, and its directory
/// removed, when dropped.
pub struct Prometheus {
    /// Where it serves.
    pub addr: SocketAddr,
    _child: Killed,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Prometheus on the samples of `openmetrics` (ending in `# EOF`), ready to answer;
    /// `None`, saying that the test is skipped, when prometheus or promtool is not
    /// installed (`.ci/run` installs both).
    pub fn on_blocks(openmetrics: &str) -> Option<Self> {
        let (Some(prometheus), Some(_)) = (find("prometheus"), find("promtool")) else {
            eprintln!(
                "skipping: no prometheus and promtool (apt-get install prometheus; .ci/run does)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let om = dir.path().join("samples.om");
        std::fs::write(&om, openmetrics).unwrap();
        let tsdb = dir.path().join("tsdb");
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&tsdb)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 15s\n").unwrap();
        let addr = free_addr();
        let log = dir.path().join("prometheus.log");
        let child = Killed(
            Command::new(prometheus)
                .arg(format!("--config.file={}", cfg.display()))
                .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for(
            || get(addr, "/-/ready").is_some_and(|(c, _)| c == 200),
            "Prometheus to be ready",
            &|| std::fs::read_to_string(&log).unwrap_or_default(),
        );
        Some(Self {
            addr,
            _child: child,
            _dir: dir,
        })
    }
}

/// Polls `f` for up to 90 s; on time-out panics with `what` and the logs.
pub fn wait_for(mut f: impl FnMut() -> bool, what: &str, log: &dyn Fn() -> String) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(90) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}\n{}", log());
}

/// `prescale demo` of `days` simulated days as fast as the machine goes (seed `seed`),
/// in its own data directory, serving on a free loopback port once done; killed, and
/// its directory removed, when dropped.
pub struct Demo {
    /// Where it serves.
    pub addr: SocketAddr,
    _child: Killed,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts it and waits until every simulated day has run and its comparison with
    /// HPA is kept.
    pub fn run(days: u32, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let child = Killed(
            bin()
                .args(["demo", "--days", &days.to_string(), "--speed", "0"])
                .args(["--seed", &seed.to_string()])
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--listen", &addr.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let done = || {
            get(addr, "/api/v1/workloads").is_some_and(|(c, b)| {
                c == 200
                    && serde_json::from_str::<serde_json::Value>(&b).unwrap()["data"]["ticks"]
                        .as_u64()
                        .is_some_and(|t| t >= u64::from(days) * 1440)
            })
        };
        wait_for(done, "the demo's simulated days", &|| String::new());
        // Then it keeps its days against HPA as series (the last thing it does), one
        // workload after the other: wait for both (the second was once not there yet
        // when a dashboard test summed them).
        let compared = || {
            get(addr, "/api/v1/series?match[]=prescale_compare_vs_hpa").is_some_and(|(c, b)| {
                c == 200
                    && serde_json::from_str::<serde_json::Value>(&b).unwrap()["data"]
                        .as_array()
                        .is_some_and(|s| s.len() == 2)
            })
        };
        wait_for(compared, "the demo's comparison with HPA", &|| {
            String::new()
        });
        Self {
            addr,
            _child: child,
            _dir: dir,
        }
    }

    /// Waits until it has tuned each workload's safeguards on its days (what it does
    /// once its summary is out), kept as the daemon keeps its daily tuning (served even
    /// where it could not tune).
    pub fn tuned(&self) {
        let addr = self.addr;
        let tuned = || {
            ["web", "batch"].iter().all(|w| {
                get(addr, &format!("/api/v1/workloads/{w}/tune")).is_some_and(|(c, _)| c == 200)
            })
        };
        wait_for(tuned, "the demo's tuning", &|| String::new());
    }
}

/// The page after its script has run, as Chromium serialises it.
pub fn rendered(browser: &str, url: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            // Virtual time runs on only while no request is pending: the page's fetches
            // all finish before the DOM is taken.
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", dir.path().display()))
        .arg(url)
        // A file, not a pipe: the page is larger than a pipe holds until it is read.
        .stdout(std::fs::File::create(dir.path().join("dom.html")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("{browser} did not finish loading {url} in 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(dir.path().join("dom.html")).unwrap()
}

/// Chromium's binary, or `None` (saying the test skips) when there is none.
pub fn browser() -> Option<String> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find_map(find);
    if found.is_none() {
        eprintln!("skipping: no Chromium (apt-get install chromium; .ci/run does)");
    }
    found
}
