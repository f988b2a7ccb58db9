"""DSRB on the synthetic scenes at CPU scale (`recipes.synthetic_cpu_scale`).

  python -m mlrpl_jax.train --config configs/dsrb_synthetic.py --workdir /tmp/dsrb_syn \
      --config.data.known_proportion=0.3

The schedule is kept in epochs: blending and prototypes from epoch 5 of 8.
"""

from configs import base, recipes


def get_config(method: str = "dsrb"):
    return recipes.synthetic_cpu_scale(base.get_config(method))
