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
    python3 benchmarks/llm_speed.py --shape qwen2_5_7b --dtype bfloat16 --parts gen64,gen256,lora \
        --prompt-len 128 --new-tokens 128 --train-len 512 --torch-python python3   # a GPU (gpu.sh)

On a GPU both sides run on the card (torch with ``--device cuda``; ``--threads`` is ignored) and
any shape and dtype can be compared (``--shape``, ``--dtype``; ``--layers`` another depth).

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
    "gen1": dict(task="generate", batch=1),
    "gen64": dict(task="generate", batch=64),
    "gen256": dict(task="generate", batch=256),
    "lora": dict(task="lora", batch=8),
}
SHAPES = ("smollm2_135m", "qwen2_5_7b", "tiny")


def seconds(fn, repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def model_config(args):
    """Our ``DecoderConfig`` of ``--shape`` in ``--dtype`` (``--layers``: another depth)."""
    import jax.numpy as jnp

    from sublim_jax.llm.config import DecoderConfig

    dtype = jnp.dtype(args.dtype)
    overrides = dict(dtype=dtype, param_dtype=dtype)
    if args.layers:
        overrides["num_layers"] = args.layers
    return getattr(DecoderConfig, args.shape)(**overrides)


def ours_generate(model, batch: int, prompt_len: int, new_tokens: int):
    """One ``generate`` call of the benchmark's shape, compiled and run once (the warm-up)."""
    import jax
    import jax.numpy as jnp

    from sublim_jax.llm import sampling

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


def ours_lora(model, batch: int, length: int):
    """One LoRA ``train_step`` of the benchmark's shape, compiled and run once (the warm-up).
    LoRA is added to ``model`` in place (the generate parts need a model of their own)."""
    import jax
    import numpy as np

    from sublim_jax.llm import sampling, training

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


def build(cfg):
    from flax import nnx

    from sublim_jax.llm.modeling import Decoder

    return nnx.jit(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))()


def torch_times(python: str, parts: list[str], args, cfg, device: str) -> dict:
    """One process of `llm_torch_reference.py` timing every part on one model of our shape."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llm_torch_reference.py")
    tasks = ",".join(f"{PARTS[p]['task']}:{PARTS[p]['batch']}" for p in parts)
    argv = [python, script, "--tasks", tasks, "--hf-config", json.dumps(cfg.to_hf())]
    argv += ["--dtype", args.dtype, "--device", device, "--repeats", str(args.repeats)]
    argv += ["--prompt-len", str(args.prompt_len), "--new-tokens", str(args.new_tokens)]
    argv += ["--length", str(args.train_len)]
    if device == "cpu":
        argv += ["--threads", str(args.threads)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the torch reference failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="gen64,gen1,lora", help=f"of {sorted(PARTS)}")
    parser.add_argument("--shape", default="smollm2_135m", choices=SHAPES)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--layers", type=int, default=0, help="another depth (0: the shape's)")
    parser.add_argument("--threads", type=int, default=2, help="CPU cores for each side")
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
    if args.repeats < 1 or args.rounds < 1 or args.layers < 0:
        parser.error("--repeats and --rounds must be at least 1, --layers at least 0")
    if args.torch_python and not os.access(args.torch_python, os.X_OK):
        parser.error(f"--torch-python {args.torch_python!r} is not an executable interpreter")
    import jax

    gpu = jax.default_backend() == "gpu"
    if not gpu:  # before XLA starts its threads
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    device = "cuda" if gpu else "cpu"
    # interpreter and output paths are this machine's: the report records versions instead
    settings = {k: v for k, v in vars(args).items() if k not in ("torch_python", "out")}
    report = dict(settings, device=jax.devices()[0].device_kind)
    if not gpu:
        report["cores"] = sorted(os.sched_getaffinity(0))
    cfg = model_config(args)
    model = build(cfg)
    calls, tokens = {}, {}
    for part in parts:
        task, batch = PARTS[part]["task"], PARTS[part]["batch"]
        if task == "generate":
            calls[part] = ours_generate(model, batch, args.prompt_len, args.new_tokens)
            tokens[part] = batch * args.new_tokens
        else:
            calls[part] = ours_lora(build(cfg), batch, args.train_len)  # its own copy
            tokens[part] = batch * args.train_len
    ours = {p: [] for p in parts}
    theirs = {p: [] for p in parts}
    for _ in range(args.rounds):
        for part in parts:
            ours[part].append(seconds(calls[part], args.repeats))
        if args.torch_python:
            ref = torch_times(args.torch_python, parts, args, cfg, device)
            for part in parts:
                theirs[part].append(ref["times"][f"{PARTS[part]['task']}:{PARTS[part]['batch']}"])
            report["torch_versions"] = dict(torch=ref["torch"], transformers=ref["transformers"])
    for part in parts:
        best = min(map(min, ours[part]))
        row = dict(ours_s=best, ours_times=ours[part], ours_tok_s=tokens[part] / best)
        if theirs[part]:
            ref_best = min(map(min, theirs[part]))
            rounds = [min(t) / min(o) for o, t in zip(ours[part], theirs[part], strict=True)]
            row |= dict(torch_s=ref_best, torch_times=theirs[part])
            row |= dict(torch_tok_s=tokens[part] / ref_best, speedup=ref_best / best)
            row |= dict(round_speedups=rounds)
        report[part] = row
        ratio = ""
        if "speedup" in row:
            each = ", ".join(f"{r:.2f}" for r in row["round_speedups"])
            ratio = f"  speed-up {row['speedup']:.2f}x (rounds: {each})"
        ref = f"  transformers {row['torch_tok_s']:8.1f} tok/s" if "torch_tok_s" in row else ""
        print(f"{part:6s} ours {row['ours_tok_s']:8.1f} tok/s{ref}{ratio}", flush=True)
    print(json.dumps(report))
    if args.out:
        from sublim_jax.io import results

        results.write_json(args.out, report | {"versions": results.versions()})


if __name__ == "__main__":
    sys.exit(main())
