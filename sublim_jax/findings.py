"""Across sweeps: does the theorem's one-step alignment predict multi-step transfer?

Every sweep point records, for its aux-only students (same and different init), the cosine of
the first update with the teacher's total update Δθ_T (`sweeps.first_step_cosines`) and the
final test accuracy. ``collect`` turns a set of sweep results into one row per (point, init);
``rank_correlation`` is Spearman's ρ between step-0 cosine and transfer (aux-only accuracy minus
the untrained reference), with a percentile bootstrap CI over rows. ``tables`` renders each
sweep's numbers (mean [95% CI]) as Markdown for ``experiments/FINDINGS.md``, and ``fill``
rewrites only the generated blocks of that file, so its prose stays the author's.
No I/O here beyond strings: the script in ``experiments/`` reads and writes.
"""

import itertools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from sublim_jax import results

INITS = {"same": "aux_same_init", "diff": "aux_diff_init"}
N_BOOT = 4000


def _reference(res: Mapping, point: Mapping) -> float:
    """The untrained accuracy the point's students start from (per point where teachers differ)."""
    fixed = point.get("teacher", res["fixed"])
    return float(fixed["reference"]["mean"])


def collect(results: Iterable[Mapping]) -> list[dict]:
    """One row per sweep point and init: step-0 cosine and aux-only transfer (acc. − reference).

    Students whose per-seed accuracies and cosines repeat another row of the same sweep (the
    different-init students of points that change only the same-init ones) are one run: kept once.
    """
    rows, seen = [], set()
    for res in results:
        for pt in res["points"]:
            ref = _reference(res, pt)
            for init, student in INITS.items():
                acc = pt["conditions"][f"student_{student}"]["accuracy"]
                cos0 = pt["diagnostics"]["cosine_step0"][f"update_{student}"]["values"]
                run = (res["sweep"], init, tuple(acc), tuple(cos0))
                if run in seen:  # e.g. the different-init students of every σ: one run
                    continue
                seen.add(run)
                mean = float(np.mean(acc))
                rows.append(
                    {
                        "sweep": res["sweep"],
                        "label": pt["label"],
                        "init": init,
                        "cos0": float(np.mean(cos0)),
                        "accuracy": mean,
                        "transfer": mean - ref,
                    }
                )
    return rows


def ranks(x) -> np.ndarray:
    """Ranks 1..n of ``x`` along the last axis, tied values given their average rank."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        _, inverse, counts = np.unique(row, return_inverse=True, return_counts=True)
        out[i] = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    return out.reshape(x.shape)


def spearman(x, y) -> np.ndarray:
    """Spearman's rank correlation of ``x`` and ``y`` along the last axis (batched)."""
    rx, ry = ranks(x), ranks(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant input: nan, no warning
        return (rx * ry).sum(-1) / np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))


def rank_correlation(x, y, *, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """ρ with a 95% percentile bootstrap CI (rows resampled with replacement), and n."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError(f"need two equal 1-D arrays of ≥ 3 values, got {x.shape} and {y.shape}")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    boot = spearman(x[idx], y[idx])
    boot = boot[np.isfinite(boot)]  # a resample of constant values has no correlation
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"rho": float(spearman(x, y)), "ci95": [float(lo), float(hi)], "n": int(x.size)}


def _cell(summary: Mapping, fmt: str = ".3f") -> str:
    lo, hi = summary["ci95"]
    return f"{summary['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def sweep_table(res: Mapping) -> str:
    """Markdown: per point the four students' accuracy and the aux-only step-0 cosines, with CIs
    (and the point's teacher where teachers differ between points)."""
    per_teacher = res.get("teacher_groups", 1) > 1
    head = "| point | aux same | aux diff | all same | all diff | cos₀ same | cos₀ diff |"
    rule = "| --- | --- | --- | --- | --- | --- | --- |"
    if per_teacher:
        head, rule = head + " teacher | untrained |", rule + " --- | --- |"
    rows = [head, rule]
    for pt in res["points"]:
        c, d = pt["conditions"], pt["diagnostics"]["cosine_step0"]
        cells = [pt["label"]]
        cells += [_cell(c[f"student_{s}"]) for s in ("aux_same_init", "aux_diff_init")]
        cells += [_cell(c[f"student_{s}"]) for s in ("all_same_init", "all_diff_init")]
        cells += [_cell(d[f"update_{s}"], "+.4f") for s in INITS.values()]
        if per_teacher:
            cells += [_cell(pt["teacher"][k]) for k in ("teacher", "reference")]
        rows.append("| " + " | ".join(cells) + " |")
    fixed = res["fixed"]
    models = (
        "teachers and untrained references per point"
        if per_teacher
        else f"teacher {_cell(fixed['teacher'])}, untrained reference {_cell(fixed['reference'])}"
    )
    minutes = res.get("wall_seconds", float("nan")) / 60
    rows.append(f"\n{fixed['teacher']['n']} seeds; {models}; {minutes:.1f} min.")
    if "best_lr" in res:
        best = ", ".join(res["best_lr"].values())
        rows.append(f"Best lr per optimiser (all-logits, same init): {best}.")
    for pt in res["points"]:
        if "alignment" in pt["diagnostics"]:
            rows.append(alignment_text(pt["label"], pt["diagnostics"]["alignment"]))
    return "\n".join(rows)


def alignment_text(label: str, curves: Mapping) -> str:
    """One line per tracked point: the whole-network displacement cosine of the aux-only
    students after their first and last step, and the teacher's loss on them before and after."""
    cells = []
    for init, student in INITS.items():
        cos = curves["cos_displacement"][f"student_{student}"]["all"]
        lt = curves["teacher_loss"][f"student_{student}"]
        first, last = (f"{cos['mean'][i]:+.3f} [{cos['ci95'][0][i]:+.3f}, {cos['ci95'][1][i]:+.3f}]"
                       for i in (0, -1))  # fmt: skip
        cells.append(
            f"{init} init: cos(θ_S(t) − θ⁰_S, Δθ_T) {first} after step 1, {last} after step "
            f"{len(cos['mean'])}; L_T {lt['mean'][0]:.3f} → {lt['mean'][-1]:.3f}"
        )
    return f"Tracked {label} (aux-only students): " + "; ".join(cells) + "."


def correlation_text(body: Mapping) -> str:
    """The across-sweeps result in words: ρ over every row, then within each init."""
    corr, rows = body["spearman"], body["rows"]
    lo, hi = corr["ci95"]
    sweeps = sorted({r["sweep"] for r in rows})
    text = (
        f"Spearman ρ(step-0 cosine, aux-only transfer) = **{corr['rho']:+.3f}** "
        f"[{lo:+.3f}, {hi:+.3f}] (95% bootstrap CI) over {corr['n']} (point, init) pairs "
        f"from {len(sweeps)} sweeps ({', '.join(sweeps)})."
    )
    within = [
        f"{init} init {c['rho']:+.3f} [{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}] (n = {c['n']})"
        for init, c in body.get("spearman_by_init", {}).items()
    ]
    return text + (" Within one init: " + "; ".join(within) + "." if within else "")


BLOCK = re.compile(
    r"(<!-- BEGIN generated: (?P<name>[\w-]+) -->\n)(.*?)(<!-- END generated -->)", re.S
)


def fill(text: str, blocks: Mapping[str, str]) -> tuple[str, list[str]]:
    """``text`` with each ``BEGIN generated: NAME`` block's body replaced by ``blocks[NAME]``;
    also returns the names of blocks that have no value (left as they are)."""
    missing: list[str] = []

    def sub(m: re.Match) -> str:
        name = m.group("name")
        if name not in blocks:
            missing.append(name)
            return m.group(0)
        return m.group(1) + blocks[name].rstrip("\n") + "\n" + m.group(4)

    return BLOCK.sub(sub, text), missing


def refresh(path: Path, blocks: Mapping[str, str], check: bool = False) -> int:
    """Rewrite the generated blocks of the Markdown file ``path`` (atomically, only if changed)
    and print what happened; with ``check``, write nothing and return 1 when it is stale."""
    text = path.read_text()
    new, missing = fill(text, blocks)
    stale = new != text
    if check:
        print(f"{path.name} is {'out of date' if stale else 'up to date'}")
        return int(stale)
    if stale:
        results.write_text(path, new)
    done = "rewritten" if stale else "unchanged"
    print(f"{path.name}: {done}; other blocks: {missing or 'none'}")
    return 0


def training_flops(cfg, points) -> float:
    """A sweep's training FLOPs, counted as 6 × weights per image per step (forward and
    backward): each teacher group once per seed, and each point's four students per seed over
    their images and epochs. For scaling a measured preset's time to another preset's work;
    evaluation, noise generation and compilation are left out."""
    from sublim_jax import sweeps  # jax-heavy: only for this estimate

    def weights(sizes) -> int:
        return sum((a + 1) * b for a, b in itertools.pairwise(sizes))

    total = 0.0
    for group in sweeps.teacher_groups(cfg, points):
        t_cfg = group.cfg
        images = t_cfg.epochs_teacher * t_cfg.n_train + group.extra_steps * t_cfg.batch_size
        total += 6.0 * weights(t_cfg.sizes) * images * cfg.seeds
        for i in group.points:
            point = points[i]
            s_cfg = sweeps.student_config(t_cfg, point)
            epochs = s_cfg.epochs_student if point.epochs is None else point.epochs
            total += 4 * 6.0 * weights(s_cfg.sizes) * s_cfg.n_noise * epochs * cfg.seeds
    return total


def across(results: Iterable[Mapping]) -> dict:
    """The across-sweeps results body: every (point, init) row and Spearman's ρ over them."""
    rows = collect(results)

    def rho(subset: list[dict]) -> dict:
        x, y = (np.array([r[k] for r in subset]) for k in ("cos0", "transfer"))
        return rank_correlation(x, y)

    by_init = {i: [r for r in rows if r["init"] == i] for i in INITS}
    return {
        "kind": "across-sweeps",
        "rows": rows,
        "spearman": rho(rows),
        "spearman_by_init": {i: rho(sub) for i, sub in by_init.items() if len(sub) >= 3},
    }
