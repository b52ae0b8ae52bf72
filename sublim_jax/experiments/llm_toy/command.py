"""``sublim-jax llm toy``: flags → config → stages (resumable) → results, summary.md, figure."""

import argparse
import time
from pathlib import Path

from sublim_jax.experiments.llm_toy import figure, report
from sublim_jax.experiments.llm_toy.config import ToyConfig
from sublim_jax.experiments.llm_toy.run import run as run_seeds
from sublim_jax.io import data, flags, progress, results

PRESETS = ToyConfig.PRESETS
OUT = "runs/llm_toy"


class ToyDataError(data.DataError):
    """Raised when the filter leaves too few rows; reported as a data error."""


def run(args: argparse.Namespace) -> Path:
    """Validate, check ``--resume`` against ``config.json``, run (reusing finished stages),
    write ``results.json``, ``summary.md`` and the figure."""
    cfg = flags.config_from_args(ToyConfig, args)
    out = Path(args.out)
    results.check_resume(out, cfg, args.resume)
    results.claim_out(out, resume=args.resume, force=args.force)
    doc = {"config": results.jsonable(cfg)}
    results.write_json(out / "config.json", {**doc, "preset": args.preset})
    store = results.ChunkStore(out / "chunks", results.fingerprint(doc), read=args.resume)
    start = time.perf_counter()
    try:
        raw = run_seeds(cfg, store=store, progress=progress.tqdm_bars("step"))
    except ValueError as err:  # too few kept rows for a batch: a data problem, one line
        raise ToyDataError(str(err)) from err
    res = report.summarise(raw, cfg, time.perf_counter() - start)
    res["preset"] = args.preset
    res["reduced"] = flags.reduced_fields(ToyConfig, cfg, reference="default", smaller_only=True)
    results.write_results(out, report.KIND, res)
    report.write_summary(out, res, cfg, args.preset)
    paths = figure.toy_figure(res, out)
    print(report.table(res))
    print("wrote " + ", ".join(str(p) for p in [out / "results.json", out / "summary.md", *paths]))
    return out


def plot(res: dict, out: Path) -> list[Path]:
    """Redraw a finished run's figure and ``summary.md`` from its results and config."""
    cfg = report.config_of(out)
    return [*figure.toy_figure(res, out), report.write_summary(out, res, cfg, res.get("preset"))]


PLOTS = {report.KIND: plot}


def register(stages, preset: str) -> None:
    """``llm toy`` on the ``llm`` group's subparsers."""
    p = stages.add_parser(
        "toy",
        help="subliminal learning in a small decoder pre-trained here (CPU, many seeds)",
        description="Bases pre-trained from scratch on a synthetic chat corpus, trait and control "
        "teachers, number data at T = 1 through the paper's filter, students of the same and of "
        "a different init, sampled-token and distillation modes; shifts with 95% CIs.",
    )
    p.add_argument("--preset", choices=PRESETS, default="default", help="starting config")
    p.add_argument("--out", default=OUT, metavar="DIR", help="output folder")
    flags.add_run_folder_flags(p, resume=True)
    flags.add_config_flags(p, ToyConfig, flags.choose_preset(preset, PRESETS))
    p.set_defaults(run=run, parser=p)
