//! The agent's containerd: supervision of its own containerd, and the native API for images, containers, tasks, exec and CRI-format logs
//!
//! (being built; see the crate owner's first commit)
