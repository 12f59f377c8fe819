#!/usr/bin/env bash
# Installs what is missing, builds kedge and kedge-agent, and runs `kedge server` on
# the embedded SQLite datastore (data in /var/lib/kedge, as K3s keeps its own in
# /var/lib/rancher/k3s), with its local agent: this machine becomes a node that runs
# pods (its own containerd, state in /var/lib/kedge/agent). Extra arguments go to
# `kedge server`, for example --disable-agent, or:
#   sudo ./scripts/server.sh --datastore-endpoint postgres://kedge:secret@db:5432/kedge
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "server.sh: building kedge and kedge-agent (release); the first build takes a few minutes" >&2
cargo build --release --locked -p kedge -p kedge-agent -p kedge-pause
exec target/release/kedge server "$@"
