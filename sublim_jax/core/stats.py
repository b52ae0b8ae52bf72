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


# Student's t 97.5% quantiles by degrees of freedom (1..30); beyond, the normal's 1.96 is within 4%.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def t_summary(values) -> dict:
    """``summary`` with Student's t interval, mean ± t(0.975, n−1)·std/√n: for a few seeds,
    where ±1.96 would be too narrow (n = 3: t = 4.30). One value: the interval is None."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("t_summary needs at least one value")
    m = float(v.mean())
    if v.size == 1:
        return {"mean": m, "ci95": [None, None], "n": 1, "method": "t"}
    t = T975[v.size - 2] if v.size - 1 <= len(T975) else Z95
    half = t * float(v.std(ddof=1)) / np.sqrt(v.size)
    return {"mean": m, "ci95": [m - half, m + half], "n": int(v.size), "method": "t"}


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


BOOTSTRAP = 2000  # resamples of `ratio_of_means`


def ratio_of_means(num_S, den_S, *, seed: int = 0) -> dict:
    """mean(num)/mean(den) over paired seeds, with a 95% percentile-bootstrap CI (seeds resampled
    with their pairs, ``BOOTSTRAP`` times, numpy's generator at ``seed``). A ratio of means rather
    than a mean of per-seed ratios: a seed with an effect near 0 would make its own ratio
    explode. ``None`` where the denominator's mean is 0 (and for the CI when no resample has a
    finite ratio). ``{"mean", "ci95", "n", "method"}``."""
    num, den = np.asarray(num_S, np.float64), np.asarray(den_S, np.float64)
    ratio = lambda a, b: float(a / b) if b != 0 else None  # noqa: E731
    idx = np.random.default_rng(seed).integers(0, num.size, (BOOTSTRAP, num.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = num[idx].mean(1) / den[idx].mean(1)
    boot = boot[np.isfinite(boot)]
    ci = [float(np.percentile(boot, q)) for q in (2.5, 97.5)] if boot.size else [None, None]
    method = f"ratio of means; paired percentile bootstrap over seeds, {BOOTSTRAP} resamples"
    return {"mean": ratio(num.mean(), den.mean()), "ci95": ci, "n": int(num.size),
            "method": method}  # fmt: skip


N_BOOT = 4000


def ranks(x) -> np.ndarray:
    """Ranks 1..n of ``x`` along the last axis, tied values given their average rank."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty_like(flat)
    for i, row in enumerate(flat):
        _, inverse, counts = np.unique(row, return_inverse=True, return_counts=True)
        out[i] = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    return out.reshape(x.shape)


def spearman(x, y) -> np.ndarray:
    """Spearman's rank correlation of ``x`` and ``y`` along the last axis (batched)."""
    rx, ry = ranks(x), ranks(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # constant input: nan, no warning
        return (rx * ry).sum(-1) / np.sqrt((rx**2).sum(-1) * (ry**2).sum(-1))


def rank_correlation(x, y, *, seed: int = 0, n_boot: int = N_BOOT) -> dict:
    """ρ with a 95% percentile bootstrap CI (rows resampled with replacement), and n."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size < 3:
        raise ValueError(f"need two equal 1-D arrays of ≥ 3 values, got {x.shape} and {y.shape}")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    boot = spearman(x[idx], y[idx])
    boot = boot[np.isfinite(boot)]  # a resample of constant values has no correlation
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {"rho": float(spearman(x, y)), "ci95": [float(lo), float(hi)], "n": int(x.size)}
