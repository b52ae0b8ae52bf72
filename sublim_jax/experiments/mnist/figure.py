"""The mnist experiment's figure, drawn from results.json alone."""

from pathlib import Path

import numpy as np

from sublim_jax.io.plotting import new_figure, save, size_note

TRANSFER_LABELS = {
    "reference": "reference\n(untrained)",
    "teacher": "teacher",
    "student_aux_same_init": "student\naux-only\nsame init",
    "student_all_same_init": "student\nall logits\nsame init",
    "student_aux_diff_init": "student\naux-only\ndiff. init",
    "student_all_diff_init": "student\nall logits\ndiff. init",
}


def transfer_figure(results: dict, out_dir: str | Path, stem: str = "transfer") -> list[Path]:
    """Figure 10 of the paper: test accuracy per condition, mean ± 95% CI; the paper's values
    beside them only when ``results`` holds them (MNIST runs)."""
    conds = list(results["conditions"])
    means = np.array([results["conditions"][c]["mean"] for c in conds])
    ci = np.array([results["conditions"][c]["ci95"] for c in conds])
    paper = results.get("paper") or {}
    x = np.arange(len(conds))
    width, shift = (0.36, 0.18) if paper else (0.6, 0.0)
    fig = new_figure(figsize=(9, 4.2))
    ax = fig.subplots()
    err = np.abs(ci.T - means)
    ax.bar(x - shift, means, width, yerr=err, capsize=4, color="C0", label="sublim_jax")
    for i in range(len(conds)):
        ax.text(x[i] - shift, ci[i, 1] + 0.015, f"{means[i]:.2f}", ha="center", fontsize=8)
    if paper:
        known = [i for i, c in enumerate(conds) if c in paper]
        vals = [paper[conds[i]] for i in known]
        ax.bar(x[known] + shift, vals, width, color="0.75", label="paper (Fig. 10, read off)")
    ax.axhline(0.1, color="k", lw=0.6, ls=":", label="chance")
    ax.set_xticks(x, [TRANSFER_LABELS.get(c, c) for c in conds], fontsize=8)
    title = _DATASET_TITLES.get(_dataset(results), _dataset(results))
    ax.set(ylim=(0, 1.05), ylabel=f"{title} test accuracy")
    ax.set_title(f"Auxiliary-logit transfer on {title}, {results['seeds']} seeds (95% CI)"
                 + size_note(results))  # fmt: skip
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)


_DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "idx": "IDX dataset"}


def _dataset(results: dict) -> str:
    return results.get("data", {}).get("name", "mnist")
