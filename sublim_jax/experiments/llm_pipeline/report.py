"""The language-model pipeline's results: the results.json body."""

from sublim_jax.experiments.llm_pipeline import evaluate
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import results

KIND = "llm"


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
        filter=filter_stats,
        timings=timings,
        versions=results.versions(),
    )
