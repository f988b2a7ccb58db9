"""scripts/study.py as typed: a plan is run seed by seed, archived, resumed from the archive."""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def study(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DISABLE_MOST_OPTIMIZATIONS="true")
    env.pop("XLA_FLAGS", None)
    return subprocess.run(
        [sys.executable, "scripts/study.py", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip


def write_plan(tmp_path, **sweep):
    plan = {
        "runs_dir": str(tmp_path / "runs"),
        "archive": str(tmp_path / "archive"),
        "sweeps": [
            {
                "name": "tiny",
                "config": "configs/tiny.py",
                "methods": ["plain"],
                "proportions": [0.5],
                "seeds": [0],
                "overrides": [],
                **sweep,
            }
        ],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def test_status_and_plan_errors(tmp_path):
    path = write_plan(tmp_path)
    proc = study(path, "--status")
    assert proc.returncode == 0 and "tiny: 0/1 runs archived" in proc.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"runs_dir": "r", "archive": "a", "sweeps": [{"name": "x"}]}))
    for plan, fragment in ((bad, "sweep 'x' lacks"), (tmp_path / "none.json", "does not exist")):
        proc = study(plan)
        assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_study_runs_archives_and_resumes_from_the_archive(tmp_path):
    path = write_plan(tmp_path, overrides=[f"--config.data.data_dir={tmp_path / 'tfds'}"])
    first = study(path)
    assert first.returncode == 0, first.stderr[-3000:]
    archived = tmp_path / "archive" / "tiny" / "plain_p0.5_s0"
    assert sorted(os.listdir(archived)) == [
        "config.json",
        "events.jsonl",
        "metrics.jsonl",
        "results.json",
    ] or sorted(os.listdir(archived)) == ["config.json", "metrics.jsonl", "results.json"]
    results = (archived / "results.json").read_text()
    shutil.rmtree(tmp_path / "runs")  # a new session: the runs are gone, the archive is kept
    again = study(path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "tiny: 1/1 runs archived" in again.stdout
    assert (archived / "results.json").read_text() == results  # not trained again
    assert not (tmp_path / "runs" / "tiny" / "plain_p0.5_s0" / "checkpoints").exists()
