#!/usr/bin/env python3
"""Where the instructions per request differ between two servers, function by function.

Reads two callgrind files kept by `KEEP=<dir> benches/http/instructions.sh` (each
`<dir>/<binary>.<round>.out` with its `<binary>.<round>.requests`), takes each function's own
instructions (exclusive cost, from `callgrind_annotate --inclusive=no`), divides by the requests
of the measured window and prints a Markdown table of the largest differences (the threads'
entry frames, which callgrind_annotate lists with the whole window's cost, are left out):

    benches/http/profile_diff.py /tmp/prof/axum-echo-struct.1 /tmp/prof/axum-echo-bare-struct.1

The binary's own crate name (`axum_echo_struct::`, ...) is dropped from function names so the
same generic function of both binaries lines up. Options: `--top N` (default 30).
`profile_diff.py --callers <function> <stem>` lists who calls a function (say `memcpy`), with the
instructions per request spent in it for each caller.
"""
import re
import subprocess
import sys
from collections import defaultdict

LINE = re.compile(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+(.*?)(?:\s+\[(.*)\])?$")


def self_costs(stem):
    """Function -> exclusive instructions per request, and the total per request."""
    requests = int(open(stem + ".requests").read())
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--threshold=100", stem + ".out"],
        capture_output=True, text=True, check=True,
    ).stdout
    costs = defaultdict(float)
    total = 0.0
    body = False
    for line in out.splitlines():
        if "file:function" in line:
            body = True
            continue
        m = LINE.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = ir / requests
            continue
        if not body:
            continue
        name = m.group(2).split(":", 1)[-1] if ":" in m.group(2)[:60] and m.group(2).startswith(("???", ".", "/")) else m.group(2)
        name = re.sub(r"\b\w+_echo(_bare)?(_struct)?::", "", name)
        costs[name] += ir / requests
    # callgrind_annotate also lists the threads' entry frames (on the stack when the measured
    # window was dumped) with the whole window's cost: they are no function's own work.
    costs = {f: c for f, c in costs.items() if c < 0.5 * total}
    return costs, total


def callers(stem, function):
    """Who calls `function` (a substring of its name), with the instructions per request spent
    in it (and below it) on behalf of each caller."""
    requests = int(open(stem + ".requests").read())
    out = subprocess.run(
        ["callgrind_annotate", "--tree=caller", "--inclusive=yes", "--threshold=100", stem + ".out"],
        capture_output=True, text=True, check=True,
    ).stdout
    for block in out.split("\n\n"):
        lines = block.splitlines()
        star = [l for l in lines if re.match(r"^\s*[\d,]+\s+\([\s\d.]+%\)\s+\*", l)]
        if not star or function not in star[0]:
            continue
        print(f"| caller of `{star[0].split('*', 1)[1].strip()[:100]}` | instr/request |")
        print("|---|---|")
        rows = []
        for l in lines:
            m = re.match(r"^\s*([\d,]+)\s+\([\s\d.]+%\)\s+<\s+(.*)$", l)
            if m:
                rows.append((int(m.group(1).replace(",", "")) / requests, m.group(2)))
        for cost, name in sorted(rows, reverse=True):
            if cost >= 1:
                name = re.sub(r"\s*\[.*\]$", "", name).replace("???:", "")
                print(f"| `{name[:120]}` | {cost:,.0f} |")


def main():
    args = sys.argv[1:]
    if args and args[0] == "--callers":
        callers(args[2], args[1])
        return
    top = 30
    if "--top" in args:
        i = args.index("--top")
        top = int(args[i + 1])
        del args[i : i + 2]
    a, b = args
    ca, ta = self_costs(a)
    cb, tb = self_costs(b)
    rows = sorted(set(ca) | set(cb), key=lambda f: -abs(ca.get(f, 0) - cb.get(f, 0)))
    print(f"| function | {a.rsplit('/', 1)[-1]} | {b.rsplit('/', 1)[-1]} | difference |")
    print("|---|---|---|---|")
    shown = 0.0
    for f in rows[:top]:
        d = ca.get(f, 0) - cb.get(f, 0)
        shown += d
        name = f if len(f) <= 110 else f[:107] + "..."
        print(f"| `{name}` | {ca.get(f, 0):,.0f} | {cb.get(f, 0):,.0f} | {d:+,.0f} |")
    print(f"| (the {top} above) | | | {shown:+,.0f} |")
    sa, sb = sum(ca.values()), sum(cb.values())
    print(f"| (all functions) | {sa:,.0f} | {sb:,.0f} | {sa - sb:+,.0f} |")
    print(f"| **total per request** | {ta:,.0f} | {tb:,.0f} | {ta - tb:+,.0f} |")


if __name__ == "__main__":
    main()
