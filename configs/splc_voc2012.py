"""The SPLC setup on PASCAL VOC 2012 (`recipes.splc_setup`): one observed positive per image, ASL's
training recipe, selection on the test set as the setup does.

  python -m mlrpl_jax.train --config configs/splc_voc2012.py:splc --workdir runs/splc_voc12 \
      --config.data.partial_labels_file=voc_train_singlelabel.txt

VOC 2012 train (5,717) / val (5,823) as the test set. The single positive labels are drawn
uniformly (setting 'spl') unless a list file such as SCPNet's `voc_train_singlelabel.txt` is given
(`partial_labels.load_partial_labels_file`: "image,index index ..." lines, matched by image name).
Schedule (`recipes.splc_setup`): the one-cycle is laid out over 80 epochs of which 31 are run,
as the SPLC code (Zhang et al.'s train.py, after ASL's) does, so the lr ends at 87 % of its peak;
--config.optim.schedule_epochs=0 anneals it over the 31 epochs instead.
"""

from configs import base, recipes


def get_config(method: str = "splc"):
    config = recipes.splc_setup(base.get_config(method), "voc2012")
    if method == "asl":
        config.method_config.unknown = "negative"  # the ASL code base treats missing as negative
    return config
