"""Atomic writes: no half-written results file after a crash."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_jax.io import results


def test_write_json_roundtrip(tmp_path: Path):
    obj = {"a": np.arange(3), "b": jnp.float32(1.5), "c": (1, 2), "d": np.bool_(True)}
    results.write_json(tmp_path / "r.json", obj)
    assert results.read_json(tmp_path / "r.json") == {
        "a": [0, 1, 2],
        "b": 1.5,
        "c": [1, 2],
        "d": True,
    }


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch):
    path = tmp_path / "r.json"
    results.write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        results.write_json(path, {"bad": object()})

    def crash(*args):
        raise OSError("disk full at the rename")

    monkeypatch.setattr(results.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        results.write_json(path, {"new": 2})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_jsonl(tmp_path: Path):
    results.write_jsonl(tmp_path / "m.jsonl", [{"step": 0, "loss": np.float32(2.0)}, {"step": 1}])
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"step": 0, "loss": 2.0}, {"step": 1}]


def test_versions_name_the_stack():
    v = results.versions()
    assert v["jax"] and v["numpy"]
    assert isinstance(v["backend"], str) and v["backend"]
    assert isinstance(v["device_kind"], str) and v["device_kind"]
    assert v["backend"] == jax.default_backend()
    assert isinstance(v["cpu"], str) and v["cpu"] and v["cpu_count"] == os.cpu_count()


def test_version_from_a_source_checkout_matches_the_installed_one():
    # the GPU machine runs from source (PYTHONPATH=.) with no package metadata to read; -S keeps
    # site-packages (and so the installed metadata) out of the child's reach
    import subprocess
    import sys
    from importlib import metadata

    import sublim_jax

    installed = metadata.version("sublim-jax")
    assert results.versions()["sublim-jax"] == installed
    out = subprocess.run(
        [sys.executable, "-S", "-c", "import sublim_jax; print(sublim_jax.__version__)"],
        cwd=Path(sublim_jax.__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == installed
