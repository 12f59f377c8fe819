//! Reading CRI log files for `kubectl logs`.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{format_timestamp, instance_log_path, instances, parse_line};
use crate::error::{Error, Result};

/// `kubectl logs` options, as the kubelet takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Keep reading new output (and across rotation) until the container stops.
    pub follow: bool,
    /// Only the last N records (`--tail`).
    pub tail: Option<usize>,
    /// Only records at or after this time (`--since`, `--since-time`).
    pub since: Option<jiff::Timestamp>,
    /// Prefix each record with its RFC3339Nano timestamp (`--timestamps`).
    pub timestamps: bool,
    /// Stop after this many bytes of output (`--limit-bytes`).
    pub limit_bytes: Option<u64>,
}

/// The log file to read for a container: the latest instance's, or with `previous` the one
/// before it (`kubectl logs --previous`).
pub fn resolve_log_path(container_dir: &Path, previous: bool) -> Result<PathBuf> {
    let all = instances(container_dir)?;
    let pick = if previous {
        all.len().checked_sub(2).map(|i| all[i])
    } else {
        all.last().copied()
    };
    match pick {
        Some(n) => Ok(instance_log_path(container_dir, n)),
        None => Err(Error::NotFound {
            kind: if previous {
                "previous container log"
            } else {
                "container log"
            },
            name: container_dir.display().to_string(),
        }),
    }
}

struct Output<'a, W> {
    out: &'a mut W,
    opts: &'a ReadOptions,
    written: u64,
    path: &'a Path,
}

impl<W: AsyncWrite + Unpin> Output<'_, W> {
    /// Writes one record's content; false once the byte limit is reached.
    async fn record(&mut self, line: &[u8]) -> Result<bool> {
        let rec = match parse_line(line) {
            Ok(r) => r,
            Err(reason) => {
                tracing::debug!(path = %self.path.display(), reason, "skipping malformed log line");
                return Ok(true);
            }
        };
        if let Some(since) = self.opts.since
            && rec.timestamp < since
        {
            return Ok(true);
        }
        let mut buf = Vec::with_capacity(rec.content.len() + 40);
        if self.opts.timestamps {
            buf.extend_from_slice(format_timestamp(rec.timestamp).as_bytes());
            buf.push(b' ');
        }
        buf.extend_from_slice(&rec.content);
        if !rec.partial {
            buf.push(b'\n');
        }
        let mut done = false;
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit.saturating_sub(self.written);
            if buf.len() as u64 >= left {
                buf.truncate(left as usize);
                done = true;
            }
        }
        self.out
            .write_all(&buf)
            .await
            .map_err(|e| Error::io("write logs to", self.path, e))?;
        self.written += buf.len() as u64;
        Ok(!done)
    }
}

/// An open log file being read record by record.
struct Cursor {
    file: std::fs::File,
    ino: u64,
    pending: Vec<u8>,
}

impl Cursor {
    fn open(path: &Path) -> Result<Cursor> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("open log", path, e))?;
        let ino = file.metadata().map(|m| m.ino()).unwrap_or(0);
        Ok(Cursor {
            file,
            ino,
            pending: Vec::new(),
        })
    }

    /// Complete lines read since the last call.
    fn read_lines(&mut self, path: &Path) -> Result<Vec<Vec<u8>>> {
        let mut buf = Vec::new();
        self.file
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("read log", path, e))?;
        self.pending.extend_from_slice(&buf);
        let mut lines = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.pending[start..].iter().position(|b| *b == b'\n') {
            lines.push(self.pending[start..start + pos].to_vec());
            start += pos + 1;
        }
        self.pending.drain(..start);
        Ok(lines)
    }
}

/// Offset of the start of the last `n` lines.
fn tail_offset(path: &Path, n: usize) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("open log", path, e))?;
    let mut starts: VecDeque<u64> = VecDeque::with_capacity(n + 1);
    let mut offset = 0u64;
    let mut at_line_start = true;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| Error::io("read log", path, e))?;
        if k == 0 {
            break;
        }
        for (i, b) in buf[..k].iter().enumerate() {
            if at_line_start {
                starts.push_back(offset + i as u64);
                if starts.len() > n {
                    starts.pop_front();
                }
                at_line_start = false;
            }
            if *b == b'\n' {
                at_line_start = true;
            }
        }
        offset += k as u64;
    }
    Ok(if n == 0 {
        offset
    } else {
        starts.front().copied().unwrap_or(offset)
    })
}

/// Writes a container's log content to `out`. With `follow`, keeps going (reopening the
/// file when it is rotated) until `stopped` resolves (the container exited: what it wrote
/// last is still copied) or the caller drops this future.
pub async fn read_logs<W, F>(path: &Path, opts: &ReadOptions, stopped: F, out: &mut W) -> Result<()>
where
    W: AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    let mut cursor = Cursor::open(path)?;
    if let Some(n) = opts.tail {
        let off = tail_offset(path, n)?;
        cursor
            .file
            .seek(SeekFrom::Start(off))
            .map_err(|e| Error::io("seek log", path, e))?;
    }
    let mut output = Output {
        out,
        opts,
        written: 0,
        path,
    };
    tokio::pin!(stopped);
    let mut stopping = false;
    loop {
        for line in cursor.read_lines(path)? {
            if !output.record(&line).await? {
                output.out.flush().await.ok();
                return Ok(());
            }
        }
        if !opts.follow || stopping {
            break;
        }
        // Rotated? The writer renames the live file away and starts a new one; finish
        // the old one (done above), then continue with the new one from its start.
        let rotated = match std::fs::metadata(path) {
            Ok(m) => m.ino() != cursor.ino,
            Err(_) => false,
        };
        if rotated {
            for line in cursor.read_lines(path)? {
                if !output.record(&line).await? {
                    return Ok(());
                }
            }
            cursor = Cursor::open(path)?;
            continue;
        }
        output
            .out
            .flush()
            .await
            .map_err(|e| Error::io("write logs to", path, e))?;
        tokio::select! {
            _ = &mut stopped => {
                // One more pass picks up what the copier wrote last.
                tokio::time::sleep(Duration::from_millis(100)).await;
                stopping = true;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    output
        .out
        .flush()
        .await
        .map_err(|e| Error::io("write logs to", path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crilog::{LogWriter, RotationPolicy, Stream};

    fn write(path: &Path, lines: &[(&str, &str, bool)]) {
        let mut w = LogWriter::open(path, RotationPolicy::default()).unwrap();
        for (ts, content, partial) in lines {
            w.write_record(
                ts.parse().unwrap(),
                Stream::Stdout,
                *partial,
                content.as_bytes(),
            )
            .unwrap();
        }
    }

    async fn read(path: &Path, opts: ReadOptions) -> String {
        let mut out = Vec::new();
        read_logs(path, &opts, std::future::pending(), &mut out)
            .await
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn reads_content_tail_since_timestamps_and_limit() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        write(
            &p,
            &[
                ("2024-01-01T00:00:01Z", "one", false),
                ("2024-01-01T00:00:02Z", "tw", true),
                ("2024-01-01T00:00:02Z", "o", false),
                ("2024-01-01T00:00:03.5Z", "three", false),
            ],
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"garbage line\n"))
            .unwrap();
        assert_eq!(read(&p, ReadOptions::default()).await, "one\ntwo\nthree\n");
        let tail = ReadOptions {
            tail: Some(2),
            ..Default::default()
        };
        // The last two records are "three" and the garbage line (skipped).
        assert_eq!(read(&p, tail).await, "three\n");
        let since = ReadOptions {
            since: Some("2024-01-01T00:00:02Z".parse().unwrap()),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(
            read(&p, since).await,
            "2024-01-01T00:00:02Z tw2024-01-01T00:00:02Z o\n2024-01-01T00:00:03.5Z three\n"
        );
        let limit = ReadOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(read(&p, limit).await, "one\ntw");
        let zero = ReadOptions {
            tail: Some(0),
            ..Default::default()
        };
        assert_eq!(read(&p, zero).await, "");
    }

    #[tokio::test]
    async fn follow_crosses_rotation_and_ends_when_stopped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("0.log");
        let policy = RotationPolicy {
            max_size: 1024,
            max_files: 2,
        };
        let mut w = LogWriter::open(&p, policy).unwrap();
        w.write_record(jiff::Timestamp::now(), Stream::Stdout, false, b"first")
            .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let path = p.clone();
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            let opts = ReadOptions {
                follow: true,
                ..Default::default()
            };
            read_logs(
                &path,
                &opts,
                async {
                    let _ = stop_rx.await;
                },
                &mut out,
            )
            .await
            .unwrap();
            String::from_utf8(out).unwrap()
        });
        tokio::time::sleep(Duration::from_millis(250)).await;
        // Enough to rotate several times: the reader must still see every line in order.
        for i in 0..60 {
            w.write_record(
                jiff::Timestamp::now(),
                Stream::Stdout,
                false,
                format!("line {i:02} {}", "p".repeat(30)).as_bytes(),
            )
            .unwrap();
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        assert!(LogWriter::rotated_path(&p, 1).exists());
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop_tx.send(()).unwrap();
        let text = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("follow ends when the container stops")
            .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "first");
        // Rotation can drop at most what was rotated away twice between polls; with this
        // pacing nothing is lost.
        for i in 0..60 {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("line {i:02} "))),
                "line {i} missing: {text}"
            );
        }
    }

    #[test]
    fn previous_is_the_instance_before_the_latest() {
        let d = tempfile::tempdir().unwrap();
        assert!(resolve_log_path(d.path(), false).is_err());
        std::fs::write(d.path().join("0.log"), b"").unwrap();
        assert!(resolve_log_path(d.path(), true).unwrap_err().is_not_found());
        std::fs::write(d.path().join("1.log"), b"").unwrap();
        assert_eq!(
            resolve_log_path(d.path(), false).unwrap(),
            d.path().join("1.log")
        );
        assert_eq!(
            resolve_log_path(d.path(), true).unwrap(),
            d.path().join("0.log")
        );
    }
}
