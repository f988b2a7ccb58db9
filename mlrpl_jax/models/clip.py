"""CLIP with the ModifiedResNet image tower (RN50, RN101, and small ones a CPU can train), in Flax.

What (``shared/reference/clip_notes.md`` §1-3): ``CLIP`` holds

* ``visual``, the ModifiedResNet: a three-conv stem (3x3/2, 3x3, 3x3, each BN + ReLU) and a 2x2
  average pool; four stages of "anti-aliased" bottlenecks (every conv stride 1; a strided block
  average-pools after its 3x3 conv and before its shortcut's 1x1 conv); an attention pool: the
  (h, w) tokens of layer4, their mean prepended, the learned positional embedding added, one
  multi-head attention in which only the mean token queries, output projection ``c_proj``;
* the text tower: token embedding + learned positional embedding, pre-LN residual blocks with a
  causal mask (fused q/k/v input projection, QuickGELU MLP of width 4W), final LayerNorm, the
  vector at the end-of-text position (the largest token id) times ``text_projection``;
* ``logit_scale`` (CLIP's learned log temperature).

All LayerNorms use epsilon 1e-5 as CLIP does (Flax's default is 1e-6) and run in float32;
BatchNorm epsilon 1e-5 and, with ``train=True``, batch statistics with PyTorch's momentum 0.1.

Dense joint-space features (DualCoOp, TaI-DPT, TRM-ML; ``encode_dense``): every layer4 position
goes through the attention pool's value projection and then ``c_proj``, independently, with no
attention. ``dense_mode='value'`` (the TRM-ML author's DualCoOp framework): the h*w positions as
they are, no positional embedding; ``dense_mode='official'`` (the official DualCoOp code): the
mean token is prepended and the positional embedding (resized to the map, see below) added first,
giving 1 + h*w positions. The global embedding (``global_pos``): 'keep' (CLIP) or 'drop' (the
author's framework deletes the positional embedding; its global score is not used in its losses).

When the layer4 map is not the pretraining grid (e.g. 448-px input: 14x14 instead of 7x7) the
positional embedding's grid part is resized with PyTorch's bicubic interpolation
(``F.interpolate(mode='bicubic', align_corners=False)``, the kernel of a = -0.75 with clamped
borders; ``torch_bicubic_matrix``), the mean-token slot kept, as DualCoOp does.

Parameter names follow the PyTorch checkpoints (OpenAI / open_clip), so the converter
(``models.clip_convert``) maps Flax paths to state-dict keys by rule: ``('visual', 'layer1', '0',
'conv1', 'kernel')`` is ``visual.layer1.0.conv1.weight``; kernels of convolutions and dense layers
are stored in Flax layout (transposed); the text attention's fused input projection keeps
PyTorch's ``in_proj_weight`` (3W, W) layout, and the embeddings, ``text_projection`` (W, E) and
``logit_scale`` are stored as in PyTorch.

Shapes: images (B, H, W, 3) float, already normalised with ``CLIP_MEAN`` / ``CLIP_STD``
(``normalize``); token ids (B, L) int32 with L = context length; image and text embeddings
(B, E), not L2-normalised (the caller normalises).
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# CLIP's input normalisation (clip._transform), RGB in [0, 1].
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

LN_EPS = 1e-5
BN_EPS = 1e-5
BN_MOMENTUM = 0.9  # PyTorch's 0.1
DENSE_MODES = ("value", "official")
GLOBAL_POS = ("keep", "drop")


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """The architecture of one CLIP (what OpenAI's ``build_model`` infers from a checkpoint).

    vision_layers: bottlenecks per stage; vision_width: stem / stage-1 width w (layer4 outputs
    32 w channels, attention-pool heads 32 w / 64); image_size: the pretraining resolution (the
    positional embedding covers an (image_size / 32)^2 grid); text_* : the text Transformer;
    quick_gelu: x sigmoid(1.702 x) (OpenAI weights) instead of the exact GELU; words: None for
    CLIP's BPE vocabulary (`clip_tokenizer.Tokenizer`), or the word list of a small CLIP trained
    here with a `clip_tokenizer.WordTokenizer` (part of the architecture: the token ids mean
    nothing without it).
    """

    embed_dim: int = 1024
    vision_layers: tuple[int, ...] = (3, 4, 6, 3)
    vision_width: int = 64
    image_size: int = 224
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_heads: int = 8
    text_layers: int = 12
    quick_gelu: bool = True
    words: tuple[str, ...] | None = None

    @property
    def vision_heads(self) -> int:
        return self.vision_width * 32 // 64

    @property
    def grid(self) -> int:
        return self.image_size // 32


# The vocabulary of the synthetic scenes' class names and captions (`synthetic_scenes.CAPTION_WORDS`,
# checked equal by the tests; written out here so that the models do not import the data
# builders), and the digits of the rare numbered class names.
SYNTHETIC_WORDS = (
    "a", "photo", "of", "and", ".", "x", "light", "dark",
    "red", "orange", "yellow", "lime", "green", "teal", "cyan", "azure", "blue", "violet",
    "magenta", "pink", "plain", "striped", "checkered", "dotted",
    "disc", "square", "triangle", "ring", "cross", "bar", "diamond", "star",
    *"0123456789",
)  # fmt: skip

PRESETS = {
    "RN50": ClipConfig(embed_dim=1024, vision_layers=(3, 4, 6, 3)),
    "RN101": ClipConfig(embed_dim=512, vision_layers=(3, 4, 23, 3)),
    # The CLIP a CPU can pretrain (`mlrpl_jax.pretrain_clip`, configs/pretrain_clip_synthetic.py):
    # ModifiedResNet with one bottleneck per stage at width 16 (layer4: 512 channels, attention
    # pool of 8 heads) on 96-px images, a 3-layer text Transformer of width 128, joint space 128,
    # captions of at most 32 word tokens.
    "synthetic_rn": ClipConfig(
        embed_dim=128, vision_layers=(1, 1, 1, 1), vision_width=16, image_size=96,
        context_length=32, vocab_size=len(SYNTHETIC_WORDS) + 3, text_width=128, text_heads=2,
        text_layers=3, words=SYNTHETIC_WORDS,
    ),
    # The smallest: 32-px images, width 8, one text layer of width 64 (checks and tests;
    # configs/learning_check.py:clip_pretrain).
    "tiny_rn": ClipConfig(
        embed_dim=32, vision_layers=(1, 1, 1, 1), vision_width=8, image_size=32,
        context_length=32, vocab_size=len(SYNTHETIC_WORDS) + 3, text_width=64, text_heads=1,
        text_layers=1, words=SYNTHETIC_WORDS,
    ),
}  # fmt: skip


def make_tokenizer(config: ClipConfig, vocab_path: str | None = None):
    """The tokenizer of `config`: a `WordTokenizer` over `config.words`, else CLIP's BPE tokenizer
    (`vocab_path`, or the vocabulary file found by `clip_tokenizer.default_vocab_path`)."""
    from mlrpl_jax.models import clip_tokenizer

    if config.words is not None:
        return clip_tokenizer.WordTokenizer(config.words)
    return clip_tokenizer.Tokenizer(vocab_path)


def normalize(images_01: jax.Array) -> jax.Array:
    """(..., 3) RGB in [0, 1] -> CLIP's normalised input."""
    mean = jnp.asarray(CLIP_MEAN, jnp.float32)
    std = jnp.asarray(CLIP_STD, jnp.float32)
    return (images_01.astype(jnp.float32) - mean) / std


def quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


def torch_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's 1-D bicubic resize (align_corners=False, a = -0.75,
    source indices clamped to the border); a 2-D resize is W @ X @ W^T."""
    a = -0.75

    def cubic(t):
        t = abs(t)
        if t <= 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        if t < 2:
            return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return 0.0

    w = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for i in range(n_out):
        x = (i + 0.5) * scale - 0.5
        x0 = math.floor(x)
        t = x - x0
        for k in range(-1, 3):
            w[i, min(max(x0 + k, 0), n_in - 1)] += cubic(k - t)
    return w.astype(np.float32)


def resize_positional_embedding(pos: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """(1 + g*g, D) attention-pool positional embedding -> (1 + h*w, D) for an (h, w) map: the
    first (mean-token) row kept, the g x g grid resized bicubically as PyTorch does."""
    g = math.isqrt(pos.shape[0] - 1)
    if (g, g) == tuple(grid):
        return pos
    h, w = grid
    spatial = pos[1:].reshape(g, g, -1)
    wh = jnp.asarray(torch_bicubic_matrix(g, h))
    ww = jnp.asarray(torch_bicubic_matrix(g, w))
    spatial = jnp.einsum("hi,ijd,wj->hwd", wh, spatial, ww)
    return jnp.concatenate([pos[:1], spatial.reshape(h * w, -1)], axis=0)


def _bn(name: str, train: bool) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPS, name=name
    )


def _conv(features: int, kernel: int, name: str | None, dtype: Any, stride: int = 1) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
        dtype=dtype, name=name,
    )  # fmt: skip


def _avg_pool(x: jax.Array, size: int) -> jax.Array:
    return nn.avg_pool(x, (size, size), strides=(size, size), padding="VALID")


class _Downsample(nn.Module):
    """The shortcut branch: average pool (stride), 1x1 conv '0', BatchNorm '1'."""

    features: int
    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        if self.stride > 1:
            x = _avg_pool(x, self.stride)
        x = _conv(self.features, 1, "0", self.dtype)(x)
        return _bn("1", train)(x)


class Bottleneck(nn.Module):
    """CLIP's anti-aliased bottleneck (expansion 4); see the module docstring."""

    planes: int
    stride: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        out = nn.relu(_bn("bn1", train)(_conv(self.planes, 1, "conv1", self.dtype)(x)))
        out = nn.relu(_bn("bn2", train)(_conv(self.planes, 3, "conv2", self.dtype)(out)))
        if self.stride > 1:
            out = _avg_pool(out, self.stride)
        out = _bn("bn3", train)(_conv(4 * self.planes, 1, "conv3", self.dtype)(out))
        shortcut = x
        if self.stride > 1 or x.shape[-1] != 4 * self.planes:
            shortcut = _Downsample(4 * self.planes, self.stride, self.dtype, name="downsample")(
                x, train
            )
        return nn.relu(out + shortcut)


class _Stage(nn.Module):
    planes: int
    blocks: int
    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        for i in range(self.blocks):
            stride = self.stride if i == 0 else 1
            x = Bottleneck(self.planes, stride, self.dtype, name=str(i))(x, train)
        return x


class AttentionPool2d(nn.Module):
    """CLIP's attention pool and the dense value-path features (module docstring)."""

    grid: int  # the pretraining grid (positional embedding of 1 + grid^2 rows)
    num_heads: int
    output_dim: int
    dtype: Any = jnp.float32

    def setup(self):
        self.positional_embedding = self.param(
            "positional_embedding",
            lambda k, s: jax.random.normal(k, s) / math.sqrt(s[1]),
            (self.grid**2 + 1, self.embed_dim),
        )
        std = self.embed_dim**-0.5
        init = nn.initializers.normal(std)
        self.q_proj = nn.Dense(self.embed_dim, kernel_init=init, dtype=self.dtype)
        self.k_proj = nn.Dense(self.embed_dim, kernel_init=init, dtype=self.dtype)
        self.v_proj = nn.Dense(self.embed_dim, kernel_init=init, dtype=self.dtype)
        self.c_proj = nn.Dense(self.output_dim, kernel_init=init, dtype=self.dtype)

    @property
    def embed_dim(self) -> int:
        return self.num_heads * 64

    def tokens(self, x: jax.Array, with_pos: bool) -> jax.Array:
        """(B, h, w, D) -> (B, 1 + h*w, D): the mean token first, then row-major positions."""
        b, h, w, d = x.shape
        flat = x.reshape(b, h * w, d)
        tokens = jnp.concatenate([flat.mean(axis=1, keepdims=True), flat], axis=1)
        if with_pos:
            tokens = tokens + resize_positional_embedding(self.positional_embedding, (h, w))
        return tokens

    def pooled(self, x: jax.Array, global_pos: str = "keep") -> jax.Array:
        """(B, h, w, D) -> (B, E): attention with the mean token as the only query."""
        tokens = self.tokens(x, with_pos=global_pos == "keep")
        b, t, _ = tokens.shape
        heads, dh = self.num_heads, 64
        q = self.q_proj(tokens[:, :1]).reshape(b, 1, heads, dh)
        k = self.k_proj(tokens).reshape(b, t, heads, dh)
        v = self.v_proj(tokens).reshape(b, t, heads, dh)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(dh)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, heads * dh)
        return self.c_proj(out)

    def dense(self, x: jax.Array, dense_mode: str = "value") -> jax.Array:
        """(B, h, w, D) -> (B, T, E) joint-space features, c_proj(v_proj(token)) per token:
        T = h*w ('value') or 1 + h*w ('official': mean token and positional embedding)."""
        if dense_mode == "value":
            tokens = x.reshape(x.shape[0], -1, x.shape[-1])
        else:
            tokens = self.tokens(x, with_pos=True)
        return self.c_proj(self.v_proj(tokens))

    def __call__(self, x: jax.Array, global_pos: str = "keep") -> jax.Array:
        return self.pooled(x, global_pos)


class ModifiedResNet(nn.Module):
    """CLIP's image tower up to layer4 (``features``) and its attention pool (``attnpool``)."""

    layers: tuple[int, ...]
    width: int
    output_dim: int
    grid: int
    dtype: Any = jnp.float32

    def setup(self):
        w = self.width
        self.conv1 = _conv(w // 2, 3, None, self.dtype, stride=2)
        self.bn1 = nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS)
        self.conv2 = _conv(w // 2, 3, None, self.dtype)
        self.bn2 = nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS)
        self.conv3 = _conv(w, 3, None, self.dtype)
        self.bn3 = nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPS)
        self.layer1 = _Stage(w, self.layers[0], 1, self.dtype)
        self.layer2 = _Stage(2 * w, self.layers[1], 2, self.dtype)
        self.layer3 = _Stage(4 * w, self.layers[2], 2, self.dtype)
        self.layer4 = _Stage(8 * w, self.layers[3], 2, self.dtype)
        self.attnpool = AttentionPool2d(self.grid, w * 32 // 64, self.output_dim, self.dtype)

    def features(self, x: jax.Array, train: bool = False) -> jax.Array:
        """(B, H, W, 3) normalised images -> (B, H/32, W/32, 32 w) layer4 map."""
        x = x.astype(self.dtype)
        ura = not train
        x = nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        x = nn.relu(self.bn2(self.conv2(x), use_running_average=ura))
        x = nn.relu(self.bn3(self.conv3(x), use_running_average=ura))
        x = _avg_pool(x, 2)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x, train)
        return x

    def __call__(self, x: jax.Array, train: bool = False, global_pos: str = "keep") -> jax.Array:
        """(B, H, W, 3) -> (B, E) image embedding."""
        return self.attnpool(self.features(x, train), global_pos)


class _MultiheadSelfAttention(nn.Module):
    """PyTorch's nn.MultiheadAttention (fused in_proj, q/k/v order) as CLIP's text blocks use it."""

    width: int
    heads: int
    proj_std: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        w = self.param(
            "in_proj_weight", nn.initializers.normal(self.width**-0.5), (3 * self.width, self.width)
        )
        b = self.param("in_proj_bias", nn.initializers.zeros, (3 * self.width,))
        qkv = jnp.einsum("bld,ed->ble", x, w.astype(self.dtype)) + b.astype(self.dtype)
        bsz, length, _ = x.shape
        dh = self.width // self.heads
        q, k, v = (t.reshape(bsz, length, self.heads, dh) for t in jnp.split(qkv, 3, axis=-1))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(dh)
        weights = jax.nn.softmax(logits + mask, axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(bsz, length, self.width)
        return nn.Dense(
            self.width, kernel_init=nn.initializers.normal(self.proj_std), dtype=self.dtype,
            name="out_proj",
        )(out)  # fmt: skip


class _Mlp(nn.Module):
    width: int
    quick_gelu: bool
    proj_std: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        fc_std = (2 * self.width) ** -0.5
        x = nn.Dense(4 * self.width, kernel_init=nn.initializers.normal(fc_std),
                     dtype=self.dtype, name="c_fc")(x)  # fmt: skip
        x = quick_gelu(x) if self.quick_gelu else nn.gelu(x, approximate=False)
        return nn.Dense(self.width, kernel_init=nn.initializers.normal(self.proj_std),
                        dtype=self.dtype, name="c_proj")(x)  # fmt: skip


def _layer_norm(name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LN_EPS, dtype=jnp.float32, name=name)


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    width: int
    heads: int
    quick_gelu: bool
    proj_std: float
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask):
        h = _layer_norm("ln_1")(x).astype(self.dtype)
        x = x + _MultiheadSelfAttention(
            self.width, self.heads, self.proj_std, self.dtype, name="attn"
        )(h, mask)
        h = _layer_norm("ln_2")(x).astype(self.dtype)
        return x + _Mlp(self.width, self.quick_gelu, self.proj_std, self.dtype, name="mlp")(h)


# What the text blocks keep for the backward pass (`CLIP.remat_text`): every activation ('none'),
# only the outputs of the dense layers' matrix products, recomputing the element-wise operations,
# LayerNorms and the attention ('dots'), or only each block's input ('full').
REMAT_MODES = ("none", "dots", "full")


def remat_block(block: type[nn.Module], mode: str) -> type[nn.Module]:
    """`block` whose backward pass keeps what `mode` (one of `REMAT_MODES`) says."""
    if mode == "none":
        return block
    if mode == "dots":
        return nn.remat(block, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)
    if mode == "full":
        return nn.remat(block)
    raise ValueError(f"remat mode must be one of {REMAT_MODES}, got {mode!r}.")


class _ResBlocks(nn.Module):
    width: int
    heads: int
    layers: int
    quick_gelu: bool
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask):
        proj_std = self.width**-0.5 * (2 * self.layers) ** -0.5
        block = remat_block(ResidualAttentionBlock, self.remat)
        for i in range(self.layers):
            x = block(self.width, self.heads, self.quick_gelu, proj_std, self.dtype, name=str(i))(
                x, mask
            )
        return x


class TextTransformer(nn.Module):
    """The stack of text blocks ('transformer.resblocks.{i}' in the checkpoints)."""

    width: int
    heads: int
    layers: int
    quick_gelu: bool
    remat: str = "none"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        length = x.shape[1]
        causal = jnp.triu(jnp.full((length, length), -jnp.inf, jnp.float32), k=1)
        return _ResBlocks(
            self.width, self.heads, self.layers, self.quick_gelu, self.remat, self.dtype,
            name="resblocks",
        )(x, causal)  # fmt: skip


class CLIP(nn.Module):
    """Both CLIP towers and the log temperature (module docstring).

    Attributes:
      config: the architecture.
      remat_text: what the text blocks keep for the backward pass, one of `REMAT_MODES` (prompt
        learning sends 2C prompts through the text tower every step).
      dtype: computation dtype of convolutions and dense layers (LayerNorm and softmax in
        float32); parameters are float32.
    """

    config: ClipConfig
    remat_text: str = "none"
    dtype: Any = jnp.float32

    def setup(self):
        c = self.config
        self.visual = ModifiedResNet(
            c.vision_layers, c.vision_width, c.embed_dim, c.grid, self.dtype
        )  # fmt: skip
        self.token_embedding = nn.Embed(
            c.vocab_size, c.text_width, embedding_init=nn.initializers.normal(0.02)
        )
        self.positional_embedding = self.param(
            "positional_embedding", nn.initializers.normal(0.01), (c.context_length, c.text_width)
        )
        self.transformer = TextTransformer(
            c.text_width, c.text_heads, c.text_layers, c.quick_gelu, self.remat_text, self.dtype
        )
        self.ln_final = _layer_norm()
        self.text_projection = self.param(
            "text_projection", nn.initializers.normal(c.text_width**-0.5),
            (c.text_width, c.embed_dim),
        )  # fmt: skip
        self.logit_scale = self.param(
            "logit_scale", nn.initializers.constant(math.log(1 / 0.07)), ()
        )

    # --- image tower ------------------------------------------------------------------------
    def image_features(self, images: jax.Array, train: bool = False) -> jax.Array:
        """(B, H, W, 3) normalised images -> (B, H/32, W/32, 32 w) layer4 map."""
        return self.visual.features(images, train)

    def pool(self, feature_map: jax.Array, global_pos: str = "keep") -> jax.Array:
        """layer4 map -> (B, E) image embedding (attention pool)."""
        return self.visual.attnpool.pooled(feature_map, global_pos)

    def dense(self, feature_map: jax.Array, dense_mode: str = "value") -> jax.Array:
        """layer4 map -> (B, T, E) dense joint-space features (module docstring)."""
        return self.visual.attnpool.dense(feature_map, dense_mode)

    def encode_image(
        self, images: jax.Array, train: bool = False, global_pos: str = "keep"
    ) -> jax.Array:
        return self.pool(self.image_features(images, train), global_pos)

    # --- text tower -------------------------------------------------------------------------
    def embed_tokens(self, ids: jax.Array) -> jax.Array:
        """(B, L) token ids -> (B, L, W) token embeddings (before the positional embedding)."""
        return self.token_embedding(ids)

    def encode_embeddings(self, x: jax.Array, eot_index: jax.Array) -> jax.Array:
        """(B, L, W) token embeddings (e.g. with learned prompt contexts in them) and (B,) the
        end-of-text positions -> (B, E) text embeddings."""
        x = x + self.positional_embedding[: x.shape[1]]
        x = self.transformer(x.astype(self.dtype))
        x = self.ln_final(x)
        eot = jnp.take_along_axis(x, eot_index[:, None, None].astype(jnp.int32), axis=1)[:, 0]
        return eot @ self.text_projection

    def encode_text(self, ids: jax.Array) -> jax.Array:
        """(B, L) token ids -> (B, E); the end of text is the largest id (CLIP's rule)."""
        return self.encode_embeddings(self.embed_tokens(ids), jnp.argmax(ids, axis=-1))

    def __call__(
        self, images: jax.Array, ids: jax.Array, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        """Both embeddings (not normalised); initialises every parameter."""
        return self.encode_image(images, train), self.encode_text(ids)


def init_variables(config: ClipConfig, rng: jax.Array, image_size: int | None = None) -> dict:
    """Random variables of ``CLIP(config)`` ({'params', 'batch_stats'})."""
    size = image_size or config.image_size
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    ids = jnp.zeros((1, config.context_length), jnp.int32)
    return CLIP(config).init(rng, images, ids)


def abstract_variables(config: ClipConfig) -> dict:
    """The shapes / dtypes of ``init_variables`` (nothing allocated)."""
    return jax.eval_shape(lambda: init_variables(config, jax.random.key(0)))


def config_from_shapes(shapes: dict[str, Sequence[int]]) -> ClipConfig:
    """The architecture of a PyTorch CLIP state dict ({key: shape}), as OpenAI's ``build_model``
    infers it: stage depths from the block indices, width from layer1's first conv, the
    pretraining resolution from the attention pool's positional embedding, the text Transformer
    from its keys. Raises ValueError for a state dict that is not a ModifiedResNet CLIP."""
    need = ("visual.layer1.0.conv1.weight", "visual.attnpool.positional_embedding",
            "text_projection", "token_embedding.weight", "positional_embedding")  # fmt: skip
    missing = [k for k in need if k not in shapes]
    if missing:
        vit = "visual.class_embedding" in shapes or "visual.proj" in shapes
        raise ValueError(
            f"Not a ModifiedResNet CLIP state dict: missing {missing}"
            + (" (it looks like a ViT CLIP, which this library does not implement)" if vit else "")
        )
    layers = tuple(
        len({k.split(".")[2] for k in shapes if k.startswith(f"visual.layer{i}.")})
        for i in (1, 2, 3, 4)
    )
    grid = math.isqrt(shapes["visual.attnpool.positional_embedding"][0] - 1)
    width = shapes["ln_final.weight"][0] if "ln_final.weight" in shapes else None
    text_layers = len({k.split(".")[2] for k in shapes if k.startswith("transformer.resblocks.")})
    text_width = shapes["token_embedding.weight"][1] if width is None else width
    return ClipConfig(
        embed_dim=int(shapes["text_projection"][1]),
        vision_layers=layers,
        vision_width=int(shapes["visual.layer1.0.conv1.weight"][0]),
        image_size=32 * grid,
        context_length=int(shapes["positional_embedding"][0]),
        vocab_size=int(shapes["token_embedding.weight"][0]),
        text_width=int(text_width),
        text_heads=max(1, int(text_width) // 64),
        text_layers=text_layers,
    )
