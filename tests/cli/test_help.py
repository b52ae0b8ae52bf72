"""Every flag explained, stage commands showing their own flags, one meaning per flag name."""

import dataclasses

import pytest

from sublim_jax.cli import main as cli
from sublim_jax.experiments.llm_pipeline import command as pipeline_command
from sublim_jax.experiments.llm_pipeline.config import PipelineConfig
from sublim_jax.experiments.llm_toy.config import ToyConfig
from sublim_jax.experiments.mnist.config import TransferConfig
from sublim_jax.experiments.sweeps.config import SweepConfig
from sublim_jax.experiments.theorem.config import TheoremConfig
from sublim_jax.io import flags

CONFIGS = (TheoremConfig, TransferConfig, SweepConfig, PipelineConfig, ToyConfig)


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_every_config_field_has_help(cls):
    assert [f.name for f in dataclasses.fields(cls) if not f.metadata.get("help")] == []


def _help(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_each_stage_shows_its_own_flags_and_accepts_the_others(capsys):
    text = _help(capsys, ["llm", "filter"])
    assert "--subsample" in text and "--lora-rank" not in text
    assert "The other stages' flags are accepted" in text
    assert "--lora-rank" in _help(capsys, ["llm", "finetune"])
    assert "--lora-rank" in _help(capsys, ["llm", "run"])
    args = cli.build_parser("tiny").parse_args(["llm", "filter", "--lora-rank", "4"])
    assert flags.config_from_args(PipelineConfig, args).lora_rank == 4


def test_stage_flag_lists_name_real_fields():
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    for stage, (_, _, fields) in pipeline_command.STAGE_HELP.items():
        assert fields is None or set(fields) <= names, stage


def test_defaults_are_shown_as_values(capsys):
    assert "(default: 'tiny:')" in _help(capsys, ["llm", "generate"])


def test_renamed_flags_keep_their_old_spelling(tmp_path):
    parser = cli.build_parser("default")
    new = parser.parse_args(["llm", "toy", "--animal", "cat", "--steps-per-call", "10"])
    old = parser.parse_args(["llm", "toy", "--target", "cat", "--chunk", "10"])
    cfg = flags.config_from_args(ToyConfig, new)
    assert cfg == flags.config_from_args(ToyConfig, old)
    assert (cfg.target, cfg.chunk) == ("cat", 10)
    line = flags.command_line("sublim-jax llm toy", ToyConfig, cfg, "default")
    assert line.endswith("--animal cat --steps-per-call 10")
    kl = [parser.parse_args(["mnist", f, "2"]) for f in ("--kl-temperature", "--temperature")]
    assert flags.config_from_args(TransferConfig, kl[0]).temperature == 2
    assert flags.config_from_args(TransferConfig, kl[1]).temperature == 2


def test_every_command_has_the_smoke_and_default_presets(capsys):
    """``--preset smoke`` is the seconds-long CI run and ``default`` the command's default in
    every command; the pipeline's old ``tiny`` still means ``smoke``."""
    parser = cli.build_parser("default")
    for argv in (["mnist"], ["theorem"], ["sweep", "dose"], ["llm", "toy"], ["llm", "run"]):
        for preset in ("smoke", "default"):
            assert parser.parse_args([*argv, "--preset", preset]).preset == preset
    assert parser.parse_args(["llm", "generate", "--preset", "tiny"]).preset == "smoke"
    assert parser.parse_args(["llm", "generate"]).preset == "default"
    assert PipelineConfig.default() == PipelineConfig.smoke()


def test_chunk_and_target_have_one_meaning_each():
    """``--chunk`` is seeds per compiled batch and ``--target`` the evaluated word wherever they
    are a field's flag; the toy's fields of other meanings have flags of their own."""
    owners = {
        cls.__name__
        for cls in CONFIGS
        for f in dataclasses.fields(cls)
        if flags.field_flag(f) in ("--chunk", "--target")
    }
    assert owners == {"TheoremConfig", "TransferConfig", "SweepConfig", "PipelineConfig"}
