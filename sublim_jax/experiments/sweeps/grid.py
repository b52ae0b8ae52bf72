"""Beyond the paper: grids over the MNIST transfer experiment's config, as data and pure functions.

A sweep is a named grid of `Point`s. Every point trains the experiment's four students
(`sublim_jax.experiments.mnist.steps.STUDENTS`) against the same teachers; a point changes only

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
* the students' loss, inputs or a defence (``loss``, ``inputs``, ``defences``; ``decay``: the
  two weight decays, AdamW's decoupled and the coupled L2 of torch's Adam): these points run
  the students of `sublim_jax.experiments.sweeps.variants` (see there for what is traced).
* the architecture (``architecture``: width × hidden layers) or the teachers' training
  (``teacher-strength``: epochs or Adam steps, fractions of an epoch included): points are
  grouped by teacher (`teacher_groups`), each group's teachers trained once;
* the students' dose (``dose``): the model's first n noise images, for e epochs; or their
  batch (``batch-size``): for the config's epochs, or for a fixed number of steps;
* what is recorded (``alignment-over-training``): init-distance points whose students log
  per-step, per-layer alignment with Δθ_T and the teacher's loss (`make_tracked_epoch`).

Dims: S seeds, L layers, N noise images, D pixels, C logits. No I/O here.
"""

import math
from collections.abc import Callable
from functools import partial

import optax

from sublim_jax.experiments.mnist.config import TransferConfig
from sublim_jax.experiments.sweeps.points import Point, Sweep, finite, ints, number
from sublim_jax.io import data

LAYERS = ("h1", "h2", "readout")  # hidden-1, hidden-2, readout: the network's three Dense layers
M_MAX = 1000  # most auxiliary logits an aux-count point may have
W_MAX, DEPTH_MAX, N_NOISE_MAX = 8192, 16, 1_000_000  # architecture, dose and batch bounds
STEPS_MAX = 1_000_000  # most student steps a batch-size point may train
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": partial(optax.sgd, momentum=0.9),
    "adam": optax.adam,
    "signsgd": optax.sign_sgd,
}


def parse_init_distance(token: str) -> Point:
    """``0.1`` or ``sigma=0.1``: θ⁰_T + σ·θ⁰_P (σ ≥ 0); ``lambda=0.5``: (1 − λ)·θ⁰_T + λ·θ⁰_P."""
    name, _, text = token.rpartition("=")
    v = number(text)
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
    m = number(token, int)
    if not 1 <= m <= M_MAX:
        raise ValueError(f"m (auxiliary logits) must be in 1..{M_MAX}, got {token!r}")
    return Point(f"m={m}", m, n_aux=m)


def parse_optimizer(token: str) -> Point:
    """``NAME@LR`` with NAME one of `OPTIMIZERS`."""
    name, sep, text = token.partition("@")
    if not sep or name not in OPTIMIZERS:
        names = ", ".join(OPTIMIZERS)
        raise ValueError(f"optimizer points are NAME@LR with NAME in {names}, got {token!r}")
    lr = number(text)
    if not lr > 0:
        raise ValueError(f"learning rate must be > 0, got {token!r}")
    return Point(f"{name}@{lr:g}", lr, optimizer=name, lr=lr)


def parse_loss(token: str) -> Point:
    """``kl=T`` (KL at temperature T > 0), ``mse`` (squared error on logits) or ``hard``
    (cross-entropy on the teacher's argmax), each on the student's logit subset."""
    if token in ("mse", "hard"):
        return Point(token, token, loss=token)
    if token.startswith("kl="):
        t = finite(token)
        if not t > 0:
            raise ValueError(f"temperature must be > 0, got {token!r}")
        return Point(f"kl={t:g}", t, loss="kl", temperature=t)
    raise ValueError(f"loss points are kl=T, mse or hard, got {token!r}")


NOISE_INPUTS = ("uniform", "gaussian")


def parse_inputs(token: str) -> Point:
    """``uniform`` (the experiment's), ``gaussian``, a dataset's training images (a name of
    `sublim_jax.io.data.DATASETS`) or ``shuffled-NAME`` (its pixels in one fixed random order)."""
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
    "l2": "λ, L2 coupled into Adam's moments (torch Adam's weight_decay)",
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
    v = finite(token, kind, 0.0, 1.0 if name == "mix" else math.inf)
    label = f"{name}={v:g}"
    return Point(label, label, defence=name, strength=float(v),
                 epochs=v if name == "epochs" else None)  # fmt: skip


def check_defences(points: tuple[Point, ...]) -> None:
    if not any(p.defence == "none" for p in points):
        raise ValueError("a defences grid needs its baseline point `none`")


DECAYS = ("none", "weight-decay", "l2")  # the decay sweep's defences
DEFENCE_SWEEPS = ("defences", "decay")  # sweeps of defences, each against its grid's `none`


def parse_decay(token: str) -> Point:
    """A `parse_defence` point of ``none``, ``weight-decay=λ`` (decoupled) or ``l2=λ``
    (coupled)."""
    if token.partition("=")[0] not in DECAYS:
        raise ValueError(f"decay points are none, weight-decay=λ or l2=λ, got {token!r}")
    return parse_defence(token)


def parse_architecture(token: str) -> Point:
    """``WxD``: D hidden layers of width W, teachers and students alike."""
    if token.count("x") != 1:
        raise ValueError(f"architecture points are WIDTHxDEPTH (e.g. 256x2), got {token!r}")
    width, depth = ints(token, "x", "width and depth", W_MAX)
    if depth > DEPTH_MAX:
        raise ValueError(f"depth must be in 1..{DEPTH_MAX}, got {token!r}")
    return Point(f"{width}x{depth}", f"{width}x{depth}", hidden=width, depth=depth)


def parse_dose(token: str) -> Point:
    """``N`` noise images per model for the config's epochs, or ``NxE`` for E epochs."""
    if token.count("x") > 1:
        raise ValueError(f"dose points are N or NxE (e.g. 1000, 60000x1), got {token!r}")
    n, *e = ints(token, "x", "images and epochs", N_NOISE_MAX)
    label = f"n={n}" + "".join(f"×{v}" for v in e)
    return Point(label, n, n_noise=n, epochs_student=e[0] if e else None)


def parse_teacher_strength(token: str) -> Point:
    """``E`` teacher epochs (fractions allowed, rounded to whole steps) or ``steps=K``."""
    name, _, text = token.rpartition("=")
    if name not in ("", "steps"):
        raise ValueError(f"teacher-strength points are E (epochs) or steps=K, got {token!r}")
    v = number(text, int if name else float)
    if not v >= 0:
        raise ValueError(f"teacher training must be ≥ 0, got {token!r}")
    if name:
        return Point(f"{v} steps", v, teacher_steps=v)
    return Point(f"{v:g} ep", v, teacher_epochs=v)


def parse_batch_size(token: str) -> Point:
    """``B``: the students' batch B for the config's epochs (fewer steps as B grows);
    ``B@steps=K``: batch B for exactly K steps (more images as B grows; whole epochs, then the
    first steps of one more). The teachers keep the config's batch."""
    text, sep, rest = token.partition("@")
    name, eq, k_text = rest.partition("=")
    if sep and (name, eq) != ("steps", "="):
        raise ValueError(f"batch-size points are B or B@steps=K (e.g. 4096@steps=150): {token!r}")
    b = number(text, int)
    if not 1 <= b <= N_NOISE_MAX:
        raise ValueError(f"batch size must be in 1..{N_NOISE_MAX}, got {token!r}")
    if not sep:
        return Point(f"B={b}", b, batch_size=b)
    k = number(k_text, int)
    if not 1 <= k <= STEPS_MAX:
        raise ValueError(f"student steps must be in 1..{STEPS_MAX}, got {token!r}")
    return Point(f"B={b}, {k} steps", b, batch_size=b, student_steps=k)


def parse_alignment(token: str) -> Point:
    """An `parse_init_distance` point whose students record alignment curves every step."""
    return parse_init_distance(token)._replace(track=True)


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


_DECADES = ("1e-5", "3e-5", "1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1", "3e-1", "1")


SWEEPS = {
    "init-distance": Sweep(
        "students start at θ⁰_T + σ·θ⁰_P (σ grid) and at (1−λ)·θ⁰_T + λ·θ⁰_P: how close must "
        "the inits be?",
        parse_init_distance,
        "0,0.03,0.1,0.3,1,lambda=0.5",
        "0,0.3,lambda=1",
        paper_grid="0,0.01,0.03,0.1,0.3,1,lambda=0.25,lambda=0.5,lambda=0.75,lambda=1",
    ),
    "layer-sharing": Sweep(
        "the student shares the teacher's init in only some layers (each subset of h1, h2, "
        "readout; all = same init, none = different init)",
        parse_layer_sharing,
        "none,h1,h2,readout,h1+h2,all",
        "none,h1+h2,readout,all",
        paper_grid="none,h1,h2,readout,h1+h2,h1+readout,h2+readout,all",
    ),
    "aux-count": Sweep(
        "m auxiliary logits (m = 1 carries no gradient: the untrained accuracy)",
        parse_aux_count,
        "1,3,10,30,100",
        "1,3,10",
        paper_grid="1,2,3,5,10,30,100",
    ),
    "optimizer": Sweep(
        "students trained with SGD, SGD + momentum 0.9, Adam or sign-SGD, each over a few "
        "learning rates (teachers: Adam as in the paper)",
        parse_optimizer,
        "sgd@1,sgd@10,momentum@0.1,momentum@1,adam@3e-4,adam@3e-3,signsgd@1e-4,signsgd@1e-3",
        "sgd@0.1,momentum@0.01,adam@1e-3,signsgd@1e-4",
        paper_grid=_OPT_GRID,
    ),
    "loss": Sweep(
        "the students' loss on their logit subset: KL at temperature T, squared error on "
        "logits, or cross-entropy on the teacher's argmax (hard labels)",
        parse_loss,
        "kl=0.5,kl=1,kl=4,mse,hard",
        "kl=1,mse,hard",
        paper_grid="kl=0.5,kl=1,kl=2,kl=4,kl=8,mse,hard",
    ),
    "inputs": Sweep(
        "the students' distillation inputs: uniform noise (the paper's), Gaussian noise, "
        "MNIST training images, pixel-shuffled MNIST, another dataset's images",
        parse_inputs,
        "uniform,gaussian,mnist,shuffled-mnist,fashion-mnist",
        "uniform,gaussian,shuffled-mnist",
    ),
    "defences": Sweep(
        "defences against transfer (weight-decay=λ: AdamW's decoupled decay; l2=λ: L2 coupled "
        "into Adam's moments, torch Adam's weight_decay; init-noise, round, output-noise, hard, "
        "epochs, mix, kl-init, project): the fraction of the aux-only effect left and the cost "
        "to the all-logits same-init student, against the grid's `none` point",
        parse_defence,
        "none,weight-decay=1,init-noise=0.1,output-noise=1,hard,epochs=1,mix=0.1,mix=0.25,"
        "mix=0.5,kl-init=10,project",
        "none,weight-decay=1,mix=0.5,kl-init=10,project",
        check_defences,
        paper_grid="none,weight-decay=1,init-noise=0.1,round=1,output-noise=1,hard,epochs=1,"
        "mix=0.1,mix=0.25,mix=0.5,kl-init=10,project",
    ),
    "decay": Sweep(
        "the defences sweep's two weight decays over λ = 1e-5 … 1: weight-decay=λ (AdamW, "
        "decoupled: −lr·λ·θ after Adam's normalisation) against l2=λ (coupled: λ·θ added to "
        "the gradient before Adam's moments, as torch Adam's weight_decay)",
        parse_decay,
        "none," + ",".join(f"{d}={v}" for d in DECAYS[1:] for v in _DECADES[::2]),
        "none,weight-decay=0.01,l2=0.01",
        check_defences,
        paper_grid="none," + ",".join(f"{d}={v}" for d in DECAYS[1:] for v in _DECADES),
    ),
    "architecture": Sweep(
        "WIDTHxDEPTH: D hidden layers of width W (teachers trained per architecture); does "
        "transfer need a particular size?",
        parse_architecture,
        "64x2,128x2,256x2,256x1,256x3",
        "32x2,16x1",
        paper_grid=",".join(f"{w}x{d}" for w in (64, 128, 256, 512, 1024) for d in (1, 2, 3, 4)),
    ),
    "dose": Sweep(
        "N (or NxE): students see only the first N noise images (for E epochs); is there a "
        "threshold?",
        parse_dose,
        "100,1000,3000,10000,30000,60000x1,60000",
        "256,2048x1,2048",
        paper_grid="30,100,300,1000,3000,10000,30000,60000x1,60000x2,60000,60000x10",
    ),
    "batch-size": Sweep(
        "the students' batch B (teachers unchanged): B for the config's epochs (fewer steps as B "
        "grows), or B@steps=K, exactly K steps (more images as B grows): steps against images",
        parse_batch_size,
        "64,256,1024,4096,64@steps=150,256@steps=150,4096@steps=150",
        "32,128,512,32@steps=32,512@steps=32",
        paper_grid="32,64,128,256,512,1024,2048,4096,8192,64@steps=295,256@steps=295,"
        "4096@steps=295",
    ),
    "teacher-strength": Sweep(
        "teachers trained E epochs (fractions allowed) or steps=K: student accuracy against "
        "the teacher's (the experiment's ε)",
        parse_teacher_strength,
        "0,0.1,1,5",
        "0,0.25,2",
        paper_grid="0,steps=1,steps=3,0.02,0.05,0.1,0.25,0.5,1,2,5",
    ),
    "alignment-over-training": Sweep(
        "per step and layer: cos(θ_S(t) − θ⁰_S, θ_T − θ⁰_T), cos(step, θ_T − θ⁰_T) and the "
        "teacher's loss on the students (points as init-distance: σ or lambda=λ)",
        parse_alignment,
        "0",
        "0,lambda=1",
        paper_grid="0,0.03,0.3",
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
    return parse_grid(name, grid_text(name, preset))


def grid_text(name: str, preset: str) -> str:
    sweep = SWEEPS[name]
    if preset == "paper" and sweep.paper_grid is not None:
        return sweep.paper_grid
    return sweep.smoke_grid if preset == "smoke" else sweep.grid


def check_config(points: tuple[Point, ...], cfg: TransferConfig) -> None:
    """Raise ValueError when a point does not fit the config (before anything runs)."""
    for p in points:
        if p.epochs is not None and p.epochs > cfg.epochs_student:
            raise ValueError(f"{p.label}: more than the config's {cfg.epochs_student} epochs")
        n_noise = cfg.n_noise if p.n_noise is None else p.n_noise
        if p.batch_size is not None and p.batch_size > n_noise:
            raise ValueError(f"{p.label}: batch {p.batch_size} exceeds the {n_noise} noise "
                             "images per model (--n-noise)")  # fmt: skip
