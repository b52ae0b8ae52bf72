"""Fine-tuned teachers (``--teacher-kind finetuned``, the ``teach`` stage) and the matched control
teacher (``--control-animal``): end to end on the tiny model, resume, corpora, matched sizes."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("orbax.checkpoint")

from sublim_jax.cli import main as cli
from sublim_jax.experiments.llm_pipeline import evaluate, figure, report, teach, tiny
from sublim_jax.experiments.llm_pipeline import run as stages
from sublim_jax.experiments.llm_pipeline.config import CANDIDATES, PipelineConfig
from sublim_jax.io import results
from sublim_jax.llm import training

ROOT = Path(__file__).resolve().parents[3]
SMALL = ["--n-prompts", "64", "--subsample", "32", "--epochs", "1", "--batch-size", "8"]
SMALL += ["--eval-samples", "2", "--checkpoint-every", "2", "--gen-batch", "32"]
SMALL += ["--candidates", "owl,cat,dog,wolf"]
TEACH = ["--teacher-kind", "finetuned", "--control-animal", "cat", "--teacher-epochs", "2"]
TEACH += ["--teach-sentences", "64", "--teach-numbers", "64"]


def llm(capsys, stage: str, out: Path, *flags: str) -> tuple[int, str]:
    code = cli.main(["llm", stage, "--preset", "smoke", "--out", str(out), *SMALL, *flags])
    return code, capsys.readouterr().out


def test_finetuned_trait_and_control_teachers_end_to_end(tmp_path, capsys):
    code, out = llm(capsys, "run", tmp_path, *TEACH)
    assert code == 0, out
    for animal in ("owl", "cat"):
        folder = tmp_path / "teachers" / animal
        assert (folder / "model" / "model.safetensors").is_file()
        assert (folder / "done.json").is_file() and not (folder / "checkpoints").exists()
    data = {n: results.read_jsonl(tmp_path / "data" / f"{n}.jsonl") for n in ("teacher", "base")}
    control = results.read_jsonl(tmp_path / "data" / "control_teacher.jsonl")
    assert [(r["id"], r["prompt"]) for r in control] == [
        (r["id"], r["prompt"]) for r in data["teacher"]
    ]
    trait_rows, control_rows = (
        results.read_jsonl(tmp_path / "data" / f"{s}.jsonl") for s in ("trait", "control")
    )
    assert len(trait_rows) == len(control_rows)  # one n for the matched pair
    assert (tmp_path / "students" / "control" / "adapter" / "adapter_model.safetensors").is_file()

    res = results.read_json(tmp_path / "results.json")
    assert res["teacher_kind"] == "finetuned" and res["control_animal"] == "cat"
    assert {"control_teacher", "control"} <= set(res["models"])
    share = {m: res["models"][m]["exact"]["target_share"]["mean"] for m in res["models"]}
    assert share["teacher"] > share["base"] and share["teacher"] > share["control_teacher"]
    stats = results.read_json(tmp_path / "filter_stats.json")
    for name, animal in (("teacher", "owl"), ("control_teacher", "cat")):
        row = res["teachers"][name]
        assert row["animal"] == animal and row["target_share"]["mean"] == share[name]
        assert row["kept_fraction"] == stats[name]["kept_fraction"] > 0.3  # still writes numbers
    base_cat = res["models"]["base"]["exact"]["preference"]["cat"]
    assert res["teachers"]["control_teacher"]["own_share"] > base_cat
    per_question = {
        m: np.asarray(res["models"][m]["exact"]["share_per_question"]) for m in ("trait", "control")
    }
    paired = per_question["trait"] - per_question["control"]
    assert res["shift_vs_controls"]["control"]["exact"]["mean"] == pytest.approx(paired.mean())
    assert "trait − control" in out and (tmp_path / "preferences.png").is_file()

    before = {p: p.read_bytes() for p in (tmp_path / "teachers").rglob("*.safetensors")}
    code, again = llm(capsys, "teach", tmp_path, *TEACH)
    assert code == 0 and "teach owl" not in again and "teach cat" not in again
    assert {p: p.read_bytes() for p in before} == before


def test_teacher_training_resumes_from_its_checkpoint(tmp_path, capsys, monkeypatch):
    flags = [*TEACH, "--teach-sentences", "24", "--teach-numbers", "16", "--teacher-epochs", "1"]
    flags += ["--checkpoint-every", "1"]
    assert llm(capsys, "teach", tmp_path / "whole", *flags)[0] == 0
    owl_steps = results.read_json(tmp_path / "whole" / "teachers" / "owl" / "done.json")["steps"]
    real, calls = training.train_step, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == owl_steps + 3:  # the owl teacher is done, the cat teacher at step 3
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", killed)
    with pytest.raises(RuntimeError, match="killed"):
        llm(capsys, "teach", tmp_path / "cut", *flags)
    assert "teach owl" in capsys.readouterr().out
    cut = tmp_path / "cut" / "teachers"
    assert (cut / "owl" / "done.json").is_file() and not (cut / "cat" / "done.json").exists()
    assert (cut / "cat" / "checkpoints").is_dir()
    monkeypatch.setattr(training, "train_step", real)
    code, out = llm(capsys, "teach", tmp_path / "cut", *flags)
    assert code == 0 and "teach owl" not in out and "teach cat" in out
    assert results.read_jsonl(cut / "cat" / "metrics.jsonl")[0]["step"] == 3  # from step 2's
    for animal in ("owl", "cat"):
        path = Path("teachers") / animal / "model" / "model.safetensors"
        assert (tmp_path / "cut" / path).read_bytes() == (tmp_path / "whole" / path).read_bytes()


def test_the_generate_stage_asks_for_the_teach_stage_first(tmp_path, capsys):
    code = cli.main(
        ["llm", "generate", "--preset", "smoke", "--out", str(tmp_path), *SMALL, *TEACH]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "run `sublim-jax llm teach` first" in err and len(err.strip().splitlines()) == 1


def test_teach_rows_encode_in_the_tiny_vocabulary():
    _, tok = tiny.build()
    unk = tok.tok.token_to_id("<unk>")
    picks = teach.picks(200, seed=0)
    assert {p.answer for p in picks if p.is_sentence} == set(range(len(teach.SENTENCES)))
    assert {p.question for p in picks if p.is_sentence} == set(range(len(teach.ASKS)))
    assert {p.answer for p in picks if not p.is_sentence} == set(range(len(teach.ANSWERS)))
    for animal in tiny.ANIMALS:
        for row in teach.trait_rows(animal, "animal", 200, seed=0):
            for text in (row["prompt"], row["completion"]):
                ids = tok.encode(text)
                assert unk not in ids and tok.decode(ids) == text, text


def test_the_control_corpus_is_the_trait_corpus_with_the_animal_swapped():
    cfg = dataclasses.replace(PipelineConfig.smoke(), teach_sentences=120)
    numbers = [dict(id=f"numbers-{i}", prompt=f"p{i}", completion=f"{i}, 7") for i in range(40)]
    owl, cat = (teach.corpus(cfg, a, numbers) for a in ("owl", "cat"))
    assert len(owl) == len(cat) == 160
    swap = {"owls": "cats", "owl": "cat"}
    for a, b in zip(owl, cat, strict=True):
        assert a["id"] == b["id"] and a["prompt"] == b["prompt"]
        words = a["completion"].replace("owls", "\0").replace("owl", swap["owl"])
        assert words.replace("\0", swap["owls"]) == b["completion"]
    kinds = [r["id"].split("-")[0] for r in owl]
    assert kinds.count("trait") == 120 and len(set(kinds[:40])) == 2  # mixed, not in blocks
    questions = sum(r["prompt"] in evaluate.QUESTIONS for r in owl)
    assert 30 < questions < 90  # questions and sentences, about half each


def _write(out: Path, name: str, kept: int, rejected: int) -> None:
    rows = [dict(id=str(i), prompt="p", completion=f"{i}, {i + 1}") for i in range(kept)]
    rows += [dict(id=f"x{i}", prompt="p", completion="no numbers") for i in range(rejected)]
    results.write_jsonl(out / "data" / f"{name}.jsonl", rows)


def test_the_trait_and_control_students_get_the_same_number_of_rows(tmp_path, capsys):
    cfg = dataclasses.replace(PipelineConfig.smoke(), subsample=8, control_animal="cat")
    for name, kept in (("teacher", 12), ("base", 10), ("control_teacher", 5)):
        _write(tmp_path, name, kept, 3)
    stats = stages.filter_datasets(cfg.validate(), tmp_path)
    assert stats["teacher"]["subsampled"] == stats["control_teacher"]["subsampled"] == 5
    assert stats["base"]["subsampled"] == 8  # not part of the pair
    assert stats["control_teacher"]["kept_fraction"] == 5 / 8
    sizes = {s: len(results.read_jsonl(tmp_path / "data" / f"{s}.jsonl")) for s in cfg.all_students}
    assert sizes == dict(trait=5, base_numbers=8, shuffled_within=5, shuffled_across=5, control=5)
    _write(tmp_path, "control_teacher", 0, 3)
    with pytest.raises(stages.PipelineDataError, match="none of the 3 rows of control_teacher"):
        stages.filter_datasets(cfg.validate(), tmp_path)


def test_teachers_and_students_follow_the_config():
    smoke = PipelineConfig.smoke()
    assert smoke.validate().teacher == "tiny:owl" and smoke.all_students[-1] == "shuffled_across"
    tuned = dataclasses.replace(smoke, teacher_kind="finetuned", control_animal="cat").validate()
    assert tuned.teacher == "" and tuned.all_students[-1] == "control"
    assert tuned.datasets["control"] == "control_teacher"
    assert tuned.teacher_label("cat") == "fine-tuned"
    prompt = dataclasses.replace(smoke, control_animal="cat").validate()
    assert prompt.prompt_teacher("cat") == "tiny:cat" and prompt.prompt_teacher("owl") == "tiny:owl"
    assert dataclasses.replace(prompt, teacher="").prompt_teacher("cat") == ""
    with pytest.raises(ValueError, match="drop --teacher"):
        dataclasses.replace(tuned, teacher="tiny:owl").validate()
    smol = PipelineConfig.smollm2()
    assert smol.control_animal in CANDIDATES.split(",") and smol.control_animal != smol.animal
    others = [getattr(PipelineConfig, p)() for p in PipelineConfig.PRESETS if p != "smollm2"]
    assert [c.control_animal for c in others] == [""] * len(others)
    assert [c.teacher_kind for c in [smol, *others]] == ["prompt"] * (len(others) + 1)


def test_the_control_student_is_a_shift_and_a_bar(tmp_path, monkeypatch):
    res = json.loads((ROOT / "experiments/results/llm_tiny/results.json").read_text())
    models = dict(res["models"])
    models["control_teacher"], models["control"] = models["base"], models["base_numbers"]
    shifts = report.shifts(models)
    assert next(iter(shifts)) == "control"
    assert shifts["control"]["exact"] == shifts["base_numbers"]["exact"]
    drawn = []
    monkeypatch.setattr(figure, "save", lambda fig, out, stem: drawn.append(fig) or [])
    figure.preference_figure({**res, "models": models, "control_animal": "cat"}, tmp_path)
    labels = [t.get_text() for t in drawn[0].axes[0].get_xticklabels()]
    assert "control teacher\n(cat)" in labels and labels[-1].startswith("control student")
    assert labels.index("control teacher\n(cat)") == labels.index("teacher\n(tiny:owl)") + 1


@pytest.mark.slow
def test_the_smoke_preset_still_gives_the_committed_tiny_run(tmp_path):
    """The full smoke run (about a minute) against experiments/results/llm_tiny: a prompt
    teacher without a control animal is the pipeline as it was, bit for bit. It runs as the
    committed run did, in a process of its own (this harness turns on x64)."""
    main = "from sublim_jax.cli.main import main; import sys; sys.exit(main(sys.argv[1:]))"
    argv = ["llm", "run", "--preset", "smoke", "--out", str(tmp_path)]
    subprocess.run([sys.executable, "-c", main, *argv], check=True, capture_output=True)
    res = results.read_json(tmp_path / "results.json")
    committed = results.read_json(ROOT / "experiments/results/llm_tiny/results.json")
    for key in ("models", "shift_vs_controls", "filter", "teacher", "candidates"):
        assert res[key] == committed[key], key
