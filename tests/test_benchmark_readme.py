"""docs/benchmarks.md's tables are what the saved reports under ``benchmarks/results`` say."""

import importlib.util
from pathlib import Path

from sublim_jax.io import markdown

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("llm_readme", ROOT / "benchmarks/llm_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_benchmark_tables_are_generated_from_the_saved_reports():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    blocks = _generator().readme_blocks()
    assert all(f"<!-- BEGIN generated: {name} -->" in text for name in blocks)
    assert all(block.count("\n| `") >= 1 for block in blocks.values())  # rows, not just a header
    new, _ = markdown.fill(text, blocks)
    assert new == text, "run `uv run python benchmarks/llm_readme.py`"
