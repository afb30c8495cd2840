//! ConfigMap and Secret volumes, the same checks for a Wasm pod and a container pod (both
//! samples answer `GET /file/PATH` with the file's content): a Secret volume lives on a tmpfs
//! and its value is nowhere on the node's disk, updates of the Secret and the ConfigMap reach
//! the running pod's files, and a pod whose Secret is missing waits with Kubernetes' reasons
//! and Events until the Secret is created.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use wharf_e2e::{Agent, Wharf, eventually, run, samples_out, until, wharf_bin};

use crate::secrets::random_value;

/// `wharf up` with managed containerd and both samples loaded.
fn start_with_samples(data: &Path) -> Wharf {
    let wharf = Wharf::start_isolated_with(data, &["--containerd", "managed"]).unwrap();
    run(wharf
        .cli()
        .arg("push")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "hello-http:latest"]))
    .unwrap();
    wharf.import_image(&samples_out().join("hello-container.tar"));
    wharf
}

/// The runtimes, as (name prefix, image, runtime class).
const RUNTIMES: [(&str, &str, &str); 2] = [
    ("wasm", "hello-http:latest", "wasmtime"),
    ("ctr", "hello-container:latest", "runc"),
];

fn secret(name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: Opaque\nstringData: {{{key}: {value}}}\n"
    )
}

fn config_map(name: &str, key: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{{key}: {value}}}\n"
    )
}

/// A pod of a sample with the Secret `secret` at `/etc/creds` and, if given, the ConfigMap
/// `config` (key `greeting` as `conf/greeting.txt`) at `/etc/settings`, and a NodePort Service.
fn pod(name: &str, image: &str, runtime_class: &str, secret: &str, config: Option<&str>) -> String {
    let (config_mount, config_volume) = match config {
        Some(config) => (
            "\n    - {name: settings, mountPath: /etc/settings}".to_owned(),
            format!(
                "\n  - name: settings\n    configMap: {{name: {config}, items: [{{key: greeting, path: conf/greeting.txt}}]}}"
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  runtimeClassName: {runtime_class}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    ports: [{{containerPort: 8080}}]
    volumeMounts:
    - {{name: creds, mountPath: /etc/creds}}{config_mount}
  volumes:
  - name: creds
    secret: {{secretName: {secret}}}{config_volume}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{type: NodePort, selector: {{app: {name}}}, ports: [{{port: 80, targetPort: 8080}}]}}
"
    )
}

/// The body of a 200 answer to `GET path` through the Service `service`'s NodePort.
fn get_file(wharf: &Wharf, service: &str, path: &str) -> Option<String> {
    let port = run(wharf.kubectl().args([
        "get",
        "svc",
        service,
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]))
    .ok()?;
    let url = format!("http://{}:{}/file{path}", wharf.gateway_ip, port.trim());
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-w", "\n%{http_code}", &url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    (code.trim() == "200").then(|| body.to_owned())
}

fn pod_json(wharf: &Wharf, name: &str) -> Option<Value> {
    let out = run(wharf.kubectl().args(["get", "pod", name, "-o", "json"])).ok()?;
    serde_json::from_str(&out).ok()
}

/// The node's mounts (`/proc/self/mounts`: `wharf up` shares the test's mount namespace) under
/// `dir`, as (mount point, filesystem type).
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    // Gone (the pods dir of a node with no pods left) is no mount.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            Path::new(point)
                .starts_with(&dir)
                .then(|| (point.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// Unmounts whatever a failed test left mounted under its directory, so the temporary
/// directory can go.
struct UnmountOnDrop(std::path::PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        for (point, _) in mounts_under(&self.0) {
            let _ = Command::new("umount").args(["-l", &point]).status();
        }
    }
}

/// Every file under `dir`, on the same filesystem as `dir` (so on disk, not in a tmpfs or a
/// container's root), whose bytes contain `needle`.
fn files_on_disk_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
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
            for entry in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                pending.push(entry.path());
            }
        } else if metadata.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|window| window == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// The Events about pod `name`, as JSON objects.
pub fn events_of(wharf: &Wharf, name: &str) -> Vec<Value> {
    let out = run(wharf.kubectl().args(["get", "events", "-o", "json"])).unwrap_or_default();
    let list: Value = serde_json::from_str(&out).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name)
        .cloned()
        .collect()
}

#[test]
fn secret_volumes_live_in_memory_and_updates_reach_running_pods_on_both_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _unmount = UnmountOnDrop(dir.path().to_path_buf());
    let wharf = start_with_samples(&data);
    let value = random_value();
    wharf.apply(
        &[
            secret("creds", "password", &value),
            config_map("settings", "greeting", "hello"),
        ]
        .join("---\n"),
    );
    for (kind, image, runtime_class) in RUNTIMES {
        wharf.apply(&pod(
            &format!("{kind}-vol"),
            image,
            runtime_class,
            "creds",
            Some("settings"),
        ));
    }
    for (kind, _, _) in RUNTIMES {
        let name = format!("{kind}-vol");
        let read = eventually(&format!("{name} to serve its secret"), 90, || {
            get_file(&wharf, &name, "/etc/creds/password")
        });
        assert_eq!(read, value, "{kind}");
        let greeting = get_file(&wharf, &name, "/etc/settings/conf/greeting.txt");
        assert_eq!(
            greeting.as_deref(),
            Some("hello"),
            "{kind}: items map keys to paths"
        );
        let uid = pod_json(&wharf, &name).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_owned();
        let volume = data
            .join("node/pods")
            .join(format!("default_{name}_{uid}"))
            .join("volumes/creds");
        let mounts = mounts_under(&volume);
        assert_eq!(
            mounts,
            [(
                volume.canonicalize().unwrap().display().to_string(),
                "tmpfs".to_owned()
            )],
            "{kind}: the secret volume is a tmpfs"
        );
        // The atomic writer's layout: KEY -> ..data/KEY, ..data -> the timestamped dir.
        assert_eq!(
            std::fs::read_link(volume.join("password")).unwrap(),
            Path::new("..data/password")
        );
    }
    let found = files_on_disk_containing(&data, value.as_bytes());
    assert!(found.is_empty(), "the secret is on disk in {found:?}");

    // Updates reach the files of the running pods (environment variables would not change).
    let updated = random_value();
    wharf.apply(
        &[
            secret("creds", "password", &updated),
            config_map("settings", "greeting", "bonjour"),
        ]
        .join("---\n"),
    );
    for (kind, _, _) in RUNTIMES {
        let name = format!("{kind}-vol");
        until(&format!("{name} to see the new secret"), 10, || {
            get_file(&wharf, &name, "/etc/creds/password").as_deref() == Some(updated.as_str())
        });
        until(&format!("{name} to see the new config"), 10, || {
            get_file(&wharf, &name, "/etc/settings/conf/greeting.txt").as_deref() == Some("bonjour")
        });
        let pod = pod_json(&wharf, &name).unwrap();
        assert_eq!(
            pod["status"]["containerStatuses"][0]["restartCount"], 0,
            "{kind}: an update restarts nothing"
        );
    }
    let found = files_on_disk_containing(&data, updated.as_bytes());
    assert!(found.is_empty(), "the new secret is on disk in {found:?}");

    // After a restart of the node the pods keep one tmpfs per secret volume (reused, not
    // stacked), and updates still reach them.
    let mut wharf = wharf;
    wharf.restart().unwrap();
    let after_restart = random_value();
    wharf.apply(&secret("creds", "password", &after_restart));
    for (kind, _, _) in RUNTIMES {
        let name = format!("{kind}-vol");
        until(
            &format!("{name} to see the secret after a restart"),
            30,
            || {
                get_file(&wharf, &name, "/etc/creds/password").as_deref()
                    == Some(after_restart.as_str())
            },
        );
    }
    let tmpfs = mounts_under(&data.join("node/pods"));
    assert_eq!(tmpfs.len(), 2, "one tmpfs per pod: {tmpfs:?}");

    // A removed pod leaves no mount behind.
    run(wharf
        .kubectl()
        .args(["delete", "pod", "wasm-vol", "ctr-vol", "--wait=true"]))
    .unwrap();
    until("the pods' volumes to be unmounted", 30, || {
        mounts_under(&data.join("node/pods")).is_empty()
    });
}

#[test]
fn a_pod_whose_secret_is_missing_waits_and_starts_once_it_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let _unmount = UnmountOnDrop(dir.path().to_path_buf());
    let wharf = start_with_samples(&dir.path().join("data"));
    for (kind, image, runtime_class) in RUNTIMES {
        // A missing Secret in env: CreateContainerConfigError.
        wharf.apply(&format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {kind}-env}}
spec:
  runtimeClassName: {runtime_class}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    env:
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: {kind}-later-env, key: password}}}}
"
        ));
        // A missing Secret as a volume: ContainerCreating and a FailedMount Event.
        wharf.apply(&pod(
            &format!("{kind}-mount"),
            image,
            runtime_class,
            &format!("{kind}-later-vol"),
            None,
        ));
    }
    for (kind, _, _) in RUNTIMES {
        let env_pod = format!("{kind}-env");
        eventually(&format!("{env_pod} to wait for its secret"), 60, || {
            let pod = pod_json(&wharf, &env_pod)?;
            let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
            (waiting["reason"] == "CreateContainerConfigError"
                && waiting["message"] == format!("secret \"{kind}-later-env\" not found"))
            .then_some(())
        });
        let mount_pod = format!("{kind}-mount");
        let expected = format!(
            "MountVolume.SetUp failed for volume \"creds\" : secret \"{kind}-later-vol\" not found"
        );
        eventually(&format!("{mount_pod} to report FailedMount"), 60, || {
            events_of(&wharf, &mount_pod)
                .into_iter()
                .find(|e| e["reason"] == "FailedMount" && e["message"] == expected.as_str())
        });
        let pod = pod_json(&wharf, &mount_pod).unwrap();
        assert_eq!(
            pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating",
            "{kind}: {}",
            pod["status"]
        );
    }
    // Retries bump one Event rather than adding one per attempt.
    std::thread::sleep(std::time::Duration::from_secs(5));
    for (kind, _, _) in RUNTIMES {
        let failed: Vec<Value> = events_of(&wharf, &format!("{kind}-mount"))
            .into_iter()
            .filter(|e| e["reason"] == "FailedMount")
            .collect();
        assert_eq!(failed.len(), 1, "{kind}: {failed:?}");
        assert!(
            failed[0]["count"].as_u64().unwrap() > 1,
            "{kind}: {failed:?}"
        );
        assert_eq!(failed[0]["type"], "Warning");
    }

    let value = random_value();
    for (kind, _, _) in RUNTIMES {
        wharf.apply(
            &[
                secret(&format!("{kind}-later-env"), "password", &value),
                secret(&format!("{kind}-later-vol"), "password", &value),
            ]
            .join("---\n"),
        );
    }
    for (kind, _, _) in RUNTIMES {
        for name in [format!("{kind}-env"), format!("{kind}-mount")] {
            eventually(&format!("{name} to run once its secret exists"), 30, || {
                pod_json(&wharf, &name).filter(|pod| {
                    pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
                })
            });
        }
        let read = eventually(&format!("{kind}-mount to serve its secret"), 60, || {
            get_file(&wharf, &format!("{kind}-mount"), "/etc/creds/password")
        });
        assert_eq!(read, value, "{kind}");
    }
}

#[test]
fn an_agent_unmounts_the_secret_volumes_of_pods_deleted_while_it_was_down() {
    let dir = tempfile::tempdir().unwrap();
    let _unmount = UnmountOnDrop(dir.path().to_path_buf());
    let server = Wharf::start_server(&dir.path().join("server")).unwrap();
    let node_dir = dir.path().join("n1");
    let mut node = Agent::start(&server, "n1", &node_dir, &["--containerd", "off"]).unwrap();
    run(Command::new(wharf_bin())
        .env("KUBECONFIG", server.kubeconfig())
        .arg("push")
        .arg(samples_out().join("hello-http.wasm"))
        .args(["--name", "hello-http:latest"]))
    .unwrap();
    server.apply(&secret("creds", "password", &random_value()));
    server.apply(&pod(
        "wasm-vol",
        "hello-http:latest",
        "wasmtime",
        "creds",
        None,
    ));
    eventually("the pod to run", 60, || {
        pod_json(&server, "wasm-vol")
            .filter(|pod| pod["status"]["containerStatuses"][0]["state"]["running"].is_object())
    });
    until("its secret volume to be mounted", 10, || {
        mounts_under(&node_dir).len() == 1
    });

    node.kill9();
    run(server
        .kubectl()
        .args(["delete", "pod", "wasm-vol", "--force", "--grace-period=0"]))
    .unwrap();
    assert_eq!(mounts_under(&node_dir).len(), 1, "still mounted while down");
    node.restart().unwrap();
    until("the stale secret volume to be unmounted", 30, || {
        mounts_under(&node_dir).is_empty()
    });
}
