"""Seeds of the pipeline (``--seeds N``): runs of seed ``s, s+1, …`` in ``seed-<s>/`` of one
``--out``, each with its own generated data, subsample, students and evaluation (fine-tuned
teachers are trained once, in ``teachers/``, and shared), and each shift's mean and 95% CI over
the seeds (Student's t: a per-question CI of one seed does not say whether it repeats)."""

from pathlib import Path

import numpy as np

from sublim_jax.core import stats
from sublim_jax.experiments.llm_pipeline import report
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results
from sublim_jax.io.plotting import new_figure, save, size_note

KIND = "llm_seeds"
CHANNELS = {"sampled": "shift_vs_controls", "distill": "distill_shift"}  # -> per-seed key
METRICS = {
    "exact": "exact share of the target",
    "log_odds": "log-odds vs the other candidates",
    "sampled": "sampled answers naming it",
    "non_answer": "sampled answers naming no animal",
}
INTERVAL = (
    "95% CI over seeds (Student's t, n − 1 degrees of freedom): a seed's value is its student's "
    "mean over the questions, minus its control's; teachers are shared across seeds"
)


def seeds(cfg: PipelineConfig) -> list[int]:
    return [cfg.seed + k for k in range(cfg.seeds)]


def folder(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}"


def aggregate(cfg: PipelineConfig, out: Path) -> dict | None:
    """The results body over the seeds whose ``results.json`` is written (``seeds``; the
    planned ones in ``seeds_planned``): written after each seed, so a run stopped part-way
    still says what its finished seeds show; None before the first."""
    per = {}
    for seed in seeds(cfg):
        path = folder(out, seed) / "results.json"
        if path.is_file():
            per[seed] = results.read_json(path)
    if not per:
        return None
    first = next(iter(per.values()))
    per_seed = {
        seed: {
            channel: {
                control: {m: s["mean"] for m, s in shift.items()}
                for control, shift in res.get(key, {}).items()
            }
            for channel, key in CHANNELS.items()
            if res.get(key)
        }
        for seed, res in per.items()
    }
    shift = {}
    for channel, controls in per_seed[next(iter(per))].items():
        shift[channel] = {
            control: {
                m: stats.t_summary([per_seed[s][channel][control][m] for s in per]) for m in metrics
            }
            for control, metrics in controls.items()
        }
    models = {  # each model's mean over questions, per seed, then over seeds
        name: {
            m: stats.t_summary([float(np.mean(get(r["models"][name]))) for r in per.values()])
            for m, get in report.PER_QUESTION.items()
        }
        for name in first["models"]
    }
    return dict(
        animal=first["animal"],
        target=first["target"],
        teacher=first["teacher"],
        teacher_kind=cfg.teacher_kind,
        control_animal=cfg.control_animal or None,
        student_training=student_training(cfg),
        candidates=first["candidates"],
        questions=first["questions"],
        samples_per_question=first["samples_per_question"],
        seeds=list(per),
        seeds_planned=seeds(cfg),
        shift=shift,
        per_seed=per_seed,
        models=models,
        teachers={s: r.get("teachers") for s, r in per.items()},
        distill_signal={s: r.get("distill_signal") for s, r in per.items()},
        filter={s: r.get("filter") for s, r in per.items()},
        timings={s: r.get("timings") for s, r in per.items()},
        interval=INTERVAL,
        versions=results.versions(),
    )


def student_training(cfg: PipelineConfig) -> str:
    """How the students were trained, in words: LoRA's rank or full fine-tuning, the peak
    learning rate, the epochs over their rows."""
    how = f"LoRA r {cfg.lora_rank}" if cfg.lora_rank else "full fine-tuning"
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    lr = np.format_float_scientific(cfg.learning_rate, trim="-", exp_digits=1)
    return f"{how}, lr {lr}, {epochs}, batch {cfg.batch_size * cfg.accum_steps}"


def lines(res: dict) -> list[str]:
    """One printed line per (channel, control, metric): mean [CI] over seeds."""
    out = []
    for channel, controls in res["shift"].items():
        trait = "trait_distill" if channel == "distill" else "trait"
        for control, metrics in controls.items():
            cells = "   ".join(f"{m} {_cell(s)}" for m, s in metrics.items())
            n = len(res["seeds"])
            out.append(f"{trait} − {control} over {n} seed{'s' if n != 1 else ''}: {cells}")
    return out


def summary_markdown(res: dict) -> str:
    """``summary.md``: the shifts over seeds, the teachers, the distillation signal, the timings."""
    n = len(res["seeds"])
    out = [
        f"# {res['target']}: {res['teacher_kind']} teacher, control {res['control_animal']}, "
        f"{n} seed{'s' if n != 1 else ''}",
        "",
        f"Students: {res['student_training']}." if res.get("student_training") else "",
        "",
        f"Seeds {', '.join(map(str, res['seeds']))}"
        + (f" of {len(res['seeds_planned'])} planned" if len(res["seeds_planned"]) > n else "")
        + f". {INTERVAL[0].upper()}{INTERVAL[1:]}.",
        "",
        "| shift | " + " | ".join(METRICS.values()) + " |",
        "| --- |" + " --- |" * len(METRICS),
    ]
    for channel, controls in res["shift"].items():
        trait = "distilled" if channel == "distill" else "trait"
        for control, metrics in controls.items():
            cells = [_cell(metrics[m]) if m in metrics else "" for m in METRICS]
            out.append(f"| {trait} − {control} | " + " | ".join(cells) + " |")
    out += ["", "| model | " + " | ".join(METRICS.values()) + " |", "| --- |" + " --- |" * 4]
    for name, metrics in res["models"].items():
        cells = [f"{metrics[m]['mean']:.3f}" for m in METRICS]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    out += ["", "Model rows: means over seeds of each model's mean over questions.", ""]
    for seed, teachers in res["teachers"].items():
        for name, t in (teachers or {}).items():
            share = t["target_share"]["mean"] if t.get("target_share") else float("nan")
            kept = t["kept_fraction"] if t.get("kept_fraction") is not None else float("nan")
            out.append(
                f"- seed {seed} {name} ({t['animal']}): target share {share:.3f}, own-animal "
                f"share {t['own_share'] or float('nan'):.3f}, numbers kept {kept:.1%}"
            )
    for seed, signal in res.get("distill_signal", {}).items():
        if signal:
            kls = ", ".join(f"{k[3:]} {v:.4f}" for k, v in signal.items() if k.startswith("kl_"))
            out.append(f"- seed {seed} distillation signal (KL, nats per number token): {kls}")
    for seed, timings in res["timings"].items():
        stages = ", ".join(f"{k} {v / 60:.1f} min" for k, v in (timings or {}).items()
                           if isinstance(v, int | float))  # fmt: skip
        out.append(f"- seed {seed} time: {stages}")
    return "\n".join(out) + "\n"


def docs_block(runs: dict[str, dict]) -> str:
    """README's and docs/llm_pipeline.md's ``smollm2-shifts`` block: per committed seeds run
    (``runs``: folder name → results.json) and channel, the trait − control shift in three
    measures with its CI over seeds, each seed's log-odds, and the signal the teachers carry."""
    head = ["exact", "log_odds", "non_answer"]
    out = [
        "| run | teacher | channel | students | seeds | "
        + " | ".join(METRICS[m] for m in head)
        + " | seeds' log-odds | KL teacher ‖ control teacher |",
        "| --- | --- | --- | --- | --- |" + " --- |" * (len(head) + 2),
    ]
    for name, res in runs.items():
        kl = [v["kl_teacher_control_teacher"] for v in res["distill_signal"].values() if v]
        signal = f"{np.mean(kl):.4f} nats/token" if kl else "—"
        for channel, control in (("sampled", "control"), ("distill", "control_distill")):
            shift = res["shift"].get(channel, {}).get(control)
            if shift is None:
                continue
            rows = {s: res["per_seed"][s][channel][control]["log_odds"] for s in res["per_seed"]}
            per = ", ".join(f"{v:+.3f}" for v in rows.values())
            how = "distillation" if channel == "distill" else "sampled numbers"
            n, planned = len(res["seeds"]), len(res["seeds_planned"])
            count = f"{n}" + (f" of {planned}" if planned > n else "")
            out.append(
                f"| `{name}` | {res['teacher_kind']}, {res['animal']} vs {res['control_animal']} "
                f"| {how} | {res.get('student_training', '—')} | {count} | "
                + " | ".join(_cell(shift[m]) if m in shift else "" for m in head)
                + f" | {per} | {signal if channel == 'distill' else ''} |"
            )
    out += [
        "",
        "Shift: the trait student minus its control student (`" + "`, `".join(runs) + "`), mean "
        f"over seeds; {INTERVAL}. KL: the two teachers' next-token distributions over the number "
        "tokens on the base's answers, per token, mean over seeds.",
    ]
    return "\n".join(out) + "\n"


def _cell(s: dict) -> str:
    lo, hi = s["ci95"]
    ci = f"[{lo:+.3f}, {hi:+.3f}]" if lo is not None else "[one seed]"
    return f"{s['mean']:+.3f} {ci}"


def figure(res: dict, out_dir: str | Path, stem: str = "shifts") -> list[Path]:
    """Each shift (trait student minus its control, per channel) in each metric: one dot per
    seed, the mean and its 95% CI over seeds."""
    pairs = [
        (channel, control) for channel, controls in res["shift"].items() for control in controls
    ]
    fig = new_figure(figsize=(max(7.0, 1.3 * len(pairs) * 2), 6.0))
    axes = fig.subplots(2, 2).ravel()
    x = np.arange(len(pairs))
    for ax, (metric, label) in zip(axes, METRICS.items(), strict=True):
        for i, (channel, control) in enumerate(pairs):
            s = res["shift"][channel][control].get(metric)
            if s is None:
                continue
            dots = [res["per_seed"][k][channel][control][metric] for k in res["per_seed"]]
            ax.plot(np.full(len(dots), i) + np.linspace(-0.12, 0.12, len(dots)), dots, "o",
                    color="0.6", ms=4)  # fmt: skip
            lo, hi = s["ci95"]
            if lo is not None:
                ax.errorbar(i, s["mean"], yerr=[[s["mean"] - lo], [hi - s["mean"]]], fmt="s",
                            color="C3" if channel == "distill" else "C0", capsize=4)  # fmt: skip
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, [f"{'distilled' if c == 'distill' else 'trait'}\n− {k}" for c, k in pairs],
                      fontsize=7)  # fmt: skip
        ax.set_title(f"shift in {label}", fontsize=9)
    fig.suptitle(
        f"{res['target']}: trait student − control, {len(res['seeds'])} seeds "
        f"({res['teacher_kind']} teacher; 95% CI over seeds, t)"
        + (f"\nstudents: {res['student_training']}" if res.get("student_training") else "")
        + size_note(res, "the paper's setup"),
        fontsize=10,
    )
    fig.tight_layout()
    return save(fig, Path(out_dir), stem)
