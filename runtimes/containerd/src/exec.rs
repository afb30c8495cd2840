//! Running a command inside a running container ([`Runtime::exec`](wharf_runtime::Runtime)):
//! an exec process of the container's task, as `ctr task exec` makes one.
//!
//! The process spec is the container's own (`process` of its OCI spec: user, working
//! directory, environment, capabilities, rlimits) with the arguments replaced and the
//! request's environment added. stdout and stderr go to FIFOs of their own beside the
//! container's, captured in memory up to [`EXEC_OUTPUT_LIMIT`] each. The process is started,
//! waited for (containerd's `Wait` with the exec id) under the request's deadline — past it,
//! it is killed — and always deleted, which closes its side of the FIFOs.
//!
//! An interactive exec ([`exec_stream`]) is the same process with its streams handed to the
//! caller: a stdin FIFO when asked for (closed with containerd's `CloseIO` when the caller
//! closes stdin), a terminal when asked for (one output, resized with `ResizePty`), and a
//! supervising task that waits for the process, lets its output drain, deletes it and
//! reports the exit code — or kills it when the caller drops the session.
//!
//! [`TaskProcess`] and [`follow_resizes`] serve attach too, for the task's init process.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest,
    ResizePtyRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::Code;
use prost_types::Any;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use wharf_runtime::{
    EXEC_OUTPUT_LIMIT, ExecOutput, ExecRequest, ExecSession, RuntimeError, TerminalSize,
};

use crate::client::{Client, is_not_found, status_error, unique_suffix};
use crate::io::{Fifos, stream};

/// The type containerd stores an OCI process spec as.
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How long output may still arrive after the process has ended and been deleted (a process
/// it left in the background can hold the FIFOs open).
const OUTPUT_GRACE: Duration = Duration::from_secs(2);
/// How long a killed exec process may take to be reported as ended before it is deleted.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// SIGKILL.
const SIGKILL: u32 = 9;

/// Runs `request` in container `id`'s task and waits for it; see
/// [`Runtime::exec`](wharf_runtime::Runtime::exec) for the contract. The caller has checked
/// that the container runs. Not cancellation-safe (a dropped future leaves the process to
/// containerd): run it in a task of its own.
pub(crate) async fn exec(
    client: Client,
    fifo_root: &Path,
    id: &str,
    request: ExecRequest,
) -> Result<ExecOutput, RuntimeError> {
    if request.command.is_empty() {
        return Err(RuntimeError::StartFailed(
            "exec needs a command, and none was given".into(),
        ));
    }
    let deadline = Instant::now() + request.timeout;
    let process = TaskProcess {
        client,
        container_id: id.to_owned(),
        exec_id: format!("exec-{}", unique_suffix()),
    };
    let fifos = Fifos::for_exec(fifo_root, id, &process.exec_id);
    let capture = fifos
        .create()
        .and_then(|()| fifos.capture(EXEC_OUTPUT_LIMIT))
        .map_err(|e| {
            fifos.remove();
            RuntimeError::StartFailed(format!("cannot make the exec's output FIFOs: {e}"))
        })?;
    let ran = tokio::time::timeout_at(deadline, process.run(&fifos, &request)).await;
    let result = match ran {
        Ok(Ok(exit_code)) => {
            process.delete().await;
            let (stdout, stderr) = capture.finish(OUTPUT_GRACE).await;
            Ok(ExecOutput {
                exit_code,
                stdout: stdout.bytes.into(),
                stderr: stderr.bytes.into(),
                stdout_truncated: stdout.truncated,
                stderr_truncated: stderr.truncated,
            })
        }
        Ok(Err(e)) => {
            process.delete().await;
            capture.abort();
            Err(e)
        }
        Err(_) => {
            process.kill_and_delete().await;
            capture.abort();
            Err(RuntimeError::TimedOut(format!(
                "exec {:?} in container {id:?} did not finish within {:?} and was killed",
                request.command, request.timeout
            )))
        }
    };
    fifos.remove();
    result
}

/// Starts `request` in container `id`'s task with its streams handed back; see
/// [`Runtime::exec_stream`](wharf_runtime::Runtime::exec_stream) for the contract. The caller
/// has checked that the container runs. Not cancellation-safe while it starts the process:
/// run it in a task of its own. Once it has returned, the session's supervisor owns the
/// process.
pub(crate) async fn exec_stream(
    client: Client,
    fifo_root: &Path,
    id: &str,
    request: ExecRequest,
) -> Result<ExecSession, RuntimeError> {
    if request.command.is_empty() {
        return Err(RuntimeError::StartFailed(
            "exec needs a command, and none was given".into(),
        ));
    }
    let process = TaskProcess {
        client,
        container_id: id.to_owned(),
        exec_id: format!("exec-{}", unique_suffix()),
    };
    let fifos = Fifos::for_exec(fifo_root, id, &process.exec_id);
    let opened = fifos.create().and_then(|()| {
        let stdin = match request.stdin {
            true => Some(fifos.create_stdin()?),
            false => None,
        };
        let (stdout, stderr) = fifos.open_outputs(!request.tty)?;
        Ok((stdin, stdout, stderr))
    });
    let (stdin_pipe, stdout_pipe, stderr_pipe) = opened.map_err(|e| {
        fifos.remove();
        RuntimeError::StartFailed(format!("cannot make the exec's FIFOs: {e}"))
    })?;
    if let Err(e) = process.start(&fifos, &request).await {
        process.delete().await;
        fifos.remove();
        return Err(e);
    }

    let (stop, stopped) = watch::channel(false);
    let (stdout_sender, stdout) = mpsc::channel(STREAM_CHUNKS);
    let mut readers = vec![tokio::spawn(stream(
        stdout_pipe,
        stdout_sender,
        stopped.clone(),
    ))];
    let stderr = stderr_pipe.map(|pipe| {
        let (sender, receiver) = mpsc::channel(STREAM_CHUNKS);
        readers.push(tokio::spawn(stream(pipe, sender, stopped)));
        receiver
    });
    let mut helpers = Vec::new();
    let stdin = stdin_pipe.map(|pipe| {
        let (sender, receiver) = mpsc::channel(STREAM_CHUNKS);
        helpers.push(tokio::spawn(feed_stdin(pipe, receiver, process.clone())));
        sender
    });
    let (resize, sizes) = mpsc::channel(4);
    if request.tty {
        helpers.push(tokio::spawn(follow_resizes(sizes, process.clone())));
    }
    let (exit_sender, exit) = oneshot::channel();
    tokio::spawn(supervise(
        process,
        fifos,
        exit_sender,
        stop,
        readers,
        helpers,
    ));
    Ok(ExecSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    })
}

/// How many chunks of a stream may wait between the FIFO and the session's reader (or
/// writer): enough to keep the pipe flowing, few enough to push back on a fast producer.
pub(crate) const STREAM_CHUNKS: usize = 16;

/// Writes what the session sends to the process's stdin, and closes its stdin when the
/// session closes the sender.
async fn feed_stdin(
    mut pipe: pipe::Sender,
    mut chunks: mpsc::Receiver<Bytes>,
    process: TaskProcess,
) {
    while let Some(chunk) = chunks.recv().await {
        if pipe.write_all(&chunk).await.is_err() {
            break;
        }
    }
    drop(pipe);
    process.close_stdin().await;
}

/// Passes the session's terminal sizes on to the process's terminal.
pub(crate) async fn follow_resizes(mut sizes: mpsc::Receiver<TerminalSize>, process: TaskProcess) {
    while let Some(size) = sizes.recv().await {
        process.resize(size).await;
    }
}

/// Owns a started interactive exec: waits for it to end (or kills it when the session's
/// exit receiver is dropped), deletes it, lets its output drain (for up to
/// [`OUTPUT_GRACE`] after it ended while nothing arrives), removes the FIFOs and reports the
/// exit code.
async fn supervise(
    process: TaskProcess,
    fifos: Fifos,
    mut exit: oneshot::Sender<Result<i32, RuntimeError>>,
    stop: watch::Sender<bool>,
    readers: Vec<JoinHandle<()>>,
    helpers: Vec<JoinHandle<()>>,
) {
    let ended = tokio::select! {
        ended = process.wait() => Some(ended),
        () = exit.closed() => None,
    };
    let Some(ended) = ended else {
        // The session is gone: nobody reads or writes any more.
        process.kill_and_delete().await;
        for task in readers.iter().chain(&helpers) {
            task.abort();
        }
        fifos.remove();
        return;
    };
    process.delete().await;
    for task in &helpers {
        task.abort();
    }
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(OUTPUT_GRACE).await;
        let _ = stop.send(true);
        // Held until here: the readers take a dropped sender for a stop.
        stop.closed().await;
    });
    for reader in readers {
        let _ = reader.await;
    }
    stopper.abort();
    fifos.remove();
    let _ = exit.send(ended);
}

/// One process of a container's task, by its ids: an exec process, or, with an empty exec
/// id, the task's init process (the container's own, which attach talks to).
#[derive(Clone)]
pub(crate) struct TaskProcess {
    client: Client,
    container_id: String,
    exec_id: String,
}

impl TaskProcess {
    /// The init process of container `id`'s task.
    pub(crate) fn init(client: Client, id: &str) -> TaskProcess {
        TaskProcess {
            client,
            container_id: id.to_owned(),
            exec_id: String::new(),
        }
    }

    /// The id of the container whose task this process is part of.
    pub(crate) fn container_id(&self) -> &str {
        &self.container_id
    }

    /// Adds the process to the task, starts it and waits for its exit code.
    async fn run(&self, fifos: &Fifos, request: &ExecRequest) -> Result<i32, RuntimeError> {
        self.start(fifos, request).await?;
        self.wait().await
    }

    /// Waits for the started process to end and returns its exit code.
    async fn wait(&self) -> Result<i32, RuntimeError> {
        let response = self
            .client
            .tasks()
            .wait(self.wait_request())
            .await
            .map_err(|e| status_error("wait for an exec process", e))?;
        Ok(response.into_inner().exit_status as i32)
    }

    /// Adds the process to the task and starts it: with the stdin FIFO when
    /// [`ExecRequest::stdin`] is set, and on a terminal (stdout only) when
    /// [`ExecRequest::tty`] is.
    async fn start(&self, fifos: &Fifos, request: &ExecRequest) -> Result<(), RuntimeError> {
        let spec = exec_process_spec(&self.container_spec().await?, request)
            .map_err(RuntimeError::StartFailed)?;
        let add = ExecProcessRequest {
            container_id: self.container_id.clone(),
            stdin: match request.stdin {
                true => fifos.stdin().display().to_string(),
                false => String::new(),
            },
            stdout: fifos.stdout.display().to_string(),
            stderr: match request.tty {
                true => String::new(),
                false => fifos.stderr.display().to_string(),
            },
            terminal: request.tty,
            spec: Some(Any {
                type_url: PROCESS_TYPE.into(),
                value: serde_json::to_vec(&spec).map_err(|e| RuntimeError::Other(e.to_string()))?,
            }),
            exec_id: self.exec_id.clone(),
        };
        if let Err(e) = self.client.tasks().exec(add).await {
            return Err(match e.code() {
                // The task ended between the caller's state check and here.
                Code::NotFound | Code::FailedPrecondition => RuntimeError::InvalidState {
                    id: self.container_id.clone(),
                    state: "exited",
                    operation: "exec",
                },
                Code::Unavailable => status_error("exec a process", e),
                _ => RuntimeError::StartFailed(e.message().to_owned()),
            });
        }
        let start = StartRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        // runc's own message, e.g. `exec: "nope": executable file not found in $PATH`.
        self.client
            .tasks()
            .start(start)
            .await
            .map_err(|e| match e.code() {
                Code::Unavailable => status_error("start an exec process", e),
                _ => RuntimeError::StartFailed(e.message().to_owned()),
            })?;
        Ok(())
    }

    /// Closes the process's stdin: the shim holds the stdin FIFO open for writing itself
    /// (so that the process does not see an end when a client reconnects), and only
    /// `CloseIO` makes it let go.
    pub(crate) async fn close_stdin(&self) {
        let request = CloseIoRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            stdin: true,
        };
        if let Err(e) = self.client.tasks().close_io(request).await
            && !is_not_found(&e)
        {
            tracing::debug!(
                container = %self.container_id,
                exec = %self.exec_id,
                error = %e,
                "cannot close a process's stdin",
            );
        }
    }

    /// Sets the size of the process's terminal.
    pub(crate) async fn resize(&self, size: TerminalSize) {
        let request = ResizePtyRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            width: size.width.into(),
            height: size.height.into(),
        };
        if let Err(e) = self.client.tasks().resize_pty(request).await {
            tracing::debug!(
                container = %self.container_id,
                exec = %self.exec_id,
                error = %e,
                "cannot resize a process's terminal",
            );
        }
    }

    /// The container's OCI runtime spec, as containerd keeps it.
    async fn container_spec(&self) -> Result<Value, RuntimeError> {
        let request = GetContainerRequest {
            id: self.container_id.clone(),
        };
        let record = match self.client.containers().get(request).await {
            Ok(response) => response.into_inner().container,
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(status_error("look up the container", e)),
        };
        let spec = record
            .and_then(|record| record.spec)
            .ok_or_else(|| RuntimeError::NotFound(self.container_id.clone()))?;
        serde_json::from_slice(&spec.value).map_err(|e| {
            RuntimeError::Other(format!("the container's spec is not valid JSON: {e}"))
        })
    }

    fn wait_request(&self) -> WaitRequest {
        WaitRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        }
    }

    /// Kills the process (if it runs; it may not have started), waits a little for it to end,
    /// and deletes it.
    async fn kill_and_delete(&self) {
        let kill = KillRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            signal: SIGKILL,
            all: false,
        };
        match self.client.tasks().kill(kill).await {
            Ok(_) => {
                let mut tasks = self.client.tasks();
                let wait = tasks.wait(self.wait_request());
                if tokio::time::timeout(KILL_GRACE, wait).await.is_err() {
                    tracing::warn!(
                        container = %self.container_id,
                        exec = %self.exec_id,
                        "a killed exec process did not end in time",
                    );
                }
            }
            Err(e) if is_not_found(&e) || e.code() == Code::FailedPrecondition => {}
            Err(e) => {
                tracing::warn!(
                    container = %self.container_id,
                    exec = %self.exec_id,
                    error = %e,
                    "cannot kill an exec process",
                );
            }
        }
        self.delete().await;
    }

    /// Removes the process from the task; the shim closes its side of the FIFOs then.
    async fn delete(&self) {
        let request = DeleteProcessRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        if let Err(e) = self.client.tasks().delete_process(request).await
            && !is_not_found(&e)
        {
            tracing::warn!(
                container = %self.container_id,
                exec = %self.exec_id,
                error = %e,
                "cannot delete an exec process",
            );
        }
    }
}

/// The OCI process spec of an exec: the container's `process` (user, working directory,
/// environment, capabilities, rlimits, ...) with the request's arguments, its environment
/// added (replacing variables of the same name), and a terminal only when asked for (of the
/// requested size, with `TERM=xterm` unless the environment names a terminal type).
fn exec_process_spec(container_spec: &Value, request: &ExecRequest) -> Result<Value, String> {
    let mut process = container_spec
        .get("process")
        .filter(|process| process.is_object())
        .cloned()
        .ok_or("the container's spec has no process to derive the exec's from")?;
    let fields = process
        .as_object_mut()
        .ok_or("the container's process is not an object")?;
    fields.insert("args".into(), Value::from(request.command.clone()));
    fields.insert("terminal".into(), Value::Bool(request.tty));
    fields.remove("consoleSize");
    if let (true, Some(size)) = (request.tty, request.terminal_size) {
        fields.insert(
            "consoleSize".into(),
            serde_json::json!({"height": size.height, "width": size.width}),
        );
    }
    let mut env: Vec<String> = fields
        .get("env")
        .and_then(Value::as_array)
        .map(|vars| {
            vars.iter()
                .filter_map(|var| var.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for (name, value) in &request.env {
        let prefix = format!("{name}=");
        let assignment = format!("{name}={value}");
        match env.iter_mut().find(|var| var.starts_with(&prefix)) {
            Some(existing) => *existing = assignment,
            None => env.push(assignment),
        }
    }
    // A terminal needs a type for programs to draw on it; the CRI plugin sets the same.
    if request.tty && !env.iter().any(|var| var.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    fields.insert("env".into(), Value::from(env));
    Ok(process)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(command: &[&str], env: &[(&str, &str)]) -> ExecRequest {
        let mut request = ExecRequest::new(
            command.iter().map(|s| s.to_string()).collect(),
            Duration::from_secs(1),
        );
        request.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        request
    }

    fn container_spec() -> Value {
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": true,
                "consoleSize": {"height": 24, "width": 80},
                "user": {"uid": 1000, "gid": 1000},
                "args": ["/app", "--serve"],
                "env": ["PATH=/bin", "GREETING=hello", "PORT=8080"],
                "cwd": "/srv",
                "capabilities": {"bounding": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"}
        })
    }

    #[test]
    fn an_exec_runs_as_the_container_with_its_own_arguments() {
        let spec =
            exec_process_spec(&container_spec(), &request(&["/bin/ls", "-l"], &[])).expect("spec");
        assert_eq!(
            spec,
            json!({
                "terminal": false,
                "user": {"uid": 1000, "gid": 1000},
                "args": ["/bin/ls", "-l"],
                "env": ["PATH=/bin", "GREETING=hello", "PORT=8080"],
                "cwd": "/srv",
                "capabilities": {"bounding": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            })
        );
    }

    #[test]
    fn exec_env_replaces_variables_of_the_same_name_and_adds_the_rest() {
        let spec = exec_process_spec(
            &container_spec(),
            &request(&["/x"], &[("GREETING", "bye=now"), ("NEW", "1")]),
        )
        .expect("spec");
        assert_eq!(
            spec["env"],
            json!(["PATH=/bin", "GREETING=bye=now", "PORT=8080", "NEW=1"])
        );
    }

    #[test]
    fn a_container_spec_without_a_process_is_an_error() {
        let err = exec_process_spec(&json!({"ociVersion": "1.0.2"}), &request(&["/x"], &[]))
            .expect_err("no process");
        assert!(err.contains("no process"), "{err}");
    }
}
