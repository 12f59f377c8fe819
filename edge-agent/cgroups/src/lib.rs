//! Cgroup v1 and v2 budgets for the agent, its containerd and every pod (QoS classes), and the eviction order
//!
//! (being built; see the crate owner's first commit)
