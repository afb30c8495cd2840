//! Deletion as kubectl users know it: background, orphan and foreground cascading through
//! ownerReferences, and namespace deletion that removes the namespace's contents.

use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_e2e::{Wharf, run};

const OWNER: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: owner}
spec:
  replicas: 0
  selector: {matchLabels: {app: owner}}
  template:
    metadata: {labels: {app: owner}}
    spec: {containers: [{name: c, image: example/none:1}]}
";

/// Creates the owner Deployment and a ConfigMap owned by it; returns the owner's uid.
fn owner_and_dependent(wharf: &Wharf, dir: &std::path::Path) -> String {
    let owner = dir.join("owner.yaml");
    std::fs::write(&owner, OWNER).unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "--validate=false", "-f"])
        .arg(&owner))
    .unwrap();
    let uid =
        run(wharf
            .kubectl()
            .args(["get", "deploy", "owner", "-o", "jsonpath={.metadata.uid}"]))
        .unwrap();
    let dependent = dir.join("dependent.yaml");
    std::fs::write(
        &dependent,
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dependent\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: Deployment, name: owner, uid: {uid}, blockOwnerDeletion: true}}\ndata: {{a: b}}\n"
        ),
    )
    .unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "--validate=false", "-f"])
        .arg(&dependent))
    .unwrap();
    uid
}

fn exists(wharf: &Wharf, args: &[&str]) -> bool {
    wharf
        .kubectl()
        .arg("get")
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within 15 s");
}

#[test]
fn deleting_an_owner_deletes_its_dependents_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    owner_and_dependent(&wharf, dir.path());
    run(wharf.kubectl().args(["delete", "deploy", "owner"])).unwrap();
    eventually("garbage collection of the dependent", || {
        !exists(&wharf, &["cm", "dependent"])
    });
}

#[test]
fn orphan_cascading_keeps_dependents_and_drops_their_owner_reference() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    owner_and_dependent(&wharf, dir.path());
    run(wharf
        .kubectl()
        .args(["delete", "deploy", "owner", "--cascade=orphan"]))
    .unwrap();
    eventually("removal of the orphaned owner", || {
        !exists(&wharf, &["deploy", "owner"])
    });
    let dependent: Value = serde_json::from_str(
        &run(wharf
            .kubectl()
            .args(["get", "cm", "dependent", "-o", "json"]))
        .unwrap(),
    )
    .unwrap();
    let owners = dependent["metadata"]["ownerReferences"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(owners, 0, "{dependent}");
}

#[test]
fn foreground_cascading_removes_dependents_before_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    owner_and_dependent(&wharf, dir.path());
    // kubectl waits for the owner to be gone; by then the dependent must be gone too.
    run(wharf.kubectl().args([
        "delete",
        "deploy",
        "owner",
        "--cascade=foreground",
        "--timeout=20s",
    ]))
    .unwrap();
    assert!(!exists(&wharf, &["deploy", "owner"]));
    assert!(!exists(&wharf, &["cm", "dependent"]));
}

#[test]
fn deleting_a_namespace_deletes_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let wharf = Wharf::start(&dir.path().join("data")).unwrap();
    // `kubectl create` sends protobuf, which the kubectl compatibility issue adds; apply sends JSON.
    let manifest = dir.path().join("team.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: inside, namespace: team}\ndata: {a: b}\n",
    )
    .unwrap();
    run(wharf
        .kubectl()
        .args(["apply", "--validate=false", "-f"])
        .arg(&manifest))
    .unwrap();
    assert!(exists(&wharf, &["cm", "inside", "-n", "team"]));
    run(wharf
        .kubectl()
        .args(["delete", "namespace", "team", "--timeout=20s"]))
    .unwrap();
    assert!(!exists(&wharf, &["namespace", "team"]));
    assert!(!exists(&wharf, &["cm", "inside", "-n", "team"]));
    // The namespaces every cluster relies on cannot be deleted.
    let refused = wharf
        .kubectl()
        .args(["delete", "namespace", "default"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("may not be deleted"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
