"""The SSGRL-family methods run end to end through the trainer, with every scheduled part active.

Each method trains the tiny config (2 epochs of 4 steps) with its activation epoch moved to 1, so
the second epoch has pseudo labels / blending, a `refresh` (prototypes) and the delayed parameters
(margins, alpha, beta) in the optimiser; the checkpointed state shows that each part ran.
`hst_fb` covers everything of `hst` (K-means refresh, margins) and of `sarb` (K-means blending),
so those two are not run separately here, to keep the suite short (their own wiring is tested in
test_hst.py and test_blending.py); their schedules stay listed for a manual run.
"""

import os

import jax
import numpy as np
import pytest
from helpers import restore_latest, tiny_run_config

from mlrpl_jax import trainer

SMALL_HEADS = {
    "model.feature_dim": 16,
    "model.attention_dim": 8,
}
SCHEDULES = {
    "sst": {"method_config.generate_label_epoch": 1, "method_config.bank_size": 4},
    "hst": {"method_config.generate_label_epoch": 1, "method_config.prototype_every_epochs": 1},
    "hst_fb": {"method_config.generate_label_epoch": 1, "method_config.prototype_every_epochs": 1},
    "sarb": {"method_config.blend_epoch": 1},
    "dsrb": {"method_config.blend_epoch": 1},
}
IST = {"method_config.ist_hidden_dim": 8, "method_config.ist_pair_dim": 12}
KMEANS = {"method_config.num_prototypes": 2, "method_config.kmeans_n_init": 2}


def _results(workdir):
    import json
    import os

    with open(os.path.join(workdir, "results.json")) as f:
        return json.load(f)


def run_config(root, method):
    overrides = {**SMALL_HEADS, **SCHEDULES[method], "data.cache_dir": str(root / "cache")}
    if method in ("sst", "hst", "hst_fb"):
        overrides.update(IST)
    if method in ("hst", "hst_fb", "sarb"):
        overrides.update(KMEANS)
    return tiny_run_config(root / "tfds", method=method, **overrides)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sst", "hst_fb", "dsrb"])
def test_method_trains_with_every_part_active(tmp_path, method):
    config = run_config(tmp_path, method)
    workdir = str(tmp_path / "work")
    final = trainer.run(config, workdir)
    assert 0.0 <= final["mAP"] <= 100.0
    _, state = restore_latest(config, workdir)
    state = jax.device_get(state)
    assert int(state.step) == 2 * 64 // 16
    assert {"val", "test"} <= set(_results(workdir)["all_metrics"])
    # The model-based report figures (co-occurrence for the IST head, attention for all three).
    from mlrpl_jax import report_maps

    written = report_maps.report_maps(workdir, str(tmp_path / "maps"), "latest", 2)
    expected = {"attention.png"} | ({"cooccurrence.png"} if method != "dsrb" else set())
    assert {os.path.basename(w) for w in written} == expected
    for path in written:
        with open(path, "rb") as f:
            assert f.read(4) == b"\x89PNG"
    ms = state.method_state
    if method == "sst":
        assert np.abs(ms["bank"]).sum() > 0  # known positives entered the bank
    else:  # prototypes were computed by the refresh before epoch 1
        assert ms["prototype_points"].sum() > 0
        assert np.abs(ms["prototypes"]).sum() > 0
    scalars = state.params.get("method", {})  # the method's own parameters
    for name in ("intra_margin", "inter_margin"):
        if method in ("hst", "hst_fb"):  # learned from epoch 1 on
            assert float(scalars[name]) != 1.0
    for name in ("alpha", "beta"):
        if method in ("hst_fb", "sarb", "dsrb"):  # learned, per class, clamped to [0, 1]
            value = np.asarray(scalars[name])
            assert value.shape == (5,)
            assert np.all((value >= 0) & (value <= 1)) and np.any(value != 0.5)
