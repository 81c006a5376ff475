//! The Kubernetes provider: each workload tier is a Deployment (or StatefulSet, or Argo
//! Rollouts' Rollout) whose replicas prescale sets through the API server's `scale`
//! subresource, and whose desired and ready replicas are the state prescale plans from.
//!
//! It makes these REST calls, over [`prescale_collect::kube::Connection`]:
//!
//! - an action is `PATCH /apis/apps/v1/namespaces/NS/deployments/NAME/scale` with a
//!   JSON patch that tests `spec.replicas` is still the count prescale read and
//!   replaces it with the count the tier should have afterwards (from zero, which a
//!   Scale leaves out, it adds it), so sending it twice changes nothing and a count
//!   changed since is not written over;
//! - the state is one `GET /apis/apps/v1/namespaces/NS/deployments` per pass: for each
//!   object whose name is a workload tier's, `ready` is `status.readyReplicas` (at most
//!   `spec.replicas`) and `pending` the rest of `spec.replicas`. An object that does not
//!   exist holds nothing;
//! - before a pass's first action, one `GET` of the namespace's HorizontalPodAutoscalers:
//!   an object one of them scales is left to it ([`KubeApi::call`]);
//! - after each action taken or refused, a `POST` of an Event on the object
//!   ([`KubeApi::record`]).
//!
//! Rollouts are at `/apis/argoproj.io/v1alpha1/namespaces/NS/rollouts`, with the same
//! fields. Inside a cluster nothing needs configuring; see [`prescale_collect::kube`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prescale_collect::kube::{connect, hint, ApiError, Connection, Settings};
use prescale_core::config::{kube_object_name as object_name, KubeKind, KubernetesProviderConfig};
use prescale_core::model::TierCount;
use prescale_core::{format_ts, ActionKind, Decision, DecisionKind};
use serde_json::{json, Value};

use crate::hook::{Request, StateReport};
use crate::provider::ProviderError;

pub use prescale_collect::kube::SERVICE_ACCOUNT_DIR;

/// An API server and the objects prescale scales in it.
#[derive(Debug, Clone)]
pub struct KubeApi {
    /// The API server, the credentials and the namespace.
    pub conn: Connection,
    /// Object name for a workload tier: `{workload}` and `{tier}` are replaced.
    pub name: String,
    /// Deployments, StatefulSets or Rollouts.
    pub kind: KubeKind,
    /// Whether it was said that HPAs cannot be listed (said once, not at every action).
    hpas_unlisted_said: Arc<AtomicBool>,
    /// Whether it was said that Events cannot be posted (said once).
    events_unposted_said: Arc<AtomicBool>,
    /// Whether the API server answered the last call (an Event is not posted to one
    /// that did not: it would wait out the time-out again).
    answered: Arc<AtomicBool>,
    /// The namespace's HPAs as listed for this pass's first action (`None`: not yet;
    /// `Some(None)`: they could not be listed), so a pass lists them once however many
    /// tiers it scales; forgotten at each pass's reading of the state.
    hpas: Arc<std::sync::Mutex<Option<Option<Value>>>>,
}

/// How to reach the API server `cfg` names, each call taking at most `timeout` (the
/// provider's, and leader election's on the same server).
pub fn settings(cfg: &KubernetesProviderConfig, timeout: std::time::Duration) -> Settings<'_> {
    Settings {
        api_url: cfg.api_url.as_deref(),
        token_file: cfg.token_file.as_deref(),
        ca_file: cfg.ca_file.as_deref(),
        client: cfg.cert_file.as_deref().zip(cfg.key_file.as_deref()),
        namespace: cfg.namespace.as_deref(),
        timeout,
    }
}

impl KubeApi {
    /// The API server `cfg` names, with what it leaves out taken from the cluster prescale
    /// runs in (see [`prescale_collect::kube::connect`]).
    pub fn from_config(
        cfg: &KubernetesProviderConfig,
        env: impl Fn(&str) -> Option<String>,
        sa_dir: &std::path::Path,
    ) -> Result<Self, String> {
        let timeout = std::time::Duration::from_secs(cfg.timeout_s);
        let conn = connect(&settings(cfg, timeout), "providers.kubernetes", env, sa_dir)?;
        Ok(Self {
            conn,
            name: cfg.name.clone(),
            kind: cfg.kind,
            hpas_unlisted_said: Default::default(),
            events_unposted_said: Default::default(),
            answered: Arc::new(AtomicBool::new(true)),
            hpas: Default::default(),
        })
    }

    /// Carries out one request: a scale for an action (answering nothing), the state of
    /// every workload tier as a [`StateReport`] in JSON for a state request.
    pub fn call(&self, req: &Request) -> Result<String, ProviderError> {
        let r = self.carry_out(req);
        let answered = !matches!(r, Err(ProviderError::Unavailable(_)));
        self.answered.store(answered, Ordering::Relaxed);
        r
    }

    fn carry_out(&self, req: &Request) -> Result<String, ProviderError> {
        match req {
            Request::Action {
                workload,
                tier,
                instances_before,
                instances_after,
                ..
            } => {
                let name = object_name(&self.name, workload, tier);
                if let Some((hpa, owner)) = self.hpa_on(&name) {
                    let ns = &self.conn.namespace;
                    // KEDA makes an HPA again for as long as its ScaledObject stands.
                    let (whose, delete) = match owner {
                        Some(so) => (
                            format!(", which KEDA's ScaledObject {so} keeps"),
                            format!("Delete the ScaledObject (kubectl -n {ns} delete scaledobject {so}; KEDA makes its HPA again while it stands)"),
                        ),
                        None => (
                            String::new(),
                            format!("Delete the HPA (kubectl -n {ns} delete hpa {hpa})"),
                        ),
                    };
                    return Err(ProviderError::Refused(format!(
                        "Kubernetes: {} {ns}/{name} is also scaled by HorizontalPodAutoscaler {hpa}{whose}, so its replicas were not set to {instances_after}: two autoscalers on one object undo each other's changes. {delete}, or keep it and let it follow prescale instead (providers.use = \"recommend\" with KEDA: examples/kubernetes/keda-scaledobject.yaml)",
                        self.kind.noun(),
                    )));
                }
                let path = format!("{}/{name}/scale", self.collection());
                // Only if the replicas are still what prescale read: one changed since
                // (by hand, by another autoscaler) is not overwritten from a count that
                // no longer holds, as a merge patch would. A Scale leaves out a zero
                // count (`replicas,omitempty`), which no test can match: from zero the
                // count is set as it is.
                let ops = match instances_before {
                    0 => format!(
                        r#"[{{"op":"add","path":"/spec/replicas","value":{instances_after}}}]"#
                    ),
                    n => format!(
                        r#"[{{"op":"test","path":"/spec/replicas","value":{n}}},{{"op":"replace","path":"/spec/replicas","value":{instances_after}}}]"#
                    ),
                };
                let scale = format!("{}/scale", self.kind.resource());
                self.conn.json_patch(&path, &ops).map_err(|e| match e {
                    ApiError::Status { code: 422 | 409, .. } => ProviderError::Refused(format!(
                        "Kubernetes: patch {scale} {}/{name}: its replicas are no longer the {instances_before} prescale read (changed outside prescale since: by hand, or by another autoscaler on the same object), so they were not set to {instances_after}; the next pass reads them again ({e})",
                        self.conn.namespace
                    )),
                    e => self.refusal(e, "patch", &scale, &name),
                })?;
                Ok(String::new())
            }
            Request::State { workloads, tiers } => {
                // A new pass: the HPAs are listed again at its first action.
                *self.hpas.lock().expect("hpas lock") = None;
                let report = self.state(workloads, tiers)?;
                Ok(serde_json::to_string(&report).expect("a state report serializes"))
            }
        }
    }

    /// The HorizontalPodAutoscaler in the namespace whose scale target is object `name`
    /// of this kind, if there is one (as KEDA refuses a ScaledObject for a workload an
    /// HPA already scales). `None` too when the HPAs cannot be listed (a Role without
    /// `list` on them, an API server without `autoscaling/v2`): prescale cannot tell,
    /// and goes on. With the HPA's name, the KEDA ScaledObject that owns it, if one does.
    fn hpa_on(&self, name: &str) -> Option<(String, Option<String>)> {
        let mut listed = self.hpas.lock().expect("hpas lock");
        let list = listed
            .get_or_insert_with(|| self.list_hpas(name))
            .as_ref()?;
        list.get("items")?.as_array()?.iter().find_map(|hpa| {
            let target = hpa.pointer("/spec/scaleTargetRef")?;
            // The group of `apiVersion` (`apps/v1`), which may be left out.
            let group = target
                .get("apiVersion")
                .and_then(Value::as_str)
                .map(|v| v.split_once('/').map_or("", |(g, _)| g));
            (target.get("kind")?.as_str()? == self.kind.noun()
                && target.get("name")?.as_str()? == name
                && group.is_none_or(|g| g == self.kind.group()))
            .then(|| {
                let owner = hpa
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .and_then(|refs| {
                        refs.iter()
                            .find(|r| r.get("kind").and_then(Value::as_str) == Some("ScaledObject"))
                    })
                    .and_then(|r| r.get("name")?.as_str())
                    .map(str::to_string);
                let name = hpa.pointer("/metadata/name")?.as_str()?.to_string();
                Some((name, owner))
            })?
        })
    }

    /// Posts decision `d` about one of its actions as an Event on the object the action
    /// scaled, as the HPA controller posts its rescales, so `kubectl describe` and
    /// `kubectl get events` show why prescale changed the replicas (`Normal`
    /// `PrescaleScaleUp` or `PrescaleScaleDown`), or why it could not (`Warning`
    /// `PrescaleRefused`, a refusal's repeats counted in one Event as the decision log
    /// counts them). Needs `create` on `events`; without it, or with any other failure,
    /// it says so once in the log and the actions go on.
    pub fn record(&self, d: &Decision) {
        let Some(a) = &d.action else {
            return;
        };
        let (kind, reason) = match (d.kind, a.kind) {
            (DecisionKind::Act, ActionKind::Provision) => ("Normal", "PrescaleScaleUp"),
            (DecisionKind::Act, ActionKind::Deprovision) => ("Normal", "PrescaleScaleDown"),
            (DecisionKind::Error, _) => ("Warning", "PrescaleRefused"),
            _ => return,
        };
        if !self.answered.load(Ordering::Relaxed) {
            return;
        }
        let ns = &self.conn.namespace;
        let name = object_name(&self.name, &a.workload, &a.tier);
        let (count, first, last) = match d.repeated {
            Some(r) => (r.times, r.since, r.until),
            None => (1, d.at, d.at),
        };
        let api_version = format!("{}/{}", self.kind.group(), self.kind.version());
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": format!("{name}."), "namespace": ns},
            "involvedObject": {
                "apiVersion": api_version,
                "kind": self.kind.noun(),
                "name": name,
                "namespace": ns,
            },
            "reason": reason,
            "message": clip(&d.reason, EVENT_MESSAGE_MAX),
            "type": kind,
            "source": {"component": "prescale"},
            "reportingComponent": "prescale",
            "firstTimestamp": format_ts(first),
            "lastTimestamp": format_ts(last),
            "count": count,
        });
        let path = format!("/api/v1/namespaces/{ns}/events");
        if let Err(e) = self.conn.send("POST", &path, &event) {
            if !self.events_unposted_said.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "Kubernetes: cannot post Events in {ns}, so `kubectl describe` does not show why prescale scaled {name} (the decision log does); give prescale's service account create on events (examples/kubernetes/rbac.yaml); said once: {e}{}",
                    hint(&e, "providers.kubernetes", "create on events")
                );
            }
        }
    }

    /// The namespace's HPAs, `None` when they cannot be listed: a refusal is said once
    /// (a Role from before session 63 lacks the right, and goes on as it did), and an
    /// API server that does not answer fails the action itself. `name`: the object the
    /// action is on, for the warning.
    fn list_hpas(&self, name: &str) -> Option<Value> {
        let path = format!(
            "/apis/autoscaling/v2/namespaces/{}/horizontalpodautoscalers",
            self.conn.namespace
        );
        match self.conn.get(&path) {
            Ok(list) => Some(list),
            Err(e @ ApiError::Status { .. }) => {
                if !self.hpas_unlisted_said.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "Kubernetes: cannot list HorizontalPodAutoscalers in {}, so prescale cannot tell whether one also scales {name} (two autoscalers on one object undo each other's changes); give prescale's service account list on horizontalpodautoscalers (examples/kubernetes/rbac.yaml); said once: {e}",
                        self.conn.namespace
                    );
                }
                None
            }
            Err(_) => None,
        }
    }

    fn collection(&self) -> String {
        format!(
            "/apis/{}/{}/namespaces/{}/{}",
            self.kind.group(),
            self.kind.version(),
            self.conn.namespace,
            self.kind.resource()
        )
    }

    /// Lists the objects and reports the workload tiers among them.
    fn state(&self, workloads: &[String], tiers: &[String]) -> Result<StateReport, ProviderError> {
        let list = self
            .conn
            .get(&self.collection())
            .map_err(|e| self.refusal(e, "list", self.kind.resource(), ""))?;
        let items = list.get("items").and_then(Value::as_array).ok_or_else(|| {
            ProviderError::Unavailable(format!(
                "Kubernetes: list {}: the answer has no \"items\" list",
                self.kind.resource()
            ))
        })?;
        let mut by_name: BTreeMap<&str, &Value> = BTreeMap::new();
        for it in items {
            if let Some(n) = it.pointer("/metadata/name").and_then(Value::as_str) {
                by_name.insert(n, it);
            }
        }
        let mut report = StateReport::new();
        for w in workloads {
            let mut held = BTreeMap::new();
            for t in tiers {
                let Some(obj) = by_name.get(object_name(&self.name, w, t).as_str()) else {
                    continue;
                };
                // spec.replicas defaults to 1 when unset, as the API server defaults it.
                let want = obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_u64)
                    .map_or(1, |v| v as u32);
                let ready = obj
                    .pointer("/status/readyReplicas")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as u32;
                // Pods still terminating after a scale-down are not held.
                let ready = ready.min(want);
                held.insert(
                    t.clone(),
                    TierCount {
                        ready,
                        pending: want - ready,
                        ending: 0,
                    },
                );
            }
            report.insert(w.clone(), held);
        }
        Ok(report)
    }

    /// An API error as a provider error, with what to change for the usual causes: no
    /// answer is the provider being unavailable, an error status a refusal.
    fn refusal(&self, e: ApiError, verb: &str, what_res: &str, name: &str) -> ProviderError {
        let ns = &self.conn.namespace;
        let what = if name.is_empty() {
            format!("{verb} {what_res} in {ns}")
        } else {
            format!("{verb} {what_res} {ns}/{name}")
        };
        let extra = match &e {
            ApiError::Status { code: 404, .. } if !name.is_empty() => format!(
                " (create {} {ns}/{name}, or set providers.kubernetes.name to the names yours have)",
                self.kind.noun()
            ),
            _ => hint(
                &e,
                "providers.kubernetes",
                &format!(
                    "get and list on {0}{1} and patch on {0}/scale in namespace {ns}: see examples/kubernetes/rbac.yaml",
                    self.kind.resource(),
                    match self.kind.group() {
                        "apps" => String::new(),
                        g => format!(" (API group {g})"),
                    }
                ),
            ),
        };
        match e {
            ApiError::Status { .. } => {
                ProviderError::Refused(format!("Kubernetes: {what}: {e}{extra}"))
            }
            ApiError::Unreachable(_) | ApiError::BadAnswer(_) => {
                ProviderError::Unavailable(format!("Kubernetes: {what}: {e}"))
            }
        }
    }
}

/// The longest message an Event is given (events.k8s.io's limit on its note): a longer
/// reason is cut there.
const EVENT_MESSAGE_MAX: usize = 1024;

/// `text` cut to at most `max` bytes, at a character's boundary, with an ellipsis where
/// it was cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
