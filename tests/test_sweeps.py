"""The sweeps: exact endpoints against the MNIST experiment, m = 1, one compilation per shape,
bad grids, and every sweep's smoke preset end to end through ``sublim_jax.cli.main``.

All runs share one small config (the sweep smoke preset at the paper's lr 3e-4) so that the
experiment's and the sweeps' compiled programs are reused across tests.
"""

import dataclasses
import json

import jax
import numpy as np
import pytest

from sublim_jax import cli, data, sweep_run, sweeps, transfer_run
from sublim_jax.sweeps import SweepConfig

CFG = dataclasses.replace(SweepConfig.smoke(), lr=3e-4)
CFG_FLAGS = ["--preset", "smoke", "--lr", "3e-4"]
BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    ds = data.load_mnist(mnist_dir)
    flat = lambda x: data.normalize(x).reshape(x.shape[0], -1)  # noqa: E731
    return flat(ds.x_train[: CFG.n_train]), ds.y_train, flat(ds.x_test[: CFG.n_test]), ds.y_test


@pytest.fixture(scope="module")
def experiment(mnist) -> dict:
    return transfer_run.run(CFG, *mnist)


def _sweep(name: str, grid: str, mnist) -> dict:
    """Per point label: accuracies ``acc_Sx4`` and per-epoch losses ``loss_SxEx4``."""
    points = sweeps.parse_grid(name, grid)
    raw = sweep_run.run(name, points, CFG, *mnist)
    out = {"raw": raw}
    for i, p in enumerate(points):
        out[p.label] = np.concatenate([raw["acc_PxSx4"][i][:, None], raw["loss_PxSxEx4"][i]], 1)
    return out


def _students(experiment: dict) -> np.ndarray:
    """The experiment's students as ``[acc; loss per epoch]_Sx(1+E)x4``, like `_sweep`."""
    acc, loss = experiment["accuracy"], experiment["loss_per_epoch"]
    cols = [np.c_[acc[f"student_{s}"], loss[f"student_{s}"]] for s in transfer_run.STUDENTS]
    return np.stack(cols, axis=-1)


def test_sigma_zero_is_same_init_and_lambda_one_is_different_init(mnist, experiment):
    got, want = _sweep("init-distance", "0,0.3,lambda=1", mnist), _students(experiment)
    np.testing.assert_array_equal(got["σ=0"], want)
    np.testing.assert_array_equal(got["λ=1"][..., :2], want[..., 2:])  # same = diff init
    np.testing.assert_array_equal(got["raw"]["teacher"], experiment["accuracy"]["teacher"])


def test_layer_sharing_all_is_same_init_and_none_is_different_init(mnist, experiment):
    got, want = _sweep("layer-sharing", "all,none", mnist), _students(experiment)
    np.testing.assert_array_equal(got["all"], want)
    np.testing.assert_array_equal(got["none"][..., :2], want[..., 2:])


def test_adam_point_at_the_experiments_lr_equals_the_experiment(mnist, experiment):
    got = _sweep("optimizer", "adam@3e-4", mnist)
    np.testing.assert_array_equal(got["adam@0.0003"], _students(experiment))


def test_grid_points_of_one_shape_share_one_compilation(mnist):
    _sweep("init-distance", "0.1", mnist)  # warm: the compilations this config needs
    compiles = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE:
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        got = _sweep("init-distance", "0.02,1,lambda=0.5", mnist)
        _sweep("layer-sharing", "h1,h2+readout", mnist)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == []
    assert not np.array_equal(got["σ=0.02"], got["σ=1"])  # the points did differ


def _run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_list_prints_each_sweep_on_one_line(capsys):
    rc, out, _ = _run_cli(capsys, ["sweep", "--list"])
    lines = out.strip().splitlines()
    assert rc == 0 and [line.split()[0] for line in lines] == list(sweeps.SWEEPS)


@pytest.mark.parametrize(
    "argv",
    [
        ["init-distance", "--grid=-0.1"],
        ["init-distance", "--grid", "0,lambda=1.5"],
        ["layer-sharing", "--grid", "h1+h3"],
        ["aux-count", "--grid", f"1,{sweeps.M_MAX + 1}"],
        ["optimizer", "--grid", ""],
        ["optimizer", "--grid", "rmsprop@1e-3"],
        ["no-such-sweep"],
        [],
    ],
)
def test_bad_grid_is_a_one_line_error_and_writes_nothing(argv, mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"  # were a bad grid accepted, the smoke run would write here
    flags = [*CFG_FLAGS, "--data-dir", mnist_dir, "--out", str(out)]
    rc, _, err = _run_cli(capsys, ["sweep", *argv, *flags])
    assert rc == cli.EXIT_USAGE and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("name", list(sweeps.SWEEPS))
def test_smoke_preset_end_to_end_and_redrawn(name, mnist_dir, tmp_path, capsys):
    out = tmp_path / name
    argv = ["sweep", name, *CFG_FLAGS, "--data-dir", mnist_dir, "--out", str(out)]
    rc, stdout, _ = _run_cli(capsys, argv)
    assert rc == 0 and "| point |" in stdout
    res = json.loads((out / "results.json").read_text())
    grid = [p.label for p in sweeps.parse_grid(name, sweeps.SWEEPS[name].smoke_grid)]
    assert res["sweep"] == name and res["grid"] == grid
    for pt in res["points"]:
        for cond in pt["conditions"].values():
            assert cond["n"] == CFG.seeds and len(cond["accuracy"]) == CFG.seeds
            assert cond["ci95"][0] <= cond["mean"] <= cond["ci95"][1]
        cosines = pt["diagnostics"]["cosine_step0"]
        assert all(np.all(np.abs(c["values"]) <= 1) for c in cosines.values())
    if name == "aux-count":  # a softmax over one logit has no gradient: nothing moves
        m1 = res["points"][0]
        reference = np.asarray(res["fixed"]["reference"]["accuracy"])
        aux_same = m1["conditions"]["student_aux_same_init"]["accuracy"]
        aux_diff = m1["conditions"]["student_aux_diff_init"]["accuracy"]
        assert m1["label"] == "m=1" and aux_same == reference.tolist()
        assert aux_diff == reference[np.asarray(res["partner"])].tolist()
        assert m1["diagnostics"]["cosine_step0"]["update_aux_same_init"]["mean"] == 0
    before = (out / "sweep.png").stat().st_mtime_ns
    (out / "sweep.png").unlink()
    assert cli.main(["plot", str(out)]) == 0 and (out / "sweep.png").stat().st_mtime_ns > before
