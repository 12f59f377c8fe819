//! Pod networking: pinned network namespaces, the CNI conflist for the node's podCIDR, and running the standard CNI plugins
//!
//! (being built; see the crate owner's first commit)
