"""Every error a user can cause ends with one line on stderr and an exit status, and loses or
writes nothing: a finished run is never replaced without --resume or --force, an --out that is a
file or cannot be made, Ctrl-C, abbreviated flags, a results file of the wrong shape."""

import json
import os
import stat
from pathlib import Path

import pytest

from sublim_jax.cli import main as cli
from sublim_jax.experiments.theorem import command as theorem_command
from sublim_jax.io import flags, results

ROOT = Path(__file__).resolve().parents[2]
TINY = [  # a seconds-long mnist run: only the plumbing is under test here
    "--seeds", "2", "--epochs-teacher", "1", "--epochs-student", "1", "--batch-size", "256",
    "--hidden", "16", "--lr", "3e-3", "--n-train", "1024", "--n-test", "500", "--n-noise", "1024",
]  # fmt: skip


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    if folder.is_file():
        return {"": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _one_line_error(capsys, code: int, argv: list[str], expected: str) -> None:
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expected in err, err


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A folder holding a run: its config.json and results.json."""
    out = tmp_path / "run"
    results.write_json(out / "config.json", {"config": {"seeds": 3}})
    results.write_results(out, "mnist", {"seeds": 3})
    return out


@pytest.mark.parametrize(
    "command, extra, code, expected",
    [
        ("mnist", [], 2, "already holds a run (config.json): pass --resume"),
        ("theorem", [], 2, "already holds a run (config.json): pass --resume"),
        ("sweep init-distance", [], 2, "already holds a run"),
        ("llm toy", [], 2, "already holds a run"),
    ],
)
def test_a_finished_run_is_not_replaced(
    mnist_dir, finished_run, capsys, command, extra, code, expected
):
    before = _snapshot(finished_run)
    argv = [*command.split(), "--preset", "smoke", "--out", str(finished_run), *extra]
    if command != "llm toy":
        argv += ["--data-dir", mnist_dir]
    _one_line_error(capsys, code, argv, expected)
    assert _snapshot(finished_run) == before


def test_force_replaces_a_finished_run(mnist_dir, finished_run, capsys):
    stale = finished_run / "chunks" / "teachers-0.npz"
    results.write_bytes(stale, b"from a larger run")
    argv = ["mnist", "--out", str(finished_run), "--data-dir", mnist_dir, "--force", *TINY]
    assert cli.main(argv) == 0
    saved = results.read_json(finished_run / "config.json")
    assert saved["config"]["seeds"] == 2 and not stale.exists()  # nothing of the old run is left
    assert saved["preset"] == "default"


def test_an_empty_out_folder_needs_no_flag(mnist_dir, tmp_path):
    (tmp_path / "run").mkdir()
    argv = ["mnist", "--out", str(tmp_path / "run"), "--data-dir", mnist_dir, *TINY]
    assert cli.main(argv) == 0


@pytest.mark.parametrize(
    "make, code, expected",
    [
        (lambda p: p.write_text("not a folder"), 2, "is a file, not a folder"),
        (lambda p: (p.parent / "file").write_text("x"), 1, "Not a directory"),
    ],
)
def test_an_out_that_cannot_hold_a_run_is_one_line(mnist_dir, tmp_path, capsys, make, code,
                                                   expected):  # fmt: skip
    out = tmp_path / "out"
    make(out)
    target = out if out.exists() else tmp_path / "file" / "run"
    before = _snapshot(tmp_path)
    argv = ["mnist", "--out", str(target), "--data-dir", mnist_dir, *TINY]
    _one_line_error(capsys, code, argv, expected)
    assert _snapshot(tmp_path) == before


def test_ctrl_c_hint_names_resume_only_where_it_exists(mnist_dir, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(theorem_command, "run_seeds", interrupted)
    for argv, hint in (
        (["theorem", "--preset", "smoke"], False),
        (["mnist", *TINY], True),
    ):
        if argv[0] == "mnist":
            monkeypatch.setattr("sublim_jax.experiments.mnist.command.run_seeds", interrupted)
        out = tmp_path / argv[0]
        assert cli.main([*argv, "--out", str(out), "--data-dir", mnist_dir]) == 130
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("--resume" in err) == hint, err


def test_resume_and_force_exclude_each_other(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        cli.main(["mnist", "--resume", "--force", "--out", str(tmp_path / "x")])
    assert stop.value.code == flags.EXIT_USAGE
    assert "--force: not allowed with argument --resume" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_abbreviated_flags_are_refused(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        cli.main(["mnist", "--hid", "32", "--out", str(tmp_path / "x")])
    assert stop.value.code == flags.EXIT_USAGE
    assert "unrecognized arguments: --hid 32" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "body, expected",
    [
        ([1, 2, 3], "records no known kind"),
        ({"kind": "mnist", "conditions": {"teacher": {"mean": 0.9}}}, "not a complete mnist"),
        ({"kind": "theorem"}, "not a complete theorem"),
        ({"kind": "nonsense"}, "records no known kind ('nonsense'"),
    ],
)
def test_plot_of_a_malformed_results_file_is_one_line(tmp_path, capsys, body, expected):
    (tmp_path / "results.json").write_text(json.dumps(body))
    before = _snapshot(tmp_path)
    _one_line_error(capsys, flags.EXIT_USAGE, ["plot", str(tmp_path)], expected)
    assert _snapshot(tmp_path) == before


def test_plot_takes_the_results_file_itself(tmp_path):
    results_json = ROOT / "experiments" / "results" / "theorem" / "results.json"
    (tmp_path / "results.json").write_bytes(results_json.read_bytes())
    assert cli.main(["plot", str(tmp_path / "results.json")]) == 0
    assert (tmp_path / "theorem.png").is_file()


def test_results_files_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = results.write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's 0600


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["mnist", "--epochs-teacher", "-1"], "--epochs-teacher must be >= 0, got -1"),
        (["mnist", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["mnist", "--n-aux", "0"], "--n-aux must be >= 1, got 0"),
        (["mnist", "--hidden", "0"], "--hidden must be >= 1, got 0"),
        (["mnist", "--n-train", "70000"], "--n-train must be in 1..60000, got 70000"),
        (["mnist", "--lr", "nan"], "--lr must be a finite number, got nan"),
        (["sweep", "dose", "--temperature", "inf"], "--temperature must be a finite number"),
        (
            ["llm", "generate", "--candidates", "dolphin,eagle", "--temperature", "0"],
            "--temperature must be > 0, got 0.0",
        ),
        (["llm", "run", "--temperature", "nan"], "--temperature must be a finite number"),
        (["llm", "run", "--learning-rate", "-1"], "--learning-rate must be > 0, got -1.0"),
        (["llm", "finetune", "--lora-alpha", "0"], "--lora-alpha must be > 0, got 0.0"),
        (["llm", "run", "--clip-norm", "0"], "--clip-norm must be > 0, got 0.0"),
        (["llm", "run", "--weight-decay", "-0.1"], "--weight-decay must be >= 0, got -0.1"),
        (["llm", "run", "--warmup-steps", "-1"], "--warmup-steps must be >= 0, got -1"),
        (
            ["llm", "toy", "--hidden-size", "30"],
            "--hidden-size must be a multiple of 4 (four heads), got 30",
        ),
        (["llm", "toy", "--animal", "dragon"], "--animal must be one of owl"),
        (["llm", "toy", "--teacher-love", "2"], "--teacher-love must be in 0..1, got 2.0"),
        (["llm", "toy", "--student-lr", "nan"], "--student-lr must be a finite number"),
        (["llm", "toy", "--schedule", "cosine"], "--schedule must be one of linear, constant"),
        (["theorem", "--eps-min", "0"], "--eps-min must be > 0, got 0.0"),
        (["theorem", "--n-teacher", "70000"], "--n-teacher must be in 1..60000, got 70000"),
        (["theorem", "--alpha", "inf"], "--alpha must be a finite number"),
    ],
)
def test_every_numeric_field_is_checked_naming_flag_and_value(tmp_path, capsys, argv, expected):
    out = tmp_path / "out"
    _one_line_error(capsys, flags.EXIT_USAGE, [*argv, "--out", str(out)], expected)
    assert not out.exists()


def test_data_dir_that_is_a_file_is_named(tmp_path, capsys):
    (tmp_path / "mnist.tar").write_text("not a folder")
    argv = ["mnist", "--data-dir", str(tmp_path / "mnist.tar"), "--out", str(tmp_path / "o")]
    _one_line_error(capsys, flags.EXIT_DATA, argv, "mnist.tar is a file")
    assert not (tmp_path / "o").exists()


def test_another_known_dataset_is_recognised_by_its_digests(fashion_dir, tmp_path, capsys):
    argv = ["mnist", "--data-dir", fashion_dir, "--out", str(tmp_path / "o")]
    _one_line_error(capsys, flags.EXIT_DATA, argv, "pass --dataset fashion-mnist")
    assert not (tmp_path / "o").exists()
