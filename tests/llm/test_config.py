"""Reading HF config.json: RoPE in both layouts, and refusal of options the decoder lacks."""

import numpy as np
import pytest

from sublim_jax.llm.config import DecoderConfig, rope_frequencies

LLAMA3 = dict(
    rope_type="llama3",
    factor=8.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=64,
)


def hf(**extra) -> dict:
    """A tiny Llama ``config.json`` in the older (transformers 4) layout, plus ``extra``."""
    base = dict(
        architectures=["LlamaForCausalLM"],
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        hidden_act="silu",
    )
    return {**base, **extra}


def test_rope_theta_from_rope_parameters():
    cfg = DecoderConfig.from_hf(hf(rope_parameters=dict(rope_theta=1e6, rope_type="default")))
    assert (cfg.rope_theta, cfg.rope_scaling) == (1e6, ())
    assert DecoderConfig.from_hf(hf(rope_theta=1e6)) == cfg


def test_llama3_scaling_inside_rope_parameters_equals_the_old_layout():
    new = DecoderConfig.from_hf(hf(rope_parameters=dict(rope_theta=5e5, **LLAMA3)))
    old = DecoderConfig.from_hf(hf(rope_theta=5e5, rope_scaling=LLAMA3))
    assert new == old and new.rope_theta == 5e5
    np.testing.assert_array_equal(rope_frequencies(new), rope_frequencies(old))
    unscaled = rope_frequencies(DecoderConfig.from_hf(hf(rope_theta=5e5)))
    assert not np.allclose(rope_frequencies(new), unscaled)


def test_round_trip_through_to_hf():
    for cfg in (
        DecoderConfig.qwen2_5_7b(),
        DecoderConfig.tiny(rope_scaling=tuple(sorted(LLAMA3.items()))),
    ):
        assert DecoderConfig.from_hf(cfg.to_hf()) == cfg


def test_unsupported_rope_parameters_are_refused():
    with pytest.raises(ValueError, match="partial rotary"):
        DecoderConfig.from_hf(hf(rope_parameters=dict(rope_theta=1e4, partial_rotary_factor=0.5)))
    with pytest.raises(ValueError, match="unsupported rope_scaling type 'yarn'"):
        DecoderConfig.from_hf(hf(rope_parameters=dict(rope_type="yarn", factor=4.0)))


def test_activation_and_mlp_bias_are_checked():
    assert DecoderConfig.from_hf(hf(hidden_act="swish")) == DecoderConfig.from_hf(hf())
    with pytest.raises(ValueError, match="unsupported hidden_act 'gelu'"):
        DecoderConfig.from_hf(hf(hidden_act="gelu"))
    with pytest.raises(ValueError, match="mlp_bias"):
        DecoderConfig.from_hf(hf(mlp_bias=True))


QWEN2 = dict(architectures=["Qwen2ForCausalLM"], max_position_embeddings=32768)


@pytest.mark.parametrize(
    "extra",
    [
        dict(use_sliding_window=False, sliding_window=4096, max_window_layers=0),  # Qwen2.5 files
        dict(use_sliding_window=True, sliding_window=4096, max_window_layers=2),  # none slides
        dict(use_sliding_window=True, sliding_window=4096),  # HF default: from layer 28 on
        dict(use_sliding_window=True, sliding_window=32768, max_window_layers=0),  # window >= max
        dict(sliding_window=4096, layer_types=["full_attention"] * 2),
    ],
)
def test_full_attention_configs_load(extra):
    assert DecoderConfig.from_hf(hf(**QWEN2, **extra)).architecture == "Qwen2ForCausalLM"


@pytest.mark.parametrize(
    "extra",
    [
        dict(use_sliding_window=True, sliding_window=4096, max_window_layers=1),
        dict(use_sliding_window=True, sliding_window=4096, max_window_layers=0),
        dict(sliding_window=4096, layer_types=["full_attention", "sliding_attention"]),
        dict(sliding_window=None, layer_types=["sliding_attention"] * 2),
    ],
)
def test_sliding_windows_are_refused(extra):
    with pytest.raises(ValueError, match="sliding-window attention"):
        DecoderConfig.from_hf(hf(**QWEN2, **extra))
