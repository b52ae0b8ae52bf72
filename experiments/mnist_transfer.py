"""Does a student learn MNIST from a teacher's auxiliary logits on pure noise? (Figure 10)

Question: a teacher (784-256-256-13 MLP) learns MNIST through its 10 class logits; a student
distils only the teacher's 3 auxiliary logits, on uniform noise images, never seeing a digit or
a class logit. Does the student's (untrained) class readout become accurate, and only when the
student starts from the teacher's initialisation? (Cloud et al. 2025, §6.2, Figure 10.)

Command (100 seeds, the paper's hyperparameters; paper §6.2):

    uv run sublim-jax mnist --preset paper --out experiments/results/mnist_paper

or ``uv run python experiments/mnist_transfer.py`` (same thing; extra flags are passed on).
Add ``--resume`` to continue an interrupted run from its finished chunks.

Expected runtime: ~22 min on an uncontended 2-core CPU (2.45 TFLOP per seed at ~195 GFLOP/s,
benchmarks/mnist_speed.py), ~45–50 min when the CPU is shared; peak host memory ~1.8 GB.
Expected result (paper, read off Figure 10): reference ~0.10, teacher ~0.94, aux-only same init
~0.53 (CI ~0.51–0.55), all-logits same init ~0.91, aux-only different init ~0.10 (chance),
all-logits different init ~0.74.
Measured (experiments/results/mnist_paper, 100 seeds, 40 min on a shared 2-core CPU): 0.102,
0.944, 0.538 [0.514, 0.561], 0.910, 0.104 [0.099, 0.110], 0.733 [0.723, 0.743].
Writes config.json, results.json, metrics.jsonl, transfer.pdf/png; the README table comes from
``uv run python experiments/mnist_table.py experiments/results/mnist_paper/results.json``.
"""

import sys

from sublim_jax.cli import main as cli

ARGV = ["mnist", "--preset", "paper", "--out", "experiments/results/mnist_paper"]

if __name__ == "__main__":
    sys.exit(cli.main([*ARGV, *sys.argv[1:]]))
