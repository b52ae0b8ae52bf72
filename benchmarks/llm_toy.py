"""Pre-training speed of the toy decoder (``sublim-jax llm toy``) as a share of the matmul peak.

    uv run python benchmarks/llm_toy.py                      # the default preset's shapes, ~2 min
    uv run python benchmarks/llm_toy.py --seeds 2 --chunk 10 # quicker
    uv run python benchmarks/llm_toy.py --out benchmarks/results/llm_toy_cpu.json

Prints (1) the fp32 matmul peak of this machine, a jitted 2048² matmul, best of 10; (2) one
compiled pre-training chunk (``--chunk`` steps of ``--seeds`` vmapped bases, the default
preset's model and batch): its compile time, its best-of-``--repeats`` wall time, the FLOPs XLA's
cost analysis counts for it (one step's program, times the chunk: XLA counts a scan body once),
and their ratio to the peak. The toy model is small (width 64,
T = 56 tokens a row), so the share is far below the MNIST MLP's: most of the time goes to
attention's small batched matmuls, softmaxes, the optimizer and the per-step row gathers.
"""

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from mnist_speed import best_time, matmul_peak  # the same timing and peak as the MNIST benchmark

from sublim_jax.experiments.llm_toy import config
from sublim_jax.experiments.llm_toy import steps as toy
from sublim_jax.experiments.llm_toy.setup import Setup
from sublim_jax.io import results


def pretrain_chunk(cfg: config.ToyConfig, repeats: int) -> dict:
    setup = Setup(cfg)
    keys = jax.random.split(jax.random.key(0), cfg.seeds)
    params = jax.vmap(lambda k: toy.init_params(setup.mcfg, k))(keys)
    rows = setup.number_rows(np.random.default_rng(0), 512)
    one = setup.rows(rows)
    data = {k: jnp.asarray(np.stack([v] * cfg.seeds)) for k, v in one.items()}

    def program(chunk: int):
        phase = setup.phase(cfg.pretrain_steps, cfg.pretrain_lr, 20)
        phase = dataclasses.replace(phase, chunk=chunk)
        fn = jax.vmap(
            lambda p, o, d, k: toy.train_chunk(
                p, o, None, d, k, 0, graphdef=setup.graphdef, loss="sampled", phase=phase
            )[:2]
        )
        return jax.jit(fn), phase

    fn, phase = program(cfg.chunk)
    opt = jax.vmap(phase.optimizer.init)(params)
    start = time.perf_counter()
    compiled = fn.lower(params, opt, data, keys).compile()
    compile_s = time.perf_counter() - start
    # XLA counts a scan's body once, whatever its length: count one step, times the chunk
    one = program(1)[0].lower(params, opt, data, keys).compile().cost_analysis()
    flops = cfg.chunk * float((one[0] if isinstance(one, list) else one)["flops"])
    seconds = best_time(compiled, params, opt, data, keys, repeats=repeats)
    tokens = cfg.seeds * cfg.chunk * cfg.batch_size * (setup.P + setup.C)
    return dict(
        compile_s=compile_s,
        seconds=seconds,
        flops=flops,
        flops_per_s=flops / seconds,
        tokens_per_s=tokens / seconds,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--chunk", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", metavar="FILE", help="also save the report as JSON")
    args = p.parse_args()
    cfg = dataclasses.replace(config.ToyConfig.default(), seeds=args.seeds, chunk=args.chunk)
    peak = matmul_peak()
    print(f"fp32 matmul peak (2048², best of 10): {peak / 1e9:.1f} GFLOP/s")
    r = pretrain_chunk(cfg, args.repeats)
    share = r["flops_per_s"] / peak
    print(
        f"pre-training, {cfg.seeds} seeds x {cfg.chunk} steps (batch {cfg.batch_size}): compile "
        f"{r['compile_s']:.1f} s, best {r['seconds']:.2f} s, {r['flops'] / 1e9:.1f} GFLOP (XLA) "
        f"-> {r['flops_per_s'] / 1e9:.2f} GFLOP/s = {share:.1%} of the matmul peak, "
        f"{r['tokens_per_s']:.0f} tokens/s"
    )
    if args.out:
        report = dict(peak_flops_per_s=peak, share_of_peak=share, **r)
        report |= dict(config=cfg, versions=results.versions())
        results.write_json(args.out, report)


if __name__ == "__main__":
    main()
