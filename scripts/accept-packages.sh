#!/usr/bin/env bash
# The agent packages' acceptance (issue 8), as root: installs what the cross builds
# need, builds the agent for arm64, armhf and amd64, packages them, and runs the
# #[ignore]d tests of control-plane/kedge/tests/packages.rs against a real `kedge server`:
# the ARM agents join under qemu-user and stay Ready for a minute; the binaries need
# nothing a Bookworm device lacks; the .deb installs into a debootstrap tree, its unit
# verifies, and install.sh (from the .deb and from the tarball) configures an agent
# that joins. Not part of scripts/test.sh: the three cross builds do not fit in CI's
# time (docs/packaging.md). About 30 minutes from cold on two cores; minutes when built.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "accept-packages: error: run as root (sudo $0): the tests chroot and mount" >&2; exit 1; }
scripts/setup-cross.sh
scripts/build-agent.sh "$@"
scripts/package-agent.sh
cargo test --locked -p kedge --test packages -- --ignored --test-threads 1 --nocapture
