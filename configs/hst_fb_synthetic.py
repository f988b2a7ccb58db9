"""HST with feature blending on the synthetic scenes at CPU scale (`recipes.synthetic_cpu_scale`).

  python -m mlrpl_jax.train --config configs/hst_fb_synthetic.py --workdir /tmp/hst_fb_syn \
      --config.data.known_proportion=0.3

The schedule is kept in epochs (pseudo labels, prototypes and blending from epoch 5 of 8).
"""

from configs import base, recipes


def get_config(method: str = "hst_fb"):
    return recipes.synthetic_cpu_scale(base.get_config(method))
