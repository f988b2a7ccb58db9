"""The short run in which every method must learn: tests/test_methods_learn.py runs it, and
scripts/learning_margins.py measures, once, across seeds, the margin by which each method beats the
label-frequency baseline (docs/results/learning_margins.json).

  python -m mlrpl_jax.train --config configs/learning_check.py:sst --workdir /tmp/sst_check

The argument after ':' names the method (default 'plain'). The transfer benchmark's regime
(`recipes.synthetic_transfer`: the pretrained 96-px backbone, stem and layer1-3 frozen, layer4
and the heads trained; the CLIP methods `recipes.synthetic_clip` on the frozen small CLIP) on an
eighth of its data (384 train / 128 validation / 256 test images) for 3 epochs instead of 8, at
50 % known labels, with every method's mechanism switched on from epoch 1 instead of 2: label
transfer and pseudo labels, blending, prototypes (recomputed every epoch), Curriculum Labeling's
rounds (every epoch), TRM-ML's stage 2, SPLC's pseudo positives. The learning rate drops x0.1
after epoch 2 of 3. Model selection on the validation split, as everywhere.
"""

from configs import base, recipes

CLIP_METHODS = ("dualcoop", "trm_ml")


def get_config(method: str = "plain"):
    config = base.get_config(method)
    if method in CLIP_METHODS:
        config = recipes.synthetic_clip(config)
    else:
        config = recipes.synthetic_transfer(config)
    synthetic = config.data.synthetic
    synthetic.num_train, synthetic.num_val, synthetic.num_test = 384, 128, 256
    config.data.known_proportion = 0.5
    config.train.num_epochs = 3
    config.train.eval_batch_size = 64
    config.optim.decay_every_epochs = 2
    mc = config.method_config
    starts = ("generate_label_epoch", "blend_epoch", "first_round", "stage2_epoch", "change_epoch")
    for key in (*starts, "prototype_every_epochs", "round_every"):
        if key in mc:
            mc[key] = 1
    return config
