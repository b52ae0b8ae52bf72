"""Run a sweep: teachers once per seed and teacher group (`steps.teacher_groups`; one group
unless points change the teachers), then the group's grid points' students, seeds as jit(vmap).

Reuses the experiment's runner (`sublim_jax.experiments.mnist.run`): its keys, chunks, mesh, teacher
phase, noise, teacher logits, finiteness checks and accuracy. Per chunk of seeds the noise and
the teachers' logits are made once and shared by every grid point. The students' programs are
cached per (student config, optimiser, learning rate): points that differ only in traced
values (σ, λ, the layer mask) reuse one compilation; a ``B@steps=K`` point's cut last epoch is
one more program per batch and step count. Writes nothing; ``summarise`` shapes the results.
Dims: S seeds in a chunk, E epochs, N noise images, C logits.
"""

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sublim_jax.experiments.mnist import run as transfer_run
from sublim_jax.experiments.mnist.config import STUDENTS, TransferConfig
from sublim_jax.experiments.mnist.steps import Batch, make_distill, teacher_logits, teacher_loss
from sublim_jax.experiments.sweeps import grid as sweeps
from sublim_jax.experiments.sweeps import steps
from sublim_jax.experiments.sweeps import variants as dv
from sublim_jax.experiments.sweeps.points import Point
from sublim_jax.io.progress import bar as progress_bar

F32 = jnp.float32


@functools.lru_cache(maxsize=32)
def programs(cfg_s: TransferConfig, optimizer: str, lr: float) -> dict[str, Callable]:
    """Seed-vmapped students' programs for one (normalised) student config and optimiser."""
    tx = steps.make_tx(optimizer, lr)
    epoch, _ = make_distill(cfg_s, tx=tx)
    init = functools.partial(steps.student_init, cfg_s, tx)
    cosines = functools.partial(steps.first_step_cosines, cfg_s, tx)
    return {
        "epoch": jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, 0, 0)), donate_argnums=0),
        "init": jax.jit(jax.vmap(init, in_axes=(0, 0, None, None))),
        "cosines": jax.jit(jax.vmap(cosines)),
    }


@functools.lru_cache(maxsize=16)
def cut_program(cfg_s: TransferConfig, optimizer: str, lr: float, n_steps: int) -> Callable:
    """Seed-vmapped `steps.make_cut_epoch`: the first ``n_steps`` steps of an epoch."""
    epoch = steps.make_cut_epoch(cfg_s, steps.make_tx(optimizer, lr), n_steps)
    return jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, 0, 0)), donate_argnums=0)


def student_epoch(prog: dict, cfg_s: TransferConfig, point: Point, lr: float) -> Callable:
    """The point's epoch program: ``prog``'s, except that a ``B@steps=K`` point whose K is not
    whole epochs of T steps trains only the first K mod T steps of its last epoch."""
    if point.student_steps is None:
        return prog["epoch"]
    full, rest = divmod(point.student_steps, steps.student_steps_per_epoch(cfg_s))
    if rest == 0:
        return prog["epoch"]
    cut = cut_program(_normalised(cfg_s), point.optimizer, lr, rest)

    def epoch(states, data_key, e, *args):
        return (cut if e == full else prog["epoch"])(states, data_key, e, *args)

    return epoch


def _normalised(cfg: TransferConfig) -> TransferConfig:
    """The fields no program depends on, fixed (epoch counts are Python loops)."""
    return dataclasses.replace(cfg, seeds=2, chunk=0, seed=0, epochs_teacher=0, epochs_student=0)


def _tree_sub(a, b):
    return jax.tree.map(jnp.subtract, a, b)


class _Chunk:
    """One chunk's teachers, inits, noise and teacher logits, shared by every grid point."""

    def __init__(self, runner: transfer_run.Runner, teacher: dict, sl: slice):
        keys, shard = runner.keys, runner.shard
        leaves = [teacher[f"param_{i}"] for i in range(runner.treedef.num_leaves)]
        params_T = shard(jax.tree.unflatten(runner.treedef, leaves))
        self.theta0_T = runner.jit["teacher_init"](shard(keys["init"][sl])).params
        self.theta0_P = runner.jit["teacher_init"](shard(keys["init"][keys["partner"][sl]])).params
        self.delta_theta_T = _tree_sub(params_T, self.theta0_T)
        self.params_T, self.noise_key = params_T, shard(keys["noise"][sl])
        self.u_SxNxD = runner.jit["noise"](shard(keys["noise"][sl]))
        self.y_SxNxC = runner.jit["teacher_logits"](params_T, self.u_SxNxD)
        self.data_key = shard(keys["student_data"][sl])


def _point(runner, chunk: _Chunk, cfg: TransferConfig, point: Point, start, n_real, bar) -> dict:
    cfg_s = steps.student_config(cfg, point)
    lr = cfg.lr if point.lr is None else point.lr
    prog = programs(_normalised(cfg_s), point.optimizer, lr)
    n_out = cfg_s.sizes[-1]
    a_L, b_L = steps.layer_coefficients(point, len(cfg_s.sizes) - 1)
    coef = (jnp.asarray(a_L, F32), jnp.asarray(b_L, F32))
    states = prog["init"](chunk.theta0_T, chunk.theta0_P, *coef)
    y_SxNxC = chunk.y_SxNxC[..., :n_out]
    delta = steps.slice_readout(chunk.delta_theta_T, n_out)
    cos_Sx4 = prog["cosines"](states, delta, chunk.data_key, chunk.u_SxNxD, y_SxNxC)

    T = steps.student_steps_per_epoch(cfg_s)

    def check(loss_SxTx4, step0):
        step0 = step0 // loss_SxTx4.shape[1] * T  # a cut last epoch starts at e·T too
        for k, s in enumerate(STUDENTS):
            name = f"student_{s} at {point.label}"
            transfer_run.check_finite(loss_SxTx4[..., k], name, start, n_real, step0)

    args = (chunk.data_key, chunk.u_SxNxD, y_SxNxC)
    if point.track:
        epoch = _Tracker(runner, cfg_s, point, lr, states, delta)
    else:
        epoch = student_epoch(prog, cfg_s, point, lr)
    states, loss_SxEx4 = runner.epochs(
        epoch, states, args, cfg_s.epochs_student, check, bar, tail=(len(STUDENTS),)
    )
    acc_Sx4 = np.stack([runner.accuracy(s.params) for s in states], axis=1)
    out = {"acc_Sx4": acc_Sx4, "loss_SxEx4": loss_SxEx4, "cos_Sx4": np.asarray(cos_Sx4)}
    return out | (epoch.curves() if point.track else {})


def run(
    name: str,
    points: tuple[Point, ...],
    cfg: TransferConfig,
    x_train_NxD: np.ndarray,
    y_train_N: np.ndarray,
    x_test_NxD: np.ndarray,
    y_test_N: np.ndarray,
    *,
    progress: Callable | None = None,
    images: dict[str, np.ndarray] | None = None,
) -> dict:
    """Per-seed accuracies of every point's four students and of its teachers and reference,
    and the step-0 cosines (numpy; points in grid order). Teachers train once per
    `steps.TeacherGroup`: once for the whole grid unless points change the teachers.
    ``images``: uint8 training images (N×784) per dataset name, for ``inputs``' image points."""
    cfg.validate()
    sweeps.check_config(points, cfg)
    groups = steps.teacher_groups(cfg, points)
    data = {
        "x_train": jnp.asarray(x_train_NxD[: cfg.n_train], F32),
        "y_train": jnp.asarray(y_train_N[: cfg.n_train], jnp.int32),
        "x_test": jnp.asarray(x_test_NxD[: cfg.n_test], F32),
        "y_test": jnp.asarray(y_test_N[: cfg.n_test], jnp.int32),
    }
    cat = lambda chunks, k: np.concatenate([c[k] for c in chunks])[: cfg.seeds]  # noqa: E731
    per_point, fixed = [[] for _ in points], [{} for _ in points]
    for group in groups:
        runner = SweepRunner(group.cfg, data, progress, group.extra_steps)
        teachers = runner.teachers()
        epochs = sum(steps.student_config(cfg, points[i]).epochs_student for i in group.points)
        bar = progress_bar(progress, f"sweep {name}", runner.n_chunks * epochs)
        for (start, sl, n_real), teacher in zip(runner.chunks(), teachers, strict=True):
            chunk = _Chunk(runner, teacher, sl)
            for i in group.points:
                if name in VARIANT_SWEEPS:
                    out = _variant_point(runner, chunk, cfg, points[i], start, n_real, bar, images)
                else:
                    out = _point(runner, chunk, cfg, points[i], start, n_real, bar)
                per_point[i].append(out)
            del chunk
        bar.close()
        for i in group.points:
            fixed[i] = {k: cat(teachers, f"acc_{k}") for k in ("reference", "teacher")}
            fixed[i]["n_aux"] = group.cfg.n_aux
    return {
        "reference": fixed[0]["reference"],
        "teacher": fixed[0]["teacher"],
        "reference_PxS": np.stack([f["reference"] for f in fixed]),
        "teacher_PxS": np.stack([f["teacher"] for f in fixed]),
        "teacher_steps_P": [steps.teacher_steps(cfg, p) for p in points],
        "students_P": [steps.student_budget(cfg, p) for p in points],  # (steps, images)
        "teacher_groups": len(groups),
        "acc_PxSx4": np.stack([cat(p, "acc_Sx4") for p in per_point]),
        "loss_PxSxEx4": [cat(p, "loss_SxEx4") for p in per_point],  # E may differ per point
        "cos_PxSx4": np.stack([cat(p, "cos_Sx4") for p in per_point]),
        "curves_P": [
            {k: cat(p, k) for k in CURVES} if pt.track else None
            for p, pt in zip(per_point, points, strict=True)
        ],
        "partner": runner.keys["partner"][: cfg.seeds],
        "teacher_n_aux": fixed[0]["n_aux"],
    }


# The loss, inputs and defences sweeps: every point's students are `distill_variants`'.

VARIANT_SWEEPS = ("loss", "inputs", *sweeps.DEFENCE_SWEEPS)
_TARGETS = jax.jit(jax.vmap(dv.targets, in_axes=(0, 0, 0, None, None, None)))


def variant_of(point: Point, cfg: TransferConfig) -> dv.Variant:
    """The point's compiled-in choices."""
    inputs = {"uniform": "noise", "gaussian": "gaussian"}.get(point.inputs, "images")
    temperature = 1.0 if point.loss != "kl" else point.temperature or cfg.temperature
    decay = point.defence == "weight-decay" and point.strength > 0  # λ = 0: no AdamW term
    l2 = point.defence == "l2" and point.strength > 0  # λ = 0: no L2 term
    penalty, project = point.defence == "kl-init", point.defence == "project"
    return dv.Variant(point.loss, temperature, inputs, decay, penalty, project, l2)


def knobs_of(point: Point) -> tuple[dv.Knobs, dict]:
    """The point's traced values: the students' `Knobs`, and the init noise σ and the
    targets' q, τ, f; 0 for every defence the point does not apply."""
    s = lambda name: jnp.asarray(point.strength if point.defence == name else 0.0, F32)  # noqa: E731
    knobs = dv.Knobs(s("weight-decay"), s("kl-init"), s("l2"))
    return knobs, {"sigma": s("init-noise"), "q": s("round"), "tau": s("output-noise"),
                   "f": s("mix")}  # fmt: skip


@functools.lru_cache(maxsize=32)
def variant_programs(cfg_s: TransferConfig, lr: float, variant: dv.Variant) -> dict:
    """Seed-vmapped students' programs of one variant; every traced knob shares them."""
    x_ax = None if variant.inputs == "images" else 0  # images are shared by every seed
    epoch = dv.make_epoch(cfg_s, lr, variant)
    init = functools.partial(dv.init_students, cfg_s, lr, variant)
    cosines = functools.partial(dv.first_step_cosines, cfg_s, lr, variant)
    return {
        "epoch": jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, x_ax, 0, None, 0, 0))),
        "init": jax.jit(jax.vmap(init, in_axes=(0, 0, 0, None))),
        "cosines": jax.jit(jax.vmap(cosines, in_axes=(0, 0, 0, 0, x_ax, 0, None))),
    }


@functools.lru_cache(maxsize=8)
def input_programs(cfg: TransferConfig, inputs: str) -> dict:
    """A model's logits on one kind of stored inputs, and the untrained model of `mix`."""
    x_ax = None if inputs == "images" else 0
    logits = functools.partial(teacher_logits, cfg, decode=dv.DECODERS[inputs])
    return {
        "logits": jax.jit(jax.vmap(logits, in_axes=(0, x_ax))),
        "untrained": jax.jit(jax.vmap(functools.partial(dv.untrained_params, cfg))),
    }


def _inputs(runner, chunk: _Chunk, cfg: TransferConfig, point: Point, images, prog) -> tuple:
    """The stored inputs (per seed, or one uint8 copy for every seed) and the teacher's logits."""
    if point.inputs == "uniform":
        return chunk.u_SxNxD, chunk.y_SxNxC
    if point.inputs == "gaussian":
        return chunk.u_SxNxD, prog["logits"](chunk.params_T, chunk.u_SxNxD)
    name = sweeps.input_dataset(point)
    if name not in (images or {}):
        raise ValueError(f"inputs point {point.label} needs the {name} training images")
    perm = dv.pixel_permutation(cfg.seed) if point.inputs.startswith("shuffled-") else None
    x_NxD = dv.image_inputs(images[name], cfg.n_noise, perm)
    x_NxD = jax.device_put(x_NxD, NamedSharding(runner.mesh, P()))
    return x_NxD, prog["logits"](chunk.params_T, x_NxD)


def _variant_point(runner, chunk: _Chunk, cfg: TransferConfig, point: Point, start, n_real,
                   bar, images) -> dict:  # fmt: skip
    """`_point` for the loss, inputs and defences sweeps."""
    cfg_n, variant = _normalised(cfg), variant_of(point, cfg)
    prog, inp = variant_programs(cfg_n, cfg.lr, variant), input_programs(cfg_n, variant.inputs)
    knobs, k = knobs_of(point)
    x, y_SxNxC = _inputs(runner, chunk, cfg, point, images, inp)
    y_U = inp["logits"](inp["untrained"](chunk.noise_key), x) if point.defence == "mix" else y_SxNxC
    y_SxNxC = _TARGETS(y_SxNxC, y_U, chunk.noise_key, k["q"], k["tau"], k["f"])
    states = prog["init"](chunk.theta0_T, chunk.theta0_P, chunk.noise_key, k["sigma"])
    theta0s = tuple(s.params for s in states)
    args = (chunk.data_key, x, y_SxNxC, knobs, theta0s, chunk.delta_theta_T)
    cos_Sx4 = prog["cosines"](states, theta0s, chunk.delta_theta_T, *args[:3], knobs)

    def check(loss_SxTx4, step0):
        for j, s in enumerate(STUDENTS):
            name = f"student_{s} at {point.label}"
            transfer_run.check_finite(loss_SxTx4[..., j], name, start, n_real, step0)

    n_epochs = cfg.epochs_student if point.epochs is None else point.epochs
    states, loss_SxEx4 = runner.epochs(
        prog["epoch"], states, args, n_epochs, check, bar, tail=(len(STUDENTS),)
    )
    bar.update(cfg.epochs_student - n_epochs)
    pad = np.full((runner.per, cfg.epochs_student - n_epochs, len(STUDENTS)), np.nan)
    acc_Sx4 = np.stack([runner.accuracy(s.params) for s in states], axis=1)
    loss_SxEx4 = np.concatenate([loss_SxEx4, pad], axis=1)
    return {"acc_Sx4": acc_Sx4, "loss_SxEx4": loss_SxEx4, "cos_Sx4": np.asarray(cos_Sx4)}


CURVES = ("cos_SxKx2x4xL", "lt_SxKx4")  # per step k (K = epochs × steps), L layers + whole net
N_EVAL = 1000  # test images on which the tracked students' teacher loss L_T is evaluated


@functools.lru_cache(maxsize=8)
def tracked_programs(cfg_s: TransferConfig, optimizer: str, lr: float) -> dict[str, Callable]:
    """Seed-vmapped `steps.make_tracked_epoch` (no donation: θ⁰_S stays) and L_T of four
    students."""
    epoch = steps.make_tracked_epoch(cfg_s, steps.make_tx(optimizer, lr))

    def lt_4(params_4, x_MxD, y_M):
        batch = Batch(x_MxD, y_M, jnp.ones(y_M.shape, F32))
        return jnp.stack([teacher_loss(p, batch) for p in params_4])

    return {
        "epoch": jax.jit(jax.vmap(epoch, in_axes=(0, 0, None, 0, 0, 0, 0, None, None))),
        "lt": jax.jit(jax.vmap(lt_4, in_axes=(0, None, None))),
    }


class _Tracker:
    """A tracked point's epoch for ``runner.epochs``: trains like the plain epoch and keeps
    every step's alignment curves (`steps.make_tracked_epoch`)."""

    def __init__(self, runner, cfg_s, point: Point, lr: float, states, delta_theta_T):
        self.prog = tracked_programs(_normalised(cfg_s), point.optimizer, lr)
        self.theta0_4 = tuple(s.params for s in states)
        self.delta_theta_T = delta_theta_T
        self.eval = (runner.data["x_test"][:N_EVAL], runner.data["y_test"][:N_EVAL])
        self.cos, self.lt = [], [np.asarray(self.prog["lt"](self.theta0_4, *self.eval))[:, None]]

    def __call__(self, states, data_key, e, u_SxNxD, y_SxNxC):
        args = (self.theta0_4, self.delta_theta_T, *self.eval)
        states, (loss_SxTx4, cos, lt) = self.prog["epoch"](
            states, data_key, e, u_SxNxD, y_SxNxC, *args
        )
        self.cos.append(np.asarray(cos))
        self.lt.append(np.asarray(lt))
        return states, loss_SxTx4

    def curves(self) -> dict:
        """``cos_SxKx2x4xL`` after steps 1..K; ``lt_SxKx4`` at steps 0..K (K + 1 values)."""
        cos, lt = np.concatenate(self.cos, 1), np.concatenate(self.lt, 1)
        return {"cos_SxKx2x4xL": cos, "lt_SxKx4": lt}


class SweepRunner(transfer_run.Runner):
    """The experiment's runner; its teachers train ``extra_steps`` Adam steps of one more
    epoch after their full epochs (teacher-strength's fractions of an epoch)."""

    def __init__(self, cfg: TransferConfig, data: dict, progress: Callable, extra_steps: int):
        super().__init__(cfg, data, None, progress)
        self.jit = transfer_run.programs(_normalised(cfg))  # one program for every epoch count
        self.extra_steps = extra_steps

    def epochs(self, epoch: Callable, state, args, n: int, check: Callable, bar, tail=()):
        state, loss_SxE = super().epochs(epoch, state, args, n, check, bar, tail)
        if epoch is self.jit["teacher_epoch"] and self.extra_steps:
            run_steps = teacher_steps_program(_normalised(self.cfg))
            state, loss_SxT = run_steps(state, args[0], n, *args[1:], self.extra_steps)
            check(np.asarray(loss_SxT)[:, : self.extra_steps], n * steps.steps_per_epoch(self.cfg))
        return state, loss_SxE


@functools.lru_cache(maxsize=8)
def teacher_steps_program(cfg: TransferConfig) -> Callable:
    step_fn = steps.make_teacher_steps(cfg)
    return jax.jit(jax.vmap(step_fn, in_axes=(0, 0, None, None, None, None)), donate_argnums=0)
