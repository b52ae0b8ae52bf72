"""The sweeps: exact endpoints against the MNIST experiment, m = 1, one compilation per shape,
bad grids, and every sweep's smoke preset end to end through ``sublim_jax.cli.main.main``.

All runs share one small config (the sweep smoke preset at the paper's lr 3e-4) so that the
experiment's and the sweeps' compiled programs are reused across tests.
"""

import contextlib
import dataclasses
import json

import jax
import numpy as np
import optax
import pytest

from sublim_jax.cli import main as cli
from sublim_jax.experiments.mnist import run as transfer_run
from sublim_jax.experiments.mnist import steps as transfer
from sublim_jax.experiments.sweeps import grid as sweeps
from sublim_jax.experiments.sweeps import report, steps
from sublim_jax.experiments.sweeps import run as sweep_run
from sublim_jax.experiments.sweeps.config import SweepConfig
from sublim_jax.io import data

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


@contextlib.contextmanager
def _no_compilation():
    """Fail if XLA compiles anything inside the block (a warm program is reused)."""
    compiles = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE:
            compiles.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == [], f"{len(compiles)} compilations"


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
    with _no_compilation():
        got = _sweep("init-distance", "0.02,1,lambda=0.5", mnist)
        _sweep("layer-sharing", "h1,h2+readout", mnist)
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
        ["architecture", "--grid", "256x0"],
        ["architecture", "--grid", "256"],
        ["dose", "--grid=-5"],
        ["dose", "--grid", "100x2x3"],
        ["dose", "--grid", ","],
        ["teacher-strength", "--grid=-1"],
        ["teacher-strength", "--grid", "epochs=2"],
        ["alignment-over-training", "--grid", "sigma=-1"],
        ["no-such-sweep"],
        ["all", "--grid", "0"],  # a grid names one sweep's points
        [],
        ["loss", "--grid", "kl=0"],
        ["loss", "--grid", "kl=1,huber"],
        ["inputs", "--grid", "pink-noise"],
        ["inputs", "--grid", "mnist", "--n-noise", "60001"],
        ["defences", "--grid", "none,mix=1.5"],
        ["defences", "--grid", "none,weight-decay=-1"],
        ["defences", "--grid", "none,project=1"],
        ["defences", "--grid", "none,epochs=3"],  # more epochs than the config's 2
        ["defences", "--grid", "mix=0.1"],  # no baseline
        ["defences", "--grid", "none,l2=-1e-3"],
        ["defences", "--grid", "none,l2=inf"],
        ["defences", "--grid", "none,l2=nan"],
        ["defences", "--grid", "none,l2"],
        ["decay", "--grid", "none,mix=0.5"],  # only the two weight decays
        ["decay", "--grid", "l2=1e-3"],  # no baseline
        ["batch-size", "--grid", "0"],
        ["batch-size", "--grid=-64"],
        ["batch-size", "--grid", "128,4096"],  # above the smoke preset's 2048 noise images
        ["batch-size", "--grid", "128", "--n-noise", "100"],
        ["batch-size", "--grid", "128@steps=0"],
        ["batch-size", "--grid", "128@epochs=2"],
        ["batch-size", "--grid", "1.5"],
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
    assert res["sweep"] == name and res["grid"] == grid and res["kind"] == "sweep"
    assert json.loads((out / "config.json").read_text())["preset"] == "smoke"
    assert res["preset"] == "smoke" and "--hidden" in res["reduced"]
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
    if name in sweeps.DEFENCE_SWEEPS:  # each point against the grid's own `none`
        none = next(pt for pt in res["points"] if pt["label"] == "none")["defence"]
        assert none["effect_left"]["mean"] == 1 and none["all_cost"]["mean"] == 0
        assert all(set(pt["defence"]) == {"effect", "effect_left", "all_cost"}
                   for pt in res["points"])  # fmt: skip
        assert "| defence |" in stdout
    if name == "decay":  # the coupled L2 is applied: it costs the all-logits student accuracy
        l2 = next(pt for pt in res["points"] if pt["point"]["defence"] == "l2")["defence"]
        assert l2["all_cost"]["mean"] < 0
    if name == "batch-size":  # the students' steps and images; the teachers are the config's
        budget = [(pt["students"]["steps"], pt["students"]["images"]) for pt in res["points"]]
        assert budget == [(128, 4096), (32, 4096), (8, 4096), (32, 1024), (32, 16384)]
        assert res["teacher_groups"] == 1 and "| steps | images |" in stdout.replace(" ---:", "")
    if name == "teacher-strength":  # 0 epochs: the teachers are their untrained inits
        zero = res["points"][0]["teacher"]
        assert zero["steps"] == 0 and zero["teacher"] == res["fixed"]["reference"]
    figs = ["sweep.png"] + (["alignment.png"] if name == "alignment-over-training" else [])
    before = [(out / f).stat().st_mtime_ns for f in figs]
    for f in figs:
        (out / f).unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert all((out / f).stat().st_mtime_ns > t for f, t in zip(figs, before, strict=True))


def test_kl_at_t1_uniform_inputs_and_no_defence_equal_the_experiment(mnist, experiment):
    want = _students(experiment)
    got = _sweep("loss", "kl=1,kl=2", mnist)
    np.testing.assert_array_equal(got["kl=1"], want)
    assert not np.array_equal(got["kl=2"], want)
    np.testing.assert_array_equal(_sweep("inputs", "uniform", mnist)["uniform"], want)
    np.testing.assert_array_equal(_sweep("defences", "none", mnist)["none"], want)


ZERO_STRENGTH = "weight-decay=0,l2=0,init-noise=0,round=0,output-noise=0,mix=0,kl-init=0,epochs=2"
STRENGTH = (
    "weight-decay=1,l2=0.01,init-noise=0.3,round=1,output-noise=1,mix=0.5,kl-init=10,epochs=1"
)


def test_zero_strength_defences_equal_none_bit_for_bit_and_projection_is_orthogonal(mnist):
    got = _sweep("defences", f"none,{ZERO_STRENGTH},{STRENGTH},project", mnist)
    for label in ZERO_STRENGTH.split(","):
        np.testing.assert_array_equal(got[label], got["none"], err_msg=label)
    for label in STRENGTH.split(","):
        assert not np.array_equal(got[label], got["none"]), label
    cos_PxSx4 = got["raw"]["cos_PxSx4"]  # update_aux_same_init, ..., grad_aux_diff_init
    assert np.abs(cos_PxSx4[-1][:, [0, 2]]).max() < 1e-6  # project: the last point
    assert np.abs(cos_PxSx4[0][:, 0]).min() > 1e-3  # none's first update does move along Δθ_T


def test_defence_effects_are_ratios_to_the_grids_none_point():
    points = sweeps.parse_grid("defences", "none,mix=0.5")
    aux_same = np.array([[0.5, 0.6, 0.7], [0.3, 0.35, 0.4]])  # P×S
    all_same = np.array([[0.9, 0.9, 0.9], [0.8, 0.85, 0.9]])
    chance = np.full((2, 3), 0.1)
    acc = np.stack([aux_same, all_same, chance, chance], axis=-1)  # STUDENTS order
    raw = {"acc_PxSx4": acc, "loss_PxSxEx4": np.zeros((2, 3, 1, 4)),
           "cos_PxSx4": np.zeros((2, 3, 4)), "reference": chance[0], "teacher": chance[0],
           "partner": np.array([1, 2, 0]), "teacher_n_aux": 3, "curves_P": [None, None],
           "reference_PxS": chance, "teacher_PxS": chance, "teacher_steps_P": [10, 10],
           "teacher_groups": 1}  # fmt: skip
    res = report.summarise("defences", points, raw)
    none, mix = (pt["defence"] for pt in res["points"])
    assert none["effect_left"]["mean"] == 1.0 and none["effect_left"]["ci95"] == [1.0, 1.0]
    np.testing.assert_allclose(mix["effect_left"]["mean"], 0.5, rtol=1e-12)
    np.testing.assert_allclose(mix["effect_left"]["ci95"], [0.5, 0.5], rtol=1e-12)
    np.testing.assert_allclose(mix["all_cost"]["values"], [-0.1, -0.05, 0.0], atol=1e-12)
    assert "| mix=0.5 | +0.250 | 0.50 [0.50, 0.50] | -0.050 |" in report.table(res)


def test_variant_points_of_one_shape_share_one_compilation(mnist):
    grid = "none,init-noise={},round={},output-noise={},mix={},epochs=1,weight-decay={},kl-init={}"
    grid += ",l2={}"
    _sweep("defences", grid.format(0.2, 0.5, 0.3, 0.3, 0.5, 3, 0.01), mnist)  # warm
    with _no_compilation():
        got = _sweep("defences", grid.format(0.1, 2, 1, 0.6, 2, 5, 0.1), mnist)
    assert not np.array_equal(got["mix=0.6"], got["none"])
    assert not np.array_equal(got["l2=0.1"], got["none"])


def test_inputs_from_another_dataset(mnist_dir, fashion_dir, tmp_path, capsys):
    out = tmp_path / "inputs"
    argv = ["sweep", "inputs", "--grid", "mnist,fashion-mnist", *CFG_FLAGS, "--data-dir",
            mnist_dir, "--inputs-data-dir", fashion_dir, "--out", str(out)]  # fmt: skip
    rc, stdout, _ = _run_cli(capsys, argv)
    assert rc == 0 and "| fashion-mnist |" in stdout
    res = json.loads((out / "results.json").read_text())
    fashion = data.load("fashion-mnist", fashion_dir).identity()
    assert res["inputs_data"] == {
        "fashion-mnist": fashion,
        "mnist": data.load_mnist(mnist_dir).identity(),
    }
    a, b = (pt["conditions"]["student_all_same_init"]["accuracy"] for pt in res["points"])
    assert a != b


def test_architecture_points_equal_the_experiment_at_their_config(mnist, experiment):
    got = _sweep("architecture", f"{CFG.hidden}x2,16x1", mnist)
    np.testing.assert_array_equal(got[f"{CFG.hidden}x2"], _students(experiment))
    other = transfer_run.run(dataclasses.replace(CFG, hidden=16, depth=1), *mnist)
    np.testing.assert_array_equal(got["16x1"], _students(other))  # its own teachers
    want = [experiment["accuracy"]["teacher"], other["accuracy"]["teacher"]]
    np.testing.assert_array_equal(got["raw"]["teacher_PxS"], want)
    assert got["raw"]["teacher_groups"] == 2


def test_dose_at_the_full_noise_equals_the_experiment(mnist, experiment):
    n = CFG.n_noise
    got, want = _sweep("dose", f"256,{n}x1,{n}", mnist), _students(experiment)
    np.testing.assert_array_equal(got[f"n={n}"], want)
    np.testing.assert_array_equal(got[f"n={n}×1"][:, 1], want[:, 1])  # epoch 1 is epoch 1
    assert got[f"n={n}×1"].shape[1] == 2  # accuracy and one epoch's loss
    assert not np.array_equal(got["n=256"][:, 1], want[:, 1])


def test_teacher_strength_at_the_configs_epochs_is_the_experiment_and_at_0_untrained(
    mnist, experiment
):
    got = _sweep("teacher-strength", f"0,steps=3,{CFG.epochs_teacher}", mnist)
    raw = got["raw"]
    np.testing.assert_array_equal(got[f"{CFG.epochs_teacher} ep"], _students(experiment))
    np.testing.assert_array_equal(raw["teacher_PxS"][2], experiment["accuracy"]["teacher"])
    reference = experiment["accuracy"]["reference"]
    np.testing.assert_array_equal(raw["teacher_PxS"][0], reference)  # 0 steps: untrained
    assert raw["teacher_steps_P"] == [0, 3, CFG.epochs_teacher * steps.steps_per_epoch(CFG)]
    assert np.all(raw["cos_PxSx4"][0] == 0)  # Δθ_T = 0
    # the same-init students imitate their own init: only rounding moves them (Adam rescales it)
    np.testing.assert_allclose(got["0 ep"][:, 0, 0], reference, atol=0.02)
    assert np.all(raw["teacher_PxS"][1] != reference)  # 3 steps do train the teacher


def test_teacher_steps_program_takes_exactly_n_steps(mnist):
    cfg = dataclasses.replace(CFG, n_train=1024, batch_size=256)
    x = jax.numpy.asarray(mnist[0][: cfg.n_train], jax.numpy.float32)
    y = jax.numpy.asarray(mnist[1][: cfg.n_train], jax.numpy.int32)
    state0 = transfer.init_state(cfg, key=jax.random.key(1))
    key = jax.random.key(2)
    step_fn = jax.jit(steps.make_teacher_steps(cfg))
    epoch, _ = transfer.make_train_teacher(cfg)
    idx_TxB, w_TxB = transfer.epoch_batches(cfg, 1, cfg.n_train, key=key)
    tx = optax.adam(cfg.lr)
    state = state0
    for t in range(3):
        batch = transfer.Batch(x[idx_TxB[t]], y[idx_TxB[t]], w_TxB[t])
        state, _ = transfer.train_step(state, batch, transfer.teacher_loss, tx)
        got, _ = step_fn(state0, key, 1, x, y, t + 1)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    full, _ = jax.jit(epoch)(state0, key, 1, x, y)
    got, _ = step_fn(state0, key, 1, x, y, idx_TxB.shape[0])
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(full), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_alignment_at_step_1_is_the_step_0_cosine_and_positive_for_same_init(mnist, experiment):
    got = _sweep("alignment-over-training", "0,lambda=1", mnist)
    raw = got["raw"]
    np.testing.assert_array_equal(got["σ=0"], _students(experiment))  # recording changes nothing
    cos_SxKx2x4xL = raw["curves_P"][0]["cos_SxKx2x4xL"]
    K = CFG.epochs_student * -(-CFG.n_noise // CFG.batch_size)
    assert cos_SxKx2x4xL.shape == (CFG.seeds, K, 2, 4, len(sweeps.LAYERS) + 1)
    assert raw["curves_P"][0]["lt_SxKx4"].shape == (CFG.seeds, K + 1, 4)
    for q in range(2):  # displacement after step 1 = step 1 = the first update
        for k, c in ((0, 0), (2, 2)):  # aux same init, aux diff init
            np.testing.assert_allclose(
                cos_SxKx2x4xL[:, 0, q, k, -1], raw["cos_PxSx4"][0][:, c], rtol=1e-4
            )
    assert np.all(cos_SxKx2x4xL[:, 0, 0, 0, -1] > 0)
    assert np.all(cos_SxKx2x4xL[:, :, 0, 0, -1].mean(1) > cos_SxKx2x4xL[:, :, 0, 2, -1].mean(1))
    lam1 = raw["curves_P"][1]["cos_SxKx2x4xL"]
    np.testing.assert_array_equal(lam1[:, :, :, 0], lam1[:, :, :, 2])  # λ=1: same = diff init
    res = report.summarise(
        "alignment-over-training", sweeps.parse_grid("alignment-over-training", "0,lambda=1"), raw
    )
    curve = res["points"][0]["diagnostics"]["alignment"]["cos_displacement"]
    mean = curve["student_aux_same_init"]["all"]["mean"]
    np.testing.assert_allclose(mean, cos_SxKx2x4xL[:, :, 0, 0, -1].mean(0))


def test_layer_coefficients_broadcast_only_uniform_mixes():
    assert steps.layer_names(3) == sweeps.LAYERS
    assert steps.layer_names(5) == ("h1", "h2", "h3", "h4", "readout")
    sigma = sweeps.parse_init_distance("0.3")
    assert steps.layer_coefficients(sigma, 5) == ((1.0,) * 5, (0.3,) * 5)
    shared = sweeps.parse_layer_sharing("h1+readout")
    assert steps.layer_coefficients(shared, 3) == (shared.a_L, shared.b_L)
    with pytest.raises(ValueError, match="mixes 3 layers"):
        steps.layer_coefficients(shared, 4)


def test_teacher_strength_points_share_one_compilation(mnist):
    _sweep("teacher-strength", "steps=3", mnist)  # warm
    with _no_compilation():
        got = _sweep("teacher-strength", "steps=5,steps=40", mnist)
    assert not np.array_equal(got["raw"]["teacher_PxS"][0], got["raw"]["teacher_PxS"][1])


def test_bad_batch_is_named_in_its_one_line_error(mnist_dir, tmp_path, capsys):
    for grid, named in (("0", "'0'"), ("-64", "'-64'"), ("128,4096", "batch 4096")):
        out = tmp_path / "run"
        argv = ["sweep", "batch-size", f"--grid={grid}", *CFG_FLAGS, "--out", str(out)]
        rc, _, err = _run_cli(capsys, [*argv, "--data-dir", mnist_dir])
        assert rc == cli.EXIT_USAGE and named in err and len(err.strip().splitlines()) == 1
        assert not out.exists()


def test_defences_l2_and_weight_decay_smoke_through_the_cli(mnist_dir, tmp_path, capsys):
    out = tmp_path / "defences"
    argv = ["sweep", "defences", "--grid", "none,l2=0.01,weight-decay=0.01", *CFG_FLAGS,
            "--data-dir", mnist_dir, "--out", str(out)]  # fmt: skip
    rc, stdout, _ = _run_cli(capsys, argv)
    assert rc == 0 and "| l2=0.01 |" in stdout and "| weight-decay=0.01 |" in stdout
    res = json.loads((out / "results.json").read_text())
    none, l2, wd = res["points"]
    assert (l2["point"]["defence"], l2["point"]["strength"]) == ("l2", 0.01)
    assert all(set(pt["defence"]) == {"effect", "effect_left", "all_cost"} for pt in res["points"])
    assert none["defence"]["all_cost"]["mean"] == 0 and l2["defence"]["all_cost"]["mean"] != 0
    acc = lambda pt: pt["conditions"]["student_all_same_init"]["accuracy"]  # noqa: E731
    assert acc(l2) != acc(wd)  # coupled and decoupled decay are different optimisers


def test_batch_size_at_the_configs_batch_equals_the_experiment(mnist, experiment):
    B, n, T = CFG.batch_size, CFG.n_noise, steps.student_steps_per_epoch(CFG)
    K = CFG.epochs_student * T
    got = _sweep("batch-size", f"{B},{B}@steps={K},{B}@steps={K - 3},512", mnist)
    want = _students(experiment)
    np.testing.assert_array_equal(got[f"B={B}"], want)
    np.testing.assert_array_equal(got[f"B={B}, {K} steps"], want)  # whole epochs: the same
    cut = got[f"B={B}, {K - 3} steps"]  # epoch 0 whole, epoch 1 cut 3 steps short
    np.testing.assert_array_equal(cut[:, 1], want[:, 1])
    assert not np.array_equal(cut[:, 2], want[:, 2]) and not np.array_equal(got["B=512"], want)
    budget = [(K, 2 * n), (K, 2 * n), (K - 3, n + (T - 3) * B), (2 * n // 512, 2 * n)]
    assert got["raw"]["students_P"] == budget
    np.testing.assert_array_equal(got["raw"]["teacher"], experiment["accuracy"]["teacher"])


def test_cut_epoch_is_the_first_steps_of_the_epoch(mnist):
    cfg = dataclasses.replace(CFG, n_noise=512, batch_size=64)  # T = 8 steps
    k_t, k_s, k_d, k_n = jax.random.split(jax.random.key(3), 4)
    params_T = transfer.init_state(cfg, key=k_t).params
    u = transfer.make_noise(cfg, key=k_n)
    y = transfer.teacher_logits(cfg, params_T, u)
    states = transfer.init_students(cfg, same_key=k_t, diff_key=k_s)
    tx = optax.adam(cfg.lr)
    full, _ = transfer.make_distill(cfg, tx)
    want, loss_Tx4 = jax.jit(full)(states, k_d, 1, u, y)
    got, loss_8x4 = jax.jit(steps.make_cut_epoch(cfg, tx, 8))(states, k_d, 1, u, y)
    for a, b in zip(jax.tree.leaves((got, loss_8x4)), jax.tree.leaves((want, loss_Tx4)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    got, loss_3x4 = jax.jit(steps.make_cut_epoch(cfg, tx, 3))(states, k_d, 1, u, y)
    np.testing.assert_allclose(loss_3x4, loss_Tx4[:3], rtol=1e-6)  # the epoch's first batches
    idx_TxB, w_TxB = transfer.epoch_batches(cfg, 1, cfg.n_noise, key=k_d)
    batch = transfer.Batch(transfer.decode_noise(u[idx_TxB[3]]), y[idx_TxB[3]], w_TxB[3])
    loss_4 = [f(s.params, batch) for s, f in zip(got, steps.student_losses(cfg), strict=True)]
    np.testing.assert_allclose(loss_4, loss_Tx4[3], rtol=1e-5)  # stopped after exactly 3 steps
