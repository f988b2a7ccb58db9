"""Paper 002's imbalance method and protocol (`recipes.imbalance_scale`) on VOC 2007, a dataset the
paper does not use (no published number); the same settings as configs/imbalance_coco.py.

  python -m mlrpl_jax.train --config configs/imbalance_voc.py --workdir runs/imbalance_voc \
      --config.data.setting=ppl --config.data.known_proportion=0.3

Settings: pal (default, 60 % known), ppl, spl, fal (--config.data.setting=...). The baselines in
the same protocol: configs/imbalance_voc.py:an (wan, focal, asl, bce_ls, ...).
"""

from configs import base, recipes


def get_config(method: str = "imbalance"):
    return recipes.imbalance_scale(base.get_config(method), "voc")
