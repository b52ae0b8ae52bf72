"""Across sweeps: does the theorem's step-0 alignment predict where transfer happens? And the
numbers of experiments/FINDINGS.md.

Question: over every point of every sweep, does the cosine of an aux-only student's first update
with the teacher's total update (the one-step theorem's quantity) rank the points by how much the
student learns MNIST after five epochs?

    uv run sublim-jax sweep all --out experiments/results/sweeps      # every sweep, default preset
    uv run python experiments/findings.py experiments/results/sweeps  # seconds

Paper-preset runs (a GPU's work) are read from ``--paper-root`` (``results/sweeps_paper/NAME``,
any subset of the sweeps): their tables fill the ``paper-NAME`` blocks, and their measured
times replace the estimate in the paper table, whose other rows are scaled at the FLOP rate
those runs reached.

Reads ``DIR/NAME/results.json`` for every sweep, writes ``DIR/across/results.json`` (one row per
point and init, Spearman's ρ with a bootstrap CI) and ``DIR/across/across.{pdf,png}``, and
rewrites only the generated blocks of ``experiments/FINDINGS.md`` (its prose is written by hand
from them). ``--check`` writes nothing and exits 1 when FINDINGS.md is out of date.
"""

import argparse
import sys
from pathlib import Path

from sublim_jax.experiments.sweeps import across as findings
from sublim_jax.experiments.sweeps import figure, report, steps
from sublim_jax.io import markdown, results

HERE = Path(__file__).resolve().parent
FINDINGS_MD = HERE / "FINDINGS.md"


def load_sweeps(root: Path, required: bool = True) -> dict[str, dict]:
    """Every sweep's results under ``root``, by sweep name, in name order."""
    out = {}
    for path in sorted(root.glob("*/results.json")):
        res = results.read_json(path)
        if "sweep" in res:
            out[res["sweep"]] = res
    if not out and required:
        raise SystemExit(f"no sweep results under {root}: run `sublim-jax sweep all --out {root}`")
    return out


GPU_FLOPS = 20e12  # assumed sustained fp32 rate on one H100 when no paper run was measured


def paper_estimate(by_name: dict[str, dict], measured: dict[str, dict]) -> str:
    """The paper preset's time: each sweep's default-preset minutes scaled by its training FLOPs
    (``steps.training_flops``) for the CPU; for the GPU the ``measured`` paper runs' own
    minutes, and the others' FLOPs at the rate the measured ones reached (``GPU_FLOPS`` if none)."""
    from sublim_jax.experiments.sweeps.config import SweepConfig
    from sublim_jax.experiments.sweeps.grid import preset_grid

    def paper_flops(name: str) -> float:
        return steps.training_flops(SweepConfig.paper(), preset_grid(name, "paper"))

    labels = {n: [p.label for p in preset_grid(n, "paper")] for n in measured}
    done = {n: r["wall_seconds"] for n, r in measured.items() if r["grid"] == labels[n]}
    rate = sum(map(paper_flops, done)) / sum(done.values()) if done else GPU_FLOPS
    source = "measured rate" if done else "assumed rate"
    gpu_head = f"GPU minutes (measured, else at the {source} of {rate / 1e12:.0f} TFLOP/s)"
    rows = [f"| sweep | paper points | FLOPs paper / default | CPU hours (scaled) | {gpu_head} |",
            "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    total_cpu = total_gpu = 0.0
    for name, res in by_name.items():
        default, paper = preset_grid(name, "default"), preset_grid(name, "paper")
        if [p.label for p in default] != res["grid"]:
            rows.append(f"| {name} | (this run's grid is not the default preset's) | | | |")
            continue
        flops = paper_flops(name)
        ratio = flops / steps.training_flops(SweepConfig.default(), default)
        cpu = res["wall_seconds"] * ratio / 3600
        gpu = done[name] / 60 if name in done else flops / rate / 60
        total_cpu, total_gpu = total_cpu + cpu, total_gpu + gpu
        shown = f"**{gpu:.1f}** (measured)" if name in done else f"{gpu:.1f}"
        rows.append(f"| {name} | {len(paper)} | {ratio:.1f} | {cpu:.1f} | {shown} |")
    rows.append(f"| **all** | | | **{total_cpu:.0f}** | **{total_gpu:.0f}** |")
    return "\n".join(rows)


def blocks(by_name: dict[str, dict], across: dict, measured: dict[str, dict]) -> dict[str, str]:
    minutes = {name: res["wall_seconds"] / 60 for name, res in by_name.items()}
    timing = ["| sweep | points | seeds | minutes |", "| --- | ---: | ---: | ---: |"]
    for name, res in by_name.items():
        n_seeds = res["fixed"]["teacher"]["n"]
        timing.append(f"| {name} | {len(res['points'])} | {n_seeds} | {minutes[name]:.1f} |")
    timing.append(f"| **all** | {sum(len(r['points']) for r in by_name.values())} | | "
                  f"**{sum(minutes.values()):.1f}** |")  # fmt: skip
    return {
        **{name: report.table(res, ci=True) for name, res in by_name.items()},
        "across": findings.correlation_text(across),
        "timing": "\n".join(timing),
        "paper": paper_estimate(by_name, measured),
        **{f"paper-{name}": report.table(res, ci=True) for name, res in measured.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=str(HERE / "results" / "sweeps"))
    parser.add_argument(
        "--paper-root",
        default=str(HERE / "results" / "sweeps_paper"),
        help="paper-preset sweep runs (any subset; their times are measured, not estimated)",
    )
    parser.add_argument("--findings", default=str(FINDINGS_MD), help="the Markdown to update")
    parser.add_argument("--check", action="store_true", help="exit 1 if FINDINGS.md is stale")
    args = parser.parse_args(argv)
    root, md = Path(args.root), Path(args.findings)
    by_name = load_sweeps(root)
    measured = load_sweeps(Path(args.paper_root), required=False)
    across = findings.across(by_name.values())
    text, missing = markdown.fill(md.read_text(), blocks(by_name, across, measured))
    if args.check:
        stale = text != md.read_text()
        print(f"{md.name} is {'out of date' if stale else 'up to date'}")
        return int(stale)
    results.write_results(root / "across", findings.KIND, across)
    figure.across_sweeps_figure(across, root / "across")
    results.write_text(md, text)
    print(findings.correlation_text(across))
    if missing:
        print(f"no results for blocks: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
