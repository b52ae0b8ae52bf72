"""Figures of runs smaller than the full-size setup say so, whichever experiment drew them."""

import json
from pathlib import Path

from sublim_jax.experiments.sweeps import figure as sweep_figure
from sublim_jax.experiments.theorem import figure as theorem_figure
from sublim_jax.io import plotting

ROOT = Path(__file__).resolve().parents[2]


def test_size_note_names_the_preset_and_the_flags():
    assert plotting.size_note({"preset": "default", "reduced": []}) == ""
    assert plotting.size_note({}) == ""  # results from before the field
    note = plotting.size_note({"preset": "smoke", "reduced": ["--a", "--b", "--c", "--d", "--e"]})
    assert note.strip() == (
        "smoke preset, reduced size (--a, --b, --c, --d, …): smaller than the full-size setup"
    )


def _drawn(module, draw, res, tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(module, "save", lambda fig, out, stem: drawn.append(fig) or [])
    draw(res, tmp_path)
    return drawn[0]


def test_theorem_and_sweep_figures_carry_the_note(tmp_path, monkeypatch):
    reduced = {"preset": "smoke", "reduced": ["--hidden"]}
    for module, draw, run in (
        (theorem_figure, theorem_figure.theorem_figure, "theorem"),
        (sweep_figure, sweep_figure.sweep_figure, "sweeps/init-distance"),
    ):
        res = json.loads((ROOT / "experiments/results" / run / "results.json").read_text())
        fig = _drawn(module, draw, {**res, **reduced}, tmp_path, monkeypatch)
        assert "smoke preset, reduced size (--hidden)" in fig.get_suptitle(), run
        fig = _drawn(module, draw, res, tmp_path, monkeypatch)
        assert fig.get_suptitle() == "", run
