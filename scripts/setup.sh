#!/usr/bin/env bash
# Installs what kedge needs to build and test, and nothing that is already there.
# Idempotent: every step checks first. Safe to run on every invocation of the
# other scripts. Needs root (or sudo) only when something is missing.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run '$*': run this script as root or install sudo"
  fi
}

# Debian packages, each with the command or file that proves it is installed.
#   protobuf-compiler   protoc, for the etcd v3 gRPC client (and proto/ later)
#   libprotobuf-dev     the well-known .proto files etcd's API imports
#   etcd-server         a real etcd 3.4, started on random ports by the datastore tests
#   postgresql          a real PostgreSQL, started by the tests with initdb as an unprivileged user
#   build-essential     cc for rusqlite's bundled SQLite
#   pkg-config, curl, ca-certificates, procps   small tools the scripts and tests call
#   python3, python3-venv  the official Python client's tests (a virtualenv, filled from PyPI)
#   iproute2, nftables  network namespaces, veth pairs and packet filters for the tunnel tests
#   containerd, runc, busybox-static  the agent's runtime; its tests run real containers from
#                       a busybox image built from /bin/busybox (ctr comes with containerd)
#   containernetworking-plugins  the standard CNI plugins in /usr/lib/cni (bridge, host-local,
#                       portmap, loopback) that pod networking runs; brings iptables
need_packages=()
check() { # check <package> <probe...>
  local pkg=$1; shift
  if ! "$@" >/dev/null 2>&1; then need_packages+=("$pkg"); fi
}
check protobuf-compiler command -v protoc
check libprotobuf-dev test -f /usr/include/google/protobuf/descriptor.proto
check etcd-server command -v etcd
check postgresql sh -c 'ls /usr/lib/postgresql/*/bin/initdb'
check build-essential command -v cc
check pkg-config command -v pkg-config
check curl command -v curl
check ca-certificates test -d /etc/ssl/certs
check procps command -v pkill
check util-linux command -v setpriv
check python3 test -x /usr/bin/python3
check python3-venv /usr/bin/python3 -c 'import venv, ensurepip'
check iproute2 command -v ip
check nftables command -v nft
check containerd command -v containerd-shim-runc-v2
check runc command -v runc
check busybox-static sh -c 'ldd /bin/busybox 2>&1 | grep -q "not a dynamic"'
check containernetworking-plugins test -x /usr/lib/cni/bridge

if [ ${#need_packages[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "missing ${need_packages[*]} and no apt-get: install them by hand"
  say "installing ${need_packages[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  # --no-install-recommends keeps the Debian postgresql package from starting a
  # cluster we do not use; the tests start their own throwaway servers.
  as_root apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

# Debian starts a system etcd and PostgreSQL on their default ports after install.
# kedge neither needs nor uses them; leave them alone if the admin runs them.

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    say "no Rust toolchain: installing rustup (stable, with rustfmt and clippy)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
      | sh -s -- -y --profile minimal --component rustfmt,clippy \
      || die "could not install Rust: install rustup from https://rustup.rs and re-run"
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
for tool in "cargo fmt" "cargo clippy"; do
  $tool --version >/dev/null 2>&1 || {
    command -v rustup >/dev/null 2>&1 && rustup component add rustfmt clippy >/dev/null 2>&1 || true
    $tool --version >/dev/null 2>&1 || die "'$tool' is missing: run 'rustup component add rustfmt clippy'"
  }
done
say "ok: $(cargo --version), $(protoc --version), etcd $(etcd --version 2>/dev/null | head -1 | awk '{print $3}'), $(ls -d /usr/lib/postgresql/*/ | head -1 | xargs basename | sed 's/^/postgresql /')"
