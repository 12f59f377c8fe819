//! Throwaway PostgreSQL and etcd servers on random loopback ports.
//!
//! Each server runs under a small `sh` watchdog whose stdin is a pipe from
//! this process: when this process exits, however it exits, the pipe closes
//! and the watchdog stops the server and removes its data directory. So a
//! test that panics or is killed leaves nothing running.
//!
//! A missing program is a loud failure that names the package and the script
//! that installs it; nothing here skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "{program} not found ({looked}): install the Debian package {package} (scripts/setup.sh does)"
    )]
    Missing {
        program: &'static str,
        package: &'static str,
        looked: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed: {output}")]
    Failed { what: String, output: String },
    #[error("{what} did not become ready within {timeout:?}; its log:\n{log}")]
    NotReady {
        what: String,
        timeout: Duration,
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

/// A free TCP port on 127.0.0.1 (free when asked; another process could take
/// it before the server binds, which the readiness check would report).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// A server process under the watchdog.
#[derive(Debug)]
struct Supervised {
    watchdog: Child,
    stdin: Option<ChildStdin>,
    /// The server's own pid, as the watchdog reported it.
    pid: u32,
    log: PathBuf,
}

/// The watchdog: start the server, report its pid, and wait for a line on
/// stdin. Then stop the server and, unless the line was "keep", remove the
/// data directory ($1). End of file (this process died) removes it too.
const WATCHDOG: &str = r#"
dir=$1; log=$2; shift 2
"$@" >"$log" 2>&1 &
child=$!
echo "$child"
read -r order
kill -TERM "$child" 2>/dev/null
for _ in $(seq 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$child" 2>/dev/null
wait "$child" 2>/dev/null
[ "$order" = keep ] || rm -rf "$dir"
"#;

impl Supervised {
    fn spawn(
        program: &Path,
        args: &[String],
        dir: &Path,
        log: PathBuf,
        user: Option<(u32, u32)>,
    ) -> Result<Self, ServerError> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(dir)
            .arg(&log)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        let what = format!("start {}", program.display());
        let mut watchdog = cmd.spawn().map_err(io(what.clone()))?;
        let mut line = String::new();
        BufReader::new(watchdog.stdout.take().expect("piped"))
            .read_line(&mut line)
            .map_err(io(what.clone()))?;
        let pid = line.trim().parse().map_err(|_| ServerError::Failed {
            what,
            output: format!("the watchdog said {line:?} instead of a pid"),
        })?;
        Ok(Supervised {
            stdin: watchdog.stdin.take(),
            watchdog,
            pid,
            log,
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to the server itself (not the watchdog).
    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status();
    }

    fn is_running(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists()
            && !std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .unwrap_or_default()
                .contains(") Z ")
    }

    /// Stops the server, and waits for the watchdog to remove the data
    /// directory unless `keep_data`.
    fn stop(&mut self, keep_data: bool) {
        if let Some(mut stdin) = self.stdin.take()
            && keep_data
        {
            let _ = stdin.write_all(b"keep\n");
        }
        let _ = self.watchdog.wait();
    }

    /// Kills the server with `signal`, as a crash would, and keeps its data.
    fn crash(mut self, signal: &str) {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop(true);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop(false);
    }
}

fn wait_until(
    what: &str,
    timeout: Duration,
    server: &Supervised,
    mut ready: impl FnMut() -> bool,
) -> Result<(), ServerError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        if !server.is_running() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(ServerError::NotReady {
        what: what.to_string(),
        timeout,
        log: server.log(),
    })
}

/// A data directory that the server's user owns. It lives under `base` and
/// is removed by the watchdog (or by `Drop` if the server never started).
fn data_dir(base: &Path, name: &str, owner: Option<(u32, u32)>) -> Result<PathBuf, ServerError> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("kedge-{name}-"))
        .tempdir_in(base)
        .map_err(io(format!("create a data directory in {}", base.display())))?
        .keep();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .map_err(io(format!("chown {}", dir.display())))?;
    }
    Ok(dir)
}

/// Where the PostgreSQL binaries live: Debian puts them in
/// /usr/lib/postgresql/<version>/bin, off the PATH.
fn postgres_bin() -> Result<PathBuf, ServerError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().ok_or(ServerError::Missing {
        program: "PostgreSQL (initdb)",
        package: "postgresql",
        looked: "/usr/lib/postgresql/*/bin".into(),
    })
}

/// The uid and gid to run PostgreSQL as when we are root, which PostgreSQL
/// refuses to run as: the `postgres` user the package creates, else `nobody`.
fn postgres_user() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id(&["-u"])? != 0 {
        return None;
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|user| Some((id(&["-u", user])?, id(&["-g", user])?)))
}

/// How durable a throwaway server is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Every commit reaches the disk, as in production: for benchmarks.
    Durable,
    /// No fsync, data on tmpfs where possible: for tests, which measure
    /// correctness, not disks.
    Fast,
}

/// A throwaway PostgreSQL server.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    dir: PathBuf,
    user: Option<(u32, u32)>,
    durability: Durability,
    server: Option<Supervised>,
}

impl Postgres {
    pub fn start(durability: Durability) -> Result<Self, ServerError> {
        let bin = postgres_bin()?;
        let user = postgres_user();
        let base = match durability {
            Durability::Durable => Path::new("/var/tmp"),
            Durability::Fast => Path::new("/dev/shm"),
        };
        let dir = data_dir(base, "postgres", user)?;
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "kedge", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .stdin(Stdio::null());
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().map_err(io("run initdb"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ServerError::Failed {
                what: "initdb".into(),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let mut pg = Postgres {
            port: free_port(),
            bin,
            dir,
            user,
            durability,
            server: None,
        };
        pg.launch()?;
        Ok(pg)
    }

    fn launch(&mut self) -> Result<(), ServerError> {
        let mut args: Vec<String> = vec![
            "-D".into(),
            self.dir.join("data").display().to_string(),
            "-p".into(),
            self.port.to_string(),
        ];
        let mut settings = vec![
            "listen_addresses=127.0.0.1",
            "unix_socket_directories=",
            "max_connections=300",
            "shared_buffers=64MB",
        ];
        if self.durability == Durability::Fast {
            settings.extend([
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ]);
        }
        for s in settings {
            args.push("-c".into());
            args.push(s.into());
        }
        let log = self.dir.join("postgres.log");
        let server =
            Supervised::spawn(&self.bin.join("postgres"), &args, &self.dir, log, self.user)?;
        let pg_isready = self.bin.join("pg_isready");
        let port = self.port.to_string();
        wait_until("postgres", Duration::from_secs(60), &server, || {
            Command::new(&pg_isready)
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "kedge",
                    "-d",
                    "postgres",
                ])
                .status()
                .is_ok_and(|s| s.success())
        })?;
        self.server = Some(server);
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://kedge@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, ServerError> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "kedge",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE \"{name}\""))
            .output()
            .map_err(io("run psql"))?;
        if !out.status.success() {
            return Err(ServerError::Failed {
                what: format!("create database {name}"),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(self.url(name))
    }

    /// Runs `sql` with psql on `database` and returns its unaligned output.
    pub fn query(&self, database: &str, sql: &str) -> Result<String, ServerError> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "kedge",
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .map_err(io("run psql"))?;
        if !out.status.success() {
            return Err(ServerError::Failed {
                what: format!("psql {sql:?}"),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server as a crash would: an immediate shutdown (SIGQUIT),
    /// which breaks open connections mid-statement, skips the checkpoint and
    /// leaves crash recovery to the next start. The data stays, for
    /// [`restart`](Self::restart).
    pub fn crash(&mut self) {
        if let Some(server) = self.server.take() {
            server.crash("QUIT");
        }
    }

    /// Starts the server again on the same port and data.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        let _ = std::fs::remove_file(self.dir.join("data/postmaster.pid"));
        self.launch()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway single-member etcd.
#[derive(Debug)]
pub struct Etcd {
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    server: Option<Supervised>,
}

impl Etcd {
    pub fn start(durability: Durability) -> Result<Self, ServerError> {
        which("etcd").ok_or(ServerError::Missing {
            program: "etcd",
            package: "etcd-server",
            looked: "PATH".into(),
        })?;
        let base = match durability {
            Durability::Durable => Path::new("/var/tmp"),
            Durability::Fast => Path::new("/dev/shm"),
        };
        let mut etcd = Etcd {
            client_port: free_port(),
            peer_port: free_port(),
            dir: data_dir(base, "etcd", None)?,
            server: None,
        };
        etcd.launch()?;
        Ok(etcd)
    }

    fn launch(&mut self) -> Result<(), ServerError> {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let args: Vec<String> = vec![
            "--name=default".into(),
            format!("--data-dir={}", self.dir.join("data").display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster=default={peer}"),
            // Room for a 1.5 MiB value plus its key and framing.
            "--max-request-bytes=2097152".into(),
            "--logger=zap".into(),
        ];
        let log = self.dir.join("etcd.log");
        let server = Supervised::spawn(Path::new("etcd"), &args, &self.dir, log, None)?;
        let port = self.client_port;
        wait_until("etcd", Duration::from_secs(60), &server, || {
            http_get(port, "/health").is_some_and(|body| body.contains("\"health\":\"true\""))
        })?;
        self.server = Some(server);
        Ok(())
    }

    /// The client URL, for `EtcdConfig`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd with SIGKILL; the data stays for [`restart`](Self::restart).
    pub fn crash(&mut self) {
        if let Some(server) = self.server.take() {
            server.crash("KILL");
        }
    }

    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.launch()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.exists())
}

/// A bare HTTP/1.0 GET on loopback; the body, or `None` if nothing answered.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}
