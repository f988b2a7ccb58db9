"""HST on the synthetic scenes at CPU scale (`recipes.synthetic_cpu_scale`).

  python -m mlrpl_jax.train --config configs/hst_synthetic.py --workdir /tmp/hst_syn \
      --config.data.known_proportion=0.3

The schedule is kept in epochs (pseudo labels and prototypes from epoch 5 of 8); the IST head is
scaled down with the other heads (fc1 32, pairs 64), K-means keeps at most 512 features per class.
"""

from configs import base, recipes


def get_config(method: str = "hst"):
    return recipes.synthetic_cpu_scale(base.get_config(method))
