"""TRM-ML* (paper 003 Table 2) on NUS-WIDE with single positive labels, frozen CLIP RN50.

  python scripts/convert_clip.py RN50.pt weights/clip_rn50.npz        # once: OpenAI's weights
  python -m mlrpl_jax.train --config configs/trm_ml_nus_spl.py:largeloss --workdir runs/trm_nus

The argument after ':' names the protocol (`recipes.trm_ml_single_positive`): 'largeloss' (80/20
carve-out of the train split, one positive drawn per image with seed 1200, validation selection)
or 'splc' (a fixed single-label list file as data.partial_labels_file, test-set selection).
Published values: `mlrpl_jax.paper_tables.table('trm_ml_table2')`.
"""

from configs import base, recipes


def get_config(setup: str = "largeloss"):
    return recipes.trm_ml_single_positive(base.get_config("trm_ml"), "nus", setup)
