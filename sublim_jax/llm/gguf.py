"""GGUF checkpoints (llama.cpp): dequantised weights, config and tokenizer from the metadata.

Tensors are dequantised with ``gguf.quants.dequantize`` (Q4_1, Q8_0, F16, ... all supported by the
``gguf`` package), renamed to HF keys and poured into the same skeleton as safetensors checkpoints
(``params.load_state``). llama.cpp stores Llama's q/k rows permuted for its interleaved RoPE;
``unpermute`` undoes that so the HF half-split RoPE of ``modeling`` applies unchanged.
"""

import os
import re
from typing import Any

import numpy as np
from flax import nnx

from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder
from sublim_jax.llm.params import ShardingFn, load_state, skeleton
from sublim_jax.llm.tokenizer import Tokenizer, bpe_tokenizer

ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
_BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_CONTROL = 3  # llama.cpp token type of special tokens


def hf_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``."""
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", gguf_name)
    if m:
        return f"model.layers.{m[1]}.{_BLOCK[m[2]]}.{m[3]}"
    stem, kind = gguf_name.rsplit(".", 1)
    return f"{_TOP[stem]}.{kind}"


def unpermute(w_OxI: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's ``permute``: per head, interleaved rotary pairs back to halves."""
    rest = w_OxI.shape[1:]
    w = w_OxI.reshape(heads, w_OxI.shape[0] // heads // 2, 2, *rest)
    return w.swapaxes(1, 2).reshape(w_OxI.shape)


def metadata(reader: Any) -> dict[str, Any]:
    """Scalar and string metadata (token lists left out) as plain Python values."""
    skip = ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type")
    return {k: f.contents() for k, f in reader.fields.items() if k not in skip}


def config_from_metadata(
    meta: dict[str, Any], shapes: dict[str, tuple[int, ...]], **overrides
) -> DecoderConfig:
    """``DecoderConfig`` from GGUF metadata and the tensors' (HF-order) shapes."""
    arch = meta.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown GGUF architecture {arch!r}; supported: {sorted(ARCHITECTURES)}")
    get = lambda key, default=None: meta.get(f"{arch}.{key}", default)  # noqa: E731
    heads, hidden = get("attention.head_count"), get("embedding_length")
    scaling = {"rope_type": get("rope.scaling.type"), "factor": get("rope.scaling.factor")}
    hf = dict(
        architectures=[ARCHITECTURES[arch]],
        vocab_size=get("vocab_size") or shapes["token_embd.weight"][0],
        hidden_size=hidden,
        intermediate_size=get("feed_forward_length"),
        num_hidden_layers=get("block_count"),
        num_attention_heads=heads,
        num_key_value_heads=get("attention.head_count_kv", heads),
        head_dim=get("attention.key_length", hidden // heads),
        rope_theta=get("rope.freq_base", 10000.0),
        rope_scaling=scaling if scaling["rope_type"] not in (None, "none") else None,
        rms_norm_eps=get("attention.layer_norm_rms_epsilon", 1e-6),
        tie_word_embeddings="output.weight" not in shapes,
        max_position_embeddings=get("context_length", 4096),
        # what from_hf refuses must reach it: biases are seen in the tensors, windows in metadata
        attention_bias="blk.0.attn_q.bias" in shapes,
        mlp_bias=any(re.fullmatch(r"blk\.\d+\.ffn_\w+\.bias", k) for k in shapes),
    )
    if "blk.0.attn_output.bias" in shapes:
        raise ValueError("unsupported attention output bias (attn_output.bias) in the GGUF file")
    window = get("attention.sliding_window")
    if window is not None:
        hf.update(
            sliding_window=window, layer_types=["sliding_attention"] * hf["num_hidden_layers"]
        )
    return DecoderConfig.from_hf(hf, **overrides)


def tokenizer_from_reader(reader: Any, meta: dict[str, Any]) -> Tokenizer:
    """Rebuild the byte-level BPE tokenizer and chat template stored in the GGUF metadata."""
    model = meta.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            f"unsupported GGUF tokenizer model {model!r}; only byte-level BPE ('gpt2')"
        )
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    specials = [t for t, kind in zip(tokens, types, strict=True) if kind == _CONTROL]
    tok = bpe_tokenizer(tokens, merges, specials, meta.get("tokenizer.ggml.pre", "gpt2"))
    ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding")}
    special = {f"{k}_token": tokens[i] for k, i in ids.items() if i is not None and k != "padding"}
    eos = [ids["eos"]] if ids["eos"] is not None else []
    eot = meta.get("tokenizer.ggml.eot_token_id")
    eos += [eot] if eot is not None and eot not in eos else []
    return Tokenizer(tok, meta.get("tokenizer.chat_template"), eos, special)


def load_gguf(
    path: str, *, sharding_fn: ShardingFn | None = None, **overrides
) -> tuple[Decoder, Tokenizer]:
    """A ``Decoder`` (dequantised to ``param_dtype``) and its ``Tokenizer`` from one GGUF file."""
    import gguf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"GGUF file {path!r} does not exist")
    reader = gguf.GGUFReader(path)
    meta = metadata(reader)
    if any(t.name == "rope_freqs.weight" for t in reader.tensors):
        raise ValueError(f"{path!r} stores RoPE factors (rope_freqs.weight); not supported")
    tensors = {hf_name(t.name): t for t in reader.tensors}
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
    cfg = config_from_metadata(meta, shapes, **overrides)
    permuted = meta["general.architecture"] == "llama"

    def read(key: str) -> np.ndarray:
        if key not in tensors:
            raise KeyError(f"GGUF file {path!r} has no tensor for {key!r}")
        t = tensors[key]
        w = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32)
        w = w.reshape(tuple(int(d) for d in reversed(t.shape)))
        if permuted and key.endswith(("q_proj.weight", "k_proj.weight")):
            w = unpermute(w, cfg.num_heads if "q_proj" in key else cfg.num_kv_heads)
        return w

    graphdef, abstract = skeleton(cfg)
    model = nnx.merge(graphdef, load_state(abstract, read, sharding_fn))
    return model, tokenizer_from_reader(reader, meta)
