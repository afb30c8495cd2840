//! A containerd daemon that Wharf starts and stops itself (`wharf up --containerd managed`, and
//! every test of this crate): a private configuration, root, state and socket under one
//! directory, so it never touches a containerd that the machine already runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use wharf_runtime::RuntimeError;

use crate::client::Client;

/// How long to wait for a started containerd to answer, and for a stopped one to exit.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running containerd owned by this process; dropping it stops the daemon (SIGTERM, then
/// SIGKILL if it has not exited within 10 seconds).
///
/// Containers that are still running keep running when the daemon stops (their shims are
/// separate processes), exactly as with a system containerd; a later daemon on the same
/// directory finds them again.
#[derive(Debug)]
pub struct ManagedContainerd {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl ManagedContainerd {
    /// Starts `binary` (usually `containerd` from `PATH`) with everything under `dir`:
    /// `config.toml`, `root/`, `state/`, `containerd.log` and the socket `containerd.sock`.
    /// Returns once the daemon answers a Version request.
    pub async fn start(binary: &Path, dir: &Path) -> Result<ManagedContainerd, RuntimeError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            RuntimeError::Unavailable(format!("managed containerd: {what}: {e}"))
        };
        std::fs::create_dir_all(dir).map_err(|e| unavailable("cannot create its directory", &e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| unavailable("cannot resolve its directory", &e))?;
        let socket = dir.join("containerd.sock");
        // A socket left by a daemon that was killed would make the new one fail to listen.
        let _ = std::fs::remove_file(&socket);
        let config_path = dir.join("config.toml");
        std::fs::write(&config_path, config_toml(&dir))
            .map_err(|e| unavailable("cannot write its configuration", &e))?;
        let log = File::create(dir.join("containerd.log"))
            .map_err(|e| unavailable("cannot create its log", &e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| unavailable("cannot create its log", &e))?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| unavailable(&format!("cannot run {}", binary.display()), &e))?;
        let mut managed = ManagedContainerd { child, dir, socket };
        managed.wait_until_ready().await?;
        Ok(managed)
    }

    /// The gRPC socket of the daemon.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory holding its configuration, data and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Polls the socket until a Version request succeeds, the daemon exits, or time runs out.
    async fn wait_until_ready(&mut self) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(RuntimeError::Unavailable(format!(
                    "managed containerd exited at start ({status}); see {}",
                    self.dir.join("containerd.log").display()
                )));
            }
            if self.socket.exists()
                && let Ok(client) = Client::connect(&self.socket, "wharf").await
                && client.version().await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Unavailable(format!(
                    "managed containerd did not answer within {START_TIMEOUT:?}; see {}",
                    self.dir.join("containerd.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!("managed containerd ignored SIGTERM; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ManagedContainerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The daemon's configuration: everything under `dir`, the CRI plugin off (Wharf's agent is
/// the kubelet here), no debug or metrics listeners.
fn config_toml(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/opt"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_keeps_everything_under_the_directory() {
        let text = config_toml(Path::new("/data/containerd"));
        for line in [
            "root = \"/data/containerd/root\"",
            "state = \"/data/containerd/state\"",
            "address = \"/data/containerd/containerd.sock\"",
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]",
            "path = \"/data/containerd/opt\"",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
    }
}
