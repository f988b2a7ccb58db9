"""The CLIP methods at CPU scale on the synthetic scenes, on the small CLIP pretrained here.

  python -m mlrpl_jax.pretrain_clip --workdir runs/pretrain_clip_synthetic \
      --out weights/synthetic_clip_rn.npz                    # once: the pretrained CLIP
  python -m mlrpl_jax.train --config configs/clip_synthetic.py:trm_ml --workdir /tmp/trm \
      --config.data.known_proportion=0.3

The argument after ':' names the method ('dualcoop', 'trm_ml'; default 'trm_ml'), both on
`recipes.synthetic_clip`: the evaluation world of the transfer benchmark (10 classes, 96 px), the
frozen pretrained CLIP ('synthetic_rn', as the papers start from OpenAI's), TRM-ML's optimisation
scaled down, validation-split model selection. TRM-ML's bank top-k follows the token grid (1 of
3 x 3); its stage-2 epoch (2) and pseudo-label weight (0.1) were chosen on the validation split
(`scripts/calibrate_clip.py`, docs/results/clip_validation.md); the paper's reading of full-weight
pseudo labels is `--config.method_config.pseudo_weight=1`.
"""

from configs import base, recipes


def get_config(method: str = "trm_ml"):
    return recipes.synthetic_clip(base.get_config(method))
