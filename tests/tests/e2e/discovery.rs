//! Discovery and OpenAPI as kubectl 1.20 and 1.37 read them: 1.37 learns every resource from
//! aggregated discovery (two requests, answered with Kubernetes' exact `Content-Type`), 1.20 from
//! the plain documents; 1.20 validates manifests on the client against `/openapi/v2` (protobuf)
//! and `explain` reads it, while 1.37 reads `/openapi/v3`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wharf_e2e::{Wharf, kubectl, kubectl_1_20, run};

const MANIFESTS: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      runtimeClassName: wasmtime
      containers:
        - name: web
          image: hello-http:latest
          ports:
            - {name: http, containerPort: 8080, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - {port: 80, targetPort: http}
"#;

/// A manifest kubectl 1.20 must reject on the client, as it does against Kubernetes.
const INVALID: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  replicas: "three"
  selector:
    matchLabels: {app: bad}
  template:
    metadata:
      labels: {app: bad}
    spec:
      containers:
        - name: bad
          image: hello-http:latest
          bogusField: 1
"#;

/// `binary` against `wharf`, with a discovery cache of its own.
fn kubectl_of(binary: &Path, wharf: &Wharf, cache: &str) -> Command {
    let mut command = Command::new(binary);
    command.env("KUBECONFIG", wharf.kubeconfig()).arg(format!(
        "--cache-dir={}",
        wharf.data_dir.join(cache).display()
    ));
    command
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn kubectl_1_20_and_1_37_apply_get_explain_and_list_resources() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let manifests = write(dir.path(), "web.yaml", MANIFESTS);
    let manifests = manifests.to_str().unwrap();
    let clients = [
        (kubectl_1_20(), "kubectl-1.20-cache"),
        (kubectl(), "kubectl-1.37-cache"),
    ];
    for (binary, cache) in &clients {
        let kc = || kubectl_of(binary, &wharf, cache);
        let version = binary.display();

        let out = run(kc().args(["apply", "-f", manifests])).unwrap();
        assert!(out.contains("deployment.apps/web"), "{version}: {out}");
        assert!(out.contains("service/web"), "{version}: {out}");
        // A second apply computes a patch from the last-applied configuration.
        let out = run(kc().args(["apply", "-f", manifests])).unwrap();
        assert!(
            out.contains("deployment.apps/web unchanged"),
            "{version}: {out}"
        );

        let out = run(kc().args(["get", "deployment,service", "web"])).unwrap();
        assert!(out.contains("deployment.apps/web"), "{version}: {out}");
        assert!(out.contains("service/web"), "{version}: {out}");

        let out = run(kc().args(["explain", "deployment.spec"])).unwrap();
        assert!(out.contains("replicas"), "{version}: {out}");
        assert!(out.contains("DeploymentSpec"), "{version}: {out}");

        let out = run(kc().args(["api-resources"])).unwrap();
        for line in [
            "deployments ",
            "horizontalpodautoscalers ",
            "endpointslices ",
            "runtimeclasses ",
        ] {
            assert!(out.contains(line), "{version}: {line} missing: {out}");
        }
        assert!(out.contains("metrics.k8s.io/v1beta1"), "{version}: {out}");
        let out = run(kc().args(["api-versions"])).unwrap();
        assert!(out.lines().any(|l| l == "apps/v1"), "{version}: {out}");

        run(kc().args(["delete", "-f", manifests, "--wait=false"])).unwrap();
    }

    let configmap = write(
        dir.path(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: old-client}\ndata: {a: b}\n",
    );
    let out = run(
        kubectl_of(&kubectl_1_20(), &wharf, "kubectl-1.20-cache").args([
            "create",
            "-f",
            configmap.to_str().unwrap(),
        ]),
    )
    .unwrap();
    assert!(out.contains("configmap/old-client created"), "{out}");
}

#[test]
fn kubectl_1_20_validates_manifests_against_openapi_v2_like_kubernetes() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let invalid = write(dir.path(), "bad.yaml", INVALID);
    let output = kubectl_of(&kubectl_1_20(), &wharf, "kubectl-1.20-cache")
        .args(["apply", "-f", invalid.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(r#"invalid type for io.k8s.api.apps.v1.DeploymentSpec.replicas: got "string", expected "integer""#),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"unknown field "bogusField" in io.k8s.api.core.v1.Container"#),
        "{stderr}"
    );
    let out = run(
        kubectl_of(&kubectl_1_20(), &wharf, "kubectl-1.20-cache").args([
            "get",
            "deployments",
            "-o",
            "name",
        ]),
    )
    .unwrap();
    assert!(!out.contains("bad"), "nothing was written: {out}");
}

#[test]
fn kubectl_1_37_uses_aggregated_discovery_with_the_exact_content_type() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let output = kubectl_of(&kubectl(), &wharf, "kubectl-1.37-cache")
        .args(["api-resources", "-v=8"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    let content_type =
        "Content-Type: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    assert_eq!(
        log.matches(content_type).count(),
        2,
        "/api and /apis answer aggregated discovery: {log}"
    );
    assert!(
        !log.contains("/api/v1?timeout"),
        "no per-group-version discovery requests: {log}"
    );
    assert!(!log.contains("/apis/apps/v1?timeout"), "{log}");
}
