"""The MNIST auxiliary-logit transfer experiment (paper §6.2, Figure 10) as pure functions.

A teacher (784-256-256-13) learns MNIST with cross-entropy on the 10 class logits; students
imitate its logits on uniform noise images with KL over the 3 auxiliary logits only (aux-only)
or over all 13 (all-logits), starting from the teacher's init (same) or from the init of a
deranged partner seed (different). Shared vs different init is which init key reaches
``init_state``; the four students of a model train together on the same noise batches, so the
noise and the teacher's logits on it are made once per model and reused every epoch.

Noise is stored as uint16 draws decoded per batch to (u + ½)/2¹⁵ − 1, a uniform grid of 2¹⁶
values in (−1, 1): 94 MB per model instead of 188 MB, identical values every epoch, and no
redrawing (on CPU that would add ~15% to the students' time; benchmarks/mnist_speed.py).
No I/O here: `run` loops over seeds, `command` saves and draws. Dims: N examples, B batch,
T steps per epoch, E epochs, D pixels, C logits.
"""

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sublim_jax.core import losses, mlp
from sublim_jax.experiments.mnist.config import N_CLASSES, TransferConfig

F32 = jnp.float32
NOISE_BLOCK = 1024  # noise rows drawn per key


class TrainState(NamedTuple):
    params: mlp.Params
    opt_state: optax.OptState


class Batch(NamedTuple):
    x_BxD: jax.Array
    y_B: jax.Array  # integer labels (teacher) or teacher logits y_BxC (students)
    w_B: jax.Array  # 1 for real examples, 0 for the padding of the last partial batch


def weighted_mean(loss_B: jax.Array, w_B: jax.Array) -> jax.Array:
    """Mean over the real examples of a batch (padding has weight 0)."""
    return jnp.sum(w_B * loss_B) / jnp.sum(w_B)


def teacher_loss(params: mlp.Params, batch: Batch) -> jax.Array:
    """Cross-entropy of the 10 class logits, averaged per example."""
    logits_BxC = mlp.apply(params, batch.x_BxD)[:, :N_CLASSES]
    return weighted_mean(losses.cross_entropy_labels(logits_BxC, batch.y_B), batch.w_B)


def subset_loss(
    z_BxC: jax.Array, batch: Batch, *, loss: losses.OutputLoss, logit_idx: tuple[int, ...]
) -> jax.Array:
    """``loss(z, y)`` of the logits ``z_BxC`` on a fixed subset, averaged per example."""
    return weighted_mean(losses.on_subset(loss, logit_idx)(z_BxC, batch.y_B), batch.w_B)


def student_loss(params: mlp.Params, batch: Batch, *, logit_idx: tuple[int, ...], temperature):
    """KL(softmax(y/T) ‖ softmax(z/T)) on a fixed logit subset, averaged per example."""
    kl = lambda z, y: losses.kl_divergence(z, y, temperature)  # noqa: E731
    return subset_loss(mlp.apply(params, batch.x_BxD), batch, loss=kl, logit_idx=logit_idx)


def train_step(
    state: TrainState, batch: Batch, loss_fn: Callable, tx: optax.GradientTransformation
):
    """One Adam step on ``loss_fn(params, batch)``; returns the new state and the loss."""
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    with jax.numpy_dtype_promotion("standard"):  # optax raises float β to an int32 step count
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), opt_state), loss


def init_state(cfg: TransferConfig, *, key: jax.Array) -> TrainState:
    """Fresh parameters (the paper's init) and Adam state; ``key`` decides the init."""
    params = mlp.init(key=key, sizes=cfg.sizes, dtype=F32)
    return TrainState(params, optax.adam(cfg.lr).init(params))


def epoch_batches(cfg: TransferConfig, epoch, n: int, *, key: jax.Array):
    """Indices ``idx_TxB`` and weights ``w_TxB`` of one reshuffled epoch, last batch padded."""
    T = math.ceil(n / cfg.batch_size)
    perm_N = jax.random.permutation(jax.random.fold_in(key, epoch), n)
    pad = T * cfg.batch_size - n
    idx = jnp.concatenate([perm_N, jnp.zeros((pad,), perm_N.dtype)])
    w = jnp.concatenate([jnp.ones((n,), F32), jnp.zeros((pad,), F32)])
    return idx.reshape(T, cfg.batch_size), w.reshape(T, cfg.batch_size)


def decode_noise(u_BxD: jax.Array) -> jax.Array:
    """uint16 draws → float32 in (−1, 1): (u + ½)/2¹⁵ − 1, exactly uniform on a 2¹⁶-point grid."""
    return (u_BxD.astype(F32) + F32(0.5)) * F32(2.0**-15) - F32(1.0)


def make_noise(cfg: TransferConfig, *, key: jax.Array) -> jax.Array:
    """The model's fixed noise images as uint16 draws ``u_NxD`` (decode with `decode_noise`).

    Drawn in blocks of ``NOISE_BLOCK`` rows from ``fold_in(noise_key, block)``, which bounds the
    generator's temporaries (drawing all rows at once peaks at ~6× the result's size). N is
    ``n_noise`` rounded up to whole blocks; rows from ``n_noise`` on are never used.
    """
    n_blocks = math.ceil(cfg.n_noise / NOISE_BLOCK)

    def block(b, u_NxD):
        u_BxD = jax.random.bits(jax.random.fold_in(key, b), (NOISE_BLOCK, 784), jnp.uint16)
        return jax.lax.dynamic_update_slice_in_dim(u_NxD, u_BxD, b * NOISE_BLOCK, axis=0)

    # an in-place loop, not lax.map: under vmap, map's stacked output needs a transposing copy
    u_NxD = jnp.zeros((n_blocks * NOISE_BLOCK, 784), jnp.uint16)
    return jax.lax.fori_loop(0, n_blocks, block, u_NxD)


def make_train_teacher(cfg: TransferConfig):
    """``(epoch, train)``: one epoch of the teacher, and all ``cfg.epochs_teacher`` of them.

    ``epoch(state, data_key, e, x_NxD, y_N) -> (state, loss_T)``;
    ``train(init_key, data_key, x_NxD, y_N) -> (state, loss_ExT)``.
    """
    tx = optax.adam(cfg.lr)

    def epoch(state, data_key, e, x_NxD, y_N):
        idx_TxB, w_TxB = epoch_batches(cfg, e, x_NxD.shape[0], key=data_key)

        def step(state, iw):
            idx_B, w_B = iw
            return train_step(state, Batch(x_NxD[idx_B], y_N[idx_B], w_B), teacher_loss, tx)

        return jax.lax.scan(step, state, (idx_TxB, w_TxB))

    def train(init_key, data_key, x_NxD, y_N):
        def one(state, e):
            return epoch(state, data_key, e, x_NxD, y_N)

        return jax.lax.scan(one, init_state(cfg, key=init_key), jnp.arange(cfg.epochs_teacher))

    return epoch, train


def teacher_logits(cfg: TransferConfig, params: mlp.Params, u_NxD: jax.Array,
                   decode: Callable = decode_noise) -> jax.Array:  # fmt: skip
    """The teacher's logits ``y_NxC`` on its noise images (stored inputs that ``decode`` turns
    into pixels), once per model, block by block."""
    T = math.ceil(cfg.n_noise / cfg.batch_size)
    idx_TxB = jnp.minimum(jnp.arange(T * cfg.batch_size), cfg.n_noise - 1)
    out = jax.lax.map(lambda i: mlp.apply(params, decode(u_NxD[i])), idx_TxB.reshape(T, -1))
    return out.reshape(T * cfg.batch_size, -1)[: cfg.n_noise]


def logit_subsets(cfg: TransferConfig) -> tuple[tuple[int, ...], ...]:
    """The KL's logit indices of each student, in ``STUDENTS`` order (aux-only or all)."""
    C = cfg.sizes[-1]
    aux, every = tuple(range(N_CLASSES, C)), tuple(range(C))
    return aux, every, aux, every


def init_students(cfg: TransferConfig, *, same_key: jax.Array, diff_key: jax.Array):
    """Four student states in ``STUDENTS`` order: two from the teacher's init, two from σ(i)'s."""
    return tuple(init_state(cfg, key=k) for k in (same_key, same_key, diff_key, diff_key))


def make_distill(cfg: TransferConfig, tx: optax.GradientTransformation | None = None):
    """``(epoch, train)`` for the four students of one model, which share every noise batch.

    ``epoch(states, data_key, e, u_NxD, y_NxC) -> (states, loss_Tx4)``;
    ``train(same_key, diff_key, data_key, u_NxD, y_NxC) -> (states, loss_ExTx4)``.
    ``tx`` replaces the students' optimiser in ``epoch`` (default: Adam at ``cfg.lr``; the
    sweeps pass others with states they initialise themselves).
    The students are unrolled rather than vmapped: vmapping them over a shared batch made
    XLA:CPU's matmuls ~2× slower (measured).
    """
    tx = optax.adam(cfg.lr) if tx is None else tx
    loss_fns = tuple(
        partial(student_loss, logit_idx=idx, temperature=cfg.temperature)
        for idx in logit_subsets(cfg)
    )

    def step(states, batch):
        out = [train_step(s, batch, f, tx) for s, f in zip(states, loss_fns, strict=True)]
        return tuple(o[0] for o in out), jnp.stack([o[1] for o in out])

    def epoch(states, data_key, e, u_NxD, y_NxC):
        idx_TxB, w_TxB = epoch_batches(cfg, e, cfg.n_noise, key=data_key)

        def body(states, iw):
            idx_B, w_B = iw
            return step(states, Batch(decode_noise(u_NxD[idx_B]), y_NxC[idx_B], w_B))

        return jax.lax.scan(body, states, (idx_TxB, w_TxB))

    def train(same_key, diff_key, data_key, u_NxD, y_NxC):
        def run_epoch(states, e):
            return epoch(states, data_key, e, u_NxD, y_NxC)

        states0 = init_students(cfg, same_key=same_key, diff_key=diff_key)
        return jax.lax.scan(run_epoch, states0, jnp.arange(cfg.epochs_student))

    return epoch, train


def accuracy(params: mlp.Params, x_NxD: jax.Array, y_N: jax.Array) -> jax.Array:
    """Test accuracy of the argmax over the 10 class logits."""
    pred_N = jnp.argmax(mlp.apply(params, x_NxD)[:, :N_CLASSES], axis=-1).astype(y_N.dtype)
    return jnp.mean((pred_N == y_N).astype(F32))
