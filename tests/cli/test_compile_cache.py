"""The command line keeps compiled programs across runs (JAX's persistent compilation cache):
a second run loads what the first compiled and gives the same numbers; ``off`` keeps nothing."""

import os
import subprocess
import sys

from sublim_jax.cli import main as cli
from sublim_jax.io import results


def test_a_warm_compilation_cache_gives_the_same_run(tmp_path, mnist_dir):
    cache = tmp_path / "xla"
    env = dict(os.environ, SUBLIM_JAX_CACHE=str(cache), TQDM_DISABLE="1")
    argv = [sys.executable, "-m", "sublim_jax.cli", "mnist", "--preset", "smoke", "--seeds", "2"]
    argv += ["--epochs-teacher", "1", "--epochs-student", "1", "--data-dir", mnist_dir]
    kept = set()
    for name in ("cold", "warm"):
        done = subprocess.run([*argv, "--out", str(tmp_path / name)], env=env, capture_output=True)
        assert done.returncode == 0, done.stderr[-2000:]
        if name == "cold":
            kept = set(os.listdir(cache))
            assert any("epoch" in entry for entry in kept), kept  # the slow programs are kept
    assert set(os.listdir(cache)) == kept  # the warm run found every one of them
    cold, warm = (results.read_json(tmp_path / n / "results.json") for n in ("cold", "warm"))
    assert warm["conditions"] == cold["conditions"]


def test_the_cache_can_be_turned_off(monkeypatch):
    for value in ("off", "0", ""):
        monkeypatch.setenv(cli.CACHE_ENV, value)
        assert cli.enable_compilation_cache() is None
