"""The theorem on the paper's MNIST network (784-256-256-13): one teacher step, one student step.

L_T is cross-entropy on the 10 class logits of MNIST training images; the student sees uniform
noise in [−1, 1] and L_S is softmax CE on the 3 auxiliary logits only. Shared vs different init
is which init key reaches the student (the same key, or the key of a deranged partner seed).
No I/O here: `run` loops over seeds and returns arrays; `command` saves and draws them.
Dims: S seeds, E step sizes, N teacher examples, B noise images, D pixels, C logits.
"""

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

from sublim_jax.core import losses, mlp, stats, theorem
from sublim_jax.experiments.theorem.config import TheoremConfig


def teacher_loss(cfg: TheoremConfig, x_NxD: jax.Array, labels_N: jax.Array):
    """L_T(θ): mean cross-entropy of the 10 class logits on MNIST training images."""

    def L_T(theta):
        logits_NxC = mlp.apply(theta, x_NxD, cfg.activation)[:, :10]
        return jnp.mean(losses.cross_entropy_labels(logits_NxC, labels_N))

    return L_T


def student_output_loss(cfg: TheoremConfig):
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
    f, L_S = f_of(cfg), student_output_loss(cfg)
    return theorem.one_step(f, L_S, L_T, theta0_T, theta0_S, noise_BxD, cfg.eps, cfg.alpha)


def eps_sweep(cfg, x_NxD, labels_N, init_key_T, init_key_S, noise_key, eps_E):
    """Δθ_S·Δθ_T at every ε of the grid, and A (for the εA line; meaningful under shared init)."""
    theta0_T, theta0_S, noise_BxD, L_T = _setup(
        cfg, x_NxD, labels_N, init_key_T, init_key_S, noise_key
    )
    f, L_S = f_of(cfg), student_output_loss(cfg)
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
