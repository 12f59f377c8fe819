#!/bin/sh
# Installs and starts kedge-agent on a device, from the tarball or after the .deb:
#
#   sudo ./install.sh --server https://<server>:6443 --token K10... [--profile rpi-4-2gb]
#
# From the tarball (this script next to bin/kedge-agent) it copies the binaries to
# <prefix>/bin (default /usr/local/bin) and the unit to /etc/systemd/system. With the
# .deb installed (/usr/share/kedge-agent/install.sh) the files are already in place.
# Then it writes /etc/kedge/agent.yaml (mode 0600: it holds the token), the profile's
# memory limits as the drop-in kedge-agent.service.d/profile.conf, and enables and
# (re)starts kedge-agent.service when systemd runs. Safe to run again: a second run
# rewrites the config and restarts the agent with it.
set -eu

say() { printf 'install.sh: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<'EOF'
usage: install.sh --server URL --token TOKEN [options]
  --server URL        the control plane, https://host:6443
  --token TOKEN       the join token (`kedge token create` on the server prints one)
  --token-file FILE   read the token from FILE instead
  --profile NAME      the hardware profile (`kedge-agent profile list`); a path to a
                      profile file works too [default: detected on this device]
  --node-name NAME    the node's name [default: the hostname]
  --node-label K=V    a label for the node (repeatable)
  --data-dir DIR      where the agent keeps its state [default: /var/lib/kedge]
  --prefix DIR        where the tarball's binaries go [default: /usr/local]
  --config FILE       the config file to write [default: /etc/kedge/agent.yaml]
  --no-start          enable the service but do not start it
EOF
}

server=""
token=""
token_file=""
profile=""
node_name=""
labels=""
data_dir="/var/lib/kedge"
prefix="/usr/local"
config="/etc/kedge/agent.yaml"
start=1
need_value() { [ "$2" -ge 2 ] || die "$1 needs a value (see --help)"; }
while [ $# -gt 0 ]; do
  case $1 in
    --server) need_value "$1" $#; server=$2; shift 2 ;;
    --server=*) server=${1#*=}; shift ;;
    --token) need_value "$1" $#; token=$2; shift 2 ;;
    --token=*) token=${1#*=}; shift ;;
    --token-file) need_value "$1" $#; token_file=$2; shift 2 ;;
    --profile) need_value "$1" $#; profile=$2; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --node-name) need_value "$1" $#; node_name=$2; shift 2 ;;
    --node-label) need_value "$1" $#; labels="$labels
$2"; shift 2 ;;
    --data-dir) need_value "$1" $#; data_dir=$2; shift 2 ;;
    --prefix) need_value "$1" $#; prefix=$2; shift 2 ;;
    --config) need_value "$1" $#; config=$2; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument '$1'" ;;
  esac
done

# --- check the input before touching anything -------------------------------------
[ -n "$server" ] || die "give the server to join with --server https://<server>:6443"
case $server in
  https://?*) ;;
  *) die "--server '$server' must be an https:// URL, such as https://cp.example.com:6443" ;;
esac
if [ -n "$token_file" ]; then
  [ -z "$token" ] || die "give --token or --token-file, not both"
  [ -r "$token_file" ] || die "cannot read the token file '$token_file'"
  token=$(tr -d ' \t\r\n' < "$token_file")
fi
[ -n "$token" ] || die "give a join token with --token K10... (run \`kedge token create\` on the server)"
# Everything written into YAML below is one plain line: refuse control characters and
# quotes rather than escape them.
plain() { # plain <what> <value>
  case $2 in
    *[![:print:]]*|*\'*|*\"*) die "$1 '$2' holds quotes or control characters: give it without" ;;
  esac
}
plain --server "$server"
plain --token "$token"
case $token in
  *\ *) die "the token holds a space: copy it again from \`kedge token create\`" ;;
esac
if [ -n "$profile" ]; then
  plain --profile "$profile"
  case $profile in
    /*) [ -r "$profile" ] || die "the profile file '$profile' is missing" ;;
    *[!a-z0-9.-]*) die "--profile '$profile': a profile name has only a-z, 0-9, '.' and '-' (\`kedge-agent profile list\`), or give a file's absolute path" ;;
  esac
fi
[ -z "$node_name" ] || plain --node-name "$node_name"
plain --data-dir "$data_dir"
case $data_dir in /*) ;; *) die "--data-dir '$data_dir' must be an absolute path" ;; esac
old_ifs=$IFS; IFS='
'
for l in $labels; do
  plain --node-label "$l"
  case $l in
    ?*=*) ;;
    *) die "--node-label '$l': write it as key=value" ;;
  esac
done
IFS=$old_ifs

[ "$(id -u)" -eq 0 ] || die "run this as root (sudo $0 ...): it installs into /etc and $prefix"

here=$(cd "$(dirname "$0")" && pwd)

# Write a file atomically: to a temp file in the same directory, then rename.
install_file() { # install_file <mode> <source> <destination>
  mkdir -p "$(dirname "$3")"
  tmp=$(mktemp "$(dirname "$3")/.kedge-install.XXXXXX")
  cat "$2" > "$tmp"
  chmod "$1" "$tmp"
  mv -f "$tmp" "$3"
}

# --- the binaries and the unit -------------------------------------------------------
if [ -x "$here/bin/kedge-agent" ]; then
  # From the tarball.
  bin=$prefix/bin/kedge-agent
  install_file 0755 "$here/bin/kedge-agent" "$bin"
  if [ -x "$here/bin/kedge-pause" ]; then
    install_file 0755 "$here/bin/kedge-pause" "$prefix/bin/kedge-pause"
  fi
  unit_tmp=$(mktemp)
  sed "s#@BINDIR@#$prefix/bin#g" "$here/share/kedge-agent.service" > "$unit_tmp"
  install_file 0644 "$unit_tmp" /etc/systemd/system/kedge-agent.service
  rm -f "$unit_tmp"
  say "installed $bin and /etc/systemd/system/kedge-agent.service"
elif [ -x /usr/bin/kedge-agent ]; then
  # The .deb put everything in place.
  bin=/usr/bin/kedge-agent
else
  die "no kedge-agent next to this script (bin/kedge-agent) nor in /usr/bin: unpack the whole tarball, or install the .deb first"
fi
"$bin" --version >/dev/null 2>&1 || die "$bin does not run on this machine ($(uname -m)): install the package built for it"

# --- the config (it holds the token: 0600 from the start) -------------------------
conf_tmp=$(umask 077 && mktemp)
{
  echo "# Written by install.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Keys are kedge-agent's long flag names."
  echo "server: '$server'"
  echo "token: '$token'"
  [ -z "$profile" ] || echo "profile: '$profile'"
  [ -z "$node_name" ] || echo "node-name: '$node_name'"
  echo "data-dir: '$data_dir'"
  if [ -n "$labels" ]; then
    echo "node-label:"
    IFS='
'
    for l in $labels; do echo "  - '$l'"; done
    IFS=$old_ifs
  fi
} > "$conf_tmp"
mkdir -p "$(dirname "$config")"
install_file 0600 "$conf_tmp" "$config"
rm -f "$conf_tmp"
say "wrote $config (mode 0600)"

# --- the profile's memory limits ----------------------------------------------------
# The agent knows its profiles; it prints the drop-in itself. Without --profile it
# detects the device, as it will at every start.
if [ -z "$profile" ]; then
  detected=$("$bin" profile detect 2>/dev/null) \
    || die "$bin cannot detect this device's profile ('kedge-agent profile detect' failed): give --profile (see 'kedge-agent profile list')"
  # its last line: "profile: <name> (<how it was picked>)"
  profile_arg=$(printf '%s\n' "$detected" | sed -n 's/^profile: \([^ ]*\).*/\1/p' | tail -n 1)
  [ -n "$profile_arg" ] || die "'kedge-agent profile detect' named no profile: give --profile"
  say "detected the profile $profile_arg"
else
  profile_arg=$profile
fi
dropin_tmp=$(mktemp)
if ! "$bin" profile show "$profile_arg" --systemd > "$dropin_tmp" 2>"$dropin_tmp.err"; then
  cat "$dropin_tmp.err" >&2
  rm -f "$dropin_tmp" "$dropin_tmp.err"
  die "'kedge-agent profile show $profile_arg --systemd' failed: check the profile name with 'kedge-agent profile list'"
fi
rm -f "$dropin_tmp.err"
grep -q '^MemoryMax=' "$dropin_tmp" \
  || die "'kedge-agent profile show $profile_arg --systemd' printed no MemoryMax: this agent is too old for this script"
install_file 0644 "$dropin_tmp" /etc/systemd/system/kedge-agent.service.d/profile.conf
rm -f "$dropin_tmp"
say "wrote /etc/systemd/system/kedge-agent.service.d/profile.conf ($(grep '^MemoryMax=' /etc/systemd/system/kedge-agent.service.d/profile.conf))"

# --- what the device must offer -------------------------------------------------------
# The profile's MemoryMax, and every pod's memory limit, need the kernel's memory cgroup.
# Raspberry Pi kernels leave it off unless the command line turns it on.
memory_cgroup_on() {
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw memory /sys/fs/cgroup/cgroup.controllers
  elif [ -r /proc/cgroups ]; then
    awk '$1 == "memory" { found = 1; exit ($4 == 1) ? 0 : 1 } END { if (!found) exit 1 }' /proc/cgroups
  else
    return 1
  fi
}
if ! memory_cgroup_on; then
  say "warning: the kernel's memory cgroup is off: MemoryMax cannot hold the agent and pods get no memory limits; on a Raspberry Pi add 'cgroup_memory=1 cgroup_enable=memory' to the line in /boot/firmware/cmdline.txt (/boot/cmdline.txt before Bookworm) and reboot"
fi
# The agent runs a containerd of its own (state in /run/kedge/containerd, images under
# the data dir); the distribution's containerd.service, pulled in with the binary, is
# not used by it and only takes memory.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet containerd.service 2>/dev/null; then
  say "note: containerd.service is enabled, but kedge-agent starts its own containerd; unless something else uses it, 'systemctl disable --now containerd' frees its memory"
fi

# --- systemd -------------------------------------------------------------------------
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
  systemctl enable kedge-agent.service >/dev/null 2>&1 || die "systemctl enable kedge-agent failed: see 'systemctl status kedge-agent'"
  if [ "$start" = 1 ]; then
    systemctl restart kedge-agent.service || die "kedge-agent did not start: see 'journalctl -u kedge-agent'"
    say "kedge-agent is running: 'journalctl -u kedge-agent -f' shows it join; on the server, 'kubectl get nodes'"
  else
    say "kedge-agent is enabled; start it with 'systemctl start kedge-agent'"
  fi
elif command -v systemctl >/dev/null 2>&1; then
  # A chroot or an image being prepared: enabling works offline, starting does not.
  systemctl enable kedge-agent.service >/dev/null 2>&1 || say "could not enable kedge-agent.service offline"
  say "systemd is not running here: kedge-agent is enabled for the next boot; to run it now: $bin --config $config"
else
  say "no systemd here: run $bin --config $config under your init system"
fi
