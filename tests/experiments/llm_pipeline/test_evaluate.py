"""The exact preference score against a model whose next-token distribution is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("tokenizers")

from flax import nnx

from sublim_jax.experiments.llm_pipeline import evaluate, tiny
from sublim_jax.llm import sampling, words
from sublim_jax.llm.modeling import Decoder

ATOL = 1e-5
CANDIDATES = ("owl", "cat", "dog", "wolf")


def constant_model(logits_V: np.ndarray) -> Decoder:
    """Every block's output projection is zero and every embedding row is ones, so the final
    normalised hidden state is ones at every position: the logits are ``logits_V`` always."""
    V = logits_V.shape[0]
    model = Decoder(tiny.model_config(tiny.TinyConfig(), V), rngs=nnx.Rngs(0))
    model.embed[...] = jnp.ones_like(model.embed[...])
    for proj in (model.layers.attn.o, model.layers.mlp.down):
        proj.kernel[...] = jnp.zeros_like(proj.kernel[...])
    kernel_DxV = np.zeros(model.lm_head.kernel.shape, np.float32)
    kernel_DxV[0] = logits_V
    model.lm_head.kernel[...] = jnp.asarray(kernel_DxV)
    return model


@pytest.fixture(scope="module")
def tok():
    return words.word_tokenizer(words.vocabulary(tiny.texts()))


def test_exact_score_equals_the_known_softmax(tok):
    V = len(words.vocabulary(tiny.texts()))
    logits_V = np.asarray(jax.random.normal(jax.random.key(0), (V,)), np.float32) * 3
    p_V = np.exp(logits_V - logits_V.max())
    p_V /= p_V.sum()
    model = constant_model(logits_V)
    got = evaluate.exact_scores(model, tok, CANDIDATES, "owl")
    mass = {c: sum(np.prod(p_V[ids]) for ids in evaluate.surface_forms(tok, c)) for c in CANDIDATES}
    assert len(evaluate.surface_forms(tok, "owl")) >= 3  # " owl", "owl", " owls"
    total = sum(mass.values())
    np.testing.assert_allclose(got["target_prob"]["mean"], mass["owl"], rtol=1e-4, atol=0)
    for c in CANDIDATES:
        np.testing.assert_allclose(got["preference"][c], mass[c] / total, atol=ATOL)
    np.testing.assert_allclose(got["share_per_question"], mass["owl"] / total, atol=ATOL)


def test_sampled_score_counts_substrings_per_question(tok):
    V = len(words.vocabulary(tiny.texts()))
    logits_V = np.full((V,), -30.0, np.float32)
    logits_V[tok.tok.token_to_id(" owls")] = 0.0  # contains "Owl", case-insensitively
    logits_V[tok.tok.token_to_id(" cat")] = 0.0
    model = constant_model(logits_V)
    got = evaluate.sampled_scores(
        model, tok, "Owl", key=jax.random.key(0), samples=8, max_new_tokens=1
    )
    assert got["n"] == 50 and got["per_question"].shape == (50,)
    assert 0.3 < got["mean"] < 0.7 and got["ci95"][0] < got["mean"] < got["ci95"][1]
    assert set(np.unique(got["per_question"] * 8)) <= set(range(9))


def test_cached_form_scores_equal_full_forward_passes(tok):
    """Multi-token spellings scored from each prompt's KV cache equal one full forward pass per
    (prompt, spelling) row, on a random model with prompts of different lengths."""
    V = len(words.vocabulary(tiny.texts()))
    model = Decoder(tiny.model_config(tiny.TinyConfig(), V), rngs=nnx.Rngs(3))
    rng = np.random.default_rng(0)
    prompts = [rng.integers(4, V, size=n).tolist() for n in (5, 9, 13)]
    forms = [[7], [8, 9], [10, 11, 12], [9, 9]]
    got_QxF = evaluate.form_logprobs(model, prompts, forms, pad_id=0)
    rows = [(p, f) for p in prompts for f in forms]
    want = np.asarray(sampling.score(model, [p for p, _ in rows], [f for _, f in rows], 0))
    np.testing.assert_allclose(got_QxF, want.reshape(len(prompts), len(forms)), atol=ATOL)
