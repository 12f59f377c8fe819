#!/usr/bin/env bash
# Packages the agent that scripts/build-agent.sh built: for each arch a .deb and a
# tarball, each with kedge-agent (and kedge-pause), the systemd unit, the default config
# and install.sh (edge-agent/packaging/).
#
#   scripts/build-agent.sh && scripts/package-agent.sh
#   scripts/package-agent.sh --arch arm64 --write-docs   # also rewrite docs/benchmarks.md "Packages"
#
# Out: target/cross/packages/kedge-agent_<version>_<arch>.deb and
#      target/cross/packages/kedge-agent-<version>-linux-<arch>.tar.gz
# The packages are reproducible: every file gets the time of the last commit
# (SOURCE_DATE_EPOCH), root as owner, and a sorted order.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

say() { printf 'package-agent: %s\n' "$*" >&2; }
die() { printf 'package-agent: error: %s\n' "$*" >&2; exit 1; }

arches=()
dist=$root/target/cross/dist
out=$root/target/cross/packages
version=""
write_docs=0
while [ $# -gt 0 ]; do
  case $1 in
    --arch) [ $# -ge 2 ] || die "--arch needs a value (arm64, armhf or amd64)"; arches+=("$2"); shift 2 ;;
    --dist) [ $# -ge 2 ] || die "--dist needs a directory"; dist=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift 2 ;;
    --version) [ $# -ge 2 ] || die "--version needs a value"; version=$2; shift 2 ;;
    --write-docs) write_docs=1; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
if [ ${#arches[@]} -eq 0 ]; then
  for a in arm64 armhf amd64; do [ -f "$dist/$a/kedge-agent" ] && arches+=("$a"); done
  [ ${#arches[@]} -gt 0 ] || die "nothing built under $dist: run scripts/build-agent.sh first"
fi
command -v dpkg-deb >/dev/null || die "dpkg-deb is missing: run scripts/setup-cross.sh"
if [ -z "$version" ]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
  [ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]: give --version"
fi
case $version in
  [0-9]*) ;;
  *) die "version '$version' must start with a digit (Debian's rule)" ;;
esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
pkg=$root/edge-agent/packaging
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/kedge-package.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Copy a file with a mode, its time set to SOURCE_DATE_EPOCH.
put() { # put <mode> <source> <destination>
  mkdir -p "$(dirname "$3")"
  cp "$2" "$3"
  chmod "$1" "$3"
}
unit_for() { # unit_for <bindir> <destination>
  mkdir -p "$(dirname "$2")"
  sed "s#@BINDIR@#$1#g" "$pkg/kedge-agent.service" > "$2"
  chmod 0644 "$2"
}
# Atomically move a finished package into place.
publish() { # publish <file> <destination>
  cp "$1" "$2.tmp" && mv -f "$2.tmp" "$2"
}

for arch in "${arches[@]}"; do
  case $arch in
    arm64|armhf|amd64) ;;
    *) die "unknown arch '$arch': use arm64, armhf or amd64" ;;
  esac
  bin=$dist/$arch
  [ -f "$bin/kedge-agent" ] || die "$bin/kedge-agent is missing: run scripts/build-agent.sh --arch $arch"
  glibc=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["glibc_floor"] or "2.31")' "$bin/size-report.json" 2>/dev/null) \
    || die "$bin/size-report.json is missing: run scripts/build-agent.sh --arch $arch"
  has_pause=0
  [ -f "$bin/kedge-pause" ] && has_pause=1

  # --- the .deb ---------------------------------------------------------------------
  deb=$work/deb-$arch
  put 0755 "$bin/kedge-agent" "$deb/usr/bin/kedge-agent"
  [ $has_pause = 0 ] || put 0755 "$bin/kedge-pause" "$deb/usr/bin/kedge-pause"
  unit_for /usr/bin "$deb/lib/systemd/system/kedge-agent.service"
  put 0755 "$pkg/install.sh" "$deb/usr/share/kedge-agent/install.sh"
  put 0644 "$pkg/agent.yaml" "$deb/usr/share/kedge-agent/agent.yaml"
  put 0644 "$pkg/deb/copyright" "$deb/usr/share/doc/kedge-agent/copyright"
  mkdir -p "$deb/DEBIAN"
  for script in postinst prerm postrm; do put 0755 "$pkg/deb/$script" "$deb/DEBIAN/$script"; done
  size_kib=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@INSTALLED_SIZE@/$size_kib/" \
      -e "s/@GLIBC@/$glibc/" "$pkg/deb/control.in" > "$deb/DEBIAN/control"
  (cd "$deb" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z \
     | xargs -0 md5sum > DEBIAN/md5sums)
  chmod 0644 "$deb/DEBIAN/control" "$deb/DEBIAN/md5sums"
  find "$deb" -type d -exec chmod 0755 {} +
  find "$deb" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  debfile=kedge-agent_${version}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$deb" "$work/$debfile" >/dev/null
  publish "$work/$debfile" "$out/$debfile"

  # --- the tarball --------------------------------------------------------------------
  name=kedge-agent-${version}-linux-${arch}
  t=$work/tar-$arch/$name
  put 0755 "$bin/kedge-agent" "$t/bin/kedge-agent"
  [ $has_pause = 0 ] || put 0755 "$bin/kedge-pause" "$t/bin/kedge-pause"
  put 0644 "$pkg/kedge-agent.service" "$t/share/kedge-agent.service"
  put 0644 "$pkg/agent.yaml" "$t/share/agent.yaml"
  put 0755 "$pkg/install.sh" "$t/install.sh"
  find "$t" -type d -exec chmod 0755 {} +
  find "$t" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  tarfile=$name.tar.gz
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
      -C "$work/tar-$arch" -cf - "$name" | gzip -n -9 > "$work/$tarfile"
  publish "$work/$tarfile" "$out/$tarfile"

  pause_note=""
  [ $has_pause = 1 ] || pause_note=" (no kedge-pause yet)"
  say "$arch: $out/$debfile $(stat -c %s "$out/$debfile") bytes, $out/$tarfile $(stat -c %s "$out/$tarfile") bytes$pause_note"
done

if [ "$write_docs" = 1 ]; then
  opt=$(sed -n '/^\[profile.release-agent\]/,/^\[/s/^opt-level *= *\(.*\)/\1/p' Cargo.toml | head -n 1)
  python3 scripts/agent-size.py docs --dist "$dist" --packages "$out" \
    --budget edge-agent/packaging/size-budget \
    --command "scripts/build-agent.sh && scripts/package-agent.sh --write-docs" \
    --date "$(date -u +%Y-%m-%d)" --rustc "$(/usr/bin/rustc --version | awk '{print $2}')" \
    --opt-level "${opt:-3}" --write docs/benchmarks.md
fi
