"""DSRB on MS-COCO 2014 at paper scale (`recipes.paper_scale`, with the DSRB script's batch size 8).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/dsrb_coco.py --workdir runs/dsrb_coco \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (DSRB Table 1, DSRB row; VOC all-point mAP %) at 10%, 20%, ..., 90% known labels:
72.5 76.0 77.6 78.7 79.6 79.8 80.0 80.5 80.8 (average 78.4).
Category embeddings: see configs/ssgrl_coco.py.

Ablations (DSRB Table 2), as flags on any dsrb_* config:
  IPRB only                  --config.method_config.use_pprb=False
  PPRB only                  --config.method_config.use_iprb=False
  fixed alpha / beta (0.5)   --config.method_config.learn_coefficients=False
  PPRB at vector level (RV)  --config.method_config.use_iprb=False
                             --config.method_config.prototypes=kmeans
  SSGRL w/ IP-Mixup          --config.method_config.use_iprb=False
                             --config.method_config.use_pprb=False
                             --config.method_config.contrastive_weight=0
                             --config.method_config.mixup=image
  SSGRL w/ FM-Mixup          (as above with) --config.method_config.mixup=feature_map
  Ours w/ SA                  --config.model.category_features=sa
  "Ours w/ RV-Mixup" is SARB: configs/sarb_*.py.
"""

from configs import base, recipes


def get_config(method: str = "dsrb"):
    config = recipes.paper_scale(base.get_config(method), "coco")
    config.train.batch_size = 8  # the authors' DSRB script (HST uses 32)
    return config
