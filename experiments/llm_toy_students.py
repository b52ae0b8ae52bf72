"""Do the toy students need another learning rate or more epochs? Students only, re-trained on a
finished default run's bases, teachers and filtered numbers (read from its ``--out`` chunks).

    uv run sublim-jax llm toy --out runs/llm_toy_default            # once (~40 min shared CPU)
    uv run python experiments/llm_toy_students.py runs/llm_toy_default 1e-2 3 distill,sampled \\
        experiments/results/llm_toy/students_lr1e-2.json           # ~16 min on a shared CPU

Prints and saves, per mode and init, the trait student's shift against the control-teacher
student and against the own-base student (mean and 95% CI over the seeds), and the students'
p(owl). Result at lr 1e-2, 3 epochs (10× the default's lr): every student's p(owl) collapses
from 0.075 to ~0.01 (the animal answers are forgotten) and no shift is distinguishable from 0.
"""

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np

from sublim_jax import results, stats
from sublim_jax.llm import toy_run


def main(out: str, lr: float, epochs: int, modes: str, save: str) -> None:
    cfg = toy_run.ToyConfig.default().validate()
    stamp = results.fingerprint({"config": results.jsonable(cfg)})
    p = toy_run.prepare(cfg, results.ChunkStore(Path(out) / "chunks", stamp, read=True))
    if p["timings"]:
        raise SystemExit(f"{out} holds no finished default run (recomputed {p['timings']})")
    setup = p["setup"]
    setup.cfg = dataclasses.replace(cfg, student_lr=lr, student_epochs=epochs)
    S, found = cfg.seeds, {}
    for i, mode in enumerate(modes.split(",")):
        start = time.perf_counter()
        args = (setup, mode, p["bases"], p["models"], p["sets"], p["index"], p["deltas"])
        r = toy_run.students(*args, jax.random.fold_in(p["student_key"], i))
        prob = r["probs"][:, :, 0].mean(axis=1).reshape(2, 3, S)
        for j, init in enumerate(toy_run.INITS):
            found[f"{mode}/{init}"] = dict(
                vs_control=stats.summary(prob[j, 0] - prob[j, 1]),
                vs_own_base=stats.summary(prob[j, 0] - prob[j, 2]),
                trait=stats.summary(prob[j, 0]),
                control=stats.summary(prob[j, 1]),
                final_loss=float(np.mean(r["final_loss"].reshape(2, 3, S)[j, 0])),
            )
            print(mode, init, found[f"{mode}/{init}"], flush=True)
        found[f"{mode}/seconds"] = time.perf_counter() - start
    results.write_json(save, dict(student_lr=lr, student_epochs=epochs, results=found))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
