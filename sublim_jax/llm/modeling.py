"""One Flax NNX decoder for the Llama, Qwen2 (q/k/v bias) and Qwen3 (q/k RMSNorm) families.

Dimensions: B batch, T query tokens, S key/value slots (the KV cache length), D hidden, N query
heads, K key/value heads, G = N/K heads per group, H head dim, F MLP width, V vocabulary, L layers.

Weights are stored as einsum operands: every projection is a ``kernel_IxO`` (input first), the
embedding is ``embed`` (``VxD``), so ``sharding.ShardingRules`` reads one spec per weight kind.
The ``L`` blocks are one ``Block`` whose every weight has a leading layer axis (``kernel_LxIxO``,
LoRA factors ``LxIxR`` and ``LxRxO``), run by one ``lax.scan``: the program, and its compile time,
do not grow with depth. The ``KVCache`` is stacked the same way (``k_LxBxKxHxS``) and carried
through the scan, each layer writing its new slots in place. A padded batch is described by
per-row RoPE ``positions_BxT`` and a ``kv_valid_BxS`` mask; query ``t`` sits in cache slot
``index + t`` and sees slot ``s`` iff ``s <= index + t`` and ``kv_valid[b, s]``.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from sublim_jax.llm.config import DecoderConfig, kernel_std, rope_frequencies

REMAT_POLICIES = {  # ``DecoderConfig.remat``'s ``jax.checkpoint`` policies (None: save nothing)
    "attention": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "full": None,
}


class KVCache(NamedTuple):
    """Keys and values of all layers; the layer scan carries them and writes new slots in place.

    Each is stored in the order its attention product reads it: keys as ``BxKxHxS`` per layer
    (the right operand of ``q @ k^T``), values as ``BxKxSxH`` (of ``p @ v``), so both products
    are plain matmuls batched over ``BxK``. Stored as ``BxSxKxH``, XLA:CPU copied and transposed
    each layer's slice at every decode step (SmolLM2-135M's shape at batch 64 on 2 cores: a decode
    step ~160 ms before, ~140 after; ``benchmarks/llm_decode.py``)."""

    k: jax.Array  # LxBxKxHxS
    v: jax.Array  # LxBxKxSxH

    @classmethod
    def zeros(cls, cfg: DecoderConfig, batch: int, slots: int, dtype=None) -> "KVCache":
        L, K, H = cfg.num_layers, cfg.num_kv_heads, cfg.head_dim
        dtype = dtype or cfg.dtype
        return cls(
            jnp.zeros((L, batch, K, H, slots), dtype), jnp.zeros((L, batch, K, slots, H), dtype)
        )

    @property
    def slots(self) -> int:
        return self.v.shape[3]

    def write(self, layer: jax.Array, index: jax.Array, k_BxTxKxH, v_BxTxKxH) -> "KVCache":
        """Put layer ``layer``'s ``T`` new keys and values into slots ``[index, index + T)``."""
        zero, layer, index = (
            jnp.int32(0),
            jnp.asarray(layer, jnp.int32),
            jnp.asarray(index, jnp.int32),
        )
        k_BxKxHxT, v_BxKxTxH = k_BxTxKxH.transpose(0, 2, 3, 1), v_BxTxKxH.transpose(0, 2, 1, 3)
        k = jax.lax.dynamic_update_slice(
            self.k, k_BxKxHxT[None].astype(self.k.dtype), (layer, zero, zero, zero, index)
        )
        v = jax.lax.dynamic_update_slice(
            self.v, v_BxKxTxH[None].astype(self.v.dtype), (layer, zero, zero, index, zero)
        )
        return KVCache(k, v)

    def read(self, layer: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(k_BxKxHxS, v_BxKxSxH)`` of one layer."""
        return tuple(
            jax.lax.dynamic_index_in_dim(buf, layer, keepdims=False) for buf in (self.k, self.v)
        )


def stacked(make: Callable[[jax.Array], nnx.Module], keys_L: jax.Array) -> nnx.Module:
    """``make(key)`` once per key, as one module whose every variable has a leading ``L`` axis."""
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: make(keys_L[0])))
    state_L = jax.vmap(lambda key: nnx.state(make(key)))(keys_L)
    return nnx.merge(graphdef, state_L)


def _lift(w_X: jax.Array, ndim: int) -> jax.Array:
    """Explicit leading unit axes (the strict harness forbids implicit rank promotion)."""
    return w_X.reshape((1,) * (ndim - w_X.ndim) + w_X.shape)


class RMSNorm(nnx.Module):
    """``x / sqrt(mean(x^2) + eps) * scale``, normalised in float32 as the reference does."""

    def __init__(self, dim: int, cfg: DecoderConfig):
        self.scale = nnx.Param(jnp.ones((dim,), cfg.param_dtype))
        self.eps = cfg.rms_eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        normed = (x32 * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
        return _lift(self.scale[...].astype(x.dtype), x.ndim) * normed


class Proj(nnx.Module):
    """``x @ kernel_IxO (+ bias_O) (+ alpha/r * lora(x))``; ``add_lora`` attaches ``nnx.LoRA``.
    ``residual``: the projection writes into the residual stream (``config.kernel_std``)."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        cfg: DecoderConfig,
        *,
        bias: bool,
        rngs: nnx.Rngs,
        residual: bool = False,
    ):
        init = nnx.initializers.normal(kernel_std(cfg, d_in, residual=residual))
        self.kernel = nnx.Param(init(rngs.params(), (d_in, d_out), cfg.param_dtype))
        self.bias = nnx.Param(jnp.zeros((d_out,), cfg.param_dtype)) if bias else None
        self.dtype = cfg.dtype
        self.lora: nnx.LoRA | None = nnx.data(None)
        self.lora_scale = 0.0

    def add_lora(self, rank: int, alpha: float, *, rngs: nnx.Rngs) -> None:
        """Zero-initialised adapters; a stacked ``kernel_LxIxO`` gets stacked factors."""
        *layers, d_in, d_out = self.kernel.shape

        def make(key: jax.Array) -> nnx.LoRA:
            return nnx.LoRA(
                d_in,
                rank,
                d_out,
                dtype=self.dtype,
                param_dtype=jnp.float32,
                rngs=nnx.Rngs(params=key),
            )

        key = rngs.params()
        self.lora = stacked(make, jax.random.split(key, layers[0])) if layers else make(key)
        self.lora_scale = alpha / rank

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.einsum("...i,io->...o", x, self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + _lift(self.bias[...].astype(self.dtype), y.ndim)
        if self.lora is not None:
            a_IxR, b_RxO = (w[...].astype(self.dtype) for w in (self.lora.lora_a, self.lora.lora_b))
            y = y + lora_delta(x.astype(self.dtype), a_IxR, b_RxO) * self.lora_scale
        return y


@jax.custom_vjp
def lora_delta(x_XxI: jax.Array, a_IxR: jax.Array, b_RxO: jax.Array) -> jax.Array:
    """``(x @ a) @ b`` (``nnx.LoRA``'s product), differentiated by hand (``_lora_bwd``)."""
    return x_XxI @ a_IxR @ b_RxO


def _lora_fwd(x_XxI, a_IxR, b_RxO):
    u_XxR = x_XxI @ a_IxR
    return u_XxR @ b_RxO, (x_XxI, a_IxR, b_RxO, u_XxR)


def _lora_bwd(res, dy_XxO):
    """The factor gradients contract over tokens; each is written so that the token-sized
    operand is the right-hand one (``g^T x``, ``u^T dy``), whose layout needs no transpose. JAX's
    own rule puts ``dy`` on the left, and on CPU XLA then copies a transposed ``NxO`` tensor per
    layer (a fifth of a LoRA step on SmolLM2-135M)."""
    x_XxI, a_IxR, b_RxO, u_XxR = res
    x_NxI, u_NxR = x_XxI.reshape(-1, x_XxI.shape[-1]), u_XxR.reshape(-1, u_XxR.shape[-1])
    dy_NxO = dy_XxO.reshape(-1, dy_XxO.shape[-1])
    g_NxR = dy_NxO @ b_RxO.T
    da_RxI = jnp.einsum("nr,ni->ri", g_NxR, x_NxI)
    db_RxO = jnp.einsum("nr,no->ro", u_NxR, dy_NxO)
    return (g_NxR @ a_IxR.T).reshape(x_XxI.shape), da_RxI.T, db_RxO


lora_delta.defvjp(_lora_fwd, _lora_bwd)


def apply_rope(x_BxTxNxH: jax.Array, sin_BxTxH2: jax.Array, cos_BxTxH2: jax.Array) -> jax.Array:
    """Rotate the two halves of each head (the HF ``rotate_half`` convention)."""
    x1, x2 = jnp.split(x_BxTxNxH, 2, axis=-1)
    sin, cos = sin_BxTxH2[:, :, None, :], cos_BxTxH2[:, :, None, :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


class Attention(nnx.Module):
    """Grouped-query attention over the cache slots with causal and padding masks."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        D, N, K, H = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q = Proj(D, N * H, cfg, bias=cfg.qkv_bias, rngs=rngs)
        self.k = Proj(D, K * H, cfg, bias=cfg.qkv_bias, rngs=rngs)
        self.v = Proj(D, K * H, cfg, bias=cfg.qkv_bias, rngs=rngs)
        self.o = Proj(N * H, D, cfg, bias=False, rngs=rngs, residual=True)
        self.q_norm = RMSNorm(H, cfg) if cfg.qk_norm else None
        self.k_norm = RMSNorm(H, cfg) if cfg.qk_norm else None
        self.shape = (N, K, H)

    def __call__(
        self,
        x_BxTxD: jax.Array,
        rope: tuple[jax.Array, jax.Array],
        mask_BxTxS: jax.Array,
        cache: KVCache | None,
        layer: jax.Array,
        index: jax.Array,
    ) -> tuple[jax.Array, KVCache | None]:
        """Attend over the ``T`` new tokens, or over the cache after writing them into it.

        A prefill from slot 0 (``index`` the int 0) attends over its own keys without reading
        them back: the cache holds nothing earlier, and the read would follow the write."""
        N, K, H = self.shape
        B, T, _ = x_BxTxD.shape
        q_BxTxNxH = self.q(x_BxTxD).reshape(B, T, N, H)
        k_BxTxKxH = self.k(x_BxTxD).reshape(B, T, K, H)
        v_BxTxKxH = self.v(x_BxTxD).reshape(B, T, K, H)
        if self.q_norm is not None:
            q_BxTxNxH, k_BxTxKxH = self.q_norm(q_BxTxNxH), self.k_norm(k_BxTxKxH)
        q_BxTxNxH, k_BxTxKxH = apply_rope(q_BxTxNxH, *rope), apply_rope(k_BxTxKxH, *rope)
        if cache is not None:
            cache = cache.write(layer, index, k_BxTxKxH, v_BxTxKxH)
        if cache is None or (isinstance(index, int) and index == 0):  # no earlier slots to read
            k_BxKxHxS, v_BxKxSxH = k_BxTxKxH.transpose(0, 2, 3, 1), v_BxTxKxH.transpose(0, 2, 1, 3)
            mask_BxTxS = mask_BxTxS[:, :, :T]
        else:
            k_BxKxHxS, v_BxKxSxH = cache.read(layer)
        G = N // K  # query rows of each KV head: its G heads at each of the T positions
        q_BxKxTGxH = (
            q_BxTxNxH.reshape(B, T, K, G, H).transpose(0, 2, 1, 3, 4).reshape(B, K, T * G, H)
        )
        scores = jnp.einsum(
            "bkmh,bkhs->bkms",
            q_BxKxTGxH * (H**-0.5),
            k_BxKxHxS.astype(q_BxKxTGxH.dtype),
            preferred_element_type=jnp.float32,
        ).reshape(B, K, T, G, -1)
        scores = jnp.where(mask_BxTxS[:, None, :, None, :], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(x_BxTxD.dtype).reshape(B, K, T * G, -1)
        out_BxKxTGxH = jnp.einsum("bkms,bksh->bkmh", probs, v_BxKxSxH.astype(probs.dtype))
        out_BxTxKxGxH = out_BxKxTGxH.reshape(B, K, T, G, H).transpose(0, 2, 1, 3, 4)
        return self.o(out_BxTxKxGxH.reshape(B, T, N * H)), cache


class MLP(nnx.Module):
    """SwiGLU: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        D, F = cfg.hidden_size, cfg.intermediate_size
        self.gate = Proj(D, F, cfg, bias=False, rngs=rngs)
        self.up = Proj(D, F, cfg, bias=False, rngs=rngs)
        self.down = Proj(F, D, cfg, bias=False, rngs=rngs, residual=True)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        return self.down(jax.nn.silu(self.gate(x_BxTxD)) * self.up(x_BxTxD))


class Block(nnx.Module):
    """Pre-norm residual block: attention then MLP."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg)
        self.mlp = MLP(cfg, rngs=rngs)

    def __call__(self, x_BxTxD, rope, mask_BxTxS, cache, layer, index):
        h_BxTxD, cache = self.attn(self.attn_norm(x_BxTxD), rope, mask_BxTxS, cache, layer, index)
        x_BxTxD = x_BxTxD + h_BxTxD
        return x_BxTxD + self.mlp(self.mlp_norm(x_BxTxD)), cache


class Decoder(nnx.Module):
    """Token ids to next-token logits (float32), optionally reading and writing a ``KVCache``."""

    def __init__(self, cfg: DecoderConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.mesh_rules = None  # set by ``sharding.attach``: constrains activations on a mesh
        embed = nnx.initializers.normal(cfg.init_embed_std)
        self.embed = nnx.Param(
            embed(rngs.params(), (cfg.vocab_size, cfg.hidden_size), cfg.param_dtype)
        )
        keys_L = jax.random.split(rngs.params(), cfg.num_layers)
        self.layers = stacked(lambda key: Block(cfg, rngs=nnx.Rngs(params=key)), keys_L)
        self.norm = RMSNorm(cfg.hidden_size, cfg)
        tied = cfg.tie_embeddings
        self.lm_head = (
            None if tied else Proj(cfg.hidden_size, cfg.vocab_size, cfg, bias=False, rngs=rngs)
        )

    def __call__(
        self,
        tokens_BxT: jax.Array,
        positions_BxT: jax.Array,
        kv_valid_BxS: jax.Array,
        cache: KVCache | None = None,
        index: jax.Array | int = 0,
        *,
        last: int | None = None,
        head_ids: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """Logits ``BxTxV`` and the updated cache; without a cache ``S == T`` and ``index == 0``.

        ``last`` (static) computes the logits of the last ``last`` query positions alone
        (``BxlastxV``): the ``DxV`` head then costs ``B*last`` rows instead of ``B*T`` (prefill
        needs one position; a completion-only loss needs the completion's). ``head_ids`` (``A``
        token ids) computes those columns of the head alone (``BxTxA``): a loss over a few
        allowed tokens skips the rest of the vocabulary."""
        dtype = self.cfg.dtype
        x_BxTxD = self._constrain(
            jnp.take(self.embed[...], tokens_BxT, axis=0).astype(dtype), "hidden"
        )
        angles_BxTxH2 = (
            positions_BxT.astype(jnp.float32)[..., None]
            * jnp.asarray(rope_frequencies(self.cfg))[None, None, :]
        )
        rope = (jnp.sin(angles_BxTxH2).astype(dtype), jnp.cos(angles_BxTxH2).astype(dtype))
        T, S = tokens_BxT.shape[1], kv_valid_BxS.shape[1]
        q_slot_T = jnp.arange(T, dtype=jnp.int32) + jnp.asarray(index, jnp.int32)
        causal_TxS = jnp.arange(S, dtype=jnp.int32)[None, :] <= q_slot_T[:, None]
        mask_BxTxS = causal_TxS[None, :, :] & kv_valid_BxS[:, None, :]
        x_BxTxD, cache = self._blocks(x_BxTxD, rope, mask_BxTxS, cache, index)
        x_BxTxD = self.norm(x_BxTxD if last is None else x_BxTxD[:, T - last :])
        if self.lm_head is None:
            w_DxV = self.embed[...].astype(dtype).T
        else:
            w_DxV = self.lm_head.kernel[...].astype(dtype)
        if head_ids is not None:
            w_DxV = jnp.take(w_DxV, head_ids, axis=1)
        logits_BxTxV = jnp.einsum("btd,dv->btv", x_BxTxD, w_DxV, preferred_element_type=jnp.float32)
        logits_BxTxV = self._constrain(logits_BxTxV, "logits")
        return logits_BxTxV, cache

    def _blocks(self, x_BxTxD, rope, mask_BxTxS, cache, index) -> tuple[jax.Array, KVCache | None]:
        """All blocks as one ``lax.scan`` over the stacked weights, carrying the (whole) cache.

        Training (no cache) checkpoints the scanned body as ``cfg.remat`` says: ``"attention"``
        saves the outputs of the projections (dots without batch dimensions) and recomputes the
        attention scores, softmax and elementwise ops; ``"full"`` keeps one ``BxTxD`` residual
        per layer and recomputes the rest."""
        graphdef, state_L = nnx.split(self.layers)

        def body(carry, xs):
            x_BxTxD, cache = carry
            state, layer = xs
            block = nnx.merge(graphdef, state)
            x_BxTxD, cache = block(x_BxTxD, rope, mask_BxTxS, cache, layer, index)
            return (self._constrain(x_BxTxD, "hidden"), cache), None

        if self.cfg.remat != "none" and cache is None:
            policy = REMAT_POLICIES[self.cfg.remat]
            body = jax.checkpoint(body, prevent_cse=False, policy=policy)
        layers_L = jnp.arange(self.cfg.num_layers, dtype=jnp.int32)
        (x_BxTxD, cache), _ = jax.lax.scan(body, (x_BxTxD, cache), (state_L, layers_L))
        return x_BxTxD, cache

    def _constrain(self, x: jax.Array, kind: str) -> jax.Array:
        return x if self.mesh_rules is None else self.mesh_rules.constrain(x, kind)


def forward(
    model: Decoder,
    tokens_BxT: jax.Array,
    valid_BxT: jax.Array,
    last: int | None = None,
    head_ids: jax.Array | None = None,
) -> jax.Array:
    """Uncached logits of a (left- or right-) padded batch; positions count valid tokens only.

    ``last`` keeps the last ``last`` positions' logits alone (``BxlastxV``) and ``head_ids`` the
    logits of those token ids alone (``...xA``), as ``Decoder``."""
    positions_BxT = jnp.maximum(jnp.cumsum(valid_BxT.astype(jnp.int32), axis=1) - 1, 0)
    logits_BxTxV, _ = model(tokens_BxT, positions_BxT, valid_BxT, last=last, head_ids=head_ids)
    return logits_BxTxV
