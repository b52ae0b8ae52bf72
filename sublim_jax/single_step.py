"""The theorem on the paper's MNIST network (784-256-256-13): one teacher step, one student step.

L_T is cross-entropy on the 10 class logits of MNIST training images; the student sees uniform
noise in [−1, 1] and L_S is softmax CE on the 3 auxiliary logits only. Shared vs different init
is which init key reaches the student (the same key, or the key of a deranged partner seed).
No I/O here: ``run`` returns arrays; ``sublim_jax.cli`` saves and draws them.
Dims: S seeds, E step sizes, N teacher examples, B noise images, D pixels, C logits.
"""

import dataclasses
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from . import losses, mlp, stats, theorem


@dataclasses.dataclass(frozen=True)
class TheoremConfig:
    seeds: int = dataclasses.field(default=100, metadata={"help": "models (seeds)"})
    eps_min: float = dataclasses.field(default=1e-8, metadata={"help": "smallest teacher step ε"})
    eps_max: float = dataclasses.field(default=1e-1, metadata={"help": "largest teacher step ε"})
    n_eps: int = dataclasses.field(default=15, metadata={"help": "ε values, log-spaced"})
    eps: float = dataclasses.field(default=1e-3, metadata={"help": "ε for the per-seed study"})
    alpha: float = dataclasses.field(default=1e-2, metadata={"help": "student step size α"})
    n_teacher: int = dataclasses.field(default=1024, metadata={"help": "MNIST images in L_T"})
    n_noise: int = dataclasses.field(default=1024, metadata={"help": "noise images per student"})
    hidden: int = dataclasses.field(default=256, metadata={"help": "width of both hidden layers"})
    n_aux: int = dataclasses.field(default=3, metadata={"help": "auxiliary logits (L_S reads)"})
    activation: str = dataclasses.field(default="relu", metadata={"help": "relu, tanh or gelu"})
    chunk: int = dataclasses.field(default=25, metadata={"help": "seeds per compiled batch"})
    seed: int = dataclasses.field(default=0, metadata={"help": "root random seed"})

    @classmethod
    def default(cls) -> "TheoremConfig":
        return cls()

    @classmethod
    def smoke(cls) -> "TheoremConfig":
        return cls(seeds=4, n_eps=7, n_teacher=64, n_noise=64, hidden=32, chunk=4)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (784, self.hidden, self.hidden, 10 + self.n_aux)

    def eps_grid(self) -> np.ndarray:
        return np.logspace(np.log10(self.eps_min), np.log10(self.eps_max), self.n_eps)

    def validate(self) -> "TheoremConfig":
        checks = [
            (
                self.seeds >= 2,
                f"seeds must be ≥ 2 (different init needs a partner), got {self.seeds}",
            ),
            (self.eps_min > 0, f"eps-min must be > 0, got {self.eps_min}"),
            (self.eps_max > self.eps_min, "eps-max must be larger than eps-min"),
            (self.n_eps >= 2, f"n-eps must be ≥ 2, got {self.n_eps}"),
            (self.eps > 0, f"eps must be > 0, got {self.eps}"),
            (self.alpha > 0, f"alpha must be > 0, got {self.alpha}"),
            (min(self.n_teacher, self.n_noise, self.hidden, self.n_aux) >= 1, "sizes must be ≥ 1"),
            (self.n_teacher <= 60_000, "n-teacher must be ≤ 60000 (the MNIST training set)"),
            (
                self.activation in mlp.ACTIVATIONS,
                f"activation must be one of {list(mlp.ACTIVATIONS)}",
            ),
            (self.chunk >= 1, f"chunk must be ≥ 1, got {self.chunk}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


def teacher_loss(cfg: TheoremConfig, x_NxD: jax.Array, labels_N: jax.Array):
    """L_T(θ): mean cross-entropy of the 10 class logits on MNIST training images."""

    def L_T(theta):
        logits_NxC = mlp.apply(theta, x_NxD, cfg.activation)[:, :10]
        return jnp.mean(losses.cross_entropy_labels(logits_NxC, labels_N))

    return L_T


def student_loss(cfg: TheoremConfig):
    """L_S: softmax CE on the auxiliary logits only (paper §6.1, 'fixed subset')."""
    return losses.on_subset(losses.softmax_cross_entropy, range(10, 10 + cfg.n_aux))


def _setup(cfg, x_NxD, labels_N, init_key_T, init_key_S, noise_key):
    dtype = x_NxD.dtype
    theta0_T = mlp.init(key=init_key_T, sizes=cfg.sizes, dtype=dtype)
    theta0_S = mlp.init(key=init_key_S, sizes=cfg.sizes, dtype=dtype)
    noise_BxD = jax.random.uniform(noise_key, (cfg.n_noise, 784), dtype, -1.0, 1.0)
    L_T = teacher_loss(cfg, x_NxD, labels_N)
    return theta0_T, theta0_S, noise_BxD, L_T


def f_of(cfg: TheoremConfig) -> Callable:
    return partial(mlp.apply, activation=cfg.activation)


def seed_study(cfg, x_NxD, labels_N, init_key_T, init_key_S, noise_key) -> theorem.OneStep:
    """Alignment, cosine and L_T change of one teacher/student pair at (cfg.eps, cfg.alpha)."""
    theta0_T, theta0_S, noise_BxD, L_T = _setup(
        cfg, x_NxD, labels_N, init_key_T, init_key_S, noise_key
    )
    f, L_S = f_of(cfg), student_loss(cfg)
    return theorem.one_step(f, L_S, L_T, theta0_T, theta0_S, noise_BxD, cfg.eps, cfg.alpha)


def eps_sweep(cfg, x_NxD, labels_N, init_key_T, init_key_S, noise_key, eps_E):
    """Δθ_S·Δθ_T at every ε of the grid, and A (for the εA line; meaningful under shared init)."""
    theta0_T, theta0_S, noise_BxD, L_T = _setup(
        cfg, x_NxD, labels_N, init_key_T, init_key_S, noise_key
    )
    f, L_S = f_of(cfg), student_loss(cfg)
    delta_theta_T = theorem.teacher_direction(L_T, theta0_T)

    def aligned(eps):
        theta_T = theorem.teacher_params(theta0_T, delta_theta_T, eps)
        delta_theta_S = theorem.student_direction(f, L_S, theta0_S, theta_T, noise_BxD)
        return theorem.alignment(delta_theta_S, delta_theta_T)

    A = theorem.first_order_coefficient(f, L_S, theta0_T, delta_theta_T, noise_BxD)
    return jax.lax.map(aligned, eps_E), A


def keys(cfg: TheoremConfig):
    """Per-seed (init, noise) keys, the deranged partners' init keys, and the data key."""
    root = jax.random.key(cfg.seed)
    init_root, noise_root, data_key, perm_key = jax.random.split(root, 4)
    init_S = jax.random.split(init_root, cfg.seeds)
    partner = stats.derangement(cfg.seeds, key=perm_key)
    return init_S, init_S[partner], jax.random.split(noise_root, cfg.seeds), data_key, partner


def run(cfg: TheoremConfig, x_train_NxD, y_train_N, on_chunk: Callable[[int], None] | None = None):
    """Both studies, shared and different init; returns numpy arrays (results-file ready).

    Runs in float64 (the identities are checked to that precision). Seeds run as one
    ``jit(vmap)`` per chunk of ``cfg.chunk`` seeds, which bounds memory on CPU.
    """
    cfg.validate()
    with jax.enable_x64(True):
        return _run(cfg, x_train_NxD, y_train_N, on_chunk)


def _run(cfg, x_train_NxD, y_train_N, on_chunk):
    init_T, init_partner, noise, data_key, partner = keys(cfg)
    idx = jax.random.choice(data_key, x_train_NxD.shape[0], (cfg.n_teacher,), replace=False)
    x_NxD = jnp.asarray(np.asarray(x_train_NxD)[np.asarray(idx)], jnp.float64)
    labels_N = jnp.asarray(np.asarray(y_train_N)[np.asarray(idx)], jnp.int32)
    eps_E = jnp.asarray(cfg.eps_grid(), jnp.float64)

    sweep = jax.jit(eps_sweep, static_argnums=0)
    shared_E, A = sweep(cfg, x_NxD, labels_N, init_T[0], init_T[0], noise[0], eps_E)
    different_E, _ = sweep(cfg, x_NxD, labels_N, init_T[0], init_partner[0], noise[0], eps_E)

    study = jax.jit(jax.vmap(seed_study, in_axes=(None, None, None, 0, 0, 0)), static_argnums=0)
    out = {"shared": [], "different": []}
    for start in range(0, cfg.seeds, cfg.chunk):
        sl = slice(start, min(start + cfg.chunk, cfg.seeds))
        out["shared"].append(study(cfg, x_NxD, labels_N, init_T[sl], init_T[sl], noise[sl]))
        out["different"].append(
            study(cfg, x_NxD, labels_N, init_T[sl], init_partner[sl], noise[sl])
        )
        if on_chunk is not None:
            on_chunk(sl.stop - sl.start)
    per_seed = {k: jax.tree.map(lambda *a: np.concatenate(a), *v) for k, v in out.items()}
    return _collect(cfg, eps_E, shared_E, different_E, A, per_seed, partner)


def _collect(cfg, eps_E, shared_E, different_E, A, per_seed, partner) -> dict:
    eps = np.asarray(eps_E)
    return {
        "eps": eps,
        "alignment_shared": np.asarray(shared_E),
        "first_order_shared": eps * float(A),
        "alignment_different": np.asarray(different_E),
        "A": float(A),
        "eps_seed_study": cfg.eps,
        "alpha": cfg.alpha,
        "alignment_seed_shared": per_seed["shared"].alignment,
        "alignment_seed_different": per_seed["different"].alignment,
        "cosine_shared": per_seed["shared"].cosine,
        "cosine_different": per_seed["different"].cosine,
        "lt_change_shared": per_seed["shared"].lt_change,
        "lt_change_different": per_seed["different"].lt_change,
        "lt_decreased_shared": per_seed["shared"].lt_change < 0,
        "lt_decreased_different": per_seed["different"].lt_change < 0,
        "partner": partner,
    }
