"""Hugging Face safetensors checkpoints onto an ``nnx.eval_shape`` skeleton of ``Decoder``; export.

Loading never materialises the random init: the skeleton is abstract, each tensor is streamed from
its (possibly sharded) file, transposed into the einsum layout, checked against the skeleton's
shape, cast, and placed on its sharding. The blocks are stacked (``modeling``): HF layer ``i``'s
``model.layers.{i}.self_attn.q_proj.weight`` is row ``i`` of ``layers/attn/q/kernel``, so each
weight kind is filled layer by layer on the host, then placed; export unstacks the same way.
``save_safetensors`` writes full, LoRA-merged, or adapter-only (PEFT naming) files; it is the
only function here that writes, and it writes through ``sublim_jax.io.results`` (atomically).
"""

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sublim_jax.io import results
from sublim_jax.llm.config import DecoderConfig
from sublim_jax.llm.modeling import Decoder, Proj

Path = tuple[str | int, ...]
ShardingFn = Callable[[Path, tuple[int, ...]], jax.sharding.Sharding]
_HF = {
    "attn_norm": "input_layernorm",
    "mlp_norm": "post_attention_layernorm",
    "attn": "self_attn",
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}
_TOP = {("embed",): "model.embed_tokens.weight", ("norm", "scale"): "model.norm.weight"}


def is_stacked(path: Path) -> bool:
    """Whether the state leaf at ``path`` has a leading layer axis (a block weight)."""
    return path[0] == "layers"


def hf_key(path: Path, layer: int | None = None) -> tuple[str, bool]:
    """The HF tensor name of a state path (of layer ``layer`` for a stacked block weight), and
    whether the tensor is stored transposed."""
    if path in _TOP:
        return _TOP[path], False
    if path[0] == "lm_head":
        return "lm_head.weight", True
    if layer is None:
        raise ValueError(f"{'/'.join(map(str, path))} is stacked over layers: pass the layer")
    _, *mods, leaf = path
    lora = "lora" in mods
    mods = [_HF.get(str(m), str(m)) for m in mods if m != "lora"]
    stem = ".".join(["model", "layers", str(layer), *mods])
    if lora:
        return f"base_model.model.{stem}.lora_{'A' if leaf == 'lora_a' else 'B'}.weight", True
    return f"{stem}.{'bias' if leaf == 'bias' else 'weight'}", leaf == "kernel"


def skeleton(cfg: DecoderConfig) -> tuple[nnx.GraphDef, nnx.State]:
    """Abstract ``Decoder`` state: shapes and dtypes, no memory."""
    return nnx.split(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))))


def tensor_files(path: str, single: str = "model.safetensors") -> dict[str, str]:
    """Map every tensor name to its file (single ``model.safetensors`` or a sharded index)."""
    from safetensors import safe_open

    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint directory {path!r} does not exist")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            return {k: os.path.join(path, v) for k, v in json.load(f)["weight_map"].items()}
    single = os.path.join(path, single)
    if not os.path.isfile(single):
        raise FileNotFoundError(f"no {os.path.basename(single)} (or sharded index) in {path!r}")
    with safe_open(single, framework="numpy") as f:
        return dict.fromkeys(f.keys(), single)


def place(array: np.ndarray, sharding: jax.sharding.Sharding | None) -> jax.Array:
    """Put a host array on devices; each device (on any host) copies only its own shard."""
    if sharding is None:
        return jnp.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda idx: array[idx])


def load_state(
    abstract: nnx.State, read: Callable[[str], np.ndarray], sharding_fn: ShardingFn | None = None
) -> nnx.State:
    """Fill an abstract state tensor by tensor from ``read(hf_key)`` (HF layout); a stacked
    block weight is filled row by row from its ``L`` per-layer tensors."""
    leaves = []
    for path, var in nnx.to_flat_state(abstract):
        if is_stacked(path):
            array = np.empty(var.shape, var.dtype)
            for layer in range(var.shape[0]):
                array[layer] = _read(read, path, var.shape[1:], var.dtype, layer)
        else:
            array = _read(read, path, var.shape, var.dtype)
        sharding = None if sharding_fn is None else sharding_fn(path, var.shape)
        leaves.append((path, var.replace(place(array, sharding))))
    return nnx.from_flat_state(leaves)


def _read(read: Callable, path: Path, shape, dtype, layer: int | None = None) -> np.ndarray:
    """One HF tensor in the einsum layout, checked against ``shape``, cast to ``dtype``."""
    key, transposed = hf_key(path, layer)
    array = read(key)
    array = array.T if transposed else array
    if array.shape != tuple(shape):
        where = "/".join(map(str, path)) + ("" if layer is None else f"[{layer}]")
        raise ValueError(
            f"tensor {key!r} has shape {array.shape} (after transpose: {transposed}); "
            f"the model expects {tuple(shape)} at {where}"
        )
    return np.asarray(array, dtype)


@contextlib.contextmanager
def _reader(path: str, single: str = "model.safetensors") -> Iterator[Callable]:
    from safetensors import safe_open

    files = tensor_files(path, single)
    with contextlib.ExitStack() as stack:
        handles = {
            f: stack.enter_context(safe_open(f, framework="numpy")) for f in set(files.values())
        }

        def read(key: str) -> np.ndarray:
            if key not in files:
                raise KeyError(f"checkpoint {path!r} has no tensor {key!r}")
            return handles[files[key]].get_tensor(key)

        yield read


def load_safetensors(
    path: str,
    cfg: DecoderConfig | None = None,
    *,
    sharding_fn: ShardingFn | None = None,
    **overrides,
) -> Decoder:
    """A ``Decoder`` from an HF checkpoint directory (``config.json`` + safetensors).

    ``overrides`` replace config fields (e.g. ``dtype=jnp.bfloat16, param_dtype=jnp.bfloat16``);
    ``sharding_fn(path, shape)`` gives each weight's sharding (see ``sharding.ShardingRules``).
    """
    cfg = cfg or DecoderConfig.from_dir(path, **overrides)
    graphdef, abstract = skeleton(cfg)
    with _reader(path) as read:
        state = load_state(abstract, read, sharding_fn)
    return nnx.merge(graphdef, state)


def load_lora(model: Decoder, path: str, *, sharding_fn: ShardingFn | None = None) -> Decoder:
    """Attach adapters saved by ``save_safetensors(..., what="lora")`` to ``model``, in place."""
    config = os.path.join(path, "adapter_config.json")
    if not os.path.isfile(config):
        raise FileNotFoundError(f"no adapter_config.json in {path!r}")
    with open(config) as f:
        meta = json.load(f)
    names = {v: k for k, v in _HF.items()}
    targets = {names[m] for m in meta["target_modules"]}
    rngs = nnx.Rngs(0)
    for name, proj in [(p[-1], m) for p, m in nnx.iter_graph(model) if isinstance(m, Proj)]:
        if name in targets:
            proj.add_lora(meta["r"], meta["lora_alpha"], rngs=rngs)
    with _reader(path, "adapter_model.safetensors") as read:
        nnx.update(model, load_state(nnx.state(model, nnx.LoRAParam), read, sharding_fn))
    return model


def _host(x: jax.Array) -> np.ndarray:
    return np.asarray(jax.device_get(x))


def export_tensors(
    model: Decoder, what: Literal["full", "merged", "lora"]
) -> dict[str, np.ndarray]:
    """HF-named host tensors: base weights, base weights with LoRA merged in, or adapters only.

    Stacked block weights are split back into one tensor per layer."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        is_lora = "lora" in path
        if is_lora != (what == "lora"):
            continue
        array = _host(var[...])
        if what == "merged" and path[-1] == "kernel":
            proj = _get(model, path[:-1])
            if proj.lora is not None:  # (L x) I x R @ (L x) R x O, batched over layers
                a, b = _host(proj.lora.lora_a[...]), _host(proj.lora.lora_b[...])
                delta = np.matmul(a, b) * proj.lora_scale
                array = (array.astype(np.float32) + delta).astype(array.dtype)
        layers = enumerate(array) if is_stacked(path) else [(None, array)]
        for layer, tensor in layers:
            key, transposed = hf_key(path, layer)
            out[key] = tensor.T if transposed else tensor
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _get(model: nnx.Module, path: Path) -> nnx.Module:
    for p in path:
        model = getattr(model, p)
    return model


def save_safetensors(
    model: Decoder, path: str, what: Literal["full", "merged", "lora"] = "merged"
) -> None:
    """Write ``model.safetensors`` + ``config.json`` (or ``adapter_model.safetensors`` +
    ``adapter_config.json`` in PEFT's naming for ``what="lora"``) into directory ``path``.

    Both files are serialised first, then each is written atomically (``results.write_bytes``:
    temporary file, fsync, rename), weights before config: a failure leaves no partial file."""
    from safetensors.numpy import save

    tensors = save(export_tensors(model, what))
    if what == "lora":
        names, meta = ("adapter_model.safetensors", "adapter_config.json"), _lora_meta(model)
    else:
        names, meta = ("model.safetensors", "config.json"), model.cfg.to_hf()
    results.write_bytes(os.path.join(path, names[0]), tensors)
    results.write_json(os.path.join(path, names[1]), meta)


def _lora_meta(model: Decoder) -> dict:
    targets, rank, alpha = set(), 0, 0.0
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        targets.add(_HF[str(path[-3])])
        if path[-1] == "lora_a":
            rank = var.shape[-1]
            alpha = _get(model, path[:-2]).lora_scale * rank
    if not targets:
        raise ValueError("the model has no LoRA adapters to export")
    return dict(peft_type="LORA", r=rank, lora_alpha=alpha, target_modules=sorted(targets))


def merge_lora(model):
    """Fold every adapter into its kernel and drop it, in place: the model then has the base
    model's structure, so the evaluation programs compiled for the base are reused."""
    for proj in [p for _, p in nnx.iter_graph(model) if isinstance(p, Proj) and p.lora is not None]:
        a, b = proj.lora.lora_a[...], proj.lora.lora_b[...]  # (L x) I x R, (L x) R x O
        delta = jnp.matmul(a, b) * proj.lora_scale
        proj.kernel[...] = (proj.kernel[...].astype(jnp.float32) + delta).astype(proj.kernel.dtype)
        proj.lora, proj.lora_scale = None, 0.0
    return model
