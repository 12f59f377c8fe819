//! kedge-scheduler: places pending pods on nodes.
//!
//! (Skeleton; being written.)
