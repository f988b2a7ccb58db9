"""Figures that need a trained model: an image-specific co-occurrence matrix (HST Fig. 4 style) and
class attention maps on sample test images.

  python -m mlrpl_jax.report_maps RUN_DIR --out DIR [--checkpoint best|latest] [--images 4]

The run's config is rebuilt from its config.json (the method's `base.get_config` with every saved
value), the checkpoint is restored (no pretrained-weight file needed) and the first test images
are scored in inference mode. Written to DIR, each figure titled with the method, dataset, label
setting, seed and checkpoint (`best` or `latest`, and its step):

* `cooccurrence.png`: for SST / HST (models with the IST pair head), the learned image-specific
  co-occurrence S[i, j] (`ops.pseudo_labels.cooccurrence_matrix` of the pair logits) of each
  sample image, beside the image;
* `attention.png`: for SSGRL-family models (aux 'attention' (B, H, W, C)), each sample image with
  the attention maps of its 3 highest-scoring classes, upsampled to the image.

Mistakes in what is asked (RUN_DIR missing or not a run directory, no such checkpoint in it, a
damaged config.json, `--out` naming a file, a method whose model has neither output, e.g. `plain`
or a loss baseline) print one `error: ...` line naming the directory and the fix, and exit with
status 2. They are found before DIR is created (the model's outputs are checked by shape, before
its checkpoint is restored), so a failed command writes nothing.
"""

import argparse
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from mlrpl_jax import cli
from mlrpl_jax.errors import InputError, MissingFileError, RunDirError

# The model outputs (aux entries) that figures are drawn from.
MAP_OUTPUTS = ("pair_logits", "attention")
# Where `checkpointing.Checkpointer` keeps each kind of checkpoint, as <dir>/<step>/.
CHECKPOINT_DIRS = {"best": "best", "latest": "checkpoints"}


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def checkpoint_steps(run_dir: str, which: str) -> list[int]:
    """Steps of the complete `which` ('best' or 'latest') checkpoints of `run_dir`, sorted (orbax
    names a complete one <step>/, an unfinished one <step>.orbax-checkpoint-tmp-...)."""
    folder = os.path.join(run_dir, CHECKPOINT_DIRS[which])
    if not os.path.isdir(folder):
        return []
    return sorted(
        int(d) for d in os.listdir(folder) if d.isdigit() and os.path.isdir(os.path.join(folder, d))
    )


def check_run_dir(run_dir: str, which: str) -> None:
    """Raises a UserError unless `run_dir` holds a config.json and a `which` checkpoint."""
    train = "give a directory written by `python -m mlrpl_jax.train --workdir DIR`"
    if not os.path.exists(run_dir):
        raise MissingFileError(f"run directory {run_dir} does not exist; {train}.")
    if not os.path.isdir(run_dir):
        raise InputError(f"{run_dir} is a file, not a run directory; {train}.")
    if not os.path.exists(os.path.join(run_dir, "config.json")):
        raise RunDirError(f"{run_dir} is not a run directory (no config.json); {train}.")
    if checkpoint_steps(run_dir, which):
        return
    other = "latest" if which == "best" else "best"
    if checkpoint_steps(run_dir, other):
        raise RunDirError(
            f"{run_dir} has no {which} checkpoint ({CHECKPOINT_DIRS[which]}/<step>/); "
            f"pass --checkpoint {other} to draw the maps of its {other} one."
        )
    raise RunDirError(
        f"{run_dir} has no checkpoint yet (neither best/<step>/ nor checkpoints/<step>/): train it "
        "first (`python -m mlrpl_jax.train --config ... --workdir "
        f"{run_dir}`), or wait until its first epoch ends."
    )


def load_config(run_dir: str):
    """The run's config: `configs.base.get_config(method)` updated with every value of its
    config.json (locked, as in training). A damaged config.json is an InputError."""
    from configs import base
    from mlrpl_jax import report

    path = os.path.join(run_dir, "config.json")
    saved = report.read_json(path, "restore it from the run's sweep or training command")
    config = base.get_config(report.field(saved, "method", path))
    for key, value in _flatten(saved).items():
        try:
            node = config
            *parents, leaf = key.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        except (KeyError, AttributeError, TypeError) as e:
            raise InputError(
                f"{path}: cannot set '{key}' = {value!r} on the {saved['method']} config ({e}); "
                "the run was written by another version of mlrpl_jax, or the file is damaged."
            ) from None
    return config


class Samples(NamedTuple):
    """What `sample_outputs` returns."""

    config: Any  # the run's config
    class_names: Sequence[str]
    images: np.ndarray  # uint8 (n, S, S, 3)
    logits: np.ndarray  # (n, C)
    aux: dict[str, np.ndarray]  # the model's array outputs besides the logits
    step: int  # of the restored checkpoint


def sample_outputs(run_dir: str, which: str = "best", num_images: int = 4) -> Samples:
    """The model outputs of the first `num_images` test images under the restored `which`
    checkpoint.

    Raises:
        RunDirError: the model has none of `MAP_OUTPUTS` (checked before restoring), or the
        checkpoint cannot be restored into it.
    """
    import jax

    from mlrpl_jax import checkpointing, trainer
    from mlrpl_jax.data import pipeline
    from mlrpl_jax.methods import base

    config = load_config(run_dir)
    exp = trainer.setup(config, pretrained=False)
    batch = next(pipeline.eval_batches(config.data, exp.test_source, num_images))
    images = batch["image"][:num_images]
    x = exp.method.normalize_images(config, images)

    def outputs(state):
        return base.apply_eval(exp.model, state.params, state.batch_stats, x)

    if not set(MAP_OUTPUTS) & set(jax.eval_shape(outputs, exp.state)[1]):
        raise RunDirError(
            f"{run_dir}: the {config.method} model has no maps to draw; report_maps draws the "
            "learned co-occurrence of models with the IST pair head (sst, hst, hst_fb) and the "
            "class attention of the SSGRL family (ssgrl, sst, hst, hst_fb, sarb, dsrb). Use "
            "`python -m mlrpl_jax.report` for this run's table and learning curves."
        )
    ckpt = checkpointing.Checkpointer(run_dir, max_to_keep=2, keep_best=which == "best")
    try:
        state, step = ckpt.restore_state(exp.state, which=which)
    except (ValueError, KeyError, OSError) as e:
        raise RunDirError(
            f"cannot restore the {which} checkpoint of {run_dir} into its config's model ({e}); "
            "the checkpoint is damaged or was written under another config."
        ) from None
    finally:
        ckpt.close()
    state = jax.device_get(state)
    logits, aux = outputs(state)
    aux = {k: np.asarray(v) for k, v in aux.items() if hasattr(v, "shape")}
    names = exp.train_source.class_names
    return Samples(config, names, np.asarray(images), np.asarray(logits), aux, int(step))


def caption(config, which: str, step: int) -> str:
    """'<method> on <dataset>, <setting>, seed <s>, <which> checkpoint (step <n>)'."""
    from mlrpl_jax import report

    data = config.data
    column = report.column_label(report.column_of(data.setting, data.known_proportion))
    setting = f"PAL {column}" if data.setting == "pal" else column
    return (
        f"{config.method} on {data.name}, {setting} known labels, seed {config.seed}, "
        f"{which} checkpoint (step {step})"
    )


def plot_cooccurrence(
    images, pair_logits, class_names, path: str, dpi: int = 110, title: str = ""
) -> None:
    """Each image beside its learned co-occurrence matrix S (C, C), saved at `dpi`."""
    from mlrpl_jax.ops import pseudo_labels as pl
    from mlrpl_jax.report import pyplot

    plt = pyplot()
    c = len(class_names)
    s = np.asarray(pl.cooccurrence_matrix(pair_logits, c))
    n = len(images)
    fig, axes = plt.subplots(n, 2, figsize=(7, 3.2 * n), squeeze=False, layout="constrained")
    for b in range(n):
        axes[b][0].imshow(images[b])
        axes[b][0].axis("off")
        im = axes[b][1].imshow(s[b], vmin=0, vmax=1, cmap="viridis")
        axes[b][1].set_xticks(range(c), class_names, rotation=90, fontsize=6)
        axes[b][1].set_yticks(range(c), class_names, fontsize=6)
        fig.colorbar(im, ax=axes[b][1], fraction=0.046)
    axes[0][1].set_title("learned co-occurrence S[i, j]", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_attention(
    images, logits, attention, class_names, path: str, top: int = 3, dpi: int = 110, title: str = ""
) -> None:
    """Each image and the attention maps (upsampled) of its `top` highest-scoring classes."""
    import jax

    from mlrpl_jax.report import pyplot

    plt = pyplot()
    n, size = len(images), images.shape[1]
    top = min(top, logits.shape[1])
    fig, axes = plt.subplots(
        n, top + 1, figsize=(2.4 * (top + 1), 2.4 * n + 0.6), squeeze=False, layout="constrained"
    )
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
    if title:
        fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def check_out(out: str) -> None:
    """Raises an InputError if `out` exists and is not a directory."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} is a file; give a directory (it is created if missing).")


def report_maps(
    run_dir: str, out: str, which: str = "best", num_images: int = 4, dpi: int = 110
) -> list[str]:
    """Writes the figures the run's model supports; returns their paths.

    Raises:
        UserError: before `out` is created (module docstring).
    """
    check_run_dir(run_dir, which)
    check_out(out)
    s = sample_outputs(run_dir, which, num_images)
    head = caption(s.config, which, s.step)
    os.makedirs(out, exist_ok=True)
    written = []
    if "pair_logits" in s.aux:
        written.append(os.path.join(out, "cooccurrence.png"))
        title = f"Learned image-specific co-occurrence\n{head}"
        plot_cooccurrence(s.images, s.aux["pair_logits"], s.class_names, written[-1], dpi, title)
    if "attention" in s.aux:
        written.append(os.path.join(out, "attention.png"))
        title = f"Class attention of the 3 highest-scoring classes (probability)\n{head}"
        plot_attention(
            s.images, s.logits, s.aux["attention"], s.class_names, written[-1], dpi=dpi, title=title
        )
    return written


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m mlrpl_jax.report_maps", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run_dir", help="a run directory written by mlrpl_jax.train")
    parser.add_argument("--out", required=True, help="write the PNGs here (created if missing)")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    parser.add_argument("--images", type=_positive, default=4, help="number of test images")
    parser.add_argument("--dpi", type=_positive, default=110, help="resolution of the PNGs")
    args = parser.parse_args(argv)
    cli.quiet_logs()
    with cli.user_errors():
        for path in report_maps(args.run_dir, args.out, args.checkpoint, args.images, args.dpi):
            print(path)


if __name__ == "__main__":
    main()
