"""Across-sweeps analysis: ranks, Spearman's ρ and its bootstrap CI, rows from sweep results,
generated blocks of FINDINGS.md."""

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

from sublim_jax.cli import main as cli
from sublim_jax.core import stats
from sublim_jax.experiments.sweeps import across as findings
from sublim_jax.experiments.sweeps import report
from sublim_jax.io import markdown, results


def test_ranks_average_ties():
    np.testing.assert_array_equal(stats.ranks([3.0, 1.0, 2.0, 2.0]), [4, 1, 2.5, 2.5])
    np.testing.assert_array_equal(stats.ranks([[5.0, 5.0, 5.0]]), [[2, 2, 2]])


@given(st.integers(3, 30), st.integers(0, 2**31 - 1))
def test_spearman_is_the_classic_formula_without_ties(n, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.permutation(n), rng.permutation(n)  # distinct values: no ties
    d = stats.ranks(x) - stats.ranks(y)
    classic = 1 - 6 * np.sum(d**2) / (n * (n**2 - 1))
    np.testing.assert_allclose(stats.spearman(x, y), classic, rtol=1e-12, atol=1e-12)


@given(st.integers(0, 2**31 - 1))
def test_spearman_sees_only_order(seed):
    x = np.random.default_rng(seed).normal(size=12)
    assert stats.spearman(x, np.exp(3 * x)) == pytest.approx(1.0)
    assert stats.spearman(x, -(x**3)) == pytest.approx(-1.0)


def test_rank_correlation_ci_brackets_rho_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(size=60)
    y = x + 0.5 * rng.normal(size=60)
    a, b = stats.rank_correlation(x, y), stats.rank_correlation(x, y)
    assert a == b
    assert a["ci95"][0] < a["rho"] < a["ci95"][1] and a["n"] == 60
    assert 0.75 < a["rho"] < 0.97  # population ρ_s of this pair ≈ 0.88
    unrelated = stats.rank_correlation(x, rng.normal(size=60))
    assert unrelated["ci95"][0] < 0 < unrelated["ci95"][1]
    with pytest.raises(ValueError, match="≥ 3"):
        stats.rank_correlation([1.0, 2.0], [2.0, 1.0])


def _summary(mean: float, key: str = "accuracy") -> dict:
    values = [mean - 0.01, mean, mean + 0.01]
    return {key: values, "mean": mean, "ci95": [mean - 0.01, mean + 0.01], "n": 3}


def _results(name: str, accs: list[tuple[float, float]], ref: float = 0.1) -> dict:
    points = []
    for i, (same, diff) in enumerate(accs):
        conds = {
            f"student_{s}": _summary(v)
            for s, v in zip(
                ("aux_same_init", "aux_diff_init", "all_same_init", "all_diff_init"),
                (same, diff, 0.9, 0.7),
                strict=True,
            )
        }
        cos = {
            f"update_aux_{k}_init": _summary(v, "values")
            for k, v in (("same", same / 10), ("diff", diff / 10))
        }
        points.append({"label": f"p{i}", "conditions": conds, "diagnostics": {"cosine_step0": cos}})
    fixed = {"reference": _summary(ref), "teacher": _summary(0.94)}
    return {"sweep": name, "points": points, "fixed": fixed, "wall_seconds": 60.0}


def test_collect_rows_per_point_and_init_and_per_point_reference():
    res = _results("a", [(0.5, 0.1), (0.3, 0.12), (0.2, 0.1)])
    res["points"][1]["teacher"] = {"reference": _summary(0.2)}  # e.g. a wider untrained network
    rows = findings.collect([res, _results("b", [(0.4, 0.1)])])
    assert [(r["sweep"], r["label"], r["init"]) for r in rows] == [
        ("a", "p0", "same"),
        ("a", "p0", "diff"),
        ("a", "p1", "same"),
        ("a", "p1", "diff"),
        ("a", "p2", "same"),
        ("b", "p0", "same"),
        ("b", "p0", "diff"),
    ]  # fmt: skip; a/p2's different-init students repeat a/p0's (one run): counted once
    assert rows[0]["transfer"] == pytest.approx(0.4) and rows[0]["cos0"] == pytest.approx(0.05)
    assert rows[2]["transfer"] == pytest.approx(0.1)  # the point's own reference
    body = findings.across([res])
    assert body["spearman"]["n"] == 5 and body["spearman"]["rho"] > 0
    assert {k: v["n"] for k, v in body["spearman_by_init"].items()} == {"same": 3}  # diff: 2 rows
    text = findings.correlation_text(body)
    assert "over 5 (point, init) pairs" in text and "Within one init: same init" in text


def test_sweep_table_has_every_point_with_cis():
    table = report.table(_results("a", [(0.5, 0.1), (0.3, 0.12)]), ci=True)
    assert "| p1 | 0.300 [0.290, 0.310] | 0.120 [0.110, 0.130] |" in table
    assert "3 seeds; teacher 0.940" in table and "1.0 min" in table


def test_fill_replaces_only_generated_blocks():
    text = (
        "# Findings\nprose one\n<!-- BEGIN generated: a -->\nold\n<!-- END generated -->\n"
        "prose two\n<!-- BEGIN generated: b -->\nkeep\n<!-- END generated -->\n"
    )
    out, missing = markdown.fill(text, {"a": "new\nlines\n"})
    assert out == text.replace("old", "new\nlines")
    assert missing == ["b"]
    assert markdown.fill(out, {"a": "new\nlines"})[0] == out  # idempotent


def test_refresh_rewrites_stale_blocks_and_check_writes_nothing(tmp_path, capsys):
    md = tmp_path / "README.md"
    stale = "x\n<!-- BEGIN generated: a -->\nold\n<!-- END generated -->\n"
    md.write_text(stale)
    assert markdown.refresh(md, {"a": "new"}, check=True) == 1
    assert md.read_text() == stale and "out of date" in capsys.readouterr().out
    assert markdown.refresh(md, {"a": "new"}) == 0
    assert md.read_text() == stale.replace("old", "new")
    assert markdown.refresh(md, {"a": "new"}, check=True) == 0


def test_across_results_are_redrawn_by_plot(tmp_path, capsys):
    res = [_results("a", [(0.5, 0.1), (0.3, 0.12)]), _results("b", [(0.4, 0.1), (0.2, 0.11)])]
    results.write_results(tmp_path, findings.KIND, findings.across(res))
    assert cli.main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "across.png").stat().st_size > 0 and (tmp_path / "across.pdf").is_file()
