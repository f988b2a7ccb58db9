"""Paper 002's imbalance method on MS-COCO 2014 (`recipes.imbalance_scale`).

  python -m mlrpl_jax.train --config configs/imbalance_coco.py --workdir runs/imbalance_coco \
      --config.data.known_proportion=0.3

Paper reference (002, ResNet-50, mAP %): FAL 81.1 (Table III); PAL_0.3 / 0.6 / 0.9: 65.6 / 76.3 /
81.0 (Table IV); the PPL and SPL rows: `mlrpl_jax.paper_tables.table('imbalance_table5')` and
`'imbalance_table6'`. Other settings: --config.data.setting=fal, or ppl|spl with
--config.method_config.beta_rule=all (the default 'known' gives alpha = 0 there and is refused).

Ablations (paper Table VII): --config.method_config.use_alpha_beta=False, use_d=False,
use_penalty=False, use_q=False. Readings where the paper contradicts itself (the defaults and why:
`mlrpl_jax/methods/imbalance.py`): eq. 12 and eq. 9 as typeset are
--config.method_config.alpha_beta_on=printed, d_rule=formula; eq. 10 as typeset
penalty_rule=formula. The same setting runs the paper's baselines: configs/imbalance_coco.py:an
(wan, role, focal, asl, bce_ls; for role and epr the config sets Cole et al.'s expected number of
positives of COCO, 2.9).

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
    config = recipes.imbalance_scale(base.get_config(method), "coco")
    return recipes.cole_linear_init(recipes.paper002_split(config))
