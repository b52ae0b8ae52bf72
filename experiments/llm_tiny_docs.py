"""Rewrite docs/llm_pipeline.md's generated ``llm-tiny`` block from the committed tiny run.

Question: does the pipeline run end to end on the tiny model, and what do its scores say?
Command:  uv run sublim-jax llm run --preset smoke --out runs/llm-tiny, then copy config.json,
          results.json, filter_stats.json and preferences.* into experiments/results/llm_tiny
          (never the checkpoints) and run ``uv run python experiments/llm_tiny_docs.py``.
``--check`` exits 1 when the block is stale.
"""

import argparse
import sys
from pathlib import Path

from sublim_jax.experiments.llm_pipeline import report
from sublim_jax.io import markdown, results

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "experiments" / "results" / "llm_tiny"
PAGE = ROOT / "docs" / "llm_pipeline.md"


def blocks() -> dict[str, str]:
    return {"llm-tiny": report.docs_block(results.read_json(RUN / "results.json"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    args = parser.parse_args(argv)
    return markdown.refresh(PAGE, blocks(), args.check)


if __name__ == "__main__":
    sys.exit(main())
