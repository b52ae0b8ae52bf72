"""A reduced-size run says so: its results record the preset and the flags that shrink it, its
figure's title names them, and it is not set beside the paper's numbers."""

import numpy as np

from sublim_jax.experiments.mnist import figure, report
from sublim_jax.experiments.mnist.config import CONDITIONS, TransferConfig
from sublim_jax.io import flags

RAW = {
    "accuracy": {c: np.array([0.5, 0.6, 0.7]) for c in CONDITIONS},
    "partner": [1, 2, 0],
    "devices": 1,
    "seeds_per_chunk": 3,
}
MNIST = {"name": "mnist", "sha256": {}}


def _title(res: dict, tmp_path, monkeypatch) -> str:
    drawn = []
    monkeypatch.setattr(figure, "save", lambda fig, out, stem: drawn.append(fig) or [])
    figure.transfer_figure(res, tmp_path)
    return drawn[0].axes[0].get_title()


def test_reduced_runs_are_labelled_and_not_set_beside_the_paper(tmp_path, monkeypatch):
    reduced = flags.reduced_fields(TransferConfig, TransferConfig.smoke())
    assert "--hidden" in reduced and "--seeds" not in reduced
    res = {**report.results_body(RAW, 3, MNIST, "smoke", reduced), "seeds": 3}
    assert res["preset"] == "smoke" and "paper" not in res
    assert "paper" not in report.transfer_table(res)
    title = _title(res, tmp_path, monkeypatch)
    assert "smoke preset, reduced size (--epochs-teacher" in title


def test_paper_sized_runs_keep_the_paper_beside_them(tmp_path, monkeypatch):
    assert flags.reduced_fields(TransferConfig, TransferConfig.default()) == []  # 20 seeds only
    res = {**report.results_body(RAW, 3, MNIST, "default", []), "seeds": 3}
    assert res["paper"] and "| paper |" in report.transfer_table(res)
    assert "reduced" not in _title(res, tmp_path, monkeypatch)
