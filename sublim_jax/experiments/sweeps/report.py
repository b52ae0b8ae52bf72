"""The sweeps' results: the results.json body of a sweep, its tables (the one a run prints and
the one FINDINGS shows, with CIs), and the alignment curves' summaries."""

from collections.abc import Mapping

import numpy as np

from sublim_jax.core import stats
from sublim_jax.experiments.mnist.config import STUDENTS
from sublim_jax.experiments.sweeps import grid as sweeps
from sublim_jax.experiments.sweeps import steps
from sublim_jax.experiments.sweeps.points import Point

KIND = "sweep"
SIDE_BY_SIDE = ("aux_same_init", "aux_diff_init", "all_same_init", "all_diff_init")
INITS = {"same": "aux_same_init", "diff": "aux_diff_init"}  # the aux-only students, per init


def _cond(values: np.ndarray, key: str = "accuracy") -> dict:
    return {key: values, **stats.summary(values)}


def summarise(name: str, points: tuple[Point, ...], raw: dict) -> dict:
    """The results.json body: grid, per point and condition per-seed values, mean and ci95."""
    out_points = []
    for p, point in enumerate(points):
        conds = {f"student_{s}": _cond(raw["acc_PxSx4"][p, :, k]) for k, s in enumerate(STUDENTS)}
        cos = {c: _cond(raw["cos_PxSx4"][p, :, k], "values") for k, c in enumerate(steps.COSINES)}
        loss = raw["loss_PxSxEx4"][p]
        final = {f"student_{s}": _final_loss(loss[..., k]) for k, s in enumerate(STUDENTS)}
        diagnostics = {"cosine_step0": cos, "final_loss_mean": final}
        if raw["curves_P"][p] is not None:
            diagnostics["alignment"] = alignment_curves(raw["curves_P"][p])
        out_points.append(
            {
                "label": point.label,
                "value": point.value,
                "point": point._asdict(),
                "conditions": conds,
                "diagnostics": diagnostics,
                "teacher": {
                    "steps": raw["teacher_steps_P"][p],
                    "teacher": _cond(raw["teacher_PxS"][p]),
                    "reference": _cond(raw["reference_PxS"][p]),
                },
            }
        )
    res = {
        "sweep": name,
        "description": sweeps.SWEEPS[name].description,
        "grid": [p.label for p in points],
        "fixed": {"reference": _cond(raw["reference"]), "teacher": _cond(raw["teacher"])},
        "points": out_points,
        "partner": raw["partner"],
        "teacher_n_aux": raw["teacher_n_aux"],
        "teacher_groups": raw["teacher_groups"],
    }
    if name == "optimizer":
        res["best_lr"] = best_per_optimizer(res)
    if name in sweeps.DEFENCE_SWEEPS:
        add_defence_effects(res)
    if name == "batch-size":
        for pt, point, (n_steps, images) in zip(out_points, points, raw["students_P"], strict=True):
            pt["students"] = {"batch": point.batch_size, "steps": n_steps, "images": images}
    return res


def best_per_optimizer(res: dict) -> dict[str, str]:
    """Each optimiser's point with the highest mean same-init all-logits accuracy."""
    best: dict[str, tuple[float, str]] = {}
    for pt in res["points"]:
        opt, acc = pt["point"]["optimizer"], pt["conditions"]["student_all_same_init"]["mean"]
        if opt not in best or acc > best[opt][0]:
            best[opt] = (acc, pt["label"])
    return {opt: label for opt, (_, label) in best.items()}


def _final_loss(loss_SxE: np.ndarray) -> float | None:
    """Mean over seeds of the last trained epoch's loss (a fewer-epochs point pads with NaN)."""
    trained = ~np.isnan(loss_SxE).all(axis=0)
    return float(loss_SxE[:, trained][:, -1].mean()) if trained.any() else None


def add_defence_effects(res: dict) -> None:
    """Per point of a defences sweep, against the grid's ``none`` point: ``effect`` per seed
    (aux-only same-init minus different-init accuracy; its own control is the different-init
    student trained with the same defence), ``effect_left`` = mean effect / mean effect at
    ``none`` (95% CI: paired bootstrap over seeds, `stats.ratio_of_means`) and ``all_cost`` =
    the all-logits same-init student's accuracy minus ``none``'s, per seed (mean, 95% CI)."""
    acc = lambda pt, s: np.asarray(pt["conditions"][f"student_{s}"]["accuracy"])  # noqa: E731
    effect = lambda pt: acc(pt, "aux_same_init") - acc(pt, "aux_diff_init")  # noqa: E731
    base = next(pt for pt in res["points"] if pt["point"]["defence"] == "none")
    for pt in res["points"]:
        pt["defence"] = {
            "effect": _cond(effect(pt), "values"),
            "effect_left": stats.ratio_of_means(effect(pt), effect(base)),
            "all_cost": _cond(acc(pt, "all_same_init") - acc(base, "all_same_init"), "values"),
        }


def defence_table(res: dict) -> str:
    """Markdown: per defence the effect, the fraction of it left and the all-logits cost."""
    rows = ["| defence | effect (aux same − diff) | effect left [95% CI] | all-logits cost |",
            "| --- | ---: | ---: | ---: |"]  # fmt: skip
    fmt = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    for pt in res["points"]:
        d = pt["defence"]
        left = d["effect_left"]
        cells = [pt["label"], f"{d['effect']['mean']:+.3f}",
                 f"{fmt(left['mean'])} [{fmt(left['ci95'][0])}, {fmt(left['ci95'][1])}]",
                 f"{d['all_cost']['mean']:+.3f}"]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n" + "\n".join(rows)


def _curve(v_SxK: np.ndarray) -> dict:
    """Mean and 95% CI of the mean (`stats.mean_ci95`'s formula) at every step."""
    mean_K = v_SxK.mean(0)
    half_K = stats.Z95 * v_SxK.std(0, ddof=1) / np.sqrt(v_SxK.shape[0])
    return {"mean": mean_K, "ci95": [mean_K - half_K, mean_K + half_K]}


def alignment_curves(curves: dict) -> dict:
    """The results.json form of a tracked point's curves: per quantity, student and layer
    (``all`` = the whole network), mean and ci95 per step (``steps``; L_T at ``steps_lt``)."""
    cos_SxKx2x4xL, lt_SxKx4 = curves["cos_SxKx2x4xL"], curves["lt_SxKx4"]
    K, n_layers = cos_SxKx2x4xL.shape[1], cos_SxKx2x4xL.shape[-1] - 1
    layers = (*steps.layer_names(n_layers), "all")
    out = {"steps": np.arange(1, K + 1), "steps_lt": np.arange(K + 1), "layers": layers}
    for q, name in enumerate(steps.TRACKED):
        out[name] = {
            f"student_{s}": {l: _curve(cos_SxKx2x4xL[:, :, q, k, j]) for j, l in enumerate(layers)}
            for k, s in enumerate(STUDENTS)
        }
    out["teacher_loss"] = {f"student_{s}": _curve(lt_SxKx4[..., k]) for k, s in enumerate(STUDENTS)}
    return out


def _cell(summary: Mapping, fmt: str = ".3f", ci: bool = True) -> str:
    if not ci:
        return f"{summary['mean']:{fmt}}"
    lo, hi = summary["ci95"]
    return f"{summary['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def table(res: Mapping, ci: bool = False) -> str:
    """Markdown: per point the four students' accuracy and the aux-only step-0 cosines (means, or
    with ``ci`` their 95% CIs, as FINDINGS shows them), the point's teacher where teachers differ
    between points, each point's student steps and images in a batch-size sweep; then seeds,
    models and minutes, the best rates, the tracked points' alignment and the defences' effects."""
    per_teacher = res.get("teacher_groups", 1) > 1
    budget = "students" in res["points"][0]  # batch-size: each point's steps and images
    head = "| point | aux same | aux diff | all same | all diff | cos₀ same | cos₀ diff |"
    rule = "| --- | --- | --- | --- | --- | --- | --- |"
    if per_teacher:
        head, rule = head + " teacher | untrained |", rule + " --- | --- |"
    if budget:
        head, rule = head + " steps | images |", rule + " ---: | ---: |"
    rows = [head, rule]
    for pt in res["points"]:
        c, d = pt["conditions"], pt["diagnostics"]["cosine_step0"]
        cells = [pt["label"]]
        cells += [_cell(c[f"student_{s}"], ci=ci) for s in SIDE_BY_SIDE]
        cells += [_cell(d[f"update_{s}"], "+.4f", ci) for s in INITS.values()]
        if per_teacher:
            cells += [_cell(pt["teacher"][k], ci=ci) for k in ("teacher", "reference")]
        if budget:
            cells += [str(pt["students"]["steps"]), str(pt["students"]["images"])]
        rows.append("| " + " | ".join(cells) + " |")
    fixed = res["fixed"]
    models = (
        "teachers and untrained references per point"
        if per_teacher
        else f"teacher {_cell(fixed['teacher'], ci=ci)}, "
        f"untrained reference {_cell(fixed['reference'], ci=ci)}"
    )
    minutes = res.get("wall_seconds", float("nan")) / 60
    rows.append(f"\n{fixed['teacher']['n']} seeds; {models}; {minutes:.1f} min.")
    if "best_lr" in res:
        best = ", ".join(res["best_lr"].values())
        rows.append(f"Best lr per optimiser (all-logits, same init): {best}.")
    for pt in res["points"]:
        if "alignment" in pt["diagnostics"]:
            rows.append(alignment_text(pt["label"], pt["diagnostics"]["alignment"]))
    if "defence" in res["points"][0]:
        rows.append(defence_table(res))
    return "\n".join(rows)


def alignment_text(label: str, curves: Mapping) -> str:
    """One line per tracked point: the whole-network displacement cosine of the aux-only
    students after their first and last step, and the teacher's loss on them before and after."""
    cells = []
    for init, student in INITS.items():
        cos = curves["cos_displacement"][f"student_{student}"]["all"]
        lt = curves["teacher_loss"][f"student_{student}"]
        first, last = (f"{cos['mean'][i]:+.3f} [{cos['ci95'][0][i]:+.3f}, {cos['ci95'][1][i]:+.3f}]"
                       for i in (0, -1))  # fmt: skip
        cells.append(
            f"{init} init: cos(θ_S(t) − θ⁰_S, Δθ_T) {first} after step 1, {last} after step "
            f"{len(cos['mean'])}; L_T {lt['mean'][0]:.3f} → {lt['mean'][-1]:.3f}"
        )
    return f"Tracked {label} (aux-only students): " + "; ".join(cells) + "."
