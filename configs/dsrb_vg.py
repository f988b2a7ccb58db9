"""DSRB on VG-200 at paper scale (`recipes.paper_scale`: batch 32 as the DSRB paper states).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/dsrb_vg.py --workdir runs/dsrb_vg \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (DSRB Table 1, DSRB row; VOC all-point mAP %) at 10%, 20%, ..., 90% known labels:
41.4 44.0 44.8 45.5 46.6 47.5 47.8 48.0 48.2 (average 46.0).
Category embeddings: see configs/ssgrl_vg.py.

Ablation flags, and where the config follows the paper rather than the released code
(batch 32, per-class alpha / beta): see configs/dsrb_coco.py.
"""

from configs import base, recipes


def get_config(method: str = "dsrb"):
    # Batch 32 and per-class alpha / beta: the DSRB paper (see configs/dsrb_coco.py).
    return recipes.paper_scale(base.get_config(method), "vg")
