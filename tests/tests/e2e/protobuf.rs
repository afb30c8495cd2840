//! Protobuf request bodies: kubectl 1.37 sends `kubectl create secret|configmap|namespace|
//! serviceaccount|deployment|service|job|ingress` as `application/vnd.kubernetes.protobuf`. Wharf
//! decodes the kinds it describes and answers the others with a clear 415. (ServiceAccount
//! decodes too, but Wharf does not serve serviceaccounts, so kubectl gets a 404 first.)

use wharf_e2e::{Wharf, run};

#[test]
fn kubectl_create_sends_protobuf_that_wharf_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();

    let out =
        run(wharf
            .kubectl()
            .args(["create", "secret", "generic", "s1", "--from-literal=a=b"]))
        .unwrap();
    assert!(out.contains("secret/s1 created"), "{out}");
    let data = run(wharf
        .kubectl()
        .args(["get", "secret", "s1", "-o", "jsonpath={.data.a}"]))
    .unwrap();
    assert_eq!(data, "Yg==", "base64 of \"b\"");

    let out = run(wharf
        .kubectl()
        .args(["create", "configmap", "c1", "--from-literal=k=v"]))
    .unwrap();
    assert!(out.contains("configmap/c1 created"), "{out}");
    let value = run(wharf
        .kubectl()
        .args(["get", "configmap", "c1", "-o", "jsonpath={.data.k}"]))
    .unwrap();
    assert_eq!(value, "v");

    let out = run(wharf.kubectl().args(["create", "namespace", "n1"])).unwrap();
    assert!(out.contains("namespace/n1 created"), "{out}");
    let out =
        run(wharf
            .kubectl()
            .args(["create", "service", "clusterip", "svc1", "--tcp=80:8080"]))
        .unwrap();
    assert!(out.contains("service/svc1 created"), "{out}");
    let port = run(wharf.kubectl().args([
        "get",
        "service",
        "svc1",
        "-o",
        "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}",
    ]))
    .unwrap();
    assert_eq!(port, "80/8080");

    let out = run(wharf.kubectl().args([
        "create",
        "deployment",
        "d1",
        "--image=example/none:1",
        "--replicas=0",
    ]))
    .unwrap();
    assert!(out.contains("deployment.apps/d1 created"), "{out}");
    let replicas =
        run(wharf
            .kubectl()
            .args(["get", "deployment", "d1", "-o", "jsonpath={.spec.replicas}"]))
        .unwrap();
    assert_eq!(replicas, "0", "an explicit replicas: 0 survives protobuf");

    let out = run(wharf.kubectl().args([
        "create",
        "job",
        "j1",
        "--image=example/none:1",
        "--",
        "run",
        "--flag",
    ]))
    .unwrap();
    assert!(out.contains("job.batch/j1 created"), "{out}");
    let command = run(wharf.kubectl().args([
        "get",
        "job",
        "j1",
        "-o",
        "jsonpath={.spec.template.spec.restartPolicy} {.spec.template.spec.containers[0].command}",
    ]))
    .unwrap();
    assert_eq!(command, r#"Never ["run","--flag"]"#);
}

#[test]
fn kubectl_create_of_a_kind_wharf_cannot_decode_from_protobuf_fails_with_415() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();

    let output = wharf
        .kubectl()
        .args(["create", "ingress", "i1", "--rule=foo.example/bar=svc1:80"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("unknown format - accepted media types include: application/json")
            && stderr.contains("Ingress (networking.k8s.io/v1)"),
        "{stderr}"
    );
    // Nothing was written.
    let ingresses = run(wharf.kubectl().args(["get", "ingresses", "-o", "name"])).unwrap();
    assert_eq!(ingresses.trim(), "");
}
