//! The generic profile: for hardware no profile describes, derived from the machine.
//!
//! `profiles/generic.toml` gives what does not scale with memory (eviction
//! percentages for disks, image GC, log rotation, tunnel timers, batch size) and the
//! soft eviction grace period. Everything that scales is computed from the machine's
//! MemTotal `M` and CPU count `C` by this rule, written out in
//! docs/hardware-profiles.md:
//!
//! | setting | rule |
//! |---|---|
//! | maxPods | `M / 64Mi`, between 4 and 110 (a small pod needs about 64Mi) |
//! | budgets.agent | 2% of `M`, between 32Mi and 64Mi (the agent aims at 25 MB RSS) |
//! | budgets.containerd | 32Mi + 4Mi per pod (containerd plus one shim per pod), at most 512Mi |
//! | kubeReserved.memory | agent + containerd + 2% of `M` between 16Mi and 128Mi (CNI plugins, pause) |
//! | systemReserved.memory | 6% of `M`, between 64Mi and 1Gi |
//! | evictionHard memory.available | 5% of `M`, between 32Mi and 500Mi |
//! | evictionSoft memory.available | twice the hard threshold |
//! | systemReserved.cpu | 100m |
//! | kubeReserved.cpu | 100m + 50m per CPU, at most 500m |
//!
//! A machine too small for the result (the reservations take all its memory) gets
//! the validation error, so the agent refuses to start rather than run unbounded.

use crate::detect::MachineInfo;
use crate::profile::{Hardware, Signal, SoftThreshold};
use crate::quantity::{Bytes, MilliCpu, Threshold};
use crate::{Profile, ProfileError};

/// The rule, as the docs print it.
pub const RULE: &str = "\
| setting | rule (`M` = MemTotal, `C` = CPUs) |
|---|---|
| maxPods | `M / 64Mi`, between 4 and 110 |
| budgets.agent | 2% of `M`, between 32Mi and 64Mi |
| budgets.containerd | 32Mi + 4Mi × maxPods, at most 512Mi |
| kubeReserved.memory | agent + containerd + 2% of `M` (between 16Mi and 128Mi) |
| systemReserved.memory | 6% of `M`, between 64Mi and 1Gi |
| evictionHard memory.available | 5% of `M`, between 32Mi and 500Mi |
| evictionSoft memory.available | 2 × the hard threshold |
| systemReserved.cpu | 100m |
| kubeReserved.cpu | 100m + 50m × `C`, at most 500m |
";

fn percent_clamped(m: Bytes, percent: u64, min_mib: u64, max_mib: u64) -> Bytes {
    // Whole MiB, so that the numbers read well in `profile show`.
    let mib = (m.0 / 100 * percent) >> 20;
    Bytes::mib(mib.clamp(min_mib, max_mib))
}

/// Derives the generic profile for `machine` from the `generic.toml` template.
pub fn derive(template: &Profile, machine: &MachineInfo) -> Result<Profile, ProfileError> {
    let m = machine.mem_total;
    let mut p = template.clone();
    p.hardware = Hardware {
        architectures: vec![machine.arch.clone()],
        cpus: machine.cpus.max(1),
        memory: m,
    };
    p.detect = None;
    p.max_pods = ((m.0 / Bytes::mib(64).0) as u32).clamp(4, 110);
    p.budgets.agent = percent_clamped(m, 2, 32, 64);
    p.budgets.containerd = Bytes::mib((32 + 4 * u64::from(p.max_pods)).min(512));
    p.kube_reserved.memory = p
        .budgets
        .total()
        .saturating_add(percent_clamped(m, 2, 16, 128));
    p.system_reserved.memory = percent_clamped(m, 6, 64, 1024);
    p.system_reserved.cpu = MilliCpu(100);
    p.kube_reserved.cpu = MilliCpu((100 + 50 * u64::from(p.hardware.cpus)).min(500));
    let hard = percent_clamped(m, 5, 32, 500);
    p.eviction_hard
        .insert(Signal::MemoryAvailable, Threshold::Quantity(hard));
    let grace = template
        .eviction_soft
        .get(&Signal::MemoryAvailable)
        .map(|s| s.grace_period)
        .unwrap_or(std::time::Duration::from_secs(90));
    p.eviction_soft.insert(
        Signal::MemoryAvailable,
        SoftThreshold {
            threshold: Threshold::Quantity(Bytes(hard.0 * 2)),
            grace_period: grace,
        },
    );
    p.description = format!(
        "derived from this machine: {} CPUs, {} MemTotal, {}",
        p.hardware.cpus, m, machine.arch
    );
    p.validate(&format!("generic profile for this machine ({m} MemTotal)"))?;
    Ok(p)
}
