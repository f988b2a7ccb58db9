"""HST on MS-COCO 2014 at paper scale (`recipes.paper_scale`; the HST script's batch size is 32).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/hst_coco.py --workdir runs/hst_coco \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, HST row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 70.6 75.8 77.3 78.3 79.0 79.4 79.9 80.2 80.4 (average 77.9).
Category embeddings: see configs/ssgrl_coco.py.

Ablations (HST paper Tables 4, 5, 7), as flags on any hst_* config:
  IST only (no CST)                 --config.method_config.use_inter=False
  CST only (no IST)                 --config.method_config.use_intra=False
  IST without L_ist                 --config.method_config.cooccurrence_weight=0
  IST with statistical co-occurrence --config.method_config.cooccurrence_source=statistics
  CST with instance-level features  --config.method_config.cross_image_source=instances
  CST without L_cst                 --config.method_config.instance_weight=0
                                    --config.method_config.prototype_weight=0
  fixed thresholds (Table 7 grid)   --config.method_config.learn_margins=False
                                    --config.method_config.intra_margin=0.8
                                    --config.method_config.inter_margin=0.8

Deviation: K-means prototypes are fitted on at most 2048 known-positive features per class, a
uniform sample (`prototype_max_per_class`, `methods.hst`); the reference clusters all of them
(COCO "person": ~22k at 50 % known). To cluster more:
--config.method_config.prototype_max_per_class=N (C x N x D floats of memory).
"""

from configs import base, recipes


def get_config(method: str = "hst"):
    return recipes.paper_scale(base.get_config(method), "coco")
