//! Reloading the daemon's configuration without a restart: on SIGHUP or `POST
//! /-/reload`, as Prometheus does. The file is read and checked whole first (and every
//! file it names that a reload reads again: the token, a served certificate); if
//! anything in it is wrong, nothing changes and the answer (and the log) says what to
//! fix. Then the tiers, the workloads (each keeping what it learnt while its forecast
//! is the same: [`Engine::reconfigure`]), the control interval, the provider, the
//! scrape jobs, the host collector, the receivers, the token, the certificate, the
//! retention, the store's limit on series and the anomaly watch's settings are put in
//! force; what only a restart applies ([`needs_restart`]) is listed in the answer.
//! `?dry_run=true` answers what would change and changes nothing.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prescale_core::config::Config;
use prescale_core::now_ms;
use prescale_orchestrate::{Engine, Provider};
use prescale_server::{AppState, Managed, ReloadRequest};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::Overrides;

/// A scrape or discovery loop, ready to spawn.
pub(crate) type Loop = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The loops that scrape `cfg`'s jobs. Everything that can fail (a TLS file, a
/// Kubernetes connection) is done before any loop exists, so a bad job refuses the
/// start or the reload whole.
pub(crate) fn scrape_loops(cfg: &Config, state: &AppState) -> Result<Vec<Loop>, String> {
    let store = &state.store;
    let mut loops: Vec<Loop> = Vec::new();
    for (i, job) in cfg.sources.scrape.iter().enumerate() {
        let agent = prescale_collect::http::agent(
            Duration::from_secs(job.timeout_s),
            prescale_collect::http::TlsFiles {
                ca_file: job.ca_file.as_deref(),
                client: job.cert_file.as_deref().zip(job.key_file.as_deref()),
            },
        )
        .map_err(|e| format!("sources.scrape[{i}]: {e}"))?;
        if let Some(sd) = &job.kubernetes {
            let conn = prescale_collect::kube::connect(
                &prescale_collect::kube::Settings {
                    api_url: sd.api_url.as_deref(),
                    token_file: sd.token_file.as_deref(),
                    ca_file: sd.api_ca_file.as_deref(),
                    client: sd.api_cert_file.as_deref().zip(sd.api_key_file.as_deref()),
                    namespace: sd.namespace.as_deref(),
                    timeout: Duration::from_secs(job.timeout_s),
                },
                &format!("sources.scrape[{i}].kubernetes"),
                |v| std::env::var(v).ok(),
                std::path::Path::new(prescale_collect::kube::SERVICE_ACCOUNT_DIR),
            )?;
            loops.push(Box::pin(crate::discover_loop(
                job.clone(),
                conn,
                agent.clone(),
                store.clone(),
                state.targets.clone(),
                state.metadata.clone(),
                state.anomalies.clone(),
            )));
        }
        for instance in &job.targets {
            let mut target =
                prescale_collect::scrape::Target::new(&job.job, &job.scheme, instance, &job.path);
            target.sample_limit = job.sample_limit;
            loops.push(Box::pin(crate::scrape_loop(
                target,
                Duration::from_secs(job.interval_s),
                agent.clone(),
                store.clone(),
                state.targets.clone(),
                state.metadata.clone(),
                state.anomalies.clone(),
            )));
        }
    }
    Ok(loops)
}

/// The `/proc` collector's loop, when `[sources.host]` enables it.
/// How long after the host collector's first reading it takes its second, the first
/// with rates.
const PRIMING: Duration = Duration::from_secs(1);

pub(crate) fn host_loop(cfg: &Config, state: &AppState) -> Option<Loop> {
    let host = &cfg.sources.host;
    if !host.enabled {
        return None;
    }
    let (store, anomalies) = (state.store.clone(), state.anomalies.clone());
    let every = Duration::from_secs(host.interval_s);
    let collector = Arc::new(Mutex::new(prescale_collect::HostCollector::new(
        host.proc_root.clone(),
    )));
    Some(Box::pin(async move {
        let mut tick = tokio::time::interval(every);
        let mut primed = false;
        loop {
            tick.tick().await;
            if !primed {
                // CPU, disk and network rates need two readings: the second comes a
                // second after the first, not a whole interval (10 s by default) later,
                // so the first control pass, which waits at most 5 s, has them.
                primed = true;
                tick.reset_after(PRIMING.min(every));
            }
            let store = store.clone();
            let collector = collector.clone();
            let anomalies = anomalies.clone();
            let res = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
                let samples = collector.lock().expect("collector").collect(now_ms())?;
                let batch: Vec<_> = samples.into_iter().map(|(k, s)| (k, vec![s])).collect();
                let reports = store.append_many(&batch)?;
                for (r, (k, _)) in reports.iter().zip(&batch) {
                    for rej in &r.rejected {
                        tracing::warn!("{k}: sample rejected: {}", rej.reason);
                    }
                }
                anomalies.submit(batch, &reports);
                Ok(reports.iter().map(|r| r.accepted).sum::<usize>())
            })
            .await;
            match res {
                Ok(Ok(n)) => tracing::debug!(samples = n, "host metrics stored"),
                Ok(Err(e)) => tracing::warn!("host collection failed: {e:#}"),
                Err(e) => tracing::error!("host collector task died: {e}"),
            }
        }
    }))
}

/// The settings that differ between `old` and `new` which only a restart puts in
/// force, by their keys (`storage.path`, `server.listen`, `detect.threshold`, ...),
/// for a store opened to read back `lookback_s` ([`remote_lookback_s`]).
pub(crate) fn needs_restart(old: &Config, new: &Config, lookback_s: u64) -> Vec<String> {
    let mut out = Vec::new();
    if new.storage.remote.is_some() && remote_lookback_s(new) > lookback_s {
        // The remote store reads back as far as the longest history at the start.
        out.push("workloads.history_s".into());
    }
    use prescale_core::config::changed_keys;
    let sections = [
        // Retention is applied from the configuration in force at each hourly pass,
        // and the store takes a new limit on series at once.
        (
            "storage",
            changed_keys(&old.storage, &new.storage),
            &["retention_s", "max_series", "decision_retention_s"][..],
        ),
        // The token file is read again at every reload (a rotated Secret), and so
        // are the certificate and its key while HTTPS is served; turning HTTPS on or
        // off is not (below).
        (
            "server",
            changed_keys(&old.server, &new.server),
            &["token_file", "cert_file", "key_file", "token_for_reads"],
        ),
        // The watch takes a new threshold, limit and match ([`Anomalies::reconfigure`]).
        (
            "detect",
            changed_keys(&old.detect, &new.detect),
            &["threshold", "max_series", "match"],
        ),
        // The elector runs as it was started.
        (
            "leader_election",
            changed_keys(&old.leader_election, &new.leader_election),
            &[],
        ),
    ];
    for (name, keys, reloaded) in sections {
        out.extend(
            keys.into_iter()
                .filter(|k| !reloaded.contains(&k.as_str()))
                .map(|k| format!("{name}.{k}")),
        );
    }
    if old.server.tls_files().is_some() != new.server.tls_files().is_some() {
        out.push("server.cert_file".into());
    }
    out
}

/// How far back a remote store is read: as far as the longest `history_s`, a day at
/// least, fixed when the store is opened.
pub(crate) fn remote_lookback_s(cfg: &Config) -> u64 {
    cfg.workloads
        .iter()
        .map(|w| w.history_s)
        .max()
        .unwrap_or(0)
        .max(86_400)
}

/// What runs after a reload from `old` to `new`: `new`, but with the settings only a
/// restart applies as they were, so the next reload still names them while they
/// differ from the file.
pub(crate) fn in_force(old: &Config, mut new: Config) -> Config {
    let (retention_s, max_series) = (new.storage.retention_s, new.storage.max_series);
    let decision_retention_s = new.storage.decision_retention_s;
    new.storage = old.storage.clone();
    new.storage.retention_s = retention_s;
    new.storage.max_series = max_series;
    new.storage.decision_retention_s = decision_retention_s;
    let token_file = new.server.token_file.take();
    let token_for_reads = new.server.token_for_reads;
    let tls = (new.server.cert_file.take(), new.server.key_file.take());
    let serving_tls = old.server.tls_files().is_some();
    new.server = old.server.clone();
    new.leader_election = old.leader_election.clone();
    new.server.token_file = token_file;
    new.server.token_for_reads = token_for_reads;
    if serving_tls && tls.0.is_some() {
        (new.server.cert_file, new.server.key_file) = tls;
    }
    new.detect.enabled = old.detect.enabled;
    new
}

/// What a reload reads and changes.
pub(crate) struct Reloading {
    /// The configuration file (`None`: the built-in defaults, nothing to reread).
    pub path: Option<PathBuf>,
    /// The command line's overrides, applied again over the file.
    pub overrides: Overrides,
    pub engine: Arc<Mutex<Engine<Box<dyn Provider>>>>,
    /// The server's state: the configuration in force, the store, what is managed.
    pub state: AppState,
    /// The scrape and discovery loops running.
    pub scrapes: Vec<JoinHandle<()>>,
    /// The `/proc` collector's loop, when it runs.
    pub host: Option<JoinHandle<()>>,
    /// The control loop's interval, read at each pass.
    pub interval_ms: Arc<AtomicU64>,
    /// How far back the store was opened to read ([`remote_lookback_s`]).
    pub lookback_s: u64,
}

impl Drop for Reloading {
    /// The daemon is stopping: its scrapes stop with it (a handle dropped would leave
    /// them running while the store is flushed).
    fn drop(&mut self) {
        for h in self.scrapes.iter().chain(&self.host) {
            h.abort();
        }
    }
}

impl Reloading {
    /// Answers reload requests one at a time until the daemon stops.
    pub(crate) async fn serve(mut self, mut rx: mpsc::Receiver<ReloadRequest>) {
        while let Some(ReloadRequest { dry_run, answer }) = rx.recv().await {
            let res = self.reload(dry_run).await;
            if dry_run {
                // Nothing changed: the reload status stays as it was.
                match &res {
                    Ok(v) => tracing::info!(changes = %v, "configuration checked (dry run)"),
                    Err(e) => tracing::info!("configuration checked (dry run): {e}"),
                }
                let _ = answer.send(res);
                continue;
            }
            {
                let mut r = self.state.reloads.write().expect("reload lock");
                r.attempts += 1;
                match &res {
                    Ok(v) => {
                        r.last_successful = true;
                        r.last_success_ms = now_ms();
                        r.last_error = None;
                        r.pending_restart = serde_json::from_value(v["pending_restart"].clone())
                            .unwrap_or_default();
                    }
                    Err(e) => {
                        r.failures += 1;
                        r.last_successful = false;
                        r.last_error = Some(e.clone());
                    }
                }
            }
            match &res {
                Ok(v) => tracing::info!(changes = %v, "configuration reloaded"),
                Err(e) => {
                    tracing::error!("configuration not reloaded, the one in force is kept: {e}")
                }
            }
            let _ = answer.send(res);
        }
    }

    /// Reads, checks and (unless `dry_run`) puts the file in force; what changed (or
    /// would), or why nothing does.
    async fn reload(&mut self, dry_run: bool) -> Result<Value, String> {
        let Some(path) = &self.path else {
            return Err("prescale runs on its built-in defaults: there is no file to reread (start it with --config FILE)".into());
        };
        let mut new = Config::load(path).map_err(|e| e.to_string())?;
        crate::apply_overrides(&mut new, &self.overrides);
        crate::check_runnable(&new).map_err(|e| format!("{e:#}"))?;
        let old = self.state.config.read().expect("config lock").clone();
        let pending = needs_restart(&old, &new, self.lookback_s);
        let running = in_force(&old, new.clone());
        // Read again whether or not its path changed: a Secret's file is rotated in
        // place. Checked against the address it listens on now.
        let token = running
            .write_token()
            .map_err(|e| format!("server.token_file: {e}"))?;
        // The certificate served, read again (cert-manager renews it in place).
        #[cfg(feature = "tls")]
        let renewed = match (&self.state.tls, running.server.tls_files()) {
            (Some(_), Some((c, k))) => Some(prescale_server::tls::Tls::read(c, k)?),
            _ => None,
        };
        let provider = crate::make_provider(&new).map_err(|e| format!("{e:#}"))?;
        let scrape_changed = old.sources.scrape != new.sources.scrape;
        let loops = if scrape_changed {
            Some(scrape_loops(&new, &self.state)?)
        } else {
            None
        };
        let host_changed = old.sources.host != new.sources.host;
        let fleet_changed = old.fleet != new.fleet;
        let token_required = token.is_some();
        let answer = |changed: prescale_orchestrate::engine::Reconfigured| {
            json!({
                "dry_run": dry_run,
                "workloads_added": changed.added,
                "workloads_changed": changed.changed,
                "workloads_relearning": changed.relearnt,
                "workloads_removed": changed.removed,
                "tiers_changed": changed.tiers,
                "scrape_changed": scrape_changed,
                "host_changed": host_changed,
                "fleet_changed": fleet_changed,
                "control_interval_s": new.control.interval_s,
                "token_required": token_required,
                "pending_restart": pending,
            })
        };
        let engine = self.engine.clone();
        let (tiers, workloads) = (new.tiers.clone(), new.workloads.clone());
        if dry_run {
            let said = tokio::task::spawn_blocking(move || {
                engine.lock().expect("engine").preview(&tiers, &workloads)
            })
            .await
            .map_err(|e| format!("the control loop failed: {e}"))?;
            return Ok(answer(said));
        }
        // Nothing can fail from here on.
        let interval_ms = new.control.interval_s * 1000;
        let measured_leads = new.control.measured_lead_times;
        let fleet = new.fleet.clone();
        let now = now_ms();
        let changed = tokio::task::spawn_blocking(move || {
            let mut engine = engine.lock().expect("engine");
            engine.set_measured_lead_times(measured_leads);
            let changed = engine.reconfigure(tiers, workloads, interval_ms as i64, provider, now);
            if let Err(e) = engine.reconfigure_fleet(fleet, now) {
                tracing::warn!("reload: the fleet budget's change is not logged: {e}");
            }
            changed
        })
        .await
        .map_err(|e| format!("the control loop failed while reconfiguring: {e}"))?;
        self.interval_ms.store(interval_ms, Ordering::Relaxed);
        self.state.receivers.set_token(token);
        self.state.receivers.enable(&running);
        if !self.state.store.is_remote() {
            self.state.store.set_max_series(running.storage.max_series);
        }
        if host_changed {
            if let Some(h) = self.host.take() {
                h.abort();
            }
            self.host = host_loop(&running, &self.state).map(tokio::spawn);
        }
        self.state
            .token_for_reads
            .store(running.server.token_for_reads, Ordering::Relaxed);
        #[cfg(feature = "tls")]
        if let (Some(tls), Some(renewed)) = (&self.state.tls, renewed) {
            tls.put(renewed);
        }
        // With `enabled` changed the watch stays as it is (pending_restart says so).
        self.state.anomalies.reconfigure(&new.detect);
        self.state
            .anomalies
            .set_planned(&prescale_server::with_declared(
                &new.workloads,
                &self.state.status.read().expect("status lock"),
            ));
        self.state.set_managed(Managed::of(&new));
        if let Some(loops) = loops {
            for h in self.scrapes.drain(..) {
                h.abort();
            }
            self.state
                .retarget(&old.sources.scrape, &new.sources.scrape);
            self.scrapes = loops.into_iter().map(tokio::spawn).collect();
        }
        let answer = answer(changed);
        *self.state.config.write().expect("config lock") = running;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_are_named_and_retention_is_not_one() {
        let old = Config::default();
        let mut new = old.clone();
        let needs_restart = |a: &Config, b: &Config| needs_restart(a, b, remote_lookback_s(&old));
        assert!(needs_restart(&old, &new).is_empty());
        new.storage.retention_s += 3600;
        new.storage.max_series *= 2;
        new.storage.decision_retention_s = 0;
        new.workloads[0].sla_quantile = 0.9;
        new.control.interval_s += 5;
        assert!(needs_restart(&old, &new).is_empty(), "all reloadable");
        new.detect.threshold = 0.6;
        new.detect.match_ = vec!["{job=\"api\"}".into()];
        assert!(
            needs_restart(&old, &new).is_empty(),
            "the watch takes these"
        );
        new.storage.path = "/elsewhere".into();
        new.server.listen = "0.0.0.0:9180".into();
        new.detect.enabled = false;
        new.sources.influx.enabled = !new.sources.influx.enabled;
        new.sources.host.interval_s += 5;
        assert_eq!(
            needs_restart(&old, &new),
            ["storage.path", "server.listen", "detect.enabled"],
            "the receivers and the host collector are reloaded"
        );
        // What the hourly pass reads is what was reloaded.
        assert_eq!(in_force(&old, new.clone()).storage.decision_retention_s, 0);
        // Leader election runs as it was started.
        let mut elect = old.clone();
        elect.leader_election.enabled = true;
        assert_eq!(needs_restart(&old, &elect), ["leader_election.enabled"]);
        assert!(!in_force(&old, elect).leader_election.enabled);
        // HTTPS turned on waits for a restart; a served certificate's new files do not.
        let mut https = old.clone();
        https.server.cert_file = Some("/tls/tls.crt".into());
        https.server.key_file = Some("/tls/tls.key".into());
        assert_eq!(needs_restart(&old, &https), ["server.cert_file"]);
        assert_eq!(in_force(&old, https.clone()).server.cert_file, None);
        let mut renewed = https.clone();
        renewed.server.cert_file = Some("/tls2/tls.crt".into());
        assert!(needs_restart(&https, &renewed).is_empty());
        assert_eq!(in_force(&https, renewed.clone()).server, renewed.server);
        let mut off = https.clone();
        off.server.cert_file = None;
        off.server.key_file = None;
        assert_eq!(needs_restart(&https, &off), ["server.cert_file"]);
        assert_eq!(in_force(&https, off).server, https.server);
        // What runs keeps them until a restart, and takes the rest.
        let running = in_force(&old, new.clone());
        assert_eq!(needs_restart(&running, &new).len(), 3);
        assert_eq!(running.sources, new.sources);
        assert!(needs_restart(&running, &old).is_empty());
        assert_eq!(running.storage.retention_s, new.storage.retention_s);
        assert_eq!(running.workloads, new.workloads);
        assert_eq!(running.control, new.control);
        assert_eq!(running.detect.threshold, 0.6);
        // With a remote store, a history longer than any at the start cannot be read.
        let mut remote = old.clone();
        remote.storage.remote = Some(
            serde_json::from_value(json!({
                "write_url": "http://tsdb:8428/api/v1/write",
                "read_url": "http://tsdb:8428",
            }))
            .unwrap(),
        );
        let mut longer = remote.clone();
        longer.workloads[0].history_s *= 2;
        assert!(needs_restart(&remote, &remote).is_empty());
        assert_eq!(needs_restart(&remote, &longer), ["workloads.history_s"]);
        let mut shorter = remote.clone();
        shorter.workloads[0].history_s /= 2;
        assert!(needs_restart(&remote, &shorter).is_empty());
        longer.storage.remote = None;
        assert!(
            needs_restart(&old, &longer).is_empty(),
            "the embedded store reads all"
        );
    }
}
