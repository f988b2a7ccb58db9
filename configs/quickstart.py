"""Quickstart: `plain` (ResNet-18 at width 16 + linear head, partial BCE) on the synthetic scenes.

  python -m mlrpl_jax.train --config configs/quickstart.py --workdir /tmp/qs

From scratch (no pretrained weights), 50% of the training labels known (setting 'pal'), 8 epochs.
Measured on 2 CPU cores: 3 min 49 s including the one-off data preparation; test mAP 70.0 (the
label-frequency baseline, a constant score per class, has mAP 18.1).
"""

from configs import base


def get_config():
    config = base.get_config("plain")
    config.data.name = "synthetic_scenes"
    config.data.synthetic.image_size = 96
    config.data.synthetic.num_classes = 10
    config.data.synthetic.num_train = 3000
    config.data.synthetic.num_test = 1000
    config.data.known_proportion = 0.5
    # The reference augmentation at 96/448 of its sizes: resize 110, crops 110..55, input 96.
    config.data.size_factor = 96 / 448
    config.model.backbone = "resnet18"
    config.model.width = 16
    config.model.avg_pool_2x2 = False  # keep the 3x3 last stage (XLA:CPU is slow on 2x2 maps)
    config.model.frozen_stages = 0  # from scratch: train everything
    config.optim.learning_rate = 1e-3
    config.optim.weight_decay = 1e-4
    config.optim.decay_every_epochs = 6
    config.train.num_epochs = 8
    config.train.batch_size = 32
    config.train.eval_batch_size = 100
    config.train.log_every_steps = 20
    return config
