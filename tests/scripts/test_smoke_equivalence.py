"""scripts/smoke_equivalence.py: two sets of runs agree when only wall-clock keys and ``kind``
differ, and disagree on any other value or on a missing run."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("eq", ROOT / "scripts" / "smoke_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(root: Path, name: str, body: dict) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps(body))


BODY = {"seeds": 2, "acc": [0.5, 0.25], "nested": {"mean": 0.375, "wall_seconds": 3.0}}


@pytest.mark.parametrize(
    "after, differ",
    [
        ({**BODY, "wall_seconds": 9.0, "kind": "mnist", "timings": {"a": 1}}, False),
        ({**BODY, "acc": [0.5, 0.2500001]}, True),
        ({**BODY, "nested": {"mean": 0.375}}, False),  # a time dropped: not a difference
        ({**BODY, "extra": 1}, True),
        ({k: v for k, v in BODY.items() if k != "seeds"}, True),
    ],
)
def test_compare_ignores_only_times_and_kind(tool, tmp_path, after, differ, capsys):
    _write(tmp_path / "a", "run", {**BODY, "wall_seconds": 1.0})
    _write(tmp_path / "b", "run", after)
    assert tool.compare(tmp_path / "a", tmp_path / "b") == int(differ)


def test_a_run_missing_on_one_side_differs(tool, tmp_path):
    _write(tmp_path / "a", "run", BODY)
    _write(tmp_path / "a", "other", BODY)
    _write(tmp_path / "b", "run", BODY)
    assert tool.compare(tmp_path / "a", tmp_path / "b") == 1
