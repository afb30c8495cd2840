//! Images pulled from an OCI registry: a real registry (Debian's `docker-registry`) on loopback,
//! the fixtures' OCI archives pushed to it with oci-client, and the ways a pull fails.

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use wharf_containerd::ContainerdRuntime;
use wharf_runtime::conformance::config;
use wharf_runtime::{Runtime, RuntimeError};

use crate::{Node, sample_archive};

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A `docker-registry` serving from a directory, on a free loopback port; stopped when dropped.
struct Registry {
    child: Child,
    /// `127.0.0.1:PORT`, as image references name it.
    address: String,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        std::fs::create_dir_all(dir).unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: {address}\n",
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
        let registry = Registry { child, address };
        let started = Instant::now();
        while TcpStream::connect(&registry.address).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// The blobs of an OCI image archive (as `scripts/oci-pack.py` writes it: one image).
struct Archive {
    blobs: HashMap<String, Vec<u8>>,
    manifest: String,
}

impl Archive {
    fn read(path: &Path) -> Archive {
        let mut tar = tar::Archive::new(std::fs::File::open(path).unwrap());
        let mut blobs = HashMap::new();
        let mut index = None;
        for entry in tar.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if name == "index.json" {
                index = Some(bytes);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                blobs.insert(format!("sha256:{hex}"), bytes);
            }
        }
        let index: serde_json::Value = serde_json::from_slice(&index.unwrap()).unwrap();
        let manifest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
        Archive { blobs, manifest }
    }

    fn manifest_bytes(&self) -> &[u8] {
        &self.blobs[&self.manifest]
    }

    /// The digests of the configuration and layers.
    fn children(&self) -> Vec<String> {
        let manifest: serde_json::Value = serde_json::from_slice(self.manifest_bytes()).unwrap();
        let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
        for layer in manifest["layers"].as_array().unwrap() {
            digests.push(layer["digest"].as_str().unwrap().to_owned());
        }
        digests
    }

    /// Pushes the image's blobs and its manifest as `reference` (a tag, or a digest).
    async fn push(&self, client: &Client, reference: &str) {
        let reference: Reference = reference.parse().unwrap();
        for digest in self.children() {
            client
                .push_blob(&reference, &self.blobs[&digest], &digest)
                .await
                .unwrap_or_else(|e| panic!("push blob {digest}: {e}"));
        }
        client
            .push_manifest_raw(
                &reference,
                self.manifest_bytes().to_vec(),
                MANIFEST_TYPE.parse().unwrap(),
            )
            .await
            .expect("push the manifest");
    }

    /// The manifest's descriptor in an index, for a platform.
    fn index_entry(&self, architecture: &str) -> serde_json::Value {
        serde_json::json!({
            "mediaType": MANIFEST_TYPE,
            "digest": self.manifest,
            "size": self.manifest_bytes().len(),
            "platform": {"architecture": architecture, "os": "linux"},
        })
    }
}

fn registry_client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

/// Runs the image as a container with `EXIT_CODE=3`; returns its exit code and log.
async fn run_hello(
    node: &Node,
    runtime: &ContainerdRuntime,
    id: &str,
    image: &str,
) -> (i32, String) {
    let mut container = config(id, image, &node.dir.path().join("logs"));
    container.env = vec![
        ("GREETING".into(), "pulled from a registry".into()),
        ("EXIT_CODE".into(), "3".into()),
    ];
    let log_path = container.log_path.clone();
    runtime.create(container).await.expect("create");
    runtime.start(id).await.expect("start");
    let exit = tokio::time::timeout(Duration::from_secs(30), runtime.wait(id))
        .await
        .expect("the container did not exit within 30 s")
        .expect("wait");
    runtime.delete(id).await.expect("delete");
    (exit.code, std::fs::read_to_string(log_path).unwrap())
}

/// Makes containerd collect garbage now: deleting a lease with `--sync` runs a collection.
fn collect_garbage(node: &Node) {
    node.ctr(&["leases", "create", "--id", "wharf-test-gc"]);
    node.ctr(&["leases", "delete", "--sync", "wharf-test-gc"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_pulled_from_a_registry_runs_and_survives_garbage_collection() {
    let node = Node::start().await;
    let registry = Registry::start(&node.dir.path().join("registry"));
    let hello = Archive::read(&sample_archive("hello-job-container.tar"));
    let server = Archive::read(&sample_archive("hello-container.tar"));
    let client = registry_client();
    let plain = format!("{}/apps/hello:1", registry.address);
    hello.push(&client, &plain).await;
    // An index for two platforms: this machine's (amd64, like the fixtures' binaries) is
    // hello; the other one, never to be pulled, is a server that would not exit.
    let repository = format!("{}/apps/hello", registry.address);
    server
        .push(&client, &format!("{repository}@{}", server.manifest))
        .await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [server.index_entry("s390x"), hello.index_entry("amd64")],
    }))
    .unwrap();
    let multi = format!("{repository}:multi");
    client
        .push_manifest_raw(
            &multi.parse().unwrap(),
            index.clone(),
            INDEX_TYPE.parse().unwrap(),
        )
        .await
        .expect("push the index");

    let runtime = &node.runtime;
    runtime.prepare(&plain).await.expect("pull and prepare");
    let (code, log) = run_hello(&node, runtime, "pulled-plain", &plain).await;
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("pulled from a registry"), "{log}");

    runtime.prepare(&multi).await.expect("pull the index");
    let (code, log) = run_hello(&node, runtime, "pulled-multi", &multi).await;
    assert_eq!(code, 3, "the index's amd64 manifest should run: {log}");

    let mut images = node.ctr(&["images", "ls", "-q"]);
    images.sort();
    assert_eq!(images, [plain.clone(), multi.clone()]);
    let listed = node.ctr(&["images", "ls"]);
    let multi_line = listed.iter().find(|l| l.starts_with(&multi)).unwrap();
    assert!(multi_line.contains(INDEX_TYPE), "{listed:?}");
    assert_eq!(node.ctr(&["leases", "ls", "-q"]), Vec::<String>::new());

    // The images' labels keep every blob they need through a collection: the index, the chosen
    // manifest, its configuration and layers. The other platform's were never pulled.
    collect_garbage(&node);
    let content = node.ctr(&["content", "ls", "-q"]);
    let index_digest = format!("sha256:{}", sha256_hex(&index));
    let mut needed = hello.children();
    needed.push(hello.manifest.clone());
    needed.push(index_digest);
    for digest in &needed {
        assert!(
            content.contains(digest),
            "{digest} was collected: {content:?}"
        );
    }
    for digest in server.children() {
        assert!(
            !content.contains(&digest),
            "{digest} should not have been pulled"
        );
    }
    assert_eq!(content.len(), needed.len(), "{content:?}");

    // Once pulled, an image needs its registry no more: a new runtime (an agent restart)
    // prepares it from containerd.
    drop(registry);
    let again = ContainerdRuntime::connect(Node::config(&node.containerd, node.dir.path()))
        .await
        .expect("connect again");
    again
        .prepare(&plain)
        .await
        .expect("prepare without the registry");
    assert_eq!(node.ctr(&["containers", "ls", "-q"]), Vec::<String>::new());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn image_not_found(result: Result<(), RuntimeError>) -> (String, String) {
    match result {
        Err(RuntimeError::ImageNotFound { image, detail }) => (image, detail),
        other => panic!("expected ImageNotFound, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_tag_or_repository_is_image_not_found() {
    let node = Node::start().await;
    let registry = Registry::start(&node.dir.path().join("registry"));
    let hello = Archive::read(&sample_archive("hello-job-container.tar"));
    hello
        .push(
            &registry_client(),
            &format!("{}/apps/hello:1", registry.address),
        )
        .await;

    let missing_tag = format!("{}/apps/hello:9.9", registry.address);
    let (image, detail) = image_not_found(node.runtime.prepare(&missing_tag).await);
    assert_eq!(image, missing_tag);
    assert!(
        detail.contains(&registry.address) && detail.contains("apps/hello:9.9"),
        "the detail should name the registry and the tag: {detail}"
    );
    assert!(detail.contains("has no manifest"), "{detail}");

    let missing_repository = format!("{}/apps/nope:1", registry.address);
    let (_, detail) = image_not_found(node.runtime.prepare(&missing_repository).await);
    assert!(detail.contains("apps/nope:1"), "{detail}");
    assert!(detail.contains("has no manifest"), "{detail}");

    assert_eq!(node.ctr(&["images", "ls", "-q"]), Vec::<String>::new());
    assert_eq!(node.ctr(&["leases", "ls", "-q"]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_image_not_found_at_once() {
    let node = Node::start().await;
    let address = format!("127.0.0.1:{}", free_port());
    let reference = format!("{address}/apps/hello:1");
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), node.runtime.prepare(&reference))
        .await
        .expect("a closed port should fail at once, not hang");
    let (image, detail) = image_not_found(result);
    assert_eq!(image, reference);
    assert!(
        detail.contains(&address) && detail.contains("does not answer"),
        "the detail should say which registry does not answer: {detail}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(node.ctr(&["images", "ls", "-q"]), Vec::<String>::new());
    assert_eq!(node.ctr(&["leases", "ls", "-q"]), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_does_not_match_its_digest_is_refused_and_leaves_nothing_behind() {
    let node = Node::start().await;
    let registry_dir = node.dir.path().join("registry");
    let registry = Registry::start(&registry_dir);
    let hello = Archive::read(&sample_archive("hello-job-container.tar"));
    let reference = format!("{}/apps/hello:1", registry.address);
    hello.push(&registry_client(), &reference).await;
    // The registry checked the layer when it was pushed; damage it where the registry keeps
    // it, as a failing disk or a hostile mirror would, keeping its size.
    let layer = hello.children()[1].clone();
    let hex = layer.strip_prefix("sha256:").unwrap();
    let stored = registry_dir
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&stored).expect("the registry's copy of the layer");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    match node.runtime.prepare(&reference).await {
        Err(RuntimeError::InvalidArtifact { image, detail }) => {
            assert_eq!(image, reference);
            assert!(
                detail.contains(&layer) && detail.contains("digest"),
                "the detail should name the damaged layer: {detail}"
            );
        }
        other => panic!("expected InvalidArtifact, got {other:?}"),
    }
    assert_eq!(node.ctr(&["images", "ls", "-q"]), Vec::<String>::new());
    assert_eq!(node.ctr(&["leases", "ls", "-q"]), Vec::<String>::new());
    // No half-written blob stays in the content store's ingests, nor the layer itself.
    let active = node.ctr(&["content", "active"]);
    assert!(
        active.iter().all(|line| line.starts_with("REF")),
        "{active:?}"
    );
    assert!(!node.ctr(&["content", "ls", "-q"]).contains(&layer));
}
