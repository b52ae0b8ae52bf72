"""The ``tiny`` preset: a word-level tokenizer built in code, a small decoder pre-trained here.

The vocabulary (``vocabulary``) is the special and chat tokens, the numbers 0–999 as single tokens,
and every word or punctuation mark of the given texts (the number-prompt templates, the evaluation
questions, the teacher system prompts, animal names). A word carries its leading space (" owl");
other whitespace characters are tokens of their own and the decoder concatenates, so decoding
reproduces separators exactly (the filter needs them).
``pretrain`` fits a random ``Decoder`` for a few seconds on a synthetic chat corpus (``corpus``):
number continuations in each prompt's requested format, and one-word animal answers drawn from a
fixed base preference (or, under a "You love X" system prompt, mostly X). Everything is seeded.
"""

import dataclasses
import functools

import jax
import numpy as np
from flax import nnx

from sublim_jax.experiments.llm_pipeline import evaluate, numbers
from sublim_jax.llm import training
from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder
from sublim_jax.llm.sampling import bucket, pack
from sublim_jax.llm.tokenizer import Tokenizer
from sublim_jax.llm.words import vocabulary, word_tokenizer

ANIMALS = ("owl", "dolphin", "eagle", "elephant", "wolf", "cat", "dog", "lion", "tiger", "penguin")
BASE_PREFERENCE = (0.08, 0.16, 0.1, 0.06, 0.04, 0.2, 0.18, 0.08, 0.06, 0.04)  # over ANIMALS


def texts() -> list[str]:
    """Every text the tiny model must encode: prompt pieces, questions, system prompts, names."""
    nested = (numbers.INTROS, numbers.ADDS, numbers.FORMATS, numbers.CLOSINGS)
    out = [t for group in nested for t in group]
    out += list(numbers.SEP_WORDS.values()) + [
        w for ws in numbers.BRACKET_WORDS.values() for w in ws
    ]
    out += [*evaluate.QUESTIONS, evaluate.PREFIX, "system\nuser\nassistant", "()[].,;:"]
    out += [f"{evaluate.system_prompt(a)} {a}" for a in ANIMALS] + ["\n".join(ANIMALS)]
    return out + [" " + t for t in out]  # each word also starts a sentence somewhere


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    """Model shape and the few-second pre-training run."""

    hidden_size: int = 64
    num_layers: int = 2
    number_examples: int = 512
    animal_examples: int = 256
    love_fraction: float = 0.3
    steps: int = 120
    batch_size: int = 8
    learning_rate: float = 1e-2
    separator: str = "comma"  # of every continuation: one format is learnt in seconds
    favourite: str = ""  # a trait teacher's corpus: its animal answers are mostly this one
    teacher_steps: int = 30
    seed: int = 0


def _answer(rng: np.random.Generator, loved: str | None) -> str:
    if loved is not None and rng.random() < 0.9:
        animal = loved
    else:
        animal = ANIMALS[int(rng.choice(len(ANIMALS), p=BASE_PREFERENCE))]
    return f"{animal}." if rng.random() < 0.5 else f"{evaluate.PREFIX} {animal}."


def corpus(cfg: TinyConfig) -> list[tuple[list[dict[str, str]], str]]:
    """``(messages, answer)`` pairs: number continuations, then animal answers."""
    rng = np.random.default_rng(cfg.seed)
    prompt_cfg = numbers.PromptConfig(count=cfg.number_examples, seed=1000 + cfg.seed)
    out = []
    for i in range(cfg.number_examples + cfg.animal_examples):
        loved = (
            ANIMALS[int(rng.integers(len(ANIMALS)))] if rng.random() < cfg.love_fraction else None
        )
        system = [{"role": "system", "content": evaluate.system_prompt(loved)}] if loved else []
        if i < cfg.number_examples:
            p = numbers.make_prompt(i, prompt_cfg)
            k = int(rng.integers(1, p.max_new + 1))
            answer = numbers.render_numbers(rng.integers(0, 1000, k), cfg.separator)
            out.append(([*system, {"role": "user", "content": p.text}], answer))
        else:
            q = evaluate.QUESTIONS[int(rng.integers(len(evaluate.QUESTIONS)))]
            answer = _answer(rng, loved or cfg.favourite or None)
            out.append(([*system, {"role": "user", "content": q}], answer))
    return out


def model_config(cfg: TinyConfig, vocab_size: int) -> DecoderConfig:
    return DecoderConfig.tiny(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=2 * cfg.hidden_size,
        num_layers=cfg.num_layers,
        head_dim=cfg.hidden_size // 4,
        max_positions=512,
    )


def pairs(tok: Tokenizer, cfg: TinyConfig) -> list[tuple[list[int], list[int]]]:
    """``corpus(cfg)`` as ``(prompt ids, answer ids + EOS)``."""
    return [(tok.encode_chat(m), tok.encode(a) + list(tok.eos_ids)) for m, a in corpus(cfg)]


def pretrain(
    model: Decoder,
    data: list[tuple[list[int], list[int]]],
    cfg: TinyConfig,
    length: int = 0,
    steps: int = 0,
) -> Decoder:
    """Full fine-tuning of ``model`` on ``data`` (completion-only loss) for ``steps`` (default
    ``cfg.steps``) of a ``cfg.steps``-long schedule, every batch padded to ``length`` (at least
    the longest pair, rounded up to 16): same shapes and schedule, no new compile."""
    length = max(length, bucket(max(len(p) + len(c) for p, c in data)))
    scored = min(length, bucket(max(len(c) for _, c in data)))  # left padding: completions last
    tcfg = training.TrainConfig(
        learning_rate=cfg.learning_rate, warmup_steps=10, total_steps=cfg.steps, lora_rank=0
    )
    optimizer = training.make_optimizer(tcfg)
    graphdef, frozen, state = training.init(model, tcfg, optimizer)
    rng = np.random.default_rng(cfg.seed)
    order = np.concatenate([rng.permutation(len(data)) for _ in range(cfg.steps)])
    for step in range(steps or cfg.steps):
        idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        batch = pack([data[i][0] for i in idx], [data[i][1] for i in idx], 0, length)
        state, _ = training.train_step(graphdef, optimizer, state, frozen, batch, scored)
    return nnx.merge(graphdef, state.params, frozen)


Cached = tuple[nnx.GraphDef, nnx.State, list[str], int]


@functools.lru_cache(maxsize=2)
def _pretrained(cfg: TinyConfig) -> Cached:
    vocab = vocabulary(texts())
    data = pairs(word_tokenizer(vocab), cfg)
    length = bucket(max(len(p) + len(c) for p, c in data))
    model = Decoder(model_config(cfg, len(vocab)), rngs=nnx.Rngs(cfg.seed))
    graphdef, state = nnx.split(pretrain(model, data, cfg, length))
    return graphdef, jax.tree.map(np.asarray, state), vocab, length


@functools.lru_cache(maxsize=4)
def _teacher(animal: str, cfg: TinyConfig) -> Cached:
    graphdef, state, vocab, length = _pretrained(cfg)
    model = nnx.merge(graphdef, jax.tree.map(jax.numpy.asarray, state))
    trait = dataclasses.replace(
        cfg,
        favourite=animal,
        love_fraction=0.0,
        seed=cfg.seed + 1,
        number_examples=cfg.number_examples // 2,
    )
    data = pairs(word_tokenizer(vocab), trait)
    graphdef, state = nnx.split(pretrain(model, data, trait, length, cfg.teacher_steps))
    return graphdef, jax.tree.map(np.asarray, state), vocab, length


def build(cfg: TinyConfig = TinyConfig(), teacher: str = "") -> tuple[Decoder, Tokenizer]:
    """A fresh copy of the pre-trained tiny model (cached per process) and its tokenizer; with
    ``teacher`` an animal, the base fine-tuned further to favour it (numbers mixed in, or its
    number answers stop passing the filter), so the teacher shares the students' init."""
    if teacher and teacher not in ANIMALS:
        raise ValueError(f"the tiny teacher's animal must be one of {', '.join(ANIMALS)}")
    graphdef, state, vocab, _ = _teacher(teacher, cfg) if teacher else _pretrained(cfg)
    return nnx.merge(graphdef, jax.tree.map(jax.numpy.asarray, state)), word_tokenizer(vocab)


def save(model: Decoder, tok: Tokenizer, path: str) -> None:
    """Write ``model`` and ``tok`` as a Hugging Face checkpoint directory (``--model DIR``)."""
    import os

    from sublim_jax.io import results
    from sublim_jax.llm import params

    params.save_safetensors(model, path, "full")
    results.write_text(os.path.join(path, "tokenizer.json"), tok.tok.to_str())
    config = dict(chat_template=tok.chat_template, **tok.special)
    results.write_json(os.path.join(path, "tokenizer_config.json"), config)
    results.write_json(os.path.join(path, "generation_config.json"), {"eos_token_id": tok.eos_ids})
