"""HST with feature blending on Pascal VOC 2007 at paper scale (see configs/hst_fb_coco.py; the
paper reports HST w/ FB on MS-COCO only).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/hst_fb_voc.py --workdir runs/hst_fb_voc \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth
"""

from configs import base, recipes


def get_config(method: str = "hst_fb"):
    return recipes.paper_scale(base.get_config(method), "voc")
