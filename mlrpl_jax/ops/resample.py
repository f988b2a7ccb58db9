"""The papers' train augmentation on device: pillow's bicubic resize, crop, resize and flip as matrices.

The host decodes each image and pads it into a fixed canvas (`data.transforms.TrainView`); the
jitted train step renders the network input from it here, with the reference's steps
(`data.transforms` docstring): resize the image to scale x scale, crop the square
[x0, x0 + crop) x [y0, y0 + crop), resize it to S x S, flip. Each resize is linear and separable,
so per image and axis the whole chain is one (S, K) matrix, the product of the two resizes'
matrices; the image is then rendered by two matrix products (columns, then rows).

A resize's weights are pillow's (`Image.resize(size, BICUBIC)`, libImaging/Resample.c): output pixel
o of an axis samples the source at centre c = start + (o + 0.5) * r, r = (stop - start) / out; with
f = max(r, 1) (antialiasing when shrinking), source pixel i has weight k((i + 0.5 - c) / f), k the
Keys cubic with a = -0.5 (support 2), over the pixels of the image it resizes (the whole image for
the first resize, the crop for the second), normalised to sum 1. pillow rounds to uint8 values after
each of its four passes with 22-bit fixed-point weights; here the weights are float32 and the image
is rounded after the column pass and at the end, so pixels may differ from pillow's by a few levels
of 255 (tests/test_resample.py measures it).

Shapes: canvas uint8 (B, K, K, 3); view float32 (B, 6) = `VIEW_FIELDS` (the crop in scale x scale
coordinates, the image's valid size in the canvas, the flip); output float32 (B, S, S, 3) with integer
values in [0, 255] (what `Method.normalize_images` expects of uint8 images).
Cost per image, float32 at full precision: 2 * (2 * S * scale * K + 3 * S * K * (K + S)) FLOPs,
2.5 GFLOPs at K = 640, scale = 512, S = 448.
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


def axis_matrix(size: int, scale: int, canvas: int, offset, crop, extent) -> jax.Array:
    """(size, canvas): resize [0, extent) to `scale` pixels, keep [offset, offset + crop), resize
    that to `size` pixels."""
    first = bicubic_weights(scale, canvas, 0.0, extent)
    second = bicubic_weights(size, scale, offset, offset + crop)
    return jnp.matmul(second, first, precision=_HI)


def render_view(canvas: jax.Array, view: jax.Array, scale: int, size: int) -> jax.Array:
    """One image: canvas uint8 (K, K, 3), view float32 (6,) -> float32 (size, size, 3)."""
    x0, y0, crop, height, width, flip = (view[i] for i in range(len(VIEW_FIELDS)))
    rows = axis_matrix(size, scale, canvas.shape[0], y0, crop, height)
    cols = axis_matrix(size, scale, canvas.shape[1], x0, crop, width)
    cols = jnp.where(flip > 0.5, cols[::-1], cols)
    x = jnp.einsum("pj,ijc->ipc", cols, canvas.astype(jnp.float32), precision=_HI)
    x = jnp.clip(jnp.round(x), 0.0, 255.0)
    x = jnp.einsum("oi,ipc->opc", rows, x, precision=_HI)
    return jnp.clip(jnp.round(x), 0.0, 255.0)


def render_views(canvas: jax.Array, views: jax.Array, scale: int, size: int) -> jax.Array:
    """A batch: canvas uint8 (B, K, K, 3), views float32 (B, 6) -> float32 (B, size, size, 3)."""
    return jax.vmap(render_view, in_axes=(0, 0, None, None))(canvas, views, scale, size)
