"""DSRB on Pascal VOC 2007 at paper scale (`recipes.paper_scale`, with the DSRB script's batch size 8).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/dsrb_voc.py --workdir runs/dsrb_voc \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (DSRB Table 1, DSRB row; VOC all-point mAP %) at 10%, 20%, ..., 90% known labels:
85.7 89.8 91.8 92.0 92.3 92.7 92.9 93.1 93.2 (average 91.5).
Category embeddings: see configs/ssgrl_voc.py.

Ablation flags: see configs/dsrb_coco.py.
"""

from configs import base, recipes


def get_config(method: str = "dsrb"):
    config = recipes.paper_scale(base.get_config(method), "voc")
    config.train.batch_size = 8  # the authors' DSRB script (HST uses 32)
    return config
