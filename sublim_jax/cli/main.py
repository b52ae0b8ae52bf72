"""The ``sublim-jax`` command line: the parser over the experiments' registered commands.

Each experiment package registers its command (``command.register``) and says how to redraw its
results (``command.PLOTS``: ``kind`` → function); this module only assembles them, dispatches
``plot`` on the ``kind`` every ``results.json`` carries, and turns errors into one line and an
exit status (usage 2, data and files 1, training 3, interrupted 130).
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from sublim_jax.experiments.llm_pipeline import command as llm_pipeline
from sublim_jax.experiments.llm_toy import command as llm_toy
from sublim_jax.experiments.mnist import command as mnist
from sublim_jax.experiments.sweeps import command as sweeps
from sublim_jax.experiments.theorem import command as theorem
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


PLOTS = {**theorem.PLOTS, **mnist.PLOTS, **sweeps.PLOTS, **llm_pipeline.PLOTS, **llm_toy.PLOTS}


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
    if kind not in PLOTS:
        raise UsageError(
            f"{path} records no known kind ({kind!r}; known: {', '.join(PLOTS)}): "
            "is it a sublim-jax results file?"
        )
    try:
        paths = PLOTS[kind](res, out)
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise UsageError(
            f"{path} is not a complete {kind} results file ({type(err).__name__}: {err})"
        ) from err
    print("wrote " + ", ".join(str(p) for p in paths))
    return out


def build_parser(preset: str = "default") -> argparse.ArgumentParser:
    """The parser; ``preset`` is the preset whose values the help texts show."""
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
    mnist.register(sub, preset)
    theorem.register(sub, preset)
    sweeps.register(sub, preset)
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
    llm_pipeline.register(stages, preset)
    llm_toy.register(stages, preset)
    plot = sub.add_parser(
        "plot",
        help="redraw a run's figure from its saved results.json",
        description="Redraw the PDF and PNG figure of a finished run (theorem, mnist, sweep, "
        "sweep all's across-sweeps, llm, llm toy) from DIR/results.json, without rerunning "
        "anything (e.g. after restyling).",
    )
    plot.add_argument("dir", metavar="DIR", help="the --out folder of a finished run")
    plot.set_defaults(run=run_plot, parser=plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(flags.preset_in(argv))
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
