"""Regression guard of the transfer benchmark: the study's own runs above their recorded floors.

A guarded method reruns the study's seed-0 run at 50 % known labels (configs/
synthetic_transfer.py with the committed pretrained backbone, 8 epochs) and must reach the floor
that scripts/transfer_floors.py computed from the study (docs/results/synthetic_transfer_floors.json:
the worst seed minus max(1, 2 std)). The floors are never edited by hand. Two of the four floors are
rerun here, `plain` and the blending family's `dsrb` (the most moving parts): every method's
learning, the SSGRL and label-transfer families' included, is guarded by tests/test_methods_learn.py
at a smaller scale, and the suite stays shorter.
"""

import json
import os
import subprocess
import sys

import pytest

from configs import recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOORS_FILE = os.path.join(ROOT, "docs", "results", "synthetic_transfer_floors.json")
WEIGHTS = os.path.join(ROOT, recipes.SYNTHETIC_BACKBONE)

with open(FLOORS_FILE) as f:
    FLOORS = json.load(f)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("transfer_data"))


def test_floors_file_matches_the_guarded_families():
    assert set(FLOORS["floors"]) == {"plain", "ssgrl", "hst", "dsrb"}
    assert FLOORS["config"] == "configs/synthetic_transfer.py"
    for method, entry in FLOORS["floors"].items():
        assert entry["floor"] < min(entry["study_values"]), method
        assert len(entry["seeds"]) >= 2 and FLOORS["seed"] in entry["seeds"], method
    assert os.path.isfile(WEIGHTS), f"{WEIGHTS} missing: python -m mlrpl_jax.pretrain ..."


RERUN = ("plain", "dsrb")


@pytest.mark.slow
@pytest.mark.parametrize("method", RERUN)
def test_transfer_run_stays_above_its_floor(method, data_dir, tmp_path):
    """The study's own command (`mlrpl_jax.train`, one process, the machine's real devices: the
    tests' 8 simulated CPU devices would not be the study's program)."""
    workdir = tmp_path / method
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    subprocess.run(
        [sys.executable, "-m", "mlrpl_jax.train", f"--config={FLOORS['config']}:{method}",
         f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
         f"--config.seed={FLOORS['seed']}", f"--config.data.label_seed={FLOORS['seed']}",
         f"--config.data.known_proportion={FLOORS['known_proportion']}",
         f"--config.model.backbone_weights={WEIGHTS}", "--config.train.progress_bar=False"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    with open(workdir / "results.json") as f:
        final = json.load(f)["metrics"]
    floor = FLOORS["floors"][method]["floor"]
    print(f"{method}: test mAP {final['mAP']:.2f} (floor {floor:.2f})")
    assert final["mAP"] >= floor, (
        f"{method} at {FLOORS['known_proportion']:.0%} known: test mAP {final['mAP']:.2f} fell "
        f"below its floor {floor:.2f} (study: {FLOORS['floors'][method]['study_values']})"
    )
