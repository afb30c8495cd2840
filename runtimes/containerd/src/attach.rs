//! Attaching to a running container's own stdio
//! ([`Runtime::attach`](wharf_runtime::Runtime::attach)): `kubectl attach` and
//! `kubectl run -it`.
//!
//! Nothing is set up per session on containerd's side: the container's output already flows
//! from the shim through the FIFOs into its log file, and a session follows the log file
//! ([`LogFile::follow`]) from the moment it attaches. Its stdin is the one write end of the
//! container's stdin FIFO that the runtime keeps while the container runs
//! ([`SharedStdin`]): every session writes its chunks there, interleaved. Resizes go to
//! containerd's `ResizePty` for the task's init process.
//!
//! A session owns nothing: dropping it stops following and writing, and the container runs
//! on — except that with `stdinOnce` the first session that sent stdin and goes away closes
//! the container's stdin for good (the process reads end of file).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{Mutex, mpsc, watch};
use wharf_runtime::logs::{AttachedOutput, LogFile};
use wharf_runtime::{ExecSession, Lifecycle, Stdio};

use crate::exec::{STREAM_CHUNKS, TaskProcess, follow_resizes};
use crate::io::Fifos;

/// What attached sessions connect to while a container's task runs; the container record
/// holds it from the task's start until its exit.
#[derive(Clone)]
pub(crate) struct TaskStreams {
    /// The container's log, which its output is copied into and sessions follow.
    pub log: Arc<LogFile>,
    /// The container's stdin, when it was created with one.
    pub stdin: Option<Arc<SharedStdin>>,
}

/// The write end of a container's stdin FIFO, shared by the sessions attached to it.
///
/// The shim holds a write end of its own, so the process sees end of file only once the
/// stdin is closed for good: this end dropped and the shim's closed with `CloseIO`
/// ([`SharedStdin::close`]).
pub(crate) struct SharedStdin {
    /// The write end; `None` once closed.
    pipe: Mutex<Option<pipe::Sender>>,
    /// Whether sessions may still write (false once closed, even while a write finishes).
    open: AtomicBool,
    /// `stdinOnce`: the first session that had stdin closes it for good when it goes.
    once: bool,
    /// The container's FIFOs, whose stdin FIFO is removed when closed for good.
    fifos: Fifos,
    /// The task's init process, for `CloseIO`.
    process: TaskProcess,
}

impl SharedStdin {
    /// Shares `pipe`, the write end of the stdin FIFO among `fifos`.
    pub(crate) fn new(
        pipe: pipe::Sender,
        once: bool,
        fifos: Fifos,
        process: TaskProcess,
    ) -> Arc<SharedStdin> {
        Arc::new(SharedStdin {
            pipe: Mutex::new(Some(pipe)),
            open: AtomicBool::new(true),
            once,
            fifos,
            process,
        })
    }

    /// Whether the stdin is still open for sessions to write to.
    fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Writes one chunk; false when the stdin is closed or cannot be written.
    async fn write(&self, chunk: &[u8]) -> bool {
        let mut pipe = self.pipe.lock().await;
        match pipe.as_mut() {
            Some(pipe) if self.is_open() => pipe.write_all(chunk).await.is_ok(),
            _ => false,
        }
    }

    /// Closes the container's stdin for good (`stdinOnce`): the process reads end of file,
    /// later sessions get no stdin, and the FIFO's name goes, so that a restarted agent does
    /// not open it again.
    async fn close(&self) {
        if !self.open.swap(false, Ordering::SeqCst) {
            return;
        }
        self.fifos.remove_stdin();
        self.process.close_stdin().await;
        self.pipe.lock().await.take();
    }

    /// Lets go of the write end once the container has exited (its reader is gone; this end
    /// being read-write, writes would otherwise fill the pipe and then wait forever).
    pub(crate) async fn release(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.pipe.lock().await.take();
    }
}

/// A session attached to a running container; see
/// [`Runtime::attach`](wharf_runtime::Runtime::attach) for the contract. `life` is the
/// container's lifecycle, `stdin` whether the client asked for stdin.
pub(crate) fn session(
    streams: &TaskStreams,
    stdio: Stdio,
    stdin: bool,
    life: watch::Receiver<Lifecycle>,
    process: TaskProcess,
) -> ExecSession {
    let AttachedOutput {
        stdout,
        stderr,
        exit,
    } = streams
        .log
        .attach_output(stdio.tty, life.clone(), process.container_id());
    let stdin = match (stdin, &streams.stdin) {
        (true, Some(shared)) if shared.is_open() => {
            let (sender, chunks) = mpsc::channel(STREAM_CHUNKS);
            tokio::spawn(feed(shared.clone(), chunks, life));
            Some(sender)
        }
        _ => None,
    };
    let (resize, sizes) = mpsc::channel(4);
    if stdio.tty {
        tokio::spawn(follow_resizes(sizes, process));
    }
    ExecSession {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    }
}

/// Writes what one session sends to the container's stdin until the session closes its
/// sender (then, with `stdinOnce`, the container's stdin closes for good), the stdin is
/// closed by another session, or the container exits.
async fn feed(
    stdin: Arc<SharedStdin>,
    mut chunks: mpsc::Receiver<Bytes>,
    life: watch::Receiver<Lifecycle>,
) {
    let ended = Lifecycle::exited(life);
    tokio::pin!(ended);
    loop {
        let chunk = tokio::select! {
            biased;
            _ = &mut ended => return,
            chunk = chunks.recv() => chunk,
        };
        let Some(chunk) = chunk else { break };
        // A process that does not read its stdin makes the write wait until it exits.
        let written = tokio::select! {
            biased;
            _ = &mut ended => return,
            written = stdin.write(&chunk) => written,
        };
        if !written {
            return;
        }
    }
    if stdin.once {
        stdin.close().await;
    }
}
