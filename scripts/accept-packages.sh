#!/usr/bin/env bash
# The agent packages' acceptance (issue 8), as root: installs what the cross builds
# need, builds the agent for arm64, armhf and amd64, packages them, and runs the
# #[ignore]d tests of control-plane/kedge/tests/packages.rs against a real `kedge server`:
# the ARM agents join under qemu-user and stay Ready for a minute; the binaries need
# nothing a Bookworm device lacks; the .deb installs into a debootstrap tree, its unit
# verifies, and install.sh (from the .deb and from the tarball) configures an agent
# that joins. Not part of scripts/test.sh: the three cross builds do not fit in CI's
# time (docs/packaging.md). About 40 minutes on two shared cores (the three release-agent
# builds, fat LTO each); the tests alone take two minutes once everything is built.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "accept-packages: error: run as root (sudo $0): the tests chroot and mount" >&2; exit 1; }
scripts/setup-cross.sh
# The arm64 .deb is installed into an arm64 tree: the kernel must hand aarch64 binaries
# to qemu (binfmt_misc, with the F flag so that it works inside the chroot).
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi
scripts/build-agent.sh "$@"
scripts/package-agent.sh
cargo test --locked -p kedge --test packages -- --ignored --test-threads 1 --nocapture
