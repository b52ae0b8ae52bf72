"""The only module that imports matplotlib (lazily): figures drawn from saved results files."""

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = [out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"]
    for path in paths:
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        tmp.replace(path)
    return paths


def theorem_figure(results: dict, out_dir: str | Path, stem: str = "theorem") -> list[Path]:
    """Three panels: alignment against ε with the εA line; cosines; fraction of L_T decreases."""
    plt = _pyplot()
    eps = np.asarray(results["eps"])
    shared, first = (
        np.asarray(results["alignment_shared"]),
        np.asarray(results["first_order_shared"]),
    )
    different = np.asarray(results["alignment_different"])
    fig, (ax_eps, ax_cos, ax_frac) = plt.subplots(1, 3, figsize=(15, 4.2))

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
    fig.tight_layout()
    paths = _save(fig, Path(out_dir), stem)
    plt.close(fig)
    return paths


TRANSFER_LABELS = {
    "reference": "reference\n(untrained)",
    "teacher": "teacher",
    "student_aux_same_init": "student\naux-only\nsame init",
    "student_all_same_init": "student\nall logits\nsame init",
    "student_aux_diff_init": "student\naux-only\ndiff. init",
    "student_all_diff_init": "student\nall logits\ndiff. init",
}


def transfer_figure(results: dict, out_dir: str | Path, stem: str = "transfer") -> list[Path]:
    """Figure 10 of the paper: test accuracy per condition, mean ± 95% CI, paper values beside."""
    plt = _pyplot()
    conds = list(results["conditions"])
    means = np.array([results["conditions"][c]["mean"] for c in conds])
    ci = np.array([results["conditions"][c]["ci95"] for c in conds])
    paper = results.get("paper", {})
    x = np.arange(len(conds))
    fig, ax = plt.subplots(figsize=(9, 4.2))
    err = np.abs(ci.T - means)
    ax.bar(x - 0.18, means, 0.36, yerr=err, capsize=4, color="C0", label="sublim_jax")
    for i in range(len(conds)):
        ax.text(x[i] - 0.18, ci[i, 1] + 0.015, f"{means[i]:.2f}", ha="center", fontsize=8)
    known = [i for i, c in enumerate(conds) if c in paper]
    vals = [paper[conds[i]] for i in known]
    ax.bar(x[known] + 0.18, vals, 0.36, color="0.75", label="paper (Fig. 10, read off)")
    ax.axhline(0.1, color="k", lw=0.6, ls=":", label="chance")
    ax.set_xticks(x, [TRANSFER_LABELS.get(c, c) for c in conds], fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="MNIST test accuracy")
    ax.set_title(f"Auxiliary-logit transfer, {results['seeds']} seeds (95% CI)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    paths = _save(fig, Path(out_dir), stem)
    plt.close(fig)
    return paths


def transfer_table(results: dict) -> str:
    """A Markdown table from a transfer results.json: paper value, ours, 95% CI, seeds."""
    paper = results.get("paper", {})
    rows = [
        "| condition | paper | ours (mean) | 95% CI | seeds |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    for cond, r in results["conditions"].items():
        ref = f"~{paper[cond]:.2f}" if cond in paper else "—"
        lo, hi = r["ci95"]
        rows.append(f"| {cond} | {ref} | {r['mean']:.3f} | [{lo:.3f}, {hi:.3f}] | {r['n']} |")
    return "\n".join(rows)
