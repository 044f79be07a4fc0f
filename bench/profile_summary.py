#!/usr/bin/env python3
"""Summarise a py-spy ``--format raw`` (folded stacks) profile of hookproxy.

    profile_summary.py results/profile-X/nonstream64.collapsed.txt [--top 25]

Three views, all in % of the non-idle samples:
  1. self time by package (the leaf frame's package: hookproxy, uvicorn, starlette, aiohttp, ...;
     "stdlib:asyncio" Runner.run self time is uvloop's C code: socket I/O, httptools parsing);
  2. cost owned by hookproxy code: each sample is charged to its *deepest* hookproxy frame (the
     CLI's serve()/uvicorn.run frame does not count) (so a
     library call made by hookproxy, e.g. building an httpx.Request, counts for the hookproxy
     function that made it), with the package the time was actually spent in;
     samples with no hookproxy frame at all are framework cost (server, routing, event loop);
  3. the hottest leaf functions overall.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def package(path: str) -> str:
    if "/hookproxy/" in path or path.startswith("hookproxy/"):
        return "hookproxy"
    m = re.search(r"(?:^|/)(hookproxy_[A-Za-z0-9_]+)/", path)
    if m:  # an installed plugin of this repo (plugins/*): own code too
        return m.group(1)
    m = re.search(r"site-packages/([A-Za-z0-9_]+)", path)
    if m:
        return m.group(1)
    m = re.search(r"python3\.\d+/([A-Za-z0-9_]+)", path)
    if m:
        name = m.group(1)
        return f"stdlib:{name.removesuffix('.py')}"
    return path or "?"


def short(path: str) -> str:
    m = re.search(r"(?:^|/)((?:hookproxy|hookproxy_[A-Za-z0-9_]+)/[^/]+)$", path)
    if m:
        return m.group(1)
    for marker in ("site-packages/", "python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse(path: str) -> list[tuple[list[tuple[str, str, str]], int]]:
    stacks = []
    with open(path) as fh:
        for raw in fh:
            raw = raw.rstrip("\n")
            if not raw:
                continue
            stack, _, count = raw.rpartition(" ")
            frames = []
            for part in stack.split(";"):
                m = FRAME.match(part)
                if m:
                    frames.append((m.group("func"), m.group("file"), m.group("line") or ""))
                else:
                    frames.append((part, "", ""))
            stacks.append((frames, int(count)))
    return stacks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    stacks = parse(args.file)
    total = sum(c for _, c in stacks)
    if not total:
        print("no samples")
        return
    pct = lambda n: f"{100 * n / total:5.1f}%"  # noqa: E731

    by_pkg: Counter[str] = Counter()
    owner: Counter[str] = Counter()
    owner_pkgs: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    framework_top: Counter[str] = Counter()
    for frames, count in stacks:
        # py-spy raw: outermost frame first, leaf last (thread name may be the first element)
        frames = [f for f in frames if f[1]]
        if not frames:
            continue
        func, file, _ = frames[-1]
        leaf_pkg = package(file)
        by_pkg[leaf_pkg] += count
        leaf[f"{func} ({short(file)})"] += count
        seen = set()
        deepest = None
        for f in frames:
            if package(f[1]).startswith("hookproxy") and not f[1].endswith(("/cli.py", "/__main__.py")):
                key = f"{f[0]} ({short(f[1])})"
                deepest = key
                if key not in seen:
                    inclusive[key] += count
                    seen.add(key)
        if deepest is None:
            deepest = "(outside hookproxy code: server, framework, event loop)"
            # name the leaf's package and the outermost library frame (below hookproxy's CLI)
            entry = next((f"{package(f[1])}: {f[0]}" for f in frames
                          if not package(f[1]).startswith(("stdlib", "hookproxy", "<"))), "event loop (C)")
            framework_top[f"{entry} -> leaf in {leaf_pkg}"] += count
        owner[deepest] += count
        owner_pkgs[deepest][leaf_pkg] += count

    print(f"samples: {total} (non-idle)")
    print("\n== self time by package (leaf frame)")
    for name, n in by_pkg.most_common():
        print(f"  {pct(n)}  {name}")
    print("\n== cost by owner: deepest hookproxy frame on the stack (time spent in: packages)")
    for name, n in owner.most_common(args.top):
        spent = ", ".join(f"{p} {100 * c / n:.0f}%" for p, c in owner_pkgs[name].most_common(4))
        print(f"  {pct(n)}  {name}  [{spent}]")
    print("\n== inclusive time of hookproxy functions")
    for name, n in inclusive.most_common(args.top):
        print(f"  {pct(n)}  {name}")
    print("\n== samples without a hookproxy frame, by first non-stdlib frame")
    for name, n in framework_top.most_common(12):
        print(f"  {pct(n)}  {name}")
    print("\n== hottest leaf functions")
    for name, n in leaf.most_common(args.top):
        print(f"  {pct(n)}  {name}")


if __name__ == "__main__":
    main()
