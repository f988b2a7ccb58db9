"""Smoke config: `plain` with a width-8 ResNet-18 on 32-px synthetic scenes, 2 epochs of 4 steps.

  python -m mlrpl_jax.train --config configs/tiny.py --workdir /tmp/tiny

Used by the tests (end-to-end, resume, kill) and for checking an installation in under a minute.
Its mAP is meaningless (8 steps).
"""

from configs import base


def get_config(method: str = "plain"):
    config = base.get_config(method)
    config.data.synthetic.image_size = 32
    config.data.synthetic.num_classes = 5
    config.data.synthetic.num_train = 64
    config.data.synthetic.num_test = 24
    config.data.synthetic.num_val = 16
    config.data.val_split = "validation"
    config.data.val_fraction = 0.0
    config.data.size_factor = 32 / 448
    config.model.backbone = "resnet18"
    config.model.width = 8
    config.model.avg_pool_2x2 = False
    config.model.frozen_stages = 0
    config.optim.learning_rate = 1e-3
    config.train.num_epochs = 2
    config.train.batch_size = 16
    config.train.eval_batch_size = 16
    config.train.log_every_steps = 1
    config.train.progress_bar = False
    return config
