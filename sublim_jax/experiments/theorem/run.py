"""All seeds of the theorem experiment: the ε sweep on seed 0 and the per-seed study, in chunks."""

import jax
import jax.numpy as jnp
import numpy as np

from sublim_jax.experiments.theorem.config import TheoremConfig
from sublim_jax.experiments.theorem.steps import eps_sweep, keys, seed_study
from sublim_jax.io.progress import Progress, bar


def run(cfg: TheoremConfig, x_train_NxD, y_train_N, progress: Progress | None = None):
    """Both studies, shared and different init; returns numpy arrays (results-file ready).

    Runs in float64 (the identities are checked to that precision). Seeds run as one
    ``jit(vmap)`` per chunk of ``cfg.chunk`` seeds, which bounds memory on CPU.
    """
    cfg.validate()
    with jax.enable_x64(True), bar(progress, "theorem (both inits)", cfg.seeds) as seeds_done:
        return _run(cfg, x_train_NxD, y_train_N, seeds_done.update)


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
