"""Config dataclasses as command-line flags, the flags every experiment shares, usage errors.

Every config field is a flag (``--eps-min 1e-9``); ``--preset`` picks the starting config and
``--help`` after it shows that preset's values. Bad input ends with one line on stderr and a
non-zero exit status (`UsageError`: 2), before anything is written.
"""

import argparse
import dataclasses
import math
import types
from collections.abc import Collection, Sequence
from typing import Any, Union, get_args, get_origin, get_type_hints

from sublim_jax.io import data

EXIT_USAGE, EXIT_DATA, EXIT_TRAIN, EXIT_INTERRUPT = 2, 1, 3, 130


class UsageError(Exception):
    """Bad flags or values: reported on one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors name the valid options and exit with `EXIT_USAGE`, and
    which takes no abbreviated flags (``--hid 32`` is an error, not ``--hidden 32``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        if "unrecognized arguments" in message:
            valid = sorted(o for a in self._actions for o in a.option_strings if o.startswith("--"))
            message += f" (valid options: {' '.join(valid)})"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def flag(name: str) -> str:
    """The flag of a config field: ``eps_min`` → ``--eps-min``."""
    return "--" + name.replace("_", "-")


def _scalar_type(hint: Any) -> type:
    if get_origin(hint) in (Union, types.UnionType):
        hint = next(a for a in get_args(hint) if a is not type(None))
    return hint


def _holds(value: float, rule: str) -> bool:
    op, _, bound = rule.partition(" ")
    if op == "in":
        low, high = (float(b) for b in bound.split(".."))
        return low <= value <= high
    bound_value = float(bound)
    return {
        ">": value > bound_value,
        ">=": value >= bound_value,
        "<": value < bound_value,
        "<=": value <= bound_value,
    }[op]


def check_fields(cfg: Any, rules: dict[str, str]) -> None:
    """Raise ``ValueError`` naming the flag and the value when a numeric field of ``cfg`` is not
    finite, or breaks its rule (``"> 0"``, ``">= 1"``, ``"in 0..1"``, bounds inclusive)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{field_flag(f)} must be a finite number, got {value}")
        rule = rules.get(f.name)
        if rule is not None and not _holds(value, rule):
            raise ValueError(f"{field_flag(f)} must be {rule}, got {value}")


def field_flag(field: dataclasses.Field) -> str:
    """A config field's flag: ``--`` and its name with dashes, or the name its metadata gives
    (``metadata={"flag": "steps-per-call"}``) where the field's own name means something else in
    another command."""
    return flag(field.metadata.get("flag", field.name))


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def add_config_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    preset: str = "default",
    shown: Collection[str] | None = None,
) -> None:
    """One flag per dataclass field, default None (= keep the preset's value, shown in help).
    A field's ``aliases`` (old flag names) are accepted too. With ``shown``, only those fields'
    flags appear in the help; the others are accepted all the same."""
    hints, defaults = get_type_hints(cls), getattr(cls, preset)()
    group = parser.add_argument_group(f"{cls.__name__} fields (override the {preset!r} preset)")
    for field in dataclasses.fields(cls):
        kind = _scalar_type(hints[field.name])
        value = getattr(defaults, field.name)
        aliases = [flag(a) for a in field.metadata.get("aliases", ())]
        also = f"; also {', '.join(aliases)}, its old name" if aliases else ""
        help_ = f"{field.metadata.get('help', '')} ({preset}: {_shown(value)}{also})"
        help_ = help_.replace("%", "%%")  # argparse formats help with %
        if shown is not None and field.name not in shown:
            help_ = argparse.SUPPRESS
        names = (field_flag(field), *aliases)
        if kind is bool:
            group.add_argument(
                *names, dest=field.name, action=argparse.BooleanOptionalAction, help=help_
            )
        else:
            meta = field.metadata.get("flag", field.name).replace("-", "_").upper()
            group.add_argument(*names, dest=field.name, type=kind, metavar=meta, help=help_)


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
        name = field_flag(f)
        if isinstance(value, bool):
            parts.append(name if value else "--no-" + name.removeprefix("--"))
        else:
            parts += [name, str(value)]
    return " ".join(parts)


RUN_FIELDS = ("seeds", "chunk", "seed", "gen_batch", "eval_batch")  # which runs, how batched


def reduced_fields(
    cls: type, cfg: Any, reference: str = "paper", smaller_only: bool = False
) -> list[str]:
    """The flags of ``cfg``'s fields that make each model smaller or shorter than preset
    ``reference``'s (the paper's setup): every field that differs except `RUN_FIELDS`. A run
    with any is not comparable with the paper's numbers model for model. With
    ``smaller_only``, a field counts only when it is a number below the reference's (for an
    experiment whose reference is a default that larger presets grow from)."""
    base = getattr(cls, reference)()

    def shrinks(ours: Any, theirs: Any) -> bool:
        if not smaller_only:
            return ours != theirs
        numeric = isinstance(ours, int | float) and not isinstance(ours, bool)
        return numeric and ours < theirs

    return [
        field_flag(f)
        for f in dataclasses.fields(cls)
        if f.name not in RUN_FIELDS and shrinks(getattr(cfg, f.name), getattr(base, f.name))
    ]


def preset_in(argv: Sequence[str]) -> str:
    """The ``--preset`` value among ``argv`` (for help texts), else ``default``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="default")
    return pre.parse_known_args(argv)[0].preset


def add_preset_and_out(p: argparse.ArgumentParser, presets: Sequence[str], out: str) -> None:
    """``--preset`` (one of ``presets``, default ``default``) and ``--out`` (default ``out``)."""
    p.add_argument(
        "--preset",
        choices=presets,
        default="default",
        help="starting config; put it before --help to see its values",
    )
    p.add_argument("--out", default=out, metavar="DIR", help=f"output folder (default: {out})")


def add_run_folder_flags(p: argparse.ArgumentParser, resume: bool) -> None:
    """``--force`` (and ``--resume`` where a run can continue): what to do with an ``--out`` that
    already holds files. Without either, such a folder stops the run before anything is
    written."""
    group = p.add_mutually_exclusive_group()
    if resume:
        group.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --out: reuse its finished chunks (its config must match)",
        )
    group.add_argument(
        "--force",
        action="store_true",
        help="delete everything in --out first (a finished run there is lost)",
    )


def add_common_flags(p: argparse.ArgumentParser, presets: Sequence[str], out: str) -> None:
    """``--preset``, ``--out``, and the image dataset flags of the MNIST-family experiments."""
    add_preset_and_out(p, presets, out)
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


def choose_preset(preset: str, presets: Sequence[str]) -> str:
    """``preset`` when the command has it, else ``default`` (the preset its help texts show)."""
    return preset if preset in presets else "default"
