//! The configuration schema (`prescale.toml`), its commented defaults, and validation
//! errors that point at the file, line and key to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::model::{yes, Tier, TierClass, Workload};
use crate::{Demand, SeriesKey};

/// The complete default configuration, with comments. `prescale config default` prints it
/// and [`Config::default`] parses it, so the two can never disagree.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// The largest `surge_extra` a workload may set: ten extra instances per needed one.
pub const MAX_SURGE_EXTRA: f64 = 10.0;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where samples, decisions and state are kept.
    pub storage: StorageConfig,
    /// Where metrics come from.
    pub sources: SourcesConfig,
    /// Anomaly detection on every stored series.
    #[serde(default)]
    pub detect: DetectConfig,
    /// The control loop's pace.
    pub control: ControlConfig,
    /// The capacity catalog.
    pub tiers: Vec<Tier>,
    /// The workloads prescale manages.
    pub workloads: Vec<Workload>,
    /// Limits over every workload together.
    #[serde(default)]
    pub fleet: FleetConfig,
    /// Who carries out actions.
    pub providers: ProvidersConfig,
    /// Several replicas, one acting: a Kubernetes Lease says which.
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
    /// The HTTP server.
    pub server: ServerConfig,
}

/// `[fleet]`: limits over every workload prescale manages together, beside each
/// workload's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// Spending cap over every workload and the capacity no longer managed, $/h.
    #[serde(default)]
    pub budget_per_hour: Option<f64>,
    /// Monthly spending cap over them (UTC calendar month), paced as a workload's: each
    /// hour may spend what is left of it over the hours left in the month.
    #[serde(default)]
    pub budget_per_month: Option<f64>,
}

impl FleetConfig {
    /// Whether a fleet budget is set.
    pub fn budgeted(&self) -> bool {
        self.budget_per_hour.is_some() || self.budget_per_month.is_some()
    }

    /// The hourly cap in force, as [`Workload::hourly_cap`]: `spent` so far this month,
    /// `hours_left` in it.
    pub fn hourly_cap(&self, spent: f64, hours_left: f64) -> Option<f64> {
        crate::model::paced_cap(
            self.budget_per_hour,
            self.budget_per_month,
            spent,
            hours_left,
        )
    }
}

/// `[leader_election]`: with several prescale replicas, only the holder of a
/// Kubernetes Lease (`coordination.k8s.io/v1`) plans and acts; the others collect,
/// store and serve, and one takes over when the holder stops renewing (as
/// kube-controller-manager's `--leader-elect`, with client-go's timings). The API
/// server is `[providers.kubernetes]`'s (absent: the cluster prescale runs in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionConfig {
    /// Whether to take part (off: this process acts alone).
    #[serde(default)]
    pub enabled: bool,
    /// The Lease's name, in `[providers.kubernetes] namespace`.
    #[serde(default = "default_lease_name")]
    pub lease: String,
    /// Seconds a holder's lease lasts without renewal before another may take it.
    #[serde(default = "default_lease_duration")]
    pub lease_duration_s: u64,
    /// Seconds the holder keeps acting while it cannot renew; then it stops.
    #[serde(default = "default_renew_deadline")]
    pub renew_deadline_s: u64,
    /// Seconds between two tries to take or renew the lease.
    #[serde(default = "default_retry_period")]
    pub retry_period_s: u64,
    /// Where the other replicas reach this one's API (`http://POD_IP:9180`): the holder
    /// writes it on the Lease, and a standby forwards the dashboard's and the API's
    /// reads of plans, decisions and series to the holder there. Absent: a standby
    /// answers from its own store and status (`prescale run --advertise-url` sets it
    /// per replica).
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// The CA (PEM) that vouches for the other replicas' certificates when they
    /// advertise `https://` URLs (absent: the public roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            lease: default_lease_name(),
            lease_duration_s: default_lease_duration(),
            renew_deadline_s: default_renew_deadline(),
            retry_period_s: default_retry_period(),
            advertise_url: None,
            ca_file: None,
        }
    }
}

fn default_lease_name() -> String {
    "prescale".into()
}
fn default_lease_duration() -> u64 {
    15
}
fn default_renew_deadline() -> u64 {
    10
}
fn default_retry_period() -> u64 {
    2
}

/// Whether `url` is `http://` or `https://` followed by something.
pub fn is_http_url(url: &str) -> bool {
    ["http://", "https://"]
        .iter()
        .any(|p| url.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

/// Checks that the provider in use is configured, and its settings.
fn validate_providers(p: &ProvidersConfig) -> Result<(), (String, String)> {
    match p.use_ {
        ProviderKind::Sim => {}
        ProviderKind::Exec => {
            let Some(e) = &p.exec else {
                return Err((
                    "providers.exec".into(),
                    "use = \"exec\" needs a [providers.exec] section with command = [\"/path/to/hook\", ...]".into(),
                ));
            };
            if e.command.first().is_none_or(|c| c.trim().is_empty()) {
                return Err((
                    "providers.exec.command".into(),
                    "must name a program, e.g. [\"/usr/local/bin/prescale-hook\"]".into(),
                ));
            }
            if e.timeout_s == 0 {
                return Err((
                    "providers.exec.timeout_s".into(),
                    "must be at least 1 second".into(),
                ));
            }
        }
        ProviderKind::Webhook => {
            let Some(w) = &p.webhook else {
                return Err((
                    "providers.webhook".into(),
                    "use = \"webhook\" needs a [providers.webhook] section with url = \"http://...\"".into(),
                ));
            };
            if !is_http_url(&w.url) {
                return Err((
                    "providers.webhook.url".into(),
                    format!("{:?} must be an http:// or https:// URL", w.url),
                ));
            }
            if w.timeout_s == 0 {
                return Err((
                    "providers.webhook.timeout_s".into(),
                    "must be at least 1 second".into(),
                ));
            }
            if let Some(f) = &w.token_file {
                read_token_file(f).map_err(|m| ("providers.webhook.token_file".into(), m))?;
            }
            client_cert(
                w.cert_file.as_deref(),
                w.key_file.as_deref(),
                "providers.webhook.cert_file",
                "providers.webhook.key_file",
            )?;
        }
        // Checked with the workloads and tiers, in `Config::validate`.
        ProviderKind::Kubernetes => {}
        ProviderKind::Recommend => {}
    }
    Ok(())
}

/// Checks scrape jobs: unique names, `host:port` targets, a timeout within the interval.
fn validate_scrape(jobs: &[ScrapeConfig]) -> Result<(), (String, String)> {
    let mut names = BTreeSet::new();
    for (i, j) in jobs.iter().enumerate() {
        let k = |f: &str| format!("sources.scrape[{i}].{f}");
        if j.job.trim().is_empty() {
            return Err((k("job"), "must not be empty".into()));
        }
        if !names.insert(j.job.as_str()) {
            return Err((k("job"), format!("job {:?} is used twice", j.job)));
        }
        client_cert(
            j.cert_file.as_deref(),
            j.key_file.as_deref(),
            &k("cert_file"),
            &k("key_file"),
        )?;
        if j.targets.is_empty() && j.kubernetes.is_none() {
            return Err((
                k("targets"),
                "list at least one \"host:port\" to scrape, or find pods with [sources.scrape.kubernetes]".into(),
            ));
        }
        if let Some(sd) = &j.kubernetes {
            let k = |f: &str| format!("sources.scrape[{i}].kubernetes.{f}");
            validate_kube_connection(
                &k,
                sd.api_url.as_deref(),
                sd.token_file.as_deref(),
                sd.namespace.as_deref(),
            )?;
            client_cert(
                sd.api_cert_file.as_deref(),
                sd.api_key_file.as_deref(),
                &k("api_cert_file"),
                &k("api_key_file"),
            )?;
            if sd.port == Some(0) {
                return Err((k("port"), "must be a port number, 1 to 65535".into()));
            }
            match (&sd.port_name, sd.role) {
                (Some(_), SdRole::Pod) => {
                    return Err((
                        k("port_name"),
                        "names a Service port: set role = \"endpoints\", or give pods a port number in port".into(),
                    ))
                }
                (Some(n), SdRole::Endpoints) if n.trim().is_empty() => {
                    return Err((k("port_name"), "must not be empty".into()))
                }
                (Some(_), SdRole::Endpoints) if sd.port.is_some() => {
                    return Err((k("port_name"), "set port_name or port, not both".into()))
                }
                _ => {}
            }
            if sd.refresh_s == 0 {
                return Err((k("refresh_s"), "must be at least 1 second".into()));
            }
        }
        for (t, target) in j.targets.iter().enumerate() {
            let ok = !target.contains("://")
                && !target.contains('/')
                && target
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err((
                    format!("sources.scrape[{i}].targets[{t}]"),
                    format!("{target:?} is not host:port (e.g. \"127.0.0.1:9100\"; no scheme or path: those are `scheme` and `path`)"),
                ));
            }
        }
        if j.interval_s == 0 {
            return Err((k("interval_s"), "must be at least 1 second".into()));
        }
        if j.timeout_s == 0 || j.timeout_s > j.interval_s {
            return Err((
                k("timeout_s"),
                format!(
                    "must be between 1 and interval_s ({}), got {}",
                    j.interval_s, j.timeout_s
                ),
            ));
        }
        if j.scheme != "http" && j.scheme != "https" {
            return Err((
                k("scheme"),
                format!("{:?} must be \"http\" or \"https\"", j.scheme),
            ));
        }
        if !j.path.starts_with('/') {
            return Err((
                k("path"),
                format!("{:?} must start with '/', e.g. \"/metrics\"", j.path),
            ));
        }
    }
    Ok(())
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Directory of the embedded store (created if missing).
    pub path: PathBuf,
    /// Seconds samples are kept (0: forever). A workload keeps the series it reads, and
    /// its own, for the longest of this, its `retention_s` and its `history_s`.
    #[serde(default = "default_retention_s")]
    pub retention_s: u64,
    /// Most series the embedded store holds (0: no limit). Samples of a new series past
    /// it are refused, saying so, while the series already held go on: a sender whose
    /// label takes a new value each time (a request id) fills memory instead.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Seconds decisions are kept (0: forever), in `path` whichever store holds the
    /// samples.
    #[serde(default = "default_decision_retention_s")]
    pub decision_retention_s: u64,
    /// `[storage.remote]`: keep samples in a Prometheus-compatible server instead of
    /// `path` (which still holds decisions and state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteStorageConfig>,
}

/// `[storage.remote]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteStorageConfig {
    /// Its remote_write endpoint, e.g. `http://127.0.0.1:8428/api/v1/write`.
    pub write_url: String,
    /// The base of its Prometheus query API, e.g. `http://127.0.0.1:8428`.
    pub read_url: String,
    /// Seconds one request may take.
    #[serde(default = "default_remote_timeout")]
    pub timeout_s: u64,
    /// A file whose first line is sent as `Authorization: Bearer TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// PEM certificates to check the server's certificate against (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) to present where the server asks for one
    /// (mutual TLS), with its private key in `key_file`: set both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Basic authentication's user name (hosted Prometheus-compatible stores), with the
    /// password in `password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// A file whose first line is the Basic authentication password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
}

fn default_remote_timeout() -> u64 {
    10
}

fn default_max_series() -> usize {
    1_000_000
}

fn default_retention_s() -> u64 {
    30 * 86_400
}

fn default_decision_retention_s() -> u64 {
    365 * 86_400
}

/// `[sources]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// `[sources.host]`: the `/proc` collector.
    pub host: HostSourceConfig,
    /// `[sources.remote_write]`: Prometheus remote_write at `POST /api/v1/write`.
    #[serde(default)]
    pub remote_write: ReceiverConfig,
    /// `[sources.influx]`: InfluxDB line protocol at `POST /api/v2/write` and `/write`.
    #[serde(default)]
    pub influx: ReceiverConfig,
    /// `[[sources.scrape]]`: Prometheus exporters to pull from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrape: Vec<ScrapeConfig>,
}

/// `[[sources.scrape]]`: one scrape job, as a Prometheus `static_configs` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The job's name, the `job` label of everything it scrapes.
    pub job: String,
    /// `host:port` of each exporter, the `instance` label (may be empty with
    /// `kubernetes`).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Seconds between two scrapes of a target.
    #[serde(default = "default_scrape_interval")]
    pub interval_s: u64,
    /// Seconds a scrape may take (at most `interval_s`; when not given, 10 or
    /// `interval_s`, whichever is shorter).
    #[serde(default = "default_scrape_timeout")]
    pub timeout_s: u64,
    /// The HTTP path scraped.
    #[serde(default = "default_metrics_path")]
    pub path: String,
    /// `http` or `https` (which needs a build with the `tls` feature).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// PEM certificates to check the targets' certificates against instead of the public
    /// roots (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) to present where the server asks for one
    /// (mutual TLS), with its private key in `key_file`: set both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Most samples one scrape may have (0: no limit); a scrape with more fails whole,
    /// as with Prometheus' `sample_limit`: `up` is 0, nothing else is stored, and the
    /// target is down saying why.
    #[serde(default)]
    pub sample_limit: usize,
    /// `[sources.scrape.kubernetes]`: find the targets among a namespace's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesSdConfig>,
}

/// `[sources.scrape.kubernetes]`: a scrape job's targets are the running pods of a
/// namespace that a label selector picks, or the ready addresses of the Services it
/// picks (`role = "endpoints"`), found again every `refresh_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSdConfig {
    /// As `[providers.kubernetes] api_url` (absent: the cluster prescale runs in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// As `[providers.kubernetes] token_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// As `[providers.kubernetes] ca_file` (the API server's CA, not the pods').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_ca_file: Option<PathBuf>,
    /// As `[providers.kubernetes] cert_file` (prescale's certificate for the API
    /// server, not for the pods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_cert_file: Option<PathBuf>,
    /// As `[providers.kubernetes] key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// The pods' namespace (absent: prescale's own, else `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What is listed: `pod` (the pods the selector picks) or `endpoints` (the ready
    /// addresses of the Services it picks, as Prometheus' `endpoints` role).
    #[serde(default)]
    pub role: SdRole,
    /// A label selector, e.g. `app=api,track!=canary` (empty: every pod, or Service).
    #[serde(default)]
    pub selector: String,
    /// The port to scrape (absent: each pod's `prometheus.io/port` annotation; with
    /// endpoints, every TCP port unless `port_name` picks one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// With `role = "endpoints"`: the name of the Service port to scrape, e.g. `metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Seconds between two listings of the pods.
    #[serde(default = "default_sd_refresh")]
    pub refresh_s: u64,
}

fn default_sd_refresh() -> u64 {
    30
}

/// What `[sources.scrape.kubernetes]` lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdRole {
    /// Running pods.
    #[default]
    Pod,
    /// The ready addresses of Services (their Endpoints).
    Endpoints,
}

fn default_scheme() -> String {
    "http".into()
}

fn default_scrape_interval() -> u64 {
    15
}

fn default_scrape_timeout() -> u64 {
    10
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

/// `[sources.remote_write]`, `[sources.influx]`: an HTTP receiver that senders push to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Accept writes at all.
    pub enabled: bool,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[sources.host]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSourceConfig {
    /// Collect host metrics at all.
    pub enabled: bool,
    /// Seconds between collections.
    pub interval_s: u64,
    /// Root of the proc filesystem (a different root serves tests and containers).
    #[serde(default = "default_proc_root")]
    pub proc_root: PathBuf,
}

fn default_proc_root() -> PathBuf {
    PathBuf::from("/proc")
}

/// `[detect]`: anomaly detection on every sample stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Score every sample collected, scraped or received.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The anomaly likelihood (0..1) from which a sample is an anomaly: `L / (L + L0)`
    /// for a surprise of one in `10^L` under the series' fitted tail, where one sample
    /// interval is one in `10^L0` of ten days, so 0.5 is a surprise expected less than
    /// once in ten days.
    #[serde(default = "default_detect_threshold")]
    pub threshold: f64,
    /// Series watched at most (about a kilobyte each).
    #[serde(default = "default_detect_max_series")]
    pub max_series: usize,
    /// Only the series these selectors pick (`name`, `name{...}` or `{...}`, as
    /// Prometheus' `match[]`); empty: every series.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<String>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: default_detect_threshold(),
            max_series: default_detect_max_series(),
            match_: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_detect_threshold() -> f64 {
    0.5
}

fn default_detect_max_series() -> usize {
    100_000
}

/// `[control]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Seconds between reconcile passes.
    pub interval_s: u64,
    /// Whether plans read a tier's lead times as measured (the larger of measured and
    /// configured) once its instances are measured to come up slower than configured.
    #[serde(default = "default_true")]
    pub measured_lead_times: bool,
    /// Seconds between two tunings of every workload's safeguards on its stored demand
    /// (0: never), as `prescale tune` replays it: the advice is shown, and applied only
    /// with `tune_apply`.
    #[serde(default = "default_tune_every_s")]
    pub tune_every_s: u64,
    /// Days of stored demand each tuning replays, back from the last pass.
    #[serde(default = "default_tune_days")]
    pub tune_days: u64,
    /// Whether the daemon applies a tuning's advice itself: where it held on each half
    /// of the days replayed, written into the configuration file (`--config`) as
    /// `prescale tune --write` writes it, and reloaded. Off by default: the advice is
    /// shown and a person applies it.
    #[serde(default)]
    pub tune_apply: bool,
}

fn default_tune_every_s() -> u64 {
    86_400
}

fn default_tune_days() -> u64 {
    7
}

/// `[providers]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    /// The provider that carries out actions.
    #[serde(rename = "use")]
    pub use_: ProviderKind,
    /// `[providers.sim]`
    pub sim: SimProviderConfig,
    /// `[providers.exec]`: a command run for each action (and, if asked, for the state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecProviderConfig>,
    /// `[providers.webhook]`: an HTTP endpoint posted each action (and asked the state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookProviderConfig>,
    /// `[providers.kubernetes]`: the API server and the objects it scales (all optional
    /// inside a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesProviderConfig>,
}

/// Which provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderKind {
    /// The built-in simulated cloud.
    Sim,
    /// A command (`[providers.exec]`).
    Exec,
    /// An HTTP endpoint (`[providers.webhook]`).
    Webhook,
    /// Kubernetes Deployments, StatefulSets or Argo Rollouts (`[providers.kubernetes]`).
    Kubernetes,
    /// Nothing is acted on: each action is logged as a recommendation and prescale
    /// plans on as if it had been carried out.
    Recommend,
}

/// `[providers.exec]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecProviderConfig {
    /// The program and its arguments (no shell): it reads one JSON request on stdin and
    /// exits 0 when done; for a state request it prints the state as JSON.
    pub command: Vec<String>,
    /// Seconds a call may take before it is killed and counted as failed.
    #[serde(default = "default_hook_timeout")]
    pub timeout_s: u64,
    /// Ask the hook for the capacity it holds at every pass (the truth, which survives
    /// prescale's restarts); otherwise prescale counts what it asked for, ready after
    /// the tier's lead time.
    #[serde(default)]
    pub report_state: bool,
}

/// `[providers.webhook]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookProviderConfig {
    /// `http://host:port/path` that each request is POSTed to as JSON.
    pub url: String,
    /// Seconds a call may take.
    #[serde(default = "default_hook_timeout")]
    pub timeout_s: u64,
    /// A file whose first line is sent as `Authorization: Bearer TOKEN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// PEM certificates to check the endpoint's certificate against (https only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain) to present where the server asks for one
    /// (mutual TLS), with its private key in `key_file`: set both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// As for `[providers.exec]`.
    #[serde(default)]
    pub report_state: bool,
}

/// `[providers.kubernetes]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesProviderConfig {
    /// The API server, `https://host:port`, or `http://127.0.0.1:8001` behind
    /// `kubectl proxy`. Absent: the cluster prescale runs in (`KUBERNETES_SERVICE_HOST`
    /// and `KUBERNETES_SERVICE_PORT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// A file whose first line is the bearer token, read again at every call. Absent:
    /// the pod's service-account token when there is one, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// PEM certificates to check the API server's against. Absent: the pod's
    /// service-account CA when there is one, else the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate to authenticate with (a kubeconfig's
    /// `client-certificate`, e.g. kubeadm's admin.conf), with its private key in
    /// `key_file` (`client-key`): set both or neither. It can stand in for a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The namespace of the objects. Absent: the pod's own, else `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object each workload tier is: `{workload}` and `{tier}` are replaced.
    #[serde(default = "default_kube_name")]
    pub name: String,
    /// `deployment`, `statefulset` or `rollout` (Argo Rollouts).
    #[serde(default)]
    pub kind: KubeKind,
    /// Seconds a call may take.
    #[serde(default = "default_hook_timeout")]
    pub timeout_s: u64,
}

impl Default for KubernetesProviderConfig {
    fn default() -> Self {
        Self {
            api_url: None,
            token_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            namespace: None,
            name: default_kube_name(),
            kind: KubeKind::default(),
            timeout_s: default_hook_timeout(),
        }
    }
}

/// What each workload tier is in Kubernetes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeKind {
    /// `apps/v1` Deployment.
    #[default]
    Deployment,
    /// `apps/v1` StatefulSet.
    StatefulSet,
    /// Argo Rollouts' `argoproj.io/v1alpha1` Rollout, whose pods move to a new version
    /// by canary or blue-green steps.
    Rollout,
}

impl KubeKind {
    /// The API group of its objects (`apps`), as RBAC rules name it.
    pub fn group(self) -> &'static str {
        match self {
            KubeKind::Deployment | KubeKind::StatefulSet => "apps",
            KubeKind::Rollout => "argoproj.io",
        }
    }

    /// The group's version prescale speaks.
    pub fn version(self) -> &'static str {
        match self {
            KubeKind::Deployment | KubeKind::StatefulSet => "v1",
            KubeKind::Rollout => "v1alpha1",
        }
    }

    /// Its resource in API paths and RBAC rules (`deployments`).
    pub fn resource(self) -> &'static str {
        match self {
            KubeKind::Deployment => "deployments",
            KubeKind::StatefulSet => "statefulsets",
            KubeKind::Rollout => "rollouts",
        }
    }

    /// Its kind, as people name it (`Deployment`).
    pub fn noun(self) -> &'static str {
        match self {
            KubeKind::Deployment => "Deployment",
            KubeKind::StatefulSet => "StatefulSet",
            KubeKind::Rollout => "Rollout",
        }
    }
}

fn default_kube_name() -> String {
    "{workload}-{tier}".into()
}

/// The Kubernetes object name of `workload`'s `tier` under the `template` of
/// `[providers.kubernetes] name`.
pub fn kube_object_name(template: &str, workload: &str, tier: &str) -> String {
    template
        .replace("{workload}", workload)
        .replace("{tier}", tier)
}

/// Whether `name` can name a Kubernetes object (a DNS subdomain, RFC 1123): lower-case
/// letters, digits, `-` and `.`, each dot-separated part starting and ending with a
/// letter or digit, at most 253 characters. With `label` (a namespace), no dots and at
/// most 63.
pub fn valid_kube_name(name: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    !name.is_empty()
        && name.len() <= max
        && !(label && name.contains('.'))
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A client certificate and its key (`cert` and `key`, named `cert_key` and `key_key`
/// in errors), both set or neither: the pair, or `None`. Whether the files hold a PEM
/// certificate and key is checked where the connection is made.
pub fn client_cert<'a>(
    cert: Option<&'a std::path::Path>,
    key: Option<&'a std::path::Path>,
    cert_key: &str,
    key_key: &str,
) -> Result<Option<(&'a std::path::Path, &'a std::path::Path)>, (String, String)> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        (Some(c), None) => Err((
            key_key.into(),
            format!(
                "not set, but {cert_key} is ({}): a client certificate needs the file of its private key",
                c.display()
            ),
        )),
        (None, Some(k)) => Err((
            cert_key.into(),
            format!(
                "not set, but {key_key} is ({}): set the client certificate the key belongs to",
                k.display()
            ),
        )),
    }
}

/// Checks how an API server is reached (the provider's and pod discovery's settings
/// alike): `key` names a field of the section in errors.
fn validate_kube_connection(
    key: &dyn Fn(&str) -> String,
    api_url: Option<&str>,
    token_file: Option<&std::path::Path>,
    namespace: Option<&str>,
) -> Result<(), (String, String)> {
    if let Some(u) = api_url.filter(|u| !is_http_url(u)) {
        return Err((
            key("api_url"),
            format!("{u:?} must be an http:// or https:// URL, e.g. https://10.0.0.1:443 or http://127.0.0.1:8001 (kubectl proxy)"),
        ));
    }
    if let Some(f) = token_file {
        read_token_file(f).map_err(|m| (key("token_file"), m))?;
    }
    if let Some(ns) = namespace.filter(|n| !valid_kube_name(n, true)) {
        return Err((
            key("namespace"),
            format!("{ns:?} is not a Kubernetes namespace name (lower-case letters, digits and -, at most 63)"),
        ));
    }
    Ok(())
}

/// Checks `[providers.kubernetes]` against the workloads and tiers: every workload tier
/// gets a valid object name of its own.
fn validate_kubernetes(
    k: &KubernetesProviderConfig,
    workloads: &[Workload],
    tiers: &[Tier],
) -> Result<(), (String, String)> {
    let key = |f: &str| format!("providers.kubernetes.{f}");
    validate_kube_connection(
        &key,
        k.api_url.as_deref(),
        k.token_file.as_deref(),
        k.namespace.as_deref(),
    )?;
    client_cert(
        k.cert_file.as_deref(),
        k.key_file.as_deref(),
        &key("cert_file"),
        &key("key_file"),
    )?;
    if k.timeout_s == 0 {
        return Err((key("timeout_s"), "must be at least 1 second".into()));
    }
    if !k.name.contains("{workload}") {
        return Err((
            key("name"),
            format!(
                "{:?} must contain {{workload}}, so each workload scales its own objects",
                k.name
            ),
        ));
    }
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    for w in workloads {
        for t in tiers.iter().filter(|t| t.serves(w)) {
            let n = kube_object_name(&k.name, &w.name, &t.name);
            if !valid_kube_name(&n, false) {
                return Err((
                    key("name"),
                    format!(
                        "makes {n:?} for workload {:?}, tier {:?}: Kubernetes names are lower-case letters, digits, - and ., starting and ending with a letter or digit",
                        w.name, t.name
                    ),
                ));
            }
            if let Some((w0, t0)) = seen.insert(n.clone(), (w.name.clone(), t.name.clone())) {
                return Err((
                    key("name"),
                    format!(
                        "makes {n:?} for both {w0}/{t0} and {}/{}: add {{tier}} to it, or let each tier serve other workloads (tiers[].workloads)",
                        w.name, t.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn default_hook_timeout() -> u64 {
    30
}

/// The first line of a token file, refusing an unreadable or empty one.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(format!(
            "the token file {} is empty; put the token on its first line",
            path.display()
        ));
    }
    Ok(token.to_string())
}

/// `[providers.sim]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimProviderConfig {
    /// Seed for spot interruptions; the same seed replays the same interruptions.
    pub seed: u64,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// A file whose first line is the bearer token that writes must carry
    /// (`Authorization: Bearer TOKEN`, or `Token TOKEN` as InfluxDB clients send it).
    /// Required when the server listens beyond loopback with a receiver enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (the server's first) and the private
    /// key in `key_file`: set both or neither. Read again at each reload, so a renewed
    /// certificate (cert-manager's) is served without a restart. Needs a build with
    /// `--features tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The PEM private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Every endpoint but `/healthz` needs the token, reads and the dashboard too (a
    /// browser asks for it: any user name, the token as the password); needs
    /// `token_file`. Off: only writes and changes do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_for_reads: bool,
}

impl ServerConfig {
    /// The certificate and key to serve HTTPS with, when set.
    pub fn tls_files(&self) -> Option<(&std::path::Path, &std::path::Path)> {
        self.cert_file.as_deref().zip(self.key_file.as_deref())
    }
}

/// A configuration problem, located in the source text.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// The file name (or `<built-in>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// The dotted key path, e.g. `workloads[0].sla_quantile`.
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": key `{}`: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, col)
}

/// Finds the line on which a dotted key path (`workloads[1].tiers`) is set, by walking
/// the table headers. Returns the line of the table header when the key itself is not
/// written (a default was used).
pub fn locate(src: &str, path: &str) -> Option<usize> {
    // Split "a[1].b.c" into table part and final key.
    let parts: Vec<&str> = path.split('.').collect();
    let (last, tables) = parts.split_last()?;
    let mut want_header = String::new();
    let mut want_index = 0usize;
    let mut plain_tables: Vec<String> = Vec::new();
    for t in tables {
        if let Some((name, idx)) = t.split_once('[') {
            want_index = idx.trim_end_matches(']').parse().ok()?;
            plain_tables.push(name.to_string());
        } else {
            plain_tables.push(t.to_string());
        }
    }
    want_header.push_str(&plain_tables.join("."));
    let is_array = tables.iter().any(|t| t.contains('['));
    let mut in_table = want_header.is_empty();
    let mut seen = 0usize;
    let mut header_line = None;
    for (i, raw) in src.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line.trim_matches(|c| c == '[' || c == ']').trim();
            in_table = false;
            if name == want_header {
                if is_array {
                    if seen == want_index {
                        in_table = true;
                        header_line = Some(i + 1);
                    }
                    seen += 1;
                } else {
                    in_table = true;
                    header_line = Some(i + 1);
                }
            }
            continue;
        }
        if in_table {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim().trim_matches('"') == *last {
                    return Some(i + 1);
                }
            }
        }
    }
    header_line
}

/// `over` laid over `base`: tables merge key by key, anything else (values, lists)
/// replaces what `base` has. How a file that says only what differs from built-in
/// defaults is read.
pub fn overlay(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => overlay(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The keys, as the configuration names them, whose values differ between two
/// settings of one section or workload (`T` serialises to a table), sorted: what a
/// reload says changed. A value that is not a table differs as a whole (`["*"]`).
pub fn changed_keys<T: Serialize>(a: &T, b: &T) -> Vec<String> {
    let (a, b) = (serde_json::to_value(a), serde_json::to_value(b));
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (&a, &b) else {
        return if a.ok() == b.ok() {
            Vec::new()
        } else {
            vec!["*".into()]
        };
    };
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the expected key most
/// like `x` named first, as cargo and clap do: "unknown field `sla_quantle` (did you
/// mean `sla_quantile`?), expected one of ...". `None` when none is close.
pub fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let best = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| {
            let close = strsim::normalized_levenshtein(field, k);
            // `listen_port` for `listen`: a known key with something added.
            let within = field.starts_with(k) || k.starts_with(field);
            (if within { close.max(0.6) } else { close }, k)
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))?
        .1;
    Some(format!(
        "unknown field `{field}` (did you mean `{best}`?){expected}"
    ))
}

/// A deserialization error of configuration text `src`, located in it.
/// The `i`-th table of the list at `path` (`["sources", "scrape"]`) in the merged
/// configuration, as written (a list a file gives replaces the default one whole).
fn list_entry<'a>(merged: &'a toml::Table, path: &[&str], i: usize) -> Option<&'a toml::Table> {
    let (last, tables) = path.split_last()?;
    let mut t = merged;
    for k in tables {
        t = t.get(*k)?.as_table()?;
    }
    t.get(*last)?.as_array()?.get(i)?.as_table()
}

fn located(src: &str, file: &str, e: serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
    let key = e.path().to_string();
    let inner = e.into_inner();
    let (line, column) = match inner.span() {
        Some(s) => {
            let (l, c) = line_col(src, s.start);
            (Some(l), Some(c))
        }
        None => (locate(src, &key), None),
    };
    let mut message = inner.message().trim().to_string();
    if message.starts_with("missing field") {
        message.push_str(" (see `prescale config default` for every key)");
    }
    if let Some(m) = did_you_mean(&message) {
        message = m;
    }
    ConfigError {
        file: file.to_string(),
        line,
        column,
        key: if key == "." { String::new() } else { key },
        message,
    }
}

impl Config {
    /// Parses and validates configuration text; `file` names it in errors.
    pub fn parse(src: &str, file: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(src).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(src, s.start)).unzip();
            ConfigError {
                file: file.to_string(),
                line,
                column,
                key: String::new(),
                message: format!("not valid TOML: {}", e.message().trim()),
            }
        })?;
        // A file need only say what differs from the built-in defaults: what it leaves
        // out (a section, a key of a section) comes from them, and a list it gives
        // (tiers, workloads, scrape jobs) replaces theirs.
        let table: toml::Table = src.parse().unwrap_or_default();
        let mut merged: toml::Table = DEFAULT_TOML.parse().expect("the built-in text is TOML");
        overlay(&mut merged, table);
        let cfg = match serde_path_to_error::deserialize::<_, Config>(de) {
            Ok(cfg) => cfg,
            Err(direct) => {
                serde_path_to_error::deserialize::<_, Config>(toml::Value::Table(merged.clone()))
                    .map_err(|e| {
                        // The file's own error where it is the same one: it knows the column.
                        let e = if direct.path().to_string() == e.path().to_string() {
                            direct
                        } else {
                            e
                        };
                        located(src, file, e)
                    })?
            }
        };
        let mut cfg = cfg;
        // Class defaults fill what each workload's own table leaves out.
        for (i, w) in cfg.workloads.iter_mut().enumerate() {
            let keys = list_entry(&merged, &["workloads"], i);
            w.apply_class_defaults(|k| keys.is_some_and(|t| t.contains_key(k)));
        }
        // A scrape job that sets no timeout scrapes within its default or its interval,
        // whichever is shorter, as Prometheus' do: a job every 5 s times out after 5 s,
        // rather than being refused for a 10 s timeout nobody wrote.
        for (i, j) in cfg.sources.scrape.iter_mut().enumerate() {
            let keys = list_entry(&merged, &["sources", "scrape"], i);
            if !keys.is_some_and(|t| t.contains_key("timeout_s")) {
                j.timeout_s = j.timeout_s.min(j.interval_s.max(1));
            }
        }
        cfg.validate().map_err(|(key, message)| ConfigError {
            file: file.to_string(),
            line: locate(src, &key),
            column: None,
            key,
            message,
        })?;
        Ok(cfg)
    }

    /// Every key of the configuration as TOML (no comments): what is in effect after a
    /// file is laid over the defaults. [`Config::parse`] reads it back as it is.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a configuration is TOML")
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&src, &file)
    }

    /// The address the server should bind.
    pub fn listen_addr(&self) -> SocketAddr {
        self.server.listen.parse().expect("validated at load time")
    }

    /// How long samples of `key` are kept, in seconds; `None` for ever. Series a workload
    /// reads (its demand and dimensions) and writes (`prescale_*{workload="name"}`) are
    /// kept for the longest of `storage.retention_s`, the workload's `retention_s` and its
    /// `history_s`, so the forecaster never loses history it reads; other series for
    /// `storage.retention_s`.
    pub fn retention_s_for(&self, key: &SeriesKey) -> Option<u64> {
        let mut keep = self.storage.retention_s;
        if keep == 0 {
            return None;
        }
        for w in &self.workloads {
            let own = key.name.starts_with("prescale_")
                && key.labels.get("workload").is_some_and(|n| *n == w.name);
            let reads = std::iter::once(&w.demand)
                .chain(w.dimensions.values().map(|d| &d.series))
                .filter_map(|e| Demand::parse(e).ok())
                .any(|e| e.selector().matches(key));
            if own || reads {
                match w.retention_s {
                    Some(0) => return None,
                    Some(r) => keep = keep.max(r),
                    None => {}
                }
                keep = keep.max(w.history_s);
            }
        }
        Some(keep)
    }

    /// Settings that run but most likely not as meant at `now`, for warnings at start.
    pub fn cautions(&self, now: crate::TimestampMs) -> Vec<String> {
        let mut out = Vec::new();
        if self.leader_election.enabled
            && self.storage.remote.is_some()
            && self.sources.host.enabled
        {
            out.push("leader_election with a shared [storage.remote] and [sources.host] enabled: every replica writes its own node's host_* series under the same names, so the shared store holds their samples mixed; set [sources.host] enabled = false and manage scraped or pushed series".into());
        }
        if self.leader_election.enabled {
            let book = match self.providers.use_ {
                ProviderKind::Sim => {
                    Some("the simulated cloud (providers.use = \"sim\") runs in each replica")
                }
                ProviderKind::Recommend => Some(
                    "the recommend provider keeps its book of what it recommended in each replica",
                ),
                _ => None,
            };
            if let Some(what) = book {
                out.push(format!("leader_election with a provider that keeps what it holds in the replica: {what}, so the replica that takes the lease over plans from its own book, not from what the holder before it did; for capacity held elsewhere use providers.use = \"kubernetes\", or a hook with report_state = true"));
            }
        }
        let floors: f64 = self
            .workloads
            .iter()
            .filter_map(|w| w.floor_per_hour(&self.tiers))
            .sum();
        if let Some(b) = self.fleet.budget_per_hour.filter(|b| floors > *b) {
            out.push(format!(
                "fleet.budget_per_hour = {b} is below what the workloads' min_instances cost together (at least ${floors:.2}/h): each gets a share of it in proportion to its minimum's cost, and runs fewer instances than its minimum"
            ));
        }
        for w in &self.workloads {
            let serving: Vec<&Tier> = self.tiers.iter().filter(|t| t.serves(w)).collect();
            let floor = w.floor_per_hour(&self.tiers).unwrap_or(0.0);
            if let Some(b) = w.budget_per_hour.filter(|b| floor > *b) {
                out.push(format!(
                    "workload {:?}: min_instances = {} costs at least ${floor:.2}/h, more than budget_per_hour = {b}: the budget binds first, so it may run fewer instances than its minimum",
                    w.name, w.min_instances
                ));
            }
            let lead_s = serving.iter().map(|t| t.lead_time_p90()).max().unwrap_or(0);
            for e in &w.events {
                if e.end.0 <= now {
                    out.push(format!(
                        "workload {:?}: planned event {:?} ended at {}: it no longer changes plans, and can be removed",
                        w.name,
                        e.name,
                        crate::format_ts(e.end.0)
                    ));
                } else if e.start.0 - now < lead_s as i64 * 1000 {
                    out.push(format!(
                        "workload {:?}: planned event {:?} starts at {}, sooner than its slowest tier's 90th-percentile lead time ({lead_s} s) from now: its capacity may not all be ready when it starts",
                        w.name,
                        e.name,
                        crate::format_ts(e.start.0)
                    ));
                }
            }
            for r in &w.recurring_events {
                if let Some(e) = r
                    .next(now)
                    .filter(|e| e.start.0 - now < lead_s as i64 * 1000)
                {
                    out.push(format!(
                        "workload {:?}: recurring event {:?} next starts at {}, sooner than its slowest tier's 90th-percentile lead time ({lead_s} s) from now: its capacity may not all be ready when it starts",
                        w.name,
                        r.name,
                        crate::format_ts(e.start.0)
                    ));
                }
            }
        }
        // A tier's max_instances bounds it over every workload: the workloads that may
        // use only some tiers must fit their min_instances in them together.
        let mut said = std::collections::BTreeSet::new();
        for w in &self.workloads {
            let only: Vec<&Tier> = self.tiers.iter().filter(|t| t.serves(w)).collect();
            let names: Vec<&str> = only.iter().map(|t| t.name.as_str()).collect();
            let within: Vec<&Workload> = self
                .workloads
                .iter()
                .filter(|o| {
                    self.tiers
                        .iter()
                        .filter(|t| t.serves(o))
                        .all(|t| names.contains(&t.name.as_str()))
                })
                .collect();
            let least: u64 = within.iter().map(|o| u64::from(o.min_instances)).sum();
            let most: u64 = only.iter().map(|t| u64::from(t.max_instances)).sum();
            if within.len() > 1 && least > most && said.insert(names.clone()) {
                let who: Vec<String> = within
                    .iter()
                    .map(|o| format!("{} {}", o.name, o.min_instances))
                    .collect();
                out.push(format!(
                    "workloads {} keep {least} instances at least (min_instances) on tiers {} that hold at most {most} over every workload (max_instances): the lower priorities, or those planned later, run fewer",
                    who.join(", "),
                    names.join(", ")
                ));
            }
        }
        out
    }

    /// Each workload's recurring events as `config check` shows them: the pattern in
    /// words and its next three starts on its clock, so that a pattern can be checked
    /// before it acts.
    pub fn recurring_summary(&self, now: crate::TimestampMs) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.workloads {
            for r in &w.recurring_events {
                let Ok(s) = r.schedule() else { continue };
                let mut next = Vec::new();
                let mut at = s.next(now, true);
                while let Some(t) = at.filter(|_| next.len() < 3) {
                    next.push(s.local(t));
                    at = s.next(t, false);
                }
                out.push(format!(
                    "workload {:?}: recurring event {:?} every {:?} in {} ({}), for {} s: next at {}",
                    w.name,
                    r.name,
                    r.every,
                    r.timezone,
                    s.describe().trim_end_matches('.'),
                    r.duration_s,
                    next.join(", ")
                ));
            }
        }
        out
    }

    /// What the configuration reaches over HTTPS (URLs and CA files), by key: empty when
    /// a build without TLS can run it.
    pub fn https_uses(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, j) in self.sources.scrape.iter().enumerate() {
            if j.scheme == "https" || j.ca_file.is_some() || j.cert_file.is_some() {
                out.push(format!("sources.scrape[{i}] ({})", j.job));
            }
            if let Some(sd) = &j.kubernetes {
                // No api_url: the cluster's own API server, always https.
                if sd
                    .api_url
                    .as_deref()
                    .is_none_or(|u| u.starts_with("https://"))
                    || sd.api_ca_file.is_some()
                    || sd.api_cert_file.is_some()
                {
                    out.push(format!("sources.scrape[{i}].kubernetes ({})", j.job));
                }
            }
        }
        if let Some(r) = &self.storage.remote {
            if r.write_url.starts_with("https://")
                || r.read_url.starts_with("https://")
                || r.ca_file.is_some()
                || r.cert_file.is_some()
            {
                out.push("storage.remote".into());
            }
        }
        if let Some(w) = &self.providers.webhook {
            if self.providers.use_ == ProviderKind::Webhook
                && (w.url.starts_with("https://") || w.ca_file.is_some() || w.cert_file.is_some())
            {
                out.push("providers.webhook".into());
            }
        }
        // The provider, and leader election on its API server.
        for (on, what) in [
            (
                self.providers.use_ == ProviderKind::Kubernetes,
                "providers.kubernetes",
            ),
            (
                self.leader_election.enabled,
                "leader_election (on [providers.kubernetes]'s API server)",
            ),
        ] {
            let k = self.providers.kubernetes.clone().unwrap_or_default();
            // No api_url: the cluster's own API server, always https.
            if on
                && (k
                    .api_url
                    .as_deref()
                    .is_none_or(|u| u.starts_with("https://"))
                    || k.ca_file.is_some()
                    || k.cert_file.is_some())
            {
                out.push(what.into());
            }
        }
        if self.leader_election.enabled
            && (self
                .leader_election
                .advertise_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
                || self.leader_election.ca_file.is_some())
        {
            out.push("leader_election.advertise_url (forwarding to the holder)".into());
        }
        if self.server.cert_file.is_some() {
            out.push("server.cert_file (serving HTTPS)".into());
        }
        out
    }

    /// Whether a receiver (remote_write or line protocol) accepts writes.
    pub fn receivers_enabled(&self) -> bool {
        self.sources.remote_write.enabled || self.sources.influx.enabled
    }

    /// The token that writes must carry: the first line of `server.token_file`, or `None`
    /// when no file is set. Refuses an unreadable or empty file, and no file at all while
    /// the server listens beyond loopback with a receiver enabled, saying what to set.
    pub fn write_token(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.server.token_file else {
            let exposed = self
                .server
                .listen
                .parse::<SocketAddr>()
                .map(|a| !a.ip().is_loopback())
                .unwrap_or(false);
            if exposed && self.receivers_enabled() {
                return Err(format!(
                    "listening on {} (beyond loopback) with a receiver enabled needs a token: set server.token_file to a file holding one, listen on 127.0.0.1, or disable sources.remote_write and sources.influx",
                    self.server.listen
                ));
            }
            return Ok(None);
        };
        read_token_file(path).map(Some)
    }

    /// Checks the rules serde cannot express; returns (key path, message) on failure.
    fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: String, m: String| Err((k, m));
        if self.sources.host.interval_s == 0 {
            return err(
                "sources.host.interval_s".into(),
                "must be at least 1 second".into(),
            );
        }
        if !(self.detect.threshold > 0.0 && self.detect.threshold < 1.0) {
            return err(
                "detect.threshold".into(),
                format!(
                    "{} is not a likelihood between 0 and 1; 0.5 is a surprise a series' own tail expects less than once in ten days",
                    self.detect.threshold
                ),
            );
        }
        for (i, m) in self.detect.match_.iter().enumerate() {
            if let Err(e) = crate::SeriesMatch::parse(m, "") {
                return err(format!("detect.match[{i}]"), e);
            }
        }
        if self.detect.enabled && self.detect.max_series == 0 {
            return err(
                "detect.max_series".into(),
                "must be at least 1 (or set enabled = false)".into(),
            );
        }
        if self.control.interval_s == 0 {
            return err(
                "control.interval_s".into(),
                "must be at least 1 second".into(),
            );
        }
        if self.control.tune_every_s != 0 && self.control.tune_every_s < 3600 {
            return err(
                "control.tune_every_s".into(),
                format!(
                    "must be 0 (never) or at least 3600 seconds: each tuning replays days of every workload's demand, got {}",
                    self.control.tune_every_s
                ),
            );
        }
        if !(1..=90).contains(&self.control.tune_days) {
            return err(
                "control.tune_days".into(),
                format!(
                    "must be between 1 and 90 days, got {}",
                    self.control.tune_days
                ),
            );
        }
        if self.control.tune_apply && self.control.tune_every_s == 0 {
            return err(
                "control.tune_apply".into(),
                "applies each tuning's advice, and tune_every_s = 0 never tunes: set tune_every_s (86400 tunes daily) or tune_apply = false".into(),
            );
        }
        if self.control.tune_apply && self.leader_election.enabled {
            return err(
                "control.tune_apply".into(),
                "would write the advice into this replica's file alone, and the other replicas of [leader_election] would run on without it: set tune_apply = false and write the advice where the configuration is kept (`prescale tune WORKLOAD --write FILE`)".into(),
            );
        }
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return err(
                "server.listen".into(),
                format!(
                    "{:?} is not an address:port such as \"127.0.0.1:9180\"",
                    self.server.listen
                ),
            );
        }
        if let Err(m) = self.write_token() {
            return err("server.token_file".into(), m);
        }
        if let Some(r) = &self.storage.remote {
            for (k, url) in [("write_url", &r.write_url), ("read_url", &r.read_url)] {
                if !is_http_url(url) {
                    return err(
                        format!("storage.remote.{k}"),
                        format!("{url:?} must be an http:// or https:// URL"),
                    );
                }
            }
            if r.timeout_s == 0 {
                return err(
                    "storage.remote.timeout_s".into(),
                    "must be at least 1 second".into(),
                );
            }
            if let Some(f) = &r.token_file {
                read_token_file(f).map_err(|m| ("storage.remote.token_file".to_string(), m))?;
            }
            client_cert(
                r.cert_file.as_deref(),
                r.key_file.as_deref(),
                "storage.remote.cert_file",
                "storage.remote.key_file",
            )?;
            match (&r.username, &r.password_file, &r.token_file) {
                (Some(_), Some(f), None) => {
                    read_token_file(f)
                        .map_err(|m| ("storage.remote.password_file".to_string(), m))?;
                }
                (None, None, _) => {}
                (_, _, Some(_)) => {
                    return err(
                        "storage.remote.username".into(),
                        "use either token_file (Bearer) or username and password_file (Basic), not both".into(),
                    )
                }
                (Some(_), None, None) => {
                    return err(
                        "storage.remote.password_file".into(),
                        "username needs a password_file holding the password".into(),
                    )
                }
                (None, Some(_), None) => {
                    return err(
                        "storage.remote.username".into(),
                        "password_file needs the username it goes with".into(),
                    )
                }
            }
        }
        match (&self.server.cert_file, &self.server.key_file) {
            (Some(c), None) => {
                return err(
                    "server.key_file".into(),
                    format!(
                        "not set, but server.cert_file is ({}): serving HTTPS needs the certificate's private key",
                        c.display()
                    ),
                )
            }
            (None, Some(k)) => {
                return err(
                    "server.cert_file".into(),
                    format!(
                        "not set, but server.key_file is ({}): set the certificate the key belongs to",
                        k.display()
                    ),
                )
            }
            _ => {}
        }
        if self.server.token_for_reads && self.server.token_file.is_none() {
            return err(
                "server.token_for_reads".into(),
                "needs server.token_file: the token reads would have to carry".into(),
            );
        }
        validate_scrape(&self.sources.scrape)?;
        validate_providers(&self.providers)?;
        let le = &self.leader_election;
        if le.enabled {
            if le.lease.trim().is_empty() {
                return err("leader_election.lease".into(), "must name the Lease".into());
            }
            if !(1 <= le.retry_period_s
                && le.retry_period_s < le.renew_deadline_s
                && le.renew_deadline_s < le.lease_duration_s)
            {
                return err(
                    "leader_election".into(),
                    format!(
                        "needs 1 <= retry_period_s < renew_deadline_s < lease_duration_s (e.g. 2, 10, 15), got {}, {} and {}",
                        le.retry_period_s, le.renew_deadline_s, le.lease_duration_s
                    ),
                );
            }
            // The replica taking over knows what the hook runs only if the hook says.
            let hook = match self.providers.use_ {
                ProviderKind::Exec => self
                    .providers
                    .exec
                    .as_ref()
                    .map(|e| ("exec", e.report_state)),
                ProviderKind::Webhook => self
                    .providers
                    .webhook
                    .as_ref()
                    .map(|w| ("webhook", w.report_state)),
                _ => None,
            };
            if let Some((kind, false)) = hook {
                return err(
                    format!("providers.{kind}.report_state"),
                    "must be true with [leader_election]: without it each replica keeps its own book of what it asked the hook for, so the replica that takes the lease over would not know what the one before it provisioned, would ask for it again and leave the first lot running with nobody watching it; set report_state = true and have the hook answer {\"type\": \"state\"} requests with what runs, or run one replica without [leader_election]".into(),
                );
            }
            if let Some(u) = &le.advertise_url {
                if !is_http_url(u) {
                    return err(
                        "leader_election.advertise_url".into(),
                        format!("must be an http:// or https:// URL where the other replicas reach this one (e.g. http://10.0.0.7:9180), got {u:?}"),
                    );
                }
            }
        }
        validate_tiers(&self.tiers)?;
        for (k, b) in [
            ("budget_per_hour", self.fleet.budget_per_hour),
            ("budget_per_month", self.fleet.budget_per_month),
        ] {
            if b.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
                return err(
                    format!("fleet.{k}"),
                    "must be zero or positive (dollars; leave it out for none)".into(),
                );
            }
        }
        let mut wnames = BTreeSet::new();
        for (i, w) in self.workloads.iter().enumerate() {
            let k = |f: &str| format!("workloads[{i}].{f}");
            if w.name.trim().is_empty() {
                return err(k("name"), "must not be empty".into());
            }
            if !wnames.insert(w.name.clone()) {
                return err(
                    k("name"),
                    format!("workload name {:?} is used twice", w.name),
                );
            }
            if let Err(e) = Demand::parse(&w.demand) {
                return err(k("demand"), e.to_string());
            }
            if let Some(r) = w.retention_s.filter(|&r| r > 0 && r < w.history_s) {
                return err(
                    k("retention_s"),
                    format!(
                        "{r} is shorter than history_s ({}): the forecaster would lose history it reads; use at least {} or 0 (forever)",
                        w.history_s, w.history_s
                    ),
                );
            }
            for (name, src) in &w.dimensions {
                let key = k(&format!("dimensions.{name}"));
                match crate::Dim::parse(name) {
                    Some(crate::Dim::Cpu) => {
                        return err(
                            key,
                            "cpu is the workload's `demand`; list only other dimensions here"
                                .into(),
                        )
                    }
                    Some(_) => {}
                    None => {
                        return err(
                            key,
                            "unknown dimension; use memory, disk_iops or network_mbps".into(),
                        )
                    }
                }
                if let Err(e) = Demand::parse(&src.series) {
                    return err(key, e.to_string());
                }
                if !(src.scale.is_finite() && src.scale > 0.0) {
                    return err(
                        key,
                        format!("scale must be a positive number, got {}", src.scale),
                    );
                }
            }
            if w.step_s == 0 {
                return err(k("step_s"), "must be at least 1 second".into());
            }
            if w.horizon_s < w.step_s {
                return err(
                    k("horizon_s"),
                    format!("must be at least one step ({} s)", w.step_s),
                );
            }
            if w.history_s < 2 * w.step_s {
                return err(k("history_s"), "must cover at least two steps".into());
            }
            if let Some(s) = w.season_s {
                if s < 2 * w.step_s {
                    return err(
                        k("season_s"),
                        format!("must be at least two steps ({} s)", 2 * w.step_s),
                    );
                }
            }
            if !crate::model::MODEL_NAMES.contains(&w.model.as_str()) {
                return err(
                    k("model"),
                    format!(
                        "unknown model {:?}; use one of {}",
                        w.model,
                        crate::model::MODEL_NAMES.join(", ")
                    ),
                );
            }
            if w.retrain_s < w.step_s {
                return err(
                    k("retrain_s"),
                    format!("must be at least one step ({} s)", w.step_s),
                );
            }
            if w.refit_s < w.step_s {
                return err(
                    k("refit_s"),
                    format!("must be at least one step ({} s)", w.step_s),
                );
            }
            if !(w.drift_ratio.is_finite() && w.drift_ratio > 1.0) {
                return err(
                    k("drift_ratio"),
                    format!("must be a number above 1 (e.g. 2.0), got {}", w.drift_ratio),
                );
            }
            validate_policy(w, &self.tiers).or_else(|(f, m)| err(k(&f), m))?;
            let max_lead = self
                .tiers
                .iter()
                .filter(|t| t.serves(w))
                .map(|t| t.lead_time_s)
                .max()
                .unwrap_or(0);
            if w.horizon_s < max_lead + w.step_s {
                return err(
                    k("horizon_s"),
                    format!(
                        "must cover the longest tier lead time plus one step ({} s)",
                        max_lead + w.step_s
                    ),
                );
            }
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if let Some(x) = t
                .workloads
                .iter()
                .find(|x| !self.workloads.iter().any(|w| &w.name == *x))
            {
                return err(
                    format!("tiers[{i}].workloads"),
                    format!(
                        "unknown workload {x:?}; known workloads: {}",
                        self.workloads
                            .iter()
                            .map(|w| w.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        if self.providers.use_ == ProviderKind::Kubernetes {
            let k = self.providers.kubernetes.clone().unwrap_or_default();
            validate_kubernetes(&k, &self.workloads, &self.tiers)?;
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::parse(DEFAULT_TOML, "<built-in>").expect("the built-in configuration is valid")
    }
}

/// Checks the settings of workload `w` that steer its plans (the daemon's workloads and a
/// simulation scenario's alike) against the tier catalog `tiers`: `Err((field, what is
/// wrong))` for the first bad one.
pub fn validate_policy(w: &Workload, tiers: &[Tier]) -> Result<(), (String, String)> {
    let err = |k: &str, m: String| Err((k.to_string(), m));
    if !(w.sla_quantile > 0.0 && w.sla_quantile < 1.0) {
        return err(
            "sla_quantile",
            format!(
                "must be between 0 and 1 (e.g. 0.95), got {}",
                w.sla_quantile
            ),
        );
    }
    if !(w.target_utilization > 0.0 && w.target_utilization <= 1.0) {
        return err(
            "target_utilization",
            format!("must be in (0, 1], got {}", w.target_utilization),
        );
    }
    if !(0.0..1.0).contains(&w.error_decay) {
        return err(
            "error_decay",
            format!(
                "must be in [0, 1) (e.g. 0.9; 0: no shift), got {}",
                w.error_decay
            ),
        );
    }
    if w.refit_s == 0 {
        return err("refit_s", "must be at least 1 second".into());
    }
    if !(0.0..=MAX_SURGE_EXTRA).contains(&w.surge_extra) {
        return err(
            "surge_extra",
            format!(
                "must be in [0, {MAX_SURGE_EXTRA}] (extra instances per needed one while short; 0: off), got {}",
                w.surge_extra
            ),
        );
    }
    if !(0.0..=1.0).contains(&w.max_spot_share) {
        return err(
            "max_spot_share",
            format!("must be in [0, 1], got {}", w.max_spot_share),
        );
    }
    if !(0.0..=1.0).contains(&w.scale_down_max_share) {
        return err(
            "scale_down_max_share",
            format!(
                "must be in [0, 1] (the share of ready capacity that may go per scale_down_period_s; 1: no limit, 0: one instance per period), got {}",
                w.scale_down_max_share
            ),
        );
    }
    if w.scale_down_period_s == 0 {
        return err(
            "scale_down_period_s",
            "must be at least 1 (seconds; scale_down_max_share = 1 lifts the limit)".into(),
        );
    }
    if w.budget_per_month
        .is_some_and(|b| !(b >= 0.0 && b.is_finite()))
    {
        return err("budget_per_month", "must be zero or positive".into());
    }
    if let Some(b) = w.budget_per_hour {
        if !(b.is_finite() && b >= 0.0) {
            return err("budget_per_hour", "must be zero or positive".into());
        }
    }
    for t in &w.tiers {
        if !tiers.iter().any(|x| &x.name == t) {
            return err(
                "tiers",
                format!(
                    "unknown tier {t:?}; known tiers: {}",
                    tiers
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    if !tiers.iter().any(|t| t.serves(w)) {
        return err(
            "tiers",
            format!(
                "no tier may serve workload {:?}: check its tiers and latency_class, and the tiers' workloads lists",
                w.name
            ),
        );
    }
    let most: u64 = tiers
        .iter()
        .filter(|t| t.serves(w))
        .map(|t| u64::from(t.max_instances))
        .sum();
    if u64::from(w.min_instances) > most {
        return err(
            "min_instances",
            format!(
                "is {}, but the tiers that may serve the workload hold at most {most} instances together (their max_instances)",
                w.min_instances
            ),
        );
    }
    validate_events(&w.events)?;
    validate_recurring(&w.recurring_events, &w.events, crate::now_ms())?;
    let least = w
        .events
        .iter()
        .map(|e| ("events", &e.min_dimensions))
        .chain(
            w.recurring_events
                .iter()
                .map(|r| ("recurring_events", &r.min_dimensions)),
        );
    for (k, (table, dims)) in least.enumerate() {
        let k = if table == "events" {
            k
        } else {
            k - w.events.len()
        };
        if let Some(d) = dims.keys().find(|d| !w.dimensions.contains_key(*d)) {
            return err(
                &format!("{table}[{k}].min_dimensions.{d}"),
                format!(
                    "the workload does not plan its {d}: add it to the workload's `dimensions` (the series it reads), or leave it out"
                ),
            );
        }
    }
    Ok(())
}

/// Checks that each of `event`'s `min_dimensions` is one that workload `w` plans, as
/// the API takes one: `Err((field, what is wrong))`.
pub fn check_event_dimensions(
    w: &Workload,
    event: &crate::model::PlannedEvent,
) -> Result<(), (String, String)> {
    match event
        .min_dimensions
        .keys()
        .find(|d| !w.dimensions.contains_key(*d))
    {
        Some(d) => Err((
            format!("min_dimensions.{d}"),
            format!(
                "workload {:?} does not plan its {d}: its configuration's `dimensions` name {}",
                w.name,
                if w.dimensions.is_empty() {
                    "none (CPU only)".to_string()
                } else {
                    w.dimensions.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
        )),
        None => Ok(()),
    }
}

/// Checks a workload's recurring events against `now`: `Err((key, what is wrong))` for
/// the first bad one.
fn validate_recurring(
    recurring: &[crate::model::RecurringEvent],
    events: &[crate::model::PlannedEvent],
    now: crate::TimestampMs,
) -> Result<(), (String, String)> {
    use crate::model::{MIN_RECURRENCE_S, RECURRENCE_CHECK_S};
    let mut names: BTreeSet<&str> = events.iter().map(|e| e.name.as_str()).collect();
    for (k, r) in recurring.iter().enumerate() {
        let err = |f: &str, m: String| Err((format!("recurring_events[{k}].{f}"), m));
        if r.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        if !names.insert(r.name.as_str()) {
            return err("name", format!("{:?} names two events", r.name));
        }
        // Its occurrences are each a planned event, checked as one.
        let first = crate::model::PlannedEvent {
            name: r.name.clone(),
            recurring: None,
            min_dimensions: Default::default(),
            ..r.occurrence(0)
        };
        if let Err((f, m)) = validate_event(&first) {
            if f == "scale" || f == "min_demand" {
                return err(&f, m);
            }
        }
        if r.duration_s == 0 {
            return err("duration_s", "must be at least 1 (seconds)".into());
        }
        let schedule = r
            .schedule()
            .map_err(|(f, m)| (format!("recurring_events[{k}].{f}"), m))?;
        let Some(mut start) = schedule.next(now, true) else {
            return err(
                "every",
                format!(
                    "{:?} never comes within a year: check its day and month",
                    r.every
                ),
            );
        };
        if start - now > RECURRENCE_CHECK_S * 1000 {
            return err(
                "every",
                format!(
                    "{:?} first comes at {}, more than a year ahead: declare a one-off [[workloads.events]] instead",
                    r.every,
                    crate::format_ts(start)
                ),
            );
        }
        // Over the next year (at most a thousand starts): starts at least an hour
        // apart, and each occurrence over before the next starts.
        for _ in 0..1000 {
            let Some(next) = schedule.next(start, false) else {
                break;
            };
            if next - now > RECURRENCE_CHECK_S * 1000 {
                break;
            }
            let gap_s = (next - start) / 1000;
            if gap_s < MIN_RECURRENCE_S {
                return err(
                    "every",
                    format!(
                        "{:?} starts again {gap_s} s after {}: a recurring event may come at most hourly (what recurs within each day, the forecast's daily season learns from the history)",
                        r.every,
                        crate::format_ts(start)
                    ),
                );
            }
            if r.duration_s as i64 > gap_s {
                return err(
                    "duration_s",
                    format!(
                        "{} s is longer than the {gap_s} s from the start at {} to the next: an occurrence must be over before the next begins",
                        r.duration_s,
                        crate::format_ts(start)
                    ),
                );
            }
            start = next;
        }
    }
    Ok(())
}

/// The most a planned event may multiply the forecast by: more is a typo for a
/// `min_demand`, or a different workload.
pub const MAX_EVENT_SCALE: f64 = 100.0;

/// Checks one planned event on its own (as the API takes one): `Err((field, what is
/// wrong))`, the field as the configuration names it (`end`, `scale`, ...).
pub fn validate_event(e: &crate::model::PlannedEvent) -> Result<(), (String, String)> {
    validate_events(std::slice::from_ref(e)).map_err(|(k, m)| {
        let field = k.strip_prefix("events[0].").unwrap_or(&k).to_string();
        (field, m)
    })
}

/// Checks a workload's planned events: `Err((key, what is wrong))` for the first bad one.
fn validate_events(events: &[crate::model::PlannedEvent]) -> Result<(), (String, String)> {
    let mut names = BTreeSet::new();
    for (k, e) in events.iter().enumerate() {
        let err = |f: &str, m: String| Err((format!("events[{k}].{f}"), m));
        if e.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        if !names.insert(e.name.as_str()) {
            return err("name", format!("{:?} names two events", e.name));
        }
        if e.recurring.is_some() {
            return err(
                "recurring",
                "is prescale's, on the occurrences of a recurring event: declare one as [[workloads.recurring_events]] (every, timezone, duration_s)".into(),
            );
        }
        if e.end <= e.start {
            return err(
                "end",
                format!(
                    "{} is not after start = {}",
                    crate::format_ts(e.end.0),
                    crate::format_ts(e.start.0)
                ),
            );
        }
        if !(e.scale > 0.0 && e.scale <= MAX_EVENT_SCALE) {
            return err(
                "scale",
                format!(
                    "must be above 0 and at most {MAX_EVENT_SCALE} (the forecast's multiple; 3 for three times the usual demand), got {}",
                    e.scale
                ),
            );
        }
        if let Some(d) = e.min_demand.filter(|d| !(d.is_finite() && *d >= 0.0)) {
            return err(
                "min_demand",
                format!("must be zero or positive (vCPU), got {d}"),
            );
        }
        for (d, v) in &e.min_dimensions {
            let field = format!("min_dimensions.{d}");
            match crate::model::Dim::parse(d) {
                Some(crate::model::Dim::Cpu) => {
                    return err(&field, "vCPU is the event's min_demand".into())
                }
                None => {
                    return err(
                        &field,
                        format!("{d:?} is no dimension: memory (GiB), disk_iops or network_mbps"),
                    )
                }
                Some(dim) if !(v.is_finite() && *v >= 0.0) => {
                    return err(
                        &field,
                        format!("must be zero or positive ({}), got {v}", dim.unit()),
                    )
                }
                Some(_) => {}
            }
        }
        if e.scale == 1.0 && e.min_demand.is_none() && e.min_dimensions.is_empty() {
            return err(
                "scale",
                format!(
                    "event {:?} changes nothing: give a scale other than 1, a min_demand or min_dimensions",
                    e.name
                ),
            );
        }
    }
    Ok(())
}

/// Checks a tier catalog (the daemon's `[[tiers]]` and a simulation scenario's alike):
/// `Err((key, what is wrong))` for the first bad entry.
pub fn validate_tiers(tiers: &[Tier]) -> Result<(), (String, String)> {
    let err = |k: String, m: String| Err((k, m));
    if tiers.is_empty() {
        return err(
            "tiers".into(),
            "at least one [[tiers]] entry is required".into(),
        );
    }
    let mut names = BTreeSet::new();
    for (i, t) in tiers.iter().enumerate() {
        let k = |f: &str| format!("tiers[{i}].{f}");
        if t.name.trim().is_empty() {
            return err(k("name"), "must not be empty".into());
        }
        if !names.insert(t.name.clone()) {
            return err(k("name"), format!("tier name {:?} is used twice", t.name));
        }
        if !(t.vcpu.is_finite() && t.vcpu > 0.0) {
            return err(
                k("vcpu"),
                format!("must be a positive number, got {}", t.vcpu),
            );
        }
        // A shape's other sizes: zero (or, for disk and network, absent) when the tier
        // does not say; a negative or non-finite one was taken as not saying.
        for (f, v) in [
            ("memory_gib", Some(t.memory_gib)),
            ("disk_iops", t.disk_iops),
            ("network_mbps", t.network_mbps),
        ] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                return err(
                    k(f),
                    format!("must be zero or positive (zero: not part of the shape), got {v}"),
                );
            }
        }
        if !(t.price_per_hour.is_finite() && t.price_per_hour >= 0.0) {
            return err(
                k("price_per_hour"),
                format!("must be zero or positive, got {}", t.price_per_hour),
            );
        }
        if !(t.performance_factor.is_finite() && t.performance_factor > 0.0) {
            return err(
                k("performance_factor"),
                format!(
                    "must be positive (1.0 = standard), got {}",
                    t.performance_factor
                ),
            );
        }
        if !(t.interruption_rate_per_hour.is_finite() && t.interruption_rate_per_hour >= 0.0) {
            return err(
                k("interruption_rate_per_hour"),
                "must be zero or positive".into(),
            );
        }
        if t.class != TierClass::Spot && t.interruption_rate_per_hour > 0.0 {
            return err(
                k("interruption_rate_per_hour"),
                "only spot tiers can be interrupted; set class = \"spot\" or rate = 0".into(),
            );
        }
        if t.max_instances < t.min_instances {
            return err(
                k("max_instances"),
                format!(
                    "is {} but min_instances is {}; max must be at least min",
                    t.max_instances, t.min_instances
                ),
            );
        }
        if let Some(p90) = t.lead_time_p90_s.filter(|p90| *p90 < t.lead_time_s) {
            return err(
                k("lead_time_p90_s"),
                format!(
                    "is {p90} but lead_time_s (the median) is {}; the 90th percentile cannot be below the median",
                    t.lead_time_s
                ),
            );
        }
        if t.billing_granularity_s == 0 {
            return err(
                k("billing_granularity_s"),
                "must be at least 1 (1 = per-second billing)".into(),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_is_complete_and_valid() {
        let c = Config::default();
        assert_eq!(c.server.listen, "127.0.0.1:9180");
        assert_eq!(c.tiers.len(), 3);
        let classes: Vec<_> = c.tiers.iter().map(|t| t.class).collect();
        assert!(classes.contains(&TierClass::Spot));
        assert!(classes.contains(&TierClass::Standard));
        assert!(classes.contains(&TierClass::HighPerformance));
        assert!(!c.workloads.is_empty());
        // Every documented default key is written out: re-serialising loses nothing.
        let again = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&again, "x").unwrap(), c);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let src = DEFAULT_TOML.replace("[server]\n", "[server]\nlisten_port = 1\n");
        let e = Config::parse(&src, "p.toml").unwrap_err();
        let line = src
            .lines()
            .position(|l| l.starts_with("listen_port"))
            .unwrap()
            + 1;
        assert_eq!(e.line, Some(line), "{e}");
        assert!(e.to_string().starts_with(&format!("p.toml:{line}:")), "{e}");
        assert!(
            e.message
                .starts_with("unknown field `listen_port` (did you mean `listen`?)"),
            "{e}"
        );
        // A key like a known one is named, as cargo and clap do; one like none is not.
        let typo = DEFAULT_TOML.replace("sla_quantile = ", "sla_quantle = ");
        let t = Config::parse(&typo, "p.toml").unwrap_err();
        assert!(
            t.message.starts_with(
                "unknown field `sla_quantle` (did you mean `sla_quantile`?), expected one of `name`"
            ),
            "{t}"
        );
        let odd = DEFAULT_TOML.replace("[server]\n", "[server]\nzzz = 1\n");
        let o = Config::parse(&odd, "p.toml").unwrap_err();
        assert!(
            o.message.starts_with("unknown field `zzz`, expected"),
            "{o}"
        );
        assert_eq!(e.key, "server.listen_port");
    }

    #[test]
    fn writes_beyond_loopback_need_a_readable_token() {
        let open = DEFAULT_TOML.replace("127.0.0.1:9180", "0.0.0.0:9180");
        let e = Config::parse(&open, "p.toml").unwrap_err();
        assert_eq!(e.key, "server.token_file", "{e}");
        assert!(e.message.contains("needs a token"), "{e}");
        // Without receivers nothing can be written, so no token is needed.
        let mut c = Config::default();
        c.server.listen = "0.0.0.0:9180".into();
        assert!(c.write_token().is_err());
        c.sources.remote_write.enabled = false;
        c.sources.influx.enabled = false;
        assert!(!c.receivers_enabled());
        assert_eq!(c.write_token(), Ok(None));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let with = |path: &std::path::Path| {
            open.replace(
                "# token_file = \"/etc/prescale/token\"",
                &format!("token_file = {:?}", path.display().to_string()),
            )
        };
        let e = Config::parse(&with(&file), "p.toml").unwrap_err();
        assert!(e.message.contains("cannot read the token file"), "{e}");
        std::fs::write(&file, "\n").unwrap();
        let e = Config::parse(&with(&file), "p.toml").unwrap_err();
        assert!(e.message.contains("is empty"), "{e}");
        std::fs::write(&file, "  abc123 \nignored\n").unwrap();
        let c = Config::parse(&with(&file), "p.toml").unwrap();
        assert_eq!(c.write_token(), Ok(Some("abc123".into())));
        // An older file without the receiver sections still loads, receivers on.
        let (from, to) = (
            DEFAULT_TOML.find("[sources.remote_write]").unwrap(),
            DEFAULT_TOML.find("[control]").unwrap(),
        );
        let old = format!("{}{}", &DEFAULT_TOML[..from], &DEFAULT_TOML[to..]);
        let c = Config::parse(&old, "old.toml").unwrap();
        assert!(c.sources.remote_write.enabled && c.sources.influx.enabled);
    }

    #[test]
    fn scrape_jobs_are_checked_at_their_key() {
        let job = |body: &str| format!("{DEFAULT_TOML}\n[[sources.scrape]]\n{body}\n");
        let c = Config::parse(
            &job("job = \"node\"\ntargets = [\"127.0.0.1:9100\", \"db:9187\"]"),
            "p.toml",
        )
        .unwrap();
        let s = &c.sources.scrape[0];
        assert_eq!(
            (s.interval_s, s.timeout_s, s.path.as_str()),
            (15, 10, "/metrics")
        );
        assert_eq!(s.targets.len(), 2);
        // Scraped more often than its default timeout, a job times out at its interval,
        // as Prometheus' does; one it gives stays as given (and within the interval).
        let c = Config::parse(
            &job("job = \"n\"\ntargets = [\"h:1\"]\ninterval_s = 5"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.sources.scrape[0].timeout_s, 5);
        let c = Config::parse(
            &job("job = \"n\"\ntargets = [\"h:1\"]\ninterval_s = 5\ntimeout_s = 3"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.sources.scrape[0].timeout_s, 3);
        let shown = Config::parse(&c.to_toml(), "shown.toml").unwrap();
        assert_eq!(shown.sources.scrape[0].timeout_s, 3);
        let e = Config::parse(
            &job("job = \"n\"\ntargets = [\"h:1\"]\ninterval_s = 5\ntimeout_s = 10"),
            "p.toml",
        )
        .unwrap_err();
        assert!(
            e.message.contains("between 1 and interval_s (5), got 10"),
            "{e}"
        );
        // Pods found through the API server instead of targets: in a cluster, over https.
        let c = Config::parse(
            &job("job = \"api\"\n[sources.scrape.kubernetes]\nselector = \"app=api\""),
            "p.toml",
        )
        .unwrap();
        let sd = c.sources.scrape[0].kubernetes.as_ref().unwrap();
        assert_eq!(
            (sd.selector.as_str(), sd.port, sd.refresh_s, sd.role),
            ("app=api", None, 30, SdRole::Pod)
        );
        assert_eq!(
            c.https_uses(),
            vec!["sources.scrape[0].kubernetes (api)".to_string()]
        );
        // A client certificate with its key; it needs https, as a CA file does.
        let c = Config::parse(
            &job("job = \"n\"\ntargets = [\"h:1\"]\ncert_file = \"c.pem\"\nkey_file = \"c.key\""),
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.https_uses(), vec!["sources.scrape[0] (n)".to_string()]);
        for (body, key, why) in [
            ("job = \"n\"\ntargets = []", "sources.scrape[0].targets", "at least one"),
            ("job = \"n\"\ntargets = [\"http://h:1\"]", "sources.scrape[0].targets[0]", "no scheme"),
            ("job = \"n\"\ntargets = [\"h\"]", "sources.scrape[0].targets[0]", "not host:port"),
            ("job = \"n\"\ntargets = [\"h:1\"]\ntimeout_s = 20", "sources.scrape[0].timeout_s", "between 1 and interval_s (15)"),
            ("job = \"n\"\ntargets = [\"h:1\"]\npath = \"metrics\"", "sources.scrape[0].path", "start with '/'"),
            ("job = \"n\"\ntargets = [\"h:1\"]\nscheme = \"ftp\"", "sources.scrape[0].scheme", "\"http\" or \"https\""),
            ("job = \"\"\ntargets = [\"h:1\"]", "sources.scrape[0].job", "empty"),
            ("job = \"n\"\ntargets = [\"h:1\"]\n[[sources.scrape]]\njob = \"n\"\ntargets = [\"h:2\"]", "sources.scrape[1].job", "used twice"),
            ("job = \"n\"\ntargets = [\"h:1\"]\ntarget = 1", "sources.scrape[0].target", "unknown field"),
            ("job = \"n\"", "sources.scrape[0].targets", "or find pods with [sources.scrape.kubernetes]"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\nport = 0", "sources.scrape[0].kubernetes.port", "1 to 65535"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\nnamespace = \"a.b\"", "sources.scrape[0].kubernetes.namespace", "namespace name"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\napi_url = \"k8s:443\"", "sources.scrape[0].kubernetes.api_url", "http:// or https://"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\nrefresh_s = 0", "sources.scrape[0].kubernetes.refresh_s", "at least 1 second"),
            ("job = \"n\"\ntargets = [\"h:1\"]\ncert_file = \"c.pem\"", "sources.scrape[0].key_file", "needs the file of its private key"),
            ("job = \"n\"\ntargets = [\"h:1\"]\nkey_file = \"c.key\"", "sources.scrape[0].cert_file", "the client certificate the key belongs to"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\napi_cert_file = \"c.pem\"", "sources.scrape[0].kubernetes.api_key_file", "needs the file of its private key"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\nport_name = \"metrics\"", "sources.scrape[0].kubernetes.port_name", "set role = \"endpoints\""),
            ("job = \"n\"\n[sources.scrape.kubernetes]\nrole = \"endpoints\"\nport_name = \" \"", "sources.scrape[0].kubernetes.port_name", "must not be empty"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\nrole = \"endpoints\"\nport_name = \"m\"\nport = 9", "sources.scrape[0].kubernetes.port_name", "not both"),
            ("job = \"n\"\n[sources.scrape.kubernetes]\nrole = \"service\"", "sources.scrape[0].kubernetes.role", "unknown variant"),
        ] {
            let e = Config::parse(&job(body), "p.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(why), "{e}");
            assert!(e.line.is_some(), "{e}");
        }
    }

    #[test]
    fn retention_keeps_what_workloads_read_for_their_history_or_longer() {
        let mut c = Config::default();
        assert_eq!(c.storage.retention_s, 30 * 86_400);
        c.storage.retention_s = 86_400;
        let key = |s: &str| SeriesKey::parse(s).unwrap();
        let busy = key(r#"host_cpu_usage_cores{mode="busy"}"#);
        let idle = key(r#"host_cpu_usage_cores{mode="idle"}"#);
        let own = key(r#"prescale_demand{workload="host"}"#);
        let other = key(r#"prescale_demand{workload="gone"}"#);
        // The host workload reads 14 days of its demand: kept that long, the rest a day.
        assert_eq!(c.retention_s_for(&busy), Some(14 * 86_400));
        assert_eq!(c.retention_s_for(&own), Some(14 * 86_400));
        assert_eq!(c.retention_s_for(&idle), Some(86_400));
        assert_eq!(c.retention_s_for(&other), Some(86_400));
        c.workloads[0].retention_s = Some(365 * 86_400);
        assert_eq!(c.retention_s_for(&busy), Some(365 * 86_400));
        c.workloads[0].retention_s = Some(0);
        assert_eq!(c.retention_s_for(&own), None);
        c.storage.retention_s = 0;
        assert_eq!(c.retention_s_for(&idle), None);

        let short = DEFAULT_TOML.replace("# retention_s = 31536000", "retention_s = 3600");
        let e = Config::parse(&short, "p.toml").unwrap_err();
        assert_eq!(e.key, "workloads[0].retention_s", "{e}");
        assert!(
            e.message.contains("shorter than history_s (1209600)"),
            "{e}"
        );
    }

    #[test]
    fn serving_https_takes_a_certificate_and_its_key() {
        let with =
            |lines: &str| DEFAULT_TOML.replacen("[server]\n", &format!("[server]\n{lines}\n"), 1);
        let e = Config::parse(&with("cert_file = \"tls.crt\""), "p.toml").unwrap_err();
        assert_eq!(e.key, "server.key_file", "{e}");
        assert!(
            e.message.contains("needs the certificate's private key"),
            "{e}"
        );
        let e = Config::parse(&with("key_file = \"tls.key\""), "p.toml").unwrap_err();
        assert_eq!(e.key, "server.cert_file", "{e}");
        let c = Config::parse(
            &with("cert_file = \"tls.crt\"\nkey_file = \"tls.key\""),
            "p.toml",
        )
        .unwrap();
        assert!(c.server.tls_files().is_some());
        assert!(c
            .https_uses()
            .contains(&"server.cert_file (serving HTTPS)".to_string()));
        assert!(!Config::default()
            .https_uses()
            .iter()
            .any(|u| u.starts_with("server")));
    }

    #[test]
    fn token_for_reads_needs_a_token() {
        let text = DEFAULT_TOML.replacen("[server]\n", "[server]\ntoken_for_reads = true\n", 1);
        let e = Config::parse(&text, "p.toml").unwrap_err();
        assert_eq!(e.key, "server.token_for_reads", "{e}");
        assert!(e.message.contains("needs server.token_file"), "{e}");
    }

    #[test]
    fn a_hook_provider_in_use_must_be_configured() {
        let with = |use_: &str, section: &str| {
            DEFAULT_TOML
                .replace("use = \"sim\"", &format!("use = \"{use_}\""))
                .replace("[providers.sim]", &format!("{section}\n[providers.sim]"))
        };
        for (text, key, why) in [
            (
                with("exec", ""),
                "providers.exec",
                "needs a [providers.exec] section",
            ),
            (
                with("exec", "[providers.exec]\ncommand = []"),
                "providers.exec.command",
                "must name a program",
            ),
            (
                with("webhook", ""),
                "providers.webhook",
                "needs a [providers.webhook] section",
            ),
            (
                with("webhook", "[providers.webhook]\nurl = \"ftp://x/y\""),
                "providers.webhook.url",
                "must be an http:// or https:// URL",
            ),
            (
                with(
                    "webhook",
                    "[providers.webhook]\nurl = \"http://x/y\"\ntoken_file = \"/nonexistent/t\"",
                ),
                "providers.webhook.token_file",
                "cannot read the token file",
            ),
            (
                with(
                    "webhook",
                    "[providers.webhook]\nurl = \"https://x/y\"\ncert_file = \"c.pem\"",
                ),
                "providers.webhook.key_file",
                "needs the file of its private key",
            ),
            (with("cloud", ""), "providers.use", "unknown variant"),
        ] {
            let e = Config::parse(&text, "p.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(why), "{e}");
        }
        let c = Config::parse(
            &with(
                "exec",
                "[providers.exec]\ncommand = [\"/bin/hook\", \"--x\"]",
            ),
            "p.toml",
        )
        .unwrap();
        let e = c.providers.exec.unwrap();
        assert_eq!(
            (e.command.len(), e.timeout_s, e.report_state),
            (2, 30, false)
        );
        // Recommending needs nothing configured.
        let c = Config::parse(&with("recommend", ""), "p.toml").unwrap();
        assert_eq!(c.providers.use_, ProviderKind::Recommend);
        assert!(c.https_uses().is_empty());
    }

    #[test]
    fn the_kubernetes_provider_needs_a_valid_name_for_every_workload_tier() {
        let with = |section: &str| {
            DEFAULT_TOML
                .replace("use = \"sim\"", "use = \"kubernetes\"")
                .replace("[providers.sim]", &format!("{section}\n[providers.sim]"))
        };
        // Nothing to set inside a cluster.
        let c = Config::parse(&with(""), "p.toml").unwrap();
        assert_eq!(c.providers.use_, ProviderKind::Kubernetes);
        assert!(c.providers.kubernetes.is_none());
        // Its own API server is https, so it needs the TLS build; kubectl proxy does not.
        assert_eq!(c.https_uses(), vec!["providers.kubernetes".to_string()]);
        let proxy = Config::parse(
            &with("[providers.kubernetes]\napi_url = \"http://127.0.0.1:8001\"\nkind = \"statefulset\""),
            "p.toml",
        )
        .unwrap();
        assert!(proxy.https_uses().is_empty());
        let k = proxy.providers.kubernetes.unwrap();
        assert_eq!(
            (k.kind, k.name.as_str(), k.timeout_s),
            (KubeKind::StatefulSet, "{workload}-{tier}", 30)
        );
        let rollouts = with("[providers.kubernetes]\nkind = \"rollout\"");
        let k = Config::parse(&rollouts, "p.toml")
            .unwrap()
            .providers
            .kubernetes;
        assert_eq!(k.unwrap().kind, KubeKind::Rollout);
        let e =
            Config::parse(&with("[providers.kubernetes]\nkind = \"job\""), "p.toml").unwrap_err();
        assert!(
            e.to_string().contains("deployment") && e.to_string().contains("rollout"),
            "{e}"
        );

        for (section, why) in [
            (
                "api_url = \"127.0.0.1:8001\"",
                "must be an http:// or https:// URL",
            ),
            ("namespace = \"Prod\"", "not a Kubernetes namespace name"),
            ("name = \"{tier}\"", "must contain {workload}"),
            // Three tiers would scale one object.
            (
                "name = \"{workload}\"",
                "for both host/spot and host/standard: add {tier}",
            ),
            ("name = \"{workload}_{tier}\"", "makes \"host_spot\""),
            (
                "token_file = \"/nonexistent/t\"",
                "cannot read the token file",
            ),
            ("timeout_s = 0", "at least 1 second"),
            ("kind = \"pod\"", "unknown variant"),
        ] {
            let e = Config::parse(
                &with(&format!("[providers.kubernetes]\n{section}")),
                "p.toml",
            )
            .unwrap_err();
            let field = section.split(' ').next().unwrap();
            assert_eq!(e.key, format!("providers.kubernetes.{field}"), "{e}");
            assert!(e.message.contains(why), "{section}: {e}");
        }
        // A client key is refused at the certificate it needs.
        let e = Config::parse(
            &with("[providers.kubernetes]\nkey_file = \"/etc/k.key\""),
            "p.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "providers.kubernetes.cert_file", "{e}");
        assert!(
            e.message
                .contains("the client certificate the key belongs to"),
            "{e}"
        );
        // With one tier, an existing Deployment can be scaled by the workload's name.
        let mut c = Config::default();
        c.providers.use_ = ProviderKind::Kubernetes;
        c.providers.kubernetes = Some(KubernetesProviderConfig {
            name: "{workload}".into(),
            ..KubernetesProviderConfig::default()
        });
        c.tiers.retain(|t| t.name == "standard");
        c.validate().unwrap();
        assert!(valid_kube_name("web-standard.v2", false));
        assert!(!valid_kube_name("web-standard.v2", true));
        assert!(!valid_kube_name("-web", false) && !valid_kube_name("", false));
        assert!(!valid_kube_name(&"a".repeat(64), true));
    }

    #[test]
    fn a_remote_store_needs_http_urls() {
        let with = |section: &str| {
            DEFAULT_TOML.replace("\n[sources.host]", &format!("\n{section}\n[sources.host]"))
        };
        let c = Config::parse(
            &with("[storage.remote]\nwrite_url = \"http://vm:8428/api/v1/write\"\nread_url = \"http://vm:8428\""),
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.storage.remote.as_ref().unwrap().timeout_s, 10);
        assert!(c.https_uses().is_empty());
        let c = Config::parse(
            &with("[storage.remote]\nwrite_url = \"https://vm/api/v1/write\"\nread_url = \"https://vm\""),
            "p.toml",
        )
        .unwrap();
        assert_eq!(c.https_uses(), vec!["storage.remote".to_string()]);
        for (section, key) in [
            (
                "[storage.remote]\nwrite_url = \"vm:8428\"\nread_url = \"http://vm:8428\"",
                "storage.remote.write_url",
            ),
            (
                "[storage.remote]\nwrite_url = \"http://vm/w\"\nread_url = \"ftp://vm\"",
                "storage.remote.read_url",
            ),
            (
                "[storage.remote]\nwrite_url = \"http://vm/w\"",
                "storage.remote",
            ),
            (
                "[storage.remote]\nwrite_url = \"https://vm/w\"\nread_url = \"https://vm\"\ncert_file = \"c.pem\"",
                "storage.remote.key_file",
            ),
        ] {
            let e = Config::parse(&with(section), "p.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn demand_expressions_are_checked_at_their_key() {
        let demand = "demand = 'host_cpu_usage_cores{mode=\"busy\"}'";
        assert!(DEFAULT_TOML.contains(demand));
        let ok = DEFAULT_TOML.replace(
            demand,
            "demand = 'rate(node_cpu_seconds_total{mode!~\"idle|iowait\"})'",
        );
        assert!(Config::parse(&ok, "p.toml").is_ok());
        let keda = DEFAULT_TOML.replace(
            demand,
            "demand = 'sum(rate(http_requests_total{job=\"web\"}[1m])) / 50'",
        );
        assert!(Config::parse(&keda, "p.toml").is_ok());
        let bad = DEFAULT_TOML.replace(demand, "demand = 'avg(node_cpu_seconds_total)'");
        let e = Config::parse(&bad, "p.toml").unwrap_err();
        assert_eq!(e.key, "workloads[0].demand", "{e}");
        assert!(e.message.contains("avg(...) is not supported"), "{e}");
    }

    #[test]
    fn detection_settings_are_checked_and_may_be_left_out() {
        for (from, to, key) in [
            ("threshold = 0.5", "threshold = 1.5", "detect.threshold"),
            ("threshold = 0.5", "threshold = nan", "detect.threshold"),
            ("max_series = 100000", "max_series = 0", "detect.max_series"),
        ] {
            let e = Config::parse(&DEFAULT_TOML.replace(from, to), "p.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
        }
        let off = DEFAULT_TOML.replace("max_series = 100000", "max_series = 0\nenabled = false");
        let off = off.replacen("enabled = true\n# Score (0..1)", "# Score (0..1)", 1);
        assert!(!Config::parse(&off, "p.toml").unwrap().detect.enabled);
        // A configuration written before [detect] existed watches with the defaults.
        let start = DEFAULT_TOML.find("[detect]").unwrap();
        let end = DEFAULT_TOML.find("[control]").unwrap();
        let old = format!("{}{}", &DEFAULT_TOML[..start], &DEFAULT_TOML[end..]);
        assert_eq!(
            Config::parse(&old, "p.toml").unwrap().detect,
            DetectConfig::default()
        );
        assert_eq!(Config::default().detect, DetectConfig::default());
        let picky = DEFAULT_TOML.replace(
            "max_series = 100000",
            "max_series = 100000\nmatch = ['node_disk_io_time_seconds_total', '{job=\"api\"}']",
        );
        assert_eq!(
            Config::parse(&picky, "p.toml").unwrap().detect.match_.len(),
            2
        );
        let bad = DEFAULT_TOML.replace(
            "max_series = 100000",
            "max_series = 100000\nmatch = ['up', '{job=~\".*\"}']",
        );
        let e = Config::parse(&bad, "p.toml").unwrap_err();
        assert_eq!(e.key, "detect.match[1]", "{e}");
        assert!(e.message.contains("would match every series"), "{e}");
    }

    #[test]
    fn wrong_type_and_syntax_errors_are_located() {
        let src = DEFAULT_TOML.replace("interval_s = 15", "interval_s = \"fifteen\"");
        let e = Config::parse(&src, "p.toml").unwrap_err();
        assert_eq!(e.key, "control.interval_s", "{e}");
        assert!(e.line.is_some());
        assert!(e.message.contains("invalid type"), "{e}");

        let e = Config::parse("[server\nlisten = 1", "bad.toml").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("not valid TOML"), "{e}");
    }

    #[test]
    fn a_surge_outside_its_range_is_refused_with_its_key() {
        for bad in ["-0.5", "11.0", "nan"] {
            let src = DEFAULT_TOML.replace("surge_extra = 1.0", &format!("surge_extra = {bad}"));
            let e = Config::parse(&src, "p.toml").unwrap_err();
            assert_eq!(e.key, "workloads[0].surge_extra", "{e}");
            assert!(e.message.contains("must be in [0, 10]"), "{e}");
        }
        let src = DEFAULT_TOML.replace("surge_extra = 1.0", "surge_extra = 0");
        assert_eq!(
            Config::parse(&src, "p.toml").unwrap().workloads[0].surge_extra,
            0.0
        );
    }

    #[test]
    fn a_tuning_cadence_or_stretch_out_of_range_is_refused_with_its_key() {
        for (good, bad, key, says) in [
            (
                "tune_every_s = 86400",
                "tune_every_s = 600",
                "control.tune_every_s",
                "must be 0 (never) or at least 3600 seconds",
            ),
            (
                "tune_days = 7",
                "tune_days = 0",
                "control.tune_days",
                "between 1 and 90 days, got 0",
            ),
            (
                "tune_days = 7",
                "tune_days = 91",
                "control.tune_days",
                "between 1 and 90 days, got 91",
            ),
        ] {
            let e = Config::parse(&DEFAULT_TOML.replace(good, bad), "p.toml").unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        // Not without tunings to apply.
        let e = Config::parse(
            &DEFAULT_TOML
                .replace("tune_apply = false", "tune_apply = true")
                .replace("tune_every_s = 86400", "tune_every_s = 0"),
            "p.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "control.tune_apply", "{e}");
        assert!(e.message.contains("tune_every_s = 0 never tunes"), "{e}");
        // Not with replicas, which each read their own file.
        let e = Config::parse(
            &DEFAULT_TOML
                .replace("tune_apply = false", "tune_apply = true")
                .replace(
                    "enabled = false\nlease = \"prescale\"",
                    "enabled = true\nlease = \"prescale\"",
                ),
            "p.toml",
        )
        .unwrap_err();
        assert_eq!(e.key, "control.tune_apply", "{e}");
        assert!(e.message.contains("this replica's file alone"), "{e}");
        // Applying is asked for, never assumed.
        assert!(!Config::default().control.tune_apply);
        let apply = Config::parse(
            &DEFAULT_TOML.replace("tune_apply = false", "tune_apply = true"),
            "p.toml",
        )
        .unwrap();
        assert!(apply.control.tune_apply);
        // Off, and a file that leaves them out: a day, a week.
        let off = Config::parse(
            &DEFAULT_TOML.replace("tune_every_s = 86400", "tune_every_s = 0"),
            "p.toml",
        )
        .unwrap();
        assert_eq!(off.control.tune_every_s, 0);
        let short = Config::parse("[control]\ninterval_s = 15\n", "p.toml").unwrap();
        assert_eq!(
            (short.control.tune_every_s, short.control.tune_days),
            (86_400, 7)
        );
    }

    #[test]
    fn a_refresh_cadence_or_shift_out_of_range_is_refused_with_its_key() {
        let cases = [
            (
                "refit_s = 7200",
                "refit_s = 30",
                "refit_s",
                "at least one step (60 s)",
            ),
            (
                "error_decay = 0.9",
                "error_decay = 1.0",
                "error_decay",
                "[0, 1)",
            ),
            (
                "error_decay = 0.9",
                "error_decay = -0.1",
                "error_decay",
                "[0, 1)",
            ),
            (
                "error_decay = 0.9",
                "error_decay = nan",
                "error_decay",
                "[0, 1)",
            ),
        ];
        for (good, bad, key, says) in cases {
            let e = Config::parse(&DEFAULT_TOML.replace(good, bad), "p.toml").unwrap_err();
            assert_eq!(e.key, format!("workloads[0].{key}"), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let w = &Config::parse(DEFAULT_TOML, "p.toml").unwrap().workloads[0];
        assert_eq!((w.refit_s, w.error_decay), (7200, 0.9));
        let src = DEFAULT_TOML.replace("error_decay = 0.9", "error_decay = 0");
        assert_eq!(
            Config::parse(&src, "p.toml").unwrap().workloads[0].error_decay,
            0.0
        );
    }

    #[test]
    fn leader_election_refuses_a_hook_whose_state_only_this_replica_knows() {
        let on = DEFAULT_TOML.replace(
            "enabled = false\nlease = \"prescale\"",
            "enabled = true\nlease = \"prescale\"",
        );
        let hooks = [
            (
                "exec",
                "[providers.exec]\ncommand = [\"/usr/local/bin/hook\"]\n",
            ),
            (
                "webhook",
                "[providers.webhook]\nurl = \"http://127.0.0.1:8080/prescale\"\n",
            ),
        ];
        for (kind, section) in hooks {
            let src = format!(
                "{}\n{section}",
                on.replace("use = \"sim\"", &format!("use = {kind:?}"))
            );
            let e = Config::parse(&src, "p.toml").unwrap_err().to_string();
            assert!(
                e.contains(&format!("providers.{kind}.report_state"))
                    && e.contains("would not know what the one before it provisioned")
                    && e.contains("set report_state = true"),
                "{e}"
            );
            let told = format!("{src}report_state = true\n");
            let c = Config::parse(&told, "p.toml").unwrap();
            assert!(c.cautions(0).is_empty(), "{:?}", c.cautions(0));
            // One replica keeps its book across restarts: nothing to refuse.
            let alone = src.replace("enabled = true\nlease", "enabled = false\nlease");
            Config::parse(&alone, "p.toml").unwrap();
        }
        // Recommendations are kept in each replica's book: a warning, not a refusal.
        let c = Config::parse(
            &on.replace("use = \"sim\"", "use = \"recommend\""),
            "p.toml",
        )
        .unwrap();
        assert!(
            c.cautions(0)
                .iter()
                .any(|m| m.contains("the recommend provider keeps its book")),
            "{:?}",
            c.cautions(0)
        );
    }

    #[test]
    fn leader_election_is_off_by_default_and_its_timings_must_nest() {
        let c = Config::parse(DEFAULT_TOML, "p.toml").unwrap();
        assert_eq!(c.leader_election, LeaderElectionConfig::default());
        assert!(!c.leader_election.enabled);
        let on = DEFAULT_TOML.replace(
            "enabled = false\nlease = \"prescale\"",
            "enabled = true\nlease = \"prescale\"",
        );
        let c = Config::parse(&on, "p.toml").unwrap();
        assert!(c.leader_election.enabled);
        // In a cluster the API server is https: the TLS build is needed for the lease.
        assert_eq!(
            c.https_uses(),
            ["leader_election (on [providers.kubernetes]'s API server)"]
        );
        let e = Config::parse(
            &on.replace("renew_deadline_s = 10", "renew_deadline_s = 20"),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("needs 1 <= retry_period_s < renew_deadline_s < lease_duration_s (e.g. 2, 10, 15), got 2, 20 and 15"),
            "{e}"
        );
        let e = Config::parse(
            &on.replace("lease = \"prescale\"", "lease = \" \""),
            "p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("leader_election.lease"), "{e}");
        let advertised = |u: &str| {
            Config::parse(
                &on.replace(
                    "retry_period_s = 2",
                    &format!("retry_period_s = 2\nadvertise_url = {u:?}"),
                ),
                "p.toml",
            )
        };
        let c = advertised("http://10.0.0.7:9180").unwrap();
        assert_eq!(
            c.leader_election.advertise_url.as_deref(),
            Some("http://10.0.0.7:9180")
        );
        let e = advertised("10.0.0.7:9180").unwrap_err().to_string();
        assert!(
            e.contains("leader_election.advertise_url") && e.contains("\"10.0.0.7:9180\""),
            "{e}"
        );
        // A CA for the replicas' certificates is read by the TLS build only.
        let with_ca = Config::parse(
            &on.replace(
                "retry_period_s = 2",
                "retry_period_s = 2\nca_file = \"/etc/prescale/tls/ca.crt\"",
            ),
            "p.toml",
        )
        .unwrap();
        assert!(with_ca
            .https_uses()
            .contains(&"leader_election.advertise_url (forwarding to the holder)".to_string()));
        // The simulated cloud runs in each replica: the one taking over starts from
        // its own.
        assert_eq!(c.cautions(0).len(), 1, "{:?}", c.cautions(0));
        assert!(
            c.cautions(0)[0]
                .contains("the simulated cloud (providers.use = \"sim\") runs in each replica"),
            "{:?}",
            c.cautions(0)
        );
        let on = on.replace("use = \"sim\"", "use = \"kubernetes\"");
        let c = Config::parse(&on, "p.toml").unwrap();
        // Replicas sharing a remote store would mix their nodes' host series.
        assert!(c.cautions(0).is_empty(), "{:?}", c.cautions(0));
        let shared = format!(
            "{on}\n[storage.remote]\nwrite_url = \"http://vm:8428/api/v1/write\"\nread_url = \"http://vm:8428\"\n"
        );
        let mut c = Config::parse(&shared, "p.toml").unwrap();
        assert!(
            c.cautions(0)[0].contains("set [sources.host] enabled = false"),
            "{:?}",
            c.cautions(0)
        );
        c.sources.host.enabled = false;
        assert!(c.cautions(0).is_empty());
        assert!(advertised("https://prescale-0.prescale-pods:9180")
            .unwrap()
            .https_uses()
            .contains(&"leader_election.advertise_url (forwarding to the holder)".to_string()));
    }

    #[test]
    fn planned_events_are_read_with_their_times_and_checked() {
        let with = |events: &str| {
            let src =
                DEFAULT_TOML.replacen("\n[providers]\n", &format!("\n{events}\n[providers]\n"), 1);
            Config::parse(&src, "c.toml")
        };
        let c = with(
            "[[workloads.events]]\nname = \"launch\"\nstart = 2026-11-27T07:00:00+01:00\nend = \"2026-11-27T10:00:00Z\"\nscale = 3.0\n\
             [[workloads.events]]\nname = \"sale\"\nstart = 1795000000\nend = 1795003600.5\nmin_demand = 40.0\n",
        )
        .unwrap();
        let e = &c.workloads[0].events;
        assert_eq!(e.len(), 2);
        assert_eq!(
            crate::format_ts(e[0].start.0),
            "2026-11-27T06:00:00Z",
            "its offset"
        );
        assert_eq!(crate::format_ts(e[0].end.0), "2026-11-27T10:00:00Z");
        assert_eq!((e[0].scale, e[0].min_demand), (3.0, None));
        assert_eq!(
            (e[1].start.0, e[1].end.0),
            (1_795_000_000_000, 1_795_003_600_500)
        );
        assert_eq!((e[1].scale, e[1].min_demand), (1.0, Some(40.0)));
        // As JSON gives them (the API's): quoted, with an offset or in UTC, or seconds.
        for (given, read) in [
            ("\"2026-11-27T07:00:00+01:00\"", 1_795_759_200_000),
            ("\"2026-11-27T06:00:00Z\"", 1_795_759_200_000),
            ("\"2026-11-27T01:00:00.5-05:00\"", 1_795_759_200_500),
            ("1795759200", 1_795_759_200_000),
        ] {
            let t: crate::model::EventTime = serde_json::from_str(given).unwrap();
            assert_eq!(t.0, read, "{given}");
        }
        for naive in ["\"2026-11-27T06:00:00\"", "\"2026-11-27\"", "\"tomorrow\""] {
            let e = serde_json::from_str::<crate::model::EventTime>(naive).unwrap_err();
            assert!(
                e.to_string()
                    .contains("give a time as RFC 3339 with its offset"),
                "{naive}: {e}"
            );
        }
        // Written out and read again the same (`config show`).
        let again = Config::parse(&c.to_toml(), "shown.toml").unwrap();
        assert_eq!(again.workloads[0].events, c.workloads[0].events);
        assert!(
            Config::default().to_toml().find("events").is_none(),
            "none: not written"
        );
        // Warned of at start and by `config check`: one too soon to be ready, one over.
        let cautions = |now: i64| -> Vec<String> {
            c.cautions(now)
                .into_iter()
                .filter(|x| x.contains("planned event"))
                .collect()
        };
        assert_eq!(
            cautions(1_795_000_000_000 - 60_000),
            ["workload \"host\": planned event \"sale\" starts at 2026-11-18T11:06:40Z, sooner than its slowest tier's 90th-percentile lead time (450 s) from now: its capacity may not all be ready when it starts"]
        );
        assert!(cautions(1_795_000_000_000 - 450_000).is_empty());
        let over = cautions(1_795_773_600_000);
        assert!(
            over.len() == 2
                && over[0].starts_with("workload \"host\": planned event \"launch\" ended at 2026-11-27T10:00:00Z: it no longer changes plans"),
            "{over:?}"
        );
        // What is wrong, and where.
        let bad = |body: &str| {
            with(&format!("[[workloads.events]]\nname = \"x\"\n{body}"))
                .unwrap_err()
                .to_string()
        };
        let base = "start = 2026-11-27T06:00:00Z\nend = 2026-11-27T07:00:00Z\n";
        for (body, says) in [
            (
                "start = 2026-11-27T06:00:00Z\nend = 2026-11-27T06:00:00Z\nscale = 2.0\n",
                "key `workloads[0].events[0].end`: 2026-11-27T06:00:00Z is not after start = 2026-11-27T06:00:00Z",
            ),
            (
                &format!("{base}scale = 0.0\n"),
                "key `workloads[0].events[0].scale`: must be above 0 and at most 100",
            ),
            (
                &format!("{base}scale = 1000.0\n"),
                "must be above 0 and at most 100 (the forecast's multiple; 3 for three times the usual demand), got 1000",
            ),
            (
                &format!("{base}min_demand = -1.0\n"),
                "key `workloads[0].events[0].min_demand`: must be zero or positive (vCPU), got -1",
            ),
            (
                base,
                "event \"x\" changes nothing: give a scale other than 1, a min_demand or min_dimensions",
            ),
            (
                "start = 2026-11-27T06:00:00\nend = 2026-11-27T07:00:00Z\nscale = 2.0\n",
                "`2026-11-27T06:00:00` has no date or no offset: give a time as RFC 3339 with its offset",
            ),
            (
                "start = \"2026-11-27 06:00\"\nend = 2026-11-27T07:00:00Z\nscale = 2.0\n",
                "cannot read \"2026-11-27 06:00\"",
            ),
            (
                &format!("{base}scale = 2.0\nscal = 3.0\n"),
                "unknown field `scal`",
            ),
        ] {
            let e = bad(body);
            assert!(e.contains(says), "{body}: {e}");
        }
        // A least demand in another dimension: one the workload plans, in its units.
        for (body, says) in [
            (
                format!("{base}min_dimensions = {{ cpu = 4.0 }}\n"),
                "key `workloads[0].events[0].min_dimensions.cpu`: vCPU is the event's min_demand",
            ),
            (
                format!("{base}min_dimensions = {{ ram = 4.0 }}\n"),
                "`workloads[0].events[0].min_dimensions.ram`: \"ram\" is no dimension: memory (GiB), disk_iops or network_mbps",
            ),
            (
                format!("{base}min_dimensions = {{ memory = -4.0 }}\n"),
                "`workloads[0].events[0].min_dimensions.memory`: must be zero or positive (GiB), got -4",
            ),
            (
                format!("{base}min_dimensions = {{ memory = 400.0 }}\n"),
                "key `workloads[0].events[0].min_dimensions.memory`: the workload does not plan its memory: add it to the workload's `dimensions`",
            ),
        ] {
            let e = bad(&body);
            assert!(e.contains(says), "{body}: {e}");
        }
        let planned = DEFAULT_TOML
            .replace("# dimensions = { memory", "dimensions = { memory")
            .replacen(
                "\n[providers]\n",
                &format!("\n[[workloads.events]]\nname = \"warm\"\n{base}min_dimensions = {{ memory = 400.0 }}\n\n[providers]\n"),
                1,
            );
        let c = Config::parse(&planned, "c.toml").unwrap();
        let warm = &c.workloads[0].events[0];
        assert_eq!((warm.scale, warm.min_demand), (1.0, None));
        assert_eq!(warm.min_dimensions, [("memory".to_string(), 400.0)].into());
        assert_eq!(
            Config::parse(&c.to_toml(), "shown.toml").unwrap().workloads[0].events[0],
            *warm
        );
        let w = &c.workloads[0];
        let disk = crate::model::PlannedEvent {
            min_dimensions: [("disk_iops".to_string(), 5000.0)].into(),
            ..warm.clone()
        };
        assert_eq!(check_event_dimensions(w, warm), Ok(()));
        assert_eq!(
            check_event_dimensions(w, &disk).unwrap_err().1,
            "workload \"host\" does not plan its disk_iops: its configuration's `dimensions` name memory"
        );
        let e = with(&format!(
            "[[workloads.events]]\nname = \"x\"\n{base}scale = 2.0\n[[workloads.events]]\nname = \"x\"\n{base}scale = 2.0\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key `workloads[0].events[1].name`: \"x\" names two events"),
            "{e}"
        );
    }

    #[test]
    fn recurring_events_are_read_expanded_in_their_time_zone_and_checked() {
        let with = |events: &str| {
            let src =
                DEFAULT_TOML.replacen("\n[providers]\n", &format!("\n{events}\n[providers]\n"), 1);
            Config::parse(&src, "c.toml")
        };
        let c = with(
            "[[workloads.recurring_events]]\nname = \"close\"\nevery = \"0 18 L * *\"\ntimezone = \"Europe/Berlin\"\nduration_s = 21600\nscale = 2.0\n\
             [[workloads.recurring_events]]\nname = \"office\"\nevery = \"0 9 * * MON-FRI\"\ntimezone = \"America/New_York\"\nduration_s = 28800\nmin_demand = 40.0\n\
             [[workloads.recurring_events]]\nname = \"report\"\nevery = \"30 6 * * 1#1\"\nduration_s = 3600\nscale = 1.5\n",
        )
        .unwrap();
        let r = &c.workloads[0].recurring_events;
        assert_eq!(r.len(), 3);
        assert_eq!(
            (r[2].timezone.as_str(), r[1].scale, r[1].min_demand),
            ("UTC", 1.0, Some(40.0))
        );
        let t = |s: &str| crate::parse_ts(s).unwrap();
        let starts = |k: usize, from: &str, to: &str| -> Vec<String> {
            r[k].occurrences(t(from), t(to))
                .iter()
                .map(|e| crate::format_ts(e.start.0))
                .collect()
        };
        // A month's last day at 18:00 in Berlin: 17:00 UTC in winter, 16:00 in summer;
        // the one in force at `from` is in.
        assert_eq!(
            starts(0, "2026-12-31T20:00:00Z", "2027-04-01T00:00:00Z"),
            [
                "2026-12-31T17:00:00Z",
                "2027-01-31T17:00:00Z",
                "2027-02-28T17:00:00Z",
                "2027-03-31T16:00:00Z"
            ]
        );
        let close = &r[0].occurrences(t("2026-12-31T20:00:00Z"), t("2026-12-31T21:00:00Z"))[0];
        assert_eq!(
            r[0].next(t("2026-12-31T20:00:00Z")).map(|e| e.start.0),
            Some(t("2027-01-31T17:00:00Z"))
        );
        assert_eq!(close.name, "close at 2026-12-31T17:00:00Z");
        assert_eq!(close.end.0 - close.start.0, 21_600_000);
        assert_eq!(
            (close.scale, close.recurring.as_deref()),
            (2.0, Some("close"))
        );
        // Weekdays at nine in New York, across the spring's change of clock (8 March
        // 2026): 14:00 UTC on Friday, 13:00 on Monday; none at the weekend.
        assert_eq!(
            starts(1, "2026-03-06T00:00:00Z", "2026-03-09T13:00:01Z"),
            ["2026-03-06T14:00:00Z", "2026-03-09T13:00:00Z"]
        );
        // At 02:30 in Berlin: once on the night the clock goes back (02:00-03:00 comes
        // twice), and at 03:00 on the night it skips that hour, as cron does.
        let night = crate::model::RecurringEvent {
            every: "30 2 * * *".into(),
            timezone: "Europe/Berlin".into(),
            duration_s: 600,
            ..r[0].clone()
        };
        let nights = |from: &str, to: &str| -> Vec<String> {
            night
                .occurrences(t(from), t(to))
                .iter()
                .map(|e| crate::format_ts(e.start.0))
                .collect()
        };
        assert_eq!(
            nights("2027-10-30T00:00:00Z", "2027-11-01T12:00:00Z"),
            [
                "2027-10-30T00:30:00Z",
                "2027-10-31T00:30:00Z",
                "2027-11-01T01:30:00Z"
            ]
        );
        assert_eq!(
            nights("2027-03-27T00:00:00Z", "2027-03-29T12:00:00Z"),
            [
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:00Z"
            ]
        );
        // Each first Monday of the month, at 06:30 UTC.
        assert_eq!(
            starts(2, "2026-11-01T00:00:00Z", "2027-01-05T00:00:00Z"),
            [
                "2026-11-02T06:30:00Z",
                "2026-12-07T06:30:00Z",
                "2027-01-04T06:30:00Z"
            ]
        );
        // Written out and read again the same (`config show`).
        let again = Config::parse(&c.to_toml(), "shown.toml").unwrap();
        assert_eq!(again.workloads[0].recurring_events, *r);
        // The README's other patterns are read.
        for every in ["0 3 15W * *", "@monthly", "0 9 * * MON-FRI", "0 6 * * 1#1"] {
            let r = crate::model::RecurringEvent {
                every: every.into(),
                ..r[0].clone()
            };
            assert!(r.next(crate::now_ms()).is_some(), "{every}");
        }
        // `config check` says when each comes next, on its own clock.
        let said = c.recurring_summary(t("2026-12-31T20:00:00Z"));
        assert_eq!(
            said[0],
            "workload \"host\": recurring event \"close\" every \"0 18 L * *\" in Europe/Berlin (At 18:00, on the last day of the month), for 21600 s: next at 2027-01-31T18:00:00+01:00, 2027-02-28T18:00:00+01:00, 2027-03-31T18:00:00+02:00"
        );
        assert_eq!(said.len(), 3);
        // Warned of when the next comes sooner than the slowest tier's lead time.
        let now = t("2026-12-07T06:25:00Z");
        let cautions: Vec<String> = c
            .cautions(now)
            .into_iter()
            .filter(|x| x.contains("recurring event"))
            .collect();
        assert_eq!(
            cautions,
            ["workload \"host\": recurring event \"report\" next starts at 2026-12-07T06:30:00Z, sooner than its slowest tier's 90th-percentile lead time (450 s) from now: its capacity may not all be ready when it starts"]
        );
        // What is wrong, and where.
        let bad = |body: &str| {
            with(&format!(
                "[[workloads.recurring_events]]\nname = \"x\"\n{body}"
            ))
            .unwrap_err()
            .to_string()
        };
        for (body, says) in [
            (
                "every = \"0 25 * * *\"\nduration_s = 600\nscale = 2.0\n",
                "key `workloads[0].recurring_events[0].every`: cannot read \"0 25 * * *\" as a cron pattern",
            ),
            (
                "every = \"0 0 9 * * *\"\nduration_s = 600\nscale = 2.0\n",
                "give five fields, minute hour day-of-month month day-of-week",
            ),
            (
                "every = \"0 9 * * *\"\ntimezone = \"Europe/Berln\"\nduration_s = 600\nscale = 2.0\n",
                "key `workloads[0].recurring_events[0].timezone`: \"Europe/Berln\" is not an IANA time zone name (did you mean \"Europe/Berlin\"?",
            ),
            (
                "every = \"0 9 * * *\"\nduration_s = 0\nscale = 2.0\n",
                "key `workloads[0].recurring_events[0].duration_s`: must be at least 1 (seconds)",
            ),
            (
                "every = \"0 9,12 * * *\"\nduration_s = 14400\nscale = 2.0\n",
                "`workloads[0].recurring_events[0].duration_s`: 14400 s is longer than the 10800 s from the start at",
            ),
            (
                "every = \"*/30 * * * *\"\nduration_s = 600\nscale = 2.0\n",
                "starts again 1800 s after",
            ),
            (
                "every = \"0 0 30 2 *\"\nduration_s = 600\nscale = 2.0\n",
                "\"0 0 30 2 *\" never comes within a year: check its day and month",
            ),
            (
                "every = \"0 9 * * *\"\nduration_s = 600\n",
                "key `workloads[0].recurring_events[0].scale`: event \"x\" changes nothing",
            ),
            (
                "every = \"0 9 * * *\"\nduration_s = 600\nscale = 101.0\n",
                "key `workloads[0].recurring_events[0].scale`: must be above 0 and at most 100",
            ),
            (
                "every = \"0 9 * * *\"\nduration_s = 600\nmin_demand = -2.0\n",
                "key `workloads[0].recurring_events[0].min_demand`: must be zero or positive",
            ),
            ("every = \"0 9 * * *\"\nscale = 2.0\n", "missing field `duration_s`"),
        ] {
            let e = bad(body);
            assert!(e.contains(says), "{body}: {e}");
        }
        // One name for one event, recurring or not; and an occurrence is prescale's.
        let e = with(
            "[[workloads.events]]\nname = \"x\"\nstart = 2026-11-27T06:00:00Z\nend = 2026-11-27T07:00:00Z\nscale = 2.0\n\
             [[workloads.recurring_events]]\nname = \"x\"\nevery = \"@daily\"\nduration_s = 600\nscale = 2.0\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key `workloads[0].recurring_events[0].name`: \"x\" names two events"),
            "{e}"
        );
        let e = with(
            "[[workloads.events]]\nname = \"x\"\nstart = 2026-11-27T06:00:00Z\nend = 2026-11-27T07:00:00Z\nscale = 2.0\nrecurring = \"y\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("key `workloads[0].events[0].recurring`: is prescale's"),
            "{e}"
        );
    }

    #[test]
    fn workload_classes_set_defaults_that_a_workload_can_override() {
        let base = DEFAULT_TOML
            .replace("max_spot_share = 0.5\n", "")
            .replace("scale_down_delay_s = 300\n", "")
            .replace("scale_down_window_s = 7200\n", "")
            .replace("scale_down_max_share = 1.0\n", "")
            .replace("scale_down_period_s = 300\n", "")
            .replace("min_instances = 1\n", "");
        let parse = |class: &str, extra: &str| {
            let src = base.replace(
                "class = \"service\"",
                &format!("class = \"{class}\"\n{extra}"),
            );
            Config::parse(&src, "c.toml").unwrap().workloads[0].clone()
        };
        let w = parse("stateful", "");
        assert_eq!(w.class, crate::model::WorkloadClass::Stateful);
        assert_eq!((w.max_spot_share, w.scale_down_delay_s), (0.0, 1800));
        let w = parse("batch", "");
        assert_eq!((w.max_spot_share, w.scale_down_delay_s), (1.0, 60));
        assert_eq!(w.scale_down_window_s, 0);
        assert_eq!(parse("stateful", "").scale_down_window_s, 7200);
        let w = parse("batch", "scale_down_window_s = 600");
        assert_eq!(w.scale_down_window_s, 600);
        let w = parse("batch", "max_spot_share = 0.3");
        assert_eq!((w.max_spot_share, w.scale_down_delay_s), (0.3, 60));
        let w = parse("service", "scale_down_delay_s = 42");
        assert_eq!((w.max_spot_share, w.scale_down_delay_s), (0.5, 42));
        // Only stateful workloads shrink at a limited pace by default.
        assert_eq!(parse("stateful", "").scale_down_max_share, 0.1);
        assert_eq!(parse("service", "").scale_down_max_share, 1.0);
        assert_eq!(parse("batch", "").scale_down_max_share, 1.0);
        let w = parse(
            "stateful",
            "scale_down_max_share = 0.25\nscale_down_period_s = 60",
        );
        assert_eq!((w.scale_down_max_share, w.scale_down_period_s), (0.25, 60));
        // Batch work may go to no instance; a service or a database keeps one, or as
        // many as it says.
        assert_eq!(parse("batch", "").min_instances, 0);
        assert_eq!(parse("service", "").min_instances, 1);
        assert_eq!(parse("stateful", "").min_instances, 1);
        assert_eq!(parse("batch", "min_instances = 3").min_instances, 3);
        for (bad, says) in [
            (
                "min_instances = 500",
                "min_instances`: is 500, but the tiers that may serve the workload hold at most",
            ),
            (
                "scale_down_max_share = 1.5",
                "scale_down_max_share`: must be in [0, 1]",
            ),
            (
                "scale_down_period_s = 0",
                "scale_down_period_s`: must be at least 1",
            ),
        ] {
            let src = base.replace(
                "class = \"service\"",
                &format!("class = \"service\"\n{bad}"),
            );
            let e = Config::parse(&src, "c.toml").unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let e = Config::parse(
            &base.replace("class = \"service\"", "class = \"gpu\""),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("class") && e.contains("stateful"), "{e}");
        // A budget below what the floor costs is said at start (the budget binds first).
        let budget = |b: &str| {
            let src = base.replace(
                "class = \"service\"",
                &format!("class = \"service\"\nmin_instances = 2\nbudget_per_hour = {b}"),
            );
            Config::parse(&src, "c.toml").unwrap().cautions(0)
        };
        let said = budget("0.3");
        assert!(
            said.len() == 1
                && said[0].contains(
                    "min_instances = 2 costs at least $0.38/h, more than budget_per_hour = 0.3"
                ),
            "{said:?}"
        );
        assert!(budget("0.4").is_empty());
        // So is a fleet budget below what every workload's minimum costs together.
        let fleet = |b: &str| {
            let src = base
                .replace(
                    "class = \"service\"",
                    "class = \"service\"\nmin_instances = 2",
                )
                .replace("[fleet]\n", &format!("[fleet]\nbudget_per_hour = {b}\n"));
            Config::parse(&src, "c.toml").unwrap().cautions(0)
        };
        let said = fleet("0.3");
        assert!(
            said.len() == 1
                && said[0].contains(
                    "fleet.budget_per_hour = 0.3 is below what the workloads' min_instances cost together (at least $0.38/h)"
                ),
            "{said:?}"
        );
        assert!(fleet("0.4").is_empty());
        // And a fleet budget must be a sum of money.
        let e = Config::parse(
            &base.replace("[fleet]\n", "[fleet]\nbudget_per_month = -5\n"),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("fleet.budget_per_month") && e.contains("must be zero or positive"),
            "{e}"
        );
        // Two critical services whose minimums do not fit the high-performance pool
        // together (each alone would): said once.
        let mut c = Config::default();
        c.tiers[2].max_instances = 5;
        let mut w = c.workloads[0].clone();
        w.latency_class = crate::model::LatencyClass::Critical;
        w.min_instances = 3;
        let mut v = w.clone();
        (w.name, v.name) = ("pay".into(), "auth".into());
        c.workloads = vec![w, v];
        let text = toml::to_string(&c).unwrap();
        let said = Config::parse(&text, "c.toml").unwrap().cautions(0);
        assert_eq!(
            said,
            ["workloads pay 3, auth 3 keep 6 instances at least (min_instances) on tiers high-performance that hold at most 5 over every workload (max_instances): the lower priorities, or those planned later, run fewer"]
        );
        c.tiers[2].max_instances = 6;
        let text = toml::to_string(&c).unwrap();
        assert!(Config::parse(&text, "c.toml")
            .unwrap()
            .cautions(0)
            .is_empty());
    }

    #[test]
    fn semantic_errors_point_at_the_key() {
        let src = DEFAULT_TOML.replace("sla_quantile = 0.95", "sla_quantile = 1.5");
        let e = Config::parse(&src, "p.toml").unwrap_err();
        assert_eq!(e.key, "workloads[0].sla_quantile");
        let line = src
            .lines()
            .position(|l| l.contains("sla_quantile = 1.5"))
            .unwrap()
            + 1;
        assert_eq!(e.line, Some(line), "{e}");

        let src = DEFAULT_TOML.replace("listen = \"127.0.0.1:9180\"", "listen = \"here\"");
        let e = Config::parse(&src, "p.toml").unwrap_err();
        assert_eq!(e.key, "server.listen");
        assert!(e.message.contains("address:port"));

        let mut c = Config::default();
        c.workloads[0].tiers = vec!["gold".into()];
        let text = toml::to_string(&c).unwrap();
        let e = Config::parse(&text, "p.toml").unwrap_err();
        assert!(e.message.contains("unknown tier \"gold\""), "{e}");
        assert!(e.line.is_some());

        // A tier may be reserved for named workloads; the names must exist.
        let mut c = Config::default();
        c.tiers[1].workloads = vec!["nobody".into()];
        let e = Config::parse(&toml::to_string(&c).unwrap(), "p.toml").unwrap_err();
        assert_eq!(e.key, "tiers[1].workloads");
        assert!(e.message.contains("unknown workload \"nobody\""), "{e}");
        // ...and every workload needs a tier that serves it.
        let mut c = Config::default();
        let other = c.workloads[0].name.clone() + "-other";
        let mut w2 = c.workloads[0].clone();
        w2.name = other.clone();
        c.workloads.push(w2);
        for t in &mut c.tiers {
            t.workloads = vec![other.clone()];
        }
        let e = Config::parse(&toml::to_string(&c).unwrap(), "p.toml").unwrap_err();
        assert_eq!(e.key, "workloads[0].tiers");
        assert!(e.message.contains("no tier may serve"), "{e}");
    }

    #[test]
    fn a_misspelt_section_is_refused_on_its_line() {
        let src = DEFAULT_TOML.replace("[control]\n", "[controls]\n");
        let e = Config::parse(&src, "p.toml").unwrap_err();
        assert!(e.message.contains("unknown field `controls`"), "{e}");
        let line = src.lines().position(|l| l == "[controls]").unwrap() + 1;
        assert_eq!(e.line, Some(line), "{e}");
    }

    #[test]
    fn a_file_need_only_say_what_differs_from_the_defaults() {
        let src = "[server]\nlisten = \"127.0.0.1:9999\"\n\n\
                   [control]\ninterval_s = 30\n\n\
                   [[workloads]]\nname = \"web\"\ndemand = 'rate(http_requests_total)'\n\
                   class = \"batch\"\n";
        let c = Config::parse(src, "p.toml").unwrap();
        let d = Config::default();
        // What it says...
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.control.interval_s, 30);
        assert_eq!(c.workloads.len(), 1, "its workloads replace the default's");
        assert_eq!(c.workloads[0].name, "web");
        // ...the class defaults filling what its workload leaves out...
        assert_eq!(c.workloads[0].max_spot_share, 1.0);
        assert_eq!(c.workloads[0].scale_down_delay_s, 60);
        // ...and the rest is the built-in configuration.
        assert_eq!(c.tiers, d.tiers);
        assert_eq!(c.storage, d.storage);
        assert_eq!(c.sources, d.sources);
        assert_eq!(c.providers, d.providers);
        let mut control = c.control.clone();
        control.interval_s = d.control.interval_s;
        assert_eq!(
            control, d.control,
            "the section's other keys are the defaults'"
        );
        // An empty file is the built-in configuration.
        assert_eq!(Config::parse("", "empty.toml").unwrap(), d);
        // A mistake in a short file is still found on its line, with its column.
        let e = Config::parse("[control]\ninterval_s = \"often\"\n", "p.toml").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.line, e.column),
            ("control.interval_s", Some(2), Some(14)),
            "{e}"
        );
        // A workload it gives must be whole: the defaults have no demand for it.
        let e = Config::parse("[[workloads]]\nname = \"web\"\n", "p.toml").unwrap_err();
        assert!(e.message.contains("missing field `demand`"), "{e}");
        assert_eq!((e.key.as_str(), e.line), ("workloads[0]", Some(1)), "{e}");
    }

    #[test]
    fn a_lead_time_tail_below_its_median_a_zero_billing_granularity_or_a_bad_size_is_refused() {
        for (from, to, key) in [
            (
                "lead_time_p90_s = 240",
                "lead_time_p90_s = 60",
                "tiers[0].lead_time_p90_s",
            ),
            (
                "billing_granularity_s = 1",
                "billing_granularity_s = 0",
                "tiers[0].billing_granularity_s",
            ),
            // Sizes that were taken as "not said".
            (
                "memory_gib = 16.0",
                "memory_gib = -16.0",
                "tiers[0].memory_gib",
            ),
            (
                "disk_iops = 3000.0",
                "disk_iops = nan",
                "tiers[0].disk_iops",
            ),
            (
                "network_mbps = 750.0",
                "network_mbps = inf",
                "tiers[0].network_mbps",
            ),
        ] {
            assert!(DEFAULT_TOML.contains(from), "{from}");
            let line = DEFAULT_TOML.lines().position(|l| l == from).unwrap() + 1;
            let e = Config::parse(&DEFAULT_TOML.replacen(from, to, 1), "c.toml").unwrap_err();
            assert_eq!((e.key.as_str(), e.line), (key, Some(line)), "{e}");
        }
    }

    #[test]
    fn locate_walks_array_tables() {
        let src = "[[a]]\nx = 1\n[[a]]\ny = 2\nx = 3\n[b]\nx = 4\n";
        assert_eq!(locate(src, "a[1].x"), Some(5));
        assert_eq!(locate(src, "a[0].x"), Some(2));
        assert_eq!(locate(src, "b.x"), Some(7));
        assert_eq!(locate(src, "a[1].z"), Some(3));
    }
}
