"""Hugging Face safetensors checkpoints onto an ``nnx.eval_shape`` skeleton of ``Decoder``; export.

Loading never materialises the random init: the skeleton is abstract, each tensor is streamed from
its (possibly sharded) file, transposed into the einsum layout, checked against the skeleton's
shape, cast, and placed on its sharding. ``save_safetensors`` writes full, LoRA-merged, or
adapter-only (PEFT naming) files; it is the only function here that writes.
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


def hf_key(path: Path) -> tuple[str, bool]:
    """The HF tensor name of a state path, and whether the tensor is stored transposed."""
    if path in _TOP:
        return _TOP[path], False
    if path[0] == "lm_head":
        return "lm_head.weight", True
    _, layer, *mods, leaf = path
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
    """Fill an abstract state tensor by tensor from ``read(hf_key)`` (HF layout)."""
    leaves = []
    for path, var in nnx.to_flat_state(abstract):
        key, transposed = hf_key(path)
        array = read(key)
        array = array.T if transposed else array
        if array.shape != var.shape:
            raise ValueError(
                f"tensor {key!r} has shape {array.shape} (after transpose: {transposed}); "
                f"the model expects {var.shape} at {'/'.join(map(str, path))}"
            )
        sharding = None if sharding_fn is None else sharding_fn(path, var.shape)
        leaves.append((path, var.replace(place(np.asarray(array, var.dtype), sharding))))
    return nnx.from_flat_state(leaves)


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
    """HF-named host tensors: base weights, base weights with LoRA merged in, or adapters only."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model)):
        is_lora = "lora" in path
        if is_lora != (what == "lora"):
            continue
        key, transposed = hf_key(path)
        array = _host(var[...])
        if what == "merged" and path[-1] == "kernel":
            proj = _get(model, path[:-1])
            if proj.lora is not None:
                delta = (
                    _host(proj.lora.lora_a[...]) @ _host(proj.lora.lora_b[...]) * proj.lora_scale
                )
                array = (array.astype(np.float32) + delta).astype(array.dtype)
        out[key] = array.T if transposed else array
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _get(model: nnx.Module, path: Path) -> nnx.Module:
    for p in path:
        model = model[p] if isinstance(p, int) else getattr(model, p)
    return model


def save_safetensors(
    model: Decoder, path: str, what: Literal["full", "merged", "lora"] = "merged"
) -> None:
    """Write ``model.safetensors`` + ``config.json`` (or ``adapter_model.safetensors`` +
    ``adapter_config.json`` in PEFT's naming for ``what="lora"``) into directory ``path``."""
    from safetensors.numpy import save_file

    os.makedirs(path, exist_ok=True)
    tensors = export_tensors(model, what)
    if what == "lora":
        save_file(tensors, os.path.join(path, "adapter_model.safetensors"))
        meta = _lora_meta(model)
        with open(os.path.join(path, "adapter_config.json"), "w") as f:
            json.dump(meta, f, indent=2)
        return
    save_file(tensors, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(model.cfg.to_hf(), f, indent=2)


def _lora_meta(model: Decoder) -> dict:
    targets, rank, alpha = set(), 0, 0.0
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.LoRAParam)):
        targets.add(_HF[str(path[-3])])
        if path[-1] == "lora_a":
            rank = var.shape[1]
            alpha = _get(model, path[:-2]).lora_scale * rank
    if not targets:
        raise ValueError("the model has no LoRA adapters to export")
    return dict(peft_type="LORA", r=rank, lora_alpha=alpha, target_modules=sorted(targets))
