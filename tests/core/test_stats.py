"""Summary statistics and the derangement that pairs different-init students with teachers."""

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sublim_jax.core import stats


@given(n=st.integers(2, 200), seed=st.integers(0, 2**31 - 1))
def test_derangement_is_a_permutation_without_fixed_points(n: int, seed: int):
    perm = stats.derangement(n, key=jax.random.key(seed))
    assert sorted(perm.tolist()) == list(range(n))
    assert not np.any(perm == np.arange(n))


def test_derangement_is_a_function_of_its_key():
    a = stats.derangement(50, key=jax.random.key(7))
    np.testing.assert_array_equal(a, stats.derangement(50, key=jax.random.key(7)))
    assert not np.array_equal(a, stats.derangement(50, key=jax.random.key(8)))


def test_derangement_of_two_swaps_them_and_rejects_one():
    np.testing.assert_array_equal(stats.derangement(2, key=jax.random.key(0)), [1, 0])
    with pytest.raises(ValueError, match="n ≥ 2"):
        stats.derangement(1, key=jax.random.key(0))


def test_mean_ci95_is_mean_plus_minus_1_96_standard_errors():
    values = [0.5, 0.7, 0.6, 0.8]
    m, (lo, hi) = stats.mean_ci95(values)
    half = 1.96 * np.std(values, ddof=1) / 2  # √n = 2
    assert m == pytest.approx(0.65) and (lo, hi) == pytest.approx((0.65 - half, 0.65 + half))
    assert stats.mean_ci95([0.3]) == (0.3, (0.3, 0.3))
    with pytest.raises(ValueError, match="at least one"):
        stats.mean_ci95([])


def test_summary_has_the_results_file_fields():
    s = stats.summary(np.array([0.1, 0.3]))
    assert set(s) == {"mean", "ci95", "n"} and s["n"] == 2 and s["ci95"][0] < 0.2 < s["ci95"][1]


def test_derangement_is_not_one_fixed_pattern():
    perms = {tuple(stats.derangement(5, key=jax.random.key(s))) for s in range(40)}
    assert len(perms) > 15  # 44 derangements of 5 exist; a uniform sampler visits many
