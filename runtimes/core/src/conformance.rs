//! The conformance suite every [`Runtime`] must pass, written once against the trait.
//!
//! Each runtime's own tests call these functions with images of their kind that behave as
//! [`Fixtures`] describes (a Wasm command for wasmtime, a container image for containerd).
//! Every function panics with a message on the first broken promise.

use std::path::Path;
use std::time::Duration;

use crate::{ContainerConfig, ContainerState, Limits, Runtime, RuntimeError, Signal};

/// Images with known behaviour.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// Prints `hello` and its arguments to stdout and a line to stderr, prints the value of env
    /// `GREETING` if set, then exits with the code in env `EXIT_CODE` (default 0).
    pub hello: String,
    /// Runs until it is stopped.
    pub forever: String,
}

/// A container config with defaults for the suite.
pub fn config(id: &str, image: &str, dir: &Path) -> ContainerConfig {
    ContainerConfig {
        id: id.to_owned(),
        image: image.to_owned(),
        args: Vec::new(),
        env: Vec::new(),
        mounts: Vec::new(),
        limits: Limits::default(),
        log_path: dir.join(format!("{id}.log")),
        allow_outgoing_http: false,
        request_timeout: Duration::from_secs(10),
    }
}

async fn run_to_exit(runtime: &dyn Runtime, config: ContainerConfig) -> crate::Exit {
    let id = config.id.clone();
    runtime.prepare(&config.image).await.expect("prepare");
    runtime.create(config).await.expect("create");
    runtime.start(&id).await.expect("start");
    tokio::time::timeout(Duration::from_secs(30), runtime.wait(&id))
        .await
        .expect("the container did not exit within 30 s")
        .expect("wait")
}

/// Output reaches the log; exit 0 is `Completed`.
pub async fn output_reaches_the_log_and_success_is_completed(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let mut config = config("hello-ok", &fixtures.hello, dir);
    config.args = vec!["first-arg".into()];
    config.env = vec![("GREETING".into(), "good morning".into())];
    let log_path = config.log_path.clone();
    let exit = run_to_exit(runtime, config).await;
    assert_eq!(
        (exit.code, exit.reason.as_str()),
        (0, "Completed"),
        "{exit:?}"
    );
    let log = std::fs::read_to_string(&log_path).expect("the log file exists");
    assert!(log.contains(" stdout F "), "no stdout record in {log}");
    assert!(log.contains(" stderr F "), "no stderr record in {log}");
    assert!(log.contains("hello"), "{log}");
    assert!(
        log.contains("first-arg"),
        "args did not reach the workload: {log}"
    );
    assert!(
        log.contains("good morning"),
        "env did not reach the workload: {log}"
    );
}

/// A non-zero exit code is reported as it is, with reason `Error`.
pub async fn the_exit_code_is_reported(runtime: &dyn Runtime, fixtures: &Fixtures, dir: &Path) {
    let mut config = config("hello-exit", &fixtures.hello, dir);
    config.env = vec![("EXIT_CODE".into(), "3".into())];
    let exit = run_to_exit(runtime, config).await;
    assert_eq!((exit.code, exit.reason.as_str()), (3, "Error"), "{exit:?}");
}

/// Kill stops a running container promptly with 137; the exit is seen by `wait` and `state`.
pub async fn kill_stops_a_running_container(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let config = config("forever-kill", &fixtures.forever, dir);
    runtime.prepare(&fixtures.forever).await.expect("prepare");
    runtime.create(config).await.expect("create");
    runtime.start("forever-kill").await.expect("start");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(runtime.state("forever-kill"), Some(ContainerState::Running));
    runtime
        .kill("forever-kill", Signal::Kill)
        .await
        .expect("kill");
    let exit = tokio::time::timeout(Duration::from_secs(10), runtime.wait("forever-kill"))
        .await
        .expect("kill did not stop the container within 10 s")
        .expect("wait");
    assert_eq!(exit.code, 137, "{exit:?}");
    assert!(matches!(
        runtime.state("forever-kill"),
        Some(ContainerState::Exited(_))
    ));
}

/// The lifecycle rejects what does not fit: starting twice, deleting while running, signalling
/// an exited container; delete removes an exited one.
pub async fn the_lifecycle_rejects_illegal_transitions(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let config = config("forever-life", &fixtures.forever, dir);
    runtime.prepare(&fixtures.forever).await.expect("prepare");
    runtime.create(config).await.expect("create");
    runtime.start("forever-life").await.expect("start");
    assert!(matches!(
        runtime.start("forever-life").await,
        Err(RuntimeError::InvalidState { .. })
    ));
    assert!(matches!(
        runtime.delete("forever-life").await,
        Err(RuntimeError::InvalidState { .. })
    ));
    runtime
        .kill("forever-life", Signal::Terminate)
        .await
        .expect("terminate");
    runtime.wait("forever-life").await.expect("wait");
    assert!(matches!(
        runtime.kill("forever-life", Signal::Kill).await,
        Err(RuntimeError::InvalidState { .. })
    ));
    runtime.delete("forever-life").await.expect("delete");
    assert_eq!(runtime.state("forever-life"), None);
    assert!(matches!(
        runtime.wait("forever-life").await,
        Err(RuntimeError::NotFound(_))
    ));
}

/// An image that does not exist is `ImageNotFound`, and nothing is created.
pub async fn a_missing_image_is_reported(runtime: &dyn Runtime, dir: &Path) {
    let image = "does-not-exist-anywhere:1";
    let err = runtime
        .prepare(image)
        .await
        .expect_err("prepare of a missing image");
    assert!(matches!(err, RuntimeError::ImageNotFound { .. }), "{err:?}");
    let err = runtime
        .create(config("missing", image, dir))
        .await
        .expect_err("create from a missing image");
    assert!(matches!(err, RuntimeError::ImageNotFound { .. }), "{err:?}");
}

/// Runs the whole suite.
pub async fn run_all(runtime: &dyn Runtime, fixtures: &Fixtures, dir: &Path) {
    output_reaches_the_log_and_success_is_completed(runtime, fixtures, dir).await;
    the_exit_code_is_reported(runtime, fixtures, dir).await;
    kill_stops_a_running_container(runtime, fixtures, dir).await;
    the_lifecycle_rejects_illegal_transitions(runtime, fixtures, dir).await;
    a_missing_image_is_reported(runtime, dir).await;
}
