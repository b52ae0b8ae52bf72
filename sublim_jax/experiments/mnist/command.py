"""``sublim-jax mnist``: flags → config → run → results.json, metrics.jsonl → figure."""

import argparse
import sys
import time
from pathlib import Path

from sublim_jax.experiments.mnist import figure, report
from sublim_jax.experiments.mnist.config import TransferConfig
from sublim_jax.experiments.mnist.run import run as run_seeds
from sublim_jax.io import data, flags, progress, results

PRESETS = ("smoke", "default", "paper")
OUT = "runs/mnist"


def run(args: argparse.Namespace) -> Path:
    cfg = flags.config_from_args(TransferConfig, args)
    for note in cfg.notes():
        print(f"note: {note}", file=sys.stderr)
    out = Path(args.out)
    results.check_resume(out, cfg, args.resume)
    ds, x_train, x_test = data.load_flat(args.dataset, args.data_dir)
    results.claim_out(out, resume=args.resume, force=args.force)
    doc = {"config": cfg, "data": ds.identity()}
    results.write_json(out / "config.json", {**doc, "preset": args.preset})
    store = results.ChunkStore(out / "chunks", results.fingerprint(doc), read=args.resume)
    start = time.perf_counter()
    bars = progress.tqdm_bars("epoch")
    raw = run_seeds(cfg, x_train, ds.y_train, x_test, ds.y_test, store=store, progress=bars)
    res = {
        **report.results_body(
            raw, cfg.seeds, ds.identity(), args.preset, flags.reduced_fields(TransferConfig, cfg)
        ),
        "wall_seconds": time.perf_counter() - start,
        "versions": results.versions(),
    }
    results.write_jsonl(out / "metrics.jsonl", report.loss_rows(raw["loss_per_epoch"]))
    results.write_results(out, report.KIND, res)
    figure.transfer_figure(res, out)
    print(report.transfer_table(res))
    print(f"wrote {out}/config.json, results.json, metrics.jsonl, transfer.pdf, transfer.png")
    return out


def plot(res: dict, out: Path) -> list[Path]:
    """Redraw a finished run's figure from its results, and print its table."""
    paths = figure.transfer_figure(res, out)
    print(report.transfer_table(res))
    return paths


PLOTS = {report.KIND: plot}


def register(sub, preset: str) -> None:
    p = sub.add_parser(
        "mnist",
        help="the auxiliary-logit transfer experiment (the paper's Figure 10)",
        description="Teachers on MNIST, students on noise via aux-only or all logits, same or "
        "different init; test accuracy of all six conditions over many seeds.",
    )
    flags.add_common_flags(p, PRESETS, OUT)
    flags.add_run_folder_flags(p, resume=True)
    flags.add_config_flags(p, TransferConfig, flags.choose_preset(preset, PRESETS))
    p.set_defaults(run=run, parser=p)
