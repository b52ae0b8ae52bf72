"""Compile time of ``sampling.prefill`` and ``sampling.decode`` against depth, from shapes alone.

Question: does compiling the sampler grow with the number of layers? With the layers under one
``lax.scan`` the program holds one copy of the block whatever the depth, so a 28-layer decoder
should compile about as fast as a 4-layer one (ratio near 1; an unrolled Python loop gives ~5-7).

    uv run python benchmarks/llm_compile.py                       # Qwen2.5-7B widths, CPU
    uv run python benchmarks/llm_compile.py --preset smollm2_135m --batch 8 --prompt 64

No weights are made: the model is an ``nnx.eval_shape`` skeleton, every argument a
``jax.ShapeDtypeStruct``, and each program is lowered and compiled once (best of ``--repeats``
fresh compiles, the jit caches cleared in between), as wall-clock and as process CPU time (the
latter barely moves when other jobs share the cores). Prints one line per depth and the ratios.
"""

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
from flax import nnx

from sublim_jax.llm import sampling
from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder, KVCache


def abstract_args(cfg: DecoderConfig, batch: int, prompt: int, new: int):
    """Shape-only ``(graphdef, state, prefill args, decode args)`` of a random-init decoder."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    slots = prompt + new
    cache = jax.eval_shape(lambda: KVCache.zeros(cfg, batch, slots))
    tokens = jax.ShapeDtypeStruct((batch, prompt), jnp.int32)
    valid = jax.ShapeDtypeStruct((batch, prompt), jnp.bool_)
    logits = jax.ShapeDtypeStruct((batch, cfg.vocab_size), jnp.float32)
    pos = jax.ShapeDtypeStruct((batch,), jnp.int32)
    kv_valid = jax.ShapeDtypeStruct((batch, slots), jnp.bool_)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch))
    return graphdef, state, (tokens, valid, cache), (logits, cache, pos, kv_valid, keys)


def _timed(fn) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of ``fn()`` (CPU time is robust to busy machines)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compile_seconds(cfg: DecoderConfig, batch: int, prompt: int, new: int, repeats: int):
    """Best-of-``repeats`` ``(wall, cpu)`` lower+compile seconds of prefill and decode."""
    graphdef, state, pre, dec = abstract_args(cfg, batch, prompt, new)
    scfg = sampling.SampleConfig(max_new_tokens=new)
    programs = {
        "prefill": lambda: sampling.prefill.lower(graphdef, state, *pre).compile(),
        "decode": lambda: sampling.decode.lower(graphdef, state, *dec, cfg=scfg).compile(),
    }
    times = {name: [] for name in programs}
    for _ in range(repeats):
        for name, build in programs.items():
            jax.clear_caches()
            times[name].append(_timed(build))
    return {name: tuple(min(t[i] for t in v) for i in range(2)) for name, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="qwen2_5_7b")
    parser.add_argument("--depths", type=int, nargs=2, default=(4, 28))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=112)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    dtype = jnp.dtype(args.dtype)
    base = getattr(DecoderConfig, args.preset)(dtype=dtype, param_dtype=dtype)
    results = {}
    for depth in args.depths:
        cfg = dataclasses.replace(base, num_layers=depth)
        results[depth] = compile_seconds(cfg, args.batch, args.prompt, args.new, args.repeats)
        (pw, pc), (dw, dc) = results[depth]["prefill"], results[depth]["decode"]
        print(
            f"{args.preset} L={depth:3d} ({jax.devices()[0].platform}): prefill {pw:.2f} s wall "
            f"/ {pc:.2f} s cpu, decode {dw:.2f} s wall / {dc:.2f} s cpu"
        )
    shallow, deep = (results[d] for d in args.depths)
    for name in ("prefill", "decode"):
        wall, cpu = (deep[name][i] / shallow[name][i] for i in range(2))
        print(f"{name}: L={args.depths[1]} / L={args.depths[0]} = {wall:.2f} wall, {cpu:.2f} cpu")


if __name__ == "__main__":
    main()
