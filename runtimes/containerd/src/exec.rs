//! Running a command inside a running container ([`Runtime::exec`](wharf_runtime::Runtime)):
//! an exec process of the container's task, as `ctr task exec` makes one.
//!
//! The process spec is the container's own (`process` of its OCI spec: user, working
//! directory, environment, capabilities, rlimits) with the arguments replaced and the
//! request's environment added. stdout and stderr go to FIFOs of their own beside the
//! container's, captured in memory up to [`EXEC_OUTPUT_LIMIT`] each. The process is started,
//! waited for (containerd's `Wait` with the exec id) under the request's deadline — past it,
//! it is killed — and always deleted, which closes its side of the FIFOs.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetContainerRequest, KillRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::Code;
use prost_types::Any;
use serde_json::Value;
use tokio::time::Instant;
use wharf_runtime::{EXEC_OUTPUT_LIMIT, ExecOutput, ExecRequest, RuntimeError};

use crate::client::{Client, is_not_found, status_error, unique_suffix};
use crate::io::Fifos;

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
    let process = ExecProcess {
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

/// One exec process of a container's task, by its ids.
struct ExecProcess {
    client: Client,
    container_id: String,
    exec_id: String,
}

impl ExecProcess {
    /// Adds the process to the task, starts it and waits for its exit code.
    async fn run(&self, fifos: &Fifos, request: &ExecRequest) -> Result<i32, RuntimeError> {
        let spec = exec_process_spec(&self.container_spec().await?, request)
            .map_err(RuntimeError::StartFailed)?;
        let add = ExecProcessRequest {
            container_id: self.container_id.clone(),
            stdin: String::new(),
            stdout: fifos.stdout.display().to_string(),
            stderr: fifos.stderr.display().to_string(),
            terminal: false,
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
        let response = self
            .client
            .tasks()
            .wait(self.wait_request())
            .await
            .map_err(|e| status_error("wait for an exec process", e))?;
        Ok(response.into_inner().exit_status as i32)
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
/// added (replacing variables of the same name), and no terminal.
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
    fields.insert("terminal".into(), Value::Bool(false));
    fields.remove("consoleSize");
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
