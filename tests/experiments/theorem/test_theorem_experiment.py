"""`sublim-jax theorem` end to end: the results contract, the theorem's signs, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest

from sublim_jax.cli import main as cli
from sublim_jax.experiments.theorem import steps as single_step

KEYS = (
    "eps",
    "alignment_shared",
    "first_order_shared",
    "alignment_different",
    "cosine_shared",
    "cosine_different",
    "lt_decreased_shared",
    "lt_decreased_different",
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, mnist_dir) -> Path:
    out = tmp_path_factory.mktemp("theorem")
    argv = ["theorem", "--preset", "smoke", "--out", str(out), "--data-dir", mnist_dir]
    assert cli.main([*argv, "--seeds", "6", "--chunk", "3"]) == 0
    return out


def test_results_contract(smoke_run: Path):
    res = json.loads((smoke_run / "results.json").read_text())
    assert set(KEYS) <= set(res)
    n_eps, seeds = single_step.TheoremConfig.smoke().n_eps, 6
    assert all(len(res[k]) == n_eps for k in KEYS[:4])
    assert all(len(res[k]) == seeds for k in KEYS[4:])
    assert res["seeds"] == seeds and res["wall_seconds"] > 0 and res["versions"]["jax"]
    eps = np.asarray(res["eps"])
    assert eps[-1] / eps[0] >= 1e6  # at least six decades
    assert {p.name for p in smoke_run.iterdir()} >= {"config.json", "theorem.pdf", "theorem.png"}


def test_shared_init_alignment_is_first_order(smoke_run: Path):
    res = json.loads((smoke_run / "results.json").read_text())
    shared, first = np.asarray(res["alignment_shared"]), np.asarray(res["first_order_shared"])
    eps = np.asarray(res["eps"])
    assert np.all(shared >= 0)
    rel = np.abs(shared / first - 1)
    assert rel[0] < 1e-6  # matches εA as ε → 0 ...
    assert np.all(rel[eps <= 1e-4] < 1e-2)  # ... and the gap shrinks with ε
    assert np.all(res["lt_decreased_shared"])
    assert np.all(np.asarray(res["cosine_shared"]) > 0)


def test_different_init_keeps_an_order_one_term(smoke_run: Path):
    res = json.loads((smoke_run / "results.json").read_text())
    different = np.asarray(res["alignment_different"])
    np.testing.assert_allclose(different[:3], different[0], rtol=1e-4)
    assert abs(different[0]) > 1e3 * abs(res["alignment_shared"][0])
    partner = np.asarray(res["partner"])
    assert not np.any(partner == np.arange(partner.size))


def test_same_seed_same_numbers(smoke_run: Path, tmp_path: Path, mnist_dir: str):
    argv = ["theorem", "--preset", "smoke", "--out", str(tmp_path), "--data-dir", mnist_dir]
    assert cli.main([*argv, "--seeds", "6", "--chunk", "2"]) == 0
    a = json.loads((smoke_run / "results.json").read_text())
    b = json.loads((tmp_path / "results.json").read_text())
    for k in KEYS:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eps-min", "0"], "eps-min must be > 0"),
        (["--eps=-1e-3"], "eps must be > 0"),
        (["--seeds", "0"], "seeds must be ≥ 2"),
        (["--activation", "swish"], "activation must be"),
    ],
)
def test_invalid_values_fail_on_one_line_and_write_nothing(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert cli.main(["theorem", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def test_unknown_option_lists_valid_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["theorem", "--out", str(tmp_path / "o"), "--epz", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "unrecognized arguments: --epz 1" in err and "--eps-min" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["theorem", "--preset", "smoke", "--out", str(out), "--data-dir", str(tmp_path)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte" in err and "--data-dir" in err
    assert not out.exists()


def test_config_records_the_preset_and_results_their_kind(smoke_run: Path):
    assert json.loads((smoke_run / "config.json").read_text())["preset"] == "smoke"
    res = json.loads((smoke_run / "results.json").read_text())
    assert res["kind"] == "theorem" and res["preset"] == "smoke" and "--hidden" in res["reduced"]
