"""SST on VG-200 at paper scale (`recipes.paper_scale`, with the SST script's batch size 8).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/sst_vg.py --workdir runs/sst_vg \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, SST row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 38.8 39.4 41.1 41.8 42.7 42.9 43.0 43.2 43.5 (average 41.8).
Ablation flags: see configs/sst_coco.py. Category embeddings: see configs/ssgrl_vg.py.
"""

from configs import base, recipes


def get_config(method: str = "sst"):
    config = recipes.paper_scale(base.get_config(method), "vg")
    config.train.batch_size = 8  # the authors' SST script (HST uses 32)
    return config
