"""Output losses against their textbook formulas."""

import jax
import jax.numpy as jnp
import numpy as np

from sublim_jax.core import losses

F64 = jnp.float64


def _zy(key, n=6):
    return jax.random.normal(key, (2, n), F64) * 2


def test_squared_error(key):
    z, y = _zy(key)
    w = jnp.arange(6, dtype=F64)
    np.testing.assert_allclose(losses.squared_error(z, y, w), np.sum(w * (z - y) ** 2), rtol=1e-14)
    np.testing.assert_allclose(losses.squared_error(z, y), np.sum((z - y) ** 2), rtol=1e-14)


def test_cross_entropy_and_kl(key):
    z, y = _zy(key)
    p = np.exp(y) / np.exp(y).sum()
    q = np.exp(z) / np.exp(z).sum()
    ce = -np.sum(p * np.log(q))
    np.testing.assert_allclose(losses.softmax_cross_entropy(z, y), ce, rtol=1e-12)
    np.testing.assert_allclose(losses.kl_divergence(z, y), np.sum(p * np.log(p / q)), rtol=1e-12)
    assert float(losses.kl_divergence(y, y)) == 0.0


def test_kl_and_ce_share_the_z_gradient(key):
    z, y = _zy(key)
    g_ce = jax.grad(losses.softmax_cross_entropy)(z, y)
    g_kl = jax.grad(losses.kl_divergence)(z, y)
    np.testing.assert_allclose(g_ce, g_kl, rtol=1e-12, atol=1e-15)


def test_temperature_divides_logits(key):
    z, y = _zy(key)
    np.testing.assert_allclose(
        losses.kl_divergence(z, y, temperature=2.0), losses.kl_divergence(z / 2, y / 2), rtol=1e-14
    )


def test_subset_reads_only_its_logits(key):
    z, y = _zy(key)
    aux = losses.on_subset(losses.kl_divergence, (3, 4, 5))
    np.testing.assert_allclose(aux(z, y), losses.kl_divergence(z[3:], y[3:]), rtol=1e-14)
    g = jax.grad(aux)(z, y)
    np.testing.assert_array_equal(g[:3], 0.0)
    assert np.all(g[3:] != 0)


def test_cross_entropy_labels(key):
    z = jax.random.normal(key, (4, 10), F64)
    labels = jnp.array([0, 3, 9, 3])
    expected = -jax.nn.log_softmax(z)[jnp.arange(4), labels]
    np.testing.assert_allclose(losses.cross_entropy_labels(z, labels), expected, rtol=1e-14)


def test_batched_is_the_mean(key):
    z, y = (np.asarray(a) for a in jax.random.normal(key, (2, 5, 4), F64) * 2)
    per_example = []
    for z_C, y_C in zip(z, y, strict=True):  # −Σ_i p_i log q_i by hand, one example at a time
        p = np.exp(y_C) / np.exp(y_C).sum()
        log_q = z_C - np.log(np.exp(z_C).sum())
        per_example.append(-np.sum(p * log_q))
    mean = losses.batched(losses.softmax_cross_entropy)(jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(mean, sum(per_example) / len(per_example), rtol=1e-12)


def test_hard_labels_are_cross_entropy_on_the_one_hot_argmax(key):
    z, y = _zy(key)
    onehot = jax.nn.one_hot(jnp.argmax(y), 6, dtype=F64)
    ce = -jnp.sum(onehot * jax.nn.log_softmax(z))
    np.testing.assert_allclose(losses.hard_label_cross_entropy(z, y), ce, rtol=1e-14)
    g = jax.grad(losses.hard_label_cross_entropy)(z, y)
    np.testing.assert_allclose(g, jax.nn.softmax(z) - onehot, rtol=1e-12, atol=1e-15)
    aux = losses.on_subset(losses.hard_label_cross_entropy, (3, 4, 5))  # argmax of the subset
    label = jnp.argmax(y[3:])
    np.testing.assert_allclose(aux(z, y), -jax.nn.log_softmax(z[3:])[label], rtol=1e-14)
