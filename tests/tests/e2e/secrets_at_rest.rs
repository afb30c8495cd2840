//! Secrets passed to containers as environment variables never reach the node's disk: the
//! managed containerd keeps its state (task bundles' `config.json`) and its metadata database
//! (every container's OCI spec) on tmpfs mounts. No file under the data dir on the data dir's
//! own file system (as `find -xdev` sees it) holds the value, plain or base64, while the
//! container runs; and the metadata outlives a restart of Wharf, which takes the container over.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use wharf_e2e::{Wharf, eventually, mount_points_under, run, samples_out, until};

use crate::secrets::random_value;

/// A Deployment of the container sample whose `PASSWORD` comes from the Secret `db`, and its
/// NodePort Service.
const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: env-secret, labels: {app: env-secret}}
spec:
  replicas: 1
  selector: {matchLabels: {app: env-secret}}
  template:
    metadata: {labels: {app: env-secret}}
    spec:
      runtimeClassName: runc
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: hello-container:latest
        ports: [{containerPort: 8080}]
        env:
        - name: PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
---
apiVersion: v1
kind: Service
metadata: {name: env-secret}
spec: {type: NodePort, selector: {app: env-secret}, ports: [{port: 8080, targetPort: 8080, nodePort: 30083}]}
";

/// Every regular file under `dir` on `dir`'s own file system (`find DIR -xdev -type f`) whose
/// bytes contain `needle`.
fn files_on_disk_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let device = std::fs::metadata(dir).unwrap().dev();
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(metadata) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if metadata.dev() != device {
            continue;
        }
        if metadata.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|entry| entry.path()));
            }
        } else if metadata.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path);
            }
        }
    }
    found
}

fn assert_not_on_disk(data: &Path, value: &str) {
    // Without padding, as the acceptance check greps it: found inside any padded encoding.
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(value);
    for needle in [value, encoded.as_str()] {
        let found = files_on_disk_containing(data, needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} found on disk in {found:?}");
    }
}

fn pod_field(wharf: &Wharf, path: &str) -> String {
    run(wharf.kubectl().args([
        "get",
        "pods",
        "-l",
        "app=env-secret",
        "-o",
        &format!("jsonpath={{.items[0]{path}}}"),
    ]))
    .unwrap_or_default()
}

/// `GET /env/PASSWORD` through the NodePort, if it answers 200.
fn password_served(wharf: &Wharf) -> Option<String> {
    let url = format!("http://{}:30083/env/PASSWORD", wharf.gateway_ip);
    let out = Command::new("curl")
        .args(["-sf", "-m", "3", &url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn secret_env_vars_of_containers_stay_off_disk_and_their_metadata_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut wharf = Wharf::start_isolated_with(&data, &["--containerd", "managed"]).unwrap();
    wharf.import_image(&samples_out().join("hello-container.tar"));
    let value = random_value();
    run(wharf.kubectl().args([
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={value}"),
    ]))
    .unwrap();
    let manifest = dir.path().join("env-secret.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    run(wharf.kubectl().args(["apply", "-f"]).arg(&manifest)).unwrap();
    let served = eventually("the container to serve its PASSWORD", 90, || {
        password_served(&wharf)
    });
    assert_eq!(served, value);

    // The state and the metadata database are tmpfs mounts, and nothing else holds the value.
    let containerd = data.join("containerd").canonicalize().unwrap();
    let mounts = mount_points_under(&data);
    for kept in ["state", "root/io.containerd.metadata.v1.bolt"] {
        assert!(
            mounts.contains(&containerd.join(kept)),
            "{kept} is not a mount point: {mounts:?}"
        );
    }
    // The value is in the container's spec in the metadata database (so the check below
    // would see it there, were it on disk).
    let meta_db =
        std::fs::read(containerd.join("root/io.containerd.metadata.v1.bolt/meta.db")).unwrap();
    assert!(
        meta_db
            .windows(value.len())
            .any(|window| window == value.as_bytes()),
        "the value is not in the metadata database"
    );
    assert_not_on_disk(&data, &value);

    // Wharf restarts: the metadata is still there, so the same container is taken over and
    // goes on serving.
    let pod = pod_field(&wharf, ".metadata.name");
    let container_id = pod_field(&wharf, ".status.containerStatuses[0].containerID");
    wharf.restart().unwrap();
    until("the NodePort to answer after the restart", 30, || {
        password_served(&wharf).as_deref() == Some(value.as_str())
    });
    assert!(
        !wharf.log_tail().contains("cannot keep"),
        "{}",
        wharf.log_tail()
    );
    assert_eq!(pod_field(&wharf, ".metadata.name"), pod);
    assert_eq!(
        pod_field(&wharf, ".status.containerStatuses[0].containerID"),
        container_id,
        "the same container, taken over"
    );
    assert_eq!(
        pod_field(&wharf, ".status.containerStatuses[0].restartCount"),
        "0"
    );
    assert_not_on_disk(&data, &value);
}
