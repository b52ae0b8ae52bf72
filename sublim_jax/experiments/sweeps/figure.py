"""The sweeps' figures (one sweep, its alignment curves, across sweeps), from results alone."""

from pathlib import Path

import numpy as np

from sublim_jax.io.plotting import new_figure, save, size_note

SWEEP_STYLES = {  # same init solid, different init dashed; aux-only C0, all logits C1
    "student_aux_same_init": ("C0", "-", "o", "aux-only, same init"),
    "student_aux_diff_init": ("C0", "--", "s", "aux-only, diff. init"),
    "student_all_same_init": ("C1", "-", "o", "all logits, same init"),
    "student_all_diff_init": ("C1", "--", "s", "all logits, diff. init"),
}


def sweep_figure(results: dict, out_dir: str | Path, stem: str = "sweep") -> list[Path]:
    """A sweep: test accuracy of the four students per grid point (mean ± 95% CI), same and
    different init side by side; and the step-0 cosine of the aux-only students' first update
    with the teacher's total update (defences: also the effect left and the all-logits cost)."""
    points = results["points"]
    x = np.arange(len(points))
    n_ax = 3 if "defence" in points[0] else 2
    fig = new_figure(figsize=(max(9, 0.7 * len(points) + 6) * n_ax / 2, 4.2))
    axes = fig.subplots(1, n_ax, gridspec_kw={"width_ratios": [3, 2, 2][:n_ax]})
    ax_acc, ax_cos = axes[:2]
    for cond, (color, ls, marker, label) in SWEEP_STYLES.items():
        mean = np.array([p["conditions"][cond]["mean"] for p in points])
        ci = np.array([p["conditions"][cond]["ci95"] for p in points])
        err = np.abs(ci.T - mean)
        ax_acc.errorbar(x, mean, err, color=color, ls=ls, marker=marker, capsize=3, label=label)
    fixed = results["fixed"]
    if results.get("teacher_groups", 1) > 1:  # the points' teachers differ
        for key, color, ls in (("teacher", "k", "-"), ("reference", "0.5", ":")):
            mean = [p["teacher"][key]["mean"] for p in points]
            ax_acc.plot(x, mean, color=color, lw=0.8, ls=ls, marker=".", label=key)
    else:
        ax_acc.axhline(fixed["teacher"]["mean"], color="k", lw=0.8, label="teacher")
        ax_acc.axhline(fixed["reference"]["mean"], color="0.5", lw=0.8, ls=":", label="reference")
    n = fixed["teacher"]["n"]
    ax_acc.set(ylim=(0, 1.05), ylabel="test accuracy", title=f"sweep {results['sweep']}, {n} seeds")
    ax_cos.axhline(0, color="k", lw=0.6)
    for key, color, label in (
        ("update_aux_same_init", "C0", "same init"),
        ("update_aux_diff_init", "C3", "diff. init"),
    ):
        d = [p["diagnostics"]["cosine_step0"][key] for p in points]
        mean = np.array([v["mean"] for v in d])
        err = np.abs(np.array([v["ci95"] for v in d]).T - mean)
        ax_cos.errorbar(x, mean, err, color=color, marker="o", capsize=3, label=label)
    ax_cos.set(ylabel="cos(first update, θ_T − θ⁰_T)", title="aux-only students, step 0")
    for ax in (ax_acc, ax_cos):
        ax.set_xticks(x, [p["label"] for p in points], rotation=45, ha="right", fontsize=8)
        ax.legend(fontsize=7)
    if n_ax == 3:
        _defence_panel(axes[2], points, x)
    if note := size_note(results).strip():
        fig.suptitle(note, fontsize=9)
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)


MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "h", "<", ">", "p")


def sweep_style(i: int) -> tuple[str, str]:
    """The colour and marker of the ``i``-th sweep: matplotlib's 10 colours and 12 markers, so
    that no two of the first 60 sweeps share both."""
    return f"C{i % 10}", MARKERS[i % len(MARKERS)]


def across_sweeps_figure(results: dict, out_dir: str | Path, stem: str = "across") -> list[Path]:
    """Every point of every sweep: the aux-only students' step-0 cosine with the teacher's total
    update against their final transfer (accuracy − untrained reference); Spearman ρ with its
    bootstrap CI in the title. Same init filled, different init open; each sweep its own pair of
    colour and marker (`sweep_style`)."""
    rows, corr = results["rows"], results["spearman"]
    sweeps = sorted({r["sweep"] for r in rows})
    fig = new_figure(figsize=(7.5, 5))
    ax = fig.subplots()
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    for i, sweep in enumerate(sweeps):
        color, marker = sweep_style(i)
        for init, face in (("same", color), ("diff", "none")):
            pts = [r for r in rows if r["sweep"] == sweep and r["init"] == init]
            ax.scatter(
                [r["cos0"] for r in pts],
                [r["transfer"] for r in pts],
                s=28,
                marker=marker,
                facecolors=face,
                edgecolors=color,
                label=sweep if init == "same" else None,
            )
    lo, hi = corr["ci95"]
    ax.set(
        xlabel="step-0 cos(first update, θ_T − θ⁰_T), aux-only students",
        ylabel="aux-only test accuracy − untrained reference",
        title=f"Spearman ρ = {corr['rho']:+.2f} [{lo:+.2f}, {hi:+.2f}], "
        f"{corr['n']} points (filled: same init, open: different)",
    )
    ax.legend(fontsize=7, title="sweep", title_fontsize=7)
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)


def alignment_figure(results: dict, out_dir: str | Path, stem: str = "alignment") -> list[Path]:
    """alignment-over-training: per tracked point (a row), against the distillation step,
    cos(θ_S(t) − θ⁰_S, Δθ_T) and cos(step t, Δθ_T) of the whole network, the same-init aux-only
    student's displacement cosine per layer, and the teacher's loss L_T on the students."""
    points = [p for p in results["points"] if "alignment" in p["diagnostics"]]
    fig = new_figure(figsize=(18, 3.8 * len(points)))
    axes = np.asarray(fig.subplots(len(points), 4, squeeze=False))
    for row, pt in zip(axes, points, strict=True):
        a = pt["diagnostics"]["alignment"]
        for ax, (key, title) in zip(row[:2], _ALIGNMENT_PANELS, strict=True):
            for cond, (color, ls, _, label) in SWEEP_STYLES.items():
                _band(ax, a["steps"], a[key][cond]["all"], color, ls, label)
            ax.axhline(0, color="k", lw=0.6)
            ax.set(xlabel="student step t", ylabel=title, title=f"{pt['label']}: whole network")
        for j, layer in enumerate(a["layers"][:-1]):
            for cond, ls in (("student_aux_same_init", "-"), ("student_aux_diff_init", "--")):
                label = f"{layer}, {SWEEP_STYLES[cond][3]}"
                curve = a["cos_displacement"][cond][layer]
                _band(row[2], a["steps"], curve, f"C{j + 2}", ls, label)
        row[2].axhline(0, color="k", lw=0.6)
        row[2].set(xlabel="student step t", ylabel=_ALIGNMENT_PANELS[0][1], title="per layer")
        for cond, (color, ls, _, label) in SWEEP_STYLES.items():
            _band(row[3], a["steps_lt"], a["teacher_loss"][cond], color, ls, label)
        row[3].set(xlabel="student step t", ylabel="L_T (test cross-entropy)", title="teacher loss")
        for ax in row:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)


def _defence_panel(ax, points: list[dict], x: np.ndarray) -> None:
    """Per defence: the fraction of the aux-only effect left and the all-logits same-init
    student's accuracy change, against the grid's `none` (mean, 95% CI)."""
    none = lambda v: np.nan if v is None else v  # noqa: E731
    for key, color, marker, label in (
        ("effect_left", "C0", "o", "aux-only effect left (fraction)"),
        ("all_cost", "C1", "s", "all-logits same init: Δ accuracy"),
    ):
        d = [p["defence"][key] for p in points]
        mean = np.array([none(v["mean"]) for v in d], dtype=float)
        ci = np.array([[none(c) for c in v["ci95"]] for v in d], dtype=float)
        err = np.nan_to_num(np.abs(ci.T - mean))
        ax.errorbar(x, mean, err, color=color, marker=marker, ls="none", capsize=3, label=label)
    ax.axhline(1, color="C0", lw=0.6, ls=":")
    ax.axhline(0, color="k", lw=0.6)
    ax.set(title="against the grid's `none`", ylabel="fraction left / Δ accuracy")
    ax.set_xticks(x, [p["label"] for p in points], rotation=45, ha="right", fontsize=8)
    ax.legend(fontsize=7)


_ALIGNMENT_PANELS = (
    ("cos_displacement", "cos(θ_S(t) − θ⁰_S, θ_T − θ⁰_T)"),
    ("cos_step", "cos(θ_S(t) − θ_S(t−1), θ_T − θ⁰_T)"),
)


def _band(ax, steps, curve: dict, color: str, ls: str, label: str) -> None:
    lo, hi = curve["ci95"]
    ax.plot(steps, curve["mean"], color=color, ls=ls, lw=1, label=label)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.2, lw=0)
