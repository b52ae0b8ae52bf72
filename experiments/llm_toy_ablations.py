"""Why does ``llm toy`` show so little transfer? Each design choice as a flag, one run each.

    uv run python experiments/llm_toy_ablations.py              # every run not yet finished
    uv run python experiments/llm_toy_ablations.py --list       # names and flags
    uv run python experiments/llm_toy_ablations.py --only NAME[,NAME] [--seeds N]
    uv run python experiments/llm_toy_readme.py                 # then regenerate the tables

Each run is ``sublim-jax llm toy FLAGS --out experiments/results/llm_toy_ablations/NAME
--resume``: a killed run resumes from its finished stages, a finished one is skipped. ~10-25 min
per run at 10 seeds on 2 idle cores (the table in ``docs/llm_toy.md`` gives each run's minutes).
``legacy`` is the design every toy run before issue 21 used; ``legacy_fan_in`` changes its
initialisation alone, and each ``fan_in_*`` run adds one change to the run it extends;
``default`` is today's default preset, and each ``default_*`` run puts one of its choices back
to the legacy value (leave-one-out), so both directions of a choice are measured. The tables in
``docs/llm_toy.md`` are generated from these folders.
"""

import argparse
import sys
import time
from pathlib import Path

from sublim_jax.cli import main as cli

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS / "llm_toy_ablations"
HOMES = {"legacy": RESULTS / "llm_toy_legacy", "default": RESULTS / "llm_toy"}  # README's runs
FAN_IN = ["--init", "fan_in", "--init-std", "1", "--init-embed-std", "0.05", "--init-depth"]
LEGACY = [
    *("--init", "normal", "--init-std", "0.02", "--init-embed-std", "0.02", "--no-init-depth"),
    *("--answer-prefix", "--questions", "50", "--number-data", "walk", "--schedule", "linear"),
    *("--clip-norm", "1", "--no-coupled"),
]
RUNS: dict[str, list[str]] = {
    "legacy": LEGACY,
    "default": [],
    "legacy_fan_in": [*LEGACY, *FAN_IN],
    "fan_in_coupled": [*LEGACY, *FAN_IN, "--coupled"],
    "fan_in_coupled_no_prefix": [*LEGACY, *FAN_IN, "--coupled", "--no-answer-prefix"],
    "fan_in_coupled_no_prefix_q1": [
        *(LEGACY + FAN_IN),
        *("--coupled", "--no-answer-prefix", "--questions", "1"),
    ],
    "fan_in_coupled_no_prefix_rows1024": [
        *(LEGACY + FAN_IN),
        *("--coupled", "--no-answer-prefix", "--prompts", "1024", "--student-epochs", "5"),
    ],
    "fan_in_coupled_no_prefix_pretrain200": [
        *(LEGACY + FAN_IN),
        *("--coupled", "--no-answer-prefix", "--pretrain-steps", "200"),
    ],
    "fan_in_coupled_no_prefix_seeded": [
        *(LEGACY + FAN_IN),
        *("--coupled", "--no-answer-prefix", "--number-data", "seeded"),
    ],
    "default_normal_init": [
        *("--init", "normal", "--init-std", "0.02", "--init-embed-std", "0.02", "--no-init-depth")
    ],
    "default_normal_kernels": ["--init", "normal", "--init-std", "0.02", "--no-init-depth"],
    "default_embed_0.02": ["--init-embed-std", "0.02"],
    "default_independent": ["--no-coupled"],
    "default_prefix": ["--answer-prefix"],
    "fan_in_coupled_no_prefix_constant": [
        *(LEGACY + FAN_IN),
        *("--coupled", "--no-answer-prefix", "--schedule", "constant", "--clip-norm", "0"),
    ],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated run names (default: all)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds per run (default 10)")
    parser.add_argument("--list", action="store_true", help="print the runs and exit")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        parser.error(f"unknown runs {', '.join(unknown)}; choose from {', '.join(RUNS)}")
    for name in names:
        flags = [*RUNS[name], "--seeds", str(args.seeds)]
        if args.list:
            print(name, " ".join(flags))
            continue
        out = HOMES.get(name, ROOT / name)
        if (out / "results.json").is_file():
            print(f"{name}: finished, skipped")
            continue
        start = time.perf_counter()
        code = cli.main(["llm", "toy", *flags, "--out", str(out), "--resume"])
        print(f"{name}: exit {code}, {(time.perf_counter() - start) / 60:.1f} min", flush=True)
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
