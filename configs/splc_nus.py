"""The SPLC setup on NUS-WIDE (`recipes.splc_setup`): one observed positive per image, ASL's
training recipe, selection on the test set as the setup does.

  python scripts/prepare_data.py nus_wide --manual_dir <raw files>        # once
  python -m mlrpl_jax.train --config configs/splc_nus.py:splc --workdir runs/splc_nus \
      --config.data.partial_labels_file=nus_train_singlelabel.txt

The setup's list file (`nus_train_singlelabel.txt`, 119,103 images of its re-crawl) is matched by
image name; every image of your train split must be listed (images without a positive are left
out by data.drop_unlabeled; a re-crawl with images the list lacks needs the list of that re-crawl).
Without a list file the single positives are drawn uniformly.
Schedule (`recipes.splc_setup`): the one-cycle is laid out over 80 epochs of which 31 are run,
as the SPLC code (Zhang et al.'s train.py, after ASL's) does, so the lr ends at 87 % of its peak;
--config.optim.schedule_epochs=0 anneals it over the 31 epochs instead.
"""

from configs import base, recipes


def get_config(method: str = "splc"):
    config = recipes.splc_setup(base.get_config(method), "nus")
    if method == "asl":
        config.method_config.unknown = "negative"  # the ASL code base treats missing as negative
    return config
