"""DSRB on Pascal VOC 2007 at paper scale (`recipes.paper_scale`: batch 32 as the DSRB paper states).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/dsrb_voc.py --workdir runs/dsrb_voc \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (DSRB Table 1, DSRB row; VOC all-point mAP %) at 10%, 20%, ..., 90% known labels:
85.7 89.8 91.8 92.0 92.3 92.7 92.9 93.1 93.2 (average 91.5).
Category embeddings: see configs/ssgrl_voc.py.

Ablation flags, and where the config follows the paper rather than the released code
(batch 32, per-class alpha / beta): see configs/dsrb_coco.py.
"""

from configs import base, recipes


def get_config(method: str = "dsrb"):
    # Batch 32 and per-class alpha / beta: the DSRB paper (see configs/dsrb_coco.py).
    return recipes.paper_scale(base.get_config(method), "voc")
