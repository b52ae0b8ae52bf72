"""Parity with transformers (golden files: scripts/make_llm_golden.py), load errors, export."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

pytest.importorskip("safetensors")

from sublim_jax.llm import params, training
from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder, forward

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
FAMILIES = ("llama", "qwen2", "qwen3")
PARITY_ATOL = 1e-4


def golden_logits(model: Decoder, family: str) -> tuple[np.ndarray, np.ndarray]:
    data = np.load(os.path.join(GOLDEN, family, "expected.npz"))
    logits = forward(model, jnp.asarray(data["tokens"]), jnp.asarray(data["mask"]))
    mask = data["mask"]
    return np.asarray(logits)[mask], data["logits"][mask]


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers(family):
    model = params.load_safetensors(os.path.join(GOLDEN, family))
    ours, theirs = golden_logits(model, family)
    err = np.max(np.abs(ours - theirs))
    assert err <= PARITY_ATOL, f"{family}: max abs logit error {err:.2e}"


def test_config_reads_family_options():
    qwen2 = DecoderConfig.from_dir(os.path.join(GOLDEN, "qwen2"))
    qwen3 = DecoderConfig.from_dir(os.path.join(GOLDEN, "qwen3"))
    assert (qwen2.qkv_bias, qwen2.qk_norm, qwen2.tie_embeddings) == (True, False, True)
    assert (qwen3.qkv_bias, qwen3.qk_norm, qwen3.head_dim) == (False, True, 16)


def test_unknown_architecture_is_rejected(tmp_path):
    with open(os.path.join(GOLDEN, "llama", "config.json")) as f:
        hf = json.load(f)
    hf["architectures"] = ["GPT2LMHeadModel"]
    with pytest.raises(ValueError, match="unknown architecture 'GPT2LMHeadModel'"):
        DecoderConfig.from_hf(hf)
    hf["architectures"] = ["LlamaForCausalLM"]
    hf["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0}
    with pytest.raises(ValueError, match="unsupported rope_scaling type 'yarn'"):
        DecoderConfig.from_hf(hf)


def test_missing_files_and_keys_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        params.load_safetensors(str(tmp_path / "nope"), DecoderConfig.tiny())
    with pytest.raises(FileNotFoundError, match=r"no config\.json"):
        params.load_safetensors(str(tmp_path))
    ckpt = tmp_path / "ckpt"
    shutil.copytree(os.path.join(GOLDEN, "llama"), ckpt)
    with pytest.raises(KeyError, match=r"k_norm\.weight"):
        params.load_safetensors(
            str(ckpt), DecoderConfig.tiny(architecture="Qwen3ForCausalLM", qk_norm=True)
        )
    with pytest.raises(ValueError, match=r"embed_tokens.weight' has shape \(96, 32\)"):
        params.load_safetensors(str(ckpt), DecoderConfig.tiny(vocab_size=100))


QWEN3 = DecoderConfig.tiny(architecture="Qwen3ForCausalLM", qk_norm=True, tie_embeddings=True)
QWEN2 = DecoderConfig.tiny(architecture="Qwen2ForCausalLM", qkv_bias=True)


@pytest.mark.parametrize("cfg", [QWEN2, QWEN3])
def test_save_load_reproduces_logits(tmp_path, cfg):
    model = Decoder(cfg, rngs=nnx.Rngs(0))
    params.save_safetensors(model, str(tmp_path), what="full")
    loaded = params.load_safetensors(str(tmp_path))
    tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, 96, dtype=jnp.int32)
    valid = jnp.ones((2, 6), bool)
    np.testing.assert_array_equal(forward(loaded, tokens, valid), forward(model, tokens, valid))


@pytest.mark.parametrize("what", ["full", "lora"])
@pytest.mark.parametrize("fail_at", [1, 2])
def test_failed_export_leaves_no_partial_or_temporary_file(tmp_path, monkeypatch, what, fail_at):
    """The ``fail_at``-th rename into place fails: only the files renamed before it exist."""
    model = Decoder(QWEN2, rngs=nnx.Rngs(0))
    if what == "lora":
        training.add_lora(model, training.TrainConfig(lora_rank=2), key=jax.random.key(1))
    renamed, real_replace = [], os.replace

    def failing_replace(src, dst):
        if len(renamed) + 1 == fail_at:
            raise OSError("disk full")
        real_replace(src, dst)
        renamed.append(os.path.basename(dst))

    monkeypatch.setattr(os, "replace", failing_replace)
    out = tmp_path / "export"
    with pytest.raises(OSError, match="disk full"):
        params.save_safetensors(model, str(out), what=what)
    assert sorted(os.listdir(out) if out.exists() else []) == renamed
    assert len(renamed) == fail_at - 1
