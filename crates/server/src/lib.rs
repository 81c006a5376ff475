//! The HTTP server: health, Prometheus `/metrics`, the JSON API under `/api/v1/`, and the
//! dashboard (a static page compiled into the binary, drawing its charts from the API).
//!
//! Only the write endpoints (the remote_write and line-protocol receivers, see [`write`])
//! `/-/reload`, the snapshot and releasing unmanaged capacity change anything; they need the configured token, and one must be configured before the
//! server listens beyond loopback with them enabled.
//!
//! | path | what |
//! | --- | --- |
//! | `GET /healthz` | `ok` while the process serves |
//! | `GET /metrics` | prescale's own metrics, current forecasts and allocations |
//! | `GET /api/v1/series` | every stored series; with `match[]`, Prometheus' answer ([`promapi`]) |
//! | `GET /api/v1/query_range?series=SEL&start=S&end=E[&max_points=N&reduce=max\|mean]` | samples of one series (unix seconds), thinned to at most N ([`thin`]) |
//! | `GET\|POST /api/v1/query`, `query_range?query=..&step=..`, `labels`, `label/NAME/values`, `status/buildinfo` | Prometheus' query API ([`promql`], its parameters and `match[]` in [`promapi`]) |
//! | `GET /api/v1/metadata` | metric families' type, help and unit ([`promapi::metadata`]) |
//! | `GET /api/v1/status/config`, `status/runtimeinfo` | the configuration in force; start, reload and retention as Prometheus reports them |
//! | `GET /api/v1/workloads` | each workload's current state, without the forecast |
//! | `GET /api/v1/targets` | each scrape target's health, last error and last scrape |
//! | `GET /api/v1/sources` | receivers and their counts, targets, the sample store, the provider |
//! | `GET /api/v1/workloads/{name}/status` | everything the engine knows about it |
//! | `GET /api/v1/workloads/{name}/forecast` | the latest forecast |
//! | `GET /api/v1/workloads/{name}/plan` | the latest plan |
//! | `GET /api/v1/workloads/{name}/model` | the model registry entry: model, scores, why |
//! | `GET /api/v1/workloads/{name}/decisions?limit=N&since=T&until=T&kind=K` | the newest decisions, between two times, of some kinds |
//! | `GET /api/v1/workloads/{name}/compare?days=D` | what prescale spent and was short over its last days, next to HPA on the same demand ([`compare`]) |
//! | `GET /api/v1/workloads/{name}/tune` | its latest tuning: its own settings and each safeguard turned the other way, replayed on its stored demand, and the advice where another run dominates ([`tune`]) |
//! | `POST /api/v1/admin/tsdb/snapshot` | copies the embedded store at one instant into `snapshots/NAME` in its directory, for backups (the same token rule as `/-/reload`) |
//! | `POST /api/v1/workloads/{name}/pause?scope=all\|scale-down&for=D\|until=T&reason=R`, `POST /api/v1/workloads/{name}/resume` | pauses a workload until a set time (capacity left as it is, or not removed) and lifts the pause (the same token rule as `/-/reload`) |
//! | `POST /api/v1/workloads/{name}/events`, `GET` the same, `POST /api/v1/workloads/{name}/events/{event}/cancel` | declares a planned event (JSON, the fields of `[[workloads.events]]`), lists the workload's events, cancels a declared one (the same token rule as `/-/reload`) |
//! | `GET /api/v1/unmanaged` | capacity held for workloads no longer configured: instances per tier, cost per hour, since when and why |
//! | `POST /api/v1/unmanaged/{name}/release` | releases what such a workload holds (the same token rule as `/-/reload`) |
//! | `POST /-/reload[?dry_run=true]` | rereads the configuration file, as SIGHUP does (the token where one is set; refused beyond loopback without one); a dry run says what would change |
//! | `POST /api/v1/write` | Prometheus remote write 1.0 and 2.0 |
//! | `POST /api/v2/write`, `POST /write` | InfluxDB line protocol (2 and 1) |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prescale_collect::scrape::{MetricMeta, TargetHealth};
use prescale_core::{DecisionKind, SeriesKey, Tier, TimestampMs};
use prescale_orchestrate::{Status, WorkloadStatus};
use prescale_store::{DecisionFilter, Store};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub mod anomalies;
pub mod compare;
pub mod forward;
pub mod process;
pub mod promapi;
pub mod promql;
pub mod tune;
pub mod write;

/// The largest write body taken, before decompression.
const MAX_WRITE_BODY: usize = 64 << 20;

const DASHBOARD: &str = include_str!("../assets/dashboard.html");

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The engine's published status.
    pub status: Arc<RwLock<Status>>,
    /// The tier catalog, the workloads and the provider, swapped whole by a reload.
    managed: Arc<RwLock<Arc<Managed>>>,
    /// The write receivers' settings, token and counters.
    pub receivers: Arc<write::Receivers>,
    /// Each scrape target's health, by (job, instance), kept by the scrape loops.
    pub targets: Targets,
    /// What scrapes and senders said of their metric families.
    pub metadata: Metadata,
    /// The anomaly detectors of every stored series.
    pub anomalies: anomalies::Anomalies,
    /// Whether the server listens beyond loopback: reloading over HTTP then needs the
    /// token.
    exposed: bool,
    /// Asks the daemon to reload its configuration (`POST /-/reload`); `None` where
    /// nothing reloads (tests, `prescale demo`).
    pub reload: Option<Reloader>,
    /// How the last reload went, for `/metrics` and `/api/v1/sources`.
    pub reloads: Arc<RwLock<ReloadStatus>>,
    /// Releases what an unmanaged workload holds (`POST /api/v1/unmanaged/{name}/release`);
    /// `None` where nothing is released (tests, `prescale demo`).
    pub release: Option<Releaser>,
    /// Pauses and resumes workloads (`POST /api/v1/workloads/{name}/pause` and
    /// `/resume`); `None` where nothing is paused (tests, `prescale demo`).
    pub pause: Option<Pauser>,
    /// Declares and cancels planned events (`POST /api/v1/workloads/{name}/events` and
    /// `.../events/{event}/cancel`); `None` where none is declared (tests, `prescale demo`).
    pub events: Option<EventSetter>,
    /// This replica's part in leader election, with `[leader_election] enabled`.
    pub leadership: Option<Arc<Leadership>>,
    /// With leader election, writes on the Lease at once what a change just made
    /// (a pause, a resume, an event, a release) leaves for the replica taking over
    /// ([`HandOn`]); `None` without it.
    pub hand_on: Option<HandOn>,
    /// The configuration in force (settings only a restart applies as they run), for
    /// `/api/v1/status/config`; a reload replaces it.
    pub config: Arc<RwLock<prescale_core::config::Config>>,
    /// When the process started (unix ms).
    started_ms: i64,
    /// Whether reads need the token too (`[server] token_for_reads`; a reload may
    /// change it).
    pub token_for_reads: Arc<std::sync::atomic::AtomicBool>,
    /// The certificate served, when `[server] cert_file` is set.
    #[cfg(feature = "tls")]
    pub tls: Option<tls::Tls>,
    /// Comparisons with HPA made lately, by workload and days, with when they were
    /// made: each open dashboard asks for one a minute.
    compared: Arc<std::sync::Mutex<std::collections::BTreeMap<(String, u64), Compared>>>,
    /// Comparisons computed (not served from [`AppState::compared`]).
    compare_runs: Arc<std::sync::atomic::AtomicU64>,
}

/// What the daemon manages: swapped whole when the configuration is reloaded.
#[derive(Debug, Clone, Default)]
pub struct Managed {
    /// The tier catalog.
    pub tiers: Vec<Tier>,
    /// The workloads, in configuration order.
    pub workloads: Vec<prescale_core::Workload>,
    /// The provider in use (`sim`, `kubernetes`, `exec`, `webhook`).
    pub provider: String,
    /// What the provider acts on, in words: the objects a Kubernetes provider scales,
    /// the program a hook runs, the URL it posts to (without credentials or query).
    pub provider_target: String,
}

impl Managed {
    /// A configuration's tiers, workloads and provider.
    pub fn of(cfg: &prescale_core::config::Config) -> Self {
        Self {
            tiers: cfg.tiers.clone(),
            workloads: cfg.workloads.clone(),
            provider: serde_json::to_value(cfg.providers.use_)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            provider_target: provider_target(&cfg.providers),
        }
    }
}

/// What `p`'s provider acts on, in words, with nothing secret: a hook's arguments and a
/// URL's credentials and query are left out.
fn provider_target(p: &prescale_core::config::ProvidersConfig) -> String {
    use prescale_core::config::ProviderKind;
    match p.use_ {
        ProviderKind::Sim => format!("the simulated cloud, seed {}", p.sim.seed),
        ProviderKind::Recommend => "nothing: each action is logged as advice".into(),
        ProviderKind::Kubernetes => {
            let k = p.kubernetes.clone().unwrap_or_default();
            format!(
                "{}s named {} in namespace {}",
                k.kind.noun(),
                k.name,
                k.namespace
                    .as_deref()
                    .unwrap_or("of prescale's pod (else default)")
            )
        }
        ProviderKind::Exec => match p.exec.as_ref().and_then(|e| e.command.first()) {
            Some(program) => format!("runs {program}"),
            None => "runs no command (providers.exec.command is unset)".into(),
        },
        ProviderKind::Webhook => match &p.webhook {
            Some(w) => format!("posts to {}", url_without_secrets(&w.url)),
            None => "posts nowhere (providers.webhook.url is unset)".into(),
        },
    }
}

/// `url` without its user information (`user:password@`), query and fragment, which
/// may carry credentials.
fn url_without_secrets(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// A request to reload (or, with `dry_run`, to say what a reload would change),
/// answered with what changed or why nothing did.
pub struct ReloadRequest {
    /// Check the file and say what would change, changing nothing.
    pub dry_run: bool,
    /// Where the answer goes.
    pub answer: tokio::sync::oneshot::Sender<Result<serde_json::Value, String>>,
}

/// Where reload requests go.
pub type Reloader = tokio::sync::mpsc::Sender<ReloadRequest>;

/// This replica's part in leader election (`[leader_election]`), kept by the daemon's
/// elector and read by `/metrics`, `/api/v1/sources` and the dashboard.
#[derive(Debug, Default)]
pub struct Leadership {
    /// The Lease, `namespace/name`.
    pub lease: String,
    /// This replica's identity in it.
    pub identity: String,
    /// Whether this replica holds it, and so plans and acts.
    pub leading: std::sync::atomic::AtomicBool,
    /// Who holds it, as far as this replica knows.
    pub holder: RwLock<String>,
    /// Why the last try to take or renew it failed, if it did.
    pub error: RwLock<Option<String>>,
    /// Where the other replicas reach this one (`[leader_election] advertise_url`).
    pub advertise_url: Option<String>,
    /// Where the holder's API is, as it advertised it on the Lease (empty: not known).
    pub holder_url: RwLock<String>,
    /// Why the last read forwarded to the holder failed, while it stays so.
    pub forward_error: RwLock<Option<forward::ForwardError>>,
    /// Why the last copy of the holder's decision log failed, while it stays so.
    pub copy_error: RwLock<Option<String>>,
    /// The client reads are forwarded with when `[leader_election] ca_file` vouches for
    /// the replicas' certificates (`None`: the public roots).
    pub agent: Option<ureq::Agent>,
}

impl Leadership {
    /// `None` while this replica may act; else why not, for an answer that refuses.
    pub fn standing_by(&self) -> Option<String> {
        if self.leading.load(Ordering::Relaxed) {
            return None;
        }
        let holder = self.holder.read().expect("holder lock").clone();
        Some(if holder.is_empty() {
            format!(
                "this replica stands by: no replica holds the lease {} yet",
                self.lease
            )
        } else {
            format!(
                "this replica stands by: {holder} holds the lease {} and acts; ask it",
                self.lease
            )
        })
    }
}

/// Releases what an unmanaged workload holds, at the engine (it may block on the
/// engine's lock and the provider).
pub type Releaser = Arc<
    dyn Fn(
            &str,
        ) -> Result<
            prescale_orchestrate::engine::Released,
            prescale_orchestrate::engine::ReleaseError,
        > + Send
        + Sync,
>;

/// Pauses a workload (`Some((scope, until, reason))`) or lifts its pause (`None`) at a
/// time (the request's, by the wall clock), at the engine (it may block on the
/// engine's lock): the pause put in force, or the one lifted (`None`: there was none).
pub type Pauser = Arc<
    dyn Fn(
            &str,
            Option<(prescale_core::PauseScope, TimestampMs, String)>,
            TimestampMs,
        )
            -> Result<Option<prescale_core::Pause>, prescale_orchestrate::engine::PauseError>
        + Send
        + Sync,
>;

/// With leader election, has the holder write on the Lease now what the replica taking
/// the lease over needs of a change just made (a pause, a resume, an event declared or
/// cancelled, a release), rather than at its next renewal: so a holder that dies right
/// after answering does not take the change with it. `Err` says why it was not
/// written (it may block on the API server, for at most `retry_period_s`).
pub type HandOn = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// What `POST /api/v1/workloads/{name}/events` and `.../events/{event}/cancel` ask of
/// the engine.
#[derive(Debug, Clone)]
pub enum EventAsk {
    /// Declare this event (or change the one declared under its name).
    Declare(prescale_core::PlannedEvent),
    /// Cancel the event declared under this name.
    Cancel(String),
}

/// What the engine did of an [`EventAsk`].
#[derive(Debug, Clone)]
pub enum EventDone {
    /// Declared; the one of that name it replaced, if any.
    Declared(Option<prescale_core::PlannedEvent>),
    /// Cancelled: the event that was declared.
    Cancelled(prescale_core::PlannedEvent),
}

/// Declares or cancels a workload's planned event at a time (the request's, by the
/// wall clock), at the engine (it may block on the engine's lock).
pub type EventSetter = Arc<
    dyn Fn(
            &str,
            EventAsk,
            TimestampMs,
        ) -> Result<EventDone, prescale_orchestrate::engine::EventError>
        + Send
        + Sync,
>;

/// `workloads` with the planned events declared through the API that `status` shows
/// added to those they configure (what the anomaly watch leaves unjudged).
pub fn with_declared(
    workloads: &[prescale_core::Workload],
    status: &Status,
) -> Vec<prescale_core::Workload> {
    workloads
        .iter()
        .map(|w| {
            let mut w = w.clone();
            if let Some(s) = status.workloads.get(&w.name) {
                w.events.extend(s.declared_events().cloned());
            }
            w
        })
        .collect()
}

/// How the configuration's reloads went (as Prometheus reports its own).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// Whether the last reload was applied (true before any).
    pub last_successful: bool,
    /// When the configuration in force was loaded (unix ms): the start, or the last
    /// reload that was applied.
    pub last_success_ms: i64,
    /// Reloads tried, and those refused.
    pub attempts: u64,
    /// Reloads refused.
    pub failures: u64,
    /// Why the last reload was refused.
    pub last_error: Option<String>,
    /// Settings changed in the file that only a restart applies.
    pub pending_restart: Vec<String>,
}

/// A comparison and when it was made.
type Compared = (std::time::Instant, compare::Comparison);

/// How long a comparison is served again: it covers days, and the passes of a minute
/// change it by little, while a live daemon passes every 15 s.
const COMPARE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Scrape targets' health by (job, instance), shared by the scrape loops and the API.
pub type Targets = Arc<RwLock<std::collections::BTreeMap<(String, String), TargetHealth>>>;

/// Metric families' type, help and unit by name, as scrapes (`# TYPE`, `# HELP`) and
/// remote write senders describe them: shared by the scrape loops, the receivers and
/// `/api/v1/metadata`. As in Prometheus, a family lists each distinct description its
/// sources give (two exporters' versions may word a help differently), at most
/// [`METADATA_VARIANTS`]. A family is also saved in the store (state document
/// `metadata/NAME`) when its descriptions change, so a restart lists it again before its
/// target or sender next says it (remote write senders say it once a minute, or only with
/// a series' first samples).
#[derive(Clone)]
pub struct Metadata {
    known: Arc<RwLock<BTreeMap<String, Vec<MetricMeta>>>>,
    store: Store,
}

/// Prefix of the state documents that hold metric families' metadata.
const METADATA_PREFIX: &str = "metadata/";

/// Most descriptions listed for one family; a new one beyond them replaces the oldest.
pub const METADATA_VARIANTS: usize = 8;

/// `a` with `b`'s fields where `a`'s are empty, when no field of one contradicts the
/// other's (each is empty or the same): two accounts of one description.
fn merged(a: &MetricMeta, b: &MetricMeta) -> Option<MetricMeta> {
    let pick = |x: &String, y: &String| match (x.is_empty(), y.is_empty() || x == y) {
        (true, _) => Some(y.clone()),
        (false, true) => Some(x.clone()),
        (false, false) => None,
    };
    Some(MetricMeta {
        kind: pick(&a.kind, &b.kind)?,
        help: pick(&a.help, &b.help)?,
        unit: pick(&a.unit, &b.unit)?,
    })
}

impl Metadata {
    /// What `store` saved, skipping (and logging) a document that cannot be read.
    pub fn load(store: Store) -> Result<Self, String> {
        let saved = store
            .states::<Vec<MetricMeta>>(METADATA_PREFIX)
            .map_err(|e| format!("reading the saved metric metadata: {e}"))?;
        let mut known = BTreeMap::new();
        for (name, doc) in saved {
            match doc {
                Ok(m) => {
                    known.insert(name[METADATA_PREFIX.len()..].to_string(), m);
                }
                Err(e) => tracing::warn!("skipped, its source will say it again: {e}"),
            }
        }
        Ok(Self {
            known: Arc::new(RwLock::new(known)),
            store,
        })
    }

    /// Records what a scrape or a sender said of its families. A description that no
    /// field of a known one contradicts (each is empty in one, or the same) is merged
    /// into it: one target's `# TYPE` without `# HELP` adds no help-less entry beside
    /// another's, and a help said apart from its type completes it. Any other is listed
    /// beside the known ones. Families that changed are saved, in one write, before it
    /// returns (blocking: call it off the async runtime's threads); how many, or the
    /// error saving them (they are known in memory all the same).
    pub fn remember(
        &self,
        said: impl IntoIterator<Item = (String, MetricMeta)>,
    ) -> Result<usize, prescale_store::StoreError> {
        let mut changed = BTreeMap::new();
        {
            let mut known = self.known.write().expect("metadata lock");
            for (name, m) in said {
                if m == MetricMeta::default() {
                    continue;
                }
                let listed = known.entry(name.clone()).or_default();
                let fits = listed
                    .iter()
                    .enumerate()
                    .find_map(|(i, k)| Some((i, merged(k, &m)?)));
                match fits {
                    Some((i, k)) if k == listed[i] => continue,
                    Some((i, k)) => listed[i] = k,
                    None => {
                        listed.push(m);
                        if listed.len() > METADATA_VARIANTS {
                            listed.remove(0);
                        }
                    }
                }
                changed.insert(format!("{METADATA_PREFIX}{name}"), listed.clone());
            }
        }
        if !changed.is_empty() {
            let docs: Vec<_> = changed.iter().collect();
            self.store.put_states(&docs)?;
        }
        Ok(changed.len())
    }

    /// Every family known, by name, with its descriptions.
    pub fn all(&self) -> BTreeMap<String, Vec<MetricMeta>> {
        self.known.read().expect("metadata lock").clone()
    }
}

impl AppState {
    /// State for a configuration's tiers, workloads and receivers. Fails, saying what to
    /// set, when the write token cannot be read or is missing where one is required
    /// ([`prescale_core::config::Config::write_token`]).
    pub fn new(
        cfg: &prescale_core::config::Config,
        store: Store,
        status: Arc<RwLock<Status>>,
    ) -> Result<Self, String> {
        let token = cfg
            .write_token()
            .map_err(|e| format!("server.token_file: {e}"))?;
        let targets = static_targets(&cfg.sources.scrape, |_| true);
        let metadata = Metadata::load(store.clone())?;
        let anomalies = anomalies::Anomalies::new(&cfg.detect, store.clone());
        anomalies.set_planned(&with_declared(
            &cfg.workloads,
            &status.read().expect("status lock"),
        ));
        Ok(Self {
            store,
            status,
            managed: Arc::new(RwLock::new(Arc::new(Managed::of(cfg)))),
            receivers: write::Receivers::new(cfg, token),
            targets: Arc::new(RwLock::new(targets)),
            metadata,
            anomalies,
            exposed: !cfg.listen_addr().ip().is_loopback(),
            reload: None,
            release: None,
            pause: None,
            events: None,
            leadership: None,
            hand_on: None,
            config: Arc::new(RwLock::new(cfg.clone())),
            started_ms: prescale_core::now_ms(),
            token_for_reads: Arc::new(std::sync::atomic::AtomicBool::new(
                cfg.server.token_for_reads,
            )),
            #[cfg(feature = "tls")]
            tls: match cfg.server.tls_files() {
                Some((c, k)) => Some(tls::Tls::new(c, k)?),
                None => None,
            },
            reloads: Arc::new(RwLock::new(ReloadStatus {
                last_successful: true,
                last_success_ms: prescale_core::now_ms(),
                ..Default::default()
            })),
            compared: Default::default(),
            compare_runs: Default::default(),
        })
    }
}

/// The configured targets of the scrape jobs `keep` picks, not scraped yet, by (job,
/// instance).
fn static_targets(
    jobs: &[prescale_core::config::ScrapeConfig],
    keep: impl Fn(&prescale_core::config::ScrapeConfig) -> bool,
) -> BTreeMap<(String, String), TargetHealth> {
    jobs.iter()
        .filter(|j| keep(j))
        .flat_map(|j| {
            j.targets.iter().map(move |t| {
                let target = prescale_collect::scrape::Target::new(&j.job, &j.scheme, t, &j.path);
                let health = TargetHealth {
                    job: target.job.clone(),
                    instance: target.instance.clone(),
                    url: target.url,
                    health: "unknown".into(),
                    ..Default::default()
                };
                ((j.job.clone(), t.clone()), health)
            })
        })
        .collect()
}

impl AppState {
    /// Whether this replica stands by (leader election on, another holds the lease or
    /// none does): it then neither plans nor reports plans.
    pub fn stands_by(&self) -> bool {
        self.leadership
            .as_ref()
            .is_some_and(|l| !l.leading.load(Ordering::SeqCst))
    }

    /// What is managed now.
    pub fn managed(&self) -> Arc<Managed> {
        self.managed.read().expect("managed lock").clone()
    }

    /// The scrape targets after a reload replaced scrape jobs `old` with `new`: a job
    /// kept as it was keeps its targets' health (and what its discovery found), the
    /// others start again as not scraped yet.
    pub fn retarget(
        &self,
        old: &[prescale_core::config::ScrapeConfig],
        new: &[prescale_core::config::ScrapeConfig],
    ) {
        let kept = |job: &str| new.iter().any(|j| j.job == job && old.contains(j));
        let mut t = self.targets.write().expect("targets lock");
        t.retain(|(job, _), _| kept(job));
        t.extend(static_targets(new, |j| !kept(&j.job)));
    }

    /// `None` if `headers` may change what prescale does (`what`: reloading,
    /// snapshots), else the answer that refuses: the server's token where one is set;
    /// without one, anyone on loopback, no one beyond it (`or` adds another way).
    fn refuse_change(
        &self,
        headers: &axum::http::HeaderMap,
        what: &str,
        or: &str,
    ) -> Option<Response> {
        match self.receivers.token().as_deref() {
            Some(want) => write::refuse_without(want, headers, &format!("{what} needs")),
            None if self.exposed => Some(error(
                StatusCode::FORBIDDEN,
                format!("{what} over HTTP beyond loopback needs a token: set server.token_file (then send `Authorization: Bearer TOKEN`){or}"),
            )),
            None => None,
        }
    }

    /// [`AppState::refuse_change`] for a change of what is done with capacity (a
    /// release, a pause), and on a standby that could not pass it on to the holder, a
    /// `409` naming the holder: only the holder acts.
    fn refuse_acting(&self, headers: &axum::http::HeaderMap, what: &str) -> Option<Response> {
        self.refuse_change(headers, what, "").or_else(|| {
            let why = self.leadership.as_ref()?.standing_by()?;
            Some(error(StatusCode::CONFLICT, why))
        })
    }

    /// After a change the replica taking the lease over needs (a pause, a resume, an
    /// event, a release), has it written on the Lease now ([`HandOn`]). Returns what the
    /// answer warns of where it could not be: the change holds on this replica and is
    /// kept in its store, but the Lease carries it only from the next renewal that
    /// succeeds.
    async fn hand_on(&self, what: &str) -> Vec<String> {
        let Some(hand_on) = self.hand_on.clone() else {
            return Vec::new();
        };
        let written = tokio::task::spawn_blocking(move || hand_on())
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match written {
            Ok(()) => Vec::new(),
            Err(e) => {
                tracing::warn!("leader election: {what} is not on the Lease yet: {e}");
                vec![format!(
                    "{what} holds on this replica and is kept in its store, but is not on the Lease yet ({e}): it is written at the next renewal that succeeds; a replica taking the lease over before then does not have it"
                )]
            }
        }
    }

    /// Tells the anomaly watch the planned events in force: those the workloads
    /// configure and those declared through the API (after a declaration, a
    /// cancellation or a takeover of the lease).
    pub fn watch_planned(&self) {
        let workloads = with_declared(
            &self.managed().workloads,
            &self.status.read().expect("status lock"),
        );
        self.anomalies.set_planned(&workloads);
    }

    /// Puts a reloaded configuration's tiers, workloads and provider in force.
    pub fn set_managed(&self, m: Managed) {
        *self.managed.write().expect("managed lock") = Arc::new(m);
        // Comparisons made with the old settings are stale.
        self.compared.lock().expect("cache lock").clear();
    }
}

/// A success with `data` and, as Prometheus' API does, the `warnings` (left out where
/// there are none).
fn success(data: serde_json::Value, warnings: Vec<String>) -> Response {
    let mut body = json!({"status": "success", "data": data});
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Json(body).into_response()
}

/// A JSON error with the status code and a message that says what to fix.
fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(json!({"status": "error", "error": msg.into()}))).into_response()
}

/// The query string as `T`, or a `400` saying what could not be read as every other
/// refusal of the API says it (axum's own answer is plain text:
/// `?limit=-5` gave "Failed to deserialize query string: ...").
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(Self(t)),
            Err(e) => Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}: see the parameters this endpoint takes in the README's HTTP API table",
                    e.body_text()
                ),
            )),
        }
    }
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { Html(DASHBOARD) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/series", get(promapi::series).post(promapi::series))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/workloads", get(workloads))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/query", get(promql::query).post(promql::query))
        .route("/api/v1/labels", get(promapi::labels).post(promapi::labels))
        .route("/api/v1/label/{name}/values", get(promapi::label_values))
        .route("/api/v1/status/buildinfo", get(promql::buildinfo))
        .route("/api/v1/status/config", get(status_config))
        .route("/api/v1/status/runtimeinfo", get(runtime_info))
        .route("/api/v1/metadata", get(promapi::metadata))
        .route(
            "/api/v1/anomalies",
            get(anomalies::list).post(anomalies::list),
        )
        .route("/api/v1/rules", get(promapi::nothing_kept))
        .route("/api/v1/alerts", get(promapi::nothing_kept))
        .route(
            "/api/v1/query_exemplars",
            get(promapi::nothing_kept).post(promapi::nothing_kept),
        )
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/decisions", get(decision_log))
        .route(
            "/api/v1/workloads/{name}/{what}",
            get(workload_part).post(workload_change),
        )
        .route(
            "/api/v1/workloads/{name}/events",
            get(events_list).post(event_declare),
        )
        .route(
            "/api/v1/workloads/{name}/events/{event}/cancel",
            post(event_cancel),
        )
        .route(
            "/api/v1/write",
            post(write::remote_write).layer(DefaultBodyLimit::max(MAX_WRITE_BODY)),
        )
        .route(
            "/api/v2/write",
            post(write::influx_write).layer(DefaultBodyLimit::max(MAX_WRITE_BODY)),
        )
        .route(
            "/write",
            post(write::influx_write).layer(DefaultBodyLimit::max(MAX_WRITE_BODY)),
        )
        .route("/-/reload", post(reload).put(reload))
        .route("/api/v1/unmanaged", get(unmanaged))
        .route("/api/v1/unmanaged/{name}/release", post(release))
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
        // A known path asked with a method it does not take: said, with the methods it
        // takes in the Allow header (which axum adds), not an empty 405.
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!(
                        "{} does not take {method}; the Allow header names the methods it does",
                        uri.path()
                    ),
                )
            },
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /api/v1/workloads, /api/v1/series, /metrics",
            )
        })
        // A standby passes reads on to the holder, once the token is checked here.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            forward::to_the_holder,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            reads_need_the_token,
        ))
        .with_state(state)
}

/// With `[server] token_for_reads`, every request but `/healthz` (probes) carries the
/// token; a browser is asked for it as Basic credentials (the token as the password).
async fn reads_need_the_token(
    State(st): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if st.token_for_reads.load(Ordering::Relaxed) && req.uri().path() != "/healthz" {
        if let Some(want) = st.receivers.token() {
            if let Some(mut no) = write::refuse_without(&want, req.headers(), "reads need") {
                no.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static(
                        "Basic realm=\"prescale: any user name, the token as the password\", charset=\"UTF-8\"",
                    ),
                );
                return no;
            }
        }
    }
    next.run(req).await
}

/// `POST /-/reload` (as Prometheus' with `--web.enable-lifecycle`): rereads the
/// configuration file and puts what it can in force, as SIGHUP does. It changes what
/// prescale does, so it takes the server's token where one is set, and is refused
/// beyond loopback without one.
/// `?dry_run=true` checks the file and says what a reload would change, changing
/// nothing (as `kubectl apply --dry-run=server`).
#[derive(Deserialize)]
struct ReloadParams {
    dry_run: Option<bool>,
}

async fn reload(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    Params(p): Params<ReloadParams>,
) -> Response {
    let Some(tx) = st.reload.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this process does not reload a configuration (`prescale run --config FILE` does)",
        );
    };
    if let Some(no) = st.refuse_change(&headers, "reloading", ", or send the process SIGHUP") {
        return no;
    }
    let (answer, done) = tokio::sync::oneshot::channel();
    let dry_run = p.dry_run.unwrap_or(false);
    if tx.send(ReloadRequest { dry_run, answer }).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match done.await {
        Ok(Ok(v)) => Json(json!({"status": "success", "data": v})).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, e),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}

/// `GET /api/v1/unmanaged`: capacity held for workloads no longer configured, by
/// workload (instances per tier, cost per hour, since when and why), and its total cost
/// per hour.
async fn unmanaged(State(st): State<AppState>) -> Response {
    let u = st.status.read().expect("status lock").unmanaged.clone();
    let total: f64 = u.values().map(|u| u.cost_per_hour).sum();
    Json(json!({"status": "success", "data": {
        "workloads": u,
        "cost_per_hour": total,
    }}))
    .into_response()
}

/// `POST /api/v1/unmanaged/{name}/release`: releases every instance an unmanaged
/// workload holds (pending ones included), through the provider, with an `act`
/// decision per tier. It changes capacity, so it takes the token as `/-/reload` does.
/// 404 for a name not on the list, 409 for a configured workload, 502 when the
/// provider refuses (what it released before stays released).
async fn release(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(release) = st.release.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this process releases nothing (`prescale run` does)",
        );
    };
    if let Some(no) = st.refuse_acting(&headers, "releasing capacity") {
        return no;
    }
    use prescale_orchestrate::engine::ReleaseError as E;
    let released = tokio::task::spawn_blocking(move || release(&name)).await;
    // What the provider took of it is off the list, even where it refused the rest.
    let warnings = match &released {
        Ok(Ok(_) | Err(E::Provider { .. })) => st.hand_on("the release").await,
        _ => Vec::new(),
    };
    match released {
        Ok(Ok(r)) => {
            tracing::info!(workload = %r.workload, released = ?r.released, cost_per_hour = r.cost_per_hour, "unmanaged capacity released");
            success(json!(r), warnings)
        }
        Ok(Err(e)) => {
            let code = match &e {
                E::Unknown { .. } => StatusCode::NOT_FOUND,
                E::Managed(_) => StatusCode::CONFLICT,
                E::Provider { .. } => StatusCode::BAD_GATEWAY,
                E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let said = std::iter::once(e.to_string()).chain(warnings);
            error(code, said.collect::<Vec<_>>().join("; "))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/v1/admin/tsdb/snapshot` (Prometheus' path): copies the embedded store,
/// as it stands at one instant, into `snapshots/NAME` in its directory while writes go
/// on: a store `prescale run --data-dir` opens as it is, for backups. With a remote
/// store only the decision log and state are local, and copied.
async fn snapshot(State(st): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(no) = st.refuse_change(&headers, "taking a snapshot", "") {
        return no;
    }
    let store = st.store.clone();
    let remote = store.is_remote();
    match tokio::task::spawn_blocking(move || store.snapshot()).await {
        Ok(Ok((name, dir, report))) => {
            tracing::info!(name = %name, path = %dir.display(), series = report.series, bytes = report.bytes, seconds = report.seconds, "snapshot taken");
            Json(json!({"status": "success", "data": {
                "name": name,
                "path": dir,
                "copied": report,
                "samples": if remote {
                    "kept by [storage.remote]: back that server up with its own tools"
                } else {
                    "copied"
                },
            }}))
            .into_response()
        }
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no snapshot: {e}"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("no snapshot: {e}"),
        ),
    }
}

/// `GET /api/v1/status/config` (as Prometheus'): the configuration in force, every key
/// written out as `prescale config show` writes it (secrets appear only as the files
/// that hold them), and what changed in the file but waits for a restart.
async fn status_config(State(st): State<AppState>) -> Response {
    let toml = st.config.read().expect("config lock").to_toml();
    let pending = st
        .reloads
        .read()
        .expect("reload lock")
        .pending_restart
        .clone();
    Json(json!({"status": "success", "data": {"toml": toml, "pending_restart": pending}}))
        .into_response()
}

/// `GET /api/v1/status/runtimeinfo`: Prometheus' fields that mean something here
/// (`startTime`, `CWD`, `reloadConfigSuccess`, `lastConfigTime`, `storageRetention`).
async fn runtime_info(State(st): State<AppState>) -> Response {
    let r = st.reloads.read().expect("reload lock").clone();
    let retention_s = st.config.read().expect("config lock").storage.retention_s;
    let rfc = prescale_core::format_ts;
    Json(json!({"status": "success", "data": {
        "startTime": rfc(st.started_ms),
        "CWD": std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        "reloadConfigSuccess": r.last_successful,
        "lastConfigTime": rfc(r.last_success_ms),
        "storageRetention": if st.store.is_remote() {
            "kept by [storage.remote]".to_string()
        } else if retention_s == 0 {
            "forever".to_string()
        } else {
            format!("{}d", retention_s as f64 / 86_400.0)
        },
    }}))
    .into_response()
}

/// Every scrape target's health, by job and instance.
fn target_list(st: &AppState) -> Vec<TargetHealth> {
    st.targets
        .read()
        .expect("targets lock")
        .values()
        .cloned()
        .collect()
}

async fn targets(State(st): State<AppState>) -> Response {
    Json(json!({"status": "success", "data": target_list(&st)})).into_response()
}

/// Where samples come from and go: receivers with their counts, scrape targets, the
/// sample store and the provider, for the dashboard's sources panel.
async fn sources(State(st): State<AppState>) -> Response {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let r = &st.receivers;
    let receivers: Vec<_> = [
        (
            "remote_write",
            "POST /api/v1/write",
            r.remote_write.load(Ordering::Relaxed),
            &r.counts[0],
        ),
        (
            "influx",
            "POST /api/v2/write, /write",
            r.influx.load(Ordering::Relaxed),
            &r.counts[1],
        ),
    ]
    .into_iter()
    .map(|(name, endpoint, enabled, c)| {
        json!({
            "name": name, "endpoint": endpoint, "enabled": enabled,
            "requests": load(&c.requests), "accepted": load(&c.accepted),
            "duplicates": load(&c.duplicates), "rejected": load(&c.rejected),
            "skipped": load(&c.skipped), "unreadable": load(&c.unreadable),
        })
    })
    .collect();
    let targets = target_list(&st);
    let storage = st.store.describe();
    let series = st.store.series_count();
    let embedded = !st.store.is_remote();
    let resident = process::status_bytes("VmRSS:");
    Json(json!({"status": "success", "data": {
        "receivers": receivers,
        "targets": targets,
        "storage": storage,
        "series": series,
        "max_series": embedded.then(|| st.store.max_series()),
        "disk_bytes": embedded.then(|| st.store.disk_bytes()),
        "resident_bytes": resident,
        "provider": st.managed().provider,
        "provider_target": st.managed().provider_target,
        // For a provider that reads what each workload holds from outside: when it last
        // could, and since when and why it cannot.
        "provider_state": st.status.read().expect("status lock").provider_state,
        "leader_election": st.leadership.as_ref().map(|l| json!({
            "lease": l.lease,
            "identity": l.identity,
            "leading": l.leading.load(Ordering::Relaxed),
            "holder": *l.holder.read().expect("holder lock"),
            "last_error": *l.error.read().expect("error lock"),
            "advertise_url": l.advertise_url,
            "holder_url": *l.holder_url.read().expect("holder url lock"),
            // On a standby: null while reads go to the holder, else why they do not.
            "not_forwarded": l.not_forwarded(),
            // On a standby: why the holder's decisions were not copied, while so.
            "copy_error": *l.copy_error.read().expect("copy error lock"),
        })),
        "token_required": r.token().is_some(),
        "config": *st.reloads.read().expect("reload lock"),
    }}))
    .into_response()
}

#[derive(Deserialize)]
struct RangeParams {
    series: Option<String>,
    start: Option<String>,
    end: Option<String>,
    /// At most this many samples: more are thinned, a sample per equal slice of the range.
    max_points: Option<usize>,
    /// How a slice's samples become one: `max` (the default: no peak is lost) or `mean`
    /// (sums over time still add up).
    reduce: Option<String>,
}

/// `samples` (in time order) as at most `n` (at least 1): the range from the first to
/// the last cut into `n` equal slices, each slice's samples one sample at the time of
/// its first, with their highest value (or their mean, with `mean`). Fewer samples are
/// returned as they are.
pub(crate) fn thin(
    samples: Vec<prescale_core::Sample>,
    n: usize,
    mean: bool,
) -> Vec<prescale_core::Sample> {
    let n = n.max(1);
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return samples;
    };
    if samples.len() <= n {
        return samples;
    }
    let (t0, width) = (first.ts, ((last.ts - first.ts) / n as i64).max(1));
    let mut out: Vec<prescale_core::Sample> = Vec::with_capacity(n);
    // The slice the last sample out stands for, and how many it stands for.
    let (mut at, mut count) = (-1i64, 0usize);
    for x in samples {
        let slice = ((x.ts - t0) / width).min(n as i64 - 1);
        match out.last_mut() {
            Some(o) if slice == at => {
                count += 1;
                o.value = if mean {
                    o.value + (x.value - o.value) / count as f64
                } else {
                    o.value.max(x.value)
                };
            }
            _ => {
                out.push(x);
                (at, count) = (slice, 1);
            }
        }
    }
    out
}

async fn query_range(
    State(st): State<AppState>,
    Params(p): Params<RangeParams>,
    api: promapi::ApiParams,
) -> Response {
    // Prometheus' form (`query`, `step`; a GET or a form POST), as Grafana asks it; else
    // one series' samples.
    if p.series.is_none() && api.get("query").is_some() {
        return promql::query_range(st, api.query()).await;
    }
    let Some(sel) = p.series else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing `series` parameter, e.g. ?series=host_cpu_usage_cores{mode=\"busy\"}",
        );
    };
    let key = match SeriesKey::parse(&sel) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let time = |v: &Option<String>, default: i64| match v.as_deref() {
        None => Some(default),
        Some(s) => prescale_core::parse_ts(s),
    };
    let (Some(start), Some(end)) = (time(&p.start, i64::MIN), time(&p.end, i64::MAX)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "start and end must be finite unix seconds or RFC 3339",
        );
    };
    let mean = match p.reduce.as_deref() {
        None | Some("max") => false,
        Some("mean") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("`reduce` is max or mean, not {other:?}"),
            )
        }
    };
    match st.store.range(&key, start, end) {
        Ok(Some(samples)) => {
            let samples = match p.max_points {
                Some(n) => thin(samples, n, mean),
                None => samples,
            };
            let values: Vec<(f64, f64)> = samples
                .iter()
                .map(|s| (s.ts as f64 / 1000.0, s.value))
                .collect();
            Json(
                json!({"status": "success", "data": {"series": key.to_string(), "values": values}}),
            )
            .into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("unknown series {key}; list them at /api/v1/series"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The status of a configured workload; `None` when no workload has that name.
fn workload_status(st: &AppState, name: &str) -> Option<WorkloadStatus> {
    if !st.managed().workloads.iter().any(|w| w.name == name) {
        return None;
    }
    Some(
        st.status
            .read()
            .expect("status lock")
            .workloads
            .get(name)
            .cloned()
            .unwrap_or_default(),
    )
}

async fn workloads(State(st): State<AppState>) -> Response {
    let status = st.status.read().expect("status lock").clone();
    let managed = st.managed();
    let list: Vec<_> = managed
        .workloads
        .iter()
        .map(|cfg| {
            let name = &cfg.name;
            let w = status.workloads.get(name).cloned().unwrap_or_default();
            json!({
                "name": name,
                // PromQL for what it has without prescale, when configured.
                "actual": cfg.actual,
                // The same for each other dimension that says (e.g. its memory in GiB).
                "dimensions_actual": cfg
                    .dimensions
                    .iter()
                    .filter_map(|(d, src)| Some((d.clone(), src.actual.clone()?)))
                    .collect::<std::collections::BTreeMap<_, _>>(),
                "demand": w.demand,
                "ready_capacity": w.ready_capacity,
                "allocation": w.allocation,
                "model": w.forecast.as_ref().map(|f| f.model.clone()),
                "forecast_source": w.forecast_source,
                "model_version": w.model.as_ref().map(|m| m.version),
                "plan_reason": w.plan.as_ref().map(|p| p.reason.clone()),
                "paused": w.paused,
                // Which a full pool serves first, and what its plan claims of lower
                // priorities' holdings (a tier is a pool shared by every workload).
                "priority": cfg.priority,
                "claims": w.claims,
                // Under a fleet budget: what its plan would cost without it, its share.
                "fleet": w.fleet,
                // Its plan's; before its first plan, what it holds (its minimum, asked
                // for while it has no forecast).
                "cost_per_hour": w.plan.as_ref().map(|p| p.cost_per_hour).or_else(|| {
                    let held = w.allocation.cost_per_hour(&managed.tiers);
                    (held > 0.0).then_some(held)
                }),
                "last_error": w.last_error,
                "learning": w.learning,
                // What the provider has refused at every pass (logged once an hour).
                "refusing": w.refusing,
            })
        })
        .collect();
    Json(json!({
        "status": "success",
        "data": {"workloads": list, "tiers": managed.tiers, "ticks": status.ticks, "last_tick": status.last_tick, "lead_times": status.lead_times, "pools": status.pools, "fleet": status.fleet, "provider": managed.provider, "provider_target": managed.provider_target, "provider_state": status.provider_state}
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PartParams {
    limit: Option<usize>,
    /// Decisions from this time on (unix seconds or RFC 3339).
    since: Option<String>,
    /// Decisions up to this time.
    until: Option<String>,
    /// Decisions of these kinds, comma-separated (`act,error`).
    kind: Option<String>,
    /// Days of history `compare` looks back over.
    days: Option<f64>,
}

#[derive(Deserialize)]
struct LogParams {
    /// Decisions after this place in the log.
    after: Option<u64>,
    /// Without `after`: decisions from this time on (unix seconds or RFC 3339).
    since: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/decisions`: the decision log in the order logged, every workload's,
/// each with its place in it (`seq`), a page at a time (a standby copies the holder's
/// with it).
async fn decision_log(State(st): State<AppState>, Params(p): Params<LogParams>) -> Response {
    let since = match p.since.as_deref().map(|s| {
        prescale_core::parse_ts(s).ok_or_else(|| {
            format!("`since` must be unix seconds or RFC 3339 (2026-01-05T14:00:00Z), not {s:?}")
        })
    }) {
        Some(Err(m)) => return error(StatusCode::BAD_REQUEST, m),
        t => t.and_then(Result::ok),
    };
    let limit = p.limit.unwrap_or(1000).clamp(1, 10_000);
    match st.store.decisions_from(p.after, since, limit) {
        Ok(page) => Json(json!({
            "status": "success",
            "data": page
                .into_iter()
                .map(|(seq, d)| json!({"seq": seq, "decision": d}))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The decision log's filter from the query, or what is wrong with it.
fn decision_filter<'a>(name: &'a str, p: &PartParams) -> Result<DecisionFilter<'a>, String> {
    let when = |key: &str, v: &Option<String>| -> Result<Option<i64>, String> {
        v.as_deref()
            .map(|s| {
                prescale_core::parse_ts(s).ok_or_else(|| {
                    format!("`{key}` must be unix seconds or RFC 3339 (2026-01-05T14:00:00Z), within {} of 1970, not {s:?}", prescale_core::MAX_TS_SPAN)
                })
            })
            .transpose()
    };
    let kinds = match p.kind.as_deref() {
        None => Vec::new(),
        Some(k) => k
            .split(',')
            .map(|k| {
                serde_json::from_value::<DecisionKind>(json!(k.trim())).map_err(|_| {
                    format!("unknown decision kind {k:?}: use act, hold, error, event or config (comma-separated)")
                })
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(DecisionFilter {
        workload: Some(name),
        since: when("since", &p.since)?,
        until: when("until", &p.until)?,
        kinds,
    })
}

/// What `POST /api/v1/workloads/{name}/pause` takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PauseParams {
    scope: Option<String>,
    #[serde(rename = "for")]
    lasting: Option<String>,
    until: Option<String>,
    reason: Option<String>,
}

/// The longest reason a pause keeps.
const PAUSE_REASON_CHARS: usize = 500;

/// `POST /api/v1/workloads/{name}/pause` and `/resume`: pauses a configured workload
/// until a set time (`scope=all`: its capacity is left as it is; `scope=scale-down`:
/// none is removed) or lifts its pause, at the engine. They change what prescale does,
/// so they take the token as `/-/reload` does. 404 for a workload not configured, 400
/// for a pause without a scope or an end, 409 on a standby that cannot pass it on.
async fn workload_change(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    Path((name, what)): Path<(String, String)>,
    Params(p): Params<PauseParams>,
) -> Response {
    if what != "pause" && what != "resume" {
        return error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint: POST /api/v1/workloads/{name}/pause or /resume"),
        );
    }
    let Some(pauser) = st.pause.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this process pauses nothing (`prescale run` does)",
        );
    };
    if let Some(no) = st.refuse_acting(&headers, "pausing or resuming a workload") {
        return no;
    }
    let now = prescale_core::now_ms();
    let ask = if what == "resume" {
        None
    } else {
        match pause_ask(&p, now) {
            Ok(a) => Some(a),
            Err(m) => return error(StatusCode::BAD_REQUEST, m),
        }
    };
    let pausing = ask.is_some();
    let n = name.clone();
    match tokio::task::spawn_blocking(move || pauser(&n, ask, now)).await {
        Ok(Ok(pause)) => {
            if pausing {
                tracing::info!(workload = %name, pause = ?pause, "workload paused");
                let warnings = st.hand_on("the pause").await;
                success(json!({"workload": name, "paused": pause}), warnings)
            } else {
                tracing::info!(workload = %name, lifted = ?pause, "workload resumed");
                let warnings = st.hand_on("the resume").await;
                success(json!({"workload": name, "lifted": pause}), warnings)
            }
        }
        Ok(Err(e)) => {
            use prescale_orchestrate::engine::PauseError as E;
            let code = match &e {
                E::Unknown(_) => StatusCode::NOT_FOUND,
                E::Ended { .. } => StatusCode::BAD_REQUEST,
                E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(code, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/v1/workloads/{name}/events`: the workload's planned events, each with
/// where it comes from (`configuration` or `api`; an occurrence of a recurring event
/// with its `recurring` event's `every`, `timezone` and `schedule` in words), whether it is over, in force or
/// ahead at the last pass (the simulated clock's in `prescale demo`; the request's
/// before any), and for one begun, how it went so far (`review`: its steps, peak
/// demand, what prescale's capacity cost over it and how long it was short, from the
/// stored series; `review_error` where they cannot be read).
async fn events_list(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let Some(w) = workload_status(&st, &name) else {
        return unknown_workload(&st, &name);
    };
    let last = st.status.read().expect("status lock").last_tick;
    let now = last.unwrap_or_else(prescale_core::now_ms);
    let managed = st.managed();
    let configured = managed.workloads.iter().find(|c| c.name == name);
    let data: Vec<serde_json::Value> = w
        .events
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            let from = if w.declared.contains(&e.name) {
                "api"
            } else {
                "configuration"
            };
            let when = if e.end.0 <= now {
                "over"
            } else if e.start.0 <= now {
                "in force"
            } else {
                "ahead"
            };
            v["source"] = json!(from);
            v["state"] = json!(when);
            // An occurrence: the schedule it comes from, in words too.
            let schedule = configured.and_then(|c| {
                c.recurring_events
                    .iter()
                    .find(|r| Some(&r.name) == e.recurring.as_ref())
            });
            if let Some(r) = schedule {
                v["every"] = json!(r.every);
                v["timezone"] = json!(r.timezone);
                if let Ok(s) = r.schedule() {
                    v["schedule"] = json!(s.describe());
                }
            }
            if let Some(c) = configured.filter(|_| e.start.0 <= now) {
                match compare::review_event(&st.store, &managed.tiers, c, e.start.0, e.end.0, now) {
                    Ok(r) => v["review"] = json!(r),
                    Err(why) => v["review_error"] = json!(why),
                }
            }
            v
        })
        .collect();
    Json(json!({"status": "success", "data": data})).into_response()
}

/// A 404 for a workload that is not configured, naming those that are.
fn unknown_workload(st: &AppState, name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "unknown workload {name:?}; configured: {}",
            st.managed()
                .workloads
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}

/// `POST /api/v1/workloads/{name}/events` with a planned event as JSON (the fields of
/// `[[workloads.events]]`: `name`, `start`, `end`, `scale`, `min_demand`, `min_dimensions`; times as RFC
/// 3339 or unix seconds): declares it for the workload, or changes the one declared
/// under its name. It changes what prescale does, so it takes the token as `/-/reload`
/// does. 400 for an event that is not valid or is over, 404 for a workload not
/// configured, 409 for a name the configuration has (or on a standby that cannot pass
/// it on).
async fn event_declare(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(no) = st.refuse_acting(&headers, "declaring a planned event") {
        return no;
    }
    let event: prescale_core::PlannedEvent = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body must be a planned event as JSON, e.g. {{\"name\": \"load test\", \"start\": \"2026-12-05T14:00:00Z\", \"end\": \"2026-12-05T16:00:00Z\", \"scale\": 2, \"min_demand\": 40}} (times RFC 3339 with their offset, or unix seconds; scale defaults to 1, min_demand in vCPU and min_dimensions such as {{\"memory\": 200}} in GiB are optional): {e}"
                ),
            )
        }
    };
    change_events(st, name, EventAsk::Declare(event)).await
}

/// `POST /api/v1/workloads/{name}/events/{event}/cancel`: cancels an event declared
/// through the API (the token rule, 404 for one not declared, 409 for one configured).
async fn event_cancel(
    State(st): State<AppState>,
    headers: axum::http::HeaderMap,
    Path((name, event)): Path<(String, String)>,
) -> Response {
    if let Some(no) = st.refuse_acting(&headers, "cancelling a planned event") {
        return no;
    }
    change_events(st, name, EventAsk::Cancel(event)).await
}

/// Asks the engine to declare or cancel, and answers with what it did.
async fn change_events(st: AppState, name: String, ask: EventAsk) -> Response {
    let Some(setter) = st.events.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "this process declares no planned events (`prescale run` does)",
        );
    };
    let now = prescale_core::now_ms();
    let n = name.clone();
    match tokio::task::spawn_blocking(move || setter(&n, ask, now)).await {
        Ok(Ok(done)) => {
            st.watch_planned();
            let (data, what) = match done {
                EventDone::Declared(replaced) => {
                    tracing::info!(workload = %name, "planned event declared");
                    (json!({"workload": name, "replaced": replaced}), "the event")
                }
                EventDone::Cancelled(e) => {
                    tracing::info!(workload = %name, event = %e.name, "planned event cancelled");
                    (
                        json!({"workload": name, "cancelled": e}),
                        "the cancellation",
                    )
                }
            };
            success(data, st.hand_on(what).await)
        }
        Ok(Err(e)) => {
            use prescale_orchestrate::engine::EventError as E;
            let code = match &e {
                E::Unknown(_) | E::NotFound { .. } => StatusCode::NOT_FOUND,
                E::Invalid { .. } => StatusCode::BAD_REQUEST,
                E::Configured { .. } | E::TooMany => StatusCode::CONFLICT,
                E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(code, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A pause's scope, end and reason from its parameters at `now`, or what is wrong.
fn pause_ask(
    p: &PauseParams,
    now: TimestampMs,
) -> Result<(prescale_core::PauseScope, TimestampMs, String), String> {
    use prescale_core::PauseScope;
    let scope = match p.scope.as_deref() {
        Some("all") => PauseScope::All,
        Some("scale-down") => PauseScope::ScaleDown,
        Some(other) => {
            return Err(format!(
                "`scope` must be all (capacity left as it is) or scale-down (none removed), not {other:?}"
            ))
        }
        None => {
            return Err(
                "a pause needs `scope`: all (capacity left as it is) or scale-down (none removed)"
                    .into(),
            )
        }
    };
    let until = match (p.lasting.as_deref(), p.until.as_deref()) {
        (Some(_), Some(_)) => return Err("give `for` or `until`, not both".into()),
        (None, None) => {
            return Err(
                "a pause needs an end: `for` (a duration, e.g. 2h) or `until` (unix seconds or RFC 3339)"
                    .into(),
            )
        }
        (Some(d), None) => match prescale_core::parse_duration_ms(d) {
            Some(ms) if ms > 0 => now.saturating_add(ms),
            _ => {
                return Err(format!(
                    "`for` must be a positive duration with one unit (30m, 2h, 1d), not {d:?}"
                ))
            }
        },
        (None, Some(t)) => prescale_core::parse_ts(t).ok_or_else(|| {
            format!("`until` must be unix seconds or RFC 3339, e.g. 2026-01-05T18:00:00Z, not {t:?}")
        })?,
    };
    let reason = p.reason.as_deref().unwrap_or("").trim().to_string();
    if reason.chars().count() > PAUSE_REASON_CHARS {
        return Err(format!(
            "`reason` is longer than {PAUSE_REASON_CHARS} characters"
        ));
    }
    Ok((scope, until, reason))
}

async fn workload_part(
    State(st): State<AppState>,
    Path((name, what)): Path<(String, String)>,
    Params(p): Params<PartParams>,
) -> Response {
    let status = workload_status(&st, &name);
    if what == "decisions" {
        // Kept after a workload leaves the configuration: what was done with the capacity
        // it left is read here too.
        let filter = match decision_filter(&name, &p) {
            Ok(f) => f,
            Err(m) => return error(StatusCode::BAD_REQUEST, m),
        };
        let limit = p.limit.unwrap_or(100).min(10_000);
        match st.store.decisions_matching(&filter, limit) {
            Ok(d) if status.is_some() || !d.is_empty() => {
                return Json(json!({"status": "success", "data": d})).into_response()
            }
            Ok(_) => {}
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    let Some(w) = status else {
        return unknown_workload(&st, &name);
    };
    let missing = |what: &str| {
        error(
            StatusCode::NOT_FOUND,
            format!("no {what} for {name:?} yet: it needs at least two steps of demand history"),
        )
    };
    match what.as_str() {
        "status" => Json(json!({"status": "success", "data": w})).into_response(),
        "forecast" => match w.forecast {
            Some(f) => Json(json!({"status": "success", "data": f})).into_response(),
            None => missing("forecast"),
        },
        "plan" => match w.plan {
            Some(p) => Json(json!({"status": "success", "data": p})).into_response(),
            None => missing("plan"),
        },
        "model" => match w.model {
            Some(m) => Json(json!({"status": "success", "data": m})).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                format!("no trained model for {name:?} yet: the first selection is still running, or the workload uses model = \"baseline\""),
            ),
        },
        "compare" => {
            let days = p.days.unwrap_or(7.0);
            if !(days > 0.0 && days <= 90.0) {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("`days` must be more than 0 and at most 90, not {days}"),
                );
            }
            let now = st.status.read().expect("status lock").last_tick;
            let Some(now) = now else {
                return error(
                    StatusCode::NOT_FOUND,
                    "nothing to compare yet: no control pass has run",
                );
            };
            let managed = st.managed();
            let w = managed
                .workloads
                .iter()
                .find(|w| w.name == name)
                .cloned()
                .expect("a configured workload");
            // Served again for a minute (see COMPARE_TTL): a week's replay takes a
            // fraction of a second, and every open dashboard asks once a minute.
            let key = (name.clone(), days.to_bits());
            let fresh = |c: &Compared| c.0.elapsed() < COMPARE_TTL;
            if let Some(c) = st.compared.lock().expect("cache lock").get(&key).filter(|c| fresh(c)) {
                return Json(json!({"status": "success", "data": c.1})).into_response();
            }
            let (store, tiers) = (st.store.clone(), managed.tiers.clone());
            let done = tokio::task::spawn_blocking(move || {
                compare::compare(&store, &tiers, &w, days, now)
            })
            .await;
            match done {
                Ok(Ok(c)) => {
                    st.compare_runs.fetch_add(1, Ordering::Relaxed);
                    let body = Json(json!({"status": "success", "data": c})).into_response();
                    let mut cache = st.compared.lock().expect("cache lock");
                    cache.retain(|_, c| fresh(c));
                    cache.insert(key, (std::time::Instant::now(), c));
                    body
                }
                Ok(Err(m)) => error(StatusCode::NOT_FOUND, m),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        "tune" => match tune::latest(&st.store, &name) {
            Ok(Some(t)) => {
                // And when the daemon tunes it next (`null`: never, tune_every_s = 0).
                let next = tune::next_due(&st.config.read().expect("config lock"), &name, &t);
                let mut data = serde_json::to_value(&t).unwrap_or_default();
                data["next_at"] = json!(next);
                // What came of the daemon's last applying of an advice (control.tune_apply;
                // `null`: never offered one).
                data["applied"] = json!(tune::last_applied(&st.store, &name).ok().flatten());
                Json(json!({"status": "success", "data": data})).into_response()
            }
            Ok(None) => {
                let every = st.config.read().expect("config lock").control.tune_every_s;
                error(
                    StatusCode::NOT_FOUND,
                    format!(
                        "{name:?} is not tuned yet: the daemon tunes each workload on its stored demand every control.tune_every_s ({every} s; 0: never), first once a pass has run{}; `prescale tune {name}` replays it now",
                        if every == 0 { " (off here)" } else { "" }
                    ),
                )
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        },
        other => error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown part {other:?}; use status, forecast, plan, model, decisions, compare or tune"
            ),
        ),
    }
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the Prometheus text exposition.
pub fn render_metrics(st: &AppState) -> String {
    let mut status = st.status.read().expect("status lock").clone();
    if st.stands_by() {
        // A standby's plans, allocations and unmanaged capacity are what it last saw
        // when it acted, if ever: Prometheus scrapes every replica, and sums over them
        // (the fleet's cost) would count them beside the holder's. Its counters stay.
        status.workloads.clear();
        status.unmanaged.clear();
        status.lead_times.clear();
        status.pools.clear();
        status.fleet = Default::default();
    }
    let fleet = (!st.stands_by()).then(|| status.fleet.clone());
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    family(
        "prescale_build_info",
        "gauge",
        "Build information.",
        vec![(
            format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            1.0,
        )],
    );
    // Unlabelled series: (name, type, help, value).
    let scalars: [(&str, &str, &str, f64); 12] = [
        (
            "prescale_control_passes_total",
            "counter",
            "Control passes completed.",
            status.ticks as f64,
        ),
        (
            "prescale_actions_total",
            "counter",
            "Provisioning actions applied.",
            status.actions as f64,
        ),
        (
            "prescale_provider_errors_total",
            "counter",
            "Actions the provider refused or failed.",
            status.errors as f64,
        ),
        (
            "prescale_anomalies_total",
            "counter",
            "Anomalies detected in demand.",
            status.anomalies as f64,
        ),
        (
            "prescale_provider_events_total",
            "counter",
            "Capacity changes the provider made on its own (spot interruptions).",
            status.provider_events as f64,
        ),
        (
            "prescale_decisions_total",
            "counter",
            "Decisions in the decision log.",
            st.store.decision_count() as f64,
        ),
        (
            "prescale_compare_runs_total",
            "counter",
            "Comparisons with HPA computed (GET .../compare; others were served again).",
            st.compare_runs.load(Ordering::Relaxed) as f64,
        ),
        (
            "prescale_samples_appended_total",
            "counter",
            "Samples stored by this process.",
            st.store.appended_total() as f64,
        ),
        (
            "prescale_samples_compressed_total",
            "counter",
            "Samples this process moved from rows into compressed chunks (hourly, those older than an hour).",
            st.store.compressed_total() as f64,
        ),
        (
            "prescale_series_forgotten_total",
            "counter",
            "Series this process forgot because retention deleted their last sample.",
            st.store.forgotten_total() as f64,
        ),
        (
            "prescale_series",
            "gauge",
            "Series in the embedded store (NaN with a remote store, which is not listed).",
            st.store.series_count().map_or(f64::NAN, |n| n as f64),
        ),
        (
            "prescale_store_disk_bytes",
            "gauge",
            "Bytes the store occupies on disk.",
            st.store.disk_bytes() as f64,
        ),
    ];
    for (name, kind, help, v) in scalars.into_iter().chain(process::metrics()) {
        family(name, kind, help, vec![(String::new(), v)]);
    }
    if let Some(w) = st.anomalies.stats() {
        let watch: [(&str, &str, &str, f64); 5] = [
            (
                "prescale_anomaly_watched_series",
                "gauge",
                "Stored series whose samples are scored for anomalies.",
                w.watched as f64,
            ),
            (
                "prescale_anomaly_unwatched_total",
                "counter",
                "New series not watched because [detect] max_series were (raise it).",
                w.unwatched as f64,
            ),
            (
                "prescale_anomaly_scored_samples_total",
                "counter",
                "Stored samples scored for anomalies.",
                w.scored as f64,
            ),
            (
                "prescale_anomaly_expected_total",
                "counter",
                "Samples that scored as anomalies but that their series matched a day or a week before at about that time (not reported).",
                w.expected as f64,
            ),
            (
                "prescale_series_anomalies_total",
                "counter",
                "Anomalies found in stored series (listed at /api/v1/anomalies).",
                w.found as f64,
            ),
        ];
        for (name, kind, help, v) in watch {
            family(name, kind, help, vec![(String::new(), v)]);
        }
    }
    let mut requests = Vec::new();
    let mut received = Vec::new();
    let mut unreadable = Vec::new();
    for (receiver, c) in ["remote_write", "influx"].iter().zip(&st.receivers.counts) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        requests.push((format!("{{receiver=\"{receiver}\"}}"), load(&c.requests)));
        unreadable.push((format!("{{receiver=\"{receiver}\"}}"), load(&c.unreadable)));
        for (outcome, a) in [
            ("accepted", &c.accepted),
            ("duplicate", &c.duplicates),
            ("rejected", &c.rejected),
            ("skipped", &c.skipped),
        ] {
            received.push((
                format!("{{receiver=\"{receiver}\",outcome=\"{outcome}\"}}"),
                load(a),
            ));
        }
    }
    family(
        "prescale_receive_requests_total",
        "counter",
        "Write requests to the remote_write and line-protocol receivers.",
        requests,
    );
    family(
        "prescale_received_samples_total",
        "counter",
        "Samples pushed to the receivers, by outcome (skipped: staleness markers and string fields).",
        received,
    );
    family(
        "prescale_receive_unreadable_total",
        "counter",
        "Payloads, series or lines the receivers could not read, so none of their samples were stored.",
        unreadable,
    );
    {
        let r = st.reloads.read().expect("reload lock").clone();
        family(
            "prescale_config_last_reload_successful",
            "gauge",
            "Whether the last configuration reload was applied (1 before any).",
            vec![(String::new(), f64::from(u8::from(r.last_successful)))],
        );
        family(
            "prescale_config_last_reload_success_timestamp_seconds",
            "gauge",
            "When the configuration in force was loaded (the start, or the last reload applied).",
            vec![(String::new(), r.last_success_ms as f64 / 1000.0)],
        );
        family(
            "prescale_config_reloads_total",
            "counter",
            "Configuration reloads asked for (SIGHUP or POST /-/reload), by outcome.",
            vec![
                (
                    "{outcome=\"applied\"}".into(),
                    (r.attempts - r.failures) as f64,
                ),
                ("{outcome=\"refused\"}".into(), r.failures as f64),
            ],
        );
    }
    let managed = st.managed();
    let mut demand = Vec::new();
    let mut capacity = Vec::new();
    let mut fc = Vec::new();
    let mut cost = Vec::new();
    let mut inst = Vec::new();
    let mut planned = Vec::new();
    let mut binding = Vec::new();
    let (mut paused, mut paused_until) = (Vec::new(), Vec::new());
    let (mut event_start, mut event_end) = (Vec::new(), Vec::new());
    let mut refused_since = Vec::new();
    let now = status.last_tick.unwrap_or(i64::MIN);
    for (name, w) in &status.workloads {
        let n = esc(name);
        for e in w.events.iter().filter(|e| e.end.0 > now) {
            let labels = format!("{{workload=\"{n}\",event=\"{}\"}}", esc(&e.name));
            event_start.push((labels.clone(), e.start.0 as f64 / 1000.0));
            event_end.push((labels, e.end.0 as f64 / 1000.0));
        }
        paused.push((
            format!("{{workload=\"{n}\"}}"),
            f64::from(u8::from(w.paused.is_some())),
        ));
        // Since when the provider has refused a tier's action at every pass.
        let mut refused = BTreeMap::new();
        for r in &w.refusing {
            let since = refused.entry(r.action.tier.as_str()).or_insert(r.since);
            *since = (*since).min(r.since);
        }
        for (tier, since) in refused {
            refused_since.push((
                format!("{{workload=\"{n}\",tier=\"{}\"}}", esc(tier)),
                since as f64 / 1000.0,
            ));
        }
        if let Some(p) = &w.paused {
            paused_until.push((
                format!("{{workload=\"{n}\",scope=\"{}\"}}", p.scope.name()),
                p.until as f64 / 1000.0,
            ));
        }
        if let Some(d) = w.demand {
            demand.push((format!("{{workload=\"{n}\"}}"), d));
        }
        capacity.push((format!("{{workload=\"{n}\"}}"), w.ready_capacity));
        if let Some(f) = &w.forecast {
            if f.horizon() > 0 {
                for (j, l) in f.levels.iter().enumerate() {
                    fc.push((
                        format!("{{workload=\"{n}\",quantile=\"{l}\"}}"),
                        f.values[0][j],
                    ));
                }
            }
        }
        if let Some(p) = &w.plan {
            cost.push((format!("{{workload=\"{n}\"}}"), p.cost_per_hour));
            binding.push((
                format!("{{workload=\"{n}\",binding=\"{}\"}}", esc(&p.binding)),
                1.0,
            ));
            for (t, c) in &p.target {
                planned.push((
                    format!("{{workload=\"{n}\",tier=\"{}\"}}", esc(t)),
                    *c as f64,
                ));
            }
        }
        for t in &managed.tiers {
            let c = w.allocation.get(&t.name);
            let tn = esc(&t.name);
            inst.push((
                format!("{{workload=\"{n}\",tier=\"{tn}\",state=\"ready\"}}"),
                c.ready as f64,
            ));
            inst.push((
                format!("{{workload=\"{n}\",tier=\"{tn}\",state=\"pending\"}}"),
                c.pending as f64,
            ));
            inst.push((
                format!("{{workload=\"{n}\",tier=\"{tn}\",state=\"ending\"}}"),
                c.ending as f64,
            ));
        }
    }
    family(
        "prescale_workload_demand",
        "gauge",
        "Demand of the last complete step (vCPU).",
        demand,
    );
    family(
        "prescale_workload_ready_capacity",
        "gauge",
        "Effective capacity of ready instances (vCPU).",
        capacity,
    );
    family(
        "prescale_workload_paused",
        "gauge",
        "Whether an operator's pause holds the workload's capacity back (POST /api/v1/workloads/NAME/pause).",
        paused,
    );
    family(
        "prescale_workload_paused_until_seconds",
        "gauge",
        "When the pause in force ends (unix seconds), by what it holds back (all, scale-down).",
        paused_until,
    );
    family(
        "prescale_workload_refused_since_seconds",
        "gauge",
        "Since when (unix seconds) the provider has refused the action on a tier at every pass, as long as it does (a refusal logged once, then once an hour).",
        refused_since,
    );
    family(
        "prescale_workload_event_start_seconds",
        "gauge",
        "When each planned event not over yet starts (unix seconds; [[workloads.events]], or declared through POST /api/v1/workloads/NAME/events).",
        event_start,
    );
    family(
        "prescale_workload_event_end_seconds",
        "gauge",
        "When each planned event not over yet ends (unix seconds).",
        event_end,
    );
    family(
        "prescale_forecast_demand",
        "gauge",
        "Forecast demand for the next step, per quantile (vCPU).",
        fc,
    );
    family(
        "prescale_plan_cost_per_hour",
        "gauge",
        "Cost per hour of the current plan.",
        cost,
    );
    family(
        "prescale_plan_instances",
        "gauge",
        "Instances per tier the current plan asks for.",
        planned,
    );
    family(
        "prescale_plan_binding",
        "gauge",
        "1 for the constraint that decided the current plan: sla (the service level was bought), budget (the budget could not buy it), max_instances (a tier's limit) and the like.",
        binding,
    );
    family(
        "prescale_allocation_instances",
        "gauge",
        "Instances held per tier and state.",
        inst,
    );
    // Declared without a series when leader election is off, as a labelled family with
    // no children is.
    family(
        "prescale_leader_election_leading",
        "gauge",
        "With [leader_election]: 1 while this replica holds the lease and so plans and acts, 0 while it stands by (as controller-runtime's leader_election_master_status).",
        st.leadership
            .iter()
            .map(|l| {
                (
                    format!("{{lease=\"{}\"}}", esc(&l.lease)),
                    f64::from(u8::from(l.leading.load(Ordering::Relaxed))),
                )
            })
            .collect(),
    );
    // Declared without a series for a provider whose state is its own.
    let provider = format!("{{provider=\"{}\"}}", esc(&st.managed().provider));
    let read = status.provider_state.as_ref();
    family(
        "prescale_provider_state_up",
        "gauge",
        "For a provider that reads what each workload holds from outside (a hook with report_state, Kubernetes): 1 if it could at the last pass, 0 while it cannot (plans go on from what it last said).",
        read.map(|r| (provider.clone(), f64::from(u8::from(r.unread_since.is_none()))))
            .into_iter()
            .collect(),
    );
    family(
        "prescale_provider_state_last_read_timestamp_seconds",
        "gauge",
        "When such a provider's state was last read (unix seconds).",
        read.and_then(|r| r.read_at)
            .map(|t| (provider.clone(), t as f64 / 1000.0))
            .into_iter()
            .collect(),
    );
    let mut left = Vec::new();
    let mut left_cost = Vec::new();
    for (name, u) in &status.unmanaged {
        let n = esc(name);
        for (t, c) in &u.instances {
            left.push((
                format!("{{workload=\"{n}\",tier=\"{}\"}}", esc(t)),
                *c as f64,
            ));
        }
        left_cost.push((format!("{{workload=\"{n}\"}}"), u.cost_per_hour));
    }
    family(
        "prescale_unmanaged_instances",
        "gauge",
        "Instances held per tier for workloads no longer configured (left as they are until POST /api/v1/unmanaged/NAME/release).",
        left,
    );
    family(
        "prescale_unmanaged_cost_per_hour",
        "gauge",
        "What the instances held for workloads no longer configured cost per hour.",
        left_cost,
    );
    // How long each tier's instances took to serve, measured against what its plans
    // assume (prescale_orchestrate::engine::LeadTimes).
    let leads = &status.lead_times;
    let quantiles = |f: fn(&prescale_orchestrate::engine::LeadTimes) -> (f64, f64)| {
        leads
            .iter()
            .flat_map(|(tier, m)| {
                let (median, p90) = f(m);
                [
                    (
                        format!("{{tier=\"{}\",quantile=\"0.5\"}}", esc(tier)),
                        median,
                    ),
                    (format!("{{tier=\"{}\",quantile=\"0.9\"}}", esc(tier)), p90),
                ]
            })
            .collect::<Vec<_>>()
    };
    family(
        "prescale_tier_lead_time_seconds",
        "gauge",
        "How long the tier's last instances took from asked for to serving (to the control pass): median and 90th percentile.",
        quantiles(|m| (m.median_s, m.p90_s)),
    );
    family(
        "prescale_tier_lead_time_configured_seconds",
        "gauge",
        "The tier's configured lead time (lead_time_s, lead_time_p90_s): what plans assume.",
        quantiles(|m| (m.configured_s as f64, m.configured_p90_s as f64)),
    );
    family(
        "prescale_tier_lead_time_late",
        "gauge",
        "1 when the tier's measured 90th percentile runs past its configured one (by a quarter and a control interval, over at least 10 instances), else 0.",
        leads
            .iter()
            .map(|(tier, m)| (format!("{{tier=\"{}\"}}", esc(tier)), f64::from(u8::from(m.late))))
            .collect(),
    );
    // Each tier as one pool shared by every workload (prescale_orchestrate::engine::Pool).
    let pools = |f: fn(&prescale_orchestrate::engine::Pool) -> u32| {
        status
            .pools
            .iter()
            .map(|(tier, p)| (format!("{{tier=\"{}\"}}", esc(tier)), f64::from(f(p))))
            .collect()
    };
    family(
        "prescale_tier_instances",
        "gauge",
        "Instances of the tier held (ready and pending) over every workload and capacity no longer managed.",
        pools(|p| p.held),
    );
    family(
        "prescale_tier_max_instances",
        "gauge",
        "The tier's max_instances: the most every workload together may hold; a workload's plan fills what the others leave, then its next tier.",
        pools(|p| p.max_instances),
    );
    // The budget over every workload and what the fleet spends
    // (prescale_orchestrate::engine::FleetStatus); left out on a standby.
    let one = |v: Option<f64>| v.map(|v| (String::new(), v)).into_iter().collect();
    family(
        "prescale_fleet_cost_per_hour",
        "gauge",
        "What every workload's instances (ready and pending) and the capacity no longer managed cost per hour at list price.",
        one(fleet.as_ref().map(|f| f.cost_per_hour)),
    );
    family(
        "prescale_fleet_month_spend_dollars",
        "gauge",
        "What the fleet has spent this calendar month (UTC), as prescale counts it: its instances' list prices over the time held.",
        one(fleet.as_ref().and_then(|f| f.spend.map(|sp| sp.spent))),
    );
    family(
        "prescale_fleet_budget_per_hour",
        "gauge",
        "With a [fleet] budget: the hourly cap in force, the hourly budget or the monthly one paced over the hours left in the month.",
        one(fleet.as_ref().and_then(|f| f.cap_per_hour)),
    );
    family(
        "prescale_workload_fleet_share_per_hour",
        "gauge",
        "With a [fleet] budget: the workload's share of the fleet's hourly cap at its latest pass (its plan is cut to it where it wants more).",
        status
            .workloads
            .iter()
            .filter_map(|(name, w)| Some((format!("{{workload=\"{}\"}}", esc(name)), w.fleet?.share)))
            .collect(),
    );
    family(
        "prescale_workload_fleet_want_per_hour",
        "gauge",
        "With a [fleet] budget: what the workload's plan would cost per hour without it.",
        status
            .workloads
            .iter()
            .filter_map(|(name, w)| {
                Some((format!("{{workload=\"{}\"}}", esc(name)), w.fleet?.want))
            })
            .collect(),
    );
    // The latest comparisons with HPA kept (see compare::record_all), so a Prometheus
    // that scrapes prescale can chart and alert on the money saved too.
    for (name, help) in [
        (
            "prescale_compare_vs_hpa",
            "prescale's cost over HPA's on the same demand over the last `days`, less one (-0.2: 20% cheaper), as last compared.",
        ),
        (
            "prescale_compare_vs_matched_hpa",
            "prescale's cost over that of HPA short no longer than prescale over the last `days`, less one, as last compared.",
        ),
        (
            "prescale_compare_vs_as_run",
            "prescale's cost over that of what the workload actually had (its `actual` query) over the last `days`, less one, as last compared.",
        ),
    ] {
        let days = format!("{}", compare::RECORDED_DAYS);
        family(name, "gauge", help, latest_by_workload(st, name, Some(&days)));
    }
    // The latest tuning of each workload's safeguards kept (see tune::record).
    for (name, help) in [
        (
            "prescale_tune_saving_dollars",
            "Dollars the advised safeguard settings would have cost less than the workload's own over its last `control.tune_days` of demand, short no longer (0: no run dominates its own), as last tuned.",
        ),
        (
            "prescale_tune_minutes_less",
            "Minutes short the advised safeguard settings would have saved over the same stretch, as last tuned.",
        ),
        (
            "prescale_tune_holds",
            "1 where the advice also held on each half of the stretch replayed alone, 0 where it did not, the stretch was too short to halve (under two days) or there is none, as last tuned.",
        ),
        (
            "prescale_tune_own_cost_dollars",
            "What the workload's own settings cost over the stretch replayed, as last tuned.",
        ),
        (
            "prescale_tune_apply_refused",
            "With control.tune_apply: 1 where the daemon did not apply the workload's last advice that held (GET /api/v1/workloads/NAME/tune says why in applied.refused), 0 where it wrote it into its file and reloaded.",
        ),
    ] {
        family(name, "gauge", help, latest_by_workload(st, name, None));
    }
    out
}

/// The latest sample of the kept series `name{workload}` (with `days`, where given) of
/// each configured workload, as `/metrics` rows.
fn latest_by_workload(st: &AppState, name: &str, days: Option<&str>) -> Vec<(String, f64)> {
    st.managed()
        .workloads
        .iter()
        .filter_map(|w| {
            let mut key = SeriesKey::metric(name)
                .expect("static name")
                .with_label("workload", w.name.clone());
            let mut labels = format!("workload=\"{}\"", esc(&w.name));
            if let Some(d) = days {
                key = key.with_label("days", d.to_string());
                labels += &format!(",days=\"{d}\"");
            }
            let last = st.store.latest(&key).ok()??;
            Some((format!("{{{labels}}}"), last.value))
        })
        .collect()
}

async fn metrics(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&st),
    )
        .into_response()
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(feature = "tls")]
    if let Some(tls) = state.tls.clone() {
        let listener = tls.listen(listener)?;
        return axum::serve(listener, router(state))
            .with_graceful_shutdown(shutdown)
            .await;
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(feature = "tls")]
pub mod tls;

#[cfg(test)]
mod tests;
