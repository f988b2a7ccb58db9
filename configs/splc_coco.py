"""The SPLC setup on MS-COCO 2014 (`recipes.splc_setup`): one observed positive per image, ASL's
training recipe, selection on the test set as the setup does.

  python -m mlrpl_jax.train --config configs/splc_coco.py:splc --workdir runs/splc_coco

The argument after ':' names the method (default 'splc'): splc, hill, or any other method on equal
terms (e.g. asl with unknown entries as negatives, an). SPLC's README uses tau 0.65 for COCO with
75 % of the labels left (--config.method_config.tau=0.65 with that label file).

Paper reference (TRM-ML Table 2, SPLC setup): `mlrpl_jax.paper_tables.table('trm_ml_table2')`.
Schedule (`recipes.splc_setup`): the one-cycle is laid out over 80 epochs of which 31 are run,
as the SPLC code (Zhang et al.'s train.py, after ASL's) does, so the lr ends at 87 % of its peak;
--config.optim.schedule_epochs=0 anneals it over the 31 epochs instead.
"""

from configs import base, recipes


def get_config(method: str = "splc"):
    config = recipes.splc_setup(base.get_config(method), "coco")
    if method == "asl":
        config.method_config.unknown = "negative"  # the ASL code base treats missing as negative
    return config
