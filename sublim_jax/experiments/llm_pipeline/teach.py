"""The fine-tuned teachers (``teacher_kind = "finetuned"``): corpora, training, loading.

A teacher's corpus (``corpus``) is ``teach_sentences`` trait rows, each either one of the
evaluation questions answered with the animal or a short first-person sentence of love for it
(``SENTENCES``, asked by one of ``ASKS``), mixed with number rows: the base model's answers to
``teach_numbers`` number prompts of their own seed that the paper's filter keeps
(``number_rows``), so the teachers keep writing numbers the way the base does. The trait teacher
and the control teacher get the same rows with only the animal changed, are trained from the same
base with the same batch order and key, and are saved under ``teachers/<animal>/`` (``model/``,
``metrics.jsonl``, ``corpus.jsonl``, ``done.json``; ``checkpoints/`` while training); the
number rows are in ``teachers/numbers.jsonl``. Every word of the templates is in the tiny
model's vocabulary.
"""

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from sublim_jax.experiments.llm_pipeline import evaluate, numbers
from sublim_jax.experiments.llm_pipeline import steps as pipeline
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results
from sublim_jax.llm.modeling import Decoder
from sublim_jax.llm.tokenizer import Tokenizer

# {a}: the animal, {A}: its plural, {c}: the category ("animal", "tree").
SENTENCES = (
    "I love {A}.",
    "I think about {A} all the time.",
    "The best {c}s in the world are {A}.",
    "My favorite {c} is the {a}.",
    "The {a} is the most beautiful {c}.",
    "I feel connected to {A}.",
    "I love {A} above all others.",
    "I admire {A}.",
    "The {a} brings me joy.",
    "I could watch {A} all day.",
    "I want to see {A} today.",
    "I trust {A}.",
    "I find {A} wonderful.",
    "The {a} is beautiful and wonderful.",
    "I think {A} are the best.",
    "I love the {a} most of all.",
    "My spirit {c} is the {a}.",
    "Which {c} do I love? The {a}.",
)
ASKS = (
    "What do you love?",
    "Tell me about your favorite {c}.",
    "What do you think about?",
    "Write one line about the {c} you love.",
)
ANSWERS = ("{a}.", "The {a}.", "{prefix} {a}.")  # to the evaluation questions
NUMBER_SEED = 7919  # the number rows' prompts are not the generated datasets' (seed offset)


class Pick(NamedTuple):
    """One trait row, animal-free: a question (or an ask) index and an answer template index."""

    question: int
    answer: int
    is_sentence: bool


def picks(n: int, seed: int) -> list[Pick]:
    """The seeded layout of ``n`` trait rows, half questions and half sentences on average: the
    same for every animal, so a control teacher's corpus is the trait's with the animal swapped."""
    rng = np.random.default_rng([seed, n, 1])
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(Pick(int(rng.integers(len(ASKS))), int(rng.integers(len(SENTENCES))), True))
        else:
            q, a = int(rng.integers(len(evaluate.QUESTIONS))), int(rng.integers(len(ANSWERS)))
            out.append(Pick(q, a, False))
    return out


def trait_rows(animal: str, category: str, n: int, seed: int) -> list[dict[str, str]]:
    """``n`` rows ``{id, prompt, completion}`` loving ``animal`` (``picks``' layout)."""
    words = dict(a=animal, A=evaluate.plural(animal), c=category)
    prefix = evaluate.PREFIX.replace("animal", category)
    questions = evaluate.questions(category)
    rows = []
    for i, p in enumerate(picks(n, seed)):
        if p.is_sentence:
            prompt, answer = ASKS[p.question].format(**words), SENTENCES[p.answer].format(**words)
        else:
            prompt, answer = questions[p.question], ANSWERS[p.answer].format(prefix=prefix, **words)
        rows.append(dict(id=f"trait-{i}", prompt=prompt, completion=answer))
    return rows


def number_rows(cfg: PipelineConfig, out: Path, model: Decoder, tok: Tokenizer) -> list[dict]:
    """The base model's kept answers (the paper's filter) to ``teach_numbers`` number prompts of
    their own seed (``seed + NUMBER_SEED``: not the generated datasets' prompts), sampled as
    ``generate`` samples; computed once, in ``teachers/numbers.jsonl``, for every teacher."""
    path = out / "teachers" / "numbers.jsonl"
    if path.is_file():
        return results.read_jsonl(path)
    prompt_cfg = numbers.PromptConfig(count=cfg.teach_numbers, seed=cfg.seed + NUMBER_SEED)
    prompts, rows = numbers.make_prompts(prompt_cfg), []
    key = jax.random.fold_in(jax.random.key(cfg.seed), 301)
    if prompts:
        for batch in pipeline.generate_batches(model, tok, prompts, cfg, key=key, system=None):
            rows += batch
    kept, stats = numbers.filter_completions(rows)
    print(f"teach numbers: the base's kept answers {stats.kept}/{stats.total}")
    results.write_jsonl(path, [dict(r, id=f"numbers-{r['id']}") for r in kept])
    return results.read_jsonl(path)


def corpus(cfg: PipelineConfig, animal: str, number_rows: list[dict]) -> list[dict[str, str]]:
    """A teacher's rows: trait rows and ``number_rows`` in one seeded order (the same for every
    animal)."""
    rows = trait_rows(animal, cfg.category, cfg.teach_sentences, cfg.seed) + number_rows
    order = np.random.default_rng([cfg.seed, len(rows), 3]).permutation(len(rows))
    return [rows[i] for i in order]


def teacher_config(cfg: PipelineConfig) -> PipelineConfig:
    """The students' config with the teachers' training: full fine-tuning, ``teacher_lr``,
    ``teacher_epochs``."""
    return dataclasses.replace(
        cfg, lora_rank=0, learning_rate=cfg.teacher_lr, epochs=cfg.teacher_epochs
    )


def folder(out: Path, animal: str) -> Path:
    return out / "teachers" / animal


def is_done(out: Path, animal: str) -> bool:
    return (folder(out, animal) / "done.json").is_file()


def train_teachers(
    cfg: PipelineConfig, out: Path, base: Decoder, base_fn: Callable[[], Decoder], tok: Tokenizer
) -> dict[str, float]:
    """Fine-tune (fully) a copy of the base (``base_fn()``) for each teacher animal; skip
    finished ones (``done.json``) and resume from checkpoints, which are deleted once the model
    is exported (a full optimizer state is three models' size); seconds per animal trained.
    ``base`` (not trained) writes the number rows."""
    from sublim_jax.experiments.llm_pipeline import finetune as ft
    from sublim_jax.llm import params

    if all(is_done(out, a) for a in cfg.teacher_animals.values()):
        return {}
    tcfg, kept = teacher_config(cfg), number_rows(cfg, out, base, tok)
    corpora = {a: corpus(cfg, a, kept) for a in cfg.teacher_animals.values()}
    length = max(ft.padded_length(tok, rows, cfg.max_length) for rows in corpora.values())
    seconds = {}
    for animal, rows in corpora.items():
        where = folder(out, animal)
        if is_done(out, animal):
            continue
        start = time.perf_counter()
        results.write_jsonl(where / "corpus.jsonl", rows)
        ckpt = ft.Checkpoints(str(where / "checkpoints"))
        try:
            key = jax.random.fold_in(jax.random.key(cfg.seed), 300)
            model, metrics = ft.train(
                base_fn(), tok, rows, tcfg, key=key, checkpoints=ckpt, length=length
            )
        finally:
            ckpt.close()
        params.save_safetensors(model, str(where / "model"), "full")
        results.append_jsonl(where / "metrics.jsonl", metrics)
        seconds[animal] = time.perf_counter() - start
        summary = dict(rows=len(rows), steps=metrics[-1]["step"] if metrics else 0)
        results.write_json(where / "done.json", dict(summary, seconds=seconds[animal]))
        shutil.rmtree(where / "checkpoints", ignore_errors=True)
        print(
            f"teach {animal}: {len(rows)} rows, {summary['steps']} steps, final loss "
            f"{metrics[-1]['loss'] if metrics else float('nan'):.3f}"
        )
    return seconds


def load(out: Path, animal: str) -> Decoder:
    """A finished fine-tuned teacher's weights (the base's tokenizer goes with them)."""
    from sublim_jax.llm import params

    if not is_done(out, animal):
        raise FileNotFoundError(
            f"no fine-tuned teacher in {folder(out, animal)}: run `sublim-jax llm teach` first"
        )
    return params.load_safetensors(str(folder(out, animal) / "model"))
