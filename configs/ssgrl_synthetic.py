"""SSGRL with partial BCE on the synthetic scenes at CPU scale (`recipes.synthetic_cpu_scale`).

  python -m mlrpl_jax.train --config configs/ssgrl_synthetic.py --workdir /tmp/ssgrl_syn \
      --config.data.known_proportion=0.3

The same setting with another method, for comparisons on equal terms:

  python -m mlrpl_jax.train --config configs/ssgrl_synthetic.py:plain --workdir /tmp/plain_syn

There is no paper number for synthetic data; measured figures (test mAP, 3 seeds) are in the SSGRL
issue's closing note and the README.
"""

from configs import base, recipes


def get_config(method: str = "ssgrl"):
    return recipes.synthetic_cpu_scale(base.get_config(method))
