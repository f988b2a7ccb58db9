"""Pretraining the CPU-scale backbone on the synthetic scenes' *pretraining world* (ImageNet's role).

  python -m mlrpl_jax.pretrain --workdir runs/pretrain_synthetic \
      --out weights/synthetic_resnet18_w16.npz

No ImageNet weights exist for the CPU-scale ResNet-18 at width 16, so the benchmark of the papers'
regime (`recipes.synthetic_transfer`: frozen stem + layer1-3, layer4 and heads fine-tuned) starts
from this backbone instead. The pretraining world is the synthetic-scenes world of 40 classes (the
world is a function of the number of classes: its hues, class frequencies, scene affinities and
co-occurrence pairs differ from the 10-class evaluation world's) drawn with generation seed 101
(the evaluation world uses seed 0, so no image is shared). Its 40 classes cover all 32 (shape,
texture) pairs of the generator, so every evaluation class's shape and texture appear in
pretraining, under other colours and other co-occurrences: the overlap of ImageNet with COCO, in
miniature. Every label is known (setting 'fal'); the loss is BCE over all classes (`plain`).

ResNet-18 at width 16 from scratch, 96-px images, 16,000 train images, 12 epochs, Adam (coupled L2
1e-4), lr 2e-3 with half an epoch of warm-up and a cosine decay, batch 64. The exported weights are
those of the last epoch (no model selection); the pretraining world's own test split (1,000
images) only reports the pretraining accuracy.

Measured on 2 CPU cores (2026-12-04): 13 min for data generation (23 s) and training, 41 s for the
export and the probes. Pretraining-world test: mAP 56.9, OF1 69.4, CF1 42.4 (40 Zipf-frequent
classes, 8 of them told apart from others by colour only). Linear probe on the evaluation world
(10 classes, 3,000 train / 1,000 test images; `mlrpl_jax.pretrain`): test mAP 82.8 with these
weights against 28.9 with a random backbone (the end-to-end from-scratch `plain` run of the
quickstart reaches 70.8 with half the labels). The figures are in the weights' .json.
"""

from configs import base, recipes


def get_config():
    config = recipes.pretraining_world(recipes.synthetic_cpu_scale(base.get_config("plain")))
    config.optim.learning_rate = 2e-3
    config.optim.weight_decay = 1e-4
    config.optim.schedule = "cosine"
    config.optim.warmup_epochs = 0.5
    config.train.num_epochs = 12
    config.train.batch_size = 64
    config.train.log_every_steps = 50
    return config
