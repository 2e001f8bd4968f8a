#!/usr/bin/env python3
"""File-level import cycles inside each crate of the workspace.

A file imports another when it names one of that file's module paths: `crate::a::b`, `super::x`,
`super::{x, y}`, `crate::{x, y}`, or a child module by its name (`child::item`); edges into the
crate root (the facade of `mod` lines and re-exports) are not counted. Test modules
(`#[cfg(test)] mod tests { … }` to the end of the file) and comments are skipped. Strongly connected
components of more than one file are cycles. The check is textual (no name resolution), so it can
see an edge a glob import hides from it, never one that is not written.

Cycles listed in scripts/lint/import-cycles.allow (one per line, files sorted and joined by " <-> ",
prefixed by the crate directory) are reported but do not fail: the list only shrinks. Any other
cycle fails with exit status 1.

    scripts/lint/import-cycles.py            # check every crate under crates/
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def module_of(src_dir, path):
    parts = os.path.relpath(path, src_dir)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def code_of(path):
    src = open(path, encoding="utf-8").read()
    src = re.sub(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod tests \{.*", "", src, flags=re.S)
    return "\n".join(line.split("//")[0] for line in src.split("\n"))


def edges_of(src_dir):
    files = {}
    for d, _, names in os.walk(src_dir):
        for n in names:
            if n.endswith(".rs"):
                files[module_of(src_dir, os.path.join(d, n))] = os.path.join(d, n)
    edges = {m: set() for m in files}

    def longest_module(path):
        for i in range(len(path), -1, -1):
            cand = "::".join(path[:i])
            if cand in files:
                return cand
        return ""

    for m, path in files.items():
        code = code_of(path)
        here = m.split("::") if m else []
        parent = here[:-1]
        for kind, rest in re.findall(r"\b(crate|super)((?:::\w+)+)", code):
            base = [] if kind == "crate" else parent
            edges[m].add(longest_module(base + rest.strip(":").split("::")))
        for kind, inner in re.findall(r"\b(crate|super)::\{([^}]*)\}", code):
            base = [] if kind == "crate" else parent
            for name in re.findall(r"\b(\w+)\b", inner):
                edges[m].add(longest_module(base + [name]))
        for name in re.findall(r"(?<![:\w])(\w+)::", code):
            child = "::".join(here + [name])
            if child in files:
                edges[m].add(child)
        edges[m].discard(m)
        # The crate root is the facade (`mod` lines and re-exports): `crate::Name` of a re-export
        # names the defining file's item, which this textual check cannot resolve, so edges into the
        # root are not counted.
        edges[m].discard("")
    return edges


def cycles(edges):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(c or "<crate root>" for c in comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return found


def main():
    allow_path = os.path.join(ROOT, "scripts", "lint", "import-cycles.allow")
    allowed = set()
    if os.path.exists(allow_path):
        for line in open(allow_path, encoding="utf-8"):
            line = line.split("#")[0].strip()
            if line:
                allowed.add(line)
    failed = False
    crates = os.path.join(ROOT, "crates")
    for crate in sorted(os.listdir(crates)):
        src = os.path.join(crates, crate, "src")
        if not os.path.isdir(src):
            continue
        for comp in cycles(edges_of(src)):
            key = f"{crate}: " + " <-> ".join(comp)
            if key in allowed:
                print(f"known cycle   {key}")
            else:
                print(f"NEW CYCLE     {key}")
                failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
