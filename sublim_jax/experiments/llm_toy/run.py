"""``sublim-jax llm toy``: bases, teachers, number data, students and scores, seeds vmapped.

Seed ``i`` pre-trains base ``i``; its trait teacher and its control teacher are base ``i``
fine-tuned with one recipe (same steps, batches, number rows and questions; only the answers
differ: the target, or draws from the base distribution). Base ``i``, teacher ``i`` and control
``i`` each write continuations of fresh prompts at T = 1; the paper's filter keeps the clean ones
and every set is cut to the same size. Students: base ``i`` (same init) or base ``σ(i)`` (a
derangement: different init), each trained on teacher ``i``'s, control ``i``'s and its own base's
numbers, by sampled-token cross-entropy or by distillation on the number channel. Every stage is
one vmapped program over all its models; ``--resume`` reuses finished stages from ``--out``.
"""

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sublim_jax.core import stats
from sublim_jax.experiments.llm_pipeline import numbers
from sublim_jax.experiments.llm_toy import corpus
from sublim_jax.experiments.llm_toy import steps as toy
from sublim_jax.experiments.llm_toy.config import LEAK_PAIRS, MODES, SOURCES, ToyConfig
from sublim_jax.experiments.llm_toy.setup import Setup, concat, stack, take
from sublim_jax.io import results
from sublim_jax.io.progress import bar as _bar
from sublim_jax.llm.sampling import left_pad


class Stages:
    """Finished stages in a ``results.ChunkStore``: parameter pytrees and plain arrays."""

    def __init__(self, store: results.ChunkStore | None, skeleton: Any):
        self.store, self.treedef = store, jax.tree.structure(skeleton)

    def params(self, name: str, make: Callable[[], Any]) -> Any:
        saved = self.store.load(name) if self.store else None
        if saved is not None:
            leaves = [jnp.asarray(saved[f"p{i}"]) for i in range(self.treedef.num_leaves)]
            return jax.tree.unflatten(self.treedef, leaves)
        tree = make()
        if self.store:
            leaves = jax.tree.leaves(tree)
            self.store.save(name, {f"p{i}": np.asarray(x) for i, x in enumerate(leaves)})
        return tree

    def arrays(self, name: str, make: Callable[[], dict]) -> dict[str, np.ndarray]:
        saved = self.store.load(name) if self.store else None
        if saved is not None:
            return saved
        arrays = {k: np.asarray(v) for k, v in make().items()}
        if self.store:
            self.store.save(name, arrays)
        return arrays


def pretrain(setup: Setup, key: jax.Array, tick=None) -> Any:
    """``S`` bases from independent inits and corpora, trained together (vmapped)."""
    cfg = setup.cfg
    keys_S = jax.random.split(key, cfg.seeds)
    params_S = jax.jit(jax.vmap(lambda k: toy.init_params(setup.mcfg, k)))(keys_S)
    data = []
    for s in range(cfg.seeds):
        rng = np.random.default_rng([cfg.seed, s, 1])
        numbers_ = setup.number_rows(rng, cfg.pretrain_numbers)
        animals, _ = setup.animal_rows(rng, cfg.pretrain_animals, 0.0)
        data.append(setup.rows(numbers_ + animals))
    phase = setup.phase(cfg.pretrain_steps, cfg.pretrain_lr, 20)
    data_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys_S, 1)
    params_S, _ = toy.fit(
        params_S, None, stack(data), data_keys, graphdef=setup.graphdef, loss="sampled",
        phase=phase, tick=tick,
    )  # fmt: skip
    return params_S


def teachers(setup: Setup, bases_S: Any, key: jax.Array, tick=None) -> Any:
    """``2S`` models: trait teachers then control teachers, one recipe, one batch order."""
    cfg = setup.cfg
    trait, control = [], []
    for s in range(cfg.seeds):
        rng = np.random.default_rng([cfg.seed, s, 2])
        rows = setup.number_rows(rng, cfg.teacher_numbers)
        t, c = setup.animal_rows(rng, cfg.teacher_animals, cfg.teacher_love)
        trait.append(setup.rows(rows + t))
        control.append(setup.rows(rows + c))
    keys = jax.random.split(key, cfg.seeds)
    phase = setup.phase(cfg.teacher_steps, cfg.teacher_lr, 5)
    params, _ = toy.fit(
        concat(bases_S, bases_S), None, stack(trait + control), concat(keys, keys),
        graphdef=setup.graphdef, loss="sampled", phase=phase, tick=tick,
    )  # fmt: skip
    return params


def generate(setup: Setup, models_M: Any, key: jax.Array, tick=None) -> dict[str, np.ndarray]:
    """Each of the ``M`` models (teachers, controls, bases: ``3S``) answers its seed's fresh
    prompts at T = 1; returns prompt and completion slots for every row. ``cfg.coupled``: a
    seed's three models share one key per call, so ``jax.random.categorical`` adds the same
    Gumbel noise to their logits (Gumbel-max coupling): two models write the same token wherever
    their distributions agree, and their samples differ where the models do."""
    cfg = setup.cfg
    M = jax.tree.leaves(models_M)[0].shape[0]
    prompts = []
    for s in range(cfg.seeds):
        rng = np.random.default_rng([cfg.seed, s, 3])
        rows = setup.number_rows(rng, cfg.prompts)
        prompts.append(left_pad(corpus.chat_ids(setup.tok, [p for p, _ in rows]), 0, setup.P))
    p_tok = np.stack([prompts[m % cfg.seeds][0] for m in range(M)])
    p_val = np.stack([prompts[m % cfg.seeds][1] for m in range(M)])
    run = toy.vmapped_sample(setup.graphdef, setup.C, setup.end)
    out = []
    for i, start in enumerate(range(0, cfg.prompts, cfg.gen_batch)):
        sl = slice(start, start + cfg.gen_batch)
        keys = jax.random.split(jax.random.fold_in(key, i), cfg.seeds if cfg.coupled else M)
        keys_M = keys[np.arange(M) % cfg.seeds] if cfg.coupled else keys
        out.append(np.asarray(run(models_M, p_tok[:, sl], p_val[:, sl], keys_M)))
        if tick:
            tick(1)
    return dict(prompt_tokens=p_tok, prompt_valid=p_val, completion=np.concatenate(out, axis=1))


def completion_texts(setup: Setup, completion_MxNxC: np.ndarray) -> tuple[list[list[str]], Any]:
    """Decoded completions (end token and padding dropped) and whether each row ended."""
    ended = (completion_MxNxC == setup.end).any(axis=2)
    flat = completion_MxNxC.reshape(-1, setup.C).tolist()
    texts = setup.tok.tok.decode_batch(flat, skip_special_tokens=True)
    N = completion_MxNxC.shape[1]
    return [texts[m * N : (m + 1) * N] for m in range(completion_MxNxC.shape[0])], ended


def filter_sets(setup: Setup, gen: dict[str, np.ndarray]) -> tuple[list[np.ndarray], dict]:
    """Per model: the rows the paper's filter keeps (unfinished rows rejected) and the number
    statistics (kept fraction, values per answer, mean value, value histogram)."""
    texts, ended = completion_texts(setup, gen["completion"])
    kept, st = [], dict(kept_fraction=[], count=[], value=[], histogram=[])
    for m, texts_m in enumerate(texts):
        verdicts = [numbers.check(t) for t in texts_m]
        idx = np.asarray([j for j, v in enumerate(verdicts) if v.kept and ended[m, j]], np.int64)
        values = [x for j in idx for x in verdicts[j].numbers]
        kept.append(idx)
        st["kept_fraction"].append(len(idx) / len(texts_m))
        st["count"].append(len(values) / max(len(idx), 1))
        st["value"].append(float(np.mean(values)) if values else float("nan"))
        st["histogram"].append(np.bincount(values, minlength=1000))  # the filter caps at 999
    return kept, st


def training_sets(setup: Setup, gen: dict, kept: list[np.ndarray]) -> tuple[dict, int]:
    """Every model's kept rows cut to one size ``K`` (seeded), as ``MxKxT`` training arrays."""
    cfg = setup.cfg
    K = min(len(k) for k in kept)
    K = min(K, cfg.rows) if cfg.rows else K
    if cfg.batch_size > K:
        raise ValueError(
            f"the filter kept only {K} rows of some model (< --batch-size {cfg.batch_size}): "
            "train the bases longer or ask for more --prompts"
        )
    sets = []
    for m, idx in enumerate(kept):
        pick = np.sort(np.random.default_rng([cfg.seed, m, 4]).choice(idx, K, replace=False))
        comp = gen["completion"][m, pick]
        ends = np.argmax(comp == setup.end, axis=1)
        c_valid = np.arange(setup.C)[None, :] <= ends[:, None]
        sets.append(
            corpus.join(gen["prompt_tokens"][m, pick], gen["prompt_valid"][m, pick], comp, c_valid)
        )
    return stack(sets), K


def student_index(S: int, partner: np.ndarray) -> dict[str, np.ndarray]:
    """Rows ``(init, source, seed)`` of the ``6S`` students: the base each starts from and the
    generated set (teachers ``0..S-1``, controls ``S..2S-1``, bases ``2S..3S-1``) it learns."""
    seed = np.arange(S)
    init, data, lineage = [], [], []
    for start in (seed, partner):  # same init, then different init (a derangement)
        for src, offset in zip(SOURCES, (0, S, 2 * S), strict=True):
            init.append(start)
            data.append(offset + (start if src == "own_base" else seed))
            lineage.append(seed)
    return dict(init=np.concatenate(init), data=np.concatenate(data), seed=np.concatenate(lineage))


def number_kls(setup: Setup, p_M: Any, q_M: Any, probe_M: dict, rows: int = 128) -> dict:
    """KL(p ‖ q) of each pair's number-channel distributions on its probe rows (teacher-forced):
    ``total`` nats per completion (summed over its tokens, mean over rows), ``per_token``, and
    ``by_position`` (``MxC``: the mean at each completion slot over rows still writing there)."""
    run, allowed = toy.vmapped_number_kl(setup.graphdef), jnp.asarray(setup.allowed)
    R, P, C = probe_M["tokens"].shape[1], setup.P, setup.C
    parts = []
    for i in range(0, R, rows):
        batch = {k: v[:, i : i + rows] for k, v in probe_M.items()}
        kl_MxRxT = np.asarray(run(p_M, q_M, batch, allowed), np.float64)
        parts.append(kl_MxRxT[:, :, P - 1 : P - 1 + C])
    kl_MxRxC = np.concatenate(parts, axis=1)
    mask_MxRxC = np.asarray(probe_M["target"])[:, :, P : P + C]
    count_MxC = mask_MxRxC.sum(axis=1)
    return dict(
        total=kl_MxRxC.sum(axis=2).mean(axis=1),
        per_token=kl_MxRxC.sum(axis=(1, 2)) / count_MxC.sum(axis=1),
        by_position=np.where(count_MxC > 0, kl_MxRxC.sum(axis=1) / np.maximum(count_MxC, 1), 0.0),
    )


def leak(setup: Setup, models_M: Any, probe_S: dict) -> dict[str, np.ndarray]:
    """The trait-leak diagnostic (``LEAK_PAIRS``): how far the trait teacher's number channel is
    from its control twin's (the trait's share of it), and each teacher from the base, on the
    control teacher's own kept rows; ``{pair}_{total|per_token|by_position}``, per seed."""
    S = setup.cfg.seeds
    trait, control, base = (np.arange(S) + i * S for i in range(3))
    p_idx, q_idx = np.concatenate([trait, control, trait]), np.concatenate([control, base, base])
    kls = number_kls(setup, take(models_M, p_idx), take(models_M, q_idx), concat(*[probe_S] * 3))
    return {
        f"{pair}_{k}": v[i * S : (i + 1) * S]
        for k, v in kls.items()
        for i, pair in enumerate(LEAK_PAIRS)
    }


def student_inputs(setup, mode, bases_S, labels_M, sets, index, key) -> tuple:
    """``params0, extra, data, keys`` of the ``6S`` students of ``index`` (one batch order per
    seed, shared by its six students)."""
    n = len(index["init"])
    params0 = take(bases_S, index["init"])
    data, extra = take(sets, index["data"]), None
    if mode == "distill":  # each source model's targets on its own rows, once
        allowed = jnp.asarray(setup.allowed)
        logq_M = toy.vmapped_teacher_targets(setup.graphdef, setup.C)(labels_M, sets, allowed)
        data = dict(data, teacher_logq=take(logq_M, index["data"]))
        extra = jnp.broadcast_to(allowed, (n, len(allowed)))
    keys = jax.random.split(key, setup.cfg.seeds)[jnp.asarray(index["seed"])]
    return params0, extra, data, keys


def first_cosines(setup, mode, inputs, index, deltas) -> tuple[np.ndarray, np.ndarray]:
    """Per student: cos of its first update with teacher − base and with teacher − control."""
    delta_T, delta_trait = (take(d, index["seed"]) for d in deltas)
    cos = toy.vmapped_cosines(setup.graphdef, mode, setup.cfg.batch_size, setup.last)
    return tuple(np.asarray(c) for c in cos(*inputs, delta_T, delta_trait))


def students(
    setup, mode, bases_S, labels_M, sets, index, deltas, key, probe_S=None, tick=None
) -> dict:
    """All ``6S`` students of one mode: final scores, first-update cosines and, given the probe
    rows, each student's final number-channel KL from the model whose numbers it learnt."""
    cfg = setup.cfg
    inputs = student_inputs(setup, mode, bases_S, labels_M, sets, index, key)
    cos_T, cos_trait = first_cosines(setup, mode, inputs, index, deltas)
    K = inputs[2]["tokens"].shape[1]
    steps = cfg.student_epochs * (K // cfg.batch_size)
    phase = setup.phase(steps, cfg.student_lr, 5)
    params, losses = toy.fit(
        *inputs, graphdef=setup.graphdef, loss=mode, phase=phase, tick=tick
    )  # donates ``inputs[0]``
    kl = {}
    if probe_S is not None:
        source = take(labels_M, index["data"])
        kls = number_kls(setup, source, params, take(probe_S, index["seed"]))
        kl = dict(kl_to_source=kls["per_token"])
    return dict(
        **kl,
        probs=score(setup, params),
        cos_teacher=cos_T,
        cos_trait=cos_trait,
        final_loss=losses[:, -1],
        steps=steps,
    )


def score(setup: Setup, params_M: Any) -> np.ndarray:
    """``p(animal | question + PREFIX)`` per model, question and animal (``MxQxA``)."""
    run = toy.vmapped_probs(setup.graphdef)
    args = (jnp.asarray(setup.eval_tokens), jnp.asarray(setup.eval_valid))
    return np.asarray(run(params_M, *args, jnp.asarray(setup.animals)), np.float64)


def prepare(cfg: ToyConfig, store: results.ChunkStore | None = None, progress=None) -> dict:
    """Bases, teachers, generated and filtered number sets, the student pairing: everything
    the students need. A stage found in ``store`` is loaded, not recomputed (nor timed)."""
    setup = Setup(cfg)
    S, root = cfg.seeds, jax.random.key(cfg.seed)
    base_key, teacher_key, gen_key, student_key = (jax.random.fold_in(root, i) for i in range(4))
    partner = stats.derangement(S, key=jax.random.fold_in(root, 4))
    skeleton = jax.eval_shape(
        lambda: jax.vmap(lambda k: toy.init_params(setup.mcfg, k))(jax.random.split(root, S))
    )
    stages = Stages(store, skeleton)
    timings: dict[str, float] = {}

    def timed(name: str, total: int, fn: Callable, *args) -> Callable[[], Any]:
        def make():
            start = time.perf_counter()
            with _bar(progress, name, total) as bar:
                out = fn(*args, tick=bar.update)
            timings[name] = time.perf_counter() - start
            return out

        return make

    bases = stages.params("bases", timed("pretrain", cfg.pretrain_steps, pretrain, setup, base_key))
    tc = stages.params(
        "teachers", timed("teachers", cfg.teacher_steps, teachers, setup, bases, teacher_key)
    )
    trait_T, control_T = take(tc, np.arange(S)), take(tc, np.arange(S, 2 * S))
    models = concat(trait_T, control_T, bases)
    calls = -(-cfg.prompts // cfg.gen_batch)
    gen = stages.arrays("generated", timed("generate", calls, generate, setup, models, gen_key))
    kept, number_stats = filter_sets(setup, gen)
    sets, K = training_sets(setup, gen, kept)
    R = min(cfg.leak_rows, K)
    probe = jax.tree.map(lambda x: x[:, :R], take(sets, np.arange(S, 2 * S)))
    return dict(
        probe=probe,
        setup=setup, stages=stages, timed=timed, timings=timings, student_key=student_key,
        bases=bases, models=models, sets=sets, rows=K, number_stats=number_stats,
        partner=partner, index=student_index(S, partner),
        deltas=(toy.tree_sub(trait_T, bases), toy.tree_sub(trait_T, control_T)),
    )  # fmt: skip


def run(cfg: ToyConfig, *, store: results.ChunkStore | None = None, progress=None) -> dict:
    """Every stage; ``progress(desc, total)`` returns a bar (a context manager with ``update``)."""
    p = prepare(cfg, store, progress)
    out = {k: p[k] for k in ("partner", "rows", "number_stats", "index", "timings")}
    out["reference"] = score(p["setup"], p["models"])
    out["leak"] = p["stages"].arrays("leak", lambda: leak(p["setup"], p["models"], p["probe"]))
    steps = cfg.student_epochs * (p["rows"] // cfg.batch_size)
    for i, mode in enumerate(MODES):
        args = (p["setup"], mode, p["bases"], p["models"], p["sets"], p["index"], p["deltas"])
        key = jax.random.fold_in(p["student_key"], i)
        make = p["timed"](f"students ({mode})", steps, students, *args, key, p["probe"])
        out[mode] = p["stages"].arrays(mode, make)
    out["recomputed"] = sorted(p["timings"])  # stages this call computed (others: from --out)
    if store:  # seconds of every stage, whichever call computed it
        saved = store.load("timings") or {}
        out["timings"] = {**{k: float(v) for k, v in saved.items()}, **p["timings"]}
        store.save("timings", {k: np.asarray(v) for k, v in out["timings"].items()})
    return out
