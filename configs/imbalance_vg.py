"""Paper 002's imbalance method and protocol (`recipes.imbalance_scale`) on VG-200, a dataset the
paper does not use (no published number); the same settings as configs/imbalance_coco.py.

  python -m mlrpl_jax.train --config configs/imbalance_vg.py --workdir runs/imbalance_vg \
      --config.data.setting=ppl --config.data.known_proportion=0.3 \
      --config.method_config.beta_rule=all

Settings: pal (default, 60 % known), ppl, spl, fal (--config.data.setting=...); ppl and spl with
--config.method_config.beta_rule=all (the default 'known' gives alpha = 0 there and is refused).
The baselines in the same protocol: configs/imbalance_vg.py:an (wan, focal, asl, bce_ls, ...).

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
    config = recipes.imbalance_scale(base.get_config(method), "vg")
    return recipes.cole_linear_init(recipes.paper002_split(config))
