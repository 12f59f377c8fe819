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

# --only-build ARCH: just what building for ARCH needs (CI's size check), without
# the other arch's compiler, qemu-user, debootstrap or the packaging tools.
only=""
case ${1:-} in
  --only-build)
    case ${2:-} in
      arm64|armhf|amd64) only=$2 ;;
      *) die "--only-build takes arm64, armhf or amd64" ;;
    esac ;;
  "") ;;
  *) die "unknown argument '$1' (use --only-build ARCH, or nothing)" ;;
esac
wants() { [ -z "$only" ] || [ "$only" = "$1" ]; }

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
check rustc-web sh -c '/usr/bin/rustc --version | grep -q "built from a source tarball"'
check cargo-web sh -c '/usr/bin/cargo --version | grep -q "built from a source tarball"'
check rust-web-src test -d /usr/lib/rustlib/src/rust/library/std
check binutils command -v readelf
if wants arm64; then
  check gcc-aarch64-linux-gnu command -v aarch64-linux-gnu-gcc
  check libc6-dev-arm64-cross test -f /usr/aarch64-linux-gnu/include/stdio.h
fi
if wants armhf; then
  check gcc-arm-linux-gnueabihf command -v arm-linux-gnueabihf-gcc
  check libc6-dev-armhf-cross test -f /usr/arm-linux-gnueabihf/include/stdio.h
fi
if [ -z "$only" ]; then
  check qemu-user-static command -v qemu-aarch64-static
  check debootstrap command -v debootstrap
  check dpkg-dev command -v dpkg-architecture
  check systemd command -v systemd-analyze
fi
if [ ${#need_packages[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${need_packages[*]} and no apt-get: install them by hand"
  say "installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

say "ok: Debian's $(/usr/bin/rustc --version | awk '{print "rustc", $2}')${only:+, for $only only}"
