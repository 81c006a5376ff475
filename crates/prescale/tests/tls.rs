//! HTTPS: with the `tls` feature a scrape job reaches an https exporter whose certificate
//! a configured CA vouches for (and one without that CA is down, saying why), and one
//! that asks for a client certificate with `cert_file` and `key_file` (and is down
//! without them), and a standby of leader election forwards to a holder serving HTTPS
//! when `[leader_election] ca_file`'s CA vouches for it; without it, a configuration
//! that needs HTTPS is refused at start. The exporters' side is Python's
//! standard library and the certificates come from `openssl`; the test skips, saying
//! so, where either is missing.

mod common;

use std::path::Path;
#[cfg(feature = "tls")]
use std::process::{Command, Stdio};

#[cfg(feature = "tls")]
use common::{free_addr, get, start_daemon, wait_for, Killed};

/// A scrape job of `target` over https, with `ca` as its CA file if given.
fn https_job(job: &str, target: &str, ca: Option<&Path>) -> String {
    let ca = ca.map_or(String::new(), |p| {
        format!("ca_file = {:?}\n", p.display().to_string())
    });
    format!("[[sources.scrape]]\njob = \"{job}\"\ntargets = [\"{target}\"]\nscheme = \"https\"\ninterval_s = 1\ntimeout_s = 1\n{ca}\n")
}

/// [`https_job`] presenting the client certificate `cert` with its key `key`.
#[cfg(feature = "tls")]
fn mutual_job(job: &str, target: &str, ca: &Path, cert: &Path, key: &Path) -> String {
    https_job(job, target, Some(ca)).trim_end().to_string()
        + &format!(
            "\ncert_file = {:?}\nkey_file = {:?}\n\n",
            cert.display().to_string(),
            key.display().to_string()
        )
}

fn config_with(dir: &Path, jobs: &str) -> std::path::PathBuf {
    let text = common::default_config()
        .replacen("enabled = true", "enabled = false", 1)
        .replace("[control]", &format!("{jobs}[control]"));
    let p = dir.join("p.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[cfg(not(feature = "tls"))]
#[test]
fn without_tls_a_configuration_that_needs_https_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with(dir.path(), &https_job("secure", "127.0.0.1:1", None));
    let out = common::bin()
        .args(["run", "--config", cfg.to_str().unwrap()])
        .args(["--data-dir", dir.path().join("d").to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sources.scrape[0] (secure) needs HTTPS") && err.contains("--features tls"),
        "{err}"
    );
}

#[cfg(feature = "tls")]
fn sh(dir: &Path, args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `NAME.key` and `NAME.pem`, a certificate for `subject` with the extensions
/// `ext` that the CA in `ca.pem` signs.
#[cfg(feature = "tls")]
fn signed(dir: &Path, name: &str, subject: &str, ext: &str) -> bool {
    let f = |x: &str| format!("{name}.{x}");
    std::fs::write(dir.join(f("ext")), ext).is_ok()
        && sh(
            dir,
            &[
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &f("key"),
                "-out",
                &f("csr"),
                "-subj",
                subject,
            ],
        )
        && sh(
            dir,
            &[
                "openssl",
                "x509",
                "-req",
                "-in",
                &f("csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &f("pem"),
                "-days",
                "2",
                "-extfile",
                &f("ext"),
            ],
        )
}

#[cfg(feature = "tls")]
const SERVER: &str = r##"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"# TYPE secure_value gauge\nsecure_value 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("leaf.pem", "leaf.key")
if len(sys.argv) > 2:
    # Mutual TLS: only clients with a certificate the CA signed get in.
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations("ca.pem")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"##;

#[cfg(feature = "tls")]
#[test]
fn an_https_exporter_is_scraped_with_its_ca_and_client_certificate_and_is_down_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A CA, a server certificate it signs for 127.0.0.1 (not itself a CA, as rustls
    // requires of a server's certificate), and a client certificate it signs.
    let made = ca_and_leaf(d)
        && signed(
            d,
            "client",
            "/CN=prescale",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
    if !made {
        eprintln!("skipping: openssl could not make the test certificates");
        return;
    }
    let Some(python) = common::find("python3") else {
        eprintln!("skipping: no python3 to serve https");
        return;
    };
    std::fs::write(d.join("server.py"), SERVER).unwrap();
    let serve = |extra: &[&str]| {
        let addr = free_addr();
        let child = Command::new(&python)
            .arg("server.py")
            .arg(addr.port().to_string())
            .args(extra)
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (addr.to_string(), Killed(child))
    };
    let (target, _server) = serve(&[]);
    // An exporter that lets in only clients with a certificate the CA signed.
    let (mutual, _mutual_server) = serve(&["mutual"]);
    let ca = d.join("ca.pem");
    let jobs = https_job("trusted", &target, Some(&ca))
        + &https_job("untrusted", &target, None)
        + &mutual_job(
            "mutual",
            &mutual,
            &ca,
            &d.join("client.pem"),
            &d.join("client.key"),
        )
        + &https_job("anonymous", &mutual, Some(&ca));
    let cfg = config_with(d, &jobs);
    let ps = free_addr();
    let log = d.join("prescale.log");
    let _prescale = start_daemon(&cfg, &d.join("data"), &ps.to_string(), Some(&log));
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let health = |job: &str| -> Option<(String, String)> {
        let (_, body) = get(ps, "/api/v1/targets")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let t = v["data"]
            .as_array()?
            .iter()
            .find(|t| t["job"] == job)?
            .clone();
        Some((
            t["health"].as_str()?.to_string(),
            t["last_error"].as_str()?.to_string(),
        ))
    };
    wait_for(
        || {
            health("trusted").is_some_and(|h| h.0 == "up")
                && health("untrusted").is_some_and(|h| h.0 == "down")
                && health("mutual").is_some_and(|h| h.0 == "up")
                && health("anonymous").is_some_and(|h| h.0 == "down")
        },
        "the trusted and mutual targets up, the untrusted and anonymous ones down",
        &logs,
    );
    let (_, why) = health("untrusted").unwrap();
    assert!(
        why.to_lowercase().contains("certificate") || why.contains("UnknownIssuer"),
        "{why}"
    );
    for (instance, job) in [(&target, "trusted"), (&mutual, "mutual")] {
        let got = common::samples(
            ps,
            &format!("secure_value{{instance=\"{instance}\",job=\"{job}\"}}"),
        );
        assert!(
            !got.is_empty() && got.iter().all(|&(_, v)| v == 42.0),
            "{job}: {got:?}"
        );
    }
}

/// A CA (`ca.pem`) in `dir` and a server certificate it signs for 127.0.0.1
/// (`leaf.pem`, `leaf.key`).
#[cfg(feature = "tls")]
fn ca_and_leaf(dir: &Path) -> bool {
    sh(
        dir,
        &[
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=prescale test CA",
        ],
    ) && signed(
        dir,
        "leaf",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
}

/// A daemon in `dir` serving its API over https with `cert` and `key`.
#[cfg(feature = "tls")]
fn serving_https(dir: &Path, cert: &Path, key: &Path) -> common::Daemon {
    let config = common::fast_config().replacen(
        "[server]\n",
        &format!(
            "[server]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
        1,
    );
    common::Daemon::start(dir, &config)
}

#[cfg(feature = "tls")]
#[test]
fn the_server_serves_https_and_a_reload_serves_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    if !(ca_and_leaf(&first) && ca_and_leaf(&second)) {
        eprintln!("skipping: openssl could not make the test certificates");
        return;
    }
    let Some(curl) = common::find("curl") else {
        eprintln!("skipping: no curl to ask over https");
        return;
    };
    // The files served are copies, renewed in place as cert-manager renews a Secret.
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(first.join("leaf.pem"), &cert).unwrap();
    std::fs::copy(first.join("leaf.key"), &key).unwrap();
    let d = serving_https(dir.path(), &cert, &key);
    let (addr, logs) = (d.addr, || d.logs());
    // (whether curl trusting `ca` got a 200, the body)
    let https = |ca: &Path, method: &str, path: &str| {
        let out = Command::new(&curl)
            .args(["-sS", "--max-time", "5", "--cacert"])
            .arg(ca)
            .args(["-X", method, &format!("https://{addr}{path}")])
            .args(["-w", "\n%{http_code}"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.ends_with("\n200"), text)
    };
    wait_for(
        || https(&first.join("ca.pem"), "GET", "/healthz").0,
        "the dashboard over https",
        &logs,
    );
    assert!(
        logs().contains(&format!("dashboard and API at https://{addr}/")),
        "{}",
        logs()
    );
    // Plain HTTP gets no answer; a connection that never says hello holds no one up.
    assert!(get(addr, "/healthz").is_none_or(|r| r.0 != 200));
    let _silent = std::net::TcpStream::connect(addr).unwrap();
    let (ok, body) = https(&first.join("ca.pem"), "GET", "/api/v1/workloads");
    assert!(ok && body.contains("\"host\""), "{body}");
    // Renewed in place (another CA, to tell them apart), put in force by a reload.
    std::fs::copy(second.join("leaf.pem"), &cert).unwrap();
    std::fs::copy(second.join("leaf.key"), &key).unwrap();
    assert!(
        https(&first.join("ca.pem"), "GET", "/healthz").0,
        "served until reloaded"
    );
    let (ok, body) = https(&first.join("ca.pem"), "POST", "/-/reload");
    assert!(ok, "{body}");
    assert!(https(&second.join("ca.pem"), "GET", "/healthz").0);
    assert!(!https(&first.join("ca.pem"), "GET", "/healthz").0);
    // A key that does not go with the certificate: refused, the renewed one served on.
    std::fs::copy(first.join("leaf.key"), &key).unwrap();
    let (ok, body) = https(&second.join("ca.pem"), "POST", "/-/reload");
    assert!(!ok && body.contains("server.cert_file"), "{body}");
    assert!(https(&second.join("ca.pem"), "GET", "/healthz").0);
}

/// A standby of leader election in this process, standing by while `holder` at
/// `url` acts, forwarding with `agent` (`None`: trusting the public roots); serving
/// on a loopback port of `rt`, which is returned.
#[cfg(feature = "tls")]
fn standby(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    url: &str,
    agent: Option<ureq::Agent>,
) -> std::net::SocketAddr {
    use std::sync::{Arc, RwLock};
    let store = prescale_store::Store::open(dir, prescale_store::Durability::Buffered).unwrap();
    let status = Arc::new(RwLock::new(prescale_orchestrate::Status::default()));
    let mut st =
        prescale_server::AppState::new(&prescale_core::config::Config::default(), store, status)
            .unwrap();
    st.leadership = Some(Arc::new(prescale_server::Leadership {
        lease: "shop/prescale".into(),
        identity: "standby".into(),
        holder: RwLock::new("holder".into()),
        holder_url: RwLock::new(url.into()),
        agent,
        ..Default::default()
    }));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(prescale_server::serve(
        listener,
        st,
        std::future::pending::<()>(),
    ));
    addr
}

#[cfg(feature = "tls")]
#[test]
fn a_standby_forwards_to_a_holder_serving_https_when_its_ca_is_given() {
    let dir = tempfile::tempdir().unwrap();
    if !ca_and_leaf(dir.path()) {
        eprintln!("skipping: openssl could not make the test certificates");
        return;
    }
    // The holder: a daemon serving its API over https with the CA's certificate.
    let holder = serving_https(
        dir.path(),
        &dir.path().join("leaf.pem"),
        &dir.path().join("leaf.key"),
    );
    let (addr, logs) = (holder.addr, || holder.logs());
    let url = format!("https://{addr}");
    let ca = dir.path().join("ca.pem");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (d1, d2) = (dir.path().join("s1"), dir.path().join("s2"));
    let trusting = standby(
        &rt,
        &d1,
        &url,
        Some(prescale_server::forward::holder_agent(Some(&ca)).unwrap()),
    );
    let public = standby(&rt, &d2, &url, None);
    let passes = |at: std::net::SocketAddr| -> u64 {
        get(at, "/api/v1/workloads")
            .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["data"]["ticks"].as_u64())
            .unwrap_or(0)
    };
    // Trusting the CA, the standby answers with the holder's passes.
    wait_for(
        || passes(trusting) > 0,
        "the holder's passes through the standby",
        &logs,
    );
    // Trusting the public roots only, it answers itself and says why.
    assert_eq!(passes(public), 0);
    let (_, body) = get(public, "/api/v1/sources").unwrap();
    let src: serde_json::Value = serde_json::from_str(&body).unwrap();
    let why = src["data"]["leader_election"]["not_forwarded"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        why.contains(&format!("could not be reached at {url}")),
        "{why}"
    );
}
