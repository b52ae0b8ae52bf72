"""Every error a user can cause ends with one line on stderr and an exit status, and loses or
writes nothing: a finished run is never replaced without --resume or --force, an --out that is a
file or cannot be made, Ctrl-C, abbreviated flags, a results file of the wrong shape."""

import dataclasses
import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sublim_jax.cli import main as cli
from sublim_jax.experiments.mnist import command as mnist_command
from sublim_jax.experiments.theorem import command as theorem_command
from sublim_jax.io import results

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
    return _finished(tmp_path)


def _finished(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    results.write_json(out / "config.json", {"config": {"seeds": 3}})
    results.write_results(out, "mnist", {"seeds": 3})
    return out


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


def _unwritable(errno_: int, text: str):
    """An --out folder that exists but takes no file (no permission, a read-only mount): every
    attempt to create a file there fails as the kernel would."""

    def prepare(tmp_path: Path, monkeypatch) -> None:
        (tmp_path / "out").mkdir()
        monkeypatch.setattr(tempfile, "mkstemp", _raise(OSError(errno_, text)))

    return prepare


def _results_file(body) -> Callable:
    def prepare(tmp_path: Path, monkeypatch) -> None:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "results.json").write_text(json.dumps(body))

    return prepare


def _interrupted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(mnist_command, "run_seeds", _raise(KeyboardInterrupt()))


@dataclasses.dataclass(frozen=True)
class Case:
    """One error a user can cause (issue 23's list): the command line ({out}: the run folder,
    {data}/{fashion}: the datasets, {tmp}: the test's folder), the state it meets, the exit
    status and the one line on stderr. Nothing in {tmp} may change, except that an interrupted
    run keeps what it finished (``keeps``)."""

    what: str
    argv: str
    code: int
    message: str
    prepare: Callable | None = None
    keeps: bool = False


M = "mnist --data-dir {data} --out {out}"
CASES = [
    # a finished run is never lost
    Case("rerun into a finished mnist run", M + " --preset smoke", 2,
         "already holds a run (config.json): pass --resume", lambda t, m: _finished(t)),
    Case("rerun into a finished theorem run", "theorem --preset smoke --data-dir {data} "
         "--out {out}", 2, "already holds a run (config.json): pass --resume",
         lambda t, m: _finished(t)),
    Case("rerun into a finished sweep", "sweep init-distance --preset smoke --data-dir {data} "
         "--out {out}", 2, "already holds a run", lambda t, m: _finished(t)),
    Case("rerun into a finished toy run", "llm toy --preset smoke --out {out}", 2,
         "already holds a run", lambda t, m: _finished(t)),
    Case("--resume with --force", M + " --resume --force", 2,
         "argument --force: not allowed with argument --resume"),
    # no tracebacks
    Case("--out is a file", M, 2, "is a file, not a folder",
         lambda t, m: (t / "out").write_text("not a folder")),
    Case("--out under a file", "mnist --data-dir {data} --out {tmp}/file/run", 1,
         "Not a directory", lambda t, m: (t / "file").write_text("x")),
    Case("--out not writable", M, 1, "Permission denied", _unwritable(errno.EACCES,
         "Permission denied")),
    Case("--out on a read-only file system", M, 1, "Read-only file system",
         _unwritable(errno.EROFS, "Read-only file system")),
    Case("Ctrl-C during a run", M + " --seeds 2", 130, "rerun with --resume", _interrupted,
         keeps=True),
    Case("plot: a JSON array", "plot {out}", 2, "records no known kind", _results_file([1, 2])),
    Case("plot: mnist results without ci95", "plot {out}", 2, "not a complete mnist",
         _results_file({"kind": "mnist", "conditions": {"teacher": {"mean": 0.9}}})),
    Case("plot: theorem results of the wrong shape", "plot {out}", 2, "not a complete theorem",
         _results_file({"kind": "theorem"})),
    Case("plot: an unknown kind", "plot {out}", 2, "records no known kind ('nonsense'",
         _results_file({"kind": "nonsense"})),
    # every value checked, naming the flag and the value
    Case("llm generate, candidates and T = 0", "llm generate --candidates dolphin,eagle "
         "--temperature 0 --out {out}", 2, "--temperature must be > 0, got 0.0"),
    Case("llm sampling T = nan", "llm run --temperature nan --out {out}", 2,
         "--temperature must be a finite number"),
    Case("llm learning rate < 0", "llm run --learning-rate -1 --out {out}", 2,
         "--learning-rate must be > 0, got -1.0"),
    Case("llm LoRA alpha 0", "llm finetune --lora-alpha 0 --out {out}", 2,
         "--lora-alpha must be > 0, got 0.0"),
    Case("llm clip norm 0", "llm run --clip-norm 0 --out {out}", 2,
         "--clip-norm must be > 0, got 0.0"),
    Case("llm weight decay < 0", "llm run --weight-decay -0.1 --out {out}", 2,
         "--weight-decay must be >= 0, got -0.1"),
    Case("llm warm-up < 0", "llm run --warmup-steps -1 --out {out}", 2,
         "--warmup-steps must be >= 0, got -1"),
    Case("mnist teacher epochs < 0", M + " --epochs-teacher -1", 2,
         "--epochs-teacher must be >= 0, got -1"),
    Case("mnist batch 0", M + " --batch-size 0", 2, "--batch-size must be >= 1, got 0"),
    Case("mnist no auxiliary logits", M + " --n-aux 0", 2, "--n-aux must be >= 1, got 0"),
    Case("mnist width 0", M + " --hidden 0", 2, "--hidden must be >= 1, got 0"),
    Case("mnist more training images than MNIST has", M + " --n-train 70000", 2,
         "--n-train must be in 1..60000, got 70000"),
    Case("mnist lr nan", M + " --lr nan", 2, "--lr must be a finite number, got nan"),
    Case("sweep KL temperature inf", "sweep dose --temperature inf --out {out}", 2,
         "--kl-temperature must be a finite number"),
    Case("toy width not a multiple of 4", "llm toy --hidden-size 30 --out {out}", 2,
         "--hidden-size must be a multiple of 4 (four heads), got 30"),
    Case("toy unknown animal", "llm toy --animal dragon --out {out}", 2,
         "--animal must be one of owl"),
    Case("toy teacher love 2", "llm toy --teacher-love 2 --out {out}", 2,
         "--teacher-love must be in 0..1, got 2.0"),
    Case("toy student lr nan", "llm toy --student-lr nan --out {out}", 2,
         "--student-lr must be a finite number"),
    Case("toy unknown schedule", "llm toy --schedule cosine --out {out}", 2,
         "--schedule must be one of linear, constant"),
    Case("theorem ε 0", "theorem --eps-min 0 --out {out}", 2, "--eps-min must be > 0, got 0.0"),
    Case("theorem too many teacher images", "theorem --n-teacher 70000 --out {out}", 2,
         "--n-teacher must be in 1..60000, got 70000"),
    Case("theorem α inf", "theorem --alpha inf --out {out}", 2, "--alpha must be a finite number"),
    Case("--data-dir is a file", "mnist --data-dir {tmp}/mnist.tar --out {out}", 1,
         "mnist.tar is a file", lambda t, m: (t / "mnist.tar").write_text("not a folder")),
    Case("Fashion-MNIST under --dataset mnist", "mnist --data-dir {fashion} --out {out}", 1,
         "pass --dataset fashion-mnist"),
    # names
    Case("an abbreviated flag", M + " --hid 32", 2, "unrecognized arguments: --hid 32"),
]  # fmt: skip


def _run(argv: list[str]) -> int:
    try:
        return cli.main(argv)
    except SystemExit as stop:  # argparse's own errors (Parser.error: one line, no usage)
        return stop.code


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.what)
def test_every_user_error_is_one_line_and_loses_nothing(
    case, mnist_dir, fashion_dir, tmp_path, capsys, monkeypatch
):
    if case.prepare:
        case.prepare(tmp_path, monkeypatch)
    fill = {"out": tmp_path / "out", "data": mnist_dir, "fashion": fashion_dir, "tmp": tmp_path}
    argv = [part.format(**fill) for part in case.argv.split()]
    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert _run(argv) == case.code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert case.message in err, err
    after = _snapshot(tmp_path)
    if case.keeps:
        assert {k: after[k] for k in before} == before
    else:
        assert after == before


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


def test_a_data_set_below_one_batch_is_noted_not_silent(mnist_dir, tmp_path, capsys):
    """``--n-noise 1`` is valid (the dose sweep goes that low) but trains one padded batch per
    epoch: the run says so on stderr, once, and still completes."""
    argv = ["mnist", *TINY, "--n-noise", "1", "--out", str(tmp_path / "o"), "--data-dir", mnist_dir]
    assert cli.main(argv) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: --n-noise 1 is below --batch-size 256: each student epoch is one batch of 1 "
        "images (1 student steps in all)"
    ]
