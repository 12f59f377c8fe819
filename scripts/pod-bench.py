#!/usr/bin/env python3
"""Pod startup latency and the agent's memory, with a real containerd, runc and CNI
(docs/benchmarks.md, "Pods"; issue 6).

  sudo scripts/pod-bench.py [--single 20] [--batch 30] [--batches 3] [--rss 0,10,50]
                            [--write docs/benchmarks.md]

Builds nothing itself: it runs target/release/kedge (`cargo build --release -p kedge`)
and the shipped agent, target/release-agent/kedge-agent with its kedge-pause
(`cargo build --profile release-agent -p kedge-agent -p kedge-pause`), and the busybox
image example (`cargo run -p kedge-containerd --example busybox-image`, built on first use).

What it measures:
- Startup: the time from just before a pod's POST to the API to the moment a watch on
  the API (this script's own HTTPS connection with the admin certificate) shows the pod
  Running: scheduling, the sync to the agent through its tunnel, sandbox + CNI, the
  container's create and start, and the status report back. The image is local (imported
  from the agent's airgap directory), as Kubernetes' pod-startup SLO excludes pulls.
  --single trials of one pod (each deleted before the next), and --batches of --batch
  pods created back to back (latency per pod, from its own POST).
- Memory: the agent's VmRSS with 0, 10 and 50 running pods (busybox `sleep`), each the
  median of 5 samples over 10 s after the pods are Running and 15 s of settling;
  containerd's own RSS and the sum of the runc shims' RSS separately.

Needs root, containerd, runc and the CNI plugins (scripts/setup.sh installs them).
"""

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
IMAGE = "docker.io/library/busybox:bench"
NODE = "bench"
BRIDGE = "kedge-bench0"
BEGIN, END = "<!-- pod-bench:begin -->", "<!-- pod-bench:end -->"


def die(msg):
    sys.exit(f"pod-bench: error: {msg}")


def say(msg):
    print(f"pod-bench: {msg}", file=sys.stderr, flush=True)


def percentile(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


class Api:
    """The Kubernetes API over HTTPS with the kubeconfig's admin certificate."""

    def __init__(self, kubeconfig, tmp):
        text = open(kubeconfig).read()

        def field(name):
            m = re.search(rf"{name}:\s*(\S+)", text)
            if not m:
                die(f"{kubeconfig} has no {name}")
            return m.group(1).strip('"')

        m = re.match(r"https://([^:/]+):(\d+)", field("server"))
        self.host, self.port = m.group(1), int(m.group(2))
        paths = {}
        for key, name in [("certificate-authority-data", "ca.pem"),
                          ("client-certificate-data", "cert.pem"),
                          ("client-key-data", "key.pem")]:
            paths[key] = os.path.join(tmp, name)
            with open(paths[key], "wb") as f:
                f.write(base64.b64decode(field(key)))
        self.ctx = ssl.create_default_context(cafile=paths["certificate-authority-data"])
        self.ctx.check_hostname = False
        self.ctx.load_cert_chain(paths["client-certificate-data"], paths["client-key-data"])

    def conn(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def call(self, method, path, body=None, conn=None):
        c = conn or self.conn()
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        out = r.read()
        if conn is None:
            c.close()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {out[:300]!r}")
        return json.loads(out) if out else None


class Watch(threading.Thread):
    """Records when each bench pod is first seen Running, and when each is gone."""

    def __init__(self, api):
        super().__init__(daemon=True)
        self.api = api
        self.running = {}
        self.lock = threading.Condition()
        self.names = set()

    def run(self):
        while True:
            try:
                listing = self.api.call("GET", "/api/v1/namespaces/default/pods?labelSelector=bench%3Dpods")
                rv = listing["metadata"]["resourceVersion"]
                with self.lock:
                    self.names = {p["metadata"]["name"] for p in listing["items"]}
                    for p in listing["items"]:
                        self.seen(p)
                c = self.api.conn(timeout=600)
                c.request("GET", "/api/v1/namespaces/default/pods?watch=true&labelSelector=bench%3Dpods"
                          f"&resourceVersion={rv}&allowWatchBookmarks=false")
                r = c.getresponse()
                buf = b""
                while True:
                    chunk = r.read1(65536)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        pod = ev["object"]
                        with self.lock:
                            name = pod["metadata"]["name"]
                            if ev["type"] == "DELETED":
                                self.names.discard(name)
                            else:
                                self.names.add(name)
                                self.seen(pod)
                            self.lock.notify_all()
            except Exception as e:  # reconnect: the bench must not stop on a dropped watch
                say(f"watch restarted: {e}")
                time.sleep(0.2)

    def seen(self, pod):
        name = pod["metadata"]["name"]
        if pod.get("status", {}).get("phase") == "Running" and name not in self.running:
            self.running[name] = time.monotonic()

    def wait_running(self, names, within):
        deadline = time.monotonic() + within
        with self.lock:
            while not all(n in self.running for n in names):
                left = deadline - time.monotonic()
                if left <= 0:
                    missing = [n for n in names if n not in self.running]
                    die(f"pods not Running within {within}s: {missing[:5]}")
                self.lock.wait(min(left, 1))
            return {n: self.running[n] for n in names}

    def wait_gone(self, within):
        deadline = time.monotonic() + within
        with self.lock:
            while self.names:
                left = deadline - time.monotonic()
                if left <= 0:
                    die(f"pods still there after {within}s: {sorted(self.names)[:5]}")
                self.lock.wait(min(left, 1))
            self.running.clear()


def pod(name):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"bench": "pods"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "Never",
                            "command": ["sleep", "3600"]}],
        },
    }


def create(api, names):
    """POSTs the pods back to back; returns the time just before each POST."""
    c = api.conn()
    started = {}
    for n in names:
        started[n] = time.monotonic()
        api.call("POST", "/api/v1/namespaces/default/pods", pod(n), conn=c)
    c.close()
    return started


def delete_all(api, watch):
    api.call("DELETE", "/api/v1/namespaces/default/pods?labelSelector=bench%3Dpods&gracePeriodSeconds=0")
    watch.wait_gone(180)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def shims(state_dir):
    """The runc shims of our containerd (their command lines name its address)."""
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if "containerd-shim-runc-v2" in cmd and state_dir in cmd:
            pids.append(int(p))
    return pids


def memory(agent_pid, state_dir):
    """Median over 5 samples in 10 s: agent, containerd, shims (KiB)."""
    samples = []
    for _ in range(5):
        ctr = [c for c in children(agent_pid) if "containerd" in open(f"/proc/{c}/comm").read()]
        samples.append((rss_kib(agent_pid), sum(rss_kib(c) for c in ctr),
                        sum(rss_kib(s) for s in shims(state_dir)), len(shims(state_dir))))
        time.sleep(2)
    return tuple(statistics.median(s[i] for s in samples) for i in range(4))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--single", type=int, default=20, help="trials of one pod")
    p.add_argument("--batch", type=int, default=30, help="pods created at once")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--rss", default="0,10,50", help="pod counts to measure memory at")
    p.add_argument("--kedge", default=f"{ROOT}/target/release/kedge")
    p.add_argument("--agent", default=f"{ROOT}/target/release-agent/kedge-agent")
    p.add_argument("--write", metavar="FILE", help="write the results into this markdown file")
    a = p.parse_args()
    if os.geteuid() != 0:
        die("run as root: the agent runs containerd, runc and CNI plugins")
    for b, how in [(a.kedge, "cargo build --release -p kedge"),
                   (a.agent, "cargo build --profile release-agent -p kedge-agent -p kedge-pause")]:
        if not os.access(b, os.X_OK):
            die(f"{b} is missing: {how}")
    for tool in ["containerd", "runc"]:
        if not shutil.which(tool):
            die(f"{tool} is missing: run scripts/setup.sh")
    rss_at = [int(x) for x in a.rss.split(",")]
    base = tempfile.mkdtemp(prefix="kedge-pod-bench.")
    procs = []
    ok = False
    try:
        run(a, base, procs, rss_at)
        ok = True
    finally:
        if not ok:
            keep = tempfile.mkdtemp(prefix="pod-bench-logs.")
            for log in ["agent.log", "server.log"]:
                if os.path.exists(f"{base}/{log}"):
                    shutil.copy(f"{base}/{log}", keep)
            say(f"the run failed; the agent's and the server's logs are kept in {keep}")
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["ip", "link", "delete", BRIDGE], stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


def run(a, base, procs, rss_at):
    adir = f"{base}/agent"
    images = f"{adir}/agent/images"
    os.makedirs(images)
    say("building the busybox image from /bin/busybox")
    subprocess.run(["cargo", "run", "-q", "-p", "kedge-containerd", "--example", "busybox-image", "--",
                    f"{images}/busybox.tar", IMAGE], cwd=ROOT, check=True)
    env = {**os.environ, "NO_COLOR": "1", "RUST_LOG": "info"}
    srv = subprocess.Popen(
        [a.kedge, "server", "--data-dir", f"{base}/srv", "--https-listen-port", "0",
         "--bind-address", "127.0.0.1", "--write-kubeconfig", f"{base}/kc.yaml",
         "--cluster-cidr", "10.120.0.0/16", "--disable-agent"],
        stderr=subprocess.PIPE, text=True, env=env)
    procs.append(srv)
    url = None
    server_log = open(f"{base}/server.log", "w")
    for line in srv.stderr:
        server_log.write(line)
        m = re.search(r"server=(https://\S+)", line)
        if "Kubernetes API ready" in line and m:
            url = m.group(1)
            break
    if not url:
        die("kedge server did not get ready")

    def keep_server_log():
        for line in srv.stderr:
            server_log.write(line)
            server_log.flush()
    threading.Thread(target=keep_server_log, daemon=True).start()
    token = open(f"{base}/srv/server/token").read().strip()
    agent_log = open(f"{base}/agent.log", "w")
    agent = subprocess.Popen(
        [a.agent, "--server", url, "--token", token, "--node-name", NODE, "--data-dir", adir,
         "--node-password-file", f"{adir}/pw", "--profile", "generic",
         "--cni-bridge", BRIDGE, "--pod-log-dir", f"{adir}/pod-logs",
         # A shared machine's disk may be nearly full: startup is measured, not DiskPressure.
         "--eviction-hard=nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%",
         "--eviction-soft=nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%"],
        stderr=agent_log, env=env)
    procs.append(agent)
    api = Api(f"{base}/kc.yaml", base)
    deadline = time.monotonic() + 60
    while True:
        try:
            node = api.call("GET", f"/api/v1/nodes/{NODE}")
            if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]):
                break
        except RuntimeError:
            pass
        if time.monotonic() > deadline or agent.poll() is not None:
            die(f"the node did not get Ready; the agent's log: {base}/agent.log")
        time.sleep(0.5)
    say(f"node {NODE} is Ready; agent {os.path.basename(a.agent)} ({os.path.getsize(a.agent):,} bytes)")
    # The default ServiceAccount must exist before pods are admitted.
    for _ in range(100):
        try:
            api.call("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            break
        except RuntimeError:
            time.sleep(0.2)
    watch = Watch(api)
    watch.start()
    state_dir = None
    for line in open(f"{base}/agent.log"):
        m = re.search(r"socket=(\S+)/containerd\.sock", line)
        if m:
            state_dir = m.group(1)
    if not state_dir:
        die("cannot find the agent's containerd socket in its log")

    # Warm-up: the first pod also sets up the bridge.
    names = ["warmup"]
    create(api, names)
    watch.wait_running(names, 120)
    delete_all(api, watch)

    single = []
    for i in range(a.single):
        name = f"single-{i}"
        started = create(api, [name])
        running = watch.wait_running([name], 60)
        single.append((running[name] - started[name]) * 1000)
        say(f"1 pod, trial {i + 1}/{a.single}: {single[-1]:.0f} ms")
        delete_all(api, watch)

    batch = []
    for b in range(a.batches):
        names = [f"batch{b}-{i}" for i in range(a.batch)]
        started = create(api, names)
        running = watch.wait_running(names, 300)
        lat = [(running[n] - started[n]) * 1000 for n in names]
        batch.extend(lat)
        say(f"{a.batch} pods at once, batch {b + 1}/{a.batches}: median {statistics.median(lat):.0f} ms, "
            f"last Running after {max(running.values()) - min(started.values()):.1f} s")
        delete_all(api, watch)

    mem = []
    have = 0
    for n in rss_at:
        names = [f"rss-{i}" for i in range(have, n)]
        if names:
            create(api, names)
            watch.wait_running(names, 600)
        have = n
        time.sleep(15)
        m = memory(agent.pid, state_dir)
        mem.append((n, *m))
        say(f"{n} pods: agent {m[0] / 1024:.1f} MiB, containerd {m[1] / 1024:.1f} MiB, "
            f"{int(m[3])} shims {m[2] / 1024:.1f} MiB")
    delete_all(api, watch)
    if agent.poll() is not None:
        die(f"the agent exited during the bench; its log: {base}/agent.log")

    report = render(a, single, batch, mem)
    print(report)
    if a.write:
        write(a.write, report)
        say(f"wrote {a.write}")


def render(a, single, batch, mem):
    uname = os.uname()
    cpus = os.cpu_count()
    mem_total = int(open("/proc/meminfo").read().split()[1]) // 1024 // 1024
    ctr = subprocess.run(["containerd", "--version"], capture_output=True, text=True).stdout.split()
    out = [BEGIN, "## Pods", ""]
    out.append(f"Measured {time.strftime('%Y-%m-%d')} on {cpus} CPUs, {mem_total} GiB, Linux {uname.release}, "
               f"containerd {ctr[2] if len(ctr) > 2 else '?'} with runc and the CNI bridge plugin, with "
               "`cargo build --release -p kedge && cargo build --profile release-agent -p kedge-agent -p kedge-pause "
               f"&& sudo scripts/pod-bench.py --single {a.single} --batch {a.batch} --batches {a.batches} "
               f"--rss {a.rss} --write docs/benchmarks.md`.")
    out.append("")
    out.append("One `kedge server` (release, embedded SQLite) and one `kedge-agent` (the shipped build: "
               f"`release-agent` profile, {os.path.getsize(a.agent):,} bytes) with its own containerd, on the "
               "same machine; the agent reaches the server through its QUIC tunnel over loopback. The pods run "
               "one busybox container (`sleep 3600`) from an image imported from the agent's airgap directory "
               "(`imagePullPolicy: Never`), on the CNI bridge.")
    out.append("")
    out.append("### Pod startup latency (create → Running, local image)")
    out.append("")
    out.append("From just before the pod's POST to the API to the moment a watch on the API shows it Running: "
               "scheduling, the sync to the agent through its tunnel, sandbox and network, the container's "
               "create and start, and the status report back.")
    out.append("")
    out.append("| pods created at once | samples | p50 | p99 | max |")
    out.append("|---|---:|---:|---:|---:|")
    for label, xs in [("1", single), (str(a.batch), batch)]:
        out.append(f"| {label} | {len(xs)} | **{percentile(xs, 50):.0f} ms** | **{percentile(xs, 99):.0f} ms** | "
                   f"{max(xs):.0f} ms |")
    out.append("")
    p99_1 = percentile(single, 99)
    p99_n = percentile(batch, 99)
    out.append(f"With {len(single)} and {len(batch)} samples, p99 is the nearest rank (the largest or second "
               "largest sample). Against Kubernetes' SLO (p99 ≤ 5 s) and the target (p99 ≤ 1 s for one pod): "
               f"one pod {'meets' if p99_1 <= 1000 else 'misses'} the target (p99 {p99_1:.0f} ms, "
               f"{5000 / p99_1:.1f}× under the SLO); {a.batch} at once {'meet' if p99_n <= 5000 else 'miss'} the SLO "
               f"(p99 {p99_n:.0f} ms).")
    out.append("")
    out.append("### Agent memory with running pods")
    out.append("")
    out.append("VmRSS, the median of 5 samples over 10 s once the pods are Running and after 15 s of settling. "
               "containerd is the agent's own (a child process), reported apart; each pod also has a runc shim "
               "(`containerd-shim-runc-v2`), summed in the last column.")
    out.append("")
    out.append("| running pods | kedge-agent | containerd | runc shims (count) |")
    out.append("|---:|---:|---:|---:|")
    for n, ag, ct, sh, count in mem:
        out.append(f"| {n} | **{ag / 1024:.1f} MiB** | {ct / 1024:.1f} MiB | {sh / 1024:.1f} MiB ({int(count)}) |")
    out.append("")
    ten = next((m for m in mem if m[0] == 10), None)
    if ten:
        ag = ten[1] / 1024
        out.append(f"Against the target (agent RSS ≤ 25 MB with 10 pods): {'meets' if ag * 1.048576 <= 25 else 'misses'} "
                   f"it ({ag:.1f} MiB = {ag * 1.048576:.1f} MB). Anchors: K3s's agent runs 268–275 MB "
                   f"({270 / (ag * 1.048576):.0f}× this agent; K3s embeds containerd in the same process, so the "
                   f"fair comparison is with agent + containerd: {(ag + ten[2] / 1024) * 1.048576:.1f} MB here); "
                   f"KubeEdge's edgecore needs at least 70 MB ({70 / (ag * 1.048576):.1f}× this agent).")
    out.append("")
    out.append(END)
    return "\n".join(out)


def write(path, report):
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        start = text.index(BEGIN)
        end = text.index(END) + len(END)
        text = text[:start] + report + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + report + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
