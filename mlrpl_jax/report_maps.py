"""Figures that need a trained model: an image-specific co-occurrence matrix (HST Fig. 4 style) and
class attention maps on sample test images.

  python -m mlrpl_jax.report_maps RUN_DIR --out DIR [--checkpoint best|latest] [--images 4]

The run's config is rebuilt from its config.json (the method's `base.get_config` with every saved
value), the checkpoint is restored (no pretrained-weight file needed) and the first test images
are scored in inference mode. Written to DIR:

* `cooccurrence.png`: for SST / HST (models with the IST pair head), the learned image-specific
  co-occurrence S[i, j] (`ops.pseudo_labels.cooccurrence_matrix` of the pair logits) of each
  sample image, beside the image;
* `attention.png`: for SSGRL-family models (aux 'attention' (B, H, W, C)), each sample image with
  the attention maps of its 3 highest-scoring classes, upsampled to the image.
"""

import argparse
import json
import os
from collections.abc import Sequence

import jax
import numpy as np


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def load_config(run_dir: str):
    """The run's config: `configs.base.get_config(method)` updated with every value of its
    config.json (locked, as in training)."""
    from configs import base

    with open(os.path.join(run_dir, "config.json")) as f:
        saved = json.load(f)
    config = base.get_config(saved["method"])
    for key, value in _flatten(saved).items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def sample_outputs(run_dir: str, which: str = "best", num_images: int = 4):
    """(config, class names, uint8 images (n, S, S, 3), logits (n, C), aux dict of arrays) of the
    first `num_images` test images under the restored `which` checkpoint."""
    from mlrpl_jax import checkpointing, trainer
    from mlrpl_jax.data import pipeline
    from mlrpl_jax.methods import base

    config = load_config(run_dir)
    exp = trainer.setup(config, pretrained=False)
    ckpt = checkpointing.Checkpointer(run_dir, max_to_keep=2, keep_best=True)
    state, _ = ckpt.restore_state(exp.state, which=which)
    ckpt.close()
    state = jax.device_get(state)
    batch = next(pipeline.eval_batches(config.data, exp.test_source, num_images))
    images = batch["image"][:num_images]
    method = exp.method
    x = method.normalize_images(config, images)
    logits, aux = base.apply_eval(exp.model, state.params, state.batch_stats, x)
    aux = {k: np.asarray(v) for k, v in aux.items() if hasattr(v, "shape")}
    return config, exp.train_source.class_names, images, np.asarray(logits), aux


def plot_cooccurrence(images, pair_logits, class_names, path: str, dpi: int = 110) -> None:
    """Each image beside its learned co-occurrence matrix S (C, C), saved at `dpi`."""
    from mlrpl_jax.report import pyplot

    plt = pyplot()

    from mlrpl_jax.ops import pseudo_labels as pl

    c = len(class_names)
    s = np.asarray(pl.cooccurrence_matrix(pair_logits, c))
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(7, 3.2 * n), squeeze=False)
    for b in range(n):
        axes[b][0].imshow(images[b])
        axes[b][0].axis("off")
        im = axes[b][1].imshow(s[b], vmin=0, vmax=1, cmap="viridis")
        axes[b][1].set_xticks(range(c), class_names, rotation=90, fontsize=6)
        axes[b][1].set_yticks(range(c), class_names, fontsize=6)
        fig.colorbar(im, ax=axes[b][1], fraction=0.046)
    axes[0][1].set_title("learned co-occurrence S[i, j]", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_attention(
    images, logits, attention, class_names, path: str, top: int = 3, dpi: int = 110
) -> None:
    """Each image and the attention maps (upsampled) of its `top` highest-scoring classes."""
    from mlrpl_jax.report import pyplot

    plt = pyplot()

    n, size = len(images), images.shape[1]
    top = min(top, logits.shape[1])
    fig, axes = plt.subplots(n, top + 1, figsize=(2.4 * (top + 1), 2.4 * n), squeeze=False)
    for b in range(n):
        axes[b][0].imshow(images[b])
        axes[b][0].set_title("image", fontsize=8)
        for k, c in enumerate(np.argsort(-logits[b])[:top], start=1):
            a = np.asarray(jax.image.resize(attention[b, :, :, c], (size, size), "bilinear"))
            axes[b][k].imshow(images[b])
            axes[b][k].imshow(a, alpha=0.55, cmap="jet")
            prob = 1 / (1 + np.exp(-logits[b, c]))
            axes[b][k].set_title(f"{class_names[c]} ({prob:.2f})", fontsize=8)
        for ax in axes[b]:
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def report_maps(
    run_dir: str, out: str, which: str = "best", num_images: int = 4, dpi: int = 110
) -> list[str]:
    """Writes the figures the run's model supports; returns their paths."""
    _, names, images, logits, aux = sample_outputs(run_dir, which, num_images)
    os.makedirs(out, exist_ok=True)
    written = []
    if "pair_logits" in aux:
        written.append(os.path.join(out, "cooccurrence.png"))
        plot_cooccurrence(images, aux["pair_logits"], names, written[-1], dpi=dpi)
    if "attention" in aux:
        written.append(os.path.join(out, "attention.png"))
        plot_attention(images, logits, aux["attention"], names, written[-1], dpi=dpi)
    if not written:
        print(f"[report_maps] {run_dir}: the model has neither pair logits nor attention maps.")
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--out", required=True)
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the PNGs")
    args = parser.parse_args(argv)
    for path in report_maps(args.run_dir, args.out, args.checkpoint, args.images, args.dpi):
        print(path)


if __name__ == "__main__":
    main()
