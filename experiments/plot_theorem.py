"""Redraw the theorem figure from a saved results.json (no recomputation).

Command: uv run python experiments/plot_theorem.py experiments/results/theorem
"""

import argparse
from pathlib import Path

from sublim_jax import figures, results

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="folder holding results.json")
    args = parser.parse_args()
    res = results.read_json(args.run_dir / "results.json")
    for path in figures.theorem_figure(res, args.run_dir):
        print(path)
