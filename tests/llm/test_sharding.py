"""Specs per weight kind, and a 2x2 mesh of 4 fake CPU devices against one device (subprocess)."""

import json
import os
import socket
import subprocess
import sys
import types

import pytest
from jax.sharding import PartitionSpec as P

from sublim_jax.llm import sharding
from sublim_jax.llm.config import DecoderConfig

HERE = os.path.dirname(os.path.abspath(__file__))
MESH_ATOL = 1e-5


def test_weight_specs_by_kind():
    rules = sharding.ShardingRules()
    assert rules.weight(("embed",)) == P("tp", "fsdp")
    assert rules.weight(("layers", "attn", "k", "kernel")) == P(None, "fsdp", "tp")
    assert rules.weight(("layers", "attn", "o", "kernel")) == P(None, "tp", "fsdp")
    assert rules.weight(("layers", "mlp", "down", "kernel")) == P(None, "tp", "fsdp")
    assert rules.weight(("layers", "attn", "q", "lora", "lora_b")) == P(None)
    assert rules.weight(("lm_head", "kernel")) == P("fsdp", "tp")


def test_fit_drops_axes_that_do_not_divide():
    mesh = types.SimpleNamespace(shape=dict(data=2, fsdp=2, tp=2))
    assert sharding.fit(P(("data", "fsdp"), None, "tp", None), (4, 7, 3, 64), mesh) == P(
        ("data", "fsdp"), None, None, None
    )
    assert sharding.fit(P(("data", "fsdp")), (2, 5), mesh) == P(None, None)
    assert sharding.fit(P("tp", "fsdp"), (96, 32), mesh) == P("tp", "fsdp")


# 6 query heads and 3 KV heads of 8: every head axis (48 or 24 wide) is even, 3 heads are not.
HEADS = DecoderConfig.tiny(num_heads=6, num_kv_heads=3, head_dim=8)
L, D, NH, KH = 2, 32, 48, 24


@pytest.mark.parametrize(
    ("path", "shape", "want"),
    [
        (("layers", "attn", "q", "kernel"), (L, D, NH), P(None, "fsdp", "tp")),
        (("layers", "attn", "k", "kernel"), (L, D, KH), P(None, "fsdp", None)),
        (("layers", "attn", "v", "bias"), (L, KH), P(None, None)),
        (("layers", "attn", "o", "kernel"), (L, NH, D), P(None, "tp", "fsdp")),
        (("layers", "attn", "k", "lora", "lora_b"), (L, 4, KH), P(None, None, None)),
        (("layers", "mlp", "up", "kernel"), (L, D, 64), P(None, "fsdp", "tp")),
    ],
)
def test_tensor_parallel_never_splits_a_head(path, shape, want):
    mesh = types.SimpleNamespace(shape=dict(data=1, fsdp=2, tp=2))
    rules = sharding.ShardingRules(lora_b=P(None, "tp"))
    assert sharding.weight_spec(rules, mesh, path, shape, HEADS) == want


def test_a_sharded_head_axis_needs_the_config():
    rules, path = sharding.ShardingRules(), ("layers", "attn", "q", "kernel")
    fsdp_only = types.SimpleNamespace(shape=dict(data=1, fsdp=2, tp=1))
    assert sharding.weight_spec(rules, fsdp_only, path, (L, D, NH)) == P(None, "fsdp", "tp")
    with pytest.raises(ValueError, match=r"head axis .* pass the model's DecoderConfig"):
        sharding.weight_spec(
            rules, types.SimpleNamespace(shape=dict(data=1, fsdp=1, tp=2)), path, (L, D, NH)
        )


@pytest.fixture(scope="module")
def four_devices() -> dict:
    pytest.importorskip("safetensors")
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "mesh_check.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_mesh_matches_one_device(four_devices):
    assert four_devices["devices"] == 4
    assert four_devices["logits_err"] <= MESH_ATOL
    assert four_devices["tokens_equal"]
    assert four_devices["lora_err"] <= MESH_ATOL
    one, four = four_devices["loss"]
    assert abs(one - four) <= MESH_ATOL
    batch_on_data = (str(P(("data", "fsdp"), None, "tp")), str(P("fsdp", None, "tp")))
    assert four_devices["logits_sharding"] in batch_on_data
    assert four_devices["cache_on_slots"]  # new_cache honours the requested sharding


def test_mesh_parameters_carry_the_rules(four_devices):
    specs = four_devices["specs"]
    assert specs["embed"] == str(P("tp", "fsdp"))
    assert specs["layers/attn/q/kernel"] == str(P(None, "fsdp", "tp"))
    assert specs["layers/attn/q/bias"] == str(P(None, "tp"))
    assert specs["layers/mlp/down/kernel"] == str(P(None, "tp", "fsdp"))
    assert specs["norm/scale"] in (str(P()), str(P(None)))


def test_tensor_parallel_4_keeps_the_2_kv_heads_whole(four_devices):
    specs = four_devices["tp4_specs"]
    assert specs["layers/attn/q/kernel"] == str(P(None, "fsdp", "tp"))  # 4 query heads: split
    assert specs["layers/attn/k/kernel"] == str(P(None, "fsdp", None))  # 2 KV heads: whole
    assert specs["layers/attn/v/bias"] == str(P(None, None))
    assert four_devices["tp4_logits_err"] <= MESH_ATOL


def test_two_processes_share_one_mesh():
    """Multi-host as far as one machine allows: 2 processes x 2 CPU devices, gloo collectives."""
    pytest.importorskip("safetensors")
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    script = os.path.join(HERE, "multihost_check.py")
    procs = [
        subprocess.Popen(
            [sys.executable, script, str(i), str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    result = json.loads(outs[0][0].strip().splitlines()[-1])
    assert (result["processes"], result["devices"]) == (2, 4)
    assert result["err"] <= MESH_ATOL
