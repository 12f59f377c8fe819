#!/usr/bin/env bash
# Runs everything CI runs: formatting, lints, and every test. The tests start
# their own throwaway PostgreSQL and etcd servers on random loopback ports and
# remove them afterwards; a missing package fails the run and names itself.
set -euo pipefail
# A clean clone builds once: incremental caches would only cost time and disk.
export CARGO_INCREMENTAL=0
cd "$(dirname "$0")/.."
scripts/setup.sh
step() { printf '\n== %s\n' "$*" >&2; }
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (warnings are errors)"
cargo clippy --locked --workspace --all-targets -- -D warnings
step "cargo test"
# The link and pod tests run the real kedge-agent binary (and its kedge-pause) next to
# kedge's; cargo builds a package's binaries only for its own integration tests, so
# build them first.
cargo build --locked -p kedge-agent --bin kedge-agent -p kedge-pause
# Every test binary, a few at a time (KEDGE_TEST_JOBS, default 3): most of them wait on
# real servers, so this cuts the wall time without changing a test. Then the doc tests.
scripts/run-tests.py
cargo test --locked --workspace --doc
step "kedge-agent cross-built for arm64, against its size budget"
# Debian's rustc-web with -Zbuild-std and the aarch64 gcc (scripts/setup-cross.sh); the
# budget is edge-agent/packaging/size-budget. The other arches, the packages and their
# acceptance under qemu: sudo scripts/accept-packages.sh (docs/packaging.md).
scripts/setup-cross.sh --only-build arm64
scripts/build-agent.sh --arch arm64 --no-pause --check-budget --locked
