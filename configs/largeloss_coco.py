"""The LargeLoss setup on MS-COCO 2014 (`recipes.largeloss_setup`): one observed positive per image.

  python -m mlrpl_jax.train --config configs/largeloss_coco.py:ll_ct --workdir runs/llct_coco

The argument after ':' names the method (default 'll_ct'): the LargeLoss variants ll_r, ll_ct,
ll_cp (its method_config key ll_cp_rule='released_code' runs what the released code does) and the
Cole et al. baselines an, an_ls, wan, epr, role (the config sets COCO's expected number of
positives, 2.9), or any other method of the library on equal terms. LargeLoss's README uses
delta_rel 0.2 % per epoch on COCO (the default, --config.method_config.delta_rel=0.002).

Paper reference (TRM-ML Table 2, LargeLoss setup, COCO mAP %): `mlrpl_jax.paper_tables.table(
'trm_ml_table2')`.
"""

from configs import base, recipes


def get_config(method: str = "ll_ct"):
    return recipes.largeloss_setup(base.get_config(method), "coco")
