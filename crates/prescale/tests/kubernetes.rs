//! The Kubernetes provider against a stand-in API server that keeps Deployments in
//! memory and answers the calls prescale makes as the real one does (the list, the
//! `scale` subresource with a merge patch, `Status` objects for errors, bearer tokens,
//! and RBAC: every call must be granted by the Role in `examples/kubernetes/rbac.yaml`,
//! or it is forbidden): the provider on its own, then `prescale run` scaling a
//! Deployment end to end. For a real kubectl (which the example exec hook drives) it
//! also answers discovery, reads of one object and of its Scale, and a Scale written
//! back.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{default_config, fast_config, free_addr, get, wait_for, Daemon};
use prescale_core::config::{Config, KubeKind, KubernetesProviderConfig};
use prescale_core::{Action, ActionKind, Decision, DecisionKind, Repeated};
use prescale_orchestrate::hook::{HookProvider, Transport};
use prescale_orchestrate::kube::KubeApi;
use prescale_orchestrate::{Provider, ProviderError};
use serde_json::{json, Value};

/// One Deployment: its desired replicas and how many are ready.
#[derive(Clone, Copy, Debug, Default)]
struct Deploy {
    replicas: u32,
    ready: u32,
}

#[derive(Default)]
struct Cluster {
    token: Option<String>,
    /// namespace/name -> Deployment (or the objects `serves` names).
    objects: BTreeMap<String, Deploy>,
    /// The API version and resource the objects are served as, and their list's kind
    /// (`None`: `apps/v1` `deployments`, a `DeploymentList`).
    serves: Option<(&'static str, &'static str, &'static str)>,
    /// Pods become ready as soon as they are asked for.
    instant_ready: bool,
    /// Pods, as the API server lists them (namespace in metadata, labels for selectors).
    pods: Vec<Value>,
    /// Endpoints (one per Service), listed the same way.
    endpoints: Vec<Value>,
    /// "METHOD path content-type authorization body", one per request.
    log: Vec<String>,
    /// The Role bound to the caller: what it may do (`None`: anything).
    role: Option<Vec<Rule>>,
    /// namespace/name -> Lease, as stored (with `metadata.resourceVersion`).
    leases: BTreeMap<String, Value>,
    /// The last resourceVersion handed out.
    version: u64,
    /// Another replica renews the lease (as `holder`) between a caller's read and its
    /// next replace: the race the resourceVersion settles.
    race: Option<String>,
    /// HorizontalPodAutoscalers, as the API server lists them.
    hpas: Vec<Value>,
    /// Events posted, as stored (named from their `generateName`).
    events: Vec<Value>,
}

/// One rule of a Role: a call is granted when its API group, resource (a subresource as
/// `deployments/scale`) and verb are each among the rule's.
#[derive(Clone, Debug)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    verbs: Vec<String>,
}

/// The rules of the Role in `yaml` (as `examples/kubernetes/rbac.yaml` writes them: each
/// rule's `apiGroups`, `resources` and `verbs` as one-line lists). Panics on a rule it
/// cannot read, so a changed file is not taken for one granting nothing.
fn role_rules(yaml: &str) -> Vec<Rule> {
    let role = yaml
        .split("\n---\n")
        .find(|d| d.lines().any(|l| l == "kind: Role"))
        .expect("a Role");
    let list = |l: &str, key: &str| -> Option<Vec<String>> {
        let v = l.trim().trim_start_matches("- ").strip_prefix(key)?;
        Some(serde_json::from_str(v.trim()).unwrap_or_else(|e| panic!("{key} {v}: {e}")))
    };
    let mut rules = Vec::new();
    for l in role.lines().skip_while(|l| *l != "rules:").skip(1) {
        if l.trim_start().starts_with('#') {
            continue;
        }
        if let Some(g) = list(l, "apiGroups:") {
            assert!(l.trim_start().starts_with("- "), "a rule starts: {l}");
            rules.push(Rule {
                groups: g,
                resources: vec![],
                verbs: vec![],
            });
        } else if let Some(r) = list(l, "resources:") {
            rules.last_mut().expect("in a rule").resources = r;
        } else if let Some(v) = list(l, "verbs:") {
            rules.last_mut().expect("in a rule").verbs = v;
        } else {
            panic!("a line of the Role's rules not understood: {l}");
        }
    }
    assert!(
        rules
            .iter()
            .all(|r| !r.resources.is_empty() && !r.verbs.is_empty()),
        "{rules:?}"
    );
    rules
}

/// `examples/kubernetes/rbac.yaml`, as the README gives it.
fn example_rbac() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/kubernetes/rbac.yaml"
    );
    std::fs::read_to_string(path).unwrap()
}

fn example_role() -> Vec<Rule> {
    role_rules(&example_rbac())
}

/// What a call asks in RBAC's terms: API group, resource (with its subresource),
/// namespace, object name and verb.
fn rbac_request(method: &str, path: &str) -> Option<(String, String, String, String, String)> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let (group, rest) = if let Some(rest) = path.strip_prefix("/api/v1/namespaces/") {
        ("", rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut it = rest.splitn(4, '/');
        let (group, _version, ns_word) = (it.next()?, it.next()?, it.next()?);
        (ns_word == "namespaces").then_some(())?;
        (group, it.next()?)
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let (ns, resource, name, sub) = match parts.as_slice() {
        [ns, res] => (*ns, *res, "", None),
        [ns, res, name] => (*ns, *res, *name, None),
        [ns, res, name, sub] => (*ns, *res, *name, Some(*sub)),
        _ => return None,
    };
    let verb = match (method, name.is_empty()) {
        ("GET", true) if query.split('&').any(|kv| kv == "watch=true") => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("POST", _) => "create",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_string(),
    };
    Some((group.into(), resource, ns.into(), name.into(), verb.into()))
}

/// `None` when `rules` grant the call, or the API server's 403 for it.
fn forbidden(rules: &[Rule], method: &str, path: &str) -> Option<(u16, Value)> {
    let Some((group, resource, ns, name, verb)) = rbac_request(method, path) else {
        return Some(status(
            403,
            "Forbidden",
            &format!("{method} {path} is not granted"),
        ));
    };
    let has = |list: &[String], x: &str| list.iter().any(|v| v == x || v == "*");
    if rules
        .iter()
        .any(|r| has(&r.groups, &group) && has(&r.resources, &resource) && has(&r.verbs, &verb))
    {
        return None;
    }
    let base = resource.split('/').next().unwrap_or_default();
    let what = if group.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{group}")
    };
    let object = if name.is_empty() {
        String::new()
    } else {
        format!(" \"{name}\"")
    };
    Some(status(
        403,
        "Forbidden",
        &format!(
            "{what}{object} is forbidden: User \"system:serviceaccount:{ns}:prescale\" cannot {verb} resource \"{resource}\" in API group \"{group}\" in the namespace \"{ns}\""
        ),
    ))
}

/// A stand-in API server on a loopback port, stopped when dropped.
struct FakeApi {
    addr: SocketAddr,
    cluster: Arc<Mutex<Cluster>>,
    stop: Arc<AtomicBool>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl FakeApi {
    fn start(token: Option<&str>, objects: &[(&str, u32, u32)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let cluster = Arc::new(Mutex::new(Cluster {
            token: token.map(str::to_string),
            objects: objects
                .iter()
                .map(|&(n, replicas, ready)| (n.to_string(), Deploy { replicas, ready }))
                .collect(),
            role: Some(example_role()),
            ..Cluster::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (cluster.clone(), stop.clone());
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => serve(conn, &c),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            cluster,
            stop,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn get(&self, name: &str) -> Deploy {
        self.cluster.lock().unwrap().objects[name]
    }

    fn set(&self, name: &str, replicas: u32, ready: u32) {
        self.cluster
            .lock()
            .unwrap()
            .objects
            .insert(name.into(), Deploy { replicas, ready });
    }

    fn log(&self) -> Vec<String> {
        self.cluster.lock().unwrap().log.clone()
    }

    /// The Events posted, oldest first.
    fn events(&self) -> Vec<Value> {
        self.cluster.lock().unwrap().events.clone()
    }

    /// The Lease `prod/prescale` as it stands, if there is one.
    fn lease(&self) -> Option<Value> {
        self.cluster
            .lock()
            .unwrap()
            .leases
            .get("prod/prescale")
            .cloned()
    }

    /// The calls it took and what the daemon logged, for a failing assertion.
    fn report(&self, d: &Daemon) -> String {
        format!(
            "API calls:\n{}\nprescale:\n{}",
            self.log().join("\n"),
            d.logs()
        )
    }
}

/// Reads one request, answers it as the API server would, closes the connection.
fn serve(mut conn: TcpStream, cluster: &Mutex<Cluster>) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        let Ok(n) = conn.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, rest)) = text.split_once("\r\n\r\n") {
            let len: usize = header(head, "content-length").map_or(0, |v| v.parse().unwrap());
            if rest.len() >= len {
                break (head.to_string(), rest.to_string());
            }
        }
    };
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let ctype = header(&head, "content-type").unwrap_or_default();
    let auth = header(&head, "authorization").unwrap_or_default();
    let mut c = cluster.lock().unwrap();
    c.log.push(
        format!("{method} {path} {ctype} {auth} {body}")
            .trim()
            .to_string(),
    );
    let (code, answer) = route(&mut c, method, path, &ctype, &auth, &body);
    drop(c);
    let answer = answer.to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn route(
    c: &mut Cluster,
    method: &str,
    path: &str,
    ctype: &str,
    auth: &str,
    body: &str,
) -> (u16, Value) {
    if let Some(t) = &c.token {
        if auth != format!("Bearer {t}") {
            return status(401, "Unauthorized", "Unauthorized");
        }
    }
    if let Some(no) = c.role.as_ref().and_then(|r| forbidden(r, method, path)) {
        return no;
    }
    if let Some(found) = discovery(c, path) {
        return found;
    }
    if let Some(rest) = path.strip_prefix("/api/v1/namespaces/") {
        if let Some((ns, "events")) = rest.split_once('/') {
            return event(c, method, ns, body);
        }
        return pods(c, method, rest);
    }
    if let Some(rest) = path.strip_prefix("/apis/coordination.k8s.io/v1/namespaces/") {
        return leases(c, method, rest, body);
    }
    if let Some(rest) = path.strip_prefix("/apis/autoscaling/v2/namespaces/") {
        let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
        let Some((ns, "horizontalpodautoscalers")) = rest.split_once('/') else {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
        };
        let items: Vec<Value> = c
            .hpas
            .iter()
            .filter(|h| h["metadata"]["namespace"] == ns)
            .cloned()
            .collect();
        return (
            200,
            json!({"kind": "HorizontalPodAutoscalerList", "apiVersion": "autoscaling/v2", "items": items}),
        );
    }
    let (api, res, list_kind) = c
        .serves
        .unwrap_or(("apps/v1", "deployments", "DeploymentList"));
    let Some(rest) = path.strip_prefix(&format!("/apis/{api}/namespaces/")) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        ("GET", [ns, r]) if *r == res => {
            let items: Vec<Value> = c
                .objects
                .iter()
                .filter_map(|(k, d)| {
                    let (o_ns, name) = k.split_once('/')?;
                    (o_ns == *ns).then(|| {
                        // readyReplicas is left out when none are, as the API server does.
                        let mut st = json!({"replicas": d.replicas});
                        if d.ready > 0 {
                            st["readyReplicas"] = json!(d.ready);
                        }
                        json!({"metadata": {"name": name, "namespace": ns},
                               "spec": {"replicas": d.replicas}, "status": st})
                    })
                })
                .collect();
            (
                200,
                json!({"kind": list_kind, "apiVersion": api, "items": items}),
            )
        }
        // One object, and its scale, as kubectl reads them.
        ("GET", [ns, r, name]) if *r == res => match c.objects.get(&format!("{ns}/{name}")) {
            Some(d) => {
                let mut st = json!({"replicas": d.replicas});
                if d.ready > 0 {
                    st["readyReplicas"] = json!(d.ready);
                }
                (
                    200,
                    json!({"kind": list_kind.trim_end_matches("List"), "apiVersion": api,
                           "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
                           "spec": {"replicas": d.replicas}, "status": st}),
                )
            }
            None => status(404, "NotFound", &format!("{res} \"{name}\" not found")),
        },
        ("GET", [ns, r, name, "scale"]) if *r == res => {
            match c.objects.get(&format!("{ns}/{name}")) {
                Some(d) => (200, scale_of(ns, name, d.replicas)),
                None => status(404, "NotFound", &format!("{res} \"{name}\" not found")),
            }
        }
        // kubectl scale with a precondition: the Scale it read, its replicas set.
        ("PUT", [ns, r, name, "scale"]) if *r == res => {
            let instant = c.instant_ready;
            let Some(d) = c.objects.get_mut(&format!("{ns}/{name}")) else {
                return status(404, "NotFound", &format!("{res} \"{name}\" not found"));
            };
            let scale = serde_json::from_str::<Value>(body).unwrap_or_default();
            // A Scale leaves a zero count out.
            let replicas = scale
                .pointer("/spec/replicas")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            d.replicas = replicas as u32;
            d.ready = if instant {
                d.replicas
            } else {
                d.ready.min(d.replicas)
            };
            (200, scale_of(ns, name, d.replicas))
        }
        ("PATCH", [ns, r, name, "scale"]) if *r == res => {
            let instant = c.instant_ready;
            let Some(d) = c.objects.get_mut(&format!("{ns}/{name}")) else {
                return status(
                    404,
                    "NotFound",
                    &format!(
                        "{res}.{} \"{name}\" not found",
                        api.split('/').next().unwrap_or_default()
                    ),
                );
            };
            let patch = serde_json::from_str::<Value>(body).unwrap_or_default();
            let replicas = match ctype {
                "application/merge-patch+json" => patch.pointer("/spec/replicas").and_then(Value::as_u64),
                // Applied together or not at all: a failed test changes nothing.
                "application/json-patch+json" => {
                    let mut set = None;
                    for op in patch.as_array().into_iter().flatten() {
                        if op["path"] != "/spec/replicas" {
                            return status(422, "Invalid", &format!("the stand-in patches /spec/replicas only: {op}"));
                        }
                        // A Scale leaves a zero count out (`replicas,omitempty`): a
                        // test of it fails, a replace of it too; an add sets it.
                        let absent = d.replicas == 0;
                        match op["op"].as_str() {
                            Some("test" | "replace") if absent => {
                                return status(
                                    422,
                                    "Invalid",
                                    "the server rejected our request due to an error in our request",
                                )
                            }
                            Some("test") if op["value"].as_u64() != Some(u64::from(d.replicas)) => {
                                return status(
                                    422,
                                    "Invalid",
                                    "the server rejected our request due to an error in our request",
                                )
                            }
                            Some("test") => {}
                            Some("replace" | "add") => set = op["value"].as_u64(),
                            _ => return status(422, "Invalid", &format!("unknown op: {op}")),
                        }
                    }
                    set
                }
                _ => {
                    return status(
                        415,
                        "UnsupportedMediaType",
                        &format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {ctype}"),
                    )
                }
            };
            let Some(replicas) = replicas else {
                return status(400, "BadRequest", "no spec.replicas in the patch");
            };
            d.replicas = replicas as u32;
            d.ready = if instant {
                d.replicas
            } else {
                d.ready.min(d.replicas)
            };
            (
                200,
                json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                       "metadata": {"name": name, "namespace": ns},
                       "spec": {"replicas": d.replicas},
                       "status": {"replicas": d.replicas}}),
            )
        }
        _ => status(405, "MethodNotAllowed", &format!("not here {query}")),
    }
}

/// The autoscaling/v1 Scale of object `ns/name` at `replicas` (left out at zero, as the
/// API server leaves it).
fn scale_of(ns: &str, name: &str, replicas: u32) -> Value {
    let mut spec = json!({});
    if replicas > 0 {
        spec["replicas"] = json!(replicas);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
           "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
           "spec": spec, "status": {"replicas": replicas}})
}

/// What kubectl asks before it acts: the server's version, its API groups and each
/// group's resources, as the API server answers a client that does not take the
/// aggregated form (plain JSON). `None` for any other path.
fn discovery(c: &Cluster, path: &str) -> Option<(u16, Value)> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let (api, res, list_kind) = c
        .serves
        .unwrap_or(("apps/v1", "deployments", "DeploymentList"));
    let kind = list_kind.trim_end_matches("List");
    let (group, version) = api.split_once('/').unwrap_or(("", api));
    let resource = |name: &str, kind: &str, verbs: &[&str], short: &[&str]| {
        json!({"name": name, "singularName": name.trim_end_matches('s'), "namespaced": true,
               "kind": kind, "verbs": verbs, "shortNames": short})
    };
    let list = |gv: &str, resources: Vec<Value>| {
        (
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    };
    let gv = |g: &str, v: &str| json!({"groupVersion": format!("{g}/{v}"), "version": v});
    Some(match path {
        "/version" => (
            200,
            json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0"}),
        ),
        "/api" => (200, json!({"kind": "APIVersions", "versions": ["v1"]})),
        "/apis" => (
            200,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": group, "versions": [gv(group, version)], "preferredVersion": gv(group, version)},
                {"name": "autoscaling", "versions": [gv("autoscaling", "v2")], "preferredVersion": gv("autoscaling", "v2")},
            ]}),
        ),
        "/api/v1" => list("v1", vec![resource("pods", "Pod", &["list"], &["po"])]),
        "/apis/autoscaling/v2" => list(
            "autoscaling/v2",
            vec![resource(
                "horizontalpodautoscalers",
                "HorizontalPodAutoscaler",
                &["list"],
                &["hpa"],
            )],
        ),
        p if p == format!("/apis/{api}") => {
            let mut scale = resource(
                &format!("{res}/scale"),
                "Scale",
                &["get", "patch", "update"],
                &[],
            );
            scale["group"] = json!("autoscaling");
            scale["version"] = json!("v1");
            list(
                api,
                vec![resource(res, kind, &["get", "list", "patch"], &[]), scale],
            )
        }
        _ => return None,
    })
}

/// Leases as the API server keeps them: get, create (409 when it exists) and replace
/// (409 when the body's `metadata.resourceVersion` is not the stored one: optimistic
/// concurrency, which leader election relies on).
fn leases(c: &mut Cluster, method: &str, rest: &str, body: &str) -> (u16, Value) {
    let parts: Vec<&str> = rest.split('/').collect();
    let conflict = |name: &str, why: &str| {
        status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"{name}\": {why}"
            ),
        )
    };
    match (method, parts.as_slice()) {
        ("GET", [ns, "leases", name]) => match c.leases.get(&format!("{ns}/{name}")) {
            Some(l) => (200, l.clone()),
            None => status(
                404,
                "NotFound",
                &format!("leases.coordination.k8s.io \"{name}\" not found"),
            ),
        },
        ("POST", [ns, "leases"]) => {
            let Ok(mut l) = serde_json::from_str::<Value>(body) else {
                return status(400, "BadRequest", "not JSON");
            };
            let name = l["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let key = format!("{ns}/{name}");
            if c.leases.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("leases.coordination.k8s.io \"{name}\" already exists"),
                );
            }
            c.version += 1;
            l["metadata"]["resourceVersion"] = json!(c.version.to_string());
            c.leases.insert(key, l.clone());
            (201, l)
        }
        ("PUT", [ns, "leases", name]) => {
            let Ok(mut l) = serde_json::from_str::<Value>(body) else {
                return status(400, "BadRequest", "not JSON");
            };
            let key = format!("{ns}/{name}");
            if let Some(holder) = c.race.take() {
                c.version += 1;
                let v = c.version.to_string();
                if let Some(l) = c.leases.get_mut(&key) {
                    l["spec"]["holderIdentity"] = json!(holder);
                    l["metadata"]["resourceVersion"] = json!(v);
                }
            }
            let Some(stored) = c.leases.get(&key) else {
                return status(
                    404,
                    "NotFound",
                    &format!("leases.coordination.k8s.io \"{name}\" not found"),
                );
            };
            if l["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
                return conflict(
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            c.version += 1;
            l["metadata"]["resourceVersion"] = json!(c.version.to_string());
            c.leases.insert(key, l.clone());
            (200, l)
        }
        _ => status(405, "MethodNotAllowed", "not a lease call"),
    }
}

/// `GET /api/v1/namespaces/NS/pods?labelSelector=K%3DV` (or `endpoints`): the
/// namespace's pods (or Endpoints) whose labels match the selector's `key=value` terms
/// (all the stand-in needs).
/// A core/v1 Event posted to namespace `ns`, checked as the API server validates one:
/// stored and answered, or refused with 422 saying what is wrong.
fn event(c: &mut Cluster, method: &str, ns: &str, body: &str) -> (u16, Value) {
    if method != "POST" {
        return status(405, "MethodNotAllowed", "events are only posted here");
    }
    let Ok(mut e) = serde_json::from_str::<Value>(body) else {
        return status(400, "BadRequest", "the body is not JSON");
    };
    let text = |p: &str| {
        e.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let wrong = [
        (text("/kind") != "Event", "kind: must be Event"),
        (text("/apiVersion") != "v1", "apiVersion: must be v1"),
        (
            text("/metadata/namespace") != ns,
            "metadata.namespace: does not match the namespace posted to",
        ),
        (
            text("/involvedObject/namespace") != ns,
            "involvedObject.namespace: does not match event.namespace",
        ),
        (
            text("/involvedObject/name").is_empty(),
            "involvedObject.name: Required value",
        ),
        (
            text("/metadata/generateName").is_empty() && text("/metadata/name").is_empty(),
            "metadata.name: Required value: name or generateName is required",
        ),
        (text("/reason").is_empty(), "reason: Required value"),
        (
            !["Normal", "Warning"].contains(&text("/type").as_str()),
            "type: Unsupported value",
        ),
        (text("/message").len() > 1024, "message: Too long"),
    ];
    if let Some((_, why)) = wrong.iter().find(|(bad, _)| *bad) {
        return status(422, "Invalid", &format!("Event is invalid: {why}"));
    }
    if text("/metadata/name").is_empty() {
        e["metadata"]["name"] = json!(format!(
            "{}{:05x}",
            text("/metadata/generateName"),
            c.events.len()
        ));
    }
    c.events.push(e.clone());
    (201, e)
}

fn pods(c: &Cluster, method: &str, rest: &str) -> (u16, Value) {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (ns, listed, kind) = match path.split_once('/') {
        Some((ns, "pods")) => (ns, &c.pods, "PodList"),
        Some((ns, "endpoints")) => (ns, &c.endpoints, "EndpointsList"),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        }
    };
    if method != "GET" {
        return status(405, "MethodNotAllowed", "pods are only listed here");
    }
    let selector = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
        .unwrap_or("")
        .replace("%3D", "=")
        .replace("%2C", ",");
    let items: Vec<Value> = listed
        .iter()
        .filter(|p| p["metadata"]["namespace"] == ns)
        .filter(|p| {
            selector.split(',').filter(|t| !t.is_empty()).all(|term| {
                let (k, v) = term.split_once('=').unwrap();
                p["metadata"]["labels"][k] == v
            })
        })
        .cloned()
        .collect();
    (
        200,
        json!({"kind": kind, "apiVersion": "v1", "items": items}),
    )
}

fn api(fake: &FakeApi, token_file: Option<&Path>, namespace: &str) -> KubeApi {
    KubeApi::from_config(
        &KubernetesProviderConfig {
            api_url: Some(fake.url()),
            token_file: token_file.map(Path::to_path_buf),
            namespace: Some(namespace.into()),
            ..KubernetesProviderConfig::default()
        },
        |_| None,
        Path::new("/nonexistent"),
    )
    .unwrap()
}

fn provider(api: KubeApi, workloads: &[&str]) -> HookProvider {
    HookProvider::new(
        Transport::Kubernetes(Box::new(api)),
        Duration::from_secs(5),
        true,
        &Config::default().tiers,
        workloads.iter().map(|w| w.to_string()).collect(),
    )
}

/// What the provider says refusing `a` (a refusal, not the provider being unavailable).
fn refused(p: &mut HookProvider, a: &Action) -> String {
    match p.apply(a, 0) {
        Err(ProviderError::Refused(m)) => m,
        other => panic!("{other:?}"),
    }
}

fn action(key: &str, tier: &str, kind: ActionKind, count: u32) -> Action {
    Action {
        key: key.into(),
        workload: "web".into(),
        tier: tier.into(),
        kind,
        count,
        at: 1,
    }
}

#[test]
fn the_kubernetes_provider_scales_deployments_and_plans_from_their_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sa-token-1\n").unwrap();
    let fake = FakeApi::start(
        Some("sa-token-1"),
        &[
            ("shop/web-standard", 2, 2),
            ("shop/web-spot", 0, 0),
            ("shop/other-standard", 7, 7),
            ("default/web-standard", 9, 9),
        ],
    );
    let mut p = provider(api(&fake, Some(&token), "shop"), &["web"]);
    assert_eq!(p.name(), "kubernetes");
    // The cluster's replicas are what prescale holds; another namespace's are not.
    assert!(p.advance(0).is_empty());
    let a = p.allocation("web", 0);
    assert_eq!((a.get("standard").ready, a.get("standard").pending), (2, 0));
    assert_eq!(a.get("spot").total(), 0);

    // A provision sets the tier's replicas to what it should hold after it.
    p.apply(&action("k1", "standard", ActionKind::Provision, 3), 0)
        .unwrap();
    assert_eq!(fake.get("shop/web-standard").replicas, 5);
    let patch = fake.log().last().unwrap().clone();
    assert_eq!(
        patch,
        "PATCH /apis/apps/v1/namespaces/shop/deployments/web-standard/scale \
         application/json-patch+json Bearer sa-token-1 \
         [{\"op\":\"test\",\"path\":\"/spec/replicas\",\"value\":2},\
         {\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":5}]"
    );
    // Asked for but not ready: pending, until the pods are.
    assert_eq!(p.allocation("web", 0).get("standard").pending, 3);
    p.advance(1);
    let s = p.allocation("web", 1).get("standard");
    assert_eq!((s.ready, s.pending), (2, 3));
    fake.set("shop/web-standard", 5, 5);
    p.advance(2);
    let s = p.allocation("web", 2).get("standard");
    assert_eq!((s.ready, s.pending), (5, 0));

    // The same key again changes nothing and asks nothing.
    let calls = fake.log().len();
    p.apply(&action("k1", "standard", ActionKind::Provision, 3), 2)
        .unwrap();
    assert_eq!(fake.log().len(), calls);
    assert_eq!(fake.get("shop/web-standard").replicas, 5);

    // A deprovision; pods still terminating are not counted as held.
    p.apply(&action("k2", "standard", ActionKind::Deprovision, 2), 3)
        .unwrap();
    assert_eq!(fake.get("shop/web-standard").replicas, 3);
    p.advance(4);
    assert_eq!(p.allocation("web", 4).get("standard").total(), 3);

    // Scaled down by someone else: an event, and the new count is the truth.
    fake.set("shop/web-standard", 1, 1);
    let ev = p.advance(5);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].what.contains("reports 1 instances where 3 were held"),
        "{}",
        ev[0].what
    );
    assert_eq!(p.allocation("web", 5).get("standard").total(), 1);

    // Scaled up by hand after prescale read it: an action counted from the old count
    // is refused, not written over what was set; read again, it goes through.
    fake.set("shop/web-standard", 4, 4);
    let m = refused(&mut p, &action("k4", "standard", ActionKind::Provision, 2));
    assert!(
        m.contains("Kubernetes: patch deployments/scale shop/web-standard: its replicas are no longer the 1 prescale read (changed outside prescale since")
            && m.contains("so they were not set to 3; the next pass reads them again (HTTP 422"),
        "{m}"
    );
    assert_eq!(fake.get("shop/web-standard").replicas, 4);
    assert!(p.advance(6).is_empty());
    p.apply(&action("k5", "standard", ActionKind::Provision, 2), 6)
        .unwrap();
    assert_eq!(fake.get("shop/web-standard").replicas, 6);

    // The token is read at every call: a rotated one is used at once.
    std::fs::write(&token, "sa-token-2\n").unwrap();
    fake.cluster.lock().unwrap().token = Some("sa-token-2".into());
    p.apply(&action("k3", "spot", ActionKind::Provision, 2), 6)
        .unwrap();
    assert_eq!(fake.get("shop/web-spot").replicas, 2);
    assert!(fake.log().last().unwrap().contains("Bearer sa-token-2"));
    // From zero, which a Scale leaves out (no test can match it), the count is set.
    assert!(
        fake.log()
            .last()
            .unwrap()
            .ends_with(r#"[{"op":"add","path":"/spec/replicas","value":2}]"#),
        "{:?}",
        fake.log().last()
    );
    // The cluster holds the truth, so there is no book to save.
    assert!(p.save().is_none());
}

#[test]
fn kubernetes_refusals_say_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "wrong\n").unwrap();
    let fake = FakeApi::start(Some("right"), &[("default/web-standard", 1, 1)]);

    // A bad token: the state is kept as it was and actions are refused naming the key.
    let mut p = provider(api(&fake, Some(&token), "default"), &["web"]);
    assert!(p.advance(0).is_empty());
    let e = p
        .apply(&action("k1", "standard", ActionKind::Provision, 1), 0)
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Refused(m) if m.contains("HTTP 401") && m.contains("providers.kubernetes.token_file")),
        "{e}"
    );
    assert_eq!(fake.get("default/web-standard").replicas, 1);

    // A workload tier with no Deployment: what to create, or which setting to change.
    std::fs::write(&token, "right\n").unwrap();
    let mut p = provider(api(&fake, Some(&token), "default"), &["web"]);
    p.advance(0);
    let m = refused(&mut p, &action("k2", "spot", ActionKind::Provision, 1));
    assert!(
        m.contains("HTTP 404")
            && m.contains("deployments.apps \"web-spot\" not found")
            && m.contains("create Deployment default/web-spot")
            && m.contains("providers.kubernetes.name"),
        "{m}"
    );
    // Nothing is counted for a refused action.
    assert_eq!(p.allocation("web", 0).get("spot").total(), 0);

    // A token file that went away: unavailable, saying which file.
    std::fs::remove_file(&token).unwrap();
    let e = p
        .apply(&action("k3", "standard", ActionKind::Provision, 1), 0)
        .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Unavailable(m) if m.contains("token")),
        "{e}"
    );

    // No API server listening: unavailable, not a refusal.
    let gone = free_addr();
    let mut p = provider(
        KubeApi::from_config(
            &KubernetesProviderConfig {
                api_url: Some(format!("http://{gone}")),
                timeout_s: 2,
                ..KubernetesProviderConfig::default()
            },
            |_| None,
            Path::new("/nonexistent"),
        )
        .unwrap(),
        &["web"],
    );
    let e = p
        .apply(&action("k4", "standard", ActionKind::Provision, 1), 0)
        .unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable(_)), "{e}");
}

#[test]
fn the_kubernetes_provider_finds_the_cluster_it_runs_in() {
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), "pod-token\n").unwrap();
    std::fs::write(sa.path().join("namespace"), "shop\n").unwrap();
    let env = |k: &str| match k {
        "KUBERNETES_SERVICE_HOST" => Some("10.96.0.1".to_string()),
        "KUBERNETES_SERVICE_PORT" => Some("6443".to_string()),
        _ => None,
    };
    let a = KubeApi::from_config(&KubernetesProviderConfig::default(), env, sa.path()).unwrap();
    assert_eq!(a.conn.api_url, "https://10.96.0.1:6443");
    assert_eq!(a.conn.namespace, "shop");
    assert_eq!(
        a.conn.token_file.as_deref(),
        Some(sa.path().join("token").as_path())
    );
    assert_eq!(a.kind, KubeKind::Deployment);
    let v6 = |k: &str| (k == "KUBERNETES_SERVICE_HOST").then(|| "fd00::1".to_string());
    let a = KubeApi::from_config(&KubernetesProviderConfig::default(), v6, sa.path()).unwrap();
    assert_eq!(a.conn.api_url, "https://[fd00::1]:443");

    // What the configuration says wins over what the pod has.
    let a = KubeApi::from_config(
        &KubernetesProviderConfig {
            api_url: Some("http://127.0.0.1:8001/".into()),
            namespace: Some("batch".into()),
            kind: KubeKind::StatefulSet,
            ..KubernetesProviderConfig::default()
        },
        env,
        sa.path(),
    )
    .unwrap();
    assert_eq!(
        (a.conn.api_url.as_str(), a.conn.namespace.as_str()),
        ("http://127.0.0.1:8001", "batch")
    );

    // Outside a cluster with nothing configured: what to set.
    let e = KubeApi::from_config(
        &KubernetesProviderConfig::default(),
        |_| None,
        Path::new("/nonexistent"),
    )
    .unwrap_err();
    assert!(
        e.contains("providers.kubernetes.api_url") && e.contains("kubectl proxy"),
        "{e}"
    );
    // No pod files: the default namespace and no token.
    let a = KubeApi::from_config(
        &KubernetesProviderConfig::default(),
        env,
        Path::new("/nonexistent"),
    )
    .unwrap();
    assert_eq!(a.conn.namespace, "default");
    assert!(a.conn.token_file.is_none());
}

#[test]
fn statefulsets_are_scaled_through_their_own_path() {
    let fake = FakeApi::start(None, &[]);
    let a = KubeApi::from_config(
        &KubernetesProviderConfig {
            api_url: Some(fake.url()),
            kind: KubeKind::StatefulSet,
            name: "db-{tier}-{workload}".into(),
            ..KubernetesProviderConfig::default()
        },
        |_| None,
        Path::new("/nonexistent"),
    )
    .unwrap();
    let mut p = provider(a, &["web"]);
    // The example Role grants Deployments only: the StatefulSet's scale is forbidden,
    // and the refusal names what was asked and the rights to give.
    let e = p
        .apply(&action("k1", "standard", ActionKind::Provision, 1), 0)
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("patch statefulsets/scale default/db-standard-web")
            && m.contains("HTTP 403")
            && m.contains("cannot patch resource \"statefulsets/scale\"")
            && m.contains("give prescale's service account get and list on statefulsets and patch on statefulsets/scale")
            && m.contains("examples/kubernetes/rbac.yaml"),
        "{m}"
    );
    // Whether an HPA scales it too is asked first.
    assert!(
        fake.log()[1].starts_with(
            "PATCH /apis/apps/v1/namespaces/default/statefulsets/db-standard-web/scale"
        ),
        "{:?}",
        fake.log()
    );
    // With "deployments" replaced by "statefulsets", as rbac.yaml says to, the call is
    // granted; the stand-in serves Deployments only and answers 405.
    let yaml = example_rbac().replace("\"deployments", "\"statefulsets");
    fake.cluster.lock().unwrap().role = Some(role_rules(&yaml));
    let e = p
        .apply(&action("k2", "standard", ActionKind::Provision, 1), 0)
        .unwrap_err();
    assert!(e.to_string().contains("HTTP 405"), "{e}");
}

#[test]
fn argo_rollouts_are_scaled_through_their_own_api_group() {
    let fake = FakeApi::start(None, &[("default/web-standard", 2, 1)]);
    let a = KubeApi::from_config(
        &KubernetesProviderConfig {
            api_url: Some(fake.url()),
            kind: KubeKind::Rollout,
            ..KubernetesProviderConfig::default()
        },
        |_| None,
        Path::new("/nonexistent"),
    )
    .unwrap();
    let mut p = provider(a, &["web"]);
    // The example Role grants Deployments only: listing Rollouts is forbidden, and the
    // refusal names the rights to give, in their API group.
    p.advance(0);
    let read = p.state_read().unwrap();
    let m = read.error.unwrap_or_default();
    assert!(
        m.contains("list rollouts in default")
            && m.contains("HTTP 403")
            && m.contains("rollouts.argoproj.io is forbidden")
            && m.contains(
                "get and list on rollouts (API group argoproj.io) and patch on rollouts/scale"
            ),
        "{m}"
    );
    assert!(
        fake.log()[0].starts_with("GET /apis/argoproj.io/v1alpha1/namespaces/default/rollouts"),
        "{:?}",
        fake.log()
    );
    // With the Role changed as rbac.yaml says to, on a server that has Rollouts: their
    // replicas are read, and set as for Deployments.
    let yaml = example_rbac()
        .replace("\"apps\"", "\"argoproj.io\"")
        .replace("\"deployments", "\"rollouts");
    {
        let mut c = fake.cluster.lock().unwrap();
        c.role = Some(role_rules(&yaml));
        c.serves = Some(("argoproj.io/v1alpha1", "rollouts", "RolloutList"));
    }
    assert!(p.advance(1000).is_empty());
    assert!(p.state_read().unwrap().error.is_none());
    let held = p.allocation("web", 1000).get("standard");
    assert_eq!((held.ready, held.pending), (1, 1));
    p.apply(&action("k1", "standard", ActionKind::Provision, 2), 1000)
        .unwrap();
    assert_eq!(fake.get("default/web-standard").replicas, 4);
    let last = fake.log().pop().unwrap();
    assert!(
        last.starts_with(
            "PATCH /apis/argoproj.io/v1alpha1/namespaces/default/rollouts/web-standard/scale application/json-patch+json"
        ) && last.contains(r#"{"op":"test","path":"/spec/replicas","value":2}"#),
        "{last}"
    );
}

#[test]
fn each_scaling_and_refusal_is_an_event_on_the_object_as_an_hpas_rescale_is() {
    let fake = FakeApi::start(None, &[("shop/web-standard", 2, 2)]);
    let mut p = provider(api(&fake, None, "shop"), &["web"]);
    assert!(p.advance(0).is_empty());
    let up = action("k1", "standard", ActionKind::Provision, 1);
    p.apply(&up, 0).unwrap();
    let decision = |kind, a: &Action, reason: &str, repeated| Decision {
        at: 1_796_700_000_000,
        workload: "web".into(),
        kind,
        action: Some(a.clone()),
        reason: reason.into(),
        repeated,
    };
    p.record(&decision(
        DecisionKind::Act,
        &up,
        "provision 1 standard: plan for the q0.95 of demand",
        None,
    ));
    let events = fake.events();
    assert_eq!(events.len(), 1, "{:?}", fake.log());
    let e = &events[0];
    assert_eq!(
        e["involvedObject"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-standard", "namespace": "shop"})
    );
    assert_eq!(
        (&e["type"], &e["reason"], &e["message"]),
        (
            &json!("Normal"),
            &json!("PrescaleScaleUp"),
            &json!("provision 1 standard: plan for the q0.95 of demand")
        )
    );
    assert_eq!(e["source"]["component"], "prescale");
    assert_eq!(e["count"], 1);
    assert_eq!(e["firstTimestamp"], "2026-12-08T03:20:00Z");
    assert_eq!(e["lastTimestamp"], "2026-12-08T03:20:00Z");
    assert!(e["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("web-standard."));
    // A refusal repeated at every pass is one Warning counting them, as the decision
    // log has it; a message longer than an Event takes is cut.
    let down = action("k2", "standard", ActionKind::Deprovision, 1);
    let long = format!(
        "kubernetes refused to deprovision 1 standard: {}",
        "x".repeat(2000)
    );
    let since = 1_796_700_000_000 - 3_600_000;
    p.record(&decision(
        DecisionKind::Error,
        &down,
        &long,
        Some(Repeated {
            times: 240,
            since,
            until: 1_796_700_000_000,
        }),
    ));
    let e = fake.events().pop().unwrap();
    assert_eq!(
        (&e["type"], &e["reason"]),
        (&json!("Warning"), &json!("PrescaleRefused"))
    );
    assert_eq!(e["count"], 240);
    assert_eq!(e["firstTimestamp"], "2026-12-08T02:20:00Z");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.len() <= 1024 && message.ends_with('…'),
        "{}",
        message.len()
    );
    // Decisions that are not about an action (a hold) are not Events.
    let mut hold = decision(DecisionKind::Hold, &down, "kept", None);
    hold.action = None;
    p.record(&hold);
    assert_eq!(fake.events().len(), 2);
    // A Role without `create` on events: no Event, and the scaling goes on.
    let mut rules = example_role();
    rules.retain(|r| r.resources != ["events"]);
    fake.cluster.lock().unwrap().role = Some(rules);
    let up = action("k3", "standard", ActionKind::Provision, 1);
    p.apply(&up, 0).unwrap();
    p.record(&decision(
        DecisionKind::Act,
        &up,
        "provision 1 standard",
        None,
    ));
    assert_eq!(fake.get("shop/web-standard").replicas, 4);
    assert_eq!(fake.events().len(), 2);
    assert!(
        fake.log()
            .last()
            .is_some_and(|l| l.starts_with("POST /api/v1/namespaces/shop/events")),
        "it was tried: {:?}",
        fake.log()
    );
}

#[test]
fn an_object_an_hpa_scales_too_is_left_to_it_saying_so() {
    let fake = FakeApi::start(
        None,
        &[("shop/web-standard", 2, 2), ("shop/web-spot", 1, 1)],
    );
    let hpa = |ns: &str, name: &str, kind: &str, api: Option<&str>, target: &str| {
        let mut r = json!({"kind": kind, "name": target});
        if let Some(api) = api {
            r["apiVersion"] = json!(api);
        }
        json!({"metadata": {"name": name, "namespace": ns}, "spec": {"scaleTargetRef": r}})
    };
    fake.cluster.lock().unwrap().hpas = vec![
        // Of another namespace, another kind, another group: none is web-spot's.
        hpa(
            "default",
            "other-ns",
            "Deployment",
            Some("apps/v1"),
            "web-spot",
        ),
        hpa(
            "shop",
            "of-a-statefulset",
            "StatefulSet",
            Some("apps/v1"),
            "web-spot",
        ),
        hpa(
            "shop",
            "of-a-rollout",
            "Deployment",
            Some("argoproj.io/v1alpha1"),
            "web-spot",
        ),
        // web-standard's, its apiVersion left out.
        hpa("shop", "web", "Deployment", None, "web-standard"),
    ];
    let mut p = provider(api(&fake, None, "shop"), &["web"]);
    assert!(p.advance(0).is_empty());
    let m = refused(&mut p, &action("k1", "standard", ActionKind::Provision, 1));
    assert!(
        m.contains("Deployment shop/web-standard is also scaled by HorizontalPodAutoscaler web")
            && m.contains("not set to 3")
            && m.contains("kubectl -n shop delete hpa web")
            && m.contains("keda-scaledobject.yaml"),
        "{m}"
    );
    assert_eq!(fake.get("shop/web-standard").replicas, 2);
    assert!(
        !fake.log().iter().any(|l| l.starts_with("PATCH")),
        "{:?}",
        fake.log()
    );
    // The tier no HPA scales is scaled, and the HPAs were listed once in the pass.
    p.apply(&action("k2", "spot", ActionKind::Provision, 1), 0)
        .unwrap();
    assert_eq!(fake.get("shop/web-spot").replicas, 2);
    let listed = || {
        let log = fake.log();
        log.iter()
            .filter(|l| l.contains("/horizontalpodautoscalers"))
            .count()
    };
    assert_eq!(listed(), 1, "{:?}", fake.log());
    // The HPA deleted, web-standard is scaled too at the next pass, which lists them
    // again.
    fake.cluster.lock().unwrap().hpas.pop();
    assert!(p.advance(0).is_empty());
    p.apply(&action("k3", "standard", ActionKind::Provision, 1), 0)
        .unwrap();
    assert_eq!(fake.get("shop/web-standard").replicas, 3);
    assert_eq!(listed(), 2);
    // KEDA's HPA, kept by its ScaledObject: the ScaledObject is what to delete.
    let mut keda = hpa(
        "shop",
        "keda-hpa-web",
        "Deployment",
        Some("apps/v1"),
        "web-standard",
    );
    keda["metadata"]["ownerReferences"] = json!([{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": "web", "controller": true}]);
    fake.cluster.lock().unwrap().hpas.push(keda);
    assert!(p.advance(0).is_empty());
    let m = refused(&mut p, &action("k3b", "standard", ActionKind::Provision, 1));
    assert!(
        m.contains("HorizontalPodAutoscaler keda-hpa-web, which KEDA's ScaledObject web keeps")
            && m.contains("kubectl -n shop delete scaledobject web"),
        "{m}"
    );
    fake.cluster.lock().unwrap().hpas.pop();
    // A Role without the right to list HPAs: prescale cannot tell, and goes on.
    fake.cluster.lock().unwrap().hpas.push(hpa(
        "shop",
        "web",
        "Deployment",
        Some("apps/v1"),
        "web-standard",
    ));
    let mut rules = example_role();
    rules.retain(|r| !r.resources.iter().any(|x| x == "horizontalpodautoscalers"));
    fake.cluster.lock().unwrap().role = Some(rules);
    assert!(p.advance(1000).is_empty());
    p.apply(&action("k4", "standard", ActionKind::Provision, 1), 1000)
        .unwrap();
    assert_eq!(fake.get("shop/web-standard").replicas, 4);
}

/// kubectl, where it is installed (`PRESCALE_KUBECTL`, else on the `PATH`).
fn kubectl() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("PRESCALE_KUBECTL") {
        return Some(p.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

#[test]
fn the_example_hook_drives_a_real_kubectl() {
    let Some(kubectl) = kubectl() else {
        eprintln!("skipping: kubectl is not installed (apt-get install kubernetes-client, or set PRESCALE_KUBECTL)");
        return;
    };
    let fake = FakeApi::start(None, &[("prod/web-spot", 1, 1)]);
    // kubectl's discovery is outside the example Role's rules, which other tests check.
    fake.cluster.lock().unwrap().role = None;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("kubeconfig");
    std::fs::write(
        &config,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\ncurrent-context: c\n",
            fake.url()
        ),
    )
    .unwrap();
    let hook =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes/prescale-hook.sh");
    let command = vec![
        "/usr/bin/env".to_string(),
        format!("KUBECTL={}", kubectl.display()),
        format!("KUBECONFIG={}", config.display()),
        // kubectl keeps its discovery cache under $HOME/.kube.
        format!("HOME={}", home.path().display()),
        "PRESCALE_K8S_NAMESPACE=prod".to_string(),
        hook.display().to_string(),
    ];
    let mut p = HookProvider::new(
        Transport::Exec(command),
        Duration::from_secs(60),
        true,
        &Config::default().tiers,
        vec!["web".into()],
    );
    let logs = || fake.log().join("\n");
    // Its state: web-spot's replicas as kubectl reads them; no web-standard.
    assert!(p.advance(0).is_empty(), "{}", logs());
    let a = p.allocation("web", 0);
    assert_eq!(a.get("spot").total(), 1, "{}", logs());
    assert_eq!(a.get("standard").total(), 0);
    // Scaled from the count read: kubectl reads the Scale, checks it, and writes it.
    p.apply(&action("k1", "spot", ActionKind::Provision, 2), 0)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
    assert_eq!(fake.get("prod/web-spot").replicas, 3, "{}", logs());
    assert!(
        fake.log()
            .iter()
            .any(|l| l.starts_with("PUT /apis/apps/v1/namespaces/prod/deployments/web-spot/scale")),
        "{}",
        logs()
    );
    // Scaled by hand since: kubectl refuses, and the replicas stay.
    fake.set("prod/web-spot", 5, 5);
    let e = p
        .apply(&action("k2", "spot", ActionKind::Provision, 1), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("Expected replicas to be 3, was 5"), "{e}");
    assert_eq!(fake.get("prod/web-spot").replicas, 5);
    // Read again, the action goes through from 5.
    assert!(p.advance(1000).is_empty());
    p.apply(&action("k3", "spot", ActionKind::Provision, 1), 1000)
        .unwrap();
    assert_eq!(fake.get("prod/web-spot").replicas, 6);
    // An HPA scales it too: left to it.
    fake.cluster.lock().unwrap().hpas.push(json!({
        "metadata": {"name": "web-hpa", "namespace": "prod"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-spot"}}
    }));
    let e = p
        .apply(&action("k4", "spot", ActionKind::Provision, 1), 1000)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("deployment/web-spot is also scaled by HorizontalPodAutoscaler web-hpa"),
        "{e}"
    );
    assert_eq!(fake.get("prod/web-spot").replicas, 6);
}

#[test]
fn a_role_without_the_scale_right_is_refused_saying_which_rights_to_give() {
    let fake = FakeApi::start(None, &[("default/web-standard", 1, 1)]);
    let mut rules = example_role();
    rules.retain(|r| !r.resources.iter().any(|x| x == "deployments/scale"));
    fake.cluster.lock().unwrap().role = Some(rules);
    let mut p = provider(api(&fake, None, "default"), &["web"]);
    // Listing is still granted: the state is read.
    assert!(p.advance(0).is_empty());
    assert_eq!(p.allocation("web", 0).get("standard").total(), 1);
    let m = refused(&mut p, &action("k1", "standard", ActionKind::Provision, 1));
    assert!(
        m.contains("HTTP 403")
            && m.contains("deployments.apps \"web-standard\" is forbidden")
            && m.contains("patch on deployments/scale in namespace default")
            && m.contains("examples/kubernetes/rbac.yaml"),
        "{m}"
    );
    assert_eq!(fake.get("default/web-standard").replicas, 1);
    assert_eq!(p.allocation("web", 0).get("standard").total(), 1);
}

/// A stand-in API server holding a Deployment per tier of workload `host` in namespace
/// `prod`, whose pods are ready as soon as they are asked for, and [`fast_config`] on
/// the Kubernetes provider against it (its token in `dir`).
fn host_tiers_in_prod(dir: &Path) -> (FakeApi, String) {
    let token = dir.join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let fake = FakeApi::start(
        Some("t0ken"),
        &[
            ("prod/host-spot", 0, 0),
            ("prod/host-standard", 0, 0),
            ("prod/host-high-performance", 0, 0),
        ],
    );
    fake.cluster.lock().unwrap().instant_ready = true;
    let cfg = fast_config()
        .replace("use = \"sim\"", "use = \"kubernetes\"")
        .replace(
            "[providers.sim]",
            &format!(
                "[providers.kubernetes]\napi_url = {:?}\ntoken_file = {:?}\nnamespace = \"prod\"\ntimeout_s = 5\n\n[providers.sim]",
                fake.url(),
                token.display().to_string()
            ),
        );
    (fake, cfg)
}

#[test]
fn prescale_run_scales_a_kubernetes_deployment_ahead_of_demand() {
    if !Path::new("/proc/stat").exists() {
        eprintln!("skipping: no /proc on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (fake, cfg) = host_tiers_in_prod(dir.path());
    let d = Daemon::start(dir.path(), &cfg);
    let (addr, log) = (d.addr, d.log.clone());
    let logs = || fake.report(&d);
    // The plan is carried out on the Deployments, and what they hold comes back as the
    // workload's allocation.
    wait_for(
        || {
            let scaled: Vec<(String, u32)> = fake
                .cluster
                .lock()
                .unwrap()
                .objects
                .iter()
                .filter(|(_, d)| d.replicas > 0)
                .map(|(n, d)| (n.trim_start_matches("prod/host-").to_string(), d.replicas))
                .collect();
            let Some((_, body)) = get(addr, "/api/v1/workloads/host/status") else {
                return false;
            };
            let v: Value = serde_json::from_str(&body).unwrap_or_default();
            let tiers = &v["data"]["allocation"]["tiers"];
            !scaled.is_empty()
                && scaled
                    .iter()
                    .all(|(t, n)| tiers[t]["ready"].as_u64() == Some(*n as u64))
        },
        "a Deployment scaled and its replicas read back",
        &logs,
    );
    assert!(
        fake.log().iter().any(|l| l
            .starts_with("PATCH /apis/apps/v1/namespaces/prod/deployments/host-")
            && l.contains("Bearer t0ken")),
        "{}",
        logs()
    );
    // Each scaling is an Event on the Deployment it scaled, saying why, as the HPA
    // controller's rescales are: `kubectl describe deployment` shows it.
    let said = |kind: &str| -> Vec<String> {
        get(
            addr,
            &format!("/api/v1/workloads/host/decisions?kind={kind}&limit=50"),
        )
        .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d["reason"].as_str().map(str::to_string))
        .collect()
    };
    wait_for(
        || {
            let events = fake.events();
            let acted = said("act");
            !acted.is_empty()
                && acted
                    .iter()
                    .all(|r| events.iter().any(|e| e["message"] == r.as_str()))
        },
        "an Event for each scaling",
        &logs,
    );
    for e in fake.events() {
        let (name, message) = (
            e["involvedObject"]["name"].as_str().unwrap_or_default(),
            e["message"].as_str().unwrap_or_default(),
        );
        let tier = name.trim_start_matches("host-");
        assert!(
            e["involvedObject"]["kind"] == "Deployment"
                && e["type"] == "Normal"
                && (e["reason"] == "PrescaleScaleUp") == message.starts_with("provision ")
                && message.contains(&format!(" {tier}")),
            "{e}"
        );
    }
    let (_, sources) = get(addr, "/api/v1/sources").unwrap();
    assert!(sources.contains("\"kubernetes\""), "{sources}");
    let (_, metrics) = get(addr, "/metrics").unwrap();
    assert!(
        metrics.contains("prescale_provider_errors_total 0"),
        "{metrics}\n{}",
        logs()
    );
    assert!(
        metrics.contains("prescale_provider_state_up{provider=\"kubernetes\"} 1"),
        "{metrics}"
    );
    // The Role loses `list` on Deployments: what they hold cannot be read, which the
    // sources, the metrics and the decision log say, until it is read again.
    let role = fake.cluster.lock().unwrap().role.take().unwrap();
    let mut rules = example_role();
    for r in rules.iter_mut().filter(|r| r.resources == ["deployments"]) {
        r.verbs.retain(|v| v != "list");
    }
    fake.cluster.lock().unwrap().role = Some(rules);
    let state = || -> Value {
        get(addr, "/api/v1/sources")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .map(|v| v["data"]["provider_state"].clone())
            .unwrap_or_default()
    };
    wait_for(
        || state()["unread_since"].is_number(),
        "the state unread",
        &logs,
    );
    let error = state()["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("Kubernetes: list deployments in prod: HTTP 403")
            && error.contains("get and list on deployments"),
        "{error}"
    );
    let (_, metrics) = get(addr, "/metrics").unwrap();
    assert!(
        metrics.contains("prescale_provider_state_up{provider=\"kubernetes\"} 0"),
        "{metrics}"
    );
    // `prescale status` says it under its first line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["status", "--server", &format!("http://{addr}")])
        .env_remove("PRESCALE_TOKEN_FILE")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = out.lines().nth(1).unwrap_or_default();
    assert!(
        line.starts_with("provider kubernetes: its state not read since ")
            && line.contains("(Kubernetes: list deployments in prod: HTTP 403")
            && line.ends_with("and nothing is removed until it is read"),
        "{out}"
    );
    assert!(
        said("error")
            .iter()
            .any(|r| r.starts_with("the kubernetes provider's state could not be read: Kubernetes: list deployments in prod: HTTP 403")),
        "{:?}",
        said("error")
    );
    fake.cluster.lock().unwrap().role = Some(role);
    wait_for(
        || state()["unread_since"].is_null() && state()["read_at"].is_number(),
        "the state read again",
        &logs,
    );
    assert!(
        said("event")
            .iter()
            .any(|r| r.starts_with("the kubernetes provider's state is read again, after ")),
        "{:?}",
        said("event")
    );
    // The token is not logged.
    assert!(!std::fs::read_to_string(&log).unwrap().contains("t0ken"));
}

/// A pod as the API server lists it.
fn pod(name: &str, ns: &str, app: &str, phase: &str, ip: &str, port: u16, scrape: bool) -> Value {
    json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
                     "annotations": {"prometheus.io/port": port.to_string(),
                                     "prometheus.io/scrape": scrape.to_string()}},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": phase, "podIP": ip}
    })
}

/// An exporter on a loopback port answering every request with `text`, until `stop`.
fn exporter(text: &'static str) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    (addr, stop)
}

#[test]
fn scrape_jobs_find_their_pods_and_follow_them_as_they_come_and_go() {
    let (exp, stop) =
        exporter("# TYPE shop_orders_total counter\nshop_orders_total{pod=\"own\"} 42\n");
    let fake = FakeApi::start(Some("sd-token"), &[]);
    fake.cluster.lock().unwrap().pods = vec![
        pod(
            "api-1",
            "shop",
            "api",
            "Running",
            "127.0.0.1",
            exp.port(),
            true,
        ),
        // Not running yet, not this job's, opted out, another namespace: left out.
        pod("api-2", "shop", "api", "Pending", "", exp.port(), true),
        pod(
            "db-1",
            "shop",
            "db",
            "Running",
            "127.0.0.2",
            exp.port(),
            true,
        ),
        pod(
            "api-3",
            "shop",
            "api",
            "Running",
            "127.0.0.3",
            exp.port(),
            false,
        ),
        pod(
            "api-9",
            "other",
            "api",
            "Running",
            "127.0.0.4",
            exp.port(),
            true,
        ),
        // No port to scrape: left out, and named in the log.
        json!({"metadata": {"name": "api-4", "namespace": "shop", "labels": {"app": "api"}},
               "status": {"phase": "Running", "podIP": "127.0.0.5"}}),
    ];
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sd-token\n").unwrap();
    let cfg = format!(
        "{}\n[[sources.scrape]]\njob = \"api\"\ninterval_s = 1\ntimeout_s = 1\n\
         [sources.scrape.kubernetes]\napi_url = {:?}\ntoken_file = {:?}\nnamespace = \"shop\"\n\
         selector = \"app=api\"\nrefresh_s = 1\n",
        default_config(),
        fake.url(),
        token.display().to_string()
    );
    let d = Daemon::start(dir.path(), &cfg);
    let (addr, log) = (d.addr, d.log.clone());
    let logs = || fake.report(&d);
    let targets = || -> Vec<Value> {
        get(addr, "/api/v1/targets")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["data"].as_array().cloned())
            .unwrap_or_default()
    };
    // The one running api pod is found and scraped, its samples labelled with the pod.
    wait_for(
        || {
            let t = targets();
            t.len() == 1 && t[0]["health"] == "up"
        },
        "the api pod found and scraped",
        &|| format!("{:?}\n{}", targets(), logs()),
    );
    let t = &targets()[0];
    assert_eq!(t["instance"], format!("127.0.0.1:{}", exp.port()), "{t}");
    assert_eq!(t["labels"]["pod"], "api-1", "{t}");
    assert!(
        fake.log().iter().any(|l| l
            .starts_with("GET /api/v1/namespaces/shop/pods?labelSelector=app%3Dapi")
            && l.contains("Bearer sd-token")),
        "{}",
        logs()
    );
    let (_, body) = get(addr, "/api/v1/query?query=shop_orders_total").unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    let m = &v["data"]["result"][0]["metric"];
    assert_eq!(
        (
            &m["job"],
            &m["pod"],
            &m["namespace"],
            &m["node"],
            &m["exported_pod"]
        ),
        (
            &json!("api"),
            &json!("api-1"),
            &json!("shop"),
            &json!("node-1"),
            &json!("own")
        ),
        "{body}"
    );
    assert!(
        d.logs()
            .contains("not scraping 1 running pod(s) with no port to scrape (api-4)"),
        "{}",
        logs()
    );
    // Gone from the API server: no longer a target.
    fake.cluster.lock().unwrap().pods.remove(0);
    wait_for(|| targets().is_empty(), "the gone pod dropped", &|| {
        format!("{:?}\n{}", targets(), logs())
    });
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("the pod is gone"));
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn scrape_jobs_find_the_ready_addresses_behind_services() {
    let (exp, stop) = exporter("# TYPE shop_queue_depth gauge\nshop_queue_depth 7\n");
    let fake = FakeApi::start(None, &[]);
    let endpoints = |name: &str, app: &str, port_name: &str| {
        json!({"metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
               "subsets": [{
                   "addresses": [{"ip": "127.0.0.1", "nodeName": "node-2",
                                  "targetRef": {"kind": "Pod", "name": format!("{name}-0")}}],
                   "notReadyAddresses": [{"ip": "127.0.0.9"}],
                   "ports": [{"name": port_name, "port": exp.port(), "protocol": "TCP"}]}]})
    };
    // The worker Service's metrics port is scraped; the db's has another name.
    fake.cluster.lock().unwrap().endpoints = vec![
        endpoints("worker", "queue", "metrics"),
        endpoints("db", "queue", "sql"),
        endpoints("other", "web", "metrics"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}\n[[sources.scrape]]\njob = \"queue\"\ninterval_s = 1\ntimeout_s = 1\n\
         [sources.scrape.kubernetes]\napi_url = {:?}\nnamespace = \"shop\"\nrole = \"endpoints\"\n\
         selector = \"app=queue\"\nport_name = \"metrics\"\nrefresh_s = 1\n",
        default_config(),
        fake.url(),
    );
    let d = Daemon::start(dir.path(), &cfg);
    let addr = d.addr;
    let logs = || fake.report(&d);
    let got = || -> Option<Value> {
        let (_, body) = get(addr, "/api/v1/query?query=shop_queue_depth")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].as_array()?.first().cloned()
    };
    wait_for(|| got().is_some(), "the worker's address scraped", &logs);
    let r = got().unwrap();
    assert_eq!(r["value"][1], "7", "{r}");
    let m = &r["metric"];
    assert_eq!(
        (
            &m["job"],
            &m["namespace"],
            &m["service"],
            &m["endpoint"],
            &m["pod"],
            &m["node"]
        ),
        (
            &json!("queue"),
            &json!("shop"),
            &json!("worker"),
            &json!("metrics"),
            &json!("worker-0"),
            &json!("node-2")
        ),
        "{r}"
    );
    assert!(
        fake.log()
            .iter()
            .any(|l| l
                .starts_with("GET /api/v1/namespaces/shop/endpoints?labelSelector=app%3Dqueue")),
        "{}",
        logs()
    );
    wait_for(
        || {
            d.logs()
                .contains("not scraping 1 Service(s) whose ready addresses have no port named \"metrics\" (db)")
        },
        "the db Service named",
        &logs,
    );
    stop.store(true, Ordering::SeqCst);
}

#[test]
fn of_several_replicas_only_the_lease_holder_acts_and_another_takes_over() {
    if !Path::new("/proc/stat").exists() {
        eprintln!("skipping: no /proc on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (fake, cfg) = host_tiers_in_prod(dir.path());
    let cfg = cfg
        .replace(
            "enabled = false\nlease = \"prescale\"",
            "enabled = true\nlease = \"prescale\"",
        )
        .replace("lease_duration_s = 15", "lease_duration_s = 4")
        .replace("renew_deadline_s = 10", "renew_deadline_s = 3")
        .replace("retry_period_s = 2", "retry_period_s = 1");
    assert!(
        cfg.contains("enabled = true\nlease = \"prescale\"") && cfg.contains("retry_period_s = 1"),
        "{cfg}"
    );
    // Each says where the others reach it, as `--advertise-url http://$(POD_IP):9180`.
    let replica = |name: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        let addr = common::free_addr();
        let cfg = cfg.replace(
            "retry_period_s = 1\n",
            &format!("retry_period_s = 1\nadvertise_url = \"http://{addr}\"\n"),
        );
        Daemon::start_at(&d, &cfg, addr)
    };
    let election = |d: &Daemon| -> Value {
        get(d.addr, "/api/v1/sources")
            .and_then(|(c, b)| (c == 200).then(|| serde_json::from_str::<Value>(&b).ok())?)
            .map(|v| v["data"]["leader_election"].clone())
            .unwrap_or_default()
    };
    let lease = || fake.lease();
    let holder = || {
        lease().map(|l| {
            l["spec"]["holderIdentity"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
    };
    // Control passes as a replica's API answers (a standby's: the holder's), or as it
    // made them itself.
    let answered = |d: &Daemon, own: bool| -> u64 {
        let headers: &[&str] = if own {
            &["X-Prescale-Forwarded: 1"]
        } else {
            &[]
        };
        common::http(d.addr, "GET", "/api/v1/workloads", headers, b"")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["data"]["ticks"].as_u64())
            .unwrap_or(0)
    };
    let ticks = |d: &Daemon| answered(d, true);
    let leading = |d: &Daemon| election(d)["leading"] == true;
    // The first replica creates the lease and acts.
    let a = replica("a");
    wait_for(|| leading(&a), "a holds the lease", &|| fake.report(&a));
    let a_id = election(&a)["identity"].as_str().unwrap().to_string();
    assert_eq!(holder().as_deref(), Some(a_id.as_str()));
    wait_for(|| ticks(&a) > 2, "a plans", &|| a.logs());
    // The second stands by: it sees a hold the lease, and makes no control pass.
    let b = replica("b");
    wait_for(
        || election(&b)["holder"] == a_id.as_str(),
        "b sees a hold the lease",
        &|| b.logs(),
    );
    wait_for(|| ticks(&a) > 6, "a plans on", &|| a.logs());
    assert_eq!(ticks(&b), 0, "the standby makes no pass: {}", b.logs());
    assert!(!leading(&b));
    // a said where it is on the Lease; b's API answers with a's plans.
    assert_eq!(
        lease().unwrap()["metadata"]["annotations"]["prescale.io/advertise-url"],
        format!("http://{}", a.addr)
    );
    assert_eq!(election(&b)["holder_url"], format!("http://{}", a.addr));
    // And, for the replica that takes over, what host spent this month and the
    // capacity left unmanaged (none).
    let notes = lease().unwrap()["metadata"]["annotations"].clone();
    let spent: Value =
        serde_json::from_str(notes["prescale.io/month-spend"].as_str().unwrap()).unwrap();
    assert!(spent["host"]["spent"].as_f64().unwrap() > 0.0, "{notes}");
    assert_eq!(notes["prescale.io/unmanaged"], "{}", "{notes}");
    assert!(answered(&b, false) > 6, "{}", b.logs());
    // So does its dashboard, saying so.
    if let Some(browser) = common::browser() {
        let page = common::rendered(&browser, &format!("http://{}/", b.addr));
        for said in [
            format!("standby: {a_id} holds the lease prod/prescale and acts"),
            format!(
                "workloads, plans and decisions shown are the holder's (http://{})",
                a.addr
            ),
            format!("lease <b>prod/prescale</b>: standby, held by <b>{a_id}</b>"),
        ] {
            assert!(page.contains(&said), "{said}: {page}");
        }
        // The holder's plan (the standby has none of its own).
        assert!(page.contains("<span>plan <b>$"), "{page}");
        let page = common::rendered(&browser, &format!("http://{}/", a.addr));
        assert!(
            page.contains("lease <b>prod/prescale</b>: <b>held here</b>"),
            "{page}"
        );
        let meta = page.split("id=\"meta\">").nth(1).unwrap();
        let meta = &meta[..meta.find('<').unwrap()];
        assert!(
            meta.contains("control passes") && !meta.contains("standby"),
            "{meta}"
        );
    }
    let (_, metrics) = get(b.addr, "/metrics").unwrap();
    assert!(
        metrics.contains("prescale_leader_election_leading{lease=\"prod/prescale\"} 0"),
        "{metrics}"
    );
    let (_, metrics) = get(a.addr, "/metrics").unwrap();
    assert!(metrics.contains("prescale_leader_election_leading{lease=\"prod/prescale\"} 1"));
    assert!(
        metrics.contains("prescale_plan_instances{workload=\"host\""),
        "{metrics}"
    );
    // A standby does not act on the provider's capacity itself: a release asked of it
    // is the holder's to answer (here: no such workload), and one it may not pass on
    // it refuses, naming the holder.
    let (code, body) =
        common::http(b.addr, "POST", "/api/v1/unmanaged/old/release", &[], b"").unwrap();
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("no unmanaged workload is named `old`"),
        "{body}"
    );
    let (code, body) = common::http(
        b.addr,
        "POST",
        "/api/v1/unmanaged/old/release",
        &["X-Prescale-Forwarded: 1"],
        b"",
    )
    .unwrap();
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains(&format!("{a_id} holds the lease prod/prescale and acts")),
        "{body}"
    );
    // What a spent this month goes on from where a left it.
    let spent = |d: &Daemon| -> f64 {
        get(d.addr, "/api/v1/workloads/host/status")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["data"]["spend"]["spent"].as_f64())
            .unwrap_or(0.0)
    };
    let a_spent = spent(&a);
    assert!(a_spent > 0.0);
    // b copies a's decision log as it is written.
    let log = |d: &Daemon| -> Vec<Value> {
        common::http(
            d.addr,
            "GET",
            "/api/v1/workloads/host/decisions?limit=10000",
            &["X-Prescale-Forwarded: 1"],
            b"",
        )
        .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
    };
    let first = log(&a)[0].clone();
    wait_for(
        || log(&b).contains(&first),
        "b copies a's decisions",
        &|| b.logs(),
    );
    // A pause asked of the standby is the holder's, and is handed on with the lease.
    let (code, body) = common::http(
        b.addr,
        "POST",
        "/api/v1/workloads/host/pause?scope=scale-down&for=2h&reason=failover%20drill",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let pause = serde_json::from_str::<Value>(&body).unwrap()["data"]["paused"].clone();
    assert_eq!(pause["reason"], "failover drill", "{body}");
    let paused = |d: &Daemon| -> Value {
        get(d.addr, "/api/v1/workloads/host/status")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .map(|v| v["data"]["paused"].clone())
            .unwrap_or_default()
    };
    assert_eq!(paused(&a), pause);
    // a wrote it on the Lease before answering, not at its next renewal: were it to
    // die now, the next holder would have it.
    let on_lease = |key: &str, said: &str| {
        lease().unwrap()["metadata"]["annotations"][key]
            .as_str()
            .is_some_and(|t| t.contains(said))
    };
    assert!(
        on_lease("prescale.io/paused", "failover drill"),
        "{}",
        fake.report(&a)
    );
    assert!(!body.contains("warnings"), "{body}");
    // So is a planned event declared through the standby.
    let at = prescale_core::now_ms() / 1000;
    let event = format!(
        r#"{{"name": "drill traffic", "start": {}, "end": {}, "scale": 2}}"#,
        at + 3_600,
        at + 7_200
    );
    let (code, body) = common::http(
        b.addr,
        "POST",
        "/api/v1/workloads/host/events",
        &[],
        event.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let declared = |d: &Daemon| -> Value {
        get(d.addr, "/api/v1/workloads/host/status")
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .map(|v| v["data"]["declared"].clone())
            .unwrap_or_default()
    };
    assert_eq!(declared(&a), serde_json::json!(["drill traffic"]));
    assert!(
        on_lease("prescale.io/events", "drill traffic"),
        "{}",
        fake.report(&a)
    );
    assert!(!body.contains("warnings"), "{body}");
    // A clean stop gives the lease up, and the standby takes it and acts.
    let term = std::process::Command::new("kill")
        .args(["-TERM", &a.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    wait_for(|| leading(&b), "b takes over", &|| b.logs());
    assert!(a.logs().contains("the lease is released"), "{}", a.logs());
    let b_id = election(&b)["identity"].as_str().unwrap().to_string();
    assert_eq!(holder().as_deref(), Some(b_id.as_str()));
    assert_eq!(
        lease().unwrap()["metadata"]["annotations"]["prescale.io/advertise-url"],
        format!("http://{}", b.addr)
    );
    wait_for(|| ticks(&b) > 0, "b plans", &|| b.logs());
    assert!(
        spent(&b) >= a_spent,
        "{} after a's {a_spent}: {}",
        spent(&b),
        b.logs()
    );
    assert_eq!(paused(&b), pause, "{}", b.logs());
    assert_eq!(
        declared(&b),
        serde_json::json!(["drill traffic"]),
        "{}",
        b.logs()
    );
    assert!(
        b.logs()
            .contains("planned events declared through the API taken over"),
        "{}",
        b.logs()
    );
    assert!(
        b.logs()
            .contains("pauses taken over from the replica that held the lease before"),
        "{}",
        b.logs()
    );
    // Its log, now the holder's, goes back to before it took over, each decision once.
    let held = log(&b);
    assert_eq!(held[0], first);
    let mut seen = std::collections::HashSet::new();
    assert!(held.iter().all(|d| seen.insert(d.to_string())), "{held:?}");
    assert!(
        b.logs().contains(
            "this month's spending taken over from the replica that held the lease before"
        ),
        "{}",
        b.logs()
    );
    drop(a);
    // A replica that dies holding the lease leaves it to run out: a new one waits for
    // that, by its own clock, before it takes over.
    let transitions = lease().unwrap()["spec"]["leaseTransitions"]
        .as_u64()
        .unwrap();
    drop(b);
    let c = replica("c");
    wait_for(
        || leading(&c),
        "c takes over once b's lease ran out",
        &|| c.logs(),
    );
    let c_id = election(&c)["identity"].as_str().unwrap().to_string();
    assert_eq!(holder().as_deref(), Some(c_id.as_str()));
    assert_eq!(
        lease().unwrap()["spec"]["leaseTransitions"]
            .as_u64()
            .unwrap(),
        transitions + 1
    );
    let log = c.logs();
    let stood = log
        .find("standing by while another replica acts")
        .unwrap_or_else(|| panic!("c first stood by: {log}"));
    let took = log
        .find("this replica holds the lease: it plans and acts")
        .unwrap();
    assert!(stood < took, "{log}");
    // Every lease call was one the example Role grants (the stand-in refuses others).
    assert!(
        fake.log()
            .iter()
            .all(|l| !l.contains("leases") || !l.contains(" 403")),
        "{}",
        fake.log().join("\n")
    );
}

/// A stand-in API server, and electors (by identity) for its Lease `prod/prescale`
/// whose holder's lease lasts `lease_duration_s`.
fn lease_api(
    lease_duration_s: u64,
) -> (
    FakeApi,
    impl Fn(&str) -> prescale_orchestrate::lease::Elector,
) {
    let fake = FakeApi::start(None, &[]);
    let kube = KubernetesProviderConfig {
        api_url: Some(fake.url()),
        namespace: Some("prod".into()),
        ..Default::default()
    };
    let le = prescale_core::config::LeaderElectionConfig {
        enabled: true,
        lease_duration_s,
        ..Default::default()
    };
    let elector = move |id: &str| {
        let none = |_: &str| None;
        prescale_orchestrate::lease::Elector::new(
            &le,
            &kube,
            id.into(),
            none,
            Path::new("/nonexistent"),
        )
        .unwrap()
    };
    (fake, elector)
}

#[test]
fn of_two_replicas_racing_for_a_lease_the_api_server_lets_one_win() {
    let (fake, elector) = lease_api(1);
    let (mut a, mut b) = (elector("a"), elector("b"));
    assert_eq!(a.lease(), "prod/prescale");
    // a creates the lease; b sees a hold it.
    let r = a.round();
    assert!(r.leading && r.holder == "a" && r.error.is_none(), "{r:?}");
    let r = b.round();
    assert!(!r.leading && r.holder == "a", "{r:?}");
    // a stops renewing; once the lease has run out by b's clock, b would take it, but a
    // third replica renews first: b's replace carries a stale resourceVersion, is
    // refused with 409, and b stands by, overwriting nothing.
    std::thread::sleep(Duration::from_millis(1_100));
    fake.cluster.lock().unwrap().race = Some("c".into());
    let r = b.round();
    assert!(!r.leading && r.error.is_none(), "{r:?}");
    let stored = fake.cluster.lock().unwrap().leases["prod/prescale"].clone();
    assert_eq!(stored["spec"]["holderIdentity"], "c");
    assert!(
        fake.log()
            .iter()
            .any(|l| l
                .starts_with("PUT /apis/coordination.k8s.io/v1/namespaces/prod/leases/prescale")),
        "{}",
        fake.log().join("\n")
    );
    // a, which held it, finds it taken: it no longer acts.
    let r = a.round();
    assert!(!r.leading && r.holder == "c", "{r:?}");
    // A release by a replica that does not hold it changes nothing.
    a.release().unwrap();
    assert_eq!(
        fake.cluster.lock().unwrap().leases["prod/prescale"]["spec"]["holderIdentity"],
        "c"
    );
}

#[test]
fn the_months_spending_unmanaged_capacity_pauses_and_events_go_to_the_next_holder_on_the_lease() {
    use prescale_core::{EventTime, Pause, PauseScope, PlannedEvent};
    use prescale_orchestrate::engine::{month_bounds, MonthSpend, Unmanaged};
    use prescale_orchestrate::lease::{
        Handed, EVENTS_ANNOTATION, PAUSED_ANNOTATION, SPEND_ANNOTATION, UNMANAGED_ANNOTATION,
    };
    let (fake, elector) = lease_api(15);
    let (mut a, mut b) = (elector("a"), elector("b"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let spend = |spent: f64, at: i64| MonthSpend {
        month_start: month_bounds(now).0,
        spent,
        at,
    };
    let note = |key: &str| -> Value {
        let lease = fake.cluster.lock().unwrap().leases["prod/prescale"].clone();
        serde_json::from_str(
            lease["metadata"]["annotations"][key]
                .as_str()
                .unwrap_or("null"),
        )
        .unwrap()
    };
    let written = || note(SPEND_ANNOTATION);
    let old = Unmanaged {
        since: now - 3_600_000,
        why: "removed by a configuration reload".into(),
        instances: [("standard".to_string(), 2)].into(),
        cost_per_hour: 0.384,
        unpriced: Vec::new(),
    };
    let pause = Pause {
        scope: PauseScope::ScaleDown,
        since: now,
        until: now + 3_600_000,
        reason: "incident 42".into(),
    };
    let test = PlannedEvent {
        name: "load test".into(),
        start: EventTime(now + 3_600_000),
        end: EventTime(now + 7_200_000),
        scale: 2.0,
        min_demand: Some(40.0),
        recurring: None,
        min_dimensions: Default::default(),
    };
    // a acts and writes what each workload spent this month at each renewal.
    assert!(a.round().leading);
    a.notes()
        .note_spend([("web".to_string(), spend(41.5, now))], now);
    a.notes()
        .note_unmanaged([("old".to_string(), old.clone())].into());
    a.notes()
        .note_paused([("web".to_string(), pause.clone())].into());
    a.notes()
        .note_events([("web".to_string(), vec![test.clone()])].into());
    let r = a.round();
    assert!(r.leading && r.handed.is_none(), "{r:?}");
    assert_eq!(written()["web"]["spent"], 41.5);
    assert_eq!(
        note(UNMANAGED_ANNOTATION)["old"]["instances"]["standard"],
        2
    );
    assert_eq!(note(PAUSED_ANNOTATION)["web"]["scope"], "scale-down");
    assert_eq!(note(EVENTS_ANNOTATION)["web"][0]["name"], "load test");
    // b stands by, with its own figure from long ago.
    b.notes().note_spend(
        [
            ("web".to_string(), spend(3.0, now - 86_400_000)),
            ("batch".to_string(), spend(7.0, now - 86_400_000)),
        ],
        now,
    );
    let r = b.round();
    assert!(!r.leading && r.handed.is_none(), "{r:?}");
    assert_eq!(written()["web"]["spent"], 41.5, "a standby writes nothing");
    // a stops cleanly; b takes over and is handed a's figures, which it keeps writing
    // beside its own for what a did not run.
    a.release().unwrap();
    assert_eq!(written()["web"]["spent"], 41.5, "kept for the next holder");
    let r = b.round();
    assert!(r.leading, "{r:?}");
    let handed = r.handed.expect("handed over");
    assert_eq!(handed.spend["web"], spend(41.5, now));
    assert_eq!(handed.unmanaged["old"], old);
    assert_eq!(handed.paused, Some([("web".to_string(), pause)].into()));
    assert_eq!(
        handed.events,
        Some([("web".to_string(), vec![test])].into())
    );
    assert_eq!(written()["web"]["spent"], 41.5);
    assert_eq!(written()["batch"]["spent"], 7.0);
    // The lists handed over are written on until b's engine has taken them over, then
    // b's (a pause lifted since is no longer handed on).
    assert_eq!(note(UNMANAGED_ANNOTATION)["old"]["why"], old.why.as_str());
    assert!(b.round().handed.is_none(), "handed once");
    assert_eq!(note(UNMANAGED_ANNOTATION)["old"]["why"], old.why.as_str());
    assert_eq!(note(PAUSED_ANNOTATION)["web"]["reason"], "incident 42");
    assert_eq!(note(EVENTS_ANNOTATION)["web"][0]["min_demand"], 40.0);
    b.notes().note_unmanaged(Default::default());
    b.notes().note_paused(Default::default());
    b.notes().note_events(Default::default());
    b.round();
    assert_eq!(note(UNMANAGED_ANNOTATION), serde_json::json!({}));
    assert_eq!(note(PAUSED_ANNOTATION), serde_json::json!({}));
    assert_eq!(note(EVENTS_ANNOTATION), serde_json::json!({}));
    // Last month's figures are dropped.
    b.notes().note_spend(
        [(
            "old".to_string(),
            MonthSpend {
                month_start: month_bounds(month_bounds(now).0 - 1).0,
                spent: 9.0,
                at: now - 40 * 86_400_000,
            },
        )],
        now,
    );
    b.round();
    assert!(written().get("old").is_none(), "{}", written());
    // A figure that cannot be read is not taken over.
    let mut c = elector("c");
    {
        let mut cl = fake.cluster.lock().unwrap();
        let lease = cl.leases.get_mut("prod/prescale").unwrap();
        lease["spec"]["holderIdentity"] = serde_json::json!("");
        lease["metadata"]["annotations"][SPEND_ANNOTATION] = serde_json::json!("{not json");
        lease["metadata"]["annotations"][EVENTS_ANNOTATION] = serde_json::json!("[1, 2");
    }
    let r = c.round();
    assert!(r.leading, "{r:?}");
    assert_eq!(
        r.handed,
        Some(Handed {
            paused: Some(Default::default()),
            ..Handed::default()
        }),
        "events: None, not none declared; pauses: none in force"
    );
}

#[test]
fn the_holder_writes_its_notes_on_the_lease_at_once_and_only_while_it_holds_it() {
    use prescale_core::{Pause, PauseScope};
    use prescale_orchestrate::lease::PAUSED_ANNOTATION;
    let (fake, elector) = lease_api(15);
    let (mut a, mut b) = (elector("a"), elector("b"));
    let lease = || fake.lease();
    let paused = || -> Value {
        let note = lease().unwrap()["metadata"]["annotations"][PAUSED_ANNOTATION].clone();
        serde_json::from_str(note.as_str().unwrap_or("null")).unwrap()
    };
    let pause = |reason: &str| Pause {
        scope: PauseScope::All,
        since: 1_800_000_000_000,
        until: 1_800_003_600_000,
        reason: reason.into(),
    };
    // Before any round it holds nothing, and creates no Lease.
    let e = a.renew_now().unwrap_err();
    assert!(
        e.contains("lease prod/prescale: this replica does not hold it"),
        "{e}"
    );
    assert!(lease().is_none());
    assert!(a.round().leading);
    let first = lease().unwrap()["spec"]["renewTime"].clone();
    // A pause noted is on the Lease as soon as it is asked to be, as a renewal.
    a.notes()
        .note_paused([("web".to_string(), pause("incident 7"))].into());
    std::thread::sleep(Duration::from_millis(2));
    a.renew_now().unwrap();
    assert_eq!(paused()["web"]["reason"], "incident 7");
    assert_ne!(lease().unwrap()["spec"]["renewTime"], first, "renewed");
    assert_eq!(lease().unwrap()["spec"]["holderIdentity"], "a");
    // A standby writes nothing, and takes nothing over, even a lease given up.
    assert!(!b.round().leading);
    b.notes()
        .note_paused([("web".to_string(), pause("b's own"))].into());
    let e = b.renew_now().unwrap_err();
    assert!(e.contains("does not hold it"), "{e}");
    assert_eq!(paused()["web"]["reason"], "incident 7");
    // The API server refusing the write: why, and which rights to give.
    let role = fake.cluster.lock().unwrap().role.take().unwrap();
    let mut rules = example_role();
    for r in rules.iter_mut().filter(|r| r.resources == ["leases"]) {
        r.verbs.retain(|v| v != "update");
    }
    fake.cluster.lock().unwrap().role = Some(rules);
    a.notes().note_paused(Default::default());
    let e = a.renew_now().unwrap_err();
    assert!(
        e.contains("lease prod/prescale: ")
            && e.contains("HTTP 403")
            && e.contains("give prescale's service account get, create and update on leases"),
        "{e}"
    );
    assert_eq!(paused()["web"]["reason"], "incident 7", "not written");
    fake.cluster.lock().unwrap().role = Some(role);
    // Another replica holding it now (a's lease ran out while it was cut off): a
    // writes nothing over it, and says who holds it.
    {
        let mut c = fake.cluster.lock().unwrap();
        let l = c.leases.get_mut("prod/prescale").unwrap();
        l["spec"]["holderIdentity"] = serde_json::json!("c");
    }
    let e = a.renew_now().unwrap_err();
    assert!(e.contains("held by c now, not by this replica"), "{e}");
    assert_eq!(lease().unwrap()["spec"]["holderIdentity"], "c");
    assert_eq!(paused()["web"]["reason"], "incident 7");
    let e = a.renew_now().unwrap_err();
    assert!(e.contains("does not hold it"), "{e}");
    // A lease left free is taken over at a round, with what was handed, never by a
    // write at once.
    {
        let mut c = fake.cluster.lock().unwrap();
        let l = c.leases.get_mut("prod/prescale").unwrap();
        l["spec"]["holderIdentity"] = serde_json::json!("");
    }
    let r = a.round();
    assert!(r.leading && r.handed.is_some(), "{r:?}");
    {
        let mut c = fake.cluster.lock().unwrap();
        let l = c.leases.get_mut("prod/prescale").unwrap();
        l["spec"]["holderIdentity"] = serde_json::json!("");
    }
    let e = a.renew_now().unwrap_err();
    assert!(e.contains("held by nobody now"), "{e}");
    assert_eq!(lease().unwrap()["spec"]["holderIdentity"], "");
}
