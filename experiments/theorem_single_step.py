"""Does one gradient step on a teacher's outputs move the student toward the teacher's update?

Question: on the paper's MNIST network (784-256-256-13), take a teacher step ε on L_T =
cross-entropy of the 10 class logits of MNIST images, then one student step on the teacher's 3
auxiliary logits for uniform-noise images (softmax CE, paper §6.1). With a shared init, is
Δθ_S·Δθ_T = εA + O(ε²) with A ≥ 0, and does L_T fall? With a different init, what is left of
the guarantee?

Command:  uv run python experiments/theorem_single_step.py --out experiments/results/theorem
          (the same as `uv run sublim-jax theorem --out experiments/results/theorem`)
Runtime:  about 1 minute on a 2-core CPU (100 seeds, float64).
Expected: shared init: Δθ_S·Δθ_T on the εA line over ε ∈ [1e-8, 1e-1], remainder slope 2,
          cos(Δθ_S, Δθ_T) > 0 and L_T lower for every seed; different init: an O(1) alignment
          independent of ε, cosines of both signs around 0, L_T lower for about half the seeds.
Feeds:    paper §6.1 / Appendix C (the theorem behind Fig. 10); redraw with `sublim-jax plot DIR`.
"""

import sys

from sublim_jax.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["theorem", *sys.argv[1:]]))
