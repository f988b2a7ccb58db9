"""DualCoOp on VOC 2007, partial labels, frozen CLIP RN101.

  python scripts/convert_clip.py RN101.pt weights/clip_rn101.npz      # once: OpenAI's weights
  python -m mlrpl_jax.train --config configs/dualcoop_voc.py:official --workdir runs/dualcoop_voc \
      --config.data.known_proportion=0.1

The argument after ':' picks the variant: 'official' (sunxm2357/DualCoOp: its recipe,
`recipes.dualcoop_official_scale`) or 'author' (the TRM-ML author's DualCoOp framework, TRM-ML's
baseline: `recipes.trm_ml_scale`). Published rows: `mlrpl_jax.paper_tables.rows('voc')` (DualCoOp,
DualCoOp*). Test-set selection as the papers report (a paper reproduction).
"""

from configs import base, recipes


def get_config(variant: str = "official"):
    config = base.get_config("dualcoop")
    if variant == "official":
        return recipes.dualcoop_official_scale(config, "voc")
    if variant == "author":
        return recipes.trm_ml_scale(config, "voc")
    raise ValueError(f"variant must be 'official' or 'author', got {variant!r}.")
