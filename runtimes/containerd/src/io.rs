//! A container's stdout and stderr: two FIFOs that containerd's shim writes to, read here into
//! the container's CRI log file.
//!
//! The FIFOs live in the runtime's state directory, one directory per container, and outlive
//! this process: the shim keeps writing to them while the agent restarts, and a restarted
//! agent opens them again to go on reading.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{CWD, Mode, mkfifoat};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;
use wharf_runtime::logs::{LogFile, Stream};

/// The FIFOs of one container.
#[derive(Clone, Debug)]
pub(crate) struct Fifos {
    pub dir: PathBuf,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Fifos {
    /// Where the FIFOs of container `id` are, under `root`.
    pub(crate) fn at(root: &Path, id: &str) -> Fifos {
        let dir = root.join(id);
        Fifos {
            stdout: dir.join("stdout"),
            stderr: dir.join("stderr"),
            dir,
        }
    }

    /// Makes the FIFOs, replacing any left from an earlier container of the same id.
    pub(crate) fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        for path in [&self.stdout, &self.stderr] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            mkfifoat(CWD, path, Mode::from_raw_mode(0o600))?;
        }
        Ok(())
    }

    /// Removes the FIFOs and their directory.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Opens both FIFOs for reading and copies what arrives into the log until every writer
    /// has closed them (the container and its shim are gone). The returned task ends then;
    /// aborting it stops reading.
    ///
    /// The FIFOs are opened without blocking, before the shim opens them for writing: a FIFO
    /// that no writer has opened yet is not at its end, so reading waits for the shim.
    pub(crate) fn copy_to_log(&self, log: &Arc<LogFile>) -> std::io::Result<JoinHandle<()>> {
        let stdout = pipe::OpenOptions::new().open_receiver(&self.stdout)?;
        let stderr = pipe::OpenOptions::new().open_receiver(&self.stderr)?;
        let out = copy(stdout, log.writer(Stream::Stdout));
        let err = copy(stderr, log.writer(Stream::Stderr));
        // One task for both, so that aborting it closes both FIFOs.
        Ok(tokio::spawn(async move {
            tokio::join!(out, err);
        }))
    }
}

async fn copy(mut from: pipe::Receiver, mut to: wharf_runtime::logs::LogWriter) {
    let mut buffer = vec![0; 32 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => to.write(&buffer[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read a container's output");
                break;
            }
        }
    }
    to.flush();
}

/// Waits for the log copy of an exited container to finish, but not forever: a process the
/// container left behind may hold its output open.
pub(crate) async fn finish_copy(copier: JoinHandle<()>) {
    let abort = copier.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), copier)
        .await
        .is_err()
    {
        abort.abort();
    }
}
