//! Wasm artifacts from an OCI registry: a real registry (Debian's docker-registry) on loopback,
//! an artifact pushed with the Wasm layer media type, a pod that names it in `image:`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use wharf_e2e::{Wharf, free_port, run, samples_out};

/// A docker-registry serving from a temporary directory; stopped when dropped.
struct Registry {
    child: Child,
    address: String,
}

impl Registry {
    fn start(dir: &std::path::Path) -> Registry {
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed by scripts/setup.sh (make test runs it)");
        let started = Instant::now();
        while wharf_e2e::http_get_blocking(port, "/v2/").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry { child, address }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn push_wasm(reference: &str, bytes: Vec<u8>) {
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let reference: Reference = reference.parse().unwrap();
    let layer = ImageLayer::new(
        bytes,
        "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm".into(),
        None,
    );
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    client
        .push(&reference, &[layer], config, &RegistryAuth::Anonymous, None)
        .await
        .expect("push to the local registry");
}

#[test]
fn a_pod_runs_a_wasm_component_pulled_from_an_oci_registry() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let image = format!("{}/functions/hello-http:1.0", registry.address);
    let bytes = std::fs::read(samples_out().join("hello-http.wasm")).unwrap();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(push_wasm(&image, bytes));

    let wharf = Wharf::start_isolated(&dir.path().join("data")).unwrap();
    let manifest = dir.path().join("m.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: from-registry, labels: {{app: from-registry}}}}
spec:
  containers: [{{name: web, image: \"{image}\", ports: [{{containerPort: 8080}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: missing-tag}}
spec:
  runtimeClassName: wasmtime
  containers: [{{name: web, image: \"{}/functions/hello-http:9.9\"}}]
---
apiVersion: v1
kind: Service
metadata: {{name: from-registry}}
spec:
  type: NodePort
  selector: {{app: from-registry}}
  ports: [{{port: 8080, nodePort: 30090}}]
",
            registry.address
        ),
    )
    .unwrap();
    run(wharf.kubectl().args(["apply", "-f"]).arg(&manifest)).unwrap();

    // No runtimeClassName: the Wasm layer alone makes it a wasmtime pod.
    let url = format!("http://{}:30090/", wharf.gateway_ip);
    let started = Instant::now();
    loop {
        let answered = Command::new("curl")
            .args(["-sf", "-m", "5", &url])
            .output()
            .is_ok_and(|o| {
                o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Hello")
            });
        if answered {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pulled function did not answer: {}",
            run(wharf
                .kubectl()
                .args(["get", "pod", "from-registry", "-o", "yaml"]))
            .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = run(wharf.kubectl().args([
        "get",
        "pod",
        "missing-tag",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
    ]))
    .unwrap();
    assert_eq!(status, "ErrImagePull");
}
