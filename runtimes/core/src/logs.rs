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

/// The log file of one container, shared by its streams.
#[derive(Debug)]
pub struct LogFile {
    file: Mutex<File>,
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
        }))
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
