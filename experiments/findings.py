"""Across sweeps: does the theorem's step-0 alignment predict where transfer happens? And the
numbers of experiments/FINDINGS.md.

Question: over every point of every sweep, does the cosine of an aux-only student's first update
with the teacher's total update (the one-step theorem's quantity) rank the points by how much the
student learns MNIST after five epochs?

    uv run sublim-jax sweep all --out experiments/results/sweeps      # every sweep, default preset
    uv run python experiments/findings.py experiments/results/sweeps  # seconds

Reads ``DIR/NAME/results.json`` for every sweep, writes ``DIR/across/results.json`` (one row per
point and init, Spearman's ρ with a bootstrap CI) and ``DIR/across/across.{pdf,png}``, and
rewrites only the generated blocks of ``experiments/FINDINGS.md`` (its prose is written by hand
from them). ``--check`` writes nothing and exits 1 when FINDINGS.md is out of date.
"""

import argparse
import sys
from pathlib import Path

from sublim_jax import figures, findings, results

HERE = Path(__file__).resolve().parent
FINDINGS_MD = HERE / "FINDINGS.md"


def load_sweeps(root: Path) -> dict[str, dict]:
    """Every sweep's results under ``root``, by sweep name, in name order."""
    out = {}
    for path in sorted(root.glob("*/results.json")):
        res = results.read_json(path)
        if "sweep" in res:
            out[res["sweep"]] = res
    if not out:
        raise SystemExit(f"no sweep results under {root}: run `sublim-jax sweep all --out {root}`")
    return out


def blocks(by_name: dict[str, dict], across: dict) -> dict[str, str]:
    minutes = {name: res["wall_seconds"] / 60 for name, res in by_name.items()}
    timing = ["| sweep | points | seeds | minutes |", "| --- | ---: | ---: | ---: |"]
    for name, res in by_name.items():
        n_seeds = res["fixed"]["teacher"]["n"]
        timing.append(f"| {name} | {len(res['points'])} | {n_seeds} | {minutes[name]:.1f} |")
    timing.append(f"| **all** | {sum(len(r['points']) for r in by_name.values())} | | "
                  f"**{sum(minutes.values()):.1f}** |")  # fmt: skip
    return {
        **{name: findings.sweep_table(res) for name, res in by_name.items()},
        "across": findings.correlation_text(across["spearman"], across["rows"]),
        "timing": "\n".join(timing),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=str(HERE / "results" / "sweeps"))
    parser.add_argument("--findings", default=str(FINDINGS_MD), help="the Markdown to update")
    parser.add_argument("--check", action="store_true", help="exit 1 if FINDINGS.md is stale")
    args = parser.parse_args(argv)
    root, md = Path(args.root), Path(args.findings)
    by_name = load_sweeps(root)
    across = findings.across(by_name.values())
    text, missing = findings.fill(md.read_text(), blocks(by_name, across))
    if args.check:
        stale = text != md.read_text()
        print(f"{md.name} is {'out of date' if stale else 'up to date'}")
        return int(stale)
    results.write_json(root / "across" / "results.json", across)
    figures.across_sweeps_figure(across, root / "across")
    results.write_text(md, text)
    print(findings.correlation_text(across["spearman"], across["rows"]))
    if missing:
        print(f"no results for blocks: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
