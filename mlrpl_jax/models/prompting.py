"""Prompt learning on frozen CLIP towers: DualCoOp's dual (positive / negative) class prompts.

``DualPrompts`` holds a frozen ``clip.CLIP`` (scope ``'clip'``) and the learned contexts;
``DualCoOp`` aggregates them into logits. Per class c,
the prompt template "X X ... X <name>." (``n_ctx`` placeholders) is tokenised once
(``prompt_ids``); every forward pass embeds it with CLIP's (frozen) token embedding and replaces
the placeholder rows 1..n_ctx by the positive or the negative context, giving 2C sequences
[start; ctx; name tokens, ".", end, padding] that go through the frozen text Transformer inside
the step (gradients reach the contexts only). Contexts: class-specific (C, n_ctx, W) or generic
(n_ctx, W), N(0, 0.02) (``shared/reference/trm_ml_notes.md`` §3, ``baselines_notes.md`` §9).

The image side: layer4 of the frozen image tower (BatchNorm always on running statistics, output
under stop-gradient, so no image-tower activation is kept for the backward pass) -> dense
joint-space tokens f_t (``clip.CLIP.dense``), L2-normalised; text features g_c^+, g_c^-
L2-normalised. With cos^{+-}_{c,t} = <f_t, g_c^{+-}>:

* ``variant='official'`` (sunxm2357/DualCoOp): tokens of ``dense_mode='official'`` (mean token +
  resized positional embedding, 1 + h*w tokens); w_{c,t} = softmax_t(20 cos^+_{c,t});
  pos_c = 5 sum_t w_{c,t} 20 cos^+_{c,t}, neg_c = 5 sum_t w_{c,t} 20 cos^-_{c,t} (fixed scales);
* ``variant='author'`` (the TRM-ML author's DualCoOp framework): ``dense_mode='value'`` tokens
  (h*w); w_{c,t} = softmax_t(exp(t_s) cos^+_{c,t}) with t_s learned (init 3.0), s = exp(t) learned
  (init 3.91); pos_c = sum_t w s cos^+, neg_c = sum_t w s cos^-.

Output: logits (B, C) = pos - neg (softmax([neg, pos])[pos] = sigmoid(pos - neg), so both
variants' scores rank by this logit) and aux {'pos_logits', 'neg_logits'} (B, C) for the losses.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax.models import clip

VARIANTS = ("author", "official")
AUTHOR_SCALE_INIT = 3.91  # s = exp(3.91) ~ 49.9
AUTHOR_SPATIAL_INIT = 3.0  # exp(3.0) ~ 20.1
OFFICIAL_SPATIAL_SCALE = 20.0
OFFICIAL_OUTPUT_SCALE = 5.0


def prompt_templates(class_names, n_ctx: int) -> list[str]:
    """DualCoOp's template per class: n_ctx placeholder words "X", the name ('_' -> ' '), "."."""
    prefix = " ".join(["X"] * n_ctx)
    return [f"{prefix} {name.replace('_', ' ')}." for name in class_names]


def l2_normalize(x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


class DualPrompts(nn.Module):
    """A frozen CLIP (scope 'clip') and the learned positive / negative prompt contexts.

    Attributes:
      clip_config: the CLIP architecture (its variables live under this module's 'clip').
      prompt_ids: (C, L) int32 token ids of ``prompt_templates`` (numpy; a constant of the step).
      n_ctx: context length (16).
      class_specific: class-specific contexts (C, n_ctx, W) or one generic pair (n_ctx, W).
      dense_mode: the image tokens' `clip.CLIP.dense` mode ('value' or 'official').
      remat_text: what the text blocks keep for the backward pass (`clip.REMAT_MODES`).
      dtype: computation dtype of the towers.
    """

    clip_config: clip.ClipConfig
    prompt_ids: Any
    n_ctx: int = 16
    class_specific: bool = True
    dense_mode: str = "value"
    remat_text: str = "none"
    dtype: Any = jnp.float32

    def setup(self):
        self.clip = clip.CLIP(self.clip_config, remat_text=self.remat_text, dtype=self.dtype)
        ids = np.asarray(self.prompt_ids)
        num_classes, width = ids.shape[0], self.clip_config.text_width
        shape = (num_classes, self.n_ctx, width) if self.class_specific else (self.n_ctx, width)
        init = nn.initializers.normal(0.02)
        self.ctx_pos = self.param("ctx_pos", init, shape)
        self.ctx_neg = self.param("ctx_neg", init, shape)

    def text_features(self) -> tuple[jax.Array, jax.Array]:
        """(g^+, g^-), each (C, E), L2-normalised, through the frozen text tower.

        The sequences are cut after the last end-of-text token of all prompts: under the causal
        mask no position attends to a later one, so the end-of-text features do not depend on the
        padding after them, and the cut changes nothing but the cost (at COCO's names the 77
        positions become about 22)."""
        ids = np.asarray(self.prompt_ids, np.int32)
        ids = jnp.asarray(ids[:, : int(ids.argmax(axis=-1).max()) + 1])
        num_classes = ids.shape[0]
        emb = jax.lax.stop_gradient(self.clip.embed_tokens(ids))  # (C, L, W)

        def sequences(ctx):
            if ctx.ndim == 2:
                ctx = jnp.broadcast_to(ctx, (num_classes, *ctx.shape))
            return jnp.concatenate(
                [emb[:, :1], ctx.astype(emb.dtype), emb[:, 1 + self.n_ctx :]], axis=1
            )

        x = jnp.concatenate([sequences(self.ctx_pos), sequences(self.ctx_neg)], axis=0)
        eot = jnp.tile(jnp.argmax(ids, axis=-1), 2)
        g = l2_normalize(self.clip.encode_embeddings(x, eot))
        return g[:num_classes], g[num_classes:]

    def image_tokens(self, images: jax.Array) -> tuple[jax.Array, tuple[int, int]]:
        """(B, H, W, 3) CLIP-normalised images -> (B, T, E) dense joint-space tokens (not
        normalised; frozen: under stop-gradient) and the layer4 grid (h, w)."""
        fmap = self.clip.image_features(images, train=False)
        if self.is_initializing():
            # Create every CLIP variable (the checkpoints' layout, which `load_pretrained`
            # fills), also the attention pool's query / key projections this path never uses.
            self.clip.pool(fmap)
        tokens = self.clip.dense(fmap, self.dense_mode)
        return jax.lax.stop_gradient(tokens), fmap.shape[1:3]

    def __call__(self, images: jax.Array):
        """Initialises every variable: the image tokens and the text features."""
        return self.image_tokens(images)[0], self.text_features()


class DualCoOp(nn.Module):
    """Frozen CLIP + learned dual prompts (module docstring); `DualPrompts` at scope 'prompts'.

    Attributes:
      clip_config, prompt_ids, n_ctx, class_specific, remat_text, dtype: as `DualPrompts`.
      variant: 'author' or 'official' (which also picks the dense tokens' mode).
    """

    clip_config: clip.ClipConfig
    prompt_ids: Any
    n_ctx: int = 16
    variant: str = "author"
    class_specific: bool = True
    remat_text: str = "none"
    dtype: Any = jnp.float32

    def setup(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"DualCoOp variant must be one of {VARIANTS}, got {self.variant!r}.")
        self.prompts = DualPrompts(
            self.clip_config, self.prompt_ids, self.n_ctx, self.class_specific,
            dense_mode="value" if self.variant == "author" else "official",
            remat_text=self.remat_text, dtype=self.dtype,
        )  # fmt: skip
        if self.variant == "author":
            self.scale_t = self.param("scale_t", nn.initializers.constant(AUTHOR_SCALE_INIT), ())
            self.spatial_t = self.param(
                "spatial_t", nn.initializers.constant(AUTHOR_SPATIAL_INIT), ()
            )

    def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, dict]:
        del train  # the towers are frozen (BatchNorm on running statistics); no dropout
        tokens, _ = self.prompts.image_tokens(images)
        f = l2_normalize(tokens)
        g_pos, g_neg = self.prompts.text_features()
        cos_pos = jnp.einsum("bte,ce->bct", f, g_pos)
        cos_neg = jnp.einsum("bte,ce->bct", f, g_neg)
        if self.variant == "official":
            w = jax.nn.softmax(OFFICIAL_SPATIAL_SCALE * cos_pos, axis=-1)
            scale = OFFICIAL_SPATIAL_SCALE * OFFICIAL_OUTPUT_SCALE
        else:
            w = jax.nn.softmax(jnp.exp(self.spatial_t) * cos_pos, axis=-1)
            scale = jnp.exp(self.scale_t)
        pos = scale * jnp.sum(w * cos_pos, axis=-1)
        neg = scale * jnp.sum(w * cos_neg, axis=-1)
        return pos - neg, {"pos_logits": pos, "neg_logits": neg}
