"""Constrained decoding: the mask built from a vocabulary, and a sampler that never leaves it and
keeps the allowed tokens' relative probabilities."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sublim_jax.llm import constrain, params, sampling
from tests.llm.test_sampling import GOLDEN, PROMPTS

V = 12
# A tiny vocabulary: digits alone and joined, separators with and without a space, words,
# a byte piece that is not a whole character, and two special tokens (decoded as "").
VOCAB = ["0", "1", "23", ", ", ",", ";", " ", "\n", "owl", " the", "\ufffd", "", "", "(", ")"]
EOS = (11,)


def test_the_mask_allows_exactly_the_list_characters_and_the_end():
    allowed = constrain.allowed_mask(VOCAB, constrain.number_chars(", "), EOS, vocab_size=16)
    want = {0, 1, 2, 3, 4, 6, 7, 11}  # digits, ", ", ",", " ", "\n", EOS
    assert set(np.flatnonzero(allowed)) == want and allowed.shape == (16,)
    brackets = constrain.allowed_mask(VOCAB, constrain.number_chars("; ", "()"), EOS)
    assert set(np.flatnonzero(brackets)) == {0, 1, 2, 5, 6, 7, 11, 13, 14}


@pytest.mark.parametrize(
    "texts, chars, ends, message",
    [
        (["owl", ", ", " "], constrain.number_chars(", "), (0,), "no token made of digits only"),
        (["1", "2", " "], constrain.number_chars("; "), (0,), "writes ';'"),
        (["1", ", "], constrain.number_chars(", "), (), "end-of-sequence token"),
    ],
    ids=["no digits", "separator not writable", "no end token"],
)
def test_a_vocabulary_that_cannot_write_the_list_is_refused(texts, chars, ends, message):
    with pytest.raises(ValueError, match=message):
        constrain.allowed_mask(texts, chars, ends)


logits_strategy = hnp.arrays(np.float32, V, elements=st.floats(-20, 20, width=32))
mask_strategy = hnp.arrays(bool, V).filter(lambda m: m.any())


@given(logits_strategy, mask_strategy, st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.integers(0, 99))
def test_the_sampler_never_draws_a_disallowed_token(logits, allowed, temperature, seed):
    cfg = sampling.SampleConfig(temperature=temperature, top_p=0.95 if seed % 2 else 1.0)
    keys = jax.random.split(jax.random.key(seed), 256)
    masked = sampling.mask_logits(jnp.asarray(logits), jnp.asarray(allowed))
    drawn = jax.vmap(functools.partial(sampling.sample_token, cfg=cfg), (0, None))(keys, masked)
    assert allowed[np.asarray(drawn)].all()


def test_allowed_tokens_keep_their_relative_probabilities():
    """The sampler's distribution over the allowed tokens, read exactly by inverting its CDF on
    a fine grid of uniforms, is the softmax renormalised over them."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 300).astype(np.float32)
    allowed = rng.random(300) < 0.3
    u = (np.arange(100_000, dtype=np.float64) + 0.5) / 100_000
    masked = sampling.mask_logits(jnp.asarray(logits), jnp.asarray(allowed))
    drawn = np.asarray(
        jax.jit(jax.vmap(sampling.inverse_cdf, (0, None)))(u.astype(np.float32), masked)
    )
    p = np.where(allowed, np.exp(logits.astype(np.float64) - logits.max()), 0.0)
    p /= p.sum()
    frequency = np.bincount(drawn, minlength=300) / u.size
    np.testing.assert_allclose(frequency, p, atol=2e-5)  # the grid's resolution, 1e-5 per token


def _random_rules(vocab: int, seed: int) -> constrain.Constraint:
    """Two random automata of 5 states over 40 candidate tokens, token 7 the end token."""
    rng = np.random.default_rng(seed)
    candidates = rng.choice(np.setdiff1d(np.arange(vocab), [7]), 40, replace=False)
    automata = [
        constrain.Automaton(
            np.sort(candidates),
            np.where(rng.random((5, 40)) < 0.3, rng.integers(0, 5, (5, 40)), -1).astype(np.int32),
            rng.random(5) < 0.5,
        )
        for _ in range(2)
    ]
    return constrain.stack(automata, vocab, [7])


def _follows(rules: constrain.Constraint, kind: int, row: np.ndarray) -> bool:
    """Whether ``row`` (up to its end token) is a path of automaton ``kind`` from state 0."""
    state = 0
    for token in row:
        if token == 7:
            return bool(rules.accept_KxS[kind, state])
        column = rules.column_V[token]
        if column < 0 or rules.next_KxSxA[kind, state, column] < 0:
            return False
        state = rules.next_KxSxA[kind, state, column]
    return True


@pytest.mark.parametrize("name", ["qwen2", "llama"])
def test_generation_follows_each_rows_automaton(name):
    """Each row its own automaton, its state carried through the KV-cache decode loop (both
    head layouts): every emitted token is allowed in the state the row is in."""
    model = params.load_safetensors(f"{GOLDEN}/{name}")
    rules = _random_rules(model.cfg.vocab_size, seed=1)
    kind_B = jnp.asarray([0, 1, 1], jnp.int32)
    cfg = sampling.SampleConfig(max_new_tokens=12, temperature=1.5, eos_ids=(7,), pad_id=0)
    tokens, valid = map(jnp.asarray, sampling.left_pad(PROMPTS))
    for seed in range(4):
        out = sampling.generate(
            model, tokens, valid, key=jax.random.key(seed), cfg=cfg,
            rules=constrain.Constraint(*map(jnp.asarray, rules)), kind_B=kind_B,
        )  # fmt: skip
        for b, (row, n) in enumerate(
            zip(np.asarray(out.tokens), np.asarray(out.lengths), strict=True)
        ):
            assert _follows(rules, int(kind_B[b]), row[:n]), (seed, b, row[:n])
    free = sampling.generate(model, tokens, valid, key=jax.random.key(0), cfg=cfg).tokens
    assert not all(
        _follows(rules, int(k), r) for k, r in zip(kind_B, np.asarray(free), strict=True)
    )
