"""SARB on VG-200 at paper scale (`recipes.paper_scale`, with the SARB script's batch size 8).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/sarb_vg.py --workdir runs/sarb_vg \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (DSRB Table 2, "Ours w/ RV-Mixup" = SARB; VOC all-point mAP %) at 10%, 20%, ..., 90% known labels:
40.6 43.5 44.5 45.3 46.0 47.1 47.2 47.8 48.1 (average 45.6).
Category embeddings: see configs/ssgrl_vg.py.

Ablation flags: see configs/sarb_coco.py.
"""

from configs import base, recipes


def get_config(method: str = "sarb"):
    config = recipes.paper_scale(base.get_config(method), "vg")
    config.train.batch_size = 8  # the authors' SARB script (HST uses 32)
    return config
