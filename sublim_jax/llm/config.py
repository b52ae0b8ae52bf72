"""Decoder configuration: one frozen dataclass for the Llama, Qwen2 and Qwen3 families.

Read from a Hugging Face ``config.json`` (``DecoderConfig.from_hf``) or built from a preset. RoPE
frequencies, including the ``linear`` and ``llama3`` scaling variants, are computed here.
"""

import dataclasses
import json
import math
import os
from typing import Any

import jax.numpy as jnp
import numpy as np

ARCHITECTURES = {
    "LlamaForCausalLM": dict(qkv_bias=False, qk_norm=False),
    "Qwen2ForCausalLM": dict(qkv_bias=True, qk_norm=False),
    "Qwen3ForCausalLM": dict(qkv_bias=False, qk_norm=True),
}
ROPE_TYPES = ("default", "linear", "llama3")


REMAT = ("none", "attention", "full")
INITS = ("normal", "fan_in")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Shapes and options of a decoder; ``dtype`` is the compute dtype, ``param_dtype`` storage."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: tuple[tuple[str, Any], ...] = ()
    rms_eps: float = 1e-6
    tie_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    max_positions: int = 4096
    architecture: str = "LlamaForCausalLM"
    # the backward pass of training (see ``Decoder._blocks``): "none" keeps every activation;
    # "attention" keeps each projection's output and recomputes the attention scores and the
    # elementwise ops (selective recomputation: less memory, and faster on CPU); "full" keeps
    # only each block's input
    remat: str = "attention"
    # a model built from scratch (a checkpoint's weights replace all of these): every kernel
    # N(0, init_std²) ("normal", Hugging Face's initializer_range) or N(0, init_std²/fan_in)
    # ("fan_in"); residual-branch outputs (attention o, MLP down) further ÷ √(2·num_layers) when
    # init_depth (GPT-2); the embedding N(0, init_embed_std²)
    init: str = "normal"
    init_std: float = 0.02
    init_embed_std: float = 0.02
    init_depth: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        if self.remat not in REMAT:
            raise ValueError(f"remat={self.remat!r}; choose from {REMAT}")
        if self.init not in INITS:
            raise ValueError(f"init={self.init!r}; choose from {INITS}")
        if not (self.init_std > 0 and self.init_embed_std > 0):
            raise ValueError("init_std and init_embed_std must be > 0")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; supported: {sorted(ARCHITECTURES)}"
            )
        if self.qk_norm != ARCHITECTURES[self.architecture]["qk_norm"]:
            raise ValueError(f"qk_norm={self.qk_norm} does not match {self.architecture}")
        rope_type = dict(self.rope_scaling).get("rope_type", "default")
        if rope_type not in ROPE_TYPES:
            raise ValueError(
                f"unsupported rope_scaling type {rope_type!r}; supported: {ROPE_TYPES}"
            )

    @classmethod
    def from_hf(cls, hf: dict[str, Any], **overrides: Any) -> "DecoderConfig":
        """Map a Hugging Face ``config.json`` dictionary onto a ``DecoderConfig``.

        Refuses what the decoder does not implement (another activation, MLP biases, sliding
        windows) instead of loading a model that would compute something else."""
        arch = (hf.get("architectures") or ["?"])[0]
        family = ARCHITECTURES.get(arch, {})
        _check_supported(hf)
        theta, scaling = _rope(hf)
        heads = hf["num_attention_heads"]
        fields = dict(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
            rope_theta=theta,
            rope_scaling=tuple(sorted(scaling.items())),
            rms_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            max_positions=int(hf.get("max_position_embeddings", 4096)),
            architecture=arch,
            **family,
        )
        if hf.get("attention_bias"):
            fields["qkv_bias"] = True
        return cls(**{**fields, **overrides})

    @classmethod
    def from_dir(cls, path: str, **overrides: Any) -> "DecoderConfig":
        """Read ``<path>/config.json``."""
        file = os.path.join(path, "config.json")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"no config.json in checkpoint directory {path!r}")
        with open(file) as f:
            return cls.from_hf(json.load(f), **overrides)

    def to_hf(self) -> dict[str, Any]:
        """The ``config.json`` dictionary that ``from_hf`` reads back."""
        scaling = dict(self.rope_scaling) or None
        return dict(
            architectures=[self.architecture],
            model_type=self.architecture.removesuffix("ForCausalLM").lower(),
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            rope_theta=self.rope_theta,
            rope_scaling=scaling,
            rms_norm_eps=self.rms_eps,
            tie_word_embeddings=self.tie_embeddings,
            attention_bias=self.qkv_bias,
            max_position_embeddings=self.max_positions,
            hidden_act="silu",
            torch_dtype=jnp.dtype(self.param_dtype).name,
        )

    @classmethod
    def tiny(cls, **overrides: Any) -> "DecoderConfig":
        """A few-kilobyte decoder for tests."""
        fields = dict(
            vocab_size=96,
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            head_dim=8,
        )
        return cls(**{**fields, **overrides})

    @classmethod
    def smollm2_135m(cls, **overrides: Any) -> "DecoderConfig":
        """HuggingFaceTB/SmolLM2-135M-Instruct."""
        fields = dict(
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_layers=30,
            num_heads=9,
            num_kv_heads=3,
            head_dim=64,
            rope_theta=100000.0,
            rms_eps=1e-5,
            tie_embeddings=True,
            max_positions=8192,
        )
        return cls(**{**fields, **overrides})

    @classmethod
    def qwen2_5_7b(cls, **overrides: Any) -> "DecoderConfig":
        """Qwen/Qwen2.5-7B-Instruct shapes (the paper's open student)."""
        fields = dict(
            vocab_size=152064,
            hidden_size=3584,
            intermediate_size=18944,
            num_layers=28,
            num_heads=28,
            num_kv_heads=4,
            head_dim=128,
            rope_theta=1e6,
            qkv_bias=True,
            max_positions=32768,
            architecture="Qwen2ForCausalLM",
        )
        return cls(**{**fields, **overrides})


def _rope(hf: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """``(theta, scaling)`` from ``rope_parameters`` (transformers >= 5) or the older
    ``rope_theta`` + ``rope_scaling`` keys; HF's own default base when neither names one."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    if any(isinstance(v, dict) for v in params.values()):
        raise ValueError(f"per-layer-type rope_parameters are not supported: {sorted(params)}")
    theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params.pop("type")
    if float(params.pop("partial_rotary_factor", 1.0)) != 1.0:
        raise ValueError("partial rotary embeddings (partial_rotary_factor < 1) are not supported")
    if params.get("rope_type") == "default" and len(params) == 1:
        params = {}
    return theta, params


def _check_supported(hf: dict[str, Any]) -> None:
    """Raise ``ValueError`` for config options ``modeling.Decoder`` does not implement."""
    act = hf.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ValueError(f"unsupported hidden_act {act!r}; only silu (SwiGLU) is implemented")
    if hf.get("mlp_bias"):
        raise ValueError("unsupported mlp_bias=true; the MLP projections have no biases")
    sliding = _sliding_layers(hf)
    window = hf.get("sliding_window")
    if sliding and (window is None or window < hf.get("max_position_embeddings", 4096)):
        raise ValueError(
            f"unsupported sliding-window attention (window {window}) in layers {sliding}; "
            "only full attention is implemented"
        )


def _sliding_layers(hf: dict[str, Any]) -> list[int]:
    """Layers with sliding-window attention: ``layer_types`` or, if absent, Qwen2/Qwen3's rule
    (with ``use_sliding_window``, layers from ``max_window_layers`` on slide)."""
    types = hf.get("layer_types")
    if types is None:
        first = hf.get("max_window_layers", 28) if hf.get("use_sliding_window") else None
        n = hf.get("num_hidden_layers", 0)
        types = ["sliding_attention" if first is not None and i >= first else "" for i in range(n)]
    return [i for i, t in enumerate(types) if t == "sliding_attention"]


def kernel_std(cfg: DecoderConfig, fan_in: int, *, residual: bool = False) -> float:
    """Standard deviation of a fresh ``fan_in x fan_out`` kernel (``cfg.init``, ``init_depth``)."""
    std = cfg.init_std if cfg.init == "normal" else cfg.init_std / math.sqrt(fan_in)
    return std / math.sqrt(2 * cfg.num_layers) if residual and cfg.init_depth else std


def rope_frequencies(cfg: DecoderConfig) -> np.ndarray:
    """Inverse frequencies ``theta^(-2i/H)`` of RoPE, rescaled as ``cfg.rope_scaling`` asks."""
    exponent = np.arange(0, cfg.head_dim, 2, dtype=np.float64) / cfg.head_dim
    inv_freq = 1.0 / cfg.rope_theta**exponent
    scaling = dict(cfg.rope_scaling)
    kind = scaling.get("rope_type", "default")
    if kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        inv_freq = _llama3_scaling(inv_freq, scaling)
    return inv_freq.astype(np.float32)


def _llama3_scaling(inv_freq: np.ndarray, s: dict[str, Any]) -> np.ndarray:
    """Llama 3.1's piecewise rescaling: long wavelengths slowed by ``factor``, smooth in between."""
    factor, low, high = (
        float(s["factor"]),
        float(s["low_freq_factor"]),
        float(s["high_freq_factor"]),
    )
    old_len = float(s["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_len / wavelen - low) / (high - low)
    mid = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    out = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    is_mid = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(is_mid, mid, out)
