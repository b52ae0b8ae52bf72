"""The pipeline's results say what their intervals are over, give the trait student's shift
against each control paired by question, and docs/llm_pipeline.md quotes the committed run."""

import importlib.util
import json
from pathlib import Path

import numpy as np

from sublim_jax.experiments.llm_pipeline import figure, report

ROOT = Path(__file__).resolve().parents[3]


def _scores(exact, sampled) -> dict:
    return {
        "exact": {"share_per_question": exact, "target_share": {"mean": np.mean(exact)}},
        "sampled": {"per_question": sampled, "mean": np.mean(sampled)},
    }


def test_shifts_are_paired_by_question():
    trait = _scores([0.3, 0.5, 0.7], [0.2, 0.4, 0.6])
    control = _scores([0.2, 0.4, 0.6], [0.2, 0.4, 0.6])
    got = report.shifts({"trait": trait, "base_numbers": control, "teacher": trait})
    assert set(got) == {"base_numbers"}
    exact = got["base_numbers"]["exact"]
    assert np.isclose(exact["mean"], 0.1) and np.allclose(exact["ci95"], 0.1)  # paired: no spread
    assert got["base_numbers"]["sampled"]["mean"] == 0


def test_the_figure_names_the_trait_student_and_the_interval(tmp_path, monkeypatch):
    res = json.loads((ROOT / "experiments/results/llm_tiny/results.json").read_text())
    drawn = []
    monkeypatch.setattr(figure, "save", lambda fig, out, stem: drawn.append(fig) or [])
    figure.preference_figure(res, tmp_path)
    ax = drawn[0].axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert any(label.startswith("trait student") for label in labels)
    assert "not a CI over seeds" in ax.get_title()
    assert "reduced size" not in ax.get_title()  # the committed run predates the preset record
    figure.preference_figure({**res, "preset": "smoke", "reduced": ["--n-prompts"]}, tmp_path)
    assert "smoke preset, reduced size (--n-prompts)" in drawn[1].axes[0].get_title()


def test_docs_quote_the_committed_tiny_run():
    spec = importlib.util.spec_from_file_location("docs", ROOT / "experiments/llm_tiny_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run `uv run python experiments/llm_tiny_docs.py`"
