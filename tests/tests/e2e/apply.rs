//! Server-side apply with real kubectl: `apply --server-side` creates and updates, a field
//! another manager set (here `kubectl scale`) is a conflict in Kubernetes' words until
//! `--force-conflicts`, `--dry-run=server` changes nothing, and client-side `apply` still works
//! and is recorded as `kubectl-client-side-apply` in `managedFields`.

use serde_json::Value;
use wharf_e2e::{Wharf, run};

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: ssa, labels: {app: ssa}}
spec:
  replicas: 0
  selector: {matchLabels: {app: ssa}}
  template:
    metadata: {labels: {app: ssa}}
    spec: {containers: [{name: app, image: example/none:1}]}
";

/// The Deployment as JSON, managed fields included.
fn get(wharf: &Wharf, name: &str) -> Value {
    let out = run(wharf.kubectl().args([
        "get",
        "deployment",
        name,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    serde_json::from_str(&out).unwrap()
}

/// `(manager, operation)` of each managedFields entry.
fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("no managedFields in {object:#}"))
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_owned(),
                e["operation"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn kubectl_server_side_apply_owns_fields_conflicts_and_forces() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let manifest = dir.path().join("ssa.yaml");
    let apply = |text: &str, extra: &[&str]| {
        std::fs::write(&manifest, text).unwrap();
        wharf
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&manifest)
            .args(extra)
            .output()
            .unwrap()
    };

    let out = apply(DEPLOYMENT, &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/ssa serverside-applied"),
        "{out:?}"
    );
    let created = get(&wharf, "ssa");
    // Besides the controllers' own entries (revision annotation, status), one applier.
    let appliers: Vec<(String, String)> = managers(&created)
        .into_iter()
        .filter(|(_, operation)| operation == "Apply")
        .collect();
    assert_eq!(appliers, [("kubectl".into(), "Apply".into())]);
    let fields = &created["metadata"]["managedFields"][0]["fieldsV1"];
    assert!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["f:image"]
            .is_object(),
        "{fields:#}"
    );

    // A changed field is applied in place.
    let out = apply(&DEPLOYMENT.replace("example/none:1", "example/none:2"), &[]);
    assert!(out.status.success(), "{out:?}");
    let updated = get(&wharf, "ssa");
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "example/none:2"
    );
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);

    // kubectl hides managed fields unless asked.
    let plain = run(wharf
        .kubectl()
        .args(["get", "deployment", "ssa", "-o", "yaml"]))
    .unwrap();
    assert!(!plain.contains("managedFields"), "{plain}");

    // Another manager takes replicas; applying a different value conflicts.
    run(wharf
        .kubectl()
        .args(["scale", "deployment/ssa", "--replicas=2"]))
    .unwrap();
    let scaled = get(&wharf, "ssa");
    let scaler = scaled["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subresource"] == "scale")
        .unwrap_or_else(|| panic!("no scale entry in {scaled:#}"))
        .clone();
    let scaler_name = scaler["manager"].as_str().unwrap().to_owned();
    let conflicting = DEPLOYMENT
        .replace("example/none:1", "example/none:2")
        .replace("replicas: 0", "replicas: 3");
    let out = apply(&conflicting, &[]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "Apply failed with 1 conflict: conflict with \"{scaler_name}\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("--force-conflicts"), "{stderr}");
    assert_eq!(get(&wharf, "ssa")["spec"]["replicas"], 2);

    // A server-side dry run answers but changes nothing.
    let before = get(&wharf, "ssa");
    let out = apply(&conflicting, &["--force-conflicts", "--dry-run=server"]);
    assert!(out.status.success(), "{out:?}");
    let after = get(&wharf, "ssa");
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(after["spec"]["replicas"], 2);

    // Forced, the applier takes replicas over.
    let out = apply(&conflicting, &["--force-conflicts"]);
    assert!(out.status.success(), "{out:?}");
    let forced = get(&wharf, "ssa");
    assert_eq!(forced["spec"]["replicas"], 3);
    assert!(
        !managers(&forced).contains(&(scaler_name, "Update".into())),
        "the scaler owned nothing else, so its entry is gone: {forced:#}"
    );
}

#[test]
fn kubectl_client_side_apply_is_recorded_as_kubectl_client_side_apply() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let manifest = dir.path().join("csa.yaml");
    let text = DEPLOYMENT.replace("ssa", "csa");
    std::fs::write(&manifest, &text).unwrap();
    let out = run(wharf.kubectl().args(["apply", "-f"]).arg(&manifest)).unwrap();
    assert!(out.contains("deployment.apps/csa created"), "{out}");
    std::fs::write(&manifest, text.replace("replicas: 0", "replicas: 1")).unwrap();
    let out = run(wharf.kubectl().args(["apply", "-f"]).arg(&manifest)).unwrap();
    assert!(out.contains("deployment.apps/csa configured"), "{out}");
    let object = get(&wharf, "csa");
    assert_eq!(object["spec"]["replicas"], 1);
    let names = managers(&object);
    assert!(
        names.contains(&("kubectl-client-side-apply".into(), "Update".into())),
        "{names:?}"
    );
    let entry = object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl-client-side-apply")
        .unwrap();
    assert!(
        entry["fieldsV1"]["f:spec"]["f:replicas"].is_object(),
        "{entry:#}"
    );
    assert!(
        entry["fieldsV1"]["f:metadata"]["f:annotations"]
            ["f:kubectl.kubernetes.io/last-applied-configuration"]
            .is_object(),
        "{entry:#}"
    );

    // Server-side apply of a different replicas now conflicts with the client-side applier.
    std::fs::write(&manifest, text.replace("replicas: 0", "replicas: 4")).unwrap();
    let out = wharf
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"),
        "{stderr}"
    );
}
