"""scripts/sweep.py: a grid of runs, seed by seed, resumable, with a shared compilation cache."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_sweep_runs_the_grid_then_skips_finished_runs(tmp_path):
    workdir = str(tmp_path / "sweep")
    cmd = [
        sys.executable, os.path.join(ROOT, "scripts", "sweep.py"), "--config",
        os.path.join(ROOT, "configs", "tiny.py"), "--methods", "plain", "--proportions", "0.5",
        "1.0", "--seeds", "0", "--workdir", workdir, "--",
        f"--config.data.data_dir={tmp_path / 'data'}", "--config.train.num_epochs=1",
    ]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    runs = sorted(d for d in os.listdir(workdir) if d.startswith("plain_"))
    assert runs == ["plain_p0.5_s0", "plain_p1_s0"]
    with open(os.path.join(workdir, "plain_p0.5_s0", "config.json")) as f:
        config = json.load(f)
    assert config["data"]["known_proportion"] == 0.5 and config["data"]["label_seed"] == 0
    assert os.listdir(os.path.join(workdir, "jax_cache"))  # compiled steps were cached
    assert first.stdout.count("done in") == 2 and "| plain |" in first.stdout
    # A second invocation reuses the finished runs (nothing is trained again).
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    assert "done in" not in second.stdout and "| plain |" in second.stdout
    with open(os.path.join(workdir, "summary.json")) as f:
        assert set(json.load(f)["table"]["plain"]) == {"0.5", "1"}
