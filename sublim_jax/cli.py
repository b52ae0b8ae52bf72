"""The ``sublim-jax`` command line: each experiment from one command, figures redrawn from files.

Every config field is a flag (``--eps-min 1e-9``); ``--preset`` picks the starting config and
``--help`` after it shows that preset's values. Bad input ends with one line on stderr and a
non-zero exit status, before anything is written.
"""

import argparse
import dataclasses
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import numpy as np

from . import data, results, stats

USAGE = """Subliminal learning, checked numerically and reproduced (Cloud et al., arXiv 2507.14805).

commands:
  mnist     the auxiliary-logit transfer experiment (the paper's Figure 10): teachers learn
            MNIST, students imitate them on noise images, same vs different initialisation
  theorem   the single-gradient-step theorem on the same network: Δθ_S·Δθ_T against εA over
            a range of ε and many seeds, shared vs different initialisation
  sweep     grids over the mnist experiment (init distance, layer sharing, aux count,
            optimiser, loss, inputs, defences, architecture, dose, teacher strength,
            alignment over training): when does transfer happen, and does the one-step
            alignment predict it? `sweep --list` names them; `sweep all` runs every one
  llm       the language-model pipeline (the paper's §3): teacher numbers, filter, students
            and controls, animal-preference scores (`llm run --preset tiny` runs on a CPU)
  plot      redraw the figure of a finished run from its results.json (no retraining)

Each run writes config.json, results.json and a PDF + PNG figure into --out.
`sublim-jax COMMAND --help` lists every flag; `sublim-jax COMMAND --preset paper --help`
shows the values that preset uses."""

EXIT_USAGE, EXIT_DATA, EXIT_TRAIN = 2, 1, 3


class UsageError(Exception):
    """Bad flags or values: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        if "unrecognized arguments" in message:
            valid = sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))
            message += f" (valid options: {' '.join(valid)})"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(hint: Any) -> type:
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    return hint


def add_config_flags(parser: argparse.ArgumentParser, cls: type, preset: str = "default") -> None:
    """One flag per dataclass field, default None (= keep the preset's value, shown in help)."""
    hints, defaults = get_type_hints(cls), getattr(cls, preset)()
    group = parser.add_argument_group(f"{cls.__name__} fields (override the {preset!r} preset)")
    for field in dataclasses.fields(cls):
        kind = _scalar_type(hints[field.name])
        value = getattr(defaults, field.name)
        help_ = f"{field.metadata.get('help', '')} ({preset}: {value})"
        if kind is bool:
            group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, help=help_)
        else:
            meta = field.name.upper()
            group.add_argument(_flag(field.name), type=kind, metavar=meta, help=help_)


def config_from_args(cls: type, args: argparse.Namespace) -> Any:
    """The preset, with every flag the user gave applied by ``dataclasses.replace``, validated."""
    cfg = getattr(cls, args.preset)()
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name) is not None
    }
    try:
        return dataclasses.replace(cfg, **overrides).validate()
    except ValueError as err:
        raise UsageError(str(err)) from err


def command_line(prefix: str, cls: type, cfg: Any, preset: str | None = None) -> str:
    """``prefix --preset P`` and a flag for every field of ``cfg`` that differs from preset
    ``P`` (``preset`` or, when None, the preset of ``cls.PRESETS`` needing the fewest flags):
    the command that rebuilds ``cfg``, for the summaries a run writes."""

    def changed(name: str) -> list[dataclasses.Field]:
        base = getattr(cls, name)()
        return [f for f in dataclasses.fields(cls) if getattr(cfg, f.name) != getattr(base, f.name)]

    presets = getattr(cls, "PRESETS", [n for n in ("smoke", "default", "paper") if hasattr(cls, n)])
    preset = preset or min(presets, key=lambda n: len(changed(n)))
    parts = [prefix, "--preset", preset]
    for f in changed(preset):
        value = getattr(cfg, f.name)
        if isinstance(value, bool):
            parts.append(_flag(f.name) if value else "--no-" + f.name.replace("_", "-"))
        else:
            parts += [_flag(f.name), str(value)]
    return " ".join(parts)


def load_images(dataset: str, data_dir: str | None):
    """The chosen dataset (verified when known) as float32 in [−1, 1], flattened to 784 pixels."""
    ds = data.load(dataset, data_dir, progress=lambda m: print(m, file=sys.stderr))
    flat = lambda x: data.normalize(x).reshape(x.shape[0], -1)  # noqa: E731
    return ds, flat(ds.x_train), flat(ds.x_test)


def _progress(total: int, desc: str, unit: str = "seed"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)


def run_theorem(args: argparse.Namespace) -> Path:
    from . import figures, single_step

    cfg = config_from_args(single_step.TheoremConfig, args)
    ds, x_train, _ = load_images(args.dataset, args.data_dir)
    out = Path(args.out)
    results.write_json(out / "config.json", {"config": cfg, "data": ds.identity()})
    start = time.perf_counter()
    with _progress(cfg.seeds, "theorem (both inits)") as bar:
        res = single_step.run(cfg, x_train, ds.y_train, on_chunk=bar.update)
    res["seeds"] = cfg.seeds
    res["data"] = ds.identity()
    res["wall_seconds"] = time.perf_counter() - start
    res["versions"] = results.versions()
    results.write_json(out / "results.json", res)
    figures.theorem_figure(res, out)
    _report_theorem(res, out)
    return out


def _report_theorem(res: dict, out: Path) -> None:
    ok = bool(np.all(res["alignment_shared"] >= 0))
    rel = np.abs(res["alignment_shared"] / res["first_order_shared"] - 1)
    for init in ("shared", "different"):
        cos = stats.summary(res[f"cosine_{init}"])
        frac = float(np.mean(res[f"lt_decreased_{init}"]))
        print(
            f"{init:9s} init: cos(Δθ_S, Δθ_T) mean {cos['mean']:+.4f} "
            f"[{cos['ci95'][0]:+.4f}, {cos['ci95'][1]:+.4f}], L_T fell for {frac:.0%} of seeds"
        )
    print(
        f"shared-init alignment ≥ 0 at every ε: {ok}; "
        f"|Δθ_S·Δθ_T/(εA) − 1| = {rel[0]:.1e} at ε = {res['eps'][0]:.0e}"
    )
    print(f"wrote {out}/config.json, results.json, theorem.pdf, theorem.png")


def run_mnist(args: argparse.Namespace) -> Path:
    from . import figures, transfer, transfer_run

    cfg = config_from_args(transfer.TransferConfig, args)
    out = Path(args.out)
    _check_resume(out, cfg, args.resume)
    ds, x_train, x_test = load_images(args.dataset, args.data_dir)
    doc = {"config": cfg, "data": ds.identity()}
    results.write_json(out / "config.json", doc)
    store = results.ChunkStore(out / "chunks", results.fingerprint(doc), read=args.resume)
    start = time.perf_counter()
    bar = lambda phase, total: _progress(total, phase, unit="epoch")  # noqa: E731
    raw = transfer_run.run(cfg, x_train, ds.y_train, x_test, ds.y_test, store=store, progress=bar)
    res = {
        "conditions": {k: {"accuracy": v, **stats.summary(v)} for k, v in raw["accuracy"].items()},
        **({"paper": transfer.PAPER_ACCURACY} if ds.name == "mnist" else {}),
        "data": ds.identity(),
        "seeds": cfg.seeds,
        "partner": raw["partner"],
        "devices": raw["devices"],
        "seeds_per_chunk": raw["seeds_per_chunk"],
        "wall_seconds": time.perf_counter() - start,
        "versions": results.versions(),
    }
    results.write_jsonl(out / "metrics.jsonl", _loss_rows(raw["loss_per_epoch"]))
    results.write_json(out / "results.json", res)
    figures.transfer_figure(res, out)
    print(figures.transfer_table(res))
    print(f"wrote {out}/config.json, results.json, metrics.jsonl, transfer.pdf, transfer.png")
    return out


def _check_resume(out: Path, cfg, resume: bool) -> None:
    if not resume or not (out / "config.json").is_file():
        return
    saved = results.read_json(out / "config.json").get("config")
    if saved != results.jsonable(cfg):
        diff = sorted(k for k, v in results.jsonable(cfg).items() if saved.get(k) != v)
        raise UsageError(
            f"--resume: {out}/config.json has a different config (fields {', '.join(diff)}); "
            "use the same flags, or another --out"
        )


def _loss_rows(loss_per_epoch: dict) -> list[dict]:
    return [
        {
            "condition": cond,
            "epoch": e,
            "mean_loss": float(np.mean(l_SxE[:, e])),
            "loss": l_SxE[:, e],
        }
        for cond, l_SxE in loss_per_epoch.items()
        for e in range(l_SxE.shape[1])
    ]


SWEEP_OUT = "runs/sweep-NAME"


def run_sweep(args: argparse.Namespace) -> Path | None:
    """One sweep of `sublim_jax.sweeps` over the mnist experiment, or ``all`` of them (then the
    across-sweeps figure); ``--list`` names them."""
    from . import sweeps

    if args.list:
        for name, sweep in sweeps.SWEEPS.items():
            print(f"{name:14s} {sweep.description}")
        return None
    if args.name is None:
        raise UsageError("name a sweep, or all (see `sublim-jax sweep --list`)")
    if args.name != "all" and args.name not in sweeps.SWEEPS:
        known = ", ".join(sweeps.SWEEPS)
        raise UsageError(f"unknown sweep {args.name!r} (known: {known}, or all); see --list")
    if args.name == "all" and args.grid is not None:
        raise UsageError("--grid needs one sweep: `sweep all` runs every preset grid")
    cfg = config_from_args(sweeps.SweepConfig, args)
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
    ds, x_train, x_test = load_images(args.dataset, args.data_dir)
    every = tuple(p for points in grids.values() for p in points)
    images, inputs_data = _input_images(args, every, ds, cfg.n_noise)  # all checked up front
    if args.name != "all":
        return _one_sweep(args.name, grids[args.name], cfg, out, ds, (x_train, x_test), images,
                          inputs_data)  # fmt: skip
    done = [
        _one_sweep(n, points, cfg, out / n, ds, (x_train, x_test), images, inputs_data)
        for n, points in grids.items()
    ]
    return _across(out, [results.read_json(d / "results.json") for d in done])


def _across(out: Path, sweep_results: list[dict]) -> Path:
    from . import figures, findings

    body = findings.across(sweep_results)
    results.write_json(out / "across" / "results.json", body)
    figures.across_sweeps_figure(body, out / "across")
    print(findings.correlation_text(body))
    print(f"wrote {out}/across/results.json, across.pdf, across.png")
    return out


def _one_sweep(name, points, cfg, out: Path, ds, xs, images, inputs_data) -> Path:
    from . import figures, sweep_run, sweeps

    used = {sweeps.input_dataset(p) for p in points} - {None}
    inputs_data = {k: v for k, v in inputs_data.items() if k in used}
    doc = {"config": cfg, "sweep": name, "grid": [p.label for p in points]}
    results.write_json(out / "config.json", {**doc, "data": ds.identity()})
    start = time.perf_counter()
    bar = lambda phase, total: _progress(total, phase, unit="epoch")  # noqa: E731
    x_train, x_test = xs
    raw = sweep_run.run(
        name, points, cfg, x_train, ds.y_train, x_test, ds.y_test, progress=bar, images=images
    )
    res = {
        **sweep_run.summarise(name, points, raw),
        "seeds": cfg.seeds,
        "data": ds.identity(),
        **({"inputs_data": inputs_data} if inputs_data else {}),
        "wall_seconds": time.perf_counter() - start,
        "versions": results.versions(),
    }
    results.write_json(out / "results.json", res)
    figures.sweep_figure(res, out)
    tracked = any(p.track for p in points)
    if tracked:
        figures.alignment_figure(res, out)
    print(sweep_run.table(res))
    print(f"wrote {out}/config.json, results.json, sweep.pdf, sweep.png")
    if tracked:
        print(f"wrote {out}/alignment.pdf, alignment.png")
    return out


def _input_images(args, points, ds: data.Dataset, n_noise: int) -> tuple[dict, dict]:
    """uint8 training images (N×784) of each dataset the ``inputs`` points name, and their
    identities: --dataset's own, others through `data.load` from --inputs-data-dir."""
    from . import sweeps

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


def run_plot(args: argparse.Namespace) -> Path:
    """Redraw a finished run's figure (and print its table; a toy run's ``summary.md`` too)
    from ``DIR/results.json``."""
    from . import figures

    out = Path(args.dir)
    path = out / "results.json"
    if not path.is_file():
        raise UsageError(f"{path} not found: pass the --out folder of a finished run")
    try:
        res = results.read_json(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path} is not a readable results file ({err})") from err
    if "conditions" in res:
        paths = figures.transfer_figure(res, out)
        print(figures.transfer_table(res))
    elif "alignment_shared" in res:
        paths = figures.theorem_figure(res, out)
    elif "sweep" in res:
        from . import sweep_run

        paths = figures.sweep_figure(res, out)
        if any("alignment" in p["diagnostics"] for p in res["points"]):
            paths += figures.alignment_figure(res, out)
        print(sweep_run.table(res))
    elif res.get("kind") == "across-sweeps":
        paths = figures.across_sweeps_figure(res, out)
    elif res.get("kind") == "llm":
        paths = figures.preference_figure(res, out)
    elif res.get("kind") == "llm_toy":
        from .llm import toy_report

        cfg = toy_report.config_of(out)
        paths = [*figures.toy_figure(res, out), toy_report.write_summary(out, res, cfg)]
    else:
        raise UsageError(f"{path} holds neither `mnist`, `theorem`, `sweep` nor `llm` results")
    print("wrote " + ", ".join(str(p) for p in paths))
    return out


def build_parser(preset: str = "default") -> argparse.ArgumentParser:
    """The parser; ``preset`` is the preset whose values the help texts show."""
    from . import single_step, transfer

    parser = _Parser(
        prog="sublim-jax",
        description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    theorem = sub.add_parser(
        "theorem",
        help="the single-gradient-step theorem on the paper's MNIST network",
        description="Sweep ε and study ≥ 100 seeds: Δθ_S·Δθ_T vs εA, shared vs different init.",
    )
    presets = ("smoke", "default")
    _common_flags(theorem, presets, "runs/theorem")
    add_config_flags(theorem, single_step.TheoremConfig, preset if preset in presets else "default")
    theorem.set_defaults(run=run_theorem, parser=theorem)
    mnist = sub.add_parser(
        "mnist",
        help="the auxiliary-logit transfer experiment (the paper's Figure 10)",
        description="Teachers on MNIST, students on noise via aux-only or all logits, same or "
        "different init; test accuracy of all six conditions over many seeds.",
    )
    presets = ("smoke", "default", "paper")
    _common_flags(mnist, presets, "runs/mnist")
    mnist.add_argument(
        "--resume", action="store_true", help="reuse finished chunks (e.g. teachers) from --out"
    )
    add_config_flags(mnist, transfer.TransferConfig, preset if preset in presets else "default")
    mnist.set_defaults(run=run_mnist, parser=mnist)
    from .llm import commands as llm_commands

    llm_commands.add_parser(sub, preset)
    _add_sweep(sub, preset)
    plot = sub.add_parser(
        "plot",
        help="redraw a run's figure from its saved results.json",
        description="Redraw the PDF and PNG figure of a finished `mnist` or `theorem` run from "
        "DIR/results.json, without rerunning anything (e.g. after restyling).",
    )
    plot.add_argument("dir", metavar="DIR", help="the --out folder of a finished run")
    plot.set_defaults(run=run_plot, parser=plot)
    return parser


def _add_sweep(sub, preset: str) -> None:
    from . import sweeps

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
        "optimizer 'sgd@0.1,adam@3e-4', architecture '64x2,256x3', dose '1000,60000x1', "
        "teacher-strength '0,0.1,steps=3,5', alignment-over-training '0,lambda=1'",
    )
    sweep.add_argument(
        "--inputs-data-dir",
        metavar="DIR",
        help="folder of the image datasets an `inputs` grid names besides --dataset (e.g. "
        "fashion-mnist; the same lookup as --data-dir; default: --data-dir's)",
    )
    _common_flags(sweep, sweeps.PRESETS, SWEEP_OUT)
    add_config_flags(sweep, sweeps.SweepConfig, preset if preset in sweeps.PRESETS else "default")
    sweep.set_defaults(run=run_sweep, parser=sweep)


def _common_flags(p: argparse.ArgumentParser, presets: Sequence[str], out: str) -> None:
    p.add_argument(
        "--preset",
        choices=presets,
        default="default",
        help="starting config; put it before --help to see its values",
    )
    p.add_argument("--out", default=out, metavar="DIR", help=f"output folder (default: {out})")
    p.add_argument(
        "--dataset",
        choices=data.DATASETS,
        default="mnist",
        help="mnist and fashion-mnist are verified by the sha256 of each file; idx is any "
        "28x28 10-class IDX set from --data-dir, checked for structure only (default: mnist)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"folder with the four IDX files, or with a subfolder named after the dataset "
        f"(default: ${data.ENV_VAR}, else ~/.cache/sublim_jax/DATASET, downloaded there when "
        "missing)",
    )


def _preset_in(argv: Sequence[str]) -> str:
    """The ``--preset`` value among ``argv`` (for help texts), else ``default``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="default")
    return pre.parse_known_args(argv)[0].preset


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_preset_in(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    runner: Callable[[argparse.Namespace], Path] = args.run
    try:
        runner(args)
    except UsageError as err:
        print(f"sublim-jax {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except data.DataError as err:
        print(f"sublim-jax {args.command}: data error: {err}", file=sys.stderr)
        return EXIT_DATA
    except FloatingPointError as err:
        print(f"sublim-jax {args.command}: training error: {err}", file=sys.stderr)
        return EXIT_TRAIN
    return 0


if __name__ == "__main__":
    sys.exit(main())
