"""The only module that imports matplotlib (lazily): figures drawn from saved results files.

Figures are plain ``matplotlib.figure.Figure`` objects, so drawing never selects or switches the
process's matplotlib backend; files are written atomically through `sublim_jax.results.atomic_file`.
"""

from pathlib import Path

import numpy as np

from .results import atomic_file


def _figure(**kwargs):
    """A matplotlib ``Figure`` not registered with pyplot: no backend is chosen or switched for
    the process, and nothing needs closing."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    paths = [out_dir / f"{stem}.pdf", out_dir / f"{stem}.png"]
    for path in paths:
        with atomic_file(path, "wb") as fh:
            fig.savefig(fh, format=path.suffix[1:], dpi=150, bbox_inches="tight")
    return paths


def theorem_figure(results: dict, out_dir: str | Path, stem: str = "theorem") -> list[Path]:
    """Three panels: alignment against ε with the εA line; cosines; fraction of L_T decreases."""
    eps = np.asarray(results["eps"])
    shared, first = (
        np.asarray(results["alignment_shared"]),
        np.asarray(results["first_order_shared"]),
    )
    different = np.asarray(results["alignment_different"])
    fig = _figure(figsize=(15, 4.2))
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
    fig.tight_layout()
    return _save(fig, Path(out_dir), stem)


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
    fig = _figure(figsize=(9, 4.2))
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
    ax.set_title(f"Auxiliary-logit transfer on {title}, {results['seeds']} seeds (95% CI)")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return _save(fig, Path(out_dir), stem)


_DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "idx": "IDX dataset"}


def _dataset(results: dict) -> str:
    return results.get("data", {}).get("name", "mnist")


def transfer_table(results: dict) -> str:
    """A Markdown table from a transfer results.json: ours, 95% CI, seeds; the paper's value
    first when ``results`` holds it (MNIST runs only)."""
    paper = results.get("paper") or {}
    head = ["condition", *(["paper"] if paper else []), "ours (mean)", "95% CI", "seeds"]
    rows = [
        "| " + " | ".join(head) + " |",
        "| --- |" + (" ---: |" if paper else "") + " ---: | --- | ---: |",
    ]
    for cond, r in results["conditions"].items():
        ref = [f"~{paper[cond]:.2f}" if cond in paper else "—"] if paper else []
        lo, hi = r["ci95"]
        cells = [cond, *ref, f"{r['mean']:.3f}", f"[{lo:.3f}, {hi:.3f}]", str(r["n"])]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


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
    fig = _figure(figsize=(max(9, 0.7 * len(points) + 6) * n_ax / 2, 4.2))
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
    fig.tight_layout()
    return _save(fig, Path(out_dir), stem)


PREFERENCE_LABELS = {
    "base": "base model",
    "teacher": "teacher\n(system prompt)",
    "base_numbers": "student:\nbase's numbers",
    "shuffled_across": "student:\nshuffled across",
    "shuffled_within": "student:\nshuffled within",
    "trait": "student:\nteacher's numbers",
}


def preference_figure(results: dict, out_dir: str | Path, stem: str = "preferences") -> list[Path]:
    """The paper's Figure 3 style: the target's rate per model, sampled answers and the exact
    share after the answer prefix, each with its 95% CI across questions."""
    order = [m for m in PREFERENCE_LABELS if m in results["models"]]
    order += [m for m in results["models"] if m not in order]
    x = np.arange(len(order))
    fig = _figure(figsize=(max(6.0, 1.4 * len(order)), 4.2))
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
    ax.set_xticks(x, [labels.get(m, m) for m in order], fontsize=8)
    target = results["target"]
    ax.set(ylim=(0, min(1.0, 1.3 * top + 0.02)), ylabel=f"P({target})")
    ax.set_title(
        f"Preference for {target}: {results['questions']} questions, "
        f"{results['samples_per_question']} samples each (95% CI)"
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return _save(fig, Path(out_dir), stem)


def across_sweeps_figure(results: dict, out_dir: str | Path, stem: str = "across") -> list[Path]:
    """Every point of every sweep: the aux-only students' step-0 cosine with the teacher's total
    update against their final transfer (accuracy − untrained reference); Spearman ρ with its
    bootstrap CI in the title. Same init filled, different init open; one colour per sweep."""
    rows, corr = results["rows"], results["spearman"]
    sweeps = sorted({r["sweep"] for r in rows})
    fig = _figure(figsize=(7.5, 5))
    ax = fig.subplots()
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    for i, sweep in enumerate(sweeps):
        for init, face in (("same", f"C{i % 10}"), ("diff", "none")):
            pts = [r for r in rows if r["sweep"] == sweep and r["init"] == init]
            ax.scatter(
                [r["cos0"] for r in pts],
                [r["transfer"] for r in pts],
                s=28,
                facecolors=face,
                edgecolors=f"C{i % 10}",
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
    return _save(fig, Path(out_dir), stem)


def alignment_figure(results: dict, out_dir: str | Path, stem: str = "alignment") -> list[Path]:
    """alignment-over-training: per tracked point (a row), against the distillation step,
    cos(θ_S(t) − θ⁰_S, Δθ_T) and cos(step t, Δθ_T) of the whole network, the same-init aux-only
    student's displacement cosine per layer, and the teacher's loss L_T on the students."""
    points = [p for p in results["points"] if "alignment" in p["diagnostics"]]
    fig = _figure(figsize=(18, 3.8 * len(points)))
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
    return _save(fig, Path(out_dir), stem)


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


def toy_figure(results: dict, out_dir: str | Path, stem: str = "llm_toy") -> list[Path]:
    """The toy language model: per mode and init, the trait student's shift against the
    control-teacher student and against the own-base student, and the step-0 cosine; bars are
    means with 95% CIs over seeds, dots the seeds."""
    modes = list(results["modes"])
    inits = ("same", "different")
    panels = (
        ("shift_vs_control", f"Δ p({results['target']}) vs control-teacher student"),
        ("shift_vs_own_base", f"Δ p({results['target']}) vs own-base student"),
        ("cosine_teacher", "cos(Δθ_S, θ_T − θ⁰_T), first update"),
    )
    fig = _figure(figsize=(15, 4.2))
    rng = np.random.default_rng(0)
    for ax, (key, title) in zip(fig.subplots(1, 3), panels, strict=True):
        for j, init in enumerate(inits):
            x = np.arange(len(modes)) + (j - 0.5) * 0.38
            stats = [results["modes"][m][init][key] for m in modes]
            stats = [s["trait"] if key == "cosine_teacher" else s for s in stats]
            means = np.array([s["mean"] for s in stats])
            err = np.abs(np.array([s["ci95"] for s in stats]).T - means)
            color = "C0" if init == "same" else "C3"
            ax.bar(
                x, means, 0.38, yerr=err, capsize=3, color=color, alpha=0.6, label=f"{init} init"
            )
            for xi, s in zip(x, stats, strict=True):
                seeds = np.asarray(s["per_seed"])
                ax.plot(xi + rng.uniform(-0.08, 0.08, seeds.size), seeds, "k.", ms=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(np.arange(len(modes)), modes)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"Toy decoder from scratch, {results['seeds']} seeds (bars: mean, 95% CI)")
    fig.tight_layout()
    return _save(fig, Path(out_dir), stem)
