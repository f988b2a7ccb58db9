"""Paper 002's imbalance method on CUB-200-2011 (312 attributes) (`recipes.imbalance_scale`).

  python scripts/prepare_data.py cub --manual_dir <raw files>        # once
  python -m mlrpl_jax.train --config configs/imbalance_cub.py --workdir runs/imbalance_cub \
      --config.data.known_proportion=0.3

Paper reference (002, ResNet-50, mAP %): `mlrpl_jax.paper_tables.table('imbalance_table3')` (FAL)
to `'imbalance_table6'` (SPL), column 'cub'. Other settings: --config.data.setting=ppl|spl|fal.
The same setting runs the paper's baselines: configs/imbalance_cub.py:an (wan, role, focal, asl,
bce_ls; for role and epr the config sets Cole et al.'s expected number of positives).
"""

from configs import base, recipes


def get_config(method: str = "imbalance"):
    return recipes.imbalance_scale(base.get_config(method), "cub")
