//! Tests of the wasmtime runtime: the shared conformance suite, hostile guests, the compile
//! cache, and in-process HTTP. Guests are the samples built by `make samples` and small WAT
//! modules written here for the hostile cases.

mod attach;
mod hostile;
mod http;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_runtime::conformance::{self, ExecSupport, Fixtures};
use wharf_wasmtime::artifact::DirectorySource;
use wharf_wasmtime::{WasmtimeConfig, WasmtimeRuntime};

/// Where `make samples` puts the sample artifacts.
pub fn samples_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples/out");
    assert!(
        dir.join("hello-job.wasm").exists() && dir.join("hello-http.wasm").exists(),
        "the sample artifacts are missing in {}: run `make samples` (make test does)",
        dir.display()
    );
    dir
}

/// A runtime whose images are files: the samples, plus anything written to `images`.
pub fn runtime(images: &Path, cache: &Path) -> WasmtimeRuntime {
    for sample in ["hello-job", "hello-job-p1", "hello-http"] {
        let from = samples_dir().join(format!("{sample}.wasm"));
        std::fs::copy(&from, images.join(format!("{sample}.wasm"))).expect("copy sample");
    }
    WasmtimeRuntime::new(
        WasmtimeConfig {
            cache_dir: cache.to_path_buf(),
            max_instances: 100,
        },
        Arc::new(DirectorySource::new(images)),
    )
    .expect("runtime")
}

/// Writes a WAT module as a binary image named `name`.
pub fn wat_image(images: &Path, name: &str, wat: &str) -> String {
    let bytes = wat::parse_str(wat).expect("valid WAT");
    std::fs::write(images.join(format!("{name}.wasm")), bytes).unwrap();
    format!("{name}:latest")
}

/// A WASI command that never ends, burning CPU, with one page of memory.
pub const FOREVER: &str = r#"(module (memory 1) (func (export "_start") (loop (br 0))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasmtime_runtime_passes_the_conformance_suite_with_a_component() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let fixtures = Fixtures {
        hello: "hello-job:latest".into(),
        forever: wat_image(dir.path(), "forever", FOREVER),
        exec: ExecSupport::Unsupported,
    };
    conformance::run_all(&runtime, &fixtures, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wasmtime_runtime_passes_the_conformance_suite_with_a_core_module() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path(), &dir.path().join("cache"));
    let fixtures = Fixtures {
        hello: "hello-job-p1:latest".into(),
        forever: wat_image(dir.path(), "forever", FOREVER),
        exec: ExecSupport::Unsupported,
    };
    conformance::run_all(&runtime, &fixtures, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_new_image_that_start_together_share_one_compilation() {
    use wharf_runtime::Runtime;
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(runtime(dir.path(), &dir.path().join("cache")));
    let mut prepares = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let runtime = runtime.clone();
        prepares.spawn(async move { runtime.prepare("hello-http:latest").await });
    }
    while let Some(prepared) = prepares.join_next().await {
        prepared.unwrap().expect("prepared");
    }
    assert_eq!(runtime.compilations(), 1);
}
