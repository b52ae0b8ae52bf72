"""The MLP params pytree: init statistics, shapes, activations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_jax.core import mlp


def test_init_matches_paper_statistics(key):
    params = mlp.init(key=key, sizes=(784, 256, 256, 13), dtype=jnp.float32)
    assert mlp.sizes_of(params) == (784, 256, 256, 13)
    for layer, fan_in in zip(params, (784, 256, 256), strict=True):
        assert layer.w_DxH.dtype == jnp.float32
        np.testing.assert_allclose(float(jnp.std(layer.w_DxH)), 1 / np.sqrt(fan_in), rtol=0.05)
        assert abs(float(jnp.mean(layer.w_DxH))) < 0.01 / np.sqrt(fan_in) * 10
        np.testing.assert_array_equal(layer.b_H, 0.0)


def test_same_key_same_init_other_key_other_init(key):
    a = mlp.init(key=key, sizes=(3, 4, 2))
    b = mlp.init(key=key, sizes=(3, 4, 2))
    c = mlp.init(key=jax.random.fold_in(key, 1), sizes=(3, 4, 2))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.allclose(a[0].w_DxH, c[0].w_DxH)


@pytest.mark.parametrize("activation", sorted(mlp.ACTIVATIONS))
def test_apply_is_the_layered_formula(key, activation):
    params = mlp.init(key=key, sizes=(5, 7, 3), dtype=jnp.float64)
    params = (params[0]._replace(b_H=jnp.arange(7, dtype=jnp.float64) / 7), params[1])
    x = jax.random.normal(key, (4, 5), jnp.float64)
    act = mlp.ACTIVATIONS[activation]
    h = act(x @ params[0].w_DxH + params[0].b_H[None])
    np.testing.assert_allclose(mlp.apply(params, x, activation), h @ params[1].w_DxH, rtol=1e-12)


def test_single_example_and_batch_agree(key):
    params = mlp.init(key=key, sizes=(5, 7, 3), dtype=jnp.float64)
    x = jax.random.normal(key, (4, 5), jnp.float64)
    np.testing.assert_allclose(mlp.apply(params, x[1]), mlp.apply(params, x)[1], rtol=1e-12)


def test_bad_sizes_raise(key):
    with pytest.raises(ValueError, match="sizes"):
        mlp.init(key=key, sizes=(5,))
    with pytest.raises(ValueError, match="sizes"):
        mlp.init(key=key, sizes=(5, 0, 2))


def test_matmul_flops():
    assert mlp.matmul_flops((784, 256, 256, 13)) == 2 * (784 * 256 + 256 * 256 + 256 * 13)


@pytest.mark.parametrize("sizes", [(784, 256, 256, 13), (100, 48, 32, 10)])
def test_train_flops_is_what_xla_executes(key, sizes):
    """The count the MNIST benchmark divides by agrees with XLA's cost model of a gradient."""
    params = mlp.init(key=key, sizes=sizes, dtype=jnp.float32)
    x = jnp.ones((64, sizes[0]), jnp.float32)
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(mlp.apply(p, x) ** 2)))
    cost = grad.lower(params, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    expected = 64 * mlp.train_flops(sizes)
    assert expected <= cost["flops"] <= 1.03 * expected  # the rest is elementwise
