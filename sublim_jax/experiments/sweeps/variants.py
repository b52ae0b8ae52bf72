"""The students of the ``loss``, ``inputs`` and ``defences`` sweeps: the experiment's distillation
(`mnist.steps.make_distill`) with its loss, inputs, targets, init and step opened up.

What changes the program is a static `Variant` (the loss and its temperature, the kind of
inputs, weight decay, coupled L2, the KL-to-init penalty, the projection); what only changes
numbers is traced (`Knobs`: the weight decay's and the L2's λ and the penalty's weight β; the
init noise and the targets' rounding, noise and mixing), so points that differ only in those
share one compiled program.
With every knob at zero the program computes the experiment's numbers bit for bit (tested):
x + 0·y and a select are exact. Two things broke that when traced and so are compiled in, as
the optimizer sweep's learning rate is: the temperature (a traced T = 1 changed the gradients'
last bits; XLA fused the softmax differently) and the presence of weight decay (an AdamW term
with a traced λ = 0 changed the parameters' last bits), so λ = 0 runs without the term (the
coupled L2 likewise).

* losses on the student's logit subset (aux-only students on the aux logits, all-logits students
  on all): KL at temperature T (the experiment's), squared error on logits, or cross-entropy
  on the teacher's argmax (hard labels);
* inputs: uniform noise (the experiment's uint16 draws), Gaussian noise (the same draws through
  the normal quantile function, √2·erfinv(2p − 1)), or images stored once as uint8 for every seed
  and decoded per batch to `sublim_jax.io.data.normalize`'s values;
* defences: AdamW's decoupled weight decay, torch Adam's coupled L2 (`make_tx`), noise on the
  students' init, rounded or noisy teacher outputs, a fraction of targets from an untrained
  model, a decaying KL penalty to the student's own initial outputs, and the projection of each
  update off Δθ_T = θ_T − θ⁰_T.

Randomness of the defences comes from the seed's noise key folded with `TAGS` (far above any
noise block index), so it never overlaps the experiment's draws. No I/O here.
Dims: N inputs, B batch, T steps per epoch, D pixels, C logits, K a logit subset.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sublim_jax.core import losses, mlp
from sublim_jax.experiments.mnist.config import TransferConfig
from sublim_jax.experiments.mnist.steps import (
    Batch,
    TrainState,
    decode_noise,
    epoch_batches,
    logit_subsets,
    subset_loss,
    train_step,
    weighted_mean,
)
from sublim_jax.experiments.sweeps import steps
from sublim_jax.io import data

F32 = jnp.float32
TAGS = {"init_noise": 0x7FFF_FF00, "output_noise": 0x7FFF_FF01, "mix": 0x7FFF_FF02,
        "untrained": 0x7FFF_FF03, "shuffle": 0x7FFF_FF04}  # fmt: skip


class Variant(NamedTuple):
    """What a point compiles in."""

    loss: str = "kl"  # kl, mse or hard (see `output_loss`)
    temperature: float = 1.0  # the KL's
    inputs: str = "noise"  # one of DECODERS
    weight_decay: bool = False  # AdamW's decoupled weight decay (λ > 0, traced)
    penalty: bool = False  # the KL-to-init penalty (an extra forward pass per step)
    project: bool = False  # project each update off Δθ_T
    l2: bool = False  # L2 coupled into Adam's moments (λ > 0, traced)


class Knobs(NamedTuple):
    """What a point traces: float32 scalars."""

    weight_decay: jax.Array
    penalty: jax.Array  # β, the KL-to-init penalty's weight at step 0
    l2: jax.Array  # λ of the coupled L2


def decode_gaussian(u_BxD: jax.Array) -> jax.Array:
    """uint16 draws → standard normal quantiles Φ⁻¹(p) = √2·erfinv(2p − 1) of the same grid
    p = (u + ½)/2¹⁶ that `decode_noise` maps to 2p − 1 (|x| ≤ 4.4)."""
    return F32(math.sqrt(2.0)) * jax.scipy.special.erfinv(decode_noise(u_BxD))


_PIXEL_VALUES = data.normalize(np.arange(256, dtype=np.uint8))


def decode_images(x_BxD: jax.Array) -> jax.Array:
    """uint8 pixels → float32 in [−1, 1], exactly `sublim_jax.io.data.normalize`'s values: a table
    lookup, since XLA's x/255 is not correctly rounded (1 ulp off for some pixels)."""
    return jnp.asarray(_PIXEL_VALUES)[x_BxD.astype(jnp.int32)]


DECODERS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "noise": decode_noise,
    "gaussian": decode_gaussian,
    "images": decode_images,
}


def output_loss(kind: str, temperature: float) -> losses.OutputLoss:
    """The per-example loss L(z, y) of a student on its logit subset."""
    if kind == "kl":
        return lambda z, y: losses.kl_divergence(z, y, temperature)
    return {"mse": losses.squared_error, "hard": losses.hard_label_cross_entropy}[kind]


def student_loss(params: mlp.Params, batch: Batch, *, loss: losses.OutputLoss, logit_idx,
                 theta0: mlp.Params | None = None, beta=None) -> jax.Array:  # fmt: skip
    """``loss`` on a logit subset, averaged per example; with ``theta0``, plus the penalty to
    the initial outputs β·KL(softmax(f(θ⁰, x)) ‖ softmax(f(θ, x))) over all logits."""
    z_BxC = mlp.apply(params, batch.x_BxD)
    out = subset_loss(z_BxC, batch, loss=loss, logit_idx=logit_idx)
    if theta0 is None:
        return out
    kl_B = losses.kl_divergence(z_BxC, mlp.apply(theta0, batch.x_BxD))
    return out + beta * weighted_mean(kl_B, batch.w_B)


def penalty_decay(step: jax.Array, steps_per_epoch: int) -> jax.Array:
    """exp(−step/T): the penalty falls by e every epoch (strong early, decayed)."""
    return jnp.exp(-step.astype(F32) / F32(steps_per_epoch))


def project_out(direction: mlp.Params) -> optax.GradientTransformation:
    """u ← u − (u·d / d·d)·d over the whole parameter vector (unchanged if d = 0)."""

    def update(updates, state, params=None):
        dd = optax.tree_utils.tree_vdot(direction, direction)
        c = jnp.where(dd > 0, optax.tree_utils.tree_vdot(updates, direction) / dd, F32(0))
        return jax.tree.map(lambda u, d: u - c * d, updates, direction), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_tx(lr: float, weight_decay=None, direction: mlp.Params | None = None, l2=None):
    """Adam at ``lr`` (the experiment's); with ``l2`` = λ, first λ·θ added to the gradient, so
    that it enters Adam's moments (coupled L2: ``torch.optim.Adam(lr, weight_decay=λ)``); with
    ``weight_decay`` = λ, AdamW's decoupled decay −lr·λ·θ added after Adam's normalisation; then
    the projection off ``direction`` when given."""
    parts = [optax.adam(lr)]
    if l2 is not None:
        parts.insert(0, optax.add_decayed_weights(l2))
    if weight_decay is not None:
        parts.append(optax.add_decayed_weights(-lr * weight_decay))
    if direction is not None:
        parts.append(project_out(direction))
    return optax.chain(*parts)


def _loss_fns(cfg_s: TransferConfig, variant: Variant, knobs: Knobs, theta0s, beta):
    out = output_loss(variant.loss, variant.temperature)
    return tuple(
        partial(
            student_loss,
            loss=out,
            logit_idx=idx,
            beta=beta,
            theta0=theta0s[k] if variant.penalty else None,
        )
        for k, idx in enumerate(logit_subsets(cfg_s))
    )


def _tx(lr: float, variant: Variant, knobs: Knobs, delta_theta_T):
    weight_decay = knobs.weight_decay if variant.weight_decay else None
    l2 = knobs.l2 if variant.l2 else None
    return make_tx(lr, weight_decay, delta_theta_T if variant.project else None, l2)


def init_students(cfg_s: TransferConfig, lr: float, variant: Variant, theta0_T, theta0_P,
                  noise_key, sigma) -> tuple[TrainState, ...]:  # fmt: skip
    """The four students (`STUDENTS` order) at θ⁰ + σ·ξ, ξ a fresh draw of the init's law
    (one per seed, the same for all four); σ = 0 is exactly the experiment's inits."""
    xi = mlp.init(key=jax.random.fold_in(noise_key, TAGS["init_noise"]), sizes=cfg_s.sizes)
    tx = _tx(lr, variant, Knobs(F32(0), F32(0), F32(0)), xi)  # the state's structure only
    same, diff = (jax.tree.map(lambda t, x: t + sigma * x, th, xi) for th in (theta0_T, theta0_P))
    return tuple(TrainState(p, tx.init(p)) for p in (same, same, diff, diff))


def untrained_params(cfg: TransferConfig, noise_key) -> mlp.Params:
    """An untrained model of the teacher's architecture, independent of every init in the run."""
    return mlp.init(key=jax.random.fold_in(noise_key, TAGS["untrained"]), sizes=cfg.sizes)


def targets(y_NxC: jax.Array, y_untrained_NxC: jax.Array, noise_key, q, tau, f) -> jax.Array:
    """The teacher's outputs as a defender would release them, drawn once per seed: rounded to
    multiples of ``q`` (when q > 0), plus N(0, τ²) noise per logit, then a random fraction ``f``
    of the examples replaced by an untrained model's outputs. q = τ = f = 0 returns ``y_NxC``."""
    y = jnp.where(q > 0, q * jnp.round(y_NxC / q), y_NxC)
    z = jax.random.normal(jax.random.fold_in(noise_key, TAGS["output_noise"]), y.shape, F32)
    y = y + tau * z
    r_N = jax.random.uniform(jax.random.fold_in(noise_key, TAGS["mix"]), y.shape[:1], F32)
    return jnp.where((r_N < f)[:, None], y_untrained_NxC, y)


def make_epoch(cfg_s: TransferConfig, lr: float, variant: Variant):
    """``epoch(states, data_key, e, x_NxD, y_NxC, knobs, theta0s, delta_theta_T) ->
    (states, loss_Tx4)``: the experiment's student epoch (same batches, same `train_step`) with
    the variant's inputs, loss and optimiser; ``theta0s`` are the four students' inits."""
    decode = DECODERS[variant.inputs]
    T = math.ceil(cfg_s.n_noise / cfg_s.batch_size)

    def epoch(states, data_key, e, x_NxD, y_NxC, knobs, theta0s, delta_theta_T):
        tx = _tx(lr, variant, knobs, delta_theta_T)
        idx_TxB, w_TxB = epoch_batches(cfg_s, e, cfg_s.n_noise, key=data_key)

        def body(states, tiw):
            t, idx_B, w_B = tiw
            beta = knobs.penalty * penalty_decay(e * T + t, T)
            fns = _loss_fns(cfg_s, variant, knobs, theta0s, beta)
            batch = Batch(decode(x_NxD[idx_B]), y_NxC[idx_B], w_B)
            out = [train_step(s, batch, f, tx) for s, f in zip(states, fns, strict=True)]
            return tuple(o[0] for o in out), jnp.stack([o[1] for o in out])

        return jax.lax.scan(body, states, (jnp.arange(T), idx_TxB, w_TxB))

    return epoch


def first_step_cosines(cfg_s: TransferConfig, lr: float, variant: Variant, states, theta0s,
                       delta_theta_T, data_key, x_NxD, y_NxC, knobs) -> jax.Array:  # fmt: skip
    """`steps.first_step_cosines` for a variant: the aux-only students' first
    update (as the variant's optimiser makes it, projection included) and negative gradient,
    each as a cosine with Δθ_T; order `steps.COSINES`."""
    tx = _tx(lr, variant, knobs, delta_theta_T)
    idx_TxB, w_TxB = epoch_batches(cfg_s, 0, cfg_s.n_noise, key=data_key)
    batch = Batch(DECODERS[variant.inputs](x_NxD[idx_TxB[0]]), y_NxC[idx_TxB[0]], w_TxB[0])
    fns = _loss_fns(cfg_s, variant, knobs, theta0s, knobs.penalty)
    return steps.update_cosines(fns, tx, states, batch, delta_theta_T)


def pixel_permutation(seed: int) -> np.ndarray:
    """One fixed permutation of the 784 pixels per run (the same for every seed and image)."""
    key = jax.random.fold_in(jax.random.key(seed), TAGS["shuffle"])
    return np.asarray(jax.random.permutation(key, 784))


def image_inputs(x_NxD: np.ndarray, n: int, perm_D: np.ndarray | None = None) -> np.ndarray:
    """The first ``n`` images as uint8 rows (pixels permuted by ``perm_D`` when given)."""
    if x_NxD.dtype != np.uint8 or x_NxD.ndim != 2 or x_NxD.shape[0] < n:
        raise ValueError(f"need ≥ {n} uint8 image rows, got {x_NxD.dtype} {x_NxD.shape}")
    x = x_NxD[:n]
    return x if perm_D is None else x[:, perm_D]
