"""Rewrite README's generated toy-model blocks from the committed results folders.

    uv run python experiments/llm_toy_readme.py           # rewrite the blocks
    uv run python experiments/llm_toy_readme.py --check   # exit 1 when README is out of date

``toy-default`` is ``experiments/results/llm_toy/summary.md``; ``toy-runs`` is one row per
``experiments/results/llm_toy*`` run (``toy_report.runs_table``). The prose around them is
written by hand from them.
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
    blocks = toy_report.readme_blocks(ROOT / "experiments" / "results")
    return findings.refresh(ROOT / "README.md", blocks, args.check)


if __name__ == "__main__":
    sys.exit(main())
