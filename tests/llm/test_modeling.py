"""Decoder structure: prefill's head on the last position, programs that do not grow with depth.

Compiled or lowered from shapes (``nnx.eval_shape``), except the numerical checks of prefill
and of remat against the full forward pass of a random tiny decoder.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sublim_jax.llm import modeling, sampling
from sublim_jax.llm.config import REMAT, DecoderConfig
from sublim_jax.llm.modeling import Decoder, KVCache
from sublim_jax.llm.modeling import forward as eager_forward

CFG = DecoderConfig.tiny(architecture="Qwen2ForCausalLM", qkv_bias=True)
PROMPTS = [[5, 17, 33, 8, 41, 9, 60], [70, 12, 3], [44]]
ATOL = 1e-5
DEPTH_GROWTH = 1.2  # lowered program size, 28 layers over 4 layers
forward = jax.jit(eager_forward)


def abstract_sampler_args(cfg: DecoderConfig, batch: int, prompt: int, new: int):
    """``graphdef, state`` and the shape-only arguments of ``prefill`` and ``decode``."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))
    cache = jax.eval_shape(lambda: KVCache.zeros(cfg, batch, prompt + new))
    tokens = jax.ShapeDtypeStruct((batch, prompt), jnp.int32)
    valid = jax.ShapeDtypeStruct((batch, prompt), jnp.bool_)
    logits = jax.ShapeDtypeStruct((batch, cfg.vocab_size), jnp.float32)
    pos = jax.ShapeDtypeStruct((batch,), jnp.int32)
    kv_valid = jax.ShapeDtypeStruct((batch, prompt + new), jnp.bool_)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), batch))
    return graphdef, state, (tokens, valid, cache), (logits, cache, pos, kv_valid, keys)


def test_prefill_logits_are_the_forward_pass_at_the_last_position():
    model = Decoder(CFG, rngs=nnx.Rngs(0))
    tokens, valid = map(jnp.asarray, sampling.left_pad(PROMPTS, length=8))
    cache = KVCache.zeros(CFG, len(PROMPTS), 8 + 4)
    logits_BxV, _, pos_B, _ = sampling.prefill(*nnx.split(model), tokens, valid, cache)
    full_BxTxV = forward(model, tokens, valid)
    assert logits_BxV.shape == (len(PROMPTS), CFG.vocab_size)
    np.testing.assert_allclose(logits_BxV, full_BxTxV[:, -1], atol=ATOL)
    np.testing.assert_array_equal(pos_B, [len(p) for p in PROMPTS])


def prefill_flops(cfg: DecoderConfig, batch: int, prompt: int) -> float:
    graphdef, state, args, _ = abstract_sampler_args(cfg, batch, prompt, 4)
    cost = sampling.prefill.lower(graphdef, state, *args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def test_prefill_head_is_a_BxV_product_not_BxTxV():
    """Growing the vocabulary by ``dV`` adds ``2*B*D*dV`` flops (``B*T`` rows would add T times)."""
    B, T, dV = 2, 64, 3584
    small, large = (dataclasses.replace(CFG, vocab_size=v) for v in (512, 512 + dV))
    added = prefill_flops(large, B, T) - prefill_flops(small, B, T)
    one_row_each = 2 * B * CFG.hidden_size * dV
    assert 0.5 * one_row_each <= added <= 1.5 * one_row_each, (added, one_row_each)


def lowered_sizes(num_layers: int) -> tuple[int, int]:
    """Characters of the lowered prefill and decode programs (deterministic, unlike timing)."""
    cfg = dataclasses.replace(CFG, num_layers=num_layers)
    graphdef, state, pre, dec = abstract_sampler_args(cfg, 2, 8, 4)
    prefill = sampling.prefill.lower(graphdef, state, *pre)
    decode = sampling.decode.lower(graphdef, state, *dec, cfg=sampling.SampleConfig(4))
    return len(prefill.as_text()), len(decode.as_text())


def test_programs_do_not_grow_with_depth():
    """The blocks run under one scan: 28 layers lower to (almost) the text of 4 layers."""
    for shallow, deep in zip(lowered_sizes(4), lowered_sizes(28), strict=True):
        assert deep <= DEPTH_GROWTH * shallow, (shallow, deep)


def primitives(jaxpr) -> list[str]:
    """Every equation's primitive name, nested programs (jit, scan and remat bodies) included."""
    names = []
    for eqn in jaxpr.eqns:
        names.append(eqn.primitive.name)
        for param in eqn.params.values():
            inner = getattr(param, "jaxpr", param)  # a ClosedJaxpr's Jaxpr
            if hasattr(inner, "eqns"):
                names += primitives(inner)
    return names


def test_remat_checkpoints_the_one_scanned_block():
    tokens, valid = map(jnp.asarray, sampling.left_pad(PROMPTS, length=8))
    deep = dataclasses.replace(CFG, num_layers=4)
    models = [Decoder(dataclasses.replace(deep, remat=r), rngs=nnx.Rngs(0)) for r in REMAT]
    counts = []
    for model in models:
        names = primitives(jax.make_jaxpr(eager_forward)(model, tokens, valid).jaxpr)
        counts.append(
            (names.count("scan"), sum(n.startswith(("remat", "checkpoint")) for n in names))
        )
    assert REMAT == ("none", "attention", "full") and counts == [(1, 0), (1, 1), (1, 1)]
    for model in models[1:]:
        np.testing.assert_array_equal(
            forward(model, tokens, valid), forward(models[0], tokens, valid)
        )
    with pytest.raises(ValueError, match="remat=True"):
        dataclasses.replace(deep, remat=True)


def test_lora_delta_vjp_equals_autodiff_of_the_product():
    """The hand-written VJP (token-sized operands on the right) is JAX's own, to float32 rounding;
    leading axes (``BxT``) are flattened and restored."""
    kx, ka, kb, ky = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(kx, (3, 5, 16), jnp.float32)
    a = jax.random.normal(ka, (16, 4), jnp.float32)
    b = jax.random.normal(kb, (4, 12), jnp.float32)
    dy = jax.random.normal(ky, (3, 5, 12), jnp.float32)
    out, vjp = jax.vjp(modeling.lora_delta, x, a, b)
    want_out, want_vjp = jax.vjp(lambda x, a, b: x @ a @ b, x, a, b)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=ATOL)
    for got, want in zip(vjp(dy), want_vjp(dy), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=ATOL)


INIT_RTOL = 0.05  # sample std of >= 16k draws against the asked std


@pytest.mark.parametrize(
    ("init", "want"),
    [
        (dict(), dict(embed=0.02, q=0.02, o=0.02, gate=0.02, down=0.02, lm_head=0.02)),
        (
            dict(init="fan_in", init_std=1.0, init_embed_std=0.05, init_depth=True),
            dict(embed=0.05, q=128**-0.5, o=128**-0.5 / 2, gate=128**-0.5, down=256**-0.5 / 2),
        ),
        (
            dict(init="fan_in", init_std=2.0),
            dict(embed=0.02, q=2 * 128**-0.5, o=2 * 128**-0.5, down=2 * 256**-0.5),
        ),
    ],
)
def test_initialisation_follows_the_config(init, want):
    """Each weight kind's std: HF's fixed 0.02 by default, gain/sqrt(fan-in) under ``fan_in``,
    residual outputs (o, down) further / sqrt(2 * layers) with ``init_depth``."""
    cfg = DecoderConfig.tiny(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_heads=4, head_dim=32, **init
    )
    model = Decoder(cfg, rngs=nnx.Rngs(params=jax.random.key(0)))
    weights = dict(
        embed=model.embed,
        q=model.layers.attn.q.kernel,
        o=model.layers.attn.o.kernel,
        gate=model.layers.mlp.gate.kernel,
        down=model.layers.mlp.down.kernel,
        lm_head=model.lm_head.kernel,
    )
    for name, std in want.items():
        got = float(jnp.std(weights[name][...]))
        np.testing.assert_allclose(got, std, rtol=INIT_RTOL, err_msg=name)


def test_bad_initialisation_is_refused():
    with pytest.raises(ValueError, match="init='xavier'"):
        DecoderConfig.tiny(init="xavier")
    with pytest.raises(ValueError, match="must be > 0"):
        DecoderConfig.tiny(init_std=0.0)
