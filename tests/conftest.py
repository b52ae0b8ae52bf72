"""Strict, deterministic test harness (STYLE.md rule 10).

Rank promotion raises, dtype promotion is strict, x64 is on so that theorem tests can run in
float64 (other tests pass explicit float32 dtypes). Hypothesis profile from
``SUBLIM_HYPOTHESIS_PROFILE``: ``ci`` (default, derandomized) or ``thorough``.
"""

import os

import hypothesis
import jax
import pytest

os.environ.setdefault("SUBLIM_JAX_CACHE", "off")  # no compiled programs kept in $HOME by tests
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

hypothesis.settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=12,
    print_blob=True,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate],
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile(os.environ.get("SUBLIM_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


def _shared_data(name: str) -> str:
    """A dataset folder in ../shared/data beside the checkout (tests never download)."""
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "shared", "data", name)
    path = os.environ.get("SUBLIM_TEST_DATA", default) if name == "mnist" else default
    path = os.path.realpath(path)  # the loader reports resolved folders
    if not os.path.isdir(path):
        message = f"{name} not found at {path}; set SUBLIM_TEST_DATA"
        if os.environ.get("CI"):  # CI always has ../shared beside the clone: never skip there
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mnist_dir() -> str:
    return _shared_data("mnist")


@pytest.fixture(scope="session")
def fashion_dir() -> str:
    return _shared_data("fashion-mnist")
