"""Beyond the paper: grids over the MNIST transfer experiment's config, as data and pure functions.

A sweep is a named grid of `Point`s. Every point trains the experiment's four students
(`sublim_jax.transfer.STUDENTS`) against the same teachers; a point changes only

* the init of the two *same-init* students, per layer ``l``: ``a_l·θ⁰_T + b_l·θ⁰_P`` with θ⁰_P
  the init of the deranged partner seed (the different-init students' init, unchanged as the
  control): ``init-distance`` σ is ``(a, b) = (1, σ)``, λ is ``(1 − λ, λ)``; ``layer-sharing``
  is ``(1, 0)`` on shared layers and ``(0, 1)`` elsewhere. ``a``, ``b`` are traced arguments, so
  all such points run one compiled program; ``(1, 0)`` everywhere is exactly the same init;
* the number of auxiliary logits ``n_aux`` (``aux-count``): the teachers are trained once with
  the grid's largest m; a point keeps the first ``10 + m`` readout columns (a teacher never
  trains its aux columns, so its class logits are the same at every m);
* the students' optimiser and learning rate (``optimizer``). The rate is compiled in, as in
  the experiment: a traced rate (``optax.inject_hyperparams``) changed Adam's losses in the
  6th digit, and the Adam point at the experiment's rate must reproduce it bit for bit;
* the students' loss, inputs or a defence (``loss``, ``inputs``, ``defences``): these points
  run the students of `sublim_jax.distill_variants` (see there for what is traced).

Dims: S seeds, L layers, N noise images, D pixels, C logits. No I/O here.
"""

import dataclasses
import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from . import data, mlp, theorem
from .transfer import (
    Batch,
    TrainState,
    TransferConfig,
    decode_noise,
    epoch_batches,
    logit_subsets,
    student_loss,
)

F32 = jnp.float32
LAYERS = ("h1", "h2", "readout")  # hidden-1, hidden-2, readout: the network's three Dense layers
M_MAX = 1000  # most auxiliary logits an aux-count point may have
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": partial(optax.sgd, momentum=0.9),
    "adam": optax.adam,
    "signsgd": optax.sign_sgd,
}


class Point(NamedTuple):
    """One grid point; ``None`` keeps the base config's value."""

    label: str
    value: float | str  # the point's x-axis value in figures and results
    a_L: tuple[float, ...] = (1.0, 1.0, 1.0)  # weight of the teacher's init, per layer
    b_L: tuple[float, ...] = (0.0, 0.0, 0.0)  # weight of the partner's init, per layer
    optimizer: str = "adam"
    lr: float | None = None
    n_aux: int | None = None
    loss: str = "kl"  # the students' loss on their logit subset: kl, mse or hard
    temperature: float | None = None  # the KL's temperature (None: the config's)
    inputs: str = "uniform"  # uniform, gaussian, a dataset's images or shuffled-DATASET
    defence: str = "none"  # one of DEFENCES
    strength: float = 0.0  # the defence's λ, σ, q, τ, k, f or β (see DEFENCES)
    epochs: int | None = None  # student epochs (None: the config's)


def _number(token: str, kind: type = float):
    try:
        return kind(token)
    except ValueError:
        raise ValueError(f"not a {kind.__name__}: {token!r}") from None


def parse_init_distance(token: str) -> Point:
    """``0.1`` or ``sigma=0.1``: θ⁰_T + σ·θ⁰_P (σ ≥ 0); ``lambda=0.5``: (1 − λ)·θ⁰_T + λ·θ⁰_P."""
    name, _, text = token.rpartition("=")
    v = _number(text)
    if name in ("", "sigma"):
        if not v >= 0:
            raise ValueError(f"σ must be ≥ 0, got {token!r}")
        return Point(f"σ={v:g}", v, b_L=(v,) * 3)
    if name == "lambda":
        if not 0 <= v <= 1:
            raise ValueError(f"λ must be in [0, 1], got {token!r}")
        return Point(f"λ={v:g}", v, a_L=(1 - v,) * 3, b_L=(v,) * 3)
    raise ValueError(f"init-distance points are σ, sigma=σ or lambda=λ, got {token!r}")


def parse_layer_sharing(token: str) -> Point:
    """``none``, ``all`` or shared layers joined by ``+`` (of h1, h2, readout)."""
    shared = {"none": (), "all": LAYERS}.get(token, tuple(token.split("+")))
    unknown = sorted(set(shared) - set(LAYERS))
    if unknown or len(set(shared)) != len(shared):
        raise ValueError(f"layer-sharing points are none, all or h1+h2+readout subsets: {token!r}")
    a_L = tuple(float(layer in shared) for layer in LAYERS)
    label = token if token in ("none", "all") else "+".join(x for x in LAYERS if x in shared)
    return Point(label, label, a_L=a_L, b_L=tuple(1 - a for a in a_L))


def parse_aux_count(token: str) -> Point:
    m = _number(token, int)
    if not 1 <= m <= M_MAX:
        raise ValueError(f"m (auxiliary logits) must be in 1..{M_MAX}, got {token!r}")
    return Point(f"m={m}", m, n_aux=m)


def parse_optimizer(token: str) -> Point:
    """``NAME@LR`` with NAME one of `OPTIMIZERS`."""
    name, sep, text = token.partition("@")
    if not sep or name not in OPTIMIZERS:
        names = ", ".join(OPTIMIZERS)
        raise ValueError(f"optimizer points are NAME@LR with NAME in {names}, got {token!r}")
    lr = _number(text)
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {token!r}")
    return Point(f"{name}@{lr:g}", lr, optimizer=name, lr=lr)


def _finite(token: str, kind: type = float, low: float = 0.0, high: float = math.inf):
    """The number after ``=`` in ``token``, finite and in [low, high]."""
    v = _number(token.partition("=")[2], kind)
    if not (math.isfinite(v) and low <= v <= high):
        raise ValueError(f"the value must be finite and in [{low:g}, {high:g}], got {token!r}")
    return v


def parse_loss(token: str) -> Point:
    """``kl=T`` (KL at temperature T > 0), ``mse`` (squared error on logits) or ``hard``
    (cross-entropy on the teacher's argmax), each on the student's logit subset."""
    if token in ("mse", "hard"):
        return Point(token, token, loss=token)
    if token.startswith("kl="):
        t = _finite(token)
        if not t > 0:
            raise ValueError(f"temperature must be > 0, got {token!r}")
        return Point(f"kl={t:g}", t, loss="kl", temperature=t)
    raise ValueError(f"loss points are kl=T, mse or hard, got {token!r}")


NOISE_INPUTS = ("uniform", "gaussian")


def parse_inputs(token: str) -> Point:
    """``uniform`` (the experiment's), ``gaussian``, a dataset's training images (a name of
    `sublim_jax.data.DATASETS`) or ``shuffled-NAME`` (its pixels in one fixed random order)."""
    if token in NOISE_INPUTS or token.removeprefix("shuffled-") in data.DATASETS:
        return Point(token, token, inputs=token)
    names = ", ".join((*NOISE_INPUTS, *data.DATASETS))
    raise ValueError(f"inputs points are {names} or shuffled-NAME, got {token!r}")


def input_dataset(point: Point) -> str | None:
    """The dataset whose training images an inputs point uses (None for noise)."""
    return None if point.inputs in NOISE_INPUTS else point.inputs.removeprefix("shuffled-")


DEFENCES = {  # name: its strength (None: takes none), each applied to all four students
    "none": None,
    "weight-decay": "λ, AdamW's decoupled weight decay",
    "init-noise": "σ, θ⁰ + σ·ξ with ξ a fresh init draw",
    "round": "q, teacher logits rounded to multiples of q",
    "output-noise": "τ, N(0, τ²) added to each teacher logit",
    "hard": None,  # cross-entropy on the teacher's argmax
    "epochs": "k, student epochs",
    "mix": "f, fraction of targets from an untrained model",
    "kl-init": "β, KL to the student's initial outputs, × e^(−epoch)",
    "project": None,  # updates projected off Δθ_T
}


def parse_defence(token: str) -> Point:
    """``NAME`` or ``NAME=VALUE`` (VALUE ≥ 0; f ≤ 1; k an integer) with NAME in `DEFENCES`."""
    name, sep, _ = token.partition("=")
    if name not in DEFENCES or bool(sep) != (DEFENCES[name] is not None):
        takes = [n + ("=VALUE" if DEFENCES[n] else "") for n in DEFENCES]
        raise ValueError(f"defences points are {', '.join(takes)}, got {token!r}")
    if not sep:
        return Point(name, name, loss="hard" if name == "hard" else "kl", defence=name)
    kind = int if name == "epochs" else float
    v = _finite(token, kind, 0.0, 1.0 if name == "mix" else math.inf)
    label = f"{name}={v:g}"
    return Point(label, label, defence=name, strength=float(v),
                 epochs=v if name == "epochs" else None)  # fmt: skip


def check_defences(points: tuple[Point, ...]) -> None:
    if not any(p.defence == "none" for p in points):
        raise ValueError("a defences grid needs its baseline point `none`")


_OPT_GRID = ",".join(
    f"{name}@{lr}"
    for name, lrs in {
        "sgd": ("0.1", "0.3", "1", "3", "10"),
        "momentum": ("0.01", "0.03", "0.1", "0.3", "1"),
        "adam": ("1e-4", "3e-4", "1e-3", "3e-3", "1e-2"),
        "signsgd": ("1e-4", "3e-4", "1e-3", "3e-3"),
    }.items()
    for lr in lrs
)


@dataclasses.dataclass(frozen=True)
class Sweep:
    description: str
    parse: Callable[[str], Point]
    grid: str  # the default and paper presets' grid
    smoke_grid: str
    check: Callable[[tuple[Point, ...]], None] | None = None  # raises on a bad grid as a whole


SWEEPS = {
    "init-distance": Sweep(
        "students start at θ⁰_T + σ·θ⁰_P (σ grid) and at (1−λ)·θ⁰_T + λ·θ⁰_P: how close must "
        "the inits be?",
        parse_init_distance,
        "0,0.01,0.03,0.1,0.3,1,lambda=0.25,lambda=0.5,lambda=0.75,lambda=1",
        "0,0.3,lambda=1",
    ),
    "layer-sharing": Sweep(
        "the student shares the teacher's init in only some layers (each subset of h1, h2, "
        "readout; all = same init, none = different init)",
        parse_layer_sharing,
        "none,h1,h2,readout,h1+h2,h1+readout,h2+readout,all",
        "none,h1+h2,readout,all",
    ),
    "aux-count": Sweep(
        "m auxiliary logits (m = 1 carries no gradient: the untrained accuracy)",
        parse_aux_count,
        "1,2,3,5,10,30,100",
        "1,3,10",
    ),
    "optimizer": Sweep(
        "students trained with SGD, SGD + momentum 0.9, Adam or sign-SGD, each over a few "
        "learning rates (teachers: Adam as in the paper)",
        parse_optimizer,
        _OPT_GRID,
        "sgd@0.1,momentum@0.01,adam@1e-3,signsgd@1e-4",
    ),
    "loss": Sweep(
        "the students' loss on their logit subset: KL at temperature T, squared error on "
        "logits, or cross-entropy on the teacher's argmax (hard labels)",
        parse_loss,
        "kl=0.5,kl=1,kl=2,kl=4,kl=8,mse,hard",
        "kl=1,mse,hard",
    ),
    "inputs": Sweep(
        "the students' distillation inputs: uniform noise (the paper's), Gaussian noise, "
        "MNIST training images, pixel-shuffled MNIST, another dataset's images",
        parse_inputs,
        "uniform,gaussian,mnist,shuffled-mnist,fashion-mnist",
        "uniform,gaussian,shuffled-mnist",
    ),
    "defences": Sweep(
        "defences against transfer: the fraction of the aux-only effect left and the cost to "
        "the all-logits same-init student, against the grid's `none` point",
        parse_defence,
        "none,weight-decay=1,init-noise=0.1,round=1,output-noise=1,hard,epochs=1,mix=0.1,"
        "mix=0.25,mix=0.5,kl-init=10,project",
        "none,weight-decay=1,mix=0.5,kl-init=10,project",
        check_defences,
    ),
}
PRESETS = ("smoke", "default", "paper")


def parse_grid(name: str, text: str) -> tuple[Point, ...]:
    """The points of sweep ``name`` from comma-separated tokens; ValueError on a bad grid."""
    if name not in SWEEPS:
        raise ValueError(f"unknown sweep {name!r} (known: {', '.join(SWEEPS)})")
    points = tuple(SWEEPS[name].parse(t.strip()) for t in text.split(",") if t.strip())
    if not points:
        raise ValueError(f"empty grid for sweep {name}")
    labels = [p.label for p in points]
    if len(set(labels)) != len(labels):
        raise ValueError(f"grid repeats a point: {', '.join(labels)}")
    if SWEEPS[name].check is not None:
        SWEEPS[name].check(points)
    return points


def preset_grid(name: str, preset: str) -> tuple[Point, ...]:
    sweep = SWEEPS[name]
    return parse_grid(name, sweep.smoke_grid if preset == "smoke" else sweep.grid)


def teacher_config(cfg: TransferConfig, points: tuple[Point, ...]) -> TransferConfig:
    """The teachers' config: the base, with the grid's largest ``n_aux`` when points set it."""
    m = [p.n_aux for p in points if p.n_aux is not None]
    return dataclasses.replace(cfg, n_aux=max(m)) if m else cfg


def student_config(cfg: TransferConfig, point: Point) -> TransferConfig:
    return cfg if point.n_aux is None else dataclasses.replace(cfg, n_aux=point.n_aux)


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
    out = []
    for s in (states[0], states[2]):
        grads = jax.grad(loss)(s.params, batch)
        with jax.numpy_dtype_promotion("standard"):  # as in transfer.train_step
            updates, _ = tx.update(grads, s.opt_state, s.params)
        neg = jax.tree.map(jnp.negative, grads)
        out += [theorem.cosine(updates, delta_theta_T), theorem.cosine(neg, delta_theta_T)]
    return jnp.stack(out)


COSINES = ("update_aux_same_init", "grad_aux_same_init", "update_aux_diff_init",
           "grad_aux_diff_init")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class SweepConfig(TransferConfig):
    """The experiment's config with the sweep presets (fewer seeds by default, for a 2-core CPU;
    ≥ 50 for ``paper``, on a GPU); the CLI maps its flags onto it."""

    @classmethod
    def smoke(cls) -> "SweepConfig":
        return cls(
            seeds=2, epochs_teacher=2, epochs_student=2, batch_size=128, hidden=32,
            n_train=4096, n_test=1000, n_noise=2048, lr=1e-3, chunk=2,
        )  # fmt: skip

    @classmethod
    def default(cls) -> "SweepConfig":
        return cls(seeds=5)

    @classmethod
    def paper(cls) -> "SweepConfig":
        return cls(seeds=50)


def check_config(points: tuple[Point, ...], cfg: TransferConfig) -> None:
    """Raise ValueError when a point does not fit the config (before anything runs)."""
    for p in points:
        if p.epochs is not None and p.epochs > cfg.epochs_student:
            raise ValueError(f"{p.label}: more than the config's {cfg.epochs_student} epochs")
