//! Tests of the containerd runtime against a real containerd: each test starts its own
//! [`ManagedContainerd`] in a temporary directory (the suite runs as root, as containerd needs).
//!
//! Fixtures: `samples/out/hello-job-container.tar` (hello-job as a native program, built by
//! `make samples`) is the conformance suite's `hello`; `forever` is built here from
//! `tests/fixtures/forever.rs` (a static program that stops on SIGTERM, even as PID 1, and
//! is also the exec command: `/forever hello ...`).

mod attach;
mod exec;
mod import;
mod lifecycle;
mod pull;
mod streams;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wharf_containerd::{ContainerdConfig, ContainerdRuntime, ManagedContainerd};
use wharf_runtime::Runtime;
use wharf_runtime::conformance::{self, ExecSupport, Fixtures};

/// The image name of the `hello` fixture.
pub const HELLO: &str = "hello-job-container:latest";
/// The image name of the `forever` fixture.
pub const FOREVER: &str = "wharf-forever:latest";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An archive from `samples/out`, which `make samples` builds.
pub fn sample_archive(name: &str) -> PathBuf {
    let path = repo_root().join("samples/out").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make samples` (it builds the container sample archives)",
        path.display()
    );
    path
}

/// The `forever` fixture as an OCI image archive, built once per test run.
pub fn forever_archive() -> PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("containerd-fixtures");
            std::fs::create_dir_all(&dir).expect("fixture directory");
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/forever.rs");
            // Test processes run in parallel (nextest runs one per test): each builds under
            // its own name and renames into place, which is atomic. The process id comes first:
            // rustc names its intermediate object files after the output's stem (the name up
            // to its first dot), which must differ between the builds too.
            let own = |name: &str| dir.join(format!("{}-{name}", std::process::id()));
            let binary = dir.join("forever");
            let status = Command::new("rustc")
                .args([
                    "--edition",
                    "2024",
                    "--target",
                    "x86_64-unknown-linux-musl",
                    "-C",
                    "opt-level=2",
                    "-o",
                ])
                .arg(own("forever"))
                .arg(&source)
                .status()
                .expect("run rustc");
            assert!(
                status.success(),
                "cannot build {} (is the x86_64-unknown-linux-musl target installed? \
                 `make samples` installs it)",
                source.display()
            );
            std::fs::rename(own("forever"), &binary).expect("rename the fixture");
            let archive = dir.join("forever.tar");
            let status = Command::new("python3")
                .arg(repo_root().join("scripts/oci-pack.py"))
                .arg(&binary)
                .arg(own("forever.tar"))
                .arg(FOREVER)
                .status()
                .expect("run scripts/oci-pack.py");
            assert!(status.success(), "cannot pack {}", binary.display());
            std::fs::rename(own("forever.tar"), &archive).expect("rename the archive");
            archive
        })
        .clone()
}

/// The exec command of the conformance suite: the `forever` fixture's `hello` mode, which
/// behaves as [`ExecSupport::Command`] describes.
pub fn exec_command() -> Vec<String> {
    vec!["/forever".into(), "hello".into()]
}

/// A private containerd and a runtime connected to it. Fields drop in order: the runtime,
/// then the daemon, then its directory.
pub struct Node {
    /// The runtime under test.
    pub runtime: ContainerdRuntime,
    /// Its containerd.
    pub containerd: ManagedContainerd,
    /// Everything of this node: containerd's files, the runtime's state, logs.
    pub dir: tempfile::TempDir,
}

impl Node {
    /// The files in container `id`'s FIFO directory, sorted.
    pub fn fifo_entries(&self, id: &str) -> Vec<String> {
        let dir = self.dir.path().join("runtime/fifo").join(id);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Starts containerd in a new temporary directory and connects a runtime.
    pub async fn start() -> Node {
        let dir = tempfile::tempdir().expect("temporary directory");
        let containerd =
            ManagedContainerd::start(Path::new("containerd"), &dir.path().join("containerd"))
                .await
                .expect("start containerd");
        let runtime = ContainerdRuntime::connect(Node::config(&containerd, dir.path()))
            .await
            .expect("connect to containerd");
        Node {
            runtime,
            containerd,
            dir,
        }
    }

    /// The runtime's configuration: its state under `dir`, cgroups under `/wharf-test`.
    pub fn config(containerd: &ManagedContainerd, dir: &Path) -> ContainerdConfig {
        let mut config = ContainerdConfig::new(containerd.socket(), dir.join("runtime"));
        config.cgroup_parent = "/wharf-test".into();
        config
    }

    /// Prepares, creates and starts a `forever` container `id` (its log under `logs/`).
    pub async fn start_forever(&self, id: &str) {
        self.runtime.prepare(FOREVER).await.unwrap();
        let config = conformance::config(id, FOREVER, &self.dir.path().join("logs"));
        self.runtime.create(config).await.unwrap();
        self.runtime.start(id).await.unwrap();
    }

    /// Imports both fixtures.
    pub async fn import_fixtures(&self) -> Fixtures {
        for archive in [sample_archive("hello-job-container.tar"), forever_archive()] {
            self.runtime
                .import_archive(&archive)
                .await
                .unwrap_or_else(|e| panic!("import {}: {e}", archive.display()));
        }
        Fixtures {
            hello: HELLO.into(),
            forever: FOREVER.into(),
            exec: ExecSupport::Command(exec_command()),
        }
    }

    /// Runs `ctr` against this containerd in namespace `wharf`; returns its output lines.
    pub fn ctr(&self, args: &[&str]) -> Vec<String> {
        let output = Command::new("ctr")
            .arg("--address")
            .arg(self.containerd.socket())
            .args(["--namespace", "wharf"])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            output.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_containerd_runtime_passes_the_conformance_suite() {
    let node = Node::start().await;
    let fixtures = node.import_fixtures().await;
    let logs = node.dir.path().join("logs");
    conformance::run_all(&node.runtime, &fixtures, &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_managed_containerd_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let containerd = ManagedContainerd::start(Path::new("containerd"), dir.path())
        .await
        .expect("start containerd");
    let pid = containerd.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(containerd);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "containerd {pid} still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_containerd_binary_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = ManagedContainerd::start(Path::new("/nonexistent/containerd"), dir.path())
        .await
        .expect_err("no binary");
    assert!(err.to_string().contains("/nonexistent/containerd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_containerd_that_dies_is_started_again() {
    let dir = tempfile::tempdir().unwrap();
    let containerd = ManagedContainerd::start(Path::new("containerd"), dir.path())
        .await
        .expect("start containerd");
    let first = containerd.pid();
    std::process::Command::new("kill")
        .args(["-9", &first.to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let pid = containerd.pid();
        if pid != 0 && pid != first {
            let runtime = ContainerdRuntime::connect(Node::config(&containerd, dir.path())).await;
            if runtime.is_ok() {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "containerd was not started again"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let second = containerd.pid();
    drop(containerd);
    assert!(
        !Path::new(&format!("/proc/{second}")).exists(),
        "the restarted containerd {second} was stopped with its owner"
    );
}
