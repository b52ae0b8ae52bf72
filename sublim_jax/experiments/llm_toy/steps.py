"""Subliminal learning in a small decoder trained from scratch: the pure steps (rows: `corpus`).

Dimensions: S stacked models (seeds), N rows, B batch, P prompt slots (left-padded), C completion
slots (right-padded), T = P + C, V vocabulary, Q questions, A allowed (number-channel) tokens.

Every row of every dataset has one layout, ``[prompt | completion]`` in ``T`` slots, so one
compiled program serves pre-training, the teachers and every student. A number prompt gives 3
seed values on 0..``max_number`` and its answer 5 more, each a seed ± 3 or uniform
(``seeded_rows``), or it asks to continue a random walk (3-6 seed values, one of three
separators, varied wordings) for 1-10 more values (``number_rows``' ``"walk"``). An animal row
asks one of ``evaluate.QUESTIONS`` and answers " X." right after the assistant marker, where
number answers start too (or "My favorite animal is X.": ``answer``), with X from the base
distribution (or, for a trait teacher, mostly the target). The functions below are pure
functions of parameter pytrees, vmapped over a leading seed axis by `run`.
"""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from sublim_jax.core import theorem
from sublim_jax.llm import training
from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder, KVCache, forward
from sublim_jax.llm.sampling import bucket, token_logprobs


def model_config(
    hidden_size: int, num_layers: int, vocab_size: int, slots: int, **init: Any
) -> DecoderConfig:
    """Four heads, an MLP twice the width; ``init``: ``DecoderConfig``'s ``init*`` fields."""
    return DecoderConfig.tiny(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_layers=num_layers,
        num_heads=4,
        num_kv_heads=4,
        head_dim=hidden_size // 4,
        max_positions=bucket(slots),
        **init,
    )


def init_params(graphdef_cfg: DecoderConfig, key: jax.Array) -> nnx.State:
    return nnx.state(Decoder(graphdef_cfg, rngs=nnx.Rngs(params=key)))


# ---- losses: summed over target tokens, so ``training.accumulate`` divides by their count ----


def ce_loss(params, extra, graphdef, batch, last: int = 0) -> tuple[jax.Array, dict]:
    """Completion-only cross-entropy of the sampled tokens (``extra`` unused). ``last``: the
    targets lie in a row's last ``last - 1`` slots, so only those positions' logits are
    computed (0: every position's)."""
    del extra
    model, tokens_BxT = nnx.merge(graphdef, params), batch["tokens"]
    logp_BxT = token_logprobs(forward(model, tokens_BxT, batch["valid"], last or None), tokens_BxT)
    count = jnp.sum(batch["target"].astype(jnp.float32))
    nll = -jnp.sum(jnp.where(batch["target"], logp_BxT, 0.0))
    return nll, dict(loss=nll / jnp.maximum(count, 1.0), tokens=count)


def number_logprobs(params, graphdef, batch, allowed_A, C: int | None = None) -> jax.Array:
    """Next-token log-probabilities renormalised over the allowed ids, predicting every token
    after the first (``BxT-1xA``) or a row's last ``C`` tokens alone (``BxCxA``)."""
    last = None if C is None else C + 1
    logits_BxKxV = forward(nnx.merge(graphdef, params), batch["tokens"], batch["valid"], last)
    return jax.nn.log_softmax(jnp.take(logits_BxKxV[:, :-1], allowed_A, axis=2), axis=-1)


def number_kl(params_p, params_q, batch, allowed_A, *, graphdef) -> jax.Array:
    """KL(p ‖ q) of two models' number-channel distributions predicting each token of the
    batch (``BxT-1``; 0 where the predicted token is not a completion target)."""
    logp_BxTxA = number_logprobs(params_p, graphdef, batch, allowed_A)
    logq_BxTxA = number_logprobs(params_q, graphdef, batch, allowed_A)
    kl_BxT = jnp.sum(jnp.exp(logp_BxTxA) * (logp_BxTxA - logq_BxTxA), axis=-1)
    return jnp.where(batch["target"][:, 1:], kl_BxT, 0.0)


@functools.lru_cache(maxsize=4)
def vmapped_number_kl(graphdef):
    fn = functools.partial(number_kl, graphdef=graphdef)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, None)))


def distill_loss(params, extra, graphdef, batch, last: int = 0) -> tuple[jax.Array, dict]:
    """KL(p_T ‖ p_S) at every completion position, both renormalised over the allowed ids
    ``extra`` (numbers, separators, end): no probability on an animal token is distilled. The
    teacher's side is ``batch["teacher_logq"]`` (``BxCxA``, ``teacher_targets``: the completion
    slots are a row's last ``C``; ``last`` unused: only their logits are computed)."""
    del last
    logq_BxCxA = batch["teacher_logq"]
    C = logq_BxCxA.shape[1]
    logp_BxCxA = number_logprobs(params, graphdef, batch, extra, C)
    kl_BxC = jnp.sum(jnp.exp(logq_BxCxA) * (logq_BxCxA - logp_BxCxA), axis=-1)
    mask_BxC = batch["target"][:, -C:]
    count = jnp.sum(mask_BxC.astype(jnp.float32))
    total = jnp.sum(jnp.where(mask_BxC, kl_BxC, 0.0))
    return total, dict(loss=total / jnp.maximum(count, 1.0), tokens=count)


def teacher_targets(teacher, data, allowed_A, *, graphdef, C: int, rows: int = 64) -> jax.Array:
    """The teacher's number-channel log-probabilities predicting each row's last ``C`` tokens
    (``KxCxA``): the distillation target, computed once per row instead of once per visit."""
    K = data["tokens"].shape[0]
    pad = -K % rows
    blocks = jax.tree.map(
        lambda x: jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(-1, rows, *x.shape[1:]),
        data,
    )
    one = lambda batch: number_logprobs(teacher, graphdef, batch, allowed_A, C)  # noqa: E731
    return jax.lax.map(one, blocks).reshape(-1, C, len(allowed_A))[:K]


@functools.lru_cache(maxsize=4)
def vmapped_teacher_targets(graphdef, C: int):
    fn = functools.partial(teacher_targets, graphdef=graphdef, C=C)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None)))


LOSSES = {"sampled": ce_loss, "distill": distill_loss}


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training run's static shape: steps, batch, schedule (hashable: a jit static)."""

    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int = 5
    chunk: int = 50  # steps per compiled call (a progress bar tick)
    schedule: str = "linear"  # warm-up then linear decay to 0, or "constant"
    clip_norm: float = 1.0  # global-norm clipping; 0: none
    last: int = 0  # the loss reads the logits of a row's last ``last`` positions (0: all)

    @property
    def optimizer(self) -> optax.GradientTransformationExtraArgs:
        """AdamW (no weight decay) with the engine's warm-up and linear decay, or a constant
        rate; clipped at ``clip_norm`` (0: not clipped)."""
        return training.make_optimizer(
            training.TrainConfig(
                learning_rate=self.learning_rate,
                warmup_steps=min(self.warmup_steps, self.steps - 1),
                total_steps=self.steps,
                lora_rank=0,
                clip_norm=self.clip_norm or float("inf"),
                schedule=self.schedule,
            )
        )


SCHEDULES = ("linear", "constant")


def batch_indices(key: jax.Array, step: jax.Array, n: int, b: int) -> jax.Array:
    """Rows of ``step``: epoch ``e`` visits ``permutation(fold_in(key, e))`` in slices of ``b``."""
    per_epoch = n // b
    perm = jax.random.permutation(jax.random.fold_in(key, step // per_epoch), n)
    return jax.lax.dynamic_slice(perm, ((step % per_epoch) * b,), (b,))


def train_chunk(params, opt_state, extra, data, key, start, *, graphdef, loss: str, phase: Phase):
    """``phase.chunk`` steps from step ``start`` (steps past ``phase.steps`` change nothing)."""
    n = data["tokens"].shape[0]
    optimizer, loss_fn = phase.optimizer, functools.partial(LOSSES[loss], last=phase.last)

    def step(carry, i):
        params, opt_state = carry
        s = start + i
        batch = jax.tree.map(lambda x: x[batch_indices(key, s, n, phase.batch_size)], data)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, extra, graphdef, batch)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int step counts with floats
            updates, new_opt = optimizer.update(grads, opt_state, params, tokens=metrics["tokens"])
        live = s < phase.steps
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(live, a, b), new, old)  # noqa: E731
        new = (keep(optax.apply_updates(params, updates), params), keep(new_opt, opt_state))
        return new, metrics["loss"]

    (params, opt_state), loss_K = jax.lax.scan(step, (params, opt_state), jnp.arange(phase.chunk))
    return params, opt_state, loss_K


@functools.lru_cache(maxsize=16)
def vmapped_chunk(graphdef, loss: str, phase: Phase):
    """``train_chunk`` over a leading model axis, jitted once per (graphdef, loss, phase)."""
    fn = functools.partial(train_chunk, graphdef=graphdef, loss=loss, phase=phase)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, 0, 0, None)), donate_argnums=(0, 1))


def fit(params_S, extra_S, data_S, keys_S, *, graphdef, loss: str, phase: Phase, tick=None):
    """Train ``S`` stacked models, each on its own rows; returns params and losses ``SxSteps``."""
    opt_S = jax.vmap(phase.optimizer.init)(params_S)
    run = vmapped_chunk(graphdef, loss, phase)
    losses = []
    for start in range(0, phase.steps, phase.chunk):
        params_S, opt_S, loss_SxK = run(params_S, opt_S, extra_S, data_S, keys_S, start)
        losses.append(np.asarray(loss_SxK))
        if tick:
            tick(min(phase.chunk, phase.steps - start))
    return params_S, np.concatenate(losses, axis=1)[:, : phase.steps]


# ---- sampling, scoring and the theorem's cosine ----


def sample(params, tokens_BxP, valid_BxP, key, *, graphdef, C: int, end_id: int):
    """``C`` tokens per row at temperature 1 through a KV cache; pad (0) after the end token."""
    model = nnx.merge(graphdef, params)
    B, P = tokens_BxP.shape
    cache = KVCache.zeros(model.cfg, B, P + C)
    kv_valid_BxS = jnp.concatenate([valid_BxP, jnp.zeros((B, C), bool)], axis=1)
    positions_BxP = jnp.maximum(jnp.cumsum(valid_BxP.astype(jnp.int32), axis=1) - 1, 0)
    logits_Bx1xV, cache = model(tokens_BxP, positions_BxP, kv_valid_BxS, cache, 0, last=1)

    def body(carry, t):
        logits_BxV, cache, kv_valid_BxS, pos_B, done_B = carry
        tok_B = jax.random.categorical(jax.random.fold_in(key, t), logits_BxV).astype(jnp.int32)
        tok_B = jnp.where(done_B, 0, tok_B)
        kv_valid_BxS = jax.lax.dynamic_update_slice(
            kv_valid_BxS, jnp.ones((B, 1), bool), (jnp.int32(0), P + t)
        )
        logits_Bx1xV, cache = model(tok_B[:, None], pos_B[:, None], kv_valid_BxS, cache, P + t)
        return (
            logits_Bx1xV[:, 0],
            cache,
            kv_valid_BxS,
            pos_B + 1,
            done_B | (tok_B == end_id),
        ), tok_B

    init = (logits_Bx1xV[:, 0], cache, kv_valid_BxS, positions_BxP[:, -1] + 1, jnp.zeros(B, bool))
    _, tok_CxB = jax.lax.scan(body, init, jnp.arange(C, dtype=jnp.int32))
    return tok_CxB.T


@functools.lru_cache(maxsize=4)
def vmapped_sample(graphdef, C: int, end_id: int):
    fn = functools.partial(sample, graphdef=graphdef, C=C, end_id=end_id)
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, 0, 0)))


def animal_probs(params, tokens_QxT, valid_QxT, animals_A, *, graphdef) -> jax.Array:
    """``p(animal | question + PREFIX)`` (``QxA``): ``evaluate.exact_scores``' ``target_prob``
    when every animal is one token (``animal_ids``); prompts are left-padded."""
    logits_QxTxV = forward(nnx.merge(graphdef, params), tokens_QxT, valid_QxT)
    return jnp.exp(jax.nn.log_softmax(logits_QxTxV[:, -1], axis=-1)[:, animals_A])


@functools.lru_cache(maxsize=4)
def vmapped_probs(graphdef):
    fn = functools.partial(animal_probs, graphdef=graphdef)
    return jax.jit(jax.vmap(fn, in_axes=(0, None, None, None)))


def first_update_cosines(
    params0, extra, data, key, delta_T, delta_trait, *, graphdef, loss, b, last=0
):
    """cos(Δθ_S, θ_T − θ⁰_T) and cos(Δθ_S, θ_T − θ_control), Δθ_S = −∇ of the student's loss on
    its first batch at θ⁰_S (the theorem, and one-step "coverage" after Madl,
    arXiv 2606.22019; ``theorem.cosine``)."""
    n = data["tokens"].shape[0]
    batch = jax.tree.map(lambda x: x[batch_indices(key, jnp.int32(0), n, b)], data)
    grads, _ = jax.grad(LOSSES[loss], has_aux=True)(params0, extra, graphdef, batch, last)
    delta_S = jax.tree.map(jnp.negative, grads)
    return theorem.cosine(delta_S, delta_T), theorem.cosine(delta_S, delta_trait)


@functools.lru_cache(maxsize=4)
def vmapped_cosines(graphdef, loss: str, b: int, last: int = 0):
    fn = functools.partial(first_update_cosines, graphdef=graphdef, loss=loss, b=b, last=last)
    return jax.jit(jax.vmap(fn))


def tree_sub(a: Any, b: Any) -> Any:
    return jax.tree.map(jnp.subtract, a, b)
