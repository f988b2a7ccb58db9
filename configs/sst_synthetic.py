"""SST on the synthetic scenes at CPU scale (`recipes.synthetic_cpu_scale`).

  python -m mlrpl_jax.train --config configs/sst_synthetic.py --workdir /tmp/sst_syn \
      --config.data.known_proportion=0.3

The SST schedule is kept in epochs: pseudo labels from epoch 5 of 8. The IST head is scaled down
with the other heads (fc1 32, pairs 64).
"""

from configs import base, recipes


def get_config(method: str = "sst"):
    return recipes.synthetic_cpu_scale(base.get_config(method))
