"""Rewrite the generated toy-model blocks of README and docs/llm_toy.md from the results folders.

    uv run python experiments/llm_toy_readme.py           # rewrite the blocks
    uv run python experiments/llm_toy_readme.py --check   # exit 1 when anything is out of date

README's ``toy-default`` is ``experiments/results/llm_toy/summary.md``. In
``docs/llm_toy.md``, ``toy-ablations`` is one row for the legacy design, one for the default,
then one per ``experiments/results/llm_toy_ablations/*`` run (``toy_report.ablation_table``),
and ``toy-runs`` one row per ``experiments/results/llm_toy*`` run (``toy_report.runs_table``).
The prose around them is written by hand from them. Each run's ``summary.md`` is rewritten
first from its ``results.json`` and ``config.json`` (its command from the nearest preset), so a
change of wording or of the presets reaches every committed run.
"""

import argparse
import sys
from pathlib import Path

from sublim_jax.experiments.llm_toy import report as toy_report
from sublim_jax.io import markdown, results

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    root = ROOT / "experiments" / "results"
    stale = []
    for out in toy_report.run_dirs(root):
        text = toy_report.summary_text(
            results.read_json(out / "results.json"), toy_report.config_of(out)
        )
        if (out / "summary.md").read_text() != text:
            stale.append(out.relative_to(ROOT))
            if not args.check:
                results.write_text(out / "summary.md", text)
    for out in stale:
        print(f"{out}/summary.md: {'stale' if args.check else 'rewritten'}")
    pages = {
        "README.md": toy_report.readme_blocks(root),
        "docs/llm_toy.md": toy_report.docs_blocks(root),
    }
    code = max(markdown.refresh(ROOT / page, blocks, args.check) for page, blocks in pages.items())
    return max(code, int(args.check and bool(stale)))


if __name__ == "__main__":
    sys.exit(main())
