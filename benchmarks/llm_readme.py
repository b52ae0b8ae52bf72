"""Rewrite docs/benchmarks.md's generated LLM benchmark tables from the reports under `results/`.

    uv run python benchmarks/llm_readme.py           # rewrite the blocks
    uv run python benchmarks/llm_readme.py --check   # exit 1 when docs/benchmarks.md is out of date

``llm-speed`` has one row per part of every `llm_speed.py` report (``results/llm_speed_cpu.json``,
the latest, then ``results/runs_*/llm_speed_cpu*.json``); ``llm-decode`` one row per batch of
every `llm_decode.py` report, likewise, and the LoRA step of those that timed one. The prose
around them is written by hand from them.
"""

import argparse
import json
import sys
from pathlib import Path

from sublim_jax.io import markdown

HERE = Path(__file__).resolve().parent
ROOT, RESULTS = HERE.parent, HERE / "results"
PAGE = ROOT / "docs" / "benchmarks.md"  # the page holding the blocks
PARTS = {
    "gen64": "`generate`, batch 64",
    "gen256": "`generate`, batch 256",
    "gen1": "`generate`, batch 1",
    "lora": "LoRA step",
}


def reports(results: Path, stem: str) -> list[tuple[str, dict]]:
    """``(name, report)``: the latest (``results/STEM*.json``) first, then earlier sessions'."""
    paths = sorted(results.glob(f"{stem}*.json")) + sorted(results.glob(f"runs_*/{stem}*.json"))
    return [(str(p.relative_to(results)), json.loads(p.read_text())) for p in paths]


def protocol(report: dict) -> str:
    rounds, repeats = report.get("rounds", 1), report["repeats"]
    if rounds == 1:
        return f"ours, then torch; best of {repeats}"
    return f"{rounds} alternating rounds × {repeats}"


def header(*columns: str) -> list[str]:
    """A Markdown table's first two lines."""
    return ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]


def speed_table(results: Path) -> str:
    head = header(
        "report", "device", "model, dtype", "protocol", "work", "ours tok/s",
        "transformers tok/s", "speed-up", "each round",
    )  # fmt: skip
    rows = []
    for name, report in reports(results, "llm_speed"):
        for part in (p for p in PARTS if p in report):
            row = report[part]
            rounds = ", ".join(f"{r:.2f}" for r in row.get("round_speedups", [])) or "—"
            # reports before the GPU runs were all CPU, SmolLM2-135M's shape, float32
            where = f"{report.get('device', 'cpu')} | {report.get('shape', 'smollm2_135m')}, "
            where += report.get("dtype", "float32")
            rows.append(
                f"| `{name}` | {where} | {protocol(report)} | {PARTS[part]} "
                f"| {row['ours_tok_s']:.1f} "
                f"| {row['torch_tok_s']:.1f} | **{row['speedup']:.3f}×** | {rounds} |"
            )
    return "\n".join(head + rows)


def decode_table(results: Path) -> str:
    head = header(
        "report", "device", "model, dtype", "prompt + new", "batch", "decode tok/s",
        "of the bandwidth roofline", "of max(bytes / bandwidth, FLOPs / peak)", "prefill s",
    )  # fmt: skip
    rows, lora = [], []
    for name, r in reports(results, "llm_decode"):
        for d in r["decode"]:
            rows.append(
                f"| `{name}` | {r['device']} | {r['preset']}, {r['dtype']} "
                f"| {r['prompt_len']} + {r['new_tokens']} | {d['batch']} | {d['tokens_s']:,.1f} "
                f"| {d['tokens_s'] / d['roofline']:.2f} "
                f"| **{d['tokens_s'] / d['bw_compute_roofline']:.2f}** | {d['prefill_s']:.3f} |"
            )
        if "lora_step_s" in r:
            lora.append(
                f"`{name}`: one LoRA step ({r['train_batch']} × {r['train_len']} tokens) "
                f"{r['lora_step_s']:.3f} s, peak memory {r['lora_peak_memory_gb']:.1f} GB."
            )
    return "\n".join(head + rows + (["", *lora] if lora else []))


def mnist_table(results: Path) -> str:
    """One row per `mnist_speed.py` report with end-to-end runs: ours against the PyTorch
    reference of the original's computation (where it ran), wall seconds from start to exit."""
    head = header(
        "report", "device", "preset, seeds", "protocol", "ours s (cold)", "of which compiling",
        "PyTorch s", "speed-up (cold)", "each round", "peak host GB, ours / PyTorch",
    )  # fmt: skip
    rows = []
    for name, r in reports(results, "mnist_speed"):
        if "end_to_end_wall_s_at_seeds" not in r:
            continue
        runs = r.get("end_to_end_runs", [])
        cold = r.get("end_to_end_cold_wall_s", r["end_to_end_wall_s_at_seeds"])
        compile_s = f"{r['phases_s']['compile']:.1f}" if "phases_s" in r else "—"
        ours = f"{r['end_to_end_wall_s_at_seeds']:.1f} ({cold:.1f})"
        torch, speedup, each = "—", "—", "—"
        if "torch_reference_wall_s" in r:
            torch = f"{r['torch_reference_wall_s']:.1f}"
            cold_ratio = r.get("torch_reference_over_ours_cold", r["torch_reference_over_ours"])
            speedup = f"**{r['torch_reference_over_ours']:.2f}×** ({cold_ratio:.2f}×)"
            each = ", ".join(f"{x:.2f}" for x in r.get("round_ratios", [])) or "—"
        memory = f"{r['peak_rss_gb_at_seeds']:.2f}"
        if "torch_reference_peak_rss_gb" in r:
            memory += f" / {r['torch_reference_peak_rss_gb']:.2f}"
        protocol_ = f"{len(runs)} alternating rounds" if len(runs) > 1 else "ours, then torch"
        rows.append(
            f"| `{name}` | {r.get('device', r['backend'])} | {r.get('preset', 'default')}, "
            f"{r['seeds']} | {protocol_} | {ours} | {compile_s} | {torch} | {speedup} | {each} "
            f"| {memory} |"
        )
    return "\n".join(head + rows)


def readme_blocks(results: Path = RESULTS) -> dict[str, str]:
    """The generated blocks of ``PAGE``, by name (the name predates the move out of README)."""
    return {
        "llm-speed": speed_table(results),
        "llm-decode": decode_table(results),
        "mnist-speed": mnist_table(results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    return markdown.refresh(PAGE, readme_blocks(), args.check)


if __name__ == "__main__":
    sys.exit(main())
