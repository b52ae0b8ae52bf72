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

HERE = os.path.dirname(os.path.abspath(__file__))
MESH_ATOL = 1e-5


def test_weight_specs_by_kind():
    rules = sharding.ShardingRules()
    assert rules.weight(("embed",)) == P("tp", "fsdp")
    assert rules.weight(("layers", 3, "attn", "k", "kernel")) == P("fsdp", "tp")
    assert rules.weight(("layers", 3, "attn", "o", "kernel")) == P("tp", "fsdp")
    assert rules.weight(("layers", 0, "mlp", "down", "kernel")) == P("tp", "fsdp")
    assert rules.weight(("layers", 0, "attn", "q", "lora", "lora_b")) == P()
    assert rules.weight(("lm_head", "kernel")) == P("fsdp", "tp")


def test_fit_drops_axes_that_do_not_divide():
    mesh = types.SimpleNamespace(shape=dict(data=2, fsdp=2, tp=2))
    assert sharding.fit(P(("data", "fsdp"), None, "tp", None), (4, 7, 3, 64), mesh) == P(
        ("data", "fsdp"), None, None, None
    )
    assert sharding.fit(P(("data", "fsdp")), (2, 5), mesh) == P(None, None)
    assert sharding.fit(P("tp", "fsdp"), (96, 32), mesh) == P("tp", "fsdp")


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


def test_mesh_parameters_carry_the_rules(four_devices):
    specs = four_devices["specs"]
    assert specs["embed"] == str(P("tp", "fsdp"))
    assert specs["layers/1/attn/q/kernel"] == str(P("fsdp", "tp"))
    assert specs["layers/1/attn/q/bias"] == str(P("tp"))
    assert specs["layers/0/mlp/down/kernel"] == str(P("tp", "fsdp"))
    assert specs["norm/scale"] in (str(P()), str(P(None)))


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
