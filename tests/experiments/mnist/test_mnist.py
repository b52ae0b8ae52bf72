"""The MNIST transfer experiment: pure functions, the seed loop, sharding, and the CLI end to end.

Tiny configs (hidden 16–32, a few hundred examples) keep the file near a minute on a shared
2-core CPU; the smoke preset runs through ``sublim_jax.cli.main.main`` on the real MNIST files.
"""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sublim_jax.cli import main as cli
from sublim_jax.core import mlp
from sublim_jax.experiments.mnist import config, report
from sublim_jax.experiments.mnist import run as transfer_run
from sublim_jax.experiments.mnist import steps as transfer
from sublim_jax.experiments.mnist.config import TransferConfig
from sublim_jax.experiments.mnist.steps import Batch
from sublim_jax.io import data

F32 = jnp.float32
RTOL = 1e-5  # float32 programs that differ only in batching (vmap vs loop, chunks, devices)
TINY = TransferConfig(
    seeds=3, epochs_teacher=2, epochs_student=2, batch_size=128, hidden=16,
    n_train=600, n_test=300, n_noise=300, chunk=3, lr=1e-3,
)  # fmt: skip
CONTRACT = set(config.CONDITIONS)


@pytest.fixture(scope="module")
def fake():
    """Random images and labels in MNIST's layout (no file reads)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (600, 784)).astype(np.float32)
    y = rng.integers(0, 10, 600).astype(np.int32)
    return x, y, x[:300], y[:300]


def test_vmap_equals_loop_for_one_seed(fake):
    x, y = jnp.asarray(fake[0]), jnp.asarray(fake[1])
    _, train_T = transfer.make_train_teacher(TINY)
    _, train_S = transfer.make_distill(TINY)
    init_k, data_k, noise_k = (jax.random.split(jax.random.key(i), 2) for i in range(3))
    state_v, loss_v = jax.jit(jax.vmap(train_T, in_axes=(0, 0, None, None)))(init_k, data_k, x, y)
    state_1, loss_1 = jax.jit(train_T)(init_k[0], data_k[0], x, y)
    np.testing.assert_allclose(loss_v[0], loss_1, rtol=RTOL)
    for a, b in zip(jax.tree.leaves(state_v.params), jax.tree.leaves(state_1.params), strict=True):
        np.testing.assert_allclose(a[0], b, rtol=RTOL, atol=1e-6)

    u = jax.vmap(lambda k: transfer.make_noise(TINY, key=k))(noise_k)
    y_lg = jax.vmap(lambda p, u: transfer.teacher_logits(TINY, p, u))(state_v.params, u)
    args = (init_k, init_k[::-1], data_k, u, y_lg)
    _, loss_Sv = jax.jit(jax.vmap(train_S))(*args)
    _, loss_S1 = jax.jit(train_S)(*(a[0] for a in args))
    assert loss_Sv.shape == (2, TINY.epochs_student, 3, 4)  # 300 noise images, batch 128
    np.testing.assert_allclose(loss_Sv[0], loss_S1, rtol=RTOL)


def test_partial_last_batch_is_a_mean_over_real_examples(fake):
    cfg = dataclasses.replace(TINY, batch_size=256)
    idx_TxB, w_TxB = transfer.epoch_batches(cfg, 0, 600, key=jax.random.key(0))
    assert idx_TxB.shape == (3, 256) and float(w_TxB.sum()) == 600
    real = np.asarray(idx_TxB)[np.asarray(w_TxB) > 0]
    assert sorted(real.tolist()) == list(range(600))  # each example once per epoch
    params = mlp.init(key=jax.random.key(1), sizes=cfg.sizes, dtype=F32)
    x, y = jnp.asarray(fake[0]), jnp.asarray(fake[1])
    last, w = idx_TxB[-1], w_TxB[-1]
    padded = transfer.teacher_loss(params, Batch(x[last], y[last], w))
    n_real = int(w.sum())  # 88 real examples, then padding
    exact = transfer.teacher_loss(
        params, Batch(x[last[:n_real]], y[last[:n_real]], jnp.ones((n_real,), F32))
    )
    np.testing.assert_allclose(padded, exact, rtol=RTOL)


def test_noise_decodes_to_a_symmetric_grid_in_open_interval():
    u = jnp.asarray([0, 32767, 32768, 65535], jnp.uint16)
    v = np.asarray(transfer.decode_noise(u))
    assert v.dtype == np.float32 and -1 < v[0] < v[-1] < 1
    np.testing.assert_array_equal(v, -v[::-1])  # symmetric about 0: mean 0 like U(−1, 1)
    draws = transfer.make_noise(dataclasses.replace(TINY, n_noise=50), key=jax.random.key(3))
    assert draws.shape == (transfer.NOISE_BLOCK, 784)  # whole blocks; rows ≥ n_noise unused
    np.testing.assert_array_equal(draws, transfer.make_noise(TINY, key=jax.random.key(3)))


def test_aux_only_student_leaves_class_rows_of_last_layer_at_zero_gradient():
    params = mlp.init(key=jax.random.key(0), sizes=TINY.sizes, dtype=F32)
    teacher = mlp.init(key=jax.random.key(1), sizes=TINY.sizes, dtype=F32)
    x = jax.random.uniform(jax.random.key(2), (64, 784), F32, -1.0, 1.0)
    batch = Batch(x, mlp.apply(teacher, x), jnp.ones((64,), F32))
    aux, every = transfer.logit_subsets(TINY)[:2]
    g_aux = jax.grad(transfer.student_loss)(params, batch, logit_idx=aux, temperature=1.0)
    g_all = jax.grad(transfer.student_loss)(params, batch, logit_idx=every, temperature=1.0)
    assert np.all(np.asarray(g_aux[-1].w_DxH[:, :10]) == 0)
    assert np.all(np.asarray(g_aux[-1].b_H[:10]) == 0)
    assert np.abs(g_aux[-1].w_DxH[:, 10:]).min() > 0 and np.abs(g_aux[0].w_DxH).max() > 0
    assert np.abs(g_all[-1].w_DxH[:, :10]).max() > 0


def test_jitted_step_is_not_recompiled_on_second_call(fake):
    import optax

    traces = []

    def step(state, batch):
        traces.append(1)
        return transfer.train_step(state, batch, transfer.teacher_loss, optax.adam(TINY.lr))

    jstep = jax.jit(step)
    state = transfer.init_state(TINY, key=jax.random.key(0))
    batch = Batch(jnp.asarray(fake[0][:32]), jnp.asarray(fake[1][:32]), jnp.ones((32,), F32))
    state, loss0 = jstep(state, batch)
    state, loss1 = jstep(state, batch)
    assert len(traces) == 1 and float(loss1) < float(loss0)


def test_runs_are_deterministic_and_independent_of_chunking(fake):
    a = transfer_run.run(TINY, *fake)
    b = transfer_run.run(TINY, *fake)
    c = transfer_run.run(dataclasses.replace(TINY, chunk=2), *fake)  # 2 chunks of 2, one padded
    assert set(a["accuracy"]) == CONTRACT and c["seeds_per_chunk"] == 2
    for cond in CONTRACT:
        np.testing.assert_array_equal(a["accuracy"][cond], b["accuracy"][cond])
        np.testing.assert_allclose(c["accuracy"][cond], a["accuracy"][cond], atol=1 / 300 + 1e-6)
    for cond, loss_SxE in a["loss_per_epoch"].items():
        np.testing.assert_array_equal(loss_SxE, b["loss_per_epoch"][cond])
        np.testing.assert_allclose(c["loss_per_epoch"][cond], loss_SxE, rtol=1e-4)
    assert np.all(a["partner"] != np.arange(TINY.seeds))  # a derangement


def test_non_finite_loss_names_condition_seed_and_step():
    loss = np.ones((4, 5), np.float32)
    loss[2, 3] = np.nan
    with pytest.raises(transfer_run.NonFiniteLossError, match=r"student_x, seed 12, step 13\b"):
        transfer_run.check_finite(loss, "student_x", 10, 3, 10)
    transfer_run.check_finite(loss, "teacher", 0, 2, 0)  # the bad seed is padding: ignored


def test_plan_pads_chunks_to_the_device_count():
    cfg = dataclasses.replace(TINY, seeds=10, chunk=4)
    assert transfer_run.plan(cfg, 1) == (4, 3)  # 3 chunks of 4 seeds (2 padding)
    assert transfer_run.plan(cfg, 8) == (8, 3)
    auto = dataclasses.replace(cfg, chunk=0)
    assert transfer_run.plan(auto, 4, "gpu") == (12, 1)  # all seeds at once, padded to 12
    assert transfer_run.plan(auto, 1, "cpu") == (transfer_run.CPU_CHUNK, 2)


SHARD_SCRIPT = """
import json, sys, numpy as np, jax
jax.config.update("jax_enable_x64", True)
from sublim_jax.experiments.mnist import run as transfer_run
from sublim_jax.experiments.mnist.config import TransferConfig
cfg = TransferConfig(**json.loads(sys.argv[1]))
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (600, 784)).astype(np.float32)
y = rng.integers(0, 10, 600).astype(np.int32)
r = transfer_run.run(cfg, x, y, x[:300], y[:300])
print(json.dumps({"devices": r["devices"], "per": r["seeds_per_chunk"],
                  "acc": {k: v.tolist() for k, v in r["accuracy"].items()},
                  "loss": {k: v.tolist() for k, v in r["loss_per_epoch"].items()}}))
"""


def _run_devices(n: int, cfg: TransferConfig) -> dict:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"}
    env["JAX_PLATFORMS"] = "cpu"
    cfg_json = json.dumps(dataclasses.asdict(cfg))
    out = subprocess.run(
        [sys.executable, "-c", SHARD_SCRIPT, cfg_json],
        env=env, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_seed_axis_on_four_devices_equals_one_device():
    cfg = dataclasses.replace(TINY, seeds=6, chunk=3)  # 2 chunks, padded to 4 seeds each on 4
    four, one = _run_devices(4, cfg), _run_devices(1, cfg)
    assert (four["devices"], four["per"]) == (4, 4) and (one["devices"], one["per"]) == (1, 3)
    for cond in CONTRACT:
        np.testing.assert_allclose(four["acc"][cond], one["acc"][cond], atol=1 / 300 + 1e-6)
    for cond, loss in one["loss"].items():
        np.testing.assert_allclose(four["loss"][cond], loss, rtol=1e-4)


def test_teacher_learns_mnist_and_reference_is_chance(mnist_images):
    cfg = dataclasses.replace(TINY, seeds=2, epochs_student=0, hidden=32, n_train=4096)
    acc = transfer_run.run(cfg, *mnist_images)["accuracy"]
    assert np.all(acc["teacher"] > 0.7), acc["teacher"]
    assert np.all(acc["reference"] < 0.3), acc["reference"]


@pytest.fixture(scope="module")
def mnist_images(mnist_dir):
    ds, x_train, x_test = data.load_flat("mnist", mnist_dir)
    return x_train, ds.y_train, x_test, ds.y_test


def _results(path: Path) -> dict:
    res = json.loads((path / "results.json").read_text())
    res.pop("wall_seconds")  # timing: the one field allowed to differ between identical runs
    return res


def test_smoke_preset_end_to_end_resume_and_determinism(tmp_path, mnist_dir, monkeypatch, capsys):
    argv = ["mnist", "--preset", "smoke", "--data-dir", mnist_dir, "--out"]
    assert cli.main([*argv, str(tmp_path / "a")]) == 0
    out = tmp_path / "a"
    for name in ("config.json", "results.json", "metrics.jsonl", "transfer.pdf", "transfer.png"):
        assert (out / name).stat().st_size > 0, name
    raw = json.loads((out / "results.json").read_text())
    seeds = TransferConfig.smoke().seeds
    assert set(raw["conditions"]) == CONTRACT and raw["seeds"] == seeds
    assert {"wall_seconds", "versions"} <= set(raw) and raw["versions"]["jax"] == jax.__version__
    for cond, r in raw["conditions"].items():
        assert len(r["accuracy"]) == seeds and r["ci95"][0] <= r["mean"] <= r["ci95"][1], cond
        assert r["mean"] == pytest.approx(np.mean(r["accuracy"]))
    assert raw["conditions"]["teacher"]["mean"] > 0.5
    assert raw["preset"] == "smoke" and "--hidden" in raw["reduced"]  # not set beside the paper
    assert "paper" not in raw and "~0.53" not in report.transfer_table(raw)

    assert cli.main([*argv, str(tmp_path / "b")]) == 0
    assert _results(out) == _results(tmp_path / "b")

    calls = []
    monkeypatch.setattr(transfer_run, "check_finite", lambda *a: calls.append(a))
    assert cli.main([*argv, str(out), "--resume"]) == 0
    assert calls == [] and _results(out) == _results(tmp_path / "b")  # every phase reused
    assert cli.main([*argv, str(out), "--resume", "--seeds", "4"]) == 2
    assert "different config (fields seeds)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags",
    [["--bogus", "1"], ["--seeds", "1"], ["--lr", "abc"], ["--preset", "huge"], ["--chunk", "-1"]],
)
def test_bad_flags_exit_2_and_write_nothing(tmp_path, flags, capsys):
    out = tmp_path / "run"
    try:
        code = cli.main(["mnist", "--out", str(out), "--data-dir", str(tmp_path), *flags])
    except SystemExit as stop:
        code = stop.code
    assert code == 2 and not out.exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_non_finite_loss_stops_the_cli_with_condition_seed_step(tmp_path, mnist_dir, capsys):
    argv = ["mnist", "--preset", "smoke", "--lr", "1e30", "--data-dir", mnist_dir]
    assert cli.main([*argv, "--out", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert re.search(r"non-finite loss .* in condition teacher, seed \d+, step \d+", err), err
    assert not (tmp_path / "results.json").exists()
