//! CRI-format container logs, as the kubelet and containerd's CRI plugin write them:
//! `<RFC3339Nano> stdout|stderr P|F <content>`, one record per line.
//!
//! - [`spawn_copier`] copies a task's stdout and stderr (its FIFO readers) into a log file,
//!   splitting lines longer than [`MAX_LINE`] into `P` (partial) records ended by an `F`.
//! - Rotation: when the file would grow past `max_size`, it is renamed `<name>.1` (older
//!   ones shift to `.2`, ...) and a new file is started; at most `max_files` files exist,
//!   the live one included (the kubelet's containerLogMaxSize / containerLogMaxFiles;
//!   kubelet renames with a timestamp suffix and gzips, this crate numbers them).
//! - [`read_logs`] serves `kubectl logs`: follow (across rotation, until the container
//!   stops or the caller goes away), tail, since, timestamps and limit-bytes. Like the
//!   kubelet it reads the live file only (rotated files are not shown) and yields the
//!   content, adding the timestamp back when asked.
//! - Layout helpers: `<pod log dir>/<container>/<restart count>.log`; `--previous` reads the
//!   previous instance's file.

mod reader;
mod writer;

pub use reader::{ReadOptions, read_logs, resolve_log_path};
pub use writer::{CopierHandle, LogWriter, RotationPolicy, spawn_copier};

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Longest content of one record; longer lines are split into partial records (the same
/// 16 KiB as containerd's CRI plugin).
pub const MAX_LINE: usize = 16 * 1024;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp: jiff::Timestamp,
    pub stream: Stream,
    /// A `P` record: the line continues in the next record.
    pub partial: bool,
    /// The content, without the trailing newline.
    pub content: Vec<u8>,
}

/// Formats a record, newline included.
pub fn format_line(
    timestamp: jiff::Timestamp,
    stream: Stream,
    partial: bool,
    content: &[u8],
) -> Vec<u8> {
    let ts = format_timestamp(timestamp);
    let mut out = Vec::with_capacity(ts.len() + content.len() + 12);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// RFC 3339 with nanoseconds, trailing zeros dropped (Go's `time.RFC3339Nano`), in UTC.
pub fn format_timestamp(t: jiff::Timestamp) -> String {
    t.to_string()
}

/// Parses one record (without its newline).
pub fn parse_line(line: &[u8]) -> std::result::Result<LogLine, String> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let ts = parts.next().ok_or("empty line")?;
    let stream = parts.next().ok_or("no stream field")?;
    let tag = parts.next().ok_or("no tag field")?;
    let content = parts.next().unwrap_or_default();
    let ts = std::str::from_utf8(ts)
        .ok()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .ok_or("bad timestamp")?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return Err("stream must be stdout or stderr".into()),
    };
    // Tags are ':'-separated; the first says partial or full.
    let partial = match tag.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err("tag must start with P or F".into()),
    };
    Ok(LogLine {
        timestamp: ts,
        stream,
        partial,
        content: content.to_vec(),
    })
}

/// `<container_dir>/<restart_count>.log`, as the kubelet names a container instance's log.
pub fn instance_log_path(container_dir: &Path, restart_count: u32) -> PathBuf {
    container_dir.join(format!("{restart_count}.log"))
}

/// The restart counts that have a log file in a container's log dir, ascending.
pub fn instances(container_dir: &Path) -> Result<Vec<u32>> {
    let rd = match std::fs::read_dir(container_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::io("read log dir", container_dir, e)),
    };
    let mut out: Vec<u32> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_round_trip() {
        let t: jiff::Timestamp = "2016-10-06T00:17:09.669794202Z".parse().unwrap();
        let l = format_line(t, Stream::Stderr, true, b"a b c");
        assert_eq!(l, b"2016-10-06T00:17:09.669794202Z stderr P a b c\n");
        let p = parse_line(&l[..l.len() - 1]).unwrap();
        assert_eq!(p.timestamp, t);
        assert_eq!(p.stream, Stream::Stderr);
        assert!(p.partial);
        assert_eq!(p.content, b"a b c");
        // Go trims trailing zeros of the fraction.
        let t: jiff::Timestamp = "2016-10-06T00:17:09.5Z".parse().unwrap();
        assert_eq!(format_timestamp(t), "2016-10-06T00:17:09.5Z");
        let e = parse_line(b"2016-10-06T00:17:09Z stdout F").unwrap();
        assert!(e.content.is_empty());
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse_line(b"").is_err());
        assert!(parse_line(b"nottime stdout F x").is_err());
        assert!(parse_line(b"2016-10-06T00:17:09Z stdin F x").is_err());
        assert!(parse_line(b"2016-10-06T00:17:09Z stdout X x").is_err());
        assert!(parse_line(b"2016-10-06T00:17:09Z stdout F:x y").is_ok());
    }

    #[test]
    fn instances_are_found_in_order() {
        let d = tempfile::tempdir().unwrap();
        for n in [2, 0, 10] {
            std::fs::write(instance_log_path(d.path(), n), b"").unwrap();
        }
        std::fs::write(d.path().join("0.log.1"), b"").unwrap();
        assert_eq!(instances(d.path()).unwrap(), vec![0, 2, 10]);
        assert!(instances(&d.path().join("none")).unwrap().is_empty());
    }
}
