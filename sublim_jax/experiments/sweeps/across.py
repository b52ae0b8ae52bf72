"""Across sweeps: does the theorem's one-step alignment predict multi-step transfer?

Every sweep point records, for its aux-only students (same and different init), the cosine of
the first update with the teacher's total update Δθ_T (`steps.first_step_cosines`) and the
final test accuracy. ``collect`` turns a set of sweep results into one row per (point, init);
``across`` adds Spearman's ρ between step-0 cosine and transfer (aux-only accuracy minus the
untrained reference), with a percentile bootstrap CI over rows (`stats.rank_correlation`).
No I/O here.
"""

from collections.abc import Iterable, Mapping

import numpy as np

from sublim_jax.core.stats import rank_correlation
from sublim_jax.experiments.sweeps.report import INITS

KIND = "across-sweeps"


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


def across(results: Iterable[Mapping]) -> dict:
    """The across-sweeps results body: every (point, init) row and Spearman's ρ over them."""
    rows = collect(results)

    def rho(subset: list[dict]) -> dict:
        x, y = (np.array([r[k] for r in subset]) for k in ("cos0", "transfer"))
        return rank_correlation(x, y)

    by_init = {i: [r for r in rows if r["init"] == i] for i in INITS}
    return {
        "rows": rows,
        "spearman": rho(rows),
        "spearman_by_init": {i: rho(sub) for i, sub in by_init.items() if len(sub) >= 3},
    }
