"""Regression guard of the transfer benchmark: one run per method family above its recorded floor.

Each guarded method reruns the study's seed-0 run at 50 % known labels (configs/
synthetic_transfer.py with the committed pretrained backbone, 8 epochs) and must reach the floor
that scripts/transfer_floors.py computed from the study (docs/results/synthetic_transfer_floors.json:
the worst seed minus max(1, 2 std)). The floors are never edited by hand.
"""

import json
import os

import pytest

from configs import recipes, synthetic_transfer
from mlrpl_jax import trainer

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
    assert os.path.isfile(WEIGHTS), f"{WEIGHTS} missing: python -m mlrpl_jax.pretrain ..."


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(FLOORS["floors"]))
def test_transfer_run_stays_above_its_floor(method, data_dir, tmp_path):
    config = synthetic_transfer.get_config(method)
    config.data.data_dir = data_dir
    config.data.known_proportion = FLOORS["known_proportion"]
    config.seed = config.data.label_seed = FLOORS["seed"]
    config.model.backbone_weights = WEIGHTS
    config.train.progress_bar = False
    final = trainer.run(config, str(tmp_path / method))
    floor = FLOORS["floors"][method]["floor"]
    print(f"{method}: test mAP {final['mAP']:.2f} (floor {floor:.2f})")
    assert final["mAP"] >= floor, (
        f"{method} at {config.data.known_proportion:.0%} known: test mAP {final['mAP']:.2f} fell "
        f"below its floor {floor:.2f} (study: {FLOORS['floors'][method]['study_values']})"
    )
