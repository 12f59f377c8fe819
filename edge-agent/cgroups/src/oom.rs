//! oom_score_adj: who the kernel's OOM killer picks first. The kubelet's policy
//! (pkg/kubelet/qos/policy.go): the kubelet and the runtime at -999, Guaranteed
//! containers at -997, BestEffort at 1000, Burstable in between by their memory
//! request. So when the whole node runs out, pods die before the agent does.

use std::path::Path;

use crate::CgroupError;
use crate::resources::QosClass;

/// The agent's own score, the kubelet's KubeletOOMScoreAdj.
pub const AGENT_OOM_SCORE_ADJ: i32 = -999;
/// containerd's, as the kubelet's runtime gets.
pub const CONTAINERD_OOM_SCORE_ADJ: i32 = -999;
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
pub const BESTEFFORT_OOM_SCORE_ADJ: i32 = 1000;

/// A container's oom_score_adj: by QoS class, and for Burstable by how much of the
/// node's memory it requested (more request, less likely to be killed), kept
/// between Guaranteed's and BestEffort's.
pub fn container_oom_score_adj(qos: QosClass, memory_request: u64, memory_capacity: u64) -> i32 {
    match qos {
        QosClass::Guaranteed => GUARANTEED_OOM_SCORE_ADJ,
        QosClass::BestEffort => BESTEFFORT_OOM_SCORE_ADJ,
        QosClass::Burstable => {
            let capacity = memory_capacity.max(1) as i128;
            let adj = 1000 - (1000 * memory_request as i128) / capacity;
            let adj = adj.max(i128::from(1000 + GUARANTEED_OOM_SCORE_ADJ)) as i32;
            if adj >= BESTEFFORT_OOM_SCORE_ADJ {
                BESTEFFORT_OOM_SCORE_ADJ - 1
            } else {
                adj
            }
        }
    }
}

/// Writes `<proc_root>/<pid>/oom_score_adj` (`proc_root` is `/proc` on a machine).
pub fn set_oom_score_adj(proc_root: &Path, pid: u32, value: i32) -> Result<(), CgroupError> {
    if !(-1000..=1000).contains(&value) {
        return Err(CgroupError::Parse {
            path: proc_root.join(pid.to_string()).join("oom_score_adj"),
            what: "an oom_score_adj between -1000 and 1000",
            text: value.to_string(),
        });
    }
    let path = proc_root.join(pid.to_string()).join("oom_score_adj");
    std::fs::write(&path, value.to_string()).map_err(|source| CgroupError::OomScoreAdj {
        path,
        value,
        source,
    })
}

/// Reads a process's oom_score_adj.
pub fn oom_score_adj(proc_root: &Path, pid: u32) -> Result<i32, CgroupError> {
    let path = proc_root.join(pid.to_string()).join("oom_score_adj");
    let text = crate::driver::read(&path)?;
    text.trim().parse().map_err(|_| CgroupError::Parse {
        path,
        what: "an oom_score_adj",
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;

    #[test]
    fn the_kubelets_policy() {
        assert_eq!(
            container_oom_score_adj(QosClass::Guaranteed, GI, 4 * GI),
            -997
        );
        assert_eq!(
            container_oom_score_adj(QosClass::BestEffort, 0, 4 * GI),
            1000
        );
        assert_eq!(
            container_oom_score_adj(QosClass::Burstable, GI, 4 * GI),
            750
        );
        // A tiny request rounds to BestEffort's score; it stays one under.
        assert_eq!(container_oom_score_adj(QosClass::Burstable, 1, 4 * GI), 999);
        // A request of the whole node stays above Guaranteed's.
        assert_eq!(
            container_oom_score_adj(QosClass::Burstable, 4 * GI, 4 * GI),
            3
        );
    }

    #[test]
    fn writes_to_a_fixture_proc() {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc.path().join("42")).unwrap();
        set_oom_score_adj(proc.path(), 42, AGENT_OOM_SCORE_ADJ).unwrap();
        assert_eq!(oom_score_adj(proc.path(), 42).unwrap(), -999);
        assert!(set_oom_score_adj(proc.path(), 42, -1001).is_err());
        let err = set_oom_score_adj(proc.path(), 43, 0)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot set "), "{err}");
    }
}
