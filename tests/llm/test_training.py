"""LoRA identity at init, what a step may change, overfitting, gradient accumulation, export."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sublim_jax.llm import params, training
from sublim_jax.llm.config import REMAT, DecoderConfig
from sublim_jax.llm.modeling import Decoder, forward
from sublim_jax.llm.sampling import pack, scored_columns

CFG = DecoderConfig.tiny(architecture="Qwen2ForCausalLM", qkv_bias=True)
PROMPTS = [[5, 17, 33], [70, 12], [44, 2, 9, 8], [3]]
COMPLETIONS = [[8, 41, 1], [3, 9, 1], [60, 61, 1], [7, 7, 1]]
UNEQUAL = [[8], [3, 9, 1, 4, 5], [60, 61], [7, 7, 1, 2, 3, 4, 5]]  # 1, 5, 2, 7 completion tokens


def lora_model(cfg: training.TrainConfig) -> Decoder:
    model = Decoder(CFG, rngs=nnx.Rngs(0))
    return training.add_lora(model, cfg, key=jax.random.key(1))


def test_zero_init_lora_equals_base_model():
    base = Decoder(CFG, rngs=nnx.Rngs(0))
    adapted = lora_model(training.TrainConfig(lora_rank=4))
    batch = pack(PROMPTS, COMPLETIONS)
    np.testing.assert_array_equal(
        forward(adapted, batch.tokens, batch.valid),
        forward(base, batch.tokens, batch.valid),
    )
    lora = nnx.state(adapted, nnx.LoRAParam)
    assert [x.shape[0] for x in jax.tree.leaves(lora)] == [CFG.num_layers] * 2 * 7  # stacked


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="unknown LoRA targets"):
        lora_model(training.TrainConfig(lora_targets=("qkv",)))


@pytest.mark.parametrize("rank", [4, 0])
def test_step_changes_only_trainable_leaves(rank):
    cfg = training.TrainConfig(
        lora_rank=rank, lora_targets=("q", "down"), learning_rate=1e-2, warmup_steps=0
    )
    model = lora_model(cfg) if rank else Decoder(CFG, rngs=nnx.Rngs(0))
    before = jax.tree.map(np.asarray, nnx.state(model))
    optimizer = training.make_optimizer(cfg)
    graphdef, frozen, state = training.init(model, cfg, optimizer)
    state, metrics = training.train_step(
        graphdef, optimizer, state, frozen, pack(PROMPTS, COMPLETIONS)
    )
    after = nnx.state(nnx.merge(graphdef, state.params, frozen))
    changed = {
        path
        for (path, a), (_, b) in zip(
            nnx.to_flat_state(before), nnx.to_flat_state(after), strict=True
        )
        if not np.array_equal(a[...], b[...])
    }
    trained = {p for p, _ in nnx.to_flat_state(state.params)}
    assert changed and changed <= trained
    assert all(("lora" in p) == bool(rank) for p in changed)
    assert float(metrics["grad_norm"]) > 0


@pytest.mark.parametrize(("rank", "ratio"), [(0, 0.1), (8, 0.8)])
def test_loss_decreases_when_overfitting(rank, ratio):
    pytest.importorskip("safetensors")
    cfg = training.TrainConfig(learning_rate=3e-2, warmup_steps=0, total_steps=30, lora_rank=rank)
    model = params.load_safetensors(os.path.join(os.path.dirname(__file__), "golden", "qwen2"))
    optimizer = training.make_optimizer(cfg)
    graphdef, frozen, state = training.init(
        training.add_lora(model, cfg, key=jax.random.key(1)), cfg, optimizer
    )
    batch = pack(PROMPTS, COMPLETIONS)
    losses, compiled = [], training.train_step._cache_size()
    for _ in range(cfg.total_steps):
        state, metrics = training.train_step(graphdef, optimizer, state, frozen, batch)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < ratio * losses[0], losses
    assert training.train_step._cache_size() == compiled + 1  # compiled once, reused


def test_accumulation_gives_the_big_batch_loss_and_gradient():
    """Two micro-batches with 6 and 9 completion tokens weigh as one batch of all four rows."""
    groups = ((0, 1), (2, 3))  # one micro-batch shape: one compile
    cfg = training.TrainConfig(lora_rank=0)
    optimizer = training.accumulate(optax.sgd(1.0), len(groups))  # params - mean gradient
    graphdef, frozen, state = training.init(Decoder(CFG, rngs=nnx.Rngs(0)), cfg, optimizer)
    before = jax.tree.map(np.asarray, state.params)
    big = pack(PROMPTS, UNEQUAL)
    mean_loss = lambda p: training.loss_fn(p, frozen, graphdef, big)[1]["loss"]  # noqa: E731
    want_loss, want_grads = jax.jit(jax.value_and_grad(mean_loss))(state.params)
    losses, counts = [], []
    for i, rows in enumerate(groups):
        micro = pack([PROMPTS[r] for r in rows], [UNEQUAL[r] for r in rows])
        state, metrics = training.train_step(graphdef, optimizer, state, frozen, micro)
        losses.append(float(metrics["loss"]))
        counts.append(float(metrics["tokens"]))
        if i < len(groups) - 1:  # no update before the window closes
            jax.tree.map(np.testing.assert_array_equal, state.params, before)
    np.testing.assert_allclose(np.dot(losses, counts) / sum(counts), want_loss, rtol=1e-6)
    got_grads = jax.tree.map(lambda b, a: b - np.asarray(a), before, state.params)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7), got_grads, want_grads
    )


def test_gradient_accumulation_equals_one_big_batch():
    one = training.TrainConfig(lora_rank=4, learning_rate=1e-2, warmup_steps=0)
    two = training.TrainConfig(lora_rank=4, learning_rate=1e-2, warmup_steps=0, accum_steps=2)
    full, halves = (
        pack(PROMPTS, UNEQUAL),
        [pack(PROMPTS[:2], UNEQUAL[:2]), pack(PROMPTS[2:], UNEQUAL[2:])],
    )
    results = []
    for cfg, batches in ((one, [full]), (two, halves)):
        optimizer = training.make_optimizer(cfg)
        graphdef, frozen, state = training.init(lora_model(cfg), cfg, optimizer)
        for batch in batches:
            state, _ = training.train_step(graphdef, optimizer, state, frozen, batch)
        results.append(state.params)
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_scored_tail_gives_the_full_loss_and_gradient():
    """The head on the completion columns alone (``scored``) changes nothing but the work."""
    cfg = training.TrainConfig(lora_rank=4)
    graphdef, frozen, state = training.init(lora_model(cfg), cfg, optax.sgd(1.0))
    params = jax.tree.map(lambda x: x + 0.01, state.params)  # B != 0: gradients reach A too
    batch = pack(PROMPTS, UNEQUAL, length=32)  # completions of up to 7 tokens, last
    target = np.asarray(batch.target)
    assert [scored_columns(target, m) for m in (1, 4, 16, 64)] == [7, 8, 16, 32]
    assert scored_columns(np.zeros_like(target)) == 16

    def run(scored):
        fn = jax.value_and_grad(training.loss_fn, has_aux=True)
        return jax.jit(fn, static_argnums=4)(params, frozen, graphdef, batch, scored)

    (want, want_m), want_g = run(None)
    logits = forward(nnx.merge(graphdef, params, frozen), batch.tokens, batch.valid)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)  # position t predicts token t + 1
    picked = jnp.take_along_axis(logp, batch.tokens[:, 1:, None], axis=-1)[..., 0]
    np.testing.assert_allclose(want, -jnp.sum(jnp.where(batch.target[:, 1:], picked, 0)), rtol=1e-5)
    for scored in (7, 16):
        (got, got_m), got_g = run(scored)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        assert float(got_m["tokens"]) == float(want_m["tokens"]) == 15
        close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)  # noqa: E731
        jax.tree.map(close, got_g, want_g)
    (short, _), _ = run(6)  # one target column outside the tail: its loss is dropped
    assert float(short) < float(want) - 0.1


def test_merged_and_adapter_exports(tmp_path):
    pytest.importorskip("safetensors")
    cfg = training.TrainConfig(
        lora_rank=4, lora_targets=("q", "v", "up"), learning_rate=1e-2, warmup_steps=0
    )
    optimizer = training.make_optimizer(cfg)
    graphdef, frozen, state = training.init(lora_model(cfg), cfg, optimizer)
    state, _ = training.train_step(graphdef, optimizer, state, frozen, pack(PROMPTS, COMPLETIONS))
    model = nnx.merge(graphdef, state.params, frozen)
    params.save_safetensors(model, str(tmp_path / "merged"), what="merged")
    params.save_safetensors(model, str(tmp_path / "adapter"), what="lora")
    merged = params.load_safetensors(str(tmp_path / "merged"))
    batch = pack(PROMPTS, COMPLETIONS)
    np.testing.assert_allclose(
        forward(merged, batch.tokens, batch.valid),
        forward(model, batch.tokens, batch.valid),
        atol=1e-5,
    )
    from safetensors.numpy import load_file

    adapter = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert len(adapter) == 2 * 3 * CFG.num_layers
    a = adapter["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]
    b = adapter["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    assert a.shape == (4, CFG.hidden_size) and b.shape == (CFG.num_kv_heads * CFG.head_dim, 4)
    reloaded = params.load_lora(Decoder(CFG, rngs=nnx.Rngs(0)), str(tmp_path / "adapter"))
    np.testing.assert_array_equal(
        forward(reloaded, batch.tokens, batch.valid), forward(model, batch.tokens, batch.valid)
    )
    with open(tmp_path / "adapter" / "adapter_config.json") as f:
        meta = json.load(f)
    assert (meta["r"], meta["lora_alpha"], meta["target_modules"]) == (
        4,
        8.0,
        ["q_proj", "up_proj", "v_proj"],
    )


def test_remat_gives_the_same_step():
    """Each recomputation policy takes the same step; the backward pass recomputes more dots
    from none to attention (the batched score and value dots) to full (every projection too)."""
    cfg = training.TrainConfig(lora_rank=4, learning_rate=1e-2, warmup_steps=0)
    batch = pack(PROMPTS, COMPLETIONS)
    results, dots = [], []
    for remat in REMAT:
        model = Decoder(dataclasses.replace(CFG, remat=remat), rngs=nnx.Rngs(0))
        training.add_lora(model, cfg, key=jax.random.key(1))
        optimizer = training.make_optimizer(cfg)
        graphdef, frozen, state = training.init(model, cfg, optimizer)
        grad = jax.grad(lambda p: training.loss_fn(p, frozen, graphdef, batch)[0])  # noqa: B023
        dots.append(str(jax.make_jaxpr(grad)(state.params)).count("dot_general"))
        state, _ = training.train_step(graphdef, optimizer, state, frozen, batch)
        results.append(jax.tree.leaves(state.params))
    assert dots[0] + 2 == dots[1] < dots[2], dots  # scores and values: two batched dots
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_lora_on_a_frozen_bfloat16_base():
    cfg = training.TrainConfig(lora_rank=4, learning_rate=1e-2, warmup_steps=0)
    bf16 = dataclasses.replace(CFG, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    model = training.add_lora(Decoder(bf16, rngs=nnx.Rngs(0)), cfg, key=jax.random.key(1))
    optimizer = training.make_optimizer(cfg)
    graphdef, frozen, state = training.init(model, cfg, optimizer)
    state, metrics = training.train_step(
        graphdef, optimizer, state, frozen, pack(PROMPTS, COMPLETIONS)
    )
    assert np.isfinite(float(metrics["loss"])) and float(metrics["grad_norm"]) > 0
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(frozen)} == {jnp.dtype(jnp.bfloat16)}
    assert any(
        np.any(np.asarray(b) != 0) for p, b in nnx.to_flat_state(state.params) if p[-1] == "lora_b"
    )


ALLOWED = np.array([1, 3, 7, 8, 9, 41, 60, 61], np.int32)  # every completion token of UNEQUAL


def test_head_ids_give_those_columns_of_the_full_logits():
    model = Decoder(CFG, rngs=nnx.Rngs(0))
    batch = pack(PROMPTS, UNEQUAL)
    full = forward(model, batch.tokens, batch.valid, last=5)
    some = forward(model, batch.tokens, batch.valid, last=5, head_ids=jnp.asarray(ALLOWED))
    np.testing.assert_allclose(some, full[..., ALLOWED], rtol=1e-5, atol=1e-5)


def _kl_by_hand(teacher: Decoder, student: Decoder, batch, C: int) -> float:
    """Σ over target columns of KL(q ‖ p), both full-vocabulary softmaxes renormalised over
    ALLOWED, from unrestricted float64 logits."""
    T = batch.tokens.shape[1]
    lq = np.asarray(forward(teacher, batch.tokens, batch.valid), np.float64)
    lp = np.asarray(forward(student, batch.tokens, batch.valid), np.float64)
    total = 0.0
    for b in range(batch.tokens.shape[0]):
        for t in range(T - C, T):
            if batch.target[b, t]:
                q, p = np.exp(lq[b, t - 1])[ALLOWED], np.exp(lp[b, t - 1])[ALLOWED]
                q, p = q / q.sum(), p / p.sum()
                total += float(np.sum(q * (np.log(q) - np.log(p))))
    return total


def test_distillation_loss_is_the_restricted_kl_and_zero_against_itself():
    cfg = training.TrainConfig(lora_rank=0)
    teacher = Decoder(CFG, rngs=nnx.Rngs(3))
    student = Decoder(CFG, rngs=nnx.Rngs(0))
    batch = pack(PROMPTS, UNEQUAL)
    C = max(map(len, UNEQUAL))  # every target in the last C columns, one prompt column before
    allowed = jnp.asarray(ALLOWED)
    logq = training.teacher_logprobs(*nnx.split(teacher), batch, allowed, C)
    np.testing.assert_allclose(np.exp(logq).sum(-1), 1.0, rtol=1e-5)
    graphdef, params_, frozen = training.split(student, cfg)
    soft = training.SoftTargets(logq, allowed)
    loss, m = training.loss_fn(params_, frozen, graphdef, batch, C, soft)
    assert m["tokens"] == sum(map(len, UNEQUAL))
    np.testing.assert_allclose(loss, _kl_by_hand(teacher, student, batch, C), rtol=1e-4)
    # a student distilled from its own distributions has nothing to learn: loss and gradient 0
    own = training.SoftTargets(training.teacher_logprobs(*nnx.split(student), batch, allowed, C),
                               allowed)  # fmt: skip
    grads, m = jax.grad(training.loss_fn, has_aux=True)(params_, frozen, graphdef, batch, C, own)
    assert abs(float(m["loss"])) < 1e-5
    assert float(optax.tree.norm(grads)) < 1e-4


def test_distillation_steps_bring_the_student_to_the_teacher():
    cfg = training.TrainConfig(learning_rate=1e-2, warmup_steps=0, total_steps=30, lora_rank=0)
    teacher = Decoder(CFG, rngs=nnx.Rngs(3))
    batch = pack(PROMPTS, UNEQUAL)
    C = max(map(len, UNEQUAL))  # every target in the last C columns, one prompt column before
    allowed = jnp.asarray(ALLOWED)
    soft = training.SoftTargets(training.teacher_logprobs(*nnx.split(teacher), batch, allowed, C),
                                allowed)  # fmt: skip
    optimizer = training.make_optimizer(cfg)
    graphdef, frozen, state = training.init(Decoder(CFG, rngs=nnx.Rngs(0)), cfg, optimizer)
    losses = []
    for _ in range(30):
        state, m = training.train_step(graphdef, optimizer, state, frozen, batch, C, soft)
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.2 * losses[0]
