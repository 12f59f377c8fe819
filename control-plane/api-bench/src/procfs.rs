//! What /proc says about a process: resident memory and CPU time, and a
//! [`Meter`] that tracks both across a phase.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

/// VmRSS and VmHWM (the peak of VmRSS over the process's life), in KiB.
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status (did the process exit?)"))?;
    Ok(parse_status(&status))
}

fn parse_status(status: &str) -> Memory {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
    }
}

/// User plus system CPU time the process has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat).context("parse /proc/<pid>/stat")?;
    Ok(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

/// utime + stime, in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last ')'.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time of the whole machine so far, over all CPUs, from /proc/stat.
#[derive(Debug, Default, Clone, Copy)]
pub struct MachineCpu {
    /// user, nice, system, irq and softirq: not idle, iowait or steal.
    pub busy: Duration,
    /// Time the hypervisor ran something else while a CPU of this virtual
    /// machine wanted to run.
    pub steal: Duration,
}

pub fn machine_cpu() -> Result<MachineCpu> {
    let stat = std::fs::read_to_string("/proc/stat").context("read /proc/stat")?;
    let (busy, steal) = parse_machine_cpu(&stat).context("parse /proc/stat")?;
    let secs = |ticks: u64| Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64);
    Ok(MachineCpu {
        busy: secs(busy),
        steal: secs(steal),
    })
}

/// (busy, steal) in clock ticks.
fn parse_machine_cpu(stat: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let at = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some((at(0) + at(1) + at(2) + at(5) + at(6), at(7)))
}

/// The 1-minute load average, from /proc/loadavg.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux we know).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Samples the server's VmRSS every 50 ms, so that a phase's peak is seen
/// even when it does not last (VmHWM only knows the peak of the whole life).
#[derive(Debug)]
pub struct Meter {
    pid: u32,
    peak_kib: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

/// Where a phase started.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    at: tokio::time::Instant,
    server_cpu: Duration,
    bench_cpu: Duration,
    machine: MachineCpu,
}

/// What a phase cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub wall: Duration,
    /// CPU time of the kedge server.
    pub server_cpu: Duration,
    /// CPU time of this bench (the client), which shares the machine.
    pub bench_cpu: Duration,
    /// CPU time of every other process on the machine (other people's
    /// builds and tests on a shared machine, PostgreSQL).
    pub others_cpu: Duration,
    /// CPU time the hypervisor took from this virtual machine.
    pub steal: Duration,
    /// Highest VmRSS the sampler saw.
    pub peak_rss_kib: u64,
}

impl Usage {
    /// CPU time as a share of one core over the wall time, in percent.
    pub fn server_core_pct(&self) -> f64 {
        pct(self.server_cpu, self.wall)
    }

    pub fn bench_core_pct(&self) -> f64 {
        pct(self.bench_cpu, self.wall)
    }

    pub fn others_core_pct(&self) -> f64 {
        pct(self.others_cpu, self.wall)
    }

    pub fn steal_core_pct(&self) -> f64 {
        pct(self.steal, self.wall)
    }
}

fn pct(cpu: Duration, wall: Duration) -> f64 {
    if wall.is_zero() {
        0.0
    } else {
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64()
    }
}

impl Meter {
    pub fn start(pid: u32) -> Meter {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let peak = peak_kib.clone();
        let sampler = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            loop {
                tick.tick().await;
                if let Ok(m) = memory(pid) {
                    peak.fetch_max(m.rss_kib, Ordering::Relaxed);
                }
            }
        });
        Meter {
            pid,
            peak_kib,
            sampler,
        }
    }

    pub fn memory(&self) -> Result<Memory> {
        memory(self.pid)
    }

    /// Starts a phase: resets the peak and notes the CPU times.
    pub fn begin(&self) -> Result<Mark> {
        self.peak_kib
            .store(self.memory()?.rss_kib, Ordering::Relaxed);
        Ok(Mark {
            at: tokio::time::Instant::now(),
            server_cpu: cpu_time(self.pid)?,
            bench_cpu: cpu_time(std::process::id())?,
            machine: machine_cpu()?,
        })
    }

    /// Ends a phase started at `mark`.
    pub fn end(&self, mark: Mark) -> Result<Usage> {
        let now = self.memory()?.rss_kib;
        let server_cpu = cpu_time(self.pid)?.saturating_sub(mark.server_cpu);
        let bench_cpu = cpu_time(std::process::id())?.saturating_sub(mark.bench_cpu);
        let machine = machine_cpu()?;
        let busy = machine.busy.saturating_sub(mark.machine.busy);
        Ok(Usage {
            wall: mark.at.elapsed(),
            server_cpu,
            bench_cpu,
            others_cpu: busy.saturating_sub(server_cpu + bench_cpu),
            steal: machine.steal.saturating_sub(mark.machine.steal),
            peak_rss_kib: self.peak_kib.load(Ordering::Relaxed).max(now),
        })
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_hwm() {
        let status = "Name:\tkedge\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        let m = parse_status(status);
        assert_eq!((m.rss_kib, m.hwm_kib), (40960, 51200));
    }

    #[test]
    fn counts_fields_after_the_command_name() {
        // The command name holds a space and a parenthesis.
        let stat =
            "1234 (ke dge) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 1 2 3";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    fn sums_the_busy_columns_of_the_cpu_line() {
        let stat = "cpu  100 5 50 9000 30 2 3 7 0 0\ncpu0 50 2 25 4500 15 1 1 3 0 0\n";
        assert_eq!(parse_machine_cpu(stat), Some((160, 7)));
        assert_eq!(parse_machine_cpu("intr 1 2 3"), None);
    }

    #[test]
    fn reads_this_process() {
        let m = memory(std::process::id()).unwrap();
        assert!(m.rss_kib > 0 && m.hwm_kib >= m.rss_kib);
        assert!(cpu_time(std::process::id()).is_ok());
        assert!(machine_cpu().unwrap().busy > Duration::ZERO);
    }
}
