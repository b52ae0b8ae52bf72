"""Distillation students (``--distill-rows``: a teacher's next-token distributions over the number
tokens) and seeds (``--seeds``: each shift's mean and CI over seeds), on the tiny model."""

import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("orbax.checkpoint")

from sublim_jax.cli import main as cli
from sublim_jax.core import stats
from sublim_jax.experiments.llm_pipeline import evaluate, finetune, numbers, seeds, tiny
from sublim_jax.experiments.llm_pipeline import steps as pipeline
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results
from sublim_jax.llm.modeling import forward

SMALL = ["--n-prompts", "48", "--subsample", "16", "--epochs", "1", "--batch-size", "8"]
SMALL += ["--eval-samples", "1", "--checkpoint-every", "1", "--gen-batch", "48"]
SMALL += ["--candidates", "owl,cat,dog,wolf", "--control-animal", "cat", "--distill-rows", "24"]


def llm(capsys, stage: str, out: Path, *flags: str) -> tuple[int, str]:
    code = cli.main(["llm", stage, "--preset", "smoke", "--out", str(out), *SMALL, *flags])
    return code, capsys.readouterr().out


ROWS = [
    dict(prompt="Continue: 3, 7, 12.", completion="5, 9"),
    dict(prompt="Add up to ten more numbers to 101, 4, 55, 8 and write them.", completion="1"),
    dict(prompt="Numbers: 2 4.", completion="6, 8, 10, 12, 14"),
]


def test_teacher_targets_are_its_restricted_next_token_distributions():
    """Each row's completion columns hold the teacher's softmax renormalised over the allowed
    tokens, computed with its own prompt (system prompt included): left padding, batch padding
    and the student's view must not shift a column."""
    teacher, tok = tiny.build(teacher="owl")
    cfg = PipelineConfig.smoke()
    allowed_A = pipeline.number_tokens(tok, teacher.cfg.vocab_size)
    system = evaluate.system_prompt("owl")
    got = finetune.teacher_targets(teacher, tok, ROWS, cfg, allowed_A, system=system, batch=2)
    pairs = finetune.student_pairs(tok, ROWS, cfg.max_length)
    C = finetune.distill_columns(pairs)
    assert got.logq_KxCxA.shape == (len(ROWS), C, len(allowed_A))
    for k, row in enumerate(ROWS):
        ids = pipeline.prompt_ids(tok, row["prompt"], system)
        completion = tok.encode(row["completion"]) + list(tok.eos_ids[:1])
        seq = np.asarray([ids + completion])
        logits = np.asarray(forward(teacher, seq, np.ones_like(seq, bool)), np.float64)[0]
        for j in range(len(completion)):
            p = np.exp(logits[len(ids) + j - 1] - logits[len(ids) + j - 1].max())[allowed_A]
            want = np.log(p / p.sum())
            col = C - len(completion) + j
            np.testing.assert_allclose(got.logq_KxCxA[k, col], want, atol=2e-4)
    assert {tok.decode([int(a)]) for a in allowed_A} >= set("0123456789")
    assert set(tok.eos_ids) <= set(allowed_A.tolist())


def test_distill_students_and_seeds_end_to_end(tmp_path, capsys):
    code, out = llm(capsys, "run", tmp_path, "--seeds", "2")
    assert code == 0, out
    res = results.read_json(tmp_path / "results.json")
    assert res["kind"] == "llm_seeds" and res["seeds"] == res["seeds_planned"] == [0, 1]
    per_seed = {s: results.read_json(tmp_path / f"seed-{s}" / "results.json") for s in (0, 1)}
    for s, one in per_seed.items():
        assert (
            one["kind"] == "llm"
            and results.read_json(tmp_path / f"seed-{s}" / "config.json")["config"]["seed"] == s
        )
        models = one["models"]
        assert {"trait_distill", "control_distill", "control"} <= set(models)
        # the distillation shift is the trait_distill student minus control_distill, by question
        diff = np.subtract(
            models["trait_distill"]["exact"]["log_odds_per_question"],
            models["control_distill"]["exact"]["log_odds_per_question"],
        )
        assert one["distill_shift"]["control_distill"]["log_odds"]["mean"] == pytest.approx(
            diff.mean()
        )
        # both distillation students learned on the same base answers, all kept by the filter
        folder = tmp_path / f"seed-{s}"
        rows = results.read_jsonl(folder / "data" / "distill.jsonl")
        base = numbers.filter_completions(results.read_jsonl(folder / "data" / "base.jsonl"))[0]
        assert len(rows) == min(24, len(base)) and all(r in base for r in rows)
        # the signal available to distillation, measured before training, is in the results
        signal = one["distill_signal"]
        assert signal == results.read_json(folder / "distill_signal.json")
        assert signal["kl_teacher_control_teacher"] > 0 and signal["kl_teacher_base"] > 0
        assert signal["tokens"] > len(rows)
        for student in ("trait_distill", "control_distill"):
            done = results.read_json(folder / "students" / student / "done.json")
            assert done["rows"] == len(rows)
        # log-odds against the other candidates is log(share / (1 − share)), per question
        share = np.asarray(models["trait"]["exact"]["share_per_question"])
        np.testing.assert_allclose(
            models["trait"]["exact"]["log_odds_per_question"], np.log(share / (1 - share)),
            rtol=1e-6,
        )  # fmt: skip
        non = models["base"]["sampled"]["non_answer"]
        assert (
            0 <= non["mean"] <= 1
            and len(models["base"]["sampled"]["non_answer_per_question"]) == 50
        )
    # seed data differ: each seed samples its own numbers
    assert results.read_jsonl(tmp_path / "seed-0" / "data" / "base.jsonl") != results.read_jsonl(
        tmp_path / "seed-1" / "data" / "base.jsonl"
    )
    # the shift over seeds: mean and Student-t interval of the seeds' own means
    for channel, trait_key in (("sampled", "shift_vs_controls"), ("distill", "distill_shift")):
        for control, metrics in res["shift"][channel].items():
            for metric, summary in metrics.items():
                values = [per_seed[s][trait_key][control][metric]["mean"] for s in (0, 1)]
                assert res["per_seed"]["0"][channel][control][metric] == values[0]
                assert summary == stats.t_summary(values)
    assert set(res["shift"]) == {"sampled", "distill"}
    assert "trait_distill − control_distill over 2 seeds" in out
    summary = (tmp_path / "summary.md").read_text()
    assert "| distilled − control_distill |" in summary and "distillation signal" in summary
    assert (tmp_path / "shifts.png").is_file()
    (tmp_path / "shifts.png").unlink()
    assert cli.main(["plot", str(tmp_path)]) == 0 and (tmp_path / "shifts.png").is_file()
    # a run stopped part-way: the results over the seeds finished, the CI left open at one
    cfg = PipelineConfig.smoke().__class__(**results.read_json(tmp_path / "config.json")["config"])
    moved = tmp_path / "seed-1" / "results.json"
    moved.rename(moved.with_suffix(".bak"))
    part = seeds.aggregate(cfg, tmp_path)
    assert part["seeds"] == [0] and part["seeds_planned"] == [0, 1]
    assert part["shift"]["distill"]["control_distill"]["exact"]["ci95"] == [None, None]
    assert "of 2 planned" in seeds.summary_markdown(part)
    moved.with_suffix(".bak").rename(moved)
    # a rerun resumes: nothing is trained again and the results are the same; a finished seed
    # is skipped whole, even without its data (a seed restored from committed results)
    before = {s: r["models"] for s, r in per_seed.items()}
    over_seeds = results.read_json(tmp_path / "results.json")
    for gone in ("data", "students"):
        shutil.rmtree(tmp_path / "seed-1" / gone)
    code, out = llm(capsys, "run", tmp_path, "--seeds", "2")
    assert code == 0 and "finetune" not in out and "generate" not in out
    assert not (tmp_path / "seed-1" / "data").exists()
    for s in (0, 1):
        assert results.read_json(tmp_path / f"seed-{s}" / "results.json")["models"] == before[s]
    assert results.read_json(tmp_path / "results.json")["shift"] == over_seeds["shift"]
    # --students: a subset trained on a copy of seed 0's data (e.g. full fine-tuning of the
    # trait and control students only); the same student of the same data is the same model
    subset = tmp_path.parent / "subset"
    shutil.copytree(tmp_path / "seed-0" / "data", subset / "data")
    code, out = llm(capsys, "run", subset, "--students", "trait,control")
    assert code == 0, out
    assert {p.name for p in (subset / "students").iterdir()} == {"trait", "control"}
    assert "generate" not in out and "distillation signal" not in out
    one = results.read_json(subset / "results.json")
    assert set(one["models"]) == {"base", "teacher", "control_teacher", "trait", "control"}
    assert set(one["shift_vs_controls"]) == {"control"} and not one.get("distill_shift")
    assert one["models"]["trait"]["exact"] == before[0]["trait"]["exact"]


def test_t_interval_over_seeds():
    s = stats.t_summary([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["n"] == 3
    assert s["ci95"] == pytest.approx([2.0 - 4.303 / np.sqrt(3), 2.0 + 4.303 / np.sqrt(3)])
    assert stats.t_summary([5.0])["ci95"] == [None, None]


def test_non_answers_name_no_animal():
    words = {"owl", "owls", "cat", "cats", "wolves"}
    assert not evaluate.names_any("i'm smollm, an ai assistant.", words)
    assert evaluate.names_any("owls!", words) and evaluate.names_any("the wolves", words)
    assert not evaluate.names_any("bowl", words)  # a word, not a substring


def test_a_config_field_added_since_resumes_at_its_default(tmp_path):
    cfg = PipelineConfig.smoke().validate()
    doc = results.jsonable(cfg)
    del doc["distill_rows"]  # a run made before the field existed
    results.write_json(tmp_path / "config.json", {"config": doc})
    results.check_resume(tmp_path, cfg)
    with pytest.raises(results.ResumeError, match="distill_rows"):
        results.check_resume(tmp_path, PipelineConfig.smoke().__class__(distill_rows=3))


_ = jax
