"""SST on Pascal VOC 2007 at paper scale (`recipes.paper_scale`, with the SST script's batch size 8).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/sst_voc.py --workdir runs/sst_voc \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, SST row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 81.5 89.0 90.3 91.0 91.6 92.0 92.5 92.6 92.7 (average 90.4).
Ablation flags: see configs/sst_coco.py. Category embeddings: see configs/ssgrl_voc.py.
"""

from configs import base, recipes


def get_config(method: str = "sst"):
    config = recipes.paper_scale(base.get_config(method), "voc")
    config.train.batch_size = 8  # the authors' SST script (HST uses 32)
    return config
