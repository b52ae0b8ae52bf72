"""Print the Markdown table (paper value, ours, 95% CI) of an MNIST transfer results.json.

uv run python experiments/mnist_table.py experiments/results/mnist_paper/results.json
"""

import sys

from sublim_jax.experiments.mnist import report
from sublim_jax.io import results

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} RESULTS_JSON")
    print(report.transfer_table(results.read_json(sys.argv[1])))
