#!/usr/bin/env bash
# Builds kedge-agent (and kedge-pause) for the devices kedge runs on, stripped, and
# prints a size report: per arch, the stripped size, the sections, the crates that
# take the most room, the shared libraries the binary needs and its glibc floor.
#
#   scripts/build-agent.sh                     # arm64, armhf and amd64
#   scripts/build-agent.sh --arch arm64        # one arch (arm64|aarch64, armhf|armv7, amd64|x86_64)
#   scripts/build-agent.sh --arch arm64 --check-budget   # what CI runs: fail over the size budget
#
# Binaries land in <out>/<deb arch>/ (default target/cross/dist), with the unstripped
# agent as kedge-agent.debug and the report as size-report.md (and .json).
#
# How: the rustup toolchain on this machine cannot add targets, so this uses Debian's
# Rust (rustc-web, cargo-web, rust-web-src 1.96; scripts/setup-cross.sh installs them)
# and builds the standard library for the target with -Zbuild-std (RUSTC_BOOTSTRAP=1
# lets a stable compiler take -Z flags). The C in the tree (SQLite bundled by rusqlite,
# ring's assembly and C) goes through the target's gcc, named to the cc crate by the
# CC_<triple>/AR_<triple> variables. Every arch is built with -Zbuild-std, amd64 too,
# so all three get a standard library compiled with panic=abort and the same profile.
# The cross builds use their own target dir: Debian's compiler is not the workspace's.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf 'build-agent: %s\n' "$*" >&2; }
die() { printf 'build-agent: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'
options:
  --arch A         build only A (repeatable); default: arm64 armhf amd64
  --out DIR        where the binaries and reports go (default target/cross/dist)
  --target-dir D   cargo's target dir for the cross builds (default target/cross)
  --no-pause       do not build kedge-pause
  --check-budget   fail when the stripped arm64 agent exceeds edge-agent/packaging/size-budget
  --frozen-lock    pass --locked to cargo (CI does; the default lets cargo use Cargo.lock as is)
  --print-toolchain  print Debian's rustc version and exit
EOF
}

# The toolchain: Debian's rustc and cargo, never the rustup proxies that come first on PATH.
DEB_RUSTC=/usr/bin/rustc
DEB_CARGO=/usr/bin/cargo
toolchain_ok() {
  [ -x "$DEB_RUSTC" ] && [ -x "$DEB_CARGO" ] \
    && "$DEB_RUSTC" --version 2>/dev/null | grep -q 'built from a source tarball' \
    && [ -d "$("$DEB_RUSTC" --print sysroot)/lib/rustlib/src/rust/library/std" ]
}

arches=()
out=""
target_dir=""
pause=1
check_budget=0
locked=()
while [ $# -gt 0 ]; do
  case $1 in
    --arch) [ $# -ge 2 ] || die "--arch needs a value (arm64, armhf or amd64)"; arches+=("$2"); shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --target-dir) [ $# -ge 2 ] || die "--target-dir needs a directory"; target_dir=$2; shift 2 ;;
    --no-pause) pause=0; shift ;;
    --check-budget) check_budget=1; shift ;;
    --frozen-lock|--locked) locked=(--locked); shift ;;
    --print-toolchain)
      toolchain_ok || die "Debian's rustc-web/rust-web-src are missing: run scripts/setup-cross.sh"
      "$DEB_RUSTC" --version; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(arm64 armhf amd64)
target_dir=${target_dir:-$root/target/cross}
out=${out:-$target_dir/dist}
budget_file=$root/edge-agent/packaging/size-budget

toolchain_ok || die "Debian's rustc-web, cargo-web and rust-web-src are needed (rustc at $DEB_RUSTC built from Debian's source, with the library source for -Zbuild-std): run scripts/setup-cross.sh"

# deb arch -> rust triple, gcc prefix
triple_of() {
  case $1 in
    arm64|aarch64|aarch64-unknown-linux-gnu) echo aarch64-unknown-linux-gnu ;;
    armhf|armv7|armv7-unknown-linux-gnueabihf) echo armv7-unknown-linux-gnueabihf ;;
    amd64|x86_64|x86_64-unknown-linux-gnu) echo x86_64-unknown-linux-gnu ;;
    *) return 1 ;;
  esac
}
debarch_of() {
  case $1 in
    aarch64-unknown-linux-gnu) echo arm64 ;;
    armv7-unknown-linux-gnueabihf) echo armhf ;;
    x86_64-unknown-linux-gnu) echo amd64 ;;
  esac
}
gnu_of() {
  case $1 in
    aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
    x86_64-unknown-linux-gnu) echo x86_64-linux-gnu ;;
  esac
}

# SQLite, as rusqlite bundles it, comes with full-text search, R-trees, the dbstat table,
# STAT4, soundex, column metadata and extension loading; the agent's store uses none of
# them. Dropping them saves ~0.6 MB on arm64; -Os for the C code (SQLite's own advice
# for small builds; ring's hot paths are assembly) saves ~0.5 MB more. Only these cross
# builds do this: the workspace's own builds (tests, the server) keep rusqlite's defaults.
SQLITE_FLAGS="-USQLITE_ENABLE_FTS3 -USQLITE_ENABLE_FTS3_PARENTHESIS -USQLITE_ENABLE_FTS5"
SQLITE_FLAGS+=" -USQLITE_ENABLE_RTREE -USQLITE_ENABLE_DBSTAT_VTAB -USQLITE_ENABLE_STAT4"
SQLITE_FLAGS+=" -USQLITE_SOUNDEX -USQLITE_ENABLE_COLUMN_METADATA -DSQLITE_OMIT_LOAD_EXTENSION"
C_OPT=${KEDGE_AGENT_CFLAGS--Os}

# One cargo build for one target. Extra environment comes as VAR=value arguments first.
cargo_build() { # cargo_build <triple> <package> <bin> [VAR=value...]
  local triple=$1 package=$2 bin=$3; shift 3
  local gnu; gnu=$(gnu_of "$triple")
  local upper; upper=$(echo "$triple" | tr 'a-z-' 'A-Z_')
  local under=${triple//-/_}
  env -u RUSTC_WRAPPER -u CARGO_BUILD_RUSTC_WRAPPER -u RUSTUP_TOOLCHAIN \
    RUSTC="$DEB_RUSTC" RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
    "CARGO_TARGET_${upper}_LINKER=${gnu}-gcc" \
    "CC_${under}=${gnu}-gcc" "AR_${under}=${gnu}-ar" "CXX_${under}=${gnu}-g++" \
    CARGO_PROFILE_RELEASE_AGENT_STRIP=false \
    LIBSQLITE3_FLAGS="$SQLITE_FLAGS${LIBSQLITE3_FLAGS:+ $LIBSQLITE3_FLAGS}" \
    "CFLAGS_${under}=$C_OPT${CFLAGS:+ $CFLAGS}" \
    "$@" \
    "$DEB_CARGO" build "${locked[@]}" \
      -Zbuild-std=std,panic_abort \
      --target "$triple" --profile release-agent \
      --target-dir "$target_dir" \
      -p "$package" --bin "$bin"
}

# Is the kedge-pause crate more than the placeholder it started as?
pause_exists() {
  [ -f "$root/edge-agent/pause/src/main.rs" ] && ! grep -qE '^fn main\(\) \{\}$' "$root/edge-agent/pause/src/main.rs"
}

built=()
for a in "${arches[@]}"; do
  triple=$(triple_of "$a") || die "unknown arch '$a': use arm64, armhf or amd64"
  debarch=$(debarch_of "$triple")
  gnu=$(gnu_of "$triple")
  command -v "${gnu}-gcc" >/dev/null || die "${gnu}-gcc is missing: run scripts/setup-cross.sh"
  dest=$out/$debarch
  mkdir -p "$dest"

  say "$debarch: cargo build -p kedge-agent --target $triple --profile release-agent -Zbuild-std"
  # cold: nothing built for this target before (the standard library and every
  # dependency compile); warm: the target dir held an earlier build.
  build_kind=warm
  [ -d "$target_dir/$triple/release-agent" ] || build_kind=cold
  start=$(date +%s)
  cargo_build "$triple" kedge-agent kedge-agent
  secs=$(( $(date +%s) - start ))
  say "$debarch: kedge-agent built in ${secs}s ($build_kind)"
  bin=$target_dir/$triple/release-agent/kedge-agent
  # Keep the symbols for the report, ship the stripped copy (what `strip = true` in the
  # profile gives; the build keeps them so the report can name the crates).
  cp "$bin" "$dest/kedge-agent.debug.tmp" && mv "$dest/kedge-agent.debug.tmp" "$dest/kedge-agent.debug"
  "${gnu}-strip" --strip-all -o "$dest/kedge-agent.tmp" "$bin"
  mv "$dest/kedge-agent.tmp" "$dest/kedge-agent"

  rm -f "$dest/kedge-pause"
  if [ "$pause" = 1 ] && pause_exists; then
    say "$debarch: cargo build -p kedge-pause (static)"
    cargo_build "$triple" kedge-pause kedge-pause
    pbin=$target_dir/$triple/release-agent/kedge-pause
    "${gnu}-strip" --strip-all -o "$dest/kedge-pause.tmp" "$pbin"
    mv "$dest/kedge-pause.tmp" "$dest/kedge-pause"
    if "${gnu}-readelf" -d "$dest/kedge-pause" 2>/dev/null | grep -q NEEDED; then
      say "warning: $debarch kedge-pause is not static (it needs $("${gnu}-readelf" -d "$dest/kedge-pause" | grep NEEDED | grep -o '\[.*\]' | tr '\n' ' ')); it cannot run in a rootfs that holds only itself"
    fi
  elif [ "$pause" = 1 ]; then
    say "$debarch: kedge-pause is still a placeholder (edge-agent/pause); packages go without it"
  fi

  python3 "$root/scripts/agent-size.py" report \
    --arch "$debarch" --triple "$triple" --tool-prefix "${gnu}-" \
    --build-seconds "$secs" --build-kind "$build_kind" --dir "$dest"
  built+=("$debarch")
done

say "built ${built[*]} into $out"

if [ "$check_budget" = 1 ]; then
  [ -f "$out/arm64/kedge-agent" ] || die "--check-budget needs the arm64 agent: add --arch arm64"
  python3 "$root/scripts/agent-size.py" check --budget "$budget_file" --binary "$out/arm64/kedge-agent"
fi
