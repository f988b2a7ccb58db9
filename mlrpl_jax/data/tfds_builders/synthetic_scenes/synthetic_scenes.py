"""`synthetic_scenes`: a procedurally generated multi-label image data set, written by TFDS.

The data set is a small, fully local stand-in for VOC / COCO: every image shows a few objects of
``C`` classes on a cluttered background, and its label is the multi-hot set of classes present.
Nothing is downloaded; all examples are drawn with numpy from a seed.

Generative process
==================

The *world* (what each class looks like and which classes go together) is a pure function of
``num_classes`` (drawn from ``np.random.default_rng([_WORLD_SEED, num_classes])``), so that every
seed, split and image size shares one world. The *examples* are drawn from the world:
example ``i`` of split ``s`` is a pure function of ``(seed, s, i)`` and the config (image size,
number of classes, difficulty), generated with ``np.random.default_rng([seed, SPLIT_INDEX[s], i])``.
Examples can therefore be generated in any order, and example ``i`` does not depend on how many
examples the split has.

Class appearance (the world)
----------------------------
* **Shape**: class ``c`` has shape ``SHAPES[c % 8]`` (disc, square, triangle, ring, cross, bar,
  diamond, star). Every instance is randomly rotated.
* **Texture**: class ``c`` has texture ``TEXTURES[(c % 4 + c // 8) % 4]`` (solid, stripes,
  checker, dots), so the (shape, texture) pair is unique for the first 32 classes; beyond that only
  the colour tells classes of the same (shape, texture) apart. Textured pixels take
  ``_TEXTURE_SHADE`` times the object colour. The texture period is relative to the object size.
* **Colour**: each class has a base hue (the ``C`` hues are evenly spaced around the colour
  wheel, in a random order), saturation and value. Every instance jitters them (hue standard
  deviation ``_HUE_JITTER * difficulty``), so neighbouring hues overlap, and with probability
  ``_COLOUR_OUTLIER_PROB * difficulty`` an instance gets an entirely random colour, so colour alone
  never identifies the class. A linear shading gradient in a random direction is added.
* **Scale / position**: the radius is ``image_size * U(_SCALE_MIN, _SCALE_MAX) * difficulty **
  -0.3``; the centre is uniform in the central 80 % of the image, so objects may be cut by the
  border.

Co-occurrence (the world)
-------------------------
* There are ``min(_NUM_SCENES, C)`` scene types (4 by default), drawn uniformly per image. Each
  class has a *home* scene (classes are dealt round-robin to the scenes in a random order).
* Classes have Zipf-like base frequencies ``(rank + 1) ** -_ZIPF_EXPONENT`` (random ranks), so some
  classes are rare. Scene ``k`` samples class ``c`` with probability proportional to
  ``base[c] * (_SCENE_AFFINITY if home[c] == k else 1)``.
* *Companion* pairs ``(a, b)`` (up to ``max(1, C // 5)`` pairs, at most one per scene, both
  classes with that home scene): when ``a`` is in the image and ``b`` is not, an instance of ``b``
  is added with probability ``_COMPANION_PROB``.
* *Exclusive* pairs ``(a, b)`` (up to ``max(1, C // 4)`` disjoint pairs with different home
  scenes, disjoint from the companions): when both are present, all instances of ``b`` are removed
  with probability ``_EXCLUSION_PROB``, so these pairs rarely co-occur.

Drawing one example
-------------------
1. Sample the scene type, the number of objects ``n`` (1-4, probabilities ``_OBJECT_COUNT_PROBS``)
   and ``n`` classes with replacement from the scene's distribution (several instances of one class
   are possible), then apply companions and exclusions.
2. Background: a grey level ``U(0.3, 0.7)`` plus a random tint, a weak scene-dependent tint
   (context, ``_SCENE_TINT``) and a random linear gradient.
3. Clutter (not objects): ``Poisson(_CLUTTER_MEAN * difficulty)`` soft, translucent elliptical
   blobs and thin lines of random colours (alpha ``_CLUTTER_ALPHA``).
4. Objects are drawn opaquely in a random depth order, so later objects occlude earlier ones.
5. Global illumination (``U(0.85, 1.15)`` brightness) and Gaussian pixel noise (standard deviation
   ``_NOISE_STD * difficulty``), then quantisation to uint8.
6. Labels: class ``c`` is positive if at least one of its instances keeps a visible fraction of at
   least ``_MIN_VISIBLE_FRACTION`` of its nominal area (after occlusion and cropping by the
   border). The last-drawn object is never occluded, so every image has at least one label. The
   stored labels are the full ground truth; partial labels are simulated downstream.

Difficulty
----------
``difficulty`` (config field, default 1.0) scales the hue jitter, colour outliers, clutter and
noise, and shrinks the objects. Values around 0.5 make the task easy, 1.5-2 hard. The module
constants below (``_SCALE_MIN`` ...) set the base values.

Storage
-------
Features are ``image``: ``tfds.features.Tensor`` ``(S, S, 3)`` uint8 (stored as raw bytes,
``Encoding.BYTES``; the decoded arrays are read-only views, copy before writing in place), and
``labels``: ``tfds.features.Tensor`` ``(C,)`` uint8 in {0, 1}. The default file format is
``array_record`` and examples are stored in index order (``disable_shuffling``), so
``source[i]`` is example ``i``. Neither reading nor writing imports TensorFlow.

Config names encode every parameter, e.g. ``s96_c10_tr4000_te1000_seed0`` (``_d1.5`` is appended
when ``difficulty != 1``), so different parameterisations never share a directory on disk. Any
such name can be passed to TFDS directly, e.g. ``tfds.builder('synthetic_scenes/s32_c10_tr40_te10_
seed0')``.
"""

from __future__ import annotations

import collections
import colorsys
import contextlib
import dataclasses
import functools
import io
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

try:  # POSIX file locks serialise concurrent preparation; skipped where unavailable.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX platforms.
    fcntl = None

_LOG = logging.getLogger(__name__)

SPLIT_INDEX: Mapping[str, int] = {"train": 0, "test": 1, "validation": 2}
SHAPES: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "bar",
    "diamond",
    "star",
)
TEXTURES: tuple[str, ...] = ("solid", "stripes", "checker", "dots")

# World structure.
_WORLD_SEED = 20240917
_NUM_SCENES = 4
_ZIPF_EXPONENT = 1.0
_SCENE_AFFINITY = 8.0
_COMPANION_PROB = 0.6
_EXCLUSION_PROB = 0.95
_OBJECT_COUNT_PROBS = (0.3, 0.35, 0.22, 0.13)

# Appearance and difficulty (base values, scaled by `difficulty` where documented).
_SCALE_MIN = 0.07
_SCALE_MAX = 0.19
_HUE_JITTER = 0.04
_SAT_JITTER = 0.15
_VAL_JITTER = 0.15
_COLOUR_OUTLIER_PROB = 0.12
_TEXTURE_PERIOD = 0.55
_TEXTURE_SHADE = 0.45
_SHADING = 0.2
_SCENE_TINT = 0.06
_CLUTTER_MEAN = 5.0
_CLUTTER_ALPHA = (0.15, 0.4)
_NOISE_STD = 0.035
_MIN_VISIBLE_FRACTION = 0.3

_CONFIG_NAME_RE = re.compile(
    r"^s(?P<s>\d+)_c(?P<c>\d+)_tr(?P<tr>\d+)_te(?P<te>\d+)(?:_va(?P<va>\d+))?_seed(?P<seed>\d+)"
    r"(?:_d(?P<d>[0-9.eE+-]+))?$"
)


# --------------------------------------------------------------------------------------------
# World.
# --------------------------------------------------------------------------------------------

# Words of the class names and captions (`class_names`, `CAPTION_WORDS`): twelve hue names (bins
# of 1/12 of the colour wheel centred on red, orange, ...), an adjective per texture, the shapes.
COLOUR_NAMES: tuple[str, ...] = (
    "red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet",
    "magenta", "pink",
)  # fmt: skip
TEXTURE_ADJECTIVES: tuple[str, ...] = ("plain", "striped", "checkered", "dotted")  # TEXTURES order
SHADE_WORDS: tuple[str, ...] = ("light", "dark")
# Every word a synthetic class name or caption uses ("x": the placeholder of prompt templates).
CAPTION_WORDS: tuple[str, ...] = (
    "a", "photo", "of", "and", ".", "x", *SHADE_WORDS, *COLOUR_NAMES, *TEXTURE_ADJECTIVES, *SHAPES,
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ClassWorld:
    """Class appearance and co-occurrence structure shared by all examples of ``C`` classes.

    Attributes:
        num_classes: Number of classes ``C``.
        shape: ``(C,)`` index into ``SHAPES`` per class.
        texture: ``(C,)`` index into ``TEXTURES`` per class.
        hsv: ``(C, 3)`` base hue, saturation and value per class, in [0, 1].
        home_scene: ``(C,)`` home scene type per class.
        base_freq: ``(C,)`` Zipf-like base frequency per class (sums to 1).
        scene_class_probs: ``(K, C)`` class distribution of each scene type (rows sum to 1).
        scene_tint: ``(K, 3)`` background tint direction per scene type.
        companions: Pairs ``(a, b)``: ``b`` tends to be added when ``a`` is present.
        exclusives: Pairs ``(a, b)``: ``b`` is usually removed when ``a`` is present.
    """

    num_classes: int
    shape: np.ndarray
    texture: np.ndarray
    hsv: np.ndarray
    home_scene: np.ndarray
    base_freq: np.ndarray
    scene_class_probs: np.ndarray
    scene_tint: np.ndarray
    companions: tuple[tuple[int, int], ...]
    exclusives: tuple[tuple[int, int], ...]

    @property
    def num_scenes(self) -> int:
        """Number of scene types ``K``."""
        return self.scene_class_probs.shape[0]


@functools.lru_cache(maxsize=16)
def class_world(num_classes: int) -> ClassWorld:
    """Builds the (deterministic) world of ``num_classes`` classes; see the module docstring.

    Args:
        num_classes: Number of classes, at least 2.

    Returns:
        The ``ClassWorld``; its arrays are read-only.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
    c = num_classes
    rng = np.random.default_rng([_WORLD_SEED, c])
    idx = np.arange(c)
    shape = idx % len(SHAPES)
    texture = (idx % len(TEXTURES) + idx // len(SHAPES)) % len(TEXTURES)
    hue = (rng.permutation(c) + rng.uniform(0.0, 1.0)) / c % 1.0
    sat = rng.uniform(0.5, 0.95, size=c)
    val = rng.uniform(0.6, 0.95, size=c)
    hsv = np.stack([hue, sat, val], axis=1)

    k = min(_NUM_SCENES, c)
    home_scene = np.empty(c, dtype=np.int64)
    home_scene[rng.permutation(c)] = idx % k
    base_freq = (rng.permutation(c) + 1.0) ** -_ZIPF_EXPONENT
    base_freq /= base_freq.sum()
    affinity = np.where(home_scene[None, :] == np.arange(k)[:, None], _SCENE_AFFINITY, 1.0)
    scene_class_probs = base_freq[None, :] * affinity
    scene_class_probs /= scene_class_probs.sum(axis=1, keepdims=True)
    scene_tint = rng.normal(size=(k, 3))
    scene_tint /= np.linalg.norm(scene_tint, axis=1, keepdims=True)

    companions: list[tuple[int, int]] = []
    for scene in rng.permutation(k):
        members = np.flatnonzero(home_scene == scene)
        if len(companions) >= max(1, c // 5) or members.size < 2:
            continue
        a, b = rng.choice(members, size=2, replace=False)
        companions.append((int(a), int(b)))
    used = {x for pair in companions for x in pair}
    candidates = [
        (a, b)
        for a in range(c)
        for b in range(c)
        if a != b and home_scene[a] != home_scene[b] and a not in used and b not in used
    ]
    exclusives: list[tuple[int, int]] = []
    for j in rng.permutation(len(candidates)):
        a, b = candidates[j]
        if len(exclusives) >= max(1, c // 4):
            break
        if any(x in pair for pair in exclusives for x in (a, b)):
            continue
        exclusives.append((a, b))

    arrays = (shape, texture, hsv, home_scene, base_freq, scene_class_probs, scene_tint)
    for array in arrays:
        array.setflags(write=False)
    return ClassWorld(
        num_classes=c,
        shape=shape,
        texture=texture,
        hsv=hsv,
        home_scene=home_scene,
        base_freq=base_freq,
        scene_class_probs=scene_class_probs,
        scene_tint=scene_tint,
        companions=tuple(companions),
        exclusives=tuple(exclusives),
    )


# --------------------------------------------------------------------------------------------
# Drawing.
# --------------------------------------------------------------------------------------------


def class_names(num_classes: int) -> tuple[str, ...]:
    """Descriptive names of the world's classes, "<colour> <texture> <shape>" (e.g. "red striped
    disc"): the colour is the hue bin of the class's base hue (`COLOUR_NAMES`), the texture its
    adjective (`TEXTURE_ADJECTIVES`). Names that would repeat (same shape, texture and colour bin:
    possible beyond 32 classes) get "light" / "dark" in front by base value, then, if still equal,
    their class index after the shape. Unique for every class count; the words are in
    `CAPTION_WORDS` (plus digits for the rare index suffix)."""
    world = class_world(num_classes)
    names = []
    for c in range(num_classes):
        colour = COLOUR_NAMES[int(world.hsv[c, 0] * len(COLOUR_NAMES) + 0.5) % len(COLOUR_NAMES)]
        texture = TEXTURE_ADJECTIVES[int(world.texture[c])]
        names.append(f"{colour} {texture} {SHAPES[int(world.shape[c])]}")
    for name in set(names):
        same = [c for c in range(num_classes) if names[c] == name]
        if len(same) > 1:
            median = float(np.median(world.hsv[same, 2]))
            for c in same:
                names[c] = f"{SHADE_WORDS[int(world.hsv[c, 2] <= median)]} {name}"
    counts = collections.Counter(names)
    return tuple(f"{n} {c}" if counts[n] > 1 else n for c, n in enumerate(names))


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of shape ``SHAPES[shape]`` in object coordinates (radius 1)."""
    name = SHAPES[shape]
    au, av = np.abs(u), np.abs(v)
    if name == "disc":
        return u * u + v * v <= 0.85
    if name == "square":
        return np.maximum(au, av) <= 0.75
    if name == "triangle":
        mask = v >= -0.5
        for phi in (np.pi / 6.0, 5.0 * np.pi / 6.0):
            mask &= u * np.cos(phi) + v * np.sin(phi) <= 0.5
        return mask
    if name == "ring":
        rho2 = u * u + v * v
        return (rho2 <= 1.0) & (rho2 >= 0.3)
    if name == "cross":
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if name == "bar":
        return (au <= 1.0) & (av <= 0.3)
    if name == "diamond":
        return au / 0.6 + av <= 1.0
    if name == "star":
        rho = np.sqrt(u * u + v * v)
        theta = np.arctan2(v, u)
        return rho <= 0.45 + 0.55 * np.abs(np.cos(2.5 * theta))
    raise ValueError(f"Unknown shape {name!r}.")


def _texture_mask(texture: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of the shaded texture pixels of ``TEXTURES[texture]`` (object coords)."""
    name = TEXTURES[texture]
    pu, pv = u / _TEXTURE_PERIOD, v / _TEXTURE_PERIOD
    if name == "solid":
        return np.zeros(u.shape, dtype=bool)
    if name == "stripes":
        return np.floor(pu) % 2 == 1
    if name == "checker":
        return (np.floor(pu) + np.floor(pv)) % 2 == 1
    if name == "dots":
        fu, fv = pu - np.floor(pu) - 0.5, pv - np.floor(pv) - 0.5
        return fu * fu + fv * fv <= 0.09
    raise ValueError(f"Unknown texture {name!r}.")


@functools.cache
def _shape_area(shape: int) -> float:
    """Area of ``SHAPES[shape]`` at radius 1 (numerically, on a fine grid)."""
    n = 401
    grid = (np.arange(n) + 0.5) / n * 2.4 - 1.2
    u, v = np.meshgrid(grid, grid)
    return float(_shape_mask(shape, u, v).mean() * 2.4**2)


def _draw_object(
    canvas: np.ndarray,
    owner: np.ndarray,
    obj_id: int,
    shape: int,
    texture: int,
    rgb: np.ndarray,
    centre: tuple[float, float],
    radius: float,
    angle: float,
    light: np.ndarray,
) -> None:
    """Draws one opaque object into ``canvas`` (in place) and records it in ``owner``."""
    size = canvas.shape[0]
    cx, cy = centre
    ext = radius * 1.05 + 1.0
    x0, x1 = max(int(np.floor(cx - ext)), 0), min(int(np.ceil(cx + ext)), size)
    y0, y1 = max(int(np.floor(cy - ext)), 0), min(int(np.ceil(cy + ext)), size)
    if x0 >= x1 or y0 >= y1:
        return
    dx = (np.arange(x0, x1) + 0.5 - cx)[None, :]
    dy = (np.arange(y0, y1) + 0.5 - cy)[:, None]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dx * cos + dy * sin) / radius
    v = (dy * cos - dx * sin) / radius
    mask = _shape_mask(shape, u, v)
    if not mask.any():
        return
    shade = 1.0 + _SHADING * (u * light[0] + v * light[1])
    shade = np.where(_texture_mask(texture, u, v), shade * _TEXTURE_SHADE, shade)
    colour = shade[..., None] * rgb
    canvas[y0:y1, x0:x1][mask] = colour[mask]
    owner[y0:y1, x0:x1][mask] = obj_id


def _blend_box(
    canvas: np.ndarray, box: tuple[int, int, int, int], weight: np.ndarray, rgb: np.ndarray
) -> None:
    """Alpha-blends colour ``rgb`` with per-pixel ``weight`` into ``canvas[y0:y1, x0:x1]``."""
    y0, y1, x0, x1 = box
    region = canvas[y0:y1, x0:x1]
    region += weight[..., None] * (rgb - region)


def _clip_box(lo: np.ndarray, hi: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """Integer pixel box ``(y0, y1, x0, x1)`` covering ``[lo, hi]`` (x, y), clipped to the image."""
    x0, y0 = (max(int(np.floor(t)), 0) for t in lo)
    x1, y1 = (min(int(np.ceil(t)), size) for t in hi)
    return y0, y1, x0, x1


def _draw_clutter(canvas: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Alpha-blends ``count`` translucent blobs / thin lines of random colour (in place)."""
    size = canvas.shape[0]
    for _ in range(count):
        rgb = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        alpha = rng.uniform(*_CLUTTER_ALPHA)
        if rng.random() < 0.6:  # Soft elliptical blob.
            centre = rng.uniform(0.0, size, size=2)
            ru, rv = rng.uniform(0.04, 0.2, size=2) * size
            angle = rng.uniform(0.0, np.pi)
            ext = max(ru, rv)
            y0, y1, x0, x1 = box = _clip_box(centre - ext, centre + ext, size)
            if x0 >= x1 or y0 >= y1:
                continue
            dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - centre[0])[None, :]
            dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - centre[1])[:, None]
            cos, sin = np.cos(angle), np.sin(angle)
            u = (dx * cos + dy * sin) / ru
            v = (dy * cos - dx * sin) / rv
            weight = alpha * np.clip(1.0 - (u * u + v * v), 0.0, 1.0)
        else:  # Thin line segment.
            p = rng.uniform(0.0, size, size=2)
            q = rng.uniform(0.0, size, size=2)
            width = rng.uniform(0.4, 1.2) * max(size / 64.0, 0.5)
            y0, y1, x0, x1 = box = _clip_box(
                np.minimum(p, q) - width - 1.0, np.maximum(p, q) + width + 1.0, size
            )
            if x0 >= x1 or y0 >= y1:
                continue
            dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - p[0])[None, :]
            dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - p[1])[:, None]
            d = q - p
            t = np.clip((dx * d[0] + dy * d[1]) / max(d @ d, 1e-6), 0.0, 1.0)
            dist = np.hypot(dx - t * d[0], dy - t * d[1])
            weight = alpha * np.clip(width + 0.5 - dist, 0.0, 1.0)
        _blend_box(canvas, box, weight.astype(np.float32), rgb)


def _instance_colour(
    world: ClassWorld, cls: int, rng: np.random.Generator, difficulty: float
) -> np.ndarray:
    """Samples the RGB colour of one instance of class ``cls`` (jittered, sometimes random)."""
    if rng.random() < min(_COLOUR_OUTLIER_PROB * difficulty, 1.0):
        hue, sat, val = rng.uniform(0.0, 1.0), rng.uniform(0.3, 0.95), rng.uniform(0.5, 0.95)
    else:
        hue0, sat0, val0 = world.hsv[cls]
        hue = (hue0 + rng.normal(0.0, _HUE_JITTER * difficulty)) % 1.0
        sat = np.clip(sat0 + rng.normal(0.0, _SAT_JITTER), 0.15, 1.0)
        val = np.clip(val0 + rng.normal(0.0, _VAL_JITTER), 0.35, 1.0)
    return np.asarray(colorsys.hsv_to_rgb(hue, sat, val))


def _sample_instances(world: ClassWorld, rng: np.random.Generator) -> tuple[int, list[int]]:
    """Samples the scene type and the classes of the object instances (before occlusion)."""
    scene = int(rng.integers(world.num_scenes))
    num = 1 + int(rng.choice(len(_OBJECT_COUNT_PROBS), p=_OBJECT_COUNT_PROBS))
    classes = [
        int(x) for x in rng.choice(world.num_classes, size=num, p=world.scene_class_probs[scene])
    ]
    for a, b in world.companions:
        if a in classes and b not in classes and rng.random() < _COMPANION_PROB:
            classes.append(b)
    for a, b in world.exclusives:
        if a in classes and b in classes and rng.random() < _EXCLUSION_PROB:
            classes = [x for x in classes if x != b]
    return scene, classes


def generate_example(
    index: int,
    *,
    split: str = "train",
    image_size: int = 96,
    num_classes: int = 10,
    seed: int = 0,
    difficulty: float = 1.0,
) -> dict[str, np.ndarray]:
    """Generates example ``index`` of ``split``: a pure function of its arguments.

    Args:
        index: Example index within the split (>= 0).
        split: ``'train'``, ``'test'`` or ``'validation'``.
        image_size: Side ``S`` of the square image in pixels.
        num_classes: Number of classes ``C`` (>= 2).
        seed: Data set seed (>= 0).
        difficulty: Difficulty multiplier (> 0), see the module docstring.

    Returns:
        ``{'image': uint8 (S, S, 3), 'labels': uint8 (C,) multi-hot with at least one 1}``.
    """
    if split not in SPLIT_INDEX:
        raise ValueError(f"Unknown split {split!r}; expected one of {sorted(SPLIT_INDEX)}.")
    if difficulty <= 0:
        raise ValueError(f"difficulty must be > 0, got {difficulty}.")
    world = class_world(num_classes)
    rng = np.random.default_rng([seed, SPLIT_INDEX[split], index])
    size = image_size
    scene, classes = _sample_instances(world, rng)

    # Background: grey level + random tint + scene tint + linear gradient.
    base = rng.uniform(0.3, 0.7) + rng.normal(0.0, 0.05, size=3)
    base = base + _SCENE_TINT * world.scene_tint[scene]
    grad = rng.normal(0.0, 0.08, size=(2, 3))
    ramp = (np.arange(size) + 0.5) / size - 0.5
    canvas = base + ramp[None, :, None] * grad[0] + ramp[:, None, None] * grad[1]
    canvas = canvas.astype(np.float32)
    _draw_clutter(canvas, rng, int(rng.poisson(_CLUTTER_MEAN * difficulty)))

    # Objects, in random depth order (later ones occlude earlier ones).
    owner = np.full((size, size), -1, dtype=np.int32)
    order = rng.permutation(len(classes))
    drawn: list[tuple[int, float]] = []  # (class, nominal area in pixels) per drawn instance.
    scale = difficulty**-0.3
    for obj_id, j in enumerate(order):
        cls = classes[j]
        radius = size * rng.uniform(_SCALE_MIN, _SCALE_MAX) * scale
        centre = tuple(rng.uniform(0.1 * size, 0.9 * size, size=2))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        light_angle = rng.uniform(0.0, 2.0 * np.pi)
        light = np.array([np.cos(light_angle), np.sin(light_angle)])
        rgb = _instance_colour(world, cls, rng, difficulty)
        shape, texture = int(world.shape[cls]), int(world.texture[cls])
        _draw_object(canvas, owner, obj_id, shape, texture, rgb, centre, radius, angle, light)
        drawn.append((cls, _shape_area(shape) * radius * radius))

    # Illumination, noise, quantisation.
    noise = rng.standard_normal(size=canvas.shape, dtype=np.float32)
    canvas *= np.float32(255.0 * rng.uniform(0.85, 1.15))
    canvas += np.float32(255.0 * _NOISE_STD * difficulty) * noise
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    visible = np.bincount(owner.ravel() + 1, minlength=len(drawn) + 1)[1:]
    labels = np.zeros(num_classes, dtype=np.uint8)
    for (cls, area), count in zip(drawn, visible, strict=True):
        if count >= _MIN_VISIBLE_FRACTION * area:
            labels[cls] = 1
    if not labels.any():  # Defensive: the top object is unoccluded, so this is not expected.
        labels[drawn[-1][0]] = 1
    return {"image": image, "labels": labels}


# --------------------------------------------------------------------------------------------
# TFDS builder.
# --------------------------------------------------------------------------------------------


def config_name(
    *,
    image_size: int = 96,
    num_classes: int = 10,
    num_train: int = 4000,
    num_test: int = 1000,
    seed: int = 0,
    difficulty: float = 1.0,
    num_val: int = 0,
) -> str:
    """Returns the canonical config name encoding all parameters.

    Example: ``s96_c10_tr4000_te1000_seed0``; ``_va{num_val}`` follows ``te...`` when there is a
    validation split, and ``_d{difficulty:g}`` is appended if difficulty != 1.
    """
    val = f"_va{num_val}" if num_val else ""
    name = f"s{image_size}_c{num_classes}_tr{num_train}_te{num_test}{val}_seed{seed}"
    if float(difficulty) != 1.0:
        name += f"_d{float(difficulty):g}"
    return name


@dataclasses.dataclass(eq=False, kw_only=True)
class SyntheticScenesConfig(tfds.core.BuilderConfig):
    """Builder config of `synthetic_scenes`; ``name`` is derived from the parameters.

    Attributes:
        image_size: Side of the square images in pixels.
        num_classes: Number of classes (>= 2).
        num_train: Number of training examples.
        num_test: Number of test examples.
        num_val: Number of validation examples (0: no 'validation' split).
        seed: Seed (>= 0) of the examples (the class world depends only on ``num_classes``).
        difficulty: Difficulty multiplier (> 0) of colour jitter, clutter, noise and object size.
    """

    name: str = ""
    image_size: int = 96
    num_classes: int = 10
    num_train: int = 4000
    num_test: int = 1000
    seed: int = 0
    difficulty: float = 1.0
    num_val: int = 0

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}.")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}.")
        if self.num_train < 0 or self.num_test < 0 or self.num_val < 0:
            raise ValueError("num_train, num_test and num_val must be >= 0.")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}.")
        if not self.difficulty > 0:
            raise ValueError(f"difficulty must be > 0, got {self.difficulty}.")
        canonical = config_name(
            image_size=self.image_size,
            num_classes=self.num_classes,
            num_train=self.num_train,
            num_test=self.num_test,
            seed=self.seed,
            difficulty=self.difficulty,
            num_val=self.num_val,
        )
        if self.name and self.name != canonical:
            raise ValueError(
                f"Config name {self.name!r} does not match its parameters ({canonical!r}); "
                "leave `name` empty."
            )
        self.name = canonical
        if not self.description:
            self.description = (
                f"{self.image_size}x{self.image_size} px, {self.num_classes} classes, "
                f"{self.num_train} train / {self.num_test} test / {self.num_val} validation, "
                f"seed {self.seed}, "
                f"difficulty {self.difficulty:g}."
            )

    @classmethod
    def from_name(cls, name: str) -> SyntheticScenesConfig | None:
        """Parses a canonical config name; returns None if ``name`` is not one."""
        match = _CONFIG_NAME_RE.match(name)
        if match is None:
            return None
        config = cls(
            image_size=int(match["s"]),
            num_classes=int(match["c"]),
            num_train=int(match["tr"]),
            num_test=int(match["te"]),
            seed=int(match["seed"]),
            difficulty=float(match["d"]) if match["d"] else 1.0,
            num_val=int(match["va"]) if match["va"] else 0,
        )
        return config if config.name == name else None


class SyntheticScenes(tfds.core.GeneratorBasedBuilder):
    """Procedurally generated multi-label scenes (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [SyntheticScenesConfig()]
    DEFAULT_BUILDER_CONFIG_NAME = BUILDER_CONFIGS[0].name

    def __init__(self, *, file_format: str | tfds.core.FileFormat | None = None, **kwargs: Any):
        """Initialises the builder; ``file_format`` defaults to ``array_record``."""
        super().__init__(file_format=file_format or tfds.core.FileFormat.ARRAY_RECORD, **kwargs)

    @classmethod
    def get_builder_config(
        cls, name: str, version: str | tfds.core.Version | None = None
    ) -> tfds.core.BuilderConfig | None:
        """Returns a predefined config, or one parsed from a canonical config name."""
        config = super().get_builder_config(name=name, version=version)
        if config is None:
            config = SyntheticScenesConfig.from_name(name)
        return config

    def _info(self) -> tfds.core.DatasetInfo:
        config: SyntheticScenesConfig = self.builder_config
        size, num_classes = config.image_size, config.num_classes
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    # Raw bytes: ~10x faster to write and read than the default int64 list.
                    "image": tfds.features.Tensor(
                        shape=(size, size, 3),
                        dtype=np.uint8,
                        encoding=tfds.features.Encoding.BYTES,
                    ),
                    "labels": tfds.features.Tensor(shape=(num_classes,), dtype=np.uint8),
                }
            ),
            supervised_keys=("image", "labels"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        del dl_manager  # Nothing to download.
        config: SyntheticScenesConfig = self.builder_config
        splits = {
            "train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test),
        }
        if config.num_val:
            splits["validation"] = self._generate_examples("validation", config.num_val)
        return splits

    def _generate_examples(
        self, split: str, num_examples: int
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        config: SyntheticScenesConfig = self.builder_config
        for index in range(num_examples):
            yield (
                index,
                generate_example(
                    index,
                    split=split,
                    image_size=config.image_size,
                    num_classes=config.num_classes,
                    seed=config.seed,
                    difficulty=config.difficulty,
                ),
            )


def make_builder(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 96,
    num_classes: int = 10,
    num_train: int = 4000,
    num_test: int = 1000,
    seed: int = 0,
    difficulty: float = 1.0,
    num_val: int = 0,
) -> tfds.core.DatasetBuilder:
    """Creates the `synthetic_scenes` builder for the given parameters (does not prepare it).

    Args:
        data_dir: TFDS data directory (default: TFDS's default, ``~/tensorflow_datasets``).
        image_size: Side of the square images in pixels.
        num_classes: Number of classes.
        num_train: Number of training examples.
        num_test: Number of test examples.
        seed: Seed of the examples.
        num_val: Number of validation examples (0: no 'validation' split).
        difficulty: Difficulty multiplier, see the module docstring.

    Returns:
        A ``SyntheticScenes`` builder whose config name encodes all parameters.
    """
    config = SyntheticScenesConfig(
        image_size=image_size,
        num_classes=num_classes,
        num_train=num_train,
        num_test=num_test,
        seed=seed,
        difficulty=difficulty,
        num_val=num_val,
    )
    return SyntheticScenes(
        data_dir=None if data_dir is None else os.fspath(data_dir), config=config.name
    )


@contextlib.contextmanager
def _prepare_lock(builder: tfds.core.DatasetBuilder) -> Iterator[None]:
    """Holds an exclusive file lock next to the builder's data directory (POSIX only)."""
    if fcntl is None:
        yield
        return
    lock_dir = epath.Path(builder.data_path).parent
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f".prepare_{builder.version}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    return (epath.Path(builder.data_path) / "dataset_info.json").exists()


def prepare(
    data_dir: str | os.PathLike[str] | None = None, **params: Any
) -> tfds.core.DatasetBuilder:
    """Prepares the data set if needed and returns a builder that reads the prepared copy.

    Safe against concurrent and interrupted preparation: TFDS writes into a temporary directory
    that is renamed on success, and preparation is serialised with a file lock, so a second caller
    waits and then reuses the data. Temporary directories left by a killed preparation are removed
    (while holding the lock, so only preparations that bypass ``prepare`` could be affected).

    Args:
        data_dir: TFDS data directory.
        **params: Keyword arguments of ``make_builder`` (image_size, num_classes, ...).

    Returns:
        The prepared builder.
    """
    builder = make_builder(data_dir, **params)
    if _is_prepared(builder):
        return builder
    with _prepare_lock(builder):
        builder = make_builder(data_dir, **params)  # Re-check: another process may have won.
        if not _is_prepared(builder):
            parent = epath.Path(builder.data_path).parent
            for stale in parent.glob(f"incomplete.*_{builder.version}"):
                _LOG.warning("Removing stale incomplete preparation %s.", stale)
                stale.rmtree(missing_ok=True)
            # One line of our own instead of TFDS's "Downloading and preparing dataset Unknown
            # size" and its progress bars (the data is generated here, nothing is downloaded).
            print(f"Generating {builder.name}/{builder.builder_config.name} in {builder.data_dir} ...",
                  end="", flush=True)  # fmt: skip
            start = time.perf_counter()
            try:
                with (
                    contextlib.redirect_stdout(io.StringIO()),
                    contextlib.redirect_stderr(io.StringIO()),
                ):
                    builder.download_and_prepare(
                        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
                    )
                print(f" done in {time.perf_counter() - start:.0f} s.", flush=True)
            except Exception:
                print(" failed.", flush=True)
                # A preparer that bypassed the lock may have won the final rename.
                if not _is_prepared(make_builder(data_dir, **params)):
                    raise
            builder = make_builder(data_dir, **params)
    return builder


def load_source(split: str, data_dir: str | os.PathLike[str] | None = None, **params: Any) -> Any:
    """Returns the random-access ``tfds.data_source`` of ``split``, preparing the data if needed.

    Args:
        split: ``'train'``, ``'test'`` or ``'validation'`` (any TFDS split string such as
            ``'train[:80%]'`` works).
        data_dir: TFDS data directory.
        **params: Keyword arguments of ``make_builder`` (image_size, num_classes, ...).

    Returns:
        The ``ArrayRecordDataSource``; ``source[i]`` is ``{'image': uint8 (S, S, 3),
        'labels': uint8 (C,)}`` for example ``i``. Reading does not import TensorFlow.
    """
    builder = prepare(data_dir, **params)
    return tfds.data_source(
        f"{builder.name}/{builder.builder_config.name}:{builder.version}",
        split=split,
        data_dir=os.fspath(builder.data_dir_root),
        download=False,
    )
