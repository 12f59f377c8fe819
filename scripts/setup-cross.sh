#!/usr/bin/env bash
# Installs what the agent's cross builds, packages and their acceptance test need,
# and nothing that is already there. Idempotent, like scripts/setup.sh (which it
# runs first); kept apart so the normal setup stays lean.
#
# The rustup toolchain cannot add targets on this machine (no rustup dist server is
# reachable), so the cross builds use Debian's own Rust: rustc-web/cargo-web 1.96
# with rust-web-src, building the standard library for the target (-Zbuild-std).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup-cross: %s\n' "$*" >&2; }
die() { printf 'setup-cross: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run '$*': run this script as root or install sudo"
  fi
}

scripts/setup.sh

# Debian packages, each with the command or file that proves it is installed.
#   rustc-web, cargo-web   Debian's Rust 1.96 (rustc and cargo under /usr/lib/rust-web)
#   rust-web-src           the standard library's source, for -Zbuild-std
#   gcc-aarch64-linux-gnu, libc6-dev-arm64-cross    linker, C compiler (SQLite, ring) and glibc for arm64
#   gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross  the same for armv7 (hard float)
#   qemu-user-static       runs the ARM agents here (qemu-aarch64-static, qemu-arm-static)
#   debootstrap            a Debian tree to install the .deb into
#   binutils               readelf, objdump, nm for the size report and the glibc floor
#   dpkg-dev               dpkg-deb is in dpkg; dpkg-architecture checks the arch names
#   systemd                systemd-analyze verify for the unit file
need_packages=()
check() { # check <package> <probe...>
  local pkg=$1; shift
  if ! "$@" >/dev/null 2>&1; then need_packages+=("$pkg"); fi
}
check rustc-web sh -c 'ls /usr/lib/rust-web/bin/rustc || command -v rustc-web'
check cargo-web sh -c 'ls /usr/lib/rust-web/bin/cargo || command -v cargo-web'
check rust-web-src sh -c 'ls -d /usr/lib/rust-web/lib/rustlib/src/rust/library || ls -d /usr/src/rustc-*/library'
check gcc-aarch64-linux-gnu command -v aarch64-linux-gnu-gcc
check libc6-dev-arm64-cross test -f /usr/aarch64-linux-gnu/include/stdio.h
check gcc-arm-linux-gnueabihf command -v arm-linux-gnueabihf-gcc
check libc6-dev-armhf-cross test -f /usr/arm-linux-gnueabihf/include/stdio.h
check qemu-user-static command -v qemu-aarch64-static
check debootstrap command -v debootstrap
check binutils command -v readelf
check dpkg-dev command -v dpkg-architecture
check systemd command -v systemd-analyze

if [ ${#need_packages[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${need_packages[*]} and no apt-get: install them by hand"
  say "installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

say "ok: $(scripts/build-agent.sh --print-toolchain 2>/dev/null || echo 'rust-web'), $(aarch64-linux-gnu-gcc --version | head -1), $(qemu-aarch64-static --version | head -1)"
