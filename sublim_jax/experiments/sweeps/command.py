"""``sublim-jax sweep NAME | all``: flags → grid and config → run → results.json → figures."""

import argparse
import sys
import time
from pathlib import Path

from sublim_jax.experiments.sweeps import across, figure, report
from sublim_jax.experiments.sweeps import grid as sweeps
from sublim_jax.experiments.sweeps.config import SweepConfig
from sublim_jax.experiments.sweeps.run import run as run_seeds
from sublim_jax.io import data, flags, progress, results
from sublim_jax.io.flags import UsageError

SWEEP_OUT = "runs/sweep-NAME"


def run(args: argparse.Namespace) -> Path | None:
    """One sweep of `grid.SWEEPS` over the mnist experiment, or ``all`` of them (then the
    across-sweeps figure); ``--list`` names them."""

    if args.list:
        width = max(map(len, sweeps.SWEEPS))
        for name, sweep in sweeps.SWEEPS.items():
            print(f"{name:{width}s}  {sweep.description}")
        return None
    if args.name is None:
        raise UsageError("name a sweep, or all (see `sublim-jax sweep --list`)")
    if args.name != "all" and args.name not in sweeps.SWEEPS:
        known = ", ".join(sweeps.SWEEPS)
        raise UsageError(f"unknown sweep {args.name!r} (known: {known}, or all); see --list")
    if args.name == "all" and args.grid is not None:
        raise UsageError("--grid needs one sweep: `sweep all` runs every preset grid")
    cfg = flags.config_from_args(SweepConfig, args)
    names = list(sweeps.SWEEPS) if args.name == "all" else [args.name]
    try:
        grids = {
            n: sweeps.parse_grid(
                n, sweeps.grid_text(n, args.preset) if args.grid is None else args.grid
            )
            for n in names
        }
        for points in grids.values():
            sweeps.check_config(points, cfg)
    except ValueError as err:
        raise UsageError(str(err)) from err
    default_out = "runs/sweeps" if args.name == "all" else f"runs/sweep-{args.name}"
    out = Path(default_out if args.out == SWEEP_OUT else args.out)
    ds, x_train, x_test = data.load_flat(args.dataset, args.data_dir)
    every = tuple(p for points in grids.values() for p in points)
    images, inputs_data = _input_images(args, every, ds, cfg.n_noise)  # all checked up front
    results.claim_out(out, force=args.force)
    if args.name != "all":
        return _one_sweep(args.name, grids[args.name], cfg, out, ds, (x_train, x_test), images,
                          inputs_data, args.preset)  # fmt: skip
    done = [
        _one_sweep(n, points, cfg, out / n, ds, (x_train, x_test), images, inputs_data, args.preset)
        for n, points in grids.items()
    ]
    return _across(out, [results.read_json(d / "results.json") for d in done])


def _across(out: Path, sweep_results: list[dict]) -> Path:

    body = across.across(sweep_results)
    results.write_results(out / "across", across.KIND, body)
    figure.across_sweeps_figure(body, out / "across")
    print(across.correlation_text(body))
    print(f"wrote {out}/across/results.json, across.pdf, across.png")
    return out


def _one_sweep(name, points, cfg, out: Path, ds, xs, images, inputs_data, preset: str) -> Path:

    used = {sweeps.input_dataset(p) for p in points} - {None}
    inputs_data = {k: v for k, v in inputs_data.items() if k in used}
    doc = {"config": cfg, "sweep": name, "grid": [p.label for p in points]}
    results.write_json(out / "config.json", {**doc, "data": ds.identity(), "preset": preset})
    start = time.perf_counter()
    bars = progress.tqdm_bars("epoch")
    x_train, x_test = xs
    raw = run_seeds(
        name, points, cfg, x_train, ds.y_train, x_test, ds.y_test, progress=bars, images=images
    )
    res = {
        **report.summarise(name, points, raw),
        "seeds": cfg.seeds,
        "preset": preset,
        "reduced": flags.reduced_fields(SweepConfig, cfg),
        "data": ds.identity(),
        **({"inputs_data": inputs_data} if inputs_data else {}),
        "wall_seconds": time.perf_counter() - start,
        "versions": results.versions(),
    }
    results.write_results(out, report.KIND, res)
    figure.sweep_figure(res, out)
    tracked = any(p.track for p in points)
    if tracked:
        figure.alignment_figure(res, out)
    print(report.table(res))
    print(f"wrote {out}/config.json, results.json, sweep.pdf, sweep.png")
    if tracked:
        print(f"wrote {out}/alignment.pdf, alignment.png")
    return out


def _input_images(args, points, ds: data.Dataset, n_noise: int) -> tuple[dict, dict]:
    """uint8 training images (N×784) of each dataset the ``inputs`` points name, and their
    identities: --dataset's own, others through `data.load` from --inputs-data-dir."""

    images, identities = {}, {}
    for name in sorted({n for p in points if (n := sweeps.input_dataset(p)) is not None}):
        other = ds if name == ds.name else None
        other = other or data.load(
            name,
            args.inputs_data_dir or args.data_dir,
            progress=lambda m: print(m, file=sys.stderr),
        )
        if other.x_train.shape[0] < n_noise:
            raise UsageError(f"--n-noise {n_noise} exceeds the {other.x_train.shape[0]} {name} "
                             "training images")  # fmt: skip
        images[name] = other.x_train.reshape(other.x_train.shape[0], -1)
        identities[name] = other.identity()
    return images, identities


def register(sub, preset: str) -> None:

    sweep = sub.add_parser(
        "sweep",
        help="a grid over the mnist experiment's config (`sweep --list` names the sweeps)",
        description="Run one sweep: teachers once per seed, then every grid point's same- and "
        "different-init students; results.json, sweep.pdf and sweep.png in --out.",
    )
    sweep.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help=", ".join(sweeps.SWEEPS) + ", or all (every sweep, then the across-sweeps figure)",
    )
    sweep.add_argument("--list", action="store_true", help="print each sweep and exit")
    sweep.add_argument(
        "--grid",
        metavar="POINTS",
        help="comma-separated points replacing the preset's grid, e.g. init-distance "
        "'0,0.1,lambda=0.5', layer-sharing 'none,h1+readout,all', aux-count '1,3,10', "
        "optimizer 'sgd@0.1,adam@3e-4', defences 'none,weight-decay=1e-3,l2=1e-3,mix=0.5' "
        "(weight-decay: AdamW's decoupled decay; l2: coupled into Adam's moments, as torch "
        "Adam's weight_decay), decay 'none,weight-decay=1e-4,l2=1e-4', architecture "
        "'64x2,256x3', dose '1000,60000x1', batch-size '256,4096,4096@steps=150' (B@steps=K: "
        "exactly K student steps), teacher-strength '0,0.1,steps=3,5', alignment-over-training "
        "'0,lambda=1'",
    )
    sweep.add_argument(
        "--inputs-data-dir",
        metavar="DIR",
        help="folder of the image datasets an `inputs` grid names besides --dataset (e.g. "
        "fashion-mnist; the same lookup as --data-dir; default: --data-dir's)",
    )
    flags.add_common_flags(sweep, sweeps.PRESETS, SWEEP_OUT)
    flags.add_run_folder_flags(sweep, resume=False)
    flags.add_config_flags(sweep, SweepConfig, flags.choose_preset(preset, sweeps.PRESETS))
    sweep.set_defaults(run=run, parser=sweep)


def plot(res: dict, out: Path) -> list[Path]:
    """Redraw a finished sweep's figures from its results, and print its table."""
    paths = figure.sweep_figure(res, out)
    if any("alignment" in p["diagnostics"] for p in res["points"]):
        paths += figure.alignment_figure(res, out)
    print(report.table(res))
    return paths


def plot_across(res: dict, out: Path) -> list[Path]:
    """Redraw the across-sweeps figure, and print the correlation."""
    paths = figure.across_sweeps_figure(res, out)
    print(across.correlation_text(res))
    return paths


PLOTS = {report.KIND: plot, across.KIND: plot_across}
