"""The LargeLoss setup on MS-COCO 2014 (`recipes.largeloss_setup`): one observed positive per image.

  python -m mlrpl_jax.train --config configs/largeloss_coco.py:ll_ct --workdir runs/llct_coco

The argument after ':' names the method (default 'll_ct'): the LargeLoss variants ll_r, ll_ct,
ll_cp (its method_config key ll_cp_rule='released_code' runs what the released code does) and the
Cole et al. baselines an, an_ls, wan, epr, role (the config sets COCO's expected number of
positives, 2.9), or any other method of the library on equal terms.
LargeLoss's clean-rate decrease Delta_rel per scheme is the LargeLoss first author's follow-up code's
(youngwk/BridgeGapExplanationPAMC config.py): LL-R 0.5 %, LL-Ct 0.2 %, LL-Cp 0.1 % per epoch (the
method defaults); LargeLoss's README gives only the range {0.1, ..., 0.5} %, e.g.
--config.method_config.delta_rel=0.002 for 0.2 % with any scheme.
ROLE and AN-LS run Cole et al.'s linear-init mode, as their code does for these two losses and
their published rows come from it (`recipes.cole_linear_init`): 25 epochs of the linear head on
the frozen backbone at lr 1e-3 (ROLE) / 1e-4 (AN-LS), then 10 epochs of fine-tuning at 1e-5, no
early stop; both phases at this setup's batch 16 (theirs: per loss and dataset, 8 or 16).
Their end-to-end mode: --config.method_config.linear_init_epochs=0.

Paper reference (TRM-ML Table 2, LargeLoss setup, COCO mAP %): `mlrpl_jax.paper_tables.table(
'trm_ml_table2')`.
"""

from configs import base, recipes


def get_config(method: str = "ll_ct"):
    return recipes.largeloss_setup(base.get_config(method), "coco")
