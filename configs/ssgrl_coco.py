"""SSGRL with partial BCE on MS-COCO 2014 at paper scale (ResNet-101, 448 px, batch 32; `recipes.paper_scale`).

Reproduces the paper's protocol, including its model selection on the test set
(`train.select_on='test'`); --config.train.select_on=val --config.data.val_fraction=0.1
selects on a seeded carve-out of the train split instead.

  python -m mlrpl_jax.train --config configs/ssgrl_coco.py --workdir runs/ssgrl_coco \
      --config.data.known_proportion=0.5 --config.model.backbone_weights=weights/resnet101.pth

Paper reference (HST paper Table 1, SSGRL row; VOC all-point mAP %) at 10%, 20%, ..., 90% known
labels: 62.5 70.5 73.2 74.5 76.3 76.5 77.1 77.9 78.4 (average 74.1).
Category embeddings: pass the reference's 300-d GloVe vectors (the authors' `vectors.npy`) with
--config.data.label_embeddings (a .npy (C, 300) or a GloVe .txt); without them (the default, and
the command above) a deterministic random orthonormal fallback is used
(`mlrpl_jax.data.label_semantics`): fc2 can still learn free per-class queries, but the semantic
prior is lost and the run need not reproduce the paper. This applies to every SSGRL-family config
(ssgrl, sst, hst, hst_fb, sarb, dsrb).
"""

from configs import base, recipes


def get_config(method: str = "ssgrl"):
    return recipes.paper_scale(base.get_config(method), "coco")
