"""The language-model pipeline's results: the results.json body, with the trait student's shift
against each control student."""

import numpy as np

from sublim_jax.core import stats
from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results

KIND = "llm"
CONTROLS = ("control", "base_numbers", "shuffled_within", "shuffled_across")
INTERVAL = (
    "one trained student per condition (one training seed): every 95% CI is over the questions "
    "asked of that one student, not over training seeds, so it does not show whether a shift "
    "would repeat with another seed"
)


def cell(summary: dict, fmt: str = "+.3f") -> str:
    """``mean [low, high]`` (signed by default: shifts)."""
    lo, hi = summary["ci95"]
    return f"{summary['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


PER_QUESTION = {
    "exact": lambda scores: scores["exact"]["share_per_question"],
    "log_odds": lambda scores: scores["exact"].get("log_odds_per_question"),
    "sampled": lambda scores: scores["sampled"]["per_question"],
    "non_answer": lambda scores: scores["sampled"].get("non_answer_per_question"),
}


def shifts(scored: dict, trait: str = "trait", controls: tuple[str, ...] = CONTROLS) -> dict:
    """The ``trait`` student's score minus each control student's, paired by question: the
    exact share, the exact log-odds against the other candidates, the sampled rate and the
    sampled non-answer rate (the last two where the scores hold them); mean and 95% CI over
    the questions."""
    if trait not in scored:
        return {}
    out = {}
    for control in (c for c in controls if c in scored):
        out[control] = {}
        for kind, values in PER_QUESTION.items():
            a, b = values(scored[trait]), values(scored[control])
            if a is not None and b is not None:
                diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
                out[control][kind] = stats.summary(diff)
    return out


def shift_lines(res: dict) -> list[str]:
    """One line per shift in a seed's results (the trait student, sampled or distilled, minus
    each control): every measure with its CI over the questions."""
    pairs = [("trait", c, s) for c, s in res["shift_vs_controls"].items()]
    pairs += [("trait_distill", c, s) for c, s in res.get("distill_shift", {}).items()]
    return [
        f"{trait} − {control:16s} exact share {cell(shift['exact'])}   "
        f"log-odds {cell(shift['log_odds'], '+.2f')}   "
        f"sampled {cell(shift['sampled'])}   non-answers {cell(shift['non_answer'])}"
        for trait, control, shift in pairs
    ]


def teachers(cfg: PipelineConfig, scored: dict, filter_stats: dict | None) -> dict:
    """Per teacher (``teacher``, ``control_teacher``): its animal and kind, its exact share of
    the target (mean, CI) and of its own animal (mean; None when not a candidate), and the
    filter's kept fraction of its numbers (None before ``filter``)."""
    out = {}
    for name, animal in cfg.teacher_animals.items():
        exact = scored[name]["exact"] if name in scored else None
        stats_ = (filter_stats or {}).get(name)
        out[name] = dict(
            animal=animal,
            kind=cfg.teacher_kind,
            model=cfg.teacher_label(animal),
            target_share=exact["target_share"] if exact else None,
            own_share=exact["preference"].get(animal) if exact else None,
            kept_fraction=stats_["kept_fraction"] if stats_ else None,
        )
    return out


def results_body(cfg: PipelineConfig, scored: dict, filter_stats: dict | None, timings: dict):
    """Every model's scores, with what they were measured on, the filter's counts and timings;
    with a fine-tuned or control teacher, ``teachers`` too (a prompt-kind run without a control
    writes the keys it always did)."""
    extra = {}
    if cfg.teacher_kind != "prompt" or cfg.control_animal:
        extra = dict(
            teacher_kind=cfg.teacher_kind,
            control_animal=cfg.control_animal or None,
            teachers=teachers(cfg, scored, filter_stats),
        )
    return dict(
        animal=cfg.animal,
        teacher=cfg.teacher_label(cfg.animal),
        **extra,
        target=cfg.target,
        candidates=cfg.candidate_list,
        questions=len(evaluate.QUESTIONS),
        samples_per_question=cfg.eval_samples,
        prefix=evaluate.PREFIX.replace("animal", cfg.category),
        models=scored,
        shift_vs_controls=shifts(scored),
        **(
            dict(distill_shift=shifts(scored, "trait_distill", ("control_distill",)))
            if cfg.distill_teachers
            else {}
        ),
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
