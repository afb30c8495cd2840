//! A containerd daemon that Wharf starts and stops itself (`wharf up --containerd managed`, and
//! every test of this crate): a private configuration, root, state and socket under one
//! directory, so it never touches a containerd that the machine already runs.
//!
//! With [`Options::in_memory`] (what `wharf up` and `wharf agent` use) the daemon's `state/`
//! (task bundles, whose `config.json` holds each container's environment) and its metadata
//! database (`root/io.containerd.metadata.v1.bolt/meta.db`, which stores every container's OCI
//! spec) live on tmpfs mounts, so values from Secrets passed as environment variables never
//! reach the node's disk. Both are mounted before the daemon starts, when they are not mount
//! points already, and are never unmounted by Wharf: containers left running by a stopped Wharf
//! need their metadata when the next one takes them over.
//! - A `meta.db` found on disk (a data directory of an older Wharf) is moved into the tmpfs,
//!   so its images and containers stay known.
//! - After a reboot the metadata is gone while the content store and the overlayfs snapshots
//!   are still on disk, unreachable: they are removed (the agent imports or pulls images again
//!   when a pod needs them).
//! - A `state/` on disk is cleared first; if it holds task bundles (containers an older Wharf
//!   left running, whose root file systems are mounted there) it stays on disk, with a warning.
//! - A daemon found running on the directory is adopted with everything as it is.
//! - Mounting needs root: without it, a warning says that container specs stay on disk and the
//!   daemon starts anyway. [`ManagedContainerd::start`] (this crate's tests) mounts nothing.

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

/// How [`ManagedContainerd::start_with`] keeps the daemon's files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Keep `state/` and the metadata database on tmpfs mounts (needs root; see the module
    /// docs), so container specs, environment variables from Secrets included, are never
    /// written to disk.
    pub in_memory: bool,
}

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
    /// Everything is kept on disk; see [`ManagedContainerd::start_with`].
    pub async fn start(binary: &Path, dir: &Path) -> Result<ManagedContainerd, RuntimeError> {
        Self::start_with(binary, dir, Options::default()).await
    }

    /// Like [`ManagedContainerd::start`], with `options`: with `in_memory`, the state and the
    /// metadata of a daemon it starts are put on tmpfs mounts first (an adopted daemon keeps
    /// what it has).
    pub async fn start_with(
        binary: &Path,
        dir: &Path,
        options: Options,
    ) -> Result<ManagedContainerd, RuntimeError> {
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
                if options.in_memory {
                    keep_in_memory(&daemon.dir);
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

/// Where, under the daemon's directory, its state and its metadata database live, and the
/// stores the metadata refers to.
const STATE_DIR: &str = "state";
const METADATA_DIR: &str = "root/io.containerd.metadata.v1.bolt";
const METADATA_FILE: &str = "meta.db";
const CONTENT_DIR: &str = "root/io.containerd.content.v1.content";
const SNAPSHOTS_DIR: &str = "root/io.containerd.snapshotter.v1.overlayfs";
/// Where containerd keeps the bundles of tasks: `state/TASKS_DIR/NAMESPACE/ID`.
const TASKS_DIR: &str = "io.containerd.runtime.v2.task";

/// Whether `dir` is a mount point: it is on another device than its parent (always true of a
/// tmpfs mounted there).
fn is_mount_point(dir: &Path) -> bool {
    let (Ok(own), Some(Ok(parent))) = (rustix::fs::stat(dir), dir.parent().map(rustix::fs::stat))
    else {
        return false;
    };
    own.st_dev != parent.st_dev
}

/// What is in the daemon's directory before its state is put in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StateFound {
    /// `state/` is a mount point already (Wharf mounted it before this boot).
    mounted: bool,
    /// `state/` on disk holds something.
    has_entries: bool,
    /// ... among which bundles of tasks (containers an earlier daemon ran, which may still run).
    has_tasks: bool,
}

/// What to do with `state/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatePlan {
    /// It is in memory already.
    Keep,
    /// Mount a tmpfs, after removing the stale state on disk if `clear_first`.
    Mount { clear_first: bool },
    /// Containers of an earlier daemon may still run from bundles on disk (their root
    /// filesystems are mounted there): moving them would lose those containers, so the state
    /// stays on disk until none is left.
    LeaveOnDisk,
}

fn plan_state(found: StateFound) -> StatePlan {
    if found.mounted {
        StatePlan::Keep
    } else if found.has_tasks {
        StatePlan::LeaveOnDisk
    } else {
        StatePlan::Mount {
            clear_first: found.has_entries,
        }
    }
}

/// What is in the daemon's directory before its metadata is put in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetadataFound {
    /// The metadata directory is a mount point already (Wharf mounted it before this boot).
    mounted: bool,
    /// A `meta.db` is there: on disk if not `mounted`, else in memory.
    meta_db: bool,
    /// The content store or the overlayfs snapshotter holds something on disk.
    images_on_disk: bool,
    /// Bundles of tasks are in `state/` (containers that may run on the snapshots).
    tasks_in_state: bool,
}

/// What to do with the metadata directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetadataPlan {
    /// Mount a tmpfs there.
    mount: bool,
    /// Move the `meta.db` on disk into the tmpfs.
    move_meta_db: bool,
    /// Remove the content store and the overlayfs snapshots: there is no metadata to reach
    /// them (after a reboot emptied the tmpfs).
    remove_images: bool,
}

fn plan_metadata(found: MetadataFound) -> MetadataPlan {
    if found.mounted {
        return MetadataPlan {
            mount: false,
            move_meta_db: false,
            remove_images: false,
        };
    }
    MetadataPlan {
        mount: true,
        move_meta_db: found.meta_db,
        // Never under containers that may still run on the snapshots.
        remove_images: !found.meta_db && found.images_on_disk && !found.tasks_in_state,
    }
}

/// Whether `dir` exists and holds something.
fn has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some())
}

/// Whether `state` holds the bundle of a task (`TASKS_DIR/NAMESPACE/ID`).
fn has_tasks(state: &Path) -> bool {
    std::fs::read_dir(state.join(TASKS_DIR)).is_ok_and(|namespaces| {
        namespaces
            .flatten()
            .any(|namespace| has_entries(&namespace.path()))
    })
}

/// Removes a directory tree without descending into anything mounted inside it.
fn remove_on_this_device(dir: &Path) -> std::io::Result<()> {
    let device = rustix::fs::stat(dir)?.st_dev;
    remove_tree_on(dir, device)?;
    std::fs::remove_dir(dir)
}

fn remove_tree_on(dir: &Path, device: u64) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.is_dir() {
            if rustix::fs::stat(&path)?.st_dev != device {
                return Err(std::io::Error::other(format!(
                    "{} is mounted; not removing it",
                    path.display()
                )));
            }
            remove_tree_on(&path, device)?;
            std::fs::remove_dir(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// Mounts a tmpfs at `dir` (created if needed), readable by root only but for `mode`.
fn mount_tmpfs(dir: &Path, mode: &str, flags: rustix::mount::MountFlags) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let options = std::ffi::CString::new(format!("mode={mode}")).expect("no NUL in the options");
    rustix::mount::mount("tmpfs", dir, "tmpfs", flags, options.as_c_str()).map_err(|e| {
        let hint = if e == rustix::io::Errno::PERM {
            " (mounting needs root)"
        } else {
            ""
        };
        format!("cannot mount a tmpfs at {}: {e}{hint}", dir.display())
    })
}

/// Puts the state and the metadata database of a daemon about to start on tmpfs mounts (see
/// the module docs). Never fails: what cannot be put in memory stays on disk, with a warning.
fn keep_in_memory(dir: &Path) {
    if let Err(error) = put_state_in_memory(dir).and_then(|()| put_metadata_in_memory(dir)) {
        tracing::warn!(
            dir = %dir.display(),
            "cannot keep the managed containerd's state and metadata in memory: {error}; \
             container specs, environment variables from Secrets included, will be written to \
             disk under this directory"
        );
    }
}

fn put_state_in_memory(dir: &Path) -> Result<(), String> {
    use rustix::mount::MountFlags;
    let state = dir.join(STATE_DIR);
    let found = StateFound {
        mounted: is_mount_point(&state),
        has_entries: has_entries(&state),
        has_tasks: has_tasks(&state),
    };
    match plan_state(found) {
        StatePlan::Keep => Ok(()),
        StatePlan::LeaveOnDisk => Err(format!(
            "{} on disk holds tasks of an earlier containerd, whose containers may still run",
            state.display()
        )),
        StatePlan::Mount { clear_first } => {
            if clear_first {
                remove_on_this_device(&state).map_err(|e| {
                    format!("cannot remove the stale state in {}: {e}", state.display())
                })?;
            }
            // Like /run: no set-user-id programs or devices; the shims run from elsewhere.
            mount_tmpfs(&state, "0711", MountFlags::NOSUID | MountFlags::NODEV)?;
            tracing::info!(dir = %state.display(), "containerd's state is in memory");
            Ok(())
        }
    }
}

fn put_metadata_in_memory(dir: &Path) -> Result<(), String> {
    use rustix::mount::MountFlags;
    let metadata = dir.join(METADATA_DIR);
    let meta_db = metadata.join(METADATA_FILE);
    let found = MetadataFound {
        mounted: is_mount_point(&metadata),
        meta_db: meta_db.exists(),
        images_on_disk: has_entries(&dir.join(CONTENT_DIR))
            || has_entries(&dir.join(SNAPSHOTS_DIR)),
        tasks_in_state: has_tasks(&dir.join(STATE_DIR)),
    };
    let plan = plan_metadata(found);
    if !plan.mount {
        return Ok(());
    }
    let moved = if plan.move_meta_db {
        let bytes = std::fs::read(&meta_db)
            .map_err(|e| format!("cannot read {}: {e}", meta_db.display()))?;
        std::fs::remove_file(&meta_db)
            .map_err(|e| format!("cannot remove {}: {e}", meta_db.display()))?;
        Some(bytes)
    } else {
        None
    };
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if let Err(error) = mount_tmpfs(&metadata, "0700", flags) {
        // Put the database back where it was rather than lose every image and container.
        if let Some(bytes) = &moved
            && let Err(e) = std::fs::write(&meta_db, bytes)
        {
            return Err(format!(
                "{error}; and cannot write {} back: {e}",
                meta_db.display()
            ));
        }
        return Err(error);
    }
    if let Some(bytes) = moved {
        std::fs::write(&meta_db, bytes)
            .map_err(|e| format!("cannot write {} into memory: {e}", meta_db.display()))?;
        tracing::info!(file = %meta_db.display(), "moved containerd's metadata into memory");
    }
    if plan.remove_images {
        for stale in [CONTENT_DIR, SNAPSHOTS_DIR] {
            let path = dir.join(stale);
            if path.exists()
                && let Err(error) = remove_on_this_device(&path)
            {
                tracing::warn!(dir = %path.display(), %error, "cannot remove images without metadata");
            }
        }
        tracing::info!(
            dir = %dir.display(),
            "containerd's metadata was gone (a reboot): removed the images it referred to; \
             they are imported or pulled again when pods need them"
        );
    }
    tracing::info!(dir = %metadata.display(), "containerd's metadata is in memory");
    Ok(())
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

    #[test]
    fn a_mount_point_is_told_from_a_plain_directory() {
        let temp = tempfile::tempdir().unwrap();
        let plain = temp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        assert!(!is_mount_point(&plain));
        assert!(!is_mount_point(&temp.path().join("missing")));
        // /proc is always a file system of its own.
        assert!(is_mount_point(Path::new("/proc")));
    }

    #[test]
    fn state_goes_in_memory_unless_it_is_there_or_containers_may_run_from_disk() {
        let found = |mounted, has_entries, has_tasks| StateFound {
            mounted,
            has_entries,
            has_tasks,
        };
        assert_eq!(plan_state(found(true, true, true)), StatePlan::Keep);
        assert_eq!(plan_state(found(true, false, false)), StatePlan::Keep);
        assert_eq!(
            plan_state(found(false, false, false)),
            StatePlan::Mount { clear_first: false }
        );
        assert_eq!(
            plan_state(found(false, true, false)),
            StatePlan::Mount { clear_first: true }
        );
        assert_eq!(plan_state(found(false, true, true)), StatePlan::LeaveOnDisk);
    }

    #[test]
    fn metadata_on_disk_is_moved_and_images_without_metadata_are_removed() {
        let plan = |mounted, meta_db, images_on_disk, tasks_in_state| {
            plan_metadata(MetadataFound {
                mounted,
                meta_db,
                images_on_disk,
                tasks_in_state,
            })
        };
        let keep = MetadataPlan {
            mount: false,
            move_meta_db: false,
            remove_images: false,
        };
        // Already in memory (a restart without reboot): everything stays as it is.
        assert_eq!(plan(true, true, true, true), keep);
        assert_eq!(plan(true, false, true, false), keep);
        // A fresh data directory.
        let mount = MetadataPlan {
            mount: true,
            move_meta_db: false,
            remove_images: false,
        };
        assert_eq!(plan(false, false, false, false), mount);
        // An older Wharf's data directory: the database moves into memory, images stay.
        let migrate = MetadataPlan {
            move_meta_db: true,
            ..mount
        };
        assert_eq!(plan(false, true, true, false), migrate);
        assert_eq!(plan(false, true, true, true), migrate);
        // After a reboot: images on disk that no metadata refers to any more.
        let reboot = MetadataPlan {
            remove_images: true,
            ..mount
        };
        assert_eq!(plan(false, false, true, false), reboot);
        // ... but never under containers that may run on the snapshots.
        assert_eq!(plan(false, false, true, true), mount);
    }

    /// Unmounts what the test mounted under `dir`, deepest first.
    fn unmount_under(dir: &Path) {
        for point in [METADATA_DIR, STATE_DIR] {
            let _ = rustix::mount::unmount(dir.join(point), rustix::mount::UnmountFlags::DETACH);
        }
    }

    #[test]
    fn an_older_meta_db_moves_into_memory_and_images_without_metadata_are_removed() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        // An older Wharf's directory: metadata, content and snapshots on disk.
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for stale in [METADATA_DIR, CONTENT_DIR, SNAPSHOTS_DIR, STATE_DIR] {
            std::fs::create_dir_all(dir.join(stale)).unwrap();
        }
        std::fs::write(dir.join(METADATA_DIR).join(METADATA_FILE), b"bolt").unwrap();
        std::fs::write(dir.join(CONTENT_DIR).join("blob"), b"layer").unwrap();
        std::fs::write(dir.join(STATE_DIR).join("stale"), b"old").unwrap();
        keep_in_memory(dir);
        let kept = (
            is_mount_point(&dir.join(STATE_DIR)),
            is_mount_point(&dir.join(METADATA_DIR)),
            std::fs::read(dir.join(METADATA_DIR).join(METADATA_FILE)).ok(),
            dir.join(CONTENT_DIR).join("blob").exists(),
            dir.join(STATE_DIR).join("stale").exists(),
        );
        // Unmounting shows what is left on disk below: no meta.db.
        unmount_under(dir);
        let on_disk = dir.join(METADATA_DIR).join(METADATA_FILE).exists();
        assert_eq!(kept, (true, true, Some(b"bolt".to_vec()), true, false));
        assert!(!on_disk, "meta.db is still on disk");

        // After a reboot (empty tmpfs): the images are unreachable and removed.
        keep_in_memory(dir);
        let after_reboot = (
            is_mount_point(&dir.join(METADATA_DIR)),
            dir.join(METADATA_DIR).join(METADATA_FILE).exists(),
            dir.join(CONTENT_DIR).exists(),
        );
        // A second start (no reboot) keeps what is mounted.
        std::fs::write(dir.join(METADATA_DIR).join(METADATA_FILE), b"new").unwrap();
        keep_in_memory(dir);
        let again = std::fs::read(dir.join(METADATA_DIR).join(METADATA_FILE)).ok();
        unmount_under(dir);
        assert_eq!(after_reboot, (true, false, false));
        assert_eq!(again, Some(b"new".to_vec()));
    }

    #[test]
    fn tasks_are_found_in_the_state_and_stale_trees_are_removed() {
        let temp = tempfile::tempdir().unwrap();
        let state = temp.path().join(STATE_DIR);
        assert!(!has_tasks(&state));
        std::fs::create_dir_all(state.join(TASKS_DIR).join("wharf")).unwrap();
        assert!(has_entries(&state));
        assert!(!has_tasks(&state), "an empty namespace holds no task");
        let bundle = state.join(TASKS_DIR).join("wharf").join("c1");
        std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
        std::fs::write(bundle.join("config.json"), "{}").unwrap();
        std::os::unix::fs::symlink("config.json", bundle.join("link")).unwrap();
        assert!(has_tasks(&state));
        remove_on_this_device(&state).unwrap();
        assert!(!state.exists());
    }
}
