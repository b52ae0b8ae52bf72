"""The command line as a user meets it: dataset identity, redrawing figures, help texts, no
hidden global state, and no machine paths in committed results."""

import argparse
import dataclasses
import gzip
import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from sublim_jax.cli import main as cli
from sublim_jax.experiments.llm_toy.config import ToyConfig
from sublim_jax.experiments.sweeps.config import SweepConfig
from sublim_jax.experiments.theorem import figure
from sublim_jax.experiments.theorem.config import TheoremConfig
from sublim_jax.experiments.theorem.run import run as run_theorem
from sublim_jax.io import data, flags

ROOT = Path(__file__).resolve().parents[2]
TINY = [  # a seconds-long mnist run: only the plumbing is under test here
    "--seeds", "2", "--epochs-teacher", "1", "--epochs-student", "1", "--batch-size", "256",
    "--hidden", "16", "--lr", "3e-3", "--n-train", "1024", "--n-test", "500", "--n-noise", "1024",
]  # fmt: skip


@pytest.fixture
def one_label_changed(mnist_dir, tmp_path) -> Path:
    """MNIST with the training label at index 1234 changed: the issue's damaged copy."""
    folder = tmp_path / "damaged"
    folder.mkdir()
    for stem in data.FILES:
        shutil.copy(Path(mnist_dir) / f"{stem}.gz", folder)
    path = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8 + 1234] = (raw[8 + 1234] + 1) % 10
    path.write_bytes(gzip.compress(bytes(raw)))
    return folder


def test_damaged_mnist_is_one_line_checksum_error_and_writes_nothing(one_label_changed, capsys):
    out = one_label_changed.parent / "run"
    argv = ["mnist", "--preset", "smoke", "--data-dir", str(one_label_changed), "--out", str(out)]
    assert cli.main(argv) == flags.EXIT_DATA
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train-labels-idx1-ubyte.gz: sha256" in err
    assert data.MNIST_SHA256["train-labels-idx1-ubyte"] in err and "--dataset idx" in err
    assert not out.exists()


def _table_head(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("| condition"))


def test_same_folder_as_idx_runs_without_paper_column(one_label_changed, capsys):
    out = one_label_changed.parent / "run"
    argv = ["mnist", "--dataset", "idx", "--data-dir", str(one_label_changed), "--out", str(out)]
    assert cli.main([*argv, *TINY]) == 0
    assert "paper" not in _table_head(capsys.readouterr().out)
    res = json.loads((out / "results.json").read_text())
    raw = gzip.decompress((one_label_changed / "train-labels-idx1-ubyte.gz").read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    assert res["data"] == {"name": "idx", "sha256": {**data.MNIST_SHA256, data.FILES[1]: digest}}
    assert "paper" not in res
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == res["data"] and str(one_label_changed) not in json.dumps(config)


def test_fashion_mnist_from_a_folder_is_verified_and_recorded(fashion_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["mnist", "--dataset", "fashion-mnist", "--data-dir", fashion_dir, "--out", str(out)]
    assert cli.main([*argv, *TINY]) == 0
    assert "paper" not in _table_head(capsys.readouterr().out)
    res = json.loads((out / "results.json").read_text())
    assert res["data"] == {"name": "fashion-mnist", "sha256": data.KNOWN["fashion-mnist"].sha256}
    assert res["conditions"]["teacher"]["mean"] > 0.3  # it learned something from the images
    argv[argv.index("fashion-mnist")] = "mnist"  # the Fashion-MNIST files are not MNIST
    assert cli.main([*argv, *TINY]) == flags.EXIT_DATA
    assert "pass --dataset fashion-mnist" in capsys.readouterr().err  # recognised by digest


def test_plot_redraws_a_figure_from_results_alone(mnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["mnist", "--data-dir", mnist_dir, "--out", str(out), *TINY]) == 0
    table = capsys.readouterr().out  # a reduced-size run: no paper column beside it
    assert "| condition | ours (mean) |" in table and "~0.53" not in table
    for name in ("transfer.pdf", "transfer.png", "config.json", "metrics.jsonl"):
        (out / name).unlink()
    assert cli.main(["plot", str(out)]) == 0
    assert (out / "transfer.pdf").stat().st_size > 0 and (out / "transfer.png").stat().st_size > 0
    assert _table_head(capsys.readouterr().out) == _table_head(table)
    assert cli.main(["plot", str(tmp_path / "nothing")]) == flags.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "results.json not found" in err


def test_plot_redraws_the_committed_theorem_figure(tmp_path):
    shutil.copy(ROOT / "experiments" / "results" / "theorem" / "results.json", tmp_path)
    assert cli.main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "theorem.png").stat().st_size > 0


def test_help_shows_the_chosen_presets_values_and_the_commands(capsys):
    for preset, seeds in (("paper", 100), ("smoke", 3), ("default", 20)):
        with pytest.raises(SystemExit):
            cli.main(["mnist", "--preset", preset, "--help"])
        assert re.search(rf"models \(seeds\).*\({preset}: {seeds}\)", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(f"\n  {c} " in text for c in ("mnist", "theorem", "plot")), text
    assert "dataclasses.replace" not in text


def test_theorem_reads_the_chosen_dataset(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    out = tmp_path / "run"
    assert cli.main(["theorem", "--dataset", "idx", "--out", str(out)]) == flags.EXIT_DATA
    assert "--dataset idx reads a folder of your own" in capsys.readouterr().err
    assert not out.exists()


def test_library_calls_leave_float64_and_the_matplotlib_backend_alone(tmp_path, mnist_dir):
    import matplotlib

    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend a library call must not switch away from
    cfg = dataclasses.replace(TheoremConfig.smoke(), seeds=6, chunk=3)  # as in
    ds, x_train, _ = data.load_flat("mnist", mnist_dir)  # test_single_step: programs are reused
    jax.config.update("jax_enable_x64", False)  # as in a user's process (conftest turns it on)
    try:
        res = run_theorem(cfg, x_train, ds.y_train)
        assert not jax.config.jax_enable_x64  # the run's float64 stayed inside it
        assert jnp.ones(1).dtype == jnp.float32
    finally:
        jax.config.update("jax_enable_x64", True)
    try:
        figure.theorem_figure(res, tmp_path)
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(backend)
    assert (tmp_path / "theorem.png").read_bytes()[:4] == b"\x89PNG"


# a path of the machine a file was made on: "/any/thing", "~/thing", "C:\\thing"
MACHINE_PATH = re.compile(r"""(?:^|[\s"'=(:,])(?:/[\w.+-]+/|~/|[A-Za-z]:\\)""")


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def _text_of(path: Path) -> list[str]:
    if path.suffix == ".json":
        return list(_strings(json.loads(path.read_text())))
    if path.suffix == ".jsonl":
        return [s for line in path.read_text().splitlines() for s in _strings(json.loads(line))]
    return path.read_text().splitlines()


def test_machine_path_pattern():
    for bad in ("/work/shared/data/mnist", "read from /tmp/x/y", "~/data", "C:\\data"):
        assert MACHINE_PATH.search(bad), bad
    for fine in ("Linux-6.1.0-x86_64-with-glibc2.36", "TFRT_CPU_0", "1/2", "0.53 (0.51–0.55)"):
        assert not MACHINE_PATH.search(fine), fine


@pytest.mark.parametrize("folder", ["experiments/results", "benchmarks/results"])
def test_committed_results_hold_no_machine_path(folder):
    suffixes = {".json", ".jsonl", ".md", ".txt", ".csv"}
    files = [p for p in (ROOT / folder).rglob("*") if p.suffix in suffixes]
    assert files, f"nothing to scan under {folder}"
    for path in files:
        for text in _text_of(path):
            assert not MACHINE_PATH.search(text), f"{path.relative_to(ROOT)}: {text!r}"


@dataclasses.dataclass(frozen=True)
class _Flags:
    """A config with booleans, which the command line writes as bare ``--x`` / ``--no-x``."""

    on: bool = True
    off: bool = False
    n: int = 1

    @classmethod
    def default(cls) -> "_Flags":
        return cls()

    @classmethod
    def paper(cls) -> "_Flags":
        return cls(on=False, off=True, n=5)

    def validate(self) -> "_Flags":
        return self


@pytest.mark.parametrize(
    "cfg, preset",
    [
        (ToyConfig.paper(), "paper"),
        (dataclasses.replace(ToyConfig.paper(), seeds=3, student_lr=3e-4), "paper"),
        (dataclasses.replace(ToyConfig(), gen_batch=128, target="cat"), "default"),
        (dataclasses.replace(SweepConfig.smoke(), seeds=7, lr=3e-4), "smoke"),
        (_Flags(on=False), "default"),
        (_Flags(off=True), "default"),
        (_Flags(on=False, n=5), "paper"),
    ],
)
def test_command_line_rebuilds_the_config_from_the_nearest_preset(cfg, preset):
    """The command a summary prints parses back to the run's config, from the preset that
    needs the fewest flags."""
    cmd = flags.command_line("uv run sublim-jax x", type(cfg), cfg)
    argv = shlex.split(cmd)[4:]
    assert argv[:2] == ["--preset", preset]
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset")
    flags.add_config_flags(parser, type(cfg), preset)
    assert flags.config_from_args(type(cfg), parser.parse_args(argv)) == cfg
    base = getattr(type(cfg), preset)()
    changed = {
        flags.field_flag(f)
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != getattr(base, f.name)
    }
    given = {a.replace("--no-", "--") for a in argv[2:] if a.startswith("--")}
    assert given == changed  # no flag it does not need
