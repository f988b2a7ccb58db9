"""The papers' train augmentation on device: pillow's bicubic resize, crop, resize and flip as matrices.

The host decodes each image and pads it into a fixed canvas (`data.transforms.TrainView`); the
jitted train step renders the network input from it here, with the reference's steps
(`data.transforms` docstring): resize the image to scale x scale, crop the square
[x0, x0 + crop) x [y0, y0 + crop), resize it to S x S, flip. As pillow, each resize is two
separable passes (columns, then rows), each a matrix product with the pass's weights, rounded and
clipped to uint8 values; the crop is the second resize's source interval and the flip reverses the
last column pass's rows.

A resize's weights are pillow's (`Image.resize(size, BICUBIC)`, libImaging/Resample.c): output pixel
o of an axis samples the source at centre c = start + (o + 0.5) * r, r = (stop - start) / out; with
f = max(r, 1) (antialiasing when shrinking), source pixel i has weight k((i + 0.5 - c) / f), k the
Keys cubic with a = -0.5 (support 2), over the pixels of the image it resizes (the whole image for
the first resize, the crop for the second), normalised to sum 1. pillow's weights are 22-bit fixed
point, these float32: a pixel may differ from pillow's by a level of 255 where a sum falls next to
a rounding boundary (tests/test_resample.py measures it).

Shapes: canvas uint8 (B, K, K, 3); view float32 (B, 6) = `VIEW_FIELDS` (the crop in scale x scale
coordinates, the image's valid size in the canvas, the flip); output float32 (B, S, S, 3) with integer
values in [0, 255] (what `Method.normalize_images` expects of uint8 images).
Cost per image, float32 at full precision: 2 * 3 * (K * scale * (K + scale) + scale * S * (scale + S))
FLOPs, 3.6 GFLOPs at K = 640, scale = 512, S = 448.
"""

import jax
import jax.numpy as jnp

VIEW_FIELDS = ("x0", "y0", "crop", "height", "width", "flip")
_HI = jax.lax.Precision.HIGHEST  # the weights need float32's mantissa, not bf16's or tf32's


def _keys_cubic(t: jax.Array, a: float = -0.5) -> jax.Array:
    """pillow's bicubic filter (Keys 1981, a = -0.5), zero for |t| >= 2."""
    t = jnp.abs(t)
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = (((t - 5.0) * t + 8.0) * t - 4.0) * a
    return jnp.where(t < 1.0, near, jnp.where(t < 2.0, far, 0.0))


def bicubic_weights(out_size: int, in_size: int, start: jax.Array, stop: jax.Array) -> jax.Array:
    """pillow's resize matrix (out_size, in_size) of one axis for an image occupying source pixels
    [start, stop) of an axis of `in_size` (static) pixels: output pixel o reads the pixels of
    [start, stop) around start + (o + 0.5) * (stop - start) / out_size (module docstring).
    `start`, `stop` may be traced."""
    scale = (stop - start) / out_size
    filterscale = jnp.maximum(scale, 1.0)
    centre = start + (jnp.arange(out_size, dtype=jnp.float32) + 0.5) * scale
    source = jnp.arange(in_size, dtype=jnp.float32)
    w = _keys_cubic((source[None, :] + 0.5 - centre[:, None]) / filterscale)
    w = jnp.where((source[None, :] >= start) & (source[None, :] < stop), w, 0.0)
    total = w.sum(axis=1, keepdims=True)
    return jnp.where(total != 0.0, w / jnp.where(total != 0.0, total, 1.0), 0.0)


def _pass(weights: jax.Array, x: jax.Array, axis: int) -> jax.Array:
    """One of pillow's passes: resample axis `axis` (0 rows, 1 columns) of x (H, W, 3) by
    weights (out, in), rounded and clipped to uint8 values."""
    spec = "oi,ijc->ojc" if axis == 0 else "oj,ijc->ioc"
    return jnp.clip(jnp.round(jnp.einsum(spec, weights, x, precision=_HI)), 0.0, 255.0)


def render_view(canvas: jax.Array, view: jax.Array, scale: int, size: int) -> jax.Array:
    """One image: canvas uint8 (K, K, 3), view float32 (6,) -> float32 (size, size, 3)."""
    x0, y0, crop, height, width, flip = (view[i] for i in range(len(VIEW_FIELDS)))
    k = canvas.shape[0]
    x = canvas.astype(jnp.float32)
    # resize [0, height) x [0, width) to scale x scale (columns first, as pillow)
    x = _pass(bicubic_weights(scale, k, 0.0, width), x, axis=1)
    x = _pass(bicubic_weights(scale, k, 0.0, height), x, axis=0)
    # crop and resize to size x size; the flip reverses the output columns
    cols = bicubic_weights(size, scale, x0, x0 + crop)
    x = _pass(jnp.where(flip > 0.5, cols[::-1], cols), x, axis=1)
    return _pass(bicubic_weights(size, scale, y0, y0 + crop), x, axis=0)


def render_views(canvas: jax.Array, views: jax.Array, scale: int, size: int) -> jax.Array:
    """A batch: canvas uint8 (B, K, K, 3), views float32 (B, 6) -> float32 (B, size, size, 3)."""
    return jax.vmap(render_view, in_axes=(0, 0, None, None))(canvas, views, scale, size)
