"""The toy experiment's config (presets smoke, default, paper and legacy), its modes, inits and
student sources."""

import dataclasses
from typing import Any, ClassVar

from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.experiments.llm_toy import corpus
from sublim_jax.experiments.llm_toy import steps as toy
from sublim_jax.io import flags
from sublim_jax.llm.config import INITS as INIT_SCHEMES

MODES = ("sampled", "distill")


INITS = ("same", "different")


SOURCES = ("trait", "control", "own_base")


LEAK_PAIRS = ("trait_control", "control_base", "trait_base")  # KL(first ‖ second), per seed


def field(default: Any, help: str, **flag: Any) -> Any:
    """A config field with its help; ``flag``: its flag's name and old names (`io.flags`)."""
    return dataclasses.field(default=default, metadata={"help": help, **flag})


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Sizes of the toy experiment (the model, its corpus, the teachers, the students)."""

    PRESETS: ClassVar[tuple[str, ...]] = ("smoke", "default", "paper", "legacy")
    seeds: int = field(10, "independent bases (each also some other seed's partner)")
    hidden_size: int = field(64, "width of the decoder (4 heads, MLP 2x)")
    num_layers: int = field(2, "decoder blocks")
    init: str = field("fan_in", "kernels N(0, init_std²) ('normal') or N(0, init_std²/fan_in)")
    init_std: float = field(1.0, "kernel std ('normal') or gain over √fan_in ('fan_in')")
    init_embed_std: float = field(0.05, "embedding std")
    init_depth: bool = field(True, "residual outputs (o, down) ÷ √(2·layers) at init")
    max_number: int = field(99, "numbers 0..max_number are single tokens")
    pretrain_numbers: int = field(4096, "number rows in each base's corpus")
    pretrain_animals: int = field(2048, "animal rows in each base's corpus")
    pretrain_steps: int = field(400, "AdamW steps of each base's pre-training")
    pretrain_lr: float = field(3e-3, "peak learning rate of pre-training")
    batch_size: int = field(32, "rows per step (every phase)")
    base_temperature: float = field(1.0, "entropy of the base animal distribution (p^(1/t))")
    target: str = field(
        "owl", "the trait: the teacher's favourite animal", flag="animal", aliases=("target",)
    )
    teacher_love: float = field(1.0, "share of the trait teacher's answers naming the target")
    teacher_numbers: int = field(1024, "number rows mixed into the teachers' fine-tuning")
    teacher_animals: int = field(1024, "animal rows of the teachers' fine-tuning")
    teacher_steps: int = field(100, "AdamW steps of each teacher's fine-tuning")
    teacher_lr: float = field(1e-3, "peak learning rate of the teachers")
    prompts: int = field(512, "fresh number prompts each model answers")
    rows: int = field(0, "rows per student (0: the smallest kept count of all sets)")
    student_epochs: int = field(10, "passes over each student's rows (at 3 no shift shows)")
    student_lr: float = field(1e-3, "peak learning rate of the students")
    gen_batch: int = field(512, "prompts per generation call (memory: seeds × 3 KV caches each)")
    chunk: int = field(
        50,
        "training steps per compiled call (a progress-bar tick)",
        flag="steps-per-call",
        aliases=("chunk",),
    )
    answer_prefix: bool = field(False, 'answers and scores after "My favorite animal is"')
    questions: int = field(50, "distinct animal questions (the first n of the 50)")
    number_data: str = field("seeded", "number rows: 'walk' (varied wordings) or 'seeded'")
    schedule: str = field("linear", "learning rates: 'linear' (warm-up, decay to 0) or 'constant'")
    clip_norm: float = field(1.0, "global gradient-norm clipping in every phase (0: none)")
    coupled: bool = field(True, "each seed's three models sample from shared random draws")
    leak_rows: int = field(256, "control-teacher rows the trait-leak KL is measured on")
    seed: int = field(0, "root random seed")

    @classmethod
    def default(cls) -> "ToyConfig":
        return cls()

    @classmethod
    def smoke(cls) -> "ToyConfig":
        """Seconds of compute: the CI test of every stage and file."""
        return cls(
            seeds=2,
            hidden_size=32,
            pretrain_numbers=256,
            pretrain_animals=128,
            pretrain_steps=150,
            pretrain_lr=1e-2,
            teacher_numbers=64,
            teacher_animals=64,
            teacher_steps=20,
            prompts=64,
            batch_size=8,
            student_epochs=1,
            gen_batch=64,
        )

    @classmethod
    def legacy(cls) -> "ToyConfig":
        """The design of every toy run before the initialisation study (``LEGACY``)."""
        return cls(**LEGACY)

    @classmethod
    def paper(cls) -> "ToyConfig":
        """20 seeds, a wider 3-layer model, more data (docs/llm_toy.md gives its time)."""
        return cls(
            seeds=20,
            hidden_size=128,
            num_layers=3,
            pretrain_numbers=8192,
            pretrain_animals=4096,
            pretrain_steps=1200,
            teacher_steps=300,
            prompts=2048,
        )

    def validate(self) -> "ToyConfig":
        if self.seeds < 2:
            raise ValueError(
                f"--seeds must be ≥ 2 (different-init students need a partner), got {self.seeds}"
            )
        flags.check_fields(self, {**self.RULES, "questions": f"in 1..{len(evaluate.QUESTIONS)}"})
        if self.hidden_size % 4:
            raise ValueError(
                f"--hidden-size must be a multiple of 4 (four heads), got {self.hidden_size}"
            )
        choices = {
            "target": corpus.ANIMALS,
            "number_data": corpus.NUMBER_DATA,
            "schedule": toy.SCHEDULES,
            "init": INIT_SCHEMES,
        }
        for f in dataclasses.fields(self):
            if f.name in choices and getattr(self, f.name) not in choices[f.name]:
                raise ValueError(
                    f"{flags.field_flag(f)} must be one of {', '.join(choices[f.name])}, "
                    f"got {getattr(self, f.name)!r}"
                )
        return self

    RULES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(
            ("hidden_size", "num_layers", "pretrain_steps", "batch_size", "prompts",
             "teacher_steps", "student_epochs", "gen_batch", "chunk", "teacher_animals",
             "pretrain_numbers", "pretrain_animals", "teacher_numbers", "leak_rows"),
            ">= 1",
        ),
        "teacher_love": "in 0..1",
        "base_temperature": "> 0",
        "clip_norm": ">= 0",
        "init_std": "> 0",
        "init_embed_std": "> 0",
        "max_number": "in 9..999",
        "pretrain_lr": "> 0",
        "teacher_lr": "> 0",
        "student_lr": "> 0",
    }  # fmt: skip


# Fields added after the first runs were committed, at the value every earlier run used: a
# config.json without them is read with these, not with today's defaults.
LEGACY = dict(
    init="normal",
    init_std=0.02,
    init_embed_std=0.02,
    init_depth=False,
    answer_prefix=True,
    questions=50,
    number_data="walk",
    schedule="linear",
    clip_norm=1.0,
    coupled=False,
    leak_rows=256,
)
