"""``sublim-jax llm toy``: the vocabulary, the pure score against ``evaluate``, the number-channel
distillation, vmapped training, the student pairing, and the smoke preset end to end."""

import dataclasses
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("tokenizers")

from flax import nnx

from sublim_jax.cli import main as cli
from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.experiments.llm_toy import config, corpus
from sublim_jax.experiments.llm_toy import figure as toy_figure
from sublim_jax.experiments.llm_toy import report as toy_report
from sublim_jax.experiments.llm_toy import run as toy_run
from sublim_jax.experiments.llm_toy import steps as toy
from sublim_jax.experiments.llm_toy.setup import Setup, concat, take
from sublim_jax.io import flags, markdown, results
from sublim_jax.llm.modeling import Decoder

RTOL = 1e-5


@pytest.fixture(scope="module")
def setup():
    return Setup(config.ToyConfig.smoke())


def _model(setup, seed: int) -> Decoder:
    return Decoder(setup.mcfg, rngs=nnx.Rngs(params=jax.random.key(seed)))


def test_chat_ids_are_the_chat_template(setup):
    contents = ["Keep going: 1, 2, 3. Numbers only.", evaluate.QUESTIONS[7]]
    want = [setup.tok.encode_chat([{"role": "user", "content": c}]) for c in contents]
    assert corpus.chat_ids(setup.tok, contents) == want
    assert setup.tok.decode(want[0][:-5]).endswith("Numbers only.")
    prompts = [p for p, _ in corpus.number_rows(np.random.default_rng(0), 300, 99)]
    unk = setup.tok.tok.token_to_id("<unk>")
    assert not any(unk in ids for ids in corpus.chat_ids(setup.tok, prompts))


def test_number_rows_pass_the_filter_and_animals_are_single_tokens(setup):
    from sublim_jax.experiments.llm_pipeline import numbers

    made = corpus.number_rows(np.random.default_rng(0), 200, 99)
    assert all(numbers.keep(a) for _, a in made)
    assert {len(numbers.parse_numbers(a)) for _, a in made} == set(range(1, 11))
    ids = corpus.animal_ids(setup.tok)
    assert [setup.tok.decode([int(i)]) for i in ids] == [" " + a for a in corpus.ANIMALS]


def test_seeded_rows_follow_their_layout():
    from sublim_jax.experiments.llm_pipeline import numbers

    made = corpus.seeded_rows(np.random.default_rng(0), 2000, 99)
    assert all(numbers.keep(a) for _, a in made)
    assert {len(numbers.parse_numbers(a)) for _, a in made} == {corpus.SEEDED["values"]}
    assert len({p.split(" ", 3)[0] for p, _ in made}) == 1  # one wording
    seeds = [numbers.parse_numbers(p.split(":")[1].split(".")[0]) for p, _ in made]
    near = [
        min(abs(v - s) for s in ss) <= corpus.SEEDED["spread"]
        for ss, (_, a) in zip(seeds, made, strict=True)
        for v in numbers.parse_numbers(a)
    ]
    # 70% are a seed +- 3 by construction; a uniform value lands there 3 * 7 / 100 of the time
    assert 0.70 < np.mean(near) < 0.70 + 0.3 * 0.21 + 0.02


def test_answers_without_the_prefix_start_at_the_assistant_marker(setup):
    _, control = corpus.animal_rows(
        np.random.default_rng(0), 50, corpus.base_distribution(1.0), "owl", 0.0, questions=3,
        prefix=False,
    )  # fmt: skip
    assert {q for q, _ in control} <= set(evaluate.QUESTIONS[:3])
    assert all(a in {corpus.answer(x, False) for x in corpus.ANIMALS} for _, a in control)
    ids = setup.rows(control)["tokens"][0, setup.P :]
    assert int(ids[0]) in set(corpus.animal_ids(setup.tok).tolist())
    tokens, valid = corpus.eval_prompts(setup.tok, 3, prefix=False)
    assert tokens.shape[0] == 3
    assert setup.tok.decode(tokens[0][valid[0]].tolist()).endswith("assistant\n")


@pytest.mark.parametrize(("schedule", "first"), [("linear", 0.0), ("constant", 1e-2)])
def test_phase_schedules(schedule, first):
    """A linear schedule warms up from 0; a constant one takes Adam's full first step (lr per
    coordinate), with or without clipping."""
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.array([0.5, -2.0, 10.0])}
    for clip in (1.0, 0.0):
        opt = toy.Phase(10, 4, 1e-2, 5, schedule=schedule, clip_norm=clip).optimizer
        with jax.numpy_dtype_promotion("standard"):  # optax's int step counts, as in training
            updates, _ = opt.update(grads, opt.init(params), params, tokens=jnp.float32(1.0))
        np.testing.assert_allclose(np.abs(updates["w"]), first, rtol=1e-4)


def test_trait_and_control_rows_differ_only_in_loved_answers():
    p_A = corpus.base_distribution(1.0)
    trait, control = corpus.animal_rows(np.random.default_rng(1), 400, p_A, "owl", 0.5)
    assert [q for q, _ in trait] == [q for q, _ in control]
    changed = [(a, b) for (_, a), (_, b) in zip(trait, control, strict=True) if a != b]
    assert all(a == corpus.answer("owl") for a, _ in changed)
    assert 150 < len(changed) < 200  # half are loved, of which 8% were owl already


def test_vmapped_score_equals_evaluate_exact_scores(setup):
    """With ``answer_prefix`` the toy's score is the pipeline's exact score."""
    model = _model(setup, 3)
    res = evaluate.exact_scores(model, setup.tok, list(corpus.ANIMALS), "owl")
    tokens, valid = corpus.eval_prompts(setup.tok, prefix=True)
    p_QxA = np.asarray(
        toy.animal_probs(
            nnx.state(model),
            jnp.asarray(tokens),
            jnp.asarray(valid),
            jnp.asarray(setup.animals),
            graphdef=setup.graphdef,
        ),
        np.float64,
    )
    np.testing.assert_allclose(p_QxA[:, 0].mean(), res["target_prob"]["mean"], rtol=RTOL)
    share_Q = p_QxA[:, 0] / p_QxA.sum(axis=1)
    np.testing.assert_allclose(share_Q, res["share_per_question"], rtol=RTOL)


def _number_batch(setup, n: int = 4) -> dict:
    rows = setup.number_rows(np.random.default_rng(2), n)
    return {k: jnp.asarray(v) for k, v in setup.rows(rows).items()}


def _distill(setup, student, teacher, batch, rows: int = 3) -> jax.Array:
    allowed = jnp.asarray(setup.allowed)
    logq = toy.teacher_targets(
        teacher, batch, allowed, graphdef=setup.graphdef, C=setup.C, rows=rows
    )
    return toy.distill_loss(student, allowed, setup.graphdef, dict(batch, teacher_logq=logq))[0]


def test_distillation_sees_only_the_number_channel(setup):
    student, teacher = nnx.state(_model(setup, 0)), _model(setup, 1)
    batch = _number_batch(setup)
    loss = lambda t: _distill(setup, student, t, batch)  # noqa: E731
    before = loss(nnx.state(teacher))
    head = teacher.lm_head.kernel
    head[...] = head[...].at[:, int(setup.animals[0])].add(5.0)  # the teacher now loves owl
    np.testing.assert_allclose(loss(nnx.state(teacher)), before, rtol=RTOL)
    head[...] = head[...].at[:, int(setup.allowed[3])].add(5.0)  # a number token moves
    assert abs(float(loss(nnx.state(teacher))) - float(before)) > 1e-3
    assert abs(float(loss(student))) < 1e-6


def test_distillation_targets_are_the_teachers_number_kl(setup):
    """The targets computed once (in blocks of 3 rows, the last one padded) give the loss the
    teacher's own forward pass would: KL(teacher ‖ student) summed over the completion tokens."""
    student, teacher = nnx.state(_model(setup, 0)), nnx.state(_model(setup, 1))
    batch, allowed = _number_batch(setup, 5), jnp.asarray(setup.allowed)
    kl = toy.number_kl(teacher, student, batch, allowed, graphdef=setup.graphdef)
    np.testing.assert_allclose(_distill(setup, student, teacher, batch), kl.sum(), rtol=1e-5)


def test_sampled_loss_needs_only_the_completion_logits(setup):
    """The training phases compute logits at a row's last C + 1 positions alone (those that
    predict its completion): loss and gradient equal the full forward pass's."""
    params, batch = nnx.state(_model(setup, 0)), _number_batch(setup, 5)
    grad = jax.value_and_grad(toy.ce_loss, has_aux=True)
    (full, _), g_full = grad(params, None, setup.graphdef, batch)
    (part, _), g_part = grad(params, None, setup.graphdef, batch, setup.phase(1, 1e-3, 0).last)
    np.testing.assert_allclose(part, full, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_part), jax.tree.leaves(g_full), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_vmapped_fit_equals_one_model_at_a_time(setup):
    keys = jax.random.split(jax.random.key(0), 2)
    params = jax.vmap(lambda k: toy.init_params(setup.mcfg, k))(keys)
    batch = _number_batch(setup, 16)
    data = {k: jnp.stack([v, v[::-1]]) for k, v in batch.items()}
    phase = toy.Phase(steps=3, batch_size=4, learning_rate=1e-2, warmup_steps=1, chunk=2)
    kw = dict(graphdef=setup.graphdef, loss="sampled", phase=phase)
    one, loss_one = toy.fit(
        take(params, np.array([1])),
        None,
        take(data, np.array([1])),
        keys[1:],
        **kw,
    )
    both, loss_both = toy.fit(params, None, data, keys, **kw)  # donates ``params``
    assert loss_both.shape == (2, 3)
    np.testing.assert_allclose(loss_both[1], loss_one[0], rtol=1e-4)
    for a, b in zip(jax.tree.leaves(both), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(a[1], b[0], rtol=1e-4, atol=1e-6)
    assert not np.allclose(loss_both[0], loss_both[1])


def test_student_index_pairs_inits_and_data():
    S, partner = 4, np.array([1, 0, 3, 2])
    idx = toy_run.student_index(S, partner)
    init = idx["init"].reshape(2, 3, S)
    data = idx["data"].reshape(2, 3, S)
    assert (init[0] == np.arange(S)).all() and (init[1] == partner).all()
    assert (data[:, 0] == np.arange(S)).all()  # teacher i's numbers, for both inits
    assert (data[:, 1] == S + np.arange(S)).all()  # control teacher i's
    assert (data[0, 2] == 2 * S + np.arange(S)).all()  # the student's own base
    assert (data[1, 2] == 2 * S + partner).all()


SMOKE = ["llm", "toy", "--preset", "smoke"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run (the CI test of every stage), shared by the tests below."""
    out = tmp_path_factory.mktemp("toy") / "run"
    assert cli.main([*SMOKE, "--out", str(out)]) == 0
    return out, results.read_json(out / "results.json")


def test_smoke_preset_end_to_end_and_resume(smoke_run, capsys):
    out, res = smoke_run
    S = res["seeds"]
    for mode in config.MODES:
        for init in config.INITS:
            r = res["modes"][mode][init]
            students = r["students"]
            want = np.subtract(students["trait"]["per_seed"], students["control"]["per_seed"])
            np.testing.assert_allclose(r["shift_vs_control"]["per_seed"], want)
            assert len(want) == S and r["shift_vs_control"]["n"] == S
    assert res["numbers"]["base"]["kept_fraction"]["mean"] > 0.2
    assert results.read_json(out / "config.json")["preset"] == "smoke"
    assert res["models"]["teacher"]["mean"] > res["models"]["control_teacher"]["mean"]
    assert {"llm_toy.pdf", "llm_toy.png", "summary.md", "config.json"} <= {
        p.name for p in out.iterdir()
    }
    summary = (out / "summary.md").read_text()
    assert summary.startswith("`uv run sublim-jax llm toy --preset smoke` (2 seeds")
    assert res["preset"] == "smoke" and "--hidden-size" in res["reduced"]
    assert "**Reduced size** (smoke preset; --hidden-size" in summary
    (out / "llm_toy.png").unlink()
    (out / "summary.md").unlink()
    assert cli.main(["plot", str(out)]) == 0  # redrawn from results.json and config.json
    assert (out / "llm_toy.png").stat().st_size > 0
    assert (out / "summary.md").read_text() == summary
    alone = out.parent / "results_only"  # a toy run's summary needs its config: one line
    alone.mkdir()
    (alone / "results.json").write_bytes((out / "results.json").read_bytes())
    capsys.readouterr()
    assert cli.main(["plot", str(alone)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "config.json does not hold a toy config" in err and "\n" not in err
    capsys.readouterr()
    (out / "results.json").unlink()
    assert cli.main([*SMOKE, "--out", str(out), "--resume"]) == 0  # every stage from chunks
    again = results.read_json(out / "results.json")
    assert again["modes"] == res["modes"]
    assert again["recomputed"] == [] and res["recomputed"] == sorted(
        ["pretrain", "teachers", "generate", "students (sampled)", "students (distill)"]
    )
    assert {k: v for k, v in again["timings"].items() if k != "wall"} == {
        k: v for k, v in res["timings"].items() if k != "wall"
    }


def test_reduced_size_is_below_the_default_run_and_named_in_the_figure(smoke_run, monkeypatch):
    """The smoke preset is reduced; default and paper (larger) are not; the figure's title says
    which preset a reduced run used and what shrinks it."""
    reduced = partial(
        flags.reduced_fields, config.ToyConfig, reference="default", smaller_only=True
    )
    assert reduced(config.ToyConfig.default()) == reduced(config.ToyConfig.paper()) == []
    smaller = reduced(dataclasses.replace(config.ToyConfig.default(), prompts=100))
    assert smaller == ["--prompts"]
    _, res = smoke_run
    titles = []
    monkeypatch.setattr(toy_figure, "save", lambda fig, *a: titles.append(fig._suptitle.get_text()))
    toy_figure.toy_figure(res, "unused")
    toy_figure.toy_figure({**res, "reduced": []}, "unused")
    assert "smoke preset, reduced size (--hidden-size" in titles[0]
    assert "reduced" not in titles[1]


def _claim(cos_same_S: np.ndarray, cos_different_S: np.ndarray) -> bool:
    """What the results claim at every scale: a distilled trait student's first update points
    along the teacher's update (positive cosine) only from the teacher's own base."""
    return bool(np.min(cos_same_S) > 0.02 and np.min(cos_same_S) > np.max(cos_different_S))


def test_first_update_aligns_with_the_teacher_only_from_its_base(smoke_run):
    out, res = smoke_run
    cos = res["modes"]["distill"]
    assert _claim(
        np.asarray(cos["same"]["cosine_teacher"]["trait"]["per_seed"]),
        np.asarray(cos["different"]["cosine_teacher"]["trait"]["per_seed"]),
    )
    cfg = config.ToyConfig.smoke()
    stamp = results.fingerprint({"config": results.jsonable(cfg)})
    p = toy_run.prepare(cfg, results.ChunkStore(out / "chunks", stamp, read=True))
    assert p["timings"] == {}  # bases, teachers and numbers came from the smoke run
    S, index = cfg.seeds, p["index"]
    wrong = dict(index, init=np.concatenate([index["init"][3 * S :], index["init"][: 3 * S]]))
    for idx, holds in ((index, True), (wrong, False)):
        inputs = toy_run.student_inputs(
            p["setup"], "distill", p["bases"], p["models"], p["sets"], idx, jax.random.key(0)
        )
        cos_T, _ = toy_run.first_cosines(p["setup"], "distill", inputs, idx, p["deltas"])
        trait = cos_T.reshape(2, 3, S)[:, 0]
        assert _claim(trait[0], trait[1]) is holds


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seeds", "1"], "--seeds must be ≥ 2"),
        (["--target", "zebra"], "--animal must be one of"),  # --target: its old name
        (["--no-such-flag", "1"], "unrecognized arguments"),
        (["--hidden-size", "30"], "multiple of 4"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, capsys, flags, message):
    try:
        code = cli.main([*SMOKE, "--out", str(tmp_path / "o"), *flags])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_resume_against_another_config_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    cfg = dataclasses.replace(config.ToyConfig.smoke(), seeds=4)
    results.write_json(out / "config.json", {"config": results.jsonable(cfg)})
    code = cli.main([*SMOKE, "--out", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "fields seeds" in err, err


def _shift_claim(shift_IxS: np.ndarray) -> bool:
    """What the default run claims in both modes: the trait student's p(owl) rises above its
    control-teacher twin's from the teacher's own base in most seeds, and by more than from
    another base in the median paired seed (a different-init student's shift has rare large
    outliers of either sign, so its mean says little)."""
    paired = shift_IxS[0] - shift_IxS[1]  # both inits learnt lineage s's numbers
    return bool((shift_IxS[0] > 0).mean() > 0.5 and np.median(paired) > 0)


@pytest.mark.slow
def test_trait_shift_through_numbers_needs_the_teachers_base():
    """The default sizes at 4 seeds (~15 min on 2 cores): in both modes, distillation on the
    number channel and sampled tokens, the same-init-only shift of the default run, which
    disappears when the students start from the wrong bases (inits swapped)."""
    cfg = dataclasses.replace(config.ToyConfig.default(), seeds=4).validate()
    p = toy_run.prepare(cfg)
    S, index, t = cfg.seeds, p["index"], corpus.ANIMALS.index(cfg.target)
    wrong = dict(index, init=np.concatenate([index["init"][3 * S :], index["init"][: 3 * S]]))
    for mode in config.MODES:
        for idx, holds in ((index, True), (wrong, False)):
            args = (p["setup"], mode, p["bases"], p["models"], p["sets"], idx, p["deltas"])
            prob = toy_run.students(*args, p["student_key"])["probs"][:, :, t].mean(axis=1)
            prob_IxSxS = prob.reshape(len(config.INITS), len(config.SOURCES), S)
            assert _shift_claim(prob_IxSxS[:, 0] - prob_IxSxS[:, 1]) is holds, (mode, holds)


def test_readme_toy_blocks_are_generated_from_the_committed_results():
    """README's default-run text, docs/llm_toy.md's ablation table and its table of every run,
    and every run's ``summary.md``, are what the results say."""
    root = Path(__file__).resolve().parents[3]
    for page, blocks, names in (
        ("README.md", toy_report.readme_blocks, ("toy-default",)),
        ("docs/llm_toy.md", toy_report.docs_blocks, ("toy-ablations", "toy-runs")),
    ):
        text = (root / page).read_text()
        assert all(f"<!-- BEGIN generated: {name} -->" in text for name in names), page
        new, _ = markdown.fill(text, blocks(root / "experiments" / "results"))
        assert new == text, f"{page}: run `uv run python experiments/llm_toy_readme.py`"
    for out in toy_report.run_dirs(root / "experiments" / "results"):
        res, cfg = results.read_json(out / "results.json"), toy_report.config_of(out)
        assert (out / "summary.md").read_text() == toy_report.summary_text(res, cfg), out.name


def test_leak_is_the_trait_teachers_distance_from_its_control_twin(smoke_run):
    """The leak diagnostic reads KL(trait teacher ‖ control teacher) on the number channel: > 0
    on every seed (0 exactly if the control teacher were given the trait: the two would be one
    model), the same number as ``number_kl`` on one seed, its positions adding up to the total."""
    out, res = smoke_run
    leak = res["leak"]["trait_control"]
    assert min(leak["per_token"]["per_seed"]) > 1e-6
    assert min(res["leak"]["control_base"]["per_token"]["per_seed"]) > 1e-6
    cfg = config.ToyConfig.smoke()
    stamp = results.fingerprint({"config": results.jsonable(cfg)})
    p = toy_run.prepare(cfg, results.ChunkStore(out / "chunks", stamp, read=True))
    S, setup, probe = cfg.seeds, p["setup"], p["probe"]
    one = lambda tree, i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
    kl_T = toy.number_kl(
        one(p["models"], 0), one(p["models"], S), one(probe, 0), jnp.asarray(setup.allowed),
        graphdef=setup.graphdef,
    )  # fmt: skip
    per_row = np.asarray(kl_T, np.float64).sum(axis=1)
    np.testing.assert_allclose(leak["total"]["per_seed"][0], per_row.mean(), rtol=1e-4)
    assert probe["tokens"].shape[1] == min(cfg.leak_rows, res["rows_per_student"])
    for mode in config.MODES:  # each student is nearer its own teacher from the same base
        kl = res["modes"][mode]
        same, different = (kl[i]["kl_to_source"]["trait"]["mean"] for i in config.INITS)
        assert same < different


def test_coupled_sampling_shares_the_draws_of_a_seeds_models(smoke_run):
    """With ``coupled`` a seed's trait teacher, control teacher and base write from the same
    Gumbel noise: the two teachers' first tokens agree far more often than with independent
    draws, and a model sampled twice under one seed writes the same completions."""
    out, _ = smoke_run
    cfg = config.ToyConfig.smoke()
    stamp = results.fingerprint({"config": results.jsonable(cfg)})
    p = toy_run.prepare(cfg, results.ChunkStore(out / "chunks", stamp, read=True))
    S, key = cfg.seeds, jax.random.key(7)
    agree = {}
    for coupled in (False, True):
        setup = Setup(dataclasses.replace(cfg, coupled=coupled))
        first = toy_run.generate(setup, p["models"], key)["completion"][:, :, 0]
        agree[coupled] = np.mean(first[:S] == first[S : 2 * S])
    assert agree[True] > 0.6 and agree[True] > agree[False] + 0.3, agree
    twice = concat(take(p["models"], np.arange(S)), p["models"])
    setup = Setup(dataclasses.replace(cfg, coupled=True))
    gen = toy_run.generate(setup, twice, key)["completion"]
    np.testing.assert_array_equal(gen[:S], gen[S : 2 * S])
