//! The Kubernetes manifests in `examples/kubernetes` checked against Kubernetes' own
//! OpenAPI schemas, strictly (a misspelt or misplaced field fails, as `kubectl apply
//! --validate=strict` would), for the oldest and newest Kubernetes the validator knows,
//! by `kubernetes-validate` (from PyPI; `.ci/run` installs it in a virtualenv and puts it
//! on `PATH`, or name it in `PRESCALE_KUBERNETES_VALIDATE`). Skipped, saying so, without
//! it. `keda-scaledobject.yaml` is KEDA's own resource, which the validator has no
//! schema for.

use std::path::{Path, PathBuf};
use std::process::Command;

fn validator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PRESCALE_KUBERNETES_VALIDATE") {
        return Some(p.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("kubernetes-validate"))
        .find(|p| p.is_file())
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes")
}

/// Validates `file` for Kubernetes `version` (None: the validator's newest): its
/// success and everything it said.
fn validate(tool: &Path, file: &Path, version: Option<&str>) -> (bool, String) {
    let mut c = Command::new(tool);
    c.args(["--strict", "--no-warn"]);
    if let Some(v) = version {
        c.args(["-k", v]);
    }
    let out = c.arg(file).output().expect("kubernetes-validate runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_kubernetes_manifests_are_valid_for_the_kubernetes_versions_in_use() {
    let Some(tool) = validator() else {
        eprintln!(
            "skipping: kubernetes-validate is not installed (pip install kubernetes-validate, \
             or set PRESCALE_KUBERNETES_VALIDATE)"
        );
        return;
    };
    for (file, kinds) in [
        (
            "prescale.yaml",
            &[
                "persistentvolumeclaim/prescale-data",
                "deployment/prescale",
                "service/prescale",
            ][..],
        ),
        (
            "prescale-ha.yaml",
            &[
                "statefulset/prescale",
                "service/prescale-pods",
                "service/prescale",
                "poddisruptionbudget/prescale",
            ][..],
        ),
        (
            "rbac.yaml",
            &[
                "serviceaccount/prescale",
                "role/prescale-scaler",
                "rolebinding/prescale-scaler",
            ][..],
        ),
    ] {
        let path = examples().join(file);
        for version in [Some("1.25.0"), None] {
            let (ok, said) = validate(&tool, &path, version);
            assert!(ok, "{file} for {version:?}:\n{said}");
            // Every resource was checked, none left out for want of a schema.
            for kind in kinds {
                assert!(
                    said.contains(&format!("passed for resource {kind}")),
                    "{file} for {version:?}: {kind} not validated:\n{said}"
                );
            }
        }
    }

    // The standby example runs the binary as the Deployment does (container.rs runs
    // those arguments with podman), and says where each pod is.
    let args = |file: &str| {
        let text = std::fs::read_to_string(examples().join(file)).unwrap();
        let from = text.find("          args:\n").expect("args");
        let to = from
            + text[from..]
                .find("          ports:\n")
                .expect("ports after args");
        text[from..to].to_string()
    };
    let advertised =
        "            # Where the other replica reaches this one: the holder writes it on the
            # Lease, and the standby passes the dashboard's and the API's reads on to it.
            - --advertise-url
            - http://$(POD_IP):9180
          env:
            - name: POD_IP
              valueFrom:
                fieldRef:
                  fieldPath: status.podIP
";
    assert_eq!(args("prescale-ha.yaml"), args("prescale.yaml") + advertised);

    // The check is strict: a field misspelt in the Deployment fails it, naming the field.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("prescale.yaml")).unwrap();
    assert!(
        text.contains("  replicas: 1\n"),
        "the Deployment sets replicas"
    );
    let broken = dir.path().join("prescale.yaml");
    std::fs::write(
        &broken,
        text.replacen("  replicas: 1\n", "  replica: 1\n", 1),
    )
    .unwrap();
    let (ok, said) = validate(&tool, &broken, None);
    assert!(!ok, "a misspelt field passed:\n{said}");
    assert!(said.contains("replica"), "{said}");
}
