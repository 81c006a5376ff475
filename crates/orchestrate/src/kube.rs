//! The Kubernetes provider: each workload tier is a Deployment (or StatefulSet) whose
//! replicas prescale sets through the API server's `scale` subresource, and whose
//! desired and ready replicas are the state prescale plans from.
//!
//! It speaks the two REST calls it needs over the same HTTP client as the rest of
//! prescale (a Kubernetes client crate would add a second HTTP and TLS stack and
//! several minutes to a 2-core build for them):
//!
//! - an action is `PATCH /apis/apps/v1/namespaces/NS/deployments/NAME/scale` with the
//!   merge patch `{"spec":{"replicas":N}}`, N being the count the tier should have
//!   afterwards, so sending it twice changes nothing;
//! - the state is one `GET /apis/apps/v1/namespaces/NS/deployments` per pass: for each
//!   object whose name is a workload tier's, `ready` is `status.readyReplicas` (at most
//!   `spec.replicas`) and `pending` the rest of `spec.replicas`. An object that does not
//!   exist holds nothing.
//!
//! Inside a cluster the API server, the service-account token, its CA and namespace are
//! found where Kubernetes puts them; outside, `kubectl proxy` (`http://127.0.0.1:8001`,
//! no token) or an explicit URL, token file and CA file. The token file is read again
//! at every call, since projected service-account tokens are rotated while a pod runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prescale_core::config::{kube_object_name as object_name, KubeKind, KubernetesProviderConfig};
use prescale_core::model::TierCount;
use serde_json::Value;

use crate::hook::{Request, StateReport};
use crate::provider::ProviderError;

/// Where Kubernetes mounts a pod's service-account credentials.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// An API server and the objects prescale scales in it.
#[derive(Debug, Clone)]
pub struct KubeApi {
    /// `https://host:port` (or `http://127.0.0.1:8001` behind `kubectl proxy`), no
    /// trailing slash.
    pub api_url: String,
    /// Bearer token, read at every call.
    pub token_file: Option<PathBuf>,
    /// The namespace of the objects.
    pub namespace: String,
    /// Object name for a workload tier: `{workload}` and `{tier}` are replaced.
    pub name: String,
    /// Deployments or StatefulSets.
    pub kind: KubeKind,
    /// The client, with its time-out and TLS settings.
    pub agent: ureq::Agent,
}

fn resource(kind: KubeKind) -> &'static str {
    match kind {
        KubeKind::Deployment => "deployments",
        KubeKind::StatefulSet => "statefulsets",
    }
}

fn noun(kind: KubeKind) -> &'static str {
    match kind {
        KubeKind::Deployment => "Deployment",
        KubeKind::StatefulSet => "StatefulSet",
    }
}

impl KubeApi {
    /// The API server `cfg` names, with what it leaves out taken from the cluster prescale
    /// runs in: `env` looks up `KUBERNETES_SERVICE_HOST`/`_PORT`, and `sa_dir` is where
    /// the pod's service-account token, CA and namespace are mounted
    /// ([`SERVICE_ACCOUNT_DIR`]). Fails saying what to set when there is no API server
    /// to find, or the CA cannot be read.
    pub fn from_config(
        cfg: &KubernetesProviderConfig,
        env: impl Fn(&str) -> Option<String>,
        sa_dir: &std::path::Path,
    ) -> Result<Self, String> {
        let api_url = match &cfg.api_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let host = env("KUBERNETES_SERVICE_HOST").filter(|h| !h.is_empty());
                let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
                let Some(host) = host else {
                    return Err("providers.kubernetes.api_url: not set, and prescale is not in a cluster (no KUBERNETES_SERVICE_HOST); set it to the API server's URL, or to http://127.0.0.1:8001 with `kubectl proxy` running".into());
                };
                if host.contains(':') {
                    format!("https://[{host}]:{port}")
                } else {
                    format!("https://{host}:{port}")
                }
            }
        };
        let in_pod = |f: &str| Some(sa_dir.join(f)).filter(|p| p.is_file());
        let token_file = cfg.token_file.clone().or_else(|| in_pod("token"));
        let ca_file = cfg.ca_file.clone().or_else(|| {
            // The pod's CA is for the pod's API server, not for one named by URL.
            cfg.api_url.is_none().then(|| in_pod("ca.crt")).flatten()
        });
        let namespace = match &cfg.namespace {
            Some(n) => n.clone(),
            None => in_pod("namespace")
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
        };
        let agent = prescale_collect::http::agent(
            std::time::Duration::from_secs(cfg.timeout_s),
            ca_file.as_deref(),
        )
        .map_err(|e| format!("providers.kubernetes.ca_file: {e}"))?;
        Ok(Self {
            api_url,
            token_file,
            namespace,
            name: cfg.name.clone(),
            kind: cfg.kind,
            agent,
        })
    }

    /// Carries out one request: a scale for an action (answering nothing), the state of
    /// every workload tier as a [`StateReport`] in JSON for a state request.
    pub fn call(&self, req: &Request) -> Result<String, ProviderError> {
        match req {
            Request::Action {
                workload,
                tier,
                instances_after,
                ..
            } => {
                self.scale(&object_name(&self.name, workload, tier), *instances_after)?;
                Ok(String::new())
            }
            Request::State { workloads, tiers } => {
                let report = self.state(workloads, tiers)?;
                Ok(serde_json::to_string(&report).expect("a state report serializes"))
            }
        }
    }

    fn collection(&self) -> String {
        format!(
            "{}/apis/apps/v1/namespaces/{}/{}",
            self.api_url,
            self.namespace,
            resource(self.kind)
        )
    }

    fn token(&self) -> Result<Option<String>, ProviderError> {
        match &self.token_file {
            None => Ok(None),
            Some(f) => prescale_core::config::read_token_file(f)
                .map(Some)
                .map_err(|e| ProviderError::Unavailable(format!("providers.kubernetes: {e}"))),
        }
    }

    /// Sets `name`'s replicas to `replicas`.
    fn scale(&self, name: &str, replicas: u32) -> Result<(), ProviderError> {
        let url = format!("{}/{name}/scale", self.collection());
        let mut req = self
            .agent
            .patch(&url)
            .header("Content-Type", "application/merge-patch+json")
            .header("Accept", "application/json");
        if let Some(t) = self.token()? {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let body = format!(r#"{{"spec":{{"replicas":{replicas}}}}}"#);
        let mut resp = req
            .send(body.as_str())
            .map_err(|e| ProviderError::Unavailable(format!("PATCH {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = read_body(&mut resp);
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(self.refusal(
            "patch",
            &format!("{}/scale", resource(self.kind)),
            name,
            status,
            &text,
        ))
    }

    /// Lists the objects and reports the workload tiers among them.
    fn state(&self, workloads: &[String], tiers: &[String]) -> Result<StateReport, ProviderError> {
        let url = self.collection();
        let mut req = self.agent.get(&url).header("Accept", "application/json");
        if let Some(t) = self.token()? {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req
            .call()
            .map_err(|e| ProviderError::Unavailable(format!("GET {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = read_body(&mut resp);
        if !(200..300).contains(&status) {
            return Err(self.refusal("list", resource(self.kind), "", status, &text));
        }
        let list: Value = serde_json::from_str(&text).map_err(|e| {
            ProviderError::Unavailable(format!("GET {url}: the answer is not JSON: {e}"))
        })?;
        let items = list.get("items").and_then(Value::as_array).ok_or_else(|| {
            ProviderError::Unavailable(format!("GET {url}: the answer has no \"items\" list"))
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
                let count = |p: &str| obj.pointer(p).and_then(Value::as_u64).unwrap_or(0) as u32;
                // spec.replicas defaults to 1 when unset, as the API server defaults it.
                let want = obj
                    .pointer("/spec/replicas")
                    .and_then(Value::as_u64)
                    .map_or(1, |v| v as u32);
                let ready = count("/status/readyReplicas").min(want);
                held.insert(
                    t.clone(),
                    TierCount {
                        ready,
                        pending: want - ready,
                    },
                );
            }
            report.insert(w.clone(), held);
        }
        Ok(report)
    }

    /// A refusal from the API server, with its message and, for the usual causes, what
    /// to change.
    fn refusal(
        &self,
        verb: &str,
        what_res: &str,
        name: &str,
        status: u16,
        body: &str,
    ) -> ProviderError {
        let message = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let b = body.trim();
                if b.is_empty() {
                    "(empty body)".into()
                } else {
                    b.chars().take(500).collect()
                }
            });
        let ns = &self.namespace;
        let hint = match status {
            401 => " (the token was not accepted: check providers.kubernetes.token_file)".to_string(),
            403 => format!(
                " (give prescale's service account get and list on {0} and patch on {0}/scale in namespace {ns}: see examples/kubernetes/rbac.yaml)",
                resource(self.kind)
            ),
            404 if !name.is_empty() => format!(
                " (create {} {ns}/{name}, or set providers.kubernetes.name to the names yours have)",
                noun(self.kind)
            ),
            _ => String::new(),
        };
        let what = if name.is_empty() {
            format!("{verb} {what_res} in {ns}")
        } else {
            format!("{verb} {what_res} {ns}/{name}")
        };
        ProviderError::Refused(format!(
            "Kubernetes: {what}: HTTP {status}: {message}{hint}"
        ))
    }
}

fn read_body(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    resp.body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default()
}
