//! A connection to a Kubernetes API server, for the two things prescale asks of one:
//! the pods to scrape ([`discover_pods`], or the ready addresses behind Services,
//! [`discover_endpoints`]) and the replicas of the objects it scales (the
//! Kubernetes provider).
//!
//! It speaks plain REST over prescale's one HTTP client (a Kubernetes client crate would
//! add a second HTTP and TLS stack and minutes to a 2-core build for a handful of GETs
//! and one PATCH). Inside a cluster the API server, the service-account token, its CA
//! and namespace are found where Kubernetes puts them; outside, `kubectl proxy`
//! (`http://127.0.0.1:8001`, no token) or an explicit URL, token file and CA file. The
//! token file is read again at every call, since projected service-account tokens are
//! rotated while a pod runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::scrape::Target;

/// Where Kubernetes mounts a pod's service-account credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How to reach an API server: what the configuration says, the rest from the pod.
#[derive(Debug, Clone, Default)]
pub struct Settings<'a> {
    /// `https://host:port` or `http://127.0.0.1:8001`; `None`: the pod's cluster.
    pub api_url: Option<&'a str>,
    /// The bearer token's file; `None`: the pod's service-account token, if any.
    pub token_file: Option<&'a Path>,
    /// PEM certificates for the API server; `None`: the pod's CA (only for the pod's
    /// own API server), else the system's roots.
    pub ca_file: Option<&'a Path>,
    /// A client certificate and its private key, to authenticate with (as a
    /// kubeconfig's `client-certificate` and `client-key`).
    pub client: Option<(&'a Path, &'a Path)>,
    /// The namespace; `None`: the pod's, else `default`.
    pub namespace: Option<&'a str>,
    /// How long a call may take.
    pub timeout: Duration,
}

/// An API server and the credentials to call it with.
#[derive(Debug, Clone)]
pub struct Connection {
    /// `https://host:port` (no trailing slash).
    pub api_url: String,
    /// Bearer token, read at every call.
    pub token_file: Option<PathBuf>,
    /// The namespace the settings name, or the pod's, or `default`.
    pub namespace: String,
    /// The client, with its time-out and TLS settings.
    pub agent: ureq::Agent,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No answer (connection refused, time-out, TLS), or the token file is unreadable.
    Unreachable(String),
    /// The API server answered with an error status; `message` is its `Status`
    /// object's message, or the body.
    Status {
        /// The HTTP status.
        code: u16,
        /// What the API server said.
        message: String,
    },
    /// A 2xx answer that is not the JSON expected.
    BadAnswer(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(m) | Self::BadAnswer(m) => f.write_str(m),
            Self::Status { code, message } => write!(f, "HTTP {code}: {message}"),
        }
    }
}

/// What to add to an API error for the usual causes, for `key` (the configuration
/// section) and `rights` (what the service account needs).
pub fn hint(e: &ApiError, key: &str, rights: &str) -> String {
    match e {
        ApiError::Status { code: 401, .. } => {
            format!(" (the token was not accepted: check {key}.token_file)")
        }
        ApiError::Status { code: 403, .. } => {
            format!(" (give prescale's service account {rights})")
        }
        _ => String::new(),
    }
}

/// Connects as `s` says, taking what it leaves out from the cluster prescale runs in:
/// `env` looks up `KUBERNETES_SERVICE_HOST` and `_PORT`, and `sa_dir` is where the pod's
/// service-account files are ([`SERVICE_ACCOUNT_DIR`]). `key` names the configuration
/// section in errors. Fails saying what to set when there is no API server to find, or
/// the CA cannot be read.
pub fn connect(
    s: &Settings<'_>,
    key: &str,
    env: impl Fn(&str) -> Option<String>,
    sa_dir: &Path,
) -> Result<Connection, String> {
    let api_url = match s.api_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
            let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
            let Some(host) = host else {
                return Err(format!("{key}.api_url: not set, and prescale is not in a cluster (no KUBERNETES_SERVICE_HOST); set it to the API server's URL, or to http://127.0.0.1:8001 with `kubectl proxy` running"));
            };
            format!("https://{}:{port}", host_part(&host))
        }
    };
    let in_pod = |f: &str| Some(sa_dir.join(f)).filter(|p| p.is_file());
    let token_file = s
        .token_file
        .map(Path::to_path_buf)
        .or_else(|| in_pod("token"));
    // The pod's CA is for the pod's API server, not for one named by URL.
    let ca_file = s
        .ca_file
        .map(Path::to_path_buf)
        .or_else(|| s.api_url.is_none().then(|| in_pod("ca.crt")).flatten());
    let namespace = match s.namespace {
        Some(n) => n.to_string(),
        None => in_pod("namespace")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
    };
    let agent = crate::http::agent(
        s.timeout,
        crate::http::TlsFiles {
            ca_file: ca_file.as_deref(),
            client: s.client,
        },
    )
    .map_err(|e| format!("{key}: {e}"))?;
    Ok(Connection {
        api_url,
        token_file,
        namespace,
        agent,
    })
}

impl Connection {
    fn token(&self) -> Result<Option<String>, ApiError> {
        match &self.token_file {
            None => Ok(None),
            Some(f) => prescale_core::config::read_token_file(f)
                .map(Some)
                .map_err(ApiError::Unreachable),
        }
    }

    /// `GET path` (from `/api` or `/apis`, with any query), as JSON.
    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.api_url);
        let mut req = self.agent.get(&url).header("Accept", "application/json");
        if let Some(t) = self.token()? {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp = req
            .call()
            .map_err(|e| ApiError::Unreachable(format!("GET {url}: {e}")))?;
        let text = answer(resp)?;
        serde_json::from_str(&text)
            .map_err(|e| ApiError::BadAnswer(format!("GET {url}: the answer is not JSON: {e}")))
    }

    /// `PATCH path` with a JSON patch (RFC 6902): a list of operations the API server
    /// applies together or not at all, so a `test` makes the others conditional.
    pub fn json_patch(&self, path: &str, body: &str) -> Result<(), ApiError> {
        let url = format!("{}{path}", self.api_url);
        let mut req = self
            .agent
            .patch(&url)
            .header("Content-Type", "application/json-patch+json")
            .header("Accept", "application/json");
        if let Some(t) = self.token()? {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp = req
            .send(body)
            .map_err(|e| ApiError::Unreachable(format!("PATCH {url}: {e}")))?;
        answer(resp).map(|_| ())
    }
}

impl Connection {
    /// `POST path` (a create) or `PUT path` (a replace, which the API server refuses with
    /// 409 when `body`'s `metadata.resourceVersion` is no longer the object's), with a
    /// JSON body; the object as the API server answers it.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.api_url);
        let req = match method {
            "POST" => self.agent.post(&url),
            "PUT" => self.agent.put(&url),
            _ => return Err(ApiError::BadAnswer(format!("{method} is not sent"))),
        };
        let mut req = req
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        if let Some(t) = self.token()? {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp = req
            .send(body.to_string())
            .map_err(|e| ApiError::Unreachable(format!("{method} {url}: {e}")))?;
        let text = answer(resp)?;
        serde_json::from_str(&text).map_err(|e| {
            ApiError::BadAnswer(format!("{method} {url}: the answer is not JSON: {e}"))
        })
    }
}

/// The body of a 2xx answer, or the error the API server gave.
fn answer(mut resp: ureq::http::Response<ureq::Body>) -> Result<String, ApiError> {
    let code = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    if (200..300).contains(&code) {
        return Ok(text);
    }
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| {
            let b = text.trim();
            if b.is_empty() {
                "(empty body)".into()
            } else {
                b.chars().take(500).collect()
            }
        });
    Err(ApiError::Status { code, message })
}

/// Which pods a scrape job takes, and how.
#[derive(Debug, Clone, Default)]
pub struct PodRule {
    /// The job.
    pub job: String,
    /// A label selector (`app=api,tier!=canary`), passed to the API server; empty: all.
    pub selector: String,
    /// The port scraped; `None`: each pod's `prometheus.io/port` annotation (with
    /// endpoints, every port unless `port_name` picks one).
    pub port: Option<u16>,
    /// With [`discover_endpoints`], the name of the port scraped.
    pub port_name: Option<String>,
    /// `http` or `https`.
    pub scheme: String,
    /// The path scraped, unless a pod's `prometheus.io/path` annotation says another.
    pub path: String,
}

/// What a listing of pods found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    /// The targets, by instance.
    pub targets: Vec<Target>,
    /// Running pods left out because no port was configured and they have no
    /// `prometheus.io/port` annotation (or an unreadable one), by name; with
    /// endpoints, the Services whose ready addresses have no port the rule takes.
    pub without_port: Vec<String>,
}

/// The targets among the running pods of `conn`'s namespace that `rule` selects: each
/// pod with an IP that is not annotated `prometheus.io/scrape: "false"`, at
/// `rule.port` or its `prometheus.io/port` annotation (pods with neither are left
/// out and named), labelled `namespace`, `pod` and `node`.
pub fn discover_pods(conn: &Connection, rule: &PodRule) -> Result<Discovered, ApiError> {
    let (path, list) = list_selected(conn, "pods", &rule.selector)?;
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadAnswer(format!("GET {path}: no \"items\" list")))?;
    let mut out = Discovered::default();
    for pod in items {
        let s = |p: &str| pod.pointer(p).and_then(Value::as_str).unwrap_or("");
        let ann = |k: &str| {
            pod.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        let (name, ip) = (s("/metadata/name"), s("/status/podIP"));
        if s("/status/phase") != "Running" || ip.is_empty() || name.is_empty() {
            continue;
        }
        if ann("prometheus.io/scrape") == Some("false") {
            continue;
        }
        let port = rule
            .port
            .or_else(|| ann("prometheus.io/port").and_then(|p| p.parse().ok()));
        let Some(port) = port else {
            out.without_port.push(name.to_string());
            continue;
        };
        let host = host_part(ip);
        let path = ann("prometheus.io/path").unwrap_or(&rule.path);
        let mut t = Target::new(&rule.job, &rule.scheme, &format!("{host}:{port}"), path);
        let mut labels = BTreeMap::new();
        labels.insert("namespace".to_string(), conn.namespace.clone());
        labels.insert("pod".to_string(), name.to_string());
        let node = s("/spec/nodeName");
        if !node.is_empty() {
            labels.insert("node".to_string(), node.to_string());
        }
        t.labels = labels;
        out.targets.push(t);
    }
    out.targets.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(out)
}

/// The targets among the ready addresses of the Endpoints of `conn`'s namespace that
/// `rule`'s selector picks (an Endpoints object carries its Service's name and labels),
/// as Prometheus' `endpoints` role: each ready address at each port of its subset that
/// the rule takes (`port_name`, else `port`, else every TCP port), labelled
/// `namespace`, `service`, `endpoint` (the port's name, when it has one) and, where the
/// address is a pod's, `pod` and `node`. An address found twice (two Services) is one
/// target, with the first Service's labels.
pub fn discover_endpoints(conn: &Connection, rule: &PodRule) -> Result<Discovered, ApiError> {
    let (path, list) = list_selected(conn, "endpoints", &rule.selector)?;
    endpoints_targets(&list, &conn.namespace, rule)
        .ok_or_else(|| ApiError::BadAnswer(format!("GET {path}: no \"items\" list")))
}

/// [`discover_endpoints`] on an `EndpointsList` already fetched; `None` without items.
fn endpoints_targets(list: &Value, namespace: &str, rule: &PodRule) -> Option<Discovered> {
    let mut out = Discovered::default();
    let mut seen = std::collections::BTreeSet::new();
    for ep in list.get("items")?.as_array()? {
        let service = ep
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut had_address = false;
        let mut scraped = false;
        for subset in ep
            .get("subsets")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ports: Vec<(u16, &str)> = subset
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let number = u16::try_from(p.get("port")?.as_u64()?).ok()?;
                    let name = p.get("name").and_then(Value::as_str).unwrap_or("");
                    let tcp = p
                        .get("protocol")
                        .and_then(Value::as_str)
                        .is_none_or(|x| x == "TCP");
                    let wanted = match (&rule.port_name, rule.port) {
                        (Some(n), _) => n == name,
                        (None, Some(want)) => want == number,
                        (None, None) => tcp,
                    };
                    wanted.then_some((number, name))
                })
                .collect();
            for addr in subset
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(ip) = addr
                    .get("ip")
                    .and_then(Value::as_str)
                    .filter(|i| !i.is_empty())
                else {
                    continue;
                };
                had_address = true;
                scraped |= !ports.is_empty();
                let host = host_part(ip);
                for (port, name) in &ports {
                    let instance = format!("{host}:{port}");
                    if !seen.insert(instance.clone()) {
                        continue;
                    }
                    let mut t = Target::new(&rule.job, &rule.scheme, &instance, &rule.path);
                    let mut labels = BTreeMap::new();
                    labels.insert("namespace".to_string(), namespace.to_string());
                    labels.insert("service".to_string(), service.to_string());
                    if !name.is_empty() {
                        labels.insert("endpoint".to_string(), name.to_string());
                    }
                    let pod = addr
                        .get("targetRef")
                        .filter(|r| r.get("kind").and_then(Value::as_str) == Some("Pod"))
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str);
                    if let Some(pod) = pod {
                        labels.insert("pod".to_string(), pod.to_string());
                    }
                    if let Some(node) = addr.get("nodeName").and_then(Value::as_str) {
                        labels.insert("node".to_string(), node.to_string());
                    }
                    t.labels = labels;
                    out.targets.push(t);
                }
            }
        }
        if had_address && !scraped && !service.is_empty() {
            out.without_port.push(service.to_string());
        }
    }
    out.targets.sort_by(|a, b| a.instance.cmp(&b.instance));
    Some(out)
}

/// `GET` of the core `resource` (`pods`, `endpoints`) in `conn`'s namespace that
/// `selector` picks (all when empty): the path asked and the list.
fn list_selected(
    conn: &Connection,
    resource: &str,
    selector: &str,
) -> Result<(String, Value), ApiError> {
    let mut path = format!("/api/v1/namespaces/{}/{resource}", conn.namespace);
    if !selector.is_empty() {
        path.push_str("?labelSelector=");
        path.push_str(&crate::http::percent_encode(selector));
    }
    let list = conn.get(&path)?;
    Ok((path, list))
}

/// An address as the host part of a URL: an IPv6 one in brackets.
fn host_part(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_percent_encoded() {
        assert_eq!(
            crate::http::percent_encode("app=api,tier!=canary"),
            "app%3Dapi%2Ctier%21%3Dcanary"
        );
        assert_eq!(
            crate::http::percent_encode("a in (x, y)"),
            "a%20in%20%28x%2C%20y%29"
        );
    }

    #[test]
    fn endpoints_give_each_ready_address_at_the_ports_the_rule_takes() {
        let list = serde_json::json!({"kind": "EndpointsList", "items": [
            {"metadata": {"name": "api", "labels": {"app": "api"}},
             "subsets": [{
                "addresses": [
                    {"ip": "10.0.0.1", "nodeName": "n1", "targetRef": {"kind": "Pod", "name": "api-1"}},
                    {"ip": "fd00::2", "targetRef": {"kind": "Pod", "name": "api-2"}}],
                "notReadyAddresses": [{"ip": "10.0.0.3"}],
                "ports": [{"name": "metrics", "port": 9100, "protocol": "TCP"},
                          {"name": "http", "port": 8080},
                          {"name": "dns", "port": 53, "protocol": "UDP"}]}]},
            // The same pod behind a second Service: scraped once.
            {"metadata": {"name": "api-canary"},
             "subsets": [{"addresses": [{"ip": "10.0.0.1"}],
                          "ports": [{"name": "metrics", "port": 9100}]}]},
            // Ready addresses but no port of that name: named, not scraped.
            {"metadata": {"name": "db"},
             "subsets": [{"addresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "sql", "port": 5432}]}]},
            // No ready address: nothing to say.
            {"metadata": {"name": "idle"}, "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.8"}],
                          "ports": [{"name": "metrics", "port": 9100}]}]},
            {"metadata": {"name": "empty"}}
        ]});
        let mut rule = PodRule {
            job: "api".into(),
            scheme: "http".into(),
            path: "/metrics".into(),
            port_name: Some("metrics".into()),
            ..PodRule::default()
        };
        let d = endpoints_targets(&list, "shop", &rule).unwrap();
        let got: Vec<(&str, &BTreeMap<String, String>)> = d
            .targets
            .iter()
            .map(|t| (t.instance.as_str(), &t.labels))
            .collect();
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            got,
            vec![
                (
                    "10.0.0.1:9100",
                    &labels(&[
                        ("namespace", "shop"),
                        ("service", "api"),
                        ("endpoint", "metrics"),
                        ("pod", "api-1"),
                        ("node", "n1")
                    ])
                ),
                (
                    "[fd00::2]:9100",
                    &labels(&[
                        ("namespace", "shop"),
                        ("service", "api"),
                        ("endpoint", "metrics"),
                        ("pod", "api-2")
                    ])
                ),
            ]
        );
        assert_eq!(d.without_port, vec!["db".to_string()]);
        // By number instead of name; with neither, every TCP port.
        rule.port_name = None;
        rule.port = Some(8080);
        let d = endpoints_targets(&list, "shop", &rule).unwrap();
        let at: Vec<&str> = d.targets.iter().map(|t| t.instance.as_str()).collect();
        assert_eq!(at, ["10.0.0.1:8080", "[fd00::2]:8080"]);
        rule.port = None;
        let d = endpoints_targets(&list, "shop", &rule).unwrap();
        let at: Vec<&str> = d.targets.iter().map(|t| t.instance.as_str()).collect();
        assert_eq!(
            at,
            [
                "10.0.0.1:8080",
                "10.0.0.1:9100",
                "10.0.0.9:5432",
                "[fd00::2]:8080",
                "[fd00::2]:9100"
            ]
        );
        assert!(d.without_port.is_empty());
        assert!(endpoints_targets(&serde_json::json!({"kind": "Status"}), "shop", &rule).is_none());
    }

    #[test]
    fn a_client_certificate_is_read_when_connecting_and_its_faults_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("c.key"));
        let settings = Settings {
            api_url: Some("https://10.0.0.1:6443"),
            client: Some((&cert, &key)),
            timeout: std::time::Duration::from_secs(1),
            ..Settings::default()
        };
        let connect = || connect(&settings, "providers.kubernetes", |_| None, dir.path());
        let e = connect().unwrap_err();
        assert!(e.starts_with("providers.kubernetes: "), "{e}");
        if !crate::http::TLS {
            assert!(e.contains("--features tls"), "{e}");
            return;
        }
        assert!(e.contains("cannot read the client certificate file"), "{e}");
        // A PEM block of the right kind is all the client needs before the handshake.
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(&key, "not a key\n").unwrap();
        let e = connect().unwrap_err();
        assert!(
            e.contains("client key file") && e.contains("no PEM private key"),
            "{e}"
        );
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(connect().is_ok());
        std::fs::write(&cert, "").unwrap();
        let e = connect().unwrap_err();
        assert!(
            e.contains("client certificate file") && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
