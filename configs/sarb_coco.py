"""SARB on MS-COCO 2014 at paper scale (`recipes.paper_scale`, with the SARB script's batch size 8).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/sarb_coco.py --workdir runs/sarb_coco \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (DSRB Table 2, "Ours w/ RV-Mixup" = SARB; VOC all-point mAP %) at 10%, 20%, ..., 90% known labels:
71.2 75.0 77.1 78.3 78.9 79.6 79.8 80.5 80.5 (average 77.9; HST Table 8 gives SARB 77.9).
Category embeddings: see configs/ssgrl_coco.py.

The released SARB code learns one scalar alpha and one scalar beta; the default here is DSRB's
per-class vectors (eq. 8, 12): --config.method_config.per_class_coefficients=False for the scalars.
"""

from configs import base, recipes


def get_config(method: str = "sarb"):
    config = recipes.paper_scale(base.get_config(method), "coco")
    config.train.batch_size = 8  # the authors' SARB script (HST uses 32)
    return config
