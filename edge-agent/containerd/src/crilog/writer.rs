//! Writing CRI log files, with rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{MAX_LINE, Stream, format_line};
use crate::error::{Error, Result};

/// When to rotate and how many files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// Rotate before the live file would exceed this many bytes (kubelet default 10 MiB).
    pub max_size: u64,
    /// Files kept, the live one included (kubelet default 5). At least 1; with 1 the live
    /// file is truncated instead of renamed.
    pub max_files: usize,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

impl RotationPolicy {
    pub fn validate(&self) -> Result<()> {
        if self.max_size < 1024 {
            return Err(Error::Config(format!(
                "container log max size {} is below 1 KiB",
                self.max_size
            )));
        }
        if self.max_files == 0 {
            return Err(Error::Config(
                "container log max files must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Appends records to a log file, rotating it by the policy. Synchronous: run it where
/// blocking is fine (the copier runs it on a blocking thread).
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    policy: RotationPolicy,
    file: File,
    size: u64,
}

impl LogWriter {
    /// Opens (appending) or creates the live file.
    pub fn open(path: &Path, policy: RotationPolicy) -> Result<LogWriter> {
        policy.validate()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create log dir", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io("open log", path, e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogWriter {
            path: path.to_path_buf(),
            policy,
            file,
            size,
        })
    }

    /// The i-th rotated file: `<path>.<i>` (1 is the newest).
    pub fn rotated_path(path: &Path, i: usize) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{i}"));
        PathBuf::from(s)
    }

    /// Writes one record.
    pub fn write_record(
        &mut self,
        ts: jiff::Timestamp,
        stream: Stream,
        partial: bool,
        content: &[u8],
    ) -> Result<()> {
        let line = format_line(ts, stream, partial, content);
        if self.size > 0 && self.size + line.len() as u64 > self.policy.max_size {
            self.rotate()?;
        }
        self.file
            .write_all(&line)
            .map_err(|e| Error::io("write log", &self.path, e))?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Shifts `.i` to `.i+1` (dropping the oldest), renames the live file to `.1` and
    /// starts a new one. Each step is a rename, so readers see whole files.
    pub fn rotate(&mut self) -> Result<()> {
        let keep = self.policy.max_files - 1;
        if keep == 0 {
            self.file
                .set_len(0)
                .map_err(|e| Error::io("truncate log", &self.path, e))?;
            self.size = 0;
            return Ok(());
        }
        let oldest = Self::rotated_path(&self.path, keep);
        let _ = std::fs::remove_file(&oldest);
        for i in (1..keep).rev() {
            let from = Self::rotated_path(&self.path, i);
            if from.exists() {
                let to = Self::rotated_path(&self.path, i + 1);
                std::fs::rename(&from, &to).map_err(|e| Error::io("rotate log", &from, e))?;
            }
        }
        let first = Self::rotated_path(&self.path, 1);
        std::fs::rename(&self.path, &first).map_err(|e| Error::io("rotate log", &self.path, e))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io("open log", &self.path, e))?;
        self.size = 0;
        Ok(())
    }
}

enum Record {
    Line {
        ts: jiff::Timestamp,
        stream: Stream,
        partial: bool,
        content: Vec<u8>,
    },
}

/// A running copier; await [`CopierHandle::wait`] to know all output reached the file.
#[derive(Debug)]
pub struct CopierHandle {
    readers: Vec<tokio::task::JoinHandle<()>>,
    writer: tokio::task::JoinHandle<Result<()>>,
}

impl CopierHandle {
    /// Resolves when the streams have ended (the process exited, or its shim closed the
    /// FIFOs) and every record is written.
    pub async fn wait(self) -> Result<()> {
        for r in self.readers {
            let _ = r.await;
        }
        self.writer
            .await
            .map_err(|e| Error::io("log writer", "", std::io::Error::other(e)))?
    }

    /// Stops copying at once (the agent shutting down); the FIFOs stay with the shim and
    /// can be attached again.
    pub fn abort(&self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

async fn copy_stream<R: AsyncRead + Unpin>(
    mut r: R,
    stream: Stream,
    tx: tokio::sync::mpsc::Sender<Record>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) => 0,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(stream = stream.as_str(), error = %e, "log stream read failed");
                0
            }
        };
        if n == 0 {
            if !buf.is_empty() {
                let _ = tx
                    .send(Record::Line {
                        ts: jiff::Timestamp::now(),
                        stream,
                        partial: false,
                        content: std::mem::take(&mut buf),
                    })
                    .await;
            }
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let ts = jiff::Timestamp::now();
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos;
            let mut line = &buf[start..end];
            while line.len() > MAX_LINE {
                let _ = tx
                    .send(Record::Line {
                        ts,
                        stream,
                        partial: true,
                        content: line[..MAX_LINE].to_vec(),
                    })
                    .await;
                line = &line[MAX_LINE..];
            }
            if tx
                .send(Record::Line {
                    ts,
                    stream,
                    partial: false,
                    content: line.to_vec(),
                })
                .await
                .is_err()
            {
                return;
            }
            start = end + 1;
        }
        buf.drain(..start);
        while buf.len() > MAX_LINE {
            let rest = buf.split_off(MAX_LINE);
            let _ = tx
                .send(Record::Line {
                    ts,
                    stream,
                    partial: true,
                    content: std::mem::replace(&mut buf, rest),
                })
                .await;
        }
    }
}

/// Copies a task's stdout and stderr into the CRI log file at `path` (appending: a copier
/// started again after an agent restart continues the same file).
pub fn spawn_copier<O, E>(
    path: &Path,
    policy: RotationPolicy,
    stdout: Option<O>,
    stderr: Option<E>,
) -> Result<CopierHandle>
where
    O: AsyncRead + Unpin + Send + 'static,
    E: AsyncRead + Unpin + Send + 'static,
{
    let mut writer = LogWriter::open(path, policy)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Record>(256);
    let mut readers = Vec::new();
    if let Some(o) = stdout {
        readers.push(tokio::spawn(copy_stream(o, Stream::Stdout, tx.clone())));
    }
    if let Some(e) = stderr {
        readers.push(tokio::spawn(copy_stream(e, Stream::Stderr, tx.clone())));
    }
    drop(tx);
    let writer = tokio::task::spawn_blocking(move || {
        let mut result = Ok(());
        while let Some(Record::Line {
            ts,
            stream,
            partial,
            content,
        }) = rx.blocking_recv()
        {
            if let Err(e) = writer.write_record(ts, stream, partial, &content) {
                // Keep draining so the container never blocks on a full pipe.
                if result.is_ok() {
                    tracing::warn!(error = %e, "container log write failed");
                    result = Err(e);
                }
            }
        }
        result
    });
    Ok(CopierHandle { readers, writer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crilog::parse_line;

    fn records(path: &Path) -> Vec<(Stream, bool, String)> {
        std::fs::read(path)
            .unwrap()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let p = parse_line(l).unwrap();
                (p.stream, p.partial, String::from_utf8(p.content).unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn copies_lines_and_splits_long_ones() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c/0.log");
        let long = "x".repeat(MAX_LINE * 2 + 5);
        let out = format!("one\ntwo\n{long}\ntail-without-newline");
        let h = spawn_copier(
            &path,
            RotationPolicy::default(),
            Some(std::io::Cursor::new(out.into_bytes())),
            Some(std::io::Cursor::new(b"err\n".to_vec())),
        )
        .unwrap();
        h.wait().await.unwrap();
        let recs = records(&path);
        let stdout: Vec<_> = recs.iter().filter(|r| r.0 == Stream::Stdout).collect();
        assert_eq!(stdout[0].2, "one");
        assert_eq!(stdout[1].2, "two");
        assert!(stdout[2].1 && stdout[3].1 && !stdout[4].1);
        assert_eq!(
            stdout[2].2.len() + stdout[3].2.len() + stdout[4].2.len(),
            long.len()
        );
        assert_eq!(stdout[5].2, "tail-without-newline");
        assert!(!stdout[5].1);
        assert!(recs.contains(&(Stream::Stderr, false, "err".into())));
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        let policy = RotationPolicy {
            max_size: 1024,
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, policy).unwrap();
        let t = jiff::Timestamp::now();
        for i in 0..100 {
            w.write_record(
                t,
                Stream::Stdout,
                false,
                format!("line {i:03} {}", "y".repeat(40)).as_bytes(),
            )
            .unwrap();
        }
        for p in [
            &path,
            &LogWriter::rotated_path(&path, 1),
            &LogWriter::rotated_path(&path, 2),
        ] {
            let len = std::fs::metadata(p).unwrap().len();
            assert!(len > 0 && len <= 1024, "{} is {len}", p.display());
        }
        assert!(!LogWriter::rotated_path(&path, 3).exists());
        // The newest lines are in the live file, the next older in .1.
        let live = records(&path);
        assert_eq!(live.last().unwrap().2.split(' ').nth(1), Some("099"));
        let first_live: u32 = live[0].2.split(' ').nth(1).unwrap().parse().unwrap();
        let older = records(&LogWriter::rotated_path(&path, 1));
        let last_older: u32 = older
            .last()
            .unwrap()
            .2
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(last_older + 1, first_live);
    }

    #[test]
    fn one_file_policy_truncates() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("0.log");
        let mut w = LogWriter::open(
            &path,
            RotationPolicy {
                max_size: 1024,
                max_files: 1,
            },
        )
        .unwrap();
        for _ in 0..100 {
            w.write_record(jiff::Timestamp::now(), Stream::Stdout, false, &[b'z'; 100])
                .unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 1024);
        assert!(!LogWriter::rotated_path(&path, 1).exists());
        assert!(
            RotationPolicy {
                max_size: 10,
                max_files: 1
            }
            .validate()
            .is_err()
        );
    }
}
