"""experiments/paper_sweeps.sh at the smoke preset on one sweep: a half-done sweep is run again
from the start, a finished one is skipped, and a spent budget stops before a sweep starts."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "experiments" / "paper_sweeps.sh"


def _script(out: Path, mnist_dir: str, **env: str) -> subprocess.CompletedProcess:
    """The script at the smoke preset with this interpreter, ``env`` added."""
    env = {**os.environ, "OUT": str(out), "DATA": mnist_dir, "PRESET": "smoke",
           "PYTHON": sys.executable, **env}  # fmt: skip
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)


def test_paper_sweeps_script_resumes_and_keeps_to_its_budget(mnist_dir, tmp_path):
    out = tmp_path / "paper"
    (out / "aux-count").mkdir(parents=True)
    (out / "aux-count" / "config.json").write_text("{}")  # a run cut short: no results.json
    first = _script(out, mnist_dir, ONLY="aux-count")
    assert first.returncode == 0, first.stdout + (out / "paper_sweeps.log").read_text()
    assert re.fullmatch(r"== aux-count: rc=0 minutes=\d+\.\d\n", first.stdout)
    res = json.loads((out / "aux-count" / "results.json").read_text())
    assert res["sweep"] == "aux-count" and res["preset"] == "smoke"
    again = _script(out, mnist_dir, ONLY="aux-count layer-sharing", BUDGET="0")
    assert again.returncode == 75 and not (out / "layer-sharing").exists()
    assert again.stdout.splitlines() == [
        "== aux-count: done (skipped)",
        "== budget spent; left: layer-sharing (rerun the same command to resume)",
    ]
    assert "preset=smoke" in (out / "paper_sweeps.log").read_text()
