"""Batched sampling with a preallocated KV cache, and completion log-probabilities.

Dimensions: B rows, T prompt length (left-padded), N new tokens, S = T + N cache slots, V vocab.
``generate`` prefills the whole left-padded batch in one call, then decodes inside one
``lax.while_loop`` (stopping early once every row has emitted an EOS). Row ``b`` draws step ``t``
with ``fold_in(fold_in(key, row_ids[b]), t)``, so a row's sample does not depend on its batch mates.
``nnx.split``/``nnx.merge`` sit at the jit boundary; the cache is donated to both calls.
"""

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder, KVCache, forward


@dataclasses.dataclass(frozen=True)
class SampleConfig:
    """``temperature=0`` is greedy; ``top_k=0`` and ``top_p=1`` switch those filters off."""

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    eos_ids: tuple[int, ...] = ()
    pad_id: int = 0


class Samples(NamedTuple):
    tokens: jax.Array  # BxN, pad_id after a row's EOS
    lengths: jax.Array  # B, tokens up to and including the first EOS


class Batch(NamedTuple):
    tokens: jax.Array  # BxT int32
    valid: jax.Array  # BxT, False on padding
    target: jax.Array  # BxT, True on completion tokens (scored / trained on)


def bucket(n: int, multiple: int = 16) -> int:
    """``n`` rounded up to a multiple: padded lengths from a few shapes, so programs are reused."""
    return -(-n // multiple) * multiple


def left_pad(
    seqs: Sequence[Sequence[int]], pad_id: int = 0, length: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``tokens_BxT`` (int32) and ``valid_BxT``; ``T`` defaults to the longest rounded up to 16."""
    T = length or bucket(max(len(s) for s in seqs))
    tokens = np.full((len(seqs), T), pad_id, np.int32)
    valid = np.zeros((len(seqs), T), bool)
    for b, s in enumerate(seqs):
        if len(s) > T:
            raise ValueError(f"sequence {b} has {len(s)} tokens, more than length={T}")
        if s:
            tokens[b, T - len(s) :], valid[b, T - len(s) :] = s, True
    return tokens, valid


def pack(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int = 0,
    length: int | None = None,
) -> Batch:
    """Left-padded ``prompt + completion`` rows with the completion tokens marked as targets."""
    tokens, valid = left_pad(
        [[*p, *c] for p, c in zip(prompts, completions, strict=True)], pad_id, length
    )
    target = np.zeros_like(valid)
    for b, c in enumerate(completions):
        if c:
            target[b, -len(c) :] = True
    return Batch(jnp.asarray(tokens), jnp.asarray(valid), jnp.asarray(target))


def token_logprobs(logits_BxKxV: jax.Array, tokens_BxT: jax.Array) -> jax.Array:
    """``logp_BxT[b, t] = log p(tokens[b, t] | tokens[b, :t])`` from the logits of the last ``K``
    positions (``K == T``: all of them); zero where no logit predicts ``t`` (``t <= T - K``).

    The picked logit less the log-sum-exp, at every position and shifted afterwards: no ``BxTxV``
    slice, log-softmax or gather-gradient scatter is materialised (on CPU those passes over the
    logits cost a tenth of a SmolLM2 LoRA step; the gradient becomes one fused pass)."""
    logits_BxKxV = logits_BxKxV.astype(jnp.float32)
    K, V, T = logits_BxKxV.shape[1], logits_BxKxV.shape[2], tokens_BxT.shape[1]
    if not 1 <= K <= T:
        raise ValueError(f"logits of {K} positions for {T} tokens")
    next_BxK = jnp.pad(tokens_BxT[:, T - K + 1 :], ((0, 0), (0, 1)))
    is_next_BxKxV = next_BxK[..., None] == jnp.arange(V, dtype=next_BxK.dtype)[None, None, :]
    picked_BxK = jnp.sum(jnp.where(is_next_BxKxV, logits_BxKxV, 0.0), axis=-1)
    logp_BxK = picked_BxK - jax.nn.logsumexp(logits_BxKxV, axis=-1)
    return jnp.pad(logp_BxK[:, :-1], ((0, 0), (T - K + 1, 0)))


def scored_columns(target_BxT: np.ndarray, multiple: int = 16) -> int:
    """How many trailing columns hold every target of ``target_BxT`` (a host array), rounded up
    to ``multiple`` (so batches share programs) and capped at ``T``: the ``scored`` that
    ``training.train_step`` may compute logits for alone. Left padding puts completions last."""
    target_BxT = np.asarray(target_BxT, bool)
    T = target_BxT.shape[1]
    cols = np.flatnonzero(target_BxT.any(axis=0))
    return min(T, bucket(T - int(cols[0]), multiple)) if cols.size else min(T, multiple)


@functools.partial(jax.jit, static_argnames="graphdef")
def _score(graphdef: nnx.GraphDef, state: nnx.State, batch: Batch) -> jax.Array:
    logits_BxTxV = forward(nnx.merge(graphdef, state), batch.tokens, batch.valid)
    logp_BxT = token_logprobs(logits_BxTxV, batch.tokens)
    return jnp.sum(jnp.where(batch.target, logp_BxT, 0.0), axis=1)


def score(
    model: Decoder,
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int = 0,
) -> jax.Array:
    """Summed log-probabilities ``log p(completion | prompt)`` per row, in one forward pass."""
    return _score(*nnx.split(model), pack(prompts, completions, pad_id))


def mask_logits(logits: jax.Array, allowed: jax.Array | None) -> jax.Array:
    """``logits`` with every entry where ``allowed`` is False set to -inf (any layout, the same
    shape): a softmax over them is the model's distribution renormalised over the allowed
    tokens, and no sampler here draws a -inf token. ``None``: no constraint."""
    return logits if allowed is None else jnp.where(allowed, logits, -jnp.inf)


def filter_logits(logits_V: jax.Array, cfg: SampleConfig) -> jax.Array:
    """Temperature, then top-k, then nucleus (top-p) filtering; removed entries become -inf."""
    logits_V = logits_V.astype(jnp.float32) / cfg.temperature
    if cfg.top_k:
        kth = jax.lax.top_k(logits_V, cfg.top_k)[0][-1]
        logits_V = jnp.where(logits_V < kth, -jnp.inf, logits_V)
    if cfg.top_p < 1.0:
        sorted_V = jnp.sort(logits_V)[::-1]
        before_V = jnp.cumsum(jax.nn.softmax(sorted_V)) - jax.nn.softmax(sorted_V)
        cutoff = jnp.min(jnp.where(before_V < cfg.top_p, sorted_V, jnp.inf))
        logits_V = jnp.where(logits_V < cutoff, -jnp.inf, logits_V)
    return logits_V


BLOCK = 128  # tokens per block of the two-level inverse CDF


def categorical(key: jax.Array, logits_V: jax.Array) -> jax.Array:
    """One draw from ``softmax(logits_V)``: the inverse CDF at one uniform ``u ~ U[0, 1)``."""
    return inverse_cdf(jax.random.uniform(key, (), jnp.float32), logits_V)


def inverse_cdf(u: jax.Array, logits_V: jax.Array) -> jax.Array:
    """The first token ``i`` with ``cdf_i > u * cdf_V``, ``cdf_i = sum_{j<=i} exp(l_j - max l)``.

    For ``u ~ U[0, 1)`` this draws token ``i`` with probability ``softmax(l)_i`` up to float32
    resolution (about ``2**-23`` per token, the order at which ``jax.random.categorical``'s Gumbel
    noise is truncated too), and never a token of probability zero (``-inf`` logit). Two levels,
    because a length-``V`` cumsum is slow on CPU: the block holding the target among ``V / BLOCK``
    block masses, then the token inside that block. One uniform per row instead of ``V`` Gumbel
    draws: on CPU the Gumbel noise cost a fifth of a batch-64 decode step.

    The vocabulary is axis 0; trailing axes are a batch (``VxB`` logits with ``u_B``: one draw
    per column, what ``sample_columns`` uses)."""
    V = logits_V.shape[0]
    p_V = jnp.exp(logits_V.astype(jnp.float32) - jnp.max(logits_V, axis=0, keepdims=True))
    pad = [(0, -V % BLOCK)] + [(0, 0)] * (p_V.ndim - 1)
    p_CxK = jnp.pad(p_V, pad).reshape(-1, BLOCK, *p_V.shape[1:])
    mass_C = jnp.sum(p_CxK, axis=1)
    cdf_C = jnp.cumsum(mass_C, axis=0)
    c, rest = _first_above(cdf_C, mass_C, u * cdf_C[-1])
    p_K = jnp.take_along_axis(p_CxK, c[None, None], axis=0)[0]
    k, _ = _first_above(jnp.cumsum(p_K, axis=0), p_K, rest)
    return (c * BLOCK + k).astype(jnp.int32)


def _first_above(cdf_X: jax.Array, p_X: jax.Array, target: jax.Array):
    """``x``, the first index along axis 0 with ``cdf_x > target`` and ``p_x > 0`` (the last with
    ``p_x > 0`` when rounding leaves none), and ``target`` less the mass before ``x``."""
    above_X = (cdf_X > target[None]) & (p_X > 0)
    last = p_X.shape[0] - 1 - jnp.argmax(p_X[::-1] > 0, axis=0)
    x = jnp.where(jnp.any(above_X, axis=0), jnp.argmax(above_X, axis=0), last)
    cdf_x, p_x = (jnp.take_along_axis(a, x[None], axis=0)[0] for a in (cdf_X, p_X))
    return x, target - (cdf_x - p_x)


def sample_token(key: jax.Array, logits_V: jax.Array, cfg: SampleConfig) -> jax.Array:
    if cfg.temperature == 0.0:
        return jnp.argmax(logits_V).astype(jnp.int32)
    return categorical(key, filter_logits(logits_V, cfg))


def sample_columns(keys_B: jax.Array, logits_VxB: jax.Array, cfg: SampleConfig) -> jax.Array:
    """``sample_token(keys_B[b], logits_VxB[:, b], cfg)`` for every ``b``, the same tokens, read
    along the columns: no transpose of the logits (on CPU, a vmap over axis 1 copies them)."""
    if cfg.temperature == 0.0:
        return jnp.argmax(logits_VxB, axis=0).astype(jnp.int32)
    filtered_VxB = jax.vmap(functools.partial(filter_logits, cfg=cfg), 1, 1)(logits_VxB)
    u_B = jax.vmap(lambda key: jax.random.uniform(key, (), jnp.float32))(keys_B)
    return inverse_cdf(u_B, filtered_VxB)


@functools.partial(jax.jit, static_argnames="graphdef", donate_argnames="cache")
def prefill(graphdef, state, tokens_BxT, valid_BxT, cache: KVCache):
    """Write the prompts into cache slots ``[0, T)``; logits of each row's last token.

    Left padding puts every row's last token at ``T - 1``, so the head runs on that position
    alone (``last=1``): a ``BxV`` product, not ``BxTxV``."""
    B, T = tokens_BxT.shape
    S = cache.slots
    kv_valid_BxS = jnp.concatenate([valid_BxT, jnp.zeros((B, S - T), bool)], axis=1)
    positions_BxT = jnp.maximum(jnp.cumsum(valid_BxT.astype(jnp.int32), axis=1) - 1, 0)
    logits_Bx1xV, cache = nnx.merge(graphdef, state)(
        tokens_BxT, positions_BxT, kv_valid_BxS, cache, 0, last=1
    )
    return logits_Bx1xV[:, 0], cache, positions_BxT[:, -1] + 1, kv_valid_BxS


# The decode loop is memory-bound: a step should stream each layer's weights once. XLA:GPU's
# Triton GEMM fusions copy each layer's dynamically sliced weights out of the stacked arrays inside
# the layer loop (read, write, read again); cuBLAS reads the slice in place. Qwen2.5-7B shape on an
# H200 (benchmarks/llm_decode.py): 0.30 -> 0.61 of the bandwidth roofline at batch 64. Other
# backends ignore the option.
DECODE_COMPILER_OPTIONS = {"xla_gpu_enable_triton_gemm": False}


@functools.partial(
    jax.jit,
    static_argnames=("graphdef", "cfg"),
    donate_argnames="cache",
    compiler_options=DECODE_COMPILER_OPTIONS,
)
def decode(
    graphdef,
    state,
    logits_BxV,
    cache,
    pos_B,
    kv_valid_BxS,
    row_keys_B,
    cfg: SampleConfig,
    rules=None,
    kind_B=None,
):
    """Sample up to ``cfg.max_new_tokens`` tokens per row, feeding each back through the cache;
    with ``rules`` (a `constrain.Constraint` of arrays), row ``b`` follows automaton
    ``kind_B[b]`` and samples only the tokens its state allows (`mask_logits`).

    The cache is returned only so that its donated buffer is updated in place."""
    model = nnx.merge(graphdef, state)
    B, N = logits_BxV.shape[0], cfg.max_new_tokens
    start = kv_valid_BxS.shape[1] - N
    eos = jnp.asarray(cfg.eos_ids or (-1,), jnp.int32)
    # The loop carries the logits in the layout XLA:CPU computes the head fastest in, and samples
    # them in place: ``VxB`` with a tied head, whose ``VxD`` embedding is then the left operand
    # (SmolLM2-135M at batch 64, a profile of the decode loop: head and sampling ~21 ms per step
    # against ~26 as ``BxV``), ``BxV`` with a ``DxV`` kernel (there ``VxB`` is ~4x slower).
    vocab_first = model.lm_head is None
    to_carry = (lambda x: x.T) if vocab_first else (lambda x: x)

    def sample(t, out_BxN, done_B, logits, rule_B):
        keys_B = jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys_B, t)
        if rules is not None:
            next_BxA = rules.next_KxSxA[kind_B, rule_B]
            logits = mask_logits(logits, to_carry(allowed_tokens(rules, kind_B, rule_B, next_BxA)))
        if vocab_first:
            tok_B = sample_columns(keys_B, logits, cfg)
        else:
            tok_B = jax.vmap(functools.partial(sample_token, cfg=cfg))(keys_B, logits)
        tok_B = jnp.where(done_B, cfg.pad_id, tok_B)
        if rules is not None:
            column_B = rules.column_V[tok_B]
            after_B = jnp.take_along_axis(next_BxA, jnp.maximum(column_B, 0)[:, None], 1)[:, 0]
            rule_B = jnp.where(column_B >= 0, after_B, rule_B)
        out_BxN = jax.lax.dynamic_update_slice(out_BxN, tok_B[:, None], (jnp.int32(0), t))
        return tok_B, out_BxN, done_B | jnp.isin(tok_B, eos), rule_B

    def body(carry):
        t, out_BxN, done_B, logits_BxV, cache, pos_B, kv_valid_BxS, rule_B = carry
        tok_B, out_BxN, done_B, rule_B = sample(t, out_BxN, done_B, logits_BxV, rule_B)
        fed_Bx1 = jnp.ones((B, 1), bool)
        kv_valid_BxS = jax.lax.dynamic_update_slice(
            kv_valid_BxS, fed_Bx1, (jnp.int32(0), start + t)
        )
        logits_BxTxV, cache = model(tok_B[:, None], pos_B[:, None], kv_valid_BxS, cache, start + t)
        logits = to_carry(logits_BxTxV[:, 0])
        return t + 1, out_BxN, done_B, logits, cache, pos_B + 1, kv_valid_BxS, rule_B

    def cond(carry):  # the last token needs no forward pass: it is sampled after the loop
        return (carry[0] < N - 1) & ~jnp.all(carry[2])

    out_BxN = jnp.full((B, N), cfg.pad_id, jnp.int32)
    logits = to_carry(logits_BxV)
    rule_B = jnp.zeros((B,), jnp.int32)
    init = (
        jnp.int32(0),
        out_BxN,
        jnp.zeros((B,), bool),
        logits,
        cache,
        pos_B,
        kv_valid_BxS,
        rule_B,
    )
    t, out_BxN, done_B, logits, cache, _, _, rule_B = jax.lax.while_loop(cond, body, init)
    _, out_BxN, _, _ = sample(t, out_BxN, done_B, logits, rule_B)
    is_eos_BxN = jnp.isin(out_BxN, eos)
    first_eos_B = jnp.where(jnp.any(is_eos_BxN, axis=1), jnp.argmax(is_eos_BxN, axis=1) + 1, N)
    return Samples(out_BxN, first_eos_B.astype(jnp.int32)), cache


def allowed_tokens(rules, kind_B: jax.Array, rule_B: jax.Array, next_BxA: jax.Array) -> jax.Array:
    """``allowed_BxV``: the candidate tokens row ``b``'s automaton state allows, and the end
    tokens where that state accepts."""
    B, V = kind_B.shape[0], rules.column_V.shape[0]
    allowed_BxV = jnp.zeros((B, V), bool).at[:, rules.tokens_A].set(next_BxA >= 0)
    accept_B = rules.accept_KxS[kind_B, rule_B]
    return allowed_BxV.at[:, rules.end_ids].set(accept_B[:, None])


@functools.partial(jax.jit, static_argnames=("cfg", "batch", "slots", "sharding"))
def _zeros(cfg: DecoderConfig, batch: int, slots: int, sharding) -> KVCache:
    cache = KVCache.zeros(cfg, batch, slots)
    return cache if sharding is None else jax.lax.with_sharding_constraint(cache, sharding)


def new_cache(model: Decoder, batch: int, slots: int, sharding=None) -> KVCache:
    """Zeroed cache, made directly on its (optional, hashable) sharding; one compile per shape."""
    return _zeros(model.cfg, batch, slots, sharding)


def generate(
    model: Decoder,
    tokens_BxT: jax.Array,
    valid_BxT: jax.Array,
    *,
    key: jax.Array,
    cfg: SampleConfig,
    row_ids_B: jax.Array | None = None,
    cache_sharding=None,
    rules=None,
    kind_B: jax.Array | None = None,
) -> Samples:
    """Sample continuations of a left-padded batch (see ``left_pad``); with ``rules`` (a
    `constrain.Constraint`), row ``b`` draws only what automaton ``kind_B[b]`` allows."""
    B, T = tokens_BxT.shape
    graphdef, state = nnx.split(model)
    cache = new_cache(model, B, T + cfg.max_new_tokens, cache_sharding)
    logits_BxV, cache, pos_B, kv_valid_BxS = prefill(graphdef, state, tokens_BxT, valid_BxT, cache)
    row_ids_B = jnp.arange(B, dtype=jnp.int32) if row_ids_B is None else row_ids_B
    row_keys_B = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, row_ids_B)
    samples, _ = decode(
        graphdef, state, logits_BxV, cache, pos_B, kv_valid_BxS, row_keys_B, cfg, rules, kind_B
    )
    return samples


def generate_fixed(
    model: Decoder,
    prompts: Sequence[Sequence[int]],
    row_ids: Sequence[int],
    *,
    key: jax.Array,
    cfg: SampleConfig,
    batch: int,
    length: int,
    rules=None,
    kind_of: Sequence[int] | None = None,
) -> Iterator[list[np.ndarray]]:
    """Continuations of many prompts in batches of exactly ``batch`` rows and ``length`` prompt
    slots (the last batch repeats its final row), so the sampler compiles once; prompt ``r``
    samples with ``fold_in(key, row_ids[r])`` whichever batch it lands in, so a resumed or
    re-batched run draws the same tokens. With ``rules`` (a `constrain.Constraint`), prompt
    ``r`` follows automaton ``kind_of[r]``. Yields each batch's real rows' tokens."""
    rules = None if rules is None else type(rules)(*map(jnp.asarray, rules))
    for start in range(0, len(prompts), batch):
        n = min(batch, len(prompts) - start)
        idx = [*range(start, start + n), *[start + n - 1] * (batch - n)]
        tokens_BxT, valid_BxT = left_pad([prompts[i] for i in idx], cfg.pad_id, length)
        rows_B = jnp.asarray([row_ids[i] for i in idx], jnp.int32)
        kind_B = None if rules is None else jnp.asarray([kind_of[i] for i in idx], jnp.int32)
        out = generate(
            model,
            jnp.asarray(tokens_BxT),
            jnp.asarray(valid_BxT),
            key=key,
            cfg=cfg,
            row_ids_B=rows_B,
            rules=rules,
            kind_B=kind_B,
        )
        toks_BxN, lens_B = np.asarray(out.tokens), np.asarray(out.lengths)
        yield [toks_BxN[b, : lens_B[b]] for b in range(n)]
