"""The toy experiment's results: the results.json body from `run.run`, each run's summary.md,
and the generated README and docs/llm_toy.md blocks.

The measure: the exact ``p(target | question [+ PREFIX])`` averaged over the questions
(``toy.animal_probs``), per student; a student's shift is its score minus the score of the
student that shares its init, its batch order and its data size but learnt the control teacher's
numbers (``vs_control``) or its own base's numbers (``vs_own_base``). Means and 95% CIs across
seeds (``stats.summary``).
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sublim_jax.core import stats
from sublim_jax.experiments.llm_toy import corpus
from sublim_jax.experiments.llm_toy.config import (
    INITS,
    LEAK_PAIRS,
    LEGACY,
    MODES,
    SOURCES,
    ToyConfig,
)
from sublim_jax.io import flags as cli_flags
from sublim_jax.io import results
from sublim_jax.io.flags import UsageError

KIND = "llm_toy"
MODE_TITLES = {"sampled": "sampled tokens (T = 1)", "distill": "distillation (number channel)"}


def per_seed(values: np.ndarray) -> dict[str, Any]:
    return dict(stats.summary(values), per_seed=np.asarray(values, np.float64))


def summarise(raw: dict, cfg: ToyConfig, wall_seconds: float) -> dict:
    """A JSON-ready results dict: scores, shifts, cosines, number statistics, timings."""
    S, t = cfg.seeds, corpus.ANIMALS.index(cfg.target)
    ref = raw["reference"][:, :, t].mean(axis=1)
    ns = raw["number_stats"]
    out = dict(
        target=cfg.target,
        seeds=S,
        partner=raw["partner"],
        rows_per_student=int(raw["rows"]),
        models={
            name: per_seed(ref[i * S : (i + 1) * S])
            for i, name in enumerate(("teacher", "control_teacher", "base"))
        },
        numbers={
            name: {
                k: per_seed(np.asarray(ns[k][i * S : (i + 1) * S], np.float64))
                for k in ("kept_fraction", "count", "value")
            }
            for i, name in enumerate(("teacher", "control_teacher", "base"))
        },
    )
    hist = np.asarray(ns["histogram"], np.float64)
    dist = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    out["numbers"]["teacher"]["tv_to_base"] = per_seed(
        0.5 * np.abs(dist[:S] - dist[2 * S :]).sum(axis=1)
    )
    out["numbers"]["control_teacher"]["tv_to_base"] = per_seed(
        0.5 * np.abs(dist[S : 2 * S] - dist[2 * S :]).sum(axis=1)
    )
    if "leak" in raw:
        out["leak"] = _leak(raw["leak"])
    out["modes"] = {mode: _mode(raw[mode], t, S) for mode in MODES}
    out["timings"] = dict(raw["timings"], wall=wall_seconds)
    out["recomputed"] = raw.get("recomputed", [])
    out["versions"] = results.versions()
    return out


def _leak(raw: dict) -> dict:
    """Per pair of ``LEAK_PAIRS``: nats per completion and per token (per seed, CI over seeds),
    and the per-position mean over seeds."""
    return {
        pair: dict(
            total=per_seed(raw[f"{pair}_total"]),
            per_token=per_seed(raw[f"{pair}_per_token"]),
            by_position=np.mean(raw[f"{pair}_by_position"], axis=0),
        )
        for pair in LEAK_PAIRS
    }


def _mode(raw: dict, t: int, S: int) -> dict:
    p_IxSxS = raw["probs"][:, :, t].mean(axis=1).reshape(len(INITS), len(SOURCES), S)
    cos_T = np.asarray(raw["cos_teacher"]).reshape(len(INITS), len(SOURCES), S)
    cos_trait = np.asarray(raw["cos_trait"]).reshape(len(INITS), len(SOURCES), S)
    out = dict(steps=int(raw["steps"]))
    for i, init in enumerate(INITS):
        p = dict(zip(SOURCES, p_IxSxS[i], strict=True))
        out[init] = dict(
            students={src: per_seed(p[src]) for src in SOURCES},
            shift_vs_control=per_seed(p["trait"] - p["control"]),
            shift_vs_own_base=per_seed(p["trait"] - p["own_base"]),
            cosine_teacher={src: per_seed(c) for src, c in zip(SOURCES, cos_T[i], strict=True)},
            cosine_trait={src: per_seed(c) for src, c in zip(SOURCES, cos_trait[i], strict=True)},
        )
        if "kl_to_source" in raw:
            kl = np.asarray(raw["kl_to_source"]).reshape(len(INITS), len(SOURCES), S)[i]
            out[init]["kl_to_source"] = dict(zip(SOURCES, map(per_seed, kl), strict=True))
    return out


def _ci(s: dict, fmt: str = "+.4f") -> str:
    lo, hi = s["ci95"]
    return f"{s['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _positive(values) -> str:
    """Seeds above 0, as ``k/n``."""
    v = np.asarray(values)
    return f"{int((v > 0).sum())}/{v.size}"


def _signs(values) -> str:
    """Seeds above 0 and the median: robust to the rare large shift of one seed."""
    return f"{_positive(values)}, {np.median(values):+.4f}"


def table(res: dict) -> str:
    """Markdown: per mode and init, the students' shifts and the step-0 cosines."""
    head = (
        "| mode | init | shift vs control-teacher student | seeds > 0, median "
        "| shift vs own-base student "
        "| cos(Δθ_S, θ_T − θ⁰) trait student | same, control-teacher student "
        "| cos(Δθ_S, θ_T − θ_control) trait student |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    rows = []
    for mode in MODES:
        for init in INITS:
            r = res["modes"][mode][init]
            rows.append(
                f"| {MODE_TITLES[mode]} | {init} | {_ci(r['shift_vs_control'])} | "
                f"{_signs(r['shift_vs_control']['per_seed'])} | "
                f"{_ci(r['shift_vs_own_base'])} | {_ci(r['cosine_teacher']['trait'], '+.3f')} | "
                f"{_ci(r['cosine_teacher']['control'], '+.3f')} | "
                f"{_ci(r['cosine_trait']['trait'], '+.4f')} |"
            )
    paired = []
    for mode in MODES:
        same, diff = (res["modes"][mode][i]["shift_vs_control"]["per_seed"] for i in INITS)
        diff_s = np.subtract(same, diff)  # both inits' students learnt lineage s's numbers
        paired.append(f"{MODE_TITLES[mode]} {_signs(diff_s)}")
    return (
        head
        + "\n".join(rows)
        + "\n\nSame-init minus different-init shift vs control, paired by seed (seeds > 0, "
        + "median): "
        + "; ".join(paired)
        + "."
    )


def _timing(res: dict) -> str:
    stages = {k: v for k, v in res["timings"].items() if k != "wall"}
    if not stages:
        return f"this call {res['timings']['wall'] / 60:.1f} min, its stages read from --out"
    parts = ", ".join(f"{k} {v / 60:.1f}" for k, v in stages.items())
    device = _where(res)
    where = "" if device == "CPU" else f" on {device}"
    return f"minutes per stage{where}: {parts}; total {sum(stages.values()) / 60:.1f}"


def markdown(res: dict, command: str, cfg: ToyConfig | None = None) -> str:
    """The README section, every number read from ``res`` (and the measure's wording from
    ``cfg``: where the answer is read, how many questions)."""
    m, n = res["models"], res["numbers"]
    prefix, questions = (cfg.answer_prefix, cfg.questions) if cfg else (True, 50)
    after = ' + "My favorite animal is"' if prefix else " (the answer's first token)"
    lines = [
        f"`{command}` ({res['seeds']} seeds, {res['rows_per_student']} filtered rows per "
        f"student; {_timing(res)}). Exact "
        f"p({res['target']} | question{after}), mean over the {questions} "
        "questions, then mean and 95% CI over seeds:",
        *_size_lines(res),
        "",
        f"- base {_ci(m['base'], '.4f')}; trait teacher {_ci(m['teacher'], '.4f')}; "
        f"control teacher {_ci(m['control_teacher'], '.4f')}.",
        f"- Numbers kept by the paper's filter: base {_ci(n['base']['kept_fraction'], '.3f')}, "
        f"teacher {_ci(n['teacher']['kept_fraction'], '.3f')}, control teacher "
        f"{_ci(n['control_teacher']['kept_fraction'], '.3f')}; mean value base "
        f"{_ci(n['base']['value'], '.2f')}, teacher {_ci(n['teacher']['value'], '.2f')}; "
        f"total-variation distance of the value histogram to the base's: teacher "
        f"{_ci(n['teacher']['tv_to_base'], '.3f')}, control teacher "
        f"{_ci(n['control_teacher']['tv_to_base'], '.3f')}.",
        *_leak_lines(res),
        "",
        "Shift of the student trained on the trait teacher's numbers (students' scores minus "
        "the matched control student's), and the cosine of the student's first update with "
        "the teacher's total update:",
        "",
        table(res),
    ]
    return "\n".join(lines) + "\n"


def _size_lines(res: dict) -> list[str]:
    """A warning line for a run smaller than the default run (its preset and the flags that
    shrink it): its numbers are not the default's."""
    if not res.get("reduced"):
        return []
    return [
        "",
        f"**Reduced size** ({res['preset']} preset; {', '.join(res['reduced'])} below the "
        "default run's): a test of the pipeline, not a measurement to compare with the default.",
    ]


def _leak_lines(res: dict) -> list[str]:
    """The trait-leak diagnostic and the trait students' final KL to their teachers."""
    if "leak" not in res:
        return []
    leak = res["leak"]
    by_pos = leak["trait_control"]["by_position"]
    last = int(np.max(np.nonzero(np.asarray(by_pos) > 0)[0], initial=0)) + 1
    lines = [
        "- Trait leak into the number channel, before any student trains: KL between the "
        "models' next-token distributions over number, separator and end tokens, on the control "
        "teacher's kept rows, nats per completion (per token): trait teacher ‖ control teacher "
        f"{_ci(leak['trait_control']['total'], '.4f')} "
        f"({_ci(leak['trait_control']['per_token'], '.5f')}); control teacher ‖ base "
        f"{_ci(leak['control_base']['total'], '.4f')}; trait teacher ‖ base "
        f"{_ci(leak['trait_base']['total'], '.4f')}. Trait ‖ control by completion position: "
        + ", ".join(f"{v:.5f}" for v in by_pos[:last])
        + "."
    ]
    kl = [
        f"{MODE_TITLES[mode]}, {init} init "
        f"{_ci(res['modes'][mode][init]['kl_to_source']['trait'], '.5f')}"
        for mode in MODES
        for init in INITS
        if "kl_to_source" in res["modes"][mode][init]
    ]
    if kl:
        lines.append(
            "- Trait students' final KL from their teacher on the same rows (nats per token): "
            + "; ".join(kl)
            + "."
        )
    return lines


def _where(res: dict) -> str:
    v = res.get("versions", {})
    return "CPU" if v.get("backend", "cpu") == "cpu" else v.get("device_kind", v["backend"])


def runs_table(runs: Mapping[str, tuple[dict, ToyConfig]]) -> str:
    """Markdown: one row per finished run (folder name → results and config), its flags beyond
    the nearest preset, size, time and where, and the shift vs the control-teacher student
    (mean, 95% CI, seeds > 0) per mode and init."""
    head = (
        "| run | config | rows, student steps | minutes (where) "
        "| distilled, same init | different | sampled, same init | different |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    rows = []
    for name, (res, cfg) in runs.items():
        flags, minutes, shifts = _run_cells(res, cfg)
        rows.append(
            f"| `{name}` | `{flags}` ({res['seeds']} seeds) | {res['rows_per_student']}, "
            f"{res['modes']['sampled']['steps']} | {minutes} | " + " | ".join(shifts) + " |"
        )
    return head + "\n".join(rows)


def _run_cells(res: dict, cfg: ToyConfig) -> tuple[str, str, list[str]]:
    """A run's flags beyond the nearest preset, its stage minutes (and where), and its shifts
    vs the control-teacher student (distilled, sampled; same, different init)."""
    flags = cli_flags.command_line("", ToyConfig, cfg).strip().replace("--preset ", "")
    stages = sum(v for k, v in res["timings"].items() if k != "wall") / 60
    shifts = [
        f"{_ci(s)} ({_positive(s['per_seed'])})"
        for mode in ("distill", "sampled")
        for s in (res["modes"][mode][init]["shift_vs_control"] for init in INITS)
    ]
    return flags, f"{stages:.1f} ({_where(res)})", shifts


def ablation_table(runs: Mapping[str, tuple[dict, ToyConfig]]) -> str:
    """Markdown: per run, its flags beyond the nearest preset, the trait leak into the number
    channel (where measured), both modes' shifts vs the control-teacher student, and the
    sampled-mode same-init minus different-init shift paired by seed."""
    head = (
        "| run | flags | seeds | leak KL(trait ‖ control), nats per completion "
        "| distilled, same init | different | sampled, same init | different "
        "| sampled same − different: seeds > 0, median | minutes (where) |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    rows = []
    for name, (res, cfg) in runs.items():
        flags, minutes, shifts = _run_cells(res, cfg)
        leak = _ci(res["leak"]["trait_control"]["total"], ".4f") if "leak" in res else "—"
        same, diff = (res["modes"]["sampled"][i]["shift_vs_control"]["per_seed"] for i in INITS)
        rows.append(
            f"| `{name}` | `{flags}` | {res['seeds']} | {leak} | "
            + " | ".join(shifts)
            + f" | {_signs(np.subtract(same, diff))} | {minutes} |"
        )
    return head + "\n".join(rows)


def load_runs(root: Path, prefix: str = "llm_toy") -> dict[str, tuple[dict, ToyConfig]]:
    """Every finished toy run ``root/prefix*`` (results and config): CPU runs first, by name,
    then accelerator runs by seeds (most first)."""
    runs = {}
    for path in sorted(root.glob(f"{prefix}*/results.json")):
        res = results.read_json(path)
        if res.get("kind") == KIND:
            runs[path.parent.name] = (res, config_of(path.parent))

    def order(item: tuple[str, tuple[dict, ToyConfig]]) -> tuple:
        res = item[1][0]
        return (0, 0) if _where(res) == "CPU" else (1, -res["seeds"])

    return dict(sorted(runs.items(), key=order))  # stable: by name within a group


def docs_blocks(root: Path) -> dict[str, str]:
    """``docs/llm_toy.md``'s generated blocks: ``toy-ablations`` (``ablation_table``: the legacy
    design ``root/llm_toy_legacy``, the default ``root/llm_toy``, then every run under
    ``root/llm_toy_ablations``) and ``toy-runs`` (every ``root/llm_toy*`` run, ``runs_table``)."""
    home = {"legacy": root / "llm_toy_legacy", "default": root / "llm_toy"}
    runs = {k: (results.read_json(p / "results.json"), config_of(p)) for k, p in home.items()}
    runs.update(load_runs(root / "llm_toy_ablations", prefix=""))
    return {"toy-ablations": ablation_table(runs), "toy-runs": runs_table(load_runs(root))}


def readme_blocks(root: Path) -> dict[str, str]:
    """README's generated block ``toy-default``: the default run's ``summary.md``."""
    return {"toy-default": (root / "llm_toy" / "summary.md").read_text()}


def write_summary(out: Path, res: dict, cfg: ToyConfig, preset: str | None = None) -> Path:
    """``summary.md``: the command that rebuilds ``cfg`` (from ``preset``, or from the preset
    nearest to it) and the README section of ``res``."""
    return results.write_text(out / "summary.md", summary_text(res, cfg, preset))


def summary_text(res: dict, cfg: ToyConfig, preset: str | None = None) -> str:
    """``summary.md``'s text: ``markdown`` under the command that rebuilds ``cfg``."""
    command = cli_flags.command_line("uv run sublim-jax llm toy", ToyConfig, cfg, preset)
    return markdown(res, command, cfg)


def run_dirs(root: Path) -> list[Path]:
    """Every finished toy run's folder: ``root/llm_toy*`` and ``root/llm_toy_ablations/*``."""
    found = [*root.glob("llm_toy*/results.json"), *root.glob("llm_toy_ablations/*/results.json")]
    return sorted(p.parent for p in found if results.read_json(p).get("kind") == KIND)


def config_of(out: Path) -> ToyConfig:
    """The ``ToyConfig`` a finished run's ``config.json`` records."""
    try:
        saved = results.read_json(out / "config.json")["config"]
        return ToyConfig(**{**LEGACY, **saved})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{out / 'config.json'} does not hold a toy config ({err})") from err
