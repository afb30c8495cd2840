//! Container logs in the CRI log format, shared by both runtimes and read by the agent.
//!
//! Each line is `TIMESTAMP STREAM TAG CONTENT`: an RFC 3339 timestamp with nanoseconds,
//! `stdout` or `stderr`, `F` for a full line or `P` for a partial one (a line longer than
//! [`MAX_LINE`] is split), then the content. This is what the kubelet writes, so the same
//! tools read it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::{Lifecycle, RuntimeError};

/// Lines longer than this are written in several partial records.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How many chunks of output an attached client may fall behind before it misses some.
const TAP_CAPACITY: usize = 1024;

/// The log file of one container, shared by its streams. What is written also goes, as it
/// is written, to the clients attached with [`LogFile::follow`].
#[derive(Debug)]
pub struct LogFile {
    file: Mutex<File>,
    tap: broadcast::Sender<(Stream, Bytes)>,
}

impl LogFile {
    /// Opens (appending) or creates the log file.
    pub fn open(path: &Path) -> std::io::Result<Arc<LogFile>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Arc::new(LogFile {
            file: Mutex::new(file),
            tap: broadcast::channel(TAP_CAPACITY).0,
        }))
    }

    /// The output side of an attach session ([`Runtime::attach`](crate::Runtime::attach)),
    /// the same for every runtime: what this file gets from now on, as [`LogFile::follow`]
    /// gives it, until the container that `life` watches has exited; then its exit code,
    /// once the output written before the exit has been passed on (`NotFound` for `id` if its
    /// record went away first). Dropping the exit receiver stops following.
    pub fn attach_output(
        self: &Arc<Self>,
        merge: bool,
        life: watch::Receiver<Lifecycle>,
        id: &str,
    ) -> AttachedOutput {
        let (end, ended) = oneshot::channel::<()>();
        let (stdout, stderr, following) = self.follow_until(merge, async {
            let _ = ended.await;
        });
        let (mut exit, exit_receiver) = oneshot::channel();
        let id = id.to_owned();
        tokio::spawn(async move {
            let exited = tokio::select! {
                exited = Lifecycle::exited(life) => exited,
                // The session went away: `end` drops, and the follower stops.
                () = exit.closed() => return,
            };
            let _ = end.send(());
            let _ = following.await;
            let _ = exit.send(exited.map(|e| e.code).ok_or(RuntimeError::NotFound(id)));
        });
        AttachedOutput {
            stdout,
            stderr,
            exit: exit_receiver,
        }
    }

    /// The output written from now on, for an attached client: each stream's chunks as they
    /// are written (with `merge`, stderr's on the stdout channel too, and no stderr channel),
    /// until `ended` resolves (then what was written before it is still delivered), every
    /// writer of the file is gone, or the client drops its stdout. A client that falls more
    /// than [`TAP_CAPACITY`] chunks behind misses the oldest: the writer never waits for it.
    pub fn follow<E>(
        self: &Arc<Self>,
        merge: bool,
        ended: E,
    ) -> (mpsc::Receiver<Bytes>, Option<mpsc::Receiver<Bytes>>)
    where
        E: Future<Output = ()> + Send + 'static,
    {
        let (stdout, stderr, _) = self.follow_until(merge, ended);
        (stdout, stderr)
    }

    /// [`LogFile::follow`], and the task that forwards: it ends once all is passed on.
    fn follow_until<E>(
        self: &Arc<Self>,
        merge: bool,
        ended: E,
    ) -> (
        mpsc::Receiver<Bytes>,
        Option<mpsc::Receiver<Bytes>>,
        tokio::task::JoinHandle<()>,
    )
    where
        E: Future<Output = ()> + Send + 'static,
    {
        let mut tap = self.tap.subscribe();
        let (stdout, stdout_rx) = mpsc::channel(16);
        let (stderr, stderr_rx) = if merge {
            (None, None)
        } else {
            let (sender, receiver) = mpsc::channel(16);
            (Some(sender), Some(receiver))
        };
        let following = tokio::spawn(async move {
            let forward = |stream: Stream, bytes: Bytes| {
                let to = match (stream, &stderr) {
                    (Stream::Stderr, Some(stderr)) => stderr,
                    _ => &stdout,
                };
                let to = to.clone();
                async move { to.send(bytes).await.is_ok() }
            };
            tokio::pin!(ended);
            loop {
                tokio::select! {
                    biased;
                    received = tap.recv() => match received {
                        Ok((stream, bytes)) => {
                            if !forward(stream, bytes).await {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = &mut ended => break,
                    () = stdout.closed() => return,
                }
            }
            // What was written before the end is still delivered.
            loop {
                match tap.try_recv() {
                    Ok((stream, bytes)) => {
                        if !forward(stream, bytes).await {
                            return;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => return,
                }
            }
        });
        (stdout_rx, stderr_rx, following)
    }

    fn record(&self, stream: Stream, partial: bool, content: &[u8]) {
        let timestamp = format_timestamp(SystemTime::now());
        let mut line = Vec::with_capacity(content.len() + 48);
        line.extend_from_slice(timestamp.as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.name().as_bytes());
        line.extend_from_slice(if partial { b" P " } else { b" F " });
        line.extend_from_slice(content);
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // A full disk must not take the workload down; the line is lost.
        let _ = file.write_all(&line);
    }

    /// A writer for one stream of this file.
    pub fn writer(self: &Arc<Self>, stream: Stream) -> LogWriter {
        LogWriter {
            file: self.clone(),
            stream,
            pending: Vec::new(),
        }
    }
}

/// The output side of an attach session: see [`LogFile::attach_output`].
#[derive(Debug)]
pub struct AttachedOutput {
    /// What the container writes to stdout (with `merge`, stderr too).
    pub stdout: mpsc::Receiver<Bytes>,
    /// What it writes to stderr; `None` with `merge`.
    pub stderr: Option<mpsc::Receiver<Bytes>>,
    /// Its exit code, once it has exited and its output has been passed on.
    pub exit: oneshot::Receiver<Result<i32, RuntimeError>>,
}

/// Turns a byte stream into log records, one per line.
#[derive(Debug)]
pub struct LogWriter {
    file: Arc<LogFile>,
    stream: Stream,
    pending: Vec<u8>,
}

impl LogWriter {
    /// Appends output; complete lines are recorded at once.
    pub fn write(&mut self, mut bytes: &[u8]) {
        if self.file.tap.receiver_count() > 0 {
            let _ = self
                .file
                .tap
                .send((self.stream, Bytes::copy_from_slice(bytes)));
        }
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            self.pending.extend_from_slice(&bytes[..end]);
            self.file.record(self.stream, false, &self.pending);
            self.pending.clear();
            bytes = &bytes[end + 1..];
        }
        self.pending.extend_from_slice(bytes);
        while self.pending.len() >= MAX_LINE {
            let rest = self.pending.split_off(MAX_LINE);
            self.file.record(self.stream, true, &self.pending);
            self.pending = rest;
        }
    }

    /// Records an unfinished last line.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.file.record(self.stream, false, &self.pending);
            self.pending.clear();
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One parsed log record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The timestamp as written.
    pub timestamp: String,
    /// The stream.
    pub stream: Stream,
    /// Whether the record continues on the next one.
    pub partial: bool,
    /// The content, without the newline.
    pub content: String,
}

/// Parses one line of a CRI log file.
pub fn parse_record(line: &str) -> Option<Record> {
    let mut parts = line.splitn(4, ' ');
    let timestamp = parts.next()?.to_owned();
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(Record {
        timestamp,
        stream,
        partial,
        content: parts.next().unwrap_or("").to_owned(),
    })
}

/// Formats a time as RFC 3339 UTC with nanoseconds, e.g. `2026-11-27T23:59:59.123456789Z`.
pub fn format_timestamp(time: SystemTime) -> String {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_epoch.as_secs() as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60,
        since_epoch.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a (year, month, day) date in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn followers_get_what_is_written_after_they_attach_until_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = LogFile::open(&dir.path().join("log")).unwrap();
        let mut out = log.writer(Stream::Stdout);
        let mut err = log.writer(Stream::Stderr);
        out.write(b"before\n");
        let (ended, end) = tokio::sync::oneshot::channel::<()>();
        let (mut stdout, stderr) = log.follow(false, async {
            let _ = end.await;
        });
        let mut stderr = stderr.unwrap();
        let (mut merged, none) = log.follow(true, std::future::pending());
        assert!(none.is_none());
        out.write(b"partial ");
        err.write(b"oops\n");
        out.write(b"line\n");
        drop(ended);
        assert_eq!(stdout.recv().await.unwrap(), "partial ");
        assert_eq!(stdout.recv().await.unwrap(), "line\n");
        assert_eq!(
            stdout.recv().await,
            None,
            "the stream ends with the container"
        );
        assert_eq!(stderr.recv().await.unwrap(), "oops\n");
        assert_eq!(stderr.recv().await, None);
        let mut all = Vec::new();
        for _ in 0..3 {
            all.extend_from_slice(&merged.recv().await.unwrap());
        }
        assert_eq!(all, b"partial oops\nline\n");
        // The log has every line, and a follower ends when the last writer is gone.
        drop((out, err));
        drop(log);
        assert_eq!(merged.recv().await, None);
        let text = std::fs::read_to_string(dir.path().join("log")).unwrap();
        let lines: Vec<_> = text.lines().filter_map(parse_record).collect();
        assert_eq!(lines.len(), 3, "{text}");
    }

    #[test]
    fn timestamps_are_rfc3339_with_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_795_737_600, 5);
        assert_eq!(format_timestamp(t), "2026-11-27T00:00:00.000000005Z");
        assert_eq!(
            format_timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_timestamp(leap), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn lines_become_records_and_long_lines_are_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let file = LogFile::open(&path).unwrap();
        let mut out = file.writer(Stream::Stdout);
        let mut err = file.writer(Stream::Stderr);
        out.write(b"hello\nwor");
        err.write(b"oops\n");
        out.write(b"ld\n");
        out.write(&vec![b'x'; MAX_LINE + 10]);
        drop(out);
        drop(err);
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Record> = text.lines().map(|l| parse_record(l).unwrap()).collect();
        let summary: Vec<(Stream, bool, usize)> = records
            .iter()
            .map(|r| (r.stream, r.partial, r.content.len()))
            .collect();
        assert_eq!(
            summary,
            [
                (Stream::Stdout, false, 5),
                (Stream::Stderr, false, 4),
                (Stream::Stdout, false, 5),
                (Stream::Stdout, true, MAX_LINE),
                (Stream::Stdout, false, 10),
            ]
        );
        assert_eq!(records[2].content, "world");
    }
}
