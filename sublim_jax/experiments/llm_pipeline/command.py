"""``sublim-jax llm generate | filter | finetune | evaluate | run``: flags → config → stages."""

import argparse
from pathlib import Path

from sublim_jax.experiments.llm_pipeline import figure, report
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.experiments.llm_pipeline.run import run_stage
from sublim_jax.io import flags

PRESETS = ("tiny", "smollm2", "paper")
STAGES = ("generate", "filter", "finetune", "evaluate", "run")
OUT = "runs/llm"


def run(args: argparse.Namespace) -> Path:
    cfg = flags.config_from_args(PipelineConfig, args)
    return run_stage(cfg, Path(args.out), args.stage)


def plot(res: dict, out: Path) -> list[Path]:
    """Redraw a finished run's figure from its results."""
    return figure.preference_figure(res, out)


PLOTS = {report.KIND: plot}


def register(stages, preset: str) -> None:
    """The pipeline's stages on the ``llm`` group's subparsers."""
    preset = preset if preset in PRESETS else "tiny"
    for stage in STAGES:
        p = stages.add_parser(stage, help=f"the {stage} stage" if stage != "run" else "all stages")
        p.add_argument("--preset", choices=PRESETS, default="tiny", help="starting config")
        p.add_argument("--out", default=OUT, metavar="DIR", help="output folder")
        flags.add_config_flags(p, PipelineConfig, preset)
        p.set_defaults(run=run, parser=p)
