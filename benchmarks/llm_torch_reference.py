"""Hugging Face transformers (+ peft) on the same work as `llm_speed.py`, for ratios in one run.

Not part of sublim_jax: run by `llm_speed.py --torch-python PY` under an interpreter that has
torch, transformers and peft (none is a dependency of sublim_jax), e.g.

    python3 -m venv /tmp/t && /tmp/t/bin/pip install torch transformers peft

A randomly initialised ``LlamaForCausalLM`` of SmolLM2-135M's shape (the same config as
``DecoderConfig.smollm2_135m``); weights do not change the work done. ``generate`` samples at
temperature 1 with top-k and top-p off and no EOS (every row produces ``--new-tokens`` tokens);
``lora`` times one step of peft LoRA (rank, alpha and the seven projections as
``training.TrainConfig``), AdamW and global-norm clipping, the loss on the completion half of
each row. Prints one JSON line: the best wall seconds of ``--repeats`` timed calls after a warm-up.
"""

import argparse
import json
import time

import torch
import transformers

SMOLLM2_135M = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    rope_theta=100000.0,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    max_position_embeddings=8192,
    hidden_act="silu",
)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(layers: int | None) -> transformers.LlamaForCausalLM:
    fields = dict(SMOLLM2_135M, bos_token_id=None, eos_token_id=None, pad_token_id=0)
    if layers:
        fields["num_hidden_layers"] = layers
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields)).float()


def best_seconds(fn, repeats: int) -> list[float]:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_generate(model, batch: int, prompt_len: int, new_tokens: int, repeats: int):
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt_len), generator=gen)
    mask = torch.ones_like(ids)
    model.eval()

    @torch.inference_mode()
    def run():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=0,
        )
        assert out.shape == (batch, prompt_len + new_tokens), out.shape

    return best_seconds(run, repeats)


def time_lora(model, batch: int, length: int, rank: int, alpha: float, repeats: int):
    import peft

    lcfg = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS)
    model = peft.get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=gen)
    labels = ids.clone()
    labels[:, : length // 2] = -100  # prompts unscored, as training.loss_fn

    def step():
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return best_seconds(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["generate", "lora"])
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--length", type=int, default=256, help="lora: tokens per row")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=8.0)
    parser.add_argument("--layers", type=int, default=0, help="override the depth (smoke runs)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args.layers)
    if args.task == "generate":
        times = time_generate(model, args.batch, args.prompt_len, args.new_tokens, args.repeats)
    else:
        times = time_lora(model, args.batch, args.length, args.rank, args.alpha, args.repeats)
    report = dict(
        task=args.task,
        seconds=min(times),
        times=times,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        transformers=transformers.__version__,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
