"""GGUF: a tiny file written like llama.cpp (permuted q/k rows) loads back to the same logits."""

import dataclasses
import os

import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
pytest.importorskip("tokenizers")

from sublim_jax.llm import gguf as gguf_io  # noqa: E402
from sublim_jax.llm import params  # noqa: E402
from sublim_jax.llm.gguf import load_gguf, unpermute  # noqa: E402
from sublim_jax.llm.modeling import forward  # noqa: E402
from sublim_jax.llm.tokenizer import bpe_tokenizer  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "llama")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
)
GGUF_NAMES = {v: k for k, v in {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}.items()}  # fmt: skip


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def vocab() -> tuple[list[str], list[str]]:
    from tokenizers import pre_tokenizers

    merges = ["Ġ t", "h e", "Ġt he"]
    tokens = SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet()) + ["Ġt", "he", "Ġthe"]
    return tokens, merges


def gguf_name(key: str) -> str:
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
    }
    if key in top or key == "lm_head.weight":
        return top.get(key, "output.weight")
    _, _, layer, *mod, kind = key.split(".")
    return f"blk.{layer}.{GGUF_NAMES['.'.join(mod)]}.{kind}"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    model = params.load_safetensors(GOLDEN, rope_scaling=())
    cfg, path = model.cfg, str(tmp_path_factory.mktemp("gguf") / "tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(cfg.num_layers)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.num_kv_heads)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_eps)
    w.add_context_length(cfg.max_positions)
    w.add_vocab_size(cfg.vocab_size)
    tokens, merges = vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    w.add_token_types([3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS)))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_chat_template(TEMPLATE)
    for key, array in params.export_tensors(model, "full").items():
        if key.endswith(("q_proj.weight", "k_proj.weight")):
            array = permute(array, cfg.num_heads if "q_proj" in key else cfg.num_kv_heads)
        w.add_tensor(gguf_name(key), np.ascontiguousarray(array, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model, path


def test_gguf_logits_match_source(tiny_gguf):
    source, path = tiny_gguf
    loaded, _ = load_gguf(path)
    assert dataclasses.replace(loaded.cfg, rms_eps=source.cfg.rms_eps) == source.cfg
    assert loaded.cfg.rms_eps == pytest.approx(source.cfg.rms_eps, rel=1e-6)
    tokens = jnp.asarray([[5, 17, 33, 8, 41, 9, 60]], jnp.int32)
    valid = jnp.ones(tokens.shape, bool)
    np.testing.assert_allclose(
        forward(loaded, tokens, valid), forward(source, tokens, valid), atol=1e-6
    )


def test_gguf_tokenizer_and_template(tiny_gguf):
    _, tok = load_gguf(tiny_gguf[1])
    text = tok.apply_chat_template([{"role": "user", "content": "the the 123"}])
    assert text == "<|im_start|>user\nthe the 123<|im_end|>\n"
    ids = tok.encode(text)
    assert ids[0] == 1 and tok.eos_ids == (2,)
    assert tok.tok.token_to_id("Ġthe") in ids
    assert tok.decode(ids, skip_special=False) == text
    assert tok.encode("123") == [tok.tok.token_to_id(c) for c in "123"]


def test_unpermute_inverts_permute():
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    np.testing.assert_array_equal(unpermute(permute(w, 8), 8), w)


def test_bpe_rejects_unknown_pretokenizer():
    with pytest.raises(ValueError, match="unsupported pre-tokenizer"):
        bpe_tokenizer(["a"], [], [], pre="falcon")


def test_missing_gguf_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_gguf(str(tmp_path / "none.gguf"))


def _meta(**extra) -> dict:
    base = {"block_count": 2, "embedding_length": 8, "feed_forward_length": 16}
    base |= {"attention.head_count": 2, "vocab_size": 10, **extra}
    return {"general.architecture": "llama", **{f"llama.{k}": v for k, v in base.items()}}


SHAPES = {"token_embd.weight": (10, 8), "blk.0.attn_q.weight": (8, 8)}


@pytest.mark.parametrize(
    "meta, shapes, message",
    [
        (_meta(), {**SHAPES, "blk.1.ffn_up.bias": (16,)}, "mlp_bias"),
        (_meta(), {**SHAPES, "blk.0.attn_output.bias": (8,)}, "attention output bias"),
        (_meta(**{"attention.sliding_window": 4}), SHAPES, "sliding-window"),
    ],
)
def test_gguf_config_refuses_what_the_decoder_does_not_compute(meta, shapes, message):
    with pytest.raises(ValueError, match=message):
        gguf_io.config_from_metadata(meta, shapes)


def test_gguf_config_reads_attention_bias_from_the_tensors():
    assert not gguf_io.config_from_metadata(_meta(), SHAPES).qkv_bias
    biased = gguf_io.config_from_metadata(_meta(), {**SHAPES, "blk.0.attn_q.bias": (8,)})
    assert biased.qkv_bias and biased.architecture == "LlamaForCausalLM"
