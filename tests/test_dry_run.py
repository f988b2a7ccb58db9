"""scripts/dry_run_configs.py as a user types it: a representative few paper configs (one per method
family and dataset format) at a reduced batch and image size, every stage passing and the table
written; and its command-line errors."""

import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join("scripts", "dry_run_configs.py")

# One per method family and dataset format: HCP on a TFDS catalogue dataset (COCO), a loss
# baseline on VG-200 (our manual-directory builder, 200 classes), TRM-ML (CLIP, the single-positive
# protocol's carve-out and validation selection, stage 2 from epoch 1) on VOC 2012, paper 002 on
# Open Images (streaming writer, 601 classes, natively partial labels, a validation split).
CONFIGS = (
    "configs/sst_coco.py",
    "configs/baselines_vg.py:asl",
    "configs/trm_ml_voc2012_spl.py:largeloss",
    "configs/imbalance_openimages.py:imbalance",
)


def _run(*args, env=None, timeout=60):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, check=False, env=env,
    )  # fmt: skip


@pytest.mark.slow
def test_representative_configs_pass_every_stage(tmp_path):
    doc = tmp_path / "paper_configs.md"
    env = dict(os.environ)
    # Tiny programs for a few steps: XLA's optimisation passes cost more than they save (as in
    # tests/conftest.py). Steps of 2 images at 96 px.
    env["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"
    env.pop("XLA_FLAGS", None)  # one CPU device, as on the command line (conftest simulates 8)
    proc = _run(
        "--workdir", str(tmp_path / "dry"), "--doc", str(doc), "--results", str(tmp_path / "res"),
        "--batch", "2", "--steps", "3",
        "--size_factor", "0.215", "--only", *CONFIGS, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = doc.read_text()
    for name in CONFIGS:
        slug = os.path.basename(name).replace(".py", "").replace(":", ".")
        with open(tmp_path / "res" / f"{slug}.json") as f:
            result = json.load(f)
        stages = {k: s["ok"] for k, s in result["stages"].items()}
        assert stages == dict.fromkeys(
            ("data", "plan", "train", "eval", "checkpoint", "resume"), True
        ), (name, result["stages"])
        assert result["batch"] == 2 and result["image_size"] == 96, result
        assert result["plan"]["train_step"]["config_batch"] == result["paper_batch"]
        assert result["timing"]["s_per_step"] > 0
        assert result["runs"]["train"]["exit"] == 75 and result["runs"]["resume"]["exit"] == 0
        row = next(line for line in text.splitlines() if f"`{name[len('configs/') :]}`" in line)
        assert row.count("| ok ") == 5, row
    assert "## Failures\n\nNone." in text
    assert "coco/2014 | TFDS catalogue" in text and "| 601 |" in text


def test_command_line_errors_are_messages():
    proc = _run("--only", "configs/no_such_config.py")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --only configs/no_such_config.py: no paper config")
    proc = _run("--only", "configs/tiny.py")  # not a paper config
    assert proc.returncode == 2 and "no paper config" in proc.stderr
    assert len(_run("--only", "baselines_vg", "--list").stdout.split()) == 15  # every variant
    proc = _run("--doc_only", "--results", "no/such/results")
    assert proc.returncode == 2 and "no config has a result there" in proc.stderr, proc.stderr
    proc = _run("--steps", "2")
    assert proc.returncode == 2 and "--steps 2" in proc.stderr
    listed = _run("--list").stdout.split()
    assert "configs/dualcoop_coco.py:author" in listed and "configs/sst_vg.py" in listed
    assert not [n for n in listed if "synthetic" in n or "tiny" in n or "pretrain" in n]
