//! Lease-based leader election (being written).
