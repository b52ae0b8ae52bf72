"""``sublim-jax theorem``: flags → config → run → results.json → figure."""

import argparse
import time
from pathlib import Path

from sublim_jax.experiments.theorem import figure, report
from sublim_jax.experiments.theorem.config import TheoremConfig
from sublim_jax.experiments.theorem.run import run as run_seeds
from sublim_jax.io import data, flags, progress, results

PRESETS = ("smoke", "default")
OUT = "runs/theorem"


def run(args: argparse.Namespace) -> Path:
    cfg = flags.config_from_args(TheoremConfig, args)
    ds, x_train, _ = data.load_flat(args.dataset, args.data_dir)
    out = results.claim_out(args.out, force=args.force)
    results.write_json(
        out / "config.json", {"config": cfg, "data": ds.identity(), "preset": args.preset}
    )
    start = time.perf_counter()
    bars = progress.tqdm_bars("seed")
    res = run_seeds(cfg, x_train, ds.y_train, progress=bars)
    res["seeds"] = cfg.seeds
    res["preset"] = args.preset
    res["reduced"] = flags.reduced_fields(TheoremConfig, cfg, reference="default")
    res["data"] = ds.identity()
    res["wall_seconds"] = time.perf_counter() - start
    res["versions"] = results.versions()
    results.write_results(out, report.KIND, res)
    figure.theorem_figure(res, out)
    report.report(res, out)
    return out


def plot(res: dict, out: Path) -> list[Path]:
    """Redraw a finished run's figure from its results."""
    paths = figure.theorem_figure(res, out)
    print("\n".join(report.summary_lines(res)))
    return paths


PLOTS = {report.KIND: plot}


def register(sub, preset: str) -> None:
    p = sub.add_parser(
        "theorem",
        help="the single-gradient-step theorem on the paper's MNIST network",
        description="Sweep ε and study ≥ 100 seeds: Δθ_S·Δθ_T vs εA, shared vs different init.",
    )
    flags.add_common_flags(p, PRESETS, OUT)
    flags.add_run_folder_flags(p, resume=False)
    flags.add_config_flags(p, TheoremConfig, flags.choose_preset(preset, PRESETS))
    p.set_defaults(run=run, parser=p)
