"""grain transforms: partial-label masking, the papers' train augmentation and the test resize.

Images stay uint8 on the host (4x less host->device traffic); normalisation happens on device
(`Method.normalize_images`).

Train augmentation (reference, torchvision on PIL images; every size times `size_factor`):
  1. resize to scale x scale (512, aspect ratio not kept), bicubic;
  2. square crop of a side drawn uniformly from crop_sizes ({512, 448, 384, 320, 256}) at a uniformly
     random offset;
  3. resize to image_size x image_size (448), bicubic;
  4. horizontal flip with probability 0.5.
Test: resize straight to image_size x image_size, bicubic.

With `data.resize_on='device'` (the default) the host only decodes: `TrainView` draws the same
crop and flip as `TrainAugment` (the same random numbers in the same order) and pads the decoded
image into a canvas with its view (the crop, the image's size, the flip); the
jitted train step renders steps 1-4 from it as matrix products (`mlrpl_jax.ops.resample`).
"""

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np
from PIL import Image

from mlrpl_jax.data import partial_labels as pl


def scaled_sizes(
    scale_size: int, crop_sizes: Sequence[int], image_size: int, size_factor: float
) -> tuple[int, tuple[int, ...], int]:
    """Applies `size_factor` to the three sizes of the augmentation (rounded, crops <= scale)."""
    scale = max(1, round(scale_size * size_factor))
    crops = tuple(
        sorted({min(scale, max(1, round(c * size_factor))) for c in crop_sizes}, reverse=True)
    )
    return scale, crops, max(1, round(image_size * size_factor))


def _resize(image: np.ndarray, size: int) -> Image.Image:
    img = Image.fromarray(image)
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return img


def check_full_labels(
    labels: np.ndarray, example_id: int, dataset: str, native_partial: bool = False
) -> None:
    """Raises a ValueError naming the example if its ground truth is not multi-hot {0, 1}, or with
    `native_partial` (a natively partially labelled dataset, e.g. Open Images) not in {-1, 0, 1}."""
    allowed = (-1, 0, 1) if native_partial else (0, 1)
    bad = np.flatnonzero(~np.isin(labels, allowed))
    if bad.size:
        kind = ("natively partial labels must lie in {-1, 0, 1}" if native_partial else
                "full ground-truth labels must be multi-hot in {0, 1} (partial labels {-1, 0, 1} "
                "come from config.data.setting or config.data.partial_labels_file)")  # fmt: skip
        raise ValueError(
            f"{dataset}: example {example_id} has label value {labels[bad[0]].item()!r} at class "
            f"{bad[0]}; {kind}."
        )


class MaskLabels(grain.transforms.Map):
    """Full labels {0, 1} -> partial labels int8 {-1, 0, 1}, deterministic per example id.

    Output: {'image': uint8 (H, W, 3), 'labels': int8 (C,), 'example_id': int32,
    'full_labels': uint8 (C,) in {0, 1}}. 'full_labels' is the hidden ground truth, carried only for
    diagnostics (e.g. pseudo-label precision and recall); no method may train on it.

    A natively partially labelled dataset (`native_partial`: its stored labels are already
    {-1, 0, 1}, e.g. Open Images' human verifications) has no hidden ground truth: the setting
    applies to its known entries (its positives take the place of the full positives; entries it
    leaves unknown stay unknown, so 'fal' gives its labels as they are), and 'full_labels' is not
    output (no diagnostics).
    """

    def __init__(
        self,
        *,
        dataset: str,
        num_examples: int,
        num_classes: int,
        setting: str,
        proportion: float,
        seed: int,
        mode: str,
        fixed_labels: np.ndarray | None = None,
        reference_rows: tuple[np.ndarray, int] | None = None,
        native_partial: bool = False,
    ):
        """Args: see `config.data`; `fixed_labels` (N, C) int8 from a user file overrides the
        masking; `reference_rows` (mode 'reference'): (rows (N,), M), example i takes row rows[i]
        of the authors' (M, C) uniform matrix (`reference_order.rows_for`); None: row i of an
        (N, C) one; `native_partial`: the source's labels are natively partial (class docstring)."""
        self.dataset = dataset
        self.setting, self.proportion, self.seed, self.mode = setting, proportion, seed, mode
        self.fixed_labels = fixed_labels
        self.native_partial = native_partial
        self.keep = None
        if fixed_labels is None and mode == "reference":
            if setting != "pal":
                raise ValueError(
                    f"config.data.mask_mode='reference' reproduces the reference code's 'pal' masks only; "
                    f"got config.data.setting={setting!r}. Use mask_mode='hash' for other settings."
                )
            rows, total = reference_rows or (np.arange(num_examples), num_examples)
            if len(rows) != num_examples:
                raise ValueError(
                    f"reference_rows has {len(rows)} rows for {num_examples} examples."
                )
            self.keep = pl.reference_keep_mask(total, num_classes, proportion, seed)[rows]

    def partial(self, full: np.ndarray, example_ids: np.ndarray) -> np.ndarray:
        """The partial labels int8 (n, C) of rows ``full`` (n, C) of examples ``example_ids`` (n,)."""
        full = np.asarray(full)
        ids = np.asarray(example_ids, dtype=np.int64)
        allowed = (-1, 0, 1) if self.native_partial else (0, 1)
        bad = np.flatnonzero(~np.isin(full, allowed).all(axis=1))
        if bad.size:
            check_full_labels(full[bad[0]], int(ids[bad[0]]), self.dataset, self.native_partial)
        if self.fixed_labels is not None:
            return np.asarray(self.fixed_labels[ids], dtype=np.int8)
        positives = (full == 1).astype(np.uint8)
        if self.keep is not None:
            labels = np.where(self.keep[ids], 2 * positives.astype(np.int8) - 1, 0)
        else:
            labels = pl.partial_labels(positives, self.setting, self.proportion, self.seed, ids)
        if self.native_partial:
            labels = np.where(full != 0, labels, 0)
        return labels.astype(np.int8)

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        example_id = int(record["example_id"])
        full = np.asarray(record["labels"])
        out = {
            "image": record["image"],
            "labels": self.partial(full[None], np.asarray([example_id]))[0],
            "example_id": np.int32(example_id),
        }
        if not self.native_partial:
            out["full_labels"] = full.astype(np.uint8)
        return out


class TrainAugment(grain.transforms.RandomMap):
    """The papers' train augmentation (module docstring), on uint8 images."""

    def __init__(self, scale_size: int, crop_sizes: Sequence[int], image_size: int):
        self.scale_size, self.crop_sizes, self.image_size = (
            scale_size,
            tuple(crop_sizes),
            image_size,
        )

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int, bool]:
        """The random parameters of one image: crop side, its offset (x0, y0) in the scale x scale
        image, and the flip."""
        crop = int(self.crop_sizes[rng.integers(len(self.crop_sizes))])
        x0, y0 = (int(v) for v in rng.integers(0, self.scale_size - crop + 1, size=2))
        return crop, x0, y0, bool(rng.random() < 0.5)

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        img = _resize(element["image"], self.scale_size)
        crop, x0, y0, flip = self.draw(rng)
        img = img.crop((x0, y0, x0 + crop, y0 + crop))
        if img.size != (self.image_size, self.image_size):
            img = img.resize((self.image_size, self.image_size), Image.BICUBIC)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return dict(element, image=np.asarray(img, dtype=np.uint8))


def fit_canvas(image: np.ndarray, canvas_size: int) -> np.ndarray:
    """`image` uint8 (H, W, 3), unchanged when it fits in canvas_size x canvas_size, else resized
    (bicubic, aspect ratio kept) so that its longer side is canvas_size: a second interpolation,
    and host time, that only images larger than the canvas pay."""
    h, w = image.shape[:2]
    if max(h, w) <= canvas_size:
        return image
    r = canvas_size / max(h, w)
    size = (min(canvas_size, max(1, round(w * r))), min(canvas_size, max(1, round(h * r))))
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC), dtype=np.uint8)


class TrainView(TrainAugment):
    """`TrainAugment`'s geometry for the device (`data.resize_on='device'`): the decoded image
    padded into a canvas and the view that `ops.resample.render_views` renders in the train step.

    Output: 'image' uint8 (K, K, 3), the image at the top left (an image larger than K first
    resized to fit, `fit_canvas`), zeros elsewhere; 'view' float32 (6,): the crop (x0, y0, side)
    in the scale x scale image, the image's height and width, and the flip (1.0 or 0.0)
    (`ops.resample.VIEW_FIELDS`). The crop and flip are `TrainAugment.draw`'s: the same as the host
    path's for the same rng.
    """

    def __init__(self, scale_size: int, crop_sizes: Sequence[int], image_size: int,
                 canvas_size: int):  # fmt: skip
        super().__init__(scale_size, crop_sizes, image_size)
        self.canvas_size = canvas_size

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        image = fit_canvas(np.asarray(element["image"]), self.canvas_size)
        h, w = image.shape[:2]
        crop, x0, y0, flip = self.draw(rng)
        view = (x0, y0, crop, h, w, float(flip))
        canvas = np.zeros((self.canvas_size, self.canvas_size, 3), np.uint8)
        canvas[:h, :w] = image
        return dict(element, image=canvas, view=np.asarray(view, np.float32))


class EvalTransform(grain.transforms.Map):
    """Evaluation transform: resize to image_size. Output {'image', 'targets' int8 (C,), 'valid'}:
    targets are the full labels {0, 1} (a natively partial dataset's own labels {-1, 0, 1} with
    `native_partial`), or with `mask` (a `MaskLabels`) the partial labels {-1, 0, 1} it gives
    (model selection on a partially labelled validation split)."""

    def __init__(
        self,
        image_size: int,
        dataset: str,
        mask: "MaskLabels | None" = None,
        native_partial: bool = False,
    ):
        self.image_size, self.dataset, self.mask = image_size, dataset, mask
        self.native_partial = native_partial

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        if self.mask is None:
            targets = np.asarray(record["labels"])
            check_full_labels(targets, int(record["example_id"]), self.dataset, self.native_partial)
        else:
            targets = self.mask.map(record)["labels"]  # The mask checks the labels itself.
        image = np.asarray(_resize(record["image"], self.image_size), dtype=np.uint8)
        return {"image": image, "targets": targets.astype(np.int8), "valid": np.bool_(True)}


# --- ASL / SPLC train augmentation ------------------------------------------------------------

_RAND_AUGMENT_OPS = (
    "identity", "autocontrast", "equalize", "rotate", "solarize", "color", "posterize",
    "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y",
)  # fmt: skip


def rand_augment_op(img: Image.Image, name: str, level: float, sign: float) -> Image.Image:
    """One RandAugment operation (Cubuk et al. 2020, their 14 ops) at `level` in [0, 1]
    (magnitude / 30); `sign` (+-1) picks the direction of the signed ops."""
    from PIL import ImageEnhance, ImageOps

    if name == "identity":
        return img
    if name == "autocontrast":
        return ImageOps.autocontrast(img)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "rotate":
        return img.rotate(sign * 30.0 * level, resample=Image.BILINEAR)
    if name == "solarize":
        return ImageOps.solarize(img, threshold=int(256 - 256 * level))
    if name == "posterize":
        return ImageOps.posterize(img, bits=max(1, int(8 - 4 * level)))
    if name in ("color", "contrast", "brightness", "sharpness"):
        enhancer = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                    "brightness": ImageEnhance.Brightness,
                    "sharpness": ImageEnhance.Sharpness}[name]  # fmt: skip
        return enhancer(img).enhance(1.0 + sign * 0.9 * level)
    w, h = img.size
    if name in ("shear_x", "shear_y"):
        s = sign * 0.3 * level
        matrix = (1, s, 0, 0, 1, 0) if name == "shear_x" else (1, 0, 0, s, 1, 0)
        return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR)
    if name in ("translate_x", "translate_y"):
        t = sign * 0.45 * level
        matrix = (1, 0, t * w, 0, 1, 0) if name == "translate_x" else (1, 0, 0, 0, 1, t * h)
        return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR)
    raise ValueError(f"unknown RandAugment op {name!r}")


class AslAugment(grain.transforms.RandomMap):
    """The ASL code base's train augmentation, which the SPLC setup keeps: resize to
    image_size x image_size (bicubic), Cutout (a cutout_factor-sized rectangle at a uniformly
    random centre, clipped to the image, filled with a random colour; always applied, as ASL's
    `CutoutPIL`), then RandAugment with `num_ops` ops drawn uniformly from Cubuk et al.'s 14 at
    magnitude `magnitude` / 30 (N = 2, M = 9 by default: the RandAugment paper's ResNet-50 setting;
    the exact defaults of the PyPI package ASL imports are not reproduced). No flip."""

    def __init__(self, image_size: int, cutout_factor: float = 0.5, num_ops: int = 2,
                 magnitude: float = 9.0):  # fmt: skip
        self.image_size, self.cutout_factor = image_size, cutout_factor
        self.num_ops, self.level = num_ops, magnitude / 30.0

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        from PIL import ImageDraw

        img = _resize(element["image"], self.image_size)
        if self.cutout_factor > 0:
            w, h = img.size
            ch, cw = int(self.cutout_factor * h + 0.5), int(self.cutout_factor * w + 0.5)
            yc, xc = int(rng.integers(h)), int(rng.integers(w))
            y1, y2 = np.clip([yc - ch // 2, yc + ch // 2], 0, h)
            x1, x2 = np.clip([xc - cw // 2, xc + cw // 2], 0, w)
            img = img.copy()
            fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
            ImageDraw.Draw(img).rectangle([int(x1), int(y1), int(x2), int(y2)], fill=fill)
        for name in rng.choice(_RAND_AUGMENT_OPS, size=self.num_ops):
            img = rand_augment_op(img, str(name), self.level, 1.0 if rng.random() < 0.5 else -1.0)
        return dict(element, image=np.asarray(img.convert("RGB"), dtype=np.uint8))
