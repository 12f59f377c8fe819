//! kedge-pause: the tiny process that holds a pod sandbox's namespaces and reaps zombies.
//!
//! It does what Kubernetes' pause.c does, in safe Rust: it blocks SIGTERM, SIGINT and
//! SIGCHLD and takes them one at a time with sigwait(2). SIGCHLD reaps every exited child
//! (as PID 1 of a shared PID namespace it inherits the pod's orphans); SIGTERM or SIGINT
//! ends it with status 0. Taking blocked signals with sigwait also works as PID 1, where
//! the kernel drops signals whose action is the default.
//!
//! It must stay tiny and free of dependencies beyond nix and std: it runs in a rootfs that
//! holds nothing but itself (build.rs links it statically).

use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-v") | Some("--version") => {
            println!("kedge-pause {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("kedge-pause: unknown argument {other:?}: it takes none (or -v)");
            return ExitCode::from(2);
        }
    }

    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGCHLD);
    if let Err(e) = signals.thread_block() {
        eprintln!("kedge-pause: cannot block signals: {e}");
        return ExitCode::from(1);
    }
    // Children that exited before the mask was set left SIGCHLD pending or are zombies
    // already: reap them now.
    reap();
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => {
                reap();
                return ExitCode::SUCCESS;
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("kedge-pause: sigwait failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
}

/// Waits for every child that has exited, without blocking.
fn reap() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            // ECHILD: no children at all
            Err(_) => return,
        }
    }
}
