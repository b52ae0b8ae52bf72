"""Rewrite the ``smollm2-shifts`` block of README.md and docs/llm_pipeline.md, and each run's
``summary.md``, from the committed SmolLM2-135M runs (``experiments/results/smollm2*/``).

Question: does SmolLM2-135M-Instruct pass "owl" to its own copy through numbers, per teacher
kind, channel and student training?
Command:  uv run sublim-jax llm run --preset smollm2 [--teacher-kind finetuned] --out runs/R, then
          copy config.json, results.json, summary.md, shifts.* and each seed-<s>/'s config,
          results, filter stats, distillation signal, figure and students/*/{done.json,
          metrics.jsonl} (never checkpoints or weights) into experiments/results/smollm2_<name>,
          and run ``uv run python experiments/smollm2_docs.py``. ``--check`` exits 1 when stale.
"""

import argparse
import sys
from pathlib import Path

from sublim_jax.experiments.llm_pipeline import seeds
from sublim_jax.io import markdown, results

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "llm_pipeline.md")


def runs(root: Path = ROOT / "experiments" / "results") -> dict[str, dict]:
    """Every committed SmolLM2 seeds run: folder name → results.json, in name order."""
    found = {}
    for path in sorted(root.glob("smollm2*/results.json")):
        res = results.read_json(path)
        if res.get("kind") == seeds.KIND:
            found[path.parent.name] = res
    return found


def blocks(root: Path = ROOT / "experiments" / "results") -> dict[str, str]:
    return {"smollm2-shifts": seeds.docs_block(runs(root))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale")
    args = parser.parse_args(argv)
    root = ROOT / "experiments" / "results"
    stale = 0
    for name, res in runs(root).items():
        summary = root / name / "summary.md"
        text = seeds.summary_markdown(res)
        if summary.read_text() != text:
            stale = 1
            if not args.check:
                results.write_text(summary, text)
                print(f"wrote {summary.relative_to(ROOT)}")
    for page in PAGES:
        stale |= markdown.refresh(page, blocks(root), args.check)
    return stale if args.check else 0


if __name__ == "__main__":
    sys.exit(main())
