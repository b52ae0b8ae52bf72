"""Rewrite the generated toy-model blocks of README and docs/llm_toy.md from the results folders.

    uv run python experiments/llm_toy_readme.py           # rewrite the blocks
    uv run python experiments/llm_toy_readme.py --check   # exit 1 when README is out of date

``toy-default`` is ``experiments/results/llm_toy/summary.md``; ``toy-runs`` is one row per
``experiments/results/llm_toy*`` run (``toy_report.runs_table``); ``toy-ablations`` in
``docs/llm_toy.md`` is one row per ``experiments/results/llm_toy_ablations/*`` run
(``toy_report.ablation_table``). The prose around them is written by hand from them.
"""

import argparse
import sys
from pathlib import Path

from sublim_jax import findings
from sublim_jax.llm import toy_report

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    root = ROOT / "experiments" / "results"
    pages = {
        "README.md": toy_report.readme_blocks(root),
        "docs/llm_toy.md": toy_report.docs_blocks(root),
    }
    return max(findings.refresh(ROOT / page, blocks, args.check) for page, blocks in pages.items())


if __name__ == "__main__":
    sys.exit(main())
