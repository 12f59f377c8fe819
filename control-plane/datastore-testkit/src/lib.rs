//! kedge-datastore-testkit: what proves the datastore backends right, and
//! measures them.
//!
//! - [`servers`] starts throwaway PostgreSQL and etcd servers on random
//!   loopback ports, and cleans up even when the test process dies.
//! - [`conformance`] is the one suite every backend runs, on a real server.
//! - [`history`] records concurrent operations and watch events and checks
//!   them for linearizability and exact delivery.
//! - [`backends`] wires each backend to a fresh database for a test.
//! - [`report`] writes a benchmark's own section of `docs/benchmarks.md`.
//! - The `datastore-bench` binary measures each backend and writes
//!   `docs/benchmarks.md`.
//!
//! Only tests and benchmarks depend on this crate; `kedge` never does.

pub mod backends;
pub mod conformance;
pub mod history;
pub mod report;
pub mod servers;
