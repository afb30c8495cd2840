//! The conformance suite every [`Runtime`] must pass, written once against the trait.
//!
//! Each runtime's own tests call these functions with images of their kind that behave as
//! [`Fixtures`] describes (a Wasm command for wasmtime, a container image for containerd).
//! Every function panics with a message on the first broken promise. What a runtime supports
//! beyond the common verbs it declares in its fixtures ([`ExecSupport`]), and [`run_all`]
//! runs the cases that fit.

use std::path::Path;
use std::time::Duration;

use crate::{
    ContainerConfig, ContainerState, ContainerStats, EXEC_OUTPUT_LIMIT, ExecOutput, ExecRequest,
    ExecSession, Limits, Runtime, RuntimeError, Signal, Stdio,
};

/// Images with known behaviour.
#[derive(Clone, Debug)]
pub struct Fixtures {
    /// Prints `hello` and its arguments to stdout and a line to stderr, prints the value of env
    /// `GREETING` if set, then exits with the code in env `EXIT_CODE` (default 0). With env
    /// `ECHO_STDIN` set, before that line to stderr it copies its stdin to stdout upper-cased,
    /// line by line, until end of file.
    pub hello: String,
    /// Runs until it is stopped, holding some memory while it runs; with env `BURN_CPU` set
    /// it burns CPU all the while (it may always do so).
    pub forever: String,
    /// Whether the runtime supports [`Runtime::exec`], and what to exec in `forever`.
    pub exec: ExecSupport,
}

/// Whether a runtime supports [`Runtime::exec`], and the command the suite execs.
#[derive(Clone, Debug)]
pub enum ExecSupport {
    /// Exec fails with [`RuntimeError::Unsupported`] for every known container (and
    /// [`RuntimeError::NotFound`] for unknown ones).
    Unsupported,
    /// Exec works in a running `forever` container, whose image has this command (argv): run
    /// with further arguments, it prints `hello` and the arguments to stdout and a line to
    /// stderr, prints the value of env `GREETING` if set and env `PRINT_BYTES` bytes if set,
    /// sleeps env `SLEEP_SECONDS` seconds if set, then exits with the code in env `EXIT_CODE`
    /// (default 0).
    Command(Vec<String>),
}

/// A container config with defaults for the suite.
pub fn config(id: &str, image: &str, dir: &Path) -> ContainerConfig {
    ContainerConfig {
        id: id.to_owned(),
        image: image.to_owned(),
        command: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        working_dir: None,
        run_as: Default::default(),
        mounts: Vec::new(),
        network_namespace: None,
        limits: Limits::default(),
        log_path: dir.join(format!("{id}.log")),
        allow_outgoing_http: false,
        request_timeout: Duration::from_secs(10),
        stdio: Stdio::default(),
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
    // SIGKILL, not SIGTERM: right after `start` a container process may not have installed
    // its SIGTERM handler yet, and as PID 1 it would ignore the signal.
    runtime
        .kill("forever-life", Signal::Kill)
        .await
        .expect("kill");
    tokio::time::timeout(Duration::from_secs(10), runtime.wait("forever-life"))
        .await
        .expect("the killed container did not exit within 10 s")
        .expect("wait");
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

/// Starts a `forever` container with `env` and checks that it runs.
async fn start_forever(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
    id: &str,
    env: &[(&str, &str)],
) {
    let mut config = config(id, &fixtures.forever, dir);
    config.env = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    runtime.prepare(&fixtures.forever).await.expect("prepare");
    runtime.create(config).await.expect("create");
    runtime.start(id).await.expect("start");
    assert_eq!(runtime.state(id), Some(ContainerState::Running));
}

/// Kills, waits for and deletes a container.
async fn remove(runtime: &dyn Runtime, id: &str) {
    runtime.kill(id, Signal::Kill).await.expect("kill");
    tokio::time::timeout(Duration::from_secs(10), runtime.wait(id))
        .await
        .expect("kill did not stop the container within 10 s")
        .expect("wait");
    runtime.delete(id).await.expect("delete");
}

/// The exec command of the fixtures; panics for a runtime that declares exec unsupported.
fn exec_command(fixtures: &Fixtures) -> &[String] {
    match &fixtures.exec {
        ExecSupport::Command(command) => command,
        ExecSupport::Unsupported => panic!("this case needs a runtime that supports exec"),
    }
}

/// A request to run `command` followed by `args`, with `env` and a timeout.
pub fn exec_request(
    command: &[String],
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> ExecRequest {
    let argv = command
        .iter()
        .cloned()
        .chain(args.iter().map(|arg| arg.to_string()))
        .collect();
    let mut request = ExecRequest::new(argv, timeout);
    request.env = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    request
}

/// Runs an exec that must end well within `limit`.
async fn exec_within(
    runtime: &dyn Runtime,
    id: &str,
    request: ExecRequest,
    limit: Duration,
) -> Result<ExecOutput, RuntimeError> {
    tokio::time::timeout(limit, runtime.exec(id, request))
        .await
        .unwrap_or_else(|_| panic!("exec in {id:?} did not return within {limit:?}"))
}

/// Exec runs a command in a running container with the container's environment (plus the
/// request's) and returns its exit code and output, which does not reach the container's log;
/// the container goes on running.
pub async fn exec_runs_a_command_with_the_containers_environment(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let command = exec_command(fixtures);
    let id = "exec-hello";
    start_forever(
        runtime,
        fixtures,
        dir,
        id,
        &[("GREETING", "from the container")],
    )
    .await;
    let limit = Duration::from_secs(30);
    let request = exec_request(command, &["first-arg"], &[], limit);
    let output = exec_within(runtime, id, request, limit)
        .await
        .expect("exec");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.exit_code, 0, "{output:?}");
    assert!(stdout.contains("hello first-arg"), "{output:?}");
    assert!(
        stdout.contains("from the container"),
        "the container's env did not reach the exec: {output:?}"
    );
    assert!(!output.stderr.is_empty(), "no stderr: {output:?}");
    assert!(!output.stdout_truncated && !output.stderr_truncated);

    let request = exec_request(command, &[], &[("GREETING", "from the exec")], limit);
    let output = exec_within(runtime, id, request, limit)
        .await
        .expect("exec with env");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("from the exec"), "{output:?}");
    assert!(
        !stdout.contains("from the container"),
        "the exec's env did not replace the container's: {output:?}"
    );

    assert_eq!(runtime.state(id), Some(ContainerState::Running));
    let log = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap_or_default();
    assert!(
        !log.contains("first-arg"),
        "exec output reached the container's log: {log}"
    );
    remove(runtime, id).await;
}

/// A command that exits with a non-zero code is a successful exec reporting that code.
pub async fn exec_reports_a_non_zero_exit_code(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let id = "exec-exit-code";
    start_forever(runtime, fixtures, dir, id, &[]).await;
    let limit = Duration::from_secs(30);
    let request = exec_request(exec_command(fixtures), &[], &[("EXIT_CODE", "3")], limit);
    let output = exec_within(runtime, id, request, limit)
        .await
        .expect("exec");
    assert_eq!(output.exit_code, 3, "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("hello"));
    remove(runtime, id).await;
}

/// A command that does not exist is `StartFailed` naming it, at once rather than at the
/// timeout; the container is not affected.
pub async fn exec_of_a_missing_command_fails_to_start(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let id = "exec-missing";
    start_forever(runtime, fixtures, dir, id, &[]).await;
    let missing = ["/wharf-no-such-command".to_owned()];
    let request = exec_request(&missing, &["arg"], &[], Duration::from_secs(120));
    let err = exec_within(runtime, id, request, Duration::from_secs(30))
        .await
        .expect_err("exec of a missing command");
    assert!(
        matches!(&err, RuntimeError::StartFailed(m) if m.contains("wharf-no-such-command")),
        "{err:?}"
    );
    let request = ExecRequest::new(Vec::new(), Duration::from_secs(10));
    let err = exec_within(runtime, id, request, Duration::from_secs(30))
        .await
        .expect_err("exec of no command");
    assert!(matches!(err, RuntimeError::StartFailed(_)), "{err:?}");
    assert_eq!(runtime.state(id), Some(ContainerState::Running));
    remove(runtime, id).await;
}

/// A command that runs past its timeout is killed and reported as `TimedOut`; the container
/// goes on running and takes further execs.
pub async fn exec_past_its_timeout_is_killed(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let command = exec_command(fixtures);
    let id = "exec-timeout";
    start_forever(runtime, fixtures, dir, id, &[]).await;
    let request = exec_request(
        command,
        &[],
        &[("SLEEP_SECONDS", "600")],
        Duration::from_secs(1),
    );
    let err = exec_within(runtime, id, request, Duration::from_secs(20))
        .await
        .expect_err("exec past its timeout");
    assert!(matches!(err, RuntimeError::TimedOut(_)), "{err:?}");
    assert_eq!(runtime.state(id), Some(ContainerState::Running));
    let limit = Duration::from_secs(30);
    let output = exec_within(runtime, id, exec_request(command, &[], &[], limit), limit)
        .await
        .expect("exec after a timeout");
    assert_eq!(output.exit_code, 0, "{output:?}");
    remove(runtime, id).await;
}

/// Output beyond [`EXEC_OUTPUT_LIMIT`] is cut (and said to be), without blocking the command.
pub async fn exec_output_is_capped(runtime: &dyn Runtime, fixtures: &Fixtures, dir: &Path) {
    let id = "exec-capped";
    start_forever(runtime, fixtures, dir, id, &[]).await;
    let bytes = (2 * EXEC_OUTPUT_LIMIT + 1).to_string();
    let limit = Duration::from_secs(30);
    let request = exec_request(
        exec_command(fixtures),
        &[],
        &[("PRINT_BYTES", &bytes)],
        limit,
    );
    let output = exec_within(runtime, id, request, limit)
        .await
        .expect("exec");
    assert_eq!(output.exit_code, 0);
    assert_eq!(output.stdout.len(), EXEC_OUTPUT_LIMIT);
    assert!(output.stdout.starts_with(b"hello"));
    assert!(output.stdout_truncated);
    assert!(!output.stderr_truncated);
    remove(runtime, id).await;
}

/// Exec needs a running container: `NotFound` for an unknown one, `InvalidState` for one that
/// was created but not started, or has exited.
pub async fn exec_needs_a_running_container(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let request = exec_request(exec_command(fixtures), &[], &[], Duration::from_secs(10));
    let limit = Duration::from_secs(30);
    let err = exec_within(runtime, "exec-nobody", request.clone(), limit)
        .await
        .expect_err("exec in an unknown container");
    assert!(matches!(err, RuntimeError::NotFound(_)), "{err:?}");

    let id = "exec-not-running";
    runtime.prepare(&fixtures.forever).await.expect("prepare");
    runtime
        .create(config(id, &fixtures.forever, dir))
        .await
        .expect("create");
    let err = exec_within(runtime, id, request.clone(), limit)
        .await
        .expect_err("exec in a created container");
    assert!(
        matches!(
            err,
            RuntimeError::InvalidState {
                state: "created",
                ..
            }
        ),
        "{err:?}"
    );
    runtime.start(id).await.expect("start");
    runtime.kill(id, Signal::Kill).await.expect("kill");
    runtime.wait(id).await.expect("wait");
    let err = exec_within(runtime, id, request, limit)
        .await
        .expect_err("exec in an exited container");
    assert!(
        matches!(
            err,
            RuntimeError::InvalidState {
                state: "exited",
                ..
            }
        ),
        "{err:?}"
    );
    runtime.delete(id).await.expect("delete");
}

/// A runtime that declares exec unsupported says so with `Unsupported` (and `NotFound` for an
/// unknown container).
pub async fn exec_is_reported_as_unsupported(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let id = "exec-unsupported";
    start_forever(runtime, fixtures, dir, id, &[]).await;
    let request = ExecRequest::new(vec!["/bin/true".into()], Duration::from_secs(10));
    let limit = Duration::from_secs(30);
    let err = exec_within(runtime, id, request.clone(), limit)
        .await
        .expect_err("exec where unsupported");
    assert!(matches!(err, RuntimeError::Unsupported(_)), "{err:?}");
    let err = exec_within(runtime, "exec-nobody", request, limit)
        .await
        .expect_err("exec in an unknown container");
    assert!(matches!(err, RuntimeError::NotFound(_)), "{err:?}");
    remove(runtime, id).await;
}

/// Runs the exec cases that fit what the runtime declares in `fixtures.exec`.
pub async fn exec_behaves_as_declared(runtime: &dyn Runtime, fixtures: &Fixtures, dir: &Path) {
    match fixtures.exec {
        ExecSupport::Command(_) => {
            exec_runs_a_command_with_the_containers_environment(runtime, fixtures, dir).await;
            exec_reports_a_non_zero_exit_code(runtime, fixtures, dir).await;
            exec_of_a_missing_command_fails_to_start(runtime, fixtures, dir).await;
            exec_past_its_timeout_is_killed(runtime, fixtures, dir).await;
            exec_output_is_capped(runtime, fixtures, dir).await;
            exec_needs_a_running_container(runtime, fixtures, dir).await;
        }
        ExecSupport::Unsupported => {
            exec_is_reported_as_unsupported(runtime, fixtures, dir).await;
        }
    }
}

/// How much CPU time a busy container must be seen to use in
/// [`stats_show_cpu_rising_and_memory_held`].
pub const STATS_CPU_GROWTH: Duration = Duration::from_millis(200);

/// Samples `stats` of `id` until `done` holds of a sample; panics after `limit`, or if the CPU
/// time ever goes backwards.
pub async fn stats_until(
    runtime: &dyn Runtime,
    id: &str,
    limit: Duration,
    mut done: impl FnMut(&ContainerStats) -> bool,
) -> ContainerStats {
    let deadline = tokio::time::Instant::now() + limit;
    let mut previous = ContainerStats::default();
    loop {
        let stats = runtime.stats(id).await.expect("stats");
        assert!(
            stats.cpu_usage_ns >= previous.cpu_usage_ns,
            "the CPU time of {id} went backwards: {previous:?}, then {stats:?}"
        );
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stats of {id} did not get there within {limit:?}: last {stats:?}"
        );
        previous = stats;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stats: a running container holds memory and its CPU time grows while it burns CPU;
/// an unknown container is `NotFound`.
pub async fn stats_show_cpu_rising_and_memory_held(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let err = runtime
        .stats("stats-nobody")
        .await
        .expect_err("stats of an unknown container");
    assert!(matches!(err, RuntimeError::NotFound(_)), "{err:?}");

    let id = "stats-busy";
    start_forever(runtime, fixtures, dir, id, &[("BURN_CPU", "1")]).await;
    let limit = Duration::from_secs(20);
    let first = stats_until(runtime, id, limit, |s| s.memory_bytes > 0).await;
    // Measured, not assumed: on a loaded machine the busy container gets less than a core.
    let wanted = first.cpu_usage_ns + STATS_CPU_GROWTH.as_nanos() as u64;
    let later = stats_until(runtime, id, limit, |s| s.cpu_usage_ns >= wanted).await;
    assert!(
        later.memory_bytes > 0,
        "a running container holds no memory: {later:?}"
    );
    remove(runtime, id).await;
    assert!(matches!(
        runtime.stats(id).await,
        Err(RuntimeError::NotFound(_))
    ));
}

/// Reads a session's channel until `expected` has arrived (it may come in several chunks);
/// fails the test after 10 s, showing what did arrive.
pub async fn read_until(channel: &mut tokio::sync::mpsc::Receiver<bytes::Bytes>, expected: &str) {
    let mut seen = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&seen).contains(expected) {
            match channel.recv().await {
                Some(chunk) => seen.extend_from_slice(&chunk),
                None => return false,
            }
        }
        true
    })
    .await;
    assert!(
        waited == Ok(true),
        "{expected:?} did not arrive; got {:?}",
        String::from_utf8_lossy(&seen)
    );
}

/// Waits for a session's container to exit; its output ends first.
async fn attached_exit(session: ExecSession) -> i32 {
    let ExecSession {
        mut stdout,
        stderr,
        exit,
        ..
    } = session;
    tokio::time::timeout(Duration::from_secs(30), async {
        while stdout.recv().await.is_some() {}
        if let Some(mut stderr) = stderr {
            while stderr.recv().await.is_some() {}
        }
        exit.await.expect("an exit").expect("an exit code")
    })
    .await
    .expect("the attached container did not end within 30 s")
}

/// Attach connects a client to a running container's own stdin and output: what it sends is
/// read by the container, what the container writes arrives on stdout and stderr (and in the
/// log), and with `stdin_once` the container sees end of file when the client closes stdin.
/// The session ends with the container's exit code.
pub async fn attach_connects_stdin_and_output(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let id = "hello-attach";
    let mut config = config(id, &fixtures.hello, dir);
    config.env = vec![("ECHO_STDIN".into(), "1".into())];
    config.stdio = Stdio {
        stdin: true,
        stdin_once: true,
        tty: false,
    };
    let log_path = config.log_path.clone();
    runtime.prepare(&fixtures.hello).await.expect("prepare");
    runtime.create(config).await.expect("create");
    assert!(
        matches!(
            runtime.attach(id, true).await,
            Err(RuntimeError::InvalidState { .. })
        ),
        "attach to a container that has not started"
    );
    runtime.start(id).await.expect("start");
    let mut session = runtime.attach(id, true).await.expect("attach");
    let stdin = session.stdin.take().expect("the container has a stdin");
    assert!(session.stderr.is_some(), "no terminal: stderr apart");
    stdin.send("first line\n".into()).await.expect("send");
    read_until(&mut session.stdout, "FIRST LINE\n").await;
    stdin.send("second ".into()).await.expect("send");
    stdin.send("line\n".into()).await.expect("send");
    read_until(&mut session.stdout, "SECOND LINE\n").await;
    assert_eq!(runtime.state(id), Some(ContainerState::Running));
    // End of stdin: the program says goodbye on stderr and exits.
    drop(stdin);
    read_until(
        session.stderr.as_mut().expect("stderr"),
        "exiting with code 0",
    )
    .await;
    assert_eq!(attached_exit(session).await, 0);
    let exit = runtime.wait(id).await.expect("wait");
    assert_eq!(exit.code, 0, "{exit:?}");
    let log = std::fs::read_to_string(&log_path).expect("the log file exists");
    assert!(log.contains("FIRST LINE"), "{log}");
    assert!(
        matches!(
            runtime.attach(id, false).await,
            Err(RuntimeError::InvalidState { .. })
        ),
        "attach to a container that has exited"
    );
    runtime.delete(id).await.expect("delete");
    assert!(matches!(
        runtime.attach(id, false).await,
        Err(RuntimeError::NotFound(_))
    ));
}

/// Detaching leaves the container running, and without `stdin_once` its stdin stays open for
/// the next client. On a terminal, everything arrives on stdout. A client that asks for no
/// stdin, or a container without one, gets none.
pub async fn attach_detaches_without_stopping_the_container(
    runtime: &dyn Runtime,
    fixtures: &Fixtures,
    dir: &Path,
) {
    let id = "hello-reattach";
    let mut hello = config(id, &fixtures.hello, dir);
    hello.env = vec![("ECHO_STDIN".into(), "1".into())];
    hello.stdio = Stdio {
        stdin: true,
        stdin_once: false,
        tty: true,
    };
    runtime.prepare(&fixtures.hello).await.expect("prepare");
    runtime.create(hello).await.expect("create");
    runtime.start(id).await.expect("start");
    let mut first = runtime.attach(id, true).await.expect("attach");
    assert!(first.stderr.is_none(), "a terminal has one output");
    let stdin = first.stdin.take().expect("the container has a stdin");
    stdin.send("one\n".into()).await.expect("send");
    read_until(&mut first.stdout, "ONE").await;
    let _ = first.resize.try_send(crate::TerminalSize {
        width: 100,
        height: 30,
    });
    drop(stdin);
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        runtime.state(id),
        Some(ContainerState::Running),
        "detaching stops nothing, and the stdin stays open"
    );
    let watching = runtime.attach(id, false).await.expect("attach");
    assert!(watching.stdin.is_none(), "no stdin was asked for");
    let mut second = runtime.attach(id, true).await.expect("attach again");
    second
        .stdin
        .as_ref()
        .expect("the stdin is still open")
        .send("two\n".into())
        .await
        .expect("send");
    read_until(&mut second.stdout, "TWO").await;
    let mut watching_stdout = watching.stdout;
    read_until(&mut watching_stdout, "TWO").await;
    drop(second);
    runtime.kill(id, Signal::Kill).await.expect("kill");
    let exit = tokio::time::timeout(Duration::from_secs(10), runtime.wait(id))
        .await
        .expect("killed in time")
        .expect("wait");
    assert_eq!(exit.code, 137, "{exit:?}");
    while watching_stdout.recv().await.is_some() {}
    runtime.delete(id).await.expect("delete");

    // A container created without a stdin has none to give.
    let id = "forever-no-stdin";
    runtime.prepare(&fixtures.forever).await.expect("prepare");
    runtime
        .create(config(id, &fixtures.forever, dir))
        .await
        .expect("create");
    runtime.start(id).await.expect("start");
    let session = runtime.attach(id, true).await.expect("attach");
    assert!(session.stdin.is_none());
    assert!(session.stderr.is_some());
    drop(session);
    runtime.kill(id, Signal::Kill).await.expect("kill");
    let _ = runtime.wait(id).await;
    runtime.delete(id).await.expect("delete");
}

/// Runs the whole suite.
pub async fn run_all(runtime: &dyn Runtime, fixtures: &Fixtures, dir: &Path) {
    output_reaches_the_log_and_success_is_completed(runtime, fixtures, dir).await;
    the_exit_code_is_reported(runtime, fixtures, dir).await;
    kill_stops_a_running_container(runtime, fixtures, dir).await;
    the_lifecycle_rejects_illegal_transitions(runtime, fixtures, dir).await;
    a_missing_image_is_reported(runtime, dir).await;
    exec_behaves_as_declared(runtime, fixtures, dir).await;
    stats_show_cpu_rising_and_memory_held(runtime, fixtures, dir).await;
    attach_connects_stdin_and_output(runtime, fixtures, dir).await;
    attach_detaches_without_stopping_the_container(runtime, fixtures, dir).await;
}
