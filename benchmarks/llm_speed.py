"""Generation and LoRA fine-tuning tokens/s on CPU against transformers / peft, ratios in one run.

Question: on SmolLM2-135M's shape, is ``sampling.generate`` faster than transformers'
``generate``, and ``training.train_step`` (LoRA) faster than transformers + peft, on the same
work? Both sides use random weights of the same config (``DecoderConfig.smollm2_135m`` and a
``LlamaConfig`` of that shape, float32), the same batch, prompt and generated lengths, sampling at
temperature 1 with no top-k / top-p and no EOS, and for LoRA the same rank, alpha and seven
target projections, AdamW with global-norm clipping, the loss on the completion half of each row.
Torch runs in a separate interpreter (`llm_torch_reference.py`, ``--torch-python``), both sides
limited to ``--threads`` cores (XLA through the process's CPU affinity, torch through
``torch.set_num_threads`` as well). The two sides alternate over ``--rounds`` rounds of
``--repeats`` timed calls each (ours, then a fresh torch process, then ours again...), so that a
change in the machine's load during the run falls on both; each side reports its best call after
a warm-up (compilation excluded), and the report keeps every call and each round's ratio. A
generate call includes the prefill and the cache allocation on both sides.

    uv run python benchmarks/llm_speed.py --torch-python PY                 # ~8 min, 2 cores
    uv run python benchmarks/llm_speed.py --torch-python PY --parts gen64   # one part
    uv run python benchmarks/llm_speed.py --parts lora --out FILE.json      # ours only, saved

``PY`` is an interpreter with torch, transformers and peft (`llm_torch_reference.py` says how to
make one). `llm_readme.py` tables the saved reports in docs/benchmarks.md. Targets (issue 10):
generation >= 1.5x transformers' tokens/s at batch 64, LoRA >= 1.2x transformers + peft. The
7B-shaped GPU figures (decode tokens/s against the memory roofline, one LoRA step's time and
peak memory) come from `llm_decode.py`:

    uv run python benchmarks/llm_decode.py --preset qwen2_5_7b --dtype bfloat16 \\
        --batches 1,64,256 --prompt-len 128 --new-tokens 128 --train --train-len 512
"""

import argparse
import json
import os
import subprocess
import sys
import time

PARTS = {
    "gen64": dict(task="generate", batch=64),
    "gen1": dict(task="generate", batch=1),
    "lora": dict(task="lora", batch=8),
}


def seconds(fn, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def ours_generate(batch: int, prompt_len: int, new_tokens: int):
    """One ``generate`` call of the benchmark's shape, compiled and run once (the warm-up)."""
    import jax
    import jax.numpy as jnp

    from sublim_jax.llm import sampling

    model = build()
    tokens = jax.random.randint(
        jax.random.key(1), (batch, prompt_len), 0, model.cfg.vocab_size, jnp.int32
    )
    valid = jnp.ones((batch, prompt_len), bool)
    cfg = sampling.SampleConfig(max_new_tokens=new_tokens, temperature=1.0)

    def run():
        out = sampling.generate(model, tokens, valid, key=jax.random.key(2), cfg=cfg)
        assert out.tokens.shape == (batch, new_tokens)
        out.tokens.block_until_ready()

    run()
    return run


def ours_lora(batch: int, length: int):
    """One LoRA ``train_step`` of the benchmark's shape, compiled and run once (the warm-up)."""
    import jax
    import numpy as np

    from sublim_jax.llm import sampling, training

    model = build()
    tcfg = training.TrainConfig(warmup_steps=0)
    training.add_lora(model, tcfg, key=jax.random.key(3))
    optimizer = training.make_optimizer(tcfg)
    graphdef, frozen, state = training.init(model, tcfg, optimizer)
    rows = np.random.default_rng(0).integers(0, model.cfg.vocab_size, (batch, length))
    data = sampling.pack(rows[:, : length // 2].tolist(), rows[:, length // 2 :].tolist())
    scored = sampling.scored_columns(np.asarray(data.target))  # the completion half
    holder = [state]

    def step():
        holder[0], metrics = training.train_step(
            graphdef, optimizer, holder[0], frozen, data, scored
        )
        jax.block_until_ready(metrics)

    step()
    return step


def build():
    from flax import nnx

    from sublim_jax.llm.config import DecoderConfig
    from sublim_jax.llm.modeling import Decoder

    cfg = DecoderConfig.smollm2_135m()
    return nnx.jit(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))()


def torch_seconds(python: str, task: str, args, batch: int) -> dict:
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llm_torch_reference.py")
    argv = [python, script, task, "--threads", str(args.threads), "--batch", str(batch)]
    argv += ["--prompt-len", str(args.prompt_len), "--new-tokens", str(args.new_tokens)]
    argv += ["--length", str(args.train_len), "--repeats", str(args.repeats)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="gen64,gen1,lora", help=f"of {sorted(PARTS)}")
    parser.add_argument("--threads", type=int, default=2, help="cores for each side")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--train-len", type=int, default=256, help="tokens per LoRA row")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per side per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two sides")
    parser.add_argument("--torch-python", metavar="PYTHON", help="interpreter with torch + peft")
    parser.add_argument("--note", default="", help="saved with the report, e.g. 'contended'")
    parser.add_argument("--out", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {sorted(PARTS)}")
    if args.repeats < 1 or args.rounds < 1:
        parser.error("--repeats and --rounds must be at least 1")
    if args.torch_python and not os.access(args.torch_python, os.X_OK):
        parser.error(f"--torch-python {args.torch_python!r} is not an executable interpreter")
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])  # before XLA starts
    # interpreter and output paths are this machine's: the report records versions instead
    settings = {k: v for k, v in vars(args).items() if k not in ("torch_python", "out")}
    report = dict(settings, cores=sorted(os.sched_getaffinity(0)))
    for part in parts:
        task, batch = PARTS[part]["task"], PARTS[part]["batch"]
        if task == "generate":
            call = ours_generate(batch, args.prompt_len, args.new_tokens)
            tokens = batch * args.new_tokens
        else:
            call = ours_lora(batch, args.train_len)
            tokens = batch * args.train_len
        ours, theirs, rounds = [], [], []
        for _ in range(args.rounds):
            ours.append(seconds(call, args.repeats))
            if args.torch_python:
                ref = torch_seconds(args.torch_python, task, args, batch)
                theirs.append(ref["times"])
                rounds.append(min(theirs[-1]) / min(ours[-1]))
                versions = dict(torch=ref["torch"], transformers=ref["transformers"])
                report["torch_versions"] = versions
        best = min(map(min, ours))
        row = dict(ours_s=best, ours_times=ours, ours_tok_s=tokens / best)
        if theirs:
            ref_best = min(map(min, theirs))
            row |= dict(torch_s=ref_best, torch_times=theirs, torch_tok_s=tokens / ref_best)
            row |= dict(speedup=ref_best / best, round_speedups=rounds)
        report[part] = row
        ratio = ""
        if "speedup" in row:
            each = ", ".join(f"{r:.2f}" for r in rounds)
            ratio = f"  speed-up {row['speedup']:.2f}x (rounds: {each})"
        theirs = f"  transformers {row['torch_tok_s']:8.1f} tok/s" if "torch_tok_s" in row else ""
        print(f"{part:6s} ours {row['ours_tok_s']:8.1f} tok/s{theirs}{ratio}", flush=True)
    print(json.dumps(report))
    if args.out:
        from sublim_jax.io import results

        results.write_json(args.out, report | {"versions": results.versions()})


if __name__ == "__main__":
    sys.exit(main())
