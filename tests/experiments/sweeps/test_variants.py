"""The students of the loss, inputs and defences sweeps: inputs, targets, the penalty and the
projection, on a tiny config (float32, as the sweeps run)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_jax.core import mlp, theorem
from sublim_jax.experiments.mnist import config
from sublim_jax.experiments.mnist import steps as transfer
from sublim_jax.experiments.sweeps import variants as dv
from sublim_jax.io import data

F32 = jnp.float32
CFG = dataclasses.replace(
    config.TransferConfig.smoke(), hidden=16, n_noise=512, batch_size=64, lr=1e-3
)


def test_image_inputs_decode_exactly_like_the_datasets_normalisation():
    x = np.arange(256, dtype=np.uint8).reshape(1, 256)
    np.testing.assert_array_equal(dv.decode_images(jnp.asarray(x)), data.normalize(x))


def test_gaussian_inputs_are_normal_quantiles_of_the_uniform_grid():
    u = jnp.arange(2**16, dtype=jnp.uint32).astype(jnp.uint16)
    x = np.asarray(dv.decode_gaussian(u), np.float64)
    p = (np.arange(2**16) + 0.5) / 2**16
    np.testing.assert_allclose(jax.scipy.stats.norm.cdf(x), p, atol=2e-7, rtol=2e-6)
    np.testing.assert_array_equal(x[::-1], -x)  # symmetric grid
    assert abs(x.mean()) < 1e-9 and abs(x.std() - 1) < 1e-3


def test_shuffled_images_share_one_pixel_permutation():
    perm = dv.pixel_permutation(0)
    np.testing.assert_array_equal(np.sort(perm), np.arange(784))
    assert not np.array_equal(perm, np.arange(784))
    assert not np.array_equal(perm, dv.pixel_permutation(1))
    x = np.random.default_rng(0).integers(0, 256, (10, 784), dtype=np.uint8)
    got = dv.image_inputs(x, 7, perm)
    assert got.dtype == np.uint8 and got.shape == (7, 784)
    np.testing.assert_array_equal(got[:, np.argsort(perm)], x[:7])
    with pytest.raises(ValueError, match="image rows"):
        dv.image_inputs(x, 11)


def test_targets_round_add_noise_and_mix_in_untrained_outputs(key):
    y = jax.random.normal(key, (400, 13), F32) * 3
    y_u = jnp.full_like(y, 100.0)
    zero = F32(0)
    np.testing.assert_array_equal(dv.targets(y, y_u, key, zero, zero, zero), y)
    rounded = np.asarray(dv.targets(y, y_u, key, F32(0.5), zero, zero))
    np.testing.assert_array_equal(rounded * 2, np.round(rounded * 2))
    assert np.abs(rounded - np.asarray(y)).max() <= 0.25
    noisy = np.asarray(dv.targets(y, y_u, key, zero, F32(2.0), zero)) - np.asarray(y)
    assert abs(noisy.std() - 2) < 0.1
    mixed = np.asarray(dv.targets(y, y_u, key, zero, zero, F32(0.25)))
    replaced = np.all(mixed == 100.0, axis=1)
    np.testing.assert_array_equal(mixed[~replaced], np.asarray(y)[~replaced])
    assert 0.18 < replaced.mean() < 0.32


def test_penalty_is_zero_at_the_own_init_and_positive_away_from_it(key):
    k1, k2, k3 = jax.random.split(key, 3)
    theta0 = mlp.init(key=k1, sizes=CFG.sizes)
    theta = mlp.init(key=k2, sizes=CFG.sizes)
    batch = transfer.Batch(
        jax.random.uniform(k3, (32, 784), F32), jax.random.normal(k3, (32, 13), F32),
        jnp.ones(32, F32),
    )  # fmt: skip
    kl = dv.output_loss("kl", 1.0)
    base = lambda p: dv.student_loss(p, batch, loss=kl, logit_idx=(10, 11, 12))  # noqa: E731
    pen = lambda p: dv.student_loss(  # noqa: E731
        p, batch, loss=kl, logit_idx=(10, 11, 12), theta0=theta0, beta=F32(5)
    )
    assert pen(theta0) == base(theta0)
    assert pen(theta) > base(theta) + 1e-3


def _one_epoch(project: bool, key) -> tuple:
    """Four students after one epoch, their inits and a teacher update Δθ_T."""
    k_init, k_other, k_delta, k_noise = jax.random.split(key, 4)
    theta0_T = mlp.init(key=k_init, sizes=CFG.sizes)
    delta = jax.tree.map(lambda t: 0.1 * t, mlp.init(key=k_delta, sizes=CFG.sizes))
    params_T = jax.tree.map(jnp.add, theta0_T, delta)
    u = transfer.make_noise(CFG, key=k_noise)
    y = transfer.teacher_logits(CFG, params_T, u)
    variant = dv.Variant(project=project)
    states = dv.init_students(
        CFG, CFG.lr, variant, theta0_T, mlp.init(key=k_other, sizes=CFG.sizes), k_noise, F32(0)
    )
    theta0s = tuple(s.params for s in states)
    knobs = dv.Knobs(F32(0), F32(0), F32(0))
    epoch = jax.jit(dv.make_epoch(CFG, CFG.lr, variant))
    out, _ = epoch(states, k_noise, 0, u, y, knobs, theta0s, delta)
    cos0 = dv.first_step_cosines(CFG, CFG.lr, variant, states, theta0s, delta, k_noise, u, y, knobs)
    moved = [theorem.cosine(jax.tree.map(jnp.subtract, s.params, t), delta)
             for s, t in zip(out, theta0s, strict=True)]  # fmt: skip
    return np.asarray(moved), np.asarray(cos0)


def test_projected_students_never_move_along_the_teachers_update(key):
    moved, cos0 = _one_epoch(True, key)
    assert np.abs(moved).max() < 1e-5 and np.abs(cos0[::2]).max() < 1e-6
    moved_free, cos0_free = _one_epoch(False, key)  # the same students, unprojected
    assert np.abs(moved_free[:2]).min() > 1e-2 and np.abs(cos0_free[0]) > 1e-2


def _torch_adam(theta: list[np.ndarray], grads: list[list[np.ndarray]], lr: float, l2: float):
    """``torch.optim.Adam(lr, weight_decay=l2)``'s updates θ_t − θ_(t−1), written out in float64
    (torch's single-tensor Adam, default betas and eps): g ← g + λ·θ, then the moments of g."""
    b1, b2, eps = 0.9, 0.999, 1e-8
    theta = [p.astype(np.float64) for p in theta]
    m = [np.zeros_like(p) for p in theta]
    v = [np.zeros_like(p) for p in theta]
    out = []
    for t, g_t in enumerate(grads, start=1):
        step = []
        for i, g in enumerate(g_t):
            g = g + l2 * theta[i]  # coupled: λ·θ enters both moments
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            denom = np.sqrt(v[i]) / np.sqrt(1 - b2**t) + eps
            step.append(-lr / (1 - b1**t) * m[i] / denom)
            theta[i] = theta[i] + step[-1]
        out.append(step)
    return out


def _optax_steps(tx, theta: list[np.ndarray], grads: list[list[np.ndarray]]):
    params = [jnp.asarray(p, F32) for p in theta]
    state, out = tx.init(params), []
    for g_t in grads:
        with jax.numpy_dtype_promotion("standard"):  # as in mnist.steps.train_step
            updates, state = tx.update([jnp.asarray(g, F32) for g in g_t], state, params)
        params = [p + u for p, u in zip(params, updates, strict=True)]
        out.append([np.asarray(u, np.float64) for u in updates])
    return out


def test_l2_is_torch_adams_coupled_weight_decay_not_adamws_decoupled():
    rng = np.random.default_rng(0)
    theta = [rng.normal(size=(5, 3)), rng.normal(size=(3,))]
    grads = [[1e-2 * rng.normal(size=p.shape) for p in theta] for _ in range(4)]
    lr, lam = 1e-3, 0.1
    want = _torch_adam(theta, grads, lr, lam)
    got = _optax_steps(dv.make_tx(lr, l2=F32(lam)), theta, grads)
    for g_t, w_t in zip(got, want, strict=True):
        for g, w in zip(g_t, w_t, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-9)
    decoupled = _optax_steps(dv.make_tx(lr, weight_decay=F32(lam)), theta, grads)
    assert max(np.abs(d - w).max() for d, w in zip(decoupled[-1], want[-1], strict=True)) > 1e-4
    plain = _optax_steps(dv.make_tx(lr), theta, grads)  # and λ = 0 is Adam itself
    for g_t, w_t in zip(plain, _torch_adam(theta, grads, lr, 0.0), strict=True):
        for g, w in zip(g_t, w_t, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-9)
