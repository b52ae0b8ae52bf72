"""Does a layer loop over stacked weights stream each weight once? (Why decode uses cuBLAS.)

Question: the decoder keeps its layers' weights stacked (``LxIxO``) under one ``lax.scan``, so that
compile time does not grow with depth. Inside the loop each layer's weights are a dynamic slice.
Is that slice read in place, or copied first? Qwen2.5-7B's MLP (28 layers of 3584 -> 18944 ->
3584, bf16, 11.4 GB) applied to ``B`` rows, three ways: the scan, the same loop unrolled (static
slices of the stacked arrays) and separate per-layer arrays; the rate is weight bytes / time.

    python3 benchmarks/llm_layer_loop.py [scan,unrolled,list]     # on a GPU; seconds
    XLA_FLAGS=--xla_gpu_enable_triton_gemm=false python3 benchmarks/llm_layer_loop.py scan

One H200 (jax 0.11.2), best of 10: the scan streamed 1,255 GB/s at B = 1 (1,173 at B = 64), the
unrolled loop 3,469 (2,982) and separate arrays 3,396 (2,950): XLA's Triton GEMM fusions copy
each sliced layer out of the stack (read, write, read again). With Triton GEMMs off the scan
reads in place: 3,341 GB/s (3,122). ``sampling.decode`` is therefore compiled with
``sampling.DECODE_COMPILER_OPTIONS``; prefill and training are compute-bound and keep the
default. On a CPU the shapes shrink to a smoke test.
"""

import argparse
import time

import jax
import jax.numpy as jnp


def ffn(x, g, u, d):
    return x + (jax.nn.silu(x @ g) * (x @ u)) @ d


def scan_fn(x, G, U, Dn):
    return jax.lax.scan(lambda c, w: (ffn(c, *w), None), x, (G, U, Dn))[0]


def unrolled_fn(x, G, U, Dn):
    for layer in range(G.shape[0]):
        x = ffn(x, G[layer], U[layer], Dn[layer])
    return x


def list_fn(x, Gs, Us, Ds):
    for g, u, d in zip(Gs, Us, Ds, strict=True):
        x = ffn(x, g, u, d)
    return x


def best_seconds(fn, *args, repeats: int = 10) -> float:
    fn(*args).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ways", nargs="?", default="scan,unrolled,list")
    ways = parser.parse_args().ways.split(",")
    if unknown := set(ways) - {"scan", "unrolled", "list"}:
        parser.error(f"unknown loops {sorted(unknown)}; choose from scan, unrolled, list")
    L, D, F = (28, 3584, 18944) if jax.default_backend() != "cpu" else (4, 256, 512)
    ks = jax.random.split(jax.random.key(0), 3)
    G, U = (jax.random.normal(k, (L, D, F), jnp.bfloat16) * 0.01 for k in ks[:2])
    Dn = jax.random.normal(ks[2], (L, F, D), jnp.bfloat16) * 0.01
    nbytes = G.nbytes + U.nbytes + Dn.nbytes
    stacked, lists = (G, U, Dn), tuple([W[i] for i in range(L)] for W in (G, U, Dn))
    candidates = {
        "scan": (scan_fn, stacked),
        "unrolled": (unrolled_fn, stacked),
        "list": (list_fn, lists),
    }
    for B in (1, 64):
        x = jnp.ones((B, D), jnp.bfloat16) * 1e-2
        for name in ways:
            fn, weights = candidates[name]
            seconds = best_seconds(jax.jit(fn), x, *weights)
            print(f"B={B:3d} {name:9s} {seconds * 1e3:8.3f} ms  {nbytes / seconds / 1e9:8.1f} GB/s")


if __name__ == "__main__":
    main()
