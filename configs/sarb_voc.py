"""SARB on Pascal VOC 2007 at paper scale (`recipes.paper_scale`: batch 32 as the DSRB paper states).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/sarb_voc.py --workdir runs/sarb_voc \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (DSRB Table 2, "Ours w/ RV-Mixup" = SARB; VOC all-point mAP %) at 10%, 20%, ..., 90% known labels:
83.5 88.6 90.7 91.4 91.9 92.2 92.6 92.8 92.9 (average 90.7).
Category embeddings: see configs/ssgrl_voc.py.

Ablation flags, and where the config follows the DSRB paper rather than the released SARB
code (batch 32, per-class alpha / beta): see configs/sarb_coco.py and configs/dsrb_coco.py.
"""

from configs import base, recipes


def get_config(method: str = "sarb"):
    # Batch 32 and per-class alpha / beta: the DSRB paper (see configs/sarb_coco.py).
    return recipes.paper_scale(base.get_config(method), "voc")
