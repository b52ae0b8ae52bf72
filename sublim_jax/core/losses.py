"""Per-example output losses L(z, y): z student outputs, y teacher outputs (or labels).

Every loss maps one output vector z_C (and y_C) to a scalar; batch with ``jax.vmap`` or the
``batched`` helper. C is the number of outputs, K the size of a logit subset.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

OutputLoss = Callable[[jax.Array, jax.Array], jax.Array]


def squared_error(z_C: jax.Array, y_C: jax.Array, w_C: jax.Array | None = None) -> jax.Array:
    """Σ_i w_i (z_i − y_i)², w_i ≥ 0 (paper §6.1)."""
    sq = jnp.square(z_C - y_C)
    return jnp.sum(sq if w_C is None else w_C * sq, axis=-1)


def softmax_cross_entropy(z_C: jax.Array, y_C: jax.Array, temperature: float = 1.0) -> jax.Array:
    """−Σ_i softmax(y/T)_i log softmax(z/T)_i on full output vectors (not samples)."""
    p_C = jax.nn.softmax(y_C / temperature, axis=-1)
    return -jnp.sum(p_C * jax.nn.log_softmax(z_C / temperature, axis=-1), axis=-1)


def kl_divergence(z_C: jax.Array, y_C: jax.Array, temperature: float = 1.0) -> jax.Array:
    """KL(softmax(y/T) ‖ softmax(z/T)); same z-gradient as ``softmax_cross_entropy``."""
    logp_C = jax.nn.log_softmax(y_C / temperature, axis=-1)
    logq_C = jax.nn.log_softmax(z_C / temperature, axis=-1)
    return jnp.sum(jnp.exp(logp_C) * (logp_C - logq_C), axis=-1)


def cross_entropy_labels(logits_C: jax.Array, label: jax.Array) -> jax.Array:
    """−log softmax(z)_label for an integer class label."""
    logp_C = jax.nn.log_softmax(logits_C, axis=-1)
    return -jnp.take_along_axis(logp_C, label[..., None], axis=-1)[..., 0]


def on_subset(loss: OutputLoss, indices: Sequence[int]) -> OutputLoss:
    """The loss restricted to a fixed subset of the outputs (e.g. the auxiliary logits)."""
    idx_K = jnp.asarray(tuple(indices), dtype=jnp.int32)

    def subset_loss(z_C: jax.Array, y_C: jax.Array) -> jax.Array:
        return loss(jnp.take(z_C, idx_K, axis=-1), jnp.take(y_C, idx_K, axis=-1))

    return subset_loss


def batched(loss: OutputLoss) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Mean of a per-example loss over a leading batch axis: (z_BxC, y_BxC) -> scalar."""

    def mean_loss(z_BxC: jax.Array, y_BxC: jax.Array) -> jax.Array:
        return jnp.mean(jax.vmap(loss)(z_BxC, y_BxC))

    return mean_loss


def hard_label_cross_entropy(z_C: jax.Array, y_C: jax.Array) -> jax.Array:
    """−log softmax(z)_k with k = argmax y: cross-entropy on the teacher's one-hot argmax (hard
    labels); its z-gradient is softmax(z) − onehot(argmax y)."""
    return cross_entropy_labels(z_C, jnp.argmax(y_C, axis=-1))
