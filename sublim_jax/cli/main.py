"""The ``sublim-jax`` command line: the parser over the experiments' registered commands.

Each experiment package registers its command (``command.register``) and says how to redraw its
results (``command.PLOTS``: ``kind`` → function); this module only assembles them, dispatches
``plot`` on the ``kind`` every ``results.json`` carries, and turns errors into one line and an
exit status (usage 2, data and files 1, training 3, interrupted 130).
"""

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sublim_jax.io import data, flags, results
from sublim_jax.io.flags import EXIT_DATA, EXIT_INTERRUPT, EXIT_TRAIN, EXIT_USAGE, UsageError

USAGE = """Subliminal learning, checked numerically and reproduced (Cloud et al., arXiv 2507.14805).

commands:
  mnist     the auxiliary-logit transfer experiment (the paper's Figure 10): teachers learn
            MNIST, students imitate them on noise images, same vs different initialisation
  theorem   the single-gradient-step theorem on the same network: Δθ_S·Δθ_T against εA over
            a range of ε and many seeds, shared vs different initialisation
  sweep     grids over the mnist experiment (init distance, layer sharing, aux count,
            optimiser, loss, inputs, defences, weight decay, architecture, dose, batch size,
            teacher strength, alignment over training): when does transfer happen, and does
            the one-step alignment predict it? `sweep --list` names them; `sweep all` runs all
  llm       the language-model pipeline (the paper's §3): teacher numbers, filter, students
            and controls, animal-preference scores (`llm run --preset smoke` runs on a CPU)
  plot      redraw the figure of a finished run from its results.json (no retraining)

Each run writes config.json, results.json and a PDF + PNG figure into --out.
`sublim-jax COMMAND --help` lists every flag; `sublim-jax COMMAND --preset paper --help`
shows the values that preset uses."""


# command -> the experiment modules that register it, imported only when the command line needs
# them: `sublim-jax mnist` does not pay for importing the language-model code (Flax NNX, ...)
COMMANDS = {
    "mnist": ("mnist",),
    "theorem": ("theorem",),
    "sweep": ("sweeps",),
    "llm": ("llm_pipeline", "llm_toy"),
    "plot": (),
}


def _modules(command: str | None = None) -> dict:
    """The ``command`` modules of ``command`` (all of them for None), by package name."""
    names = COMMANDS[command] if command else [n for ns in COMMANDS.values() for n in ns]
    return {n: importlib.import_module(f"sublim_jax.experiments.{n}.command") for n in names}


def plots() -> dict:
    """``kind`` → the function redrawing it, over every experiment."""
    return {kind: fn for module in _modules().values() for kind, fn in module.PLOTS.items()}


def run_plot(args: argparse.Namespace) -> Path:
    """Redraw a finished run's figure (and print its table; a toy run's ``summary.md`` too)
    from ``DIR/results.json``, by the ``kind`` it records."""
    out = Path(args.dir)
    if out.name == "results.json" and out.is_file():  # the file itself, not its folder
        out = out.parent
    path = out / "results.json"
    if not path.is_file():
        raise UsageError(f"{path} not found: pass the --out folder of a finished run")
    try:
        res = results.read_json(path)
    except (OSError, ValueError) as err:
        raise UsageError(f"{path} is not a readable results file ({err})") from err
    kind = res.get("kind") if isinstance(res, dict) else None
    known = plots()
    if kind not in known:
        raise UsageError(
            f"{path} records no known kind ({kind!r}; known: {', '.join(known)}): "
            "is it a sublim-jax results file?"
        )
    try:
        paths = known[kind](res, out)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise UsageError(
            f"{path} is not a complete {kind} results file ({type(err).__name__}: {err})"
        ) from err
    print("wrote " + ", ".join(str(p) for p in paths))
    return out


def build_parser(preset: str = "default", only: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``preset`` is the preset whose values the help texts show; ``only``: the one
    command to register (None: every command)."""
    parser = flags.Parser(
        prog="sublim-jax",
        usage="sublim-jax [-h] COMMAND ...",
        description=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(  # listed once, in USAGE
        dest="command", required=True, parser_class=flags.Parser, metavar="COMMAND",
        prog="sublim-jax",
        help=argparse.SUPPRESS,
    )  # fmt: skip
    wanted = lambda c: only is None or c == only  # noqa: E731
    for command in ("mnist", "theorem", "sweep"):
        if wanted(command):
            _modules(command)[COMMANDS[command][0]].register(sub, preset)
    if wanted("llm"):
        _register_llm(sub, preset)
    if wanted("plot"):
        _register_plot(sub)
    return parser


def _register_llm(sub, preset: str) -> None:
    llm = sub.add_parser(
        "llm",
        help="the LLM number-transfer pipeline (the paper's §3): generate, filter, finetune, "
        "evaluate, run",
        description="Teacher numbers → filter → students (trait, base-numbers and shuffled "
        "controls) → animal-preference scores. `run` does every stage; each stage resumes.",
    )
    stages = llm.add_subparsers(
        dest="stage", required=True, parser_class=flags.Parser, metavar="STAGE"
    )
    for module in _modules("llm").values():
        module.register(stages, preset)


def _register_plot(sub) -> None:
    plot = sub.add_parser(
        "plot",
        help="redraw a run's figure from its saved results.json",
        description="Redraw the PDF and PNG figure of a finished run (theorem, mnist, sweep, "
        "sweep all's across-sweeps, llm, llm toy) from DIR/results.json, without rerunning "
        "anything (e.g. after restyling).",
    )
    plot.add_argument("dir", metavar="DIR", help="the --out folder of a finished run")
    plot.set_defaults(run=run_plot, parser=plot)


CACHE_ENV = "SUBLIM_JAX_CACHE"


def enable_compilation_cache() -> str | None:
    """Keep the compiled XLA programs across runs (JAX's persistent compilation cache), so that a
    second run of a command skips most of its compilation: in ``$SUBLIM_JAX_CACHE``, else
    ``$XDG_CACHE_HOME/sublim_jax/xla`` (``~/.cache/...``); ``SUBLIM_JAX_CACHE=off`` turns it off.
    Programs that compiled in under half a second are not kept; the folder is capped at 1 GiB
    (least recently used first out). Returns the folder, or None when off or set elsewhere."""
    import jax

    where = os.environ.get(CACHE_ENV)
    if where is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "sublim_jax", "xla")
    if where.lower() in ("", "off", "0", "none") or jax.config.jax_compilation_cache_dir:
        return None
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_compilation_cache_max_size", 1 << 30)
    return where


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    enable_compilation_cache()
    only = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(flags.preset_in(argv), only)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    command = " ".join(filter(None, (args.command, getattr(args, "stage", None))))
    try:
        args.run(args)
    except (UsageError, results.ResumeError) as err:
        print(f"sublim-jax {command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except data.DataError as err:
        print(f"sublim-jax {command}: data error: {err}", file=sys.stderr)
        return EXIT_DATA
    except FloatingPointError as err:
        print(f"sublim-jax {command}: training error: {err}", file=sys.stderr)
        return EXIT_TRAIN
    except BrokenPipeError:  # output piped into e.g. `head`, which has exited: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_DATA
    except OSError as err:  # --out unwritable, a read-only file system, a full disk
        where = f": {err.filename}" if err.filename else ""
        print(f"sublim-jax {command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return EXIT_DATA
    except KeyboardInterrupt:
        hint = " (finished chunks are kept: rerun with --resume)" if "resume" in args else ""
        print(f"sublim-jax {command}: interrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPT
    return 0


if __name__ == "__main__":
    sys.exit(main())
