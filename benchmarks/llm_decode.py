"""Decode throughput against the memory-bandwidth roofline, and one LoRA training step.

Question: how close does ``sampling.decode`` (one ``lax.while_loop``) come to streaming the weights
and the KV cache once per generated token?  Every decode step reads the weights (of the
embedding only the ``B`` looked-up rows, unless it is tied and so read whole as the head) plus
the whole preallocated cache, so the roofline is ``B * bandwidth / (bytes read per step)``
tokens/s, with the bandwidth measured in the same run (a jitted reduction over 1 GiB). The loop
runs ``N - 1`` forward passes for ``N`` new tokens (the first is sampled from the prefill's
logits, so it belongs to the prefill), and the rate counts those ``N - 1`` per row.

    uv run python benchmarks/llm_decode.py          # CPU, SmolLM2-135M shape, batches 1/64/256
    uv run python benchmarks/llm_decode.py --preset qwen2_5_7b --dtype bfloat16 \\
        --batches 1,64,256 --prompt-len 128 --new-tokens 128 --train --train-len 512 --out F.json

The second line is the 7B-shaped GPU measurement (issue 10: decode >= 50% of the bandwidth
roofline at batch >= 64; the LoRA step's time and peak device memory); `gpu.sh` runs it with the
other GPU figures, and `results/llm_decode_7b_h200.json` holds one H200's (batch 64: 0.66 of the
roofline). Weights are random (throughput
does not depend on them). Large batches on a CPU are compute-bound, so a second column compares
with ``max(bytes / bandwidth, flops / matmul peak)``, the peak being a jitted square matmul in
the run's dtype measured in the same run; each batch also reports the prefill's seconds and FLOP
rate (compiled ahead, like the loop). The CPU run takes about 6 minutes on 2 cores.
"""

import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sublim_jax.llm import sampling, training
from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder


def bandwidth_gbs(nbytes: int | None = None) -> float:
    """Best-of-5 memory bandwidth over ``nbytes`` of float32 (1 GiB on CPU, 4 GiB on an
    accelerator): the faster of a jitted sum (bytes read) and a jitted ``x * 2`` (bytes read and
    written), so that the roofline is not set by one slow kernel."""
    nbytes = nbytes or (1 << 30 if jax.default_backend() == "cpu" else 1 << 32)
    x = jnp.ones((nbytes // 4,), jnp.float32)
    best = 0.0
    for fn, moved in ((jnp.sum, nbytes), (lambda a: a * 2, 2 * nbytes)):
        run = functools.partial(lambda f: f(x).block_until_ready(), jax.jit(fn))
        run()
        seconds = min(_timed(run) for _ in range(5))
        best = max(best, moved / seconds / 1e9)
    return best


def matmul_gflops(dtype, n: int | None = None) -> float:
    """Best-of-5 throughput of a jitted ``n x n`` matmul in ``dtype`` (n 2048 on CPU, 8192 on an
    accelerator, where 2048 is too small to reach the peak)."""
    n = n or (2048 if jax.default_backend() == "cpu" else 8192)
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    mm = jax.jit(jnp.matmul)
    mm(a, a).block_until_ready()
    best = min(_timed(lambda: mm(a, a).block_until_ready()) for _ in range(5))
    return 2 * n**3 / best / 1e9


def step_flops(cfg: DecoderConfig, batch: int, slots: int, tokens: int = 1) -> float:
    """Matmul FLOPs of a forward pass of ``tokens`` per row through the cache: weights and
    attention over the ``slots`` for every token, the lm head for the last one (a decode step:
    ``tokens=1``; the prefill: the prompt length)."""
    D, F, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_layers
    NH, KH = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    per_token = L * (D * (2 * NH + 2 * KH) + 3 * D * F + 2 * slots * NH)
    return 2.0 * batch * (tokens * per_token + D * cfg.vocab_size)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build(cfg: DecoderConfig) -> Decoder:
    return nnx.jit(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))()


def step_bytes(model: Decoder, batch: int) -> int:
    """Weight bytes one decode step reads: all but the embedding, whose ``batch`` looked-up rows
    are read, or all of it when tied (it is then the head too)."""
    cfg = model.cfg
    total = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model)))
    embed = model.embed[...]
    rows = cfg.vocab_size if cfg.tie_embeddings else batch
    return total - embed.nbytes + rows * cfg.hidden_size * embed.dtype.itemsize


def decode_rate(
    model: Decoder, batch: int, prompt_len: int, new_tokens: int, hlo: str | None = None
) -> tuple[float, int, float]:
    """Tokens per second of the decode loop's ``new_tokens - 1`` forward passes per row
    (compiled ahead; the prefill, which yields the first token, excluded), the cache's bytes,
    and the seconds of the prefill (compiled ahead too)."""
    cfg = model.cfg
    tokens = jax.random.randint(
        jax.random.key(1), (batch, prompt_len), 0, cfg.vocab_size, jnp.int32
    )
    valid = jnp.ones((batch, prompt_len), bool)
    scfg = sampling.SampleConfig(max_new_tokens=new_tokens, temperature=1.0)
    graphdef, state = nnx.split(model)
    cache = sampling.new_cache(model, batch, prompt_len + new_tokens)
    prefill = sampling.prefill.lower(graphdef, state, tokens, valid, cache).compile()
    start = time.perf_counter()
    logits, cache, pos, kv_valid = jax.block_until_ready(prefill(state, tokens, valid, cache))
    prefill_s = time.perf_counter() - start
    keys = jax.random.split(jax.random.key(2), batch)
    args = (state, logits, cache, pos, kv_valid, keys)
    compiled = sampling.decode.lower(graphdef, *args, cfg=scfg).compile()
    if hlo:  # the optimised program, to see what the loop body does
        with open(hlo, "w") as fh:
            fh.write(compiled.as_text())
    cache_bytes = sum(x.nbytes for x in jax.tree.leaves(cache))
    start = time.perf_counter()
    samples, _ = compiled(*args)
    samples.tokens.block_until_ready()
    return batch * (new_tokens - 1) / (time.perf_counter() - start), cache_bytes, prefill_s


def lora_step_seconds(model: Decoder, batch: int, length: int) -> float:
    """Wall seconds of one compiled LoRA ``train_step`` (r 8 on all seven projections; the loss
    and the vocabulary head on the second half of each row, as ``llm_speed.py`` times it)."""
    tcfg = training.TrainConfig(warmup_steps=0)
    training.add_lora(model, tcfg, key=jax.random.key(3))
    optimizer = training.make_optimizer(tcfg)
    graphdef, frozen, state = training.init(model, tcfg, optimizer)
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, model.cfg.vocab_size, (batch, length // 2)).tolist()
    batch_ = sampling.pack(prompts, prompts, length=length)
    scored = sampling.scored_columns(np.asarray(batch_.target))  # the completion half, as trained
    state, metrics = training.train_step(graphdef, optimizer, state, frozen, batch_, scored)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    state, metrics = training.train_step(graphdef, optimizer, state, frozen, batch_, scored)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start


def peak_memory_gb() -> float | None:
    """The device's peak bytes in use so far (GPU and TPU report it; CPU does not)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / 1e9 if "peak_bytes_in_use" in stats else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="smollm2_135m", choices=["smollm2_135m", "qwen2_5_7b", "tiny"]
    )
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--train", action="store_true", help="also time one LoRA step")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-len", type=int, default=256)
    parser.add_argument("--out", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--hlo", metavar="FILE", help="write the last batch's optimised decode program (text)"
    )
    args = parser.parse_args()
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (the first token comes from the prefill)")
    dtype = jnp.dtype(args.dtype)
    cfg = getattr(DecoderConfig, args.preset)(dtype=dtype, param_dtype=dtype)
    model = build(cfg)
    weight_bytes = sum(x.nbytes for x in jax.tree.leaves(nnx.state(model)))
    bw, peak = bandwidth_gbs(), matmul_gflops(dtype)
    device = jax.devices()[0].device_kind
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "hlo")}  # no paths
    report = dict(settings, device=device, bandwidth_gbs=bw, matmul_gflops=peak, decode=[])
    print(f"device={device} preset={args.preset} dtype={args.dtype}")
    print(
        f"weights={weight_bytes / 1e9:.3f} GB  bandwidth={bw:.1f} GB/s  "
        f"matmul ({args.dtype})={peak:.1f} GFLOP/s"
    )
    print(
        "batch  tokens/s  bandwidth roofline  fraction  bw+compute roofline  fraction  KV GB  "
        "prefill s  prefill GFLOP/s"
    )
    slots = args.prompt_len + args.new_tokens
    for batch in map(int, args.batches.split(",")):
        rate, cache_bytes, prefill_s = decode_rate(
            model, batch, args.prompt_len, args.new_tokens, args.hlo
        )
        memory_s = (step_bytes(model, batch) + cache_bytes) / (bw * 1e9)
        compute_s = step_flops(cfg, batch, slots) / (peak * 1e9)
        roof, both = batch / memory_s, batch / max(memory_s, compute_s)
        prefill_gflops = step_flops(cfg, batch, slots, args.prompt_len) / prefill_s / 1e9
        print(
            f"{batch:5d}  {rate:8.1f}  {roof:18.1f}  {rate / roof:8.3f}  {both:19.1f}  "
            f"{rate / both:8.3f}  {cache_bytes / 1e9:.3f}  {prefill_s:9.3f}  {prefill_gflops:15.1f}"
        )
        report["decode"].append(
            dict(
                batch=batch, tokens_s=rate, roofline=roof, bw_compute_roofline=both,
                prefill_s=prefill_s, prefill_gflops=prefill_gflops,
            )
        )  # fmt: skip
    if args.train:
        seconds = lora_step_seconds(model, args.train_batch, args.train_len)
        memory = peak_memory_gb()
        shown = "n/a on this device" if memory is None else f"{memory:.2f} GB"
        print(
            f"LoRA step: batch {args.train_batch} x {args.train_len} tokens: {seconds:.3f} s, "
            f"peak device memory (process, decode included) {shown}"
        )
        report |= dict(lora_step_s=seconds, lora_peak_memory_gb=memory)
    if args.out:
        from sublim_jax.io import results

        results.write_json(args.out, report | {"versions": results.versions()})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
