"""The CPU-scale benchmark in the papers' regime (`recipes.synthetic_transfer`), for every method.

  python -m mlrpl_jax.pretrain --workdir runs/pretrain_synthetic \
      --out weights/synthetic_resnet18_w16.npz           # once: the pretrained backbone
  python -m mlrpl_jax.train --config configs/synthetic_transfer.py:sst --workdir /tmp/sst_tr \
      --config.data.known_proportion=0.3

The argument after ':' names the method (default 'ssgrl'); every method gets the same data,
backbone, frozen stages, optimiser and epoch structure. The study of every method on it (and how
its CPU-scale constants were chosen) is docs/results/synthetic_transfer.md.
"""

from configs import base, recipes


def get_config(method: str = "ssgrl"):
    return recipes.synthetic_transfer(base.get_config(method))
