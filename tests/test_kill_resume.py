"""SIGKILL in the middle of an epoch, rerun: same final metrics as an uninterrupted run, nothing lost."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(workdir, data_dir):
    return [
        sys.executable, "-m", "mlrpl_jax.train", "--config", "configs/tiny.py",
        "--workdir", str(workdir), f"--config.data.data_dir={data_dir}",
        "--config.train.num_epochs=3",
    ]  # fmt: skip


def env():
    e = dict(os.environ)
    e["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    e["JAX_PLATFORMS"] = "cpu"
    e["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "true"
    return e


def train_records(workdir):
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")
    return [json.loads(x) for x in lines[:-1] if x]  # the last element is "" or a partial line


def final_metrics(workdir):
    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)["metrics"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_rerun_matches_uninterrupted_run(tmp_path):
    data_dir = tmp_path / "tfds"
    reference = tmp_path / "reference"
    subprocess.run(
        train_command(reference, data_dir), cwd=ROOT, env=env(), check=True, timeout=600,
        capture_output=True,
    )  # fmt: skip
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        train_command(killed, data_dir), cwd=ROOT, env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline:  # kill in epoch 2 (steps 5-8), after the epoch-1 checkpoint
        if any(r.get("step", 0) >= 6 and "train/loss" in r for r in train_records(killed)):
            break
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(killed / "results.json")
    assert "4" in os.listdir(killed / "checkpoints")
    before = train_records(killed)
    resumed_at = max(int(name) for name in os.listdir(killed / "checkpoints"))
    subprocess.run(
        train_command(killed, data_dir), cwd=ROOT, env=env(), check=True, timeout=600,
        capture_output=True,
    )  # fmt: skip
    expected, got = final_metrics(reference), final_metrics(killed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-4), key
    after = train_records(killed)
    # What was written up to the checkpoint the rerun resumed from is still there, and the steps
    # replayed after it are recorded once.
    kept = [r for r in before if r["step"] <= resumed_at]
    assert after[: len(kept)] == kept
    steps = [r["step"] for r in after if "train/loss" in r]
    assert steps == list(range(1, 13))
    with open(killed / "events.jsonl") as f:
        assert [json.loads(line) for line in f] == [{"step": resumed_at, "event": "resume"}]
    assert sorted(os.listdir(killed / "checkpoints")) == ["12", "8"]
