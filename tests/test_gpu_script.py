"""``benchmarks/gpu.sh`` runs every part at toy sizes on a CPU (``DRY_RUN=1``), so that the one
call a lent GPU allows is not spent on a broken script. The PyTorch side runs where
``SUBLIM_TORCH_PYTHON`` names an interpreter with torch, transformers and peft (else the script
times ours alone and says so, and this test checks that)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("mnist_speed", "llm_speed_smollm2_fp32", "llm_speed_smollm2_bf16",
         "llm_speed_7b_bf16", "llm_decode_7b", "sweep_init_distance")  # fmt: skip


def _has_torch(python: str) -> bool:
    check = [python, "-c", "import torch, transformers, peft"]
    return subprocess.run(check, capture_output=True).returncode == 0


def test_gpu_script_dry_run_on_cpu(tmp_path, mnist_dir):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    (data / "mnist").symlink_to(mnist_dir)
    torch_python = os.environ.get("SUBLIM_TORCH_PYTHON", sys.executable)
    env = dict(os.environ, DRY_RUN="1", DATA=str(data), OUT=str(out), PYTHON=sys.executable)
    env |= dict(TORCH_PYTHON=torch_python, SUBLIM_JAX_CACHE="off")
    done = subprocess.run(
        ["bash", "benchmarks/gpu.sh"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    log = (out / "gpu.log").read_text()
    assert done.returncode == 0, log[-3000:]
    for part in PARTS:
        assert f"== {part}: rc=0 " in log, part
    torch = _has_torch(torch_python)
    assert ("torch side: skipped" in log) is not torch

    mnist = json.loads((out / "mnist_speed_gpu.json").read_text())
    assert mnist["preset"] == "smoke" and mnist["seeds"] == 2
    assert set(mnist["phases_s"]) == {"startup_data_and_files", "compile", "train_and_evaluate"}
    assert mnist["accuracy_same_in_every_run"] and mnist["end_to_end_wall_s_at_seeds"] > 0
    assert ("torch_reference_over_ours" in mnist) is torch
    for tag, dtype in (("smollm2_fp32", "float32"), ("smollm2_bf16", "bfloat16"),
                       ("7b_bf16", "bfloat16")):  # fmt: skip
        llm = json.loads((out / f"llm_speed_gpu_{tag}.json").read_text())
        assert llm["dtype"] == dtype and llm["shape"] == "tiny"
        for part in ("gen64", "gen256", "lora"):
            assert llm[part]["ours_tok_s"] > 0
            assert ("speedup" in llm[part]) is torch, (tag, part)
    decode = json.loads((out / "llm_decode_7b.json").read_text())
    assert [d["batch"] for d in decode["decode"]] == [1, 2] and decode["lora_step_s"] > 0
    assert (out / "sweep_init_distance.tgz").stat().st_size > 0
