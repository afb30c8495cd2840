//! A containerd daemon that Wharf starts and stops itself (`wharf up --containerd managed`, and
//! every test of this crate): a private configuration, root, state and socket under one
//! directory, so it never touches a containerd that the machine already runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use wharf_runtime::RuntimeError;

use crate::client::Client;

/// How long to wait for a started containerd to answer, and for a stopped one to exit.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the supervisor looks at the daemon, and the longest it waits between restarts.
const CHECK_EVERY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(30);

/// The daemon's process: started by this process, or found running on the same directory
/// (left by an earlier Wharf that was killed) and adopted.
#[derive(Debug)]
enum Process {
    Child(Child),
    Adopted(u32),
    /// Exited, waiting for the supervisor to start it again.
    Gone,
}

impl Process {
    fn pid(&self) -> Option<u32> {
        match self {
            Process::Child(child) => Some(child.id()),
            Process::Adopted(pid) => Some(*pid),
            Process::Gone => None,
        }
    }

    /// Whether the process still runs (reaping it if it is our child and has exited).
    fn alive(&mut self) -> bool {
        match self {
            Process::Child(child) => matches!(child.try_wait(), Ok(None)),
            Process::Adopted(pid) => process_runs(*pid),
            Process::Gone => false,
        }
    }
}

/// Whether a process runs (a zombie does not count).
fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name in parentheses: "pid (comm) S ...".
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// The containerd whose command line names `config` (a daemon of the same directory).
fn find_daemon(config: &Path) -> Option<u32> {
    let config = config.to_str()?;
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                args.first().is_some_and(|a| a.ends_with(b"containerd"))
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"--config" && w[1] == config.as_bytes())
            })
        })
}

/// Where the daemon lives and how it is started.
#[derive(Debug)]
struct Daemon {
    binary: PathBuf,
    dir: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    fn unavailable(what: &str, e: &dyn std::fmt::Display) -> RuntimeError {
        RuntimeError::Unavailable(format!("managed containerd: {what}: {e}"))
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// Spawns the daemon (not waiting for it to answer).
    fn spawn(&self) -> Result<Child, RuntimeError> {
        // A socket left by a daemon that was killed would make the new one fail to listen.
        let _ = std::fs::remove_file(&self.socket);
        std::fs::write(self.config_path(), config_toml(&self.dir))
            .map_err(|e| Self::unavailable("cannot write its configuration", &e))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("containerd.log"))
            .map_err(|e| Self::unavailable("cannot create its log", &e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Self::unavailable("cannot create its log", &e))?;
        Command::new(&self.binary)
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| Self::unavailable(&format!("cannot run {}", self.binary.display()), &e))
    }

    /// Whether a daemon answers on the socket.
    async fn answers(&self) -> bool {
        if !self.socket.exists() {
            return false;
        }
        let attempt = async {
            match Client::connect(&self.socket, "wharf").await {
                Ok(client) => client.version().await.is_ok(),
                Err(_) => false,
            }
        };
        tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .unwrap_or(false)
    }

    /// Waits until the daemon answers, or fails if it exits or takes too long.
    async fn wait_until_ready(&self, child: &mut Child) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(RuntimeError::Unavailable(format!(
                    "managed containerd exited at start ({status}); see {}",
                    self.dir.join("containerd.log").display()
                )));
            }
            if self.answers().await {
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

    /// Starts the daemon and waits until it answers.
    async fn start(&self) -> Result<Child, RuntimeError> {
        let mut child = self.spawn()?;
        match self.wait_until_ready(&mut child).await {
            Ok(()) => Ok(child),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(error)
            }
        }
    }
}

/// A containerd owned by this process, kept running: if it dies, it is started again (after 1
/// second, doubling up to 30 seconds while it keeps failing). Dropping it stops the daemon
/// (SIGTERM, then SIGKILL if it has not exited within 10 seconds).
///
/// Containers that are still running keep running when the daemon stops (their shims are
/// separate processes), exactly as with a system containerd; a later daemon on the same
/// directory finds them again. A daemon left running on the directory by an earlier process
/// that was killed is adopted rather than started twice.
#[derive(Debug)]
pub struct ManagedContainerd {
    daemon: Arc<Daemon>,
    process: Arc<Mutex<Process>>,
    supervisor: tokio::task::JoinHandle<()>,
    adopted: bool,
}

impl ManagedContainerd {
    /// Starts `binary` (usually `containerd` from `PATH`) with everything under `dir`:
    /// `config.toml`, `root/`, `state/`, `containerd.log` and the socket `containerd.sock`;
    /// or adopts the daemon already serving that directory. Returns once the daemon answers a
    /// Version request. Must be called within a Tokio runtime (the supervisor is a task).
    pub async fn start(binary: &Path, dir: &Path) -> Result<ManagedContainerd, RuntimeError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Daemon::unavailable("cannot create its directory", &e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| Daemon::unavailable("cannot resolve its directory", &e))?;
        let daemon = Arc::new(Daemon {
            binary: binary.to_path_buf(),
            socket: dir.join("containerd.sock"),
            dir,
        });
        let left_running = find_daemon(&daemon.config_path());
        let (process, adopted) = match left_running {
            Some(pid) if daemon.answers().await => {
                tracing::info!(pid, dir = %daemon.dir.display(), "adopted the managed containerd left running");
                (Process::Adopted(pid), true)
            }
            other => {
                if let Some(pid) = other {
                    // Running but not answering: stop it, so the new daemon can take the
                    // directory.
                    stop_adopted(pid);
                }
                (Process::Child(daemon.start().await?), false)
            }
        };
        let process = Arc::new(Mutex::new(process));
        let supervisor = tokio::spawn(supervise(daemon.clone(), process.clone()));
        Ok(ManagedContainerd {
            daemon,
            process,
            supervisor,
            adopted,
        })
    }

    /// The socket to connect to.
    pub fn socket(&self) -> &Path {
        &self.daemon.socket
    }

    /// The daemon's process id (0 between a crash and its restart).
    pub fn pid(&self) -> u32 {
        self.lock().pid().unwrap_or(0)
    }

    /// Whether the daemon was found running and adopted rather than started.
    pub fn adopted(&self) -> bool {
        self.adopted
    }

    /// The directory holding its configuration, state and log.
    pub fn dir(&self) -> &Path {
        &self.daemon.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&mut self) {
        self.supervisor.abort();
        let process = std::mem::replace(&mut *self.lock(), Process::Gone);
        match process {
            Process::Child(mut child) => stop_child(&mut child),
            Process::Adopted(pid) => stop_adopted(pid),
            Process::Gone => {}
        }
    }
}

impl Drop for ManagedContainerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keeps the daemon running: starts it again when it has died.
async fn supervise(daemon: Arc<Daemon>, process: Arc<Mutex<Process>>) {
    let mut delay = Duration::from_secs(1);
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let alive = process.lock().unwrap_or_else(|e| e.into_inner()).alive();
        if alive {
            continue;
        }
        *process.lock().unwrap_or_else(|e| e.into_inner()) = Process::Gone;
        tracing::warn!(dir = %daemon.dir.display(), "the managed containerd died; starting it again in {delay:?}");
        tokio::time::sleep(delay).await;
        match daemon.start().await {
            Ok(child) => {
                tracing::info!(pid = child.id(), "the managed containerd runs again");
                *process.lock().unwrap_or_else(|e| e.into_inner()) = Process::Child(child);
                delay = Duration::from_secs(1);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start the managed containerd again");
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
        }
    }
}

fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = kill_process(Pid::from_child(child), Signal::TERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!("managed containerd ignored SIGTERM; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

fn stop_adopted(pid: u32) {
    let Some(process) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let _ = kill_process(process, Signal::TERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !process_runs(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!(pid, "managed containerd ignored SIGTERM; killing it");
    let _ = kill_process(process, Signal::KILL);
}

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
