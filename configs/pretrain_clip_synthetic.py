"""Contrastive pretraining of the small CLIP (`clip.PRESETS['synthetic_rn']`) on the synthetic scenes'
*pretraining world* with generated captions (OpenAI CLIP's role at CPU scale).

  python -m mlrpl_jax.pretrain_clip --workdir runs/pretrain_clip_synthetic \
      --out weights/synthetic_clip_rn.npz

The data are those of configs/pretrain_synthetic.py (the 40-class pretraining world, generation
seed 101, 16,000 train / 1,000 test images of 96 px; the evaluation world of the benchmarks has
10 classes and seed 0, so neither an image nor a class-colour combination is shared), every label
known; each image's caption names up to 5 of its classes ("a photo of a red striped disc and a
blue dotted star.", `methods.clip_pretrain`). The CLIP trains from scratch (both towers, the
temperature), Adam with decoupled weight decay 0.1 on matrices as CLIP's recipe has it (no decay on
biases, gains and the temperature), lr 1e-3 with half an epoch of warm-up and a cosine decay,
batch 128. The test mAP the trainer reports is the zero-shot mAP on the pretraining world's own
test split (prompts "a photo of a <name>."); `mlrpl_jax.pretrain_clip` adds the zero-shot mAP on
the evaluation world. No model selection: the last epoch is exported.

Measured on 2 CPU cores (2026-12-04): 43 min of training while another study shared the cores
(about 140 images/s when alone, i.e. about 25 min for the 12 epochs); in-batch caption retrieval
top-1 0.40 and loss 2.11 at the end (from 0.01 and 4.85). Zero-shot test mAP: 24.8 on the
pretraining world (40 Zipf-frequent classes), 44.1 on the evaluation world of the benchmarks (10
classes; 17.2 with the random initialisation). The figures are in the weights' .json.
"""

from configs import base, recipes


def get_config():
    config = recipes.pretraining_world(
        recipes.synthetic_cpu_scale(base.get_config("clip_pretrain"))
    )
    config.optim.name = "adamw"
    config.optim.learning_rate = 1e-3
    config.optim.weight_decay = 0.1
    config.optim.decay_on = "matrices"
    config.optim.schedule = "cosine"
    config.optim.warmup_epochs = 0.5
    config.train.num_epochs = 12
    config.train.batch_size = 128
    config.train.log_every_steps = 25
    return config
