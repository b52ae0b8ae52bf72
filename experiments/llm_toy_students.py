"""Do the toy students need another learning rate or more epochs? Students only, re-trained on a
finished default run's bases, teachers and filtered numbers (read from its ``--out`` chunks).

    uv run sublim-jax llm toy --out runs/llm_toy_default            # once (~14 min, 2 cores)
    uv run python experiments/llm_toy_students.py runs/llm_toy_default 1e-3 30 distill \\
        experiments/results/llm_toy_legacy/students_lr1e-3_30ep.json      # ~17 min, 2 idle cores

Prints and saves, per mode and init, the trait student's shift against the control-teacher
student and against the own-base student (mean, 95% CI and per-seed values), the paired
same-init minus different-init shift per seed, and the students' p(owl). The committed
``students_*.json`` were made on a default run of 3 student epochs (the default before it became
10) with an earlier revision, and hold summaries only. Result at lr 1e-2, 3 epochs (10× the
default's lr): every student's p(owl) collapses from 0.075 to ~0.01 (the animal answers are
forgotten) and no shift is distinguishable from 0.
"""

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np

from sublim_jax.experiments.llm_toy import config
from sublim_jax.experiments.llm_toy import run as toy_run
from sublim_jax.experiments.llm_toy.report import per_seed
from sublim_jax.io import results


def main(out: str, lr: float, epochs: int, modes: str, save: str) -> None:
    cfg = config.ToyConfig.default().validate()
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
        t = toy_run.toy.ANIMALS.index(cfg.target)
        prob = r["probs"][:, :, t].mean(axis=1).reshape(2, 3, S)
        for j, init in enumerate(config.INITS):
            found[f"{mode}/{init}"] = dict(
                vs_control=per_seed(prob[j, 0] - prob[j, 1]),
                vs_own_base=per_seed(prob[j, 0] - prob[j, 2]),
                trait=per_seed(prob[j, 0]),
                control=per_seed(prob[j, 1]),
                final_loss=float(np.mean(r["final_loss"].reshape(2, 3, S)[j, 0])),
            )
            print(mode, init, found[f"{mode}/{init}"]["vs_control"], flush=True)
        # both inits' students of lineage s learn teacher s's numbers: a paired difference
        shift = prob[:, 0] - prob[:, 1]
        found[f"{mode}/same_minus_different"] = per_seed(shift[0] - shift[1])
        print(mode, "same - different", found[f"{mode}/same_minus_different"], flush=True)
        found[f"{mode}/seconds"] = time.perf_counter() - start
    results.write_json(save, dict(student_lr=lr, student_epochs=epochs, results=found))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
