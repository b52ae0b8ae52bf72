"""Summary statistics across seeds, and the derangement that pairs different-init students."""

import jax
import numpy as np

Z95 = 1.96


def mean_ci95(values) -> tuple[float, tuple[float, float]]:
    """Mean and 95% CI of the mean, mean ± 1.96·std/√n (sample std; the paper's error bars)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    m = float(v.mean())
    half = Z95 * float(v.std(ddof=1)) / np.sqrt(v.size) if v.size > 1 else 0.0
    return m, (m - half, m + half)


def summary(values) -> dict:
    """{"mean", "ci95": [low, high], "n"} for a results file."""
    m, (lo, hi) = mean_ci95(values)
    return {"mean": m, "ci95": [lo, hi], "n": int(np.asarray(values).size)}


def derangement(n: int, *, key: jax.Array) -> np.ndarray:
    """A uniformly random permutation of range(n) with no fixed points (rejection sampling).

    Different-init students are paired with the teachers σ(i) ≠ i, so no pair is accidentally
    same-init (the original script's random permutation leaves about one fixed point per run).
    """
    if n < 2:
        raise ValueError(f"a derangement needs n ≥ 2, got {n}")
    for attempt in range(10_000):  # P(no fixed point) → 1/e, so this ends after ~3 tries
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, attempt), n))
        if not np.any(perm == np.arange(n)):
            return perm
    raise RuntimeError("no derangement found")  # pragma: no cover
