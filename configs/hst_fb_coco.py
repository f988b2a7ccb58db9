"""HST with feature blending ("HST w/ FB", HST paper §4.4) on MS-COCO 2014 at paper scale.

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/hst_fb_coco.py --workdir runs/hst_fb_coco \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 8, MS-COCO only): average mAP over 10%..90% known labels 78.7
(HST 77.9, SARB 77.9). The paper gives no further details and no code; see `methods/hst.py`.
Blending flags as in configs/dsrb_coco.py (use_iprb, use_pprb, learn_coefficients), HST's as in
configs/hst_coco.py. The blending coefficients are per class, as DSRB's vectors (eq. 8, 12; the HST
paper gives no detail): --config.method_config.per_class_coefficients=False for the single scalars
of the released SARB/DSRB code.
"""

from configs import base, recipes


def get_config(method: str = "hst_fb"):
    return recipes.paper_scale(base.get_config(method), "coco")
