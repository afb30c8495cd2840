//! A command guest's own stdin, which [`Runtime::attach`](wharf_runtime::Runtime::attach)
//! connects clients to (`stdin` and `stdinOnce` of the pod spec).
//!
//! [`pipe`] makes the two ends: the guest reads a [`StdinReader`] (wrapped in wasmtime-wasi's
//! `AsyncStdinStream`, so both preview 2 components and preview 1 modules read it), and the
//! runtime keeps the [`StdinWriter`] in the container's record while the guest runs. Each
//! attached client gets its own sender ([`StdinWriter::attach`]), whose chunks a task forwards
//! to the guest; several clients may write at once, chunk by chunk. The guest's reads wait
//! while stdin is open and nothing has arrived, and see end of file once it is closed: when
//! the guest has exited, or — with `stdinOnce` — when the first client given stdin closes it or
//! goes away.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;

/// How many chunks may wait for the guest to read them before writers wait.
const STDIN_CHUNKS: usize = 16;

/// Makes a guest's stdin: the runtime's end and the guest's. With `once`, the stdin closes
/// for good when the first attached client's stdin ends.
pub fn pipe(once: bool) -> (Arc<StdinWriter>, StdinReader) {
    let (sender, receiver) = mpsc::channel(STDIN_CHUNKS);
    let writer = StdinWriter {
        sender: Mutex::new(Some(sender)),
        once,
    };
    let reader = StdinReader {
        receiver,
        chunk: Bytes::new(),
    };
    (Arc::new(writer), reader)
}

/// The runtime's end of a guest's stdin.
#[derive(Debug)]
pub struct StdinWriter {
    /// The one sender into the guest's stdin; `None` once it is closed. Forwarding tasks
    /// hold a clone only while they send a chunk, so taking it out closes the stdin at once.
    sender: Mutex<Option<mpsc::Sender<Bytes>>>,
    /// Whether the first client's end of stdin closes the guest's (`stdinOnce`).
    once: bool,
}

impl StdinWriter {
    /// The sender into the guest's stdin, unless it is closed.
    fn sender(&self) -> Option<mpsc::Sender<Bytes>> {
        self.sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A new client's sender into the guest's stdin, or `None` when it is closed. What is
    /// sent reaches the guest in order, interleaved by chunk with other clients'. When the
    /// client drops the sender, the guest's stdin stays open for the next client — unless it
    /// was created with `once`, then it closes (the guest reads end of file).
    pub fn attach(self: &Arc<Self>) -> Option<mpsc::Sender<Bytes>> {
        self.sender()?;
        let (client, mut chunks) = mpsc::channel::<Bytes>(STDIN_CHUNKS);
        let writer = self.clone();
        tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                let Some(sender) = writer.sender() else {
                    return;
                };
                if sender.send(chunk).await.is_err() {
                    // The guest is gone.
                    return;
                }
            }
            if writer.once {
                writer.close();
            }
        });
        Some(client)
    }

    /// Closes the guest's stdin for good: once it has read what was sent, it reads end of file.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// The guest's end of its stdin: the chunks clients send, then end of file once it is closed.
#[derive(Debug)]
pub struct StdinReader {
    receiver: mpsc::Receiver<Bytes>,
    /// What is left of the chunk being read.
    chunk: Bytes,
}

impl AsyncRead for StdinReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // An empty chunk is skipped: reading nothing would mean end of file.
        while self.chunk.is_empty() {
            match ready!(self.receiver.poll_recv(cx)) {
                Some(chunk) => self.chunk = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(self.chunk.len());
        buf.put_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    async fn read_some(reader: &mut StdinReader) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .expect("a read in time")
            .expect("a read");
        buf[..n].to_vec()
    }

    #[tokio::test]
    async fn reads_wait_while_open_and_the_stdin_stays_open_between_clients() {
        let (writer, mut reader) = pipe(false);
        let mut buf = [0u8; 8];
        let waiting = tokio::time::timeout(Duration::from_millis(50), reader.read(&mut buf)).await;
        assert!(waiting.is_err(), "a read waits while stdin is open");
        let first = writer.attach().expect("open");
        first.send(Bytes::new()).await.unwrap();
        first.send("one\n".into()).await.unwrap();
        assert_eq!(read_some(&mut reader).await, b"one\n");
        drop(first);
        let second = writer.attach().expect("still open");
        second.send("two\n".into()).await.unwrap();
        assert_eq!(read_some(&mut reader).await, b"two\n");
        writer.close();
        assert!(writer.attach().is_none());
        drop(second);
        assert_eq!(read_some(&mut reader).await, b"", "end of file once closed");
    }

    #[tokio::test]
    async fn with_once_the_first_client_to_leave_closes_the_stdin() {
        let (writer, mut reader) = pipe(true);
        let first = writer.attach().expect("open");
        let other = writer.attach().expect("open");
        first.send("last".into()).await.unwrap();
        drop(first);
        assert_eq!(read_some(&mut reader).await, b"last");
        assert_eq!(read_some(&mut reader).await, b"", "end of file");
        assert!(writer.attach().is_none(), "closed for good");
        drop(other);
    }
}
