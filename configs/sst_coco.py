"""SST on MS-COCO 2014 at paper scale (`recipes.paper_scale`, with the SST script's batch size 8).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/sst_coco.py --workdir runs/sst_coco \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, SST row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 68.1 73.5 75.9 77.3 78.1 78.9 79.2 79.6 79.9 (average 76.7).
Category embeddings: see configs/ssgrl_coco.py.

Ablations, as flags on any sst_* config: --config.method_config.use_inter=False (intra-image
transfer only), use_intra=False (cross-image only), cooccurrence_weight=0 (without L_ist),
cooccurrence_source=statistics, threshold_schedule=fixed (with intra_threshold / inter_threshold),
threshold_rule=paper (the indicator of eq. 4 and 8 instead of the code's two-step rule).
"""

from configs import base, recipes


def get_config(method: str = "sst"):
    config = recipes.paper_scale(base.get_config(method), "coco")
    config.train.batch_size = 8  # the authors' SST script (HST uses 32)
    return config
