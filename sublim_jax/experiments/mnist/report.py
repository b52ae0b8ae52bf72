"""The mnist experiment's results: the results.json body, its Markdown table, the loss rows."""

import numpy as np

from sublim_jax.core import stats
from sublim_jax.experiments.mnist.config import PAPER_ACCURACY

KIND = "mnist"


def results_body(
    raw: dict, seeds: int, dataset: dict, preset: str | None = None, reduced: list[str] = ()
) -> dict:
    """Per condition the per-seed test accuracies and their summary; the paper's numbers beside
    them on MNIST at the paper's model size (not when ``reduced`` names flags that shrink the
    models); which partner each seed's different-init students took, and how seeds ran."""
    comparable = dataset["name"] == "mnist" and not reduced
    return {
        "conditions": {k: {"accuracy": v, **stats.summary(v)} for k, v in raw["accuracy"].items()},
        **({"paper": PAPER_ACCURACY} if comparable else {}),
        **({"preset": preset, "reduced": list(reduced)} if preset else {}),
        "data": dataset,
        "seeds": seeds,
        "partner": raw["partner"],
        "devices": raw["devices"],
        "seeds_per_chunk": raw["seeds_per_chunk"],
    }


def loss_rows(loss_per_epoch: dict) -> list[dict]:
    """``metrics.jsonl``: per condition and epoch, the mean loss and every seed's."""
    return [
        {
            "condition": cond,
            "epoch": e,
            "mean_loss": float(np.mean(l_SxE[:, e])),
            "loss": l_SxE[:, e],
        }
        for cond, l_SxE in loss_per_epoch.items()
        for e in range(l_SxE.shape[1])
    ]


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
