#!/usr/bin/env python3
"""Builds every test binary of the workspace, then runs several binaries at once.

`cargo test` runs test binaries one after another; most of kedge's spend their time
waiting on real servers (PostgreSQL, etcd, the kedge binary, containerd, network
namespaces), so running a few side by side cuts the wall time without changing any
test. Each binary still runs its own tests as `cargo test` would (same working
directory, same environment), and keeps its per-binary fixtures (a shared PostgreSQL,
say).

Usage: scripts/run-tests.py [--jobs N] [-- extra args for every test binary]
Env:   KEDGE_TEST_JOBS (default 3)

Prints one line per binary as it finishes, the whole output of every binary that
failed, and the slowest binaries at the end. Exits 1 when any failed.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Binaries known to take longest start first, so that the run does not end waiting on
# one of them alone (longest-first scheduling). Names are "<package>::<target>".
LONG_FIRST = [
    "kedge::workloads",
    "kedge::link_netns",
    "kedge::kubectl",
    "kedge::pods",
    "kedge::budgets",
    "kedge::link",
    "kedge::kube_rs",
    "kedge::controllers",
    "kedge-datastore-testkit::postgres_outage",
    "kedge-datastore-testkit::etcd_outage",
    "kedge-datastore-testkit::postgres",
    "kedge-datastore-testkit::etcd",
]


def build(cargo_args):
    """Builds the test binaries; returns [(name, executable, package_dir)]."""
    cmd = ["cargo", "test", "--locked", "--workspace", "--no-run",
           "--message-format=json-render-diagnostics"] + cargo_args
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    binaries = []
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        if not msg.get("profile", {}).get("test") or not msg.get("executable"):
            continue
        package = msg["package_id"]
        target = msg["target"]["name"]
        manifest = msg["manifest_path"]
        pkg_name = package_name(package, manifest)
        binaries.append((f"{pkg_name}::{target}", msg["executable"],
                         os.path.dirname(manifest), pkg_name))
    if proc.wait() != 0:
        sys.exit("run-tests: building the test binaries failed")
    return binaries


def package_name(package_id, manifest):
    # package_id looks like "path+file:///work/main/edge-agent#kedge-agent@0.1.0"
    # or "path+file:///work/main/control-plane/kedge#0.1.0" (name = last path part).
    tail = package_id.rsplit("#", 1)[-1]
    if "@" in tail:
        return tail.split("@", 1)[0]
    return os.path.basename(os.path.dirname(manifest))


def run(binary, extra, lock, results):
    name, exe, cwd, pkg = binary
    env = dict(os.environ, CARGO_MANIFEST_DIR=cwd, CARGO_PKG_NAME=pkg)
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+") as out:
        code = subprocess.call([exe] + extra, cwd=cwd, env=env, stdout=out,
                               stderr=subprocess.STDOUT)
        elapsed = time.monotonic() - start
        out.seek(0)
        log = out.read()
    summary = [l for l in log.splitlines() if l.startswith("test result:")]
    with lock:
        status = "ok  " if code == 0 else "FAIL"
        detail = summary[-1][len("test result: "):] if summary else f"exit {code}"
        print(f"{status} {name} ({elapsed:.1f} s): {detail}", flush=True)
        if code != 0:
            print(f"---- output of {name} ----\n{log}\n---- end of {name} ----",
                  flush=True)
        results.append((name, code, elapsed))


def main():
    args = sys.argv[1:]
    jobs = int(os.environ.get("KEDGE_TEST_JOBS", "3"))
    extra = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1:]
    if args[:1] == ["--jobs"]:
        jobs = int(args[1])
        args = args[2:]
    binaries = build(args)
    order = {name: i for i, name in enumerate(LONG_FIRST)}
    binaries.sort(key=lambda b: order.get(b[0], len(order)))
    print(f"run-tests: {len(binaries)} test binaries, {jobs} at a time", flush=True)
    lock = threading.Lock()
    results = []
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for b in binaries:
            pool.submit(run, b, extra, lock, results)
    failed = [r for r in results if r[1] != 0]
    print(f"\nrun-tests: {len(results) - len(failed)} binaries passed, "
          f"{len(failed)} failed, in {time.monotonic() - start:.0f} s")
    print("slowest:")
    for name, _, elapsed in sorted(results, key=lambda r: -r[2])[:10]:
        print(f"  {elapsed:7.1f} s  {name}")
    if failed:
        print("failed: " + ", ".join(r[0] for r in failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
