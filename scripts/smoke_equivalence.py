"""Run every experiment at its smoke size, and compare two such sets of runs.

A refactor that must not change behaviour is checked with it: run the set before the change and
after, then compare. Two ``results.json`` files agree when they are equal after dropping what a
run cannot reproduce (wall-clock times) and the fields a change is allowed to add (``kind``)::

    uv run python scripts/smoke_equivalence.py run runs/before   # on the old commit
    uv run python scripts/smoke_equivalence.py run runs/after    # on the new one
    uv run python scripts/smoke_equivalence.py compare runs/before runs/after

The data folder is ``$SUBLIM_DATA`` (the MNIST files; a ``fashion-mnist`` folder beside them is
found by the sweeps that need it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RUNS = {
    "mnist": ["mnist", "--preset", "smoke"],
    "theorem": ["theorem", "--preset", "smoke"],
    "llm-tiny": ["llm", "run", "--preset", "smoke"],
    "llm-toy": ["llm", "toy", "--preset", "smoke"],
}  # and every sweep `sweep --list` names (see `runs`)


def command() -> list[str]:
    return [str(Path(sys.executable).parent / "sublim-jax")]


def runs() -> dict[str, list[str]]:
    """``RUNS`` and one smoke run per sweep the checkout knows (asked through the command line,
    so that the script runs on any commit)."""
    listed = subprocess.run([*command(), "sweep", "--list"], capture_output=True, text=True)
    sweeps = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    return {**RUNS, **{f"sweep-{s}": ["sweep", s, "--preset", "smoke"] for s in sweeps}}


# wall-clock keys, wherever they sit; `kind` may be added by a change
IGNORED = {"wall_seconds", "timings", "seconds", "minutes", "kind", "stage_seconds"}


def run(out: Path, only: list[str]) -> None:
    for name, argv in runs().items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        cmd = [*command(), *argv, "--out", str(out / name)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        took = time.perf_counter() - start
        status = "ok" if proc.returncode == 0 else f"FAILED rc {proc.returncode}"
        print(f"{name:32s} {took:7.1f} s  {status}", flush=True)
        if proc.returncode:
            print(proc.stderr[-3000:], file=sys.stderr)


def strip(obj):
    if isinstance(obj, dict):
        return {k: strip(v) for k, v in obj.items() if k not in IGNORED}
    if isinstance(obj, list):
        return [strip(v) for v in obj]
    return obj


def diff(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += diff(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {str(a)[:80]} != {str(b)[:80]}"]


def compare(before: Path, after: Path) -> int:
    files = sorted({p.relative_to(before) for p in before.rglob("results.json")})
    files_after = sorted({p.relative_to(after) for p in after.rglob("results.json")})
    bad = 0
    for rel in sorted(set(files) | set(files_after)):
        if rel not in files or rel not in files_after:
            print(f"{rel}: missing on one side")
            bad += 1
            continue
        a = strip(json.loads((before / rel).read_text()))
        b = strip(json.loads((after / rel).read_text()))
        d = diff(a, b)
        print(f"{rel}: {'identical' if not d else f'{len(d)} differences'}")
        for line in d[:10]:
            print("   ", line)
        bad += bool(d)
    print(f"{len(files)} results.json files, {bad} differ")
    return 1 if bad or not files else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run every smoke experiment into OUT/<name>")
    r.add_argument("out", type=Path)
    r.add_argument("--only", nargs="*", default=[], metavar="NAME", help="a subset of runs")
    c = sub.add_parser("compare", help="compare two folders written by `run`")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = p.parse_args(argv)
    if args.cmd == "run":
        run(args.out, args.only)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
