//! What a cgroup's memory looks like, and pressure stall information (PSI).

use std::collections::BTreeMap;

/// A cgroup's memory, as cAdvisor (and so the kubelet) reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryStats {
    /// v1 memory.usage_in_bytes, v2 memory.current.
    pub usage: u64,
    /// Usage less the inactive file cache: what eviction and `kubectl top` use.
    pub working_set: u64,
    /// The memory limit; `None` for none.
    pub limit: Option<u64>,
    /// How many processes the OOM killer killed in the cgroup (v1 memory.oom_control
    /// oom_kill, kernel 4.13 and later; v2 memory.events oom_kill).
    pub oom_kills: Option<u64>,
    /// How often usage hit the limit (v1 memory.failcnt; v2 memory.events max).
    pub limit_hits: Option<u64>,
}

/// One line of PSI: the share of time (percent) some or all tasks stalled.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PsiLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total stall time, in microseconds.
    pub total: u64,
}

/// Pressure stall information for memory (`memory.pressure`,
/// `/proc/pressure/memory`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Psi {
    /// Some task stalled on memory.
    pub some: PsiLine,
    /// All non-idle tasks stalled at once.
    pub full: Option<PsiLine>,
}

/// `key value` lines (memory.stat, memory.events, memory.oom_control).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let key = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some((key.to_string(), value))
        })
        .collect()
}

/// Parses PSI text: `some avg10=0.12 avg60=0.05 avg300=0.01 total=1234`, and an
/// optional `full …` line.
pub fn parse_psi(text: &str) -> Option<Psi> {
    let mut psi = Psi::default();
    let mut some = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let kind = words.next()?;
        let mut l = PsiLine::default();
        for word in words {
            let (k, v) = word.split_once('=')?;
            match k {
                "avg10" => l.avg10 = v.parse().ok()?,
                "avg60" => l.avg60 = v.parse().ok()?,
                "avg300" => l.avg300 = v.parse().ok()?,
                "total" => l.total = v.parse().ok()?,
                _ => {}
            }
        }
        match kind {
            "some" => {
                psi.some = l;
                some = true;
            }
            "full" => psi.full = Some(l),
            _ => return None,
        }
    }
    some.then_some(psi)
}

/// The node's memory PSI from `<proc_root>/pressure/memory` (`/proc` on a machine),
/// which kernels with PSI offer on cgroup v1 too. `None` when the kernel has none.
pub fn node_memory_pressure(
    proc_root: &std::path::Path,
) -> Result<Option<Psi>, crate::CgroupError> {
    let path = proc_root.join("pressure/memory");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_psi(&text).map(Some).ok_or(crate::CgroupError::Parse {
            path,
            what: "pressure stall information",
            text,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // psi=0 on the kernel command line: the file exists but reads EOPNOTSUPP.
        Err(e) if e.raw_os_error() == Some(95) => Ok(None),
        Err(source) => Err(crate::CgroupError::Io {
            action: "read",
            path,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi() {
        let text = "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=678\n";
        let p = parse_psi(text).unwrap();
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.total, 12345);
        assert_eq!(p.full.unwrap().avg10, 0.5);
        assert_eq!(parse_psi("bogus"), None);
        assert_eq!(parse_psi(""), None);
    }

    #[test]
    fn flat_keyed() {
        let m = parse_flat_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n");
        assert_eq!(m["oom_kill"], 3);
    }
}
