"""ResNet-18/34/50/101 backbones with torchvision's structure and parameter names.

The backbone returns the channels-last feature map after ``layer4`` (optionally followed by the
reference code's 2x2 average pool); there is no global pooling and no classifier. See
``shared/reference/hcp_mlr_pl_notes.md`` §1.1.

Structure follows torchvision exactly, so converted ImageNet weights fit one-to-one:

* stem: conv 7x7 / 2 with symmetric padding 3 (no bias) -> BN -> ReLU -> max pool 3x3 / 2 with
  symmetric padding 1 (padded with -inf). ``'SAME'`` padding would pad asymmetrically for stride 2
  and not match PyTorch, so every padding here is explicit.
* ``BasicBlock``: 3x3 (stride) -> 3x3, expansion 1. ``Bottleneck`` (v1.5): 1x1 -> 3x3 (stride) ->
  1x1, expansion 4. A ``downsample`` branch (1x1 conv with the block's stride, no bias, + BN) is
  added to the first block of a stage whenever the shape changes.

Parameter paths mirror torchvision's state-dict keys: Flax path
``('layer1', '0', 'conv1', 'kernel')`` is torchvision's ``layer1.0.conv1.weight`` and
``('layer2', '0', 'downsample', '1', 'var')`` (collection ``batch_stats``) is
``layer2.0.downsample.1.running_var``; see ``torchvision_name``. Conv kernels are stored in Flax
layout (kh, kw, in, out), i.e. torchvision's (out, in, kh, kw) weight transposed by (2, 3, 1, 0).
torchvision's ``num_batches_tracked`` buffers and ``fc`` layer have no counterpart here.

Frozen stages (``frozen_stages``; reference: stem and layer1-3 frozen, §1.8) run their BatchNorm on
running statistics even when ``train=True`` and their output goes through ``jax.lax.stop_gradient``,
so no gradient is computed for them. ``frozen_path_prefixes`` names the matching parameter subtrees
so that the optimiser can leave them out entirely.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Top-level parameter subtrees of each freezable stage, in order: stage 1 is the stem.
_STAGE_PREFIXES = (("conv1", "bn1"), ("layer1",), ("layer2",), ("layer3",), ("layer4",))

# Flax leaf name -> torchvision state-dict suffix.
_TORCHVISION_LEAF = {
    "kernel": "weight",
    "scale": "weight",
    "bias": "bias",
    "mean": "running_mean",
    "var": "running_var",
}


def conv_kernel_init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """torchvision's ``kaiming_normal_(mode='fan_out', nonlinearity='relu')`` for conv kernels.

    Args:
        key: PRNG key.
        shape: (kh, kw, in, out) kernel shape.
        dtype: parameter dtype.

    Returns:
        (kh, kw, in, out) samples of N(0, 2 / (kh * kw * out)), untruncated.
    """
    fan_out = math.prod(shape[:-2]) * shape[-1]
    # Drawn flat and reshaped: with the default partitionable threefry, XLA:CPU compiles the
    # generator for a 4-D shape several times slower than for a 1-D one (init of a small ResNet:
    # ~45 s against ~10 s on 2 cores). Same distribution.
    flat = jax.random.normal(key, (math.prod(shape),), dtype)
    return (flat * math.sqrt(2.0 / fan_out)).reshape(shape)


def _conv(features: int, kernel: int, strides: int, padding: int, dtype: Any, name: str) -> nn.Conv:
    """A bias-free square conv with explicit symmetric padding and torchvision's init."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(strides, strides),
        padding=((padding, padding), (padding, padding)),
        use_bias=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=conv_kernel_init,
        name=name,
    )


def _batch_norm(
    train: bool, momentum: float, epsilon: float, dtype: Any, name: str
) -> nn.BatchNorm:
    """BatchNorm with scale 1, bias 0 init; batch statistics only when ``train``."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """torchvision's stem max pool: 3x3 window, stride 2, symmetric padding 1 filled with -inf.

    Args:
        x: (B, H, W, D) feature map.

    Returns:
        (B, (H - 1) // 2 + 1, (W - 1) // 2 + 1, D) feature map.
    """
    # reduce_window pads with its init value, which nn.max_pool sets to -inf.
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class _Block(nn.Module):
    """Fields shared by the residual blocks.

    Attributes:
        features: bottleneck width ("planes" in torchvision); the block outputs
            ``features * expansion`` channels.
        strides: stride of the block's strided 3x3 conv and of its downsample conv.
        dtype: computation dtype.
        bn_momentum: BatchNorm running-average momentum (Flax convention).
        bn_epsilon: BatchNorm epsilon.
    """

    features: int
    strides: int = 1
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def _norm(self, train: bool, name: str) -> nn.BatchNorm:
        return _batch_norm(train, self.bn_momentum, self.bn_epsilon, self.dtype, name)

    def _shortcut(self, x: jax.Array, out_features: int, train: bool) -> jax.Array:
        """Identity, or torchvision's ``downsample`` (1x1 conv + BN) when the shape changes."""
        if self.strides == 1 and x.shape[-1] == out_features:
            return x
        return _Downsample(
            out_features,
            self.strides,
            dtype=self.dtype,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name="downsample",
        )(x, train)


class _Downsample(_Block):
    """torchvision's ``downsample``: ``'0'`` = 1x1 conv (block stride, no bias), ``'1'`` = BN."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """(B, H, W, D_in) -> (B, H / s, W / s, features)."""
        x = _conv(self.features, 1, self.strides, 0, self.dtype, name="0")(x)
        return self._norm(train, name="1")(x)


class BasicBlock(_Block):
    """ResNet-18/34 block: 3x3 (stride) -> 3x3, expansion 1."""

    expansion = 1

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """(B, H, W, D_in) -> (B, H / s, W / s, features)."""
        y = _conv(self.features, 3, self.strides, 1, self.dtype, name="conv1")(x)
        y = nn.relu(self._norm(train, name="bn1")(y))
        y = _conv(self.features, 3, 1, 1, self.dtype, name="conv2")(y)
        y = self._norm(train, name="bn2")(y)
        return nn.relu(y + self._shortcut(x, self.features, train))


class Bottleneck(_Block):
    """ResNet-50/101 block (v1.5, stride on the 3x3): 1x1 -> 3x3 (stride) -> 1x1, expansion 4."""

    expansion = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """(B, H, W, D_in) -> (B, H / s, W / s, 4 * features)."""
        out_features = self.features * self.expansion
        y = _conv(self.features, 1, 1, 0, self.dtype, name="conv1")(x)
        y = nn.relu(self._norm(train, name="bn1")(y))
        y = _conv(self.features, 3, self.strides, 1, self.dtype, name="conv2")(y)
        y = nn.relu(self._norm(train, name="bn2")(y))
        y = _conv(out_features, 1, 1, 0, self.dtype, name="conv3")(y)
        y = self._norm(train, name="bn3")(y)
        return nn.relu(y + self._shortcut(x, out_features, train))


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNetStage(nn.Module):
    """One of torchvision's ``layer1``..``layer4``: blocks named ``'0'``, ``'1'``, ...

    Attributes:
        block: ``'basic'`` or ``'bottleneck'``.
        num_blocks: number of residual blocks.
        features: bottleneck width of every block.
        strides: stride of the first block (the others have stride 1).
        dtype: computation dtype.
        bn_momentum: BatchNorm running-average momentum (Flax convention).
        bn_epsilon: BatchNorm epsilon.
    """

    block: str
    num_blocks: int
    features: int
    strides: int
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """(B, H, W, D_in) -> (B, H / strides, W / strides, features * expansion)."""
        block_cls = _BLOCKS[self.block]
        for i in range(self.num_blocks):
            x = block_cls(
                self.features,
                strides=self.strides if i == 0 else 1,
                dtype=self.dtype,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                name=str(i),
            )(x, train)
        return x


class ResNet(nn.Module):
    """torchvision-compatible ResNet trunk returning the last feature map (no pool, no fc).

    Attributes:
        stage_sizes: number of blocks in layer1..layer4, e.g. (3, 4, 23, 3) for ResNet-101.
        block: ``'basic'`` (ResNet-18/34) or ``'bottleneck'`` (ResNet-50/101).
        width: stem width and layer1 bottleneck width; 64 is torchvision, smaller values give
            CPU-scale models. Stage ``i`` (1-based) has bottleneck width ``width * 2 ** (i - 1)``.
        avg_pool_2x2: append the reference code's AvgPool2d(2, stride 2, no padding) after layer4
            (14x14 -> 7x7 at 448 px; odd sizes are floored as in PyTorch).
        frozen_stages: 0 freezes nothing, 1 the stem (conv1 + bn1), 2 the stem and layer1, ...,
            5 everything. Frozen stages use BatchNorm running statistics (never updated) even when
            ``train=True`` and pass their output through ``jax.lax.stop_gradient``.
        dtype: computation dtype; parameters are always float32.
        bn_momentum: BatchNorm running-average momentum (Flax convention; PyTorch's 0.1 is 0.9).
        bn_epsilon: BatchNorm epsilon.
    """

    stage_sizes: Sequence[int]
    block: str
    width: int = 64
    avg_pool_2x2: bool = False
    frozen_stages: int = 0
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @property
    def out_features(self) -> int:
        """Channel count D of the output feature map."""
        return self.width * 2 ** (len(self.stage_sizes) - 1) * _BLOCKS[self.block].expansion

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        """Computes the feature map.

        Args:
            x: (B, H, W, 3) images (any float dtype; cast to ``dtype``).
            train: use batch statistics in (and update the running statistics of) the BatchNorms
                of the stages that are not frozen; apply with ``mutable=['batch_stats']``.

        Returns:
            (B, H', W', D) feature map with H' = H / 32 (H / 64 with ``avg_pool_2x2``), rounded as
            torchvision rounds, and D = 512 * width / 64 (basic) or 2048 * width / 64 (bottleneck).
        """
        if self.block not in _BLOCKS:
            raise ValueError(f"block must be one of {sorted(_BLOCKS)}, got {self.block!r}")
        if not 0 <= self.frozen_stages <= len(self.stage_sizes) + 1:
            raise ValueError(
                f"frozen_stages must be in [0, {len(self.stage_sizes) + 1}], "
                f"got {self.frozen_stages}"
            )
        stem_frozen = self.frozen_stages >= 1
        x = _conv(self.width, 7, 2, 3, self.dtype, name="conv1")(x)
        x = _batch_norm(
            train and not stem_frozen, self.bn_momentum, self.bn_epsilon, self.dtype, name="bn1"
        )(x)
        x = max_pool_3x3_s2(nn.relu(x))
        if stem_frozen:
            x = jax.lax.stop_gradient(x)
        for i, num_blocks in enumerate(self.stage_sizes):
            frozen = self.frozen_stages >= i + 2
            x = ResNetStage(
                self.block,
                num_blocks,
                self.width * 2**i,
                strides=1 if i == 0 else 2,
                dtype=self.dtype,
                bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon,
                name=f"layer{i + 1}",
            )(x, train and not frozen)
            if frozen:
                x = jax.lax.stop_gradient(x)
        if self.avg_pool_2x2:
            x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        return x


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
ResNet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck")

RESNETS = {
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet101": ResNet101,
}


def frozen_path_prefixes(frozen_stages: int) -> tuple[tuple[str, ...], ...]:
    """Parameter path prefixes (relative to the ResNet module) of the frozen stages.

    Args:
        frozen_stages: as ``ResNet.frozen_stages``, in [0, 5].

    Returns:
        e.g. ``(('conv1',), ('bn1',), ('layer1',))`` for ``frozen_stages=2``; ``()`` for 0. A
        parameter is frozen iff its path (after the ResNet module's own prefix) starts with one
        of them.
    """
    if not 0 <= frozen_stages <= len(_STAGE_PREFIXES):
        raise ValueError(f"frozen_stages must be in [0, 5], got {frozen_stages}")
    return tuple((name,) for stage in _STAGE_PREFIXES[:frozen_stages] for name in stage)


def torchvision_name(flax_path: Sequence[Any]) -> str:
    """Maps a Flax param or batch_stats path of a ResNet to its torchvision state-dict key.

    Args:
        flax_path: path relative to the ResNet module, e.g. ``('layer1', '0', 'conv1', 'kernel')``,
            optionally led by the collection name (``'params'`` or ``'batch_stats'``). Entries may
            be strings or ``jax.tree_util`` keys (``DictKey``), as ``tree_flatten_with_path``
            yields them.

    Returns:
        e.g. ``'layer1.0.conv1.weight'``; ``('bn1', 'scale')`` -> ``'bn1.weight'``,
        ``('bn1', 'mean')`` -> ``'bn1.running_mean'``, ``('bn1', 'var')`` -> ``'bn1.running_var'``.

    Raises:
        ValueError: if the last entry is not a ResNet parameter or statistic name.
    """
    path = tuple(str(getattr(k, "key", k)) for k in flax_path)
    if path and path[0] in ("params", "batch_stats"):
        path = path[1:]
    if len(path) < 2 or path[-1] not in _TORCHVISION_LEAF:
        raise ValueError(f"not a ResNet parameter path: {flax_path!r}")
    return ".".join(path[:-1] + (_TORCHVISION_LEAF[path[-1]],))
