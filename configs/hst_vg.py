"""HST on VG-200 at paper scale (`recipes.paper_scale`; the HST script's batch size is 32).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/hst_vg.py --workdir runs/hst_vg \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, HST row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 40.6 41.6 43.3 44.6 45.2 45.8 46.8 47.2 47.8 (average 44.8).
Ablation flags and the K-means cap: see configs/hst_coco.py. Category embeddings: see configs/ssgrl_vg.py.
"""

from configs import base, recipes


def get_config(method: str = "hst"):
    return recipes.paper_scale(base.get_config(method), "vg")
