"""HST on Pascal VOC 2007 at paper scale (`recipes.paper_scale`; the HST script's batch size is 32).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/hst_voc.py --workdir runs/hst_voc \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, HST row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 84.3 89.1 90.5 91.6 92.1 92.4 92.5 92.8 92.8 (average 90.9).
Ablation flags and the K-means cap: see configs/hst_coco.py. Category embeddings: see configs/ssgrl_voc.py.
"""

from configs import base, recipes


def get_config(method: str = "hst"):
    return recipes.paper_scale(base.get_config(method), "voc")
