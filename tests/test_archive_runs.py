"""scripts/archive_runs.py as typed: finished runs' records copied, rerun-safe, errors as messages."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, name, content):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "w") as f:
        f.write(content)


def run(*args):
    return subprocess.run(
        [sys.executable, "scripts/archive_runs.py", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_archive_copies_finished_runs_once_and_replaces_reruns(tmp_path):
    sweep = tmp_path / "sweep"
    for name, finished in (("plain_p0.5_s0", True), ("plain_p0.5_s1", False)):
        write(sweep / name, "config.json", json.dumps({"method": "plain"}))
        write(sweep / name, "metrics.jsonl", '{"step": 1}\n')
        os.makedirs(sweep / name / "checkpoints" / "4")
        if finished:
            write(sweep / name, "results.json", json.dumps({"metrics": {"mAP": 50.0}}))
    out = tmp_path / "docs" / "runs"
    first = run(sweep, "--out", out)
    assert first.returncode == 0, first.stderr
    assert "1 run(s) archived" in first.stdout
    kept = out / "sweep" / "plain_p0.5_s0"
    assert sorted(os.listdir(kept)) == ["config.json", "metrics.jsonl", "results.json"]
    assert not (out / "sweep" / "plain_p0.5_s1").exists()
    assert "0 run(s) archived" in run(sweep, "--out", out).stdout  # nothing changed
    write(sweep / "plain_p0.5_s0", "results.json", json.dumps({"metrics": {"mAP": 51.0}}))
    assert "1 run(s) archived" in run(sweep, "--out", out).stdout
    assert json.loads((kept / "results.json").read_text())["metrics"]["mAP"] == 51.0


def test_archive_of_a_missing_directory_is_a_message(tmp_path):
    proc = run(tmp_path / "nowhere", "--out", tmp_path / "out")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "nowhere is not a directory of runs" in proc.stderr
    assert not (tmp_path / "out").exists()
