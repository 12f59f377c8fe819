//! Pinned network namespaces, and running code (making sockets) inside one.
//!
//! A sandbox's network namespace outlives any process: like `ip netns add`, it is made on a
//! dedicated thread with `unshare(CLONE_NEWNET)` and pinned by bind-mounting that thread's
//! `/proc/thread-self/ns/net` onto a file under `/run/kedge/netns/<name>`. Removing it is
//! unmount + unlink. Code runs "in" a namespace on a fresh thread that `setns`'d into it;
//! sockets made there stay in that namespace wherever they are used afterwards, which is
//! how `kubectl port-forward` reaches `localhost:<port>` inside a pod.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::sys::statfs::{NSFS_MAGIC, statfs};

use crate::error::CniError;
use crate::netlink;

/// Where sandboxes' network namespaces are pinned unless told otherwise.
pub const DEFAULT_NETNS_DIR: &str = "/run/kedge/netns";

/// A directory of pinned network namespaces (`/run/kedge/netns` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsDir {
    dir: PathBuf,
}

impl Default for NetnsDir {
    fn default() -> Self {
        NetnsDir::new(DEFAULT_NETNS_DIR)
    }
}

/// A pinned network namespace: its name and the file it is mounted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// The name it was created with (the file name under its directory).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the namespace is mounted on: what CNI_NETNS and the OCI spec's
    /// `linux.namespaces[type=network].path` take.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a thread inside this namespace. See [`run_in_netns`].
    pub fn run<T, F>(&self, f: F) -> Result<T, CniError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in_netns(&self.path, f)
    }
}

impl NetnsDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        NetnsDir { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path a namespace called `name` has (or would have).
    pub fn path(&self, name: &str) -> Result<PathBuf, CniError> {
        validate_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Creates and pins a new network namespace called `name`, with `lo` up.
    ///
    /// Fails with [`CniError::NetnsExists`] if one by that name is already pinned; a stale
    /// mount point (a file left by a crash before it was mounted) is reused. It blocks for
    /// a thread, a mount and a netlink round trip (about a millisecond): from async code,
    /// call it in `spawn_blocking`.
    #[tracing::instrument(level = "debug", skip(self), fields(dir = %self.dir.display()))]
    pub fn create(&self, name: &str) -> Result<Netns, CniError> {
        let path = self.path(name)?;
        fs::create_dir_all(&self.dir)
            .map_err(|e| CniError::io("create directory", &self.dir, e))?;
        make_shared_mount(&self.dir)?;

        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if is_netns(&path) {
                    return Err(CniError::NetnsExists { path });
                }
                tracing::debug!(path = %path.display(), "reusing a stale network namespace mount point");
            }
            Err(e) => return Err(CniError::io("create mount point", &path, e)),
        }

        let pinned = thread::scope(|s| {
            s.spawn(|| pin_new_netns(&path)).join().unwrap_or_else(|_| {
                Err(CniError::Netns {
                    path: path.clone(),
                    op: "create (the thread panicked)",
                    source: Errno::EIO,
                })
            })
        });
        if let Err(e) = pinned {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        tracing::debug!(path = %path.display(), "network namespace created");
        Ok(Netns {
            name: name.to_string(),
            path,
        })
    }

    /// The namespace called `name`, which must exist and be pinned.
    pub fn open(&self, name: &str) -> Result<Netns, CniError> {
        let path = self.path(name)?;
        if !is_netns(&path) {
            return Err(CniError::NotANetns { path });
        }
        Ok(Netns {
            name: name.to_string(),
            path,
        })
    }

    /// Unpins and deletes the namespace called `name`. Removing one that is not there
    /// succeeds. The namespace itself lives on while a process (or socket) still uses it.
    #[tracing::instrument(level = "debug", skip(self), fields(dir = %self.dir.display()))]
    pub fn remove(&self, name: &str) -> Result<(), CniError> {
        let path = self.path(name)?;
        remove_pinned(&path)
    }

    /// Every namespace file in the directory (pinned or stale), sorted by name.
    pub fn list(&self) -> Result<Vec<Netns>, CniError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CniError::io("read directory", &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CniError::io("read directory", &self.dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if validate_name(&name).is_err() {
                continue;
            }
            out.push(Netns {
                path: entry.path(),
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Unmounts and deletes a pinned namespace file; idempotent.
pub fn remove_pinned(path: &Path) -> Result<(), CniError> {
    // A file mounted on more than once (never by us) needs one unmount per mount.
    for _ in 0..8 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
            Err(source) => {
                return Err(CniError::Netns {
                    path: path.to_path_buf(),
                    op: "unmount",
                    source,
                });
            }
        }
    }
    match fs::remove_file(path) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "network namespace removed");
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CniError::io("remove", path, e)),
    }
}

/// Whether `path` is a network namespace (or any namespace) handle: an nsfs file.
pub fn is_netns(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Runs `f` on a new thread that has joined the network namespace at `netns`, and returns
/// what it returns. The thread ends with `f`, so no thread is left in a foreign namespace.
/// Sockets `f` makes belong to that namespace for good. A panic in `f` is passed on.
///
/// Processes spawned by `f` (std::process::Command) start in that namespace too.
pub fn run_in_netns<T, F>(netns: &Path, f: F) -> Result<T, CniError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let file = File::open(netns).map_err(|e| CniError::io("open network namespace", netns, e))?;
    thread::scope(|s| {
        let handle = s.spawn(move || -> Result<T, Errno> {
            setns(&file, CloneFlags::CLONE_NEWNET)?;
            Ok(f())
        });
        match handle.join() {
            Ok(result) => result.map_err(|source| match source {
                Errno::EINVAL => CniError::NotANetns {
                    path: netns.to_path_buf(),
                },
                source => CniError::Netns {
                    path: netns.to_path_buf(),
                    op: "setns",
                    source,
                },
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// A new, unconnected, non-blocking TCP socket for `family` made inside `netns`.
pub fn tcp_socket_in_netns(netns: &Path, ipv6: bool) -> Result<OwnedFd, CniError> {
    let family = if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    run_in_netns(netns, || {
        socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
    })?
    .map_err(|source| CniError::Netns {
        path: netns.to_path_buf(),
        op: "socket",
        source,
    })
}

/// Connects to `addr` from inside `netns`, blocking for at most `timeout`.
pub fn connect_tcp_in_netns_blocking(
    netns: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<std::net::TcpStream, CniError> {
    run_in_netns(netns, || {
        std::net::TcpStream::connect_timeout(&addr, timeout)
    })?
    .map_err(|source| CniError::Connect {
        netns: netns.to_path_buf(),
        addr: addr.to_string(),
        source,
    })
}

/// Connects to `addr` from inside `netns`. The socket is made in the namespace; the
/// connect itself runs on the tokio runtime (wrap it in a timeout as needed).
pub async fn connect_addr_in_netns(
    netns: &Path,
    addr: SocketAddr,
) -> Result<tokio::net::TcpStream, CniError> {
    let owned = netns.to_path_buf();
    let fd = tokio::task::spawn_blocking(move || tcp_socket_in_netns(&owned, addr.is_ipv6()))
        .await
        .map_err(|e| CniError::Connect {
            netns: netns.to_path_buf(),
            addr: addr.to_string(),
            source: std::io::Error::other(e),
        })??;
    let connect_error = |source| CniError::Connect {
        netns: netns.to_path_buf(),
        addr: addr.to_string(),
        source,
    };
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(fd));
    socket.connect(addr).await.map_err(connect_error)
}

/// Connects to `localhost:<port>` inside `netns`, as the kubelet does for
/// `kubectl port-forward`: 127.0.0.1 first, then ::1 if nothing listens on IPv4.
pub async fn connect_tcp_in_netns(
    netns: &Path,
    port: u16,
) -> Result<tokio::net::TcpStream, CniError> {
    let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    match connect_addr_in_netns(netns, v4).await {
        Ok(stream) => Ok(stream),
        Err(CniError::Connect { source, .. }) if source.kind() == ErrorKind::ConnectionRefused => {
            let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
            match connect_addr_in_netns(netns, v6).await {
                Ok(stream) => Ok(stream),
                // report the IPv4 refusal: it is the one the user expects to work
                Err(_) => Err(CniError::Connect {
                    netns: netns.to_path_buf(),
                    addr: v4.to_string(),
                    source,
                }),
            }
        }
        Err(e) => Err(e),
    }
}

/// Runs on the dedicated thread: a new netns for this thread, `lo` up, pinned at `path`.
fn pin_new_netns(path: &Path) -> Result<(), CniError> {
    let fail = |op, source| CniError::Netns {
        path: path.to_path_buf(),
        op,
        source,
    };
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| fail("unshare", e))?;
    netlink::set_link_up(netlink::LOOPBACK_IFINDEX).map_err(|e| fail("set lo up", e))?;
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| fail("bind mount", e))
}

/// Makes `dir` a shared mount point (bind-mounting it on itself first if it is not a
/// mount point), as `ip netns` does with /run/netns: namespace mounts made later then
/// propagate to mount namespaces copied from ours, and their unmounts too, so a
/// container's copy of the mount table never keeps a deleted namespace alive.
fn make_shared_mount(dir: &Path) -> Result<(), CniError> {
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    let fail = |op, source| CniError::Netns {
        path: dir.to_path_buf(),
        op,
        source,
    };
    match shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| fail("bind mount the directory on itself", e))?;
            shared().map_err(|e| fail("make the directory a shared mount", e))
        }
        Err(e) => Err(fail("make the directory a shared mount", e)),
    }
}

/// Names are file names: letters, digits, `_`, `.`, `-`, starting with a letter or digit.
fn validate_name(name: &str) -> Result<(), CniError> {
    let bad = |reason: &str| CniError::InvalidArgument {
        what: "network namespace name",
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() || name.len() > 250 {
        return Err(bad("it must be 1 to 250 characters long"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(bad("it must start with a letter or digit"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(bad("only letters, digits, '_', '.' and '-' are allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "pod-1", "0abc_def.ghi", &"x".repeat(250)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "-x", "a/b", "a b", "ä", &"x".repeat(251)] {
            assert!(
                matches!(validate_name(bad), Err(CniError::InvalidArgument { .. })),
                "{bad}"
            );
        }
        let dir = NetnsDir::new("/run/kedge/netns");
        assert_eq!(
            dir.path("p1").unwrap(),
            PathBuf::from("/run/kedge/netns/p1")
        );
        assert!(dir.path("../etc").is_err());
    }

    #[test]
    fn a_plain_file_is_not_a_netns() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(!is_netns(file.path()));
        assert!(!is_netns(Path::new("/nonexistent/netns")));
        assert!(matches!(
            run_in_netns(file.path(), || ()),
            Err(CniError::NotANetns { .. }) | Err(CniError::Netns { .. })
        ));
    }
}
