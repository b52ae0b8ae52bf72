"""The committed SmolLM2 runs (``experiments/results/smollm2*/``): their ``summary.md`` and the
``smollm2-shifts`` block of README and docs/llm_pipeline.md are what their results say."""

import importlib.util
from pathlib import Path

from sublim_jax.experiments.llm_pipeline import seeds
from sublim_jax.io import markdown

ROOT = Path(__file__).resolve().parents[3]


def _docs_script():
    spec = importlib.util.spec_from_file_location(
        "smollm2_docs", ROOT / "experiments/smollm2_docs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smollm2_summaries_and_blocks_are_generated_from_the_committed_runs():
    docs = _docs_script()
    runs = docs.runs()
    assert "smollm2_finetuned" in runs
    for name, res in runs.items():
        summary = (ROOT / "experiments" / "results" / name / "summary.md").read_text()
        assert summary == seeds.summary_markdown(res), name
        assert (ROOT / "experiments" / "results" / name / "shifts.png").is_file(), name
    for page in docs.PAGES:
        text = page.read_text()
        assert "<!-- BEGIN generated: smollm2-shifts -->" in text, page.name
        new, _ = markdown.fill(text, docs.blocks())
        assert new == text, f"{page.name}: run `uv run python experiments/smollm2_docs.py`"
