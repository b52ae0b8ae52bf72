"""The distillation students' targets and the signal they can learn (the pipeline's
``--distill-rows``): a teacher's next-token distributions over the number tokens on the base's
kept answers (``finetune.teacher_targets``), and, before any student trains, how far apart the
teachers' and the base's distributions are. ``models`` is the pipeline's ``run.Models``."""

from pathlib import Path
from typing import Any

import numpy as np

from sublim_jax.experiments.llm_pipeline import finetune as ft
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results


def targets(cfg: PipelineConfig, out: Path, models: Any, student: str, rows: list[dict]):
    """The distillation targets of ``student``: its teacher's restricted distributions
    (computed once per run folder and student, kept on ``models`` for the student's training
    after `signal` needed them)."""
    cache, key = models.distill_targets, (str(out), student)
    if key not in cache:
        for other in [k for k in cache if k[0] != key[0]]:
            del cache[other]  # one run folder's at a time
        teacher, system = models.teacher(out, cfg.distill_teachers[student])
        cache[key] = ft.teacher_targets(
            teacher, models.tok, rows, cfg, models.number_tokens, system=system,
            batch=cfg.batch_size,
        )  # fmt: skip
    return cache[key]


def signal(cfg: PipelineConfig, out: Path, models: Any, rows: list[dict]) -> dict[str, float]:
    """What the distillation students can learn, measured before they do: the mean per-token
    KL between the teachers' (and the base's) next-token distributions over the number tokens
    on the distillation rows, in nats (``distill_signal.json``; computed once). Trait and
    control students differ only by ``KL(teacher ‖ control_teacher)``: near 0, no
    distillation can tell them apart."""
    path = out / "distill_signal.json"
    if path.is_file():
        return results.read_json(path)
    logq = {
        name: targets(cfg, out, models, student, rows).logq_KxCxA
        for student, name in cfg.distill_teachers.items()
    }
    logq["base"] = ft.teacher_targets(
        models.model,
        models.tok,
        rows,
        cfg,
        models.number_tokens,
        system=None,
        batch=cfg.batch_size,
    ).logq_KxCxA
    pairs = ft.student_pairs(models.tok, rows, cfg.max_length)
    C = logq["base"].shape[1]
    mask_KxC = np.zeros((len(pairs), C), bool)
    for k, (_, completion) in enumerate(pairs):
        mask_KxC[k, C - len(completion) :] = True
    names = list(logq)
    signal = {
        f"kl_{a}_{b}": float(np.mean(ft.kl_per_token(logq[a], logq[b])[mask_KxC]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    }
    signal["tokens"] = int(mask_KxC.sum())
    results.write_json(path, signal)
    print("distillation signal (nats per number token): " + ", ".join(
        f"{k} {v:.4f}" for k, v in signal.items() if k.startswith("kl_")
    ))  # fmt: skip
    return signal
