"""The theorem experiment's results: the results.json body and the lines a run prints."""

from pathlib import Path

import numpy as np

from sublim_jax.core import stats

KIND = "theorem"


def summary_lines(res: dict) -> list[str]:
    """Per init, the cosine of Δθ_S with Δθ_T and how often L_T fell; then the first-order check."""
    ok = bool(np.all(np.asarray(res["alignment_shared"]) >= 0))
    rel = np.abs(np.asarray(res["alignment_shared"]) / np.asarray(res["first_order_shared"]) - 1)
    lines = []
    for init in ("shared", "different"):
        cos = stats.summary(res[f"cosine_{init}"])
        frac = float(np.mean(res[f"lt_decreased_{init}"]))
        lines.append(
            f"{init:9s} init: cos(Δθ_S, Δθ_T) mean {cos['mean']:+.4f} "
            f"[{cos['ci95'][0]:+.4f}, {cos['ci95'][1]:+.4f}], L_T fell for {frac:.0%} of seeds"
        )
    lines.append(
        f"shared-init alignment ≥ 0 at every ε: {ok}; "
        f"|Δθ_S·Δθ_T/(εA) − 1| = {rel[0]:.1e} at ε = {res['eps'][0]:.0e}"
    )
    return lines


def report(res: dict, out: Path) -> None:
    print("\n".join(summary_lines(res)))
    print(f"wrote {out}/config.json, results.json, theorem.pdf, theorem.png")
