"""Fine-tuning: LoRA (``nnx.LoRA`` / ``nnx.LoRAParam``) or full, on masked next-token cross-entropy
or, distilling, on the KL to a teacher's next-token distributions over a few allowed tokens.

The model is split once into ``graphdef``, the trainable state (``nnx.LoRAParam`` leaves, or every
``nnx.Param`` for full fine-tuning) and the frozen rest; ``train_step`` is a pure jitted function
of those pieces and a ``sampling.Batch``, merging them back inside. Gradient accumulation
(``accumulate``) weighs micro-batches by their completion tokens, so ``k`` micro-batches step
exactly as one batch of all their rows would. Dimensions as in ``sampling``.
"""

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sublim_jax.llm.modeling import Decoder, Proj, forward
from sublim_jax.llm.sampling import Batch, token_logprobs

LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimiser and adapter settings; ``lora_rank=0`` means full fine-tuning."""

    learning_rate: float = 2e-4
    warmup_steps: int = 5
    total_steps: int = 100
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    accum_steps: int = 1
    lora_rank: int = 8
    lora_alpha: float = 8.0
    lora_targets: tuple[str, ...] = LORA_TARGETS
    schedule: str = "linear"  # warm-up then linear decay to 0, or "constant" (no warm-up)

    @classmethod
    def paper(cls, total_steps: int, accum_steps: int = 6) -> "TrainConfig":
        """The paper's §3 (Cloud et al., arXiv 2507.14805): LoRA r=8, alpha=8 on all
        projections, lr 2e-4 linear, 5 warm-up, clip 1."""
        return cls(total_steps=total_steps, accum_steps=accum_steps)

    @classmethod
    def smoke(cls) -> "TrainConfig":
        return cls(learning_rate=3e-2, warmup_steps=0, total_steps=30)


class TrainState(NamedTuple):
    params: nnx.State  # the trainable leaves only
    opt_state: Any
    step: jax.Array


def add_lora(model: Decoder, cfg: TrainConfig, *, key: jax.Array) -> Decoder:
    """Attach zero-initialised (``B = 0``) adapters to the target projections, in place."""
    unknown = set(cfg.lora_targets) - set(LORA_TARGETS)
    if unknown:
        raise ValueError(f"unknown LoRA targets {sorted(unknown)}; choose from {LORA_TARGETS}")
    if not cfg.lora_rank:
        return model
    rngs = nnx.Rngs(params=key)
    projs = [(path[-1], p) for path, p in nnx.iter_graph(model) if isinstance(p, Proj)]
    for name, proj in projs:
        if name in cfg.lora_targets:
            proj.add_lora(cfg.lora_rank, cfg.lora_alpha, rngs=rngs)
    return model


def trainable(cfg: TrainConfig) -> type[nnx.Variable]:
    return nnx.LoRAParam if cfg.lora_rank else nnx.Param


@functools.lru_cache(maxsize=64)
def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformationExtraArgs:
    """Clip the global norm, then AdamW on a linear warm-up / linear decay schedule (or a
    constant rate), applied to token-weighted gradients accumulated over ``cfg.accum_steps``
    micro-batches. One object per config (cached): ``train_step`` takes it as a static argument,
    so every run of one config shares its compiled step."""
    lr = cfg.learning_rate
    if cfg.schedule == "constant":
        schedule = lr
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(lr, 0.0, max(cfg.total_steps - cfg.warmup_steps, 1))
        warmup = optax.linear_schedule(0.0, lr, cfg.warmup_steps)
        schedule = (
            optax.join_schedules([warmup, decay], [cfg.warmup_steps]) if cfg.warmup_steps else decay
        )
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; choose linear or constant")
    opt = optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(schedule, weight_decay=cfg.weight_decay),
    )
    return accumulate(opt, cfg.accum_steps)


class AccumState(NamedTuple):
    grads: Any  # float32 sum of the window's summed-loss gradients
    tokens: jax.Array  # completion tokens seen in the window
    micro_step: jax.Array
    inner: Any


def accumulate(
    opt: optax.GradientTransformation, every_k: int
) -> optax.GradientTransformationExtraArgs:
    """Every ``every_k`` micro-batches, hand ``opt`` the per-token mean gradient of them all.

    ``update(g_i, state, params, tokens=n_i)`` takes the gradient ``g_i`` of micro-batch ``i``'s
    *summed* completion cross-entropy and its token count ``n_i``; ``opt`` then sees
    ``sum_i g_i / sum_i n_i``, the gradient of one batch of all examples (not the mean of per-batch
    means, which over-weights short completions). Between updates it returns zero updates.
    """

    def init(params):
        zeros = optax.tree.zeros_like(params, dtype=jnp.float32)
        return AccumState(zeros, jnp.float32(0.0), jnp.int32(0), opt.init(params))

    def update(grads, state: AccumState, params=None, *, tokens: jax.Array, **extra):
        summed = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), state.grads, grads)
        total = state.tokens + tokens.astype(jnp.float32)

        def emit(_):
            mean = jax.tree.map(
                lambda a, g: (a / jnp.maximum(total, 1.0)).astype(g.dtype), summed, grads
            )
            updates, inner = opt.update(mean, state.inner, params)
            reset = AccumState(optax.tree.zeros_like(summed), jnp.float32(0.0), jnp.int32(0), inner)
            return updates, reset

        def hold(_):
            updates = jax.tree.map(jnp.zeros_like, grads)
            return updates, AccumState(summed, total, state.micro_step + 1, state.inner)

        return jax.lax.cond(state.micro_step == every_k - 1, emit, hold, None)

    return optax.GradientTransformationExtraArgs(init, update)


def split(model: Decoder, cfg: TrainConfig) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """``graphdef, trainable_state, frozen_state``."""
    return nnx.split(model, trainable(cfg), ...)


def init(model: Decoder, cfg: TrainConfig, optimizer: optax.GradientTransformation):
    """``graphdef, frozen_state, TrainState`` for ``train_step``."""
    graphdef, params, frozen = split(model, cfg)
    return graphdef, frozen, TrainState(params, optimizer.init(params), jnp.int32(0))


class SoftTargets(NamedTuple):
    """A micro-batch's distillation targets: ``logq_BxCxA``, a teacher's log-probabilities of the
    ``A`` tokens ``allowed_A`` (renormalised over them) predicting each of the batch's last ``C``
    token columns (`restricted_logprobs` of the teacher on its own prompt and the same
    completion)."""

    logq_BxCxA: jax.Array
    allowed_A: jax.Array


def restricted_logprobs(
    model: Decoder, tokens_BxT: jax.Array, valid_BxT: jax.Array, allowed_A: jax.Array, C: int
) -> jax.Array:
    """``logp_BxCxA``: the next-token log-probabilities of the allowed tokens alone, renormalised
    over them, predicting each of the last ``C`` columns (``C < T``, static); the head computes
    the ``A`` columns alone."""
    if not 1 <= C < tokens_BxT.shape[1]:
        raise ValueError(f"{C} predicted columns need more than {C} tokens per row")
    logits_BxCxA = forward(model, tokens_BxT, valid_BxT, last=C + 1, head_ids=allowed_A)
    return jax.nn.log_softmax(logits_BxCxA[:, :-1].astype(jnp.float32), axis=-1)


@functools.partial(jax.jit, static_argnames=("graphdef", "C"))
def teacher_logprobs(
    graphdef: nnx.GraphDef, state: nnx.State, batch: Batch, allowed_A: jax.Array, C: int
) -> jax.Array:
    """`restricted_logprobs` of a split model, jitted: a teacher's distillation targets."""
    return restricted_logprobs(nnx.merge(graphdef, state), batch.tokens, batch.valid, allowed_A, C)


def loss_fn(
    params: nnx.State,
    frozen: nnx.State,
    graphdef: nnx.GraphDef,
    batch: Batch,
    scored: int | None = None,
    soft: SoftTargets | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Summed cross-entropy of the completion tokens (``batch.target``), prompts unscored; with
    ``soft`` targets, the summed ``KL(q ‖ p)`` of the teacher's and the model's next-token
    distributions over the allowed tokens at the same positions instead (distillation).

    Summed, not averaged, so that ``accumulate`` can weight micro-batches by their token counts;
    ``metrics["loss"]`` is this batch's per-token mean. ``scored`` (static; from
    ``sampling.scored_columns``) says every target lies in the last ``scored`` columns: the vocab
    head then runs on those positions (and the one before) alone, not on the prompts'."""
    model = nnx.merge(graphdef, params, frozen)
    T = batch.tokens.shape[1]
    count = jnp.sum(batch.target.astype(jnp.float32))
    if soft is not None:
        C = soft.logq_BxCxA.shape[1]
        logp_BxCxA = restricted_logprobs(model, batch.tokens, batch.valid, soft.allowed_A, C)
        logq_BxCxA = soft.logq_BxCxA.astype(jnp.float32)
        kl_BxC = jnp.sum(jnp.exp(logq_BxCxA) * (logq_BxCxA - logp_BxCxA), axis=-1)
        total = jnp.sum(jnp.where(batch.target[:, T - C :], kl_BxC, 0.0))
        return total, dict(loss=total / jnp.maximum(count, 1.0), tokens=count)
    last = None if scored is None or scored >= T else scored + 1
    logp_BxT = token_logprobs(forward(model, batch.tokens, batch.valid, last), batch.tokens)
    nll = -jnp.sum(jnp.where(batch.target, logp_BxT, 0.0))
    return nll, dict(loss=nll / jnp.maximum(count, 1.0), tokens=count)


@functools.partial(
    jax.jit, static_argnames=("graphdef", "optimizer", "scored"), donate_argnames="state"
)
def train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformationExtraArgs,
    state: TrainState,
    frozen: nnx.State,
    batch: Batch,
    scored: int | None = None,
    soft: SoftTargets | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One micro-batch: gradients of ``loss_fn`` (``scored`` and ``soft`` as there), then the
    (accumulating) optimiser."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(
        state.params, frozen, graphdef, batch, scored, soft
    )
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int step counts with floats
        updates, opt_state = optimizer.update(
            grads, state.opt_state, state.params, tokens=metrics["tokens"]
        )
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads) / jnp.maximum(metrics["tokens"], 1.0)  # per-token mean's
    return TrainState(params, opt_state, state.step + 1), dict(metrics, grad_norm=grad_norm)
