"""Two processes x 2 CPU devices joined by ``jax.distributed`` (run by test_sharding.py).

``python multihost_check.py PROCESS_ID PORT``: each process loads only its own shards of the golden
Qwen2 checkpoint onto a global 2x2 ``(fsdp, tp)`` mesh, runs the forward pass, and process 0
prints one JSON line with the max error against transformers' logits.
"""

import json
import os
import sys

import jax

jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")

import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from sublim_jax.llm import params, sharding  # noqa: E402
from sublim_jax.llm.config import DecoderConfig  # noqa: E402
from sublim_jax.llm.modeling import forward  # noqa: E402

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "qwen2")


def main(process_id: int, port: int) -> None:
    sharding.initialize_distributed(
        coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id
    )
    rules, mesh = sharding.ShardingRules(), sharding.make_mesh(fsdp=2, tp=2)
    cfg = DecoderConfig.from_dir(GOLDEN)
    model = params.load_safetensors(GOLDEN, cfg, sharding_fn=sharding.sharding_fn(rules, mesh, cfg))
    data = np.load(os.path.join(GOLDEN, "expected.npz"))
    tokens, mask = (
        params.place(data[k], sharding.activation(rules, mesh, "tokens", data[k].shape))
        for k in ("tokens", "mask")
    )
    logits = multihost_utils.process_allgather(jax.jit(forward)(model, tokens, mask), tiled=True)
    err = float(np.max(np.abs(logits - data["logits"])[data["mask"]]))
    if process_id == 0:
        out = dict(processes=jax.process_count(), devices=jax.device_count(), err=err)
        sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
