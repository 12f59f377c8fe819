#!/usr/bin/env python3
"""Size report, size budget and the docs section for the agent's cross builds.

  agent-size.py report --arch arm64 --triple T --tool-prefix aarch64-linux-gnu- --dir DIR
      reads DIR/kedge-agent (stripped) and DIR/kedge-agent.debug (with symbols), prints
      the report and writes DIR/size-report.md and DIR/size-report.json
  agent-size.py check --budget edge-agent/packaging/size-budget --binary DIR/kedge-agent
      exits 1 when the binary is larger than the budget
  agent-size.py docs --dist target/cross/dist --packages target/cross/packages \
      --command "..." --write docs/benchmarks.md
      rewrites the "Packages" section of docs/benchmarks.md from the reports, keeping
      what stands between <!-- packages:notes:begin --> and <!-- packages:notes:end -->

Which crate a symbol belongs to is read from its demangled name. A generic function of
the standard library instantiated for another crate's type (drop_in_place::<tokio::..>,
<alloc::vec::Vec<rustls::..> as ..>::..) is charged to that crate, since that crate is
why the code exists. With fat LTO much is inlined across crates, so the split is an
estimate of who pulled the code in, as cargo-bloat's is.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict

STD_CRATES = {"core", "alloc", "std", "std_detect", "compiler_builtins", "panic_abort",
              "hashbrown", "gimli", "addr2line", "miniz_oxide", "rustc_demangle",
              "object", "memchr_std", "adler2"}
PATH_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)::")
MIB = 1024 * 1024


def run(args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def crates_in(name):
    """The crate names in a demangled path, in order of appearance."""
    found = []
    for m in PATH_RE.finditer(name):
        start = m.start()
        # a crate is the first segment of a path: at the start, or after a
        # non-identifier character that is not part of '::'
        if start == 0 or (name[start - 1] not in ":" and not name[start - 1].isalnum()
                          and name[start - 1] != "_"):
            found.append(m.group(1))
    return found


def crate_of(name):
    """Which crate a demangled symbol is charged to (see the module doc)."""
    if name.startswith("sqlite3") or name.startswith("_sqlite3"):
        return "sqlite (C, bundled by rusqlite)"
    if name.startswith("ring_core_") or name.startswith("GFp") or name.startswith("ring_"):
        return "ring (C and assembly)"
    crates = [c for c in crates_in(name) if c not in ("impl", "dyn")]
    if not crates:
        return "[C runtime and unnamed]"
    for c in crates:
        if c not in STD_CRATES:
            return c
    return "std/core/alloc"


def sections(tool_prefix, path):
    """(name, size) of every allocated section."""
    out = run([tool_prefix + "readelf", "-SW", path])
    result = []
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*)", line)
        if m and "A" in m.group(3):
            result.append((m.group(1), int(m.group(2), 16)))
    return result


def symbol_sizes(tool_prefix, path):
    """Bytes per crate over the sized symbols of the text, rodata and data sections.

    SQLite and ring's C files keep many local (static) functions and tables whose names
    carry no crate. The linker lays each C object out in one piece, so such a symbol is
    charged to the C library whose named symbols sit next to it in the same section.
    """
    out = run([tool_prefix + "nm", "--numeric-sort", "--print-size", "--demangle",
               "--defined-only", path])
    per_kind = defaultdict(list)  # section kind -> [(addr, size, group)]
    for line in out.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4:
            continue
        addr, size, kind, name = parts
        k = kind.lower()
        if k not in ("t", "r", "d", "b", "w"):
            continue
        per_kind[k].append((int(addr, 16), int(size, 16), crate_of(name)))
    by_crate = defaultdict(int)
    total = 0
    c_groups = ("sqlite", "ring")
    unnamed = "[C runtime and unnamed]"
    for k, syms in per_kind.items():
        groups = [g for _, _, g in syms]
        for i, (_, n, g) in enumerate(syms):
            if g == unnamed:
                before = next((groups[j] for j in range(i - 1, -1, -1) if groups[j] != unnamed), None)
                after = next((groups[j] for j in range(i + 1, len(groups)) if groups[j] != unnamed), None)
                for cand in (before, after):
                    if cand and cand.startswith(c_groups):
                        g = cand
                        break
            if k == "b":  # .bss takes no room in the file
                continue
            total += n
            by_crate[g] += n
    return by_crate, total


def needed(tool_prefix, path):
    out = run([tool_prefix + "readelf", "-d", path])
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def glibc_floor(tool_prefix, path):
    out = run([tool_prefix + "objdump", "-T", path])
    versions = set(re.findall(r"GLIBC_([0-9]+(?:\.[0-9]+)*)", out))
    if not versions:
        return None
    return max(versions, key=lambda v: tuple(int(x) for x in v.split(".")))


def write_atomic(path, text):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def kib(n):
    return f"{n / 1024:,.0f} KiB"


def mib(n):
    return f"{n / MIB:.2f} MiB"


def report(args):
    d = args.dir
    stripped = os.path.join(d, "kedge-agent")
    debug = os.path.join(d, "kedge-agent.debug")
    for p in (stripped, debug):
        if not os.path.exists(p):
            sys.exit(f"agent-size: error: {p} is missing: run scripts/build-agent.sh first")
    size = os.path.getsize(stripped)
    secs = sections(args.tool_prefix, stripped)
    by_crate, total = symbol_sizes(args.tool_prefix, debug)
    top = sorted(by_crate.items(), key=lambda kv: -kv[1])
    pause = os.path.join(d, "kedge-pause")
    pause_size = os.path.getsize(pause) if os.path.exists(pause) else None
    data = {
        "arch": args.arch,
        "triple": args.triple,
        "agent_bytes": size,
        "agent_unstripped_bytes": os.path.getsize(debug),
        "pause_bytes": pause_size,
        "pause_needed": needed(args.tool_prefix, pause) if pause_size is not None else None,
        "build_seconds": args.build_seconds,
        "build_kind": args.build_kind,
        "sections": dict(secs),
        "symbols_total": total,
        "crates": top,
        "needed": needed(args.tool_prefix, stripped),
        "glibc_floor": glibc_floor(args.tool_prefix, stripped),
    }
    lines = [f"### {args.arch} ({args.triple})", ""]
    lines.append(f"- kedge-agent, stripped: {size:,} bytes ({mib(size)})")
    if pause_size is not None:
        static = "static" if not data["pause_needed"] else "needs " + ", ".join(data["pause_needed"])
        lines.append(f"- kedge-pause, stripped: {pause_size:,} bytes ({kib(pause_size)}, {static})")
    lines.append(f"- needs: {', '.join(data['needed']) or 'nothing'}; glibc floor: "
                 f"{data['glibc_floor'] or 'none'}")
    big = sorted(secs, key=lambda s: -s[1])[:6]
    lines.append("- sections: " + ", ".join(f"{n} {kib(s)}" for n, s in big))
    lines.append("")
    lines.append(f"| crate | bytes | share of named symbols ({kib(total)}) |")
    lines.append("|---|---:|---:|")
    for name, n in top[:args.top]:
        lines.append(f"| {name} | {n:,} | {100 * n / max(total, 1):.1f}% |")
    rest = sum(n for _, n in top[args.top:])
    lines.append(f"| {len(top) - args.top} others | {rest:,} | {100 * rest / max(total, 1):.1f}% |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write("\n" + text + "\n")
    write_atomic(os.path.join(d, "size-report.md"), text)
    write_atomic(os.path.join(d, "size-report.json"), json.dumps(data, indent=1) + "\n")


def read_budget(path):
    try:
        with open(path) as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    return int(line.replace("_", ""))
    except FileNotFoundError:
        sys.exit(f"agent-size: error: the size budget {path} is missing: restore it from git")
    except ValueError:
        sys.exit(f"agent-size: error: {path}: the budget must be a number of bytes")
    sys.exit(f"agent-size: error: {path} holds no budget: write the byte limit on a line of its own")


def check(args):
    budget = read_budget(args.budget)
    if not os.path.exists(args.binary):
        sys.exit(f"agent-size: error: {args.binary} is missing: run scripts/build-agent.sh --arch arm64")
    size = os.path.getsize(args.binary)
    verdict = "within" if size <= budget else "OVER"
    print(f"size budget: stripped arm64 kedge-agent {size:,} bytes ({mib(size)}), "
          f"budget {budget:,} bytes ({mib(budget)}): {verdict} "
          f"({100 * size / budget:.0f}% of it)")
    if size > budget:
        sys.exit(f"agent-size: error: the arm64 agent grew past its budget by {size - budget:,} bytes: "
                 f"see the report (scripts/build-agent.sh --arch arm64) for what grew, shrink it, "
                 f"or raise {args.budget} in a commit that says why")


def docs(args):
    reports = []
    for arch in ("arm64", "armhf", "amd64"):
        p = os.path.join(args.dist, arch, "size-report.json")
        if os.path.exists(p):
            with open(p) as f:
                reports.append(json.load(f))
    if not reports:
        sys.exit(f"agent-size: error: no size reports under {args.dist}: run scripts/build-agent.sh first")
    pkgs = {}
    if args.packages and os.path.isdir(args.packages):
        for name in sorted(os.listdir(args.packages)):
            m = re.match(r"kedge-agent[_-].*?[_-](arm64|armhf|amd64)\.(deb|tar\.gz)$", name)
            if m:
                pkgs[(m.group(1), m.group(2))] = os.path.getsize(os.path.join(args.packages, name))
    budget = read_budget(args.budget)
    out = ["<!-- packages:begin -->", "## Packages", ""]
    out.append(f"Measured {args.date} with `{args.command}` (Debian's rustc "
               f"{args.rustc}, -Zbuild-std, profile `release-agent`: fat LTO, one codegen unit, "
               f"panic=abort, opt-level {args.opt_level}; binaries stripped with binutils' "
               f"`strip --strip-all`). The budget for the stripped arm64 agent is "
               f"{budget:,} bytes ({mib(budget)}, `edge-agent/packaging/size-budget`); the "
               f"target is 15 MB, and K3s ships one binary under 100 MB.")
    out.append("")
    out.append("| arch | kedge-agent (stripped) | kedge-pause | .deb | tarball | needs | glibc floor | build |")
    out.append("|---|---:|---:|---:|---:|---|---|---:|")
    for r in reports:
        a = r["arch"]
        pause = f"{r['pause_bytes']:,} B" if r.get("pause_bytes") else "—"
        deb = pkgs.get((a, "deb"))
        tar = pkgs.get((a, "tar.gz"))
        out.append(f"| {a} | {r['agent_bytes']:,} B ({mib(r['agent_bytes'])}) | {pause} | "
                   f"{mib(deb) if deb else '—'} | {mib(tar) if tar else '—'} | "
                   f"{', '.join(r['needed'])} | {r['glibc_floor']} | {r['build_seconds']} s "
                   f"({r.get('build_kind', 'cold')}) |")
    out.append("")
    out.append("The build column is the agent's cargo build in that run, on this 2-core machine "
               "shared with other builds: cold when the target dir held nothing for the arch "
               "(the standard library and every dependency compiled), warm when it held an "
               "earlier build (what changed since recompiles, and the fat-LTO link always runs).")
    out.append("")
    first = reports[0]
    out.append(f"Largest contributors to the {first['arch']} agent, from its symbol table "
               f"(`scripts/agent-size.py`, `nm --size-sort` grouped by crate; generics of the "
               f"standard library are charged to the crate they were instantiated for; with fat "
               f"LTO, inlined code counts where it landed):")
    out.append("")
    total = first["symbols_total"]
    out.append(f"| crate | {first['arch']} bytes | share |")
    out.append("|---|---:|---:|")
    for name, n in first["crates"][:args.top]:
        out.append(f"| {name} | {n:,} | {100 * n / max(total, 1):.1f}% |")
    rest = sum(n for _, n in first["crates"][args.top:])
    out.append(f"| {len(first['crates']) - args.top} others | {rest:,} | {100 * rest / max(total, 1):.1f}% |")
    out.append("")
    secs = sorted(first["sections"].items(), key=lambda kv: -kv[1])[:6]
    out.append("Sections of the stripped " + first["arch"] + " agent: " +
               ", ".join(f"`{n}` {kib(s)}" for n, s in secs) + ".")
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            out.append("")
            out.append(f.read().rstrip())

    with open(args.write) as f:
        doc = f.read()
    # What was measured by hand (the CI step's cost, the acceptance under qemu) sits
    # between these markers; a regenerated section keeps it as it was.
    nbegin, nend = "<!-- packages:notes:begin -->", "<!-- packages:notes:end -->"
    if nbegin in doc and nend in doc and doc.index(nbegin) < doc.index(nend):
        out.append("")
        out.append(doc[doc.index(nbegin):doc.index(nend) + len(nend)])
    out.append("<!-- packages:end -->")
    section = "\n".join(out) + "\n"

    begin, end = "<!-- packages:begin -->", "<!-- packages:end -->"
    if begin in doc and end in doc:
        pre = doc[:doc.index(begin)]
        post = doc[doc.index(end) + len(end):].lstrip("\n")
        doc = pre + section + ("\n" + post if post else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + section
    write_atomic(args.write, doc)
    print(f"agent-size: wrote the Packages section of {args.write}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("--arch", required=True)
    r.add_argument("--triple", required=True)
    r.add_argument("--tool-prefix", default="")
    r.add_argument("--dir", required=True)
    r.add_argument("--build-seconds", type=int, default=0)
    r.add_argument("--build-kind", choices=("cold", "warm"), default="cold")
    r.add_argument("--top", type=int, default=15)
    c = sub.add_parser("check")
    c.add_argument("--budget", required=True)
    c.add_argument("--binary", required=True)
    d = sub.add_parser("docs")
    d.add_argument("--dist", required=True)
    d.add_argument("--packages")
    d.add_argument("--budget", required=True)
    d.add_argument("--command", required=True)
    d.add_argument("--date", required=True)
    d.add_argument("--rustc", required=True)
    d.add_argument("--opt-level", required=True)
    d.add_argument("--notes", help="a Markdown file appended to the section")
    d.add_argument("--write", required=True)
    d.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    {"report": report, "check": check, "docs": docs}[args.cmd](args)


if __name__ == "__main__":
    main()
