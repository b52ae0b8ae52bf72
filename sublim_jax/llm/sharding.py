"""Meshes and ``PartitionSpec``s: FSDP + tensor parallelism for the decoder, batch on data axes.

Mesh axes: ``data`` (pure data parallel), ``fsdp`` (data parallel whose weights are sharded too)
and ``tp`` (tensor parallel: heads and MLP width). Weights split their contracting/model dimension
over ``fsdp`` and their head/width dimension over ``tp``; activations and the KV cache split the
batch over ``(data, fsdp)`` and KV heads over ``tp``. A mesh axis that does not divide a dimension
is dropped for that array, so every spec is legal; a head axis (``NH`` or ``KH``) counts whole
heads, so 3 KV heads on ``tp=2`` are replicated even though ``3 * H`` is even.

Multi-host: call ``initialize_distributed()`` first on every host (it wraps
``jax.distributed.initialize()``, which reads the coordinator from the cluster environment or its
arguments), then build the same mesh everywhere; ``params.load_safetensors`` then copies on each
host only the shards its devices own (``jax.make_array_from_callback``).
"""

import dataclasses
import os

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import KVCache

AXES = ("data", "fsdp", "tp")
BATCH = ("data", "fsdp")
_PROJ_SPEC = dict(q="qkv", k="qkv", v="qkv", o="o", gate="gate_up", up="gate_up", down="down")
_TP_FSDP, _FSDP_TP, _TP, _REPLICATED = P("tp", "fsdp"), P("fsdp", "tp"), P("tp"), P()
_BATCH_FIRST, _HIDDEN = P(BATCH, None), P(BATCH, None, None)
_LOGITS, _CACHE = P(BATCH, None, "tp"), P(BATCH, "tp", None, None)


@dataclasses.dataclass(frozen=True)
class ShardingRules:
    """One spec per weight kind (einsum layout, input dimension first) and activation kind."""

    embed: P = _TP_FSDP  # VxD
    qkv: P = _FSDP_TP  # DxNH (q) and DxKH (k, v)
    qkv_bias: P = _TP  # NH
    o: P = _TP_FSDP  # NHxD
    gate_up: P = _FSDP_TP  # DxF
    down: P = _TP_FSDP  # FxD
    lm_head: P = _FSDP_TP  # DxV
    norm: P = _REPLICATED  # D
    lora_a: P = _REPLICATED  # IxR
    lora_b: P = _REPLICATED  # RxO
    tokens: P = _BATCH_FIRST  # BxT (also valid/target masks)
    hidden: P = _HIDDEN  # BxTxD
    logits: P = _LOGITS  # BxTxV
    cache: P = _CACHE  # BxKxHxS (keys) and BxKxSxH (values)

    def weight(self, path: tuple) -> P:
        """The spec of the state leaf at ``path`` (as in ``nnx.to_flat_state``)."""
        if path[0] == "layers":  # stacked blocks: a leading, unsharded layer axis
            return P(None, *self.weight(path[1:]))
        leaf = path[-1]
        if leaf in ("lora_a", "lora_b"):
            return getattr(self, leaf)
        if path == ("embed",):
            return self.embed
        if path[0] == "lm_head":
            return self.lm_head
        if leaf == "scale":
            return self.norm
        if leaf == "bias":
            return self.qkv_bias
        return getattr(self, _PROJ_SPEC[path[-2]])


@dataclasses.dataclass(frozen=True)
class MeshRules:
    """Rules bound to a mesh; ``Decoder`` uses it to pin activations (batch on the data axes)."""

    rules: ShardingRules
    mesh: jax.sharding.Mesh

    def constrain(self, x: jax.Array, kind: str) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, activation(self.rules, self.mesh, kind, x.shape))


def attach(model: nnx.Module, rules: ShardingRules, mesh: jax.sharding.Mesh) -> nnx.Module:
    """Make ``model``'s forward pass constrain its activations to ``rules`` on ``mesh``."""
    model.mesh_rules = MeshRules(rules, mesh)
    return model


def make_mesh(data: int = 1, fsdp: int = 1, tp: int = 1, devices=None) -> jax.sharding.Mesh:
    """A ``(data, fsdp, tp)`` mesh with explicitly ``Auto`` axis types (GSPMD propagation)."""
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh((data, fsdp, tp), AXES, axis_types=(auto,) * 3, devices=devices)


def fit(
    spec: P, shape: tuple[int, ...], mesh: jax.sharding.Mesh, units: tuple[int, ...] | None = None
) -> P:
    """Drop mesh axes that do not divide their dimension (and pad the spec to the rank).

    ``units`` counts the indivisible blocks along each dimension (default: its size); a head
    axis of ``N * H`` entries has ``N`` units, so no device ever holds part of a head."""
    entries = list(spec) + [None] * (len(shape) - len(spec))
    out = []
    for unit, entry in zip(units or shape, entries, strict=True):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        kept = tuple(n for n in names if unit % mesh.shape[n] == 0)
        size = int(np.prod([mesh.shape[n] for n in kept])) if kept else 1
        kept = kept if unit % size == 0 else ()
        out.append(None if not kept else kept[0] if len(kept) == 1 else kept)
    return P(*out)


def _head_axis(path: tuple) -> tuple[int, str] | None:
    """``(axis, "q" | "kv")`` of the leaf's ``NH`` or ``KH`` axis (counted from the end), if any."""
    leaf = path[-1]
    proj = path[-3] if leaf in ("lora_a", "lora_b") else path[-2] if len(path) > 1 else None
    if proj in ("q", "k", "v") and leaf in ("kernel", "bias", "lora_b"):
        return -1, "q" if proj == "q" else "kv"
    if proj == "o" and leaf in ("kernel", "lora_a"):
        return -2, "q"
    return None


def weight_spec(
    rules: ShardingRules,
    mesh: jax.sharding.Mesh,
    path: tuple,
    shape: tuple[int, ...],
    cfg: DecoderConfig | None = None,
) -> P:
    """``rules.weight(path)`` fitted to ``shape``; a head axis splits only over whole heads."""
    spec = fit(rules.weight(path), shape, mesh)
    head = _head_axis(path)
    if head is None or _devices(spec[head[0]], mesh) == 1:
        return spec
    if cfg is None:
        raise ValueError(
            f"{'/'.join(map(str, path))} would shard its head axis as {spec}: pass the model's "
            "DecoderConfig (cfg=...) so that heads are split only whole"
        )
    axis, kind = head
    units = list(shape)
    units[axis] = cfg.num_heads if kind == "q" else cfg.num_kv_heads
    return fit(spec, shape, mesh, tuple(units))


def _devices(entry, mesh: jax.sharding.Mesh) -> int:
    """How many devices a spec entry splits its dimension over."""
    names = (entry,) if isinstance(entry, str) else tuple(entry or ())
    return int(np.prod([mesh.shape[n] for n in names])) if names else 1


def sharding_fn(rules: ShardingRules, mesh: jax.sharding.Mesh, cfg: DecoderConfig | None = None):
    """``(path, shape) -> NamedSharding`` for ``params.load_safetensors`` and ``gguf.load_gguf``.

    ``cfg`` (the model's config) is needed as soon as a head axis is sharded (``tp > 1``)."""
    return lambda path, shape: NamedSharding(mesh, weight_spec(rules, mesh, path, shape, cfg))


def state_shardings(
    state: nnx.State,
    rules: ShardingRules,
    mesh: jax.sharding.Mesh,
    cfg: DecoderConfig | None = None,
) -> nnx.State:
    """A state-shaped tree of ``NamedSharding``s."""
    fn = sharding_fn(rules, mesh, cfg)
    flat = [(path, var.replace(fn(path, var.shape))) for path, var in nnx.to_flat_state(state)]
    return nnx.from_flat_state(flat)


def shard_model(model: nnx.Module, rules: ShardingRules, mesh: jax.sharding.Mesh) -> nnx.Module:
    """Move every weight (base and LoRA) of ``model`` onto its sharding, in place."""
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, state_shardings(state, rules, mesh, model.cfg)))
    return attach(model, rules, mesh)


def activation(rules: ShardingRules, mesh, kind: str, shape: tuple[int, ...]) -> NamedSharding:
    """``NamedSharding`` of an activation kind (``"tokens"``, ``"logits"``, ``"cache"``)."""
    return NamedSharding(mesh, fit(getattr(rules, kind), shape, mesh))


def cache_sharding(rules: ShardingRules, mesh, cfg: DecoderConfig, batch: int, slots: int):
    """Shardings for ``KVCache.zeros(cfg, batch, slots)`` (for ``sampling.generate``)."""
    shapes = jax.eval_shape(lambda: KVCache.zeros(cfg, batch, slots))
    spec = P(None, *rules.cache)  # layers stacked first
    return KVCache(*(NamedSharding(mesh, fit(spec, x.shape, mesh)) for x in shapes))


def initialize_distributed(**kwargs) -> None:
    """Join a multi-host job (``jax.distributed.initialize``); a no-op for one process."""
    if kwargs or _cluster_env():
        jax.distributed.initialize(**kwargs)


def _cluster_env() -> bool:
    keys = (
        "JAX_COORDINATOR_ADDRESS",
        "SLURM_JOB_ID",
        "TPU_WORKER_HOSTNAMES",
        "OMPI_COMM_WORLD_SIZE",
    )
    return any(k in os.environ for k in keys)
