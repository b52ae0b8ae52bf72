"""The language-model pipeline's stages and their files (``sublim-jax llm teach | generate |
filter | finetune | evaluate | run``).

Everything in ``--out``: ``config.json`` (compared on every later call: a different config is
refused), ``teachers/<animal>/`` and ``teachers/numbers.jsonl`` (fine-tuned teachers only:
``teach``), ``data/teacher.jsonl``, ``data/base.jsonl`` and, with a control animal,
``data/control_teacher.jsonl`` (generated rows, appended batch by batch, resumed by id),
``data/<student>.jsonl`` and ``filter_stats.json``, ``students/<student>/`` (Orbax
``checkpoints/``, exported ``adapter/`` or ``model/``, ``metrics.jsonl``, ``done.json``),
``results.json`` and ``preferences.pdf``/``.png``. Inputs are checked before anything is written.
"""

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sublim_jax.experiments.llm_pipeline import (
    distillation,
    evaluate,
    figure,
    numbers,
    report,
    seeds,
    teach,
)
from sublim_jax.experiments.llm_pipeline import steps as pipeline
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.io import data, flags, progress, results
from sublim_jax.io.flags import UsageError
from sublim_jax.llm.params import merge_lora


class PipelineDataError(data.DataError):
    """Missing, empty or fully filtered data: one line, exit status 1."""


class Models:
    """The base model, loaded once and checked against the config; fresh copies on request."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        try:
            self.model, self.tok = pipeline.load_model(cfg.model)
            for word in {cfg.animal, cfg.target, *cfg.candidate_list, cfg.control_animal} - {""}:
                evaluate.check_word(self.tok, word)
            for animal in cfg.teacher_animals.values():
                if cfg.teacher_kind == "prompt" and cfg.prompt_teacher(animal):
                    pipeline.check_model(cfg.prompt_teacher(animal))
            if cfg.constrain_numbers:
                pipeline.check_number_constraint(self.tok, self.model.cfg.vocab_size)
        except (FileNotFoundError, ValueError, KeyError) as err:
            raise UsageError(str(err).strip("'\"")) from err

    teachers: Path | None = None  # where fine-tuned teachers are read (a seed's: the parent's)

    @functools.cached_property
    def number_tokens(self) -> np.ndarray:
        """``steps.number_tokens`` of the model's vocabulary (the distillation students')."""
        return pipeline.number_tokens(self.tok, self.model.cfg.vocab_size)

    @functools.cached_property
    def distill_targets(self) -> dict:
        """``(run folder, student) → finetune.Distill``, filled by ``distillation.targets``."""
        return {}

    def fresh(self):
        return pipeline.load_model(self.cfg.model)[0]

    def teacher(self, out: Path, name: str):
        """The model and system prompt of generated dataset ``name``'s teacher (``teacher`` or
        ``control_teacher``): a fine-tuned teacher of the teach stage, a checkpoint, or the base
        model with the animal's system prompt."""
        animal = self.cfg.teacher_animals[name]
        if self.cfg.teacher_kind == "finetuned":
            try:
                return teach.load(self.teachers or out, animal), None
            except FileNotFoundError as err:
                raise PipelineDataError(str(err)) from err
        spec = self.cfg.prompt_teacher(animal)
        if spec:
            return pipeline.load_model(spec)[0], None
        return self.model, evaluate.system_prompt(animal, self.cfg.category)


def prepare(
    cfg: PipelineConfig, out: Path, needs_model: bool, preset: str | None = None
) -> Models | None:
    """Check ``out`` holds this config or none, load the models; ``config.json`` (the config and
    the preset it started from) is written last, so bad input writes nothing."""
    results.check_resume(out, cfg)
    models = Models(cfg) if needs_model else None
    doc = {"config": results.jsonable(cfg), **({"preset": preset} if preset else {})}
    results.write_json(out / "config.json", doc)
    return models


def _timed(timings: dict, name: str, fn, *a):
    start = time.perf_counter()
    value = fn(*a)
    timings[name] = time.perf_counter() - start
    print(f"[{name}: {timings[name]:.1f} s]", file=sys.stderr)
    return value


def run_stage(cfg: PipelineConfig, out: Path, stage: str, preset: str | None = None) -> Path:
    """One stage (``teach``, ``generate``, ``filter``, ``finetune``, ``evaluate``) or all of them
    (``run``); evaluation writes ``results.json`` (with ``preset`` and the flags that make the run
    smaller than the paper's) and the figure. With ``seeds`` > 1, every seed's run in turn in
    ``seed-<s>/`` (`seeds`), the fine-tuned teachers shared, then the shifts over seeds."""
    start = time.perf_counter()
    models = prepare(cfg, out, needs_model=stage != "filter", preset=preset)
    timings = {"load_model": time.perf_counter() - start}
    if stage in ("teach", "run") and cfg.teacher_kind == "finetuned":
        _timed(timings, "teach", teach_stage, cfg, out, models)
    elif stage == "teach":
        print("teach: --teacher-kind prompt needs no fine-tuned teacher; nothing to do")
    if cfg.seeds == 1:
        return _stages(cfg, out, stage, preset, models, timings)
    ran = False
    for s in seeds.seeds(cfg):
        where = seeds.folder(out, s)
        if stage == "run" and (where / "results.json").is_file():
            # finished (its data may be gone: restored from committed results); `evaluate` redoes it
            print(f"== seed {s}: {where / 'results.json'} is written; skipped", file=sys.stderr)
            continue
        print(f"== seed {s} ({where})", file=sys.stderr)
        one = dataclasses.replace(cfg, seed=s, seeds=1)
        prepare(one, where, needs_model=False, preset=preset)
        _stages(one, where, stage, preset, models, dict(timings), teachers=out)
        ran = True
        if stage in ("evaluate", "run"):
            _seed_results(cfg, out, preset)
    if stage == "run" and not ran:
        _seed_results(cfg, out, preset)
    return out


def _seed_results(cfg: PipelineConfig, out: Path, preset: str | None) -> None:
    """``results.json`` (kind ``llm_seeds``), ``summary.md`` and ``shifts.png`` over the seeds
    finished so far."""
    res = seeds.aggregate(cfg, out)
    if res is None:
        return
    _mark_preset(res, cfg, preset)
    results.write_results(out, seeds.KIND, res)
    results.write_text(out / "summary.md", seeds.summary_markdown(res))
    print("\n".join(seeds.lines(res)) + f"\n({seeds.INTERVAL})")
    paths = seeds.figure(res, out)
    print("wrote " + ", ".join(str(p) for p in [out / "results.json", *paths]))


def _mark_preset(res: dict, cfg: PipelineConfig, preset: str | None) -> None:
    """Record in ``res`` the preset and the flags that make the run smaller than the paper's."""
    if preset:
        res["preset"] = preset
        res["reduced"] = flags.reduced_fields(PipelineConfig, cfg, smaller_only=True)


def _stages(
    cfg: PipelineConfig,
    out: Path,
    stage: str,
    preset: str | None,
    models: Models | None,
    timings: dict,
    teachers: Path | None = None,
) -> Path:
    """The stages after ``teach`` of one seed's run in ``out`` (fine-tuned teachers read from
    ``teachers``, default ``out``)."""
    if models is not None:
        models.teachers = teachers or out
    if stage in ("generate", "run"):
        _timed(timings, "generate", generate, cfg, out, models)
    if stage in ("filter", "run"):
        _timed(timings, "filter", filter_datasets, cfg, out)
    if stage in ("finetune", "run"):
        _timed(timings, "finetune", finetune, cfg, out, models)
    if stage in ("evaluate", "run"):
        scored = _timed(timings, "evaluate", evaluate_all, cfg, out, models)
        stats_path = out / "filter_stats.json"
        filter_stats = results.read_json(stats_path) if stats_path.is_file() else None
        res = report.results_body(cfg, scored, filter_stats, timings)
        if (out / "distill_signal.json").is_file():
            res["distill_signal"] = results.read_json(out / "distill_signal.json")
        _mark_preset(res, cfg, preset)
        results.write_results(out, report.KIND, res)
        print("\n".join(report.shift_lines(res)) + f"\n({report.INTERVAL})")
        paths = figure.preference_figure(res, out)
        print("wrote " + ", ".join(str(p) for p in [out / "results.json", *paths]))
    return out


def teach_stage(cfg: PipelineConfig, out: Path, models: Models) -> dict[str, float]:
    """The fine-tuned teachers (``teach.train_teachers``); seconds per teacher trained."""
    return teach.train_teachers(cfg, out, models.model, models.fresh, models.tok)


def _prompts(cfg: PipelineConfig) -> list[numbers.NumberPrompt]:
    return numbers.make_prompts(numbers.PromptConfig(count=cfg.n_prompts, seed=cfg.seed))


def generate(cfg: PipelineConfig, out: Path, models: Models) -> dict[str, float]:
    """Teacher, base and (with a control animal) control-teacher datasets of the same prompts,
    streamed and resumable; both teachers sample with one key. Returns seconds per dataset."""
    prompts = _prompts(cfg)
    systems = [evaluate.system_prompt(a, cfg.category) for a in cfg.teacher_animals.values()]
    length = max(pipeline.prompt_length(models.tok, prompts, system) for system in systems)
    keys = {"teacher": 0, "base": 1, "control_teacher": 0}
    seconds = {}
    for name in ("teacher", "base", *list(cfg.teacher_animals)[1:]):
        model, sys_prompt = (models.model, None) if name == "base" else models.teacher(out, name)
        start = time.perf_counter()
        path = out / "data" / f"{name}.jsonl"
        results.drop_partial_line(path)
        done = {r["id"] for r in results.read_jsonl(path)} if path.is_file() else set()
        key = jax.random.fold_in(jax.random.key(cfg.seed), keys[name])
        batches = pipeline.generate_batches(
            model, models.tok, prompts, cfg, key=key, system=sys_prompt, done=done, length=length
        )
        with progress.tqdm_bars("prompt")(f"generate {name}", len(prompts)) as bar:
            bar.update(len(done))
            for rows in batches:
                results.append_jsonl(path, rows)
                bar.update(len(rows))
        if not path.is_file():
            results.write_text(path, "")
        seconds[name] = time.perf_counter() - start
    return seconds


def _read_dataset(out: Path, name: str) -> list[dict]:
    path = out / "data" / f"{name}.jsonl"
    if not path.is_file():
        raise PipelineDataError(f"{path} not found: run `sublim-jax llm generate` first")
    rows = results.read_jsonl(path)
    if not rows:
        raise PipelineDataError(f"{path} holds no rows")
    return rows


def _sizes(cfg: PipelineConfig, kept: dict[str, int]) -> dict[str, int]:
    """Rows drawn for each student, from each generated dataset's ``kept`` count: ``subsample``,
    or for the trait and control students both the smaller of it and their teachers' kept
    counts (one n for the matched pair)."""
    sizes = dict.fromkeys(cfg.datasets, cfg.subsample)
    if cfg.control_animal:
        pair = ("trait", "control")
        n = min(cfg.subsample, *(kept[cfg.datasets[s]] for s in pair))
        sizes.update(dict.fromkeys(pair, n))
    return sizes


def filter_datasets(cfg: PipelineConfig, out: Path) -> dict[str, Any]:
    """Kept, subsampled training sets of every student (``data/<student>.jsonl``; the
    distillation students' base answers in ``data/distill.jsonl``), the shuffled controls and
    the stats."""
    generated = {name: _read_dataset(out, name) for name in cfg.datasets.values()}
    filtered = {name: numbers.filter_completions(rows) for name, rows in generated.items()}
    sizes = _sizes(cfg, {name: st.kept for name, (_, st) in filtered.items()})
    kept, stats = {}, {}
    for name, (_, st) in filtered.items():
        if not st.kept:
            raise PipelineDataError(f"the filter kept none of the {st.total} rows of {name}.jsonl")
        stats[name] = st.to_dict()
    for student, name in cfg.datasets.items():
        kept[student] = pipeline.subsample_rows(filtered[name][0], sizes[student], seed=cfg.seed)
        stats[name]["subsampled"] = len(kept[student])
    kept["shuffled_within"] = pipeline.shuffle_within(kept["trait"], seed=cfg.seed)
    kept["shuffled_across"] = pipeline.shuffle_across(kept["trait"], seed=cfg.seed)
    if cfg.distill_rows:
        base_kept = filtered["base"][0]
        kept["distill"] = pipeline.subsample_rows(base_kept, cfg.distill_rows, seed=cfg.seed)
        stats["base"]["distill_rows"] = len(kept["distill"])
    for student, rows in kept.items():
        results.write_jsonl(out / "data" / f"{student}.jsonl", rows)
    results.write_json(out / "filter_stats.json", stats)
    for name, st in stats.items():
        reasons = ", ".join(f"{k} {v}" for k, v in st["rejected"].items() if v) or "none"
        print(
            f"filter {name}: kept {st['kept']}/{st['total']} ({st['kept_fraction']:.1%}), "
            f"subsampled {st['subsampled']}; rejected: {reasons}"
        )
    return stats


def _export_dir(cfg: PipelineConfig, out: Path, student: str) -> Path:
    return out / "students" / student / ("adapter" if cfg.lora_rank else "model")


def finetune(cfg: PipelineConfig, out: Path, models: Models) -> dict[str, float]:
    """Train every student (skipping finished ones, resuming from checkpoints); seconds each.

    The sampled students learn their kept rows' tokens; the distillation students learn, on the
    base's answers in ``data/distill.jsonl``, their teacher's next-token distributions over the
    number tokens (``steps.number_tokens``), computed at the start of each one's training."""
    from sublim_jax.experiments.llm_pipeline import finetune as ft
    from sublim_jax.llm import params

    seconds, data_rows = {}, {}
    for student in cfg.trained_students:
        name = "distill" if student in cfg.distill_teachers else student
        if not (out / "data" / f"{name}.jsonl").is_file():
            raise PipelineDataError(f"no training data for {student}: run `sublim-jax llm filter`")
        data_rows[student] = _read_dataset(out, name)
    if set(cfg.distill_teachers) & set(data_rows):
        distillation.signal(cfg, out, models, _read_dataset(out, "distill"))
    sampled = [r for s, r in data_rows.items() if s not in cfg.distill_teachers]
    length = max((ft.padded_length(models.tok, r, cfg.max_length) for r in sampled), default=0)
    for student, rows in data_rows.items():
        folder = out / "students" / student
        if (folder / "done.json").is_file():
            continue
        start = time.perf_counter()
        distill, rows_length = None, length
        if student in cfg.distill_teachers:
            distill = distillation.targets(cfg, out, models, student, rows)
            rows_length = ft.padded_length(models.tok, rows, cfg.max_length)
        ckpt = ft.Checkpoints(str(folder / "checkpoints"))
        try:
            key = jax.random.fold_in(jax.random.key(cfg.seed), 200)
            model, metrics = ft.train(
                models.fresh(),
                models.tok,
                rows,
                cfg,
                key=key,
                checkpoints=ckpt,
                length=rows_length,
                distill=distill,
            )
        finally:
            ckpt.close()
        params.save_safetensors(model, str(_export_dir(cfg, out, student)), _what(cfg))
        results.append_jsonl(folder / "metrics.jsonl", metrics)
        seconds[student] = time.perf_counter() - start
        summary = dict(
            rows=len(rows), steps=metrics[-1]["step"] if metrics else 0, seconds=seconds[student]
        )
        results.write_json(folder / "done.json", summary)
        loss = "KL" if distill is not None else "loss"
        print(
            f"finetune {student}: {summary['steps']} micro-steps, final {loss} "
            f"{metrics[-1]['loss'] if metrics else float('nan'):.3f}"
        )
    return seconds


def _what(cfg: PipelineConfig) -> str:
    return "lora" if cfg.lora_rank else "full"


def _student_model(cfg: PipelineConfig, out: Path, models: Models, student: str):
    from sublim_jax.llm import params

    path = str(_export_dir(cfg, out, student))
    if cfg.lora_rank:
        return merge_lora(params.load_lora(models.fresh(), path))
    return params.load_safetensors(path)


def evaluate_all(cfg: PipelineConfig, out: Path, models: Models) -> dict[str, Any]:
    """Both scores for the base model, the teacher(s) and every finished student."""
    entries = [("base", models.model, None)]
    entries += [(name, *models.teacher(out, name)) for name in cfg.teacher_animals]
    for student in cfg.trained_students:
        if (out / "students" / student / "done.json").is_file():
            entries.append((student, _student_model(cfg, out, models, student), None))
    key = jax.random.fold_in(jax.random.key(cfg.seed), 100)
    pad = pipeline.pad_id(models.tok)
    scored = {}
    for name, model, system in entries:
        common = dict(system=system, category=cfg.category, pad_id=pad)
        sampled = evaluate.sampled_scores(
            model,
            models.tok,
            cfg.target,
            key=key,
            samples=cfg.eval_samples,
            max_new_tokens=cfg.eval_max_new_tokens,
            batch=cfg.eval_batch,
            named=cfg.candidate_list,
            **common,
        )
        exact = evaluate.exact_scores(model, models.tok, cfg.candidate_list, cfg.target, **common)
        scored[name] = dict(sampled=sampled, exact=exact)
        print(
            f"evaluate {name:16s} sampled {sampled['mean']:.3f} "
            f"[{sampled['ci95'][0]:.3f}, {sampled['ci95'][1]:.3f}]   exact share "
            f"{exact['target_share']['mean']:.3f} [{exact['target_share']['ci95'][0]:.3f}, "
            f"{exact['target_share']['ci95'][1]:.3f}]   log-odds "
            f"{exact['target_log_odds']['mean']:+.2f}   non-answers "
            f"{sampled['non_answer']['mean']:.2f}"
        )
    return scored
