"""The LargeLoss setup on PASCAL VOC 2012 (`recipes.largeloss_setup`): one observed positive per image.

  python -m mlrpl_jax.train --config configs/largeloss_voc2012.py:ll_ct --workdir runs/llct_voc12

VOC 2012 as Cole et al. format it: the official train split (5,717 images) carved 80/20 into
train / validation with seed 1200, the official val split (5,823) as the test set; a class is
positive where a non-difficult object of it is present. The argument after ':' names the method
(default 'll_ct'; EPR / ROLE get VOC's expected 1.5 positives per image).
LargeLoss's clean-rate decrease Delta_rel per scheme is the LargeLoss first author's follow-up code's
(youngwk/BridgeGapExplanationPAMC config.py): LL-R 0.5 %, LL-Ct 0.2 %, LL-Cp 0.1 % per epoch (the
method defaults); LargeLoss's README gives only the range {0.1, ..., 0.5} %, e.g.
--config.method_config.delta_rel=0.002 for 0.2 % with any scheme.
ROLE and AN-LS run Cole et al.'s linear-init mode, as their code does for these two losses and
their published rows come from it (`recipes.cole_linear_init`): 25 epochs of the linear head on
the frozen backbone at lr 1e-3 (ROLE) / 1e-4 (AN-LS), then 10 epochs of fine-tuning at 1e-5, no
early stop; both phases at this setup's batch 16 (theirs: per loss and dataset, 8 or 16).
Their end-to-end mode: --config.method_config.linear_init_epochs=0.

Paper reference (TRM-ML Table 2, LargeLoss setup, VOC 2012): `mlrpl_jax.paper_tables.table(
'trm_ml_table2')`.
"""

from configs import base, recipes


def get_config(method: str = "ll_ct"):
    return recipes.largeloss_setup(base.get_config(method), "voc2012")
