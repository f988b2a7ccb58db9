"""The LargeLoss setup on NUS-WIDE (`recipes.largeloss_setup`): one observed positive per image.

  python scripts/prepare_data.py nus_wide --manual_dir <raw files>        # once
  python -m mlrpl_jax.train --config configs/largeloss_nus.py:ll_ct --workdir runs/llct_nus

The argument after ':' names the method (default 'll_ct'; EPR / ROLE get Cole et al.'s expected
number of positives). Images without a positive label are left out (data.drop_unlabeled).
Delta_rel per LargeLoss scheme and Cole et al.'s linear-init mode for ROLE / AN-LS
(--config.method_config.linear_init_epochs=0 for end to end): see configs/largeloss_coco.py.

Paper reference (TRM-ML Table 2, LargeLoss setup): `mlrpl_jax.paper_tables.table('trm_ml_table2')`.
"""

from configs import base, recipes


def get_config(method: str = "ll_ct"):
    return recipes.largeloss_setup(base.get_config(method), "nus")
