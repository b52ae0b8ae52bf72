"""Run by test_sharding.py in a subprocess with 4 fake CPU devices; prints one JSON line.

Compares, on the golden Qwen2 checkpoint, a 2x2 ``(fsdp, tp)`` mesh against one device: logits,
greedy samples and one LoRA training step; reports the parameter specs, and those of a ``tp=4``
mesh, where the 2 KV heads cannot be split (its logits are compared too).
"""

import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from sublim_jax.llm import params, sampling, sharding, training  # noqa: E402
from sublim_jax.llm.config import DecoderConfig  # noqa: E402
from sublim_jax.llm.modeling import forward  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "qwen2")
PROMPTS = [[5, 17, 33, 8], [70, 12], [44, 2, 9], [3]]
COMPLETIONS = [[8, 41, 1], [3, 9, 1], [60, 61, 1], [7, 7, 1]]


def run(model, rules=None, mesh=None) -> dict:
    tokens, valid = sampling.left_pad(PROMPTS, length=8)
    batch = sampling.pack(PROMPTS, COMPLETIONS)
    if mesh is not None:
        put = lambda x: jax.device_put(x, sharding.activation(rules, mesh, "tokens", x.shape))  # noqa: E731
        tokens, valid, batch = put(tokens), put(valid), jax.tree.map(put, batch)
    logits = jax.jit(forward)(model, jnp.asarray(tokens), jnp.asarray(valid))
    cfg = sampling.SampleConfig(max_new_tokens=4, temperature=0.0)
    slots = sharding.cache_sharding(rules, mesh, model.cfg, 4, 12) if mesh is not None else None
    samples = sampling.generate(
        model,
        jnp.asarray(tokens),
        jnp.asarray(valid),
        key=jax.random.key(0),
        cfg=cfg,
        cache_sharding=slots,
    )
    cache_on_slots = mesh is None or all(
        leaf.sharding.is_equivalent_to(want, leaf.ndim)
        for leaf, want in zip(
            jax.tree.leaves(sampling.new_cache(model, 4, 12, slots)),
            jax.tree.leaves(slots),
            strict=True,
        )
    )
    tcfg = training.TrainConfig(lora_rank=4, learning_rate=1e-2, warmup_steps=0)
    training.add_lora(model, tcfg, key=jax.random.key(1))
    if mesh is not None:
        sharding.shard_model(model, rules, mesh)
    optimizer = training.make_optimizer(tcfg)
    graphdef, frozen, state = training.init(model, tcfg, optimizer)
    state, metrics = training.train_step(graphdef, optimizer, state, frozen, batch)
    return dict(
        logits=np.asarray(logits),
        tokens=np.asarray(samples.tokens),
        lora=[np.asarray(x) for x in jax.tree.leaves(state.params)],
        loss=float(metrics["loss"]),
        logits_sharding=str(logits.sharding.spec) if mesh is not None else "",
        cache_on_slots=cache_on_slots,
    )


def specs(model) -> dict[str, str]:
    return {
        "/".join(map(str, p)): str(v[...].sharding.spec)
        for p, v in nnx.to_flat_state(nnx.state(model))
    }


def tensor_parallel_4(rules, cfg, logits_one) -> tuple[dict[str, str], float]:
    """``tp=4`` over 4 query and 2 KV heads: KV weights must stay whole; logits unchanged."""
    mesh = sharding.make_mesh(tp=4)
    model = params.load_safetensors(GOLDEN, cfg, sharding_fn=sharding.sharding_fn(rules, mesh, cfg))
    sharding.attach(model, rules, mesh)
    tokens, valid = map(jnp.asarray, sampling.left_pad(PROMPTS, length=8))
    logits = jax.jit(forward)(model, tokens, valid)
    return specs(model), float(np.max(np.abs(np.asarray(logits) - logits_one)))


def main() -> None:
    one = run(params.load_safetensors(GOLDEN))
    cfg = DecoderConfig.from_dir(GOLDEN)
    rules, mesh = sharding.ShardingRules(), sharding.make_mesh(data=1, fsdp=2, tp=2)
    model = params.load_safetensors(GOLDEN, cfg, sharding_fn=sharding.sharding_fn(rules, mesh, cfg))
    sharding.attach(model, rules, mesh)
    four = run(model, rules, mesh)
    tp4, tp4_err = tensor_parallel_4(rules, cfg, one["logits"])
    out = dict(
        devices=jax.device_count(),
        specs=specs(model),
        tp4_specs=tp4,
        tp4_logits_err=tp4_err,
        logits_err=float(np.max(np.abs(one["logits"] - four["logits"]))),
        tokens_equal=bool(np.array_equal(one["tokens"], four["tokens"])),
        lora_err=max(
            float(np.max(np.abs(a - b))) for a, b in zip(one["lora"], four["lora"], strict=True)
        ),
        loss=(one["loss"], four["loss"]),
        logits_sharding=four["logits_sharding"],
        cache_on_slots=four["cache_on_slots"],
    )
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
