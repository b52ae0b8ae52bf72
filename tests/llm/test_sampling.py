"""KV-cache decoding against the uncached forward, padding invariance, sampling filters, scores."""

import contextlib
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("safetensors")

from sublim_jax.llm import params, sampling
from sublim_jax.llm.modeling import KVCache
from sublim_jax.llm.modeling import forward as eager_forward

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
ATOL = 1e-5
PROMPTS = [[5, 17, 33, 8, 41, 9, 60], [70, 12, 3], [44]]
forward = jax.jit(eager_forward)
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def backend_compiles():
    """The names of the programs XLA compiles inside the block (a list, filled as they happen)."""
    compiled = []

    def listen(event: str, duration_secs: float, **meta) -> None:
        if event == BACKEND_COMPILE:
            compiled.append(meta.get("fun_name", "?"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield compiled
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


@functools.cache
def golden(name: str):
    return params.load_safetensors(os.path.join(GOLDEN, name))


@pytest.fixture(scope="module")
def model():
    return golden("qwen2")  # tied embeddings: the decode loop carries its logits ``VxB``


def test_cached_steps_equal_uncached_forward(model):
    tokens, valid = sampling.left_pad(PROMPTS, length=8)
    extra = np.array([[11, 12, 13], [21, 22, 23], [31, 32, 33]], np.int32)
    full_logits = forward(
        model,
        jnp.asarray(np.concatenate([tokens, extra], axis=1)),
        jnp.asarray(np.concatenate([valid, np.ones_like(extra, bool)], axis=1)),
    )
    cache = KVCache.zeros(model.cfg, 3, 11)
    kv_valid = jnp.concatenate([jnp.asarray(valid), jnp.zeros((3, 3), bool)], axis=1)
    positions = jnp.maximum(jnp.cumsum(jnp.asarray(valid, jnp.int32), axis=1) - 1, 0)
    logits, cache = model(jnp.asarray(tokens), positions, kv_valid, cache, 0)
    np.testing.assert_allclose(logits[jnp.asarray(valid)], full_logits[:, :8][valid], atol=ATOL)
    pos = positions[:, -1] + 1
    for t in range(3):
        kv_valid = kv_valid.at[:, 8 + t].set(True)
        step, cache = model(
            jnp.asarray(extra[:, t : t + 1]), pos[:, None] + t, kv_valid, cache, 8 + t
        )
        np.testing.assert_allclose(step[:, 0], full_logits[:, 8 + t], atol=ATOL)


def test_left_padding_does_not_change_logits(model):
    alone = [
        forward(model, *map(jnp.asarray, sampling.left_pad([p], length=len(p)))) for p in PROMPTS
    ]
    tokens, valid = sampling.left_pad(PROMPTS, length=12)
    padded = forward(model, jnp.asarray(tokens), jnp.asarray(valid))
    for b, p in enumerate(PROMPTS):
        np.testing.assert_allclose(padded[b, -len(p) :], alone[b][0], atol=ATOL)


@pytest.mark.parametrize("name", ["qwen2", "llama"])  # a tied and an untied head
def test_greedy_generation_is_argmax_of_uncached_forward(name):
    model = golden(name)
    tokens, valid = sampling.left_pad(PROMPTS)
    cfg = sampling.SampleConfig(max_new_tokens=6, temperature=0.0)
    out = sampling.generate(
        model, jnp.asarray(tokens), jnp.asarray(valid), key=jax.random.key(0), cfg=cfg
    )
    assert out.tokens.shape == (3, 6)
    np.testing.assert_array_equal(out.lengths, [6, 6, 6])
    for b, p in enumerate(PROMPTS):
        seq = [*p, *np.asarray(out.tokens[b]).tolist()]
        logits = forward(model, jnp.asarray([seq], jnp.int32), jnp.ones((1, len(seq)), bool))
        np.testing.assert_array_equal(jnp.argmax(logits[0, len(p) - 1 : -1], -1), out.tokens[b])


def test_eos_stops_rows_and_pads_after(model):
    tokens, valid = map(jnp.asarray, sampling.left_pad(PROMPTS))
    greedy = sampling.SampleConfig(max_new_tokens=5, temperature=0.0, pad_id=0)
    first = sampling.generate(model, tokens, valid, key=jax.random.key(0), cfg=greedy).tokens
    eos = int(first[1, 2])
    cfg = sampling.SampleConfig(max_new_tokens=5, temperature=0.0, eos_ids=(eos,), pad_id=0)
    out = sampling.generate(model, tokens, valid, key=jax.random.key(0), cfg=cfg)
    row = np.asarray(out.tokens[1])
    stop = int(np.argmax(row == eos)) + 1
    assert int(out.lengths[1]) == stop <= 3
    np.testing.assert_array_equal(row[stop:], 0)
    np.testing.assert_array_equal(row[:stop], np.asarray(first[1, :stop]))


def test_row_samples_do_not_depend_on_batch_mates(model):
    cfg = sampling.SampleConfig(max_new_tokens=8, temperature=1.0, top_k=20, top_p=0.9)
    key = jax.random.key(3)
    tokens, valid = map(jnp.asarray, sampling.left_pad(PROMPTS))
    together = sampling.generate(model, tokens, valid, key=key, cfg=cfg).tokens
    compiled = sampling.prefill._cache_size(), sampling.decode._cache_size()
    again = sampling.generate(model, tokens, valid, key=key, cfg=cfg).tokens
    assert (sampling.prefill._cache_size(), sampling.decode._cache_size()) == compiled
    np.testing.assert_array_equal(again, together)
    alone = sampling.generate(
        model, tokens[1:2], valid[1:2], key=key, cfg=cfg, row_ids_B=jnp.array([1], jnp.int32)
    ).tokens
    np.testing.assert_array_equal(together[1], alone[0])
    assert len({tuple(r) for r in np.asarray(together).tolist()}) == 3


def test_repeated_generate_compiles_nothing_new(model):
    tokens, valid = map(jnp.asarray, sampling.left_pad(PROMPTS[:2], length=9))  # shapes unique here
    cfg = sampling.SampleConfig(max_new_tokens=3, temperature=0.0)
    run = lambda: sampling.generate(model, tokens, valid, key=jax.random.key(0), cfg=cfg)  # noqa: E731
    with backend_compiles() as first:
        run()
    jitted = (sampling.prefill, sampling.decode, sampling._zeros)
    sizes = [f._cache_size() for f in jitted]
    with backend_compiles() as again:
        run()
        run()
    assert len(first) >= 3, first  # the listener sees compiles: prefill, decode, the zero cache
    assert again == []
    assert [f._cache_size() for f in jitted] == sizes


def test_filters_keep_the_right_support():
    logits = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05], jnp.float32))
    keep = lambda **kw: np.isfinite(sampling.filter_logits(logits, sampling.SampleConfig(**kw)))  # noqa: E731
    np.testing.assert_array_equal(keep(top_k=2), [True, True, False, False])
    np.testing.assert_array_equal(keep(top_p=0.7), [True, True, False, False])
    np.testing.assert_array_equal(keep(top_p=0.85), [True, True, True, False])
    np.testing.assert_array_equal(keep(top_p=0.4), [True, False, False, False])


def test_score_sums_completion_logprobs(model):
    prompts, completions = [[5, 17, 33], [70]], [[8, 41], [12, 3, 9]]
    got = sampling.score(model, prompts, completions)
    for b, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        seq = jnp.asarray([[*p, *c]], jnp.int32)
        logp = jax.nn.log_softmax(forward(model, seq, jnp.ones(seq.shape, bool))[0], -1)
        want = sum(float(logp[len(p) - 1 + i, t]) for i, t in enumerate(c))
        np.testing.assert_allclose(got[b], want, atol=ATOL)


def skewed_logits(V: int = 300) -> np.ndarray:
    """Logits over three blocks (the last partial) with a zero-mass block and ``-inf`` tokens."""
    logits = np.random.default_rng(0).normal(0.0, 2.0, V).astype(np.float32)
    logits[[3, 127, 128, 256, 299]] += 5.0  # heavy tokens on block edges
    logits[sampling.BLOCK : 2 * sampling.BLOCK - 1] = -np.inf  # block 1 keeps one token
    logits[[0, 1, 298]] = -np.inf
    return logits


def test_inverse_cdf_equals_the_float64_search():
    logits = skewed_logits()
    p = np.exp(logits.astype(np.float64) - logits.max())
    cdf = np.cumsum(p)
    u = np.linspace(0.0, 1.0, 4001)[:-1]
    u = np.append(u, np.nextafter(np.float32(1), np.float32(0)))  # the largest float32 < 1
    invert = jax.jit(jax.vmap(sampling.inverse_cdf, (0, None)))
    got = np.asarray(invert(u.astype(np.float32), logits))
    want = np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), np.flatnonzero(p)[-1])
    tie = np.min(np.abs(u[:, None] * cdf[-1] - cdf[None, :]), axis=1) < 1e-6 * cdf[-1]
    assert tie.sum() <= 10  # float32 rounding decides near a boundary
    np.testing.assert_array_equal(got[~tie], want[~tie])
    assert np.all(p[got] > 0)


@pytest.mark.parametrize(
    "kw", [dict(temperature=0.0), dict(temperature=0.7), dict(top_k=20), dict(top_p=0.9)]
)
def test_sampling_columns_draws_the_tokens_of_rows(kw):
    """``sample_columns`` on ``VxB`` logits = ``sample_token`` row by row, bit for bit."""
    rows = np.stack([skewed_logits(), *np.random.default_rng(1).normal(0, 3, (40, 300))])
    rows = rows.astype(np.float32)
    rows[5, 17] = rows[5, 200] = rows[5].max() + 1  # a tie: argmax keeps the first
    cfg = sampling.SampleConfig(**kw)
    keys = jax.random.split(jax.random.key(4), len(rows))
    by_row = jax.jit(jax.vmap(functools.partial(sampling.sample_token, cfg=cfg)))(keys, rows)
    by_column = jax.jit(functools.partial(sampling.sample_columns, cfg=cfg))(keys, rows.T)
    np.testing.assert_array_equal(by_column, by_row)
    assert len(set(np.asarray(by_row).tolist())) > 10  # the rows draw different tokens


def test_categorical_frequencies_match_softmax():
    """Chi-square of 200,000 keyed draws against softmax, bins of >= 20 expected draws."""
    from scipy import stats

    logits, n = skewed_logits(), 200_000
    keys = jax.random.split(jax.random.key(7), n)
    drawn = np.asarray(jax.jit(jax.vmap(sampling.categorical, (0, None)))(keys, logits))
    p = np.exp(logits.astype(np.float64) - logits.max())
    p /= p.sum()
    assert np.all(p[drawn] > 0)
    counts = np.bincount(drawn, minlength=len(p))
    big = n * p >= 20
    observed = np.append(counts[big], counts[~big].sum())
    expected = n * np.append(p[big], p[~big].sum())
    chi2 = np.sum((observed - expected) ** 2 / expected)
    assert big.sum() > 20
    assert chi2 < stats.chi2.ppf(0.999, len(observed) - 1), chi2
