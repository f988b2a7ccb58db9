"""Shared test helpers: a tiny end-to-end config on a tiny synthetic dataset."""

from configs import base


def tiny_run_config(data_dir: str, **overrides):
    """plain + ResNet-18 (width 8) on 32-px synthetic scenes, 2 epochs of 4 steps of 16 images."""
    config = base.get_config("plain")
    config.data.data_dir = str(data_dir)
    config.data.synthetic.image_size = 32
    config.data.synthetic.num_classes = 5
    config.data.synthetic.num_train = 64
    config.data.synthetic.num_test = 24
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
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config
