"""The toy language model's figure, drawn from results.json alone."""

from pathlib import Path

import numpy as np

from sublim_jax.io.plotting import new_figure, save, size_note


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
    fig = new_figure(figsize=(15, 4.2))
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
    fig.suptitle(
        f"Toy decoder from scratch, {results['seeds']} seeds (bars: mean, 95% CI)"
        + size_note(results, "the default run")
    )
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)
