"""HST on MS-COCO 2014 at paper scale (`recipes.paper_scale`; the HST script's batch size is 32).

  python -m mlrpl_jax.train --config configs/hst_coco.py --workdir runs/hst_coco \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, HST row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 70.6 75.8 77.3 78.3 79.0 79.4 79.9 80.2 80.4 (average 77.9).
Category embeddings: see configs/ssgrl_coco.py.
"""

from configs import base, recipes


def get_config(method: str = "hst"):
    return recipes.paper_scale(base.get_config(method), "coco")
