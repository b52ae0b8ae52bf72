"""The language-model pipeline's figure: every student's animal preferences, from results alone."""

from pathlib import Path

import numpy as np

from sublim_jax.io.plotting import new_figure, save, size_note

PREFERENCE_LABELS = {
    "base": "base model",
    "teacher": "teacher\n(system prompt)",
    "control_teacher": "control teacher",
    "base_numbers": "student:\nbase's numbers",
    "shuffled_across": "student:\nshuffled across",
    "shuffled_within": "student:\nshuffled within",
    "trait": "trait student\n(teacher's numbers)",
    "control": "control student\n(control's numbers)",
    "trait_distill": "distilled from\nteacher",
    "control_distill": "distilled from\ncontrol teacher",
}


def preference_figure(results: dict, out_dir: str | Path, stem: str = "preferences") -> list[Path]:
    """The paper's Figure 3 style: the target's rate per model, sampled answers and the exact
    share after the answer prefix, each with its 95% CI across questions."""
    order = [m for m in PREFERENCE_LABELS if m in results["models"]]
    order += [m for m in results["models"] if m not in order]
    x = np.arange(len(order))
    fig = new_figure(figsize=(max(6.0, 1.4 * len(order)), 4.2))
    ax = fig.subplots()
    series = (("sampled", "answers containing it (T = 1)", "C0"), ("exact", "exact share", "C1"))
    top = 0.0
    for k, (kind, label, color) in enumerate(series):
        stats = [results["models"][m][kind] for m in order]
        stats = [s["target_share"] if kind == "exact" else s for s in stats]
        means = np.array([s["mean"] for s in stats])
        err = np.abs(np.array([s["ci95"] for s in stats]).T - means)
        ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=err, capsize=3, color=color, label=label)
        top = max(top, float(np.max(means + err[1])))
    labels = {**PREFERENCE_LABELS}
    if results.get("teacher", "system prompt") != "system prompt":
        labels["teacher"] = f"teacher\n({results['teacher']})"
    if results.get("control_animal"):
        labels["control_teacher"] = f"control teacher\n({results['control_animal']})"
    ax.set_xticks(x, [labels.get(m, m) for m in order], fontsize=8)
    target = results["target"]
    ax.set(ylim=(0, min(1.0, 1.3 * top + 0.02)), ylabel=f"P({target})")
    ax.set_title(
        f"Preference for {target}: {results['questions']} questions, "
        f"{results['samples_per_question']} samples each (95% CI over questions)"
        + ("\none trained student per condition: not a CI over seeds" if "interval" in results
           else "")
        + size_note(results, "the paper's setup"),
        fontsize=10,
    )  # fmt: skip
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)
