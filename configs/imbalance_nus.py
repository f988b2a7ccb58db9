"""Paper 002's imbalance method on NUS-WIDE (`recipes.imbalance_scale`).

  python scripts/prepare_data.py nus_wide --manual_dir <raw files>        # once
  python -m mlrpl_jax.train --config configs/imbalance_nus.py --workdir runs/imbalance_nus \
      --config.data.known_proportion=0.3

Paper reference (002, ResNet-50, mAP %): `mlrpl_jax.paper_tables.table('imbalance_table3')` (FAL)
to `'imbalance_table6'` (SPL), column 'nus'. Other settings: --config.data.setting=ppl|spl|fal.
The same setting runs the paper's baselines: configs/imbalance_nus.py:an (wan, role, focal, asl,
bce_ls; for role and epr the config sets Cole et al.'s expected number of positives).
"""

from configs import base, recipes


def get_config(method: str = "imbalance"):
    return recipes.imbalance_scale(base.get_config(method), "nus")
