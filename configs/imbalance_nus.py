"""Paper 002's imbalance method on NUS-WIDE (`recipes.imbalance_scale`).

  python scripts/prepare_data.py nus_wide --manual_dir <raw files>        # once
  python -m mlrpl_jax.train --config configs/imbalance_nus.py --workdir runs/imbalance_nus \
      --config.data.known_proportion=0.3

Paper reference (002, ResNet-50, mAP %): `mlrpl_jax.paper_tables.table('imbalance_table3')` (FAL)
to `'imbalance_table6'` (SPL), column 'nus'. Other settings: --config.data.setting=fal, or ppl|spl
with --config.method_config.beta_rule=all (the default 'known' gives alpha = 0 there and is
refused).
The same setting runs the paper's baselines: configs/imbalance_nus.py:an (wan, role, focal, asl,
bce_ls; for role and epr the config sets Cole et al.'s expected number of positives).

Data as paper 002 counts it (§V-A, Table II; `recipes.paper002_split`): the official train
split, no carve-out, only images with a positive label (data.drop_unlabeled); the paper names no
model-selection rule, so the best checkpoint is chosen on the test set as in the other paper
reproductions, and results.json also holds the last epoch's metrics. The protocol's 80/20 carve-out
with validation selection: --config.data.val_fraction=0.2 --config.train.select_on=val.
ROLE (:role) runs Cole et al.'s linear-init mode, as paper 002 ran it with "the authors' source code
and training methods" (`recipes.cole_linear_init`: 25 epochs of the head on the frozen backbone
at lr 1e-3, then the 10 epochs; end to end: --config.method_config.linear_init_epochs=0).
"""

from configs import base, recipes


def get_config(method: str = "imbalance"):
    config = recipes.imbalance_scale(base.get_config(method), "nus")
    return recipes.cole_linear_init(recipes.paper002_split(config))
