"""The theorem experiment's figure, drawn from results.json alone."""

from pathlib import Path

import numpy as np

from sublim_jax.io.plotting import new_figure, save, size_note


def theorem_figure(results: dict, out_dir: str | Path, stem: str = "theorem") -> list[Path]:
    """Three panels: alignment against ε with the εA line; cosines; fraction of L_T decreases."""
    eps = np.asarray(results["eps"])
    shared, first = (
        np.asarray(results["alignment_shared"]),
        np.asarray(results["first_order_shared"]),
    )
    different = np.asarray(results["alignment_different"])
    fig = new_figure(figsize=(15, 4.2))
    ax_eps, ax_cos, ax_frac = fig.subplots(1, 3)

    ax_eps.loglog(eps, first, "k-", lw=1, label="εA (first order)")
    ax_eps.loglog(eps, np.abs(shared), "o", color="C0", label="shared init Δθ_S·Δθ_T")
    ax_eps.loglog(eps, np.abs(shared - first), "s", ms=4, color="C2", label="|remainder| (shared)")
    neg = different < 0
    ax_eps.loglog(eps[~neg], different[~neg], "^", color="C3", label="different init (> 0)")
    ax_eps.loglog(
        eps[neg], -different[neg], "v", mfc="none", color="C3", label="different init (< 0)"
    )
    ax_eps.set(xlabel="teacher step ε", ylabel="|Δθ_S·Δθ_T|", title="one step, seed 0")
    ax_eps.legend(fontsize=7)

    cos_s, cos_d = np.asarray(results["cosine_shared"]), np.asarray(results["cosine_different"])
    lim = max(np.abs(cos_s).max(), np.abs(cos_d).max()) * 1.1
    bins = np.linspace(-lim, lim, 41)
    ax_cos.hist(cos_s, bins=bins, alpha=0.7, color="C0", label="shared init")
    ax_cos.hist(cos_d, bins=bins, alpha=0.7, color="C3", label="different init")
    ax_cos.axvline(0, color="k", lw=0.8)
    ax_cos.set(xlabel="cos(Δθ_S, Δθ_T)", ylabel="seeds", title=f"{cos_s.size} seeds")
    ax_cos.legend(fontsize=8)

    fracs = [np.mean(results["lt_decreased_shared"]), np.mean(results["lt_decreased_different"])]
    ax_frac.bar(["shared init", "different init"], fracs, color=["C0", "C3"])
    for i, v in enumerate(fracs):
        ax_frac.text(i, v + 0.02, f"{v:.2f}", ha="center")
    ax_frac.set(ylim=(0, 1.1), ylabel="fraction of students", title="L_T(θ⁰_S + αΔθ_S) < L_T(θ⁰_S)")
    if note := size_note(results).strip():
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)
