#!/usr/bin/env python3
"""The agent's own CPU time, to compare builds of it (how the release-agent opt-level
was chosen; docs/benchmarks.md, "Packages").

  sudo scripts/agent-cpu-bench.py [--objects 3000] [--runs 7] AGENT_BINARY...

Starts a `kedge server` (target/debug/kedge, or --kedge), joins a node "bench" once,
creates N ConfigMaps of 512 bytes and N pods bound to the node (each using one), and
then, for each binary in turn, `--runs` times: starts the agent with the node's kept
credentials and an empty local store, and measures the CPU it uses for the full sync
(the server streams 2N+1 objects, the agent decodes and stores them in SQLite) and
then for 200 `stats/summary` requests through its tunnel (reverse gRPC streams). The
agent runs in a cpuacct cgroup of its own, so every thread counts, also those that
ended. Binaries for this machine's arch only (scripts/build-agent.sh --arch amd64).
Needs root (cgroup v1 cpuacct) and kubectl.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CG = "/sys/fs/cgroup/cpuacct/kedge-agent-cpu-bench"


def die(msg):
    sys.exit(f"agent-cpu-bench: error: {msg}")


def cpu_ns():
    with open(f"{CG}/cpuacct.usage") as f:
        return int(f.read())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("binaries", nargs="+")
    p.add_argument("--objects", type=int, default=3000, help="pods (and as many ConfigMaps)")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--kedge", default=os.path.join(os.path.dirname(__file__), "..", "target/debug/kedge"))
    a = p.parse_args()
    if os.geteuid() != 0:
        die("run as root: the agent is measured in a cpuacct cgroup of its own")
    if not os.path.isdir("/sys/fs/cgroup/cpuacct"):
        die("no cgroup v1 cpuacct at /sys/fs/cgroup/cpuacct: this bench reads cpuacct.usage")
    for b in [a.kedge, *a.binaries]:
        if not os.access(b, os.X_OK):
            die(f"{b} is not an executable: build it first (cargo build -p kedge; scripts/build-agent.sh --arch amd64)")
    os.makedirs(CG, exist_ok=True)
    base = tempfile.mkdtemp(prefix="kedge-cpu-bench.")
    srv = subprocess.Popen(
        [a.kedge, "server", "--data-dir", f"{base}/srv", "--https-listen-port", "0",
         "--bind-address", "127.0.0.1", "--write-kubeconfig", f"{base}/kc.yaml", "--disable-agent"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    try:
        run_all(a, base, srv)
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(base, ignore_errors=True)


def run_all(a, base, srv):
    url = None
    for line in srv.stderr:
        m = re.search(r"server=(https://\S+)", line)
        if "Kubernetes API ready" in line and m:
            url = m.group(1)
            break
    if not url:
        die("kedge server did not get ready")
    threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
    with open(f"{base}/srv/server/token") as f:
        token = f.read().strip()
    env = {**os.environ, "KUBECONFIG": f"{base}/kc.yaml"}

    def kubectl(*args, inp=None):
        return subprocess.run(["kubectl", *args], input=inp, text=True, capture_output=True,
                              env=env, check=True).stdout

    for _ in range(100):
        try:
            kubectl("get", "ns", "default")
            break
        except subprocess.CalledProcessError:
            time.sleep(0.2)
    adir = f"{base}/agent"

    def run(binary, with_stats=True):
        os.makedirs(adir, exist_ok=True)
        db = f"{adir}/agent/desired-state.db"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        with open(f"{CG}/cpuacct.usage", "w") as f:
            f.write("0")
        agent = subprocess.Popen(
            ["sh", "-c", f'echo $$ > {CG}/cgroup.procs && exec "$0" "$@"', binary,
             "--server", url, "--token", token, "--node-name", "bench", "--data-dir", adir,
             "--node-password-file", f"{adir}/pw", "--profile", "generic", "--disable-runtime"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
        try:
            for line in agent.stderr:
                if "full resync stored" in line:
                    sync = cpu_ns() / 1e9
                    objects = int(re.search(r"objects=(\d+)", line).group(1))
                    stats = 0.0
                    if with_stats:
                        before = cpu_ns()
                        for _ in range(200):
                            kubectl("get", "--raw", "/api/v1/nodes/bench/proxy/stats/summary")
                        stats = (cpu_ns() - before) / 1e9
                    return sync, stats, objects
            die(f"{binary} exited before its first sync")
        finally:
            agent.terminate()
            agent.wait()

    # Join once, so the node exists (pod GC spares pods bound to it) and the credentials
    # are kept; then the objects.
    run(a.binaries[0], with_stats=False)
    items = []
    for i in range(a.objects):
        items.append({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": f"cm-{i}", "namespace": "default"},
                      "data": {"k": "v" * 512}})
        items.append({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": f"p-{i}", "namespace": "default", "labels": {"app": "bench"}},
                      "spec": {"nodeName": "bench", "containers": [{
                          "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                          "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": f"cm-{i}", "key": "k"}}}]}]}})
    kubectl("apply", "-f", "-", inp=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    time.sleep(10)
    results = {b: [] for b in a.binaries}
    for _ in range(a.runs):
        for b in a.binaries:  # interleaved, so drift on a shared machine hits all alike
            results[b].append(run(b))
    print(f"| binary | bytes | full sync of N objects: CPU median (min–max) | 200 stats requests: CPU median (min–max) |")
    print("|---|---:|---|---|")
    for b, rs in results.items():
        sync = [r[0] * 1000 for r in rs]
        stats = [r[1] * 1000 for r in rs]
        print(f"| {os.path.basename(b)} | {os.path.getsize(b):,} | {rs[0][2]} objects: {statistics.median(sync):.0f} ms "
              f"({min(sync):.0f}–{max(sync):.0f}) | {statistics.median(stats):.0f} ms ({min(stats):.0f}–{max(stats):.0f}) |")


if __name__ == "__main__":
    main()
