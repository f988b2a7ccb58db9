"""The LargeLoss setup on PASCAL VOC 2012 (`recipes.largeloss_setup`): one observed positive per image.

  python -m mlrpl_jax.train --config configs/largeloss_voc2012.py:ll_ct --workdir runs/llct_voc12

VOC 2012 as Cole et al. format it: the official train split (5,717 images) carved 80/20 into
train / validation with seed 1200, the official val split (5,823) as the test set; a class is
positive where a non-difficult object of it is present. The argument after ':' names the method
(default 'll_ct'; EPR / ROLE get VOC's expected 1.5 positives per image). LargeLoss's README uses
delta_rel 0.2 % per epoch (--config.method_config.delta_rel=0.002, the default).

Paper reference (TRM-ML Table 2, LargeLoss setup, VOC 2012): `mlrpl_jax.paper_tables.table(
'trm_ml_table2')`.
"""

from configs import base, recipes


def get_config(method: str = "ll_ct"):
    return recipes.largeloss_setup(base.get_config(method), "voc2012")
