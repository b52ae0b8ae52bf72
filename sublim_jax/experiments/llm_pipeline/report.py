"""The language-model pipeline's results: the results.json body, with the trait student's shift
against each control student."""

import numpy as np

from sublim_jax.core import stats
from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results

KIND = "llm"
CONTROLS = ("base_numbers", "shuffled_within", "shuffled_across")
INTERVAL = (
    "one trained student per condition (one training seed): every 95% CI is over the questions "
    "asked of that one student, not over training seeds, so it does not show whether a shift "
    "would repeat with another seed"
)


def cell(summary: dict, fmt: str = "+.3f") -> str:
    """``mean [low, high]`` (signed by default: shifts)."""
    lo, hi = summary["ci95"]
    return f"{summary['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def shifts(scored: dict) -> dict:
    """The trait student's score minus each control student's, paired by question (exact share
    and sampled rate): mean and 95% CI over the questions."""
    if "trait" not in scored:
        return {}
    per_question = {
        "exact": lambda m: np.asarray(scored[m]["exact"]["share_per_question"], np.float64),
        "sampled": lambda m: np.asarray(scored[m]["sampled"]["per_question"], np.float64),
    }
    return {
        control: {
            kind: stats.summary(values("trait") - values(control))
            for kind, values in per_question.items()
        }
        for control in CONTROLS
        if control in scored
    }


def results_body(cfg: PipelineConfig, scored: dict, filter_stats: dict | None, timings: dict):
    """Every model's scores, with what they were measured on, the filter's counts and timings."""
    return dict(
        animal=cfg.animal,
        teacher=cfg.teacher or "system prompt",
        target=cfg.target,
        candidates=cfg.candidate_list,
        questions=len(evaluate.QUESTIONS),
        samples_per_question=cfg.eval_samples,
        prefix=evaluate.PREFIX.replace("animal", cfg.category),
        models=scored,
        shift_vs_controls=shifts(scored),
        interval=INTERVAL,
        filter=filter_stats,
        timings=timings,
        versions=results.versions(),
    )


def docs_block(res: dict) -> str:
    """docs/llm_pipeline.md's generated ``llm-tiny`` block: every model's scores and the trait
    student's shifts against its controls, with what the intervals are over."""
    rows = [
        "| model | exact share of the target | sampled answers naming it |",
        "| --- | --- | --- |",
    ]
    for name, scores in res["models"].items():
        exact, sampled = scores["exact"]["target_share"], scores["sampled"]
        rows.append(f"| {name} | {cell(exact, '.3f')} | {cell(sampled, '.3f')} |")
    rows += ["", "| trait student minus | exact share | sampled |", "| --- | --- | --- |"]
    for control, shift in res.get("shift_vs_controls", {}).items():
        rows.append(f"| {control} | {cell(shift['exact'])} | {cell(shift['sampled'])} |")
    minutes = sum(res["timings"].values()) / 60
    rows.append(
        f"\nTarget {res['target']!r}, {res['questions']} questions; {minutes:.1f} min. "
        f"{res.get('interval', INTERVAL)[0].upper()}{res.get('interval', INTERVAL)[1:]}."
    )
    return "\n".join(rows)
