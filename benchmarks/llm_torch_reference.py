"""Hugging Face transformers (+ peft) on the same work as `llm_speed.py`, for ratios in one run.

Not part of sublim_jax: run by `llm_speed.py --torch-python PY` under an interpreter that has
torch, transformers and peft (none is a dependency of sublim_jax), e.g.

    python3 -m venv /tmp/t && /tmp/t/bin/pip install torch transformers peft

A randomly initialised model of the shape ``--hf-config`` gives (a Hugging Face ``config.json``
as JSON, which `llm_speed.py` makes from our ``DecoderConfig.to_hf``; default SmolLM2-135M's),
in ``--dtype`` on ``--device``; weights do not change the work done. Each of ``--tasks`` is timed
on the one model: ``generate:B`` samples at temperature 1 with top-k and top-p off and no EOS
(every row produces ``--new-tokens`` tokens); ``lora:B`` times one step of peft LoRA (rank, alpha
and the seven projections as ``training.TrainConfig``), AdamW and global-norm clipping, the loss
on the completion half of each row. Prints one JSON line: per task the wall seconds of
``--repeats`` timed calls after a warm-up (on a GPU, each call ends with a synchronize).
"""

import argparse
import json
import time

import torch
import transformers

SMOLLM2_135M = dict(
    architectures=["LlamaForCausalLM"],
    model_type="llama",
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
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def build(hf: dict, dtype: torch.dtype, device: str) -> torch.nn.Module:
    fields = {
        k: v for k, v in hf.items() if k not in ("architectures", "model_type", "torch_dtype")
    }
    fields.update(bos_token_id=None, eos_token_id=None, pad_token_id=0)
    config = transformers.AutoConfig.for_model(hf["model_type"], **fields)
    architecture = getattr(transformers, hf["architectures"][0])
    torch.manual_seed(0)
    with torch.device(device):
        return architecture._from_config(config, torch_dtype=dtype)


def timed_calls(fn, repeats: int, device: str) -> list[float]:
    def call():
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    call()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def generate_call(model, batch: int, prompt_len: int, new_tokens: int, device: str):
    gen = torch.Generator(device).manual_seed(1)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, prompt_len), generator=gen, device=device)
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

    return run


def lora_call(model, batch: int, length: int, rank: int, alpha: float, device: str):
    import peft

    lcfg = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=TARGETS)
    model = peft.get_peft_model(model, lcfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    gen = torch.Generator(device).manual_seed(2)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, length), generator=gen, device=device)
    labels = ids.clone()
    labels[:, : length // 2] = -100  # prompts unscored, as training.loss_fn

    def step():
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="generate:64", help="comma-separated generate:B, lora:B")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--hf-config", default="", help="the model's config.json as JSON")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--length", type=int, default=256, help="lora: tokens per row")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hf = json.loads(args.hf_config) if args.hf_config else SMOLLM2_135M
    model = build(hf, DTYPES[args.dtype], args.device)
    times = {}
    # LoRA wraps the model, so every generate task runs first, on the plain model
    tasks = sorted(args.tasks.split(","), key=lambda t: t.startswith("lora"))
    for task in tasks:
        kind, batch = task.split(":")
        if kind == "generate":
            fn = generate_call(model, int(batch), args.prompt_len, args.new_tokens, args.device)
        elif kind == "lora":
            fn = lora_call(model, int(batch), args.length, args.rank, args.alpha, args.device)
        else:
            parser.error(f"unknown task {task!r}")
        times[task] = timed_calls(fn, args.repeats, args.device)
    report = dict(
        times=times,
        threads=torch.get_num_threads(),
        device=torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        torch=torch.__version__,
        transformers=transformers.__version__,
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
