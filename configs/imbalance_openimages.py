"""Paper 002's imbalance method on Open Images V6 (`recipes.imbalance_scale`): the boxable classes'
human-verified labels as they are (natively partial: setting 'fal' keeps every verified label, the
rest stay unknown), selection on the official validation split, test mAP over verified entries.

  python scripts/prepare_data.py open_images/boxable --manual_dir <raw files>   # once; resumable
  python -m mlrpl_jax.train --config configs/imbalance_openimages.py --workdir runs/imbalance_oi

Paper reference (002, Fig. 2, a bar chart without printed values): the imbalance method about 4
mAP points above BCE; the same comparison runs the figure's baselines:
configs/imbalance_openimages.py:plain (BCE), :bce_ls, :focal, :asl.
ROLE is not among the figure's baselines; run as :role it gets Cole et al.'s linear-init mode
(`recipes.cole_linear_init`; end to end: --config.method_config.linear_init_epochs=0).
"""

from configs import base, recipes


def get_config(method: str = "imbalance"):
    config = recipes.imbalance_scale(base.get_config(method), "openimages")
    return recipes.cole_linear_init(recipes.paper002_split(config))
