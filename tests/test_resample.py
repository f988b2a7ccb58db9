"""The train augmentation's geometry on device (`ops.resample`, `transforms.TrainView`) against
pillow: the same box gives the same pixels to within a level, and the same random draws give the
host path's image to within interpolation differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import dot_precisions
from PIL import Image

from configs import base
from mlrpl_jax import config_validation
from mlrpl_jax.data import pipeline, transforms
from mlrpl_jax.errors import ConfigError
from mlrpl_jax.ops import resample


def _photo(h, w, seed=0):
    """A smooth image with noise (as a photograph: edges and texture)."""
    rng = np.random.default_rng(seed)
    base_ = rng.integers(0, 256, (h // 6 + 2, w // 6 + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(base_).resize((w, h), Image.BICUBIC), np.int16)
    return np.clip(img + rng.integers(-25, 26, (h, w, 3)), 0, 255).astype(np.uint8)


def _render(image, view, scale, size, canvas_size, fill=None):
    h, w = image.shape[:2]
    canvas = np.zeros((canvas_size, canvas_size, 3), np.uint8) if fill is None else fill.copy()
    canvas[:h, :w] = image
    x0, y0, crop, flip = view
    view = np.asarray([x0, y0, crop, h, w, float(flip)], np.float32)
    return np.asarray(resample.render_view(jnp.asarray(canvas), jnp.asarray(view), scale, size))


def _pillow(image, view, scale, size):
    """The reference's steps with pillow (as `transforms.TrainAugment`)."""
    x0, y0, crop, flip = view
    img = Image.fromarray(image)
    if img.size != (scale, scale):
        img = img.resize((scale, scale), Image.BICUBIC)
    img = img.crop((x0, y0, x0 + crop, y0 + crop))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    if flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img)


@pytest.mark.parametrize(
    "shape,view,scale,size",
    [
        ((37, 53), (0, 0, 48, False), 48, 48),  # resize only: up in one axis, down in the other
        ((37, 53), (5, 9, 24, True), 48, 40),  # a crop, upsampled
        ((75, 100), (0, 20, 44, False), 64, 56),  # a crop at the edge
        ((75, 100), (3, 1, 12, True), 64, 56),  # a small crop, upsampled 4.7x
        ((120, 90), (4, 8, 40, False), 48, 16),  # shrinking twice: antialiasing both times
        ((64, 64), (8, 8, 32, True), 64, 32),  # no first resize, crop, no second resize
    ],
)
def test_matches_pillow(shape, view, scale, size):
    """pillow's image, except for pixels off by one or two levels of 255 (measured: at most 1 level,
    on 0 to 0.11 % of the pixels here; pillow's weights are fixed point)."""
    image = _photo(*shape)
    got = _render(image, view, scale, size, canvas_size=128)
    diff = np.abs(got.astype(int) - _pillow(image, view, scale, size).astype(int))
    assert diff.max() <= 2 and (diff > 0).mean() < 0.02, (view, diff.max(), (diff > 0).mean())
    assert got.dtype == np.float32 and np.array_equal(got, np.round(got))


def test_canvas_padding_is_never_read():
    image = _photo(30, 20, seed=1)
    noise = np.random.default_rng(2).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    view = (2, 5, 30, False)
    np.testing.assert_array_equal(
        _render(image, view, 40, 36, 48), _render(image, view, 40, 36, 48, fill=noise)
    )


def test_identity_view_is_exact():
    """No resize, whole crop: every output pixel is its source pixel (flipped with the flip)."""
    image = _photo(24, 24, seed=3)
    np.testing.assert_array_equal(_render(image, (0, 0, 24, False), 24, 24, 32), image)
    np.testing.assert_array_equal(_render(image, (0, 0, 24, True), 24, 24, 32), image[:, ::-1])


def _both_paths(image, scale, crops, size, canvas, seed):
    host = transforms.TrainAugment(scale, crops, size)
    device = transforms.TrainView(scale, crops, size, canvas)
    element = {"image": image, "labels": np.zeros(3, np.uint8), "example_id": np.int64(0)}
    params = host.draw(np.random.default_rng(seed))
    want = host.random_map(dict(element), np.random.default_rng(seed))["image"]
    out = device.random_map(dict(element), np.random.default_rng(seed))
    got = np.asarray(
        resample.render_view(jnp.asarray(out["image"]), jnp.asarray(out["view"]), scale, size)
    )
    return params, out, got, want


def test_train_view_draws_what_the_host_path_draws_and_renders_its_image():
    """The same rng: the same crop, offset and flip, and the host path's image except for pixels off
    by one or two levels (measured: 0.06-1.1 % of the pixels, max 2)."""
    image = _photo(75, 100, seed=4)
    flips = set()
    for seed in range(12):
        (crop, x0, y0, flip), out, got, want = _both_paths(image, 64, (64, 48, 32), 56, 128, seed)
        flips.add(flip)
        np.testing.assert_array_equal(out["view"], [x0, y0, crop, 75, 100, flip])
        assert out["image"].shape == (128, 128, 3) and not out["image"][75:].any()
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 2 and (diff > 0).mean() < 0.02, (seed, diff.max(), (diff > 0).mean())
    assert flips == {False, True}


def test_an_image_larger_than_the_canvas_is_fitted_first():
    image = _photo(60, 90, seed=6)
    view = transforms.TrainView(40, (40,), 40, canvas_size=45)
    out = view.random_map({"image": image}, np.random.default_rng(0))
    fitted = transforms.fit_canvas(image, 45)
    assert fitted.shape == (30, 45, 3)
    np.testing.assert_array_equal(out["image"][:30, :45], fitted)
    assert out["view"][3:5].tolist() == [30, 45]
    assert transforms.fit_canvas(image, 90) is image


def test_train_batch_shapes_are_the_loaders(tmp_path):
    config = base.get_config("plain")
    config.data.data_dir = str(tmp_path)
    config.data.synthetic.update(image_size=24, num_classes=3, num_train=12, num_test=4)
    config.data.size_factor = 24 / 448
    for resize_on in ("device", "host"):
        config.data.resize_on = resize_on
        train = pipeline.make_source(config.data, "train")
        batch = next(pipeline.make_train_loader(config.data, train, 4, seed=0))
        shapes = pipeline.train_batch_shapes(config.data, 4, 3)
        assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
            k: (s, np.dtype(d)) for k, (s, d) in shapes.items()
        }
        assert ("view" in batch) == (resize_on == "device")


def test_asl_augmentation_on_device_is_a_config_error():
    config = base.get_config("plain")
    config.data.augment = "asl"
    with pytest.raises(ConfigError, match="data.resize_on='host'"):
        config_validation.validate(config)
    config.data.resize_on = "host"
    config_validation.validate(config)


@pytest.mark.slow
@pytest.mark.mutation
def test_a_batch_renders_each_image_with_its_own_view():
    """`render_views` (the train step's call) = `render_view` of each (canvas, view) pair."""
    canvases, views = [], []
    for seed, (h, w, view) in enumerate([(30, 20, (2, 5, 30, False)), (40, 40, (0, 0, 24, True))]):
        canvas = np.zeros((48, 48, 3), np.uint8)
        canvas[:h, :w] = _photo(h, w, seed=seed)
        x0, y0, crop, flip = view
        canvases.append(canvas)
        views.append([x0, y0, crop, h, w, float(flip)])
    canvases, views = jnp.asarray(np.stack(canvases)), jnp.asarray(views, jnp.float32)
    got = np.asarray(resample.render_views(canvases, views, 40, 36))
    assert got.shape == (2, 36, 36, 3)
    for i in range(2):
        np.testing.assert_array_equal(got[i], resample.render_view(canvases[i], views[i], 40, 36))


def test_every_pass_asks_for_float32_matmuls():
    """The weights need float32's mantissa (module docstring): every product of the program asks
    for HIGHEST precision, which an accelerator would otherwise run in bf16 or tf32. (XLA:CPU
    computes float32 either way, so only the program shows it.)"""
    canvas = jnp.zeros((16, 16, 3), jnp.uint8)
    view = jnp.asarray([1, 2, 8, 16, 12, 1], jnp.float32)
    precisions = dot_precisions(functools.partial(resample.render_view, scale=12, size=8),
                                canvas, view)  # fmt: skip
    highest = jax.lax.Precision.HIGHEST
    assert precisions == [(highest, highest)] * 4


def test_overshoot_is_clipped_to_uint8_levels():
    """Bicubic weights have negative lobes: a sharp 0 / 255 edge overshoots past 255 (and below 0)
    before pillow's clip to uint8 levels, as here."""
    edge = np.zeros((8, 8, 3), np.uint8)
    edge[:, 4:] = 255
    weights = resample.bicubic_weights(13, 8, 0.0, 8.0)
    raw = np.einsum("oj,ijc->ioc", np.asarray(weights, np.float64), edge.astype(np.float64))
    assert raw.max() > 255.5 and raw.min() < -0.5  # the overshoot the clip removes
    out = np.asarray(resample._pass(weights, jnp.asarray(edge, jnp.float32), axis=1))
    assert out.max() == 255.0 and out.min() == 0.0
    np.testing.assert_array_equal(out, np.clip(np.round(raw), 0, 255))


def test_an_interval_without_a_pixel_gives_zero_weights():
    """A row whose interval holds no source pixel (an empty image) has weight 0 everywhere, not
    NaN (0 / 0) or 1."""
    weights = np.asarray(resample.bicubic_weights(4, 10, 3.0, 3.0))
    np.testing.assert_array_equal(weights, np.zeros((4, 10)))
    # An interval of one pixel: every row reads that pixel alone.
    np.testing.assert_array_equal(resample.bicubic_weights(3, 10, 6.0, 7.0), np.eye(10)[[6] * 3])
