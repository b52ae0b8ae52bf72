"""The sweeps' training maths, as pure functions: the teachers' and students' configs per point,
the students' optimisers and inits (layer-wise mixes of θ⁰_T and θ⁰_P), the first-step cosines
with Δθ_T, teacher groups and their steps, the students' steps and images (``batch-size``) and
their cut last epoch, the tracked epochs of ``alignment-over-training``, and a sweep's training
FLOPs. No I/O here."""

import dataclasses
import itertools
import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from sublim_jax.core import mlp, theorem
from sublim_jax.experiments.mnist.config import TransferConfig
from sublim_jax.experiments.mnist.steps import (
    Batch,
    TrainState,
    decode_noise,
    epoch_batches,
    logit_subsets,
    student_loss,
    teacher_loss,
    train_step,
)
from sublim_jax.experiments.sweeps.grid import OPTIMIZERS
from sublim_jax.experiments.sweeps.points import Point

F32 = jnp.float32


def teacher_config(cfg: TransferConfig, points: tuple[Point, ...]) -> TransferConfig:
    """The teachers' config: the base, with the grid's largest ``n_aux`` when points set it."""
    m = [p.n_aux for p in points if p.n_aux is not None]
    return dataclasses.replace(cfg, n_aux=max(m)) if m else cfg


def student_config(cfg: TransferConfig, point: Point) -> TransferConfig:
    """The students' config at ``point``: a ``B@steps=K`` point trains ⌈K / T⌉ epochs (T steps
    each), the last one cut to the steps left (`make_cut_epoch`)."""
    fields = ("n_aux", "hidden", "depth", "n_noise", "epochs_student", "batch_size")
    changes = {f: getattr(point, f) for f in fields if getattr(point, f) is not None}
    cfg_s = dataclasses.replace(cfg, **changes) if changes else cfg
    if point.student_steps is None:
        return cfg_s
    epochs = math.ceil(point.student_steps / student_steps_per_epoch(cfg_s))
    return dataclasses.replace(cfg_s, epochs_student=epochs)


def student_steps_per_epoch(cfg_s: TransferConfig) -> int:
    """T: the students' steps per epoch over their noise images (the last batch partial)."""
    return math.ceil(cfg_s.n_noise / cfg_s.batch_size)


def student_budget(cfg: TransferConfig, point: Point) -> tuple[int, int]:
    """(steps, images) one student trains at ``point``: whole epochs of T steps over the N noise
    images, and for a ``B@steps=K`` point the first K mod T batches of B images of one more."""
    cfg_s = student_config(cfg, point)
    T = student_steps_per_epoch(cfg_s)
    if point.student_steps is not None:
        full, rest = divmod(point.student_steps, T)
        return point.student_steps, full * cfg_s.n_noise + rest * cfg_s.batch_size
    epochs = cfg_s.epochs_student if point.epochs is None else point.epochs
    return epochs * T, epochs * cfg_s.n_noise


def make_tx(optimizer: str, lr: float) -> optax.GradientTransformation:
    """The students' optimiser; ``adam`` at ``cfg.lr`` is the experiment's own."""
    return OPTIMIZERS[optimizer](lr)


def slice_readout(params: mlp.Params, n_out: int) -> mlp.Params:
    """The network with only the first ``n_out`` logits (class logits, then the first aux);
    leading (seed) axes are kept."""
    *hidden, last = params
    return (*hidden, mlp.Dense(last.w_DxH[..., :n_out], last.b_H[..., :n_out]))


def mix_layers(theta0_T: mlp.Params, theta0_P: mlp.Params, a_L, b_L) -> mlp.Params:
    """Layer l of the result is ``a_L[l]·θ⁰_T,l + b_L[l]·θ⁰_P,l`` (exact for (1, 0) and (0, 1))."""
    return tuple(
        jax.tree.map(lambda t, p, a=a_L[l], b=b_L[l]: a * t + b * p, theta0_T[l], theta0_P[l])
        for l in range(len(theta0_T))
    )


def student_init(cfg_s: TransferConfig, tx: optax.GradientTransformation, theta0_T, theta0_P,
                 a_L, b_L):  # fmt: skip
    """The four student states of one seed in `STUDENTS` order: same-init slots mixed."""
    n_out = cfg_s.sizes[-1]
    theta_T, theta_P = slice_readout(theta0_T, n_out), slice_readout(theta0_P, n_out)
    same = mix_layers(theta_T, theta_P, a_L, b_L)
    return tuple(TrainState(p, tx.init(p)) for p in (same, same, theta_P, theta_P))


def first_step_cosines(cfg_s: TransferConfig, tx: optax.GradientTransformation, states,
                       delta_theta_T, data_key, u_NxD, y_NxC) -> jax.Array:  # fmt: skip
    """Step-0 one-step quantity of the aux-only students (same, different init): the cosine of
    the first update with the teacher's total update Δθ_T = θ_T − θ⁰_T (the normalised
    Δθ_S·Δθ_T of the paper's §6.1 theorem, Madl's "coverage"), on the first batch of epoch 0.

    Returns ``[cos(update_same), cos(−∇_same), cos(update_diff), cos(−∇_diff)]``: the
    optimiser's actual first update and the plain negative gradient.
    """
    idx_TxB, w_TxB = epoch_batches(cfg_s, 0, cfg_s.n_noise, key=data_key)
    batch = Batch(decode_noise(u_NxD[idx_TxB[0]]), y_NxC[idx_TxB[0]], w_TxB[0])
    loss = partial(student_loss, logit_idx=logit_subsets(cfg_s)[0], temperature=cfg_s.temperature)
    return update_cosines((loss, None, loss, None), tx, states, batch, delta_theta_T)


def update_cosines(loss_fns, tx, states, batch, delta_theta_T) -> jax.Array:
    """For the aux-only students (``states[0]`` same init, ``states[2]`` different), each with
    its loss in ``loss_fns``: the cosines of their first update through ``tx`` and of their
    negative gradient with Δθ_T, in `COSINES`' order."""
    out = []
    for k in (0, 2):
        grads = jax.grad(loss_fns[k])(states[k].params, batch)
        with jax.numpy_dtype_promotion("standard"):  # as in mnist.steps.train_step
            updates, _ = tx.update(grads, states[k].opt_state, states[k].params)
        neg = jax.tree.map(jnp.negative, grads)
        out += [theorem.cosine(updates, delta_theta_T), theorem.cosine(neg, delta_theta_T)]
    return jnp.stack(out)


COSINES = ("update_aux_same_init", "grad_aux_same_init", "update_aux_diff_init",
           "grad_aux_diff_init")  # fmt: skip


def layer_names(n_layers: int) -> tuple[str, ...]:
    """``h1 … h{n−1}, readout``; `LAYERS` for the experiment's network."""
    return (*(f"h{l + 1}" for l in range(n_layers - 1)), "readout")


def layer_coefficients(point: Point, n_layers: int) -> tuple[tuple[float, ...], ...]:
    """The point's ``(a_L, b_L)`` for a network of ``n_layers`` Dense layers: a mix that is the
    same in every layer (every point but layer-sharing's) applies to any depth."""
    a_L, b_L = point.a_L, point.b_L
    if len(a_L) != n_layers:
        if len(set(a_L)) > 1 or len(set(b_L)) > 1:
            raise ValueError(f"point {point.label} mixes {len(a_L)} layers, not {n_layers}")
        a_L, b_L = a_L[:1] * n_layers, b_L[:1] * n_layers
    return a_L, b_L


class TeacherGroup(NamedTuple):
    """Grid points whose teachers are the same: trained once, with this config."""

    cfg: TransferConfig  # full epochs, the group's largest n_aux and n_noise
    extra_steps: int  # Adam steps of one more, partial epoch (a fraction of an epoch)
    points: tuple[int, ...]  # indices into the grid


def steps_per_epoch(cfg: TransferConfig) -> int:
    return math.ceil(cfg.n_train / cfg.batch_size)


def teacher_steps(cfg: TransferConfig, point: Point) -> int:
    """The point's teacher training in Adam steps (epochs are rounded to whole steps)."""
    if point.teacher_steps is not None:
        return point.teacher_steps
    if point.teacher_epochs is not None:
        return round(point.teacher_epochs * steps_per_epoch(cfg))
    return cfg.epochs_teacher * steps_per_epoch(cfg)


def teacher_groups(cfg: TransferConfig, points: tuple[Point, ...]) -> list[TeacherGroup]:
    """Points grouped by teacher (architecture, training steps), in grid order. A group's noise
    is its largest ``n_noise``: a smaller dose uses the model's first n images of it."""
    members: dict[tuple, list[int]] = {}
    for i, p in enumerate(points):
        members.setdefault((p.hidden, p.depth, teacher_steps(cfg, p)), []).append(i)
    groups, T = [], steps_per_epoch(cfg)
    for (hidden, depth, k), idx in members.items():
        group = tuple(points[i] for i in idx)
        changes = {
            "hidden": cfg.hidden if hidden is None else hidden,
            "depth": cfg.depth if depth is None else depth,
            "epochs_teacher": k // T,
            "n_noise": max(cfg.n_noise if p.n_noise is None else p.n_noise for p in group),
        }
        cfg_T = dataclasses.replace(teacher_config(cfg, group), **changes).validate()
        groups.append(TeacherGroup(cfg_T, k % T, tuple(idx)))
    return groups


def make_teacher_steps(cfg: TransferConfig) -> Callable:
    """``steps(state, data_key, e, x_NxD, y_N, n_steps) -> (state, loss_T)``: the first
    ``n_steps`` (traced: one program for every count) of the teacher's epoch ``e``; the later
    steps are computed and discarded, so the state is the one after ``n_steps`` updates."""
    tx = optax.adam(cfg.lr)

    def steps(state, data_key, e, x_NxD, y_N, n_steps):
        idx_TxB, w_TxB = epoch_batches(cfg, e, x_NxD.shape[0], key=data_key)

        def step(state, t_iw):
            t, idx_B, w_B = t_iw
            new, loss = train_step(state, Batch(x_NxD[idx_B], y_N[idx_B], w_B), teacher_loss, tx)
            keep = t < n_steps
            new = jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, state)
            return new, jnp.where(keep, loss, jnp.zeros_like(loss))

        return jax.lax.scan(step, state, (jnp.arange(idx_TxB.shape[0]), idx_TxB, w_TxB))

    return steps


def layer_cosines(a: mlp.Params, b: mlp.Params) -> jax.Array:
    """cos∠ of each Dense layer (weights and bias together), then of the whole network."""
    return jnp.stack([*(theorem.cosine(x, y) for x, y in zip(a, b, strict=True)),
                      theorem.cosine(a, b)])  # fmt: skip


TRACKED = ("cos_displacement", "cos_step")


def _cos_from(state: TrainState, theta_start: mlp.Params, delta_theta_T) -> jax.Array:
    moved = jax.tree.map(jnp.subtract, state.params, theta_start)
    return layer_cosines(moved, delta_theta_T)


def student_losses(cfg_s: TransferConfig) -> tuple[Callable, ...]:
    """The experiment's four student losses (KL on each logit subset), in `STUDENTS` order."""
    return tuple(
        partial(student_loss, logit_idx=idx, temperature=cfg_s.temperature)
        for idx in logit_subsets(cfg_s)
    )


def make_cut_epoch(cfg_s: TransferConfig, tx: optax.GradientTransformation, n_steps: int):
    """`make_distill`'s epoch of the four students cut to its first ``n_steps`` steps (the same
    batches; only those are computed): ``epoch(states, data_key, e, u_NxD, y_NxC) ->
    (states, loss_nx4)``, the last epoch of a ``B@steps=K`` point."""
    loss_fns = student_losses(cfg_s)

    def epoch(states, data_key, e, u_NxD, y_NxC):
        idx_TxB, w_TxB = epoch_batches(cfg_s, e, cfg_s.n_noise, key=data_key)

        def body(states, iw):
            idx_B, w_B = iw
            batch = Batch(decode_noise(u_NxD[idx_B]), y_NxC[idx_B], w_B)
            out = [train_step(s, batch, f, tx) for s, f in zip(states, loss_fns, strict=True)]
            return tuple(o[0] for o in out), jnp.stack([o[1] for o in out])

        return jax.lax.scan(body, states, (idx_TxB[:n_steps], w_TxB[:n_steps]))

    return epoch


def make_tracked_epoch(cfg_s: TransferConfig, tx: optax.GradientTransformation) -> Callable:
    """`make_distill`'s epoch of the four students, recording after every step t (per student,
    per layer and for the whole network, Δθ_T = θ_T − θ⁰_T):

    * ``cos_displacement``: cos(θ_S(t) − θ⁰_S, Δθ_T), the theorem's alignment beyond one step;
    * ``cos_step``: cos(θ_S(t) − θ_S(t − 1), Δθ_T), each step's own alignment;
    * ``L_T``: the teacher's loss (class cross-entropy) of the student on images ``x_MxD``.

    ``epoch(states, data_key, e, u_NxD, y_NxC, theta0_4, delta_theta_T, x_MxD, y_M)
    -> (states, (loss_Tx4, cos_Tx2x4x(L+1), lt_Tx4))``; after step 1 both cosines are
    `first_step_cosines`'s cosine of the first update.
    """
    loss_fns = student_losses(cfg_s)

    def epoch(states, data_key, e, u_NxD, y_NxC, theta0_4, delta_theta_T, x_MxD, y_M):
        idx_TxB, w_TxB = epoch_batches(cfg_s, e, cfg_s.n_noise, key=data_key)
        eval_batch = Batch(x_MxD, y_M, jnp.ones(y_M.shape, F32))

        def body(states, iw):
            idx_B, w_B = iw
            batch = Batch(decode_noise(u_NxD[idx_B]), y_NxC[idx_B], w_B)
            out = [train_step(s, batch, f, tx) for s, f in zip(states, loss_fns, strict=True)]
            new = tuple(o[0] for o in out)
            starts = (theta0_4, tuple(s.params for s in states))
            disp, step = ([_cos_from(a, b, delta_theta_T) for a, b in zip(new, p4, strict=True)]
                          for p4 in starts)  # fmt: skip
            lt_4 = jnp.stack([teacher_loss(n.params, eval_batch) for n in new])
            cos_2x4xL = jnp.stack([jnp.stack(disp), jnp.stack(step)])
            return new, (jnp.stack([o[1] for o in out]), cos_2x4xL, lt_4)

        return jax.lax.scan(body, states, (idx_TxB, w_TxB))

    return epoch


def training_flops(cfg, points) -> float:
    """A sweep's training FLOPs, counted as 6 × weights per image per step (forward and
    backward): each teacher group once per seed, and each point's four students per seed over
    their images and epochs. For scaling a measured preset's time to another preset's work;
    evaluation, noise generation and compilation are left out."""

    def weights(sizes) -> int:
        return sum((a + 1) * b for a, b in itertools.pairwise(sizes))

    total = 0.0
    for group in teacher_groups(cfg, points):
        t_cfg = group.cfg
        images = t_cfg.epochs_teacher * t_cfg.n_train + group.extra_steps * t_cfg.batch_size
        total += 6.0 * weights(t_cfg.sizes) * images * cfg.seeds
        for i in group.points:
            images = student_budget(t_cfg, points[i])[1]
            total += 4 * 6.0 * weights(student_config(t_cfg, points[i]).sizes) * images * cfg.seeds
    return total
