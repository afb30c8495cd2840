//! A container's stdio: FIFOs in the runtime's state directory that containerd's shim writes
//! the container's stdout and stderr to, read here into the container's CRI log file, and,
//! for a container with a stdin (`stdin` of its [`Stdio`](wharf_runtime::Stdio)), a FIFO
//! the shim reads the container's stdin from, which attached clients write to. A container on
//! a terminal (`tty`) has one output: the shim copies the terminal's output to the stdout
//! FIFO, and the stderr FIFO stays unused.
//!
//! The FIFOs live in the runtime's state directory, one directory per container, and outlive
//! this process: the shim keeps writing to them while the agent restarts, and a restarted
//! agent opens them again to go on reading, and to write to the stdin FIFO
//! ([`Fifos::open_stdin`]). The stdin FIFO is removed once the container's stdin is closed
//! for good (`stdinOnce`), so that a restarted agent knows it is.
//!
//! Exec'd processes get FIFOs of their own beside the container's, whose output is captured
//! into memory up to a limit ([`Fifos::capture`]) instead of going to the log, or, for an
//! interactive exec, streamed to its caller as it arrives ([`stream`]) with a third FIFO for
//! its stdin ([`Fifos::create_stdin`]).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rustix::fs::{CWD, Mode, mkfifoat};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};
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

    /// Where the FIFOs of exec process `exec_id` in container `id` are: inside the container's
    /// directory, so that removing the container's FIFOs removes any an exec left behind.
    pub(crate) fn for_exec(root: &Path, id: &str, exec_id: &str) -> Fifos {
        Fifos::at(&root.join(id), exec_id)
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

    /// The stdin FIFO of a container or an interactive exec, beside its output FIFOs.
    pub(crate) fn stdin(&self) -> PathBuf {
        self.dir.join("stdin")
    }

    /// Makes the stdin FIFO (after [`Fifos::create`], replacing one left from an earlier
    /// container of the same id) and opens it for writing, as [`Fifos::open_stdin`] does.
    pub(crate) fn create_stdin(&self) -> std::io::Result<pipe::Sender> {
        let path = self.stdin();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        mkfifoat(CWD, &path, Mode::from_raw_mode(0o600))?;
        open_for_writing(&path)
    }

    /// Opens an existing stdin FIFO for writing again (after an agent restart); `None` when
    /// there is none (the container has no stdin, or it was closed for good and removed).
    pub(crate) fn open_stdin(&self) -> std::io::Result<Option<pipe::Sender>> {
        match open_for_writing(&self.stdin()) {
            Ok(sender) => Ok(Some(sender)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the stdin FIFO's name (whoever has it open keeps it): the mark of a stdin
    /// that is closed for good.
    pub(crate) fn remove_stdin(&self) {
        let _ = std::fs::remove_file(self.stdin());
    }

    /// Opens the stdout FIFO, and the stderr FIFO unless `with_stderr` is false (a terminal
    /// has one output), for reading without blocking, as [`Fifos::copy_to_log`] does.
    pub(crate) fn open_outputs(
        &self,
        with_stderr: bool,
    ) -> std::io::Result<(pipe::Receiver, Option<pipe::Receiver>)> {
        let stdout = pipe::OpenOptions::new().open_receiver(&self.stdout)?;
        let stderr = match with_stderr {
            true => Some(pipe::OpenOptions::new().open_receiver(&self.stderr)?),
            false => None,
        };
        Ok((stdout, stderr))
    }

    /// Removes the FIFOs and their directory.
    pub(crate) fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Opens the output FIFOs for reading — stdout, and stderr unless `with_stderr` is false
    /// (a terminal has one output, and nothing ever opens the stderr FIFO then) — and copies
    /// what arrives into the log until every writer has closed them (the container and its
    /// shim are gone). The returned task ends then; aborting it stops reading.
    ///
    /// The FIFOs are opened without blocking, before the shim opens them for writing: a FIFO
    /// that no writer has opened yet is not at its end, so reading waits for the shim.
    pub(crate) fn copy_to_log(
        &self,
        log: &Arc<LogFile>,
        with_stderr: bool,
    ) -> std::io::Result<JoinHandle<()>> {
        let (stdout, stderr) = self.open_outputs(with_stderr)?;
        let out = copy(stdout, log.writer(Stream::Stdout));
        let err = stderr.map(|stderr| copy(stderr, log.writer(Stream::Stderr)));
        // One task for both, so that aborting it closes both FIFOs.
        Ok(tokio::spawn(async move {
            match err {
                Some(err) => {
                    tokio::join!(out, err);
                }
                None => out.await,
            }
        }))
    }

    /// Opens both FIFOs for reading (without blocking, as [`Fifos::copy_to_log`] does) and keeps
    /// the first `limit` bytes of each in memory. What comes after the limit is read and
    /// dropped, so that the writer never blocks on a full pipe.
    pub(crate) fn capture(&self, limit: usize) -> std::io::Result<Capture> {
        let stdout = pipe::OpenOptions::new().open_receiver(&self.stdout)?;
        let stderr = pipe::OpenOptions::new().open_receiver(&self.stderr)?;
        let kept = (
            Arc::new(Mutex::new(Captured::default())),
            Arc::new(Mutex::new(Captured::default())),
        );
        let out = keep_first(stdout, kept.0.clone(), limit);
        let err = keep_first(stderr, kept.1.clone(), limit);
        let task = tokio::spawn(async move {
            tokio::join!(out, err);
        });
        Ok(Capture {
            task,
            stdout: kept.0,
            stderr: kept.1,
        })
    }
}

/// Output kept in memory, up to a limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Captured {
    /// The bytes kept.
    pub bytes: Vec<u8>,
    /// Whether more arrived than was kept.
    pub truncated: bool,
}

impl Captured {
    /// Keeps what fits of `chunk` under `limit` and notes whether anything was dropped.
    fn keep(&mut self, chunk: &[u8], limit: usize) {
        let room = limit.saturating_sub(self.bytes.len());
        let kept = chunk.len().min(room);
        self.bytes.extend_from_slice(&chunk[..kept]);
        self.truncated |= kept < chunk.len();
    }
}

/// The capture of a process's stdout and stderr, running until both FIFOs reach their end.
pub(crate) struct Capture {
    task: JoinHandle<()>,
    stdout: Arc<Mutex<Captured>>,
    stderr: Arc<Mutex<Captured>>,
}

impl Capture {
    /// What was captured once every writer has closed the FIFOs, or after `grace` if one has
    /// not (a process the command left in the background may hold them open): then reading
    /// stops and what arrived so far is the output.
    pub(crate) async fn finish(self, grace: Duration) -> (Captured, Captured) {
        let abort = self.task.abort_handle();
        if tokio::time::timeout(grace, self.task).await.is_err() {
            abort.abort();
        }
        let take = |kept: &Mutex<Captured>| std::mem::take(&mut *lock(kept));
        (take(&self.stdout), take(&self.stderr))
    }

    /// Stops reading at once.
    pub(crate) fn abort(self) {
        self.task.abort();
    }
}

fn lock(kept: &Mutex<Captured>) -> std::sync::MutexGuard<'_, Captured> {
    kept.lock().unwrap_or_else(|e| e.into_inner())
}

async fn keep_first(mut from: pipe::Receiver, to: Arc<Mutex<Captured>>, limit: usize) {
    let mut buffer = vec![0; 32 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) => break,
            Ok(n) => lock(&to).keep(&buffer[..n], limit),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an exec'd process's output");
                break;
            }
        }
    }
}

/// Sends what arrives on a FIFO to `to`, chunk by chunk, until the FIFO's end, until `to` is
/// dropped, or until `stop` becomes true while no data is waiting (a process the command left
/// in the background may hold the FIFO open after the command ended). Sending waits for the
/// receiver, so a slow reader slows the writer down instead of losing output.
pub(crate) async fn stream(
    mut from: pipe::Receiver,
    to: mpsc::Sender<Bytes>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; 32 * 1024];
    loop {
        let read = tokio::select! {
            biased;
            read = from.read(&mut buffer) => read,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        match read {
            Ok(0) => break,
            Ok(n) => {
                if to.send(Bytes::copy_from_slice(&buffer[..n])).await.is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read an exec'd process's output");
                break;
            }
        }
    }
}

/// Opens a FIFO for writing. It is opened read-write, which Linux allows for a FIFO, so that
/// the open neither fails nor waits before the shim has opened it for reading (and writes
/// never fail for want of a reader: whoever writes must stop when the reader is gone).
fn open_for_writing(path: &Path) -> std::io::Result<pipe::Sender> {
    pipe::OpenOptions::new().read_write(true).open_sender(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_output_keeps_the_first_bytes_up_to_the_limit() {
        let mut captured = Captured::default();
        captured.keep(b"hello ", 8);
        assert_eq!(
            (captured.bytes.as_slice(), captured.truncated),
            (&b"hello "[..], false)
        );
        captured.keep(b"world", 8);
        assert_eq!(
            (captured.bytes.as_slice(), captured.truncated),
            (&b"hello wo"[..], true)
        );
        captured.keep(b"more", 8);
        assert_eq!(captured.bytes, b"hello wo");
        assert!(captured.truncated);
    }

    #[test]
    fn output_of_exactly_the_limit_is_not_truncated() {
        let mut captured = Captured::default();
        captured.keep(b"12345678", 8);
        captured.keep(b"", 8);
        assert_eq!((captured.bytes.len(), captured.truncated), (8, false));
    }

    #[tokio::test]
    async fn capture_reads_both_fifos_to_their_end_and_drains_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let fifos = Fifos::for_exec(dir.path(), "c", "exec-1");
        fifos.create().unwrap();
        let capture = fifos.capture(4).unwrap();
        // Much more than a pipe holds (64 KiB): the writer only finishes if the reader drains.
        let (stdout, stderr) = (fifos.stdout.clone(), fifos.stderr.clone());
        let writer = tokio::task::spawn_blocking(move || {
            std::fs::write(stdout, vec![b'x'; 1 << 20]).unwrap();
            std::fs::write(stderr, b"err").unwrap();
        });
        tokio::time::timeout(Duration::from_secs(10), writer)
            .await
            .expect("the writer was not blocked")
            .unwrap();
        let (out, err) = capture.finish(Duration::from_secs(10)).await;
        assert_eq!((out.bytes.as_slice(), out.truncated), (&b"xxxx"[..], true));
        assert_eq!((err.bytes.as_slice(), err.truncated), (&b"err"[..], false));
        fifos.remove();
        assert!(!dir.path().join("c/exec-1").exists());
    }
}
