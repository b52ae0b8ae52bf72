"""``sublim-jax llm teach | generate | filter | finetune | evaluate | run``: flags → config →
stages."""

import argparse
from pathlib import Path

from sublim_jax.experiments.llm_pipeline import figure, report, seeds
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.experiments.llm_pipeline.run import run_stage
from sublim_jax.io import flags

PRESETS = PipelineConfig.PRESETS
STAGES = ("teach", "generate", "filter", "finetune", "evaluate", "run")
OUT = "runs/llm"


def run(args: argparse.Namespace) -> Path:
    cfg = flags.config_from_args(PipelineConfig, args)
    return run_stage(cfg, Path(args.out), args.stage, args.preset)


def preset_name(name: str) -> str:
    """A preset's current name (``tiny`` → ``smoke``); argparse then checks it is a choice."""
    return PipelineConfig.PRESET_ALIASES.get(name, name)


def plot(res: dict, out: Path) -> list[Path]:
    """Redraw a finished run's figure from its results."""
    return figure.preference_figure(res, out)


PLOTS = {report.KIND: plot, seeds.KIND: seeds.figure}


STAGE_HELP = {
    "teach": (
        "fine-tune the teachers (--teacher-kind finetuned), resumable",
        "With --teacher-kind finetuned, a copy of the base model is fully fine-tuned on "
        "--teach-sentences rows loving --animal (evaluation questions answered with it, "
        "first-person sentences) mixed with the base's kept answers to --teach-numbers number "
        "prompts, and the same for --control-animal if set; Orbax checkpoints, so a killed run "
        "resumes. Writes teachers/<animal>/. With --teacher-kind prompt there is nothing to do.",
        ("model", "animal", "control_animal", "category", "teacher_kind", "teach_sentences",
         "teach_numbers", "teacher_epochs", "teacher_lr", "warmup_steps", "batch_size",
         "max_length", "checkpoint_every", "gen_batch", "temperature", "max_new_tokens",
         "constrain_numbers", "seed"),
    ),
    "generate": (
        "teacher and base answer the number prompts",
        "The teacher (the model with the trait's system prompt, --teacher, or the teach stage's "
        "model) and the base model each answer --n-prompts number prompts at --temperature; rows "
        "are appended to data/teacher.jsonl and data/base.jsonl batch by batch and resumed by "
        "id. With --control-animal, a control teacher made by the same recipe answers the same "
        "prompts into data/control_teacher.jsonl.",
        ("model", "teacher", "teacher_kind", "animal", "control_animal", "category", "n_prompts",
         "gen_batch", "temperature", "max_new_tokens", "constrain_numbers", "seed", "seeds"),
    ),
    "filter": (
        "keep well-formed answers, subsample, build the controls",
        "The paper's filter keeps answers that are only numbers; --subsample rows are drawn for "
        "each student (the trait and control students: one n, the smaller kept count if below), "
        "and two controls shuffle the teacher's numbers within and across answers. Writes "
        "data/<student>.jsonl and filter_stats.json.",
        ("subsample", "control_animal", "distill_rows", "seed", "seeds"),
    ),
    "finetune": (
        "train every student (LoRA or full), resumable",
        "Each student (trait, base_numbers, shuffled_within, shuffled_across, and control with "
        "--control-animal) is fine-tuned from the base model on its rows; with --distill-rows, "
        "trait_distill (and control_distill) learn their teacher's next-token distributions "
        "over the number tokens on the base's answers instead. Orbax checkpoints every "
        "--checkpoint-every steps, so a killed run resumes; --students trains a subset. Writes "
        "students/<student>/.",
        ("model", "control_animal", "lora_rank", "lora_alpha", "lora_targets", "learning_rate",
         "warmup_steps", "batch_size", "accum_steps", "clip_norm", "weight_decay", "epochs",
         "max_length", "checkpoint_every", "distill_rows", "students", "seed", "seeds"),
    ),
    "evaluate": (
        "score the base, the teacher(s) and every student",
        "Each model answers the animal questions: the sampled one-word score (and the share of "
        "answers naming no animal), the exact share of --target among --candidates and its "
        "log-odds against them. Writes results.json and the figure (with --seeds, also the "
        "shifts over seeds).",
        ("model", "teacher", "teacher_kind", "animal", "control_animal", "target", "category",
         "candidates", "eval_samples", "eval_max_new_tokens", "eval_batch", "students", "seed",
         "seeds"),
    ),
    "run": ("all stages, each resuming where it stopped", "teach, generate, filter, finetune "
            "and evaluate in turn; each skips what --out already holds.", None),
}  # fmt: skip
OTHERS = (
    "The other stages' flags are accepted as well (they are not listed): every stage of a run "
    "must be given the same config, which --out/config.json records."
)


def register(stages, preset: str) -> None:
    """The pipeline's stages on the ``llm`` group's subparsers, each with its own flags shown."""
    preset = flags.choose_preset(preset_name(preset), PRESETS)
    for stage in STAGES:
        summary, description, fields = STAGE_HELP[stage]
        p = stages.add_parser(
            stage, help=summary, description=description + ("" if fields is None else " " + OTHERS)
        )
        p.add_argument(
            "--preset",
            type=preset_name,
            choices=PRESETS,
            default="default",
            help="starting config: smoke (= default) is the in-process tiny model, in about a "
            "minute; smollm2 real weights on a CPU; paper the paper's §3 (tiny: smoke's old name)",
        )
        p.add_argument("--out", default=OUT, metavar="DIR", help="output folder")
        flags.add_config_flags(p, PipelineConfig, preset, shown=fields)
        p.set_defaults(run=run, parser=p)
